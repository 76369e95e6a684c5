/* Standalone test of the C core, no Python: every kernel at every ISA level
 * this CPU has, 1..3 threads, against naive double-precision loops, and
 * bitwise equality across thread counts.  Build and run: make -C src test
 * BMF_TEST_MAX_THREADS=N in the environment compares 1..N threads instead
 * (a many-core machine: every split of the work up to N). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bigmodel_fast.h"
#include "bmf_kernels.h" /* bmf_rnn_takeover_seconds, bmf_gemm_b_cached_bytes */

static int failures;
static int max_threads = 3; /* BMF_TEST_MAX_THREADS */

static double urand(unsigned *s)
{
    *s = *s * 1664525u + 1013904223u;
    return ((*s >> 8) / 16777216.0) * 2.0 - 1.0;
}

static void naive_rnn(size_t T, size_t B, size_t I, size_t H, const double *x,
                      const double *h0, const double *Wx, const double *Wh,
                      const double *b, double *out)
{
    for (size_t t = 0; t < T; t++)
        for (size_t n = 0; n < B; n++)
            for (size_t j = 0; j < H; j++) {
                const double *hp = t ? out + ((t - 1) * B + n) * H : h0 + n * H;
                double s = b[j];
                for (size_t k = 0; k < I; k++) s += x[(t * B + n) * I + k] * Wx[j * I + k];
                for (size_t k = 0; k < H; k++) s += hp[k] * Wh[j * H + k];
                out[(t * B + n) * H + j] = tanh(s);
            }
}

static void naive_attention(size_t Lq, size_t Lk, size_t B, size_t nh, size_t Dk,
                            size_t Dv, const double *Q, const double *K,
                            const double *V, const double *mask, int causal,
                            double scale, double *out)
{
    double *s = malloc((Lk ? Lk : 1) * sizeof *s);
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < nh; h++)
            for (size_t i = 0; i < Lq; i++) {
                double mx = -INFINITY, sum = 0;
                for (size_t j = 0; j < Lk; j++) {
                    double d = 0;
                    for (size_t e = 0; e < Dk; e++)
                        d += Q[(i * B + b) * nh * Dk + h * Dk + e] * K[(j * B + b) * nh * Dk + h * Dk + e];
                    d *= scale;
                    if (mask) d += mask[i * Lk + j];
                    if (causal && (ptrdiff_t)j > (ptrdiff_t)i + (ptrdiff_t)Lk - (ptrdiff_t)Lq) d = -INFINITY;
                    s[j] = d;
                    if (d > mx) mx = d;
                }
                for (size_t j = 0; j < Lk; j++) { s[j] = mx == -INFINITY ? 0 : exp(s[j] - mx); sum += s[j]; }
                for (size_t e = 0; e < Dv; e++) {
                    double o = 0;
                    for (size_t j = 0; j < Lk; j++) o += s[j] * V[(j * B + b) * nh * Dv + h * Dv + e];
                    out[(i * B + b) * nh * Dv + h * Dv + e] = sum > 0 ? o / sum : 0;
                }
            }
    free(s);
}

static double *rand_array(size_t n, unsigned seed)
{
    double *a = malloc((n ? n : 1) * sizeof *a);
    for (size_t i = 0; i < n; i++) a[i] = urand(&seed);
    return a;
}

static float *to_f32(const double *a, size_t n)
{
    float *f = malloc((n ? n : 1) * sizeof *f);
    for (size_t i = 0; i < n; i++) f[i] = (float)a[i];
    return f;
}

static void check(const char *what, const double *want, const double *got64,
                  const float *got32, size_t n, double tol64, double tol32)
{
    double e64 = 0, e32 = 0;
    for (size_t i = 0; i < n; i++) {
        double d64 = fabs(want[i] - got64[i]), d32 = fabs(want[i] - got32[i]);
        if (!(d64 <= e64)) e64 = d64; /* NaN counts as a failure */
        if (!(d32 <= e32)) e32 = d32;
    }
    int ok = e64 <= tol64 && e32 <= tol32;
    if (!ok) failures++;
    printf("%-6s %-7s %-44s f64 err %.2e  f32 err %.2e\n", ok ? "ok" : "FAIL",
           bmf_isa_name(bmf_get_isa()), what, e64, e32);
}

