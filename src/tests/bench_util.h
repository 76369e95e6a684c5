/* The clock, random inputs and sort order of the C benchmarks (bench_kernels, ab_kernels,
 * concurrent_calls, read_bandwidth). */
#ifndef BMF_BENCH_UTIL_H
#define BMF_BENCH_UTIL_H
#include <stdlib.h>
#include <time.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

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

/* bytes of memory, as NumPy allocates an array's data on Linux: from 4 MiB
 * on, 2 MiB-aligned and asked for transparent huge pages (where the kernel
 * gives them only on madvise, as here, malloc's 4 KiB pages made strided
 * reads of K and V take other times than the same reads of NumPy arrays:
 * "12 4096 8 512 8" ranked the attention paths the other way).  Freed
 * with free(); exits when memory runs out. */
static inline void *bench_alloc(size_t bytes)
{
    void *p = NULL;
    if (bytes < ((size_t)4 << 20)) {
        p = malloc(bytes ? bytes : 1);
    } else if (posix_memalign(&p, (size_t)2 << 20, bytes) != 0) {
        p = NULL;
    }
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    else {
        madvise(p, (bytes + ((size_t)2 << 20) - 1) & ~(((size_t)2 << 20) - 1), MADV_HUGEPAGE);
    }
#endif
    if (!p) exit(1);
    return p;
}

/* n floats uniform in [-s, s]; exits when memory runs out. */
static inline float *rnd(size_t n, float s)
{
    float *a = bench_alloc(n * sizeof *a);
    if (!a) exit(1);
    for (size_t i = 0; i < n; i++) a[i] = s * ((float)rand() / RAND_MAX * 2 - 1);
    return a;
}
#endif
