/* quant_float.c: the float family, f32, f16 and bf16 (one element per "block"): IEEE
 * half and bfloat16 conversion, row conversion both ways, and the scalar dot products.
 * Part of the numerical specification described in quant.c. */
#include "quant/quant_impl.h"

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

/* ---------------------------------------------------------------- rows */

void em_to_float_f32(const void *x, float *y, int64_t nb) {
    if (nb) memmove(y, x, (size_t)nb * sizeof(float));
}
void em_from_float_f32(const float *x, void *y, int64_t nb) {
    if (nb) memmove(y, x, (size_t)nb * sizeof(float));
}
void em_to_float_f16(const void *x, float *y, int64_t nb) {
    const uint16_t *h = x;
    for (int64_t i = 0; i < nb; i++) y[i] = em_f16_to_f32(h[i]);
}
void em_from_float_f16(const float *x, void *y, int64_t nb) {
    uint16_t *h = y;
    for (int64_t i = 0; i < nb; i++) h[i] = em_f32_to_f16(x[i]);
}
void em_to_float_bf16(const void *x, float *y, int64_t nb) {
    const uint16_t *h = x;
    for (int64_t i = 0; i < nb; i++) y[i] = em_bf16_to_f32(h[i]);
}
void em_from_float_bf16(const float *x, void *y, int64_t nb) {
    uint16_t *h = y;
    for (int64_t i = 0; i < nb; i++) h[i] = em_f32_to_bf16(x[i]);
}

/* ---------------------------------------------------------------- dot products */

/* ember's spec for f32: float products summed in a float, in index order. (ggml's generic
 * ggml_vec_dot_f32 sums the float products in double instead, and its SIMD paths use
 * float lanes; ember's SIMD kernels are held to this within a tolerance, not bit for bit.) */
float em_vec_dot_f32(int64_t n, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += x[i] * y[i];
    return sum;
}

/* ggml_vec_dot_f16/bf16 generic: the product of two halves (or two bf16) is exact in float;
 * the sum is kept in double (ggml_float) and rounded once at the end. */
float em_vec_dot_f16(int64_t n, const void *vx, const void *vy) {
    const uint16_t *x = vx, *y = vy;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(em_f16_to_f32(x[i]) * em_f16_to_f32(y[i]));
    return (float)sum;
}

float em_vec_dot_bf16(int64_t n, const void *vx, const void *vy) {
    const uint16_t *x = vx, *y = vy;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(em_bf16_to_f32(x[i]) * em_bf16_to_f32(y[i]));
    return (float)sum;
}

/* ---------------------------------------------------------------- weight quantizers */

/* ggml_quantize_chunk for the float types: a plain conversion (ggml's base library
 * converts f16 and bf16 in software, rounding to nearest even as above); the importance
 * matrix does not apply. */
size_t em_quantize_f32(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    (void)imatrix;
    em_from_float_f32(x, y, nrows * n_per_row);
    return (size_t)(nrows * n_per_row) * sizeof(float);
}
size_t em_quantize_f16(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    (void)imatrix;
    em_from_float_f16(x, y, nrows * n_per_row);
    return (size_t)(nrows * n_per_row) * sizeof(uint16_t);
}
size_t em_quantize_bf16(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    (void)imatrix;
    em_from_float_bf16(x, y, nrows * n_per_row);
    return (size_t)(nrows * n_per_row) * sizeof(uint16_t);
}
