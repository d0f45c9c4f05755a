/* quant_iq.c: the non-linear 4-bit family: IQ4_NL (32-element blocks, one fp16 scale) and
 * IQ4_XS (256-element super-blocks, fp16 scale times a 6-bit signed scale per 32). Each
 * 4-bit code indexes em_iq4nl_values. Dequantizers, ggml's generic dot products (IQ4_NL
 * against Q8_0, IQ4_XS against Q8_K) and ggml's weight quantizers, expression for
 * expression so the bytes match llama-quantize's; part of the numerical specification
 * described in quant.c. */
#include "quant/quant_impl.h"

const int8_t em_iq4nl_values[16] = {
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

/* The 6-bit scale of sub-block ib of an iq4_xs block, minus 32. */
static inline int iq4xs_scale(const block_iq4_xs *b, int ib) {
    const int ls = ((b->scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((b->scales_h >> 2 * ib) & 3) << 4);
    return ls - 32;
}

/* ---------------------------------------------------------------- dequantizers */

void em_to_float_iq4_nl(const void *vx, float *y, int64_t nb) {
    const block_iq4_nl *x = vx;
    for (int64_t i = 0; i < nb; i++, y += QK4_NL) {
        const float d = em_f16_to_f32(x[i].d);
        for (int j = 0; j < QK4_NL / 2; j++) {
            y[j] = d * em_iq4nl_values[x[i].qs[j] & 0xf];
            y[j + QK4_NL / 2] = d * em_iq4nl_values[x[i].qs[j] >> 4];
        }
    }
}

void em_to_float_iq4_xs(const void *vx, float *y, int64_t nb) {
    const block_iq4_xs *x = vx;
    for (int64_t i = 0; i < nb; i++) {
        const float d = em_f16_to_f32(x[i].d);
        const uint8_t *qs = x[i].qs;
        for (int ib = 0; ib < QK_K / 32; ib++, y += 32, qs += 16) {
            const float dl = d * iq4xs_scale(&x[i], ib);
            for (int j = 0; j < 16; j++) {
                y[j] = dl * em_iq4nl_values[qs[j] & 0xf];
                y[j + 16] = dl * em_iq4nl_values[qs[j] >> 4];
            }
        }
    }
}

/* ---------------------------------------------------------------- dot products */

/* ggml_vec_dot_iq4_nl_q8_0_generic: sumf += (dy*dx) * (sum over the low half + sum over
 * the high half). */
float em_vec_dot_iq4_nl(int64_t nb, const void *vx, const void *vy) {
    const block_iq4_nl *x = vx;
    const block_q8_0 *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        const float d = em_f16_to_f32(y[i].d) * em_f16_to_f32(x[i].d);
        int s1 = 0, s2 = 0;
        for (int j = 0; j < QK4_NL / 2; j++) {
            s1 += y[i].qs[j] * em_iq4nl_values[x[i].qs[j] & 0xf];
            s2 += y[i].qs[j + QK4_NL / 2] * em_iq4nl_values[x[i].qs[j] >> 4];
        }
        sumf += d * (s1 + s2);
    }
    return sumf;
}

/* ggml_vec_dot_iq4_xs_q8_K_generic: per 32-element sub-block, sumf += (dx*dy*(ls-32)) *
 * its integer sum, in sub-block order. */
float em_vec_dot_iq4_xs(int64_t nb, const void *vx, const void *vy) {
    const block_iq4_xs *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        const float d4d8 = em_f16_to_f32(x[i].d) * y[i].d;
        const uint8_t *qs = x[i].qs;
        const int8_t *q8 = y[i].qs;
        for (int ib = 0; ib < QK_K / 32; ib++, qs += 16, q8 += 32) {
            const float dl = d4d8 * iq4xs_scale(&x[i], ib);
            int s1 = 0, s2 = 0;
            for (int j = 0; j < 16; j++) {
                s1 += q8[j] * em_iq4nl_values[qs[j] & 0xf];
                s2 += q8[j + 16] * em_iq4nl_values[qs[j] >> 4];
            }
            sumf += dl * (s1 + s2);
        }
    }
    return sumf;
}

/* ---------------------------------------------------------------- quantizers */

/* ggml's best_index_int8: the index of the value nearest to x in the sorted table (ties
 * to the upper one; values past either end clamp). A NaN lands on the last index. */
static int nearest_level(const int8_t *val, float x) {
    if (x <= val[0]) return 0;
    if (x >= val[15]) return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (x < val[mid]) hi = mid;
        else lo = mid;
    }
    return x - val[hi - 1] < val[hi] - x ? hi - 1 : hi;
}

/* quantize_row_iq4_nl_impl for one super-block of sb elements (32 for IQ4_NL, 256 for
 * IQ4_XS), in 32-element sub-blocks:
 *   - element weights: qw[j] * sqrt(sigma2 + x^2) with sigma2 = 2 * mean(x^2) over the
 *     super-block, or x^2 without an importance matrix;
 *   - per sub-block, a first scale that maps the signed value of largest magnitude to
 *     the outermost level (-max / values[0]), the weighted least-squares scale for the
 *     levels it gives, then 2*ntry+1 trial scales (itry + values[0]) / max, keeping the
 *     best weighted fit;
 *   - IQ4_XS: the sub-block scales become 6-bit multiples of d = -max_scale / 32 and the
 *     levels are chosen again for the rounded scale; IQ4_NL: the fp16 scale is the fitted
 *     one and, when ntry > 0, levels are chosen again for it.
 * ntry < 0 is quantize_row_iq4_nl_ref's variant (no trials, d = max / values[0]). */
