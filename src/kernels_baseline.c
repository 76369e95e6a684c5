/* Kernels for any CPU: 16-byte vectors (SSE2 on x86-64, without FMA; NEON
 * on arm64, with its FMA; plain C elsewhere). */
#define BMF_VEC_BYTES 16
#define BMF_ISA_NAME baseline
#define BMF_MR 4 /* rows x panels of a GEMM tile (16 xmm) */
#define BMF_NV 3
#include "kernels_impl.h"
