/* gemm_impl.h: the register-blocked matrix-product tile shared by the RNN
 * (input projection and recurrence) and attention (scores and P.V).
 * A template: kernels_impl.h includes it once per (ISA, REAL).
 *
 * C[m, n] = init[m, n] + sum_k A[m, k] * B[k, n], optionally through tanh.
 * B is read as panels of VL columns: element (k, n) of panel p is at
 * Bp[p * b_pstride + k * b_kstride + (n - p * VL)].  Packed weights use
 * b_pstride = K * VL, b_kstride = VL; a row-major matrix whose row length is a
 * multiple of VL can be read in place (b_pstride = VL, b_kstride = ld).
 *
 * Every element of C is one chain of multiply-adds over k = 0, 1, ..., K-1
 * starting from its init value, whatever the tile shape or thread that
 * computes it: results are bitwise independent of the blocking and of the
 * thread count.
 */

/* One tile of mr rows x nv panels; mr and nv are compile-time constants at
 * every call (see gemm_block), so the accumulators live in registers. */
BMF_ALWAYS_INLINE void KFN(gemm_tile)(
    const int mr, const int nv, size_t K, const REAL *A, size_t lda,
    const REAL *Bp, size_t b_pstride, size_t b_kstride, REAL *C, size_t ldc,
    size_t n_valid, int init, const REAL *bias, int apply_tanh)
{
    VEC acc[BMF_MR][BMF_NV1];
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++) {
            size_t left = n_valid > (size_t)v * VL ? n_valid - (size_t)v * VL : 0;
            if (init == BMF_INIT_C)
                acc[r][v] = V(load_partial)(C + r * ldc + (size_t)v * VL, left);
            else if (init == BMF_INIT_BIAS)
                acc[r][v] = V(load_partial)(bias + (size_t)v * VL, left);
            else
                acc[r][v] = V(set1)(0);
        }
    for (size_t k = 0; k < K; k++) {
        VEC bv[BMF_NV1];
        for (int v = 0; v < nv; v++)
            bv[v] = V(load)(Bp + (size_t)v * b_pstride + k * b_kstride);
        for (int r = 0; r < mr; r++) {
            VEC a = V(set1)(A[r * lda + k]);
            for (int v = 0; v < nv; v++) acc[r][v] += a * bv[v];
        }
    }
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++) {
            size_t left = n_valid > (size_t)v * VL ? n_valid - (size_t)v * VL : 0;
            VEC out = apply_tanh ? V(tanh)(acc[r][v]) : acc[r][v];
            if (left) V(store_partial)(C + r * ldc + (size_t)v * VL, out, left);
        }
}

/* Rows [m0, m1) x panels [p0, p1) of C; n_cols is C's valid width.  Tiles
 * are BMF_MR rows x BMF_NV panels; a single row takes up to BMF_NV1 panels
 * at once so that enough independent FMA chains hide the FMA latency. */
static void KFN(gemm_block)(size_t m0, size_t m1, size_t p0, size_t p1,
                            size_t K, const REAL *A, size_t lda,
                            const REAL *Bp, size_t b_pstride, size_t b_kstride,
                            REAL *C, size_t ldc, size_t n_cols, int init,
                            const REAL *bias, int apply_tanh)
{
    for (size_t i = m0; i < m1; i += BMF_MR) {
        int mr = (int)(m1 - i < BMF_MR ? m1 - i : BMF_MR);
        size_t nv_max = mr == 1 ? BMF_NV1 : BMF_NV;
        for (size_t p = p0; p < p1; p += nv_max) {
            int nv = (int)(p1 - p < nv_max ? p1 - p : nv_max);
            const REAL *a = A + i * lda;
            const REAL *b = Bp + p * b_pstride;
            REAL *c = C + i * ldc + p * VL;
            size_t n_valid = n_cols - p * VL;
            const REAL *bs = bias ? bias + p * VL : NULL;
#define BMF_TILE(MR_, NV_)                                                    \
    case (MR_) * 16 + (NV_):                                                  \
        KFN(gemm_tile)((MR_), (NV_), K, a, lda, b, b_pstride, b_kstride, c,   \
                       ldc, n_valid, init, bs, apply_tanh);                   \
        break;
            switch (mr * 16 + nv) {
                BMF_TILE(1, 1) BMF_TILE(1, 2) BMF_TILE(1, 3) BMF_TILE(1, 4)
                BMF_TILE(1, 5) BMF_TILE(1, 6) BMF_TILE(1, 7) BMF_TILE(1, 8)
                BMF_TILE(2, 1) BMF_TILE(2, 2) BMF_TILE(2, 3)
                BMF_TILE(3, 1) BMF_TILE(3, 2) BMF_TILE(3, 3)
                BMF_TILE(4, 1) BMF_TILE(4, 2) BMF_TILE(4, 3)
#if BMF_NV >= 4
                BMF_TILE(2, 4) BMF_TILE(3, 4) BMF_TILE(4, 4)
#endif
            default: break; /* unreachable: mr <= BMF_MR, nv <= nv_max */
            }
#undef BMF_TILE
        }
    }
}

/* Packs rows [VL*p0, VL*p1) of the row-major N x K matrix W (row stride ldw)
 * as panels of VL rows: packed[p][k][j] = W[p*VL + j][k], zero past row N.
 * Multiplying by the packed W computes X . W^T (the torch weight layout). */
static void KFN(pack_panels)(const REAL *W, size_t ldw, size_t N, size_t K,
                             size_t p0, size_t p1, REAL *packed)
{
    for (size_t p = p0; p < p1; p++) {
        REAL *dst = packed + p * K * VL;
        for (size_t j = 0; j < (size_t)VL; j++) {
            size_t n = p * VL + j;
            if (n < N)
                for (size_t k = 0; k < K; k++) dst[k * VL + j] = W[n * ldw + k];
            else
                for (size_t k = 0; k < K; k++) dst[k * VL + j] = 0;
        }
    }
}
