/* kern_avx512.c: the AVX-512 kernel table (F/BW/VL/DQ + VNNI, FMA, F16C; see Makefile).
 *
 * Design
 *   - Quantized matmuls keep integer block sums exact (VNNI vpdpbusd for 32-element
 *     blocks, vpmaddubsw + vpdpwssd for k-quants, where the per-sub-block scale is applied
 *     in integer) and then accumulate in float vectors. The float order differs from ref
 *     (tests hold it to a tolerance) but every output is computed by the same sequence of
 *     lane operations whatever r0/r1/ncols are: each (row, column) has its own
 *     accumulator, tiles only decide which pairs run side by side and share the unpacked
 *     weights across the columns. Hence results are identical across thread splits and
 *     between batched (ncols 8) and single-column calls.
 *   - 32-element block types (Q4_0, Q8_0) work on groups of 4 blocks, one block per
 *     128-bit lane. The weight blocks are 2-byte aligned with even sizes, so their fields
 *     are whole 16-bit words: one vpermt2w gathers the 4 blocks' quants into a zmm and
 *     another their fp16 scales. The activation columns are repacked once per call (on
 *     the stack: KC elements per chunk, 128 KiB for 8 columns) into the matching layout,
 *     with the per-block scale broadcast to the block's 4 lanes and the offset correction
 *     precomputed, so the per-row work is loads, two vpdpbusd, a convert and two float
 *     ops per column.
 *       Q4_0: w in 0..15 (u8) times x (s8), minus 8*sum(x) (from the repack).
 *       Q8_0: w+128 (u8) times x (s8), minus 128*sum(x).
 *     n > KC is summed chunk by chunk into y; the chunking depends on n only.
 *   - Q4_1, Q5_1 and Q5_0 instead repeat llama.cpp's x86 float order exactly (see their
 *     section): such models amplify last-bit differences, and tests hold them to
 *     llama.cpp's logits.
 *   - K-quants read the q8_K activation blocks directly (qs are contiguous). The weights
 *     are unpacked to u8 (Q4_K 0..15, Q5_K 0..31, Q6_K 0..63), multiplied with vpmaddubsw
 *     (pairs cannot saturate: 2*63*128 < 32768) and the sub-block scales applied with
 *     vpdpwssd. Q4_K/Q5_K mins and Q6_K's -32 offset go through the q8_K bsums; Q2_K
 *     (0..3, mins as Q4_K's) and Q3_K (0..7 standing for -4..3, the -4 as Q6_K's -32) use
 *     the same block form.
 *   - IQ4_NL (one block per ymm, vpdpbusd), IQ4_XS (two sub-blocks per zmm, vpmaddubsw +
 *     vpdpwssd with the sub-block scales), TQ1_0 / TQ2_0 (codes 0..2 through vpdpbusd,
 *     sum(a) off through the bsums): IQ4 values come from a vpshufb table lookup; see
 *     their section.
 *   - ember's INT2..INT8 / BFP3..BFP7: codes unpacked from their bit planes to u8 and
 *     multiplied with vpdpbusd against q8_0; OVP4 decoded by two vpshufb tables and a
 *     blend on the victim marker; see their section.
 *   - Attention follows attn_*_ref step by step (same expf calls, same float operations on
 *     the output; the F16 accumulator is rounded to F16 after every update); only the
 *     q.k dot products are summed in a different order (still in double).
 *   - Activation quantizers are bit-identical to em_quantize_row: same multiplier, round
 *     to nearest even (cvtps2dq under the default MXCSR), NaN lanes give 0 like ref's
 *     round_even, NaN and F16/BF16 rounding reproduce quant.c exactly.
 *   - swiglu uses a vector expf: Cody-Waite reduction, degree-6 polynomial, vscalefps;
 *     max error 1 ulp against correctly rounded expf (measured over every float in
 *     [-104, 89]), inputs outside that range saturate to 0 / inf like expf. */
#include <immintrin.h>
#include <math.h>
#include <string.h>
#include "kernels/kernels.h"
#include "kernels/attn_kv.h"
#include "kernels/tile_driver.h"

#define AI static inline __attribute__((always_inline))
#define RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)  /* F16C rounding: nearest even */
#define KC 8192  /* elements of activation repacked per chunk (32-element block types) */
#define PF_DIST 1024  /* weight prefetch distance in bytes: keeps more DRAM reads in flight */

/* ---------------------------------------------------------------- small helpers */

static inline __mmask64 bytes_mask(int cnt) { return cnt >= 64 ? ~0ULL : (1ULL << cnt) - 1; }

/* Bytes [off, len) of p into a zmm starting at byte 0, zero above; never touches memory
 * outside the range (masked loads do not fault on masked-out bytes). */
AI __m512i load_part(const uint8_t *p, int off, int len) {
    const int cnt = len - off;
    if (cnt >= 64) return _mm512_loadu_si512(p + off);
    if (cnt <= 0) return _mm512_setzero_si512();
    return _mm512_maskz_loadu_epi8(bytes_mask(cnt), p + off);
}

static inline float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }
/* Prefetching past the end of a row or the matrix is harmless (hints never fault). */
AI void pf(const void *p, size_t ahead) { _mm_prefetch((const char *)p + ahead, _MM_HINT_T0); }
static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* ---------------------------------------------------------------- activation quantizers */

/* x * id rounded to nearest even as int32, NaN lanes 0 (as quant.c's round_even). */
AI __m512i round_q(__m512 v) {
    return _mm512_maskz_cvtps_epi32(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v);
}

/* Max |x| over 32 floats; NaN lanes are skipped like ref's `a > amax` test (vmaxps returns
 * its second operand when either is NaN). */
AI float amax32(const float *x) {
    const __m512 a = _mm512_abs_ps(_mm512_loadu_ps(x)), b = _mm512_abs_ps(_mm512_loadu_ps(x + 16));
    return _mm512_reduce_max_ps(_mm512_max_ps(b, _mm512_max_ps(a, _mm512_setzero_ps())));
}

/* Shared by Q8_0 and Q8_1: writes qs, returns sum(qs). */
AI int quant32(const float *x, float amax, int8_t *qs) {
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    const __m512 vid = _mm512_set1_ps(id);
    const __m512i q0 = round_q(_mm512_mul_ps(_mm512_loadu_ps(x), vid));
    const __m512i q1 = round_q(_mm512_mul_ps(_mm512_loadu_ps(x + 16), vid));
    _mm_storeu_si128((__m128i *)qs, _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128((__m128i *)(qs + 16), _mm512_cvtsepi32_epi8(q1));
    return _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
}

/* bfp4 (the KV cache's store), bit-identical to quant_bfp.c: the exponent from amax32, x
 * times the exact power of two 2^(127-e) rounded to nearest even (NaN lanes 0), clamped to
 * -8..7, +8; element j's nibble paired with element j+16's. */
static void quant_kvbfp4(const float *x, void *vy, int64_t n) {
    block_bfp4 *y = vy;
    for (int64_t i = 0; i < n / QK_BFP4; i++, x += QK_BFP4) {
        const int e = em_bfp4_exponent(amax32(x));
        const __m512 inv = _mm512_set1_ps(e ? em_bfp4_scale(254 - e) : 0.0f);
        const __m512i lo8 = _mm512_set1_epi32(-8), hi7 = _mm512_set1_epi32(7), off = _mm512_set1_epi32(8);
        __m512i q0 = round_q(_mm512_mul_ps(_mm512_loadu_ps(x), inv));
        __m512i q1 = round_q(_mm512_mul_ps(_mm512_loadu_ps(x + 16), inv));
        q0 = _mm512_add_epi32(_mm512_max_epi32(_mm512_min_epi32(q0, hi7), lo8), off);
        q1 = _mm512_add_epi32(_mm512_max_epi32(_mm512_min_epi32(q1, hi7), lo8), off);
        y[i].e = (uint8_t)e;
        _mm_storeu_si128((__m128i *)y[i].qs, _mm512_cvtepi32_epi8(_mm512_or_si512(q0, _mm512_slli_epi32(q1, 4))));
    }
}

/* A bfp4 row to floats (the attention's V rows): nibble - 8 times the block's scale, exact
 * as ref's. */
static void bfp4_row_avx512(const void *vx, float *y, int n) {
    const block_bfp4 *x = vx;
    const __m128i m4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    for (int i = 0; i < n / QK_BFP4; i++, y += QK_BFP4) {
        const __m128i raw = _mm_loadu_si128((const __m128i *)x[i].qs);
        const __m512 d = _mm512_set1_ps(em_bfp4_scale(x[i].e));
        const __m128i lo = _mm_sub_epi8(_mm_and_si128(raw, m4), eight);
        const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), eight);
        _mm512_storeu_ps(y, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo)), d));
        _mm512_storeu_ps(y + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi)), d));
    }
}

static void quant_q8_0(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        const float amax = amax32(x);
        y[i].d = em_f32_to_f16(amax / 127.f);
        quant32(x, amax, y[i].qs);
    }
}

static void quant_q8_1(const float *x, void *vy, int64_t n) {
    block_q8_1 *y = vy;
    for (int64_t i = 0; i < n / QK8_1; i++, x += QK8_1) {
        const float amax = amax32(x), d = amax / 127.f;
        const int sum = quant32(x, amax, y[i].qs);
        y[i].d = em_f32_to_f16(d);
        y[i].s = em_f32_to_f16(d * (float)sum);
    }
}

/* quantize_row_q8_K_ref: the scale comes from the signed value of largest magnitude, the
 * first one in index order on ties (ref's strict `>`). */
static void quant_q8_K(const float *x, void *vy, int64_t n) {
    block_q8_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        __m512 m = _mm512_setzero_ps();
        for (int j = 0; j < QK_K; j += 16) m = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + j)), m);
        const float amax = _mm512_reduce_max_ps(m);
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float max = 0.0f;
        const __m512 va = _mm512_set1_ps(amax);
        for (int j = 0; j < QK_K; j += 16) {
            __mmask16 k = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + j)), va, _CMP_EQ_OQ);
            if (k) { max = x[j + __builtin_ctz(k)]; break; }
        }
        const float iscale = -127.f / max;
        const __m512 vs = _mm512_set1_ps(iscale);
        for (int j = 0; j < QK_K; j += 16) {
            __m512i q = round_q(_mm512_mul_ps(vs, _mm512_loadu_ps(x + j)));
            q = _mm512_min_epi32(q, _mm512_set1_epi32(127));
            _mm_storeu_si128((__m128i *)(y[i].qs + j), _mm512_cvtsepi32_epi8(q));
            y[i].bsums[j / 16] = (int16_t)_mm512_reduce_add_epi32(q);
        }
        y[i].d = 1 / iscale;
    }
}

/* F16C rounds to nearest even like em_f32_to_f16; NaN lanes are redone with quant.c's
 * rule (top payload bits kept, never turned into inf) since F16C sets the quiet bit. */
static void quant_f16(const float *x, void *vy, int64_t n) {
    uint16_t *y = vy;
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(k, x + i);
        __m256i h = _mm512_cvtps_ph(v, RNE);
        const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        if (nan) {
            const __m512i u = _mm512_castps_si512(v);
            __m512i r = _mm512_or_si512(_mm512_set1_epi32(0x7c00),
                                        _mm512_and_si512(_mm512_srli_epi32(u, 13), _mm512_set1_epi32(0x3ff)));
            r = _mm512_max_epu32(r, _mm512_set1_epi32(0x7c01));
            r = _mm512_or_si512(r, _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x8000)));
            h = _mm256_mask_mov_epi16(h, nan, _mm512_cvtepi32_epi16(r));
        }
        _mm256_mask_storeu_epi16(y + i, k, h);
    }
}

/* em_f32_to_bf16: round to nearest even on the bit pattern, NaN truncated and quieted. */
static void quant_bf16(const float *x, void *vy, int64_t n) {
    uint16_t *y = vy;
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(k, x + i);
        const __m512i u = _mm512_castps_si512(v);
        const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
        __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff))), 16);
        const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(64));
        _mm256_mask_storeu_epi16(y + i, k, _mm512_cvtepi32_epi16(r));
    }
}

/* ---------------------------------------------------------------- F32 / F16 / BF16 matmul */

/* 16 elements at p[i] (masked) as floats, for a weight or activation of type t. */
AI __m512 load_fx(int t, const void *p, int64_t i, __mmask16 k) {
    if (t == EM_F32) return _mm512_maskz_loadu_ps(k, (const float *)p + i);
    const __m256i h = _mm256_maskz_loadu_epi16(k, (const uint16_t *)p + i);
    if (t == EM_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));  /* BF16 */
}

