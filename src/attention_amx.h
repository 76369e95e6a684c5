/* attention_amx.h: float32 attention's scores S = Q K^T on AMX tiles, for
 * kernels_amx.c (attention_impl.h includes it there only).
 *
 * TDPBF16PS multiplies bf16 and sums in float32, some 16 times the FMA
 * ports' rate (tools/amx_score_probe.c).  Each float32 of Q and K is split
 * exactly into three bf16 parts, hi + mid + lo (each the leading 8
 * significant bits of what the parts before it left), and the six largest
 * of the nine part products are summed, smallest first (bf16x6: Henry, Tang
 * and Heinecke, 2019): an error over sum |q_d k_d| of about 7e-8, against
 * 1.9e-7 for a float32 FMA chain (the probe).  A block of Q rows or a tile
 * of K with a value outside AMX's range (bmf_amx_lanes_ok: not finite, or
 * nonzero and below 2^-50 or from 2^50 in magnitude) takes the FMA path
 * instead.  Which path a (block, tile) takes depends on the data alone, never
 * on the thread count; a value outside the range changes the bits (within
 * the tolerance) of the other rows of its block, or of every row against
 * its tile.
 *
 * Layouts (bf16 as uint16_t; 32 bf16 = one 64-byte tile row = 32 of Dk):
 *  - Q parts (per block): [part][kb][row 0..BMF_AMX_ROWS_MAX)[32], rows
 *    past the block zero: the A operand, a 16-row tile per 16 rows;
 *  - K parts (per key tile of BMF_ATT_BK): [part][kb][group of 16 keys]
 *    [16 pairs of Dk][16 keys x 2]: the B operand in the pair-interleaved
 *    layout TDPBF16PS reads, keys past Lk zero.
 * kb counts Dk in steps of 32, Dk zero-padded. */
#ifndef BMF_ATTENTION_AMX_H
#define BMF_ATTENTION_AMX_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define BMF_AMX_ROWS_MAX 48 /* a block's rows (BMF_ATT_BQ at this level): three 16-row tiles */

/* Every tile register 16 rows of 64 bytes: C (tmm0-3) 16 x 16 float32,
 * A (tmm4, 5) 16 rows x 32 bf16, B (tmm6, 7) 16 pairs x 16 keys. */
static inline void bmf_amx_configure(void)
{
    static const struct {
        uint8_t palette, start_row, reserved[14];
        uint16_t colsb[16];
        uint8_t rows[16];
    } __attribute__((aligned(64))) cfg = {.palette = 1,
                                          .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
                                          .rows = {16, 16, 16, 16, 16, 16, 16, 16}};
    /* Not _tile_loadconfig: gcc 12's says the instruction reads 8 bytes, so
     * the stores of a local config could be dropped (at -Os they were). */
    __asm__ volatile("ldtilecfg %0" : : "m"(cfg));
}

/* Whether each lane of v may go through AMX: zero, or of magnitude in
 * [2^-50, 2^50).  Then every part is normal, every part product kept is
 * normal (at least 2^-116; TDPBF16PS flushes subnormal ones) and none nears
 * float32's overflow (each product is rounded to float32 on its own, so
 * two huge ones of opposite signs give inf - inf where FMAs would not). */
static inline int bmf_amx_lanes_ok(__m512 v)
{
    const __m512i a = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7FFFFFFF));
    __mmask16 bad = _mm512_cmpge_epu32_mask(a, _mm512_set1_epi32((127 + 50) << 23))
                    | (_mm512_cmplt_epu32_mask(a, _mm512_set1_epi32((127 - 50) << 23))
                       & _mm512_cmpneq_epu32_mask(a, _mm512_setzero_si512()));
    return bad == 0;
}

/* Splits 32 floats (n valid, the rest taken as 0) into their three bf16
 * parts, each 32 in order; returns 0 if a value may not go through AMX. */
