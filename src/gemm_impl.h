/* gemm_impl.h: the register-blocked matrix-product tile shared by the RNN
 * (input projection and recurrence) and attention (scores and P.V), and on
 * AVX-512 tall tiles (16 rows x 1 panel, 8 rows x 2) for the RNN's batched
 * steps.
 * A template: kernels_impl.h includes it once per (ISA, REAL).
 *
 * C[m, n] = init[m, n] + sum_k A[m, k] * B[k, n], optionally through tanh,
 * or times a scale per row (attention's 1 / l, as the result is stored).
 * B is read as panels of VL columns, in one of two layouts:
 *  - packed (b_ld == 0): panels are grouped `group` at a time and a group's
 *    panels sit side by side for each k, so a tile reads ONE contiguous
 *    stream: panel p (in a group starting at panel g, of width w panels) has
 *    element (k, n) at Bp[g*K*VL + k*w*VL + (p - g)*VL + n - p*VL].  Groups
 *    start at the first panel the caller passes, every `group` panels.
 *  - row-major (b_ld > 0): element (k, n) at Bp[k*b_ld + n] (row length a
 *    multiple of VL, e.g. V with Dv % VL == 0 read in place).
 *
 * Every element of C is one chain of multiply-adds over k = 0, 1, ..., K-1
 * from its init value, or in a one-row tile two chains (even and odd k)
 * added at the end; with k_down a one-row tile runs both chains from the
 * top k down instead.  Which tile a row falls in depends on the rows a
 * caller passes (for the RNN's batch split, each thread's own), but only
 * whether a row is summed alone depends on anything, and that on the shape
 * only (a product of one row; gemm_rows never leaves a lone row): every tile
 * of several rows gives the same chains, so results are bitwise
 * independent of the thread count.
 */

/* One tile of mr rows x nv panels; mr and nv are compile-time constants at
 * every call (gemm_block's one-row cases, the gemm_tile_MRxNV functions), so
 * the accumulators live in registers.  The loops that start and store them
 * are unrolled in full, and a whole tile stores without the partial-vector
 * path; with the tiles as functions of their own (below), that took the
 * accumulators' start and end and A's row offsets off the stack. */
BMF_ALWAYS_INLINE void KFN(gemm_tile)(
    const int mr, const int nv, size_t K, const REAL *A, size_t lda,
    const REAL *Bp, size_t b_kstride, REAL *C, size_t ldc, size_t n_valid,
    int init, const REAL *bias, int apply_tanh, const REAL *row_scale, int k_down)
{
    VEC acc[BMF_MR][BMF_NV1];
    const int whole = n_valid >= (size_t)nv * VL; /* no partial vector */
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++) {
            size_t left = whole ? VL : n_valid > (size_t)v * VL ? n_valid - (size_t)v * VL : 0;
            if (init == BMF_INIT_C)
                acc[r][v] = V(load_partial)(C + r * ldc + (size_t)v * VL, left);
            else if (init == BMF_INIT_BIAS)
                acc[r][v] = V(load_partial)(bias + (size_t)v * VL, left);
            else
                acc[r][v] = V(set1)(0);
        }
    size_t k = 0;
    if (mr == 1) {
        /* A lone row has only nv chains of dependent FMAs, too few to hide
         * their latency: even k go to acc, odd k to a second set, added at
         * the end.  Every 1-row tile does this, whatever its nv. */
        VEC odd[BMF_NV1];
        for (int v = 0; v < nv; v++) odd[v] = V(set1)(0);
        /* (both loops 4 k an iteration: rnn-long 0.94-0.97x of the time, its
         * float64 0.97x) */
#pragma GCC unroll 2
        for (size_t top = K; k_down && top > 0; top -= 2) { /* top == 1 ends below */
            VEC a0 = V(set1)(A[top - 1]);
            for (int v = 0; v < nv; v++)
                acc[0][v] = V(fma)(a0, V(load)(Bp + (top - 1) * b_kstride + (size_t)v * VL), acc[0][v]);
            if (top == 1) break;
            VEC a1 = V(set1)(A[top - 2]);
            for (int v = 0; v < nv; v++)
                odd[v] = V(fma)(a1, V(load)(Bp + (top - 2) * b_kstride + (size_t)v * VL), odd[v]);
        }
        if (k_down) k = K;
#pragma GCC unroll 2
        for (; k + 1 < K; k += 2) {
            VEC a0 = V(set1)(A[k]), a1 = V(set1)(A[k + 1]);
            for (int v = 0; v < nv; v++) {
                acc[0][v] = V(fma)(a0, V(load)(Bp + k * b_kstride + (size_t)v * VL), acc[0][v]);
                odd[v] = V(fma)(a1, V(load)(Bp + (k + 1) * b_kstride + (size_t)v * VL), odd[v]);
            }
        }
        if (k < K) {
            VEC a0 = V(set1)(A[k]);
            for (int v = 0; v < nv; v++)
                acc[0][v] = V(fma)(a0, V(load)(Bp + k * b_kstride + (size_t)v * VL), acc[0][v]);
            k++;
        }
        for (int v = 0; v < nv; v++) acc[0][v] += odd[v];
    }
    /* k four at a time: fewer pointer steps and branches per FMA.  ab_kernels
     * against the loop rolled, the same bits: rnn-batch64 0.90-0.98x of the
     * time, attn-long 0.96-0.98x, rnn-long 0.94x (its input projection);
     * 8 at a time no better. */
