/* rnn_impl.h: the Elman tanh RNN forward, h_t = tanh(x_t Wx^T + h_{t-1} Wh^T + b).
 * A template: kernels_impl.h includes it once per (ISA, REAL).
 *
 * 1. Input projection, out[t, b, :] = x[t, b, :] Wx^T + b, written straight
 *    into out: for every step at once (one blocked matrix product, rows
 *    handed out to the threads in chunks, dynamically), or a step at a time
 *    in the batch split below.
 * 2. The recurrence in ONE parallel region for the whole sequence, split
 *    among the threads in one of two ways:
 *  - By batch rows (rnn_batch_split_body), where each thread gets 8 rows or
 *    more and all of Wh and Wx fit its L2 (rnn_split_rows): each thread
 *    runs every step of its own rows, input projection included, and never
 *    waits for another.
 *  - Otherwise by hidden units (rnn_recurrence_body; the
 *    "persistent RNN"): thread j owns the same panels of hidden units at every
 *    step, packs its rows of Wh once so they stay in its cache, and computes
 *    out[t][:, its units] = tanh(out[t] + out[t-1] Wh^T) for every batch row
 *    (on AVX-512, batches such as 8, 12, 16 or 32 rows in tall tiles:
 *    gemm_impl.h).
 *    Before it reads the other threads' units of out[t-1] it waits for their
 *    progress counters.  No barrier is needed: out[t] is a fresh row at every
 *    step, so nothing is overwritten that another thread may still read.
 *    On 2+ threads with each thread's units of out on cache lines of their
 *    own (rnn_lines_apart), the sums of a step's rows in multi-row tiles
 *    run over k in segments, one per thread's units, in k order: a thread
 *    waits for the later threads only when it reaches their segments
 *    (rnn_recurrence_body; a lone sequence's row, two chains, is summed whole).
 *    A thread that waits too long for another (whose core another process or
 *    pool has taken) takes over every thread's remaining steps; a step of a
 *    thread's slice is claimed before it is run, so each runs exactly once,
 *    with the same tiles whoever runs it (the same bits).
 * The thread count is cut to what the work per step repays.  Both splits
 * sum each element as one chain over k, projection then recurrence
 * (gemm_rows' tiles; only a lone sequence, never split by rows, takes the
 * one-row tile's two chains), so the bits are the same whichever split a
 * thread count takes.
 * 3. A lone sequence with few hidden units (rnn_lone) runs its steps on one
 *    thread after the same projection, each sum in four chains.
 */

typedef struct {
    size_t T, B, I, H, n_panels;
    const REAL *x, *h0, *Wx, *Wh, *b;
    REAL *out, *Wx_packed, *Wh_packed;
    bmf_progress *progress; /* per thread's slice: steps finished */
    bmf_progress *claims;   /* per thread's slice: steps claimed */
    int soloist;            /* the thread that took over all slices, or -1 */
    size_t next_rows;       /* projection: the next chunk of rows to hand out */
} KFN(rnn_ctx);

/* Row tiles per dynamically handed-out chunk of the input projection. */
#define BMF_RNN_PROJECTION_TILES 16

/* Thread tid's share of packing W (H rows of K, row-major) in groups of
 * `group` panels: whole groups per thread, so that the packed layout is
 * that of one pass (gemm_block's). */
static void KFN(rnn_pack_share)(const KFN(rnn_ctx) *c, const REAL *W, size_t K, size_t group,
                                REAL *packed, int tid, int nt)
{
    size_t g0, g1;
    bmf_split_range((c->n_panels + group - 1) / group, tid, nt, &g0, &g1);
    size_t p1 = g1 * group < c->n_panels ? g1 * group : c->n_panels;
    if (g0 * group < p1) KFN(pack_panels)(W, K, c->H, K, g0 * group, p1, group, 1, packed);
}

