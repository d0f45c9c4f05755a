/* kern_avx2.c: the AVX2 + FMA + F16C kernel table (compiled with -mavx2 -mfma -mf16c; cpu.c
 * offers it only when the CPU and OS support those). kern_ref.c is the specification;
 * tests/test_kernels.c holds every slot here to it.
 *
 * Activation quantizers are bit-identical to em_quantize_row: the multiplier is computed
 * with the same scalar expression, products are the same float multiplies, and
 * _mm256_cvtps_epi32 rounds with the default MXCSR mode (nearest, ties to even), which
 * is what the ref's round_even does. fp16 scales go through F16C (round to nearest even,
 * identical to em_f32_to_f16 for every non-NaN value).
 *
 * Matmul. Every output y[c*ldy + r] is produced by one fixed sequence of operations on
 * (W row r, x column c) alone: integer block sums are exact (as in ggml), each block's
 * sum becomes 8 float lanes that are folded into one 8-lane accumulator per (row,
 * column) in block order, and the accumulator is reduced by hsum8 at the end. Tiling
 * only decides which (row, column) pairs run side by side, never the order of a pair's
 * own operations, so results are bit-identical for any row split and for a column alone
 * versus inside an 8-column call. Against ref only the float summation order differs.
 *   - Tiling: "tile" functions are always_inline with compile-time R (rows) and C
 *     (columns); each driver instantiates the shapes it uses. Decode (C = 1) runs 4 rows
 *     side by side for the 32-element types (4 independent weight streams and FMA chains);
 *     prefill unpacks each weight block once and dots it with all C columns.
 *   - q4_0 / q8_0 (x in q8_0): maddubs needs an unsigned operand, so |w| and sign(a, w)
 *     are used (ggml's trick): exact, since |w| <= 128 and |a| <= 127.
 *   - q5_0 / q5_1: as q4_0 / q4_1 with the fifth bits or'ed in (q5_fifth_bits spreads the
 *     32 bits of qh to bytes); |w| <= 16 and codes <= 31 keep maddubs exact.
 *   - q4_1 (x in q8_1): unsigned nibbles go straight into maddubs; the min term m*s of
 *     each block is accumulated for all 8 columns at once in one vector whose lane c is
 *     column c (s comes from a per-call table of the columns' scales).
 *   - The fp16 scales of the activation blocks are converted once per call into a table
 *     (xtab, [block][column]) so the inner loop broadcasts them from L1.
 *   - k-quants (x in q8_K): per 32-element run, maddubs then madd by the run's int16
 *     scale, summed in int32 lanes over the block; the q4_K/q5_K mins and the q6_K "-32"
 *     come from the q8_K bsums (madd of bsums with the mins or scales), all exact. q2_K and
 *     q3_K runs of 32 span two 16-element sub-blocks (one scale per 128-bit half); q2_K's
 *     mins and q3_K's -4 also go through the bsums.
 *   - f32 / f16 / bf16: one FMA chain of 8 lanes per (row, column); f16 and bf16 products
 *     are exact in float, so fma equals ref's multiply-then-add per term.
 *   - iq4_nl / iq4_xs: vpshufb maps the 4-bit codes to their int8 values, then the q4_0
 *     sign trick; iq4_xs applies each sub-block scale in madd. tq1_0 / tq2_0: the ternary
 *     codes (0..2) go unsigned into maddubs and sum(a) comes off through the q8_K bsums;
 *     tq1_0's base-3 bytes are decoded with 16-bit multiplies (see tq1_trits).
 *   - ember's INT2..INT8 / BFP3..BFP7 / OVP4 (x in q8_0): codes unpacked from their bit
 *     planes (or OVP4's two vpshufb tables) to a byte each, one q8_0 block per ymm; see
 *     their section.
 *
 * Attention follows attn_*_ref step for step (same expf calls, same branch on a new
 * maximum, V update as a multiply then an add without FMA, F16 accumulator rounded after
 * every update); only q.k is vectorized, summed in double lanes, so s differs from ref's
 * sequential double sum by at most an ulp of the double sum (practically never in float).
 * rmsnorm sums float squares in double lanes (as the ref). swiglu and softmax use exp256,
 * a Cephes-style expf (reduction by n*ln2 in two parts, degree-7 polynomial, 2^n in two halves
 * so subnormal results are right): at most 1.01 ulp from the exact e^x (measured on every
 * 37th float in [-104, 89]); with the divide and multiply, swiglu stays within 4 ulp of the
 * ref's libm-based result and softmax within 3 (tests/test_kernels.c bounds both at 8).
 *
 * Helpers are static inline (no function here may be compiled without the ISA flags into
 * another unit); no fast-math, so the compiler never reorders the float operations. */
#include <immintrin.h>
#include <math.h>
#include <string.h>
#include "kernels/kernels.h"
#include "kernels/attn_kv.h"
#include "kernels/tile_driver.h"

#define INLINE static inline __attribute__((always_inline))

/* ------------------------------------------------------------------ small helpers */

INLINE float h2f(uint16_t h) { return _cvtsh_ss(h); }
INLINE uint16_t f2h(float f) { return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }

/* Fixed reduction order: (lo128 + hi128), then pairs, then the last two. */
INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE double hsum4d(__m256d v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

INLINE int hsum8i(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

INLINE float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

INLINE __m256 abs8(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

/* 16 int16 pair sums -> 8 int32 lanes. */
INLINE __m256i widen16(__m256i p) { return _mm256_madd_epi16(p, _mm256_set1_epi16(1)); }

/* e^x per lane, see the file comment. Inputs are clamped to [-104, 89], beyond which expf
 * is 0 or inf anyway; NaN propagates (max/min return their second operand on NaN). */
INLINE __m256 exp256(__m256 x) {
    const __m256 xc = _mm256_min_ps(_mm256_set1_ps(89.0f), _mm256_max_ps(_mm256_set1_ps(-104.0f), x));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    /* r = x - n*ln2 with ln2 split so that n*C1 is exact. */
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    const __m256 e = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    /* 2^n as 2^n1 * 2^n2 with n1, n2 in [-75, 64]: both are normal floats, the first
     * product is exact and the second rounds once (also into the subnormal range). */
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(e, s1), s2);
}

/* ------------------------------------------------------------------ activation quantizers */

static void quant_f32(const float *x, void *y, int64_t n) {
    if (n > 0 && (const void *)x != y) memmove(y, x, (size_t)n * sizeof(float));
}

static void quant_f16(const float *x, void *vy, int64_t n) {
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = em_f32_to_f16(x[i]);
}

/* Round to nearest even on the bit pattern; NaN truncated and forced quiet (as the ref). */
static void quant_bf16(const float *x, void *vy, int64_t n) {
    uint16_t *y = vy;
    int64_t i = 0;
    const __m256i one = _mm256_set1_epi32(1), half = _mm256_set1_epi32(0x7fff);
    const __m256i absmask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    for (; i + 8 <= n; i += 8) {
        const __m256i u = _mm256_loadu_si256((const __m256i *)(x + i));
        const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
        const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(half, odd)), 16);
        const __m256i nan = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(64));
        const __m256i isnan = _mm256_cmpgt_epi32(_mm256_and_si256(u, absmask), inf);
        const __m256i v = _mm256_blendv_epi8(r, nan, isnan);
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)));
    }
    for (; i < n; i++) y[i] = em_f32_to_bf16(x[i]);
}

/* 32 floats times id, rounded to nearest even, packed to int8 in order; *sum gets the
 * sum of the rounded values. */
INLINE __m256i round_pack32(const __m256 v[4], __m256 id, int *sum) {
    __m256i q[4];
    for (int k = 0; k < 4; k++) q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], id));
    if (sum) *sum = hsum8i(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
    /* packs interleaves the 128-bit lanes; the dword permute restores element order. */
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* Shared by q8_0 and q8_1: llama.cpp's x86 scale, d = amax/127, id = 127/amax. */
INLINE void quant_q8_block(const float *x, int8_t *qs, uint16_t *d16, uint16_t *s16) {
    __m256 v[4];
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_loadu_ps(x + 8 * k);
        m = _mm256_max_ps(m, abs8(v[k]));
    }
    const float amax = hmax8(m);
    const float d = amax / 127.f;
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    int sum;
    _mm256_storeu_si256((__m256i *)qs, round_pack32(v, _mm256_set1_ps(id), s16 ? &sum : NULL));
    *d16 = f2h(d);
    if (s16) *s16 = f2h(d * (float)sum);
}

static void quant_q8_0(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / QK8_0; i++) quant_q8_block(x + i * QK8_0, y[i].qs, &y[i].d, NULL);
}

static void quant_q8_1(const float *x, void *vy, int64_t n) {
    block_q8_1 *y = vy;
    for (int64_t i = 0; i < n / QK8_1; i++) quant_q8_block(x + i * QK8_1, y[i].qs, &y[i].d, &y[i].s);
}

