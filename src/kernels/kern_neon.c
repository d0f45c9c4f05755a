/* kern_neon.c: the AArch64 Advanced SIMD (NEON) kernel table, armv8.0-a only: no dotprod,
 * no fp16 arithmetic, so it runs on every 64-bit ARM core (cpu.c offers it when HWCAP_ASIMD
 * is set). NEON is part of the armv8-a base ISA, so the file needs no extra compiler flags.
 * kern_ref.c is the specification; tests/test_kernels.c holds every slot here to it.
 *
 * Activation quantizers are bit-identical to em_quantize_row: the scale and multiplier are
 * the same scalar expressions, products are the same float multiplies, and FCVTNS
 * (vcvtnq_s32_f32) rounds to nearest with ties to even, as the ref's round_even. fp16
 * conversions use FCVT, which rounds with the FPCR mode: Linux starts every thread with
 * round-to-nearest-even and no flush-to-zero, so they equal em_f32_to_f16 for every
 * non-NaN value.
 *
 * Matmul. Every output y[c*ldy + r] comes from one fixed sequence of operations on (W row
 * r, x column c) alone: integer block sums are exact, and for k-quants and float types
 * each block's sum becomes 4 float lanes folded into one 4-lane accumulator per (row,
 * column) in block order, reduced at the end. Tiling only decides which pairs run side by side,
 * never the order of a pair's own operations, so results are bit-identical for any row
 * split and for a column alone versus inside an 8-column call; against ref only the float
 * summation order differs (the test's tolerance covers exactly that).
 *   - Integer products without dotprod: vmull_s8 / vmlal_high_s8 give int16 lanes holding
 *     2 (q8_0: |w| <= 128, |a| <= 127, so 2 * 16256 < 2^15) or 4 (nibble and k-quant
 *     weights, |w| <= 32) products; vpaddlq_s16 / vpadalq_s16 widen them to int32 exactly.
 *   - q8_0 / q4_0 / q4_1 / q5_0 / q5_1: each block's integer sum is reduced to a scalar and
 *     folded in with ref's float expression (bit-identical to ref; see q32_tile for why).
 *     q5 codes get their fifth bit from qh through a byte test (q5_fifth16).
 *   - k-quants: each 32-element (q4_K/q5_K) or 16-element (q6_K) run's int32 lanes are
 *     multiplied by the run's scale in int32 (vmlaq_n_s32), summed over the block, then
 *     converted; the q4_K/q5_K mins term comes from the q8_K bsums, also in int32. q6_K
 *     weights are made signed (-32) before the multiply, so it needs no bsums. q2_K
 *     (16-element runs, mins from the bsums) and q3_K (signed -4..3) work as q6_K does.
 *   - iq4_nl / iq4_xs: codes to int8 values with one TBL (vqtbl1q_s8); tq1_0 / tq2_0:
 *     ternary codes through the narrow dot32, sum(a) off through the bsums (see their
 *     section).
 *   - ember's INT2..INT8 / BFP3..BFP7 / OVP4 (x in q8_0): codes unpacked from their bit
 *     planes (OVP4: two TBL lookups) to signed bytes, then dot32; see their section.
 *   - f32 / f16 / bf16: two 4-lane FMA chains per (row, column); f16 and bf16 products are
 *     exact in float, so each fma equals ref's multiply-then-add per term.
 *   - Decode (1 column) runs 4 rows side by side (independent weight streams and chains);
 *     wider calls unpack each weight block once and dot it with every column.
 *
 * Attention follows attn_*_ref step for step (same expf calls, same branch on a new
 * maximum, F16 accumulator rounded after the rescale and after every update). F32: V
 * update as a multiply then an add, q.k summed in double lanes. F16: the score in ref's
 * 32 float partial sums of fused products (8 x 4 lanes, FMLA) and its reduction order, the
 * V update fused for the first hd & ~31 elements, S = fma(S, ms, vs). rmsnorm sums
 * float squares in double lanes. swiglu and softmax use exp4, the same Cephes-style expf
 * as kern_avx2.c's exp256 (within ~1 ulp of e^x, subnormal results handled).
 *
 * Helpers are static inline; no fast-math, so the compiler never reorders float math. */
#include <arm_neon.h>
#include <math.h>
#include <string.h>
#include "kernels/kernels.h"
#include "kernels/attn_kv.h"
#include "kernels/tile_driver.h"

#define INLINE static inline __attribute__((always_inline))

/* ------------------------------------------------------------------ small helpers */

/* __fp16 is IEEE half on AArch64; conversions are single FCVT instructions. */
INLINE float h2f(uint16_t h) {
    __fp16 f;
    memcpy(&f, &h, 2);
    return (float)f;
}
INLINE uint16_t f2h(float f) {
    const __fp16 h = (__fp16)f;
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}

/* Fixed reduction order for a (row, column) pair: (a + b), then across lanes. */
INLINE float hsum2(float32x4_t a, float32x4_t b) { return vaddvq_f32(vaddq_f32(a, b)); }

/* 4 lanes of f16 bits <-> float (FCVTL / FCVTN). */
INLINE float32x4_t ld4h(const uint16_t *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
INLINE void st4h(uint16_t *p, float32x4_t v) { vst1_u16(p, vreinterpret_u16_f16(vcvt_f16_f32(v))); }

/* e^x per lane (see the file comment). Inputs are clamped to [-104, 89], beyond which expf
 * is 0 or inf anyway; NaN propagates (FMAX/FMIN return NaN if an operand is NaN). */
INLINE float32x4_t exp4(float32x4_t x) {
    const float32x4_t xc = vminq_f32(vdupq_n_f32(89.0f), vmaxq_f32(vdupq_n_f32(-104.0f), x));
    const float32x4_t n = vrndnq_f32(vmulq_f32(xc, vdupq_n_f32(1.44269504088896341f)));
    /* r = x - n*ln2 with ln2 split so that n*C1 is exact. */
    float32x4_t r = vfmsq_f32(xc, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    const float32x4_t e = vaddq_f32(vfmaq_f32(r, p, vmulq_f32(r, r)), vdupq_n_f32(1.0f));
    /* 2^n as 2^n1 * 2^n2 with n1, n2 in [-75, 64]: both are normal floats, the first
     * product is exact and the second rounds once (also into the subnormal range). */
    const int32x4_t ni = vcvtq_s32_f32(n);
    const int32x4_t n1 = vshrq_n_s32(ni, 1), n2 = vsubq_s32(ni, n1);
    const int32x4_t bias = vdupq_n_s32(127);
    const float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n1, bias), 23));
    const float32x4_t s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n2, bias), 23));
    return vmulq_f32(vmulq_f32(e, s1), s2);
}

/* ------------------------------------------------------------------ activation quantizers */

static void quant_f32(const float *x, void *y, int64_t n) {
    if (n > 0 && (const void *)x != y) memmove(y, x, (size_t)n * sizeof(float));
}

static void quant_f16(const float *x, void *vy, int64_t n) {
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) st4h(y + i, vld1q_f32(x + i));
    for (; i < n; i++) y[i] = em_f32_to_f16(x[i]);
}

/* Round to nearest even on the bit pattern; NaN truncated and forced quiet (as the ref). */
static void quant_bf16(const float *x, void *vy, int64_t n) {
    uint16_t *y = vy;
    int64_t i = 0;
    const uint32x4_t one = vdupq_n_u32(1), half = vdupq_n_u32(0x7fff);
    const uint32x4_t absmask = vdupq_n_u32(0x7fffffff), inf = vdupq_n_u32(0x7f800000);
    for (; i + 4 <= n; i += 4) {
        const uint32x4_t u = vreinterpretq_u32_f32(vld1q_f32(x + i));
        const uint32x4_t odd = vandq_u32(vshrq_n_u32(u, 16), one);
        const uint32x4_t r = vshrq_n_u32(vaddq_u32(u, vaddq_u32(half, odd)), 16);
        const uint32x4_t nan = vorrq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(64));
        const uint32x4_t isnan = vcgtq_u32(vandq_u32(u, absmask), inf);
        vst1_u16(y + i, vmovn_u32(vbslq_u32(isnan, nan, r)));
    }
    for (; i < n; i++) y[i] = em_f32_to_bf16(x[i]);
}

/* 16 int32 lanes (values within int8) -> 16 int8 in order. */
INLINE int8x16_t pack16(const int32x4_t q[4]) {
    const int16x8_t a = vcombine_s16(vmovn_s32(q[0]), vmovn_s32(q[1]));
    const int16x8_t b = vcombine_s16(vmovn_s32(q[2]), vmovn_s32(q[3]));
    return vcombine_s8(vmovn_s16(a), vmovn_s16(b));
}

