// The backward of the rnn_tanh cell, for every storage type (see backward_impl.cuh).
#include "backward_impl.cuh"

namespace fusedrnn::cuda {
FUSEDRNN_DEFINE_BACKWARD_ALL(CellKind::rnn_tanh)
}  // namespace fusedrnn::cuda