/* quantize_row_q8_K_ref: the scale comes from the first element of largest magnitude,
 * with its sign (see quant.c), so find its index after the vector max. */
static void quant_q8_K(const float *x, void *vy, int64_t n) {
    block_q8_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < QK_K; j += 8) m = _mm256_max_ps(m, abs8(_mm256_loadu_ps(x + j)));
        const float amax = hmax8(m);
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        int jmax = 0;
        for (int j = 0; j < QK_K; j += 8) {
            const int hit = _mm256_movemask_ps(
                _mm256_cmp_ps(abs8(_mm256_loadu_ps(x + j)), _mm256_set1_ps(amax), _CMP_EQ_OQ));
            if (hit) { jmax = j + __builtin_ctz((unsigned)hit); break; }
        }
        const float iscale = -127.f / x[jmax];
        const __m256 is = _mm256_set1_ps(iscale);
        for (int g = 0; g < QK_K; g += 32) {
            __m256i q[4];
            for (int k = 0; k < 4; k++)
                q[k] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(is, _mm256_loadu_ps(x + g + 8 * k))),
                                        _mm256_set1_epi32(127));
            y[i].bsums[g / 16] = (int16_t)hsum8i(_mm256_add_epi32(q[0], q[1]));
            y[i].bsums[g / 16 + 1] = (int16_t)hsum8i(_mm256_add_epi32(q[2], q[3]));
            const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
            _mm256_storeu_si256((__m256i *)(y[i].qs + g),
                                _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
        }
        y[i].d = 1 / iscale;
    }
}

/* ------------------------------------------------------------------ 32-element block types */

/* Activation block scales as floats, [block][column], refilled per chunk of XTAB blocks
 * when a row is longer than that (then once per row tile; same values, same results). */
#define XTAB 512
typedef struct {
    float d[XTAB][8];
    float s[XTAB][8];  /* q8_1 only: d * sum(q) */
} xtab;

/* Fills blocks [b0, b0 + nbk) for ncols columns of q8_0 (s == 0) or q8_1 activations;
 * lanes past ncols are zeroed so the vector min term never touches garbage. */
static void xtab_fill(xtab *t, int q81, const char *x, size_t xcol, int ncols, int64_t b0, int64_t nbk) {
    for (int64_t b = 0; b < nbk; b++) {
        for (int c = 0; c < 8; c++) {
            if (c >= ncols) { t->d[b][c] = 0.0f; t->s[b][c] = 0.0f; continue; }
            if (q81) {
                const block_q8_1 *xb = (const block_q8_1 *)(x + (size_t)c * xcol) + b0 + b;
                t->d[b][c] = h2f(xb->d);
                t->s[b][c] = h2f(xb->s);
            } else {
                t->d[b][c] = h2f(((const block_q8_0 *)(x + (size_t)c * xcol) + b0 + b)->d);
            }
        }
    }
}

/* The affine types (q4_1, q5_1) pair with q8_1 activations and carry a min term. */
INLINE int q32_affine(const int type) { return type == EM_Q4_1 || type == EM_Q5_1; }

INLINE size_t q32_wbytes(const int type) {
    return type == EM_Q8_0 ? sizeof(block_q8_0) : type == EM_Q4_0 ? sizeof(block_q4_0)
         : type == EM_Q4_1 ? sizeof(block_q4_1) : type == EM_Q5_0 ? sizeof(block_q5_0)
         : sizeof(block_q5_1);
}

/* The 32 nibbles of a q4/q5 block in element order (low nibbles are elements 0..15). */
INLINE __m256i nibbles32(const uint8_t *qs) {
    const __m128i raw = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_inserti128_si256(_mm256_castsi128_si256(raw), _mm_srli_epi16(raw, 4), 1),
                            _mm256_set1_epi8(0x0f));
}

/* The fifth bits of a q5 block as bytes 0x10 / 0x00: byte k of the u32 goes to bytes
 * 8k..8k+7, each of which keeps one bit (1 << (k % 8)), compared against that bit. */
INLINE __m256i q5_fifth_bits(const uint8_t qh[4]) {
    uint32_t bits;
    memcpy(&bits, qh, 4);
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits),
        _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                         2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    const __m256i one_bit = _mm256_set1_epi64x(0x8040201008040201ll);
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, one_bit), one_bit);
    return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

/* One 32-weight block of row r as int8 (unsigned codes for q4_1 / q5_1) plus its scales. */
INLINE void q32_unpack(const int type, const char *wr, int64_t b, __m256i *wq, __m256i *wa,
                       __m256 *wd, __m256 *wm) {
    if (type == EM_Q8_0) {
        const block_q8_0 *blk = (const block_q8_0 *)wr + b;
        *wq = _mm256_loadu_si256((const __m256i *)blk->qs);
        *wa = _mm256_sign_epi8(*wq, *wq);
        *wd = _mm256_set1_ps(h2f(blk->d));
    } else if (type == EM_Q4_0) {
        const block_q4_0 *blk = (const block_q4_0 *)wr + b;
        *wq = _mm256_sub_epi8(nibbles32(blk->qs), _mm256_set1_epi8(8));
        *wa = _mm256_sign_epi8(*wq, *wq);
        *wd = _mm256_set1_ps(h2f(blk->d));
    } else if (type == EM_Q5_0) {  /* codes -16..15: |w| <= 16, maddubs stays exact */
        const block_q5_0 *blk = (const block_q5_0 *)wr + b;
        *wq = _mm256_sub_epi8(_mm256_or_si256(nibbles32(blk->qs), q5_fifth_bits(blk->qh)), _mm256_set1_epi8(16));
        *wa = _mm256_sign_epi8(*wq, *wq);
        *wd = _mm256_set1_ps(h2f(blk->d));
    } else if (type == EM_Q5_1) {  /* codes 0..31 */
        const block_q5_1 *blk = (const block_q5_1 *)wr + b;
        *wq = _mm256_or_si256(nibbles32(blk->qs), q5_fifth_bits(blk->qh));
        *wd = _mm256_set1_ps(h2f(blk->d));
        *wm = _mm256_set1_ps(h2f(blk->m));
    } else {
        const block_q4_1 *blk = (const block_q4_1 *)wr + b;
        *wq = nibbles32(blk->qs);
        *wd = _mm256_set1_ps(h2f(blk->d));
        *wm = _mm256_set1_ps(h2f(blk->m));
    }
}


/* R rows x C columns of a q4_0 / q4_1 / q5_0 / q5_1 / q8_0 matmul. w and y point at the tile's first
 * row; t holds the column scales (filled by the caller when nb <= XTAB). */
