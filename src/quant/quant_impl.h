/* quant_impl.h: what the format-family files (quant_float.c, quant_q.c, quant_k.c,
 * quant_iq.c, quant_tq.c, quant_seed.c) share
 * with quant.c, whose trait table points at their row functions. Not a public header.
 *
 * Row functions work on nb whole blocks (for f32/f16/bf16 a block is one element):
 *   to_float   dequantize:  void (const void *x, float *y, int64_t nb)
 *   from_float quantize:    void (const float *x, void *y, int64_t nb)
 *   vec_dot    scalar dot:  float (int64_t nb, const void *w, const void *a), a in the
 *              weight type's vec_dot type. */
#ifndef EMBER_QUANT_IMPL_H
#define EMBER_QUANT_IMPL_H
#include <math.h>
#include <string.h>
#include "quant/quant.h"

/* ggml's nearest_int: adding 1.5 * 2^23 leaves no fraction bits, so the FPU's default
 * rounding (nearest, ties to even) rounds the value. Same as nearbyintf for |f| < 2^22,
 * but no libm call and no undefined float->int conversion when f is NaN. */
static inline int em_round_even(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

static inline float em_block_amax(const float *x, int n) {
    float amax = 0.0f;
    for (int j = 0; j < n; j++) {
        float a = fabsf(x[j]);
        if (a > amax) amax = a;
    }
    return amax;
}

#define EM_ROW_FNS(T)                                                                    \
    void em_to_float_##T(const void *x, float *y, int64_t nb);                           \
    void em_from_float_##T(const float *x, void *y, int64_t nb);                         \
    float em_vec_dot_##T(int64_t nb, const void *w, const void *a);
/* Weight quantizers (trait `quantize`): nrows rows of n_per_row, optional imatrix. */
#define EM_QUANTIZE_FN(T)                                                                \
    size_t em_quantize_##T(const float *x, void *y, int64_t nrows, int64_t n_per_row,    \
                           const float *imatrix);

/* ggml's MAX/MIN: the second operand wins ties (and NaN comparisons). */
#define EM_MAX(a, b) ((a) > (b) ? (a) : (b))
#define EM_MIN(a, b) ((a) < (b) ? (a) : (b))
/* ggml's GROUP_MAX_EPS: a group whose largest value is below it is all zero. */
#define EM_GROUP_MAX_EPS 1e-15f
/* Shared scale searches (quant_k.c), as ggml's make_qx_quants / make_qkx3_quants: the
 * former fits a symmetric scale (L in 0..2*nmax-1, value (L - nmax) * scale), the latter
 * an affine scale and min (L in 0..nmax, value L * scale - *the_min). */
float em_make_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type, const float *qw);
float em_make_qkx3_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                          float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                          int use_mad);

/* quant_float.c */
EM_ROW_FNS(f32)
EM_ROW_FNS(f16)
EM_ROW_FNS(bf16)
EM_QUANTIZE_FN(f32)
EM_QUANTIZE_FN(f16)
EM_QUANTIZE_FN(bf16)
/* quant_q.c: 32-element block types */
EM_ROW_FNS(q4_0)
EM_ROW_FNS(q4_1)
EM_ROW_FNS(q5_0)
EM_ROW_FNS(q5_1)
EM_ROW_FNS(q8_0)
void em_to_float_q8_1(const void *x, float *y, int64_t nb);
void em_from_float_q8_1(const float *x, void *y, int64_t nb);
EM_QUANTIZE_FN(q4_0)
EM_QUANTIZE_FN(q4_1)
EM_QUANTIZE_FN(q5_0)
EM_QUANTIZE_FN(q5_1)
EM_QUANTIZE_FN(q8_0)
/* quant_k.c: 256-element super-block types */
void em_to_float_q2_K(const void *x, float *y, int64_t nb);
float em_vec_dot_q2_K(int64_t nb, const void *w, const void *a);
void em_to_float_q3_K(const void *x, float *y, int64_t nb);
float em_vec_dot_q3_K(int64_t nb, const void *w, const void *a);
void em_to_float_q4_K(const void *x, float *y, int64_t nb);
float em_vec_dot_q4_K(int64_t nb, const void *w, const void *a);
void em_to_float_q5_K(const void *x, float *y, int64_t nb);
float em_vec_dot_q5_K(int64_t nb, const void *w, const void *a);
void em_to_float_q6_K(const void *x, float *y, int64_t nb);
float em_vec_dot_q6_K(int64_t nb, const void *w, const void *a);
void em_to_float_q8_K(const void *x, float *y, int64_t nb);
void em_from_float_q8_K(const float *x, void *y, int64_t nb);
EM_QUANTIZE_FN(q2_K)
EM_QUANTIZE_FN(q3_K)
EM_QUANTIZE_FN(q4_K)
EM_QUANTIZE_FN(q5_K)
EM_QUANTIZE_FN(q6_K)
/* quant_iq.c: non-linear 4-bit types */
EM_ROW_FNS(iq4_nl)
EM_ROW_FNS(iq4_xs)
EM_QUANTIZE_FN(iq4_nl)
EM_QUANTIZE_FN(iq4_xs)
/* quant_tq.c: ternary types */
EM_ROW_FNS(tq1_0)
EM_ROW_FNS(tq2_0)
EM_QUANTIZE_FN(tq1_0)
EM_QUANTIZE_FN(tq2_0)
/* quant_seed.c: ember's INT2..INT8 and BFP3..BFP7 */
#define EM_SEED_ROWS(T) EM_ROW_FNS(T) EM_QUANTIZE_FN(T)
EM_SEED_ROWS(int2)
EM_SEED_ROWS(int3)
EM_SEED_ROWS(int4)
EM_SEED_ROWS(int5)
EM_SEED_ROWS(int6)
EM_SEED_ROWS(int7)
EM_SEED_ROWS(int8)
EM_SEED_ROWS(bfp3)
EM_SEED_ROWS(bfp4)
EM_SEED_ROWS(bfp5)
EM_SEED_ROWS(bfp6)
EM_SEED_ROWS(bfp7)
EM_SEED_ROWS(ovp4)
#undef EM_SEED_ROWS
#endif