static inline int bmf_amx_split32(const float *x, size_t n, uint16_t *hi, uint16_t *mid,
                                  uint16_t *lo)
{
    const __m512i top = _mm512_set1_epi32((int)0xFFFF0000u);
    int ok = 1;
    for (int h = 0; h < 2; h++) {
        size_t start = (size_t)h * 16;
        size_t m = n > start ? (n - start < 16 ? n - start : 16) : 0;
        float part_row[16] = {0}; /* a short row through a copy: no read past it */
        if (m < 16 && m) memcpy(part_row, x + start, m * sizeof(float));
        __m512 v = m == 16 ? _mm512_loadu_ps(x + start) : _mm512_loadu_ps(part_row);
        ok &= bmf_amx_lanes_ok(v);
        uint16_t *dst[3] = {hi, mid, lo};
        for (int p = 0; p < 3; p++) {
            __m512i part = _mm512_and_si512(_mm512_castps_si512(v), top);
            _mm256_storeu_si256((__m256i *)(dst[p] + start),
                                _mm512_cvtepi32_epi16(_mm512_srli_epi32(part, 16)));
            v = _mm512_sub_ps(v, _mm512_castsi512_ps(part)); /* exact: the rest */
        }
    }
    return ok;
}

/* Q's rows [0, nq) (row stride ld, Dk of them) into parts, rows up to
 * BMF_AMX_ROWS_MAX zero; returns 0 if a value may not go through AMX. */
static inline int bmf_amx_split_q(const float *Q, size_t ld, size_t nq, size_t Dk, size_t nkb,
                                  uint16_t *parts)
{
    const size_t part_len = nkb * BMF_AMX_ROWS_MAX * 32;
    int ok = 1;
    for (size_t r = 0; r < BMF_AMX_ROWS_MAX; r++)
        for (size_t kb = 0; kb < nkb; kb++) {
            uint16_t *row = parts + (kb * BMF_AMX_ROWS_MAX + r) * 32;
            size_t d0 = kb * 32, n = r < nq && Dk > d0 ? (Dk - d0 < 32 ? Dk - d0 : 32) : 0;
            ok &= bmf_amx_split32(n ? Q + r * ld + d0 : Q, n, row, row + part_len, row + 2 * part_len);
        }
    return ok;
}

/* One key tile's parts from its float32 packing (pack_panels' layout:
 * groups of 4 panels of 16 keys, Dk rows of 64 keys each, the last group
 * narrower; keys past the tile's are zero there): row q of a group's B tile
 * holds Dk 2q and 2q + 1 of its 16 keys, one 32-bit pair per key, so it is
 * two 16-key rows of the packing, split and interleaved.  Only the tile's
 * n_panels groups are written (of tile_groups in the layout).  Returns 0 if
 * a value may not go through AMX. */
static inline int bmf_amx_split_k(const float *Kpacked, size_t n_panels, size_t tile_groups,
                                  size_t Dk, size_t nkb, uint16_t *parts)
{
    const size_t part_len = nkb * tile_groups * 512;
    const __m512i top = _mm512_set1_epi32((int)0xFFFF0000u);
    int ok = 1;
    for (size_t g = 0; g < n_panels; g++) { /* (bmf_amx_scores reads no group past them) */
        size_t first = g / 4 * 4, width = n_panels - first < 4 ? n_panels - first : 4;
        const float *base = Kpacked + first * Dk * 16 + (g % 4) * 16;
        for (size_t q = 0; q < nkb * 16; q++) {
            size_t d0 = 2 * q, d1 = 2 * q + 1;
            __m512 even = d0 < Dk ? _mm512_loadu_ps(base + d0 * width * 16) : _mm512_setzero_ps();
            __m512 odd = d1 < Dk ? _mm512_loadu_ps(base + d1 * width * 16) : _mm512_setzero_ps();
            ok &= bmf_amx_lanes_ok(even) & bmf_amx_lanes_ok(odd);
            uint16_t *row = parts + ((q / 16) * tile_groups + g) * 512 + (q % 16) * 32;
            for (int p = 0; p < 3; p++) {
                __m512i pe = _mm512_and_si512(_mm512_castps_si512(even), top);
                __m512i po = _mm512_and_si512(_mm512_castps_si512(odd), top);
                _mm512_storeu_si512((void *)(row + p * part_len),
                                    _mm512_or_si512(_mm512_srli_epi32(pe, 16), po));
                even = _mm512_sub_ps(even, _mm512_castsi512_ps(pe)); /* exact: the rest */
                odd = _mm512_sub_ps(odd, _mm512_castsi512_ps(po));
            }
        }
    }
    return ok;
}

/* The six part products (a's part, b's part), smallest first. */
static const int bmf_amx_part_a[6] = {0, 2, 1, 1, 0, 0};
static const int bmf_amx_part_b[6] = {2, 0, 1, 0, 1, 0};

