/* The clock, random inputs and sort order of the C benchmarks (bench_kernels, ab_kernels,
 * concurrent_calls, read_bandwidth). */
#ifndef BMF_BENCH_UTIL_H
#define BMF_BENCH_UTIL_H
#include <stdlib.h>
#include <time.h>

static inline double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* bmf_rnn_f32, as found with dlsym in a build loaded at run time. */
typedef int (*rnn_fn)(size_t, size_t, size_t, size_t, const float *, const float *,
                      const float *, const float *, const float *, float *, int);

/* qsort's order for doubles (times), for medians. */
static inline int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* n floats uniform in [-s, s]; exits when memory runs out. */
static inline float *rnd(size_t n, float s)
{
    float *a = malloc((n ? n : 1) * sizeof *a);
    if (!a) exit(1);
    for (size_t i = 0; i < n; i++) a[i] = s * ((float)rand() / RAND_MAX * 2 - 1);
    return a;
}
#endif