static void test_rnn(size_t T, size_t B, size_t I, size_t H)
{
    size_t nx = T * B * I, nout = T * B * H;
    double *x = rand_array(nx, 1), *h0 = rand_array(B * H, 2);
    double *Wx = rand_array(H * I, 3), *Wh = rand_array(H * H, 4), *b = rand_array(H, 5);
    for (size_t i = 0; i < H * H; i++) Wh[i] *= 1.0 / sqrt((double)H + 1);
    double *want = calloc(nout ? nout : 1, sizeof *want);
    float *x32 = to_f32(x, nx), *h032 = to_f32(h0, B * H), *Wx32 = to_f32(Wx, H * I);
    float *Wh32 = to_f32(Wh, H * H), *b32 = to_f32(b, H);
    /* out on a cache line and one element past it: with H a multiple of a
     * line, the first lets the threads sum their steps in segments */
    void *line64, *line32;
    if (posix_memalign(&line64, 64, (nout + 1) * sizeof(double))
        || posix_memalign(&line32, 64, (nout + 1) * sizeof(float)))
        abort();
    float *ref32 = malloc((nout ? nout : 1) * sizeof *ref32);
    double *ref64 = malloc((nout ? nout : 1) * sizeof *ref64);
    naive_rnn(T, B, I, H, x, h0, Wx, Wh, b, want);
    for (int run = 0; run < 2 * max_threads; run++) {
        int nt = 1 + run / 2, shift = run % 2;
        double *got = (double *)line64 + shift;
        float *got32 = (float *)line32 + shift;
        bmf_rnn_f64(T, B, I, H, x, h0, Wx, Wh, b, got, nt);
        bmf_rnn_f32(T, B, I, H, x32, h032, Wx32, Wh32, b32, got32, nt);
        if (run == 0) {
            char what[96];
            snprintf(what, sizeof what, "rnn T=%zu B=%zu I=%zu H=%zu", T, B, I, H);
            check(what, want, got, got32, nout, 1e-12, 2e-5);
            memcpy(ref64, got, nout * sizeof *got);
            memcpy(ref32, got32, nout * sizeof *got32);
        } else if (memcmp(ref64, got, nout * sizeof *got) || memcmp(ref32, got32, nout * sizeof *got32)) {
            failures++;
            printf("FAIL   rnn T=%zu B=%zu I=%zu H=%zu differs with %d threads%s\n", T, B, I, H, nt,
                   shift ? ", out off its line" : "");
        }
    }
    free(x); free(h0); free(Wx); free(Wh); free(b); free(want); free(line64);
    free(x32); free(h032); free(Wx32); free(Wh32); free(b32); free(line32); free(ref32); free(ref64);
}

/* The vectorised tanh through the kernel itself, as the recurrence applies
 * it: one step with Wh = b = h0 = 0 and Wx = identity gives out = tanh(x),
 * and with x = 0, out = tanh(b).  The error in ULP of the true value, over
 * every float in [4, 8) (where the float32 rational function's error peaks)
 * and every 127th elsewhere in [2^-30, 10], both signs; |tanh| <= 1; then
 * NaN, +-inf, +-0, subnormals and large values, given as the bias. */