/* Shared by q8_0 and q8_1: llama.cpp's x86 scale, d = amax/127, id = 127/amax. */
INLINE void quant_q8_block(const float *x, int8_t *qs, uint16_t *d16, uint16_t *s16) {
    float32x4_t v[8];
    float32x4_t m = vdupq_n_f32(0.0f);
    for (int k = 0; k < 8; k++) {
        v[k] = vld1q_f32(x + 4 * k);
        m = vmaxq_f32(m, vabsq_f32(v[k]));
    }
    const float amax = vmaxvq_f32(m);
    const float d = amax / 127.f;
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    int32x4_t q[8];
    for (int k = 0; k < 8; k++) q[k] = vcvtnq_s32_f32(vmulq_n_f32(v[k], id));
    vst1q_s8(qs, pack16(q));
    vst1q_s8(qs + 16, pack16(q + 4));
    *d16 = f2h(d);
    if (s16) {
        int32x4_t s = vaddq_s32(vaddq_s32(q[0], q[1]), vaddq_s32(q[2], q[3]));
        s = vaddq_s32(s, vaddq_s32(vaddq_s32(q[4], q[5]), vaddq_s32(q[6], q[7])));
        *s16 = f2h(d * (float)vaddvq_s32(s));  /* s uses the rounded q, as the ref */
    }
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
        float32x4_t m = vdupq_n_f32(0.0f);
        for (int j = 0; j < QK_K; j += 4) m = vmaxq_f32(m, vabsq_f32(vld1q_f32(x + j)));
        const float amax = vmaxvq_f32(m);
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        int jmax = 0;
        for (int j = 0; j < QK_K; j += 4) {
            if (vmaxvq_u32(vceqq_f32(vabsq_f32(vld1q_f32(x + j)), vdupq_n_f32(amax)))) {
                jmax = j;
                while (fabsf(x[jmax]) != amax) jmax++;
                break;
            }
        }
        const float iscale = -127.f / x[jmax];
        for (int g = 0; g < QK_K; g += 16) {
            int32x4_t q[4];
            for (int k = 0; k < 4; k++)
                q[k] = vminq_s32(vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + g + 4 * k), iscale)),
                                 vdupq_n_s32(127));
            y[i].bsums[g / 16] = (int16_t)vaddvq_s32(vaddq_s32(vaddq_s32(q[0], q[1]), vaddq_s32(q[2], q[3])));
            vst1q_s8(y[i].qs + g, pack16(q));
        }
        y[i].d = 1 / iscale;
    }
}

/* ------------------------------------------------------------------ 32-element block types */

/* 32 weights (w0: elements 0-15, w1: 16-31) times 32 int8 activations, as 4 int32 lanes.
 * wide: |w| up to 128 (q8_0), so only 2 products share an int16 lane before widening;
 * otherwise (|w| <= 32) 4 do. */
INLINE int32x4_t dot32(const int wide, int8x16_t w0, int8x16_t w1, const int8_t *a) {
    const int8x16_t a0 = vld1q_s8(a), a1 = vld1q_s8(a + 16);
    int16x8_t p0 = vmull_s8(vget_low_s8(w0), vget_low_s8(a0));
    p0 = vmlal_high_s8(p0, w0, a0);
    if (wide) {
        int16x8_t p1 = vmull_s8(vget_low_s8(w1), vget_low_s8(a1));
        p1 = vmlal_high_s8(p1, w1, a1);
        return vpadalq_s16(vpaddlq_s16(p0), p1);
    }
    p0 = vmlal_s8(p0, vget_low_s8(w1), vget_low_s8(a1));
    p0 = vmlal_high_s8(p0, w1, a1);
    return vpaddlq_s16(p0);
}

/* 16 fifth bits of a q5 block (bit k for element k) as bytes 0x10 / 0x00: byte k keeps
 * bit k % 8 of its source byte and is tested against it. */
INLINE uint8x16_t q5_fifth16(uint32_t bits) {
    static const uint8_t one_bit[16] = { 1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128 };
    const uint8x16_t rep = vcombine_u8(vdup_n_u8((uint8_t)bits), vdup_n_u8((uint8_t)(bits >> 8)));
    return vandq_u8(vtstq_u8(rep, vld1q_u8(one_bit)), vdupq_n_u8(0x10));
}

/* Block b of a q8_0 / q4_0 / q4_1 / q5_0 / q5_1 row as int8 (unsigned codes for q4_1 and
 * q5_1), with its scale and (q4_1, q5_1) min. Nibbles: low = elements 0-15, high = 16-31. */
INLINE void q32_unpack(const int type, const char *wr, int64_t b, int8x16_t *w0, int8x16_t *w1,
                       float *d, float *m) {
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    if (type == EM_Q8_0) {
        const block_q8_0 *blk = (const block_q8_0 *)wr + b;
        *w0 = vld1q_s8(blk->qs);
        *w1 = vld1q_s8(blk->qs + 16);
        *d = h2f(blk->d);
    } else if (type == EM_Q4_0) {
        const block_q4_0 *blk = (const block_q4_0 *)wr + b;
        const uint8x16_t raw = vld1q_u8(blk->qs);
        *w0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(raw, m4)), vdupq_n_s8(8));
        *w1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(raw, 4)), vdupq_n_s8(8));
        *d = h2f(blk->d);
    } else if (type == EM_Q5_0 || type == EM_Q5_1) {
        const uint8_t *qs = type == EM_Q5_0 ? ((const block_q5_0 *)wr + b)->qs : ((const block_q5_1 *)wr + b)->qs;
        const uint8_t *qh = type == EM_Q5_0 ? ((const block_q5_0 *)wr + b)->qh : ((const block_q5_1 *)wr + b)->qh;
        uint32_t bits;
        memcpy(&bits, qh, 4);
        const uint8x16_t raw = vld1q_u8(qs);
        const uint8x16_t c0 = vorrq_u8(vandq_u8(raw, m4), q5_fifth16(bits));
        const uint8x16_t c1 = vorrq_u8(vshrq_n_u8(raw, 4), q5_fifth16(bits >> 16));
        if (type == EM_Q5_0) {  /* codes -16..15 */
            const block_q5_0 *blk = (const block_q5_0 *)wr + b;
            *w0 = vsubq_s8(vreinterpretq_s8_u8(c0), vdupq_n_s8(16));
            *w1 = vsubq_s8(vreinterpretq_s8_u8(c1), vdupq_n_s8(16));
            *d = h2f(blk->d);
        } else {  /* codes 0..31 */
            const block_q5_1 *blk = (const block_q5_1 *)wr + b;
            *w0 = vreinterpretq_s8_u8(c0);
            *w1 = vreinterpretq_s8_u8(c1);
            *d = h2f(blk->d);
            *m = h2f(blk->m);
        }
    } else {
        const block_q4_1 *blk = (const block_q4_1 *)wr + b;
        const uint8x16_t raw = vld1q_u8(blk->qs);
        *w0 = vreinterpretq_s8_u8(vandq_u8(raw, m4));
        *w1 = vreinterpretq_s8_u8(vshrq_n_u8(raw, 4));
        *d = h2f(blk->d);
        *m = h2f(blk->m);
    }
}

INLINE int q32_affine(const int type) { return type == EM_Q4_1 || type == EM_Q5_1; }

/* R rows x C columns of a q8_0 / q4_0 / q4_1 / q5_0 / q5_1 matmul; w and y point at the
 * tile's first row. Activation blocks are q8_0 (d, qs) or, for q4_1 and q5_1, q8_1 (d, s,
 * qs). The exact integer
 * block sum is reduced to a scalar and folded into the float sum with ref's expression, so
 * these outputs are bit-identical to ref: a 32-element block is little work, and tiny
 * Q4_1 models amplify a last-bit difference into a flipped Q8 activation rounding
 * downstream (test_logits holds ember to llama.cpp at 5e-5 of the logit rms). */
INLINE void q32_tile(const int type, const int R, const int C, int64_t nb, const char *w, size_t wrow,
                     const char *x, size_t xcol, float *y, int ldy) {
    const size_t xbs = q32_affine(type) ? sizeof(block_q8_1) : sizeof(block_q8_0);
    const size_t wbs = type == EM_Q8_0 ? sizeof(block_q8_0) : type == EM_Q4_0 ? sizeof(block_q4_0)
                     : type == EM_Q4_1 ? sizeof(block_q4_1) : type == EM_Q5_0 ? sizeof(block_q5_0)
                     : sizeof(block_q5_1);
    float acc[4][8];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) acc[r][c] = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            int8x16_t w0, w1;
            float dw, mw = 0.0f;
            __builtin_prefetch(w + (size_t)r * wrow + (size_t)(b + 8) * wbs);
            q32_unpack(type, w + (size_t)r * wrow, b, &w0, &w1, &dw, &mw);
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) {
                const char *xb = x + (size_t)c * xcol + (size_t)b * xbs;
                uint16_t xd;
                memcpy(&xd, xb, 2);
                /* qs sits right after the 2 (q8_0) or 4 (q8_1) header bytes */
                const float si = (float)vaddvq_s32(dot32(type == EM_Q8_0, w0, w1, (const int8_t *)(xb + xbs - QK8_0)));
                const float dx = h2f(xd);
                float t;  /* the ref's per-block term, operation for operation */
                if (type == EM_Q8_0) {
                    t = si * (dw * dx);
                } else if (type == EM_Q4_0) {
                    const float a = si * dw;
                    t = a * dx;
                } else if (type == EM_Q5_0) {
                    t = (dw * dx) * si;
                } else {  /* q4_1, q5_1 */
                    uint16_t xs;
                    memcpy(&xs, xb + 2, 2);
                    const float a = (dw * dx) * si, m = mw * h2f(xs);
                    t = a + m;
                }
                acc[r][c] += t;
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) y[(size_t)c * ldy + r] = acc[r][c];
}

