// The forward of the gru cell, for every storage type (see forward_impl.cuh).
#include "forward_impl.cuh"

namespace fusedrnn::cuda {
FUSEDRNN_DEFINE_FORWARD_ALL(CellKind::gru)
}  // namespace fusedrnn::cuda