INLINE void q32_tile(const int type, const int R, const int C, int64_t nb, const char *w, size_t wrow,
                     const char *x, size_t xcol, xtab *t, float *y, int ldy) {
    const size_t xbs = q32_affine(type) ? sizeof(block_q8_1) : sizeof(block_q8_0);
    const size_t wbs = q32_wbytes(type);
    __m256 acc[4][8], macc[4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        macc[r] = _mm256_setzero_ps();
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
    }
    for (int64_t b0 = 0; b0 < nb; b0 += XTAB) {
        const int64_t nbk = nb - b0 < XTAB ? nb - b0 : XTAB;
        if (nb > XTAB) xtab_fill(t, q32_affine(type), x, xcol, C, b0, nbk);
        for (int64_t b = 0; b < nbk; b++) {
            /* row by row, so only one row's unpacked block is live (no spills at R = 4);
             * the activation loads repeat per row but hit L1. */
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m256i wq, wa = _mm256_setzero_si256();
                __m256 wd, wm = _mm256_setzero_ps();
                _mm_prefetch(w + (size_t)r * wrow + (size_t)(b0 + b) * wbs + 512, _MM_HINT_T0);
                q32_unpack(type, w + (size_t)r * wrow, b0 + b, &wq, &wa, &wd, &wm);
                if (q32_affine(type))  /* min term for all columns at once: lane c = column c */
                    macc[r] = _mm256_fmadd_ps(wm, _mm256_loadu_ps(t->s[b]), macc[r]);
#pragma GCC unroll 8
                for (int c = 0; c < C; c++) {
                    /* qs sits right after the 2 (q8_0) or 4 (q8_1) header bytes */
                    const char *xb = x + (size_t)c * xcol + (size_t)(b0 + b) * xbs + (xbs - QK8_0);
                    const __m256i a = _mm256_loadu_si256((const __m256i *)xb);
                    const __m256 dx = _mm256_broadcast_ss(&t->d[b][c]);
                    const __m256i p = q32_affine(type) ? _mm256_maddubs_epi16(wq, a)
                                                      : _mm256_maddubs_epi16(wa, _mm256_sign_epi8(a, wq));
                    acc[r][c] = _mm256_fmadd_ps(_mm256_mul_ps(wd, dx), _mm256_cvtepi32_ps(widen16(p)), acc[r][c]);
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
            y[(size_t)c * ldy + r] = q32_affine(type) ? hsum8(acc[r][c]) + mins[c] : hsum8(acc[r][c]);
    }
}

/* Decode (1 column) takes 4 rows at a time, 2 columns 2 rows, wider calls 1 row. */
INLINE void mm_q32(const int type, int64_t n, const void *w, size_t wrow, int r0, int r1,
                   const void *x, size_t xcol, int ncols, float *y, int ldy) {
    xtab t;
    const int64_t nb = n / QK8_0;
    if (nb <= XTAB) xtab_fill(&t, q32_affine(type), x, xcol, ncols, 0, nb);
    const char *wc = w;
    int r = r0;
#define TILE(R, C) q32_tile(type, R, C, nb, wc + (size_t)r * wrow, wrow, x, xcol, &t, y + r, ldy)
    if (ncols == 1) for (; r + 4 <= r1; r += 4) TILE(4, 1);
    if (ncols == 2) for (; r + 2 <= r1; r += 2) TILE(2, 2);
    for (; r < r1; r++) {
        EM_COLS_1_8_R(ncols, TILE, 1);
    }
#undef TILE
}

EM_MM_WRAP(mm_q4_0, mm_q32, EM_Q4_0)
EM_MM_WRAP(mm_q4_1, mm_q32, EM_Q4_1)
EM_MM_WRAP(mm_q5_0, mm_q32, EM_Q5_0)
EM_MM_WRAP(mm_q5_1, mm_q32, EM_Q5_1)
EM_MM_WRAP(mm_q8_0, mm_q32, EM_Q8_0)

/* ------------------------------------------------------------------ k-quants */

/* The 8 six-bit scales and mins of a q4_K/q5_K block (layout in quant.c's
 * get_scale_min_k4), as int16: sc16 lane k = scale k; mins2 = m0,m0,m1,m1,...,m7,m7 to
 * line up with the 16 bsums (two per 32-element sub-block). */
INLINE void k4_scales(const uint8_t s[12], __m256i *sc16, __m256i *mins2) {
    uint32_t u[3];
    memcpy(u, s, 12);
    const uint32_t sc_lo = u[0] & 0x3f3f3f3f, mn_lo = u[1] & 0x3f3f3f3f;
    const uint32_t sc_hi = (u[2] & 0x0f0f0f0f) | ((u[0] >> 2) & 0x30303030);
    const uint32_t mn_hi = ((u[2] >> 4) & 0x0f0f0f0f) | ((u[1] >> 2) & 0x30303030);
    const __m128i sc = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)(sc_lo | (uint64_t)sc_hi << 32)));
    const __m128i mn = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)(mn_lo | (uint64_t)mn_hi << 32)));
    *sc16 = _mm256_broadcastsi128_si256(sc);
    *mins2 = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi16(mn, mn)),
                                     _mm_unpackhi_epi16(mn, mn), 1);
}

/* Broadcast int16 lane k of each 128-bit half of v (lo half -> klo, hi half -> khi). */
INLINE __m256i bcast16(__m256i v, int klo, int khi) {
    const short lo = (short)((2 * klo + 1) << 8 | 2 * klo), hi = (short)((2 * khi + 1) << 8 | 2 * khi);
    return _mm256_shuffle_epi8(v, _mm256_setr_m128i(_mm_set1_epi16(lo), _mm_set1_epi16(hi)));
}

INLINE const block_q8_K *xk(const char *x, size_t xcol, int c, int64_t b) {
    return (const block_q8_K *)(x + (size_t)c * xcol) + b;
}

/* Adds the 32-weight run w (int8, unsigned) times scale vector sc to the int32 lanes of
 * every column, against activation bytes [off, off+32) of block b. */
INLINE void k_run(const int C, __m256i w, __m256i sc, const char *x, size_t xcol, int64_t b, int off,
                  __m256i L[8]) {
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) {
        const __m256i a = _mm256_loadu_si256((const __m256i *)(xk(x, xcol, c, b)->qs + off));
        L[c] = _mm256_add_epi32(L[c], _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), sc));
    }
}

/* q4_K (hb5 == 0) or q5_K: one row, C columns. Per 64 weights: 32 bytes of low/high
 * nibbles (sub-blocks 2j, 2j+1), and for q5_K bits 2j, 2j+1 of qh as the fifth bit. */
INLINE void k45_tile(const int q5, const int C, int64_t nb, const char *wr, const char *x, size_t xcol,
                     float *y, int ldy) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), b4 = _mm256_set1_epi8(0x10);
    __m256 acc[8];
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *qs, *scales;
        __m256i hb = _mm256_setzero_si256();
        uint16_t d16, dm16;
        if (q5) {
            const block_q5_K *blk = (const block_q5_K *)wr + b;
            qs = blk->qs; scales = blk->scales; d16 = blk->d; dm16 = blk->dmin;
            hb = _mm256_loadu_si256((const __m256i *)blk->qh);
        } else {
            const block_q4_K *blk = (const block_q4_K *)wr + b;
            qs = blk->qs; scales = blk->scales; d16 = blk->d; dm16 = blk->dmin;
        }
        _mm_prefetch((const char *)qs + 4 * (q5 ? sizeof(block_q5_K) : sizeof(block_q4_K)), _MM_HINT_T0);
        __m256i sc16, mins2, L[8];
        k4_scales(scales, &sc16, &mins2);
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) L[c] = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
            __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            if (q5) {
                const __m256i h = _mm256_srli_epi16(hb, 2 * j);
                lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(h, 4), b4));
                hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(h, 3), b4));
            }
            k_run(C, lo, bcast16(sc16, 2 * j, 2 * j), x, xcol, b, 64 * j, L);
            k_run(C, hi, bcast16(sc16, 2 * j + 1, 2 * j + 1), x, xcol, b, 64 * j + 32, L);
        }
        const float d = h2f(d16), dmin = h2f(dm16);
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            const block_q8_K *a = xk(x, xcol, c, b);
            const __m256i M = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)a->bsums), mins2);
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * a->d), _mm256_cvtepi32_ps(L[c]), acc[c]);
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(-dmin * a->d), _mm256_cvtepi32_ps(M), acc[c]);
        }
    }
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) y[(size_t)c * ldy] = hsum8(acc[c]);
}

/* q6_K: one row, C columns. Weights stay unsigned (0..63) for maddubs; the -32 offset is
 * 32 * sum(scale_j * bsum_j), subtracted in the integer lanes. */
INLINE void q6k_tile(const int C, int64_t nb, const char *wr, const char *x, size_t xcol, float *y, int ldy) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x30);
    __m256 acc[8];
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const block_q6_K *blk = (const block_q6_K *)wr + b;
        _mm_prefetch((const char *)blk + 4 * sizeof *blk, _MM_HINT_T0);
        _mm_prefetch((const char *)blk + 4 * sizeof *blk + 64, _MM_HINT_T0);
        const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)blk->scales));
        const __m256i sc_lo = _mm256_permute2x128_si256(sc, sc, 0x00), sc_hi = _mm256_permute2x128_si256(sc, sc, 0x11);
        __m256i L[8];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) L[c] = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i A = _mm256_loadu_si256((const __m256i *)(blk->ql + 64 * h));
            const __m256i B = _mm256_loadu_si256((const __m256i *)(blk->ql + 64 * h + 32));
            const __m256i H = _mm256_loadu_si256((const __m256i *)(blk->qh + 32 * h));
            const __m256i s = h ? sc_hi : sc_lo;  /* runs 4h..4h+3 use scales 8h..8h+7 */
            const __m256i w0 = _mm256_or_si256(_mm256_and_si256(A, m4), _mm256_and_si256(_mm256_slli_epi16(H, 4), m2));
            k_run(C, w0, bcast16(s, 0, 1), x, xcol, b, 128 * h, L);
            const __m256i w1 = _mm256_or_si256(_mm256_and_si256(B, m4), _mm256_and_si256(_mm256_slli_epi16(H, 2), m2));
            k_run(C, w1, bcast16(s, 2, 3), x, xcol, b, 128 * h + 32, L);
            const __m256i w2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), m4), _mm256_and_si256(H, m2));
            k_run(C, w2, bcast16(s, 4, 5), x, xcol, b, 128 * h + 64, L);
            const __m256i w3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(B, 4), m4),
                                               _mm256_and_si256(_mm256_srli_epi16(H, 2), m2));
            k_run(C, w3, bcast16(s, 6, 7), x, xcol, b, 128 * h + 96, L);
        }
        const float d = h2f(blk->d);
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            const block_q8_K *a = xk(x, xcol, c, b);
            const __m256i M = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)a->bsums), sc);
            const __m256i Lc = _mm256_sub_epi32(L[c], _mm256_slli_epi32(M, 5));
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * a->d), _mm256_cvtepi32_ps(Lc), acc[c]);
        }
    }
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) y[(size_t)c * ldy] = hsum8(acc[c]);
}