/* Decode (1 column) takes 4 rows at a time, 2 columns 2 rows, wider calls 1 row. */
INLINE void mm_q32(const int type, int64_t n, const void *w, size_t wrow, int r0, int r1,
                   const void *x, size_t xcol, int ncols, float *y, int ldy) {
    const int64_t nb = n / QK8_0;
    const char *wc = w, *xc = x;
    int r = r0;
#define TILE(R, C) q32_tile(type, R, C, nb, wc + (size_t)r * wrow, wrow, xc, xcol, y + r, ldy)
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
 * get_scale_min_k4), unpacked with 32-bit masks instead of 16 scalar extractions. */
INLINE void k4_scales(const uint8_t s[12], uint8_t sc[8], uint8_t mn[8]) {
    uint32_t u[3], o[4];
    memcpy(u, s, 12);
    o[0] = u[0] & 0x3f3f3f3f;
    o[1] = (u[2] & 0x0f0f0f0f) | ((u[0] >> 2) & 0x30303030);
    o[2] = u[1] & 0x3f3f3f3f;
    o[3] = ((u[2] >> 4) & 0x0f0f0f0f) | ((u[1] >> 2) & 0x30303030);
    memcpy(sc, o, 8);
    memcpy(mn, o + 2, 8);
}

INLINE const block_q8_K *xk(const char *x, size_t xcol, int c, int64_t b) {
    return (const block_q8_K *)(x + (size_t)c * xcol) + b;
}

/* Folds one block's integer lanes L (scale part) and M (mins part) into acc. */
INLINE float32x4_t k_fold(float32x4_t acc, int32x4_t L, int32x4_t M, float d, float dmin) {
    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(L), d);
    return vfmaq_n_f32(acc, vcvtq_f32_s32(M), -dmin);
}

/* q4_K or q5_K: one row, C columns. Per 64 weights: 32 bytes of low/high nibbles
 * (sub-blocks 2j, 2j+1), and for q5_K bits 2j, 2j+1 of qh as the fifth bit. */
INLINE void k45_tile(const int q5, const int C, int64_t nb, const char *wr, const char *x, size_t xcol,
                     float *y, int ldy) {
    const uint8x16_t m4 = vdupq_n_u8(0x0f), b4 = vdupq_n_u8(0x10);
    float32x4_t acc[8];
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) acc[c] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *qs, *scales, *qh = NULL;
        uint16_t d16, dm16;
        if (q5) {
            const block_q5_K *blk = (const block_q5_K *)wr + b;
            qs = blk->qs; scales = blk->scales; d16 = blk->d; dm16 = blk->dmin; qh = blk->qh;
        } else {
            const block_q4_K *blk = (const block_q4_K *)wr + b;
            qs = blk->qs; scales = blk->scales; d16 = blk->d; dm16 = blk->dmin;
        }
        __builtin_prefetch(qs + 2 * (q5 ? sizeof(block_q5_K) : sizeof(block_q4_K)));
        uint8_t sc[8], mn[8];
        k4_scales(scales, sc, mn);
        const uint8x16_t h0 = q5 ? vld1q_u8(qh) : vdupq_n_u8(0), h1 = q5 ? vld1q_u8(qh + 16) : vdupq_n_u8(0);
        int32x4_t L[8];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) L[c] = vdupq_n_s32(0);
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const uint8x16_t q0 = vld1q_u8(qs + 32 * j), q1 = vld1q_u8(qs + 32 * j + 16);
            uint8x16_t lo0 = vandq_u8(q0, m4), lo1 = vandq_u8(q1, m4);
            uint8x16_t hi0 = vshrq_n_u8(q0, 4), hi1 = vshrq_n_u8(q1, 4);
            if (q5) {
                const uint8x16_t bl = vdupq_n_u8((uint8_t)(1u << (2 * j))), bh = vdupq_n_u8((uint8_t)(2u << (2 * j)));
                lo0 = vorrq_u8(lo0, vandq_u8(vtstq_u8(h0, bl), b4));
                lo1 = vorrq_u8(lo1, vandq_u8(vtstq_u8(h1, bl), b4));
                hi0 = vorrq_u8(hi0, vandq_u8(vtstq_u8(h0, bh), b4));
                hi1 = vorrq_u8(hi1, vandq_u8(vtstq_u8(h1, bh), b4));
            }
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) {
                const int8_t *a = xk(x, xcol, c, b)->qs + 64 * j;
                L[c] = vmlaq_n_s32(L[c], dot32(0, vreinterpretq_s8_u8(lo0), vreinterpretq_s8_u8(lo1), a), sc[2 * j]);
                L[c] = vmlaq_n_s32(L[c], dot32(0, vreinterpretq_s8_u8(hi0), vreinterpretq_s8_u8(hi1), a + 32),
                                   sc[2 * j + 1]);
            }
        }
        const int16x8_t mins = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mn)));
        const float d = h2f(d16), dmin = h2f(dm16);
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            const block_q8_K *a = xk(x, xcol, c, b);
            /* bsums in pairs: one sum per 32-element sub-block, against that sub-block's min */
            const int16x8_t bs = vpaddq_s16(vld1q_s16(a->bsums), vld1q_s16(a->bsums + 8));
            const int32x4_t M = vmlal_high_s16(vmull_s16(vget_low_s16(bs), vget_low_s16(mins)), bs, mins);
            acc[c] = k_fold(acc[c], L[c], M, d * a->d, dmin * a->d);
        }
    }
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) y[(size_t)c * ldy] = vaddvq_f32(acc[c]);
}

/* 16 signed weights times 16 activations as 4 int32 lanes (2 products per int16 lane). */
INLINE int32x4_t dot16(int8x16_t w, const int8_t *a) {
    const int8x16_t av = vld1q_s8(a);
    return vpaddlq_s16(vmlal_high_s8(vmull_s8(vget_low_s8(w), vget_low_s8(av)), w, av));
}

/* Adds the 32-weight chunk w0 (elements 0-15, scale s0) and w1 (16-31, scale s1), stored
 * as 0..63, to every column's lanes against activation bytes [off, off + 32) of block b. */
INLINE void q6_run(const int C, uint8x16_t w0, uint8x16_t w1, int s0, int s1, const char *x, size_t xcol,
                   int64_t b, int off, int32x4_t L[8]) {
    const int8x16_t v0 = vsubq_s8(vreinterpretq_s8_u8(w0), vdupq_n_s8(32));
    const int8x16_t v1 = vsubq_s8(vreinterpretq_s8_u8(w1), vdupq_n_s8(32));
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) {
        const int8_t *a = xk(x, xcol, c, b)->qs + off;
        L[c] = vmlaq_n_s32(L[c], dot16(v0, a), s0);
        L[c] = vmlaq_n_s32(L[c], dot16(v1, a + 16), s1);
    }
}

/* q6_K: one row, C columns. Per 128-element half: ql[0..63], qh[0..31] give four 32-element
 * chunks (low nibbles of ql[0..31], of ql[32..63], high nibbles of each), each with two
 * 16-element runs of their own int8 scale; qh holds bits 4-5 of the four chunks in turn. */
INLINE void q6k_tile(const int C, int64_t nb, const char *wr, const char *x, size_t xcol, float *y, int ldy) {
    const uint8x16_t m4 = vdupq_n_u8(0x0f), m2 = vdupq_n_u8(0x30);
    float32x4_t acc[8];
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) acc[c] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; b++) {
        const block_q6_K *blk = (const block_q6_K *)wr + b;
        __builtin_prefetch((const char *)blk + 2 * sizeof *blk);
        __builtin_prefetch((const char *)blk + 2 * sizeof *blk + 64);
        const int8_t *sc = blk->scales;
        int32x4_t L[8];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) L[c] = vdupq_n_s32(0);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = blk->ql + 64 * h, *qh = blk->qh + 32 * h;
            const uint8x16_t A0 = vld1q_u8(ql), A1 = vld1q_u8(ql + 16);
            const uint8x16_t B0 = vld1q_u8(ql + 32), B1 = vld1q_u8(ql + 48);
            const uint8x16_t H0 = vld1q_u8(qh), H1 = vld1q_u8(qh + 16);
            const int s = 8 * h, off = 128 * h;
            q6_run(C, vorrq_u8(vandq_u8(A0, m4), vandq_u8(vshlq_n_u8(H0, 4), m2)),
                   vorrq_u8(vandq_u8(A1, m4), vandq_u8(vshlq_n_u8(H1, 4), m2)), sc[s], sc[s + 1], x, xcol, b, off, L);
            q6_run(C, vorrq_u8(vandq_u8(B0, m4), vandq_u8(vshlq_n_u8(H0, 2), m2)),
                   vorrq_u8(vandq_u8(B1, m4), vandq_u8(vshlq_n_u8(H1, 2), m2)), sc[s + 2], sc[s + 3], x, xcol, b,
                   off + 32, L);
            q6_run(C, vorrq_u8(vshrq_n_u8(A0, 4), vandq_u8(H0, m2)), vorrq_u8(vshrq_n_u8(A1, 4), vandq_u8(H1, m2)),
                   sc[s + 4], sc[s + 5], x, xcol, b, off + 64, L);
            q6_run(C, vorrq_u8(vshrq_n_u8(B0, 4), vandq_u8(vshrq_n_u8(H0, 2), m2)),
                   vorrq_u8(vshrq_n_u8(B1, 4), vandq_u8(vshrq_n_u8(H1, 2), m2)), sc[s + 6], sc[s + 7], x, xcol, b,
                   off + 96, L);
        }
        const float d = h2f(blk->d);
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) acc[c] = vfmaq_n_f32(acc[c], vcvtq_f32_s32(L[c]), d * xk(x, xcol, c, b)->d);
    }
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) y[(size_t)c * ldy] = vaddvq_f32(acc[c]);
}

