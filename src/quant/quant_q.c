/* quant_q.c: the 32-element block family: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (weights) and
 * Q8_0, Q8_1 (activations). Reference (de)quantizers and ggml's generic dot products;
 * part of the numerical specification described in quant.c. */
#include "quant/quant_impl.h"

/* ---------------------------------------------------------------- quantizers */

/* llama.cpp's x86 quantize_row_q8_0 / q8_1: d = amax/127 stored as fp16, the multiplier
 * is 127/amax (not 1/d as in the scalar _ref, which can differ by an ulp), rounding is to
 * nearest even (_mm256_round_ps), not roundf. */
void em_from_float_q8_0(const float *x, void *vy, int64_t nb) {
    block_q8_0 *y = vy;
    for (int64_t i = 0; i < nb; i++, x += QK8_0) {
        const float amax = em_block_amax(x, QK8_0);
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[i].d = em_f32_to_f16(d);
        for (int j = 0; j < QK8_0; j++) y[i].qs[j] = (int8_t)em_round_even(x[j] * id);
    }
}

void em_from_float_q8_1(const float *x, void *vy, int64_t nb) {
    block_q8_1 *y = vy;
    for (int64_t i = 0; i < nb; i++, x += QK8_1) {
        const float amax = em_block_amax(x, QK8_1);
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        int sum = 0;
        for (int j = 0; j < QK8_1; j++) {
            y[i].qs[j] = (int8_t)em_round_even(x[j] * id);
            sum += y[i].qs[j];
        }
        y[i].d = em_f32_to_f16(d);
        y[i].s = em_f32_to_f16(d * (float)sum);  /* s uses the rounded q, as ggml does */
    }
}

/* quantize_row_q4_0_ref: d = max / -8 where max keeps its sign, so max itself maps to
 * q = 0 and -max to 16, clamped to 15. The ref truncates x*id + 8.5 (an int8 cast); the
 * explicit range test gives the same result for finite inputs and no UB for NaN. */
static int trunc_q4(float t) {
    if (!(t > 0.0f)) return 0;
    return t >= 15.0f ? 15 : (int)t;
}

void em_from_float_q4_0(const float *x, void *vy, int64_t nb) {
    block_q4_0 *y = vy;
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
void em_from_float_q4_1(const float *x, void *vy, int64_t nb) {
    block_q4_1 *y = vy;
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

/* The fifth bits of a q5 block, bit j for element j (little-endian whatever the host). */
static inline uint32_t q5_high_bits(const uint8_t qh[4]) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

static inline void q5_store_high_bits(uint8_t qh[4], uint32_t bits) {
    for (int k = 0; k < 4; k++) qh[k] = (uint8_t)(bits >> (8 * k));
}

/* quantize_row_q5_0_ref: as q4_0 with 32 levels, d = max / -16 (max keeps its sign),
 * q = min(31, trunc(x*id + 16.5)). */
static int trunc_q5(float t) {
    if (!(t > 0.0f)) return 0;
    return t >= 31.0f ? 31 : (int)t;
}

void em_from_float_q5_0(const float *x, void *vy, int64_t nb) {
    block_q5_0 *y = vy;
    for (int64_t i = 0; i < nb; i++, x += QK5_0) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK5_0; j++) {
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        }
        const float d = max / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint32_t hi = 0;
        y[i].d = em_f32_to_f16(d);
        for (int j = 0; j < QK5_0 / 2; j++) {
            const int q0 = trunc_q5(x[j] * id + 16.5f);
            const int q1 = trunc_q5(x[j + QK5_0 / 2] * id + 16.5f);
            y[i].qs[j] = (uint8_t)((q0 & 0xF) | (q1 & 0xF) << 4);
            hi |= (uint32_t)(q0 >> 4) << j | (uint32_t)(q1 >> 4) << (j + QK5_0 / 2);
        }
        q5_store_high_bits(y[i].qh, hi);
    }
}

/* quantize_row_q5_1_ref: affine, d = (max - min)/31, m = min, q = trunc((x-min)*id + 0.5)
 * (at most 31 for finite inputs; the clamp only makes that explicit). */