static void KFN(rnn_projection_body)(void *arg, int tid, int nt)
{
    KFN(rnn_ctx) *c = arg;
    size_t rows = c->T * c->B, group = KFN(gemm_group)(rows);
    KFN(rnn_pack_share)(c, c->Wx, c->I, group, c->Wx_packed, tid, nt);
    bmf_barrier(nt);
    /* Chunks of whole tiles (only the last one ragged), handed out
     * dynamically: a thread slowed by another process takes fewer.  In
     * gemm_rows' tiles, each element is one chain over k whatever the chunk
     * (the batch split computes the same sums a step at a time). */
    size_t chunk = BMF_RNN_PROJECTION_TILES * BMF_MR, n_chunks = rows / chunk ? rows / chunk : 1;
    for (size_t i; (i = bmf_next_item(&c->next_rows)) < n_chunks;) {
        size_t m0 = i * chunk, m1 = i + 1 < n_chunks ? m0 + chunk : rows; /* the last: the rest */
        KFN(gemm_rows)(m0, m1, 0, c->n_panels, c->n_panels, group, c->I, 0, c->I, c->x, c->I,
                       c->Wx_packed, c->out, c->H, c->H, BMF_INIT_BIAS, c->b, 0);
    }
}

/* The step's rows summed as ONE chain per element, [0, multi): all of them
 * (gemm_rows' tiles), but for a lone sequence, whose one-row tile takes two
 * chains (a shape's rows are summed alike by every thread count).  Such
 * sums can be taken in segments of k, their partial sums waiting in out[t]
 * (the same bits as in one pass). */
static size_t KFN(rnn_multi_rows)(size_t B) { return B >= 2 ? B : 0; }

/* Rows [r0, r1) of step t for the panels [p0, p1) of hidden units, summed
 * over k in [kb, ke) (tanh once ke == H). */
BMF_ALWAYS_INLINE void KFN(rnn_rows)(KFN(rnn_ctx) *c, size_t r0, size_t r1, size_t p0, size_t p1,
                                     size_t t, size_t kb, size_t ke)
{
    size_t H = c->H, step = c->B * c->H, group = KFN(gemm_group)(c->B);
    if (r0 >= r1 || p0 >= p1) return;
    const REAL *h_prev = t == 0 ? c->h0 : c->out + (t - 1) * step;
    REAL *h = c->out + t * step;
    if (r1 - r0 == 1) /* a lone sequence */
        KFN(gemm_block)(r0, r1, p0, p1, p1, group, H, kb, ke, h_prev, H, c->Wh_packed, 0, h, H, H,
                        BMF_INIT_C, NULL, 1, NULL, (int)(t & 1));
    else
        KFN(gemm_rows)(r0, r1, p0, p1, p1, group, H, kb, ke, h_prev, H, c->Wh_packed, h, H, H,
                       BMF_INIT_C, NULL, 1);
}

/* The k segments of a step: segment i is thread i's slice of units. */
static inline void KFN(rnn_segment)(const KFN(rnn_ctx) *c, int i, int nt, size_t *kb, size_t *ke)
{
    size_t q0, q1;
    bmf_split_range(c->n_panels, i, nt, &q0, &q1);
    *kb = q0 * VL;
    *ke = q1 * VL < c->H ? q1 * VL : c->H;
}

/* The rest of step t of thread `owner`'s slice, panels [p0, p1), whose
 * multi-row sums hold k < kb (kb = 0: all of it), then publishes it (the
 * caller claimed it and every thread's step t-1 is done).  Step 0 packs the
 * slice's rows of Wh first. */
static void KFN(rnn_finish_slice)(KFN(rnn_ctx) *c, int owner, size_t p0, size_t p1, size_t t,
                                  size_t kb)
{
    size_t multi = KFN(rnn_multi_rows)(c->B);
    if (t == 0 && p0 < p1)
        KFN(pack_panels)(c->Wh, c->H, c->H, c->H, p0, p1, KFN(gemm_group)(c->B), 1, c->Wh_packed);
    KFN(rnn_rows)(c, 0, multi, p0, p1, t, kb, c->H);
    KFN(rnn_rows)(c, multi, c->B, p0, p1, t, 0, c->H);
    bmf_progress_publish(&c->progress[owner], t + 1);
}