/* One row at a time: a k-quant block already carries 256 weights of work per column. */
INLINE void mm_k(const int type, int64_t n, const void *w, size_t wrow, int r0, int r1, const void *x,
                 size_t xcol, int ncols, float *y, int ldy) {
    const int64_t nb = n / QK_K;
    const char *xc = x;
    for (int r = r0; r < r1; r++) {
        const char *wr = (const char *)w + (size_t)r * wrow;
#define TILE(C) (type == EM_Q6_K ? q6k_tile(C, nb, wr, xc, xcol, y + r, ldy) \
                                 : k45_tile(type == EM_Q5_K, C, nb, wr, xc, xcol, y + r, ldy))
        EM_COLS_1_8(ncols, TILE);
#undef TILE
    }
}

EM_MM_WRAP(mm_q4_K, mm_k, EM_Q4_K)
EM_MM_WRAP(mm_q5_K, mm_k, EM_Q5_K)
EM_MM_WRAP(mm_q6_K, mm_k, EM_Q6_K)

/* Q2_K and Q3_K: one row, C columns. Per 128-element half h, qs[32h..32h+31] hold four
 * 2-bit planes; plane p of bytes 0-15 is sub-block 8h+2p, of bytes 16-31 sub-block
 * 8h+2p+1 (16 elements each, one scale each). Q2_K weights are 0..3 with the mins term
 * from the 16 q8_K bsums (factor -dmin); Q3_K weights are plane - 4, plus 4 where bit
 * 4h+p of hmask[l] is set, used signed (-4..3) so no offset term is needed. */
INLINE void k23_run(const int C, int8x16_t w0, int8x16_t w1, int s0, int s1, const char *x, size_t xcol,
                    int64_t b, int off, int32x4_t L[8]) {
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) {
        const int8_t *a = xk(x, xcol, c, b)->qs + off;
        L[c] = vmlaq_n_s32(L[c], dot16(w0, a), s0);
        L[c] = vmlaq_n_s32(L[c], dot16(w1, a + 16), s1);
    }
}

INLINE void k23_tile(const int q3, const int C, int64_t nb, const char *wr, const char *x, size_t xcol,
                     float *y, int ldy) {
    const uint8x16_t m3 = vdupq_n_u8(3), b4 = vdupq_n_u8(4);
    float32x4_t acc[8];
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) acc[c] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *qs, *hm = NULL;
        int8_t sc[16];
        int16x8_t mn0 = vdupq_n_s16(0), mn1 = vdupq_n_s16(0);
        float d, dmin = 0.0f;
        if (q3) {
            const block_q3_K *blk = (const block_q3_K *)wr + b;
            __builtin_prefetch((const char *)blk + 2 * sizeof *blk);
            __builtin_prefetch((const char *)blk + 2 * sizeof *blk + 64);
            qs = blk->qs;
            hm = blk->hmask;
            uint32_t a[3], u[4];
            memcpy(a, blk->scales, 12);
            u[0] = (a[0] & 0x0f0f0f0f) | ((a[2] & 0x03030303) << 4);
            u[1] = (a[1] & 0x0f0f0f0f) | (((a[2] >> 2) & 0x03030303) << 4);
            u[2] = ((a[0] >> 4) & 0x0f0f0f0f) | (((a[2] >> 4) & 0x03030303) << 4);
            u[3] = ((a[1] >> 4) & 0x0f0f0f0f) | (((a[2] >> 6) & 0x03030303) << 4);
            vst1q_s8(sc, vsubq_s8(vreinterpretq_s8_u8(vld1q_u8((const uint8_t *)u)), vdupq_n_s8(32)));
            d = h2f(blk->d);
        } else {
            const block_q2_K *blk = (const block_q2_K *)wr + b;
            __builtin_prefetch((const char *)blk + 2 * sizeof *blk);
            __builtin_prefetch((const char *)blk + 2 * sizeof *blk + 64);
            qs = blk->qs;
            const uint8x16_t s8 = vld1q_u8(blk->scales);
            vst1q_s8(sc, vreinterpretq_s8_u8(vandq_u8(s8, vdupq_n_u8(0xF))));
            const uint8x16_t m = vshrq_n_u8(s8, 4);
            mn0 = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(m)));
            mn1 = vreinterpretq_s16_u16(vmovl_high_u8(m));
            d = h2f(blk->d);
            dmin = h2f(blk->dmin);
        }
        const uint8x16_t H0 = q3 ? vld1q_u8(hm) : vdupq_n_u8(0), H1 = q3 ? vld1q_u8(hm + 16) : vdupq_n_u8(0);
        int32x4_t L[8];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) L[c] = vdupq_n_s32(0);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const uint8x16_t Q0 = vld1q_u8(qs + 32 * h), Q1 = vld1q_u8(qs + 32 * h + 16);
#pragma GCC unroll 4
            for (int p = 0; p < 4; p++) {
                const int8x16_t sh = vdupq_n_s8((int8_t)(-2 * p));
                uint8x16_t w0 = vandq_u8(vshlq_u8(Q0, sh), m3), w1 = vandq_u8(vshlq_u8(Q1, sh), m3);
                int8x16_t v0 = vreinterpretq_s8_u8(w0), v1 = vreinterpretq_s8_u8(w1);
                if (q3) {
                    const uint8x16_t bit = vdupq_n_u8((uint8_t)(1u << (4 * h + p)));
                    w0 = vorrq_u8(w0, vandq_u8(vtstq_u8(H0, bit), b4));
                    w1 = vorrq_u8(w1, vandq_u8(vtstq_u8(H1, bit), b4));
                    v0 = vsubq_s8(vreinterpretq_s8_u8(w0), vdupq_n_s8(4));
                    v1 = vsubq_s8(vreinterpretq_s8_u8(w1), vdupq_n_s8(4));
                }
                const int j = 8 * h + 2 * p;
                k23_run(C, v0, v1, sc[j], sc[j + 1], x, xcol, b, 128 * h + 32 * p, L);
            }
        }
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            const block_q8_K *a = xk(x, xcol, c, b);
            if (q3) {
                acc[c] = vfmaq_n_f32(acc[c], vcvtq_f32_s32(L[c]), d * a->d);
            } else {
                const int16x8_t bs0 = vld1q_s16(a->bsums), bs1 = vld1q_s16(a->bsums + 8);
                int32x4_t M = vmull_s16(vget_low_s16(bs0), vget_low_s16(mn0));
                M = vmlal_high_s16(M, bs0, mn0);
                M = vmlal_s16(M, vget_low_s16(bs1), vget_low_s16(mn1));
                M = vmlal_high_s16(M, bs1, mn1);
                acc[c] = k_fold(acc[c], L[c], M, d * a->d, dmin * a->d);
            }
        }
    }
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) y[(size_t)c * ldy] = vaddvq_f32(acc[c]);
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

/* 8 elements of an f32 / f16 / bf16 row starting at element i, as two float vectors. */
INLINE void ld8(const int type, const char *p, int64_t i, float32x4_t *lo, float32x4_t *hi) {
    if (type == EM_F32) {
        *lo = vld1q_f32((const float *)p + i);
        *hi = vld1q_f32((const float *)p + i + 4);
    } else if (type == EM_F16) {
        const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16((const uint16_t *)p + i));
        *lo = vcvt_f32_f16(vget_low_f16(h));
        *hi = vcvt_high_f32_f16(h);
    } else {  /* bf16 is the top half of an f32 */
        const uint16x8_t h = vld1q_u16((const uint16_t *)p + i);
        *lo = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16));
        *hi = vreinterpretq_f32_u32(vshll_high_n_u16(h, 16));
    }
}

/* The last rem < 8 elements, zero padded (zeros add nothing to the dot product). */
INLINE void ld_tail(const int type, const char *p, int64_t i, int rem, float32x4_t *lo, float32x4_t *hi) {
    _Alignas(16) char buf[32] = { 0 };
    const size_t es = type == EM_F32 ? 4 : 2;
    memcpy(buf, p + (size_t)i * es, (size_t)rem * es);
    ld8(type, buf, 0, lo, hi);
}

