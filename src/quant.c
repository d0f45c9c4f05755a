/* quant.c: the scalar numerical specification for ggml tensor types (see quant.h).
 *
 * Everything here follows ggml (ggml-quants.c and ggml-cpu/quants.c, generic paths) so
 * that GGUF weights are read in place and dot products reproduce llama.cpp's math:
 *   - dequantize_*: the same float expressions, in the same order, as dequantize_row_*;
 *     results are bit-identical to ggml and to gguf-py (tests/data/quant checks that).
 *   - activation quantizers Q8_0/Q8_1 follow llama.cpp's x86 AVX2 path (id = 127/amax,
 *     round half to even); Q8_K follows quantize_row_q8_K_ref (which x86 also uses).
 *   - Q4_0/Q4_1 quantizers are ggml's *_ref (truncation of x*id + 8.5 / + 0.5).
 *   - em_vec_dot follows ggml's *_generic dot products: exact integer sums per block (per
 *     8-lane accumulator for k-quants), then float accumulation in ggml's order.
 * Build with ISO C (-std=c11): GCC then does not contract a*b+c into FMA, which would
 * change results in the last bit.
 *
 * Alignment: block pointers are accessed as structs, so weight rows must be 2-byte
 * aligned (every block type except q8_K, which needs 4; q8_K only holds activations that
 * ember allocates). GGUF tensor data is 32-byte aligned and all block sizes are even, so
 * every row of a GGUF tensor satisfies this. F32 rows need 4-byte alignment. */
#include "quant.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- type table */

static const em_type_info type_table[EM_TYPE_COUNT] = {
    [EM_F32]  = { "f32",  1,     sizeof(float),       EM_F32 },
    [EM_F16]  = { "f16",  1,     sizeof(uint16_t),    EM_F16 },
    [EM_BF16] = { "bf16", 1,     sizeof(uint16_t),    EM_BF16 },
    [EM_Q4_0] = { "q4_0", QK4_0, sizeof(block_q4_0),  EM_Q8_0 },
    [EM_Q4_1] = { "q4_1", QK4_1, sizeof(block_q4_1),  EM_Q8_1 },
    [EM_Q8_0] = { "q8_0", QK8_0, sizeof(block_q8_0),  EM_Q8_0 },
    [EM_Q8_1] = { "q8_1", QK8_1, sizeof(block_q8_1),  -1 },
    [EM_Q4_K] = { "q4_K", QK_K,  sizeof(block_q4_K),  EM_Q8_K },
    [EM_Q5_K] = { "q5_K", QK_K,  sizeof(block_q5_K),  EM_Q8_K },
    [EM_Q6_K] = { "q6_K", QK_K,  sizeof(block_q6_K),  EM_Q8_K },
    [EM_Q8_K] = { "q8_K", QK_K,  sizeof(block_q8_K),  -1 },
};

const em_type_info *em_type_get(int type) {
    if (type < 0 || type >= EM_TYPE_COUNT || !type_table[type].name) return NULL;
    return &type_table[type];
}

/* Number of blocks in n elements, or -1 when n is negative or not a whole number of
 * blocks (callers treat that as an unsupported request rather than truncating). */
static int64_t n_blocks(const em_type_info *ti, int64_t n) {
    if (!ti || n < 0 || n % ti->blck) return -1;
    return n / ti->blck;
}

size_t em_row_size(int type, int64_t n) {
    const em_type_info *ti = em_type_get(type);
    int64_t nb = n_blocks(ti, n);
    return nb < 0 ? 0 : (size_t)nb * ti->bytes;
}

/* ---------------------------------------------------------------- fp16 / bf16 */

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float em_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f) return u2f(sign | 0x7f800000 | (mant << 13));   /* inf, NaN (payload kept) */
    if (exp) return u2f(sign | ((exp + 112) << 23) | (mant << 13));  /* rebias 15 -> 127 */
    if (!mant) return u2f(sign);
    /* Subnormal half mant * 2^-24 is a normal float: shift the leading 1 up to bit 10. */
    uint32_t e = 113;  /* biased float exponent of 2^-14 */
    while (!(mant & 0x400)) { mant <<= 1; e--; }
    return u2f(sign | (e << 23) | ((mant & 0x3ff) << 13));
}

