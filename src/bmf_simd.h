/* bmf_simd.h: the SIMD helpers of every kernel: vector types, loads and
 * stores, select/max, horizontal reductions, exp and tanh.
 *
 * The vectors are GCC/Clang vector extensions of BMF_VEC_BYTES bytes (16 for
 * the portable baseline, 32 for AVX2+FMA, 64 for AVX-512).  Each
 * kernels_<isa>.c sets BMF_VEC_BYTES and a target pragma before including
 * this file, so one source gives SSE2/NEON, AVX2 or AVX-512 code; a*b+c is
 * fused into FMA only where a kernel says so (fma, below).  Everything here is
 * static inline: each ISA's translation unit gets its own copy, so no code of
 * a wider level can leak into a narrower one.
 *
 * exp (double, for its tanh): Cody-Waite reduction x = n*ln2 + r, |r| <=
 * ln2/2, a Taylor polynomial of degree 13 (truncation error below 1e-17
 * relative), and 2^n applied as two factors so that results down to the
 * subnormal range and up to overflow are right.  -inf gives 0, +inf gives
 * inf, NaN stays NaN.
 * exp2 (attention's softmax, as 2^(x log2(e))): y = floor(y) + f, a minimax
 * polynomial for 2^f on [0, 1] (degree 6 for float, 11 for double;
 * tools/fit_exp2.py), times 2^floor(y).  -inf gives 0, NaN stays NaN; +inf
 * (never asked: the softmax's exponents are <= 0) gives inf on AVX-512 and
 * NaN elsewhere.
 * tanh, float: x P(x^2) / Q(x^2), P and Q of degree 4 with positive
 * coefficients (a minimax fit of relative error 2e-8 on [0, 9.02] made by
 * tools/fit_tanh.py), x clamped to +-9.02 where tanh rounds to +-1, the
 * result to [-1, 1]: at most 5.15 ULP with FMA and 5.76 without (3.4e-7
 * absolute; over every float, and in the C test, which fails above 6).  Not
 * monotone to the last bit: the next float up can give a value up to 8 ULP
 * lower (the old exp form was 1.4 ULP and monotone, at twice the latency).
 * tanh, double: an odd rational for |x| < 0.625 (Cephes' coefficients),
 * 1 - 2/(exp(2|x|) + 1) with the sign restored above; saturates to +-1.
 */
#ifndef BMF_SIMD_H
#define BMF_SIMD_H

#include <stdint.h>
#include <string.h>

#ifndef BMF_VEC_BYTES
#error "define BMF_VEC_BYTES (16, 32 or 64) before including bmf_simd.h"
#endif

#define BMF_ALWAYS_INLINE static inline __attribute__((always_inline))

typedef float bmf_vf __attribute__((vector_size(BMF_VEC_BYTES)));
typedef double bmf_vd __attribute__((vector_size(BMF_VEC_BYTES)));
typedef int32_t bmf_vfi __attribute__((vector_size(BMF_VEC_BYTES)));
typedef int64_t bmf_vdi __attribute__((vector_size(BMF_VEC_BYTES)));
typedef uint32_t bmf_vfu __attribute__((vector_size(BMF_VEC_BYTES)));
typedef uint64_t bmf_vdu __attribute__((vector_size(BMF_VEC_BYTES)));

#define BMF_VF_LANES ((int)(BMF_VEC_BYTES / sizeof(float)))
#define BMF_VD_LANES ((int)(BMF_VEC_BYTES / sizeof(double)))

/* The float and double helpers have the same shape; this macro writes the
 * type-independent ones once for each. */
#define BMF_SIMD_BASIC(V, VI, T, LANES, SPLAT)                                      \
    /* A literal of LANES copies compiles to one broadcast ({0} + s would      \
     * turn -0.0 into +0.0, a lane loop into LANES inserts). */                \
    BMF_ALWAYS_INLINE V V##_set1(T s) { return (V){SPLAT(s)}; }                \
    BMF_ALWAYS_INLINE V V##_load(const T *p)                                   \
    {                                                                          \
        V v;                                                                   \
        memcpy(&v, p, sizeof v);                                               \
        return v;                                                              \
    }                                                                          \
    BMF_ALWAYS_INLINE void V##_store(T *p, V v) { memcpy(p, &v, sizeof v); }   \
    /* The first n lanes from p (n may exceed LANES), zeros after. */          \
    BMF_ALWAYS_INLINE V V##_load_partial(const T *p, size_t n)                 \
    {                                                                          \
        if (n >= (size_t)LANES) return V##_load(p);                            \
        V v = {0};                                                             \
        memcpy(&v, p, n * sizeof(T));                                          \
        return v;                                                              \
    }                                                                          \
    BMF_ALWAYS_INLINE void V##_store_partial(T *p, V v, size_t n)              \
    {                                                                          \
        if (n >= (size_t)LANES) V##_store(p, v);                               \
        else memcpy(p, &v, n * sizeof(T));                                     \
    }                                                                          \
    /* Lanes of a where mask is set, of b elsewhere. */                        \
    BMF_ALWAYS_INLINE V V##_select(VI mask, V a, V b)                          \
    {                                                                          \
        return (V)((mask & (VI)a) | (~mask & (VI)b));                          \
    }                                                                          \
    /* max that ignores a NaN in b (keeps a), so a running max stays a         \
     * number; the NaN reaches the result through exp(s - max) instead.       \
     * (x86's max instruction, below, is this very select in one operation.) */ \
    BMF_ALWAYS_INLINE V V##_max_by_select(V a, V b) { return V##_select(b > a, b, a); } \
    /* Lane i of the vector {0, 1, 2, ...}: for masks by position. */          \
    BMF_ALWAYS_INLINE V V##_iota(void)                                         \
    {                                                                          \
        V v;                                                                   \
        for (int i = 0; i < LANES; i++) v[i] = (T)i;                           \
        return v;                                                              \
    }