/* Thread tid waited too long at step t: unless another thread already did,
 * it takes over, running from step t-1 on every (slice, step) still
 * unclaimed and waiting for the ones whose owner (not yet retired) claimed
 * them first.  kb_done > 0: tid had claimed its step t and summed its
 * multi-row tiles over k < kb_done; it finishes that step itself. */
static void KFN(rnn_take_over)(KFN(rnn_ctx) *c, int tid, int nt, size_t t, size_t kb_done)
{
    int none = -1;
    size_t q0, q1;
    if (!__atomic_compare_exchange_n(&c->soloist, &none, tid, 0, __ATOMIC_RELAXED,
                                     __ATOMIC_RELAXED)) {
        if (kb_done) { /* the soloist runs the other slices, and waits for this one */
            bmf_progress_wait(c->progress, nt, tid, t, NULL);
            bmf_split_range(c->n_panels, tid, nt, &q0, &q1);
            KFN(rnn_finish_slice)(c, tid, q0, q1, t, kb_done);
        }
        return;
    }
    for (size_t s = t - 1; s < c->T; s++)
        for (int k = 0; k < nt; k++) {
            bmf_split_range(c->n_panels, k, nt, &q0, &q1);
            if (s == t && k == tid && kb_done)
                KFN(rnn_finish_slice)(c, k, q0, q1, s, kb_done);
            else if (bmf_claim_step(&c->claims[k], s))
                KFN(rnn_finish_slice)(c, k, q0, q1, s, 0);
            else
                bmf_wait_for(&c->progress[k], s + 1, NULL);
        }
}

/* Prefetches rows [0, B) of a step's output h over units [k0, k1), all
 * their lines at once: a product reading another thread's units would
 * otherwise meet its cross-core misses one by one. */
static inline void KFN(rnn_prefetch)(const REAL *h, size_t B, size_t H, size_t k0, size_t k1)
{
    for (size_t r = 0; r < B; r++)
        for (size_t k = k0; k < k1; k += 64 / sizeof(REAL)) __builtin_prefetch(h + r * H + k);
}

/* Whether each of nt threads' units of out lie on cache lines of their
 * own (out on a line, every row and slice boundary too): segments need it,
 * as with a line shared the partial sums stored and reloaded mid-step
 * bounce between the cores (B = 8, H = 128, out 16 bytes past a line: 1.2x
 * the time).  The bits are the same either way. */
static int KFN(rnn_lines_apart)(const KFN(rnn_ctx) *c, int nt)
{
    if ((uintptr_t)c->out % 64 || c->H * sizeof(REAL) % 64) return 0;
    for (int j = 1; j < nt; j++) {
        size_t kb, ke;
        KFN(rnn_segment)(c, j, nt, &kb, &ke);
        if (kb * sizeof(REAL) % 64) return 0;
    }
    return 1;
}

