/* rnn_impl.h: the Elman tanh RNN forward, h_t = tanh(x_t Wx^T + h_{t-1} Wh^T + b).
 * A template: kernels_impl.h includes it once per (ISA, REAL).
 *
 * 1. Input projection for every step at once, written straight into out:
 *    out[t, b, :] = x[t, b, :] Wx^T + b (one blocked matrix product, rows
 *    handed out to the threads in chunks, dynamically).
 * 2. The recurrence in ONE parallel region for the whole sequence (the
 *    "persistent RNN"): thread j owns the same panels of hidden units at every
 *    step, packs its rows of Wh once so they stay in its cache, and computes
 *    out[t][:, its units] = tanh(out[t] + out[t-1] Wh^T) for every batch row
 *    (on AVX-512, batches such as 16 or 32 rows in tall tiles: gemm_impl.h).
 *    Before it reads the other threads' units of out[t-1] it waits for their
 *    progress counters.  No barrier is needed: out[t] is a fresh row at every
 *    step, so nothing is overwritten that another thread may still read.
 *    A thread that waits too long for another (whose core another process or
 *    pool has taken) takes over every thread's remaining steps; a step of a
 *    thread's slice is claimed before it is run, so each runs exactly once,
 *    with the same tiles whoever runs it (the same bits).
 * The thread count is cut to what the work per step repays.
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

static void KFN(rnn_projection_body)(void *arg, int tid, int nt)
{
    KFN(rnn_ctx) *c = arg;
    size_t rows = c->T * c->B, group = KFN(gemm_group)(rows);
    size_t g0, g1;
    /* Whole groups per thread, so the packed layout matches gemm_block's. */
    bmf_split_range((c->n_panels + group - 1) / group, tid, nt, &g0, &g1);
    size_t p1 = g1 * group < c->n_panels ? g1 * group : c->n_panels;
    if (g0 * group < p1)
        KFN(pack_panels)(c->Wx, c->I, c->H, c->I, g0 * group, p1, group, 1, c->Wx_packed);
    bmf_barrier(nt);
    /* Chunks of whole tiles (only the last one ragged), handed out
     * dynamically: a thread slowed by another process takes fewer. */
    size_t chunk = BMF_RNN_PROJECTION_TILES * BMF_MR, n_chunks = (rows + chunk - 1) / chunk;
    for (size_t i; (i = bmf_next_item(&c->next_rows)) < n_chunks;) {
        size_t m0 = i * chunk, m1 = m0 + chunk < rows ? m0 + chunk : rows;
        KFN(gemm_block)(m0, m1, 0, c->n_panels, c->n_panels, group, c->I, c->x, c->I,
                        c->Wx_packed, 0, c->out, c->H, c->H, BMF_INIT_BIAS, c->b, 0, 0);
    }
}

/* Step t of thread `owner`'s slice, its panels [p0, p1) of hidden units
 * (step 0 packs their rows of Wh first); the caller has claimed it. */
BMF_ALWAYS_INLINE void KFN(rnn_run_slice)(KFN(rnn_ctx) *c, int owner, size_t p0, size_t p1, size_t t)
{
    size_t H = c->H, step = c->B * c->H, group = KFN(gemm_group)(c->B);
    if (p0 < p1) {
        if (t == 0) KFN(pack_panels)(c->Wh, H, H, H, p0, p1, group, 1, c->Wh_packed);
        const REAL *h_prev = t == 0 ? c->h0 : c->out + (t - 1) * step;
        size_t m0 = 0; /* the rows before m0 in tall tiles, if they pay for this batch */
#if BMF_MR_TALL
        if (KFN(gemm_tall_pays)(c->B))
            m0 = KFN(gemm_block_tall)(0, c->B, p0, p1, p1, group, H, h_prev, H, c->Wh_packed,
                                      c->out + t * step, H, H, BMF_INIT_C, NULL, 1);
#endif
        KFN(gemm_block)(m0, c->B, p0, p1, p1, group, H, h_prev, H, c->Wh_packed, 0,
                        c->out + t * step, H, H, BMF_INIT_C, NULL, 1, (int)(t & 1));
    }
    bmf_progress_publish(&c->progress[owner], t + 1);
}

/* Thread tid waited too long at step t: unless another thread already did,
 * it takes over, running from step t-1 on every (slice, step) still
 * unclaimed and waiting for the ones whose owner (not yet retired) claimed
 * them first. */
static void KFN(rnn_take_over)(KFN(rnn_ctx) *c, int tid, int nt, size_t t)
{
    int none = -1;
    if (!__atomic_compare_exchange_n(&c->soloist, &none, tid, 0, __ATOMIC_RELAXED,
                                     __ATOMIC_RELAXED))
        return; /* the soloist runs this thread's slices too */
    for (size_t s = t - 1; s < c->T; s++)
        for (int k = 0; k < nt; k++) {
            size_t p0, p1;
            bmf_split_range(c->n_panels, k, nt, &p0, &p1);
            if (bmf_claim_step(&c->claims[k], s))
                KFN(rnn_run_slice)(c, k, p0, p1, s);
            else
                bmf_wait_for(&c->progress[k], s + 1, NULL);
        }
}

static void KFN(rnn_recurrence_body)(void *arg, int tid, int nt)
{
    KFN(rnn_ctx) *c = arg;
    size_t p0, p1, H = c->H, step = c->B * c->H;
    bmf_split_range(c->n_panels, tid, nt, &p0, &p1);
    size_t own0 = p0 * VL, own1 = p1 * VL < H ? p1 * VL : H; /* the h units it writes */
    bmf_patience patience = {0, 0, bmf_rnn_takeover_seconds, BMF_RNN_TAKEOVER_SHARE};
    for (size_t t = 0; t < c->T; t++) {
        REAL *h = c->out + t * step;
        if (t + 1 < c->T) /* the next step's projection, written long ago */
            for (size_t r = 0; r < c->B; r++)
                for (size_t col = own0; col < own1; col += 64 / sizeof(REAL))
                    __builtin_prefetch(h + step + r * H + col);
        if (t > 0) {
            /* Step 0 packs Wh too, first touching fresh pages: no limit on the
             * wait for it, and the patience counts from its end. */
            if (!bmf_progress_wait(c->progress, nt, tid, t, t > 1 ? &patience : NULL)) {
                KFN(rnn_take_over)(c, tid, nt, t);
                return;
            }
            if (t == 1) patience.start = bmf_seconds();
            /* the others' units of h_prev, all their lines at once: the
             * product would otherwise meet their cross-core misses one by one */
            const REAL *h_prev = h - step;
            for (size_t r = 0; r < c->B; r++)
                for (size_t k = 0; k < H; k += 64 / sizeof(REAL))
                    if (k < own0 || k >= own1) __builtin_prefetch(h_prev + r * H + k);
        }
        /* This thread's rows of Wh, packed at step 0, stay in its cache. */
        if (nt > 1 && (__atomic_load_n(&c->soloist, __ATOMIC_RELAXED) >= 0
                       || !bmf_claim_step(&c->claims[tid], t)))
            return; /* another thread runs the remaining steps */
        KFN(rnn_run_slice)(c, tid, p0, p1, t);
    }
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
    bmf_parallel(nt_proj, KFN(rnn_projection_body), &c);
    if (B == 1 && step_work == 1 && n_panels <= BMF_RNN_LONE_MAX_PANELS)
        KFN(rnn_lone)(&c); /* by the shape alone: one thread at any n_threads */
    else
        bmf_parallel(nt, KFN(rnn_recurrence_body), &c);
    bmf_workspace_release(ws);
    return 0;
}
