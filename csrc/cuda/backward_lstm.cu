// The backward of the lstm cell, for every storage type (see backward_impl.cuh).
#include "backward_impl.cuh"

namespace fusedrnn::cuda {
FUSEDRNN_DEFINE_BACKWARD_ALL(CellKind::lstm)
}  // namespace fusedrnn::cuda
