/* attention_impl.h: exact softmax attention, flash-attention style.
 * A template: kernels_impl.h includes it once per (ISA, REAL).
 *
 * Three ways through, chosen by the number of query rows and keys (see
 * where attention() sets key_major and q_lanes):
 *  - Tiled (more than 32 query rows, or 8-32 with fewer than 16 keys per
 *    row; see BMF_ATT_TILED_MIN_Q and after): K is packed once per call
 *    into GEMM panels and V into contiguous zero-padded rows (in place one head's rows
 *    are B*E elements apart, a stride at which they share a few cache sets).
 *    Work item = (batch, head, block of BMF_ATT_BQ query rows, key chunk).
 *    For each item the keys are streamed in tiles of BMF_ATT_BK: S = Q K^T
 *    and O += P V come from the shared GEMM tile (a tile that removes no
 *    key computes its exps inside P.V: att_tile_exp_pv).  Many (batch, head)
 *    pairs per thread take whole pairs as items instead (bh_major): the
 *    thread that packs a pair's K and V runs all its query blocks, and
 *    (where all pairs' copies pass 1 MiB) packs its next pair over the same
 *    buffer, its slot: the copies then take a few MiB, not the size of K
 *    and V, fresh pages at every call beyond what the workspace keeps.
 *  - Query lanes (8-32 query rows, at least 16 keys per row): key-major's
 *    items and key tiles, the query rows in vector lanes, K and V read in
 *    place, nothing packed (att_item_qlanes).
 *  - Key-major (decoding: a few query rows, long Lk; or up to 15 rows over
 *    more than 64 MiB of K and V): nothing is packed;
 *    work item = (group of (batch, head) pairs, key chunk), and each key row
 *    of K and of V is read once, as one contiguous segment holding all the
 *    group's heads, in key order: a stream the memory system can keep up
 *    with, where reading one head at a time jumps B*E elements per key.
 * All apply scale, mask and causality inside the tile and update each
 * row's running max and sum (online softmax, att_softmax_rows or
 * att_ql_softmax), rescaling
 * the output accumulator.  The Lq x Lk score matrix never exists.  Work items
 * are handed out dynamically, each thread taking its own range first
 * (bmf_next_item_affine: a repeated call finds its packed K and V and its
 * output rows in its own cache).  Each item writes only its own
 * rows or partial slot, so who computes it does not change a bit.
 *
 * Masks (additive, or boolean bytes read in place) and causality REMOVE keys:
 * a removed key's score is -inf whatever its K (even NaN), and a V tile with a
 * non-finite value takes a path that skips removed keys, so a NaN reaches
 * exactly the rows that attend it.  Key tiles that causality rules out end the
 * loop; tiles the mask removes entirely are skipped.  When there are too few
 * items to keep many threads busy, the keys are split into chunks whose
 * partial (max, sum, output) are merged in chunk order.  Chunking and the
 * query blocks depend on the shape only, never on the thread count, so
 * results are bitwise identical for every n_threads.  (Whether whole pairs
 * are the items, and the size of a key-major group of pairs, do depend on
 * it, and change no bit: a row takes the same tiles either way, and where a
 * group's non-finite V makes all its pairs skip their removed keys, the
 * others' sums differ at most in a zero's sign, which the chunks' merge
 * clears.)
 *
 * A row with no key left (all masked, causal above the diagonal, Lk = 0)
 * gives zeros; a NaN in a row's scores gives NaN in that row only.
 */

#ifdef BMF_AMX
#include "attention_amx.h"
_Static_assert(BMF_AMX_ROWS_MAX == BMF_ATT_BQ, "a block is whole 16-row AMX tiles");
#endif

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
    int key_major;
    size_t ql_vectors;   /* key-major items on the query-lanes path: vectors of lanes, else 0 */
    int ql_prefetch_v;   /* query lanes: V prefetched with the scores (att_ql_dots) */
    int bh_major;        /* tiled, one key chunk, many (batch, head): see att_body */
    int slot_per_thread; /* bh_major: each thread packs its pairs into one slot */
    bmf_progress *pack_next, *item_next; /* bmf_next_item_affine's counters, nt each */
    size_t group_bh, n_groups; /* key-major: (batch, head) pairs per item */
    REAL *partials;      /* per (batch, head, query block, chunk): m[rows], l[rows], O[rows][Dv_pad] */
    REAL *K_packed;      /* tiled: per slot Lk_pad x Dk, BK-key tiles of panels */
    REAL *V_packed;      /* tiled: per slot Lk x Dv_pad, rows contiguous */
    size_t Lk_pad;       /* Lk rounded up to VL */
    unsigned char *v_tile_finite; /* tiled: per (slot, key tile); 1 if unasked (att_pack_tile) */
    /* A slot holds one (batch, head)'s packed K and V: slot bh, or with
     * slot_per_thread the thread's own one, reused for each pair it runs. */
    size_t n_ktiles;
    /* AMX (kernels_amx.c, float32, tiled path): the scores from bf16 parts
     * (attention_amx.h); per slot and key tile, K's parts and whether the
     * tile may take them. */
    int amx;
    size_t amx_nkb, amx_tile_len; /* Dk in 32s; uint16 of K's parts a key tile */
    uint16_t *K_amx;
    unsigned char *k_tile_amx;
    char *scratch;
    size_t scratch_bytes; /* per thread */
    size_t next_merge;   /* merges: the next block to hand out, from 0 */
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

/* The softmax's exps are powers of 2: exp(x) = 2^(x log2(e)), x a score
 * (or a max) minus a larger max, rounded as in the reference before the
 * multiply.  That product's rounding, and log2(e)'s own, cost the result up
 * to |x| * 7e-8 of relative error for float (|x| * 1.1e-16 for double):
 * little where x is small, and where it is not, 2^x is (the C test's
 * test_exp_accuracy).  exp2 takes 9 vector operations on AVX-512, exp 13. */
BMF_ALWAYS_INLINE VEC KFN(att_exp)(VEC x)
{
    return V(exp2_nonpositive)(x * V(set1)((REAL)1.4426950408889634074));
}

/* exp of x <= 0 (a max minus a larger max), one lane. */
static REAL KFN(att_exp1)(REAL x) { return KFN(att_exp)(V(set1)(x))[0]; }

/* Key-major P.V: keys per block (each O vector loaded and stored once).
 * No software prefetch: the hardware prefetcher follows the key-ordered
 * streams, and fetching V rows 4 ahead in software made decoding 1.25x
 * slower (ab_kernels, 2 threads, K and V in L3). */
#define BMF_ATT_PV_KEYS 8

/* True when rows [0, n) x columns [0, d) of A (row stride ld) are all finite:
 * x - x is 0 for a number and NaN for NaN or +-inf.  Four accumulators, so
 * that the additions do not wait on each other. */
static int KFN(att_rows_finite)(const REAL *A, size_t ld, size_t n, size_t d)
{
    VEC acc[4] = {V(set1)(0), V(set1)(0), V(set1)(0), V(set1)(0)};
    size_t d_vec = d / VL * VL, d_vec4 = d / (4 * VL) * (4 * VL);
    for (size_t i = 0; i < n; i++) {
        const REAL *row = A + i * ld;
        size_t j = 0;
        for (; j < d_vec4; j += 4 * VL)
            for (int u = 0; u < 4; u++) {
                VEC v = V(load)(row + j + (size_t)u * VL);
                acc[u] += v - v;
            }
        for (; j < d_vec; j += VL) {
            VEC v = V(load)(row + j);
            acc[0] += v - v;
        }
        for (; j < d; j++)
            if (!isfinite(row[j])) return 0;
    }
    return V(hsum)((acc[0] + acc[1]) + (acc[2] + acc[3])) == 0;
}

/* The partial result (m[rows], l[rows], O[rows][Dv_pad]) of key chunk
 * `chunk` for block `blk` = (batch, head, query block). */
static REAL *KFN(att_partial)(const KFN(att_ctx) *c, size_t blk, size_t chunk)
{
    return c->partials + (blk * c->n_chunks + chunk) * c->rows_per_item * (2 + c->Dv_pad);
}

/* The causal limit: keys j0 + col with col >= the result are removed for
 * query row i (row i sees keys j <= i + Lk - Lq). */
static size_t KFN(att_keys_ok)(const KFN(att_ctx) *c, size_t i, size_t j0, size_t nk)
{
    if (!c->causal) return nk;
    ptrdiff_t lim = (ptrdiff_t)i + ((ptrdiff_t)c->Lk - (ptrdiff_t)c->Lq) - (ptrdiff_t)j0 + 1;
    return lim <= 0 ? 0 : ((size_t)lim < nk ? (size_t)lim : nk);
}

/* True when the tile [j0, j0 + nk) may remove a key from some row from
 * i_first on: a mask is given, or causality cuts the tile for row i_first
 * (the row that sees the fewest keys).  Only then must a V holding NaN or
 * inf be kept out of P.V for the removed keys; otherwise a NaN in V reaches
 * the output, as in the reference. */
static int KFN(att_tile_may_remove)(const KFN(att_ctx) *c, int masked, size_t i_first,
                                    size_t j0, size_t nk)
{
    return masked || KFN(att_keys_ok)(c, i_first, j0, nk) < nk;
}

/* The keys [*k0, *k1) of chunk `chunk` that query rows up to i_end - 1 may
 * see: the chunk, cut where causality ends it. */
static void KFN(att_chunk_keys)(const KFN(att_ctx) *c, size_t chunk, size_t i_end,
                                size_t *k0, size_t *k1)
{
    *k0 = chunk * c->chunk_keys;
    *k1 = *k0 + c->chunk_keys < c->Lk ? *k0 + c->chunk_keys : c->Lk;
    if (c->causal) {
        ptrdiff_t last = (ptrdiff_t)i_end - 1 + ((ptrdiff_t)c->Lk - (ptrdiff_t)c->Lq);
        size_t stop = last < 0 ? 0 : (size_t)last + 1;
        if (stop < *k1) *k1 = stop;
    }
}

/* The online softmax of a tile of nk keys (att_softmax_rows) for up to VL
 * query rows: where each row's scores are, which of its keys are removed,
 * and its running max m, sum l and output accumulator o (Dv_pad wide). */
typedef struct {
    size_t nk;
    int mark_removed;              /* see att_softmax_rows */
    size_t n;                      /* rows */
    REAL *s[VL];                   /* raw scores in (defined up to nk rounded up to VL), P out */
    size_t n_ok[VL];               /* keys at col >= n_ok are removed (causality) */
    const REAL *mrow[VL];          /* additive mask row at the tile's first key, or NULL */
    const unsigned char *brow[VL]; /* boolean mask row, or NULL */
    REAL *m[VL], *l[VL], *o[VL];
} KFN(att_rows);

