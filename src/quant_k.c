/* quant_k.c: the 256-element super-block family (k-quants): Q4_K, Q5_K, Q6_K (weights)
 * and Q8_K (activations). Reference dequantizers, the Q8_K quantizer and ggml's generic
 * dot products; part of the numerical specification described in quant.c. */
#include "quant_impl.h"

/* ---------------------------------------------------------------- quantizers */

/* quantize_row_q8_K_ref. The scale comes from the signed value of largest magnitude and is
 * negative on purpose (iscale = -127/max), so that value maps to -127 and nothing needs
 * clamping below; the upper clamp catches +127.x from rounding. bsums feed the k-quant
 * mins term. An all-zero block gets d = 0 (ggml leaves bsums stale there; we zero them). */
void em_from_float_q8_K(const float *x, void *vy, int64_t nb) {
    block_q8_K *y = vy;
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
            int v = em_round_even(iscale * x[j]);
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

void em_to_float_q8_K(const void *vx, float *y, int64_t nb) {
    const block_q8_K *x = vx;
    for (int64_t i = 0; i < nb; i++, y += QK_K) {
        for (int j = 0; j < QK_K; j++) y[j] = x[i].d * x[i].qs[j];
    }
}

/* dequantize_row_q4_K: per 64 elements, 32 bytes of qs; low nibbles use sub-block 2k,
 * high nibbles sub-block 2k+1. y = (d*sc)*q - (dmin*m). */
void em_to_float_q4_K(const void *vx, float *y, int64_t nb) {
    const block_q4_K *x = vx;
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
void em_to_float_q5_K(const void *vx, float *y, int64_t nb) {
    const block_q5_K *x = vx;
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
void em_to_float_q6_K(const void *vx, float *y, int64_t nb) {
    const block_q6_K *x = vx;
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

/* ---------------------------------------------------------------- dot products */

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

float em_vec_dot_q4_K(int64_t nb, const void *vx, const void *vy) {
    const block_q4_K *x = vx;
    const block_q8_K *y = vy;
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

float em_vec_dot_q5_K(int64_t nb, const void *vx, const void *vy) {
    const block_q5_K *x = vx;
    const block_q8_K *y = vy;
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

float em_vec_dot_q6_K(int64_t nb, const void *vx, const void *vy) {
    const block_q6_K *x = vx;
    const block_q8_K *y = vy;
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
