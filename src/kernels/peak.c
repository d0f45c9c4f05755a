/* peak.c: the compute half of `ember bench`'s roofline: how many multiply-adds per second
 * one thread issues with the instructions ember's kernels use for int8 products (the
 * quantized weight types: activations in Q8_0/Q8_1/Q8_K) and for f32 ones (float weights).
 *
 *   avx512  int8: vpdpbusd (64 u8 x s8 products summed into 16 int32 lanes)
 *           f32:  vfmadd231ps on 16 lanes
 *   avx2    int8: vpmaddubsw + vpmaddwd + vpaddd (32 products per three instructions)
 *           f32:  vfmadd231ps on 8 lanes
 *   neon    int8: vmull_s8 + vmlal_high_s8 + vpadalq_s16 (16 products per three; armv8.0,
 *                 as kern_neon.c: no dotprod)
 *           f32:  vfmaq_f32 on 4 lanes
 *   ref     scalar loops of the same shape (what the compiler makes of them)
 *
 * Each probe runs `iters` rounds of PEAK_CHAINS independent accumulator chains: more than
 * the instructions' latency (4-5 cycles) times the issue ports that run them (2), so the
 * figure is throughput-bound, the best any kernel could reach with these instructions.
 * Not a kernel-table slot (the forward pass never calls it). The ISA variants are compiled
 * with target attributes, so this file needs no per-file flags; the caller says which
 * variant, normally the name of the kernel table in use, and must only name one the CPU
 * runs (em_kernels_by_name checks that). */
#include <string.h>
#include "kernels/kernels.h"

#define PEAK_CHAINS 12

/* Twelve statements of one accumulator update, so the chains stay in registers. */
#define PEAK_X12(OP) OP(0) OP(1) OP(2) OP(3) OP(4) OP(5) OP(6) OP(7) OP(8) OP(9) OP(10) OP(11)
/* A probe's body, from the variant's DECL(k) (chain k's accumulator, each chain starting
 * from a different value so that none can be merged with another), STEP(k) (one
 * multiply-add instruction group of chain k) and SINK(k) (its result into *sink). */
#define PEAK_BODY(iters)                                      \
    PEAK_X12(DECL)                                            \
    for (int64_t i = 0; i < (iters); i++) { PEAK_X12(STEP) }  \
    PEAK_X12(SINK)

#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx512f,avx512bw,avx512vnni")))
static int64_t peak_i8_avx512(int64_t iters, volatile uint32_t *sink) {
    const __m512i a = _mm512_set1_epi8(1), b = _mm512_set1_epi8(-1);
#define DECL(k) __m512i c##k = _mm512_set1_epi32(k);
#define STEP(k) c##k = _mm512_dpbusd_epi32(c##k, a, b);
#define SINK(k) *sink += (uint32_t)_mm512_reduce_add_epi32(c##k);
    PEAK_BODY(iters)
#undef DECL
#undef STEP
#undef SINK
    return iters * PEAK_CHAINS * 64;
}

__attribute__((target("avx512f")))
static int64_t peak_f32_avx512(int64_t iters, volatile float *sink) {
    const __m512 a = _mm512_set1_ps(1.0f), b = _mm512_set1_ps(-1e-9f);
#define DECL(k) __m512 c##k = _mm512_set1_ps((float)k);
#define STEP(k) c##k = _mm512_fmadd_ps(a, b, c##k);
#define SINK(k) *sink += _mm512_reduce_add_ps(c##k);
    PEAK_BODY(iters)
#undef DECL
#undef STEP
#undef SINK
    return iters * PEAK_CHAINS * 16;
}

__attribute__((target("avx2")))
static int64_t peak_i8_avx2(int64_t iters, volatile uint32_t *sink) {
    /* the accumulator is also the signed operand, so no product can be hoisted */
    const __m256i a = _mm256_set1_epi8(1), ones = _mm256_set1_epi16(1);
#define DECL(k) __m256i c##k = _mm256_set1_epi32(k);
#define STEP(k) c##k = _mm256_add_epi32(c##k, _mm256_madd_epi16(_mm256_maddubs_epi16(a, c##k), ones));
#define SINK(k) *sink += (uint32_t)_mm256_extract_epi32(c##k, 0);
    PEAK_BODY(iters)
#undef DECL
#undef STEP
#undef SINK
    return iters * PEAK_CHAINS * 32;
}

