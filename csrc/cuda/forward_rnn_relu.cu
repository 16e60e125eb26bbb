// The forward of the rnn_relu cell, for every storage type (see forward_impl.cuh).
#include "forward_impl.cuh"

namespace fusedrnn::cuda {
FUSEDRNN_DEFINE_FORWARD_ALL(CellKind::rnn_relu)
}  // namespace fusedrnn::cuda
