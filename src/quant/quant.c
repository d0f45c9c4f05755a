/* quant.c: the table of ggml type traits, and the scalar numerical specification for the
 * types ember computes with (see quant.h). The row functions live in one file per format
 * family: quant_float.c (f32, f16, bf16), quant_q.c (32-element blocks), quant_k.c
 * (k-quants), quant_iq.c (IQ4_NL, IQ4_XS), quant_tq.c (TQ1_0, TQ2_0), quant_seed.c (ember's
 * own INT2..INT8 and BFP3..BFP7, which follow no ggml code); this file only dispatches
 * through the table.
 *
 * Everything here follows ggml (ggml-quants.c and ggml-cpu/quants.c, generic paths) so
 * that GGUF weights are read in place and dot products reproduce llama.cpp's math:
 *   - dequantize_*: the same float expressions, in the same order, as dequantize_row_*;
 *     results are bit-identical to ggml and to gguf-py (tests/data/quant checks that).
 *   - activation quantizers Q8_0/Q8_1 follow llama.cpp's x86 AVX2 path (id = 127/amax,
 *     round half to even); Q8_K follows quantize_row_q8_K_ref (which x86 also uses).
 *   - Q4_0/Q4_1/Q5_0/Q5_1 quantizers are ggml's *_ref (truncation of x*id + 8.5 / + 0.5,
 *     x*id + 16.5 / + 0.5).
 *   - weight quantizers (the `quantize` trait, em_quantize_weights) are ggml's
 *     quantize_<type> as llama-quantize calls them: the *_ref functions without an
 *     importance matrix (Q8_0's uses roundf and 1/d, unlike the activation quantizer),
 *     the imatrix-weighted scale searches with one; byte-identical to ggml.
 *   - em_vec_dot follows ggml's *_generic dot products: exact integer sums per block (per
 *     8-lane accumulator for k-quants), then float accumulation in ggml's order.
 * Build with ISO C (-std=c11): GCC then does not contract a*b+c into FMA, which would
 * change results in the last bit.
 *
 * Alignment: block pointers are accessed as structs, so weight rows must be 2-byte
 * aligned (every block type except q8_K, which needs 4; q8_K only holds activations that
 * ember allocates). GGUF tensor data is 32-byte aligned and all block sizes are even, so
 * every row of a GGUF tensor satisfies this. F32 rows need 4-byte alignment. */
#include "quant/quant_impl.h"

/* ---------------------------------------------------------------- type table */

/* Every type id a GGUF file may hold. Entries without to_float are known only by size
 * (gguf.c needs that to lay out any file); ember refuses to compute with them. The ids
 * left out (4, 5, 31..33, 36..38) are retired in ggml and rejected in files. */