/* First pass over one row's scores s: returns a vector whose largest lane
 * is the row's largest scaled score, -inf if none.  Nothing to remove
 * (*plain): the max of the raw scores times a positive scale is the max of
 * the scaled ones (rounding is monotone), so the pass only reads, and the
 * exp pass scales (the product rounded, as in the reference) before it
 * subtracts.  Otherwise it scales, masks and stores (removed keys -inf),
 * and with removed_flag notes 1 for each removed key, else 0. */
BMF_ALWAYS_INLINE VEC KFN(att_row_scores)(const KFN(att_ctx) *c, REAL *s, size_t nk, size_t n_ok,
                                          const REAL *mrow, const unsigned char *brow,
                                          REAL *removed_flag, int *plain)
{
    const VEC iota = V(iota)(), scale = V(set1)(c->scale);
    const VEC minus_inf = V(set1)(-(REAL)INFINITY);
    size_t full = nk / VL * VL;
    *plain = !mrow && !brow && n_ok == nk && c->scale > 0;
    if (*plain) { /* four running maxima: V(max)'s chain is latency-bound */
        VEC vmax4[4] = {minus_inf, minus_inf, minus_inf, minus_inf};
        size_t col = 0;
        for (; col + 4 * VL <= full; col += 4 * VL)
            for (int u = 0; u < 4; u++) vmax4[u] = V(max)(vmax4[u], V(load)(s + col + (size_t)u * VL));
        for (; col < full; col += VL) vmax4[0] = V(max)(vmax4[0], V(load)(s + col));
        if (full < nk) /* the lanes past nk are left out */
            vmax4[1] = V(max)(vmax4[1], V(select)(iota + (REAL)full >= (REAL)nk, minus_inf,
                                                  V(load)(s + full)));
        return V(max)(V(max)(vmax4[0], vmax4[1]), V(max)(vmax4[2], vmax4[3])) * scale;
    }
    VEC vmax = minus_inf;
    for (size_t col = 0; col < nk; col += VL) {
        VEC sv = V(load)(s + col) * scale; /* rounded, then + mask, as the reference */
        if (mrow || brow || col + VL > n_ok) {
            VI removed = iota + (REAL)col >= (REAL)n_ok; /* past the tile's keys or the causal limit */
            if (mrow) {
                VEC mv;
                if (c->ms[3] == 1) {
                    mv = V(load_partial)(mrow + col, nk - col);
                } else {
                    mv = V(set1)(0);
                    for (size_t j = col; j < col + VL && j < nk; j++)
                        mv[j - col] = mrow[(ptrdiff_t)j * c->ms[3]];
                }
                /* -inf removes the key whatever its score (even NaN) */
                removed |= mv == minus_inf;
                sv += mv;
            } else if (brow) {
                if (c->ms[3] == 1) {
                    removed |= V(removed_bytes)(brow + col, nk - col);
                } else {
                    VI by_mask = (VI){0} == 0; /* all removed; kept lanes cleared below */
                    for (size_t j = col; j < col + VL && j < nk; j++)
                        by_mask[j - col] = brow[(ptrdiff_t)j * c->ms[3]] ? 0 : -1;
                    removed |= by_mask;
                }
            }
            sv = V(select)(removed, minus_inf, sv);
            if (removed_flag) V(store)(removed_flag + col, V(select)(removed, V(set1)(1), V(set1)(0)));
        } else if (removed_flag) {
            V(store)(removed_flag + col, V(set1)(0));
        }
        V(store)(s + col, sv);
        vmax = V(max)(vmax, sv);
    }
    return vmax;
}

/* P = exp(score - mu) of the vector of scores at s + col (a plain row's
 * scaled first), 0 past nk. */
BMF_ALWAYS_INLINE VEC KFN(att_p_vector)(const REAL *s, size_t col, size_t nk, int plain, VEC scale,
                                        VEC mu)
{
    const size_t full = nk / VL * VL;
    VEC sv = V(load)(s + col);
    if (plain) sv = sv * scale; /* rounded before - mu, as the reference */
    /* sv <= mu, but for lanes past nk (cleared below), which exp's
     * upper clamp would not have made right either */
    VEC p = KFN(att_exp)(sv - mu);
    if (col == full) p = V(select)(V(iota)() + (REAL)full >= (REAL)nk, V(set1)(0), p);
    return p;
}

/* Second pass: P = exp(score - mu) in place (a plain row's score scaled
 * first), 0 past nk; returns the vector of partial sums of P.  With
 * removed_flag, a removed key's P becomes -0.0 (exp gives it +0.0), for a
 * P.V that must skip it; a key that is kept but scored -inf by the data
 * keeps +0.0 and is read, as in the reference. */
BMF_ALWAYS_INLINE VEC KFN(att_row_exp)(REAL *s, size_t nk, int plain, VEC scale, VEC mu,
                                       const REAL *removed_flag)
{
    const VEC neg_zero = V(set1)(-(REAL)0);
    VEC vsum = V(set1)(0);
    for (size_t col = 0; col < nk; col += VL) {
        VEC p = KFN(att_p_vector)(s, col, nk, plain, scale, mu);
        vsum += p;
        if (removed_flag) p = V(select)(V(load)(removed_flag + col) != 0, neg_zero, p);
        V(store)(s + col, p);
    }
    return vsum;
}

/* The online softmax's new running max m_new of rows whose tile max is
 * tile_max and old one m_old (a lane per row), the max their exps subtract
 * (m_use) and the factor alpha that rescales what they had. */
BMF_ALWAYS_INLINE void KFN(att_new_max)(VEC tile_max, VEC m_old, VEC *m_new, VEC *m_use, VEC *alpha)
{
    const VEC minus_inf = V(set1)(-(REAL)INFINITY), zero = V(set1)(0);
    *m_new = V(max)(tile_max, m_old);
    /* exp(-inf - -inf) would be NaN: a row with nothing yet uses 0. */
    *m_use = V(select)(*m_new == minus_inf, zero, *m_new);
    VEC a = KFN(att_exp)(m_old - *m_use); /* m_old <= m_use */
    a = V(select)(m_old == minus_inf, zero, a);  /* nothing before: 0 exactly */
    *alpha = V(select)(m_old == *m_use, V(set1)(1), a);
}

/* An output accumulator row of n elements (a multiple of VL) times a. */
BMF_ALWAYS_INLINE void KFN(att_rescale_row)(REAL *o, size_t n, REAL a)
{
    for (size_t d = 0; d < n; d += VL) V(store)(o + d, V(load)(o + d) * a);
}

/* One step of the online softmax over a tile of nk keys for the rows of R:
 * applies the scale, the mask and causality, updates each row's max and sum,
 * rescales its output accumulator and leaves P = exp(score - max) in its
 * scores.  The rows' maxima and sums are reduced together (hmax_lanes,
 * hsum_lanes) and their rescale factors come from one vector exp: row by
 * row, those reductions and a scalar exp had cost a short row (attn-short's
 * 128 keys) twice its exps, on one chain of dependent steps.  With mark_removed
 * the rows go one at a time, each keeping its removed keys' flags between
 * the passes. */
static void KFN(att_softmax_rows)(const KFN(att_ctx) *c, KFN(att_rows) *R)
{
    const size_t nk = R->nk;
    const int mark_removed = R->mark_removed;
    const VEC scale = V(set1)(c->scale), minus_inf = V(set1)(-(REAL)INFINITY);
    const VEC zero = V(set1)(0);
    REAL removed_flag[BMF_ATT_BK];
    size_t group = mark_removed ? 1 : (size_t)VL;
    for (size_t r0 = 0; r0 < R->n; r0 += group) {
        size_t n = R->n - r0 < group ? R->n - r0 : group;
        VEC acc[VL]; /* per row: maxima, then sums of P */
        int plain[VL];
        REAL m_prev[VL], l_prev[VL];
        for (size_t r = 0; r < (size_t)VL; r++) {
            m_prev[r] = r < n ? *R->m[r0 + r] : 0;
            l_prev[r] = r < n ? *R->l[r0 + r] : 0;
            acc[r] = r < n ? KFN(att_row_scores)(c, R->s[r0 + r], nk, R->n_ok[r0 + r], R->mrow[r0 + r],
                                                 R->brow[r0 + r], mark_removed ? removed_flag : NULL,
                                                 &plain[r])
                           : minus_inf;
        }
        VEC m_new, m_use, alpha;
        KFN(att_new_max)(V(hmax_lanes)(acc), V(load)(m_prev), &m_new, &m_use, &alpha);
        for (size_t r = 0; r < (size_t)VL; r++)
            acc[r] = r < n ? KFN(att_row_exp)(R->s[r0 + r], nk, plain[r], scale, V(set1)(m_use[r]),
                                              mark_removed && !plain[r] ? removed_flag : NULL)
                           : zero;
        VEC l_new = V(fma)(V(load)(l_prev), alpha, V(hsum_lanes)(acc));
        for (size_t r = 0; r < n; r++) {
            REAL a = alpha[r], *o = R->o[r0 + r];
            *R->m[r0 + r] = m_new[r];
            *R->l[r0 + r] = l_new[r];
            if (a != 1 && o) KFN(att_rescale_row)(o, c->Dv_pad, a); /* (no o: not yet used, see att_item) */
        }
    }
    R->n = 0;
}

/* Adds a row to R (its mask rows, if any, at row_at) and runs the softmax
 * step when R is full; the caller runs it once more for the rows left. */
static void KFN(att_rows_push)(const KFN(att_ctx) *c, KFN(att_rows) *R, REAL *s, size_t n_ok,
                               const REAL *mask_bh, const unsigned char *bool_bh,
                               ptrdiff_t row_at, REAL *m, REAL *l, REAL *o)
{
    size_t k = R->n++;
    R->s[k] = s;
    R->n_ok[k] = n_ok;
    R->mrow[k] = mask_bh ? mask_bh + row_at : NULL;
    R->brow[k] = bool_bh ? bool_bh + row_at : NULL;
    R->m[k] = m;
    R->l[k] = l;
    R->o[k] = o;
    if (R->n == (size_t)VL) KFN(att_softmax_rows)(c, R);
}

/* The mask's rows for (batch, head) bh: additive or boolean, NULL if none. */
static void KFN(att_mask_bh)(const KFN(att_ctx) *c, size_t bh, const REAL **mask_bh,
                             const unsigned char **bool_bh)
{
    ptrdiff_t at = (ptrdiff_t)(bh / c->heads) * c->ms[0] + (ptrdiff_t)(bh % c->heads) * c->ms[1];
    *mask_bh = c->mask ? c->mask + at : NULL;
    *bool_bh = c->bool_mask ? c->bool_mask + at : NULL;
}

