/* attention_impl.h: exact softmax attention, flash-attention style.
 * A template: kernels_impl.h includes it once per (ISA, REAL).
 *
 * K is packed once per call (transposed into GEMM panels, one BMF_ATT_BK-key
 * tile after another) when there are enough query rows to repay it; with few
 * query rows (decoding) scores are dot products over K read in place.
 * Work item = (batch, head, block of BMF_ATT_BQ query rows, key chunk).  For
 * each item the keys are streamed in tiles of BMF_ATT_BK: S = Q K^T comes from
 * the shared GEMM tile (or the dot products), then
 * scale, mask and causality are applied inside the tile, the running max and
 * sum of each row are updated (online softmax), the output accumulator is
 * rescaled and P V is added.  The Lq x Lk score matrix never exists; each
 * thread holds one tile of S (and of V when Dv is not a multiple of VL) and
 * its output block; the packed K is about the size of K.  Work items are
 * handed out dynamically (bmf_next_item): each writes only its own rows or
 * partial slot, so who computes it does not change a bit.
 *
 * Masks (additive, or boolean bytes read in place) and causality REMOVE keys:
 * a removed key's score is -inf whatever its K (even NaN), and a V tile with a
 * non-finite value takes a path that skips removed keys, so a NaN reaches
 * exactly the rows that attend it.  Key tiles that causality rules out end the
 * loop; tiles the mask removes entirely are skipped.  When there are too few (batch, head, query block)
 * items to keep many threads busy (decoding: few query rows, long Lk), the keys
 * are also split into chunks whose partial (max, sum, output) are merged in
 * chunk order.  Chunking depends on the shape only, never on the thread
 * count, so results are bitwise identical for every n_threads.
 *
 * A row with no key left (all masked, causal above the diagonal, Lk = 0)
 * gives zeros; a NaN in a row's scores gives NaN in that row only.
 */

typedef struct {
    size_t Lq, Lk, B, heads, Dk, Dv, ld_q, ld_v; /* ld_q: row stride of Q and K */
    const REAL *Q, *K, *V;
    const REAL *mask;               /* additive mask, or NULL */
    const unsigned char *bool_mask; /* boolean mask (nonzero = may attend), or NULL */
    ptrdiff_t ms[4];
    int causal;
    REAL scale;
    REAL *out;
    size_t n_qblocks, n_chunks, chunk_keys, rows_per_item, Dv_pad;
    int pack_v;
    REAL *partials;      /* per item: m[rows], l[rows], O[rows][Dv_pad] */
    REAL *K_packed;      /* NULL, or per (batch, head) Lk_pad x Dk: BK-key tiles of panels */
    REAL *V_packed;      /* with K_packed: per (batch, head) Lk x Dv_pad, rows contiguous */
    size_t Lk_pad;       /* Lk rounded up to VL */
    unsigned char *v_tile_finite; /* with K_packed: per (batch, head, key tile) */
    size_t n_ktiles;
    char *scratch;
    size_t scratch_bytes; /* per thread */
    size_t next_pack, next_item, next_merge; /* dynamic work counters, from 0 */
} KFN(att_ctx);

/* True when the mask removes every key of rows [i0, i0+nq) x keys [j0, j0+nk):
 * all -inf (additive) or all false (boolean).  Exactly one mask is given. */
static int KFN(att_tile_masked)(const KFN(att_ctx) *c, const REAL *mask_bh,
                                const unsigned char *bool_bh, size_t i0, size_t nq,
                                size_t j0, size_t nk)
{
    for (size_t r = 0; r < nq; r++) {
        ptrdiff_t row = (ptrdiff_t)(i0 + r) * c->ms[2];
        for (size_t j = 0; j < nk; j++) {
            ptrdiff_t at = row + (ptrdiff_t)(j0 + j) * c->ms[3];
            if (bool_bh ? bool_bh[at] != 0 : !(mask_bh[at] == -(REAL)INFINITY)) return 0;
        }
    }
    return 1;
}

static REAL KFN(att_exp1)(REAL x) { return V(exp)(V(set1)(x))[0]; }

/* Rows of one (batch, head) are B*E elements apart, beyond what hardware
 * prefetchers follow across pages: fetch a row this many ahead. */
#define BMF_ATT_PREFETCH_ROWS 16
static inline void KFN(att_prefetch_row)(const REAL *row, size_t d)
{
    for (size_t j = 0; j < d; j += 64 / sizeof(REAL)) __builtin_prefetch(row + j);
}