#define ROWS(T) em_to_float_##T, em_from_float_##T, em_vec_dot_##T, em_quantize_##T
static const em_type_info type_table[EM_TYPE_COUNT] = {
    [EM_F32]  = { "f32",  1,     sizeof(float),      EM_F32,  ROWS(f32) },
    [EM_F16]  = { "f16",  1,     sizeof(uint16_t),   EM_F16,  ROWS(f16) },
    [EM_BF16] = { "bf16", 1,     sizeof(uint16_t),   EM_BF16, ROWS(bf16) },
    [EM_Q4_0] = { "q4_0", QK4_0, sizeof(block_q4_0), EM_Q8_0, ROWS(q4_0) },
    [EM_Q4_1] = { "q4_1", QK4_1, sizeof(block_q4_1), EM_Q8_1, ROWS(q4_1) },
    [EM_Q5_0] = { "q5_0", QK5_0, sizeof(block_q5_0), EM_Q8_0, ROWS(q5_0) },
    [EM_Q5_1] = { "q5_1", QK5_1, sizeof(block_q5_1), EM_Q8_1, ROWS(q5_1) },
    [EM_Q8_0] = { "q8_0", QK8_0, sizeof(block_q8_0), EM_Q8_0, ROWS(q8_0) },
    [EM_Q8_1] = { "q8_1", QK8_1, sizeof(block_q8_1), -1, em_to_float_q8_1, em_from_float_q8_1, NULL },
    [EM_Q2_K] = { "q2_K", QK_K,  sizeof(block_q2_K), EM_Q8_K, em_to_float_q2_K, NULL, em_vec_dot_q2_K, em_quantize_q2_K },
    [EM_Q3_K] = { "q3_K", QK_K,  sizeof(block_q3_K), EM_Q8_K, em_to_float_q3_K, NULL, em_vec_dot_q3_K, em_quantize_q3_K },
    [EM_Q4_K] = { "q4_K", QK_K,  sizeof(block_q4_K), EM_Q8_K, em_to_float_q4_K, NULL, em_vec_dot_q4_K, em_quantize_q4_K },
    [EM_Q5_K] = { "q5_K", QK_K,  sizeof(block_q5_K), EM_Q8_K, em_to_float_q5_K, NULL, em_vec_dot_q5_K, em_quantize_q5_K },
    [EM_Q6_K] = { "q6_K", QK_K,  sizeof(block_q6_K), EM_Q8_K, em_to_float_q6_K, NULL, em_vec_dot_q6_K, em_quantize_q6_K },
    [EM_Q8_K] = { "q8_K", QK_K,  sizeof(block_q8_K), -1, em_to_float_q8_K, em_from_float_q8_K, NULL },
    /* known by size only */
    [16] = { "iq2_xxs", 256, 66,  -1, NULL, NULL, NULL },
    [17] = { "iq2_xs",  256, 74,  -1, NULL, NULL, NULL },
    [18] = { "iq3_xxs", 256, 98,  -1, NULL, NULL, NULL },
    [19] = { "iq1_s",   256, 50,  -1, NULL, NULL, NULL },
    [EM_IQ4_NL] = { "iq4_nl", QK4_NL, sizeof(block_iq4_nl), EM_Q8_0, ROWS(iq4_nl) },
    [21] = { "iq3_s",   256, 110, -1, NULL, NULL, NULL },
    [22] = { "iq2_s",   256, 82,  -1, NULL, NULL, NULL },
    [EM_IQ4_XS] = { "iq4_xs", QK_K, sizeof(block_iq4_xs), EM_Q8_K, ROWS(iq4_xs) },
    [24] = { "i8",      1,   1,   -1, NULL, NULL, NULL },
    [25] = { "i16",     1,   2,   -1, NULL, NULL, NULL },
    [26] = { "i32",     1,   4,   -1, NULL, NULL, NULL },
    [27] = { "i64",     1,   8,   -1, NULL, NULL, NULL },
    [28] = { "f64",     1,   8,   -1, NULL, NULL, NULL },
    [29] = { "iq1_m",   256, 56,  -1, NULL, NULL, NULL },
    [EM_TQ1_0] = { "tq1_0", QK_K, sizeof(block_tq1_0), EM_Q8_K, ROWS(tq1_0) },
    [EM_TQ2_0] = { "tq2_0", QK_K, sizeof(block_tq2_0), EM_Q8_K, ROWS(tq2_0) },
    [39] = { "mxfp4",   32,  17,  -1, NULL, NULL, NULL },
    /* ember's own formats (quant_seed.c), GGUF ids EM_GGUF_SEED_BASE + (id - EM_SEED_FIRST) */
    [EM_INT2] = { "int2", QK_INT, 20, EM_Q8_0, ROWS(int2) },
    [EM_INT3] = { "int3", QK_INT, 28, EM_Q8_0, ROWS(int3) },
    [EM_INT4] = { "int4", QK_INT, 36, EM_Q8_0, ROWS(int4) },
    [EM_INT5] = { "int5", QK_INT, 44, EM_Q8_0, ROWS(int5) },
    [EM_INT6] = { "int6", QK_INT, 52, EM_Q8_0, ROWS(int6) },
    [EM_INT7] = { "int7", QK_INT, 60, EM_Q8_0, ROWS(int7) },
    [EM_INT8] = { "int8", QK_INT, 68, EM_Q8_0, ROWS(int8) },
    [EM_BFP3] = { "bfp3", QK_BFP, 13, EM_Q8_0, ROWS(bfp3) },
    [EM_BFP4] = { "bfp4", QK_BFP, 17, EM_Q8_0, ROWS(bfp4) },
    [EM_BFP5] = { "bfp5", QK_BFP, 21, EM_Q8_0, ROWS(bfp5) },
    [EM_BFP6] = { "bfp6", QK_BFP, 25, EM_Q8_0, ROWS(bfp6) },
    [EM_BFP7] = { "bfp7", QK_BFP, 29, EM_Q8_0, ROWS(bfp7) },
    [EM_OVP4] = { "ovp4", QK_OVP, sizeof(block_ovp4), EM_Q8_0, ROWS(ovp4) },
};
#undef ROWS

const em_type_info *em_type_traits(uint32_t type) {
    if (type >= EM_TYPE_COUNT || !type_table[type].name) return NULL;
    return &type_table[type];
}

uint32_t em_type_from_gguf(uint32_t id) {
    if (id >= EM_GGUF_SEED_BASE && id - EM_GGUF_SEED_BASE < EM_SEED_END - EM_SEED_FIRST)
        return id - EM_GGUF_SEED_BASE + EM_SEED_FIRST;
    return id < EM_SEED_FIRST ? id : UINT32_MAX;
}

uint32_t em_type_to_gguf(uint32_t type) {
    return type >= EM_SEED_FIRST && type < EM_SEED_END ? type - EM_SEED_FIRST + EM_GGUF_SEED_BASE : type;
}

const em_type_info *em_type_get(int type) {
    if (type < 0) return NULL;
    const em_type_info *ti = em_type_traits((uint32_t)type);
    return ti && ti->to_float ? ti : NULL;
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

/* ---------------------------------------------------------------- rows */

int em_quantize_row(int type, const float *x, void *y, int64_t n) {
    const em_type_info *ti = em_type_get(type);
    int64_t nb = n_blocks(ti, n);
    if (nb < 0 || !ti->from_float) return -1;
    ti->from_float(x, y, nb);
    return 0;
}

size_t em_quantize_weights(int type, const float *x, void *y, int64_t nrows, int64_t n_per_row,
                           const float *imatrix) {
    const em_type_info *ti = em_type_get(type);
    if (n_blocks(ti, n_per_row) < 0 || nrows < 0 || !ti->quantize) return 0;
    return ti->quantize(x, y, nrows, n_per_row, imatrix);
}

int em_dequantize_row(int type, const void *x, float *y, int64_t n) {
    const em_type_info *ti = em_type_get(type);
    int64_t nb = n_blocks(ti, n);
    if (nb < 0) return -1;
    ti->to_float(x, y, nb);
    return 0;
}

float em_vec_dot(int wtype, int64_t n, const void *w, const void *a) {
    const em_type_info *ti = em_type_get(wtype);
    int64_t nb = n_blocks(ti, n);
    if (nb < 0 || ti->vec_dot_type < 0 || !ti->vec_dot) return NAN;
    return ti->vec_dot(nb, w, a);
}