/* One row at a time: a k-quant block already carries 256 weights of work per column. */
INLINE void mm_k(const int type, int64_t n, const void *w, size_t wrow, int r0, int r1, const void *x,
                 size_t xcol, int ncols, float *y, int ldy) {
    const int64_t nb = n / QK_K;
    for (int r = r0; r < r1; r++) {
        const char *wr = (const char *)w + (size_t)r * wrow;
#define TILE(C) (type == EM_Q6_K ? q6k_tile(C, nb, wr, x, xcol, y + r, ldy) \
                                 : k45_tile(type == EM_Q5_K, C, nb, wr, x, xcol, y + r, ldy))
        EM_COLS_1_8(ncols, TILE);
#undef TILE
    }
}

EM_MM_WRAP(mm_q4_K, mm_k, EM_Q4_K)
EM_MM_WRAP(mm_q5_K, mm_k, EM_Q5_K)
EM_MM_WRAP(mm_q6_K, mm_k, EM_Q6_K)

/* Q2_K and Q3_K: one row, C columns. Per 128-element half h, 32 bytes of qs hold four
 * 2-bit planes; run p (elements 128h + 32p ..) is bits 2p of each byte, and spans
 * sub-blocks 8h + 2p (low 128 bits) and 8h + 2p + 1 (high), each with its own scale.
 *   Q2_K: weights 0..3; scales are low nibbles, mins high nibbles; the mins term is
 *         madd(bsums, mins) with factor -dmin (16 sub-blocks = 16 bsums).
 *   Q3_K: weight + 4 = plane | (bit 4h+p of hmask[l]) << 2, 0..7 for maddubs; the -4
 *         is 4 * sum(scale_j * bsum_j), subtracted in the integer lanes (as Q6_K's -32). */
INLINE void k23_tile(const int q3, const int C, int64_t nb, const char *wr, const char *x, size_t xcol,
                     float *y, int ldy) {
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    __m256 acc[8];
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *qs;
        __m256i sc, mn = _mm256_setzero_si256(), H = _mm256_setzero_si256();
        float d, dmin = 0.0f;
        if (q3) {
            const block_q3_K *blk = (const block_q3_K *)wr + b;
            _mm_prefetch((const char *)blk + 4 * sizeof *blk, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + 4 * sizeof *blk + 64, _MM_HINT_T0);
            qs = blk->qs;
            H = _mm256_loadu_si256((const __m256i *)blk->hmask);
            uint32_t a[3], u[4];
            memcpy(a, blk->scales, 12);
            u[0] = (a[0] & 0x0f0f0f0f) | ((a[2] & 0x03030303) << 4);
            u[1] = (a[1] & 0x0f0f0f0f) | (((a[2] >> 2) & 0x03030303) << 4);
            u[2] = ((a[0] >> 4) & 0x0f0f0f0f) | (((a[2] >> 4) & 0x03030303) << 4);
            u[3] = ((a[1] >> 4) & 0x0f0f0f0f) | (((a[2] >> 6) & 0x03030303) << 4);
            sc = _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm_set_epi32((int)u[3], (int)u[2], (int)u[1], (int)u[0])), _mm256_set1_epi16(32));
            d = h2f(blk->d);
        } else {
            const block_q2_K *blk = (const block_q2_K *)wr + b;
            _mm_prefetch((const char *)blk + 4 * sizeof *blk, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + 4 * sizeof *blk + 64, _MM_HINT_T0);
            qs = blk->qs;
            const __m256i s8 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)blk->scales));
            sc = _mm256_and_si256(s8, _mm256_set1_epi16(0xF));
            mn = _mm256_srli_epi16(s8, 4);
            d = h2f(blk->d);
            dmin = h2f(blk->dmin);
        }
        __m256i L[8];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) L[c] = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i Q = _mm256_loadu_si256((const __m256i *)(qs + 32 * h));
            const __m256i s = _mm256_permute2x128_si256(sc, sc, h ? 0x11 : 0x00);  /* scales 8h..8h+7 */
#pragma GCC unroll 4
            for (int p = 0; p < 4; p++) {
                __m256i w = _mm256_and_si256(_mm256_srli_epi16(Q, 2 * p), m3);
                if (q3) w = _mm256_or_si256(w, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(H, 4 * h + p), one), 2));
                k_run(C, w, bcast16(s, 2 * p, 2 * p + 1), x, xcol, b, 128 * h + 32 * p, L);
            }
        }
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            const block_q8_K *a = xk(x, xcol, c, b);
            const __m256i bs = _mm256_loadu_si256((const __m256i *)a->bsums);
            if (q3) {
                const __m256i Lc = _mm256_sub_epi32(L[c], _mm256_slli_epi32(_mm256_madd_epi16(bs, sc), 2));
                acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * a->d), _mm256_cvtepi32_ps(Lc), acc[c]);
            } else {
                /* mins first, as llama.cpp's AVX2 q2_K: the same float steps, so its logits */
                acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(-dmin * a->d), _mm256_cvtepi32_ps(_mm256_madd_epi16(bs, mn)), acc[c]);
                acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * a->d), _mm256_cvtepi32_ps(L[c]), acc[c]);
            }
        }
    }
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) y[(size_t)c * ldy] = hsum8(acc[c]);
}

INLINE void mm_k23(const int q3, int64_t n, const void *w, size_t wrow, int r0, int r1, const void *x,
                   size_t xcol, int ncols, float *y, int ldy) {
    const int64_t nb = n / QK_K;
    for (int r = r0; r < r1; r++) {
        const char *wr = (const char *)w + (size_t)r * wrow;
#define TILE(C) k23_tile(q3, C, nb, wr, x, xcol, y + r, ldy)
        EM_COLS_1_8(ncols, TILE);
#undef TILE
    }
}

EM_MM_WRAP(mm_q2_K, mm_k23, 0)
EM_MM_WRAP(mm_q3_K, mm_k23, 1)

/* ------------------------------------------------------------------ float weight types */

/* 8 elements of an f32 / f16 / bf16 row starting at element i, as floats. */
INLINE __m256 ld8(const int type, const char *p, int64_t i) {
    if (type == EM_F32) return _mm256_loadu_ps((const float *)p + i);
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + i));
    if (type == EM_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* The last rem < 8 elements, zero padded (zeros add nothing to the dot product). */
INLINE __m256 ld_tail(const int type, const char *p, int64_t i, int rem) {
    _Alignas(32) char buf[32] = { 0 };
    const size_t es = type == EM_F32 ? 4 : 2;
    memcpy(buf, p + (size_t)i * es, (size_t)rem * es);
    return ld8(type, buf, 0);
}

INLINE void fp_tile(const int type, const int R, const int C, int64_t n, const char *w, size_t wrow,
                    const char *x, size_t xcol, float *y, int ldy) {
    __m256 acc[4][8], wv[4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) wv[r] = ld8(type, w + (size_t)r * wrow, i);
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            const __m256 xv = ld8(type, x + (size_t)c * xcol, i);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) acc[r][c] = _mm256_fmadd_ps(wv[r], xv, acc[r][c]);
        }
    }
    if (i < n) {
        const int rem = (int)(n - i);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) wv[r] = ld_tail(type, w + (size_t)r * wrow, i, rem);
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            const __m256 xv = ld_tail(type, x + (size_t)c * xcol, i, rem);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) acc[r][c] = _mm256_fmadd_ps(wv[r], xv, acc[r][c]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) y[(size_t)c * ldy + r] = hsum8(acc[r][c]);
}

/* Float weights: tile_driver.h's driver (4-row decode, 4-column groups) over fp_tile. */
EM_DEFINE_MM_FP(mm_fp)

EM_MM_WRAP(mm_f32, mm_fp, EM_F32)
EM_MM_WRAP(mm_f16, mm_fp, EM_F16)
EM_MM_WRAP(mm_bf16, mm_fp, EM_BF16)

/* ------------------------------------------------------------------ norms and activations */

static void rmsnorm_avx2(float *o, const float *x, const float *w, int n, float eps) {
    /* float squares summed in double lanes, as the ref (and ggml) */
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i), sq = _mm256_mul_ps(v, v);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
    }
    double ss = hsum4d(_mm256_add_pd(s0, s1));
    for (int j = i; j < n; j++) ss += (double)(x[j] * x[j]);
    const float scale = 1.0f / sqrtf((float)(ss / n) + eps);
    const __m256 sv = _mm256_set1_ps(scale);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), sv), _mm256_loadu_ps(w + i)));
    for (; i < n; i++) o[i] = (x[i] * scale) * w[i];
}