#pragma GCC unroll 4
    for (; k < K; k++) {
        VEC bv[BMF_NV1];
        for (int v = 0; v < nv; v++) bv[v] = V(load)(Bp + k * b_kstride + (size_t)v * VL);
        for (int r = 0; r < mr; r++) {
            VEC a = V(set1)(A[r * lda + k]);
            for (int v = 0; v < nv; v++) acc[r][v] = V(fma)(a, bv[v], acc[r][v]);
        }
    }
    /* Both loops unrolled in full (mr and nv are constants), so that every
     * accumulator is a register: a loop left rolled makes the compiler keep
     * them all in memory after every tile (perf annotate), which cost the
     * attention's score tiles (K = 64) about a tenth of their time and the
     * RNN's steps 6-9%. */
    if (apply_tanh) {
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
            for (int v = 0; v < nv; v++) acc[r][v] = V(tanh)(acc[r][v]);
    }
    if (row_scale) {
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
            for (int v = 0; v < nv; v++) acc[r][v] *= V(set1)(row_scale[r]);
    }
    if (whole) {
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
            for (int v = 0; v < nv; v++) V(store)(C + r * ldc + (size_t)v * VL, acc[r][v]);
        return;
    }
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++) {
            size_t left = n_valid > (size_t)v * VL ? n_valid - (size_t)v * VL : 0;
            if (left) V(store_partial)(C + r * ldc + (size_t)v * VL, acc[r][v], left);
        }
}

/* Each tile of several rows is a function of its own, not inlined into
 * gemm_block's switch: there, among all the other tiles, the compiler kept
 * the row offsets of A on the stack and loaded them again at every k (four
 * loads beside the 20 FMAs of a 5 x 4 step; perf annotate).  With gemm_tile's
 * unrolled start and whole-tile stores, ab_kernels against the inlined tiles,
 * the same bits: attn-long 0.96-1.00x of the time, attn-8heads 0.95-0.98x,
 * AVX2 attn-long 0.955x; the RNN within the noise (rnn-batch64 0.955-1.05x).
 * The functions alone, or the unrolling and stores alone: 1.00x.  The
 * one-row tiles (the batch-1 RNN's steps) stay inline. */
#define BMF_TILE_FN(MR_, NV_)                                                          \
    static __attribute__((noinline)) void KFN(gemm_tile_##MR_##x##NV_)(                \
        size_t K, const REAL *A, size_t lda, const REAL *Bp, size_t b_kstride, REAL *C, \
        size_t ldc, size_t n_valid, int init, const REAL *bias, int apply_tanh,         \
        const REAL *row_scale, int k_down)                                              \
    {                                                                                   \
        KFN(gemm_tile)(MR_, NV_, K, A, lda, Bp, b_kstride, C, ldc, n_valid, init, bias, \
                       apply_tanh, row_scale, k_down);                                  \
    }
BMF_MULTI_ROW_TILES(BMF_TILE_FN)
#undef BMF_TILE_FN