__attribute__((target("avx2,fma")))
static int64_t peak_f32_avx2(int64_t iters, volatile float *sink) {
    const __m256 a = _mm256_set1_ps(1.0f), b = _mm256_set1_ps(-1e-9f);
#define DECL(k) __m256 c##k = _mm256_set1_ps((float)k);
#define STEP(k) c##k = _mm256_fmadd_ps(a, b, c##k);
#define SINK(k) *sink += _mm256_cvtss_f32(c##k);
    PEAK_BODY(iters)
#undef DECL
#undef STEP
#undef SINK
    return iters * PEAK_CHAINS * 8;
}
#endif

#if defined(__aarch64__)
#include <arm_neon.h>

static int64_t peak_i8_neon(int64_t iters, volatile uint32_t *sink) {
    /* the accumulator is also one operand, so no product can be hoisted */
    const int8x16_t b = vdupq_n_s8(-1);
#define DECL(k) int32x4_t c##k = vdupq_n_s32(k);
#define STEP(k) { const int8x16_t x = vreinterpretq_s8_s32(c##k); \
        c##k = vpadalq_s16(c##k, vmlal_high_s8(vmull_s8(vget_low_s8(x), vget_low_s8(b)), x, b)); }
#define SINK(k) *sink += (uint32_t)vaddvq_s32(c##k);
    PEAK_BODY(iters)
#undef DECL
#undef STEP
#undef SINK
    return iters * PEAK_CHAINS * 16;
}

static int64_t peak_f32_neon(int64_t iters, volatile float *sink) {
    const float32x4_t a = vdupq_n_f32(1.0f), b = vdupq_n_f32(-1e-9f);
#define DECL(k) float32x4_t c##k = vdupq_n_f32((float)k);
#define STEP(k) c##k = vfmaq_f32(c##k, a, b);
#define SINK(k) *sink += vaddvq_f32(c##k);
    PEAK_BODY(iters)
#undef DECL
#undef STEP
#undef SINK
    return iters * PEAK_CHAINS * 4;
}
#endif

static int64_t peak_i8_ref(int64_t iters, volatile uint32_t *sink) {
    uint32_t c[PEAK_CHAINS];  /* unsigned: the sums wrap, as the SIMD lanes do */
    const int32_t b = (int8_t)(*sink - 1);  /* -1, unknown to the compiler */
    for (int k = 0; k < PEAK_CHAINS; k++) c[k] = (uint32_t)k;
    for (int64_t i = 0; i < iters; i++)
        for (int k = 0; k < PEAK_CHAINS; k++) c[k] += (uint32_t)((int32_t)(uint8_t)c[k] * b);
    for (int k = 0; k < PEAK_CHAINS; k++) *sink += c[k];
    return iters * PEAK_CHAINS;
}

static int64_t peak_f32_ref(int64_t iters, volatile float *sink) {
    float c[PEAK_CHAINS];
    const float b = -1e-9f + *sink * 0.0f;
    for (int k = 0; k < PEAK_CHAINS; k++) c[k] = (float)k;
    for (int64_t i = 0; i < iters; i++)
        for (int k = 0; k < PEAK_CHAINS; k++) c[k] = c[k] * 1.0000001f + b;
    for (int k = 0; k < PEAK_CHAINS; k++) *sink += c[k];
    return iters * PEAK_CHAINS;
}

int64_t em_peak_probe(const char *isa, int f32, int64_t iters) {
    volatile uint32_t isink = 0;
    volatile float fsink = 0;
#if defined(__x86_64__)
    if (!strcmp(isa, "avx512")) return f32 ? peak_f32_avx512(iters, &fsink) : peak_i8_avx512(iters, &isink);
    if (!strcmp(isa, "avx2")) return f32 ? peak_f32_avx2(iters, &fsink) : peak_i8_avx2(iters, &isink);
#endif
#if defined(__aarch64__)
    if (!strcmp(isa, "neon")) return f32 ? peak_f32_neon(iters, &fsink) : peak_i8_neon(iters, &isink);
#endif
    return f32 ? peak_f32_ref(iters, &fsink) : peak_i8_ref(iters, &isink);
}