static void KFN(rnn_recurrence_body)(void *arg, int tid, int nt)
{
    KFN(rnn_ctx) *c = arg;
    size_t p0, p1, H = c->H, B = c->B, step = B * H;
    size_t multi = nt > 1 && KFN(rnn_lines_apart)(c, nt) ? KFN(rnn_multi_rows)(B) : 0;
    size_t own0, own1; /* the h units it writes: its panels [p0, p1) */
    bmf_split_range(c->n_panels, tid, nt, &p0, &p1);
    KFN(rnn_segment)(c, tid, nt, &own0, &own1);
    /* In segments (multi > 0), the multi-row tiles' sums run over k in
     * order, one segment per thread's units: thread tid waits for threads
     * 0..tid-1 (before it claims the step), sums their segments and its own
     * in one call, then each later segment once its thread has published
     * step t-1 (thread 0 thus starts on its own units at once, and the last
     * thread to finish t-1 holds up no one's start of t).  In one pass, it
     * waits for every thread first. */
    int wait_first = multi ? tid : nt;
    bmf_patience patience = {0, 0, bmf_rnn_takeover_seconds, BMF_RNN_TAKEOVER_SHARE};
    for (size_t t = 0; t < c->T; t++) {
        REAL *h = c->out + t * step;
        const REAL *h_prev = t > 0 ? h - step : c->h0;
        if (t + 1 < c->T) /* the next step's projection, written long ago */
            KFN(rnn_prefetch)(h + step, B, H, own0, own1);
        if (t > 0) {
            /* Step 0 packs Wh too, first touching fresh pages: no limit on the
             * wait for it, and the patience counts from its end. */
            if (!bmf_progress_wait(c->progress, wait_first, tid, t, t > 1 ? &patience : NULL)) {
                KFN(rnn_take_over)(c, tid, nt, t, 0);
                return;
            }
            if (t == 1) patience.start = bmf_seconds();
            if (!multi) { /* (in segments, prefetching the others' lines cost 1-7%) */
                KFN(rnn_prefetch)(h_prev, B, H, 0, own0);
                KFN(rnn_prefetch)(h_prev, B, H, own1, H);
            }
        }
        /* This thread's rows of Wh, packed at step 0, stay in its cache. */
        if (nt > 1 && (__atomic_load_n(&c->soloist, __ATOMIC_RELAXED) >= 0
                       || !bmf_claim_step(&c->claims[tid], t)))
            return; /* another thread runs the remaining steps */
        if (t == 0 || !multi) {
            KFN(rnn_finish_slice)(c, tid, p0, p1, t, 0);
            continue;
        }
        /* segments up to its own: their threads are done */
        KFN(rnn_rows)(c, 0, multi, p0, p1, t, 0, own1);
        size_t kb = own1;
        for (int i = tid + 1; i < nt; i++) {
            size_t ke;
            if (!bmf_wait_for(&c->progress[i], t, t > 1 ? &patience : NULL)) {
                KFN(rnn_take_over)(c, tid, nt, t, kb);
                return;
            }
            KFN(rnn_segment)(c, i, nt, &kb, &ke);
            KFN(rnn_rows)(c, 0, multi, p0, p1, t, kb, ke);
            kb = ke;
        }
        KFN(rnn_rows)(c, multi, B, p0, p1, t, 0, H);
        bmf_progress_publish(&c->progress[tid], t + 1);
    }
}

/* The batch split: thread tid runs every step of its own batch rows, over
 * all hidden units.  Rows never depend on other rows, so the threads never
 * wait for each other after Wh is packed; each reads all of Wh at every
 * step, from its own L2 (hence only for small Wh and Wx: rnn_split_rows).  Its
 * rows are pairs [2 b0, 2 b1) (the last thread also takes an odd last row),
 * in gemm_rows' tiles: one chain per element, the bits of the unit split. */
static void KFN(rnn_batch_split_body)(void *arg, int tid, int nt)
{
    KFN(rnn_ctx) *c = arg;
    size_t H = c->H, I = c->I, B = c->B, step = B * H, group = KFN(gemm_group)(B);
    size_t n_panels = c->n_panels, b0, b1;
    bmf_split_range(B / 2, tid, nt, &b0, &b1);
    size_t r0 = 2 * b0, r1 = tid == nt - 1 ? B : 2 * b1;
    KFN(rnn_pack_share)(c, c->Wx, I, group, c->Wx_packed, tid, nt);
    KFN(rnn_pack_share)(c, c->Wh, H, group, c->Wh_packed, tid, nt);
    bmf_barrier(nt);
    for (size_t t = 0; t < c->T; t++) {
        REAL *h = c->out + t * step;
        /* the step's input projection for these rows (its sums as in
         * rnn_projection_body's), still in L1 for the step */
        KFN(gemm_rows)(r0, r1, 0, n_panels, n_panels, group, I, 0, I, c->x + t * B * I, I,
                       c->Wx_packed, h, H, H, BMF_INIT_BIAS, c->b, 0);
        KFN(gemm_rows)(r0, r1, 0, n_panels, n_panels, group, H, 0, H, t ? h - step : c->h0, H,
                       c->Wh_packed, h, H, H, BMF_INIT_C, NULL, 1);
    }
}

