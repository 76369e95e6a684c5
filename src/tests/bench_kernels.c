/* Kernel microbenchmark of the C core alone (single thread unless BMF_THREADS
 * is set; best of N, which resists noise from other processes):
 *   make -C src bench && ./src/tests/bench_kernels */
#include <stdio.h>
#include <stdlib.h>

#include "bigmodel_fast.h"
#include "bench_util.h"

int main(void)
{
    int nt = getenv("BMF_THREADS") ? atoi(getenv("BMF_THREADS")) : 1;
    printf("ISA %s, %d thread(s)\n", bmf_isa_name(bmf_get_isa()), nt);
    size_t rnn_shapes[][4] = {{100, 1, 64, 64}, {1000, 1, 256, 256}, {200, 16, 128, 256}, {100, 64, 512, 512}};
    for (size_t s = 0; s < 4; s++) {
        size_t T = rnn_shapes[s][0], B = rnn_shapes[s][1], I = rnn_shapes[s][2], H = rnn_shapes[s][3];
        float *x = rnd(T * B * I, 1), *h0 = rnd(B * H, 1), *Wx = rnd(H * I, 0.1f), *Wh = rnd(H * H, 0.05f);
        float *b = rnd(H, 0.1f), *out = malloc(T * B * H * sizeof *out);
        double best = 1e9;
        for (int r = 0; r < 15; r++) {
            double t = now();
            bmf_rnn_f32(T, B, I, H, x, h0, Wx, Wh, b, out, nt);
            t = now() - t;
            if (t < best) best = t;
        }
        printf("rnn  %4zu,%3zu,%3zu,%3zu  %8.3f ms  %6.1f GF/s\n", T, B, I, H, best * 1e3,
               2.0 * T * B * H * (I + H) / best / 1e9);
        free(x); free(h0); free(Wx); free(Wh); free(b); free(out);
    }
    size_t att_shapes[][5] = {{128, 128, 8, 64, 1}, {2048, 2048, 2, 64, 1}, {1024, 1024, 2, 512, 8}, {1, 4096, 8, 512, 8}};
    for (size_t s = 0; s < 4; s++) {
        size_t Lq = att_shapes[s][0], Lk = att_shapes[s][1], B = att_shapes[s][2], E = att_shapes[s][3], h = att_shapes[s][4];
        float *Q = rnd(Lq * B * E, 1), *K = rnd(Lk * B * E, 1), *V = rnd(Lk * B * E, 1);
        float *out = malloc(Lq * B * E * sizeof *out);
        double best = 1e9;
        for (int r = 0; r < 5; r++) {
            double t = now();
            bmf_attention_f32(Lq, Lk, B, h, E / h, E / h, Q, K, V, NULL, 0, NULL, 0, 0.125, out, nt);
            t = now() - t;
            if (t < best) best = t;
        }
        printf("attn %4zu,%4zu,%zu,%3zu,%zu  %8.3f ms  %6.1f GF/s\n", Lq, Lk, B, E, h, best * 1e3,
               4.0 * Lq * Lk * E * B / best / 1e9);
        free(Q); free(K); free(V); free(out);
    }
    return 0;
}
