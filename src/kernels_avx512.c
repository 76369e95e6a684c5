/* Kernels for x86-64 with AVX-512 F/DQ/BW/VL (the x86-64-v4 level: Skylake-X,
 * Ice Lake, Zen 4 and later); run only when dispatch.c has seen them in CPUID
 * and the OS saves the ZMM state. */
#if defined(__x86_64__) || defined(_M_X64)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")
#endif
#define BMF_VEC_BYTES 64
#define BMF_ISA_NAME avx512
#define BMF_MR 5 /* rows x panels of a GEMM tile: 20 accumulators (24 spill one of 32 zmm) */
#define BMF_NV 4
#define BMF_MR_TALL 16 /* rows of the tall tile (gemm_impl.h) */
#include "kernels_impl.h"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int bmf_no_avx512_on_this_architecture;
#endif