/* One weight row against C columns; the products of two halves or two bf16 are exact in
 * float, the sums are float FMAs in 16 lanes (ref sums in double; tests use a tolerance). */
AI void f_rows(int t, const int C, int64_t n, const char *w, size_t wrow, int r0, int r1,
               const char *x, size_t xcol, float *y, int ldy) {
    for (int r = r0; r < r1; r++) {
        const char *wr = w + (size_t)r * wrow;
        __m512 acc[8];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) acc[c] = _mm512_setzero_ps();
        for (int64_t i = 0; i < n; i += 16) {
            const __mmask16 k = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);
            pf(wr + (size_t)i * (t == EM_F32 ? 4 : 2), PF_DIST);
            const __m512 wv = load_fx(t, wr, i, k);
#pragma GCC unroll 8
            for (int c = 0; c < C; c++)
                acc[c] = _mm512_fmadd_ps(wv, load_fx(t, x + (size_t)c * xcol, i, k), acc[c]);
        }
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) y[(size_t)c * ldy + r] = hsum(acc[c]);
    }
}

AI void mm_f(int t, int64_t n, const void *w, size_t wrow, int r0, int r1, const void *x,
             size_t xcol, int ncols, float *y, int ldy) {
#define TILE(C) f_rows(t, C, n, w, wrow, r0, r1, x, xcol, y, ldy)
    EM_COLS_1_8_ONLY(ncols, TILE);
#undef TILE
}

EM_MM_WRAP(mm_f32, mm_f, EM_F32)
EM_MM_WRAP(mm_f16, mm_f, EM_F16)
EM_MM_WRAP(mm_bf16, mm_f, EM_BF16)

/* ---------------------------------------------------------------- Q4_0 / Q4_1 / Q8_0 matmul */

/* 4 activation blocks in the layout of 4 unpacked weight blocks (block b in lane b). */
typedef struct {
    int8_t lo[64];          /* qs[0..15] of each block */
    int8_t hi[64];          /* qs[16..31] */
    int32_t corr[16];       /* lane 4b = -off * sum(qs of block b), other lanes 0 */
    float d[16];            /* d of block b in lanes 4b..4b+3 */
} xgrp;

/* One column chunk of nb q8_0 blocks into ceil(nb/4) groups; missing blocks of the last
 * group are zero, so they contribute exactly 0. */
static void repack_x(const block_q8_0 *xb, int off, int nb, xgrp *g) {
    memset(g, 0, (size_t)(nb + 3) / 4 * sizeof *g);
    for (int i = 0; i < nb; i++) {
        xgrp *gg = g + i / 4;
        const int b = i % 4;
        memcpy(gg->lo + 16 * b, xb[i].qs, 16);
        memcpy(gg->hi + 16 * b, xb[i].qs + 16, 16);
        const float d = h2f(xb[i].d);
        for (int l = 0; l < 4; l++) gg->d[4 * b + l] = d;
        int sum = 0;
        for (int l = 0; l < 32; l++) sum += xb[i].qs[l];
        gg->corr[4 * b] = -off * sum;
    }
}

/* 4 weight blocks unpacked: lo/hi = elements 0..15 / 16..31 of block b in lane b (u8),
 * d broadcast over the block's 4 lanes. */
typedef struct { __m512i lo, hi; __m512 d; } wgrp;

/* Word indices for vpermt2w. Block b of 4 starts at word wb*b (wb = block bytes / 2). */
static const uint16_t IDX_Q4_0_QS[32] = {1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17,
                                         19, 20, 21, 22, 23, 24, 25, 26, 28, 29, 30, 31, 32, 33, 34, 35};
static const uint16_t IDX_Q4_0_D[32] = {0, 0, 0, 0, 9, 9, 9, 9, 18, 18, 18, 18, 27, 27, 27, 27};
static const uint16_t IDX_Q8_0_LO[32] = {1, 2, 3, 4, 5, 6, 7, 8, 18, 19, 20, 21, 22, 23, 24, 25,
                                         35, 36, 37, 38, 39, 40, 41, 42, 52, 53, 54, 55, 56, 57, 58, 59};
/* hi halves relative to word 9 (the second load pair starts at byte 18). */
static const uint16_t IDX_Q8_0_HI[32] = {0, 1, 2, 3, 4, 5, 6, 7, 17, 18, 19, 20, 21, 22, 23, 24,
                                         34, 35, 36, 37, 38, 39, 40, 41, 51, 52, 53, 54, 55, 56, 57, 58};
static const uint16_t IDX_Q8_0_D[32] = {0, 0, 0, 0, 17, 17, 17, 17, 34, 34, 34, 34, 51, 51, 51, 51};

AI __m512i idx(const uint16_t *t) { return _mm512_loadu_si512(t); }

/* len = bytes of the group that exist (4 blocks, or fewer at the end of a chunk). */
AI wgrp unpack_grp(int t, const uint8_t *p, int len) {
    wgrp g;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i a = load_part(p, 0, len), b = load_part(p, 64, len);
    if (t == EM_Q8_0) {
        const __m512i a2 = load_part(p, 18, len), b2 = load_part(p, 82, len);
        const __m512i flip = _mm512_set1_epi8((char)0x80);  /* w + 128 as u8 */
        g.lo = _mm512_xor_si512(_mm512_permutex2var_epi16(a, idx(IDX_Q8_0_LO), b), flip);
        g.hi = _mm512_xor_si512(_mm512_permutex2var_epi16(a2, idx(IDX_Q8_0_HI), b2), flip);
        g.d = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi16(a, idx(IDX_Q8_0_D), b)));
        return g;
    }
    const __m512i q = _mm512_permutex2var_epi16(a, idx(IDX_Q4_0_QS), b);
    g.lo = _mm512_and_si512(q, m4);
    g.hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
    g.d = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(idx(IDX_Q4_0_D), a)));
    return g;
}

/* acc += this group's contribution for one column. */
AI __m512 grp_dot(int t, const wgrp *g, const xgrp *x, __m512 acc) {
    (void)t;
    __m512i s = _mm512_load_si512(x->corr);
    s = _mm512_dpbusd_epi32(s, g->lo, _mm512_load_si512(x->lo));
    s = _mm512_dpbusd_epi32(s, g->hi, _mm512_load_si512(x->hi));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(g->d, _mm512_load_ps(x->d)), acc);
}

/* Rows [r0, r1) of one chunk: nb blocks per row starting at w, x groups ng per column.
 * first: the chunk starts the row, so y is assigned rather than added to. */
AI void q32_rows(int t, const int C, const char *w, size_t wrow, int r0, int r1,
                 const xgrp *xg, int nb, float *y, int ldy, int first) {
    const int bsz = t == EM_Q4_0 ? 18 : 34;
    const int ng = (nb + 3) / 4, nfull = nb / 4;
    for (int r = r0; r < r1; r++) {
        const uint8_t *p = (const uint8_t *)w + (size_t)r * wrow;
        __m512 acc[8];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) acc[c] = _mm512_setzero_ps();
        for (int g = 0; g < nfull; g++) {
            pf(p + (size_t)g * 4 * bsz, PF_DIST);
            if (t == EM_Q8_0) pf(p + (size_t)g * 4 * bsz, PF_DIST + 64);
            const wgrp u = unpack_grp(t, p + (size_t)g * 4 * bsz, 4 * bsz);
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) acc[c] = grp_dot(t, &u, xg + (size_t)c * ng + g, acc[c]);
        }
        if (nfull < ng) {
            const wgrp u = unpack_grp(t, p + (size_t)nfull * 4 * bsz, (nb - 4 * nfull) * bsz);
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) acc[c] = grp_dot(t, &u, xg + (size_t)c * ng + nfull, acc[c]);
        }
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            float *o = y + (size_t)c * ldy + r;
            *o = first ? hsum(acc[c]) : *o + hsum(acc[c]);
        }
    }
}

AI void mm_q32(int t, int64_t n, const void *w, size_t wrow, int r0, int r1, const void *x,
               size_t xcol, int ncols, float *y, int ldy) {
    _Alignas(64) xgrp xg[8 * (KC / 128)];  /* 128 KiB */
    const int bsz = t == EM_Q4_0 ? 18 : 34;
    if (ncols < 1 || ncols > 8 || r0 >= r1) return;
    for (int64_t k0 = 0; k0 < n; k0 += KC) {
        const int nb = (int)((n - k0 < KC ? n - k0 : KC) / 32), ng = (nb + 3) / 4;
        for (int c = 0; c < ncols; c++)
            repack_x((const block_q8_0 *)((const char *)x + (size_t)c * xcol) + k0 / 32,
                     t == EM_Q8_0 ? 128 : 8, nb, xg + (size_t)c * ng);
        const char *wk = (const char *)w + (size_t)(k0 / 32) * bsz;
        const int first = k0 == 0;
#define TILE(C) q32_rows(t, C, wk, wrow, r0, r1, xg, nb, y, ldy, first)
        EM_COLS_1_8(ncols, TILE);
#undef TILE
    }
}

EM_MM_WRAP(mm_q4_0, mm_q32, EM_Q4_0)
EM_MM_WRAP(mm_q8_0, mm_q32, EM_Q8_0)

/* ---------------------------------------------------------------- BFP4 (KV cache) matmul */

/* bfp4 rows (17-byte blocks, so not the word-gathering path above) times q8_0 columns, one
 * block at a time in a ymm: codes w = nibble - 8, |w| (u8) times sign(x, w) (s8) through
 * vpdpbusd gives exact int32 sums of 4, then acc += float(sums) * (2^(e-127) * d_x) per
 * (row, column) in block order, reduced at the end. Every output is the same sequence of
 * operations whatever the tiling, so splits and column counts do not change it. */
AI float hsum_ymm(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AI void kvbfp4_rows(const int C, int64_t nb, const char *w, size_t wrow, int r0, int r1, const char *x,
                  size_t xcol, float *y, int ldy) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), eight = _mm256_set1_epi8(8);
    for (int r = r0; r < r1; r++) {
        const block_bfp4 *wb = (const block_bfp4 *)(w + (size_t)r * wrow);
        __m256 acc[8];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) acc[c] = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            const __m128i raw = _mm_loadu_si128((const __m128i *)wb[b].qs);
            const __m256i nib = _mm256_inserti128_si256(_mm256_castsi128_si256(raw), _mm_srli_epi16(raw, 4), 1);
            const __m256i wq = _mm256_sub_epi8(_mm256_and_si256(nib, m4), eight);
            const __m256i wa = _mm256_abs_epi8(wq);
            const float dw = em_bfp4_scale(wb[b].e);
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) {
                const block_q8_0 *xb = (const block_q8_0 *)(x + (size_t)c * xcol) + b;
                const __m256i a = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)xb->qs), wq);
                const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), wa, a);
                acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(dw * h2f(xb->d)), acc[c]);
            }
        }
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) y[(size_t)c * ldy + r] = hsum_ymm(acc[c]);
    }
}

static void mm_kvbfp4(int64_t n, const void *w, size_t wrow, int r0, int r1, const void *x, size_t xcol,
                    int ncols, float *y, int ldy) {
    const int64_t nb = n / QK_BFP4;
    const char *wc = w, *xc = x;
#define TILE(C) kvbfp4_rows(C, nb, wc, wrow, r0, r1, xc, xcol, y, ldy)
    EM_COLS_1_8(ncols, TILE);
#undef TILE
}

/* ---------------------------------------------------------------- Q4_1 / Q5_1 / Q5_0 matmul */

/* These repeat llama.cpp's x86 ggml_vec_dot_q4_1_q8_1 / q5_1_q8_1 / q5_0_q8_0 operation
 * for operation, because logits of such models are chaotic under a last-bit change (Q8
 * rounding of the next layer's input amplifies it): per block, 8 int32 lanes of 4-element
 * sums (element 4l..4l+3 in lane l), acc = fma(float(lanes), d_w*d_x, acc) in block order,
 * then hsum8 (their hsum_float_8), plus for the affine types the min term m_w*s_x summed
 * by fma in block order. The min term runs for all columns at once in one vector (lane c
 * = column c), from a table of the columns' d and s. Rows go in pairs, one per 256-bit
 * half, and decode runs two pairs (independent chains) so it is not latency-bound.
 *   q5: the fifth bits come in through a byte mask (bit k of qh -> byte k gets 0x10).
 *   q5_0: codes are used as u8 0..31 in dpbusd and 16 * (4-element sums of x) taken off
 *   each lane, which gives the lanes of sum((q - 16) * x) exactly. */
