/* A/B comparison of builds of the C core in ONE process: each build is a
 * shared library (make -C <its src> shared), loaded side by side with
 * RTLD_LOCAL; the calls alternate (ABAB..., then BABA...), and the medians
 * and their ratio to the first library are printed.  Two separate processes
 * on this shared, noisy VM can land on vCPUs of different speed; samples
 * interleaved in one process see the same load.
 *
 *   make -C src shared ab      (and: make -C /old/checkout/src shared; a
 *   checkout older than that target: cd src && cc -O3 -std=gnu11
 *   -ffp-contract=fast -fno-math-errno -fopenmp -fPIC -shared -I. -o
 *   libbmf_core.so *.c -lm -lpthread)
 *   ./src/tests/ab_kernels att "2048 2048 2 64 1" 20 2 /old/src/libbmf_core.so src/libbmf_core.so
 *   ./src/tests/ab_kernels rnn "1000 1 256 256" 30 2 A.so B.so
 * att dims: Lq Lk B E heads (no mask); rnn dims: T B I H; float32, or float64
 * as att64 / rnn64.
 * A library whose first result differs in any bit from the first library's
 * is marked so (a change meant to keep the bits can be checked that way).
 * AB_ISA=0|1|2 in the environment caps the ISA level (baseline, AVX2, AVX-512).
 * AB_OUT_SHIFT=n: out starts n elements past a 64-byte boundary (0: on a
 * cache line, as bigmodel_fast's own results; malloc's is 16 bytes past one).
 * AB_SPINNER=seconds in the environment: each call is made while another
 * thread busy-waits that long, started just before it, as NumPy's OpenBLAS
 * threads do for 2^28 cycles after each call (0.13 s at 2.1 GHz).
 * AB_EVICT_MB=n: before each call (untimed), the calling thread writes n MiB
 * of another buffer, which pushes the inputs out of its own core's L1 and L2,
 * as the bench's reference and torch calls between ours do; the L3 (480 MiB
 * on the development VM) and the other threads' cores keep their copies. */
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

#define MAX_LIBS 8

/* bmf_attention_f32/_f64 and bmf_rnn_f32/_f64, their arrays as void *. */
typedef int (*attention_fn)(size_t, size_t, size_t, size_t, size_t, size_t, const void *,
                            const void *, const void *, const void *, int,
                            const ptrdiff_t *, int, double, void *, int);
typedef int (*rnn_any_fn)(size_t, size_t, size_t, size_t, const void *, const void *,
                          const void *, const void *, const void *, void *, int);

static int use_f64;