/* Whether nt threads split the batch rather than the hidden units: each
 * thread gets 8 rows or more (its tiles then read Wh from L2 no more often
 * than the unit split's), all of Wh fits each core's L2 beside the rest
 * (512 KiB: f32 H <= 362, f64 H <= 256), and Wx too, as every step reads
 * both (768 KiB for the two, against the unit split with H = 256 and
 * B = 16: I = 128 in float64, 0.94x of the time; I = 512 in float32, 768
 * KiB, 1.01x; I = 768, 1 MiB, 1.10x; I = 1024, 1.20x). */
#define BMF_RNN_BATCH_SPLIT_MAX_WH_BYTES (512u << 10)
#define BMF_RNN_BATCH_SPLIT_MAX_W_BYTES (768u << 10)
static int KFN(rnn_split_rows)(size_t B, size_t I, size_t H, int nt)
{
    return nt >= 2 && B >= 8 * (size_t)nt && H * H * sizeof(REAL) <= BMF_RNN_BATCH_SPLIT_MAX_WH_BYTES
           && (I + H) * H * sizeof(REAL) <= BMF_RNN_BATCH_SPLIT_MAX_W_BYTES;
}

/* A lone sequence (B == 1) with few hidden units: one thread (the step
 * cannot repay a second), and its step's product is short enough that the
 * latency of its FMA chains, not their number, sets its time.  So each
 * element's sum is taken in four chains (k mod 4) instead of the one-row
 * tile's two.  Chosen by the shape alone, like every path.  4 chains x 4
 * panels = 16 accumulators: registers on AVX-512; on AVX2 and the baseline
 * (16 registers) two spill, and the path still pays there (ab_kernels with
 * AB_ISA: 0.77x of the time at H = 32 on AVX2, 0.82x at H = 16 on the
 * baseline). */
#define BMF_RNN_LONE_MAX_PANELS 4

BMF_ALWAYS_INLINE void KFN(rnn_lone_steps)(const int nv, const KFN(rnn_ctx) *c)
{
    size_t T = c->T, H = c->H, ks = (size_t)nv * VL;
    const REAL *Whp = c->Wh_packed;
    size_t left[BMF_RNN_LONE_MAX_PANELS];
    for (int v = 0; v < nv; v++) left[v] = H > (size_t)v * VL ? H - (size_t)v * VL : 0;
    for (size_t t = 0; t < T; t++) {
        const REAL *h_prev = t == 0 ? c->h0 : c->out + (t - 1) * H;
        REAL *h = c->out + t * H; /* holds the projection */
        VEC s0[BMF_RNN_LONE_MAX_PANELS], s1[BMF_RNN_LONE_MAX_PANELS], s2[BMF_RNN_LONE_MAX_PANELS],
            s3[BMF_RNN_LONE_MAX_PANELS];
        for (int v = 0; v < nv; v++) {
            s0[v] = V(load_partial)(h + (size_t)v * VL, left[v]);
            s1[v] = s2[v] = s3[v] = V(set1)(0);
        }
#define BMF_LONE_FMAS(chain, kk)                                                \
    do {                                                                        \
        VEC a_ = V(set1)(h_prev[kk]);                                           \
        for (int v = 0; v < nv; v++)                                            \
            chain[v] = V(fma)(a_, V(load)(Whp + (kk) * ks + (size_t)v * VL), chain[v]); \
    } while (0)
        size_t k = 0;
        for (; k + 3 < H; k += 4) {
            BMF_LONE_FMAS(s0, k);
            BMF_LONE_FMAS(s1, k + 1);
            BMF_LONE_FMAS(s2, k + 2);
            BMF_LONE_FMAS(s3, k + 3);
        }
        if (k < H) BMF_LONE_FMAS(s0, k);
        if (k + 1 < H) BMF_LONE_FMAS(s1, k + 1);
        if (k + 2 < H) BMF_LONE_FMAS(s2, k + 2);
#undef BMF_LONE_FMAS
        for (int v = 0; v < nv; v++)
            V(store_partial)(h + (size_t)v * VL, V(tanh)((s0[v] + s1[v]) + (s2[v] + s3[v])), left[v]);
    }
}