/* Round to nearest even in pure integer arithmetic, so the result does not depend on the
 * FPU mode or on F16C. NaN keeps its top payload bits (as numpy does); a payload that would
 * vanish becomes 1 so the value stays NaN. */
uint16_t em_f32_to_f16(float f) {
    uint32_t x = f2u(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffff;
    if (ax > 0x7f800000) {
        uint16_t r = (uint16_t)(0x7c00 | ((ax >> 13) & 0x3ff));
        return sign | (r == 0x7c00 ? 0x7c01 : r);
    }
    if (ax >= 0x477ff000) return sign | 0x7c00;  /* >= 65520 (the tie above 65504) -> inf */
    if (ax >= 0x38800000) {                      /* >= 2^-14: normal half */
        uint32_t r = ax - ((uint32_t)112 << 23); /* rebias 127 -> 15 */
        r += 0xfff + ((r >> 13) & 1);            /* half-ulp minus one, plus the even bit */
        return sign | (uint16_t)(r >> 13);
    }
    /* Subnormal half: round |f| / 2^-24. Float value = m * 2^(e-150) (e >= 1), so the
     * quotient is m >> (126 - e); float subnormals (e = 0) use e = 1 without the hidden bit. */
    uint32_t e = ax >> 23;
    uint32_t m = (ax & 0x7fffff) | (e ? 0x800000u : 0);
    uint32_t shift = 126 - (e ? e : 1);          /* >= 14 here */
    if (shift > 24) return sign;                 /* m < 2^24, so below half of 2^-24 */
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;  /* q may reach 0x400: smallest normal */
    return sign | (uint16_t)q;
}

float em_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

/* ggml_compute_fp32_to_bf16: NaN is truncated and forced quiet; everything else rounds to
 * nearest even on the bit pattern, which also handles subnormals and overflow to inf. */
uint16_t em_f32_to_bf16(float f) {
    uint32_t u = f2u(f);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 64);
    return (uint16_t)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
}

/* ---------------------------------------------------------------- quantizers */

/* ggml's nearest_int: adding 1.5 * 2^23 leaves no fraction bits, so the FPU's default
 * rounding (nearest, ties to even) rounds the value. Same as nearbyintf for |f| < 2^22,
 * but no libm call and no undefined float->int conversion when f is NaN. */
static inline int round_even(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

static float block_amax(const float *x, int n) {
    float amax = 0.0f;
    for (int j = 0; j < n; j++) {
        float a = fabsf(x[j]);
        if (a > amax) amax = a;
    }
    return amax;
}

/* llama.cpp's x86 quantize_row_q8_0 / q8_1: d = amax/127 stored as fp16, the multiplier
 * is 127/amax (not 1/d as in the scalar _ref, which can differ by an ulp), rounding is to
 * nearest even (_mm256_round_ps), not roundf. */
static void quantize_q8_0(const float *x, block_q8_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK8_0) {
        const float amax = block_amax(x, QK8_0);
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[i].d = em_f32_to_f16(d);
        for (int j = 0; j < QK8_0; j++) y[i].qs[j] = (int8_t)round_even(x[j] * id);
    }
}

static void quantize_q8_1(const float *x, block_q8_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK8_1) {
        const float amax = block_amax(x, QK8_1);
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        int sum = 0;
        for (int j = 0; j < QK8_1; j++) {
            y[i].qs[j] = (int8_t)round_even(x[j] * id);
            sum += y[i].qs[j];
        }
        y[i].d = em_f32_to_f16(d);
        y[i].s = em_f32_to_f16(d * (float)sum);  /* s uses the rounded q, as ggml does */
    }
}