/* True when B's panels [p0, p1) (K deep) pass BMF_GEMM_B_CACHED_BYTES (half
 * the L2, 1 MiB on the development VM: beside A, C and the rest, more does
 * not stay): streamed once per row tile, they would come from memory each
 * time, so gemm_block and gemm_block_tall take them a group or a slice at a
 * time for several rows instead.  Only the tiles' order changes, never a bit. */
static inline int KFN(gemm_b_past_cache)(size_t K, size_t p0, size_t p1)
{
    return K * (p1 - p0) * VL * sizeof(REAL) > BMF_GEMM_B_CACHED_BYTES;
}

/* Panels per packed group for a product with M rows: a lone row takes more
 * panels at once, so that enough independent FMA chains hide the latency. */
static inline size_t KFN(gemm_group)(size_t M) { return M == 1 ? BMF_NV1 : BMF_NV; }

/* Rows [m0, m1) x panels [p0, p1) of C; n_cols is C's valid width.  Tiles
 * are up to BMF_MR rows x BMF_NV panels, or 1 row x `group` panels.  A packed
 * B was laid out for panels [p0, packed_p1) (packed_p1 >= p1): the group
 * widths, hence the strides, come from the layout, not from p1.
 * k_down (one-row tiles only): see gemm_tile.  The RNN's one-row steps
 * alternate it, so that each step starts on the rows of B the last one read
 * last, still in L1 (the rest streams from L2).  That holds while a thread's
 * panels form one group (up to BMF_NV1: e.g. rnn-long's 8 per thread on 2
 * threads); groups themselves are always taken in order.
 * Only k in [kb, ke) of the K-long sum is taken: from kb > 0 on, each
 * element starts from the partial sum an earlier call left in C, and tanh
 * waits for ke == K (kb < ke, or kb == ke == 0).  A tile of several rows
 * (one chain per element) then gives the bits of one pass; a one-row tile
 * (two chains) must take [0, K).  row_scale (NULL: none) multiplies row i
 * of the finished sums by row_scale[i] (with ke == K, and never with tanh). */