#define XTAB 512
typedef struct {
    float d[XTAB][8];
    float s[XTAB][8];  /* q8_1 only: d * sum(q); 0 for q8_0 */
} xtab;

AI int q32_affine(int T) { return T != EM_Q5_0; }
/* Bytes per weight block, and offsets of qs and qh (q5 types) inside it. */
AI size_t wblk_bytes(int T) { return T == EM_Q4_1 ? sizeof(block_q4_1) : T == EM_Q5_1 ? sizeof(block_q5_1) : sizeof(block_q5_0); }
AI size_t wblk_qs(int T) { return T == EM_Q4_1 ? 4 : T == EM_Q5_1 ? 8 : 6; }
AI size_t wblk_qh(int T) { return T == EM_Q5_1 ? 4 : 2; }
/* Activation blocks: q8_1 for the affine types, q8_0 for q5_0; qs are the last 32 bytes. */
AI size_t xblk_bytes(int T) { return q32_affine(T) ? sizeof(block_q8_1) : sizeof(block_q8_0); }

/* Blocks [b0, b0 + nbk) of ncols activation columns; lanes past ncols are zero. */
AI void xtab_fill(int T, xtab *t, const char *x, size_t xcol, int ncols, int64_t b0, int64_t nbk) {
    for (int64_t b = 0; b < nbk; b++) {
        for (int c = 0; c < 8; c++) {
            if (c >= ncols) { t->d[b][c] = t->s[b][c] = 0.0f; continue; }
            if (q32_affine(T)) {
                const block_q8_1 *xb = (const block_q8_1 *)(x + (size_t)c * xcol) + b0 + b;
                t->d[b][c] = h2f(xb->d);
                t->s[b][c] = h2f(xb->s);
            } else {
                t->d[b][c] = h2f(((const block_q8_0 *)(x + (size_t)c * xcol) + b0 + b)->d);
                t->s[b][c] = 0.0f;
            }
        }
    }
}

/* hsum_float_8 of ggml: (lo128 + hi128), then pairs, then the last two. */
static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AI uint32_t rd32(const char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
AI uint16_t rd16(const char *p) { uint16_t v; memcpy(&v, p, 2); return v; }

/* R rows x C columns (ymm, one row per chain); used for a row without a partner.
 * w and y point at the tile's first row. */
AI void q41_tile(const int T, const int R, const int C, int64_t nb, const char *w, size_t wrow, const char *x,
                 size_t xcol, xtab *t, float *y, int ldy) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), shift = _mm256_set_epi64x(4, 4, 0, 0);
    const size_t wbs = wblk_bytes(T), xbs = xblk_bytes(T);
    __m256 acc[4][8], macc[4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        macc[r] = _mm256_setzero_ps();
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
    }
    for (int64_t b0 = 0; b0 < nb; b0 += XTAB) {
        const int64_t nbk = nb - b0 < XTAB ? nb - b0 : XTAB;
        if (nb > XTAB) xtab_fill(T, t, x, xcol, C, b0, nbk);
        for (int64_t b = 0; b < nbk; b++) {
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const char *blk = w + (size_t)r * wrow + (size_t)(b0 + b) * wbs;
                pf(blk, PF_DIST);
                /* elements 0..15 (low nibbles) in the low 128 bits, 16..31 in the high */
                const __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(blk + wblk_qs(T))));
                __m256i wq = _mm256_and_si256(_mm256_srlv_epi64(raw, shift), m4);
                if (T != EM_Q4_1)
                    wq = _mm256_or_si256(wq, _mm256_maskz_mov_epi8((__mmask32)rd32(blk + wblk_qh(T)), _mm256_set1_epi8(0x10)));
                const __m256 wd = _mm256_set1_ps(h2f(rd16(blk)));
                if (q32_affine(T))
                    macc[r] = _mm256_fmadd_ps(_mm256_set1_ps(h2f(rd16(blk + 2))), _mm256_loadu_ps(t->s[b]), macc[r]);
#pragma GCC unroll 8
                for (int c = 0; c < C; c++) {
                    const char *xb = x + (size_t)c * xcol + (size_t)(b0 + b) * xbs + (xbs - QK8_0);
                    const __m256i a = _mm256_loadu_si256((const __m256i *)xb);
                    __m256i lanes = _mm256_dpbusd_epi32(_mm256_setzero_si256(), wq, a);
                    if (T == EM_Q5_0)
                        lanes = _mm256_sub_epi32(lanes, _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(16), a));
                    const __m256 xy = _mm256_cvtepi32_ps(lanes);
                    acc[r][c] = _mm256_fmadd_ps(xy, _mm256_mul_ps(wd, _mm256_broadcast_ss(&t->d[b][c])), acc[r][c]);
                }
            }
        }
    }
    float mins[8];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        _mm256_storeu_ps(mins, macc[r]);
#pragma GCC unroll 8
        for (int c = 0; c < C; c++)
            y[(size_t)c * ldy + r] = q32_affine(T) ? hsum8(acc[r][c]) + mins[c] : hsum8(acc[r][c]);
    }
}

/* The same per row, with rows paired in the two 256-bit halves of each zmm: every lane
 * sees exactly q41_tile's operations, so a row gives the same bits in either tile, and
 * the pair shares each dpbusd / convert / fma (half the instructions per weight byte).
 * P pairs x C columns; w and y point at the tile's first row. */
AI void q41_tile2(const int T, const int P, const int C, int64_t nb, const char *w, size_t wrow, const char *x,
                  size_t xcol, xtab *t, float *y, int ldy) {
    static const uint16_t idx_dm[32] = {0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2,
                                        1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3};
    const __m512i m4 = _mm512_set1_epi8(0x0F), shift = _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0);
    const size_t wbs = wblk_bytes(T), xbs = xblk_bytes(T);
    __m512 acc[2][8], macc[2];
#pragma GCC unroll 2
    for (int p = 0; p < P; p++) {
        macc[p] = _mm512_setzero_ps();
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) acc[p][c] = _mm512_setzero_ps();
    }
    for (int64_t b0 = 0; b0 < nb; b0 += XTAB) {
        const int64_t nbk = nb - b0 < XTAB ? nb - b0 : XTAB;
        if (nb > XTAB) xtab_fill(T, t, x, xcol, C, b0, nbk);
        for (int64_t b = 0; b < nbk; b++) {
#pragma GCC unroll 2
            for (int p = 0; p < P; p++) {
                const char *k0 = w + (size_t)(2 * p) * wrow + (size_t)(b0 + b) * wbs;
                const char *k1 = w + (size_t)(2 * p + 1) * wrow + (size_t)(b0 + b) * wbs;
                pf(k0, PF_DIST);
                pf(k1, PF_DIST);
                const __m512i raw = _mm512_inserti64x4(
                    _mm512_castsi256_si512(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(k0 + wblk_qs(T))))),
                    _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(k1 + wblk_qs(T)))), 1);
                __m512i wq = _mm512_and_si512(_mm512_srlv_epi64(raw, shift), m4);
                if (T != EM_Q4_1) {
                    const __mmask64 hi = (__mmask64)rd32(k0 + wblk_qh(T)) | (__mmask64)rd32(k1 + wblk_qh(T)) << 32;
                    wq = _mm512_or_si512(wq, _mm512_maskz_mov_epi8(hi, _mm512_set1_epi8(0x10)));
                }
                /* (d, m) of each row's block as one 32-bit word (q5_0: d and two qh bytes) */
                const __m128i dm = _mm_insert_epi32(_mm_cvtsi32_si128((int)rd32(k0)), (int)rd32(k1), 1);
                const __m512i dmw = _mm512_permutexvar_epi16(idx(idx_dm), _mm512_castsi128_si512(dm));
                const __m512 wd = _mm512_cvtph_ps(_mm512_castsi512_si256(dmw));
                if (q32_affine(T)) {
                    const __m512 wm = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(dmw, 1));
                    macc[p] = _mm512_fmadd_ps(wm, _mm512_broadcast_f32x8(_mm256_loadu_ps(t->s[b])), macc[p]);
                }
#pragma GCC unroll 8
                for (int c = 0; c < C; c++) {
                    const char *xb = x + (size_t)c * xcol + (size_t)(b0 + b) * xbs + (xbs - QK8_0);
                    const __m512i a = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)xb));
                    __m512i lanes = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq, a);
                    if (T == EM_Q5_0)
                        lanes = _mm512_sub_epi32(lanes, _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(16), a));
                    const __m512 xy = _mm512_cvtepi32_ps(lanes);
                    acc[p][c] = _mm512_fmadd_ps(xy, _mm512_mul_ps(wd, _mm512_set1_ps(t->d[b][c])), acc[p][c]);
                }
            }
        }
    }
    float mins[16];
#pragma GCC unroll 2
    for (int p = 0; p < P; p++) {
        _mm512_storeu_ps(mins, macc[p]);
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            const float s0 = hsum8(_mm512_castps512_ps256(acc[p][c])), s1 = hsum8(_mm512_extractf32x8_ps(acc[p][c], 1));
            y[(size_t)c * ldy + 2 * p] = q32_affine(T) ? s0 + mins[c] : s0;
            y[(size_t)c * ldy + 2 * p + 1] = q32_affine(T) ? s1 + mins[8 + c] : s1;
        }
    }
}

/* Decode and 2 columns take 4 rows at a time, wider calls 2; an odd last row runs alone. */
AI void mm_q41x(const int T, int64_t n, const void *w, size_t wrow, int r0, int r1, const void *x,
                size_t xcol, int ncols, float *y, int ldy) {
    xtab t;
    const int64_t nb = n / QK4_1;
    if (ncols < 1 || ncols > 8) return;
    if (nb <= XTAB) xtab_fill(T, &t, x, xcol, ncols, 0, nb);
    int r = r0;
    const char *wr;
    float *yr;
    for (; r + 4 <= r1 && ncols <= 2; r += 4) {
        wr = (const char *)w + (size_t)r * wrow, yr = y + r;
        if (ncols == 1) q41_tile2(T, 2, 1, nb, wr, wrow, x, xcol, &t, yr, ldy);
        else q41_tile2(T, 2, 2, nb, wr, wrow, x, xcol, &t, yr, ldy);
    }
    for (; r + 2 <= r1; r += 2) {
        wr = (const char *)w + (size_t)r * wrow, yr = y + r;
#define TILE(C) q41_tile2(T, 1, C, nb, wr, wrow, x, xcol, &t, yr, ldy)
        EM_COLS_1_8(ncols, TILE);
#undef TILE
    }
    if (r < r1) {
        wr = (const char *)w + (size_t)r * wrow, yr = y + r;
#define TILE(C) q41_tile(T, 1, C, nb, wr, wrow, x, xcol, &t, yr, ldy)
        EM_COLS_1_8(ncols, TILE);
#undef TILE
    }
}

EM_MM_WRAP(mm_q4_1, mm_q41x, EM_Q4_1)
EM_MM_WRAP(mm_q5_1, mm_q41x, EM_Q5_1)
EM_MM_WRAP(mm_q5_0, mm_q41x, EM_Q5_0)

/* ---------------------------------------------------------------- K-quant matmul */

/* One 256-element weight block unpacked: q[k] = u8 weights of elements 64k..64k+63,
 * sc[k] = the int16 scale of each maddubs pair, mb = int16 multipliers of the 16 q8_K
 * bsums (Q4_K/Q5_K: the sub-block mins, Q6_K: -32 * scale), d/dmin the fp16 factors. */
typedef struct { __m512i q[4], sc[4]; __m256i mb; float d, dmin; } kblk;

/* Q4_K/Q5_K 6-bit scales and mins (quant.c's get_scale_min_k4) as 16 int16:
 * sc0..sc7, m0..m7. */
AI __m256i k4_scales(const uint8_t *s) {
    uint32_t u0, u1, u2;
    memcpy(&u0, s, 4);
    memcpy(&u1, s + 4, 4);
    memcpy(&u2, s + 8, 4);
    const uint32_t sc_lo = u0 & 0x3f3f3f3f, m_lo = u1 & 0x3f3f3f3f;
    const uint32_t sc_hi = (u2 & 0x0f0f0f0f) | ((u0 >> 6) & 0x03030303) << 4;
    const uint32_t m_hi = ((u2 >> 4) & 0x0f0f0f0f) | ((u1 >> 6) & 0x03030303) << 4;
    const __m128i v = _mm_set_epi32((int)m_hi, (int)m_lo, (int)sc_hi, (int)sc_lo);
    return _mm256_cvtepu8_epi16(v);
}

