/* quant_k.c: the 256-element super-block family (k-quants): Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (weights)
 * and Q8_K (activations). Reference dequantizers, the Q8_K quantizer and ggml's generic
 * dot products; part of the numerical specification described in quant.c. */
#include "quant/quant_impl.h"

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

/* dequantize_row_q2_K: 16 sub-blocks of 16, each with a 4-bit scale (low nibble) and
 * 4-bit min (high nibble). Per 128-element half, 32 bytes of qs hold four 2-bit planes:
 * element e of the half is bits 2*(e/32) of qs[e % 32]. y = (d*sc)*q - (dmin*m). */
void em_to_float_q2_K(const void *vx, float *y, int64_t nb) {
    const block_q2_K *x = vx;
    for (int64_t i = 0; i < nb; i++) {
        const float d = em_f16_to_f32(x[i].d), dmin = em_f16_to_f32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int e = 0; e < QK_K; e++) {
            const uint8_t sc = x[i].scales[e / 16];
            const float dl = d * (sc & 0xF), ml = dmin * (sc >> 4);
            const int v = (q[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
            y[e] = dl * v - ml;
        }
        y += QK_K;
    }
}

/* The 16 six-bit Q3_K sub-block scales, unbiased (-32..31): bytes 0-7 hold the low
 * nibbles (scale j in byte j % 8, high nibble for j >= 8), bytes 8-11 the top two bits
 * (scale j in byte 8 + j % 4, bits 2*(j/4)). */
static void q3_k_scales(const uint8_t s[12], int8_t out[16]) {
    for (int j = 0; j < 16; j++) {
        const int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
        const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        out[j] = (int8_t)((lo | hi << 4) - 32);
    }
}

/* dequantize_row_q3_K: the 2-bit planes as in q2_K plus a third bit in hmask (element e:
 * bit e/32 of hmask[e % 32]); a clear bit subtracts 4, so q is in -4..3. y = (d*sc)*q. */
void em_to_float_q3_K(const void *vx, float *y, int64_t nb) {
    const block_q3_K *x = vx;
    for (int64_t i = 0; i < nb; i++) {
        const float d = em_f16_to_f32(x[i].d);
        int8_t sc[16];
        q3_k_scales(x[i].scales, sc);
        for (int e = 0; e < QK_K; e++) {
            const float dl = d * sc[e / 16];
            int v = (x[i].qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
            v -= (x[i].hmask[e % 32] >> (e / 32)) & 1 ? 0 : 4;
            y[e] = dl * v;
        }
        y += QK_K;
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

/* Unpacks the 2-bit planes of a q2_K/q3_K block to w[e] (0..3), element order. */
static void unpack_2bit(const uint8_t qs[QK_K / 4], int8_t w[QK_K]) {
    for (int e = 0; e < QK_K; e++) w[e] = (int8_t)((qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3);
}

/* ggml's q2_K generic dot has no lanes: one integer sum per block (sub-block sums times
 * the 4-bit scales) and the mins term from the bsums, folded as sumf += dall*isum -
 * dmin*summs. */
float em_vec_dot_q2_K(int64_t nb, const void *vx, const void *vy) {
    const block_q2_K *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0.0f;
    int8_t w[QK_K];
    for (int64_t i = 0; i < nb; i++) {
        unpack_2bit(x[i].qs, w);
        int summs = 0, isum = 0;
        for (int j = 0; j < 16; j++) {
            summs += y[i].bsums[j] * (x[i].scales[j] >> 4);
            int s = 0;
            for (int l = 0; l < 16; l++) s += y[i].qs[16 * j + l] * w[16 * j + l];
            isum += (x[i].scales[j] & 0xF) * s;
        }
        const float dall = y[i].d * em_f16_to_f32(x[i].d);
        const float dmin = y[i].d * em_f16_to_f32(x[i].dmin);
        sumf += dall * isum - dmin * summs;
    }
    return sumf;
}

float em_vec_dot_q3_K(int64_t nb, const void *vx, const void *vy) {
    const block_q3_K *x = vx;
    const block_q8_K *y = vy;
    float sums[8] = {0};
    int8_t w[QK_K], sc[16];
    for (int64_t i = 0; i < nb; i++) {
        unpack_2bit(x[i].qs, w);
        for (int e = 0; e < QK_K; e++) w[e] = (int8_t)(w[e] - ((x[i].hmask[e % 32] >> (e / 32)) & 1 ? 0 : 4));
        q3_k_scales(x[i].scales, sc);
        int32_t lane[8] = {0};
        for (int j = 0; j < QK_K / 16; j++) lanes_add(lane, sc[j], w + 16 * j, y[i].qs + 16 * j, 16);
        const float d = em_f16_to_f32(x[i].d) * y[i].d;
        for (int l = 0; l < 8; l++) sums[l] += d * lane[l];
    }
    return finish_lanes(0.0f, sums);
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

/* ---------------------------------------------------------------- weight quantizers */

/* The scale searches of ggml-quants.c, reimplemented expression for expression: every
 * float operation happens in the same order so the chosen levels are bit-identical. */

/* make_qx_quants: symmetric levels l in [-nmax, nmax-1] (stored as l + nmax) around the
 * value of largest magnitude; rmse_type 1 then tries 18 nearby scales and keeps the one
 * with the best weighted least-squares fit (weights qw, or x^2 when qw is NULL). */
float em_make_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type, const float *qw) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < EM_GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    if (rmse_type == 0) {
        for (int i = 0; i < n; i++) {
            const int l = em_round_even(iscale * x[i]);
            L[i] = (int8_t)(nmax + EM_MAX(-nmax, EM_MIN(nmax - 1, l)));
        }
        return 1 / iscale;
    }
    int return_early = 0;
    if (rmse_type < 0) {
        rmse_type = -rmse_type;
        return_early = 1;
    }
#define QX_WEIGHT(i) (qw ? qw[i] : rmse_type == 1 ? x[i] * x[i] : rmse_type == 2 ? 1 : \
                      rmse_type == 3 ? fabsf(x[i]) : sqrtf(fabsf(x[i])))
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = em_round_even(iscale * x[i]);
        l = EM_MAX(-nmax, EM_MIN(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
        const float w = QX_WEIGHT(i);
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    if (return_early) return suml2 > 0 ? 0.5f * (scale + 1 / iscale) : 1 / iscale;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = em_round_even(iscale * x[i]);
            l = EM_MAX(-nmax, EM_MIN(nmax - 1, l));
            const float w = QX_WEIGHT(i);
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                const int l = em_round_even(iscale * x[i]);
                L[i] = (int8_t)(nmax + EM_MAX(-nmax, EM_MIN(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
#undef QX_WEIGHT
    return scale;
}

/* make_qkx2_quants (reference k-quants) and make_qkx3_quants (imatrix k-quants, Q4_1 and
 * Q5_1 with an imatrix): affine levels 0..nmax with min <= 0, then nstep+1 trial scales
 * (rmin + rdelta*is + nmax)/(max - min), each refitted by weighted least squares; the
 * fit with the smallest weighted error wins. They differ only in the degenerate case
 * (max == min vs max <= min) and in qkx3's default weights x^2. */
static float make_qkx_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                             float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                             int use_mad, int v3) {
#define QK_WEIGHT(i) (weights ? weights[i] : x[i] * x[i])
    float min = x[0], max = x[0];
    float sum_w = QK_WEIGHT(0);
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = QK_WEIGHT(i);
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (v3 ? max <= min : max == min) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        const int l = em_round_even(iscale * (x[i] - min));
        L[i] = (uint8_t)EM_MAX(0, EM_MIN(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += QK_WEIGHT(i) * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = em_round_even(iscale * (x[i] - min));
            l = EM_MAX(0, EM_MIN(nmax, l));
            Laux[i] = (uint8_t)l;
            const float w = QK_WEIGHT(i);
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += QK_WEIGHT(i) * diff;
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; i++) L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
#undef QK_WEIGHT
    *the_min = -min;
    return scale;
}

float em_make_qkx3_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                          float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                          int use_mad) {
    return make_qkx_quants(n, nmax, x, weights, L, the_min, Laux, rmin, rdelta, nstep, use_mad, 1);
}

/* make_qp_quants: non-negative levels 0..nmax for the 8 sub-block scales (or mins) of an
 * imatrix Q4_K/Q5_K block, weighted by each sub-block's total weight: 8 trial scales,
 * then up to 5 rounds of coordinate descent on the levels. L is uint8 as in ggml (a
 * negative level would wrap, exactly as there). */
static float make_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *qw) {
    float max = 0;
    for (int i = 0; i < n; i++) max = EM_MAX(max, x[i]);
    if (max < EM_GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.f;
    }
    float iscale = nmax / max;
    for (int i = 0; i < n; i++) L[i] = (uint8_t)em_round_even(iscale * x[i]);
    const float scale = 1 / iscale;
    float best_mse = 0;
    for (int i = 0; i < n; i++) {
        const float diff = x[i] - scale * L[i];
        best_mse += qw[i] * diff * diff;
    }
    for (int is = -4; is <= 4; is++) {
        if (is == 0) continue;
        const float iscale_is = (0.1f * is + nmax) / max;
        const float scale_is = 1 / iscale_is;
        float mse = 0;
        for (int i = 0; i < n; i++) {
            int l = em_round_even(iscale_is * x[i]);
            l = EM_MIN(nmax, l);
            const float diff = x[i] - scale_is * l;
            mse += qw[i] * diff * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = em_round_even(iscale * x[i]);
        l = EM_MIN(nmax, l);
        L[i] = (uint8_t)l;
        const float w = qw[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = qw[i];
            float slx = sumlx - w * x[i] * L[i];
            float sl2 = suml2 - w * L[i] * L[i];
            if (slx > 0 && sl2 > 0) {
                int new_l = em_round_even(x[i] * sl2 / slx);
                new_l = EM_MIN(nmax, new_l);
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (uint8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Stores sub-block j's 6-bit scale ls and min lm in the 12-byte Q4_K/Q5_K layout read by
 * get_scale_min_k4 (the caller zeroes nothing: j < 4 writes bytes j and j+4 whole, later
 * j only OR into their top bits, as ggml does). */
static void put_scale_min_k4(uint8_t *s, int j, uint8_t ls, uint8_t lm) {
    if (j < 4) {
        s[j] = ls;
        s[j + 4] = lm;
    } else {
        s[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
        s[j - 4] |= (uint8_t)((ls >> 4) << 6);
        s[j] |= (uint8_t)((lm >> 4) << 6);
    }
}

/* The final levels of a Q4_K/Q5_K block from its stored (rounded) scales and mins. */
static void k_affine_levels(const float *x, const uint8_t *scales, uint16_t d16, uint16_t dmin16,
                            int nmax, uint8_t L[QK_K]) {
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t sc, m;
        get_scale_min_k4(j, scales, &sc, &m);
        const float d = em_f16_to_f32(d16) * sc;
        if (!d) continue;
        const float dm = em_f16_to_f32(dmin16) * m;
        for (int ii = 0; ii < 32; ii++) {
            int l = em_round_even((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = (uint8_t)EM_MAX(0, EM_MIN(nmax, l));
        }
    }
}

/* Scales and mins of one Q4_K/Q5_K super-block, with (imatrix-aware _impl) or without
 * (_ref) importance weights; fills y's d, dmin, scales and the levels L. */
static void k_affine_block(const float *x, const float *qw, int nmax, uint8_t L[QK_K],
                           uint16_t *d16, uint16_t *dmin16, uint8_t scales_out[K_SCALE_SIZE]) {
    uint8_t Laux[32];
    float weights[32], mins[QK_K / 32], scales[QK_K / 32];
    memset(scales_out, 0, K_SCALE_SIZE);  /* every byte is assigned below; keeps it obvious */
    if (!qw) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < QK_K / 32; j++) {
            float sum_x2 = 0;
            for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
            const float av_x = sqrtf(sum_x2 / 32);
            for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
            scales[j] = nmax == 15
                ? make_qkx_quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -1.f, 0.1f, 20, 0, 0)
                : make_qkx_quants(32, 31, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.5f, 0.1f, 15, 0, 0);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
        const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        for (int j = 0; j < QK_K / 32; j++) {
            uint8_t ls = (uint8_t)em_round_even(inv_scale * scales[j]);
            uint8_t lm = (uint8_t)em_round_even(inv_min * mins[j]);
            ls = EM_MIN(63, ls);
            lm = EM_MIN(63, lm);
            put_scale_min_k4(scales_out, j, ls, lm);
        }
        *d16 = em_f32_to_f16(max_scale / 63.f);
        *dmin16 = em_f32_to_f16(max_min / 63.f);
    } else {
        uint8_t Ls[QK_K / 32], Lm[QK_K / 32];
        float sw[QK_K / 32];
        float sum_x2 = 0;
        for (int l = 0; l < QK_K; l++) sum_x2 += x[l] * x[l];
        const float sigma2 = 2 * sum_x2 / QK_K;
        for (int j = 0; j < QK_K / 32; j++) {
            for (int l = 0; l < 32; l++) weights[l] = qw[32 * j + l] * sqrtf(sigma2 + x[32 * j + l] * x[32 * j + l]);
            float sumw = 0;
            for (int l = 0; l < 32; l++) sumw += weights[l];
            sw[j] = sumw;
            scales[j] = make_qkx_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36, 0, 1);
        }
        const float d_block = make_qp_quants(QK_K / 32, 63, scales, Ls, sw);
        const float m_block = make_qp_quants(QK_K / 32, 63, mins, Lm, sw);
        for (int j = 0; j < QK_K / 32; j++) put_scale_min_k4(scales_out, j, EM_MIN(63, Ls[j]), EM_MIN(63, Lm[j]));
        *d16 = em_f32_to_f16(d_block);
        *dmin16 = em_f32_to_f16(m_block);
    }
    k_affine_levels(x, scales_out, *d16, *dmin16, nmax, L);
}

/* Without an imatrix ggml quantizes the whole tensor as one run of blocks (the _ref
 * functions); with one, row by row so each row uses its n_per_row weights. Blocks never
 * straddle rows, so both walk the same blocks; only the weights differ. */
size_t em_quantize_q4_K(const float *x, void *vy, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    block_q4_K *y = vy;
    const int64_t nb_row = n_per_row / QK_K;
    uint8_t L[QK_K];
    for (int64_t r = 0; r < nrows; r++) {
        for (int64_t i = 0; i < nb_row; i++, x += QK_K, y++) {
            k_affine_block(x, imatrix ? imatrix + QK_K * i : NULL, 15, L, &y->d, &y->dmin, y->scales);
            uint8_t *q = y->qs;
            for (int j = 0; j < QK_K; j += 64, q += 32)
                for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
        }
    }
    return (size_t)(nrows * nb_row) * sizeof(block_q4_K);
}

size_t em_quantize_q5_K(const float *x, void *vy, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    block_q5_K *y = vy;
    const int64_t nb_row = n_per_row / QK_K;
    uint8_t L[QK_K];
    for (int64_t r = 0; r < nrows; r++) {
        for (int64_t i = 0; i < nb_row; i++, x += QK_K, y++) {
            k_affine_block(x, imatrix ? imatrix + QK_K * i : NULL, 31, L, &y->d, &y->dmin, y->scales);
            uint8_t *qh = y->qh, *ql = y->qs;
            memset(qh, 0, QK_K / 8);
            uint8_t m1 = 1, m2 = 2;
            for (int n = 0; n < QK_K; n += 64, ql += 32) {
                for (int j = 0; j < 32; j++) {
                    int l1 = L[n + j], l2 = L[n + j + 32];
                    if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
                    if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
                    ql[j] = (uint8_t)(l1 | (l2 << 4));
                }
                m1 = (uint8_t)(m1 << 2);
                m2 = (uint8_t)(m2 << 2);
            }
        }
    }
    return (size_t)(nrows * nb_row) * sizeof(block_q5_K);
}

/* Q6_K: 16 sub-blocks of 16 fitted by make_qx_quants (weights x^2, or the imatrix as is),
 * int8 sub-scales relative to the scale of largest magnitude (-128/max_scale). */
size_t em_quantize_q6_K(const float *x, void *vy, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    block_q6_K *y = vy;
    const int64_t nb_row = n_per_row / QK_K;
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int64_t r = 0; r < nrows; r++) {
        for (int64_t i = 0; i < nb_row; i++, x += QK_K, y++) {
            float max_scale = 0, max_abs_scale = 0;
            for (int ib = 0; ib < QK_K / 16; ib++) {
                const float *qw = imatrix ? imatrix + QK_K * i + 16 * ib : NULL;
                const float scale = em_make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1, qw);
                scales[ib] = scale;
                const float abs_scale = fabsf(scale);
                if (abs_scale > max_abs_scale) {
                    max_abs_scale = abs_scale;
                    max_scale = scale;
                }
            }
            if (max_abs_scale < EM_GROUP_MAX_EPS) {
                memset(y, 0, sizeof *y);
                y->d = em_f32_to_f16(0.f);
                continue;
            }
            const float iscale = -128.f / max_scale;
            y->d = em_f32_to_f16(1 / iscale);
            for (int ib = 0; ib < QK_K / 16; ib++) y->scales[ib] = (int8_t)EM_MIN(127, em_round_even(iscale * scales[ib]));
            for (int j = 0; j < QK_K / 16; j++) {
                const float d = em_f16_to_f32(y->d) * y->scales[j];
                if (!d) continue;
                for (int ii = 0; ii < 16; ii++) {
                    int l = em_round_even(x[16 * j + ii] / d);
                    l = EM_MAX(-32, EM_MIN(31, l));
                    L[16 * j + ii] = (int8_t)(l + 32);
                }
            }
            uint8_t *ql = y->ql, *qh = y->qh;
            for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
                for (int l = 0; l < 32; l++) {
                    const uint8_t q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF;
                    const uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
                    ql[l] = (uint8_t)(q1 | (q3 << 4));
                    ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                    qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                      ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
                }
            }
        }
    }
    return (size_t)(nrows * nb_row) * sizeof(block_q6_K);
}

/* ---------------------------------------------------------------- Q2_K and Q3_K quantizers */

/* Packs 256 levels (0..3 after any high bit is split off) into the four 2-bit planes. */
static void pack_2bit(const uint8_t L[QK_K], uint8_t qs[QK_K / 4]) {
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

/* Final Q2_K levels from the stored 4-bit scales and mins (both quantizers requantize). */
static void q2_k_levels(const float *x, const block_q2_K *y, uint8_t L[QK_K]) {
    const float d0 = em_f16_to_f32(y->d), m0 = em_f16_to_f32(y->dmin);
    for (int j = 0; j < QK_K / 16; j++) {
        const float d = d0 * (y->scales[j] & 0xF);
        if (!d) continue;
        const float dm = m0 * (y->scales[j] >> 4);
        for (int ii = 0; ii < 16; ii++) {
            const int l = em_round_even((x[16 * j + ii] + dm) / d);
            L[16 * j + ii] = (uint8_t)EM_MAX(0, EM_MIN(3, l));
        }
    }
}

/* quantize_row_q2_K_ref: each sub-block of 16 fitted by make_qkx2_quants (levels 0..3,
 * weights |x|, mean absolute error), then scales and mins to 4 bits against their largest
 * values (15 steps, no clamp: the largest rounds to 15). */
static void q2_k_block_ref(const float *x, block_q2_K *y) {
    uint8_t L[QK_K], Laux[16];
    float weights[16], mins[QK_K / 16], scales[QK_K / 16];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 16; j++) {
        for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
        scales[j] = make_qkx_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, 1, 0);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0) {
        const float iscale = 15.f / max_scale;
        for (int j = 0; j < QK_K / 16; j++) y->scales[j] = (uint8_t)em_round_even(iscale * scales[j]);
        y->d = em_f32_to_f16(max_scale / 15.f);
    } else {
        memset(y->scales, 0, sizeof y->scales);
        y->d = em_f32_to_f16(0.f);
    }
    if (max_min > 0) {
        const float iscale = 15.f / max_min;
        for (int j = 0; j < QK_K / 16; j++) y->scales[j] = (uint8_t)(y->scales[j] | (em_round_even(iscale * mins[j]) << 4));
        y->dmin = em_f32_to_f16(max_min / 15.f);
    } else {
        y->dmin = em_f32_to_f16(0.f);
    }
    q2_k_levels(x, y, L);
    pack_2bit(L, y->qs);
}

/* quantize_row_q2_K_impl (with an imatrix): weights qw * sqrt(sigma2 + x^2) with sigma2
 * the block's mean square, make_qkx3_quants per sub-block, then the 16 scales and 16 mins
 * each fitted by make_qp_quants (levels 0..15) weighted by the sub-blocks' total weight. */
static void q2_k_block_imatrix(const float *x, const float *qw, block_q2_K *y) {
    uint8_t L[QK_K], Laux[16], Ls[QK_K / 16], Lm[QK_K / 16];
    float weight[16], mins[QK_K / 16], scales[QK_K / 16], sw[QK_K / 16];
    float sumx2 = 0;
    for (int j = 0; j < QK_K; j++) sumx2 += x[j] * x[j];
    const float sigma2 = sumx2 / QK_K;
    for (int j = 0; j < QK_K / 16; j++) {
        for (int l = 0; l < 16; l++) weight[l] = qw[16 * j + l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
        float s = 0;
        for (int l = 0; l < 16; l++) s += weight[l];
        sw[j] = s;
        scales[j] = make_qkx_quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36, 0, 1);
    }
    const float dm = make_qp_quants(QK_K / 16, 15, scales, Ls, sw);
    const float mm = make_qp_quants(QK_K / 16, 15, mins, Lm, sw);
    y->d = em_f32_to_f16(dm);
    y->dmin = em_f32_to_f16(mm);
    for (int j = 0; j < QK_K / 16; j++) y->scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
    q2_k_levels(x, y, L);
    pack_2bit(L, y->qs);
}

size_t em_quantize_q2_K(const float *x, void *vy, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    block_q2_K *y = vy;
    const int64_t nb_row = n_per_row / QK_K;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < nb_row; i++, x += QK_K, y++) {
            if (imatrix) q2_k_block_imatrix(x, imatrix + QK_K * i, y);
            else q2_k_block_ref(x, y);
        }
    return (size_t)(nrows * nb_row) * sizeof(block_q2_K);
}

/* make_q3_quants: symmetric levels -nmax..nmax-1 around the value of largest magnitude,
 * then (do_rmse) up to 5 rounds of coordinate descent on the levels under weights x^2.
 * Returns the scale; L holds level + nmax. */
static float make_q3_quants(int n, int nmax, const float *x, int8_t *L, int do_rmse) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < EM_GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.f;
    }
    const float iscale = -nmax / max;
    if (do_rmse) {
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = em_round_even(iscale * x[i]);
            l = EM_MAX(-nmax, EM_MIN(nmax - 1, l));
            L[i] = (int8_t)l;
            const float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        for (int itry = 0; itry < 5; itry++) {
            int n_changed = 0;
            for (int i = 0; i < n; i++) {
                const float w = x[i] * x[i];
                float slx = sumlx - w * x[i] * L[i];
                if (slx > 0) {
                    float sl2 = suml2 - w * L[i] * L[i];
                    int new_l = em_round_even(x[i] * sl2 / slx);
                    new_l = EM_MAX(-nmax, EM_MIN(nmax - 1, new_l));
                    if (new_l != L[i]) {
                        slx += w * x[i] * new_l;
                        sl2 += w * new_l * new_l;
                        if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                            L[i] = (int8_t)new_l;
                            sumlx = slx;
                            suml2 = sl2;
                            n_changed++;
                        }
                    }
                }
            }
            if (!n_changed) break;
        }
        for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
        return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
    }
    for (int i = 0; i < n; i++) {
        int l = em_round_even(iscale * x[i]);
        l = EM_MAX(-nmax, EM_MIN(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
    }
    return 1 / iscale;
}

/* Stores the 16 six-bit biased scales (0..63) in the 12-byte layout q3_k_scales reads. */
static void put_q3_k_scales(uint8_t s[12], const int ls[16]) {
    memset(s, 0, 12);
    for (int j = 0; j < 16; j++) {
        const int l = ls[j];
        if (j < 8) s[j] = (uint8_t)(l & 0xF);
        else s[j - 8] = (uint8_t)(s[j - 8] | ((l & 0xF) << 4));
        s[8 + j % 4] = (uint8_t)(s[8 + j % 4] | ((l >> 4) << (2 * (j / 4))));
    }
}

/* The final Q3_K levels from the stored scales, split into qs planes and the hmask bit. */
static void q3_k_finish(const float *x, block_q3_K *y, int8_t L[QK_K]) {
    int8_t sc[16];
    q3_k_scales(y->scales, sc);
    for (int j = 0; j < QK_K / 16; j++) {
        const float d = em_f16_to_f32(y->d) * sc[j];
        if (!d) continue;
        for (int ii = 0; ii < 16; ii++) {
            int l = em_round_even(x[16 * j + ii] / d);
            l = EM_MAX(-4, EM_MIN(3, l));
            L[16 * j + ii] = (int8_t)(l + 4);
        }
    }
    memset(y->hmask, 0, sizeof y->hmask);
    uint8_t U[QK_K];
    for (int j = 0; j < QK_K; j++) {
        U[j] = (uint8_t)L[j];
        if (U[j] > 3) {
            y->hmask[j % 32] = (uint8_t)(y->hmask[j % 32] | (1u << (j / 32)));
            U[j] = (uint8_t)(U[j] - 4);
        }
    }
    pack_2bit(U, y->qs);
}

/* quantize_row_q3_K_ref: make_q3_quants per sub-block of 16, then the scales to 6 bits
 * against the scale of largest magnitude (-32/max_scale, clamped to -32..31). */
static void q3_k_block_ref(const float *x, block_q3_K *y) {
    int8_t L[QK_K];
    float scales[QK_K / 16];
    float max_scale = 0, amax = 0;
    for (int j = 0; j < QK_K / 16; j++) {
        scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j, 1);
        const float a = fabsf(scales[j]);
        if (a > amax) { amax = a; max_scale = scales[j]; }
    }
    int ls[16] = {0};
    if (max_scale) {
        const float iscale = -32.f / max_scale;
        for (int j = 0; j < QK_K / 16; j++) {
            /* ggml stores the rounded value in an int8_t before clamping; |value| <= 32 */
            const int l = (int8_t)em_round_even(iscale * scales[j]);
            ls[j] = EM_MAX(-32, EM_MIN(31, l)) + 32;
        }
        put_q3_k_scales(y->scales, ls);
        y->d = em_f32_to_f16(1 / iscale);
    } else {
        memset(y->scales, 0, sizeof y->scales);
        y->d = em_f32_to_f16(0.f);
    }
    q3_k_finish(x, y, L);
}

/* quantize_row_q3_K_impl (with an imatrix): weights qw * sqrt(2*mean(x^2) + x^2),
 * make_qx_quants per sub-block, and the 16 scales themselves fitted by make_qx_quants
 * (levels -32..31) weighted by the sub-blocks' total weight. */
static void q3_k_block_imatrix(const float *x, const float *qw, block_q3_K *y) {
    int8_t L[QK_K], Ls[QK_K / 16];
    float scales[QK_K / 16], weight[16], sw[QK_K / 16];
    float sumx2 = 0;
    for (int j = 0; j < QK_K; j++) sumx2 += x[j] * x[j];
    const float sigma2 = 2 * sumx2 / QK_K;
    for (int j = 0; j < QK_K / 16; j++) {
        for (int l = 0; l < 16; l++) weight[l] = qw[16 * j + l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
        float sumw = 0;
        for (int l = 0; l < 16; l++) sumw += weight[l];
        sw[j] = sumw;
        scales[j] = em_make_qx_quants(16, 4, x + 16 * j, L + 16 * j, 1, weight);
    }
    const float d_block = em_make_qx_quants(QK_K / 16, 32, scales, Ls, 1, sw);
    int ls[16];
    for (int j = 0; j < 16; j++) ls[j] = Ls[j];
    put_q3_k_scales(y->scales, ls);
    y->d = em_f32_to_f16(d_block);
    q3_k_finish(x, y, L);
}

size_t em_quantize_q3_K(const float *x, void *vy, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    block_q3_K *y = vy;
    const int64_t nb_row = n_per_row / QK_K;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < nb_row; i++, x += QK_K, y++) {
            if (imatrix) q3_k_block_imatrix(x, imatrix + QK_K * i, y);
            else q3_k_block_ref(x, y);
        }
    return (size_t)(nrows * nb_row) * sizeof(block_q3_K);
}
