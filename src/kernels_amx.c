/* Kernels for x86-64 with AVX-512 and AMX-BF16 (Sapphire Rapids and later):
 * the AVX-512 kernels, whose float32 attention takes its scores Q K^T from
 * AMX tiles, in three-part bf16 splits (attention_amx.h).  Run only when
 * dispatch.c has seen AMX in CPUID, the OS saves its tile state and Linux
 * has granted it to this process. */
#include "bmf_kernels.h"
#ifdef BMF_HAVE_AMX
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,amx-tile,amx-bf16"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,amx-tile,amx-bf16")
#endif
#define BMF_VEC_BYTES 64
#define BMF_ISA_NAME amx
#define BMF_MR 5 /* as kernels_avx512.c */
#define BMF_NV 4
#define BMF_MR_TALL 16
#define BMF_AMX 1
#define BMF_ATT_BQ 48 /* three 16-row AMX tiles */
#include "kernels_impl.h"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int bmf_no_amx_with_this_compiler_or_architecture;
#endif