/* For q[k] = sub-blocks 2k, 2k+1: scale 2k on int16 lanes 0..15, 2k+1 on 16..31. */
static const uint16_t IDX_K4_SC[4][32] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
    {2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5},
    {6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7},
};
/* Each min twice: bsums 2j, 2j+1 cover sub-block j. */
static const uint16_t IDX_K4_MIN[16] = {8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15};
/* Q6_K: q[k] covers scales 4k..4k+3, each on 8 int16 lanes. */
static const uint16_t IDX_K6_SC[4][32] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
    {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9, 10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13, 14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15},
};

/* Q4_K and Q5_K (qh != NULL): 32 bytes of qs hold sub-block 2c in the low nibbles and 2c+1
 * in the high ones; regroup so q[k] = [sub 2k | sub 2k+1]. Q5_K's qh[l] bit 2k (2k+1) is
 * bit 4 of element l of sub-block 2k (2k+1). */
AI void unpack_k45(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, kblk *b) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int h = 0; h < 2; h++) {
        const __m512i v = _mm512_loadu_si512(qs + 64 * h);
        const __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        b->q[2 * h] = _mm512_shuffle_i64x2(lo, hi, 0x44);
        b->q[2 * h + 1] = _mm512_shuffle_i64x2(lo, hi, 0xEE);
    }
    if (qh) {
        const __m512i hb = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qh));
        for (int k = 0; k < 4; k++) {
            const __m512i sel = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * k))),
                                                   _mm256_set1_epi8((char)(2 << (2 * k))), 1);
            const __mmask64 bit = _mm512_test_epi8_mask(hb, sel);
            b->q[k] = _mm512_mask_add_epi8(b->q[k], bit, b->q[k], _mm512_set1_epi8(16));
        }
    }
    const __m512i sm = _mm512_castsi256_si512(k4_scales(scales));
    for (int k = 0; k < 4; k++) b->sc[k] = _mm512_permutexvar_epi16(idx(IDX_K4_SC[k]), sm);
    b->mb = _mm256_permutexvar_epi16(_mm256_loadu_si256((const __m256i *)IDX_K4_MIN),
                                     _mm512_castsi512_si256(sm));
}

/* Q6_K: per 128-element half, ql[0..63] low nibbles are elements 0..63, high nibbles
 * 64..127; the 2-bit tops come from qh[l] bits (0,1) (2,3) (4,5) (6,7) for the four runs
 * of 32. Shifting 16-bit words never mixes bytes here: bits 4,5 of each byte after the
 * shift come from the same byte. */
AI void unpack_k6(const block_q6_K *x, kblk *b) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    const __m512i sl = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i sr = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
    for (int h = 0; h < 2; h++) {
        const __m512i l = _mm512_loadu_si512(x->ql + 64 * h);
        const __m512i hb = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x->qh + 32 * h)));
        b->q[2 * h] = _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_and_si512(_mm512_sllv_epi16(hb, sl), m30));
        b->q[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                          _mm512_and_si512(_mm512_srlv_epi16(hb, sr), m30));
    }
    const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
    for (int k = 0; k < 4; k++) b->sc[k] = _mm512_permutexvar_epi16(idx(IDX_K6_SC[k]), _mm512_castsi256_si512(s16));
    b->mb = _mm256_mullo_epi16(s16, _mm256_set1_epi16(-32));
    b->d = h2f(x->d);
    b->dmin = 0.0f;
}

AI void unpack_kblk(int t, const void *blk, kblk *b) {
    if (t == EM_Q6_K) {
        unpack_k6(blk, b);
    } else if (t == EM_Q4_K) {
        const block_q4_K *x = blk;
        unpack_k45(x->scales, x->qs, NULL, b);
        b->d = h2f(x->d);
        b->dmin = h2f(x->dmin);
    } else {
        const block_q5_K *x = blk;
        unpack_k45(x->scales, x->qs, x->qh, b);
        b->d = h2f(x->d);
        b->dmin = h2f(x->dmin);
    }
}

/* acc += one block's contribution for one q8_K column. The bsums term is in integer with
 * the main sum for Q6_K (same factor d), separate for the Q4_K/Q5_K mins (factor dmin). */
AI __m512 kblk_dot(int t, const kblk *b, const block_q8_K *x, __m512 acc) {
    const __m256i bs = _mm256_loadu_si256((const __m256i *)x->bsums);
    const __m256i mt = _mm256_dpwssd_epi32(_mm256_setzero_si256(), bs, b->mb);
    __m512i s = t == EM_Q6_K ? _mm512_zextsi256_si512(mt) : _mm512_setzero_si512();
    for (int k = 0; k < 4; k++) {
        const __m512i p = _mm512_maddubs_epi16(b->q[k], _mm512_loadu_si512(x->qs + 64 * k));
        s = _mm512_dpwssd_epi32(s, p, b->sc[k]);
    }
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(b->d * x->d), acc);
    if (t != EM_Q6_K)
        acc = _mm512_fnmadd_ps(_mm512_zextps256_ps512(_mm256_cvtepi32_ps(mt)), _mm512_set1_ps(b->dmin * x->d), acc);
    return acc;
}

AI void kq_rows(int t, const int C, int64_t nb, const char *w, size_t wrow, int r0, int r1,
                const char *x, size_t xcol, float *y, int ldy) {
    const size_t bsz = t == EM_Q4_K ? sizeof(block_q4_K) : t == EM_Q5_K ? sizeof(block_q5_K) : sizeof(block_q6_K);
    for (int r = r0; r < r1; r++) {
        const char *wr = w + (size_t)r * wrow;
        __m512 acc[8];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) acc[c] = _mm512_setzero_ps();
        for (int64_t i = 0; i < nb; i++) {
            kblk b;
            for (size_t l = 0; l < bsz; l += 64) pf(wr + (size_t)i * bsz + l, PF_DIST);
            unpack_kblk(t, wr + (size_t)i * bsz, &b);
#pragma GCC unroll 8
            for (int c = 0; c < C; c++)
                acc[c] = kblk_dot(t, &b, (const block_q8_K *)(x + (size_t)c * xcol) + i, acc[c]);
        }
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) y[(size_t)c * ldy + r] = hsum(acc[c]);
    }
}

AI void mm_kq(int t, int64_t n, const void *w, size_t wrow, int r0, int r1, const void *x,
              size_t xcol, int ncols, float *y, int ldy) {
    const int64_t nb = n / QK_K;
#define TILE(C) kq_rows(t, C, nb, w, wrow, r0, r1, x, xcol, y, ldy)
    EM_COLS_1_8_ONLY(ncols, TILE);
#undef TILE
}

EM_MM_WRAP(mm_q4_K, mm_kq, EM_Q4_K)
EM_MM_WRAP(mm_q5_K, mm_kq, EM_Q5_K)
EM_MM_WRAP(mm_q6_K, mm_kq, EM_Q6_K)

/* Q2_K and Q3_K (in kblk form, reusing kblk_dot). Both hold 2-bit planes: per 128-element
 * half, element e (0..127) is bits 2*(e/32) of qs[32h + e%32], so q[k] (elements 64k..)
 * takes planes 2(k%2) (low 256 bits) and 2(k%2)+1 (high) of the half's 32 bytes. Their
 * 16 sub-blocks of 16 line up with the 16 q8_K bsums and with IDX_K6_SC.
 *   Q2_K: weights 0..3, scale = low nibble, min = high nibble (the Q4_K form: mins times
 *         bsums, factor dmin).
 *   Q3_K: weight = plane | hmask bit << 2 (0..7) stands for value - 4, so the -4 goes
 *         through the bsums with the main factor d (the Q6_K form, mb = -4 * scale); hmask
 *         bit e/32 of byte e%32 is tested like Q5_K's qh. */
AI void unpack_k23_planes(const uint8_t *qs, kblk *b) {
    const __m512i m3 = _mm512_set1_epi8(3);
    for (int h = 0; h < 2; h++) {
        const __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * h)));
        const __m512i s0 = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
        const __m512i s1 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
        b->q[2 * h] = _mm512_and_si512(_mm512_srlv_epi16(v, s0), m3);
        b->q[2 * h + 1] = _mm512_and_si512(_mm512_srlv_epi16(v, s1), m3);
    }
}

AI void unpack_k2(const block_q2_K *x, kblk *b) {
    unpack_k23_planes(x->qs, b);
    const __m256i s8 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
    const __m256i sc = _mm256_and_si256(s8, _mm256_set1_epi16(0xF));
    for (int k = 0; k < 4; k++) b->sc[k] = _mm512_permutexvar_epi16(idx(IDX_K6_SC[k]), _mm512_castsi256_si512(sc));
    b->mb = _mm256_srli_epi16(s8, 4);
    b->d = h2f(x->d);
    b->dmin = h2f(x->dmin);
}

AI void unpack_k3(const block_q3_K *x, kblk *b) {
    unpack_k23_planes(x->qs, b);
    const __m512i hb = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)x->hmask));
    for (int k = 0; k < 4; k++) {
        const __m512i sel = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * k))),
                                               _mm256_set1_epi8((char)(2 << (2 * k))), 1);
        b->q[k] = _mm512_mask_add_epi8(b->q[k], _mm512_test_epi8_mask(hb, sel), b->q[k], _mm512_set1_epi8(4));
    }
    uint32_t a[3], u[4];
    memcpy(a, x->scales, 12);
    u[0] = (a[0] & 0x0f0f0f0f) | ((a[2] & 0x03030303) << 4);
    u[1] = (a[1] & 0x0f0f0f0f) | (((a[2] >> 2) & 0x03030303) << 4);
    u[2] = ((a[0] >> 4) & 0x0f0f0f0f) | (((a[2] >> 4) & 0x03030303) << 4);
    u[3] = ((a[1] >> 4) & 0x0f0f0f0f) | (((a[2] >> 6) & 0x03030303) << 4);
    const __m256i s16 = _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm_set_epi32((int)u[3], (int)u[2], (int)u[1], (int)u[0])), _mm256_set1_epi16(32));
    for (int k = 0; k < 4; k++) b->sc[k] = _mm512_permutexvar_epi16(idx(IDX_K6_SC[k]), _mm512_castsi256_si512(s16));
    b->mb = _mm256_mullo_epi16(s16, _mm256_set1_epi16(-4));
    b->d = h2f(x->d);
    b->dmin = 0.0f;
}

AI void k23_rows(int t, const int C, int64_t nb, const char *w, size_t wrow, int r0, int r1,
                 const char *x, size_t xcol, float *y, int ldy) {
    const size_t bsz = t == EM_Q2_K ? sizeof(block_q2_K) : sizeof(block_q3_K);
    const int form = t == EM_Q2_K ? EM_Q4_K : EM_Q6_K;  /* how kblk_dot applies mb */
    for (int r = r0; r < r1; r++) {
        const char *wr = w + (size_t)r * wrow;
        __m512 acc[8];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) acc[c] = _mm512_setzero_ps();
        for (int64_t i = 0; i < nb; i++) {
            kblk b;
            const char *blk = wr + (size_t)i * bsz;
            pf(blk, PF_DIST);
            pf(blk + 64, PF_DIST);
            if (t == EM_Q2_K) unpack_k2((const block_q2_K *)blk, &b);
            else unpack_k3((const block_q3_K *)blk, &b);
#pragma GCC unroll 8
            for (int c = 0; c < C; c++)
                acc[c] = kblk_dot(form, &b, (const block_q8_K *)(x + (size_t)c * xcol) + i, acc[c]);
        }
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) y[(size_t)c * ldy + r] = hsum(acc[c]);
    }
}

AI void mm_k23(int t, int64_t n, const void *w, size_t wrow, int r0, int r1, const void *x,
               size_t xcol, int ncols, float *y, int ldy) {
    const int64_t nb = n / QK_K;
#define TILE(C) k23_rows(t, C, nb, w, wrow, r0, r1, x, xcol, y, ldy)
    EM_COLS_1_8_ONLY(ncols, TILE);
#undef TILE
}

EM_MM_WRAP(mm_q2_K, mm_k23, EM_Q2_K)
EM_MM_WRAP(mm_q3_K, mm_k23, EM_Q3_K)

/* ---------------------------------------------------------------- norms and activations */

static inline __mmask16 tail_mask(int left) { return left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1); }