static void test_tanh_accuracy(void)
{
    enum { H = 16, ROWS = 1 << 16 };
    float *x32 = malloc(ROWS * H * sizeof *x32), *y32 = malloc(ROWS * H * sizeof *y32);
    double *x = malloc(ROWS * H * sizeof *x), *y = malloc(ROWS * H * sizeof *y);
    float *Wx32 = calloc(H * H, sizeof *Wx32), *zero32 = calloc(ROWS * H, sizeof *zero32);
    double *Wx = calloc(H * H, sizeof *Wx), *zero = calloc(ROWS * H, sizeof *zero);
    for (size_t i = 0; i < H; i++) Wx[i * H + i] = Wx32[i * H + i] = 1;
    double u64 = 0, u32 = 0;
    size_t count = 0;
    for (float v = 0x1p-30f; v <= 10.0f;) {
        size_t n = 0;
        for (; n + 2 <= ROWS * H && v <= 10.0f; n += 2) {
            x32[n] = v;
            x32[n + 1] = -v;
            unsigned bits;
            memcpy(&bits, &v, sizeof bits);
            bits += v >= 4.0f && v < 8.0f ? 1 : 127;
            memcpy(&v, &bits, sizeof v);
        }
        for (size_t i = n; i < ROWS * H; i++) x32[i] = 0;
        for (size_t i = 0; i < ROWS * H; i++) x[i] = x32[i];
        bmf_rnn_f64(1, ROWS, H, H, x, zero, Wx, zero, zero, y, 2);
        bmf_rnn_f32(1, ROWS, H, H, x32, zero32, Wx32, zero32, zero32, y32, 2);
        for (size_t i = 0; i < n; i++) {
            double want = tanh(x[i]);
            double e64 = fabs(y[i] - want) / ldexp(1, ilogb(want) - 52);
            double e32 = fabs(y32[i] - want) / ldexp(1, ilogb(want) - 23);
            if (!(e64 <= u64)) u64 = e64;
            if (!(e32 <= u32)) u32 = e32;
            if (!(fabs(y[i]) <= 1 && fabsf(y32[i]) <= 1)) u64 = u32 = INFINITY;
        }
        count += n;
    }
    /* want: NaN stays NaN, +-inf gives +-1; float32 rounds to +-1 from 9.02
     * on; zeros and subnormals give themselves or, flushed (the kernels run
     * with FTZ/DAZ), zero.  (A -0 cannot reach the tanh: the products add +0.) */
    const float special[H] = {NAN, -NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 0x1p-140f, -0x1p-140f,
                              9.02f, -9.03f, 20.0f, -100.0f, 1e30f, -3.4e38f, 0x1p-126f, 1e-20f};
    double b[H];
    for (size_t i = 0; i < H; i++) b[i] = special[i];
    bmf_rnn_f32(1, 1, H, H, zero32, zero32, Wx32, zero32, special, y32, 1);
    bmf_rnn_f64(1, 1, H, H, zero, zero, Wx, zero, b, y, 1);
    int special_ok = 1;
    for (size_t i = 0; i < H; i++) {
        double v = special[i], want = tanh(v), got[2] = {y32[i], y[i]};
        for (int k = 0; k < 2; k++) {
            int ok;
            if (isnan(v)) ok = isnan(got[k]);
            else if (fabs(v) < 1e-19) ok = got[k] == v || got[k] == 0;
            else if (k == 0 && fabs(v) >= 9.02) ok = got[k] == (v > 0 ? 1 : -1);
            else ok = fabs(got[k] - want) <= (k ? 0x1p-50 : 0x1p-21) * fabs(want);
            special_ok &= ok;
        }
    }
    int ok = u64 <= 3 && u32 <= 6 && special_ok;
    failures += !ok;
    printf("%-6s %-7s tanh over %zu values: max %.2f ULP (f64), %.2f ULP (f32); special values %s\n",
           ok ? "ok" : "FAIL", bmf_isa_name(bmf_get_isa()), count, u64, u32, special_ok ? "ok" : "WRONG");
    free(x32); free(y32); free(x); free(y); free(Wx32); free(zero32); free(Wx); free(zero);
}

/* The softmax's exp (att_exp: 2^(x log2(e)) by bmf_simd.h's exp2) through
 * the attention: row i's one query q_i meets keys 0 and 1 (scores 0 and q_i,
 * scale 1), whose values are 0 and 1: out_i = e^q / (1 + e^q).  Over q =
 * +-m for every 257th float m in [2^-30, 87] (float32; e^-87 stays normal)
 * and every 2^41st double in [2^-30, 700], the error in ULP of that, which
 * counts the exp's error and the softmax's last three roundings (1 + e^q,
 * its inverse, the product): at most 4 ULP where |q| <= 1 (the weights
 * near the row's max, which make the result), and beyond, 4 ULP plus what
 * rounding x log2(e) costs e^x: at most |q| ULP for double (its rounding
 * alone) and 1.25 |q| for float (log2(e) as a float adds 1.3e-8 relative):
 * a weight e^-20 may be 25 ULP off, 5e-8 of itself and 1e-16 of the
 * row's largest weight, 1. */
