/* amx_score_probe.c: what AMX could do for attention's score product, on a
 * CPU with AMX-BF16 under Linux 5.16 or later.  Not part of the package.
 *
 *   gcc -O2 -mamx-tile -mamx-bf16 -Wall -Wextra tools/amx_score_probe.c -o /tmp/amx_score_probe -lm
 *   taskset -c 1 /tmp/amx_score_probe peak    # TDPBF16PS alone, operands in tile registers
 *   taskset -c 1 /tmp/amx_score_probe 6       # S = Q K^T with N of the 3 x 3 part products
 *
 * S = Q K^T for 32 query rows, 512 keys and a head of 64, as attention's
 * score tile: each float32 of Q and K split exactly into three bf16 parts
 * (each part the leading 8 significant bits of what the parts before it
 * left), the products of the parts summed by TDPBF16PS into float32, the
 * smallest first.  GFLOP/s are counted as float32 ones (2 * 32 * 512 * 64 a
 * product), best of 7 rounds; the error of each score is against double,
 * over the sum of |q_d k_d|, beside that of a float32 FMA chain. */
#define _GNU_SOURCE
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#define NQ 32
#define NK 512
#define D 64
typedef struct { uint8_t palette, start_row, res[14]; uint16_t colsb[16]; uint8_t rows[16]; } cfg_t;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static uint32_t bits(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static float fromb(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }
static void split3(float x, uint16_t p[3]) {
    float r = x;
    for (int i = 0; i < 3; i++) { uint32_t h = bits(r) & 0xFFFF0000u; p[i] = (uint16_t)(h >> 16); r = r - fromb(h); }
}
/* A parts: [part][kb][16-row tile t][row 16][32] ; B parts VNNI: [part][kb][key tile][16 rows][16 cols x 2] */
static uint16_t Ap[3][2][NQ / 16][16][32] __attribute__((aligned(64)));
static uint16_t Bp[3][2][NK / 16][16][32] __attribute__((aligned(64)));
static float Q[NQ][D], K[NK][D], S[NQ][NK] __attribute__((aligned(64)));
int main(int argc, char **argv) {
    int peak = argc > 1 && !strcmp(argv[1], "peak");
    int nprod = argc > 1 && !peak ? atoi(argv[1]) : 6;
    if (nprod < 1 || nprod > 6) nprod = 6;
    /* Linux hands out AMX's tile state only on request (ARCH_REQ_XCOMP_PERM,
     * XFEATURE_XTILEDATA). */
    if (syscall(SYS_arch_prctl, 0x1023, 18)) { perror("arch_prctl"); return 1; }
    srand(1);
    for (int i = 0; i < NQ; i++) for (int d = 0; d < D; d++) Q[i][d] = (float)((rand() / (double)RAND_MAX - 0.5) * 3);
    for (int j = 0; j < NK; j++) for (int d = 0; d < D; d++) K[j][d] = (float)((rand() / (double)RAND_MAX - 0.5) * 3);
    for (int i = 0; i < NQ; i++) for (int d = 0; d < D; d++) {
        uint16_t p[3]; split3(Q[i][d], p);
        for (int q = 0; q < 3; q++) Ap[q][d / 32][i / 16][i % 16][d % 32] = p[q];
    }
    for (int j = 0; j < NK; j++) for (int d = 0; d < D; d++) {
        uint16_t p[3]; split3(K[j][d], p);
        for (int q = 0; q < 3; q++) Bp[q][d / 32][j / 16][(d % 32) / 2][(j % 16) * 2 + d % 2] = p[q];
    }
    /* static, and ldtilecfg given the whole object: gcc 12's _tile_loadconfig
     * says it reads 8 bytes, so a local config's stores could be dropped */
    static cfg_t cfg __attribute__((aligned(64)));
    cfg.palette = 1;
    for (int i = 0; i < 8; i++) { cfg.colsb[i] = 64; cfg.rows[i] = 16; }
    __asm__ volatile("ldtilecfg %0" : : "m"(cfg));
    if (peak) { /* four independent accumulators, no memory in the loop */
        _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
        _tile_loadd(4, Ap[0][0][0], 64); _tile_loadd(5, Ap[0][0][1], 64);
        _tile_loadd(6, Bp[0][0][0], 64); _tile_loadd(7, Bp[0][0][1], 64);
        for (int rep = 0; rep < 5; rep++) {
            long n = 2000000; double t0 = now();
            for (long i = 0; i < n; i++) {
                _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
            }
            double t = now() - t0;
            printf("peak: %.0f bf16 GFLOP/s (16 x 16 x 32 multiply-adds a TDPBF16PS)\n",
                   2.0 * 4 * n * 16 * 16 * 32 / t / 1e9);
        }
        _tile_release();
        return 0;
    }
    /* the six products, smallest first: (a part, b part) */
    static const int pa[6] = {0, 2, 1, 1, 0, 0}, pb[6] = {2, 0, 1, 0, 1, 0};
    double best = 0;
    for (int rep = 0; rep < 7; rep++) {
        int n = 2000; double t0 = now();
        for (int it = 0; it < n; it++)
            for (int jt = 0; jt < NK / 16; jt += 2) {   /* 2x2 output tiles: tmm0..3 */
                _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
                for (int p = 6 - nprod; p < 6; p++)
                    for (int kb = 0; kb < 2; kb++) {
                        _tile_loadd(4, Ap[pa[p]][kb][0], 64);
                        _tile_loadd(5, Ap[pa[p]][kb][1], 64);
                        _tile_loadd(6, Bp[pb[p]][kb][jt], 64);
                        _tile_loadd(7, Bp[pb[p]][kb][jt + 1], 64);
                        _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7);
                        _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
                    }
                _tile_stored(0, &S[0][jt * 16], NK * 4); _tile_stored(1, &S[0][jt * 16 + 16], NK * 4);
                _tile_stored(2, &S[16][jt * 16], NK * 4); _tile_stored(3, &S[16][jt * 16 + 16], NK * 4);
            }
        double t = now() - t0, g = 2.0 * NQ * NK * D * n / t / 1e9;
        if (g > best) best = g;
    }
    double maxrel = 0, maxrel32 = 0;
    for (int i = 0; i < NQ; i++) for (int j = 0; j < NK; j++) {
        double r = 0, a = 0; float f = 0;
        for (int d = 0; d < D; d++) { r += (double)Q[i][d] * K[j][d]; a += fabs((double)Q[i][d] * K[j][d]); f = fmaf(Q[i][d], K[j][d], f); }
        double e = fabs(S[i][j] - r) / a, e32 = fabs(f - r) / a;
        if (e > maxrel) maxrel = e;
        if (e32 > maxrel32) maxrel32 = e32;
    }
    printf("%d products: best %.0f GFLOP/s (fp32-equivalent); max error / sum|q k|: AMX %.2e, fp32 FMA chain %.2e\n",
           nprod, best, maxrel, maxrel32);
    _tile_release();
    return 0;
}
