/* Kernels for x86-64 with AVX2 and FMA (Haswell, Zen 1 and later); run only
 * when dispatch.c has seen both in CPUID and the OS saves the YMM state. */
#if defined(__x86_64__) || defined(_M_X64)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx2,fma")
#endif
#define BMF_VEC_BYTES 32
#define BMF_ISA_NAME avx2
#define BMF_MR 4 /* rows x panels of a GEMM tile: 4x3 accumulators + 3 B */
#define BMF_NV 3 /* vectors + 1 broadcast = 16 ymm */
#include "kernels_impl.h"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int bmf_no_avx2_on_this_architecture;
#endif