static void test_exp_accuracy(void)
{
    enum { ROWS = 1 << 16 };
    float *q32 = malloc(ROWS * sizeof *q32), *y32 = malloc(ROWS * sizeof *y32);
    double *q = malloc(ROWS * sizeof *q), *y = malloc(ROWS * sizeof *y);
    const float kv32[2] = {0, 1};
    const double kv[2] = {0, 1};
    const ptrdiff_t ms[4] = {0, 0, 0, 0};
    double near[2] = {0, 0}, worst[2] = {0, 0}; /* ULP where |q| <= 1; (ULP - 4) / |q| beyond */
    size_t count = 0;
    for (int f64 = 0; f64 < 2; f64++)
        for (int sign = -1; sign <= 1; sign += 2) {
            double top = f64 ? 700 : 87;
            float m32 = 0x1p-30f;
            double m = 0x1p-30;
            while (f64 ? m <= top : m32 <= top) {
                size_t n = 0;
                for (; n < ROWS && (f64 ? m <= top : m32 <= top); n++) {
                    if (f64) { /* the next magnitude: its bits as an integer, plus a step */
                        q[n] = sign * m;
                        int64_t bits;
                        memcpy(&bits, &m, sizeof bits);
                        bits += (int64_t)1 << 41;
                        memcpy(&m, &bits, sizeof m);
                    } else {
                        q32[n] = (float)sign * m32;
                        int32_t bits;
                        memcpy(&bits, &m32, sizeof bits);
                        bits += 257;
                        memcpy(&m32, &bits, sizeof m32);
                    }
                }
                if (f64) bmf_attention_f64(n, 2, 1, 1, 1, 1, q, kv, kv, NULL, 0, ms, 0, 1.0, y, 2);
                else bmf_attention_f32(n, 2, 1, 1, 1, 1, q32, kv32, kv32, NULL, 0, ms, 0, 1.0, y32, 2);
                for (size_t i = 0; i < n; i++) {
                    long double x = f64 ? q[i] : q32[i], p = expl(x), want = p / (1 + p);
                    double got = f64 ? y[i] : y32[i];
                    double ulp = ldexp(1, ilogb((double)want) - (f64 ? 52 : 23));
                    double e = (double)(fabsl(got - want) / ulp), per_q = (e - 4) / fabs((double)x);
                    if (fabsl(x) <= 1 && !(e <= near[f64])) near[f64] = e; /* NaN counts */
                    if (fabsl(x) > 1 && !(per_q <= worst[f64])) worst[f64] = per_q;
                }
                count += n;
            }
        }
    int ok = near[0] <= 4 && near[1] <= 4 && worst[0] <= 1.25 && worst[1] <= 1.0;
    failures += !ok;
    printf("%-6s %-7s softmax exp over %zu values: |q| <= 1 max %.2f ULP (f64), %.2f ULP (f32); "
           "beyond, ULP - 4 per unit of |q| %.3f, %.3f\n", ok ? "ok" : "FAIL", bmf_isa_name(bmf_get_isa()), count,
           near[1], near[0], worst[1], worst[0]);
    free(q32); free(y32); free(q); free(y);
}