/* R rows x C columns; per pair two FMA chains (elements 8k..8k+3 and 8k+4..8k+7). */
INLINE void fp_tile(const int type, const int R, const int C, int64_t n, const char *w, size_t wrow,
                    const char *x, size_t xcol, float *y, int ldy) {
    float32x4_t a0[4][4], a1[4][4], w0[4], w1[4], x0, x1;
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) a0[r][c] = a1[r][c] = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) ld8(type, w + (size_t)r * wrow, i, &w0[r], &w1[r]);
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) {
            ld8(type, x + (size_t)c * xcol, i, &x0, &x1);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                a0[r][c] = vfmaq_f32(a0[r][c], w0[r], x0);
                a1[r][c] = vfmaq_f32(a1[r][c], w1[r], x1);
            }
        }
    }
    if (i < n) {
        const int rem = (int)(n - i);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) ld_tail(type, w + (size_t)r * wrow, i, rem, &w0[r], &w1[r]);
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) {
            ld_tail(type, x + (size_t)c * xcol, i, rem, &x0, &x1);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                a0[r][c] = vfmaq_f32(a0[r][c], w0[r], x0);
                a1[r][c] = vfmaq_f32(a1[r][c], w1[r], x1);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) y[(size_t)c * ldy + r] = hsum2(a0[r][c], a1[r][c]);
}

/* Float weights: tile_driver.h's driver (4-row decode, 4-column groups) over fp_tile. */
EM_DEFINE_MM_FP(mm_fp)

EM_MM_WRAP(mm_f32, mm_fp, EM_F32)
EM_MM_WRAP(mm_f16, mm_fp, EM_F16)
EM_MM_WRAP(mm_bf16, mm_fp, EM_BF16)

/* ------------------------------------------------------------------ norms and activations */

/* Adds the float lanes of v to two double accumulators (exact conversions). */
INLINE void add_f64(float32x4_t v, float64x2_t *s0, float64x2_t *s1) {
    *s0 = vaddq_f64(*s0, vcvt_f64_f32(vget_low_f32(v)));
    *s1 = vaddq_f64(*s1, vcvt_high_f64_f32(v));
}

static void rmsnorm_neon(float *o, const float *x, const float *w, int n, float eps) {
    /* float squares summed in double lanes, as the ref (and ggml) */
    float64x2_t s0 = vdupq_n_f64(0.0), s1 = vdupq_n_f64(0.0);
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t v = vld1q_f32(x + i);
        add_f64(vmulq_f32(v, v), &s0, &s1);
    }
    double ss = vaddvq_f64(vaddq_f64(s0, s1));
    for (int j = i; j < n; j++) ss += (double)(x[j] * x[j]);
    const float scale = 1.0f / sqrtf((float)(ss / n) + eps);
    for (i = 0; i + 4 <= n; i += 4)
        vst1q_f32(o + i, vmulq_f32(vmulq_n_f32(vld1q_f32(x + i), scale), vld1q_f32(w + i)));
    for (; i < n; i++) o[i] = (x[i] * scale) * w[i];
}

INLINE float32x4_t silu_mul(float32x4_t g, float32x4_t u) {
    const float32x4_t den = vaddq_f32(vdupq_n_f32(1.0f), exp4(vnegq_f32(g)));
    return vmulq_f32(vdivq_f32(g, den), u);
}

static void swiglu_neon(float *h, const float *g, const float *u, int n) {
    int i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(h + i, silu_mul(vld1q_f32(g + i), vld1q_f32(u + i)));
    if (i < n) {  /* tail through the same vector code so every element has one formula */
        float gb[4] = { 0 }, ub[4] = { 0 }, hb[4];
        memcpy(gb, g + i, (size_t)(n - i) * sizeof(float));
        memcpy(ub, u + i, (size_t)(n - i) * sizeof(float));
        vst1q_f32(hb, silu_mul(vld1q_f32(gb), vld1q_f32(ub)));
        memcpy(h + i, hb, (size_t)(n - i) * sizeof(float));
    }
}

static void softmax_neon(float *x, int n) {
    float32x4_t mv = vdupq_n_f32(-INFINITY);
    int i = 0;
    for (; i + 4 <= n; i += 4) mv = vmaxq_f32(mv, vld1q_f32(x + i));
    float max = vmaxvq_f32(mv);
    for (int j = i; j < n; j++) max = x[j] > max ? x[j] : max;
    float64x2_t s0 = vdupq_n_f64(0.0), s1 = vdupq_n_f64(0.0);
    for (i = 0; i + 4 <= n; i += 4) {
        const float32x4_t e = exp4(vsubq_f32(vld1q_f32(x + i), vdupq_n_f32(max)));
        vst1q_f32(x + i, e);
        add_f64(e, &s0, &s1);
    }
    double sum = vaddvq_f64(vaddq_f64(s0, s1));
    if (i < n) {
        float b[4];
        for (int j = 0; j < 4; j++) b[j] = i + j < n ? x[i + j] - max : -INFINITY;
        vst1q_f32(b, exp4(vld1q_f32(b)));
        for (int j = 0; i + j < n; j++) { x[i + j] = b[j]; sum += b[j]; }
    }
    const float inv = (float)(1.0 / sum);
    for (i = 0; i + 4 <= n; i += 4) vst1q_f32(x + i, vmulq_n_f32(vld1q_f32(x + i), inv));
    for (; i < n; i++) x[i] *= inv;
}

/* ------------------------------------------------------------------ attention */


/* q.k in double lanes (products of floats are exact in double, so fma = multiply + add).
 * qd holds q as doubles. */
INLINE double dot_qk(const int f16, const double *qd, const void *kp, int hd) {
    float64x2_t a0 = vdupq_n_f64(0.0), a1 = vdupq_n_f64(0.0);
    int i = 0;
    for (; i + 4 <= hd; i += 4) {
        const float32x4_t kv = f16 ? ld4h((const uint16_t *)kp + i) : vld1q_f32((const float *)kp + i);
        a0 = vfmaq_f64(a0, vld1q_f64(qd + i), vcvt_f64_f32(vget_low_f32(kv)));
        a1 = vfmaq_f64(a1, vld1q_f64(qd + i + 2), vcvt_high_f64_f32(kv));
    }
    double s = vaddvq_f64(vaddq_f64(a0, a1));
    for (; i < hd; i++) {
        const double p = qd[i] * (f16 ? (double)h2f(((const uint16_t *)kp)[i]) : (double)((const float *)kp)[i]);
        s += p;
    }
    return s;
}

/* acc = acc * ms (when ms != 1), then acc += v * vs: multiply and add rounded separately as
 * in the ref; for f16 the accumulator is rounded to f16 after each of the two steps. */
INLINE void attn_update(const int f16, void *accp, const void *vp, float ms, float vs, int hd) {
    int i = 0;
    if (f16) {
        uint16_t *acc = accp;
        const uint16_t *v = vp;
        for (; i + 4 <= hd; i += 4) {
            float32x4_t a = ld4h(acc + i);
            if (ms != 1.0f) a = vcvt_f32_f16(vcvt_f16_f32(vmulq_n_f32(a, ms)));
            st4h(acc + i, vaddq_f32(a, vmulq_n_f32(ld4h(v + i), vs)));
        }
        for (; i < hd; i++) {
            float a = h2f(acc[i]);
            if (ms != 1.0f) a = h2f(f2h(a * ms));
            const float t = h2f(v[i]) * vs;
            acc[i] = f2h(a + t);
        }
    } else {
        float *acc = accp;
        const float *v = vp;
        for (; i + 4 <= hd; i += 4) {
            float32x4_t a = vld1q_f32(acc + i);
            if (ms != 1.0f) a = vmulq_n_f32(a, ms);
            vst1q_f32(acc + i, vaddq_f32(a, vmulq_n_f32(vld1q_f32(v + i), vs)));
        }
        for (; i < hd; i++) {
            float a = acc[i];
            if (ms != 1.0f) a *= ms;
            const float t = v[i] * vs;
            acc[i] = a + t;
        }
    }
}

INLINE void attn_common(const int f16, float *out, const float *q, const void *k, const void *v, int n_kv,
                        int hd, size_t kstride, float scale) {
    double qd[EM_ATTN_MAX_HD];
    uint16_t acc16[EM_ATTN_MAX_HD];
    void *acc = f16 ? (void *)acc16 : (void *)out;
    const size_t es = f16 ? 2 : 4;
    for (int i = 0; i < hd; i++) {
        qd[i] = f16 ? (double)h2f(f2h(q[i])) : (double)q[i];
        if (f16) acc16[i] = 0; else out[i] = 0.0f;
    }
    float M = -INFINITY, S = 0.0f;
    for (int t = 0; t < n_kv; t++) {
        const char *kt = (const char *)k + (size_t)t * kstride * es, *vt = (const char *)v + (size_t)t * kstride * es;
        const float s = (float)dot_qk(f16, qd, kt, hd) * scale;
        float ms = 1.0f, vs = 1.0f;
        if (s > M) {  /* new maximum: rescale what was accumulated so far */
            ms = expf(M - s);
            M = s;
        } else {
            vs = expf(s - M);
        }
        attn_update(f16, acc, vt, ms, vs, hd);
        const float Sm = S * ms;  /* two statements: no FMA contraction, as ref */
        S = Sm + vs;
    }
    const float inv = S == 0.0f ? 0.0f : 1.0f / S;
    int i = 0;
    if (f16) {
        for (; i + 4 <= hd; i += 4) vst1q_f32(out + i, vmulq_n_f32(ld4h(acc16 + i), inv));
        for (; i < hd; i++) out[i] = h2f(acc16[i]) * inv;
    } else {
        for (; i + 4 <= hd; i += 4) vst1q_f32(out + i, vmulq_n_f32(vld1q_f32(out + i), inv));
        for (; i < hd; i++) out[i] *= inv;
    }
}

