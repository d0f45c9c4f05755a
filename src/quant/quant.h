/* quant.h: ggml tensor types that ember computes with: block layouts, fp16/bf16
 * conversion, reference (de)quantizers and scalar dot products. These are the numerical
 * specification: SIMD kernels are tested against them. Layouts follow ggml's
 * ggml-common.h exactly so GGUF files are used in place.
 *
 * Dot products take the activation already quantized to the weight type's "vec_dot type",
 * as llama.cpp does, so logits agree with it:
 *   F32 -> F32, F16 -> F16, BF16 -> BF16, Q8_0 -> Q8_0, Q4_0 / Q5_0 -> Q8_0,
 *   Q4_1 / Q5_1 -> Q8_1,
 *   Q2_K / Q3_K / Q4_K / Q5_K / Q6_K -> Q8_K, IQ4_NL -> Q8_0, IQ4_XS / TQ1_0 / TQ2_0 -> Q8_K,
 *   and ember's own INT2..INT8 / BFP3..BFP7 -> Q8_0. */
#ifndef EMBER_QUANT_H
#define EMBER_QUANT_H
#include <stddef.h>
#include <stdint.h>

enum em_type {
    EM_F32 = 0, EM_F16 = 1, EM_Q4_0 = 2, EM_Q4_1 = 3, EM_Q5_0 = 6, EM_Q5_1 = 7,
    EM_Q8_0 = 8, EM_Q8_1 = 9,
    EM_Q2_K = 10, EM_Q3_K = 11, EM_Q4_K = 12, EM_Q5_K = 13, EM_Q6_K = 14, EM_Q8_K = 15, EM_BF16 = 30,
    EM_IQ4_NL = 20, EM_IQ4_XS = 23, EM_TQ1_0 = 34, EM_TQ2_0 = 35,
    /* ember's own weight formats (quant_seed.c; docs/techniques.md §3, §7). Inside ember
     * they take the ids 64.. so the per-type tables stay small; in GGUF files they are
     * EM_GGUF_SEED_BASE + (id - EM_SEED_FIRST), see em_type_from_gguf. */
    EM_SEED_FIRST = 64,
    EM_INT2 = 64, EM_INT3, EM_INT4, EM_INT5, EM_INT6, EM_INT7, EM_INT8,
    EM_BFP3 = 71, EM_BFP4, EM_BFP5, EM_BFP6, EM_BFP7,
    EM_OVP4 = 76,
    EM_SEED_END = 77,    /* one past the last seed type */
    EM_TYPE_COUNT = 80,  /* ggml type ids 0..39 (mxfp4 = 39), then the seed types */
};

/* GGUF type ids of the seed types: 4096 + (id - EM_SEED_FIRST), so INT2..INT8 are
 * 4096..4102, BFP3..BFP7 4103..4107 and OVP4 4108. ggml numbers its types densely from 0 (43 ids in
 * 2026) and sizes arrays by the count, so it will not reach this range; a file holding
 * ids 64..79 (ember's internal numbers) is refused like any unknown type. */
#define EM_GGUF_SEED_BASE 4096u
/* File id -> ember id (UINT32_MAX for ids that name no ember type); ember id -> file id. */
uint32_t em_type_from_gguf(uint32_t file_id);
uint32_t em_type_to_gguf(uint32_t type);

/* INTb (b = 2..8): groups of QK_INT = 64 weights, block = f16 d, f16 m, then the 64
 * unsigned codes q (0..2^b-1) in 8b bytes; value = d*q + m. BFPm (m = 3..7): blocks of
 * QK_BFP = 32, block = one exponent byte e, then 32 m-bit codes u in 4m bytes; value =
 * (u - 2^(m-1)) * 2^(e-127) (e = 0: the block is zero; the quantizer writes e <= 254).
 * Codes are stored as bit planes of 4, 2 and 1 bits (b = 8: one byte plane), lowest bits
 * first, so a group is one contiguous run and each plane unpacks with whole-vector
 * shifts: element j of n is, in the 4-bit plane, nibble j / (n/2) of byte j % (n/2); in
 * the 2-bit plane, bits 2(j / (n/4)) of byte j % (n/4); in the 1-bit plane, bit j % 8 of
 * byte j / 8. E.g. INT7 = planes 4+2+1 (bits 0-3, 4-5, 6), BFP5 = 4+1. */