static void test_attention(size_t Lq, size_t Lk, size_t B, size_t nh, size_t Dk,
                           size_t Dv, int with_mask, int causal)
{
    size_t nq = Lq * B * nh * Dk, nk = Lk * B * nh * Dk, nv = Lk * B * nh * Dv, no = Lq * B * nh * Dv;
    double *Q = rand_array(nq, 11), *K = rand_array(nk, 12), *V = rand_array(nv, 13);
    double *mask = with_mask ? rand_array(Lq * Lk, 14) : NULL;
    size_t n_mask = Lq * Lk > 0 ? Lq * Lk : 1;
    unsigned char *bool_mask = with_mask == 2 ? malloc(n_mask) : NULL;
    if (mask) /* mask out every third key, and all keys of query row 1 */
        for (size_t i = 0; i < Lq; i++)
            for (size_t j = 0; j < Lk; j++) {
                /* with_mask == 3: also every key of rows 0-44, a whole block and more */
                int removed = j % 3 == 0 || i == 1 || (with_mask == 3 && i < 45);
                if (removed) mask[i * Lk + j] = -INFINITY;
                else if (bool_mask) mask[i * Lk + j] = 0; /* the same mask as bytes */
                if (bool_mask) bool_mask[i * Lk + j] = !removed;
            }
    /* with_mask == 2: the kernels get the boolean form, the naive loop the additive one */
    const void *mask64 = bool_mask ? (const void *)bool_mask : (const void *)mask;
    int is_bool = bool_mask != NULL;
    ptrdiff_t ms[4] = {0, 0, (ptrdiff_t)Lk, 1};
    double scale = 1.0 / sqrt((double)(Dk ? Dk : 1));
    double *want = malloc((no ? no : 1) * sizeof *want), *got = malloc((no ? no : 1) * sizeof *got);
    double *ref64 = malloc((no ? no : 1) * sizeof *ref64);
    float *Q32 = to_f32(Q, nq), *K32 = to_f32(K, nk), *V32 = to_f32(V, nv);
    float *m32 = mask ? to_f32(mask, Lq * Lk) : NULL;
    const void *mask32 = bool_mask ? (const void *)bool_mask : (const void *)m32;
    float *got32 = malloc((no ? no : 1) * sizeof *got32), *ref32 = malloc((no ? no : 1) * sizeof *ref32);
    naive_attention(Lq, Lk, B, nh, Dk, Dv, Q, K, V, mask, causal, scale, want);
    for (int nt = 1; nt <= max_threads; nt++) {
        bmf_attention_f64(Lq, Lk, B, nh, Dk, Dv, Q, K, V, mask64, is_bool, ms, causal, scale, got, nt);
        bmf_attention_f32(Lq, Lk, B, nh, Dk, Dv, Q32, K32, V32, mask32, is_bool, ms, causal, scale, got32, nt);
        if (nt == 1) {
            char what[96];
            snprintf(what, sizeof what, "attn Lq=%zu Lk=%zu B=%zu h=%zu Dk=%zu Dv=%zu%s%s", Lq, Lk, B,
                     nh, Dk, Dv, with_mask == 2 ? " bool-mask" : with_mask == 3 ? " block-mask" : with_mask ? " mask" : "",
                     causal ? " causal" : "");
            check(what, want, got, got32, no, 1e-12, 2e-5);
            memcpy(ref64, got, no * sizeof *got);
            memcpy(ref32, got32, no * sizeof *got32);
        } else if (memcmp(ref64, got, no * sizeof *got) || memcmp(ref32, got32, no * sizeof *got32)) {
            failures++;
            printf("FAIL   attention differs with %d threads\n", nt);
        }
    }
    free(Q); free(K); free(V); free(mask); free(bool_mask); free(want); free(got); free(ref64);
    free(Q32); free(K32); free(V32); free(m32); free(got32); free(ref32);
}

/* A caller's own OpenMP loop running kernels single-threaded, with a different
 * number of RNN steps per iteration (a kernel's barriers, if any were
 * executed, would bind to the caller's team and strand or hang its threads).
 * Every result must equal the same call made outside any parallel region,
 * and a later parallel region must still run.  The alarm in main turns a
 * hang into a failure. */
/* Only the order of the GEMM's tiles depends on bmf_gemm_b_cached_bytes
 * (gemm_impl.h): at 0 every product of more than 5 rows and one group of
 * panels goes group by group, and AVX-512's tall blocks two at a time; at
 * SIZE_MAX none does.  The bits must not move. */