/* A GQA group one head at a time (per position, not per chunk: within rounding of ref). */
static void attn_f32(float *out, const float *q, int n_q, const void *k, const void *v, int n_kv, int hd,
                     size_t kstride, float scale) {
    for (int h = 0; h < n_q; h++) attn_common(0, out + h * hd, q + h * hd, k, v, n_kv, hd, kstride, scale);
}
/* The F16 score of kern_ref.c's dot_f16_ggml: 32 float partial sums of fused products in
 * 8 x 4 lanes (register j, lane l holds element 4j + l of each 32), reduced in ref's order:
 * a[l] = (p[l] + p[16+l]) + (p[8+l] + p[24+l]), i.e. (r0 + r4) + (r2 + r6) for l < 4 and
 * (r1 + r5) + (r3 + r7) for l >= 4, then t = a[0..3] + a[4..7] and (t0 + t1) + (t2 + t3).
 * Elements past hd & ~31 are added in double as in the ref. */
INLINE double dot_qk_f16(const float *q, const uint16_t *k, int hd) {
    const int n32 = hd & ~31;
    double s = 0.0;
    if (n32) {
        float32x4_t r[8];
        for (int j = 0; j < 8; j++) r[j] = vdupq_n_f32(0.0f);
        for (int i = 0; i < n32; i += 32)
            for (int j = 0; j < 8; j++) r[j] = vfmaq_f32(r[j], ld4h(k + i + 4 * j), vld1q_f32(q + i + 4 * j));
        const float32x4_t lo = vaddq_f32(vaddq_f32(r[0], r[4]), vaddq_f32(r[2], r[6]));
        const float32x4_t hi = vaddq_f32(vaddq_f32(r[1], r[5]), vaddq_f32(r[3], r[7]));
        const float32x4_t t = vaddq_f32(lo, hi);
        const float t01 = vgetq_lane_f32(t, 0) + vgetq_lane_f32(t, 1);
        const float t23 = vgetq_lane_f32(t, 2) + vgetq_lane_f32(t, 3);
        s = (double)(t01 + t23);
    }
    for (int i = n32; i < hd; i++) {
        const float p = h2f(k[i]) * q[i];
        s += (double)p;
    }
    return s;
}

/* F16 accumulator, rounded to F16 after each call: acc = acc * m when v is NULL, else
 * acc += v * m, fused (FMLA) for the first hd & ~31 elements and a multiply then an add
 * for the rest, as in the ref. */
INLINE void acc_update_f16(uint16_t *acc, const uint16_t *v, float m, int hd) {
    const int n32 = hd & ~31;
    const float32x4_t mv = vdupq_n_f32(m);
    int i = 0;
    if (!v) {
        for (; i + 4 <= hd; i += 4) st4h(acc + i, vmulq_f32(ld4h(acc + i), mv));
        for (; i < hd; i++) acc[i] = f2h(h2f(acc[i]) * m);
        return;
    }
    for (; i < n32; i += 4) st4h(acc + i, vfmaq_f32(ld4h(acc + i), ld4h(v + i), mv));
    for (; i + 4 <= hd; i += 4) st4h(acc + i, vaddq_f32(ld4h(acc + i), vmulq_f32(ld4h(v + i), mv)));
    for (; i < hd; i++) {
        const float t = h2f(v[i]) * m;
        acc[i] = f2h(h2f(acc[i]) + t);
    }
}

/* One-pass F16 attention of a GQA group, step for step as attn_x in kern_ref.c: q rounded
 * to F16, the score of dot_f16_ggml, the same expf calls and branch on a new maximum, the
 * F16 accumulator and S = fma(S, ms, vs). Each K and V row is read once for the group. */
static void attn_f16(float *out, const float *q, int n_q, const void *k, const void *v, int n_kv, int hd,
                     size_t kstride, float scale) {
    enum { G = EM_ATTN_MAX_GROUP };
    float qf[G][EM_ATTN_MAX_HD];
    uint16_t acc16[G][EM_ATTN_MAX_HD];
    float M[G], S[G];
    for (int h = 0; h < n_q; h++) {
        M[h] = -INFINITY;
        S[h] = 0.0f;
        for (int i = 0; i < hd; i++) {
            qf[h][i] = h2f(f2h(q[h * hd + i]));
            acc16[h][i] = 0;
        }
    }
    for (int j = 0; j < n_kv; j++) {
        const uint16_t *kt = (const uint16_t *)k + (size_t)j * kstride, *vt = (const uint16_t *)v + (size_t)j * kstride;
        for (int h = 0; h < n_q; h++) {
            const float s = (float)dot_qk_f16(qf[h], kt, hd) * scale;
            float ms = 1.0f, vs = 1.0f;
            if (s > M[h]) {  /* new maximum: rescale what was accumulated so far */
                ms = expf(M[h] - s);
                M[h] = s;
                acc_update_f16(acc16[h], NULL, ms, hd);
            } else {
                vs = expf(s - M[h]);
            }
            acc_update_f16(acc16[h], vt, vs, hd);
            S[h] = fmaf(S[h], ms, vs);
        }
    }
    for (int h = 0; h < n_q; h++) {
        const float inv = S[h] == 0.0f ? 0.0f : 1.0f / S[h];
        float *o = out + h * hd;
        int i = 0;
        for (; i + 4 <= hd; i += 4) vst1q_f32(o + i, vmulq_n_f32(ld4h(acc16[h] + i), inv));
        for (; i < hd; i++) o[i] = h2f(acc16[h][i]) * inv;
    }
}

/* ------------------------------------------------------------------ iq4_nl, iq4_xs, tq1_0, tq2_0 */

/* IQ4 codes become int8 values with one TBL (vqtbl1q_s8) from the 16-entry table; |w| <=
 * 127, so dot32's wide form (2 products per int16 lane) is exact. Ternary codes (0..2; a
 * corrupt tq2_0 code 3 counts as 2, as in ref) take the narrow form and sum(a) comes off
 * through the q8_K bsums. iq4_nl folds each block's integer sum into a scalar with ref's
 * float expression (bit-identical to ref, as the q8_0 family here); the 256-element types
 * fold int32 lanes into 4 float lanes per block like the k-quants. */
INLINE int8x16_t iq4_table(void) {
    static const int8_t v[16] = { -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113 };
    return vld1q_s8(v);
}

/* iq4_nl (x in q8_0): R rows x C columns; decode runs 4 rows side by side. */
INLINE void iq4nl_tile(const int R, const int C, int64_t nb, const char *w, size_t wrow, const char *x,
                       size_t xcol, float *y, int ldy) {
    const int8x16_t tab = iq4_table();
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    float acc[4][8];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) acc[r][c] = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const block_iq4_nl *blk = (const block_iq4_nl *)(w + (size_t)r * wrow) + b;
            __builtin_prefetch((const char *)blk + 512);
            const uint8x16_t q = vld1q_u8(blk->qs);
            const int8x16_t w0 = vqtbl1q_s8(tab, vandq_u8(q, m4)), w1 = vqtbl1q_s8(tab, vshrq_n_u8(q, 4));
            const float dw = h2f(blk->d);
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) {
                const block_q8_0 *a = (const block_q8_0 *)(x + (size_t)c * xcol) + b;
                const int s = vaddvq_s32(dot32(1, w0, w1, a->qs));
                acc[r][c] += (h2f(a->d) * dw) * (float)s;
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) y[(size_t)c * ldy + r] = acc[r][c];
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

/* Trits n of 16 tq1_0 bytes times per-byte multipliers m (3^n): (uint8)(q * m) * 3 >> 8. */
INLINE int8x16_t tq1_trits(uint8x16_t q, uint8x16_t m) {
    const uint8x16_t p = vmulq_u8(q, m);
    const uint8x8_t three = vdup_n_u8(3);
    return vreinterpretq_s8_u8(vcombine_u8(vshrn_n_u16(vmull_u8(vget_low_u8(p), three), 8),
                                           vshrn_n_u16(vmull_high_u8(p, vdupq_n_u8(3)), 8)));
}

/* A 256-element block's weights as 16 vectors of 16 (element order): iq4_xs values or
 * ternary codes. */
