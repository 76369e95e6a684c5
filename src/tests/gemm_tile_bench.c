/* The AVX-512 float32 GEMM tile alone, on the attention's two products for
 * one block of 40 query rows and one 512-key tile of a 64-wide head: the
 * scores S = Q K^T (K = 64, K packed) and O += P V (K = 512, V row-major).
 * It compiles kernels_avx512.c into itself, so it times the very code the
 * kernels run, without threads, the softmax or memory beyond L2.  Pin it to
 * one CPU and read GFLOP/s against the core's FMA peak:
 *   make -C src gemm-bench && taskset -c 1 ./src/tests/gemm_tile_bench */
#include "../kernels_avx512.c"

#include <stdio.h>
#include <time.h>

#if defined(__x86_64__) || defined(_M_X64)
#define BLOCK_ROWS BMF_ATT_BQ
#define TILE_KEYS BMF_ATT_BK
#define HEAD 64

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static float *filled(size_t n)
{
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (!p) exit(1);
    for (size_t i = 0; i < n; i++) p[i] = (float)(i * 7919 % 1000) / 1000.0f - 0.5f;
    return p;
}

int main(void)
{
    if (bmf_cpu_isa() < BMF_ISA_AVX512) {
        printf("this CPU lacks AVX-512; nothing to time\n");
        return 0;
    }
    const size_t vl = BMF_VF_LANES, panels = TILE_KEYS / vl, reps = 4000;
    float *Q = filled(BLOCK_ROWS * HEAD), *K = filled(TILE_KEYS * HEAD);
    float *Kp = filled(TILE_KEYS * HEAD), *S = filled(BLOCK_ROWS * TILE_KEYS);
    float *V = filled(TILE_KEYS * HEAD), *O = filled(BLOCK_ROWS * HEAD);
    pack_panels_f32_avx512(K, HEAD, TILE_KEYS, HEAD, 0, panels, BMF_NV, 1, Kp);
    double flops = 2.0 * BLOCK_ROWS * TILE_KEYS * HEAD * (double)reps;
    for (int round = 0; round < 5; round++) {
        double t = seconds_now();
        for (size_t i = 0; i < reps; i++)
            gemm_block_f32_avx512(0, BLOCK_ROWS, 0, panels, panels, BMF_NV, HEAD, 0, HEAD, Q, HEAD,
                                  Kp, 0, S, TILE_KEYS, TILE_KEYS, BMF_INIT_ZERO, NULL, 0, NULL, 0);
        double scores = flops / (seconds_now() - t) / 1e9;
        t = seconds_now();
        for (size_t i = 0; i < reps; i++)
            gemm_block_f32_avx512(0, BLOCK_ROWS, 0, HEAD / vl, HEAD / vl, BMF_NV, TILE_KEYS, 0,
                                  TILE_KEYS, S, TILE_KEYS, V, HEAD, O, HEAD, HEAD, BMF_INIT_C, NULL,
                                  0, NULL, 0);
        double pv = flops / (seconds_now() - t) / 1e9;
        printf("scores (K = %d): %6.1f GFLOP/s   P.V (K = %d): %6.1f GFLOP/s\n", HEAD, scores,
               TILE_KEYS, pv);
    }
    free(Q); free(K); free(Kp); free(S); free(V); free(O);
    return 0;
}
#else
int main(void)
{
    printf("an x86-64 benchmark; nothing to time here\n");
    return 0;
}
#endif