static void test_gemm_order_keeps_bits(void)
{
    const size_t T = 2, B = 37, I = 40, H = 300, n_rnn = T * B * H; /* tall 32 rows + 5 */
    const size_t Lq = 45, Lk = 300, nh = 2, Dk = 48, Dv = 100, n_att = Lq * 2 * nh * Dv;
    double *x = rand_array(T * B * I, 31), *h0 = rand_array(B * H, 32), *Wx = rand_array(H * I, 33);
    double *Wh = rand_array(H * H, 34), *b = rand_array(H, 35);
    for (size_t i = 0; i < H * H; i++) Wh[i] *= 1.0 / sqrt((double)H);
    double *Q = rand_array(Lq * 2 * nh * Dk, 36), *K = rand_array(Lk * 2 * nh * Dk, 37);
    double *V = rand_array(Lk * 2 * nh * Dv, 38);
    float *x32 = to_f32(x, T * B * I), *h032 = to_f32(h0, B * H), *Wx32 = to_f32(Wx, H * I);
    float *Wh32 = to_f32(Wh, H * H), *b32 = to_f32(b, H);
    float *Q32 = to_f32(Q, Lq * 2 * nh * Dk), *K32 = to_f32(K, Lk * 2 * nh * Dk);
    float *V32 = to_f32(V, Lk * 2 * nh * Dv);
    size_t saved = bmf_gemm_b_cached_bytes, limits[3] = {saved, 0, SIZE_MAX};
    ptrdiff_t ms[4] = {0, 0, 0, 0};
    double *r64[3], *a64[3];
    float *r32[3], *a32[3];
    for (int k = 0; k < 3; k++) {
        bmf_gemm_b_cached_bytes = limits[k];
        r64[k] = malloc(n_rnn * sizeof(double)); r32[k] = malloc(n_rnn * sizeof(float));
        a64[k] = malloc(n_att * sizeof(double)); a32[k] = malloc(n_att * sizeof(float));
        bmf_rnn_f64(T, B, I, H, x, h0, Wx, Wh, b, r64[k], 2);
        bmf_rnn_f32(T, B, I, H, x32, h032, Wx32, Wh32, b32, r32[k], 2);
        bmf_attention_f64(Lq, Lk, 2, nh, Dk, Dv, Q, K, V, NULL, 0, ms, 0, 0.125, a64[k], 2);
        bmf_attention_f32(Lq, Lk, 2, nh, Dk, Dv, Q32, K32, V32, NULL, 0, ms, 0, 0.125, a32[k], 2);
    }
    bmf_gemm_b_cached_bytes = saved;
    int same = 1;
    for (int k = 1; k < 3; k++)
        same &= !memcmp(r64[0], r64[k], n_rnn * sizeof(double)) && !memcmp(r32[0], r32[k], n_rnn * sizeof(float))
                && !memcmp(a64[0], a64[k], n_att * sizeof(double)) && !memcmp(a32[0], a32[k], n_att * sizeof(float));
    failures += !same;
    printf("%-6s %-7s the GEMM's tile order (B cached up to 0, %zu, SIZE_MAX bytes): %s\n",
           same ? "ok" : "FAIL", bmf_isa_name(bmf_get_isa()), saved, same ? "the same bits" : "BITS DIFFER");
    for (int k = 0; k < 3; k++) { free(r64[k]); free(r32[k]); free(a64[k]); free(a32[k]); }
    free(x); free(h0); free(Wx); free(Wh); free(b); free(Q); free(K); free(V);
    free(x32); free(h032); free(Wx32); free(Wh32); free(b32); free(Q32); free(K32); free(V32);
}

static void test_called_from_openmp_threads(void)
{
    enum { N = 8, TMAX = 40, I = 2, H = 4, L = 16, D = 4 };
    static double x[TMAX * I], Wx[H * I], Wh[H * H], b[H], h0[H], Q[L * D];
    static double out[N][TMAX * H], want[N][TMAX * H], att[N][L * D], att_want[N][L * D];
    for (int i = 0; i < TMAX * I; i++) x[i] = 0.01 * i;
    for (int i = 0; i < H * I; i++) Wx[i] = 0.1 * (i % 5);
    for (int i = 0; i < H * H; i++) Wh[i] = 0.05 * (i % 7);
    for (int i = 0; i < L * D; i++) Q[i] = 0.02 * (i % 11);
    for (int n = 0; n < N; n++) {
        bmf_rnn_f64((size_t)(1 + 5 * n), 1, I, H, x, h0, Wx, Wh, b, want[n], 1);
        bmf_attention_f64(8 + (size_t)n, 8, 1, 1, D, D, Q, Q, Q, NULL, 0, NULL, n % 2, 0.5,
                          att_want[n], 1);
    }
    int bad = 0;
#ifdef _OPENMP
#pragma omp parallel for num_threads(2) schedule(static, 1) reduction(+ : bad)
#endif
    for (int n = 0; n < N; n++) {
        bad += bmf_rnn_f64((size_t)(1 + 5 * n), 1, I, H, x, h0, Wx, Wh, b, out[n], 1) != 0;
        bad += bmf_attention_f64(8 + (size_t)n, 8, 1, 1, D, D, Q, Q, Q, NULL, 0, NULL, n % 2,
                                 0.5, att[n], 1) != 0;
    }
    for (int n = 0; n < N; n++) {
        bad += memcmp(out[n], want[n], (size_t)(1 + 5 * n) * H * sizeof(double)) != 0;
        bad += memcmp(att[n], att_want[n], (size_t)(8 + n) * D * sizeof(double)) != 0;
    }
    int after = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(2) reduction(+ : after)
#endif
    after += 1;
    bad += after < 1;
    failures += bad != 0;
    printf("%-6s kernels called from a caller's OpenMP threads\n", bad ? "FAIL" : "ok");
}