/* As rmsnorm_ref (and ggml): squares rounded to float, summed in double. */
static void rmsnorm_avx512(float *o, const float *x, const float *w, int n, float eps) {
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    for (int i = 0; i < n; i += 16) {
        const __m512 v = _mm512_maskz_loadu_ps(tail_mask(n - i), x + i);
        const __m512 sq = _mm512_mul_ps(v, v);
        s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(sq)));
        s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(sq), 1))));
    }
    const double ss = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
    const __m512 scale = _mm512_set1_ps(1.0f / sqrtf((float)(ss / n) + eps));
    for (int i = 0; i < n; i += 16) {
        const __mmask16 k = tail_mask(n - i);
        const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), scale);
        _mm512_mask_storeu_ps(o + i, k, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(k, w + i)));
    }
}

/* expf: x = n ln2 + r (ln2 in two parts), |r| <= ln2/2, e^r by a degree-6 polynomial
 * (Cephes expf coefficients), 2^n applied by vscalefps, which also produces inf, 0 and
 * subnormals correctly. Inputs are clamped to [-104, 89] first (beyond, expf is 0 or inf
 * anyway); the clamp keeps NaN. Max error 1 ulp (see the file comment). */
static inline __m512 exp512(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
    p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

static void swiglu_avx512(float *h, const float *g, const float *u, int n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int i = 0; i < n; i += 16) {
        const __mmask16 k = tail_mask(n - i);
        const __m512 gv = _mm512_maskz_loadu_ps(k, g + i);
        const __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), gv));
        const __m512 s = _mm512_div_ps(gv, _mm512_add_ps(one, e));
        _mm512_mask_storeu_ps(h + i, k, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(k, u + i)));
    }
}

/* Three-pass softmax, as softmax_ref: max; e^(x-max) stored and summed in double; scale. */
static void softmax_avx512(float *x, int n) {
    __m512 mv = _mm512_set1_ps(-INFINITY);
    for (int i = 0; i < n; i += 16) mv = _mm512_max_ps(mv, _mm512_mask_loadu_ps(mv, tail_mask(n - i), x + i));
    const __m512 maxv = _mm512_set1_ps(_mm512_reduce_max_ps(mv));
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    for (int i = 0; i < n; i += 16) {
        const __mmask16 k = tail_mask(n - i);
        const __m512 e = _mm512_maskz_mov_ps(k, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), maxv)));
        _mm512_mask_storeu_ps(x + i, k, e);
        s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
    }
    const __m512 inv = _mm512_set1_ps((float)(1.0 / _mm512_reduce_add_pd(_mm512_add_pd(s0, s1))));
    for (int i = 0; i < n; i += 16) {
        const __mmask16 k = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), inv));
    }
}

/* e^x = p * 2^n for the two-pass softmax: n = round(x log2 e), Cody-Waite reduction with
 * ln2 in two parts (the FMA keeps x - n ln2_hi exact), p a degree-5 polynomial on
 * [-ln2/2, ln2/2]. x is clamped to +-2^22 first; NaN passes through. */
AI void extexp512(__m512 x, __m512 *p, __m512 *n) {
    x = _mm512_min_ps(_mm512_set1_ps(0x1p22f), _mm512_max_ps(_mm512_set1_ps(-0x1p22f), x));
    *n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(0x1.715476p+0f)), RNE);
    __m512 t = _mm512_fnmadd_ps(*n, _mm512_set1_ps(0x1.62E43p-1f), x);
    t = _mm512_fnmadd_ps(*n, _mm512_set1_ps(-0x1.05C61p-29f), t);
    __m512 q = _mm512_set1_ps(0x1.0F9F9Cp-7f);
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(0x1.573A1Ap-5f));
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(0x1.555A80p-3f));
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(0x1.FFFDC6p-2f));
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(0x1.FFFFF6p-1f));
    *p = _mm512_fmadd_ps(q, t, _mm512_set1_ps(1.0f));
}

/* Two-pass softmax with four (M, E) accumulators per lane; vscalefps applies the exact
 * powers of two (a large negative exponent gives 0, and scalef(0, -inf) is 0). */
static void softmax2_avx512(float *x, int n) {
    __m512 M[4], E[4];
    for (int a = 0; a < 4; a++) { M[a] = _mm512_setzero_ps(); E[a] = _mm512_set1_ps(-INFINITY); }
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        for (int a = 0; a < 4; a++) {
            __m512 p, e;
            extexp512(_mm512_loadu_ps(x + i + 16 * a), &p, &e);
            const __m512 e2 = _mm512_max_ps(e, E[a]);  /* E when e is NaN: M carries the NaN */
            M[a] = _mm512_add_ps(_mm512_scalef_ps(M[a], _mm512_sub_ps(E[a], e2)), _mm512_scalef_ps(p, _mm512_sub_ps(e, e2)));
            E[a] = e2;
        }
    }
    for (; i < n; i += 16) {
        const __mmask16 k = tail_mask(n - i);
        __m512 p, e;
        extexp512(_mm512_maskz_loadu_ps(k, x + i), &p, &e);
        const __m512 e2 = _mm512_mask_max_ps(E[0], k, e, E[0]);
        const __m512 m2 = _mm512_add_ps(_mm512_scalef_ps(M[0], _mm512_sub_ps(E[0], e2)), _mm512_scalef_ps(p, _mm512_sub_ps(e, e2)));
        M[0] = _mm512_mask_mov_ps(M[0], k, m2);
        E[0] = e2;
    }
    const __m512 emax = _mm512_max_ps(_mm512_max_ps(E[0], E[1]), _mm512_max_ps(E[2], E[3]));
    const __m512 Ev = _mm512_set1_ps(_mm512_reduce_max_ps(emax));
    __m512 Ms = _mm512_setzero_ps();
    for (int a = 0; a < 4; a++) Ms = _mm512_add_ps(Ms, _mm512_scalef_ps(M[a], _mm512_sub_ps(E[a], Ev)));
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(Ms));
    for (i = 0; i < n; i += 16) {
        const __mmask16 k = tail_mask(n - i);
        __m512 p, e;
        extexp512(_mm512_maskz_loadu_ps(k, x + i), &p, &e);
        _mm512_mask_storeu_ps(x + i, k, _mm512_scalef_ps(_mm512_mul_ps(p, inv), _mm512_sub_ps(e, Ev)));
    }
}

/* ---------------------------------------------------------------- attention */


/* q (already as floats, in double) . k row of type t, summed in double like ref. */
AI float attn_dot(int t, const double *qd, const void *kt, int hd) {
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    for (int i = 0; i < hd; i += 16) {
        const __mmask16 k = tail_mask(hd - i);
        const __m512 kv = load_fx(t, kt, i, k);
        const __m512d a = _mm512_cvtps_pd(_mm512_castps512_ps256(kv));
        const __m512d b = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(kv), 1)));
        s0 = _mm512_fmadd_pd(_mm512_loadu_pd(qd + i), a, s0);  /* padded q lanes are 0 */
        s1 = _mm512_fmadd_pd(_mm512_loadu_pd(qd + i + 8), b, s1);
    }
    return (float)_mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}

/* One-pass attention of a GQA group, step for step as attn_x in kern_ref.c, worked in
 * chunks of EM_ATTN_CHUNK positions: all scores of the chunk first (each K row converted
 * once and dotted with every head's q), the scalar online update, then the V rows (each
 * segment loaded once for every head, accumulators in registers). Only the double sums
 * of the dot products are in another order than ref's. */
#define QD_W (EM_ATTN_MAX_HD + 16)

/* The F16 score of kern_ref.c's dot_f16_ggml (llama.cpp's AVX2 layout: 4 x 8 float lanes
 * of fused products, reduced as there, the rest in double); qd holds F16 values. */
AI double dot_f16_ggml(const double *qd, const uint16_t *k, int hd) {
    const int n32 = hd & ~31;
    double s = 0.0;
    if (n32) {
        __m256 a[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps() };
        for (int i = 0; i < n32; i += 32)
            for (int j = 0; j < 4; j++)
                a[j] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i + 8 * j))),
                                       _mm512_cvtpd_ps(_mm512_loadu_pd(qd + i + 8 * j)), a[j]);
        const __m256 r = _mm256_add_ps(_mm256_add_ps(a[0], a[2]), _mm256_add_ps(a[1], a[3]));
        const __m128 t0 = _mm_add_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps(r, 1));
        const __m128 t1 = _mm_hadd_ps(t0, t0);
        s = (double)_mm_cvtss_f32(_mm_hadd_ps(t1, t1));
    }
    for (int i = n32; i < hd; i++) s += (double)(em_f16_to_f32(k[i]) * (float)qd[i]);
    return s;
}

AI void attn_scores(int t, double (*qd)[QD_W], int n_q, const void *kt, int hd, float scale,
                    float (*s)[EM_ATTN_CHUNK], int j) {
    if (t == EM_F16) {
        _Pragma("GCC unroll 8")
        for (int h = 0; h < n_q; h++) s[h][j] = (float)dot_f16_ggml(qd[h], kt, hd) * scale;
        return;
    }
    __m512d a0[EM_ATTN_MAX_GROUP], a1[EM_ATTN_MAX_GROUP];
    _Pragma("GCC unroll 8")
    for (int h = 0; h < EM_ATTN_MAX_GROUP; h++) a0[h] = a1[h] = _mm512_setzero_pd();  /* all: no false uninitialized warnings */
    for (int i = 0; i < hd; i += 16) {
        const __m512 kv = load_fx(t, kt, i, tail_mask(hd - i));
        const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(kv));
        const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(kv), 1)));
        _Pragma("GCC unroll 8")
        for (int h = 0; h < n_q; h++) {  /* padded q lanes are 0 */
            a0[h] = _mm512_fmadd_pd(_mm512_load_pd(qd[h] + i), lo, a0[h]);
            a1[h] = _mm512_fmadd_pd(_mm512_load_pd(qd[h] + i + 8), hi, a1[h]);
        }
    }
    _Pragma("GCC unroll 8")
    for (int h = 0; h < n_q; h++) s[h][j] = (float)_mm512_reduce_add_pd(_mm512_add_pd(a0[h], a1[h])) * scale;
}

/* Lanes [i0, i0 + 16 ns) of every head's accumulator, through the chunk's positions:
 * acc = acc * ms[h][j] where a position raised the maximum (only looked at when `grew`),
 * then acc += V row * w[h][j]; each step rounded to F16 for an F16 accumulator. */
AI void attn_vblock(int t, int n_q, int ns, int i0, int hd, float *out, uint16_t (*acc16)[EM_ATTN_MAX_HD + 16],
                    const void *v, int j0, int c, size_t kstride, float (*s)[EM_ATTN_CHUNK],
                    float (*msc)[EM_ATTN_CHUNK], int grew) {
    const size_t esz = t == EM_F32 ? 4 : 2;
    __mmask16 km[4] = { 0, 0, 0, 0 };
    __m512 a[EM_ATTN_MAX_GROUP][4], vv[4];
    for (int g = 0; g < 4; g++) {  /* all of them: the unused ones are dropped by the compiler */
        vv[g] = _mm512_setzero_ps();
        for (int h = 0; h < EM_ATTN_MAX_GROUP; h++) a[h][g] = _mm512_setzero_ps();
    }
    _Pragma("GCC unroll 8")
    for (int g = 0; g < ns; g++) km[g] = tail_mask(hd - i0 - 16 * g);
    _Pragma("GCC unroll 8")
    for (int h = 0; h < n_q; h++)
        _Pragma("GCC unroll 8")
        for (int g = 0; g < ns; g++) {
            const int i = i0 + 16 * g;
            a[h][g] = t == EM_F32 ? _mm512_maskz_loadu_ps(km[g], out + h * hd + i)
                                  : _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(km[g], acc16[h] + i));
        }
    for (int j = 0; j < c; j++) {
        const char *vt = (const char *)v + (size_t)(j0 + j) * kstride * esz;
        _Pragma("GCC unroll 8")
        for (int g = 0; g < ns; g++) vv[g] = load_fx(t, vt, i0 + 16 * g, km[g]);
        _Pragma("GCC unroll 8")
        for (int h = 0; h < n_q; h++) {
            const __m512 w = _mm512_set1_ps(s[h][j]);
            if (grew && msc[h][j] != 1.0f) {
                const __m512 ms = _mm512_set1_ps(msc[h][j]);
                _Pragma("GCC unroll 8")
                for (int g = 0; g < ns; g++) {
                    a[h][g] = _mm512_mul_ps(a[h][g], ms);
                    if (t == EM_F16) a[h][g] = _mm512_cvtph_ps(_mm512_cvtps_ph(a[h][g], RNE));
                }
            }
            _Pragma("GCC unroll 8")
            for (int g = 0; g < ns; g++) {  /* F16: fused below hd & ~31, as llama.cpp */
                a[h][g] = t == EM_F16 && i0 + 16 * g < (hd & ~31) ? _mm512_fmadd_ps(vv[g], w, a[h][g])
                                                                  : _mm512_add_ps(a[h][g], _mm512_mul_ps(vv[g], w));
                if (t == EM_F16) a[h][g] = _mm512_cvtph_ps(_mm512_cvtps_ph(a[h][g], RNE));  /* F16 accumulator */
            }
        }
    }
    _Pragma("GCC unroll 8")
    for (int h = 0; h < n_q; h++)
        _Pragma("GCC unroll 8")
        for (int g = 0; g < ns; g++) {
            const int i = i0 + 16 * g;
            if (t == EM_F32) _mm512_mask_storeu_ps(out + h * hd + i, km[g], a[h][g]);
            else _mm256_mask_storeu_epi16(acc16[h] + i, km[g], _mm512_cvtps_ph(a[h][g], RNE));
        }
}