static void KFN(gemm_block)(size_t m0, size_t m1, size_t p0, size_t p1,
                            size_t packed_p1, size_t group, size_t K, size_t kb, size_t ke,
                            const REAL *A, size_t lda,
                            const REAL *Bp, size_t b_ld, REAL *C, size_t ldc,
                            size_t n_cols, int init, const REAL *bias,
                            int apply_tanh, const REAL *row_scale, int k_down)
{
    /* Each row tile streams all of B's panels [p0, p1): past the cache
     * (gemm_b_past_cache), each group of panels is taken for all the rows
     * instead (read from memory once, then from L2). */
    if (m1 - m0 > BMF_MR && p1 - p0 > group && KFN(gemm_b_past_cache)(K, p0, p1)) {
        for (size_t g = p0; g < p1; g += group)
            KFN(gemm_block)(m0, m1, g, p1 - g < group ? p1 : g + group, packed_p1, group, K, kb,
                            ke, A, lda, Bp, b_ld, C, ldc, n_cols, init, bias, apply_tanh,
                            row_scale, k_down);
        return;
    }
    for (size_t i = m0; i < m1; i += BMF_MR) {
        int mr = (int)(m1 - i < BMF_MR ? m1 - i : BMF_MR);
        if (mr == 1 && (kb || ke != K)) abort(); /* its two chains: whole sums only */
        for (size_t g = p0; g < p1; g += group) {
            size_t width = p1 - g < group ? p1 - g : group;
            size_t laid = packed_p1 - g < group ? packed_p1 - g : group;
            const REAL *bg = b_ld ? Bp + g * VL : Bp + g * K * VL;
            size_t kstride = b_ld ? b_ld : laid * VL;
            size_t step = mr == 1 ? width : BMF_NV;
            for (size_t v0 = 0; v0 < width; v0 += step) {
                int nv = (int)(width - v0 < step ? width - v0 : step);
                size_t col = (g + v0) * VL;
                const REAL *a = A + i * lda + kb;
                const REAL *b = bg + v0 * VL + kb * kstride;
                REAL *c = C + i * ldc + col;
                size_t n_valid = n_cols > col ? n_cols - col : 0;
                const REAL *bs = bias ? bias + col : NULL;
/* (the arguments of every tile: a one-row tile has kb == 0 and ke == K) */
#define BMF_TILE_ARGS                                                          \
    ke - kb, a, lda, b, kstride, c, ldc, n_valid, kb ? BMF_INIT_C : init, bs,   \
        ke == K && apply_tanh, ke == K && row_scale ? row_scale + i : NULL, k_down
#define BMF_TILE1(NV_)                                                        \
    case 16 + (NV_):                                                          \
        KFN(gemm_tile)(1, (NV_), BMF_TILE_ARGS);                              \
        break;
#define BMF_TILE(MR_, NV_)                                                    \
    case (MR_) * 16 + (NV_):                                                  \
        KFN(gemm_tile_##MR_##x##NV_)(BMF_TILE_ARGS);                          \
        break;
                switch (mr * 16 + nv) {
                    BMF_TILE1(1) BMF_TILE1(2) BMF_TILE1(3) BMF_TILE1(4)
                    BMF_TILE1(5) BMF_TILE1(6) BMF_TILE1(7) BMF_TILE1(8)
                    BMF_MULTI_ROW_TILES(BMF_TILE)
                default: abort(); /* every (mr, nv) the loops make has a case */
                }
#undef BMF_TILE
#undef BMF_TILE1
#undef BMF_TILE_ARGS
            }
        }
    }
}

/* Packs W^T for X . W^T, where W is row-major N x K (row stride ldw): the
 * panels [p0, p1) of VL rows of W, grouped `group` at a time from p0 (the
 * layout gemm_block reads with b_ld == 0), zero past row N.  With
 * transpose == 0 it packs W itself (K x N, row stride ldw) the same way,
 * for X . W (attention's P . V). */
static void KFN(pack_panels)(const REAL *W, size_t ldw, size_t N, size_t K,
                             size_t p0, size_t p1, size_t group, int transpose,
                             REAL *packed)
{
    for (size_t g = p0; g < p1; g += group) {
        size_t width = p1 - g < group ? p1 - g : group, row = width * VL;
        REAL *dst = packed + g * K * VL;
        size_t n0 = g * VL, valid = N > n0 ? (N - n0 < row ? N - n0 : row) : 0;
        if (transpose) {
            /* VL x VL blocks of W (VL of its rows, VL consecutive k) are
             * transposed in registers: a scalar copy with a stride would cost
             * as much as the product itself for short sequences. */
            for (size_t p = 0; p < row; p += VL)
                for (size_t k0 = 0; k0 < K; k0 += VL) {
                    VEC blk[VL];
                    for (size_t c = 0; c < VL; c++)
                        blk[c] = p + c < valid ? V(load_partial)(W + (n0 + p + c) * ldw + k0, K - k0)
                                               : V(set1)(0);
                    V(transpose)(blk);
                    for (size_t t = 0; t < VL && k0 + t < K; t++)
                        V(store)(dst + (k0 + t) * row + p, blk[t]);
                }
        } else {
            for (size_t k = 0; k < K; k++) { /* in order; columns past N are 0 */
                REAL *d = dst + k * row;
                for (size_t c = 0; c < valid; c++) d[c] = W[k * ldw + n0 + c];
                for (size_t c = valid; c < row; c++) d[c] = 0;
            }
        }
    }
}

#if BMF_MR_TALL
/* True when tall tiles for the first rows of an M-row product (the rest in
 * gemm_block's tiles) should beat gemm_block's tiles for all M rows.  The
 * estimate, in cycles per k for 4 panels: an mr-row tile of 4 panels does
 * 4 mr FMAs, 2 a cycle, but reads 256 bytes of B per k, from L2 at about 32
 * bytes a cycle, so it costs max(2 mr, 8); 16 rows of tall tiles cost 32 at
 * FMA peak, 33 as measured (rnn-batch64's 64 rows: 3-4% slower in tall tiles,
 * 132 against 128 here).  Tall tiles pay where 5-row tiles leave a small
 * remainder among few rows: rnn-batch16 (5 + 5 + 3 + 3 rows: 36 against 33)
 * and B = 32 (68 against 66). */
static inline size_t KFN(gemm_tiles_cost)(size_t rows) /* gemm_rows' tiles, as above */
{
    size_t rest = rows % BMF_MR;
    if (rows > 1 && rest == 1) return (rows / BMF_MR - 1) * 2 * BMF_MR + 2 * 8; /* ..., 3 + 3 */
    return rows / BMF_MR * 2 * BMF_MR + (rest ? (2 * rest > 8 ? 2 * rest : 8) : 0);
}
static inline int KFN(gemm_tall_pays)(size_t M)
{
    return M >= BMF_MR_TALL
           && M / BMF_MR_TALL * 33 + KFN(gemm_tiles_cost)(M % BMF_MR_TALL) < KFN(gemm_tiles_cost)(M);
}

/* How many of M (>= 2) rows, from the first, gemm_block_tall takes: whole
 * 16-row blocks where they pay, then one 8-row block (tiles of 8 rows x 2
 * panels, 17 by the estimate above) for a remainder of 8 to 15 rows where
 * that estimate says it pays: 8, 11, 12 and 13 rows.  8 rows in one block
 * instead of 5 + 3: 0.87x of the time (ab_kernels rnn "200 8 128 256", one
 * thread), as B streams from L2 once, not twice; 14 rows as 8 + 3 + 3
 * instead of 5 + 5 + 4, though, 1.36x (B = 28 on two threads).  Never
 * leaves a lone row (gemm_rows' tiles may not end on one). */
static inline size_t KFN(gemm_tall_rows)(size_t M)
{
    size_t tall = KFN(gemm_tall_pays)(M) ? M / BMF_MR_TALL * BMF_MR_TALL : 0;
    size_t rest = M - tall, half = BMF_MR_TALL / 2;
    if (rest >= half && rest < BMF_MR_TALL && rest != half + 1
        && 17 + KFN(gemm_tiles_cost)(rest - half) < KFN(gemm_tiles_cost)(rest))
        tall += half;
    if (M - tall == 1) abort(); /* gemm_tall_pays never leaves 16 j + 1 rows */
    return tall;
}

/* The tall tile: BMF_MR_TALL rows x ONE panel, for products with few rows
 * (the RNN's batched steps).  Its A comes packed k-major, Ap[k * BMF_MR_TALL
 * + r], so that every broadcast is a constant offset from one pointer (with
 * A in place the 16 row offsets do not fit the integer registers, and
 * reloading them each k made it slower than the 5 x 4 tile).  Per k it reads
 * one vector of B: a 16-row block streams its B panels from L2 once, where
 * 5-row tiles stream them once per tile (rnn-batch16's 16 rows: 4 times,
 * the last for a lone row).  Each element is one chain over k from its init,
 * as in gemm_tile.  The same code makes the 8-row tiles of 2 panels (or 1,
 * for an odd last panel) of an 8-row block: 8 broadcasts and 2 loads per 16
 * FMAs.  Each shape is a function of its own, not inlined: inside
 * gemm_block the compiler spilled an accumulator to the stack and back at
 * every k. */
BMF_ALWAYS_INLINE void KFN(gemm_tile_tall_any)(
    const int rows, const int nv, size_t K, const REAL *Ap, size_t a_kstride, const REAL *Bp,
    size_t b_kstride, REAL *C, size_t ldc, size_t n_valid, int init, const REAL *bias,
    int apply_tanh)
{
    VEC acc[BMF_MR_TALL][2];
    size_t left[2];
    for (int v = 0; v < nv; v++) { /* valid lanes of panel v: 0 to VL */
        size_t before = (size_t)v * VL, rest = n_valid > before ? n_valid - before : 0;
        left[v] = rest < VL ? rest : VL;
    }
#pragma GCC unroll 16
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < nv; v++) {
            size_t col = (size_t)v * VL;
            acc[r][v] = init == BMF_INIT_C      ? V(load_partial)(C + r * ldc + col, left[v])
                        : init == BMF_INIT_BIAS ? V(load_partial)(bias + col, left[v])
                                                : V(set1)(0);
        }
    /* (k four at a time, as gemm_tile's: rnn-batch16 0.92x of the time on two threads) */
#pragma GCC unroll 4
    for (size_t k = 0; k < K; k++) {
        VEC b[2];
        for (int v = 0; v < nv; v++) b[v] = V(load)(Bp + k * b_kstride + (size_t)v * VL);
#pragma GCC unroll 16
        for (int r = 0; r < rows; r++) {
            VEC a = V(set1)(Ap[k * a_kstride + r]);
            for (int v = 0; v < nv; v++) acc[r][v] = V(fma)(a, b[v], acc[r][v]);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < nv; v++) {
            if (apply_tanh) acc[r][v] = V(tanh)(acc[r][v]);
            if (left[v]) V(store_partial)(C + r * ldc + (size_t)v * VL, acc[r][v], left[v]);
        }
}
__attribute__((noinline)) static void KFN(gemm_tile_tall)(
    size_t K, const REAL *Ap, const REAL *Bp, size_t b_kstride, REAL *C, size_t ldc,
    size_t n_valid, int init, const REAL *bias, int apply_tanh)
{
    KFN(gemm_tile_tall_any)(BMF_MR_TALL, 1, K, Ap, BMF_MR_TALL, Bp, b_kstride, C, ldc, n_valid,
                            init, bias, apply_tanh);
}
/* The 8-row block: its rows packed k-major in whole panels (float32: 16
 * lanes a k, the last 8 of them zeros) */
#define BMF_HALF_TALL (BMF_MR_TALL / 2)
#define BMF_HALF_KSTRIDE ((BMF_HALF_TALL + VL - 1) / VL * VL)
__attribute__((noinline)) static void KFN(gemm_tile_half2)(
    size_t K, const REAL *Ap, const REAL *Bp, size_t b_kstride, REAL *C, size_t ldc,
    size_t n_valid, int init, const REAL *bias, int apply_tanh)
{
    KFN(gemm_tile_tall_any)(BMF_HALF_TALL, 2, K, Ap, BMF_HALF_KSTRIDE, Bp, b_kstride, C, ldc,
                            n_valid, init, bias, apply_tanh);
}
__attribute__((noinline)) static void KFN(gemm_tile_half1)(
    size_t K, const REAL *Ap, const REAL *Bp, size_t b_kstride, REAL *C, size_t ldc,
    size_t n_valid, int init, const REAL *bias, int apply_tanh)
{
    KFN(gemm_tile_tall_any)(BMF_HALF_TALL, 1, K, Ap, BMF_HALF_KSTRIDE, Bp, b_kstride, C, ldc,
                            n_valid, init, bias, apply_tanh);
}

/* gemm_block's product for the rows [m0, m1) in tall tiles (16-row blocks,
 * then one 8-row block where 8 or more rows are left; the arguments as
 * gemm_block's, B packed; k_down does not apply); returns the first row it
 * left, for gemm_block; k in [kb, ke) as there.  K is taken in slices whose
 * packed A (16 KiB a block; up to 2 blocks, 32 KiB, where B's panels pass
 * BMF_GEMM_B_CACHED_BYTES) stays in L1 beside the B panels it meets; between slices
 * the partial sums wait in C, exactly, so each element's chain is the same
 * as in one pass.  Flattened so that pack_panels is inlined here: called, it
 * made rnn-batch16 1.02-1.05x slower (the tiles stay calls: noinline). */
__attribute__((flatten)) static size_t KFN(gemm_block_tall)(size_t m0, size_t m1, size_t p0, size_t p1,
                                   size_t packed_p1, size_t group, size_t K, size_t kb, size_t ke,
                                   const REAL *A, size_t lda, const REAL *Bp, REAL *C,
                                   size_t ldc, size_t n_cols, int init, const REAL *bias,
                                   int apply_tanh)
{
    enum { KC = 16384 / (BMF_MR_TALL * sizeof(REAL)) }; /* a multiple of VL */
    /* row blocks that meet each slice of B together: the tall rows
     * gemm_tall_rows picks come to 32 at most (and 48 would take 2 + 1);
     * each block's packed A is 16 KiB of stack (musl's threads have 128) */
    enum { BLOCKS = 2 };
    REAL Ap[BLOCKS][KC * BMF_MR_TALL] __attribute__((aligned(64)));
    /* Past the cache (gemm_b_past_cache), up to BLOCKS row blocks meet each
     * slice of B together (B then comes from memory once); otherwise one at
     * a time (two sharing a slice of B measured 1.03x the time with B in L2:
     * their packed A crowd L1). */
    size_t i = m0, blocks = KFN(gemm_b_past_cache)(K, p0, p1) ? BLOCKS : 1;
    while (i + BMF_HALF_TALL <= m1) {
        /* up to `blocks` blocks (16 rows, the last maybe 8) from row i */
        size_t start[BLOCKS], rows[BLOCKS], nb = 0, next = i;
        while (nb < blocks && next + BMF_HALF_TALL <= m1) {
            start[nb] = next;
            rows[nb] = next + BMF_MR_TALL <= m1 ? BMF_MR_TALL : BMF_HALF_TALL;
            next += rows[nb++];
            if (rows[nb - 1] != BMF_MR_TALL) break;
        }
        for (size_t k0 = kb; k0 == 0 || k0 < ke; k0 += KC) {
            size_t kc = ke - k0 < KC ? ke - k0 : KC;
            /* each block's slice as ONE group of panels: Ap[k * a_kstride + r] */
            for (size_t j = 0; j < nb; j++) {
                size_t a_kstride = rows[j] == BMF_MR_TALL ? BMF_MR_TALL : BMF_HALF_KSTRIDE;
                KFN(pack_panels)(A + start[j] * lda + k0, lda, rows[j], kc, 0, a_kstride / VL,
                                 a_kstride / VL, 1, Ap[j]);
            }
            int first = k0 == 0, last = k0 + kc >= K;
            for (size_t g = p0; g < p1; g += group) {
                size_t width = p1 - g < group ? p1 - g : group;
                size_t laid = packed_p1 - g < group ? packed_p1 - g : group;
                const REAL *bg = Bp + g * K * VL + k0 * laid * VL;
                for (size_t j = 0; j < nb; j++) { /* the group's slice from L1 or L2 after the first */
                    int full = rows[j] == BMF_MR_TALL;
                    for (size_t v = 0; v < width; v += full ? 1 : 2) {
                        size_t col = (g + v) * VL;
                        (full               ? KFN(gemm_tile_tall)
                         : v + 1 < width ? KFN(gemm_tile_half2)
                                             : KFN(gemm_tile_half1))(
                            kc, Ap[j], bg + v * VL, laid * VL, C + start[j] * ldc + col, ldc,
                            n_cols > col ? n_cols - col : 0, first ? init : BMF_INIT_C,
                            bias ? bias + col : NULL, last && apply_tanh);
                    }
                }
            }
        }
        i = next;
    }
    return i;
}

#endif

/* Rows [m0, m1) of gemm_block's product (B packed, k_down off) in tiles of
 * several rows only, so that every element is ONE chain over k whichever
 * rows a caller passes: where 5-row tiles would end on a lone row, the
 * last 6 rows go as 3 + 3 (on AVX2 and the baseline, 5 as 2 + 3).  Only a
 * range of one row takes a one-row tile (two chains; k in [0, K) then). */
static void KFN(gemm_rows)(size_t m0, size_t m1, size_t p0, size_t p1, size_t packed_p1,
                           size_t group, size_t K, size_t kb, size_t ke, const REAL *A,
                           size_t lda, const REAL *Bp, REAL *C, size_t ldc, size_t n_cols,
                           int init, const REAL *bias, int apply_tanh)
{
    size_t m = m0;
#if BMF_MR_TALL
    if (m1 - m0 >= 2)
        m = KFN(gemm_block_tall)(m0, m0 + KFN(gemm_tall_rows)(m1 - m0), p0, p1, packed_p1, group, K,
                                 kb, ke, A, lda, Bp, C, ldc, n_cols, init, bias, apply_tanh);
#endif
    size_t rest = m1 - m, cut = m1;
    if (rest > 1 && rest % BMF_MR == 1) cut = m1 - (BMF_MR + 1); /* then two tiles */
    size_t halves[3] = {cut, cut + (m1 - cut) / 2, m1};
    KFN(gemm_block)(m, cut, p0, p1, packed_p1, group, K, kb, ke, A, lda, Bp, 0, C, ldc, n_cols,
                    init, bias, apply_tanh, NULL, 0);
    for (int h = 0; h < 2; h++)
        KFN(gemm_block)(halves[h], halves[h + 1], p0, p1, packed_p1, group, K, kb, ke, A, lda, Bp,
                        0, C, ldc, n_cols, init, bias, apply_tanh, NULL, 0);
}