void em_from_float_q5_1(const float *x, void *vy, int64_t nb) {
    block_q5_1 *y = vy;
    for (int64_t i = 0; i < nb; i++, x += QK5_1) {
        float min = x[0], max = x[0];
        for (int j = 1; j < QK5_1; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 31;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint32_t hi = 0;
        y[i].d = em_f32_to_f16(d);
        y[i].m = em_f32_to_f16(min);
        for (int j = 0; j < QK5_1 / 2; j++) {
            const int q0 = trunc_q5((x[j] - min) * id + 0.5f);
            const int q1 = trunc_q5((x[j + QK5_1 / 2] - min) * id + 0.5f);
            y[i].qs[j] = (uint8_t)((q0 & 0xF) | (q1 & 0xF) << 4);
            hi |= (uint32_t)(q0 >> 4) << j | (uint32_t)(q1 >> 4) << (j + QK5_1 / 2);
        }
        q5_store_high_bits(y[i].qh, hi);
    }
}

/* ---------------------------------------------------------------- dequantizers */

void em_to_float_q4_0(const void *vx, float *y, int64_t nb) {
    const block_q4_0 *x = vx;
    for (int64_t i = 0; i < nb; i++, y += QK4_0) {
        const float d = em_f16_to_f32(x[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {  /* low nibbles: first half of the block */
            y[j] = ((x[i].qs[j] & 0x0F) - 8) * d;
            y[j + QK4_0 / 2] = ((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

void em_to_float_q4_1(const void *vx, float *y, int64_t nb) {
    const block_q4_1 *x = vx;
    for (int64_t i = 0; i < nb; i++, y += QK4_1) {
        const float d = em_f16_to_f32(x[i].d), m = em_f16_to_f32(x[i].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            y[j] = (x[i].qs[j] & 0x0F) * d + m;
            y[j + QK4_1 / 2] = (x[i].qs[j] >> 4) * d + m;
        }
    }
}

/* dequantize_row_q5_0 / q5_1: nibble plus fifth bit; q5_0 is centred (q - 16) * d, q5_1
 * affine q * d + m. */
void em_to_float_q5_0(const void *vx, float *y, int64_t nb) {
    const block_q5_0 *x = vx;
    for (int64_t i = 0; i < nb; i++, y += QK5_0) {
        const float d = em_f16_to_f32(x[i].d);
        const uint32_t hi = q5_high_bits(x[i].qh);
        for (int j = 0; j < QK5_0 / 2; j++) {
            const int q0 = (int)((x[i].qs[j] & 0x0F) | ((hi >> j) & 1) << 4) - 16;
            const int q1 = (int)((x[i].qs[j] >> 4) | ((hi >> (j + 16)) & 1) << 4) - 16;
            y[j] = q0 * d;
            y[j + QK5_0 / 2] = q1 * d;
        }
    }
}

void em_to_float_q5_1(const void *vx, float *y, int64_t nb) {
    const block_q5_1 *x = vx;
    for (int64_t i = 0; i < nb; i++, y += QK5_1) {
        const float d = em_f16_to_f32(x[i].d), m = em_f16_to_f32(x[i].m);
        const uint32_t hi = q5_high_bits(x[i].qh);
        for (int j = 0; j < QK5_1 / 2; j++) {
            const int q0 = (int)((x[i].qs[j] & 0x0F) | ((hi >> j) & 1) << 4);
            const int q1 = (int)((x[i].qs[j] >> 4) | ((hi >> (j + 16)) & 1) << 4);
            y[j] = q0 * d + m;
            y[j + QK5_1 / 2] = q1 * d + m;
        }
    }
}

void em_to_float_q8_0(const void *vx, float *y, int64_t nb) {
    const block_q8_0 *x = vx;
    for (int64_t i = 0; i < nb; i++, y += QK8_0) {
        const float d = em_f16_to_f32(x[i].d);
        for (int j = 0; j < QK8_0; j++) y[j] = x[i].qs[j] * d;
    }
}

void em_to_float_q8_1(const void *vx, float *y, int64_t nb) {
    const block_q8_1 *x = vx;
    for (int64_t i = 0; i < nb; i++, y += QK8_1) {
        const float d = em_f16_to_f32(x[i].d);
        for (int j = 0; j < QK8_1; j++) y[j] = x[i].qs[j] * d;
    }
}

/* ---------------------------------------------------------------- dot products */

/* ggml_vec_dot_q4_0_q8_0_generic: sumf += ((float)sumi * dx) * dy, block by block. */
float em_vec_dot_q4_0(int64_t nb, const void *vx, const void *vy) {
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
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
float em_vec_dot_q4_1(int64_t nb, const void *vx, const void *vy) {
    const block_q4_1 *x = vx;
    const block_q8_1 *y = vy;
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
float em_vec_dot_q8_0(int64_t nb, const void *vx, const void *vy) {
    const block_q8_0 *x = vx;
    const block_q8_0 *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int sumi = 0;
        for (int j = 0; j < QK8_0; j++) sumi += x[i].qs[j] * y[i].qs[j];
        sumf += sumi * (em_f16_to_f32(x[i].d) * em_f16_to_f32(y[i].d));
    }
    return sumf;
}

/* ggml_vec_dot_q5_0_q8_0_generic: sumf += (dx*dy) * sumi (note: the scales are multiplied
 * first, unlike q4_0). */
float em_vec_dot_q5_0(int64_t nb, const void *vx, const void *vy) {
    const block_q5_0 *x = vx;
    const block_q8_0 *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        const uint32_t hi = q5_high_bits(x[i].qh);
        int sumi = 0;
        for (int j = 0; j < QK5_0 / 2; j++) {
            sumi += ((int)((x[i].qs[j] & 0x0F) | ((hi >> j) & 1) << 4) - 16) * y[i].qs[j];
            sumi += ((int)((x[i].qs[j] >> 4) | ((hi >> (j + 16)) & 1) << 4) - 16) * y[i].qs[j + QK5_0 / 2];
        }
        sumf += (em_f16_to_f32(x[i].d) * em_f16_to_f32(y[i].d)) * sumi;
    }
    return sumf;
}

/* ggml_vec_dot_q5_1_q8_1_generic: sumf += (dx*dy)*sumi + mx*sy, as q4_1. */
float em_vec_dot_q5_1(int64_t nb, const void *vx, const void *vy) {
    const block_q5_1 *x = vx;
    const block_q8_1 *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        const uint32_t hi = q5_high_bits(x[i].qh);
        int sumi = 0;
        for (int j = 0; j < QK5_1 / 2; j++) {
            sumi += (int)((x[i].qs[j] & 0x0F) | ((hi >> j) & 1) << 4) * y[i].qs[j];
            sumi += (int)((x[i].qs[j] >> 4) | ((hi >> (j + 16)) & 1) << 4) * y[i].qs[j + QK5_1 / 2];
        }
        sumf += (em_f16_to_f32(x[i].d) * em_f16_to_f32(y[i].d)) * sumi
              + em_f16_to_f32(x[i].m) * em_f16_to_f32(y[i].s);
    }
    return sumf;
}

/* ---------------------------------------------------------------- weight quantizers */

/* ggml's quantize_<type> for the 32-element block types, as llama-quantize calls them.
 * Without an importance matrix they are the *_ref row quantizers above, except Q8_0,
 * whose weight quantizer (quantize_row_q8_0_ref) differs from the activation one: the
 * multiplier is 1/d and rounding is roundf (half away from zero). With an importance
 * matrix each row is fitted on its own: element weights qw[j] * sqrt(sigma2 + x[j]^2),
 * sigma2 = mean of x^2 over the row, then the scale search of make_qx_quants (Q4_0, Q5_0)
 * or make_qkx3_quants (Q4_1, Q5_1). */
size_t em_quantize_q8_0(const float *x, void *vy, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    (void)imatrix;
    block_q8_0 *y = vy;
    const int64_t nb = nrows * n_per_row / QK8_0;
    for (int64_t i = 0; i < nb; i++, x += QK8_0) {
        const float amax = em_block_amax(x, QK8_0);
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = em_f32_to_f16(d);
        for (int j = 0; j < QK8_0; j++) y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
    return (size_t)nb * sizeof(block_q8_0);
}

/* sigma2 of a row and the per-element weights of one block (shared by the four types). */
static float row_sigma2(const float *x, int64_t n) {
    float sum_x2 = 0;
    for (int64_t j = 0; j < n; j++) sum_x2 += x[j] * x[j];
    return sum_x2 / n;
}

static void block_weights(const float *xb, const float *qw, float sigma2, float w[32]) {
    for (int j = 0; j < 32; j++) w[j] = qw[j] * sqrtf(sigma2 + xb[j] * xb[j]);
}

/* Runs fn on each row with its share of the importance matrix, or the whole tensor
 * through the reference quantizer when there is none. */
typedef void (*imatrix_row_fn)(const float *x, void *y, int64_t n_per_row, const float *qw);

static size_t quantize_rows(const float *x, void *y, int64_t nrows, int64_t n_per_row,
                            const float *imatrix, size_t block_bytes,
                            void (*ref)(const float *, void *, int64_t), imatrix_row_fn fn) {
    const size_t row_size = (size_t)(n_per_row / 32) * block_bytes;
    if (!imatrix) {
        ref(x, y, nrows * n_per_row / 32);
    } else {
        for (int64_t r = 0; r < nrows; r++)
            fn(x + r * n_per_row, (char *)y + (size_t)r * row_size, n_per_row, imatrix);
    }
    return (size_t)nrows * row_size;
}

static void q4_0_row_imatrix(const float *x, void *vy, int64_t n_per_row, const float *qw) {
    block_q4_0 *y = vy;
    const float sigma2 = row_sigma2(x, n_per_row);
    float w[32];
    int8_t L[32];
    for (int64_t ib = 0; ib < n_per_row / QK4_0; ib++) {
        const float *xb = x + QK4_0 * ib;
        block_weights(xb, qw + QK4_0 * ib, sigma2, w);
        const float d = em_make_qx_quants(QK4_0, 8, xb, L, 1, w);
        y[ib].d = em_f32_to_f16(d);
        for (int j = 0; j < 16; j++) y[ib].qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
    }
}

static void q4_1_row_imatrix(const float *x, void *vy, int64_t n_per_row, const float *qw) {
    block_q4_1 *y = vy;
    const float sigma2 = row_sigma2(x, n_per_row);
    float w[32], min;
    uint8_t L[32], Laux[32];
    for (int64_t ib = 0; ib < n_per_row / QK4_1; ib++) {
        const float *xb = x + QK4_1 * ib;
        block_weights(xb, qw + QK4_1 * ib, sigma2, w);
        const float d = em_make_qkx3_quants(QK4_1, 15, xb, w, L, &min, Laux, -0.9f, 0.05f, 36, 0);
        y[ib].d = em_f32_to_f16(d);
        y[ib].m = em_f32_to_f16(-min);
        for (int j = 0; j < 16; j++) y[ib].qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
    }
}

/* Packs 32 five-bit levels (first half in the low nibbles) into a q5 block's qs/qh. */
static void q5_pack(const uint8_t *L, uint8_t qs[16], uint8_t qh[4]) {
    uint32_t hi = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((L[j] & 0x0F) | (L[j + 16] & 0x0F) << 4);
        hi |= (uint32_t)((L[j] & 0x10u) >> 4) << j | (uint32_t)((L[j + 16] & 0x10u) >> 4) << (j + 16);
    }
    q5_store_high_bits(qh, hi);
}

static void q5_0_row_imatrix(const float *x, void *vy, int64_t n_per_row, const float *qw) {
    block_q5_0 *y = vy;
    const float sigma2 = row_sigma2(x, n_per_row);
    float w[32];
    int8_t L[32];
    for (int64_t ib = 0; ib < n_per_row / QK5_0; ib++) {
        const float *xb = x + QK5_0 * ib;
        block_weights(xb, qw + QK5_0 * ib, sigma2, w);
        const float d = em_make_qx_quants(QK5_0, 16, xb, L, 1, w);
        y[ib].d = em_f32_to_f16(d);
        q5_pack((const uint8_t *)L, y[ib].qs, y[ib].qh);
    }
}

static void q5_1_row_imatrix(const float *x, void *vy, int64_t n_per_row, const float *qw) {
    block_q5_1 *y = vy;
    const float sigma2 = row_sigma2(x, n_per_row);
    float w[32], min;
    uint8_t L[32], Laux[32];
    for (int64_t ib = 0; ib < n_per_row / QK5_1; ib++) {
        const float *xb = x + QK5_1 * ib;
        block_weights(xb, qw + QK5_1 * ib, sigma2, w);
        const float d = em_make_qkx3_quants(QK5_1, 31, xb, w, L, &min, Laux, -0.9f, 0.05f, 36, 0);
        y[ib].d = em_f32_to_f16(d);
        y[ib].m = em_f32_to_f16(-min);
        q5_pack(L, y[ib].qs, y[ib].qh);
    }
}

size_t em_quantize_q4_0(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    return quantize_rows(x, y, nrows, n_per_row, imatrix, sizeof(block_q4_0), em_from_float_q4_0, q4_0_row_imatrix);
}
size_t em_quantize_q4_1(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    return quantize_rows(x, y, nrows, n_per_row, imatrix, sizeof(block_q4_1), em_from_float_q4_1, q4_1_row_imatrix);
}
size_t em_quantize_q5_0(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    return quantize_rows(x, y, nrows, n_per_row, imatrix, sizeof(block_q5_0), em_from_float_q5_0, q5_0_row_imatrix);
}
size_t em_quantize_q5_1(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    return quantize_rows(x, y, nrows, n_per_row, imatrix, sizeof(block_q5_1), em_from_float_q5_1, q5_1_row_imatrix);
}