static void swiglu_avx2(float *h, const float *g, const float *u, int n) {
    const __m256 one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-0.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 gv = _mm256_loadu_ps(g + i);
        const __m256 den = _mm256_add_ps(one, exp256(_mm256_xor_ps(gv, neg)));
        _mm256_storeu_ps(h + i, _mm256_mul_ps(_mm256_div_ps(gv, den), _mm256_loadu_ps(u + i)));
    }
    if (i < n) {  /* tail through the same vector code so every element has one formula */
        float gb[8] = { 0 }, ub[8] = { 0 }, hb[8];
        memcpy(gb, g + i, (size_t)(n - i) * sizeof(float));
        memcpy(ub, u + i, (size_t)(n - i) * sizeof(float));
        const __m256 gv = _mm256_loadu_ps(gb);
        const __m256 den = _mm256_add_ps(one, exp256(_mm256_xor_ps(gv, neg)));
        _mm256_storeu_ps(hb, _mm256_mul_ps(_mm256_div_ps(gv, den), _mm256_loadu_ps(ub)));
        memcpy(h + i, hb, (size_t)(n - i) * sizeof(float));
    }
}

static void softmax_avx2(float *x, int n) {
    __m256 mv = _mm256_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 8 <= n; i += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + i));
    float max = hmax8(mv);
    for (int j = i; j < n; j++) max = x[j] > max ? x[j] : max;
    const __m256 maxv = _mm256_set1_ps(max);
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    for (i = 0; i + 8 <= n; i += 8) {
        const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), maxv));
        _mm256_storeu_ps(x + i, e);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double sum = hsum4d(_mm256_add_pd(s0, s1));
    if (i < n) {
        float b[8];
        for (int j = 0; j < 8; j++) b[j] = i + j < n ? x[i + j] - max : -INFINITY;
        _mm256_storeu_ps(b, exp256(_mm256_loadu_ps(b)));
        for (int j = 0; i + j < n; j++) { x[i + j] = b[j]; sum += b[j]; }
    }
    const float inv = (float)(1.0 / sum);
    const __m256 iv = _mm256_set1_ps(inv);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), iv));
    for (; i < n; i++) x[i] *= inv;
}

/* e^x = p * 2^n for the two-pass softmax (as extexp512 in kern_avx512.c). */
INLINE void extexp256(__m256 x, __m256 *p, __m256 *n) {
    x = _mm256_min_ps(_mm256_set1_ps(0x1p22f), _mm256_max_ps(_mm256_set1_ps(-0x1p22f), x));
    *n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(0x1.715476p+0f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 t = _mm256_fnmadd_ps(*n, _mm256_set1_ps(0x1.62E43p-1f), x);
    t = _mm256_fnmadd_ps(*n, _mm256_set1_ps(-0x1.05C61p-29f), t);
    __m256 q = _mm256_set1_ps(0x1.0F9F9Cp-7f);
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(0x1.573A1Ap-5f));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(0x1.555A80p-3f));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(0x1.FFFDC6p-2f));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(0x1.FFFFF6p-1f));
    *p = _mm256_fmadd_ps(q, t, _mm256_set1_ps(1.0f));
}

/* 2^d for integer-valued d <= 0 by the magic-bias trick: d + (1.5 * 2^23 + 127) puts
 * 127 + d in the low mantissa bits, and a shift by 23 moves them into the exponent.
 * d is clamped at -127 first, which gives +0 (and turns -inf and NaN into 0). */
INLINE __m256 pow2_nonpos(__m256 d) {
    d = _mm256_max_ps(d, _mm256_set1_ps(-127.0f));
    const __m256i b = _mm256_castps_si256(_mm256_add_ps(d, _mm256_set1_ps(0x1.8000FEp23f)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(b, 23));
}

/* Two-pass softmax with four (M, E) accumulators per lane. A NaN input leaves E alone
 * (max returns its second operand) and makes M NaN, so every output is NaN. */
static void softmax2_avx2(float *x, int n) {
    __m256 M[4], E[4];
    for (int a = 0; a < 4; a++) { M[a] = _mm256_setzero_ps(); E[a] = _mm256_set1_ps(-INFINITY); }
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        for (int a = 0; a < 4; a++) {
            __m256 p, e;
            extexp256(_mm256_loadu_ps(x + i + 8 * a), &p, &e);
            const __m256 e2 = _mm256_max_ps(e, E[a]);
            M[a] = _mm256_add_ps(_mm256_mul_ps(M[a], pow2_nonpos(_mm256_sub_ps(E[a], e2))),
                                 _mm256_mul_ps(p, pow2_nonpos(_mm256_sub_ps(e, e2))));
            E[a] = e2;
        }
    }
    /* The tail: up to 31 values, masked lanes load -inf and are left out of M and E. */
    for (; i < n; i += 8) {
        float b[8];
        for (int j = 0; j < 8; j++) b[j] = i + j < n ? x[i + j] : 0.0f;
        const __m256 live = _mm256_cmp_ps(_mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_ps((float)(n - i)), _CMP_LT_OQ);
        __m256 p, e;
        extexp256(_mm256_loadu_ps(b), &p, &e);
        const __m256 e2 = _mm256_blendv_ps(E[0], _mm256_max_ps(e, E[0]), live);
        const __m256 m2 = _mm256_add_ps(_mm256_mul_ps(M[0], pow2_nonpos(_mm256_sub_ps(E[0], e2))),
                                        _mm256_mul_ps(p, pow2_nonpos(_mm256_sub_ps(e, e2))));
        M[0] = _mm256_blendv_ps(M[0], m2, live);
        E[0] = e2;
    }
    const float emax = hmax8(_mm256_max_ps(_mm256_max_ps(E[0], E[1]), _mm256_max_ps(E[2], E[3])));
    const __m256 Ev = _mm256_set1_ps(emax);
    __m256 Ms = _mm256_setzero_ps();
    for (int a = 0; a < 4; a++) Ms = _mm256_add_ps(Ms, _mm256_mul_ps(M[a], pow2_nonpos(_mm256_sub_ps(E[a], Ev))));
    float ms[8];
    _mm256_storeu_ps(ms, Ms);
    float sum = 0.0f;
    for (int j = 0; j < 8; j++) sum += ms[j];
    const __m256 inv = _mm256_set1_ps(1.0f / sum);
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 p, e;
        extexp256(_mm256_loadu_ps(x + i), &p, &e);
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_mul_ps(p, inv), pow2_nonpos(_mm256_sub_ps(e, Ev))));
    }
    if (i < n) {
        float b[8] = { 0 };
        memcpy(b, x + i, (size_t)(n - i) * sizeof(float));
        __m256 p, e;
        extexp256(_mm256_loadu_ps(b), &p, &e);
        _mm256_storeu_ps(b, _mm256_mul_ps(_mm256_mul_ps(p, inv), pow2_nonpos(_mm256_sub_ps(e, Ev))));
        memcpy(x + i, b, (size_t)(n - i) * sizeof(float));
    }
}

/* ------------------------------------------------------------------ attention */


/* q.k in double lanes (products of floats are exact in double). qd holds q as doubles. */
INLINE double dot_qk(const int f16, const double *qd, const void *kp, int hd) {
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    int i = 0;
    for (; i + 8 <= hd; i += 8) {
        const __m256 kv = f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)kp + i)))
                              : _mm256_loadu_ps((const float *)kp + i);
        a0 = _mm256_fmadd_pd(_mm256_loadu_pd(qd + i), _mm256_cvtps_pd(_mm256_castps256_ps128(kv)), a0);
        a1 = _mm256_fmadd_pd(_mm256_loadu_pd(qd + i + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(kv, 1)), a1);
    }
    double s = hsum4d(_mm256_add_pd(a0, a1));
    for (; i < hd; i++) {
        const double p = qd[i] * (f16 ? (double)em_f16_to_f32(((const uint16_t *)kp)[i]) : (double)((const float *)kp)[i]);
        s += p;
    }
    return s;
}

/* The F16 score of kern_ref.c's dot_f16_ggml: 4 x 8 float lanes of fused products. */
INLINE double dot_qk_f16(const float *q, const uint16_t *k, int hd) {
    const int n32 = hd & ~31;
    double s = 0.0;
    if (n32) {
        __m256 a[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps() };
        for (int i = 0; i < n32; i += 32)
            for (int j = 0; j < 4; j++)
                a[j] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i + 8 * j))),
                                       _mm256_loadu_ps(q + i + 8 * j), a[j]);
        const __m256 r = _mm256_add_ps(_mm256_add_ps(a[0], a[2]), _mm256_add_ps(a[1], a[3]));
        const __m128 t0 = _mm_add_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps(r, 1));
        const __m128 t1 = _mm_hadd_ps(t0, t0);
        s = (double)_mm_cvtss_f32(_mm_hadd_ps(t1, t1));
    }
    for (int i = n32; i < hd; i++) s += (double)(em_f16_to_f32(k[i]) * q[i]);
    return s;
}

/* acc = acc * ms, or acc += v * w when v is given: F32 multiplies and adds rounded
 * separately as in the ref; an F16 accumulator adds the first hd & ~31 with a fused
 * multiply-add and is rounded to F16 after each step. */