static void iq4_superblock(int sb, const float *x, uint16_t *dh, uint8_t *q4, uint16_t *scales_h,
                           uint8_t *scales_l, const float *qw, int ntry) {
    const int8_t *values = em_iq4nl_values;
    float scales[QK_K / 32], weight[32];
    uint8_t L[QK_K];
    const int nsub = sb / 32;
    float sigma2 = 0;
    for (int j = 0; j < sb; j++) sigma2 += x[j] * x[j];
    sigma2 *= 2.f / sb;
    memset(q4, 0, (size_t)sb / 2);
    *dh = em_f32_to_f16(0.f);
    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < nsub; ib++) {
        const float *xb = x + ib * 32;
        uint8_t *Lb = L + ib * 32;
        if (qw) {
            for (int j = 0; j < 32; j++) weight[j] = qw[ib * 32 + j] * sqrtf(sigma2 + xb[j] * xb[j]);
        } else {
            for (int j = 0; j < 32; j++) weight[j] = xb[j] * xb[j];
        }
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++) {
            const float ax = fabsf(xb[j]);
            if (ax > amax) { amax = ax; max = xb[j]; }
        }
        if (amax < EM_GROUP_MAX_EPS) {
            scales[ib] = 0;
            continue;
        }
        float d = ntry > 0 ? -max / (float)values[0] : max / (float)values[0];
        float id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        for (int j = 0; j < 32; j++) {
            const int l = nearest_level(values, id * xb[j]);
            Lb[j] = (uint8_t)l;
            const float q = values[l], w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
        float best = d * sumqx;
        for (int itry = -ntry; itry <= ntry; itry++) {
            id = (float)(itry + values[0]) / max;
            sumqx = sumq2 = 0;
            for (int j = 0; j < 32; j++) {
                const int l = nearest_level(values, id * xb[j]);
                const float q = values[l], w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        const float abs_d = fabsf(d);
        if (abs_d > amax_scale) { amax_scale = abs_d; max_scale = d; }
    }
    if (nsub > 1) {
        *scales_h = 0;
        const float d = -max_scale / 32;
        *dh = em_f32_to_f16(d);
        const float id = d != 0.0f ? 1 / d : 0.f;
        for (int ib = 0; ib < nsub; ib++) {
            int l = em_round_even(id * scales[ib]);
            l = EM_MAX(-32, EM_MIN(31, l));
            const float dl = d * l;
            const float idl = dl != 0.0f ? 1 / dl : 0.f;
            for (int j = 0; j < 32; j++) L[ib * 32 + j] = (uint8_t)nearest_level(values, idl * x[ib * 32 + j]);
            l += 32;
            if (ib % 2 == 0) scales_l[ib / 2] = (uint8_t)(l & 0xf);
            else scales_l[ib / 2] |= (uint8_t)((l & 0xf) << 4);
            *scales_h |= (uint16_t)((l >> 4) << 2 * (ib % 8));
        }
    } else {
        *dh = em_f32_to_f16(scales[0]);
        if (ntry > 0) {
            const float id = scales[0] != 0.0f ? 1 / scales[0] : 0;
            for (int j = 0; j < sb; j++) L[j] = (uint8_t)nearest_level(values, id * x[j]);
        }
    }
    for (int i = 0; i < sb / 32; i++)
        for (int j = 0; j < 16; j++) q4[16 * i + j] = (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

/* quantize_row_iq4_nl_ref (no trials) and quantize_row_iq4_xs_ref (= quantize_iq4_xs
 * without an importance matrix). */
void em_from_float_iq4_nl(const float *x, void *vy, int64_t nb) {
    block_iq4_nl *y = vy;
    for (int64_t i = 0; i < nb; i++) iq4_superblock(QK4_NL, x + i * QK4_NL, &y[i].d, y[i].qs, NULL, NULL, NULL, -1);
}

void em_from_float_iq4_xs(const float *x, void *vy, int64_t nb) {
    block_iq4_xs *y = vy;
    for (int64_t i = 0; i < nb; i++)
        iq4_superblock(QK_K, x + i * QK_K, &y[i].d, y[i].qs, &y[i].scales_h, y[i].scales_l, NULL, 7);
}

/* quantize_iq4_nl / quantize_iq4_xs: 7 trials either side, the importance matrix (when
 * given) indexed by the element's column. */
size_t em_quantize_iq4_nl(const float *x, void *vy, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    block_iq4_nl *y = vy;
    const int64_t nb = n_per_row / QK4_NL;
    for (int64_t r = 0; r < nrows; r++, x += n_per_row, y += nb)
        for (int64_t i = 0; i < nb; i++)
            iq4_superblock(QK4_NL, x + i * QK4_NL, &y[i].d, y[i].qs, NULL, NULL,
                           imatrix ? imatrix + i * QK4_NL : NULL, 7);
    return (size_t)(nrows * nb) * sizeof(block_iq4_nl);
}

size_t em_quantize_iq4_xs(const float *x, void *vy, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    block_iq4_xs *y = vy;
    const int64_t nb = n_per_row / QK_K;
    for (int64_t r = 0; r < nrows; r++, x += n_per_row, y += nb)
        for (int64_t i = 0; i < nb; i++)
            iq4_superblock(QK_K, x + i * QK_K, &y[i].d, y[i].qs, &y[i].scales_h, y[i].scales_l,
                           imatrix ? imatrix + i * QK_K : NULL, 7);
    return (size_t)(nrows * nb) * sizeof(block_iq4_xs);
}
