// The forward of the lstm cell, for every storage type (see forward_impl.cuh).
#include "forward_impl.cuh"

namespace fusedrnn::cuda {
FUSEDRNN_DEFINE_FORWARD_ALL(CellKind::lstm)
}  // namespace fusedrnn::cuda