INLINE void acc_update(const int f16, void *accp, const void *vp, float m, int hd) {
    const __m256 mv = _mm256_set1_ps(m);
    int i = 0;
    if (f16) {
        uint16_t *acc = accp;
        const uint16_t *v = vp;
        const int n32 = hd & ~31;
        for (; i + 8 <= hd; i += 8) {
            const __m256 a = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(acc + i)));
            const __m256 vv = v ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + i))) : a;
            const __m256 r = !v ? _mm256_mul_ps(a, mv)
                           : i < n32 ? _mm256_fmadd_ps(vv, mv, a) : _mm256_add_ps(a, _mm256_mul_ps(vv, mv));
            _mm_storeu_si128((__m128i *)(acc + i), _mm256_cvtps_ph(r, _MM_FROUND_TO_NEAREST_INT));
        }
        for (; i < hd; i++) {
            const float a = em_f16_to_f32(acc[i]);
            acc[i] = em_f32_to_f16(v ? a + em_f16_to_f32(v[i]) * m : a * m);
        }
    } else {
        float *acc = accp;
        const float *v = vp;
        for (; i + 8 <= hd; i += 8) {
            const __m256 a = _mm256_loadu_ps(acc + i);
            _mm256_storeu_ps(acc + i, v ? _mm256_add_ps(a, _mm256_mul_ps(_mm256_loadu_ps(v + i), mv)) : _mm256_mul_ps(a, mv));
        }
        for (; i < hd; i++) {
            const float t = v ? v[i] * m : 0.0f;
            acc[i] = v ? acc[i] + t : acc[i] * m;
        }
    }
}

/* One-pass attention of a GQA group, step for step as attn_x in kern_ref.c (same expf
 * calls; only the double sums of the dot products are in another order). Each K and V
 * row is read once for the whole group. */
INLINE void attn_common(const int f16, float *out, const float *q, int n_q, const void *k, const void *v,
                        int n_kv, int hd, size_t kstride, float scale) {
    enum { G = EM_ATTN_MAX_GROUP };
    double qd[G][EM_ATTN_MAX_HD];
    float qf[G][EM_ATTN_MAX_HD];  /* F16: q rounded to F16, as floats */
    _Alignas(32) uint16_t acc16[G][EM_ATTN_MAX_HD];
    float M[G], S[G];
    const size_t es = f16 ? 2 : 4;
    for (int h = 0; h < n_q; h++) {
        M[h] = -INFINITY;
        S[h] = 0.0f;
        for (int i = 0; i < hd; i++) {
            qf[h][i] = f16 ? em_f16_to_f32(em_f32_to_f16(q[h * hd + i])) : q[h * hd + i];
            qd[h][i] = (double)qf[h][i];
            acc16[h][i] = 0;
            out[h * hd + i] = 0.0f;
        }
    }
    for (int j = 0; j < n_kv; j++) {
        const char *kt = (const char *)k + (size_t)j * kstride * es, *vt = (const char *)v + (size_t)j * kstride * es;
        for (int h = 0; h < n_q; h++) {
            void *acc = f16 ? (void *)acc16[h] : (void *)(out + h * hd);
            const float s = (float)(f16 ? dot_qk_f16(qf[h], (const uint16_t *)kt, hd) : dot_qk(0, qd[h], kt, hd)) * scale;
            float ms = 1.0f, vs = 1.0f;
            if (s > M[h]) {
                ms = expf(M[h] - s);
                M[h] = s;
                acc_update(f16, acc, NULL, ms, hd);
            } else {
                vs = expf(s - M[h]);
            }
            acc_update(f16, acc, vt, vs, hd);
            const float Sm = S[h] * ms;  /* two statements: no FMA contraction (clang), as ref */
            S[h] = f16 ? fmaf(S[h], ms, vs) : Sm + vs;
        }
    }
    for (int h = 0; h < n_q; h++) {
        const float inv = S[h] == 0.0f ? 0.0f : 1.0f / S[h];
        for (int i = 0; i < hd; i++) out[h * hd + i] = (f16 ? em_f16_to_f32(acc16[h][i]) : out[h * hd + i]) * inv;
    }
}

static void attn_f32(float *out, const float *q, int n_q, const void *k, const void *v, int n_kv, int hd,
                     size_t kstride, float scale) {
    attn_common(0, out, q, n_q, k, v, n_kv, hd, kstride, scale);
}
static void attn_f16(float *out, const float *q, int n_q, const void *k, const void *v, int n_kv, int hd,
                     size_t kstride, float scale) {
    attn_common(1, out, q, n_q, k, v, n_kv, hd, kstride, scale);
}

/* ------------------------------------------------------------------ iq4_nl, iq4_xs, tq1_0, tq2_0 */

/* IQ4 weights: the 4-bit codes index em_iq4nl_values (16 int8) with vpshufb; |w| <= 127,
 * so maddubs(|w|, sign(a, w)) is exact (the q4_0 trick). The ternary types keep their
 * codes unsigned (0..2; 3 in a corrupt tq2_0 byte just means 2, as in ref) for maddubs and
 * subtract sum(a) from the q8_K bsums, all in exact integers. */
INLINE __m256i iq4_values(__m256i codes) {
    const __m256i tab = _mm256_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
                                         -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);
    return _mm256_shuffle_epi8(tab, codes);
}

/* Signed 32-byte dot as 16 int16 pair sums (w as |w| with its sign moved onto a). */
INLINE __m256i sdot16(__m256i w, __m256i a) {
    return _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
}

/* iq4_nl (x in q8_0): R rows x C columns; decode runs 4 rows side by side. The float order
 * is that of llama.cpp's AVX2 ggml_vec_dot_iq4_nl_q8_0 (its decode path): blocks 2i and
 * 2i+1 go to two accumulators (fma of dy*dw with the 8 int32 lanes), added and reduced at
 * the end; with an odd block count the last block is added in ref's scalar form. */
INLINE void iq4nl_tile(const int R, const int C, int64_t nb, const char *w, size_t wrow, const char *x,
                       size_t xcol, float *y, int ldy) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[4][8][2];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) acc[r][c][0] = acc[r][c][1] = _mm256_setzero_ps();
    const int64_t nb2 = nb & ~(int64_t)1;
    for (int64_t b = 0; b < nb2; b++) {
        const int k = (int)(b & 1);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const block_iq4_nl *blk = (const block_iq4_nl *)(w + (size_t)r * wrow) + b;
            _mm_prefetch((const char *)blk + 512, _MM_HINT_T0);
            const __m256i wq = iq4_values(nibbles32(blk->qs));
            const float dw = h2f(blk->d);
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) {
                const block_q8_0 *a = (const block_q8_0 *)(x + (size_t)c * xcol) + b;
                const __m256i s = _mm256_madd_epi16(sdot16(wq, _mm256_loadu_si256((const __m256i *)a->qs)), ones);
                acc[r][c][k] = _mm256_fmadd_ps(_mm256_set1_ps(h2f(a->d) * dw), _mm256_cvtepi32_ps(s), acc[r][c][k]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            float sumf = hsum8(_mm256_add_ps(acc[r][c][0], acc[r][c][1]));
            if (nb2 < nb) {
                const block_iq4_nl *blk = (const block_iq4_nl *)(w + (size_t)r * wrow) + nb2;
                const block_q8_0 *a = (const block_q8_0 *)(x + (size_t)c * xcol) + nb2;
                const __m256i s = _mm256_madd_epi16(sdot16(iq4_values(nibbles32(blk->qs)),
                                                           _mm256_loadu_si256((const __m256i *)a->qs)), ones);
                sumf += (h2f(a->d) * h2f(blk->d)) * (float)hsum8i(s);
            }
            y[(size_t)c * ldy + r] = sumf;
        }
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

/* iq4_xs: one row, C columns; per 32-element sub-block the int16 pair sums are multiplied
 * by its scale (ls - 32) in madd and summed in int32 lanes over the block, then one fma per
 * block: the operations of llama.cpp's AVX2 ggml_vec_dot_iq4_xs_q8_K, so the results are
 * bit-identical to its. */
INLINE void iq4xs_tile(const int C, int64_t nb, const char *wr, const char *x, size_t xcol, float *y, int ldy) {
    __m256 acc[8];
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const block_iq4_xs *blk = (const block_iq4_xs *)wr + b;
        _mm_prefetch((const char *)blk + 4 * sizeof *blk, _MM_HINT_T0);
        __m256i L[8];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) L[c] = _mm256_setzero_si256();
        const unsigned sh = blk->scales_h;
#pragma GCC unroll 8
        for (int ib = 0; ib < 8; ib++) {
            const int ls = ((blk->scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((sh >> 2 * ib) & 3) << 4);
            const __m256i sc = _mm256_set1_epi16((short)(ls - 32));
            const __m256i wq = iq4_values(nibbles32(blk->qs + 16 * ib));
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) {
                const __m256i a = _mm256_loadu_si256((const __m256i *)(xk(x, xcol, c, b)->qs + 32 * ib));
                L[c] = _mm256_add_epi32(L[c], _mm256_madd_epi16(sdot16(wq, a), sc));
            }
        }
        const float d = h2f(blk->d);
#pragma GCC unroll 8
        for (int c = 0; c < C; c++)
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * xk(x, xcol, c, b)->d), _mm256_cvtepi32_ps(L[c]), acc[c]);
    }
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) y[(size_t)c * ldy] = hsum8(acc[c]);
}