#define QK_INT 64
#define QK_BFP 32
/* OVP4 (OliVe outlier-victim pairs): groups of QK_OVP = 64 with an f16 scale d; byte j of
 * qs holds element j (low nibble) and its pair partner j + 32 (high nibble). A nibble is a
 * 4-bit two's-complement integer -7..7 (value d*v), or 8, which marks a victim (value 0)
 * and makes the partner nibble an outlier code: sign bit 3, magnitude
 * em_ovp_outlier[c & 7] (12..96, value d * +-magnitude). */
#define QK_OVP 64
typedef struct { uint16_t d; uint8_t qs[QK_OVP / 2]; } block_ovp4;
_Static_assert(sizeof(block_ovp4) == 34, "ovp4 block");
extern const int8_t em_ovp_outlier[8];
static inline int em_int_bits(int type) { return type >= EM_INT2 && type <= EM_INT8 ? type - EM_INT2 + 2 : 0; }
static inline int em_bfp_bits(int type) { return type >= EM_BFP3 && type <= EM_BFP7 ? type - EM_BFP3 + 3 : 0; }
static inline size_t em_int_block_bytes(int bits) { return 4 + 8 * (size_t)bits; }
static inline size_t em_bfp_block_bytes(int bits) { return 1 + 4 * (size_t)bits; }

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK_K 256
#define K_SCALE_SIZE 12
#define QK4_NL 32

typedef struct { uint16_t d; uint8_t qs[QK4_0 / 2]; } block_q4_0;
typedef struct { uint16_t d, m; uint8_t qs[QK4_1 / 2]; } block_q4_1;
/* q5: the fifth bit of element j is bit j of qh read as a little-endian u32; the low
 * four bits are nibbles as in q4 (low nibbles: elements 0..15, high: 16..31). */
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; } block_q5_0;
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; } block_q5_1;
typedef struct { uint16_t d; int8_t qs[QK8_0]; } block_q8_0;
typedef struct { uint16_t d, s; int8_t qs[QK8_1]; } block_q8_1;   /* s = d * sum(qs) */
/* q2_K: scales[j] = 4-bit scale (low nibble) and min (high) of sub-block j (16 elements);
 * q3_K: 2 low bits in qs as q2_K, the third bit in hmask, 16 six-bit scales in 12 bytes. */
typedef struct { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; uint16_t d, dmin; } block_q2_K;
typedef struct { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; uint16_t d; } block_q3_K;
typedef struct { uint16_t d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; } block_q4_K;
typedef struct { uint16_t d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } block_q5_K;
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; } block_q6_K;
typedef struct { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; } block_q8_K;
/* iq4: 4-bit indices into the 16 non-linear values em_iq4nl_values (element order as q4_0:
 * low nibbles first half of each 32). iq4_xs: eight 32-element sub-blocks, 6-bit scale
 * ls - 32 each (low 4 bits in scales_l, nibble ib % 2 of byte ib / 2; high 2 bits at bit
 * 2*ib of scales_h). */
typedef struct { uint16_t d; uint8_t qs[QK4_NL / 2]; } block_iq4_nl;
typedef struct { uint16_t d; uint16_t scales_h; uint8_t scales_l[QK_K / 64]; uint8_t qs[QK_K / 2]; } block_iq4_xs;
/* Ternary (values -1, 0, 1 times d). tq2_0: 2 bits per element, byte j of each 32-byte
 * run holds elements j, j+32, j+64, j+96 of its 128 (bits 0-1 first), code - 1.
 * tq1_0: 5 trits per byte as a base-3 fraction of 256 (trit n = (uint8)(q * 3^n) * 3 >> 8):
 * qs[0..31] elements 0..159 (trit n of byte m: n*32 + m), qs[32..47] elements 160..239
 * (n*16 + m), qh[0..3] 4 trits each, elements 240..255 (n*4 + j). */
typedef struct { uint8_t qs[(QK_K - 4 * QK_K / 64) / 5]; uint8_t qh[QK_K / 64]; uint16_t d; } block_tq1_0;
typedef struct { uint8_t qs[QK_K / 4]; uint16_t d; } block_tq2_0;

