// The CPU kernels for generic: kernels_impl.h compiled with this file's flags (see CMakeLists.txt)
// into namespace fusedrnn::cpu::generic.
#define FUSEDRNN_ISA_NAMESPACE generic
#define FUSEDRNN_VECTOR_BYTES 16
#include "kernels_impl.h"