/* Trits of 32 tq1_0 bytes as codes 0..2: byte k times its multiplier (3^n mod 256; me for
 * even bytes, mo for odd ones, as int16 lanes), then (that * 3) >> 8. */
INLINE __m256i tq1_trits(__m256i q, __m256i me, __m256i mo) {
    const __m256i lo8 = _mm256_set1_epi16(0xff), three = _mm256_set1_epi16(3);
    const __m256i pe = _mm256_and_si256(_mm256_mullo_epi16(q, me), lo8);
    const __m256i po = _mm256_and_si256(_mm256_mullo_epi16(_mm256_srli_epi16(q, 8), mo), lo8);
    const __m256i te = _mm256_srli_epi16(_mm256_mullo_epi16(pe, three), 8);
    const __m256i to = _mm256_srli_epi16(_mm256_mullo_epi16(po, three), 8);
    return _mm256_or_si256(te, _mm256_slli_epi16(to, 8));
}

/* The 8 runs of 32 codes of a ternary block, in element order (runs[j] for elements
 * 32j..32j+31). */
INLINE void tq_runs(const int type, const char *wr, int64_t b, __m256i runs[8], float *d) {
    if (type == EM_TQ2_0) {
        const block_tq2_0 *blk = (const block_tq2_0 *)wr + b;
        _mm_prefetch((const char *)blk + 4 * sizeof *blk, _MM_HINT_T0);
        const __m256i m3 = _mm256_set1_epi8(3);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(blk->qs + 32 * h));
            runs[4 * h + 0] = _mm256_and_si256(q, m3);
            runs[4 * h + 1] = _mm256_and_si256(_mm256_srli_epi16(q, 2), m3);
            runs[4 * h + 2] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m3);
            runs[4 * h + 3] = _mm256_and_si256(_mm256_srli_epi16(q, 6), m3);
        }
        *d = h2f(blk->d);
    } else {
        const block_tq1_0 *blk = (const block_tq1_0 *)wr + b;
        _mm_prefetch((const char *)blk + 4 * sizeof *blk, _MM_HINT_T0);
        const __m256i q0 = _mm256_loadu_si256((const __m256i *)blk->qs);
        static const short p3[5] = { 1, 3, 9, 27, 81 };
#pragma GCC unroll 5
        for (int n = 0; n < 5; n++) runs[n] = tq1_trits(q0, _mm256_set1_epi16(p3[n]), _mm256_set1_epi16(p3[n]));
        const __m128i q1 = _mm_loadu_si128((const __m128i *)(blk->qs + 32));
        const __m256i q1b = _mm256_broadcastsi128_si256(q1);
        const __m256i m01 = _mm256_setr_m128i(_mm_set1_epi16(1), _mm_set1_epi16(3));
        const __m256i m23 = _mm256_setr_m128i(_mm_set1_epi16(9), _mm_set1_epi16(27));
        runs[5] = tq1_trits(q1b, m01, m01);
        runs[6] = tq1_trits(q1b, m23, m23);
        /* elements 224..239 (trit 4 of qs[32..47]) and 240..255 (byte 4n+j: trit n of qh[j]) */
        uint32_t qh;
        memcpy(&qh, blk->qh, 4);
        const __m256i q2 = _mm256_setr_m128i(q1, _mm_set1_epi32((int)qh));
        const __m256i m4 = _mm256_setr_epi16(81, 81, 81, 81, 81, 81, 81, 81, 1, 1, 3, 3, 9, 9, 27, 27);
        runs[7] = tq1_trits(q2, m4, m4);
        *d = h2f(blk->d);
    }
}

/* tq1_0 / tq2_0: one row, C columns: sum(code * a) in int16 (at most 8 * 2 * 3 * 127),
 * widened once per block, minus sum(a) from the bsums; the int32 lanes hold what llama.cpp's
 * AVX2 kernels hold (element pairs 2k, 2k+1 of every 32, bsums 2k, 2k+1), and the float
 * steps are its, so the results are bit-identical. */
INLINE void tq_tile(const int type, const int C, int64_t nb, const char *wr, const char *x, size_t xcol,
                    float *y, int ldy) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[8];
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i runs[8];
        float d;
        tq_runs(type, wr, b, runs, &d);
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            const block_q8_K *a = xk(x, xcol, c, b);
            __m256i s = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++)
                s = _mm256_add_epi16(s, _mm256_maddubs_epi16(runs[j], _mm256_loadu_si256((const __m256i *)(a->qs + 32 * j))));
            const __m256i L = _mm256_sub_epi32(_mm256_madd_epi16(s, ones),
                                               _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)a->bsums), ones));
            /* multiply, then add: llama.cpp's AVX2 tq dot products, bit for bit */
            acc[c] = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(L), _mm256_set1_ps(a->d * d)), acc[c]);
        }
    }
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) y[(size_t)c * ldy] = hsum8(acc[c]);
}

INLINE void mm_iqtq(const int type, int64_t n, const void *w, size_t wrow, int r0, int r1, const void *x,
                    size_t xcol, int ncols, float *y, int ldy) {
    const int64_t nb = n / QK_K;
    for (int r = r0; r < r1; r++) {
        const char *wr = (const char *)w + (size_t)r * wrow;
#define TILE(C) (type == EM_IQ4_XS ? iq4xs_tile(C, nb, wr, x, xcol, y + r, ldy) \
                                   : tq_tile(type, C, nb, wr, x, xcol, y + r, ldy))
        EM_COLS_1_8(ncols, TILE);
#undef TILE
    }
}

EM_MM_WRAP(mm_iq4_xs, mm_iqtq, EM_IQ4_XS)
EM_MM_WRAP(mm_tq1_0, mm_iqtq, EM_TQ1_0)
EM_MM_WRAP(mm_tq2_0, mm_iqtq, EM_TQ2_0)

/* Attention over a cache of any type: attn_kv.h's body with this file's matmuls (through
 * self) and FMA row update; hd is a multiple of 32. */
static void axpy_avx2(float *y, const float *x, float a, int n) {  /* n a multiple of 8 */
    const __m256 va = _mm256_set1_ps(a);
    for (int i = 0; i < n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(_mm256_loadu_ps(x + i), va, _mm256_loadu_ps(y + i)));
}

static void attn_kv_avx2(const em_kernels *self, float *out, const float *q, int n_q, int tk, const void *k,
                        size_t krow, int tv, const void *v, size_t vrow, int n_kv, int hd, float scale) {
    attn_kv_body(self, axpy_avx2, out, q, n_q, tk, k, krow, tv, v, vrow, n_kv, hd, scale);
}

/* ssm_scan (kernels.h): ggml's own AVX2 loop, 4 vectors of 8 partial sums. */
static void ssm_scan_avx2(float *S, const float *x, const float *B, const float *C, float dA, float dt, float D,
                          float *y, int hd, int ds) {
    const int np = ds & ~31;
    const __m256 vdA = _mm256_set1_ps(dA);
    for (int i = 0; i < hd; i++) {
        float *s = S + (size_t)i * ds;
        const float x_dt = x[i] * dt;
        const __m256 vx = _mm256_set1_ps(x_dt);
        __m256 acc[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps() };
        for (int j0 = 0; j0 < np; j0 += 32)
            for (int k = 0; k < 4; k++) {
                const int j = j0 + 8 * k;
                const __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(s + j), vdA),
                                               _mm256_mul_ps(_mm256_loadu_ps(B + j), vx));
                acc[k] = _mm256_fmadd_ps(v, _mm256_loadu_ps(C + j), acc[k]);
                _mm256_storeu_ps(s + j, v);
            }
        acc[0] = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
        const __m128 t0 = _mm_add_ps(_mm256_castps256_ps128(acc[0]), _mm256_extractf128_ps(acc[0], 1));
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

/* ------------------------------------------------------------------ INT2..INT8 / BFP3..BFP7 / OVP4 matmul */

/* ember's own formats (quant_seed.c; layouts in quant.h), activations in q8_0, one q8_0
 * block (32 elements) per ymm. Codes are unpacked from their bit planes to one byte each
 * and multiplied with vpmaddubsw: INT/BFP codes <= 127 cannot saturate a pair (2*127*127);
 * INT8's 0..255 go as (q - 128) through |w| and a with w's sign, the 128*sum(a) added back
 * in integer; OVP4's signed values (|v| <= 96) go the same way. INT adds m*da*sum(a), BFP
 * takes 2^(m-1)*sum(a) off in integer. Each (row, column) has its own accumulator. */

/* 32 codes from a 1-bit plane (bit i of the 32-bit word m) shifted to bit sh. */
INLINE __m256i seed2_bits(uint32_t m, int sh) {
    const __m256i sel = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                         2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    const __m256i b = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int)m), sel), bit);
    return _mm256_and_si256(_mm256_cmpeq_epi8(b, bit), _mm256_set1_epi8((char)(1 << sh)));
}

