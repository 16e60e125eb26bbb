// The CPU kernels for avx512: kernels_impl.h compiled with this file's flags (see CMakeLists.txt)
// into namespace fusedrnn::cpu::avx512.
#define FUSEDRNN_ISA_NAMESPACE avx512
#define FUSEDRNN_VECTOR_BYTES 64
#include "kernels_impl.h"