INLINE float iqtq_unpack(const int type, const char *wr, int64_t b, int8x16_t v[16], int sc[8]) {
    if (type == EM_IQ4_XS) {
        const block_iq4_xs *blk = (const block_iq4_xs *)wr + b;
        __builtin_prefetch((const char *)blk + 2 * sizeof *blk);
        const int8x16_t tab = iq4_table();
        const uint8x16_t m4 = vdupq_n_u8(0x0f);
        const unsigned sh = blk->scales_h;
#pragma GCC unroll 8
        for (int ib = 0; ib < 8; ib++) {
            const uint8x16_t q = vld1q_u8(blk->qs + 16 * ib);
            v[2 * ib] = vqtbl1q_s8(tab, vandq_u8(q, m4));
            v[2 * ib + 1] = vqtbl1q_s8(tab, vshrq_n_u8(q, 4));
            sc[ib] = (((blk->scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((sh >> 2 * ib) & 3) << 4)) - 32;
        }
        return h2f(blk->d);
    }
    if (type == EM_TQ2_0) {
        const block_tq2_0 *blk = (const block_tq2_0 *)wr + b;
        __builtin_prefetch((const char *)blk + 2 * sizeof *blk);
        const uint8x16_t m3 = vdupq_n_u8(3);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const uint8x16_t q0 = vld1q_u8(blk->qs + 32 * h), q1 = vld1q_u8(blk->qs + 32 * h + 16);
            v[8 * h + 0] = vreinterpretq_s8_u8(vandq_u8(q0, m3));
            v[8 * h + 1] = vreinterpretq_s8_u8(vandq_u8(q1, m3));
            v[8 * h + 2] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(q0, 2), m3));
            v[8 * h + 3] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(q1, 2), m3));
            v[8 * h + 4] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(q0, 4), m3));
            v[8 * h + 5] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(q1, 4), m3));
            v[8 * h + 6] = vreinterpretq_s8_u8(vshrq_n_u8(q0, 6));
            v[8 * h + 7] = vreinterpretq_s8_u8(vshrq_n_u8(q1, 6));
        }
        return h2f(blk->d);
    }
    const block_tq1_0 *blk = (const block_tq1_0 *)wr + b;
    __builtin_prefetch((const char *)blk + 2 * sizeof *blk);
    static const uint8_t p3[5] = { 1, 3, 9, 27, 81 };
    static const uint8_t mqh[16] = { 1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27 };
    const uint8x16_t q0 = vld1q_u8(blk->qs), q1 = vld1q_u8(blk->qs + 16), q2 = vld1q_u8(blk->qs + 32);
#pragma GCC unroll 5
    for (int n = 0; n < 5; n++) {  /* elements 32n..32n+31 */
        v[2 * n] = tq1_trits(q0, vdupq_n_u8(p3[n]));
        v[2 * n + 1] = tq1_trits(q1, vdupq_n_u8(p3[n]));
    }
#pragma GCC unroll 5
    for (int n = 0; n < 5; n++) v[10 + n] = tq1_trits(q2, vdupq_n_u8(p3[n]));  /* 160 + 16n */
    uint32_t qh;
    memcpy(&qh, blk->qh, 4);  /* 240..255: byte 4n+j = trit n of qh[j] */
    v[15] = tq1_trits(vreinterpretq_u8_u32(vdupq_n_u32(qh)), vld1q_u8(mqh));
    return h2f(blk->d);
}

/* iq4_xs / tq1_0 / tq2_0: one row, C columns. */
INLINE void iqtq_tile(const int type, const int C, int64_t nb, const char *wr, const char *x, size_t xcol,
                      float *y, int ldy) {
    float32x4_t acc[8];
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) acc[c] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; b++) {
        int8x16_t v[16];
        int sc[8];
        const float d = iqtq_unpack(type, wr, b, v, sc);
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            const block_q8_K *a = xk(x, xcol, c, b);
            int32x4_t L;
            if (type == EM_IQ4_XS) {
                L = vdupq_n_s32(0);
#pragma GCC unroll 8
                for (int ib = 0; ib < 8; ib++)
                    L = vmlaq_n_s32(L, dot32(1, v[2 * ib], v[2 * ib + 1], a->qs + 32 * ib), sc[ib]);
            } else {
                L = vnegq_s32(vpadalq_s16(vpaddlq_s16(vld1q_s16(a->bsums)), vld1q_s16(a->bsums + 8)));
#pragma GCC unroll 8
                for (int j = 0; j < 8; j++) L = vaddq_s32(L, dot32(0, v[2 * j], v[2 * j + 1], a->qs + 32 * j));
            }
            acc[c] = vfmaq_n_f32(acc[c], vcvtq_f32_s32(L), d * a->d);
        }
    }
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) y[(size_t)c * ldy] = vaddvq_f32(acc[c]);
}

INLINE void mm_iqtq(const int type, int64_t n, const void *w, size_t wrow, int r0, int r1, const void *x,
                    size_t xcol, int ncols, float *y, int ldy) {
    const int64_t nb = n / QK_K;
    for (int r = r0; r < r1; r++) {
        const char *wr = (const char *)w + (size_t)r * wrow;
#define TILE(C) iqtq_tile(type, C, nb, wr, x, xcol, y + r, ldy)
        EM_COLS_1_8(ncols, TILE);
#undef TILE
    }
}

EM_MM_WRAP(mm_iq4_xs, mm_iqtq, EM_IQ4_XS)
EM_MM_WRAP(mm_tq1_0, mm_iqtq, EM_TQ1_0)
EM_MM_WRAP(mm_tq2_0, mm_iqtq, EM_TQ2_0)

/* Attention over a cache of any type: attn_kv.h's body with this file's matmuls (through
 * self) and FMA row update; hd is a multiple of 32. */
static void axpy_neon(float *y, const float *x, float a, int n) {  /* n a multiple of 4 */
    for (int i = 0; i < n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), a));
}

static void attn_kv_neon(const em_kernels *self, float *out, const float *q, int n_q, int tk, const void *k,
                        size_t krow, int tv, const void *v, size_t vrow, int n_kv, int hd, float scale) {
    attn_kv_body(self, axpy_neon, out, q, n_q, tk, k, krow, tv, v, vrow, n_kv, hd, scale);
}

/* ssm_scan (kernels.h): ggml's 32 partial sums as eight 4-lane vectors (two per 8-lane
 * vector of its AVX2 loop), reduced in the same pairs. */
static void ssm_scan_neon(float *S, const float *x, const float *B, const float *C, float dA, float dt, float D,
                          float *y, int hd, int ds) {
    const int np = ds & ~31;
    const float32x4_t vdA = vdupq_n_f32(dA);
    for (int i = 0; i < hd; i++) {
        float *s = S + (size_t)i * ds;
        const float x_dt = x[i] * dt;
        const float32x4_t vx = vdupq_n_f32(x_dt);
        float32x4_t acc[8];
        for (int k = 0; k < 8; k++) acc[k] = vdupq_n_f32(0.0f);
        for (int j0 = 0; j0 < np; j0 += 32)
            for (int k = 0; k < 8; k++) {
                const int j = j0 + 4 * k;
                const float32x4_t v = vaddq_f32(vmulq_f32(vld1q_f32(s + j), vdA), vmulq_f32(vld1q_f32(B + j), vx));
                acc[k] = vfmaq_f32(acc[k], v, vld1q_f32(C + j));
                vst1q_f32(s + j, v);
            }
        const float32x4_t a0 = vaddq_f32(vaddq_f32(acc[0], acc[4]), vaddq_f32(acc[2], acc[6]));
        const float32x4_t a1 = vaddq_f32(vaddq_f32(acc[1], acc[5]), vaddq_f32(acc[3], acc[7]));
        const float32x4_t t0 = vaddq_f32(a0, a1), t1 = vpaddq_f32(t0, t0);
        float sum = vgetq_lane_f32(t1, 0) + vgetq_lane_f32(t1, 1);
        for (int j = np; j < ds; j++) {
            const float v = s[j] * dA + B[j] * x_dt;
            sum = fmaf(v, C[j], sum);
            s[j] = v;
        }
        y[i] = sum + x[i] * D;
    }
}

/* ------------------------------------------------------------------ INT2..INT8 / BFP3..BFP7 / OVP4 matmul */

/* ember's own formats (quant_seed.c; layouts in quant.h), activations in q8_0. Codes are
 * unpacked from their bit planes to a byte each in 16-element chunks, made signed (INT
 * codes <= 127 as they are, INT8's as q - 128 with 128*sum(a) added back, BFP's as
 * u - 2^(m-1), OVP4's from two TBL lookups blended on the victim marker) and go through
 * dot32 (|w| <= 128, |a| <= 127: exact). INT adds m*da*sum(a). One 4-lane accumulator per
 * (row, column), in q8_0 block order. */

/* Elements 16k..16k+15 from a 1-bit plane (bit j % 8 of byte j / 8), at bit sh. */
INLINE uint8x16_t seedn_bits16(const uint8_t *p, int sh) {
    static const uint8_t bit[16] = { 1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128 };
    const uint8x16_t b = vcombine_u8(vdup_n_u8(p[0]), vdup_n_u8(p[1]));
    return vandq_u8(vtstq_u8(b, vld1q_u8(bit)), vdupq_n_u8((uint8_t)(1 << sh)));
}