/* rnd(n, s) as float, or widened to double for the float64 kernels. */
static void *data(size_t n, float s)
{
    float *f = rnd(n, s);
    if (!use_f64) return f;
    double *d = bench_alloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = f[i];
    free(f);
    return d;
}
static void *busy_wait(void *seconds)
{
    double end = now() + *(double *)seconds;
    while (now() < end)
        for (volatile int i = 0; i < 1000; i++) {}
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 6 || argc - 5 > MAX_LIBS) {
        fprintf(stderr, "usage: %s att|rnn|att64|rnn64 \"dims\" reps threads lib.so [lib.so ...]\n", argv[0]);
        return 2;
    }
    int attention = strncmp(argv[1], "att", 3) == 0;
    int f64 = use_f64 = strstr(argv[1], "64") != NULL; /* att64, rnn64: float64 */
    size_t elt = f64 ? sizeof(double) : sizeof(float);
    size_t d[5] = {0, 0, 0, 0, 1};
    int n_dims = sscanf(argv[2], "%zu %zu %zu %zu %zu", &d[0], &d[1], &d[2], &d[3], &d[4]);
    int reps = atoi(argv[3]), nt = atoi(argv[4]), n_libs = argc - 5;
    if (n_dims < 4 || reps < 1 || d[4] == 0 || (attention && d[3] % d[4])) {
        fprintf(stderr, "bad dims or reps\n");
        return 2;
    }
    void *fn[MAX_LIBS];
    for (int i = 0; i < n_libs; i++) {
        void *lib = dlopen(argv[5 + i], RTLD_NOW | RTLD_LOCAL);
        fn[i] = lib ? dlsym(lib, attention ? (f64 ? "bmf_attention_f64" : "bmf_attention_f32")
                                           : (f64 ? "bmf_rnn_f64" : "bmf_rnn_f32")) : NULL;
        if (!fn[i]) {
            fprintf(stderr, "%s: %s\n", argv[5 + i], dlerror());
            return 1;
        }
        if (getenv("AB_ISA")) { /* cap every library's ISA level: 0 baseline, 1 AVX2, 2 AVX-512 */
            int (*set_isa)(int) = (int (*)(int))dlsym(lib, "bmf_set_isa");
            if (set_isa) set_isa(atoi(getenv("AB_ISA")));
        }
    }
    void *a, *b, *c, *w1 = NULL, *w2 = NULL, *bias = NULL, *out;
    if (attention) { /* Q, K, V, out */
        a = data(d[0] * d[2] * d[3], 1);
        b = data(d[1] * d[2] * d[3], 1);
        c = data(d[1] * d[2] * d[3], 1);
    } else { /* x, h0, Wx, Wh, b, out */
        a = data(d[0] * d[1] * d[2], 1);
        b = data(d[1] * d[3], 1);
        w1 = data(d[3] * d[2], 0.1f);
        w2 = data(d[3] * d[3], 0.05f);
        bias = data(d[3], 0.1f);
        c = NULL;
    }
    size_t n_out = attention ? d[0] * d[2] * d[3] : d[0] * d[1] * d[3];
    if (getenv("AB_OUT_SHIFT")) { /* out at this many elements past a 64-byte boundary */
        size_t shift = (size_t)atoi(getenv("AB_OUT_SHIFT"));
        void *base;
        if (posix_memalign(&base, 64, (n_out + shift) * elt + 64)) return 1;
        memset(base, 0, (n_out + shift) * elt);
        out = (char *)base + shift * elt;
    } else {
        out = data(n_out, 0);
    }
    int evict_mb = getenv("AB_EVICT_MB") ? atoi(getenv("AB_EVICT_MB")) : 0;
    if (evict_mb < 0 || evict_mb > 65536) {
        fprintf(stderr, "AB_EVICT_MB: 0 to 65536\n");
        return 2;
    }
    size_t evict_bytes = (size_t)evict_mb << 20;
    volatile unsigned char *evict = evict_bytes ? malloc(evict_bytes) : NULL;
    if (evict_bytes && !evict) {
        fprintf(stderr, "AB_EVICT_MB: cannot allocate %d MiB\n", evict_mb);
        return 1;
    }
    const char *spinner_env = getenv("AB_SPINNER");
    double spin_seconds = spinner_env ? atof(spinner_env) : 0;
    double *t = malloc(sizeof *t * (size_t)reps * (size_t)n_libs);
    size_t out_n = attention ? d[0] * d[2] * d[3] : d[0] * d[1] * d[3];
    unsigned char *first_out = malloc(elt * out_n);
    int *same_bits = malloc(sizeof *same_bits * (size_t)n_libs);
    if (!t || !first_out || !same_bits) return 1;
    for (int r = 0; r < reps; r++)
        for (int j = 0; j < n_libs; j++) {
            int i = r % 2 ? n_libs - 1 - j : j; /* ABAB.. then BABA..: no fixed order */
            for (size_t e = 0; e < evict_bytes; e += 64) evict[e] = (unsigned char)(r + j); /* a line each */
            pthread_t spinner;
            if (spin_seconds > 0 && pthread_create(&spinner, NULL, busy_wait, &spin_seconds)) return 1;
            double t0 = now();
            int rc = attention
                ? ((attention_fn)fn[i])(d[0], d[1], d[2], d[4], d[3] / d[4], d[3] / d[4], a, b, c,
                                        NULL, 0, NULL, 0, 0.125, out, nt)
                : ((rnn_any_fn)fn[i])(d[0], d[1], d[2], d[3], a, b, w1, w2, bias, out, nt);
            t[(size_t)i * reps + r] = now() - t0;
            if (spin_seconds > 0) pthread_join(spinner, NULL);
            if (rc) {
                fprintf(stderr, "%s returned %d\n", argv[5 + i], rc);
                return 1;
            }
            if (r == 0 && i == 0) memcpy(first_out, out, elt * out_n);
            if (r == 0) same_bits[i] = memcmp(first_out, out, elt * out_n) == 0;
        }
    double first = 0;
    for (int i = 0; i < n_libs; i++) {
        double *ti = t + (size_t)i * reps;
        qsort(ti, (size_t)reps, sizeof *ti, by_value);
        double median = ti[reps / 2]; /* the upper middle one for even reps */
        if (i == 0) first = median;
        printf("%-40s median %10.4f ms  best %10.4f ms  ratio %.3f%s\n", argv[5 + i], median * 1e3,
               ti[0] * 1e3, median / first, same_bits[i] ? "" : "  (result bits differ from the first)");
    }
    return 0;
}