AI void attn_x(int t, float *out, const float *q, int n_q, const void *k, const void *v, int n_kv,
               int hd, size_t kstride, float scale) {
    enum { G = EM_ATTN_MAX_GROUP, C = EM_ATTN_CHUNK };
    _Alignas(64) double qd[G][QD_W];
    _Alignas(64) uint16_t acc16[G][EM_ATTN_MAX_HD + 16];
    _Alignas(64) float s[G][C], msc[G][C];
    float M[G], S[G];
    const size_t esz = t == EM_F32 ? 4 : 2;
    for (int h = 0; h < n_q; h++) {
        M[h] = -INFINITY;
        S[h] = 0.0f;
        for (int i = 0; i < QD_W; i++)
            qd[h][i] = i >= hd ? 0.0 : t == EM_F32 ? q[h * hd + i] : h2f(em_f32_to_f16(q[h * hd + i]));
        for (int i = 0; i < hd; i++) { out[h * hd + i] = 0.0f; acc16[h][i] = 0; }
    }
    for (int j0 = 0; j0 < n_kv; j0 += C) {
        const int c = n_kv - j0 < C ? n_kv - j0 : C;
        const __mmask16 kc = tail_mask(c);
        for (int j = 0; j < c; j++)
            attn_scores(t, qd, n_q, (const char *)k + (size_t)(j0 + j) * kstride * esz, hd, scale, s, j);
        /* The online update, position by position as ref (scalar expf, as llama.cpp). A
         * chunk whose scores stay below the running max needs no rescale at all, which
         * after the first few positions is nearly every chunk. */
        int grew = 0;
        for (int h = 0; h < n_q; h++) {
            const float m = _mm512_reduce_max_ps(_mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), kc, s[h]));
            if (m > M[h]) {
                for (int j = 0; j < c; j++) {
                    float ms = 1.0f, vs = 1.0f;
                    if (s[h][j] > M[h]) { ms = expf(M[h] - s[h][j]); M[h] = s[h][j]; }
                    else vs = expf(s[h][j] - M[h]);
                    msc[h][j] = ms;
                    s[h][j] = vs;
                    S[h] = t == EM_F16 ? fmaf(S[h], ms, vs) : S[h] * ms + vs;
                }
                grew = 1;
            } else {
                for (int j = 0; j < c; j++) {
                    s[h][j] = expf(s[h][j] - M[h]);
                    S[h] = S[h] * 1.0f + s[h][j];
                    msc[h][j] = 1.0f;
                }
            }
        }
        /* V rows: 64 output lanes at a time, so each head has four independent add chains
         * (the F16 rounding makes every step a dependent chain of three instructions). */
        for (int i0 = 0; i0 < hd; i0 += 64) {
            const int ns = (hd - i0 + 15) / 16 < 4 ? (hd - i0 + 15) / 16 : 4;
            if (ns == 4 && !grew) attn_vblock(t, n_q, 4, i0, hd, out, acc16, v, j0, c, kstride, s, msc, 0);
            else attn_vblock(t, n_q, ns, i0, hd, out, acc16, v, j0, c, kstride, s, msc, grew);
        }
    }
    for (int h = 0; h < n_q; h++) {
        const float inv = S[h] == 0.0f ? 0.0f : 1.0f / S[h];
        for (int i = 0; i < hd; i++) out[h * hd + i] = (t == EM_F32 ? out[h * hd + i] : h2f(acc16[h][i])) * inv;
    }
}

/* Three-pass baseline (see kernels.h): scores, exp and sum, weighted V rows in F32. */
AI void attn3_x(int t, float *out, const float *q, const void *k, const void *v, int n_kv,
                int hd, size_t kstride, float scale, float *s) {
    _Alignas(64) double qd[EM_ATTN_MAX_HD + 16];
    const size_t esz = t == EM_F32 ? 4 : 2;
    for (int i = 0; i < hd; i++) qd[i] = q[i];
    for (int i = hd; i < hd + 16; i++) qd[i] = 0.0;
    float M = -INFINITY;
    for (int j = 0; j < n_kv; j++) {
        s[j] = attn_dot(t, qd, (const char *)k + (size_t)j * kstride * esz, hd) * scale;
        M = s[j] > M ? s[j] : M;
    }
    const __m512 mv = _mm512_set1_ps(M);
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    for (int j = 0; j < n_kv; j += 16) {
        const __mmask16 km = tail_mask(n_kv - j);
        const __m512 e = _mm512_maskz_mov_ps(km, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(km, s + j), mv)));
        _mm512_mask_storeu_ps(s + j, km, e);
        s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
    }
    const double S = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
    for (int i = 0; i < hd; i++) out[i] = 0.0f;
    for (int j = 0; j < n_kv; j++) {
        const __m512 w = _mm512_set1_ps(s[j]);
        const char *vt = (const char *)v + (size_t)j * kstride * esz;
        for (int i = 0; i < hd; i += 16) {
            const __mmask16 km = tail_mask(hd - i);
            _mm512_mask_storeu_ps(out + i, km, _mm512_fmadd_ps(w, load_fx(t, vt, i, km), _mm512_maskz_loadu_ps(km, out + i)));
        }
    }
    const __m512 inv = _mm512_set1_ps(S == 0.0 ? 0.0f : (float)(1.0 / S));
    for (int i = 0; i < hd; i += 16) {
        const __mmask16 km = tail_mask(hd - i);
        _mm512_mask_storeu_ps(out + i, km, _mm512_mul_ps(_mm512_maskz_loadu_ps(km, out + i), inv));
    }
}

static void attn3_f32(float *out, const float *q, const void *k, const void *v, int n_kv, int hd,
                      size_t kstride, float scale, float *s) {
    attn3_x(EM_F32, out, q, k, v, n_kv, hd, kstride, scale, s);
}
static void attn3_f16(float *out, const float *q, const void *k, const void *v, int n_kv, int hd,
                      size_t kstride, float scale, float *s) {
    attn3_x(EM_F16, out, q, k, v, n_kv, hd, kstride, scale, s);
}

/* n_q as a constant in each case, so the per-head accumulators live in registers. */
#define ATTN_GROUPS(T)                                                                        \
    switch (n_q) {                                                                            \
    case 1: attn_x(T, out, q, 1, k, v, n_kv, hd, kstride, scale); break;                     \
    case 2: attn_x(T, out, q, 2, k, v, n_kv, hd, kstride, scale); break;                     \
    case 3: attn_x(T, out, q, 3, k, v, n_kv, hd, kstride, scale); break;                     \
    case 4: attn_x(T, out, q, 4, k, v, n_kv, hd, kstride, scale); break;                     \
    default: attn_x(T, out, q, n_q, k, v, n_kv, hd, kstride, scale); break;                  \
    }
static void attn_f32(float *out, const float *q, int n_q, const void *k, const void *v, int n_kv, int hd,
                     size_t kstride, float scale) {
    ATTN_GROUPS(EM_F32)
}
static void attn_f16(float *out, const float *q, int n_q, const void *k, const void *v, int n_kv, int hd,
                     size_t kstride, float scale) {
    ATTN_GROUPS(EM_F16)
}

/* ---------------------------------------------------------------- IQ4_NL / IQ4_XS / TQ1_0 / TQ2_0 matmul */

/* IQ4 codes become their int8 values by vpshufb from the 16-entry table; the signed
 * product goes through |w| (u8) and a with w's sign (vpdpbusd / vpmaddubsw need one
 * unsigned operand; |w| <= 127 keeps the pair sums exact). Ternary codes stay unsigned
 * (0..2; a corrupt tq2_0 code 3 counts as 2, as in ref) for vpdpbusd, and sum(a) comes
 * off through the q8_K bsums. Integer sums are exact; each block's float factor is applied
 * once per block, so the per-(row, column) operation sequence is fixed as elsewhere. */
AI __m512i iqtq_values512(__m512i codes) {
    const __m512i tab = _mm512_broadcast_i32x4(_mm_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10,
                                                             1, 13, 25, 38, 53, 69, 89, 113));
    return _mm512_shuffle_epi8(tab, codes);
}

/* The 32 nibbles of 16 bytes in element order (low nibbles first), as a ymm. */
AI __m256i iqtq_nibbles(const uint8_t *qs) {
    const __m128i raw = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_inserti128_si256(_mm256_castsi128_si256(raw), _mm_srli_epi16(raw, 4), 1),
                            _mm256_set1_epi8(0x0f));
}

/* iq4_nl (x in q8_0): R rows x C columns; decode runs 4 rows side by side. One block per
 * ymm: vpdpbusd(|w|, sign(a, w)) gives the int32 lanes of llama.cpp's AVX2 kernel, and the
 * float order is that kernel's (ggml_vec_dot_iq4_nl_q8_0, its decode path): blocks 2i and
 * 2i+1 in two accumulators, added and reduced at the end, an odd last block in ref's
 * scalar form. */
AI void iq4nl_tile(const int R, const int C, int64_t nb, const char *w, size_t wrow, const char *x,
                   size_t xcol, float *y, int ldy) {
    const __m256i tab = _mm256_broadcastsi128_si256(_mm_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10,
                                                                  1, 13, 25, 38, 53, 69, 89, 113));
    __m256 acc[4][8][2];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) acc[r][c][0] = acc[r][c][1] = _mm256_setzero_ps();
    const int64_t nb2 = nb & ~(int64_t)1;
    for (int64_t b = 0; b < nb; b++) {
        const int k = (int)(b & 1);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const block_iq4_nl *blk = (const block_iq4_nl *)(w + (size_t)r * wrow) + b;
            pf(blk, PF_DIST);
            const __m256i wq = _mm256_shuffle_epi8(tab, iqtq_nibbles(blk->qs));
            const __m256i wa = _mm256_sign_epi8(wq, wq);
            const float dw = h2f(blk->d);
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) {
                const block_q8_0 *a = (const block_q8_0 *)(x + (size_t)c * xcol) + b;
                const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), wa,
                                                      _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)a->qs), wq));
                if (b < nb2) {
                    acc[r][c][k] = _mm256_fmadd_ps(_mm256_set1_ps(h2f(a->d) * dw), _mm256_cvtepi32_ps(s), acc[r][c][k]);
                } else {  /* the odd last block: after the reduction, in scalar */
                    int32_t l[8];
                    _mm256_storeu_si256((__m256i *)l, s);
                    const int si = l[0] + l[1] + l[2] + l[3] + l[4] + l[5] + l[6] + l[7];
                    y[(size_t)c * ldy + r] = hsum8(_mm256_add_ps(acc[r][c][0], acc[r][c][1])) + (h2f(a->d) * dw) * (float)si;
                }
            }
        }
    }
    if (nb2 == nb) {
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) y[(size_t)c * ldy + r] = hsum8(_mm256_add_ps(acc[r][c][0], acc[r][c][1]));
    }
}

static void mm_iq4_nl(int64_t n, const void *w, size_t wrow, int r0, int r1, const void *x, size_t xcol,
                      int ncols, float *y, int ldy) {
    const int64_t nb = n / QK4_NL;
    const char *wc = w;
    int r = r0;
#define TILE(R, C) iq4nl_tile(R, C, nb, wc + (size_t)r * wrow, wrow, x, xcol, y + r, ldy)
    if (ncols == 1) for (; r + 4 <= r1; r += 4) TILE(4, 1);
    for (; r < r1; r++) {
        EM_COLS_1_8_R(ncols, TILE, 1);
    }
#undef TILE
}

