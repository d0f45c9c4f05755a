/* quant_bfp.c: bfp4, block floating point for the KV cache (docs/techniques.md §3; the
 * layout is in quant.h): 32 values share one 8-bit exponent and keep a 4-bit signed
 * mantissa each, 4.25 bits per value. Part of the numerical specification described in
 * quant.c: every ISA's store gives these bytes, and every ISA's dot product follows
 * em_vec_dot_bfp4 up to the order of its float sums. */
#include "quant/quant_impl.h"

/* The exponent from amax (em_bfp4_exponent: amax maps into (5, 10] steps), then each x
 * times 2^(127 - e) (exact: a power of two), rounded to nearest even and clamped to -8..7.
 * On Gaussian blocks this costs 0.78x the squared error of the scale that never clamps
 * (amax in (4, 8] steps); see docs/techniques.md §3. */
void em_from_float_bfp4(const float *x, void *vy, int64_t nb) {
    block_bfp4 *y = vy;
    for (int64_t i = 0; i < nb; i++, x += QK_BFP4) {
        const int e = em_bfp4_exponent(em_block_amax(x, QK_BFP4));
        const float inv = e ? em_bfp4_scale(254 - e) : 0.0f;
        y[i].e = (uint8_t)e;
        for (int j = 0; j < QK_BFP4 / 2; j++) {
            int q0 = em_round_even(x[j] * inv), q1 = em_round_even(x[j + QK_BFP4 / 2] * inv);
            q0 = q0 < -8 ? -8 : q0 > 7 ? 7 : q0;
            q1 = q1 < -8 ? -8 : q1 > 7 ? 7 : q1;
            y[i].qs[j] = (uint8_t)((q0 + 8) | (q1 + 8) << 4);
        }
    }
}

void em_to_float_bfp4(const void *vx, float *y, int64_t nb) {
    const block_bfp4 *x = vx;
    for (int64_t i = 0; i < nb; i++, y += QK_BFP4) {
        const float d = em_bfp4_scale(x[i].e);
        for (int j = 0; j < QK_BFP4 / 2; j++) {
            y[j] = (float)((x[i].qs[j] & 0x0F) - 8) * d;
            y[j + QK_BFP4 / 2] = (float)((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

/* With q8_0 activations (the attention's q): the exact integer sum per block, then
 * sumf += sumi * (2^(e-127) * d_q), block by block. */
float em_vec_dot_bfp4(int64_t nb, const void *vx, const void *vy) {
    const block_bfp4 *x = vx;
    const block_q8_0 *y = vy;
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int sumi = 0;
        for (int j = 0; j < QK_BFP4 / 2; j++) {
            sumi += ((x[i].qs[j] & 0x0F) - 8) * y[i].qs[j];
            sumi += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + QK_BFP4 / 2];
        }
        sumf += (float)sumi * (em_bfp4_scale(x[i].e) * em_f16_to_f32(y[i].d));
    }
    return sumf;
}