/* The 64 codes of an INT group as 4 chunks of 16 (element order). */
INLINE void seedn_int_codes(const int bits, const uint8_t *q, uint8x16_t c[4]) {
    if (bits == 8) {
        for (int k = 0; k < 4; k++) c[k] = vld1q_u8(q + 16 * k);
        return;
    }
    for (int k = 0; k < 4; k++) c[k] = vdupq_n_u8(0);
    int sh = 0;
    if (bits & 4) {
        const uint8x16_t x0 = vld1q_u8(q), x1 = vld1q_u8(q + 16), m4 = vdupq_n_u8(15);
        c[0] = vandq_u8(x0, m4);
        c[1] = vandq_u8(x1, m4);
        c[2] = vshrq_n_u8(x0, 4);
        c[3] = vshrq_n_u8(x1, 4);
        q += 32;
        sh = 4;
    }
    if (bits & 2) {
        const uint8x16_t x = vld1q_u8(q);
        for (int k = 0; k < 4; k++) {
            const uint8x16_t t = vandq_u8(vshlq_u8(x, vdupq_n_s8((int8_t)(-2 * k))), vdupq_n_u8(3));
            c[k] = vorrq_u8(c[k], vshlq_u8(t, vdupq_n_s8((int8_t)sh)));
        }
        q += 16;
        sh += 2;
    }
    if (bits & 1)
        for (int k = 0; k < 4; k++) c[k] = vorrq_u8(c[k], seedn_bits16(q + 2 * k, sh));
}

/* The 32 codes of a BFP block as 2 chunks of 16. */
INLINE void seedn_bfp_codes(const int bits, const uint8_t *q, uint8x16_t c[2]) {
    c[0] = c[1] = vdupq_n_u8(0);
    int sh = 0;
    if (bits & 4) {
        const uint8x16_t x = vld1q_u8(q);
        c[0] = vandq_u8(x, vdupq_n_u8(15));
        c[1] = vshrq_n_u8(x, 4);
        q += 16;
        sh = 4;
    }
    if (bits & 2) {
        static const int8_t s01[16] = { 0, 0, 0, 0, 0, 0, 0, 0, -2, -2, -2, -2, -2, -2, -2, -2 };
        const uint8x8_t b = vld1_u8(q);
        const uint8x16_t x = vcombine_u8(b, b);
        const int8x16_t sa = vld1q_s8(s01), sb = vsubq_s8(sa, vdupq_n_s8(4));
        const uint8x16_t t0 = vandq_u8(vshlq_u8(x, sa), vdupq_n_u8(3)), t1 = vandq_u8(vshlq_u8(x, sb), vdupq_n_u8(3));
        c[0] = vorrq_u8(c[0], vshlq_u8(t0, vdupq_n_s8((int8_t)sh)));
        c[1] = vorrq_u8(c[1], vshlq_u8(t1, vdupq_n_s8((int8_t)sh)));
        q += 8;
        sh += 2;
    }
    if (bits & 1) {
        c[0] = vorrq_u8(c[0], seedn_bits16(q, sh));
        c[1] = vorrq_u8(c[1], seedn_bits16(q + 2, sh));
    }
}

/* OVP4: the 64 values (-96..96) of a group as 4 chunks of 16. */
INLINE void seedn_ovp_values(const uint8_t *qs, int8x16_t v[4]) {
    static const int8_t tn_[16] = { 0, 1, 2, 3, 4, 5, 6, 7, 0, -7, -6, -5, -4, -3, -2, -1 };
    static const int8_t to_[16] = { 0, 12, 16, 24, 32, 48, 64, 96, 0, -12, -16, -24, -32, -48, -64, -96 };
    const int8x16_t tn = vld1q_s8(tn_), to = vld1q_s8(to_);
    const uint8x16_t m4 = vdupq_n_u8(15), eight = vdupq_n_u8(8);
    for (int k = 0; k < 2; k++) {
        const uint8x16_t x = vld1q_u8(qs + 16 * k);
        const uint8x16_t lo = vandq_u8(x, m4), hi = vshrq_n_u8(x, 4);
        const uint8x16_t ml = vceqq_u8(lo, eight), mh = vceqq_u8(hi, eight);
        v[k] = vbslq_s8(mh, vqtbl1q_s8(to, lo), vqtbl1q_s8(tn, lo));
        v[k + 2] = vbslq_s8(ml, vqtbl1q_s8(to, hi), vqtbl1q_s8(tn, hi));
    }
}

INLINE int32x4_t seedn_asum(const int8_t *a) {
    return vpaddlq_s16(vpadalq_s8(vpaddlq_s8(vld1q_s8(a)), vld1q_s8(a + 16)));
}

INLINE void seedn_rows(const int t, const int C, int64_t n, const char *w, size_t wrow, int r0, int r1,
                       const char *x, size_t xcol, float *y, int ldy) {
    const int ib = em_int_bits(t), fb = em_bfp_bits(t);
    for (int r = r0; r < r1; r++) {
        const uint8_t *wr = (const uint8_t *)w + (size_t)r * wrow;
        float32x4_t acc[8];
        for (int c = 0; c < C; c++) acc[c] = vdupq_n_f32(0.0f);
        if (fb) {
            const size_t bs = em_bfp_block_bytes(fb);
            const int8x16_t off = vdupq_n_s8((int8_t)(1 << (fb - 1)));
            for (int64_t b = 0; b < n / QK_BFP; b++) {
                const uint8_t *blk = wr + (size_t)b * bs;
                const uint32_t eb = (uint32_t)blk[0] << 23;
                float sc;
                memcpy(&sc, &eb, 4);
                uint8x16_t u[2];
                seedn_bfp_codes(fb, blk + 1, u);
                const int8x16_t v0 = vsubq_s8(vreinterpretq_s8_u8(u[0]), off), v1 = vsubq_s8(vreinterpretq_s8_u8(u[1]), off);
                for (int c = 0; c < C; c++) {
                    const block_q8_0 *a = (const block_q8_0 *)(x + (size_t)c * xcol) + b;
                    acc[c] = vfmaq_n_f32(acc[c], vcvtq_f32_s32(dot32(1, v0, v1, a->qs)), sc * h2f(a->d));
                }
            }
        } else {
            const size_t bs = ib ? em_int_block_bytes(ib) : sizeof(block_ovp4);
            for (int64_t g = 0; g < n / QK_INT; g++) {
                const uint8_t *blk = wr + (size_t)g * bs;
                uint16_t hd, hm = 0;
                memcpy(&hd, blk, 2);
                int8x16_t v[4];
                if (ib) {
                    memcpy(&hm, blk + 2, 2);
                    uint8x16_t u[4];
                    seedn_int_codes(ib, blk + 4, u);
                    for (int k = 0; k < 4; k++)
                        v[k] = vreinterpretq_s8_u8(ib == 8 ? veorq_u8(u[k], vdupq_n_u8(0x80)) : u[k]);
                } else {
                    seedn_ovp_values(blk + 2, v);
                }
                const float d = h2f(hd), m = h2f(hm);
                for (int c = 0; c < C; c++) {
                    for (int h = 0; h < 2; h++) {
                        const block_q8_0 *a = (const block_q8_0 *)(x + (size_t)c * xcol) + 2 * g + h;
                        const float da = h2f(a->d);
                        int32x4_t is = dot32(1, v[2 * h], v[2 * h + 1], a->qs);
                        if (ib) {
                            const int32x4_t as = seedn_asum(a->qs);
                            if (ib == 8) is = vaddq_s32(is, vshlq_n_s32(as, 7));
                            acc[c] = vfmaq_n_f32(acc[c], vcvtq_f32_s32(as), m * da);
                        }
                        acc[c] = vfmaq_n_f32(acc[c], vcvtq_f32_s32(is), d * da);
                    }
                }
            }
        }
        for (int c = 0; c < C; c++) y[(size_t)c * ldy + r] = vaddvq_f32(acc[c]);
    }
}

INLINE void mm_seed(const int t, int64_t n, const void *w, size_t wrow, int r0, int r1, const void *x,
                    size_t xcol, int ncols, float *y, int ldy) {
#define TILE(C) seedn_rows(t, C, n, w, wrow, r0, r1, x, xcol, y, ldy)
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

const em_kernels em_kernels_neon = {
    .name = "neon",
    .quantize_act = {
        [EM_F32] = quant_f32, [EM_F16] = quant_f16, [EM_BF16] = quant_bf16,
        [EM_Q8_0] = quant_q8_0, [EM_Q8_1] = quant_q8_1, [EM_Q8_K] = quant_q8_K,
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
    },
    .rmsnorm = rmsnorm_neon,
    .softmax = softmax_neon,
    .swiglu = swiglu_neon,
    .attn_kv = attn_kv_neon,
    .attn = { [EM_F32] = attn_f32, [EM_F16] = attn_f16 },
    .ssm_scan = ssm_scan_neon,
};