/* The A tile of Q's rows [16 rt, 16 rt + 16) and the B tile of K's group g,
 * both at kb, for product p; and the four C tiles zeroed. */
static inline const uint16_t *bmf_amx_q_tile(const uint16_t *Qp, size_t nkb, int p, size_t kb,
                                             size_t rt)
{
    return Qp + ((bmf_amx_part_a[p] * nkb + kb) * BMF_AMX_ROWS_MAX + rt * 16) * 32;
}
static inline const uint16_t *bmf_amx_k_tile(const uint16_t *Kp, size_t nkb, size_t tile_groups,
                                             int p, size_t kb, size_t g)
{
    return Kp + ((bmf_amx_part_b[p] * nkb + kb) * tile_groups + g) * 512;
}
static inline void bmf_amx_zero_c(void)
{
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
}

/* S[r][j] = q_r . k_j for the rows of n_rowtiles 16-row tiles and the keys
 * of the first n_groups 16-key groups of a key tile of tile_groups (S's row
 * stride lds floats): all of them are written, rows and keys past the real
 * ones with zeros' products. */
static inline void bmf_amx_scores(const uint16_t *Qp, const uint16_t *Kp, size_t nkb,
                                  size_t n_rowtiles, size_t n_groups, size_t tile_groups,
                                  float *S, size_t lds)
{
    const size_t ldb = lds * sizeof(float);
    /* C tiles zeroed, then each part product p and slice kb of Dk in turn,
     * with a (Q's row tile rt) and b (K's group g) pointing at its tiles */
#define BMF_AMX_EACH_PRODUCT(a, b)                                                        \
    bmf_amx_zero_c();                                                                     \
    for (int p = 0; p < 6; p++)                                                           \
        for (size_t kb = 0; kb < nkb; kb++)                                               \
            for (const uint16_t *a = bmf_amx_q_tile(Qp, nkb, p, kb, rt),                  \
                                *b = bmf_amx_k_tile(Kp, nkb, tile_groups, p, kb, g);     \
                 a; a = NULL)
    size_t rt = 0;
    for (; rt + 2 <= n_rowtiles; rt += 2) /* 2 x 2 tiles of C */
        for (size_t g = 0; g < n_groups; g += 2) {
            int two = g + 1 < n_groups;
            BMF_AMX_EACH_PRODUCT(a, b) {
                    _tile_loadd(4, a, 64);
                    _tile_loadd(5, a + 16 * 32, 64);
                    _tile_loadd(6, b, 64);
                    _tile_dpbf16ps(0, 4, 6);
                    _tile_dpbf16ps(2, 5, 6);
                    if (two) {
                        _tile_loadd(7, b + 512, 64);
                        _tile_dpbf16ps(1, 4, 7);
                        _tile_dpbf16ps(3, 5, 7);
                    }
                }
            float *s = S + rt * 16 * lds + g * 16;
            _tile_stored(0, s, ldb);
            _tile_stored(2, s + 16 * lds, ldb);
            if (two) {
                _tile_stored(1, s + 16, ldb);
                _tile_stored(3, s + 16 * lds + 16, ldb);
            }
        }
    for (; rt < n_rowtiles; rt++) /* the last row tile: 1 x 4 tiles of C */
        for (size_t g = 0; g < n_groups; g += 4) {
            size_t ng = n_groups - g < 4 ? n_groups - g : 4;
            BMF_AMX_EACH_PRODUCT(a, b) {
                    _tile_loadd(4, a, 64);
                    _tile_loadd(5, b, 64);
                    _tile_dpbf16ps(0, 4, 5);
                    if (ng > 1) {
                        _tile_loadd(6, b + 512, 64);
                        _tile_dpbf16ps(1, 4, 6);
                    }
                    if (ng > 2) {
                        _tile_loadd(7, b + 1024, 64);
                        _tile_dpbf16ps(2, 4, 7);
                    }
                    if (ng > 3) {
                        _tile_loadd(5, b + 1536, 64);
                        _tile_dpbf16ps(3, 4, 5);
                    }
                }
            float *s = S + rt * 16 * lds + g * 16;
            _tile_stored(0, s, ldb);
            if (ng > 1) _tile_stored(1, s + 16, ldb);
            if (ng > 2) _tile_stored(2, s + 32, ldb);
            if (ng > 3) _tile_stored(3, s + 48, ldb);
        }
}
#undef BMF_AMX_EACH_PRODUCT

#endif /* BMF_ATTENTION_AMX_H */