#define BMF_REP2(s) s, s
#define BMF_REP4(s) BMF_REP2(s), BMF_REP2(s)
#define BMF_REP8(s) BMF_REP4(s), BMF_REP4(s)
#define BMF_REP16(s) BMF_REP8(s), BMF_REP8(s)
#if BMF_VEC_BYTES == 16
#define BMF_VF_SPLAT BMF_REP4
#define BMF_VD_SPLAT BMF_REP2
#elif BMF_VEC_BYTES == 32
#define BMF_VF_SPLAT BMF_REP8
#define BMF_VD_SPLAT BMF_REP4
#elif BMF_VEC_BYTES == 64
#define BMF_VF_SPLAT BMF_REP16
#define BMF_VD_SPLAT BMF_REP8
#else
#error "BMF_VEC_BYTES must be 16, 32 or 64"
#endif

BMF_SIMD_BASIC(bmf_vf, bmf_vfi, float, BMF_VF_LANES, BMF_VF_SPLAT)
BMF_SIMD_BASIC(bmf_vd, bmf_vdi, double, BMF_VD_LANES, BMF_VD_SPLAT)

/* max(a, b) = b > a ? b : a.  x86's max(b, a) is defined as exactly that
 * (the second operand when either is NaN, and for +0 against -0): one
 * operation where the compare and select take two or three.  One difference:
 * under DAZ (bmf_run_body sets it) max reads a subnormal operand as a zero of
 * its sign and returns that zero, where the select returns the subnormal's
 * bits; the compare reads it as zero either way, and every value the kernels
 * take the max of is a result of arithmetic under FTZ (or +-inf), never
 * subnormal.  The 16-byte level needs SSE2 (i386 without it: the select). */
#if (defined(__x86_64__) || defined(__i386__)) && BMF_VEC_BYTES == 64
#include <immintrin.h>
BMF_ALWAYS_INLINE bmf_vf bmf_vf_max(bmf_vf a, bmf_vf b)
{
    return (bmf_vf)_mm512_max_ps((__m512)b, (__m512)a);
}
BMF_ALWAYS_INLINE bmf_vd bmf_vd_max(bmf_vd a, bmf_vd b)
{
    return (bmf_vd)_mm512_max_pd((__m512d)b, (__m512d)a);
}
#elif (defined(__x86_64__) || defined(__i386__)) && BMF_VEC_BYTES == 32
#include <immintrin.h>
BMF_ALWAYS_INLINE bmf_vf bmf_vf_max(bmf_vf a, bmf_vf b)
{
    return (bmf_vf)_mm256_max_ps((__m256)b, (__m256)a);
}
BMF_ALWAYS_INLINE bmf_vd bmf_vd_max(bmf_vd a, bmf_vd b)
{
    return (bmf_vd)_mm256_max_pd((__m256d)b, (__m256d)a);
}
#elif defined(__SSE2__) && BMF_VEC_BYTES == 16
#include <emmintrin.h>
BMF_ALWAYS_INLINE bmf_vf bmf_vf_max(bmf_vf a, bmf_vf b)
{
    return (bmf_vf)_mm_max_ps((__m128)b, (__m128)a);
}
BMF_ALWAYS_INLINE bmf_vd bmf_vd_max(bmf_vd a, bmf_vd b)
{
    return (bmf_vd)_mm_max_pd((__m128d)b, (__m128d)a);
}
#else /* arm64's fmax gives NaN for a NaN operand: the select keeps the rule */
BMF_ALWAYS_INLINE bmf_vf bmf_vf_max(bmf_vf a, bmf_vf b) { return bmf_vf_max_by_select(a, b); }
BMF_ALWAYS_INLINE bmf_vd bmf_vd_max(bmf_vd a, bmf_vd b) { return bmf_vd_max_by_select(a, b); }
#endif

/* fma(a, b, c) = a * b + c, rounded once where the level has FMA (AVX2,
 * AVX-512, arm64's baseline), twice elsewhere; fma1 for one element.  The
 * build turns the compiler's own fusing off (-ffp-contract=off), so every
 * rounding is where the source puts it: the same in each inlined copy of a
 * helper, in every tile shape, whatever the compiler.  Left to the
 * compiler's contraction, gcc 13 (not 12) gave the RNN different bits on 1
 * and 2+ threads at the levels with FMA only (an element's tile shape
 * depends on the thread split); with explicit fma the bits match on both,
 * and gcc 12's are unchanged. */
