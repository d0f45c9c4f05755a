/* quant_tq.c: the ternary family (BitNet b1.58 / TriLM weights): TQ1_0 (1.6875 bits per
 * weight, five trits per byte) and TQ2_0 (2 bits per weight), 256-element blocks with one
 * fp16 scale d, values -d, 0, d; layouts in quant.h. Dequantizers, ggml's reference
 * quantizers (quantize_row_tq*_ref, which llama-quantize uses with or without an
 * importance matrix) and ggml's generic dot products against Q8_K; part of the numerical
 * specification described in quant.c. */
#include "quant/quant_impl.h"

/* Trit n (0..4) of a tq1_0 byte, 0..2: the byte is a fixed-point base-3 fraction, so
 * multiplying by 3^n (mod 256) shifts trit n to the top, and * 3 >> 8 reads it. */
static inline int tq1_trit(uint8_t q, int n) {
    static const uint8_t pow3[5] = { 1, 3, 9, 27, 81 };
    const uint8_t s = (uint8_t)(q * pow3[n]);
    return (s * 3) >> 8;
}

/* The 256 ternary codes (0..2, value code - 1) of a tq1_0 block in element order. */
static void tq1_codes(const block_tq1_0 *b, int8_t *c) {
    for (int n = 0; n < 5; n++)
        for (int m = 0; m < 32; m++) c[n * 32 + m] = (int8_t)tq1_trit(b->qs[m], n);
    for (int n = 0; n < 5; n++)
        for (int m = 0; m < 16; m++) c[160 + n * 16 + m] = (int8_t)tq1_trit(b->qs[32 + m], n);
    for (int n = 0; n < 4; n++)
        for (int j = 0; j < 4; j++) c[240 + n * 4 + j] = (int8_t)tq1_trit(b->qh[j], n);
}

static void tq2_codes(const block_tq2_0 *b, int8_t *c) {
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 4; l++)
            for (int m = 0; m < 32; m++) c[128 * h + 32 * l + m] = (int8_t)((b->qs[32 * h + m] >> 2 * l) & 3);
}

/* ---------------------------------------------------------------- dequantizers */

void em_to_float_tq1_0(const void *vx, float *y, int64_t nb) {
    const block_tq1_0 *x = vx;
    int8_t c[QK_K];
    for (int64_t i = 0; i < nb; i++, y += QK_K) {
        const float d = em_f16_to_f32(x[i].d);
        tq1_codes(&x[i], c);
        for (int j = 0; j < QK_K; j++) y[j] = (float)(c[j] - 1) * d;
    }
}

void em_to_float_tq2_0(const void *vx, float *y, int64_t nb) {
    const block_tq2_0 *x = vx;
    int8_t c[QK_K];
    for (int64_t i = 0; i < nb; i++, y += QK_K) {
        const float d = em_f16_to_f32(x[i].d);
        tq2_codes(&x[i], c);
        for (int j = 0; j < QK_K; j++) y[j] = (float)(c[j] - 1) * d;
    }
}

/* ---------------------------------------------------------------- dot products */

/* ggml_vec_dot_tq1_0_q8_K_generic / tq2_0: one exact integer sum per block, then
 * sumf += sum * (dx * dy) (tq2_0: dy * dx; the same float product). */
float em_vec_dot_tq1_0(int64_t nb, const void *vx, const void *vy) {
    const block_tq1_0 *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0.0f;
    int8_t c[QK_K];
    for (int64_t i = 0; i < nb; i++) {
        tq1_codes(&x[i], c);
        int sum = 0;
        for (int j = 0; j < QK_K; j++) sum += (c[j] - 1) * y[i].qs[j];
        sumf += (float)sum * (em_f16_to_f32(x[i].d) * y[i].d);
    }
    return sumf;
}

float em_vec_dot_tq2_0(int64_t nb, const void *vx, const void *vy) {
    const block_tq2_0 *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0.0f;
    int8_t c[QK_K];
    for (int64_t i = 0; i < nb; i++) {
        tq2_codes(&x[i], c);
        int sum = 0;
        for (int j = 0; j < QK_K; j++) sum += (c[j] - 1) * y[i].qs[j];
        sumf += (float)sum * (y[i].d * em_f16_to_f32(x[i].d));
    }
    return sumf;
}

/* ---------------------------------------------------------------- quantizers */

/* d = the block's largest magnitude; code = lroundf(x / d) + 1, i.e. x/d rounded half
 * away from zero (|x/d| <= 1 here, so only the thresholds +-0.5 matter; a NaN gives 1). */
static inline int tq_code(float v) {
    return v >= 0.5f ? 2 : v <= -0.5f ? 0 : 1;
}

static float tq_scale(const float *x, uint16_t *d16) {
    float amax = 0.0f;
    for (int j = 0; j < QK_K; j++) amax = EM_MAX(amax, fabsf(x[j]));
    *d16 = em_f32_to_f16(amax);
    return amax != 0.0f ? 1.0f / amax : 0.0f;
}

/* Five (or four, then one more * 3) trits, first one most significant, as the ceiling of
 * their base-3 value * 256 / 243. */
static uint8_t tq1_pack(const float *x, int stride, int n, float id) {
    unsigned q = 0;
    for (int k = 0; k < n; k++) q = q * 3 + (unsigned)tq_code(x[k * stride] * id);
    if (n == 4) q *= 3;
    return (uint8_t)((q * 256 + 242) / 243);
}

/* quantize_row_tq1_0_ref */
void em_from_float_tq1_0(const float *x, void *vy, int64_t nb) {
    block_tq1_0 *y = vy;
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        const float id = tq_scale(x, &y[i].d);
        for (int m = 0; m < 32; m++) y[i].qs[m] = tq1_pack(x + m, 32, 5, id);
        for (int m = 0; m < 16; m++) y[i].qs[32 + m] = tq1_pack(x + 160 + m, 16, 5, id);
        for (int j = 0; j < 4; j++) y[i].qh[j] = tq1_pack(x + 240 + j, 4, 4, id);
    }
}

/* quantize_row_tq2_0_ref */
void em_from_float_tq2_0(const float *x, void *vy, int64_t nb) {
    block_tq2_0 *y = vy;
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        const float id = tq_scale(x, &y[i].d);
        for (int h = 0; h < 2; h++) {
            for (int m = 0; m < 32; m++) {
                unsigned q = 0;
                for (int l = 0; l < 4; l++) q |= (unsigned)tq_code(x[128 * h + 32 * l + m] * id) << 2 * l;
                y[i].qs[32 * h + m] = (uint8_t)q;
            }
        }
    }
}

/* quantize_tq1_0 / quantize_tq2_0 ignore the importance matrix. */
size_t em_quantize_tq1_0(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    (void)imatrix;
    em_from_float_tq1_0(x, y, nrows * n_per_row / QK_K);
    return (size_t)(nrows * n_per_row / QK_K) * sizeof(block_tq1_0);
}

size_t em_quantize_tq2_0(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    (void)imatrix;
    em_from_float_tq2_0(x, y, nrows * n_per_row / QK_K);
    return (size_t)(nrows * n_per_row / QK_K) * sizeof(block_tq2_0);
}
