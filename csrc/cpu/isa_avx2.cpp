// The CPU kernels for avx2: kernels_impl.h compiled with this file's flags (see CMakeLists.txt)
// into namespace fusedrnn::cpu::avx2.
#define FUSEDRNN_ISA_NAMESPACE avx2
#define FUSEDRNN_VECTOR_BYTES 32
#include "kernels_impl.h"