/* One 256-element block unpacked for the 64-byte steps k = 0..3 (elements 64k..64k+63):
 * q[k] the weights (IQ4_XS: int8 values; ternary: u8 codes), sc[k] the IQ4_XS sub-block
 * scales as int16 (2k on lanes 0..15, 2k+1 on 16..31). */
typedef struct { __m512i q[4], sc[4]; float d; } iqtq_blk;

/* Trits of 64 tq1_0 bytes (multiplier 3^n per byte: me for even bytes, mo for odd, int16
 * lanes): (uint8)(q * 3^n) * 3 >> 8. */
AI __m512i iqtq_trits(__m512i q, __m512i m) {
    const __m512i lo8 = _mm512_set1_epi16(0xff), three = _mm512_set1_epi16(3);
    const __m512i pe = _mm512_and_si512(_mm512_mullo_epi16(q, m), lo8);
    const __m512i po = _mm512_and_si512(_mm512_mullo_epi16(_mm512_srli_epi16(q, 8), m), lo8);
    const __m512i te = _mm512_srli_epi16(_mm512_mullo_epi16(pe, three), 8);
    const __m512i to = _mm512_srli_epi16(_mm512_mullo_epi16(po, three), 8);
    return _mm512_or_si512(te, _mm512_slli_epi16(to, 8));
}

AI __m512i iqtq_cat(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }
AI __m512i iqtq_cat16(short lo, short hi) { return iqtq_cat(_mm256_set1_epi16(lo), _mm256_set1_epi16(hi)); }

AI void iqtq_unpack(const int t, const char *wr, int64_t b, iqtq_blk *u) {
    if (t == EM_IQ4_XS) {
        const block_iq4_xs *blk = (const block_iq4_xs *)wr + b;
        pf(blk, PF_DIST);
        pf((const char *)blk + 64, PF_DIST);
        pf((const char *)blk + 128, PF_DIST);
        const __m256i m4 = _mm256_set1_epi8(0x0f);
        const unsigned sh = blk->scales_h;
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(blk->qs + 32 * k));
            const __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            /* 128-bit lanes [2k low, 2k+1 low, 2k high, 2k+1 high] -> [2k lo, 2k hi, 2k+1 lo, 2k+1 hi] */
            const __m512i z = iqtq_cat(lo, hi);
            u->q[k] = iqtq_values512(_mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0)));
            const int l0 = (blk->scales_l[k] & 0xf) | (((sh >> 4 * k) & 3) << 4);
            const int l1 = (blk->scales_l[k] >> 4) | (((sh >> (4 * k + 2)) & 3) << 4);
            u->sc[k] = iqtq_cat16((short)(l0 - 32), (short)(l1 - 32));
        }
        u->d = h2f(blk->d);
    } else if (t == EM_TQ2_0) {
        const block_tq2_0 *blk = (const block_tq2_0 *)wr + b;
        pf(blk, PF_DIST);
        pf((const char *)blk + 64, PF_DIST);
        const __m512i m3 = _mm512_set1_epi8(3);
        const __m512i s01 = iqtq_cat16(0, 2), s23 = iqtq_cat16(4, 6);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(blk->qs + 32 * h));
            const __m512i z = iqtq_cat(q, q);
            u->q[2 * h] = _mm512_and_si512(_mm512_srlv_epi16(z, s01), m3);
            u->q[2 * h + 1] = _mm512_and_si512(_mm512_srlv_epi16(z, s23), m3);
        }
        u->d = h2f(blk->d);
    } else {
        const block_tq1_0 *blk = (const block_tq1_0 *)wr + b;
        pf(blk, PF_DIST);
        const __m256i q0 = _mm256_loadu_si256((const __m256i *)blk->qs);
        const __m128i q1 = _mm_loadu_si128((const __m128i *)(blk->qs + 32));
        uint32_t qh;
        memcpy(&qh, blk->qh, 4);
        const __m256i q1b = _mm256_broadcastsi128_si256(q1);
        const __m256i q2 = _mm256_setr_m128i(q1, _mm_set1_epi32((int)qh));
        const __m512i z0 = iqtq_cat(q0, q0);
        u->q[0] = iqtq_trits(z0, iqtq_cat16(1, 3));    /* elements 0..63 */
        u->q[1] = iqtq_trits(z0, iqtq_cat16(9, 27));   /* 64..127 */
        /* 128..159: trit 4 of qs[0..31]; 160..191: trits 0, 1 of qs[32..47] */
        u->q[2] = iqtq_trits(iqtq_cat(q0, q1b), iqtq_cat(_mm256_set1_epi16(81),
                                                         _mm256_setr_m128i(_mm_set1_epi16(1), _mm_set1_epi16(3))));
        /* 192..223: trits 2, 3 of qs[32..47]; 224..239: trit 4; 240..255: byte 4n+j = trit n of qh[j] */
        u->q[3] = iqtq_trits(iqtq_cat(q1b, q2),
                             iqtq_cat(_mm256_setr_m128i(_mm_set1_epi16(9), _mm_set1_epi16(27)),
                                      _mm256_setr_epi16(81, 81, 81, 81, 81, 81, 81, 81, 1, 1, 3, 3, 9, 9, 27, 27)));
        u->d = h2f(blk->d);
    }
}

/* acc += one block times one q8_K column. The 16 int32 lanes are folded to 8 (lane l then
 * holds elements 4l..4l+3 of every 32, as llama.cpp's AVX2 kernels; for the ternary types
 * minus bsums 2l and 2l+1), and the float steps are those kernels' (IQ4_XS: fma; TQ:
 * multiply, then add), so the results are bit-identical to llama.cpp's x86 build. */
AI __m256 iqtq_dot(const int t, const iqtq_blk *u, const block_q8_K *x, __m256 acc) {
    __m512i s = _mm512_setzero_si512();
    if (t == EM_IQ4_XS) {
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            const __m512i a = _mm512_loadu_si512(x->qs + 64 * k);
            const __m512i as = _mm512_mask_sub_epi8(a, _mm512_movepi8_mask(u->q[k]), _mm512_setzero_si512(), a);
            s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(_mm512_abs_epi8(u->q[k]), as), u->sc[k]);
        }
    } else {
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) s = _mm512_dpbusd_epi32(s, u->q[k], _mm512_loadu_si512(x->qs + 64 * k));
    }
    __m256i s8 = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
    if (t == EM_IQ4_XS)
        return _mm256_fmadd_ps(_mm256_set1_ps(u->d * x->d), _mm256_cvtepi32_ps(s8), acc);
    s8 = _mm256_sub_epi32(s8, _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)x->bsums), _mm256_set1_epi16(1)));
    return _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s8), _mm256_set1_ps(x->d * u->d)), acc);
}

AI void iqtq_rows(const int t, const int C, int64_t nb, const char *w, size_t wrow, int r0, int r1,
                  const char *x, size_t xcol, float *y, int ldy) {
    for (int r = r0; r < r1; r++) {
        const char *wr = w + (size_t)r * wrow;
        __m256 acc[8];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) acc[c] = _mm256_setzero_ps();
        for (int64_t i = 0; i < nb; i++) {
            iqtq_blk u;
            iqtq_unpack(t, wr, i, &u);
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) acc[c] = iqtq_dot(t, &u, (const block_q8_K *)(x + (size_t)c * xcol) + i, acc[c]);
        }
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) y[(size_t)c * ldy + r] = hsum8(acc[c]);
    }
}

AI void mm_iqtq(const int t, int64_t n, const void *w, size_t wrow, int r0, int r1, const void *x,
                size_t xcol, int ncols, float *y, int ldy) {
    const int64_t nb = n / QK_K;
#define TILE(C) iqtq_rows(t, C, nb, w, wrow, r0, r1, x, xcol, y, ldy)
    EM_COLS_1_8(ncols, TILE);
#undef TILE
}

EM_MM_WRAP(mm_iq4_xs, mm_iqtq, EM_IQ4_XS)
EM_MM_WRAP(mm_tq1_0, mm_iqtq, EM_TQ1_0)
EM_MM_WRAP(mm_tq2_0, mm_iqtq, EM_TQ2_0)

/* Attention over a cache of any type: attn_kv.h's body with this file's matmuls (through
 * self) and FMA row update; hd is a multiple of 32. */
static void axpy_avx512(float *y, const float *x, float a, int n) {  /* n a multiple of 16 */
    const __m512 va = _mm512_set1_ps(a);
    for (int i = 0; i < n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(_mm512_loadu_ps(x + i), va, _mm512_loadu_ps(y + i)));
}

static void attn_kv_avx512(const em_kernels *self, float *out, const float *q, int n_q, int tk, const void *k,
                        size_t krow, int tv, const void *v, size_t vrow, int n_kv, int hd, float scale) {
    attn_kv_body(self, axpy_avx512, bfp4_row_avx512, out, q, n_q, tk, k, krow, tv, v, vrow, n_kv, hd, scale);
}

/* ssm_scan (kernels.h): ggml's 32 partial sums as two 16-lane vectors (lanes 0..15 and
 * 16..31), so adding them pairs 8-lane vectors 0+2 and 1+3 as ggml does. */
static void ssm_scan_avx512(float *S, const float *x, const float *B, const float *C, float dA, float dt, float D,
                            float *y, int hd, int ds) {
    const int np = ds & ~31;
    const __m512 vdA = _mm512_set1_ps(dA);
    for (int i = 0; i < hd; i++) {
        float *s = S + (size_t)i * ds;
        const float x_dt = x[i] * dt;
        const __m512 vx = _mm512_set1_ps(x_dt);
        __m512 acc[2] = { _mm512_setzero_ps(), _mm512_setzero_ps() };
        for (int j0 = 0; j0 < np; j0 += 32)
            for (int k = 0; k < 2; k++) {
                const int j = j0 + 16 * k;
                const __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(s + j), vdA),
                                               _mm512_mul_ps(_mm512_loadu_ps(B + j), vx));
                acc[k] = _mm512_fmadd_ps(v, _mm512_loadu_ps(C + j), acc[k]);
                _mm512_storeu_ps(s + j, v);
            }
        const __m512 a = _mm512_add_ps(acc[0], acc[1]);
        const __m256 b = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
        const __m128 t0 = _mm_add_ps(_mm256_castps256_ps128(b), _mm256_extractf128_ps(b, 1));
        const __m128 t1 = _mm_hadd_ps(t0, t0);
        float sum = _mm_cvtss_f32(_mm_hadd_ps(t1, t1));
        for (int j = np; j < ds; j++) {
            const float v = s[j] * dA + B[j] * x_dt;
            sum = fmaf(v, C[j], sum);
            s[j] = v;
        }
        y[i] = sum + x[i] * D;
    }
}

/* ---------------------------------------------------------------- INT2..INT8 / BFP3..BFP7 / OVP4 matmul */

/* ember's own formats (quant_seed.c; planes in quant.h), activations in q8_0. The codes
 * are unsigned, so vpdpbusd takes them as they are: INT groups of 64 fill a zmm (the two
 * q8_0 blocks side by side, lanes 0..7 and 8..15), value d*q + m gives per lane
 * d*da*sum(q*a) + m*da*sum(a), sum(a) by vpdpbusd with ones; a BFP block of 32 fills a ymm
 * and its offset 2^(m-1) comes off as a second vpdpbusd with the offset byte. Integer sums
 * are exact; each (row, column) has its own float accumulator, as elsewhere. */

/* The 64 codes of an INT group in element order, one per byte. The 2-bit plane's 16 bytes
 * go to every 128-bit lane, lane k shifted right by 2k; the 1-bit plane is a byte mask. */
AI __m512i seed_codes64(const int bits, const uint8_t *q) {
    if (bits == 8) return _mm512_loadu_si512(q);
    __m512i v = _mm512_setzero_si512();
    int sh = 0;
    if (bits & 4) {
        const __m256i x = _mm256_loadu_si256((const __m256i *)q), m4 = _mm256_set1_epi8(15);
        v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(x, m4)),
                               _mm256_and_si256(_mm256_srli_epi16(x, 4), m4), 1);
        q += 32;
        sh = 4;
    }
    if (bits & 2) {
        const __m512i x = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)q));
        __m512i c = _mm512_and_si512(_mm512_srlv_epi64(x, _mm512_set_epi64(6, 6, 4, 4, 2, 2, 0, 0)),
                                     _mm512_set1_epi8(3));
        if (sh) c = _mm512_slli_epi16(c, 4);  /* codes <= 3: no bit crosses a byte */
        v = _mm512_or_si512(v, c);
        q += 16;
        sh += 2;
    }
    if (bits & 1) {
        uint64_t mk;
        memcpy(&mk, q, 8);
        v = _mm512_or_si512(v, _mm512_maskz_mov_epi8((__mmask64)mk, _mm512_set1_epi8((char)(1 << sh))));
    }
    return v;
}

