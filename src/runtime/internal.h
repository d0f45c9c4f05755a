/* internal.h: types shared across src/ (model, context, hyper-parameters) and the small
 * utilities of util.c. Nothing here is public; include/ember.h is the only public header. */
#ifndef EMBER_INTERNAL_H
#define EMBER_INTERNAL_H
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "ember.h"
#include "model/gguf.h"
#include "kernels/kernels.h"
#include "quant/quant.h"
#include "text/tokenizer.h"
#include "runtime/kv_cache.h"
#include "runtime/stream.h"

/* ---- util.c ---- */
/* Records a printf-style message for ember_last_error() and returns status. */
ember_status em_fail(ember_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void em_clear_error(void);
/* Sends one line to the callback of ember_log_set (nothing when none is installed). */
void em_log(ember_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Checks, without opening it, that path names a regular file: a FIFO would block open(),
 * and a directory or device is never a model. EMBER_E_IO naming the path and its kind. */
ember_status em_check_regular(const char *path);
/* em_check_regular, then fopen(path, "rb") that cannot block and re-checks the opened file.
 * NULL with *status set and the error recorded. */
FILE *em_fopen_regular(const char *path, ember_status *status);
/* Checked size arithmetic: return 0 on success, -1 on overflow. */
int em_mul_size(size_t a, size_t b, size_t *out);
int em_add_size(size_t a, size_t b, size_t *out);
void *em_alloc_aligned(size_t size);  /* 64-byte aligned, zeroed; NULL on failure */
void em_free_aligned(void *p);
double em_time_ms(void);              /* monotonic clock */
int em_physical_cores(void);

/* ---- architectures ---- */
enum em_arch { EM_ARCH_LLAMA, EM_ARCH_QWEN2, EM_ARCH_QWEN3, EM_ARCH_GEMMA3, EM_ARCH_PHI3, EM_ARCH_GEMMA2,
               EM_ARCH_FALCON_H1 };

typedef struct em_hparams {
    int arch;           /* enum em_arch */
    int n_vocab;
    int n_embd;         /* model width */
    int n_layer;
    int n_head;         /* query heads */
    int n_head_kv;      /* key/value heads (GQA: n_head % n_head_kv == 0) */
    int head_dim;       /* per-head width of q and k (qwen3: attention.key_length) */
    int head_dim_v;     /* per-head width of v */
    int n_ff;           /* feed-forward width */
    int n_ctx_train;
    int n_rot;          /* rotated dims per head (rope.dimension_count) */
    int rope_neox;      /* 0: rotate (x[2i], x[2i+1]); 1: rotate (x[i], x[i + n_rot/2]) */
    float rope_base;    /* rope.freq_base */
    float rms_eps;
    /* rope scaling, every architecture (llama.cpp's reading of the rope.scaling.* keys) */
    float rope_freq_scale;  /* 1 / rope.scaling.factor (linear), global layers; 0: 1 */
    float rope_attn_factor; /* rope.scaling.attn_factor: cos and sin are multiplied by it; 0: 1 */
    int n_ctx_orig;     /* rope.scaling.original_context_length (else n_ctx_train): a context
                         * longer than this takes rope_factors_long instead of _short */
    /* gemma3 and gemma2; zero everywhere else, and zero means the plain llama behaviour */
    int gelu;           /* FFN gate activation: 0 SiLU (SwiGLU), 1 GELU (GeGLU) */
    int n_swa;          /* attention.sliding_window: a local layer (em_layer.swa) sees the
                         * last n_swa positions; 0: every layer is global */
    float rope_base_swa;    /* rope base of the sliding-window layers */
    float rope_freq_scale_swa;  /* their rope scale (gemma2: the global one; gemma3: 1); 0: 1 */
    float attn_softcap; /* gemma2 attn_logit_softcapping: scores = c*tanh(scores/c); 0 = off */
    float embd_scale;   /* token embeddings are multiplied by this (sqrt(n_embd)); 0: 1 */
    float attn_scale;   /* queries are multiplied by this before attention; 0: 1/sqrt(head_dim) */
    float logit_softcap;    /* final_logit_softcapping: logits = c*tanh(logits/c); 0 = off */
    /* falcon-h1's Mamba-2 mixer (model/ssm.c); ssm_d_inner 0: no SSM */
    int ssm_d_conv;     /* ssm.conv_kernel: taps of the causal depthwise convolution */
    int ssm_d_inner;    /* ssm.inner_size: the SSM heads' total width */
    int ssm_d_state;    /* ssm.state_size */
    int ssm_n_head;     /* ssm.time_step_rank: SSM heads (one dt and one A each) */
    int ssm_n_group;    /* ssm.group_count: B and C are shared by n_head/n_group heads */
} em_hparams;

/* A weight matrix (or vector) view into the mapped file: rows of `cols` elements. */
typedef struct em_weight {
    const void *data;   /* NULL when the tensor is absent */
    int type;           /* enum em_type */
    int64_t rows;       /* output features (ne[1]); 1 for vectors */
    int64_t cols;       /* input features (ne[0]) */
    size_t row_bytes;
} em_weight;

typedef struct em_layer {
    em_weight attn_norm;            /* (n_embd) f32 */
    em_weight wq, wk, wv, wo;       /* (n_head*hd, n_embd) (n_kv*hd, n_embd) x2, (n_embd, n_head*hd_v);
                                     * phi3: wq/wk/wv are row ranges of the fused attn_qkv */
    em_weight bq, bk, bv;           /* qwen2 biases, f32; absent elsewhere */
    em_weight q_norm, k_norm;       /* qwen3 per-head RMSNorm (head_dim) f32 */
    em_weight attn_post_norm;       /* gemma2/3: RMSNorm of the attention output (n_embd) f32 */
    em_weight ffn_norm;             /* (n_embd) f32 */
    em_weight ffn_post_norm;        /* gemma2/3: RMSNorm of the FFN output (n_embd) f32 */
    em_weight w_gate, w_up;         /* (n_ff, n_embd); phi3: the two halves of ffn_up */
    em_weight w_down;               /* (n_embd, n_ff) */
    em_weight wqkv, w_gate_up;      /* phi3: the fused tensors (q+k+v, 2*n_ff rows) that wq/wk/wv
                                     * and w_gate/w_up are views of; NULL data elsewhere */
    int swa;                        /* sliding-window (local) layer: window, rope_base_swa */
    /* falcon-h1's Mamba-2 mixer beside the attention (model/ssm.c); NULL data elsewhere */
    em_weight ssm_in;               /* (2*d_inner + 2*n_group*d_state + n_head, n_embd): z, xBC, dt rows */
    em_weight ssm_conv1d;           /* (d_inner + 2*n_group*d_state, d_conv) f32 */
    em_weight ssm_conv1d_b;         /* (d_inner + 2*n_group*d_state) f32, optional */
    em_weight ssm_dt_b, ssm_a, ssm_d;  /* (n_head) f32 each; ssm_a = -exp(A_log) */
    em_weight ssm_norm;             /* (n_group, d_inner/n_group) f32: grouped gated RMSNorm, optional */
    em_weight ssm_out;              /* (n_embd, d_inner) */
} em_layer;

struct ember_model {
    em_hparams hp;
    em_layer *layers;               /* n_layer */
    em_weight tok_embd;             /* (n_vocab, n_embd) */
    em_weight output_norm;          /* (n_embd) f32 */
    em_weight output;               /* (n_vocab, n_embd); tok_embd when tied */
    int tied_output;
    /* rope frequency factors (n_rot/2) f32, each pair's angle divided by its factor: llama's
     * rope_freqs (Llama 3.1 scaling), phi3's LongRoPE pair (long when the context is longer
     * than hp.n_ctx_orig); absent: NULL data */
    em_weight rope_freqs, rope_long, rope_short;
    gguf_ctx *gguf;                 /* GGUF files: the mapping the weights point into */
    float *owned;                   /* llama2.c checkpoints: weights read into memory */
    size_t owned_bytes;
    em_vocab *vocab;                /* NULL if the file has no tokenizer */
    char *chat_template;            /* NUL-terminated copy, or NULL */
    int vocab_only;
    int ftype_main;                 /* most common matrix type (for descriptions) */
    uint64_t weight_bytes;
    int64_t n_params;
    /* Elements of the matrices (2-D tensors, token_embd included), split by how their dot
     * products run: int8 products (the quantized types, whose activations are Q8_0/Q8_1/Q8_K)
     * or float ones; the multiply-adds one token costs (ember_context_macs_per_token). */
    int64_t int8_elems, float_elems;
    uint64_t file_bytes;
    char *path;                     /* the file, for streaming reads (GGUF files) */
    uint64_t mem_budget;            /* ember_model_params.mem_budget; 0: none (stream.h) */
    int prefetch;                   /* ember_model_params.prefetch */
};

/* model.c: hyper-parameters and weights from a GGUF file. */
ember_status em_model_load_gguf(struct ember_model *m, const char *path, int vocab_only);
/* l2c.c: llama2.c legacy checkpoint (+ optional tokenizer.bin). */
ember_status em_model_load_l2c(struct ember_model *m, const char *path, const char *tok_path);
int em_is_l2c_checkpoint(const char *path);  /* not GGUF magic and a plausible header */

/* ---- threads.c ---- */
typedef struct em_pool em_pool;
typedef void (*em_task_fn)(void *arg, int ith, int nth);
em_pool *em_pool_new(int n_threads);     /* n_threads-1 workers; the caller is thread 0 */
void em_pool_free(em_pool *p);
int em_pool_size(const em_pool *p);
/* Runs fn(arg, i, n) for i in 0..n-1 on the pool (caller included) and waits. */
void em_pool_run(em_pool *p, em_task_fn fn, void *arg);

/* ---- the context (forward.c) ---- */
/* An observer of matmul inputs (the importance-matrix collector, quant/imatrix.c): called
 * on the decoding thread before each product y = W . x with the weight and its T input rows
 * (floats, ldx apart), in batch order. NULL (the default) costs one test per matmul. */
typedef void (*em_matmul_hook)(void *user, const em_weight *w, const float *x, int ldx, int T);

struct ember_context {
    const struct ember_model *m;
    const em_kernels *kern;
    em_pool *pool;
    int n_ctx;                      /* positions per sequence */
    int n_batch;                    /* tokens per forward chunk */
    int n_seq;                      /* independent sequences, each with its own KV cache */
    int *seq_cnt;                   /* (n_seq) scratch: tokens per sequence in a batch */
    em_kv_cache kv;                 /* kv_cache.h: cells, types and positions per sequence */
    /* the chunk being decoded: sequence, KV cell and position of each token */
    int *tok_seq, *tok_cell, *tok_pos;  /* (n_batch) */
    int *out_tok;                   /* (n_batch) chunk indices of the tokens that keep logits */
    /* activations for a chunk of up to n_batch tokens, token-major */
    float *x;                       /* (n_batch, n_embd) residual stream */
    float *xb;                      /* (n_batch, max(n_embd, n_head*hd_v)) normed input / attn out */
    float *q;                       /* (n_batch, n_head*hd) */
    float *k, *v;                   /* (n_batch, n_kv*hd) */
    float *xb2;                     /* (n_batch, n_embd) */
    float *hg, *hu;                 /* (n_batch, n_ff) */
    void *xq;                       /* quantized activations: 3 slots of n_batch columns */
    size_t xq_col;                  /* bytes per quantized column (widest row, f32) */
    float *rope_cs;                 /* (n_rot) cos/sin pairs for one position */
    float *logits;                  /* (n_logits_cap, n_vocab) */
    int n_logits_cap;
    int *logit_row;                 /* (row_cap) logits row of each batch token, or -1 */
    int row_cap;
    int last_n;                     /* tokens in the last decode */
    em_matmul_hook mm_hook;         /* NULL, or an observer of every matmul's input */
    void *mm_hook_user;
    /* falcon-h1's SSM branch (model/ssm.c); NULL for models without one */
    float *ssm_zxbcdt;              /* (n_batch, ssm_in rows) the input projection, then the conv output */
    float *ssm_y;                   /* (n_batch, d_inner) the scan output, gated and normed */
    float *ssm_o;                   /* (n_batch, n_embd) the branch's output */
    float *ssm_one;                 /* (conv channels) ones: silu(x) as swiglu(x, 1) */
    struct em_stream *stream;       /* layer streaming under the model's memory budget, or NULL
                                     * (stream.h: em_weights_acquire/release per layer) */
};

/* The public sampler: the internal one (runtime/sampler.h) and its vocabulary size. */
struct em_sampler;
struct ember_sampler { struct em_sampler *s; int n_vocab; };

/* Feeds n tokens; token i goes to sequence seq[i] (NULL: all 0) at that sequence's next
 * position. Logits are kept for token i when want[i] is nonzero (want NULL: the last
 * token only). Validates everything before any state changes. */
ember_status em_forward(struct ember_context *ctx, const ember_token *tokens, const int *seq,
                        const int8_t *want, int n);
/* y[t] = w . x[t] for the T rows of x (ldx floats apart) over the thread pool, x quantized
 * to w's vec_dot type first; for the forward pass's branches outside forward.c (ssm.c). */
void em_matmul(struct ember_context *ctx, const em_weight *w, const float *x, int ldx, int T,
               float *y, int ldy);
/* ssm.c: falcon-h1's Mamba-2 branch of layer l for the chunk's T tokens: reads the normed
 * input ctx->xb (T, n_embd), advances each token's sequence state in ctx->kv.rs and
 * writes the branch output to ctx->ssm_o (T, n_embd). */
void em_ssm_forward(struct ember_context *ctx, int l, int T);
/* Rotates the n_head_kv heads of a K row (post-RoPE, layer l) further by delta positions,
 * with that layer's RoPE: how a shift of cached positions re-rotates their keys. */
void em_rope_shift(const struct ember_model *m, int n_ctx, int l, float *row, int delta);
#endif
