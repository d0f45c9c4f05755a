/* quant_bfp.c: bfp4, block floating point for the KV cache (EM_KV_BFP4, docs/techniques.md
 * §3; the layout is in quant.h): 32 values share one 8-bit exponent and keep a 4-bit signed
 * mantissa each, 4.25 bits per value. The block layout is the seed weight type BFP4's
 * (quant_seed.c: exponent byte, then the 4-bit plane, nibble u = m + 8, low nibbles
 * elements 0..15), so the cache type takes that type's decode and dot product
 * (em_to_float_bfp4, em_vec_dot_bfp4: per block the exact integer sum times
 * 2^(e-127) * d_q); only the store differs: the weight quantizer searches three exponents
 * for the least error, the cache's store below is the single-pass rule every ISA's
 * quantize_act[EM_KV_BFP4] reproduces bit for bit. */
#include "quant/quant_impl.h"

/* The exponent from amax (em_bfp4_exponent: amax maps into (5, 10] steps), then each x
 * times 2^(127 - e) (exact: a power of two), rounded to nearest even and clamped to -8..7.
 * On Gaussian blocks this costs 0.78x the squared error of the scale that never clamps
 * (amax in (4, 8] steps); see docs/techniques.md §3. */
void em_from_float_kvbfp4(const float *x, void *vy, int64_t nb) {
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
