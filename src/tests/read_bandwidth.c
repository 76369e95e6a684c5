/* How fast this machine reads memory: the bound of the decoding shape, which
 * reads all of K and V once per call.  Each of `threads` threads sums its
 * share of an array of `mib` MiB in 8 interleaved streams (one stream per
 * thread reads slower here); the median of `reps` passes is printed.
 *
 *   make -C src read-bw && ./src/tests/read_bandwidth 128 15 2
 * (attn-decode reads 128 MiB: 8 x 4096 keys x 512 floats, K and V.) */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

#define STREAMS 8
typedef float lanes __attribute__((vector_size(16))); /* one register at every level */

typedef struct {
    const lanes *a;
    size_t n; /* vectors in this thread's share */
    float sum;
} share;

static void *read_share(void *arg)
{
    share *s = arg;
    size_t per = s->n / STREAMS;
    lanes acc[STREAMS] = {{0}};
    for (size_t i = 0; i < per; i++)
        for (int j = 0; j < STREAMS; j++) acc[j] += s->a[j * per + i];
    float sum = 0;
    for (int j = 0; j < STREAMS; j++)
        for (int l = 0; l < 4; l++) sum += acc[j][l];
    s->sum = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s MiB reps threads\n", argv[0]);
        return 2;
    }
    size_t bytes = (size_t)atol(argv[1]) << 20;
    int reps = atoi(argv[2]), nt = atoi(argv[3]);
    if (bytes < 64 * 64 || reps < 1 || nt < 1 || nt > 64) return 2;
    size_t n = bytes / sizeof(lanes);
    lanes *a = aligned_alloc(64, n * sizeof(lanes));
    double *t = malloc(reps * sizeof *t);
    if (!a || !t) return 1;
    memset(a, 0, n * sizeof(lanes));
    pthread_t tid[64];
    share sh[64];
    float check = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        for (int i = 0; i < nt; i++) {
            sh[i] = (share){a + n * i / nt, n * (i + 1) / nt - n * i / nt, 0};
            if (pthread_create(&tid[i], NULL, read_share, &sh[i])) return 1;
        }
        for (int i = 0; i < nt; i++) {
            pthread_join(tid[i], NULL);
            check += sh[i].sum;
        }
        t[r] = now() - t0;
    }
    qsort(t, reps, sizeof *t, by_value);
    printf("read %zu MiB on %d threads: median %.3f ms (%.1f GB/s), best %.3f ms (%.1f GB/s)%s\n",
           bytes >> 20, nt, t[reps / 2] * 1e3, bytes / t[reps / 2] / 1e9, t[0] * 1e3,
           bytes / t[0] / 1e9, check != 0 ? " (nonzero sum?)" : "");
    free(a);
    free(t);
    return 0;
}