/* True when rows [0, n) x columns [0, d) of A (row stride ld) are all finite:
 * x - x is 0 for a number and NaN for NaN or +-inf. */
static int KFN(att_rows_finite)(const REAL *A, size_t ld, size_t n, size_t d)
{
    VEC acc = V(set1)(0);
    size_t d_vec = d / VL * VL;
    for (size_t i = 0; i < n; i++) {
        const REAL *row = A + i * ld;
        if (i + BMF_ATT_PREFETCH_ROWS < n) /* in bounds: no pointer past the array */
            KFN(att_prefetch_row)(A + (i + BMF_ATT_PREFETCH_ROWS) * ld, d);
        for (size_t j = 0; j < d_vec; j += VL) {
            VEC v = V(load)(row + j);
            acc += v - v;
        }
        for (size_t j = d_vec; j < d; j++)
            if (!isfinite(row[j])) return 0;
    }
    return V(hsum)(acc) == 0;
}

/* Runs one work item; leaves the unnormalised output in O and the row max
 * and sum in m and l. */
static void KFN(att_item)(const KFN(att_ctx) *c, size_t item, REAL *m, REAL *l,
                          REAL *O, REAL *scratch)
{
    const size_t BK = BMF_ATT_BK, Dv_pad = c->Dv_pad;
    size_t chunk = item % c->n_chunks, rest = item / c->n_chunks;
    size_t qb = rest % c->n_qblocks, bh = rest / c->n_qblocks;
    size_t b = bh / c->heads, h = bh % c->heads;
    size_t i0 = qb * BMF_ATT_BQ;
    size_t nq = c->Lq - i0 < BMF_ATT_BQ ? c->Lq - i0 : BMF_ATT_BQ;
    size_t k0 = chunk * c->chunk_keys;
    size_t k1 = k0 + c->chunk_keys < c->Lk ? k0 + c->chunk_keys : c->Lk;
    ptrdiff_t diag = (ptrdiff_t)c->Lk - (ptrdiff_t)c->Lq; /* row i sees j <= i + diag */
    if (c->causal) {
        ptrdiff_t last = (ptrdiff_t)(i0 + nq - 1) + diag; /* last key any row sees */
        size_t stop = last < 0 ? 0 : (size_t)last + 1;
        if (stop < k1) k1 = stop;
    }
    const REAL *Qb = c->Q + i0 * c->ld_q + b * c->heads * c->Dk + h * c->Dk;
    const REAL *Kb = c->K + b * c->heads * c->Dk + h * c->Dk;
    const REAL *Vb = c->V + b * c->heads * c->Dv + h * c->Dv;
    ptrdiff_t mask_bh_at = (ptrdiff_t)b * c->ms[0] + (ptrdiff_t)h * c->ms[1];
    const REAL *mask_bh = c->mask ? c->mask + mask_bh_at : NULL;
    const unsigned char *bool_bh = c->bool_mask ? c->bool_mask + mask_bh_at : NULL;

    REAL *S = scratch;                        /* BQ x BK scores, then P */
    REAL *Vp = S + BMF_ATT_BQ * BK;           /* BK x Dv_pad when packing V per tile */
    size_t q_ld = c->ld_q;
    if (c->K_packed) { /* the block's Q rows, contiguous: in place they may be
                        * 4 KiB apart and evict each other from L1 */
        REAL *Qp = S + BMF_ATT_BQ * BK;
        for (size_t r = 0; r < nq; r++) memcpy(Qp + r * c->Dk, Qb + r * c->ld_q, c->Dk * sizeof(REAL));
        Qb = Qp;
        q_ld = c->Dk;
    }

    for (size_t r = 0; r < nq; r++) { m[r] = -(REAL)INFINITY; l[r] = 0; }
    memset(O, 0, nq * Dv_pad * sizeof(REAL));
    const VEC iota = V(iota)();

    for (size_t j0 = k0; j0 < k1; j0 += BK) {
        size_t nk = k1 - j0 < BK ? k1 - j0 : BK;
        size_t nk_panels = (nk + VL - 1) / VL, width = nk_panels * VL;
        if ((mask_bh || bool_bh) && KFN(att_tile_masked)(c, mask_bh, bool_bh, i0, nq, j0, nk))
            continue;
        if (c->K_packed) {
            const REAL *Kp = c->K_packed + (bh * c->Lk_pad + j0) * c->Dk;
            size_t tile_keys = c->Lk - j0 < BK ? c->Lk - j0 : BK; /* as packed */
            KFN(gemm_block)(0, nq, 0, nk_panels, (tile_keys + VL - 1) / VL, BMF_NV,
                            c->Dk, Qb, q_ld, Kp, 0,
                            S, BK, width, BMF_INIT_ZERO, NULL, 0);
        } else { /* few query rows: dot products, K read in place */
            for (size_t r = 0; r < nq; r++)
                for (size_t j = 0; j < nk; j++) {
                    const REAL *q = Qb + r * c->ld_q, *k = Kb + (j0 + j) * c->ld_q;
                    if (r == 0 && j + BMF_ATT_PREFETCH_ROWS < nk)
                        KFN(att_prefetch_row)(k + BMF_ATT_PREFETCH_ROWS * c->ld_q, c->Dk);
                    VEC acc = V(set1)(0);
                    for (size_t d = 0; d < c->Dk; d += VL)
                        acc += V(load_partial)(q + d, c->Dk - d) * V(load_partial)(k + d, c->Dk - d);
                    S[r * BK + j] = V(hsum)(acc);
                }
            for (size_t r = 0; r < nq; r++) /* defined lanes past nk (set to -inf below) */
                for (size_t j = nk; j < width; j++) S[r * BK + j] = 0;
        }
        /* V rows: packed contiguous (Dv_pad apart), or in place (ld_v apart) */
        const REAL *Vt = c->V_packed ? c->V_packed + (bh * c->Lk + j0) * Dv_pad : Vb + j0 * c->ld_v;
        size_t v_ld = c->V_packed ? Dv_pad : c->ld_v;
        int v_finite = c->v_tile_finite ? c->v_tile_finite[bh * c->n_ktiles + j0 / BK]
                                        : KFN(att_rows_finite)(Vt, c->ld_v, nk, c->Dv);
        const VEC scale = V(set1)(c->scale), neg_zero = V(set1)(-(REAL)0);
        for (size_t r = 0; r < nq; r++) {
            REAL *s = S + r * BK;
            /* keys j0 + col with col >= n_ok are out of the tile or causal */
            size_t n_ok = nk;
            if (c->causal) {
                ptrdiff_t lim = (ptrdiff_t)(i0 + r) + diag - (ptrdiff_t)j0 + 1;
                n_ok = lim <= 0 ? 0 : ((size_t)lim < nk ? (size_t)lim : nk);
            }
            ptrdiff_t row_at = (ptrdiff_t)(i0 + r) * c->ms[2] + (ptrdiff_t)j0 * c->ms[3];
            const REAL *mrow = mask_bh ? mask_bh + row_at : NULL;
            const unsigned char *brow = bool_bh ? bool_bh + row_at : NULL;
            VEC vmax = V(set1)(-(REAL)INFINITY);
            for (size_t col = 0; col < width; col += VL) {
                VEC sv = V(load)(s + col) * scale;
                if (mrow) {
                    VEC mv;
                    if (c->ms[3] == 1) {
                        mv = V(load_partial)(mrow + col, nk > col ? nk - col : 0);
                    } else {
                        mv = V(set1)(0);
                        for (size_t j = col; j < col + VL && j < nk; j++)
                            mv[j - col] = mrow[(ptrdiff_t)j * c->ms[3]];
                    }
                    /* -inf removes the key whatever its score (even NaN) */
                    sv = V(select)(mv == -(REAL)INFINITY, mv, sv + mv);
                } else if (brow) {
                    VI removed;
                    if (c->ms[3] == 1) {
                        removed = V(removed_bytes)(brow + col, nk > col ? nk - col : 0);
                    } else {
                        removed = (VI){0} == 0; /* all removed; kept lanes cleared below */
                        for (size_t j = col; j < col + VL && j < nk; j++)
                            removed[j - col] = brow[(ptrdiff_t)j * c->ms[3]] ? 0 : -1;
                    }
                    sv = V(select)(removed, V(set1)(-(REAL)INFINITY), sv);
                }
                if (col + VL > n_ok) /* past the tile's keys or the causal limit */
                    sv = V(select)(iota + (REAL)col >= (REAL)n_ok,
                                   V(set1)(-(REAL)INFINITY), sv);
                V(store)(s + col, sv);
                vmax = V(max)(vmax, sv);
            }
            REAL m_new = V(hmax)(vmax);
            if (m[r] > m_new) m_new = m[r];
            /* exp(-inf - -inf) would be NaN: a row with nothing yet uses 0. */
            REAL m_use = m_new == -(REAL)INFINITY ? 0 : m_new;
            VEC mu = V(set1)(m_use), vsum = V(set1)(0);
            for (size_t col = 0; col < width; col += VL) {
                VEC sv = V(load)(s + col), p = V(exp)(sv - mu);
                vsum += p;
                /* Mark removed keys with -0.0 (exp gives +0.0) for the P.V
                 * path that must not multiply them with a NaN in V. */
                if (!v_finite) p = V(select)(sv == -(REAL)INFINITY, neg_zero, p);
                V(store)(s + col, p);
            }
            REAL alpha = KFN(att_exp1)(m[r] - m_use);
            l[r] = l[r] * alpha + V(hsum)(vsum);
            m[r] = m_new;
            if (alpha != 1) {
                REAL *o = O + r * Dv_pad;
                for (size_t d = 0; d < Dv_pad; d += VL)
                    V(store)(o + d, V(load)(o + d) * alpha);
            }
        }
        size_t dv_panels = Dv_pad / VL, group = KFN(gemm_group)(nq);
        if (!v_finite) { /* rare: skip removed keys so their NaN/inf stays out */
            for (size_t r = 0; r < nq; r++)
                for (size_t j = 0; j < nk; j++) {
                    REAL p = S[r * BK + j];
                    if (signbit(p)) continue;
                    for (size_t d = 0; d < c->Dv; d++)
                        O[r * Dv_pad + d] += p * Vt[j * v_ld + d];
                }
        } else if (c->pack_v && !c->V_packed) { /* Dv not a multiple of VL: zero-padded panels */
            KFN(pack_panels)(Vt, c->ld_v, c->Dv, nk, 0, dv_panels, group, 0, Vp);
            KFN(gemm_block)(0, nq, 0, dv_panels, dv_panels, group, nk, S, BK, Vp, 0, O, Dv_pad,
                            Dv_pad, BMF_INIT_C, NULL, 0);
        } else {
            KFN(gemm_block)(0, nq, 0, dv_panels, dv_panels, group, nk, S, BK, Vt, v_ld, O,
                            Dv_pad, Dv_pad, BMF_INIT_C, NULL, 0);
        }
    }
}

