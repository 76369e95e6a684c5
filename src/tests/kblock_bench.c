/* Experiment: the RNN's batched step (M rows x one thread's panels, K = H) as
 * gemm_block does it (each row tile streams all K of a panel group from L2),
 * against K in slices of KC (a group's slice stays in L1 for all row tiles). */
#include "../kernels_avx512.c"
#include <stdio.h>
#include <time.h>

static double now(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + ts.tv_nsec * 1e-9; }
static float *filled(size_t n) { float *p = aligned_alloc(64, (n * 4 + 63) / 64 * 64); for (size_t i = 0; i < n; i++) p[i] = (float)(i * 7919 % 1000) / 1000.0f - 0.5f; return p; }

static void kblocked(size_t M, size_t p1, size_t K, size_t KC, const float *A, size_t lda, const float *Bp, float *C, size_t ldc, int tanh_)
{
    const size_t group = BMF_NV, VLN = 16;
    for (size_t k0 = 0; k0 < K; k0 += KC) {
        size_t kc = K - k0 < KC ? K - k0 : KC;
        int last = k0 + kc >= K;
        for (size_t g = 0; g < p1; g += group) {
            size_t w = p1 - g < group ? p1 - g : group;
            const float *bg = Bp + g * K * VLN + k0 * w * VLN;
            for (size_t i = 0; i < M; i += BMF_MR) {
                int mr = (int)(M - i < BMF_MR ? M - i : BMF_MR);
                const float *a = A + i * lda + k0;
                float *c = C + i * ldc + g * VLN;
#define T(MR_) case MR_: gemm_tile_f32_avx512(MR_, 4, kc, a, lda, bg, w * VLN, c, ldc, w * VLN, BMF_INIT_C, NULL, last && tanh_, 0); break;
                switch (mr) { T(1) T(2) T(3) T(4) T(5) }
            }
        }
    }
}

int main(int argc, char **argv)
{
    size_t M = argc > 1 ? atoi(argv[1]) : 64, H = argc > 2 ? atoi(argv[2]) : 512;
    size_t panels = argc > 3 ? atoi(argv[3]) : 16, KC = argc > 4 ? atoi(argv[4]) : 64;
    size_t K = H, reps = argc > 5 ? atoi(argv[5]) : 200;
    float *A = filled(M * K), *W = filled(panels * 16 * K), *Bp = filled(panels * 16 * K);
    float *C0 = filled(M * panels * 16), *C1 = filled(M * panels * 16), *Cinit = filled(M * panels * 16);
    pack_panels_f32_avx512(W, K, panels * 16, K, 0, panels, BMF_NV, 1, Bp);
    size_t ldc = panels * 16;
    double flops = 2.0 * M * K * panels * 16;
    for (int round = 0; round < 7; round++) {
        double ta = 1e9, tb = 1e9;
        for (size_t r = 0; r < reps; r++) {
            memcpy(C0, Cinit, M * ldc * 4);
            double t = now();
            gemm_block_f32_avx512(0, M, 0, panels, panels, BMF_NV, K, A, K, Bp, 0, C0, ldc, ldc, BMF_INIT_C, NULL, 1, 0);
            t = now() - t; if (t < ta) ta = t;
            memcpy(C1, Cinit, M * ldc * 4);
            t = now();
            kblocked(M, panels, K, KC, A, K, Bp, C1, ldc, 1);
            t = now() - t; if (t < tb) tb = t;
        }
        printf("gemm_block %6.1f GFLOP/s   K in slices of %zu: %6.1f GFLOP/s   same bits: %s\n",
               flops / ta / 1e9, KC, flops / tb / 1e9, memcmp(C0, C1, M * ldc * 4) ? "NO" : "yes");
    }
    return 0;
}