/* quantize_row_q8_K_ref. The scale comes from the signed value of largest magnitude and is
 * negative on purpose (iscale = -127/max), so that value maps to -127 and nothing needs
 * clamping below; the upper clamp catches +127.x from rounding. bsums feed the k-quant
 * mins term. An all-zero block gets d = 0 (ggml leaves bsums stale there; we zero them). */
static void quantize_q8_K(const float *x, block_q8_K *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        float max = 0.0f, amax = 0.0f;
        for (int j = 0; j < QK_K; j++) {
            float ax = fabsf(x[j]);
            if (ax > amax) { amax = ax; max = x[j]; }
        }
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K; j++) {
            int v = round_even(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += y[i].qs[j * 16 + l];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

/* quantize_row_q4_0_ref: d = max / -8 where max keeps its sign, so max itself maps to
 * q = 0 and -max to 16, clamped to 15. The ref truncates x*id + 8.5 (an int8 cast); the
 * explicit range test gives the same result for finite inputs and no UB for NaN. */
static int trunc_q4(float t) {
    if (!(t > 0.0f)) return 0;
    return t >= 15.0f ? 15 : (int)t;
}

static void quantize_q4_0(const float *x, block_q4_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK4_0) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK4_0; j++) {
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        }
        const float d = max / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = em_f32_to_f16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            int q0 = trunc_q4(x[j] * id + 8.5f);
            int q1 = trunc_q4(x[j + QK4_0 / 2] * id + 8.5f);
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* quantize_row_q4_1_ref: affine, d = (max - min)/15, m = min, q = trunc((x-min)*id + 0.5). */
static void quantize_q4_1(const float *x, block_q4_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK4_1) {
        float min = x[0], max = x[0];
        for (int j = 1; j < QK4_1; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 15;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = em_f32_to_f16(d);
        y[i].m = em_f32_to_f16(min);
        for (int j = 0; j < QK4_1 / 2; j++) {
            int q0 = trunc_q4((x[j] - min) * id + 0.5f);
            int q1 = trunc_q4((x[j + QK4_1 / 2] - min) * id + 0.5f);
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

int em_quantize_row(int type, const float *x, void *y, int64_t n) {
    int64_t nb = n_blocks(em_type_get(type), n);
    if (nb < 0) return -1;
    switch (type) {
    case EM_F32:
        if (nb) memmove(y, x, (size_t)nb * sizeof(float));
        return 0;
    case EM_F16: {
        uint16_t *h = y;
        for (int64_t i = 0; i < nb; i++) h[i] = em_f32_to_f16(x[i]);
        return 0;
    }
    case EM_BF16: {
        uint16_t *h = y;
        for (int64_t i = 0; i < nb; i++) h[i] = em_f32_to_bf16(x[i]);
        return 0;
    }
    case EM_Q8_0: quantize_q8_0(x, y, nb); return 0;
    case EM_Q8_1: quantize_q8_1(x, y, nb); return 0;
    case EM_Q8_K: quantize_q8_K(x, y, nb); return 0;
    case EM_Q4_0: quantize_q4_0(x, y, nb); return 0;
    case EM_Q4_1: quantize_q4_1(x, y, nb); return 0;
    default: return -1;
    }
}

/* ---------------------------------------------------------------- dequantizers */

/* Scale and min j (0..7) of a Q4_K/Q5_K block, 6 bits each, packed in 12 bytes:
 * bytes 0-3 hold sc0-3 (low 6 bits) and the top 2 bits of sc4-7; bytes 4-7 the same for
 * the mins; bytes 8-11 the low 4 bits of sc4-7 (low nibble) and m4-7 (high nibble). */
static inline void get_scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void dequant_q4_0(const block_q4_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QK4_0) {
        const float d = em_f16_to_f32(x[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {  /* low nibbles: first half of the block */
            y[j] = ((x[i].qs[j] & 0x0F) - 8) * d;
            y[j + QK4_0 / 2] = ((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void dequant_q4_1(const block_q4_1 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QK4_1) {
        const float d = em_f16_to_f32(x[i].d), m = em_f16_to_f32(x[i].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            y[j] = (x[i].qs[j] & 0x0F) * d + m;
            y[j + QK4_1 / 2] = (x[i].qs[j] >> 4) * d + m;
        }
    }
}

static void dequant_q8_0(const block_q8_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QK8_0) {
        const float d = em_f16_to_f32(x[i].d);
        for (int j = 0; j < QK8_0; j++) y[j] = x[i].qs[j] * d;
    }
}

static void dequant_q8_1(const block_q8_1 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QK8_1) {
        const float d = em_f16_to_f32(x[i].d);
        for (int j = 0; j < QK8_1; j++) y[j] = x[i].qs[j] * d;
    }
}

static void dequant_q8_K(const block_q8_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QK_K) {
        for (int j = 0; j < QK_K; j++) y[j] = x[i].d * x[i].qs[j];
    }
}

/* dequantize_row_q4_K: per 64 elements, 32 bytes of qs; low nibbles use sub-block 2k,
 * high nibbles sub-block 2k+1. y = (d*sc)*q - (dmin*m). */
static void dequant_q4_K(const block_q4_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *q = x[i].qs;
        const float d = em_f16_to_f32(x[i].d), dmin = em_f16_to_f32(x[i].dmin);
        for (int is = 0; is < 8; is += 2, q += 32) {
            uint8_t sc, m;
            get_scale_min_k4(is, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

/* dequantize_row_q5_K: as q4_K plus a fifth bit; qh bit 2k (k = 64-chunk) is the high
 * bit of the low-nibble half, bit 2k+1 of the high-nibble half. */
static void dequant_q5_K(const block_q5_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *ql = x[i].qs, *qh = x[i].qh;
        const float d = em_f16_to_f32(x[i].d), dmin = em_f16_to_f32(x[i].dmin);
        unsigned u1 = 1, u2 = 2;  /* qh bit masks for the two halves of each 64-chunk */
        for (int is = 0; is < 8; is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
            uint8_t sc, m;
            get_scale_min_k4(is, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

/* dequantize_row_q6_K: per 128-element half, ql[0..63] and qh[0..31] give four 32-element
 * runs; each run of 16 has its own int8 scale. y = (d*sc)*q with q in [-32, 31]. */
static void dequant_q6_K(const block_q6_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = em_f16_to_f32(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int half = 0; half < 2; half++, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = (int)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = (int)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = d * sc[is + 0] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
        }
    }
}

int em_dequantize_row(int type, const void *x, float *y, int64_t n) {
    int64_t nb = n_blocks(em_type_get(type), n);
    if (nb < 0) return -1;
    switch (type) {
    case EM_F32:
        if (nb) memmove(y, x, (size_t)nb * sizeof(float));
        return 0;
    case EM_F16: {
        const uint16_t *h = x;
        for (int64_t i = 0; i < nb; i++) y[i] = em_f16_to_f32(h[i]);
        return 0;
    }
    case EM_BF16: {
        const uint16_t *h = x;
        for (int64_t i = 0; i < nb; i++) y[i] = em_bf16_to_f32(h[i]);
        return 0;
    }
    case EM_Q4_0: dequant_q4_0(x, y, nb); return 0;
    case EM_Q4_1: dequant_q4_1(x, y, nb); return 0;
    case EM_Q8_0: dequant_q8_0(x, y, nb); return 0;
    case EM_Q8_1: dequant_q8_1(x, y, nb); return 0;
    case EM_Q4_K: dequant_q4_K(x, y, nb); return 0;
    case EM_Q5_K: dequant_q5_K(x, y, nb); return 0;
    case EM_Q6_K: dequant_q6_K(x, y, nb); return 0;
    case EM_Q8_K: dequant_q8_K(x, y, nb); return 0;
    default: return -1;
    }
}

/* ---------------------------------------------------------------- dot products */

/* ember's spec for f32: float products summed in a float, in index order. (ggml's generic
 * ggml_vec_dot_f32 sums the float products in double instead, and its SIMD paths use
 * float lanes; ember's SIMD kernels are held to this within a tolerance, not bit for bit.) */
static float dot_f32(int64_t n, const float *x, const float *y) {
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += x[i] * y[i];
    return sum;
}

/* ggml_vec_dot_f16/bf16 generic: the product of two halves (or two bf16) is exact in float;
 * the sum is kept in double (ggml_float) and rounded once at the end. */
static float dot_f16(int64_t n, const uint16_t *x, const uint16_t *y) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(em_f16_to_f32(x[i]) * em_f16_to_f32(y[i]));
    return (float)sum;
}

static float dot_bf16(int64_t n, const uint16_t *x, const uint16_t *y) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(em_bf16_to_f32(x[i]) * em_bf16_to_f32(y[i]));
    return (float)sum;
}

/* ggml_vec_dot_q4_0_q8_0_generic: sumf += ((float)sumi * dx) * dy, block by block. */
static float dot_q4_0_q8_0(int64_t nb, const block_q4_0 *x, const block_q8_0 *y) {
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int sumi = 0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            sumi += ((x[i].qs[j] & 0x0F) - 8) * y[i].qs[j];
            sumi += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + QK4_0 / 2];
        }
        sumf += sumi * em_f16_to_f32(x[i].d) * em_f16_to_f32(y[i].d);
    }
    return sumf;
}

/* ggml_vec_dot_q4_1_q8_1_generic: the min term uses s = d_a * sum(q_a) from the q8_1
 * block: sumf += (dx*dy)*sumi + mx*sy. */
static float dot_q4_1_q8_1(int64_t nb, const block_q4_1 *x, const block_q8_1 *y) {
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int sumi = 0;
        for (int j = 0; j < QK4_1 / 2; j++) {
            sumi += (x[i].qs[j] & 0x0F) * y[i].qs[j];
            sumi += (x[i].qs[j] >> 4) * y[i].qs[j + QK4_1 / 2];
        }
        sumf += (em_f16_to_f32(x[i].d) * em_f16_to_f32(y[i].d)) * sumi
              + em_f16_to_f32(x[i].m) * em_f16_to_f32(y[i].s);
    }
    return sumf;
}

/* ggml_vec_dot_q8_0_q8_0_generic: sumf += sumi * (dx*dy). */
static float dot_q8_0_q8_0(int64_t nb, const block_q8_0 *x, const block_q8_0 *y) {
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int sumi = 0;
        for (int j = 0; j < QK8_0; j++) sumi += x[i].qs[j] * y[i].qs[j];
        sumf += sumi * (em_f16_to_f32(x[i].d) * em_f16_to_f32(y[i].d));
    }
    return sumf;
}

/* K-quant dots (ggml's *_q8_K_generic) keep 8 integer lanes per block: lane l sums
 * scale(sub-block) * w[e] * a[e] over the elements e with e % 8 == l. Integer sums are
 * exact, so only the lane values matter; they are then folded into 8 float accumulators
 * (sums[l] += d*lane[l]) that are added to sumf once, after all blocks. The Q4_K/Q5_K min
 * term sum(m * bsums) is subtracted from sumf per block. */
static void lanes_add(int32_t lane[8], int scale, const int8_t *w, const int8_t *a, int n) {
    for (int e = 0; e < n; e++) lane[e & 7] += scale * (int16_t)(w[e] * a[e]);
}

static float finish_lanes(float sumf, const float sums[8]) {
    for (int l = 0; l < 8; l++) sumf += sums[l];
    return sumf;
}

/* Shared by q4_K and q5_K once their 256 weights are unpacked to w[] (0..31). */
static void dot_k_affine_block(const block_q8_K *y, const uint8_t *scales, uint16_t d16,
                               uint16_t dmin16, const int8_t w[QK_K], float sums[8],
                               float *sumf) {
    int32_t lane[8] = {0};
    int sumi = 0;
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        get_scale_min_k4(j, scales, &sc, &m);
        sumi += (y->bsums[2 * j] + y->bsums[2 * j + 1]) * m;
        lanes_add(lane, sc, w + 32 * j, y->qs + 32 * j, 32);
    }
    const float d = em_f16_to_f32(d16) * y->d;
    for (int l = 0; l < 8; l++) sums[l] += d * lane[l];
    const float dmin = em_f16_to_f32(dmin16) * y->d;
    *sumf -= dmin * sumi;
}

static float dot_q4_K_q8_K(int64_t nb, const block_q4_K *x, const block_q8_K *y) {
    float sums[8] = {0}, sumf = 0.0f;
    int8_t w[QK_K];
    for (int64_t i = 0; i < nb; i++) {
        for (int c = 0; c < 4; c++) {
            for (int l = 0; l < 32; l++) {
                w[64 * c + l] = (int8_t)(x[i].qs[32 * c + l] & 0xF);
                w[64 * c + 32 + l] = (int8_t)(x[i].qs[32 * c + l] >> 4);
            }
        }
        dot_k_affine_block(&y[i], x[i].scales, x[i].d, x[i].dmin, w, sums, &sumf);
    }
    return finish_lanes(sumf, sums);
}

static float dot_q5_K_q8_K(int64_t nb, const block_q5_K *x, const block_q8_K *y) {
    float sums[8] = {0}, sumf = 0.0f;
    int8_t w[QK_K];
    for (int64_t i = 0; i < nb; i++) {
        for (int c = 0; c < 4; c++) {
            const uint8_t m1 = (uint8_t)(1u << (2 * c)), m2 = (uint8_t)(2u << (2 * c));
            for (int l = 0; l < 32; l++) {
                const uint8_t q = x[i].qs[32 * c + l], h = x[i].qh[l];
                w[64 * c + l] = (int8_t)((q & 0xF) + (h & m1 ? 16 : 0));
                w[64 * c + 32 + l] = (int8_t)((q >> 4) + (h & m2 ? 16 : 0));
            }
        }
        dot_k_affine_block(&y[i], x[i].scales, x[i].d, x[i].dmin, w, sums, &sumf);
    }
    return finish_lanes(sumf, sums);
}

static float dot_q6_K_q8_K(int64_t nb, const block_q6_K *x, const block_q8_K *y) {
    float sums[8] = {0};
    int8_t w[QK_K];
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        for (int h = 0; h < 2; h++, ql += 64, qh += 32) {
            int8_t *a = w + 128 * h;
            for (int l = 0; l < 32; l++) {
                a[l + 0] = (int8_t)(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
                a[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                a[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                a[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        }
        int32_t lane[8] = {0};
        for (int j = 0; j < QK_K / 16; j++) lanes_add(lane, x[i].scales[j], w + 16 * j, y[i].qs + 16 * j, 16);
        const float d = em_f16_to_f32(x[i].d) * y[i].d;
        for (int l = 0; l < 8; l++) sums[l] += d * lane[l];
    }
    return finish_lanes(0.0f, sums);
}

float em_vec_dot(int wtype, int64_t n, const void *w, const void *a) {
    const em_type_info *ti = em_type_get(wtype);
    int64_t nb = n_blocks(ti, n);
    if (nb < 0 || ti->vec_dot_type < 0) return NAN;
    switch (wtype) {
    case EM_F32: return dot_f32(n, w, a);
    case EM_F16: return dot_f16(n, w, a);
    case EM_BF16: return dot_bf16(n, w, a);
    case EM_Q4_0: return dot_q4_0_q8_0(nb, w, a);
    case EM_Q4_1: return dot_q4_1_q8_1(nb, w, a);
    case EM_Q8_0: return dot_q8_0_q8_0(nb, w, a);
    case EM_Q4_K: return dot_q4_K_q8_K(nb, w, a);
    case EM_Q5_K: return dot_q5_K_q8_K(nb, w, a);
    case EM_Q6_K: return dot_q6_K_q8_K(nb, w, a);
    default: return NAN;
    }
}
