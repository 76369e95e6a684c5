/* Several threads calling one build of the C core at once, each in a loop,
 * as a Python thread pool does: the mean time of a call.  With the kernels'
 * threads outnumbering the cores, this is where a waiting thread that holds
 * a core its partner needs shows (see BMF_SPINS_BEFORE_YIELD).
 *
 *   make -C src shared ab
 *   ./src/tests/concurrent_calls src/libbmf_core.so 2 2 10 "1000 1 256 256"
 * arguments: library, calling threads, num_threads per call, calls per
 * thread, rnn dims T B I H (float32). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_util.h"

static struct {
    rnn_fn rnn;
    size_t T, B, I, H;
    int threads_per_call, calls;
    const float *x, *h0, *Wx, *Wh, *b;
} job;

static void *caller(void *seconds_per_call)
{
    float *out = rnd(job.T * job.B * job.H, 0);
    double start = now();
    for (int i = 0; i < job.calls; i++)
        if (job.rnn(job.T, job.B, job.I, job.H, job.x, job.h0, job.Wx, job.Wh, job.b, out,
                    job.threads_per_call))
            exit(1);
    *(double *)seconds_per_call = (now() - start) / job.calls;
    free(out);
    return NULL;
}

int main(int argc, char **argv)
{
    int callers = argc == 6 ? atoi(argv[2]) : 0;
    if (argc != 6 || callers < 1 || callers > 64
        || sscanf(argv[5], "%zu %zu %zu %zu", &job.T, &job.B, &job.I, &job.H) != 4) {
        fprintf(stderr, "usage: %s lib.so callers threads_per_call calls \"T B I H\"\n", argv[0]);
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    job.rnn = lib ? (rnn_fn)dlsym(lib, "bmf_rnn_f32") : NULL;
    if (!job.rnn) {
        fprintf(stderr, "%s: %s\n", argv[1], dlerror());
        return 1;
    }
    job.threads_per_call = atoi(argv[3]);
    job.calls = atoi(argv[4]) > 0 ? atoi(argv[4]) : 1;
    job.x = rnd(job.T * job.B * job.I, 1);
    job.h0 = rnd(job.B * job.H, 1);
    job.Wx = rnd(job.H * job.I, 0.1f);
    job.Wh = rnd(job.H * job.H, 0.05f);
    job.b = rnd(job.H, 0.1f);
    pthread_t thread[64];
    double seconds[64], sum = 0;
    for (int p = 0; p < callers; p++) pthread_create(&thread[p], NULL, caller, &seconds[p]);
    for (int p = 0; p < callers; p++) {
        pthread_join(thread[p], NULL);
        sum += seconds[p];
    }
    printf("%s: %d callers x %d threads: %.3f ms per call\n", argv[1], callers,
           job.threads_per_call, sum / callers * 1e3);
    return 0;
}
