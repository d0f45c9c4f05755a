/* kernels.h: the kernel table. Every compute kernel the forward pass uses is a pointer
 * in struct em_kernels; kern_ref.c fills the table with the scalar specification and each
 * ISA file (kern_avx2.c, kern_avx512.c, kern_neon.c) overrides the slots it speeds up.
 * Empty slots fall back to ref. The table is chosen per context (cpu.c), so one process
 * can test every ISA the CPU has.
 *
 * Contract shared by all kernels: no allocation, no printing, no global state; results
 * for a given output element never depend on how rows are split across threads. */
#ifndef EMBER_KERNELS_H
#define EMBER_KERNELS_H
#include <stddef.h>
#include <stdint.h>
#include "quant/quant.h"

typedef struct em_kernels {
    const char *name;  /* "ref", "avx2", "avx512", "neon" */

    /* Activations -> the weight type's vec_dot type: quantize_act[t](x, y, n) for
     * t in {F32, F16, BF16, Q8_0, Q8_1, Q8_K}; n a multiple of the block size. */
    void (*quantize_act[EM_TYPE_COUNT])(const float *x, void *y, int64_t n);

    /* Matrix times up to 8 activation columns, rows [r0, r1):
     *   y[c*ldy + r] = dot(W row r, x column c),  c < ncols <= 8.
     * W rows are wrow bytes apart, in weight type t; x columns are xcol bytes apart, already
     * in t's vec_dot type; n is the inner dimension. */
    void (*matmul[EM_TYPE_COUNT])(int64_t n, const void *w, size_t wrow, int r0, int r1,
                                  const void *x, size_t xcol, int ncols, float *y, int ldy);

    /* o = x * w / sqrt(mean(x^2) + eps)  (RMSNorm; o may alias x). */
    void (*rmsnorm)(float *o, const float *x, const float *w, int n, float eps);
    /* In place softmax over n values, three passes: max; e^(x-max) stored and summed;
     * scaled by 1/sum (reads x three times, writes it twice). */
    void (*softmax)(float *x, int n);
    /* The same in two passes (Dukhan & Ablavatski, docs/techniques.md §1): pass 1 sums e^x as
     * extended floats m*2^e, so no max pass is needed and nothing overflows; pass 2
     * recomputes e^x and scales. Reads x twice, writes it once, which is what counts once
     * x is out of cache. Inputs are clamped to [-2^22, 2^22]; a NaN makes every output NaN. */
    void (*softmax2)(float *x, int n);
    /* h[i] = silu(g[i]) * u[i]. */
    void (*swiglu)(float *h, const float *g, const float *u, int n);
    /* h[i] = gelu(g[i]) * u[i] (h may alias g) with llama.cpp's CPU GELU for f32 input:
     * 0 for g <= -10, g for g >= 10, otherwise the tanh approximation
     * 0.5 g (1 + tanh(sqrt(2/pi) g (1 + 0.044715 g^2))) evaluated in float at g rounded to
     * F16, the result rounded to F16 (llama.cpp reads it from a 65536-entry F16 table, built
     * by its x86 FMA build with 1 + 0.044715 g^2 as one fused multiply-add). */
    void (*geglu)(float *h, const float *g, const float *u, int n);
    /* Attention of n_q query heads that share one KV head (a GQA group; n_q <=
     * EM_ATTN_MAX_GROUP) over cached positions 0..n_kv-1, in one pass with an online
     * softmax, so K and V are each read once for the whole group and the scratch does not
     * grow with the context:  out_h = softmax(scale * q_h.K^T) V  for h < n_q.
     * q and out hold the n_q heads hd floats apart; K/V rows are of cache type t (F32 or
     * F16), kstride elements apart. The numerics are those of llama.cpp's CPU flash
     * attention, per position and head: the score (dot product summed in double); if it
     * exceeds the running max M, the output and the sum are rescaled by e^(M_old - s);
     * otherwise the V row is weighted by e^(s - M). For F16, q is rounded to F16 and the
     * output accumulated in F16 (rounded after every step), and the arithmetic is that of
     * llama.cpp's x86 (AVX2, FMA) build, which decides near-ties of models whose q/k are
     * large (gemma3's normed heads): the score's first hd & ~31 products are fused into 32
     * float partial sums reduced as its 4 x 8 lanes are (kern_ref.c dot_f16_ggml), the V
     * rows of those lanes are added with a fused multiply-add, and so is the sum
     * S = S * ms + vs. SIMD kernels work through
     * EM_ATTN_CHUNK positions at a time (scores of the chunk, then the update, then the V
     * rows), which changes nothing in the arithmetic: a chunk whose scores stay below M,
     * nearly every chunk, takes no rescale. */
    void (*attn[EM_TYPE_COUNT])(float *out, const float *q, int n_q, const void *k, const void *v,
                                int n_kv, int hd, size_t kstride, float scale);
    /* attn with llama.cpp's attention logit soft-capping (gemma2): each score becomes
     * softcap * tanh(dot * (scale / softcap)), in float, before the online update. Only the
     * reference implements it (the ISA tables take it from there). */
    void (*attn_softcap[EM_TYPE_COUNT])(float *out, const float *q, int n_q, const void *k, const void *v,
                                        int n_kv, int hd, size_t kstride, float scale, float softcap);
    /* The same attention over a cache of any type (F32, F16, BF16, Q8_0, Q4_0; K and V may
     * differ): the forward pass uses it whenever the pair is not F32/F32 or F16/F16.
     * K rows are krow bytes apart and V rows vrow bytes apart (k and v point at this KV
     * head's slice of the first row, on a block boundary); hd a multiple of 32. Scores come
     * from self->matmul[tk] with q in tk's vec_dot type, V accumulates in F32 (attn_kv.h
     * spells out the arithmetic). self: the table this kernel belongs to, after ref filled
     * its empty slots. */
    void (*attn_kv)(const struct em_kernels *self, float *out, const float *q, int n_q,
                    int tk, const void *k, size_t krow, int tv, const void *v, size_t vrow,
                    int n_kv, int hd, float scale);
    /* The straightforward three-pass attention, kept as the baseline of the attention
     * micro-benchmark (not used by the forward pass): all scores into scores[0..n_kv)
     * and their max; e^(s-max) and the sum; the V rows weighted by them (F32 accumulator). */
    void (*attn3[EM_TYPE_COUNT])(float *out, const float *q, const void *k, const void *v,
                                 int n_kv, int hd, size_t kstride, float scale, float *scores);
    /* One head of one step of a Mamba-2 selective scan (falcon-h1, model/ssm.c): for each of
     * the head's hd channels i, with S_i the d_state values of its state (rows ds floats
     * apart) and x_dt = x[i] * dt:
     *   S_i[j] = S_i[j] * dA + B[j] * x_dt,   y[i] = sum_j S_i[j] * C[j] + x[i] * D.
     * The arithmetic is llama.cpp's (ggml_ssm_scan as its x86 AVX2+FMA build runs it), the
     * same bits in every ISA: S * dA and B * x_dt each rounded, then added; the sum over the
     * first ds & ~31 values in 32 partial sums (lane k takes j = k mod 32) with fused
     * multiply-adds, reduced as ggml reduces 4 vectors of 8 lanes (vectors 0+2 and 1+3,
     * then those two, then the 128-bit halves, then two horizontal pair adds), the rest
     * added by fused multiply-adds in order; then + x[i] * D (rounded product). */
    void (*ssm_scan)(float *S, const float *x, const float *B, const float *C, float dA, float dt, float D,
                     float *y, int hd, int ds);
} em_kernels;

#define EM_ATTN_CHUNK 16     /* positions per step of the SIMD attention kernels */
#define EM_ATTN_MAX_GROUP 8  /* query heads per attn call */
#define EM_ATTN_MAX_HD 512   /* head widths above this are refused at model load */

extern const em_kernels em_kernels_ref;
/* The best table for this CPU, or the one EMBER_ISA names ("ref", "avx2", "avx512",
 * "neon"); unknown or unsupported names fall back to the best with a warning flag set. */
const em_kernels *em_kernels_best(void);
const em_kernels *em_kernels_by_name(const char *name);  /* NULL if absent/unsupported */
/* Names of the ISAs usable on this CPU, best first ("avx512", "avx2", "ref"). */
int em_kernels_list(const char **names, int max);

/* peak.c: one thread's multiply-add throughput probe for `ember bench` (not a table slot):
 * iters rounds of independent chains of the int8 (f32 = 0) or f32 (f32 = 1) multiply-add
 * instructions of ISA table `isa` ("avx512", "avx2", "neon"; anything else: scalar). Returns
 * the multiply-adds done. The caller makes sure the CPU runs that ISA. */
int64_t em_peak_probe(const char *isa, int f32, int64_t iters);
#endif