/* out row = O / l, or zeros for a row that saw no key. */
static void KFN(att_write_rows)(const KFN(att_ctx) *c, size_t bh, size_t qb,
                                const REAL *l, const REAL *O)
{
    size_t b = bh / c->heads, h = bh % c->heads, i0 = qb * BMF_ATT_BQ;
    size_t nq = c->Lq - i0 < BMF_ATT_BQ ? c->Lq - i0 : BMF_ATT_BQ;
    for (size_t r = 0; r < nq; r++) {
        REAL *dst = c->out + (i0 + r) * c->ld_v + b * c->heads * c->Dv + h * c->Dv;
        REAL inv = l[r] == 0 ? 0 : 1 / l[r];
        for (size_t d = 0; d < c->Dv; d++) dst[d] = O[r * c->Dv_pad + d] * inv;
    }
}

static void KFN(att_body)(void *arg, int tid, int nt)
{
    KFN(att_ctx) *c = arg;
    REAL *scratch = (REAL *)(c->scratch + (size_t)tid * c->scratch_bytes);
    size_t rows = c->rows_per_item, n_blocks = c->B * c->heads * c->n_qblocks;
    size_t n_items = n_blocks * c->n_chunks;
    size_t part_len = rows * (2 + c->Dv_pad);
    if (c->K_packed) { /* pack K once: units of (batch, head, key tile) */
        for (size_t u; (u = bmf_next_item(&c->next_pack)) < c->B * c->heads * c->n_ktiles;) {
            size_t bh = u / c->n_ktiles, j0 = (u % c->n_ktiles) * BMF_ATT_BK;
            size_t nk = c->Lk - j0 < BMF_ATT_BK ? c->Lk - j0 : BMF_ATT_BK;
            const REAL *src = c->K + j0 * c->ld_q + bh * c->Dk; /* bh = b*heads + h */
            KFN(pack_panels)(src, c->ld_q, nk, c->Dk, 0, (nk + VL - 1) / VL, BMF_NV, 1,
                             c->K_packed + (bh * c->Lk_pad + j0) * c->Dk);
            const REAL *vsrc = c->V + j0 * c->ld_v + bh * c->Dv;
            REAL *vdst = c->V_packed + (bh * c->Lk + j0) * c->Dv_pad;
            for (size_t j = 0; j < nk; j++) {
                memcpy(vdst + j * c->Dv_pad, vsrc + j * c->ld_v, c->Dv * sizeof(REAL));
                for (size_t d = c->Dv; d < c->Dv_pad; d++) vdst[j * c->Dv_pad + d] = 0;
            }
            c->v_tile_finite[u] = (unsigned char)KFN(att_rows_finite)(vdst, c->Dv_pad, nk, c->Dv);
        }
        bmf_barrier(nt);
    }
    /* Handed out dynamically: balances causal work (heavier for late query
     * blocks) and threads slowed by other processes. */
    for (size_t item; (item = bmf_next_item(&c->next_item)) < n_items;) {
        if (c->n_chunks == 1) {
            REAL *m = scratch, *l = m + rows, *O = l + rows;
            KFN(att_item)(c, item, m, l, O, O + rows * c->Dv_pad);
            KFN(att_write_rows)(c, item / c->n_qblocks, item % c->n_qblocks, l, O);
        } else {
            REAL *m = c->partials + item * part_len, *l = m + rows, *O = l + rows;
            KFN(att_item)(c, item, m, l, O, scratch + part_len);
        }
    }
    if (c->n_chunks == 1) return;
    bmf_barrier(nt);
    /* Merge the chunks of each (batch, head, query block) in chunk order. */
    for (size_t blk; (blk = bmf_next_item(&c->next_merge)) < n_blocks;) {
        size_t i0 = blk % c->n_qblocks * BMF_ATT_BQ;
        size_t nq = c->Lq - i0 < BMF_ATT_BQ ? c->Lq - i0 : BMF_ATT_BQ; /* rows att_item set */
        REAL *M = scratch, *L = M + rows, *O = L + rows;
        for (size_t r = 0; r < nq; r++) { M[r] = -(REAL)INFINITY; L[r] = 0; }
        memset(O, 0, nq * c->Dv_pad * sizeof(REAL));
        for (size_t ch = 0; ch < c->n_chunks; ch++) {
            const REAL *m = c->partials + (blk * c->n_chunks + ch) * part_len;
            for (size_t r = 0; r < nq; r++) if (m[r] > M[r]) M[r] = m[r];
        }
        for (size_t ch = 0; ch < c->n_chunks; ch++) {
            const REAL *m = c->partials + (blk * c->n_chunks + ch) * part_len;
            const REAL *l = m + rows, *Oc = l + rows;
            for (size_t r = 0; r < nq; r++) {
                if (l[r] == 0 && m[r] == -(REAL)INFINITY) continue; /* saw no key */
                REAL w = KFN(att_exp1)(m[r] - M[r]);
                L[r] += l[r] * w;
                for (size_t d = 0; d < c->Dv_pad; d++)
                    O[r * c->Dv_pad + d] += Oc[r * c->Dv_pad + d] * w;
            }
        }
        KFN(att_write_rows)(c, blk / c->n_qblocks, blk % c->n_qblocks, L, O);
    }
}