/* Tiled path, a tile that removes no key (no mask, not cut by causality, a
 * positive scale): the exp pass runs inside P.V, not before it.  A row
 * tile's first vectors of O take, for each VL keys, the exps of its rows'
 * scores (stored as P for the other vectors, and summed) and then the VL
 * keys' multiply-adds: the exps fill some of the tile's waits, and the tile
 * reads P from L1, where it was just written (with exp2, 0.97-0.99x of the
 * time of the separate pass on attn-long).
 * The arithmetic is att_softmax_rows's and gemm_tile's, in the same order:
 * the same bits, but for which NaN survives where two meet (a -NaN from
 * inf - inf in one key's score and a NaN in another's: the compiler orders
 * the operands of the same FMA differently in the two loops). */
BMF_ALWAYS_INLINE void KFN(att_pv_exp_tile)(const int mr, const int nv, REAL *S, size_t lds,
                                            size_t nk, const REAL *mu, VEC scale, VEC *vsum,
                                            const REAL *Vt, size_t ldv, REAL *O, size_t ldo)
{
    VEC acc[BMF_MR][BMF_NV];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++) acc[r][v] = V(load)(O + (size_t)r * ldo + (size_t)v * VL);
    /* the exps of each block of VL keys one block ahead of its FMAs, so that
     * the FMAs never wait for them.  att_p_vector's steps, written out: called
     * here (or the block as a function), it made attn-long 1.02-1.05x slower. */
    const size_t full = nk / VL * VL;