#if BMF_VEC_BYTES == 64 && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define BMF_HAVE_FMA 1
BMF_ALWAYS_INLINE bmf_vf bmf_vf_fma(bmf_vf a, bmf_vf b, bmf_vf c)
{
    return (bmf_vf)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
}
BMF_ALWAYS_INLINE bmf_vd bmf_vd_fma(bmf_vd a, bmf_vd b, bmf_vd c)
{
    return (bmf_vd)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
}
#elif BMF_VEC_BYTES == 32 && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define BMF_HAVE_FMA 1
BMF_ALWAYS_INLINE bmf_vf bmf_vf_fma(bmf_vf a, bmf_vf b, bmf_vf c)
{
    return (bmf_vf)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
}
BMF_ALWAYS_INLINE bmf_vd bmf_vd_fma(bmf_vd a, bmf_vd b, bmf_vd c)
{
    return (bmf_vd)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
}
#elif defined(__aarch64__) && BMF_VEC_BYTES == 16 /* every arm64 CPU has FMA */
#include <arm_neon.h>
#define BMF_HAVE_FMA 1
BMF_ALWAYS_INLINE bmf_vf bmf_vf_fma(bmf_vf a, bmf_vf b, bmf_vf c)
{
    return (bmf_vf)vfmaq_f32((float32x4_t)c, (float32x4_t)a, (float32x4_t)b);
}
BMF_ALWAYS_INLINE bmf_vd bmf_vd_fma(bmf_vd a, bmf_vd b, bmf_vd c)
{
    return (bmf_vd)vfmaq_f64((float64x2_t)c, (float64x2_t)a, (float64x2_t)b);
}
#else /* the x86-64 baseline (SSE2) and others: no FMA assumed */
BMF_ALWAYS_INLINE bmf_vf bmf_vf_fma(bmf_vf a, bmf_vf b, bmf_vf c) { return a * b + c; }
BMF_ALWAYS_INLINE bmf_vd bmf_vd_fma(bmf_vd a, bmf_vd b, bmf_vd c) { return a * b + c; }
#endif
#ifdef BMF_HAVE_FMA
BMF_ALWAYS_INLINE float bmf_vf_fma1(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
BMF_ALWAYS_INLINE double bmf_vd_fma1(double a, double b, double c) { return __builtin_fma(a, b, c); }
#else
BMF_ALWAYS_INLINE float bmf_vf_fma1(float a, float b, float c) { return a * b + c; }
BMF_ALWAYS_INLINE double bmf_vd_fma1(double a, double b, double c) { return a * b + c; }
#endif

/* Boolean masks arrive as bytes (nonzero = may attend).  These give an
 * all-ones lane where the byte is 0 (the key is removed); only the first n
 * bytes are read, lanes past n count as removed. */
typedef uint8_t bmf_vfb __attribute__((vector_size(BMF_VEC_BYTES / 4)));
typedef uint8_t bmf_vdb __attribute__((vector_size(BMF_VEC_BYTES / 8)));
BMF_ALWAYS_INLINE bmf_vfi bmf_vf_removed_bytes(const uint8_t *p, size_t n)
{
    bmf_vfb b = {0};
    memcpy(&b, p, n < sizeof b ? n : sizeof b);
    return __builtin_convertvector(b, bmf_vfi) == 0;
}
BMF_ALWAYS_INLINE bmf_vdi bmf_vd_removed_bytes(const uint8_t *p, size_t n)
{
    bmf_vdb b = {0};
    memcpy(&b, p, n < sizeof b ? n : sizeof b);
    return __builtin_convertvector(b, bmf_vdi) == 0;
}

/* Horizontal sums as a fixed tree of halvings (the same order on every
 * call, so the same bits).  The halves come from shuffles where the compiler
 * has them (a copy through memory would keep a loop's accumulator there). */
typedef float bmf_vf2 __attribute__((vector_size(8)));
typedef float bmf_vf4 __attribute__((vector_size(16)));
typedef double bmf_vd1 __attribute__((vector_size(8)));
typedef double bmf_vd2 __attribute__((vector_size(16)));
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define BMF_HAVE_SHUFFLEVECTOR 1
#endif
#endif
/* BMF_SHUFFLE(a, b, IT, (i, j, ...)): lanes i, j, ... of a and b side by
 * side; IT is the lane-index vector type that GCC before 12 (no
 * __builtin_shufflevector) wants the indices in.  Clang has no __builtin_shuffle. */
#define BMF_UNPAREN(...) __VA_ARGS__
#ifdef BMF_HAVE_SHUFFLEVECTOR
#define BMF_SHUFFLE(a, b, IT, idx) __builtin_shufflevector(a, b, BMF_UNPAREN idx)
#else
#define BMF_SHUFFLE(a, b, IT, idx) __builtin_shuffle(a, b, (IT){BMF_UNPAREN idx})
#endif
#ifdef BMF_HAVE_SHUFFLEVECTOR
#define BMF_LO_2(v) __builtin_shufflevector(v, v, 0)
#define BMF_HI_2(v) __builtin_shufflevector(v, v, 1)
#define BMF_LO_4(v) __builtin_shufflevector(v, v, 0, 1)
#define BMF_HI_4(v) __builtin_shufflevector(v, v, 2, 3)
#define BMF_LO_8(v) __builtin_shufflevector(v, v, 0, 1, 2, 3)
#define BMF_HI_8(v) __builtin_shufflevector(v, v, 4, 5, 6, 7)
#define BMF_LO_16(v) __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7)
#define BMF_HI_16(v) __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15)
#define BMF_HALVES(NAME, T, HALF, V, N, HALF_SUM)                              \
    BMF_ALWAYS_INLINE T NAME(V v) { return HALF_SUM(BMF_LO_##N(v) + BMF_HI_##N(v)); }
#else
#define BMF_HALVES(NAME, T, HALF, V, N, HALF_SUM)                              \
    BMF_ALWAYS_INLINE T NAME(V v)                                              \
    {                                                                          \
        HALF lo, hi;                                                           \
        memcpy(&lo, &v, sizeof lo);                                            \
        memcpy(&hi, (const char *)&v + sizeof lo, sizeof hi);                  \
        return HALF_SUM(lo + hi);                                              \
    }
#endif
BMF_ALWAYS_INLINE float bmf_vf2_hsum(bmf_vf2 v) { return v[0] + v[1]; }
BMF_ALWAYS_INLINE double bmf_vd1_hsum(bmf_vd1 v) { return v[0]; }
BMF_HALVES(bmf_vf4_hsum, float, bmf_vf2, bmf_vf4, 4, bmf_vf2_hsum)
BMF_HALVES(bmf_vd2_hsum, double, bmf_vd1, bmf_vd2, 2, bmf_vd1_hsum)
#if BMF_VEC_BYTES >= 32
typedef float bmf_vf8 __attribute__((vector_size(32)));
typedef double bmf_vd4 __attribute__((vector_size(32)));
BMF_HALVES(bmf_vf8_hsum, float, bmf_vf4, bmf_vf8, 8, bmf_vf4_hsum)
BMF_HALVES(bmf_vd4_hsum, double, bmf_vd2, bmf_vd4, 4, bmf_vd2_hsum)
#endif
#if BMF_VEC_BYTES == 64
BMF_HALVES(bmf_vf_hsum, float, bmf_vf8, bmf_vf, 16, bmf_vf8_hsum)
BMF_HALVES(bmf_vd_hsum, double, bmf_vd4, bmf_vd, 8, bmf_vd4_hsum)
#elif BMF_VEC_BYTES == 32
BMF_ALWAYS_INLINE float bmf_vf_hsum(bmf_vf v) { return bmf_vf8_hsum(v); }
BMF_ALWAYS_INLINE double bmf_vd_hsum(bmf_vd v) { return bmf_vd4_hsum(v); }
#else
BMF_ALWAYS_INLINE float bmf_vf_hsum(bmf_vf v) { return bmf_vf4_hsum(v); }
BMF_ALWAYS_INLINE double bmf_vd_hsum(bmf_vd v) { return bmf_vd2_hsum(v); }
#endif

/* hsum_lanes(v), hmax_lanes(v): lane j of the result = the sum (the max) of
 * the lanes of v[j], for LANES vectors at once (v is overwritten).  Each step
 * halves pairs of vectors into one: lo half (op) hi half of each block of
 * lanes (the masks), so that about 3 operations per vector replace a whole
 * reduction each.  The order is fixed: the same bits every call.
 * hmax(v), one vector, takes the same steps with v paired with itself.
 * transpose(r): the LANES x LANES matrix of rows r[0..LANES) transposed in
 * place, in registers: each step swaps the off-diagonal h x h blocks of every
 * 2h x 2h block, h = LANES/2 down to 1.
 * The masks are literals, one set per lane count, so that the shuffles
 * compile to single permutes. */
#define BMF_LANES_STEP(v, n, IT, lo, hi, OP)                                   \
    for (int k_ = 0; k_ < (n) / 2; k_++)                                       \
        v[k_] = OP(BMF_SHUFFLE(v[2 * k_], v[2 * k_ + 1], IT, lo),              \
                   BMF_SHUFFLE(v[2 * k_], v[2 * k_ + 1], IT, hi))
#define BMF_ONE_STEP(x, n, IT, lo, hi, OP)                                     \
    x = OP(BMF_SHUFFLE(x, x, IT, lo), BMF_SHUFFLE(x, x, IT, hi))
#define BMF_OP_ADD(a, b) ((a) + (b))
#define BMF_TRANSPOSE_STEP(VT, IT, r, lanes, h, lo, hi)                        \
    for (int i_ = 0; i_ < (lanes); i_++)                                       \
        if (!(i_ & (h))) {                                                     \
            VT a_ = r[i_], b_ = r[i_ + (h)];                                   \
            r[i_] = BMF_SHUFFLE(a_, b_, IT, lo);                               \
            r[i_ + (h)] = BMF_SHUFFLE(a_, b_, IT, hi);                         \
        }
/* The reduction steps by lane count; IT is the vectors' lane-index type. */
#define BMF_REDUCE_2(STEP, v, OP, IT) STEP(v, 2, IT, (0, 2), (1, 3), OP)
#define BMF_REDUCE_4(STEP, v, OP, IT)                                          \
    do {                                                                       \
        STEP(v, 4, IT, (0, 1, 4, 5), (2, 3, 6, 7), OP);                        \
        STEP(v, 2, IT, (0, 2, 4, 6), (1, 3, 5, 7), OP);                        \
    } while (0)
#define BMF_REDUCE_8(STEP, v, OP, IT)                                          \
    do {                                                                       \
        STEP(v, 8, IT, (0, 1, 2, 3, 8, 9, 10, 11),                             \
             (4, 5, 6, 7, 12, 13, 14, 15), OP);                                \
        STEP(v, 4, IT, (0, 1, 4, 5, 8, 9, 12, 13),                             \
             (2, 3, 6, 7, 10, 11, 14, 15), OP);                                \
        STEP(v, 2, IT, (0, 2, 4, 6, 8, 10, 12, 14),                            \
             (1, 3, 5, 7, 9, 11, 13, 15), OP);                                 \
    } while (0)
#define BMF_REDUCE_16(STEP, v, OP, IT)                                         \
    do {                                                                       \
        STEP(v, 16, IT, (0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23), \
             (8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31), OP); \
        STEP(v, 8, IT, (0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27), \
             (4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31), OP); \
        STEP(v, 4, IT, (0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29), \
             (2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31), OP); \
        STEP(v, 2, IT, (0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), \
             (1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31), OP); \
    } while (0)
/* The transposes by lane count (T: the vector type, IT: its lane-index type). */
#define BMF_TRANSPOSE_16(T, IT, r)                                             \
    do {                                                                       \
        BMF_TRANSPOSE_STEP(T, IT, r, 16, 8, (0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23), \
                           (8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31)); \
        BMF_TRANSPOSE_STEP(T, IT, r, 16, 4, (0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27), \
                           (4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31)); \
        BMF_TRANSPOSE_STEP(T, IT, r, 16, 2, (0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29), \
                           (2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31)); \
        BMF_TRANSPOSE_STEP(T, IT, r, 16, 1, (0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30), \
                           (1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31)); \
    } while (0)
#define BMF_TRANSPOSE_8(T, IT, r)                                              \
    do {                                                                       \
        BMF_TRANSPOSE_STEP(T, IT, r, 8, 4, (0, 1, 2, 3, 8, 9, 10, 11), (4, 5, 6, 7, 12, 13, 14, 15)); \
        BMF_TRANSPOSE_STEP(T, IT, r, 8, 2, (0, 1, 8, 9, 4, 5, 12, 13), (2, 3, 10, 11, 6, 7, 14, 15)); \
        BMF_TRANSPOSE_STEP(T, IT, r, 8, 1, (0, 8, 2, 10, 4, 12, 6, 14), (1, 9, 3, 11, 5, 13, 7, 15)); \
    } while (0)
#define BMF_TRANSPOSE_4(T, IT, r)                                              \
    do {                                                                       \
        BMF_TRANSPOSE_STEP(T, IT, r, 4, 2, (0, 1, 4, 5), (2, 3, 6, 7));        \
        BMF_TRANSPOSE_STEP(T, IT, r, 4, 1, (0, 4, 2, 6), (1, 5, 3, 7));        \
    } while (0)
#define BMF_TRANSPOSE_2(T, IT, r) BMF_TRANSPOSE_STEP(T, IT, r, 2, 1, (0, 2), (1, 3))
#if BMF_VEC_BYTES == 64
#define BMF_VF_LANES_REDUCE(STEP, v, OP) BMF_REDUCE_16(STEP, v, OP, bmf_vfi)
#define BMF_VD_LANES_REDUCE(STEP, v, OP) BMF_REDUCE_8(STEP, v, OP, bmf_vdi)
#define BMF_VF_TRANSPOSE BMF_TRANSPOSE_16
#define BMF_VD_TRANSPOSE BMF_TRANSPOSE_8
#elif BMF_VEC_BYTES == 32
#define BMF_VF_LANES_REDUCE(STEP, v, OP) BMF_REDUCE_8(STEP, v, OP, bmf_vfi)
#define BMF_VD_LANES_REDUCE(STEP, v, OP) BMF_REDUCE_4(STEP, v, OP, bmf_vdi)
#define BMF_VF_TRANSPOSE BMF_TRANSPOSE_8
#define BMF_VD_TRANSPOSE BMF_TRANSPOSE_4
#else
#define BMF_VF_LANES_REDUCE(STEP, v, OP) BMF_REDUCE_4(STEP, v, OP, bmf_vfi)
#define BMF_VD_LANES_REDUCE(STEP, v, OP) BMF_REDUCE_2(STEP, v, OP, bmf_vdi)
#define BMF_VF_TRANSPOSE BMF_TRANSPOSE_4
#define BMF_VD_TRANSPOSE BMF_TRANSPOSE_2
#endif
BMF_ALWAYS_INLINE void bmf_vf_transpose(bmf_vf *r) { BMF_VF_TRANSPOSE(bmf_vf, bmf_vfi, r); }
BMF_ALWAYS_INLINE void bmf_vd_transpose(bmf_vd *r) { BMF_VD_TRANSPOSE(bmf_vd, bmf_vdi, r); }
#define BMF_LANES_REDUCTIONS(V, T, REDUCE)                                     \
    BMF_ALWAYS_INLINE V V##_hsum_lanes(V *v)                                   \
    {                                                                          \
        REDUCE(BMF_LANES_STEP, v, BMF_OP_ADD);                                 \
        return v[0];                                                           \
    }                                                                          \
    BMF_ALWAYS_INLINE V V##_hmax_lanes(V *v)                                   \
    {                                                                          \
        REDUCE(BMF_LANES_STEP, v, V##_max);                                    \
        return v[0];                                                           \
    }                                                                          \
    /* The largest lane of a vector without NaN (a running max keeps them      \
     * out). */                                                                \
    BMF_ALWAYS_INLINE T V##_hmax(V x)                                          \
    {                                                                          \
        REDUCE(BMF_ONE_STEP, x, V##_max);                                      \
        return x[0];                                                           \
    }
BMF_LANES_REDUCTIONS(bmf_vf, float, BMF_VF_LANES_REDUCE)
BMF_LANES_REDUCTIONS(bmf_vd, double, BMF_VD_LANES_REDUCE)

/* ---- exp ---------------------------------------------------------------- */

/* Three steps of exp and exp2 have a one-instruction form on AVX-512 (the
 * 64-byte level; told by BMF_VEC_BYTES, as clang's target attribute does not
 * define __AVX512F__): clamping with min/max, y - floor(y) with
 * vreduceps/pd, and p * 2^n with vscalefps/pd, which rounds results in the
 * subnormal range and overflows to inf by itself.  Elsewhere:
 * compare-and-select, the shifter's rounding, and 2^n built in the exponent
 * bits as two factors so that each stays in range. */
#if BMF_VEC_BYTES == 64 && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
/* min/max return their second operand when either is NaN: x last keeps NaN. */
BMF_ALWAYS_INLINE bmf_vf bmf_vf_clamp(bmf_vf x, float lo, float hi)
{
    return (bmf_vf)_mm512_max_ps(_mm512_set1_ps(lo), _mm512_min_ps(_mm512_set1_ps(hi), (__m512)x));
}
BMF_ALWAYS_INLINE bmf_vd bmf_vd_clamp(bmf_vd x, double lo, double hi)
{
    return (bmf_vd)_mm512_max_pd(_mm512_set1_pd(lo), _mm512_min_pd(_mm512_set1_pd(hi), (__m512d)x));
}
BMF_ALWAYS_INLINE bmf_vf bmf_vf_clamp_below(bmf_vf x, float lo)
{
    return (bmf_vf)_mm512_max_ps(_mm512_set1_ps(lo), (__m512)x);
}
BMF_ALWAYS_INLINE bmf_vd bmf_vd_clamp_below(bmf_vd x, double lo)
{
    return (bmf_vd)_mm512_max_pd(_mm512_set1_pd(lo), (__m512d)x);
}
BMF_ALWAYS_INLINE bmf_vf bmf_vf_times_2n(bmf_vf p, bmf_vf n, bmf_vfi ni)
{
    (void)ni;
    return (bmf_vf)_mm512_scalef_ps((__m512)p, (__m512)n);
}
BMF_ALWAYS_INLINE bmf_vd bmf_vd_times_2n(bmf_vd p, bmf_vd n, bmf_vdi ni)
{
    (void)ni;
    return (bmf_vd)_mm512_scalef_pd((__m512d)p, (__m512d)n);
}
/* y = floor(y) + f, 0 <= f < 1: vreduceps/pd gives f in one instruction,
 * and times_2n (vscalefps/pd) takes floor(n) itself, so n = y serves. */
BMF_ALWAYS_INLINE bmf_vf bmf_vf_floor_split(bmf_vf y, bmf_vf *n, bmf_vfi *ni)
{
    *n = y;
    *ni = (bmf_vfi){0};
    return (bmf_vf)_mm512_reduce_ps((__m512)y, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
}
BMF_ALWAYS_INLINE bmf_vd bmf_vd_floor_split(bmf_vd y, bmf_vd *n, bmf_vdi *ni)
{
    *n = y;
    *ni = (bmf_vdi){0};
    return (bmf_vd)_mm512_reduce_pd((__m512d)y, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
}
#else
BMF_ALWAYS_INLINE bmf_vf bmf_vf_clamp(bmf_vf x, float lo, float hi)
{
    x = bmf_vf_select(x > hi, bmf_vf_set1(hi), x);
    return bmf_vf_select(x < lo, bmf_vf_set1(lo), x);
}
BMF_ALWAYS_INLINE bmf_vd bmf_vd_clamp(bmf_vd x, double lo, double hi)
{
    x = bmf_vd_select(x > hi, bmf_vd_set1(hi), x);
    return bmf_vd_select(x < lo, bmf_vd_set1(lo), x);
}
BMF_ALWAYS_INLINE bmf_vf bmf_vf_clamp_below(bmf_vf x, float lo)
{
    return bmf_vf_select(x < lo, bmf_vf_set1(lo), x);
}
BMF_ALWAYS_INLINE bmf_vd bmf_vd_clamp_below(bmf_vd x, double lo)
{
    return bmf_vd_select(x < lo, bmf_vd_set1(lo), x);
}
BMF_ALWAYS_INLINE bmf_vf bmf_vf_times_2n(bmf_vf p, bmf_vf n, bmf_vfi ni)
{
    (void)n;
    bmf_vfi n1 = ni >> 1, n2 = ni - n1; /* 2^n = 2^n1 * 2^n2, each in range */
    bmf_vf s1 = (bmf_vf)((bmf_vfu)(n1 + 127) << 23);
    bmf_vf s2 = (bmf_vf)((bmf_vfu)(n2 + 127) << 23);
    return p * s1 * s2;
}
BMF_ALWAYS_INLINE bmf_vd bmf_vd_times_2n(bmf_vd p, bmf_vd n, bmf_vdi ni)
{
    (void)n;
    bmf_vdi n1 = ni >> 1, n2 = ni - n1;
    bmf_vd s1 = (bmf_vd)((bmf_vdu)(n1 + 1023) << 52);
    bmf_vd s2 = (bmf_vd)((bmf_vdu)(n2 + 1023) << 52);
    return p * s1 * s2;
}
/* y = n + f, 0 <= f <= 1, n an integer: n = round(y - 1/2) by the
 * shifter (1.5 * 2^23, 2^52, added leaves the rounded value in the low bits),
 * as exact as floor for the polynomial, which holds on [0, 1]. */
BMF_ALWAYS_INLINE bmf_vf bmf_vf_floor_split(bmf_vf y, bmf_vf *n, bmf_vfi *ni)
{
    const float shifter = 12582912.0f;
    bmf_vf t = (y - 0.5f) + shifter;
    *n = t - shifter;
    *ni = (bmf_vfi)t - (bmf_vfi)bmf_vf_set1(shifter);
    return y - *n;
}
BMF_ALWAYS_INLINE bmf_vd bmf_vd_floor_split(bmf_vd y, bmf_vd *n, bmf_vdi *ni)
{
    const double shifter = 6755399441055744.0;
    bmf_vd t = (y - 0.5) + shifter;
    *n = t - shifter;
    *ni = (bmf_vdi)t - (bmf_vdi)bmf_vd_set1(shifter);
    return y - *n;
}
#endif

/* exp of x already in [-746, 710] (or NaN): double only, for tanh. */
BMF_ALWAYS_INLINE bmf_vd bmf_vd_exp_in_range(bmf_vd x)
{
    const double shifter = 6755399441055744.0; /* 1.5 * 2^52 */
    bmf_vd t = bmf_vd_fma(x, bmf_vd_set1(1.4426950408889634074), bmf_vd_set1(shifter));
    bmf_vd n = t - shifter;
    bmf_vdi ni = (bmf_vdi)t - (bmf_vdi)bmf_vd_set1(shifter);
    bmf_vd r = bmf_vd_fma(n, bmf_vd_set1(-6.93147180369123816490e-01), x); /* ln2 high, 32 bits */
    r = bmf_vd_fma(n, bmf_vd_set1(-1.90821492927058770002e-10), r);        /* ln2 low */
    static const double inv_fact[14] = {
        1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720,
        1.0 / 5040, 1.0 / 40320, 1.0 / 362880, 1.0 / 3628800,
        1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800.0};
    bmf_vd p = bmf_vd_set1(inv_fact[13]);
    for (int k = 12; k >= 0; k--) p = bmf_vd_fma(p, r, bmf_vd_set1(inv_fact[k]));
    return bmf_vd_times_2n(p, n, ni);
}

BMF_ALWAYS_INLINE bmf_vd bmf_vd_exp(bmf_vd x)
{
    return bmf_vd_exp_in_range(bmf_vd_clamp(x, -746.0, 710.0));
}

/* ---- exp2 (attention's softmax) ----------------------------------------- */

/* 2^y for y in [-151, 128] (float) or [-1076, 1024] (double), or NaN: y =
 * n + f (floor_split), 2^f by a minimax polynomial on [0, 1] whose constant
 * term is 1 (2^0 is exactly 1), times 2^n.  Degree 6 for float, 11 for
 * double (relative error 2.0e-9 and 3.2e-18 before rounding;
 * tools/fit_exp2.py).  On AVX-512 that is 9 vector operations with the
 * clamp, where exp takes 13: the softmax feeds it (score - max) * log2(e). */
BMF_ALWAYS_INLINE bmf_vf bmf_vf_exp2_in_range(bmf_vf y)
{
    bmf_vf n;
    bmf_vfi ni;
    bmf_vf f = bmf_vf_floor_split(y, &n, &ni);
    static const float c[7] = {1.0f, 6.93147044443e-1f, 2.40229305552e-1f, 5.54852806202e-2f,
                               9.67545156522e-3f, 1.24678464508e-3f, 2.16129149696e-4f};
    bmf_vf p = bmf_vf_set1(c[6]);
    for (int k = 5; k >= 0; k--) p = bmf_vf_fma(p, f, bmf_vf_set1(c[k]));
    return bmf_vf_times_2n(p, n, ni);
}

/* 2^y for every y <= 128 (or NaN): below -151 the result rounds to 0, and
 * -inf gives 0.  (A lane beyond the valid ones may hold anything and gives
 * a value to discard.) */
BMF_ALWAYS_INLINE bmf_vf bmf_vf_exp2_nonpositive(bmf_vf y)
{
    return bmf_vf_exp2_in_range(bmf_vf_clamp_below(y, -151.0f));
}

BMF_ALWAYS_INLINE bmf_vd bmf_vd_exp2_in_range(bmf_vd y)
{
    bmf_vd n;
    bmf_vdi ni;
    bmf_vd f = bmf_vd_floor_split(y, &n, &ni);
    static const double c[12] = {
        1.0, 6.9314718055994592839e-1, 2.4022650695906330315e-1, 5.5504108665602238723e-2,
        9.6181290995508956128e-3, 1.3333558629562675936e-3, 1.5403512309733948746e-4,
        1.525317505379524616e-5, 1.3208367308220049348e-6, 1.025321230405209001e-7,
        6.5595298355172712178e-9, 6.2634652734225902742e-10};
    bmf_vd p = bmf_vd_set1(c[11]);
    for (int k = 10; k >= 0; k--) p = bmf_vd_fma(p, f, bmf_vd_set1(c[k]));
    return bmf_vd_times_2n(p, n, ni);
}

BMF_ALWAYS_INLINE bmf_vd bmf_vd_exp2_nonpositive(bmf_vd y)
{
    return bmf_vd_exp2_in_range(bmf_vd_clamp_below(y, -1076.0));
}

/* ---- tanh --------------------------------------------------------------- */

/* float: a rational function with no exp, short enough to sit on the RNN's
 * step-to-step critical path (about half the latency of the exp form, which
 * float64 keeps). */
BMF_ALWAYS_INLINE bmf_vf bmf_vf_tanh(bmf_vf x)
{
    const bmf_vfi sign_bit = (bmf_vfi)bmf_vf_set1(-0.0f);
    x = bmf_vf_clamp(x, -9.02f, 9.02f); /* tanh rounds to +-1 beyond; NaN stays */
    bmf_vf ax = (bmf_vf)((bmf_vfi)x & ~sign_bit);
    bmf_vf s = x * x;
    static const float pc[5] = {9.999999790e-1f, 1.337972378e-1f, 3.494041522e-3f,
                                2.058359680e-5f, 1.331923299e-8f};
    static const float qc[5] = {1.0f, 4.671303901e-1f, 2.587109961e-2f, 3.283104273e-4f,
                                7.762085205e-7f};
    bmf_vf p = bmf_vf_set1(pc[4]), q = bmf_vf_set1(qc[4]);
    for (int k = 3; k >= 0; k--) {
        p = bmf_vf_fma(p, s, bmf_vf_set1(pc[k]));
        q = bmf_vf_fma(q, s, bmf_vf_set1(qc[k]));
    }
    bmf_vf t = ax * p / q;
    t = bmf_vf_select(t > 1.0f, bmf_vf_set1(1.0f), t); /* rounding crosses 1 above |x| = 8 */
    return (bmf_vf)((bmf_vfi)t | ((bmf_vfi)x & sign_bit));
}

BMF_ALWAYS_INLINE bmf_vd bmf_vd_tanh(bmf_vd x)
{
    const bmf_vdi sign_bit = (bmf_vdi)bmf_vd_set1(-0.0);
    bmf_vd ax = (bmf_vd)((bmf_vdi)x & ~sign_bit);
    bmf_vd s = x * x;
    bmf_vd num = bmf_vd_fma(bmf_vd_fma(s, bmf_vd_set1(-9.64399179425052238628e-1),
                                       bmf_vd_set1(-9.92877231001918586564e1)),
                            s, bmf_vd_set1(-1.61468768441708447952e3));
    bmf_vd den = bmf_vd_fma(bmf_vd_fma(s + 1.12811678491632931402e2, s,
                                       bmf_vd_set1(2.23548839060100448583e3)),
                            s, bmf_vd_set1(4.84406305325125486048e3));
    bmf_vd small = bmf_vd_fma(x, s * num / den, x);
    bmf_vd e = bmf_vd_exp(ax + ax);
    bmf_vd big = 1.0 - 2.0 / (e + 1.0);
    big = (bmf_vd)((bmf_vdi)big | ((bmf_vdi)x & sign_bit));
    return bmf_vd_select(ax < 0.625, small, big);
}

#endif /* BMF_SIMD_H */