/* Below this many (batch, head, query block) items the keys are split. */
#define BMF_ATT_SPLIT_ITEMS 64
#define BMF_ATT_MIN_CHUNK 512
/* Less work than this per thread does not repay a thread's start. */
#define BMF_ATT_MIN_MACS_PER_THREAD 1048576
/* From this many query rows on, packing K once pays for itself. */
#define BMF_ATT_PACK_MIN_Q 8

int KFN(attention)(size_t Lq, size_t Lk, size_t B, size_t heads, size_t Dk,
                   size_t Dv, const REAL *Q, const REAL *K, const REAL *Vm,
                   const void *mask, int mask_is_bool, const ptrdiff_t mask_strides[4],
                   int causal, double scale, REAL *out, int n_threads)
{
    if (Lq == 0 || B == 0 || heads == 0 || Dv == 0) return 0;
    KFN(att_ctx) c;
    memset(&c, 0, sizeof c);
    c.Lq = Lq; c.Lk = Lk; c.B = B; c.heads = heads; c.Dk = Dk; c.Dv = Dv;
    c.ld_q = B * heads * Dk;
    c.ld_v = B * heads * Dv;
    c.Q = Q; c.K = K; c.V = Vm; c.causal = causal;
    if (mask_is_bool) c.bool_mask = mask;
    else c.mask = mask;
    c.scale = (REAL)scale; c.out = out;
    if (mask) memcpy(c.ms, mask_strides, sizeof c.ms);
    c.n_qblocks = (Lq + BMF_ATT_BQ - 1) / BMF_ATT_BQ;
    c.rows_per_item = Lq < BMF_ATT_BQ ? Lq : BMF_ATT_BQ;
    c.Dv_pad = (Dv + VL - 1) / VL * VL;
    c.pack_v = Dv % VL != 0;
    size_t n_blocks = B * heads * c.n_qblocks;
    c.n_chunks = 1;
    c.chunk_keys = Lk ? Lk : 1;
    if (n_blocks < BMF_ATT_SPLIT_ITEMS && Lk >= 2 * BMF_ATT_MIN_CHUNK) {
        size_t want = (BMF_ATT_SPLIT_ITEMS + n_blocks - 1) / n_blocks;
        size_t most = Lk / BMF_ATT_MIN_CHUNK;
        size_t n = want < most ? want : most;
        c.chunk_keys = (Lk + n - 1) / n;
        c.chunk_keys = (c.chunk_keys + BMF_ATT_BK - 1) / BMF_ATT_BK * BMF_ATT_BK;
        c.n_chunks = (Lk + c.chunk_keys - 1) / c.chunk_keys;
    }
    size_t rows = c.rows_per_item, part_len = rows * (2 + c.Dv_pad);
    size_t n_items = n_blocks * c.n_chunks;
    /* With enough query rows K and V are packed once per call: K into GEMM
     * panels, V into contiguous zero-padded rows (in place, one head's rows
     * are B*E apart, a stride at which they all share a few cache sets). */
    int pack_kv = Lq >= BMF_ATT_PACK_MIN_Q && Lk > 0 && Dk > 0;
    size_t tile = BMF_ATT_BQ * BMF_ATT_BK + (pack_kv ? BMF_ATT_BQ * Dk                 /* Q block */
                                             : c.pack_v ? BMF_ATT_BK * c.Dv_pad : 0); /* V tile */
    c.scratch_bytes = ((part_len + tile) * sizeof(REAL) + 63) / 64 * 64;
    /* Threads only where each gets enough work to repay its start. */
    size_t macs = B * heads * Lq * (Lk ? Lk : 1) * (Dk + Dv);
    size_t useful = macs / BMF_ATT_MIN_MACS_PER_THREAD + 1;
    int nt = bmf_threads_for(n_threads, useful < n_items ? useful : n_items);
    c.scratch = bmf_alloc((size_t)nt * c.scratch_bytes);
    if (c.n_chunks > 1) c.partials = bmf_alloc(n_items * part_len * sizeof(REAL));
    c.n_ktiles = (Lk + BMF_ATT_BK - 1) / BMF_ATT_BK;
    if (pack_kv) {
        c.Lk_pad = (Lk + VL - 1) / VL * VL; /* about the size of K, not of whole tiles */
        c.K_packed = bmf_alloc(B * heads * c.Lk_pad * Dk * sizeof(REAL));
        c.V_packed = bmf_alloc(B * heads * Lk * c.Dv_pad * sizeof(REAL));
        c.v_tile_finite = bmf_alloc(B * heads * c.n_ktiles);
    }
    if (!c.scratch || (c.n_chunks > 1 && !c.partials)
        || (pack_kv && (!c.K_packed || !c.V_packed || !c.v_tile_finite))) {
        bmf_free(c.v_tile_finite);
        bmf_free(c.scratch);
        bmf_free(c.partials);
        bmf_free(c.K_packed);
        bmf_free(c.V_packed);
        return BMF_ERR_NOMEM;
    }
    bmf_parallel(nt, KFN(att_body), &c);
    bmf_free(c.scratch);
    bmf_free(c.partials);
    bmf_free(c.K_packed);
    bmf_free(c.V_packed);
    bmf_free(c.v_tile_finite);
    return 0;
}