/* The lone sequence's steps, after the projection. */
static void KFN(rnn_lone)(KFN(rnn_ctx) *c)
{
    size_t np = c->n_panels;
    KFN(pack_panels)(c->Wh, c->H, c->H, c->H, 0, np, np, 1, c->Wh_packed);
    switch (np) {
#define BMF_LONE(NV_)                                                         \
    case NV_: KFN(rnn_lone_steps)(NV_, c); break;
        BMF_LONE(1) BMF_LONE(2) BMF_LONE(3) BMF_LONE(4)
#undef BMF_LONE
    default: abort();
    }
}

/* Below this many multiply-adds per thread and step, syncing every step
 * costs more than the second thread saves. */
#define BMF_RNN_MIN_MACS_PER_THREAD 16384
/* A one-off parallel region (the projection) needs more work to repay its
 * fork and join, and on a busy machine a late thread costs a time slice. */
#define BMF_RNN_MIN_PROJECTION_MACS_PER_THREAD 1048576

int KFN(rnn)(size_t T, size_t B, size_t I, size_t H, const REAL *x,
             const REAL *h0, const REAL *Wx, const REAL *Wh, const REAL *b,
             REAL *out, int n_threads)
{
    if (T == 0 || B == 0 || H == 0) return 0;
    size_t n_panels = (H + VL - 1) / VL;
    KFN(rnn_ctx) c = {T, B, I, H, n_panels, x, h0, Wx, Wh, b, out, NULL, NULL, NULL, NULL, -1, 0};
    size_t proj_work = T * B * H * (I + 1) / BMF_RNN_MIN_PROJECTION_MACS_PER_THREAD + 1;
    int nt_proj = bmf_threads_for(n_threads, proj_work < n_panels * T ? proj_work : n_panels * T);
    size_t step_work = B * H * H / BMF_RNN_MIN_MACS_PER_THREAD + 1;
    int nt = bmf_threads_for(n_threads, step_work < n_panels ? step_work : n_panels);
    size_t wx_bytes = n_panels * VL * (I ? I : 1) * sizeof(REAL);
    size_t wh_bytes = n_panels * VL * H * sizeof(REAL);
    size_t progress_bytes = 2 * (size_t)nt * sizeof(bmf_progress); /* progress, claims */
    unsigned char *ws = bmf_workspace_acquire(bmf_piece(wx_bytes) + bmf_piece(wh_bytes)
                                              + bmf_piece(progress_bytes));
    if (!ws) return BMF_ERR_NOMEM;
    unsigned char *next = ws;
    c.Wx_packed = bmf_carve(&next, wx_bytes);
    c.Wh_packed = bmf_carve(&next, wh_bytes);
    c.progress = bmf_carve(&next, progress_bytes);
    memset(c.progress, 0, progress_bytes);
    c.claims = c.progress + nt;
    if (KFN(rnn_split_rows)(B, I, H, nt)) {
        bmf_parallel(nt, KFN(rnn_batch_split_body), &c); /* the projection too */
    } else {
        bmf_parallel(nt_proj, KFN(rnn_projection_body), &c);
        if (B == 1 && step_work == 1 && n_panels <= BMF_RNN_LONE_MAX_PANELS)
            KFN(rnn_lone)(&c); /* by the shape alone: one thread at any n_threads */
        else
            bmf_parallel(nt, KFN(rnn_recurrence_body), &c);
    }
    bmf_workspace_release(ws);
    return 0;
}