/* Elements 32h..32h+31 of an INT group's codes (q: the planes). */
INLINE __m256i seed2_int_half(const int bits, const uint8_t *q, int h) {
    if (bits == 8) return _mm256_loadu_si256((const __m256i *)(q + 32 * h));
    __m256i v = _mm256_setzero_si256();
    int sh = 0;
    if (bits & 4) {
        const __m256i x = _mm256_loadu_si256((const __m256i *)q);
        v = _mm256_and_si256(h ? _mm256_srli_epi16(x, 4) : x, _mm256_set1_epi8(15));
        q += 32;
        sh = 4;
    }
    if (bits & 2) {
        const __m256i x = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)q));
        __m256i c = _mm256_and_si256(_mm256_srlv_epi64(x, _mm256_setr_epi64x(4 * h, 4 * h, 4 * h + 2, 4 * h + 2)),
                                     _mm256_set1_epi8(3));
        if (sh) c = _mm256_slli_epi16(c, 4);
        v = _mm256_or_si256(v, c);
        q += 16;
        sh += 2;
    }
    if (bits & 1) {
        uint32_t m;
        memcpy(&m, q + 4 * h, 4);
        v = _mm256_or_si256(v, seed2_bits(m, sh));
    }
    return v;
}

INLINE __m256i seed2_bfp_codes(const int bits, const uint8_t *q) {
    __m256i v = _mm256_setzero_si256();
    int sh = 0;
    if (bits & 4) {
        const __m128i x = _mm_loadu_si128((const __m128i *)q), m4 = _mm_set1_epi8(15);
        v = _mm256_setr_m128i(_mm_and_si128(x, m4), _mm_and_si128(_mm_srli_epi16(x, 4), m4));
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
        uint32_t m;
        memcpy(&m, q, 4);
        v = _mm256_or_si256(v, seed2_bits(m, sh));
    }
    return v;
}

/* OVP4 values of a group: lo = elements 0..31, hi = 32..63 (see kern_avx512.c). */
INLINE void seed2_ovp(const uint8_t *qs, __m256i *lo_v, __m256i *hi_v) {
    const __m256i x = _mm256_loadu_si256((const __m256i *)qs), m4 = _mm256_set1_epi8(15), eight = _mm256_set1_epi8(8);
    const __m256i lo = _mm256_and_si256(x, m4), hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
    const __m256i tn = _mm256_broadcastsi128_si256(_mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 0, -7, -6, -5, -4, -3, -2, -1));
    const __m256i to = _mm256_broadcastsi128_si256(_mm_setr_epi8(0, 12, 16, 24, 32, 48, 64, 96,
                                                                 0, -12, -16, -24, -32, -48, -64, -96));
    const __m256i ml = _mm256_cmpeq_epi8(lo, eight), mh = _mm256_cmpeq_epi8(hi, eight);
    *lo_v = _mm256_blendv_epi8(_mm256_shuffle_epi8(tn, lo), _mm256_shuffle_epi8(to, lo), mh);
    *hi_v = _mm256_blendv_epi8(_mm256_shuffle_epi8(tn, hi), _mm256_shuffle_epi8(to, hi), ml);
}

/* Signed w (int8, w != -128 or any w with |w| as u8) times a: 8 int32 lanes. */
INLINE __m256i seed2_sdot(__m256i w, __m256i a) {
    return widen16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w)));
}

INLINE __m256i seed2_asum(__m256i a) { return widen16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), a)); }

INLINE void seed2_rows(const int t, const int C, int64_t n, const char *w, size_t wrow, int r0, int r1,
                       const char *x, size_t xcol, float *y, int ldy) {
    const int ib = em_int_bits(t), fb = em_bfp_bits(t);
    const int64_t nb = n / 32;  /* q8_0 blocks */
    const size_t bs = ib ? em_int_block_bytes(ib) : fb ? em_bfp_block_bytes(fb) : sizeof(block_ovp4);
    for (int r = r0; r < r1; r++) {
        const uint8_t *wr = (const uint8_t *)w + (size_t)r * wrow;
        __m256 acc[8];
        for (int c = 0; c < C; c++) acc[c] = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            __m256i q;
            float d, m = 0.0f;
            if (ib || t == EM_OVP4) {  /* 64-element groups: half b & 1 of group b / 2 */
                const uint8_t *blk = wr + (size_t)(b / 2) * bs;
                uint16_t hd;
                memcpy(&hd, blk, 2);
                d = h2f(hd);
                if (t == EM_OVP4) {
                    __m256i lo, hi;
                    seed2_ovp(blk + 2, &lo, &hi);
                    q = b & 1 ? hi : lo;
                } else {
                    uint16_t hm;
                    memcpy(&hm, blk + 2, 2);
                    m = h2f(hm);
                    q = seed2_int_half(ib, blk + 4, (int)(b & 1));
                    if (ib == 8) q = _mm256_xor_si256(q, _mm256_set1_epi8((char)0x80));  /* q - 128 as int8 */
                }
            } else {
                const uint8_t *blk = wr + (size_t)b * bs;
                const uint32_t eb = (uint32_t)blk[0] << 23;
                memcpy(&d, &eb, 4);
                q = seed2_bfp_codes(fb, blk + 1);
            }
            for (int c = 0; c < C; c++) {
                const block_q8_0 *a = (const block_q8_0 *)(x + (size_t)c * xcol) + b;
                const __m256i av = _mm256_loadu_si256((const __m256i *)a->qs);
                const float da = h2f(a->d);
                __m256i is;
                if (t == EM_OVP4) {
                    is = seed2_sdot(q, av);
                } else if (fb) {
                    is = _mm256_sub_epi32(widen16(_mm256_maddubs_epi16(q, av)),
                                          _mm256_slli_epi32(seed2_asum(av), fb - 1));
                } else {
                    const __m256i as = seed2_asum(av);
                    is = ib == 8 ? _mm256_add_epi32(seed2_sdot(q, av), _mm256_slli_epi32(as, 7))
                                 : widen16(_mm256_maddubs_epi16(q, av));
                    acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(as), _mm256_set1_ps(m * da), acc[c]);
                }
                acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is), _mm256_set1_ps(d * da), acc[c]);
            }
        }
        for (int c = 0; c < C; c++) y[(size_t)c * ldy + r] = hsum8(acc[c]);
    }
}

INLINE void mm_seed(const int t, int64_t n, const void *w, size_t wrow, int r0, int r1, const void *x,
                    size_t xcol, int ncols, float *y, int ldy) {
#define TILE(C) seed2_rows(t, C, n, w, wrow, r0, r1, x, xcol, y, ldy)
    EM_COLS_1_8(ncols, TILE);
#undef TILE
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

const em_kernels em_kernels_avx2 = {
    .name = "avx2",
    .quantize_act = {
        [EM_F32] = quant_f32, [EM_F16] = quant_f16, [EM_BF16] = quant_bf16,
        [EM_Q8_0] = quant_q8_0, [EM_Q8_1] = quant_q8_1, [EM_Q8_K] = quant_q8_K,
    },
    .matmul = {
        [EM_F32] = mm_f32, [EM_F16] = mm_f16, [EM_BF16] = mm_bf16, [EM_Q8_0] = mm_q8_0,
        [EM_Q4_0] = mm_q4_0, [EM_Q4_1] = mm_q4_1, [EM_Q5_0] = mm_q5_0, [EM_Q5_1] = mm_q5_1,
        [EM_Q2_K] = mm_q2_K, [EM_Q3_K] = mm_q3_K,
        [EM_Q4_K] = mm_q4_K, [EM_Q5_K] = mm_q5_K, [EM_Q6_K] = mm_q6_K,
        [EM_IQ4_NL] = mm_iq4_nl, [EM_IQ4_XS] = mm_iq4_xs, [EM_TQ1_0] = mm_tq1_0, [EM_TQ2_0] = mm_tq2_0,
        /* ember's own formats */
        [EM_INT2] = mm_int2, [EM_INT3] = mm_int3, [EM_INT4] = mm_int4, [EM_INT5] = mm_int5,
        [EM_INT6] = mm_int6, [EM_INT7] = mm_int7, [EM_INT8] = mm_int8,
        [EM_BFP3] = mm_bfp3, [EM_BFP4] = mm_bfp4, [EM_BFP5] = mm_bfp5, [EM_BFP6] = mm_bfp6, [EM_BFP7] = mm_bfp7,
        [EM_OVP4] = mm_ovp4,
    },
    .rmsnorm = rmsnorm_avx2,
    .softmax = softmax_avx2,
    .softmax2 = softmax2_avx2,
    .swiglu = swiglu_avx2,
    .attn_kv = attn_kv_avx2,
    .attn = { [EM_F32] = attn_f32, [EM_F16] = attn_f16 },
    .ssm_scan = ssm_scan_avx2,
};