#define BMF_EXP_BLOCK(JB)                                                               \
    for (int r = 0; r < mr; r++) {                                                      \
        REAL *s_ = S + (size_t)r * lds + (JB);                                          \
        VEC p_ = KFN(att_exp)(V(load)(s_) * scale - V(set1)(mu[r]));                    \
        if ((JB) == full) p_ = V(select)(V(iota)() + (REAL)full >= (REAL)nk, V(set1)(0), p_); \
        vsum[r] += p_;                                                                  \
        V(store)(s_, p_);                                                               \
    }
    BMF_EXP_BLOCK(0)
    for (size_t jb = 0; jb < nk; jb += VL) {
        if (jb + VL < nk) {
#pragma GCC unroll 8
            BMF_EXP_BLOCK(jb + VL)
        }
        const REAL *vb = Vt + jb * ldv, *pb = S + jb;
        const size_t kn = nk - jb < (size_t)VL ? nk - jb : (size_t)VL;
        /* (four keys a time, as gemm_tile's k: attn-long 0.96-0.97x of the time
         * on one thread, 0.95-1.01x on two) */
#pragma GCC unroll 4
        for (size_t kk = 0; kk < kn; kk++, vb += ldv, pb++) {
            VEC bv[BMF_NV];
#pragma GCC unroll 8
            for (int v = 0; v < nv; v++) bv[v] = V(load)(vb + (size_t)v * VL);
#pragma GCC unroll 8
            for (int r = 0; r < mr; r++) {
                VEC a = V(set1)(pb[(size_t)r * lds]);
#pragma GCC unroll 8
                for (int v = 0; v < nv; v++) acc[r][v] = V(fma)(a, bv[v], acc[r][v]);
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++) V(store)(O + (size_t)r * ldo + (size_t)v * VL, acc[r][v]);
#undef BMF_EXP_BLOCK
}

/* One plain tile of the tiled path (see att_pv_exp_tile): the rows' new
 * max, O rescaled, then P.V with the exps, then the sums.  S: nq rows of nk
 * raw scores, BMF_ATT_BK apart; Vt: the tile's packed V. */
static void KFN(att_tile_exp_pv)(const KFN(att_ctx) *c, REAL *S, size_t nq, size_t nk,
                                 REAL *m, REAL *l, REAL *O, const REAL *Vt)
{
    const size_t BK = BMF_ATT_BK, Dv_pad = c->Dv_pad, dv_panels = Dv_pad / VL;
    const VEC scale = V(set1)(c->scale), minus_inf = V(set1)(-(REAL)INFINITY), zero = V(set1)(0);
    REAL mu[BMF_ATT_BQ], alpha_of[BMF_ATT_BQ];
    VEC vsum[BMF_ATT_BQ];
    for (size_t r0 = 0; r0 < nq; r0 += VL) {
        size_t n = nq - r0 < (size_t)VL ? nq - r0 : (size_t)VL;
        VEC acc[VL];
        REAL m_prev[VL];
        for (size_t r = 0; r < (size_t)VL; r++) {
            int plain;
            m_prev[r] = r < n ? m[r0 + r] : 0;
            acc[r] = r < n ? KFN(att_row_scores)(c, S + (r0 + r) * BK, nk, nk, NULL, NULL, NULL, &plain)
                           : minus_inf;
        }
        VEC m_new, m_use, alpha;
        KFN(att_new_max)(V(hmax_lanes)(acc), V(load)(m_prev), &m_new, &m_use, &alpha);
        for (size_t r = 0; r < n; r++) {
            REAL a = alpha[r], *o = O + (r0 + r) * Dv_pad;
            m[r0 + r] = m_new[r];
            mu[r0 + r] = m_use[r];
            alpha_of[r0 + r] = a;
            vsum[r0 + r] = zero;
            if (a != 1) KFN(att_rescale_row)(o, Dv_pad, a);
        }
    }
    size_t nv0 = dv_panels < BMF_NV ? dv_panels : BMF_NV;
    for (size_t i = 0; i < nq; i += BMF_MR) {
        int mr = (int)(nq - i < BMF_MR ? nq - i : BMF_MR);
        REAL *s = S + i * BK, *o = O + i * Dv_pad;
        if (mr == 1) { /* gemm_tile's lone row takes two chains: its own exp pass */
            vsum[i] = KFN(att_row_exp)(s, nk, 1, scale, V(set1)(mu[i]), NULL);
            KFN(gemm_block)(i, i + 1, 0, nv0, dv_panels, BMF_NV, nk, 0, nk, S, BK, Vt, Dv_pad, O,
                            Dv_pad, Dv_pad, BMF_INIT_C, NULL, 0, NULL, 0);
            continue;
        }
#define BMF_EXP_PV(MR_, NV_)                                                                \
    case (MR_) * 16 + (NV_):                                                                \
        KFN(att_pv_exp_tile)((MR_), (NV_), s, BK, nk, mu + i, scale, vsum + i, Vt, Dv_pad, o, Dv_pad); \
        break;
        switch (mr * 16 + (int)nv0) {
            BMF_MULTI_ROW_TILES(BMF_EXP_PV)
        default: abort();
        }
#undef BMF_EXP_PV
    }
    if (dv_panels > nv0) /* the other vectors of O read the stored P */
        KFN(gemm_block)(0, nq, nv0, dv_panels, dv_panels, BMF_NV, nk, 0, nk, S, BK, Vt, Dv_pad, O,
                        Dv_pad, Dv_pad, BMF_INIT_C, NULL, 0, NULL, 0);
    for (size_t r0 = 0; r0 < nq; r0 += VL) {
        size_t n = nq - r0 < (size_t)VL ? nq - r0 : (size_t)VL;
        VEC sums[VL];
        REAL l_prev[VL], alpha_v[VL];
        for (size_t r = 0; r < (size_t)VL; r++) {
            sums[r] = r < n ? vsum[r0 + r] : zero;
            l_prev[r] = r < n ? l[r0 + r] : 0;
            alpha_v[r] = r < n ? alpha_of[r0 + r] : 0;
        }
        VEC l_new = V(fma)(V(load)(l_prev), V(load)(alpha_v), V(hsum_lanes)(sums));
        for (size_t r = 0; r < n; r++) l[r0 + r] = l_new[r];
    }
}

/* Tiled path: runs one work item; leaves the unnormalised output in O and
 * the row max and sum in m and l, and returns 0.  With to_out (the item is
 * a whole block) and at most one tile of keys, O would come from a single
 * product: that product is written straight to the output rows, each times
 * 1 / l (att_write_rows's arithmetic, so the same bits), and it returns 1;
 * unless a row's weight is 0 (zeros, by att_write_rows) or NaN, or V's tile
 * needs the skipping loop. */
static int KFN(att_item)(const KFN(att_ctx) *c, size_t item, size_t slot, REAL *m, REAL *l,
                         REAL *O, REAL *scratch, int to_out)
{
    const size_t BK = BMF_ATT_BK, Dv_pad = c->Dv_pad;
    size_t chunk = item % c->n_chunks, rest = item / c->n_chunks;
    size_t qb = rest % c->n_qblocks, bh = rest / c->n_qblocks;
    size_t i0 = qb * BMF_ATT_BQ;
    size_t nq = c->Lq - i0 < BMF_ATT_BQ ? c->Lq - i0 : BMF_ATT_BQ;
    size_t k0, k1;
    KFN(att_chunk_keys)(c, chunk, i0 + nq, &k0, &k1);
    const REAL *mask_bh;
    const unsigned char *bool_bh;
    KFN(att_mask_bh)(c, bh, &mask_bh, &bool_bh);

    REAL *S = scratch;            /* BQ x BK scores, then P */
    REAL *Qb = S + BMF_ATT_BQ * BK; /* the block's Q rows, contiguous: in place they
                                     * may be 4 KiB apart and evict each other from L1 */
    for (size_t r = 0; r < nq; r++)
        memcpy(Qb + r * c->Dk, c->Q + (i0 + r) * c->ld_q + bh * c->Dk, c->Dk * sizeof(REAL));
#ifdef BMF_AMX
    uint16_t *Q_amx = (uint16_t *)(Qb + BMF_ATT_BQ * c->Dk + 16); /* (64-byte aligned) */
    Q_amx = (uint16_t *)((uintptr_t)Q_amx / 64 * 64);
    int q_amx = c->amx && bmf_amx_split_q((const float *)Qb, c->Dk, nq, c->Dk, c->amx_nkb, Q_amx);
#endif
    for (size_t r = 0; r < nq; r++) { m[r] = -(REAL)INFINITY; l[r] = 0; }
    int one_product = to_out && k1 - k0 <= BK; /* O not used yet, so not zeroed */
    if (!one_product) memset(O, 0, nq * Dv_pad * sizeof(REAL));

    for (size_t j0 = k0; j0 < k1; j0 += BK) {
        size_t nk = k1 - j0 < BK ? k1 - j0 : BK;
        size_t nk_panels = (nk + VL - 1) / VL;
        if ((mask_bh || bool_bh) && KFN(att_tile_masked)(c, mask_bh, bool_bh, i0, nq, j0, nk))
            continue;
        const REAL *Kp = c->K_packed + (slot * c->Lk_pad + j0) * c->Dk;
        size_t tile_keys = c->Lk - j0 < BK ? c->Lk - j0 : BK; /* as packed */
#ifdef BMF_AMX
        size_t t = slot * c->n_ktiles + j0 / BK; /* (chunks are whole tiles) */
        if (q_amx && c->k_tile_amx[t])
            bmf_amx_scores(Q_amx, c->K_amx + t * c->amx_tile_len, c->amx_nkb, (nq + 15) / 16,
                           (nk + 15) / 16, BMF_ATT_BK / 16, (float *)S, BK);
        else
#endif
        KFN(gemm_block)(0, nq, 0, nk_panels, (tile_keys + VL - 1) / VL, BMF_NV,
                        c->Dk, 0, c->Dk, Qb, c->Dk, Kp, 0, S, BK, nk_panels * VL, BMF_INIT_ZERO, NULL, 0,
                        NULL, 0);
        const REAL *Vt = c->V_packed + (slot * c->Lk + j0) * Dv_pad;
        /* Nothing removed (row i0 sees the fewest keys) and more than one
         * row (a lone row's P.V takes gemm_group's wider tile): the exps
         * inside P.V. */
        if (!one_product && nq > 1 && !mask_bh && !bool_bh && c->scale > 0
            && KFN(att_keys_ok)(c, i0, j0, nk) == nk) {
            KFN(att_tile_exp_pv)(c, S, nq, nk, m, l, O, Vt);
            continue;
        }
        int v_finite = c->v_tile_finite[slot * c->n_ktiles + j0 / BK]
                       || !KFN(att_tile_may_remove)(c, mask_bh || bool_bh, i0, j0, nk);
        KFN(att_rows) R = {.nk = nk, .mark_removed = !v_finite, .n = 0};
        for (size_t r = 0; r < nq; r++)
            KFN(att_rows_push)(c, &R, S + r * BK, KFN(att_keys_ok)(c, i0 + r, j0, nk), mask_bh,
                               bool_bh, (ptrdiff_t)(i0 + r) * c->ms[2] + (ptrdiff_t)j0 * c->ms[3],
                               m + r, l + r, one_product ? NULL : O + r * Dv_pad);
        KFN(att_softmax_rows)(c, &R);
        size_t dv_panels = Dv_pad / VL;
        if (one_product) {
            /* Only positive weights: with a NaN l the product's NaN and 1/l's
             * would meet in the other operand order than att_write_rows's,
             * which on x86 keeps the other NaN's payload and sign. */
            int weighed = v_finite;
            for (size_t r = 0; r < nq; r++) weighed &= l[r] > 0;
            if (weighed) {
                REAL inv_l[BMF_ATT_BQ];
                for (size_t r = 0; r < nq; r++) inv_l[r] = 1 / l[r];
                KFN(gemm_block)(0, nq, 0, dv_panels, dv_panels, KFN(gemm_group)(nq), nk, 0, nk, S, BK,
                                Vt, Dv_pad, c->out + i0 * c->ld_v + bh * c->Dv, c->ld_v, c->Dv,
                                BMF_INIT_ZERO, NULL, 0, inv_l, 0);
                return 1;
            }
            memset(O, 0, nq * Dv_pad * sizeof(REAL)); /* and on through O */
            one_product = 0;
        }
        if (!v_finite) { /* rare: skip removed keys so their NaN/inf stays out */
            for (size_t r = 0; r < nq; r++)
                for (size_t j = 0; j < nk; j++) {
                    REAL p = S[r * BK + j];
                    if (signbit(p)) continue;
                    for (size_t d = 0; d < c->Dv; d++)
                        O[r * Dv_pad + d] = V(fma1)(p, Vt[j * Dv_pad + d], O[r * Dv_pad + d]);
                }
        } else {
            KFN(gemm_block)(0, nq, 0, dv_panels, dv_panels, KFN(gemm_group)(nq), nk, 0, nk, S, BK, Vt,
                            Dv_pad, O, Dv_pad, Dv_pad, BMF_INIT_C, NULL, 0, NULL, 0);
        }
    }
    return 0; /* (with one_product left set, no tile ran: every l is 0) */
}

/* Key-major blocks for head sizes of nd = 4 or 8 vectors (a constant at each
 * call), the same additions in the same order as the general loops below:
 * the query row (att_km_dots) or the output row (att_km_pv) stays in
 * registers and one pointer walks the key rows, where the general loops keep
 * VL (or 8) row pointers, more than the registers hold. */
BMF_ALWAYS_INLINE void KFN(att_km_dots)(const int nd, const REAL *q, const REAL *k, size_t ld,
                                        VEC *acc)
{
    VEC qv[8];
    for (int u = 0; u < nd; u++) qv[u] = V(load)(q + (size_t)u * VL);
    for (size_t jj = 0; jj < VL; jj++, k += ld)
        for (int u = 0; u < nd; u++) acc[jj] = V(fma)(qv[u], V(load)(k + (size_t)u * VL), acc[jj]);
}
BMF_ALWAYS_INLINE void KFN(att_km_pv)(const int nd, const REAL *p, const REAL *v, size_t ld,
                                      REAL *o)
{
    VEC ov[8];
    for (int u = 0; u < nd; u++) ov[u] = V(load)(o + (size_t)u * VL);
    for (size_t jj = 0; jj < BMF_ATT_PV_KEYS; jj++, v += ld) {
        VEC pj = V(set1)(p[jj]);
        for (int u = 0; u < nd; u++) ov[u] = V(fma)(pj, V(load)(v + (size_t)u * VL), ov[u]);
    }
    for (int u = 0; u < nd; u++) V(store)(o + (size_t)u * VL, ov[u]);
}

/* Key-major path: one item = the (batch, head) pairs [bh0, bh1) and the keys
 * of one chunk, for all Lq query rows; its m, l and O go to the partials of
 * (pair, chunk).  S holds group_bh * Lq rows of BMF_ATT_BK_KM scores. */
static void KFN(att_item_key_major)(const KFN(att_ctx) *c, size_t item, REAL *S)
{
    const size_t BK = BMF_ATT_BK_KM, nq = c->Lq, Dk = c->Dk, Dv = c->Dv, Dv_pad = c->Dv_pad;
    size_t chunk = item % c->n_chunks, grp = item / c->n_chunks;
    size_t n_bh = c->B * c->heads, bh0 = grp * c->group_bh;
    size_t ng = n_bh - bh0 < c->group_bh ? n_bh - bh0 : c->group_bh;
    size_t k0, k1;
    KFN(att_chunk_keys)(c, chunk, nq, &k0, &k1);
    /* Pair bh's rows start at bh * D within a key row: the group's segment
     * of key j is contiguous. */
    const REAL *Qg = c->Q + bh0 * Dk, *Kg = c->K + bh0 * Dk, *Vg = c->V + bh0 * Dv;
    unsigned char skip[BMF_ATT_GROUP_MAX];
    for (size_t g = 0; g < ng; g++) { /* partials: m[nq], l[nq], O[nq][Dv_pad] */
        REAL *m = KFN(att_partial)(c, bh0 + g, chunk);
        for (size_t r = 0; r < nq; r++) { m[r] = -(REAL)INFINITY; m[nq + r] = 0; }
        memset(m + 2 * nq, 0, nq * Dv_pad * sizeof(REAL));
    }
    for (size_t j0 = k0; j0 < k1; j0 += BK) {
        size_t nk = k1 - j0 < BK ? k1 - j0 : BK, width = (nk + VL - 1) / VL * VL;
        int any = 0, any_masked = 0;
        for (size_t g = 0; g < ng; g++) {
            const REAL *mask_bh;
            const unsigned char *bool_bh;
            KFN(att_mask_bh)(c, bh0 + g, &mask_bh, &bool_bh);
            any_masked |= mask_bh || bool_bh;
            skip[g] = (mask_bh || bool_bh) && KFN(att_tile_masked)(c, mask_bh, bool_bh, 0, nq, j0, nk);
            any |= !skip[g];
        }
        if (!any) continue;
        /* Scores S[(g * nq + r) * BK + j] = q(r, g) . k(j, g), VL keys at a
         * time: the VL dot products of a pair stay in registers as vectors
         * of partial sums, reduced together (hsum_lanes).  Pair by pair, the
         * block's VL key rows are read as VL sequential streams. */
        for (size_t jb = 0; jb < nk; jb += VL) {
            size_t nj = nk - jb < VL ? nk - jb : VL;
            const REAL *kblock = Kg + (j0 + jb) * c->ld_q;
            for (size_t g = 0; g < ng; g++) {
                if (skip[g]) continue;
                for (size_t r = 0; r < nq; r++) {
                    const REAL *q = Qg + r * c->ld_q + g * Dk, *k = kblock + g * Dk;
                    VEC acc[VL];
                    for (size_t jj = 0; jj < VL; jj++) acc[jj] = V(set1)(0);
                    if (nj == VL && Dk == 4 * VL) {
                        KFN(att_km_dots)(4, q, k, c->ld_q, acc);
                    } else if (nj == VL && Dk == 8 * VL) {
                        KFN(att_km_dots)(8, q, k, c->ld_q, acc);
                    } else if (nj == VL && Dk % VL == 0) {
                        /* the common block, without a test: acc stays in registers */
                        for (size_t d = 0; d < Dk; d += VL) {
                            VEC qv = V(load)(q + d);
                            for (size_t jj = 0; jj < VL; jj++)
                                acc[jj] = V(fma)(qv, V(load)(k + jj * c->ld_q + d), acc[jj]);
                        }
                    } else {
                        for (size_t d = 0; d < Dk; d += VL) {
                            VEC qv = V(load_partial)(q + d, Dk - d);
                            for (size_t jj = 0; jj < VL; jj++)
                                if (jj < nj)
                                    acc[jj] = V(fma)(qv, V(load_partial)(k + jj * c->ld_q + d, Dk - d),
                                                     acc[jj]);
                        }
                    }
                    V(store)(S + (g * nq + r) * BK + jb, V(hsum_lanes)(acc));
                }
            }
        }
        /* The V finite pass only where a key may be removed. */
        int v_finite = !KFN(att_tile_may_remove)(c, any_masked, 0, j0, nk)
                       || KFN(att_rows_finite)(Vg + j0 * c->ld_v, c->ld_v, nk, ng * Dv);
        KFN(att_rows) R = {.nk = nk, .mark_removed = !v_finite, .n = 0};
        for (size_t g = 0; g < ng; g++) {
            if (skip[g]) continue;
            const REAL *mask_bh;
            const unsigned char *bool_bh;
            KFN(att_mask_bh)(c, bh0 + g, &mask_bh, &bool_bh);
            REAL *m = KFN(att_partial)(c, bh0 + g, chunk);
            for (size_t r = 0; r < nq; r++) {
                REAL *s = S + (g * nq + r) * BK;
                for (size_t j = nk; j < width; j++) s[j] = 0; /* defined lanes */
                KFN(att_rows_push)(c, &R, s, KFN(att_keys_ok)(c, r, j0, nk), mask_bh, bool_bh,
                                   (ptrdiff_t)r * c->ms[2] + (ptrdiff_t)j0 * c->ms[3], m + r,
                                   m + nq + r, m + 2 * nq + r * Dv_pad);
            }
        }
        KFN(att_softmax_rows)(c, &R);
        /* O += P V in key order, BMF_ATT_PV_KEYS keys at a time so that each
         * vector of O is loaded and stored once per block. */
        for (size_t jb = 0; jb < nk; jb += BMF_ATT_PV_KEYS) {
            size_t nb = nk - jb < BMF_ATT_PV_KEYS ? nk - jb : BMF_ATT_PV_KEYS;
            const REAL *vrow = Vg + (j0 + jb) * c->ld_v;
            for (size_t g = 0; g < ng; g++) {
                if (skip[g]) continue;
                REAL *O = KFN(att_partial)(c, bh0 + g, chunk) + 2 * nq;
                for (size_t r = 0; r < nq; r++) {
                    REAL p[BMF_ATT_PV_KEYS];
                    for (size_t jj = 0; jj < BMF_ATT_PV_KEYS; jj++)
                        p[jj] = jj < nb ? S[(g * nq + r) * BK + jb + jj] : 0;
                    REAL *o = O + r * Dv_pad;
                    if (nb == BMF_ATT_PV_KEYS && v_finite && (Dv == 4 * VL || Dv == 8 * VL)) {
                        if (Dv == 4 * VL) KFN(att_km_pv)(4, p, vrow + g * Dv, c->ld_v, o);
                        else KFN(att_km_pv)(8, p, vrow + g * Dv, c->ld_v, o);
                        continue;
                    }
                    if (nb == BMF_ATT_PV_KEYS && v_finite && Dv % VL == 0) {
                        /* the common block, without a test (same order of additions) */
                        const REAL *vg = vrow + g * Dv;
                        VEC pv[BMF_ATT_PV_KEYS];
                        for (size_t jj = 0; jj < BMF_ATT_PV_KEYS; jj++) pv[jj] = V(set1)(p[jj]);
                        for (size_t d = 0; d < Dv; d += VL) {
                            VEC acc = V(load)(o + d);
                            for (size_t jj = 0; jj < BMF_ATT_PV_KEYS; jj++)
                                acc = V(fma)(pv[jj], V(load)(vg + jj * c->ld_v + d), acc);
                            V(store)(o + d, acc);
                        }
                        continue;
                    }
                    for (size_t d = 0; d < Dv; d += VL) {
                        VEC acc = V(load)(o + d);
                        for (size_t jj = 0; jj < nb; jj++) {
                            if (!v_finite && signbit(p[jj])) continue; /* removed: keep V's NaN out */
                            acc = V(fma)(V(set1)(p[jj]), V(load_partial)(vrow + jj * c->ld_v + g * Dv + d, Dv - d),
                                         acc);
                        }
                        V(store)(o + d, acc);
                    }
                }
            }
        }
    }
}

/* Query-lanes path (up to BMF_ATT_QL_MAX_Q query rows, see where the path
 * is chosen): the key-major path's items, but the query rows sit in the
 * lanes of nqv vectors (W = nqv * VL lanes, the lanes past Lq zeros), and K
 * and V are read in place, nothing packed:
 *   ST[j] = sum_d K[j][d] * Qt[d], each K element broadcast to the lanes
 *     (Qt: the pair's Q rows transposed, W lanes per feature);
 *   the online softmax down the keys: a lane's max and sum are vector
 *     operations across keys, with no horizontal reduction;
 *   O += P V in row tiles (att_ql_pv), row r's weight of key j broadcast
 *     from lane r of ST[j] and V's rows read as vectors in place.
 * Key-major's dot products reduce VL lanes per score; the tiled path packs
 * K and V, which a few query rows do not amortise (attn-16x1024's copies
 * were half its time: 256-byte rows 4 KiB apart). */
#define BMF_ATT_QL_MAX_Q 32 /* a multiple of every VL: W <= 32 */
/* Its items, like key-major's, hold all Lq rows: one query block. */
_Static_assert(BMF_ATT_BQ >= BMF_ATT_QL_MAX_Q, "query lanes need Lq <= BMF_ATT_BQ");
/* ... and up to this many vectors of lanes: 16 rows where VL is 2 (float64
 * on 16-byte vectors), whose 32 rows took 1.03-1.34x the tiled path's time */
#define BMF_ATT_QL_MAX_VECTORS 8
/* ... and V's rows are prefetched to L2 with the scores where K and V pass
 * this size: "16 4096 8 512 8" (128 MiB) 0.88x of the time, 64 MiB
 * 0.95-0.98x, but 8 MiB 1.01-1.06x (ab_kernels, 2 threads). */
#define BMF_ATT_QL_PREFETCH_V_BYTES ((size_t)16 << 20)

/* ST[jj] = the jb keys' scores: jb x nqv accumulators, one chain each over d. */
BMF_ALWAYS_INLINE void KFN(att_ql_dots_block)(const int nqv, const int jb, const REAL *k, size_t ld,
                                              size_t Dk, const REAL *Qt, REAL *st)
{
    const int W = nqv * VL;
    VEC acc[8][BMF_ATT_QL_MAX_VECTORS];
#pragma GCC unroll 8
    for (int jj = 0; jj < jb; jj++)
#pragma GCC unroll 8
        for (int u = 0; u < nqv; u++) acc[jj][u] = V(set1)(0);
    for (size_t d = 0; d < Dk; d++) {
        VEC q[BMF_ATT_QL_MAX_VECTORS];
#pragma GCC unroll 16
        for (int u = 0; u < nqv; u++) q[u] = V(load)(Qt + d * W + (size_t)u * VL);
#pragma GCC unroll 8
        for (int jj = 0; jj < jb; jj++) {
            VEC kj = V(set1)(k[(size_t)jj * ld + d]);
#pragma GCC unroll 8
            for (int u = 0; u < nqv; u++) acc[jj][u] = V(fma)(kj, q[u], acc[jj][u]);
        }
    }
#pragma GCC unroll 8
    for (int jj = 0; jj < jb; jj++)
#pragma GCC unroll 8
        for (int u = 0; u < nqv; u++) V(store)(st + (size_t)jj * W + (size_t)u * VL, acc[jj][u]);
}

/* The scores of keys [0, nk) at k (rows ld apart) into ST: blocks of keys
 * as wide as the registers allow (jb * nqv = 8), then the rest.  Each
 * block's next K rows are prefetched (their rows, in other pages, escape the
 * hardware prefetcher), and unless v is NULL the block's own V rows (Dv wide
 * at v, ld_v apart) to L2 for P.V (see BMF_ATT_QL_PREFETCH_V_BYTES). */
static void KFN(att_ql_dots)(size_t nqv, const REAL *k, size_t ld, size_t nk, size_t Dk,
                             const REAL *Qt, REAL *ST, const REAL *v, size_t ld_v, size_t Dv)
{
    size_t j = 0, W = nqv * VL;
#define BMF_QL_DOTS(NQV, JB)                                                             \
    for (; j + (JB) <= nk; j += (JB)) {                                                  \
        for (size_t jj = j + (JB); jj < j + 2 * (JB) && jj < nk; jj++)                   \
            for (size_t d = 0; d < Dk; d += 64 / sizeof(REAL)) __builtin_prefetch(k + jj * ld + d); \
        for (size_t jj = j; v && jj < j + (JB); jj++)                                    \
            for (size_t e = 0; e < Dv; e += 64 / sizeof(REAL)) __builtin_prefetch(v + jj * ld_v + e, 0, 2); \
        KFN(att_ql_dots_block)(NQV, JB, k + j * ld, ld, Dk, Qt, ST + j * W);            \
    }
    switch (nqv) {
    case 1: BMF_QL_DOTS(1, 8); BMF_QL_DOTS(1, 4); BMF_QL_DOTS(1, 1); break;
    case 2: BMF_QL_DOTS(2, 4); BMF_QL_DOTS(2, 1); break;
    case 4: BMF_QL_DOTS(4, 2); BMF_QL_DOTS(4, 1); break;
    default: BMF_QL_DOTS(8, 1); break;
    }
#undef BMF_QL_DOTS
}

/* O rows [0, mr) x columns [0, n_valid) (nv vectors; whole: nv * VL) += P V
 * over nk keys: lane r of PT[j] (W lanes per key) is row r's weight of key
 * j, and V's key rows (ld apart) are read in place. */
BMF_ALWAYS_INLINE void KFN(att_ql_pv_tile)(const int mr, const int nv, const int whole, const REAL *PT,
                                           size_t W, size_t nk, const REAL *v, size_t ld, REAL *o,
                                           size_t ldo, size_t n_valid)
{
    VEC acc[BMF_MR][4];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int u = 0; u < nv; u++)
            acc[r][u] = V(load_partial)(o + (size_t)r * ldo + (size_t)u * VL,
                                        whole ? VL : n_valid - (size_t)u * VL);
    for (size_t j = 0; j < nk; j++, v += ld, PT += W) {
        VEC bv[4];
#pragma GCC unroll 4
        for (int u = 0; u < nv; u++) {
            bv[u] = whole ? V(load)(v + (size_t)u * VL)
                          : V(load_partial)(v + (size_t)u * VL, n_valid - (size_t)u * VL);
        }
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            VEC a = V(set1)(PT[r]);
#pragma GCC unroll 4
            for (int u = 0; u < nv; u++) acc[r][u] = V(fma)(a, bv[u], acc[r][u]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int u = 0; u < nv; u++)
            V(store_partial)(o + (size_t)r * ldo + (size_t)u * VL, acc[r][u],
                             whole ? VL : n_valid - (size_t)u * VL);
}

/* O (nq rows, ldo apart) += P V over the pair's Dv columns (v: its first
 * key's row), in tiles of up to BMF_MR rows (as even as can be) x BMF_NV
 * vectors; a last partial vector (Dv % VL) a row at a time. */
static void KFN(att_ql_pv)(size_t nq, const REAL *PT, size_t W, size_t nk, const REAL *v, size_t ld,
                           size_t Dv, REAL *O, size_t ldo)
{
    size_t Dv_whole = Dv / VL * VL;
    for (size_t r0 = 0; r0 < nq;) {
        size_t left = nq - r0, tiles = (left + BMF_MR - 1) / BMF_MR, mr = (left + tiles - 1) / tiles;
        const REAL *pt = PT + r0;
        for (size_t e = 0; e < Dv_whole; e += BMF_NV * VL) {
            size_t nv = (Dv_whole - e) / VL < BMF_NV ? (Dv_whole - e) / VL : BMF_NV;
            const REAL *ve = v + e;
            REAL *o = O + r0 * ldo + e;
#define BMF_QL_PV_ROWS(NV)                                                                   \
    switch (mr) {                                                                            \
    case 1: KFN(att_ql_pv_tile)(1, NV, 1, pt, W, nk, ve, ld, o, ldo, VL * NV); break;        \
    case 2: KFN(att_ql_pv_tile)(2, NV, 1, pt, W, nk, ve, ld, o, ldo, VL * NV); break;        \
    case 3: KFN(att_ql_pv_tile)(3, NV, 1, pt, W, nk, ve, ld, o, ldo, VL * NV); break;        \
    case 4: KFN(att_ql_pv_tile)(4, NV, 1, pt, W, nk, ve, ld, o, ldo, VL * NV); break;        \
    default: KFN(att_ql_pv_tile)(BMF_MR, NV, 1, pt, W, nk, ve, ld, o, ldo, VL * NV); break;  \
    }
            switch (nv) {
            case 1: BMF_QL_PV_ROWS(1); break;
            case 2: BMF_QL_PV_ROWS(2); break;
            case 3: BMF_QL_PV_ROWS(3); break;
            default: BMF_QL_PV_ROWS(BMF_NV); break;
            }
#undef BMF_QL_PV_ROWS
        }
        if (Dv_whole < Dv)
            for (size_t r = r0; r < r0 + mr; r++)
                KFN(att_ql_pv_tile)(1, 1, 0, PT + r, W, nk, v + Dv_whole, ld, O + r * ldo + Dv_whole,
                                    ldo, Dv - Dv_whole);
        r0 += mr;
    }
}

/* One step of the online softmax over the nk keys' scores ST (W lanes per
 * key) of the (batch, head) pair whose mask rows are mask_bh / bool_bh: the
 * same arithmetic as att_softmax_rows, a lane per query row.  Leaves P in ST
 * (with mark_removed, -0.0 for a removed key, as att_row_exp), updates the
 * lanes' m and l, and rescales the output rows O (Dv_pad apart). */
static void KFN(att_ql_softmax)(const KFN(att_ctx) *c, size_t nqv, REAL *ST, REAL *RT, size_t nk,
                                size_t j0, const REAL *mask_bh, const unsigned char *bool_bh,
                                int mark_removed, REAL *m, REAL *l, REAL *O)
{
    const size_t W = nqv * VL, nq = c->Lq;
    const VEC scale = V(set1)(c->scale), minus_inf = V(set1)(-(REAL)INFINITY);
    const VEC zero = V(set1)(0), one = V(set1)(1), neg_zero = V(set1)(-(REAL)0);
    /* plain: nothing removed (row 0 sees the fewest keys) and a positive
     * scale, so the max of the raw scores times scale is the scaled max */
    int plain = !mask_bh && !bool_bh && KFN(att_keys_ok)(c, 0, j0, nk) == nk && c->scale > 0;
    VEC vmax[BMF_ATT_QL_MAX_VECTORS];
    for (size_t u = 0; u < nqv; u++) vmax[u] = minus_inf;
    if (plain) {
        for (size_t j = 0; j < nk; j++)
            for (size_t u = 0; u < nqv; u++) vmax[u] = V(max)(vmax[u], V(load)(ST + j * W + u * VL));
        for (size_t u = 0; u < nqv; u++) vmax[u] *= scale;
    } else {
        /* row q sees key j0 + j while q >= j0 + j - (Lk - Lq) */
        const REAL first_row = (REAL)((ptrdiff_t)j0 - ((ptrdiff_t)c->Lk - (ptrdiff_t)c->Lq));
        for (size_t j = 0; j < nk; j++) {
            for (size_t u = 0; u < nqv; u++) {
                VEC sv = V(load)(ST + j * W + u * VL) * scale; /* rounded, then + mask */
                VEC row = V(iota)() + (REAL)(u * VL);
                VI removed = c->causal ? row < first_row + (REAL)j : (VI){0};
                if (mask_bh || bool_bh) {
                    VEC mv = zero;
                    VI by_bool = (VI){0};
                    for (size_t r = u * VL; r < nq && r < (u + 1) * VL; r++) {
                        ptrdiff_t at = (ptrdiff_t)r * c->ms[2] + (ptrdiff_t)(j0 + j) * c->ms[3];
                        if (mask_bh) mv[r - u * VL] = mask_bh[at];
                        else by_bool[r - u * VL] = bool_bh[at] ? 0 : -1;
                    }
                    /* -inf removes the key whatever its score (even NaN) */
                    removed |= mask_bh ? (mv == minus_inf) : by_bool;
                    sv += mv;
                }
                sv = V(select)(removed, minus_inf, sv);
                V(store)(ST + j * W + u * VL, sv);
                if (mark_removed) V(store)(RT + j * W + u * VL, V(select)(removed, one, zero));
                vmax[u] = V(max)(vmax[u], sv);
            }
        }
    }
    VEC alpha[BMF_ATT_QL_MAX_VECTORS], m_use[BMF_ATT_QL_MAX_VECTORS], sum[BMF_ATT_QL_MAX_VECTORS];
    int all_one = 1;
    for (size_t u = 0; u < nqv; u++) {
        VEC m_new;
        KFN(att_new_max)(vmax[u], V(load)(m + u * VL), &m_new, &m_use[u], &alpha[u]);
        for (int i = 0; i < VL; i++) all_one &= alpha[u][i] == 1;
        V(store)(m + u * VL, m_new);
        sum[u] = zero;
    }
    for (size_t j = 0; j < nk; j++)
        for (size_t u = 0; u < nqv; u++) {
            VEC sv = V(load)(ST + j * W + u * VL);
            if (plain) sv = sv * scale; /* rounded before - m, as the reference */
            VEC p = KFN(att_exp)(sv - m_use[u]);
            sum[u] += p;
            if (mark_removed) p = V(select)(V(load)(RT + j * W + u * VL) != 0, neg_zero, p);
            V(store)(ST + j * W + u * VL, p);
        }
    for (size_t u = 0; u < nqv; u++)
        V(store)(l + u * VL, V(fma)(V(load)(l + u * VL), alpha[u], sum[u]));
    if (!all_one)
        for (size_t r = 0; r < nq; r++) KFN(att_rescale_row)(O + r * c->Dv_pad, c->Dv_pad, alpha[r / VL][r % VL]);
}

/* Query-lanes path: one item = the pairs [bh0, bh1) and the keys of one
 * chunk, as att_item_key_major; each pair's m, l and O go to its partial,
 * O accumulated there.  scratch: ST and RT (BMF_ATT_BK_KM x W each), then
 * per pair Qt (Dk x W), m and l (W each). */
static void KFN(att_item_qlanes)(const KFN(att_ctx) *c, size_t item, REAL *scratch)
{
    const size_t BK = BMF_ATT_BK_KM, nq = c->Lq, Dk = c->Dk, Dv = c->Dv, Dv_pad = c->Dv_pad;
    const size_t nqv = c->ql_vectors, W = nqv * VL, per_pair = (Dk + 2) * W;
    size_t chunk = item % c->n_chunks, grp = item / c->n_chunks;
    size_t n_bh = c->B * c->heads, bh0 = grp * c->group_bh;
    size_t ng = n_bh - bh0 < c->group_bh ? n_bh - bh0 : c->group_bh;
    size_t k0, k1;
    KFN(att_chunk_keys)(c, chunk, nq, &k0, &k1);
    REAL *ST = scratch, *RT = ST + BK * W, *pairs = RT + BK * W;
    for (size_t g = 0; g < ng; g++) {
        REAL *Qt = pairs + g * per_pair, *m = Qt + Dk * W, *l = m + W;
        const REAL *q = c->Q + (bh0 + g) * Dk;
        for (size_t d = 0; d < Dk; d++)
            for (size_t r = 0; r < W; r++) Qt[d * W + r] = r < nq ? q[r * c->ld_q + d] : 0;
        for (size_t r = 0; r < W; r++) { m[r] = -(REAL)INFINITY; l[r] = 0; }
        memset(KFN(att_partial)(c, bh0 + g, chunk) + 2 * nq, 0, nq * Dv_pad * sizeof(REAL));
    }
    for (size_t j0 = k0; j0 < k1; j0 += BK) {
        size_t nk = k1 - j0 < BK ? k1 - j0 : BK;
        for (size_t g = 0; g < ng; g++) {
            size_t bh = bh0 + g;
            const REAL *mask_bh;
            const unsigned char *bool_bh;
            KFN(att_mask_bh)(c, bh, &mask_bh, &bool_bh);
            int masked = mask_bh || bool_bh;
            if (masked && KFN(att_tile_masked)(c, mask_bh, bool_bh, 0, nq, j0, nk)) continue;
            REAL *Qt = pairs + g * per_pair, *m = Qt + Dk * W, *l = m + W;
            REAL *O = KFN(att_partial)(c, bh, chunk) + 2 * nq;
            const REAL *kp = c->K + j0 * c->ld_q + bh * Dk, *vp = c->V + j0 * c->ld_v + bh * Dv;
            KFN(att_ql_dots)(nqv, kp, c->ld_q, nk, Dk, Qt, ST, c->ql_prefetch_v ? vp : NULL, c->ld_v, Dv);
            /* The V finite pass only where a key may be removed. */
            int v_finite = !KFN(att_tile_may_remove)(c, masked, 0, j0, nk)
                           || KFN(att_rows_finite)(vp, c->ld_v, nk, Dv);
            KFN(att_ql_softmax)(c, nqv, ST, RT, nk, j0, mask_bh, bool_bh, !v_finite, m, l, O);
            if (v_finite) {
                KFN(att_ql_pv)(nq, ST, W, nk, vp, c->ld_v, Dv, O, Dv_pad);
            } else { /* rare: skip removed keys so their NaN/inf stays out */
                for (size_t r = 0; r < nq; r++)
                    for (size_t j = 0; j < nk; j++) {
                        REAL p = ST[j * W + r];
                        if (signbit(p)) continue;
                        for (size_t e = 0; e < Dv; e++)
                            O[r * Dv_pad + e] = V(fma1)(p, vp[j * c->ld_v + e], O[r * Dv_pad + e]);
                    }
            }
        }
    }
    for (size_t g = 0; g < ng; g++) { /* partials: m[nq], l[nq], O[nq][Dv_pad] */
        const REAL *m = pairs + g * per_pair + Dk * W, *l = m + W;
        REAL *part = KFN(att_partial)(c, bh0 + g, chunk);
        for (size_t r = 0; r < nq; r++) { part[r] = m[r]; part[nq + r] = l[r]; }
    }
}

/* out row = O / l, or zeros for a row whose total weight is 0 (it saw no
 * key, or only keys scored -inf, whose O may hold 0 * NaN: the reference
 * gives zeros then too). */
static void KFN(att_write_rows)(const KFN(att_ctx) *c, size_t bh, size_t qb,
                                const REAL *l, const REAL *O)
{
    size_t b = bh / c->heads, h = bh % c->heads, i0 = qb * BMF_ATT_BQ;
    size_t nq = c->Lq - i0 < BMF_ATT_BQ ? c->Lq - i0 : BMF_ATT_BQ;
    for (size_t r = 0; r < nq; r++) {
        REAL *dst = c->out + (i0 + r) * c->ld_v + b * c->heads * c->Dv + h * c->Dv;
        if (l[r] == 0) {
            memset(dst, 0, c->Dv * sizeof(REAL));
            continue;
        }
        REAL inv = 1 / l[r];
        for (size_t d = 0; d < c->Dv; d++) dst[d] = O[r * c->Dv_pad + d] * inv;
    }
}

/* Tiled path: packs K and V of (batch, head) bh's key tile t into slot. */
static void KFN(att_pack_tile)(const KFN(att_ctx) *c, size_t bh, size_t t, size_t slot)
{
    size_t j0 = t * BMF_ATT_BK;
    size_t nk = c->Lk - j0 < BMF_ATT_BK ? c->Lk - j0 : BMF_ATT_BK;
    const REAL *src = c->K + j0 * c->ld_q + bh * c->Dk; /* bh = b*heads + h */
    KFN(pack_panels)(src, c->ld_q, nk, c->Dk, 0, (nk + VL - 1) / VL, BMF_NV, 1,
                     c->K_packed + (slot * c->Lk_pad + j0) * c->Dk);
#ifdef BMF_AMX
    if (c->amx)
        c->k_tile_amx[slot * c->n_ktiles + t] = (unsigned char)bmf_amx_split_k(
            (const float *)(c->K_packed + (slot * c->Lk_pad + j0) * c->Dk), (nk + VL - 1) / VL,
            BMF_ATT_BK / 16, c->Dk, c->amx_nkb, c->K_amx + (slot * c->n_ktiles + t) * c->amx_tile_len);
#endif
    const REAL *vsrc = c->V + j0 * c->ld_v + bh * c->Dv;
    REAL *vdst = c->V_packed + (slot * c->Lk + j0) * c->Dv_pad;
    for (size_t j = 0; j < nk; j++) {
        memcpy(vdst + j * c->Dv_pad, vsrc + j * c->ld_v, c->Dv * sizeof(REAL));
        for (size_t d = c->Dv; d < c->Dv_pad; d++) vdst[j * c->Dv_pad + d] = 0;
    }
    /* Read only where a key may be removed (att_tile_may_remove): with no
     * mask and no causality the flag is never asked for. */
    int may_remove = c->mask || c->bool_mask || c->causal;
    c->v_tile_finite[slot * c->n_ktiles + t] =
        (unsigned char)(!may_remove || KFN(att_rows_finite)(vdst, c->Dv_pad, nk, c->Dv));
}

/* Tiled path with one key chunk: runs block blk = (batch, head, query
 * block) in the thread's scratch and writes its output rows. */
static void KFN(att_block)(const KFN(att_ctx) *c, size_t blk, size_t slot, REAL *scratch)
{
    size_t rows = c->rows_per_item;
    REAL *m = scratch, *l = m + rows, *O = l + rows;
    if (!KFN(att_item)(c, blk, slot, m, l, O, O + rows * c->Dv_pad, 1))
        KFN(att_write_rows)(c, blk / c->n_qblocks, blk % c->n_qblocks, l, O);
}

static void KFN(att_body_run)(void *arg, int tid, int nt)
{
    KFN(att_ctx) *c = arg;
    REAL *scratch = (REAL *)(c->scratch + (size_t)tid * c->scratch_bytes);
    size_t rows = c->rows_per_item, n_blocks = c->B * c->heads * c->n_qblocks;
    size_t n_items = c->key_major ? c->n_groups * c->n_chunks : n_blocks * c->n_chunks;
    size_t part_len = rows * (2 + c->Dv_pad);
    if (c->bh_major) {
        /* One (batch, head) at a time: packs, then all its query blocks.
         * Each thread's own pairs first: when the same shape is called
         * again, their inputs, packed copies and output rows are still in
         * its cache (attn-short: 0.89-0.90x of the time with first come,
         * first served, where half the pairs changed core at every call). */
        size_t n_bh = c->B * c->heads;
        for (size_t bh; (bh = bmf_next_item_affine(c->item_next, n_bh, tid, nt)) < n_bh;) {
            size_t slot = c->slot_per_thread ? (size_t)tid : bh;
            for (size_t t = 0; t < c->n_ktiles; t++) KFN(att_pack_tile)(c, bh, t, slot);
            for (size_t qb = 0; qb < c->n_qblocks; qb++)
                KFN(att_block)(c, bh * c->n_qblocks + qb, slot, scratch);
        }
        return;
    }
    if (!c->key_major) { /* pack K and V once: units of (batch, head, key tile) */
        size_t n_units = c->B * c->heads * c->n_ktiles;
        for (size_t u; (u = bmf_next_item_affine(c->pack_next, n_units, tid, nt)) < n_units;)
            KFN(att_pack_tile)(c, u / c->n_ktiles, u % c->n_ktiles, u / c->n_ktiles);
        bmf_barrier(nt);
    }
    /* Handed out dynamically: balances causal work (heavier for late query
     * blocks) and threads slowed by other processes.  A thread's own range
     * (a run of (batch, head) pairs) comes first: tiled, mostly the pairs
     * whose K and V it packed above (attn-8heads 0.96-0.97x of the time
     * with first come, first served; decoding 0.95-1.00x). */
    for (size_t item; (item = bmf_next_item_affine(c->item_next, n_items, tid, nt)) < n_items;) {
        if (c->ql_vectors) {
            KFN(att_item_qlanes)(c, item, scratch);
        } else if (c->key_major) {
            KFN(att_item_key_major)(c, item, scratch);
        } else if (c->n_chunks == 1) {
            KFN(att_block)(c, item, item / c->n_qblocks, scratch);
        } else {
            REAL *m = KFN(att_partial)(c, item / c->n_chunks, item % c->n_chunks);
            REAL *l = m + rows, *O = l + rows;
            KFN(att_item)(c, item, item / c->n_chunks / c->n_qblocks, m, l, O, scratch + part_len, 0);
        }
    }
    if (!c->key_major && c->n_chunks == 1) return;
    bmf_barrier(nt);
    /* Merge the chunks of each (batch, head, query block) in chunk order. */
    for (size_t blk; (blk = bmf_next_item(&c->next_merge)) < n_blocks;) {
        size_t i0 = blk % c->n_qblocks * BMF_ATT_BQ;
        size_t nq = c->Lq - i0 < BMF_ATT_BQ ? c->Lq - i0 : BMF_ATT_BQ; /* rows the items set */
        REAL *M = scratch, *L = M + rows, *O = L + rows;
        for (size_t r = 0; r < nq; r++) { M[r] = -(REAL)INFINITY; L[r] = 0; }
        memset(O, 0, nq * c->Dv_pad * sizeof(REAL));
        for (size_t ch = 0; ch < c->n_chunks; ch++) {
            const REAL *m = KFN(att_partial)(c, blk, ch);
            for (size_t r = 0; r < nq; r++) if (m[r] > M[r]) M[r] = m[r];
        }
        for (size_t ch = 0; ch < c->n_chunks; ch++) {
            const REAL *m = KFN(att_partial)(c, blk, ch);
            const REAL *l = m + rows, *Oc = l + rows;
            for (size_t r = 0; r < nq; r++) {
                /* A chunk with no finite score weighs 0, but its O still
                 * counts: 0 * NaN there makes the row NaN when other keys
                 * carry its weight, as in the reference. */
                REAL w = m[r] == -(REAL)INFINITY ? 0 : KFN(att_exp1)(m[r] - M[r]);
                L[r] = V(fma1)(l[r], w, L[r]);
                for (size_t d = 0; d < c->Dv_pad; d++)
                    O[r * c->Dv_pad + d] = V(fma1)(Oc[r * c->Dv_pad + d], w, O[r * c->Dv_pad + d]);
            }
        }
        KFN(att_write_rows)(c, blk / c->n_qblocks, blk % c->n_qblocks, L, O);
    }
}

/* Below this many work items the keys are split into chunks. */
#define BMF_ATT_SPLIT_ITEMS 64
#define BMF_ATT_MIN_CHUNK 512    /* tiled */
#define BMF_ATT_MIN_CHUNK_KM 256 /* key-major */
/* Less work than this per thread does not repay a thread's start. */
#define BMF_ATT_MIN_MACS_PER_THREAD 1048576
/* Fewer query rows than the first number take the key-major path, and
 * fewer than the second where K and V together pass the given size: its
 * contiguous key-row segments stream from memory, where the other paths read
 * each pair's rows apart.  ab_kernels, 2 threads, inputs on huge pages as
 * NumPy's, query lanes against key-major: 128 MiB "12 4096 8 512 8" 1.16x
 * the time (1.14-1.24x with NumPy arrays), "14 4096 8 512 8" 1.08x,
 * "15 4096 8 512 8" 1.01x; 64 MiB "9 2048 8 512 8" 1.18x, "12 2048 8 512 8"
 * 1.03x (0.94x with NumPy arrays), "14 2048 8 512 8" 0.89x; 32 MiB
 * "15 1024 8 512 8" 0.84x.  With 2-6 query rows over 1 MiB or more
 * key-major took 0.55-0.83x of the time of query lanes. */
#define BMF_ATT_TILED_MIN_Q 8
#define BMF_ATT_TILED_MIN_Q_BIG_KV 16
#define BMF_ATT_BIG_KV_BYTES ((size_t)64 << 20)
/* The rest up to BMF_ATT_QL_MAX_Q query rows take the query-lanes path
 * where there are at least this many keys per query row: against the tiled
 * path, whose packing few rows do not amortise, "16 1024 4 256 4" 0.57x,
 * "16 512 8 64 1" 0.78x, "8 256 8 64 1" 0.80x, "32 1024 4 256 4" 0.78x,
 * "32 512 2 64 1" 0.97x of the time; 16 rows at 128 keys 1.0x, at 64 1.1x,
 * 24 rows at 256 keys 1.08x. */
#define BMF_ATT_QL_MIN_KEYS_PER_ROW 16
/* The AMX level's scores (attention_amx.h) from this many query rows: below,
 * the AVX-512 product.  ab_kernels, 2 threads, against e218433 (AVX-512):
 * "128 128 8 64 1" 1.16x the time with AMX, "128 512 8 64 1" 1.00-1.01x;
 * "256 256 4 64 1" 0.94-0.96x, "512 128 8 64 1" 0.96x, "512 512 2 64 1"
 * 0.94x.  And from this many keys: with fewer, the split costs more than
 * it saves (a review, 1 thread: Lq 256 over 4 keys 1.26-1.34x the time,
 * 512 over 32 1.13x, 512 over 128 0.96x). */
#define BMF_ATT_AMX_MIN_Q 256
#define BMF_ATT_AMX_MIN_K 128
/* Tiled: (batch, head) pairs are the work items from this many per thread. */
#define BMF_ATT_BH_MAJOR_PER_THREAD 4
/* ... whose packed K and V go to a slot per pair up to this size in all */
#define BMF_ATT_SMALL_PACKED_BYTES ((size_t)1 << 20)
/* Key-major: a group's key-row segment of about this many bytes streams well;
 * down to the smaller size where that gives each thread this many items. */
#define BMF_ATT_SEGMENT_BYTES 16384
#define BMF_ATT_MIN_SEGMENT_BYTES 4096
#define BMF_ATT_KM_ITEMS_PER_THREAD 4

/* Each thread's part of the call; AMX's tile registers are configured per
 * thread, and given back after (a thread holding them costs every context
 * switch a larger save). */
static void KFN(att_body)(void *arg, int tid, int nt)
{
#ifdef BMF_AMX
    int amx = ((KFN(att_ctx) *)arg)->amx;
    if (amx) bmf_amx_configure();
    KFN(att_body_run)(arg, tid, nt);
    if (amx) _tile_release();
#else
    KFN(att_body_run)(arg, tid, nt);
#endif
}

/* The number of chunks of at least min_chunk keys (rounded to tiles of bk)
 * that gives about BMF_ATT_SPLIT_ITEMS items with n_units other items. */
static void KFN(att_split_keys)(KFN(att_ctx) *c, size_t n_units, size_t min_chunk, size_t bk)
{
    c->n_chunks = 1;
    c->chunk_keys = c->Lk ? c->Lk : 1;
    if (n_units >= BMF_ATT_SPLIT_ITEMS || c->Lk < 2 * min_chunk) return;
    size_t want = (BMF_ATT_SPLIT_ITEMS + n_units - 1) / n_units, most = c->Lk / min_chunk;
    size_t n = want < most ? want : most;
    c->chunk_keys = ((c->Lk + n - 1) / n + bk - 1) / bk * bk;
    c->n_chunks = (c->Lk + c->chunk_keys - 1) / c->chunk_keys;
}

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
    size_t kv_bytes = Lk * B * heads * (Dk + Dv) * sizeof(REAL);
    int key_major = Lq < BMF_ATT_TILED_MIN_Q
                    || (Lq < BMF_ATT_TILED_MIN_Q_BIG_KV && kv_bytes > BMF_ATT_BIG_KV_BYTES);
    int q_lanes = !key_major && Lq <= BMF_ATT_QL_MAX_Q && Lq <= BMF_ATT_QL_MAX_VECTORS * VL
                  && Lk >= BMF_ATT_QL_MIN_KEYS_PER_ROW * Lq;
    c.key_major = key_major || q_lanes; /* query lanes: key-major's items */
    if (q_lanes) /* vectors of query lanes, a power of two: see att_ql_dots */
        for (c.ql_vectors = 1; c.ql_vectors * VL < Lq; c.ql_vectors *= 2) {}
    c.ql_prefetch_v = kv_bytes > BMF_ATT_QL_PREFETCH_V_BYTES;
    size_t n_bh = B * heads, n_blocks = n_bh * c.n_qblocks, n_items, tile;
    if (c.key_major) { /* n_qblocks == 1, rows_per_item == Lq */
        size_t d = Dk > Dv ? Dk : Dv;
        c.group_bh = BMF_ATT_SEGMENT_BYTES / sizeof(REAL) / (d ? d : 1);
        if (c.group_bh < 1) c.group_bh = 1;
        if (c.group_bh > BMF_ATT_GROUP_MAX) c.group_bh = BMF_ATT_GROUP_MAX;
        if (c.group_bh > n_bh) c.group_bh = n_bh;
        c.n_groups = (n_bh + c.group_bh - 1) / c.group_bh;
        KFN(att_split_keys)(&c, c.n_groups, BMF_ATT_MIN_CHUNK_KM, BMF_ATT_BK_KM);
        n_items = c.n_groups * c.n_chunks;
        tile = c.group_bh * Lq * BMF_ATT_BK_KM; /* S */
        if (q_lanes) /* ST and RT, and each pair's Qt, m and l */
            tile = (2 * BMF_ATT_BK_KM + c.group_bh * (Dk + 2)) * c.ql_vectors * VL;
    } else {
        KFN(att_split_keys)(&c, n_blocks, BMF_ATT_MIN_CHUNK, BMF_ATT_BK);
        n_items = n_blocks * c.n_chunks;
        tile = BMF_ATT_BQ * BMF_ATT_BK + BMF_ATT_BQ * Dk; /* S, Q block */
#ifdef BMF_AMX
        c.amx = sizeof(REAL) == 4 && Lq >= BMF_ATT_AMX_MIN_Q && Lk >= BMF_ATT_AMX_MIN_K;
        if (c.amx) { /* Q's parts, 64-byte aligned */
            c.amx_nkb = (Dk + 31) / 32;
            c.amx_tile_len = 3 * c.amx_nkb * BMF_ATT_BK * 32;
            tile += (3 * c.amx_nkb * BMF_AMX_ROWS_MAX * 32 * sizeof(uint16_t) + 64) / sizeof(REAL) + 16;
        }
#endif
    }
    size_t rows = c.rows_per_item, part_len = rows * (2 + c.Dv_pad);
    c.scratch_bytes = bmf_piece((part_len + tile) * sizeof(REAL));
    /* Threads only where each gets enough work to repay its start. */
    size_t macs = n_bh * Lq * (Lk ? Lk : 1) * (Dk + Dv);
    size_t useful = macs / BMF_ATT_MIN_MACS_PER_THREAD + 1;
    int nt_work = bmf_threads_for(n_threads, useful); /* what the work repays */
    if (c.key_major && nt_work > 1) {
        /* Few items per thread (decoding on many cores: attn-decode has 16
         * items): smaller groups of pairs give more.  The chunks stay as the
         * shape set them above; why the group changes no bit: the header. */
        size_t d = Dk > Dv ? Dk : Dv;
        /* (query lanes: down to one pair; 8 pairs over 256 keys were one
         * item of 8 pairs, on one thread: 1.47x the tiled path's time, now 0.80x) */
        size_t min_group = c.ql_vectors ? 1 : BMF_ATT_MIN_SEGMENT_BYTES / sizeof(REAL) / (d ? d : 1);
        while (c.n_groups * c.n_chunks < BMF_ATT_KM_ITEMS_PER_THREAD * (size_t)nt_work
               && c.group_bh / 2 >= (min_group ? min_group : 1)) {
            c.group_bh /= 2;
            c.n_groups = (n_bh + c.group_bh - 1) / c.group_bh;
        }
        n_items = c.n_groups * c.n_chunks;
    }
    int nt = bmf_threads_for(n_threads, useful < n_items ? useful : n_items);
    int use_partials = c.key_major || c.n_chunks > 1;
    /* Many (batch, head) pairs per thread: the thread that packs a pair's K
     * and V also uses them, from its own cache, and no barrier waits for all
     * packing to end.  ab_kernels, 2 threads, against packing all pairs
     * first: attn-short 0.86-0.92x of the time; long queries too, whose
     * packed pairs all together pass L2 and were read back from L3 (attn-8heads
     * 0.93-0.96x, float64 0.94x; "2048 2048 8 64 1" 0.98x, "4096 4096 1 512 8"
     * 0.97x, "1024 1024 1 512 8", 4 pairs a thread, 1.00x). */
    c.bh_major = !use_partials && n_bh >= BMF_ATT_BH_MAJOR_PER_THREAD * (size_t)nt;
    c.n_ktiles = (Lk + BMF_ATT_BK - 1) / BMF_ATT_BK;
    c.Lk_pad = (Lk + VL - 1) / VL * VL; /* about the size of K, not of whole tiles */
    size_t scratch_bytes = (size_t)nt * c.scratch_bytes;
    size_t partials_bytes = use_partials ? n_blocks * c.n_chunks * part_len * sizeof(REAL) : 0;
    /* bh_major: a slot per thread, unless all pairs' copies are small
     * (attn-short's 512 KiB: 1.015-1.03x the time in one slot per thread,
     * unexplained; over 4 MiB in all, per thread took 0.43-0.94x). */
    size_t pair_bytes = (c.Lk_pad * Dk + Lk * c.Dv_pad) * sizeof(REAL);
    c.slot_per_thread = c.bh_major && n_bh * pair_bytes > BMF_ATT_SMALL_PACKED_BYTES;
    size_t slots = c.key_major ? 0 : c.slot_per_thread ? (size_t)nt : n_bh;
    size_t k_bytes = slots * c.Lk_pad * Dk * sizeof(REAL);
    size_t v_bytes = slots * Lk * c.Dv_pad * sizeof(REAL);
    size_t finite_bytes = slots * c.n_ktiles;
    size_t amx_bytes = c.amx ? slots * c.n_ktiles * c.amx_tile_len * sizeof(uint16_t) : 0;
    size_t amx_flag_bytes = c.amx ? slots * c.n_ktiles : 0;
    size_t counter_bytes = (size_t)nt * sizeof(bmf_progress);
    unsigned char *ws = bmf_workspace_acquire(bmf_piece(scratch_bytes) + bmf_piece(partials_bytes)
                                              + bmf_piece(k_bytes) + bmf_piece(v_bytes)
                                              + bmf_piece(finite_bytes) + 2 * bmf_piece(counter_bytes)
                                              + bmf_piece(amx_bytes) + bmf_piece(amx_flag_bytes));
    if (!ws) return BMF_ERR_NOMEM;
    unsigned char *next = ws;
    c.scratch = bmf_carve(&next, scratch_bytes);
    if (use_partials) c.partials = bmf_carve(&next, partials_bytes);
    if (!c.key_major) {
        c.K_packed = bmf_carve(&next, k_bytes);
        c.V_packed = bmf_carve(&next, v_bytes);
        c.v_tile_finite = bmf_carve(&next, finite_bytes);
        if (c.amx) {
            c.K_amx = (uint16_t *)bmf_carve(&next, amx_bytes);
            c.k_tile_amx = bmf_carve(&next, amx_flag_bytes);
        }
    }
    c.pack_next = bmf_carve(&next, counter_bytes);
    c.item_next = bmf_carve(&next, counter_bytes);
    memset(c.pack_next, 0, counter_bytes);
    memset(c.item_next, 0, counter_bytes);
    bmf_parallel(nt, KFN(att_body), &c);
    bmf_workspace_release(ws);
    return 0;
}