_Static_assert(sizeof(block_q4_0) == 18, "q4_0 block");
_Static_assert(sizeof(block_q4_1) == 20, "q4_1 block");
_Static_assert(sizeof(block_q5_0) == 22, "q5_0 block");
_Static_assert(sizeof(block_q5_1) == 24, "q5_1 block");
_Static_assert(sizeof(block_q8_0) == 34, "q8_0 block");
_Static_assert(sizeof(block_q8_1) == 36, "q8_1 block");
_Static_assert(sizeof(block_q2_K) == 84, "q2_K block");
_Static_assert(sizeof(block_q3_K) == 110, "q3_K block");
_Static_assert(sizeof(block_q4_K) == 144, "q4_K block");
_Static_assert(sizeof(block_q5_K) == 176, "q5_K block");
_Static_assert(sizeof(block_q6_K) == 210, "q6_K block");
_Static_assert(sizeof(block_q8_K) == 292, "q8_K block");
_Static_assert(sizeof(block_iq4_nl) == 18, "iq4_nl block");
_Static_assert(sizeof(block_iq4_xs) == 136, "iq4_xs block");
_Static_assert(sizeof(block_tq1_0) == 54, "tq1_0 block");
_Static_assert(sizeof(block_tq2_0) == 66, "tq2_0 block");

/* ggml's kvalues_iq4nl: the 16 levels of IQ4_NL / IQ4_XS. */
extern const int8_t em_iq4nl_values[16];

/* The traits of one ggml type: one table (quant.c) holds every type id a GGUF file may
 * carry. Row functions take whole blocks (nb of them; a block of f32/f16/bf16 is one
 * element); NULL where ember has none. */
typedef struct em_type_info {
    const char *name;     /* "q4_K" */
    int blck;             /* elements per block */
    size_t bytes;         /* bytes per block */
    int vec_dot_type;     /* activation type for dot products; -1 if not a weight type */
    void (*to_float)(const void *x, float *y, int64_t nb);      /* dequantize; NULL: ember cannot compute with the type */
    void (*from_float)(const float *x, void *y, int64_t nb);    /* quantize (activations, reference weight quantizers) */
    float (*vec_dot)(int64_t nb, const void *w, const void *a); /* scalar dot, a in vec_dot_type */
    /* Weight quantizer as ggml's quantize_<type> (what llama-quantize writes): nrows rows of
     * n_per_row elements; imatrix (n_per_row importance weights, or NULL) steers the types
     * that use one. Returns the bytes written. NULL where ember has none. */
    size_t (*quantize)(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix);
} em_type_info;

/* Any ggml type id known to GGUF, computed or not; NULL for unknown and retired ids. */
const em_type_info *em_type_traits(uint32_t type);
/* NULL when ember cannot compute with the type. */
const em_type_info *em_type_get(int type);
/* Bytes of a row of n elements (n a multiple of the block size), 0 if unsupported. */
size_t em_row_size(int type, int64_t n);

/* IEEE half and bfloat16, round to nearest even (as F16C and ggml do). */
float em_f16_to_f32(uint16_t h);
uint16_t em_f32_to_f16(float f);
float em_bf16_to_f32(uint16_t h);
uint16_t em_f32_to_bf16(float f);

/* Row conversions; n is a multiple of the type's block size.
 * em_quantize_row supports F32, F16, BF16, Q8_0, Q8_1, Q8_K (activations) and the
 * reference weight quantizers Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0 (as
 * ggml's *_ref). Returns 0, or -1 if the type
 * has no quantizer. em_dequantize_row supports every type above. */
int em_quantize_row(int type, const float *x, void *y, int64_t n);
/* Weight quantization as llama-quantize does it (ggml's quantize_<type>, byte-identical):
 * F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS,
 * TQ1_0, TQ2_0. imatrix: n_per_row importance weights or NULL (Q8_0, F16, BF16, F32, TQ1_0
 * and TQ2_0 ignore it). Returns the bytes
 * written, 0 if the type has no weight quantizer or n_per_row is not whole blocks. */
size_t em_quantize_weights(int type, const float *x, void *y, int64_t nrows, int64_t n_per_row,
                           const float *imatrix);
int em_dequantize_row(int type, const void *x, float *y, int64_t n);

/* Scalar dot product of one weight row (type wtype) with one activation row already in
 * em_type_get(wtype)->vec_dot_type, n elements. The summation order is ggml's generic
 * one (per-block integer sums, then float accumulation in block order). */
float em_vec_dot(int wtype, int64_t n, const void *w, const void *a);
#endif
