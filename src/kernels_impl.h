/* kernels_impl.h: instantiates every kernel for one ISA level, for float and
 * double, and exports them as the table bmf_kernels_<BMF_ISA_NAME>.
 * Included only by kernels_<isa>.c, after its target pragma and
 * BMF_VEC_BYTES / BMF_ISA_NAME / BMF_MR / BMF_NV definitions (and, optionally,
 * BMF_MR_TALL: the rows of gemm_impl.h's tall tile, 0 for none).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bigmodel_fast.h"
#include "bmf_kernels.h"
#include "bmf_omp.h"
#include "bmf_simd.h"

#define BMF_CAT_(a, b, c) a##b##c
#define BMF_CAT(a, b, c) BMF_CAT_(a, b, c)

#define BMF_NV1 8     /* panels of a one-row tile */
#ifndef BMF_MR_TALL
#define BMF_MR_TALL 0 /* no tall tile (gemm_impl.h) at this ISA level */
#endif
#ifndef BMF_GEMM_B_CACHED_BYTES
#define BMF_GEMM_B_CACHED_BYTES bmf_gemm_b_cached_bytes /* half the L2: bmf_kernels.h */
#endif
#ifndef BMF_ATT_BQ
#define BMF_ATT_BQ (8 * BMF_MR) /* query rows per attention block: whole tiles */
#endif
#define BMF_ATT_BK 512 /* keys per attention tile (a multiple of every VL) */
#define BMF_ATT_BK_KM 128 /* keys per tile of the key-major (decoding) path */
#define BMF_ATT_GROUP_MAX 64 /* most (batch, head) pairs in a key-major item */

/* X(mr, nv) for every GEMM tile of several rows this level has: up to
 * BMF_MR rows by up to BMF_NV panels (gemm_impl.h's tile functions, and the
 * switches that pick a tile by its shape: gemm_block, att_tile_exp_pv). */
#if BMF_NV >= 4
#define BMF_TILES_NV4(X) X(2, 4) X(3, 4) X(4, 4)
#else
#define BMF_TILES_NV4(X)
#endif
#if BMF_MR >= 5 && BMF_NV < 4
#error "tiles of 5 or 6 rows are listed with 4 panels: BMF_NV must be at least 4"
#endif
#if BMF_MR >= 5
#define BMF_TILES_MR5(X) X(5, 1) X(5, 2) X(5, 3) X(5, 4)
#else
#define BMF_TILES_MR5(X)
#endif
#if BMF_MR >= 6
#define BMF_TILES_MR6(X) X(6, 1) X(6, 2) X(6, 3) X(6, 4)
#else
#define BMF_TILES_MR6(X)
#endif
#define BMF_MULTI_ROW_TILES(X)                                                 \
    X(2, 1) X(2, 2) X(2, 3) X(3, 1) X(3, 2) X(3, 3) X(4, 1) X(4, 2) X(4, 3)   \
    BMF_TILES_NV4(X) BMF_TILES_MR5(X) BMF_TILES_MR6(X)

/* How a GEMM tile starts its accumulators (gemm_impl.h). */
enum { BMF_INIT_ZERO = 0, BMF_INIT_C = 1, BMF_INIT_BIAS = 2 };

/* The work buffers of one call are consecutive pieces of one workspace
 * (bmf_workspace_acquire), each 64-byte aligned: sizes first, then carve. */
static size_t bmf_piece(size_t bytes) { return (bytes + 63) / 64 * 64; }
static void *bmf_carve(unsigned char **next, size_t bytes)
{
    void *p = *next;
    *next += bmf_piece(bytes);
    return p;
}

/* The requested thread count cut to the useful parallelism (at least 1). */
static int bmf_threads_for(int requested, size_t useful)
{
    size_t n = requested < 1 ? 1 : (size_t)requested;
    if (useful < n) n = useful ? useful : 1;
    return (int)n;
}

/* Each pass sets the template parameters (REAL, its vector VEC and lane
 * mask VI, lanes VL, vector helper V(op), kernel name KFN(name)), then
 * kernels_instantiate.h includes the templates and clears the parameters. */
#define BMF_DTYPE f32
#define REAL float
#define VEC bmf_vf
#define VI bmf_vfi
#define VL BMF_VF_LANES
#define V(op) bmf_vf_##op
#include "kernels_instantiate.h"

#define BMF_DTYPE f64
#define REAL double
#define VEC bmf_vd
#define VI bmf_vdi
#define VL BMF_VD_LANES
#define V(op) bmf_vd_##op
#include "kernels_instantiate.h"

const bmf_kernel_table BMF_CAT(bmf_kernels_, BMF_ISA_NAME, ) = {
    BMF_CAT(rnn, _f32_, BMF_ISA_NAME),
    BMF_CAT(rnn, _f64_, BMF_ISA_NAME),
    BMF_CAT(attention, _f32_, BMF_ISA_NAME),
    BMF_CAT(attention, _f64_, BMF_ISA_NAME),
};