/* A thread that waits too long for another takes over every thread's
 * remaining steps (rnn_impl.h).  With no minimum wait, one that has spent
 * half its time waiting past the spinning phase does so, which 3 threads on
 * 2 cores meet within a few steps (an instrumented build took over in every
 * such call): the bits must not change. */
static void test_rnn_take_over(void)
{
    double patience = bmf_rnn_takeover_seconds;
    bmf_rnn_takeover_seconds = 0;
    for (int rep = 0; rep < 3; rep++) {
        test_rnn(60, 1, 3, 257);  /* one-row steps */
        test_rnn(30, 7, 5, 100);  /* batched steps */
        test_rnn(30, 16, 5, 390); /* batched steps in tall tiles (AVX-512), one pass */
        test_rnn(30, 16, 5, 384); /* ... in segments (out on a line) */
        test_rnn(30, 6, 5, 96);   /* in segments (AVX-512: 3 + 3 rows) */
        test_rnn(30, 9, 5, 96);   /* ... (AVX2, baseline: 4 + 2 + 3 rows) */
    }
    bmf_rnn_takeover_seconds = patience;
}

int main(void)
{
    alarm(600); /* a hang fails the test instead of stalling CI */
    if (getenv("BMF_TEST_MAX_THREADS") && atoi(getenv("BMF_TEST_MAX_THREADS")) >= 2)
        max_threads = atoi(getenv("BMF_TEST_MAX_THREADS"));
    printf("%s\nCPU level: %s, OpenMP: %d, threads compared: 1..%d\n", bmf_build_info(),
           bmf_isa_name(bmf_cpu_isa()), bmf_openmp_enabled(), max_threads);
    for (int level = bmf_cpu_isa(); level >= BMF_ISA_BASELINE; level--) {
        bmf_set_isa(level);
        test_tanh_accuracy();
        test_exp_accuracy();
        test_rnn(5, 3, 7, 13);
        test_rnn(4, 1, 1, 257);
        test_rnn(3, 9, 40, 33);
        test_rnn(2, 2, 0, 5);
        test_rnn(3, 16, 4, 257); /* AVX-512: tall tiles, K in slices, a partial panel */
        test_rnn(2, 37, 3, 40);  /* tall tiles, then 5-row tiles */
        test_rnn(3, 21, 5, 300); /* tall tiles, then 5 rows: pytest's case that gcc 13 failed */
        test_rnn(0, 2, 3, 4);
        test_rnn(3, 16, 3, 384); /* steps in segments (on 2+ threads): tall tiles */
        test_rnn(5, 11, 9, 192); /* segments: an 8-row tall block + 3 rows (AVX-512), 4 + 4 + 3 */
        test_rnn(4, 6, 2, 64);   /* segments: 3 + 3 rows, not 5 + 1 (AVX-512); 4 + 2 */
        test_rnn(4, 9, 2, 64);   /* segments: 5 + 4 rows; 4 + 2 + 3, not 4 + 4 + 1 (AVX2, baseline) */
        test_rnn(6, 16, 3, 128); /* the batch split (on 2 threads): 8 rows each */
        test_rnn(4, 33, 2, 40);  /* the batch split: an odd last row; 3 panels (f32 AVX-512), 5 */
        test_rnn(3, 16, 0, 64);  /* the batch split with no input */
        test_rnn(2, 32, 600, 520); /* Wx, Wh past 1 MiB: groups of panels for all the rows;
                                    * two 16-row blocks per slice of Wh on 1 thread (AVX-512) */
        test_rnn(3, 26, 3, 48);  /* the batch split: 13 rows each, an 8-row block + 5 rows */
        test_rnn(9, 1, 70, 50);  /* a lone sequence, few units (rnn_lone): 4 panels, I > H */
        test_rnn(7, 1, 3, 31);   /* rnn_lone: H not a multiple of 4 chains or of VL */
        test_rnn(6, 1, 7, 13);   /* rnn_lone at every level (baseline float32: 4 panels) */
        test_attention(7, 9, 2, 1, 5, 3, 0, 0);
        test_attention(40, 300, 2, 2, 16, 24, 1, 0);
        test_attention(33, 20, 1, 5, 8, 8, 0, 1);
        test_attention(5, 1500, 1, 1, 80, 80, 0, 1);
        test_attention(3, 0, 2, 1, 4, 4, 0, 0);
        test_attention(70, 130, 3, 1, 64, 64, 1, 1);
        test_attention(70, 300, 2, 1, 24, 24, 2, 1);
        test_attention(3, 2100, 2, 2, 16, 16, 2, 0);
        test_attention(2, 1100, 5, 4, 64, 40, 1, 1); /* key-major: several head groups and chunks */
        test_attention(45, 1100, 2, 1, 16, 16, 1, 1); /* tiled: two whole 512-key tiles and a part */
        test_attention(1, 700, 3, 3, 8, 12, 2, 0);
        test_attention(7, 64, 40, 3, 2, 3, 0, 1); /* key-major: group of 64 pairs, then 56 */
        test_attention(128, 150, 2, 3, 16, 16, 1, 1); /* 1 thread: whole pairs as items; 2+: blocks */
        test_attention(1, 600, 8, 4, 64, 64, 0, 0); /* key-major: 1 group on 1 thread, more on 2+ */
        test_attention(1, 500, 8, 4, 64, 64, 0, 0); /* key-major: 1 item on 1 thread, 2 groups on 2+ */
        test_attention(40, 0, 2, 1, 16, 16, 0, 0);  /* tiled, no keys: zeros */
        test_attention(90, 200, 2, 1, 16, 24, 3, 0); /* one tile: a block it all removes, a row too */
        test_attention(90, 600, 2, 1, 16, 16, 3, 1); /* ... over two tiles, causal */
        test_attention(45, 700, 6, 2, 64, 64, 1, 1); /* whole pairs, a slot per thread (4 MiB) */
        test_attention(300, 600, 4, 2, 16, 16, 1, 1); /* whole pairs of many query blocks (1-2 threads) */
        test_attention(301, 2100, 1, 8, 16, 16, 0, 1); /* ... in a slot per thread (2 MiB of copies) */
        test_attention(9, 2100, 4, 2, 128, 128, 0, 0); /* query lanes: 9 rows over 17 MB of K and V */
        test_attention(12, 700, 3, 2, 24, 20, 1, 1); /* query lanes: masked, causal, Dv % VL */
        test_attention(16, 600, 2, 2, 80, 80, 2, 0); /* query lanes: boolean mask */
        test_attention(10, 256, 5, 1, 16, 16, 3, 1); /* query lanes: every key removed, causal */
        test_attention(25, 500, 2, 2, 40, 40, 1, 1); /* query lanes: 2-8 vectors of lanes, or tiled */
        /* tiled, the exps inside P.V (att_tile_exp_pv): blocks of 40 + 6
         * rows (5 + 1: a lone row), Dv 80 (more vectors than one tile's),
         * a last tile of 76 keys; then causal with Lq < Lk, 40 + 11 rows */
        test_attention(46, 1100, 2, 1, 16, 80, 0, 0);
        test_attention(51, 1300, 1, 2, 24, 20, 0, 1);
        test_gemm_order_keeps_bits();
    }
    bmf_set_isa(bmf_cpu_isa());
    /* Packed K and V over 32 MiB: a work buffer allocated for the call and
     * freed after it, not the thread's kept one; then a small call again. */
    test_attention(17, 66000, 1, 1, 64, 64, 0, 0);
    /* 9 rows over 64.5 MB of K and V (float64): key-major */
    test_attention(9, 66000, 1, 1, 64, 64, 0, 0);
    test_attention(40, 300, 2, 2, 16, 24, 1, 0);
    test_called_from_openmp_threads();
    test_rnn_take_over();
    printf("%d failed\n", failures);
    return failures != 0;
}