/* The 32 codes of a BFP block, one per byte (the 2-bit plane's 8 bytes in every 64-bit
 * lane, lane k shifted right by 2k). */
AI __m256i seed_codes32(const int bits, const uint8_t *q) {
    __m256i v = _mm256_setzero_si256();
    int sh = 0;
    if (bits & 4) {
        const __m128i x = _mm_loadu_si128((const __m128i *)q), m4 = _mm_set1_epi8(15);
        v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(x, m4)),
                                    _mm_and_si128(_mm_srli_epi16(x, 4), m4), 1);
        q += 16;
        sh = 4;
    }
    if (bits & 2) {
        uint64_t u;
        memcpy(&u, q, 8);
        __m256i c = _mm256_and_si256(_mm256_srlv_epi64(_mm256_set1_epi64x((long long)u), _mm256_setr_epi64x(0, 2, 4, 6)),
                                     _mm256_set1_epi8(3));
        if (sh) c = _mm256_slli_epi16(c, 4);
        v = _mm256_or_si256(v, c);
        q += 8;
        sh += 2;
    }
    if (bits & 1) {
        uint32_t mk;
        memcpy(&mk, q, 4);
        v = _mm256_or_si256(v, _mm256_maskz_mov_epi8((__mmask32)mk, _mm256_set1_epi8((char)(1 << sh))));
    }
    return v;
}

AI void int_rows(const int bits, const int C, int64_t n, const char *w, size_t wrow, int r0, int r1,
                 const char *x, size_t xcol, float *y, int ldy) {
    const int64_t ng = n / QK_INT;
    const size_t bs = em_int_block_bytes(bits);
    const __m512i ones = _mm512_set1_epi8(1), z = _mm512_setzero_si512();
    for (int r = r0; r < r1; r++) {
        const uint8_t *wr = (const uint8_t *)w + (size_t)r * wrow;
        __m512 acc[8];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) acc[c] = _mm512_setzero_ps();
        for (int64_t g = 0; g < ng; g++) {
            const uint8_t *blk = wr + (size_t)g * bs;
            pf(blk, PF_DIST);
            uint16_t hd, hm;
            memcpy(&hd, blk, 2);
            memcpy(&hm, blk + 2, 2);
            const __m512 vd = _mm512_set1_ps(h2f(hd)), vm = _mm512_set1_ps(h2f(hm));
            const __m512i q = seed_codes64(bits, blk + 4);
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) {
                const block_q8_0 *a = (const block_q8_0 *)(x + (size_t)c * xcol) + 2 * g;
                const __m512i av = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a[0].qs)),
                                                      _mm256_loadu_si256((const __m256i *)a[1].qs), 1);
                const __m512 da = _mm512_insertf32x8(_mm512_set1_ps(h2f(a[0].d)), _mm256_set1_ps(h2f(a[1].d)), 1);
                const __m512 is = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(z, q, av));
                const __m512 as = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(z, ones, av));
                acc[c] = _mm512_fmadd_ps(is, _mm512_mul_ps(vd, da), _mm512_fmadd_ps(as, _mm512_mul_ps(vm, da), acc[c]));
            }
        }
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) y[(size_t)c * ldy + r] = hsum(acc[c]);
    }
}

AI void bfp_rows(const int bits, const int C, int64_t n, const char *w, size_t wrow, int r0, int r1,
                 const char *x, size_t xcol, float *y, int ldy) {
    const int64_t nb = n / QK_BFP;
    const size_t bs = em_bfp_block_bytes(bits);
    const __m256i offv = _mm256_set1_epi8((char)(1 << (bits - 1))), z = _mm256_setzero_si256();
    for (int r = r0; r < r1; r++) {
        const uint8_t *wr = (const uint8_t *)w + (size_t)r * wrow;
        __m256 acc[8];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) acc[c] = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = wr + (size_t)b * bs;
            pf(blk, PF_DIST);
            const uint32_t eb = (uint32_t)blk[0] << 23;
            float sc;
            memcpy(&sc, &eb, 4);
            const __m256i u = seed_codes32(bits, blk + 1);
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) {
                const block_q8_0 *a = (const block_q8_0 *)(x + (size_t)c * xcol) + b;
                const __m256i av = _mm256_loadu_si256((const __m256i *)a->qs);
                const __m256i s = _mm256_sub_epi32(_mm256_dpbusd_epi32(z, u, av), _mm256_dpbusd_epi32(z, offv, av));
                acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(sc * h2f(a->d)), acc[c]);
            }
        }
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) y[(size_t)c * ldy + r] = hsum8(acc[c]);
    }
}

/* OVP4: the 32 bytes of a group split into low nibbles (elements 0..31) and high nibbles
 * (their pair partners 32..63); each side is looked up in the normal table, or, where the
 * other side holds the victim marker 8, in the outlier table (vpshufb both, blend by the
 * marker mask). The values (-96..96) are signed, so vpdpbusd takes |v| and a with v's sign. */
AI __m512i ovp_values64(const uint8_t *qs) {
    const __m256i x = _mm256_loadu_si256((const __m256i *)qs), m4 = _mm256_set1_epi8(15), eight = _mm256_set1_epi8(8);
    const __m256i lo = _mm256_and_si256(x, m4), hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
    const __m256i tn = _mm256_broadcastsi128_si256(_mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 0, -7, -6, -5, -4, -3, -2, -1));
    const __m256i to = _mm256_broadcastsi128_si256(_mm_setr_epi8(0, 12, 16, 24, 32, 48, 64, 96,
                                                                 0, -12, -16, -24, -32, -48, -64, -96));
    const __mmask32 ml = _mm256_cmpeq_epi8_mask(lo, eight), mh = _mm256_cmpeq_epi8_mask(hi, eight);
    const __m256i e = _mm256_mask_blend_epi8(mh, _mm256_shuffle_epi8(tn, lo), _mm256_shuffle_epi8(to, lo));
    const __m256i o = _mm256_mask_blend_epi8(ml, _mm256_shuffle_epi8(tn, hi), _mm256_shuffle_epi8(to, hi));
    return _mm512_inserti64x4(_mm512_castsi256_si512(e), o, 1);
}

AI void ovp_rows(const int C, int64_t n, const char *w, size_t wrow, int r0, int r1, const char *x, size_t xcol,
                 float *y, int ldy) {
    const int64_t ng = n / QK_OVP;
    const __m512i z = _mm512_setzero_si512();
    for (int r = r0; r < r1; r++) {
        const block_ovp4 *wr = (const block_ovp4 *)(w + (size_t)r * wrow);
        __m512 acc[8];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) acc[c] = _mm512_setzero_ps();
        for (int64_t g = 0; g < ng; g++) {
            pf(&wr[g], PF_DIST);
            const __m512i v = ovp_values64(wr[g].qs);
            const __mmask64 neg = _mm512_movepi8_mask(v);
            const __m512i va = _mm512_abs_epi8(v);
            const __m512 vd = _mm512_set1_ps(h2f(wr[g].d));
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) {
                const block_q8_0 *a = (const block_q8_0 *)(x + (size_t)c * xcol) + 2 * g;
                const __m512i av = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a[0].qs)),
                                                      _mm256_loadu_si256((const __m256i *)a[1].qs), 1);
                const __m512 da = _mm512_insertf32x8(_mm512_set1_ps(h2f(a[0].d)), _mm256_set1_ps(h2f(a[1].d)), 1);
                const __m512i is = _mm512_dpbusd_epi32(z, va, _mm512_mask_sub_epi8(av, neg, z, av));
                acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is), _mm512_mul_ps(vd, da), acc[c]);
            }
        }
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) y[(size_t)c * ldy + r] = hsum(acc[c]);
    }
}

AI void mm_seed(const int t, int64_t n, const void *w, size_t wrow, int r0, int r1, const void *x,
                size_t xcol, int ncols, float *y, int ldy) {
    if (em_int_bits(t)) {
#define TILE(C) int_rows(em_int_bits(t), C, n, w, wrow, r0, r1, x, xcol, y, ldy)
        EM_COLS_1_8(ncols, TILE);
#undef TILE
    } else if (t == EM_OVP4) {
#define TILE(C) ovp_rows(C, n, w, wrow, r0, r1, x, xcol, y, ldy)
        EM_COLS_1_8(ncols, TILE);
#undef TILE
    } else {
#define TILE(C) bfp_rows(em_bfp_bits(t), C, n, w, wrow, r0, r1, x, xcol, y, ldy)
        EM_COLS_1_8(ncols, TILE);
#undef TILE
    }
}

EM_MM_WRAP(mm_int2, mm_seed, EM_INT2)
EM_MM_WRAP(mm_int3, mm_seed, EM_INT3)
EM_MM_WRAP(mm_int4, mm_seed, EM_INT4)
EM_MM_WRAP(mm_int5, mm_seed, EM_INT5)
EM_MM_WRAP(mm_int6, mm_seed, EM_INT6)
EM_MM_WRAP(mm_int7, mm_seed, EM_INT7)
EM_MM_WRAP(mm_int8, mm_seed, EM_INT8)
EM_MM_WRAP(mm_bfp3, mm_seed, EM_BFP3)
EM_MM_WRAP(mm_bfp4, mm_seed, EM_BFP4)
EM_MM_WRAP(mm_bfp5, mm_seed, EM_BFP5)
EM_MM_WRAP(mm_bfp6, mm_seed, EM_BFP6)
EM_MM_WRAP(mm_bfp7, mm_seed, EM_BFP7)
EM_MM_WRAP(mm_ovp4, mm_seed, EM_OVP4)

const em_kernels em_kernels_avx512 = {
    .name = "avx512",
    .quantize_act = {
        [EM_F16] = quant_f16, [EM_BF16] = quant_bf16,
        [EM_Q8_0] = quant_q8_0, [EM_Q8_1] = quant_q8_1, [EM_Q8_K] = quant_q8_K,
        [EM_KV_BFP4] = quant_kvbfp4,
    },
    .matmul = {
        [EM_F32] = mm_f32, [EM_F16] = mm_f16, [EM_BF16] = mm_bf16, [EM_Q8_0] = mm_q8_0,
        [EM_Q4_0] = mm_q4_0, [EM_Q4_1] = mm_q4_1, [EM_Q5_0] = mm_q5_0, [EM_Q5_1] = mm_q5_1,
        [EM_Q2_K] = mm_q2_K, [EM_Q3_K] = mm_q3_K,
        [EM_Q4_K] = mm_q4_K, [EM_Q5_K] = mm_q5_K,
        [EM_Q6_K] = mm_q6_K,
        [EM_IQ4_NL] = mm_iq4_nl, [EM_IQ4_XS] = mm_iq4_xs, [EM_TQ1_0] = mm_tq1_0, [EM_TQ2_0] = mm_tq2_0,
        /* ember's own formats */
        [EM_INT2] = mm_int2, [EM_INT3] = mm_int3, [EM_INT4] = mm_int4, [EM_INT5] = mm_int5,
        [EM_INT6] = mm_int6, [EM_INT7] = mm_int7, [EM_INT8] = mm_int8,
        [EM_BFP3] = mm_bfp3, [EM_BFP4] = mm_bfp4, [EM_BFP5] = mm_bfp5, [EM_BFP6] = mm_bfp6, [EM_BFP7] = mm_bfp7,
        [EM_OVP4] = mm_ovp4,
        [EM_KV_BFP4] = mm_kvbfp4,
    },
    .rmsnorm = rmsnorm_avx512,
    .softmax = softmax_avx512,
    .softmax2 = softmax2_avx512,
    .swiglu = swiglu_avx512,
    .attn_kv = attn_kv_avx512,
    .attn = { [EM_F32] = attn_f32, [EM_F16] = attn_f16 },
    .attn3 = { [EM_F32] = attn3_f32, [EM_F16] = attn3_f16 },
    .ssm_scan = ssm_scan_avx512,
};
