/* model.c: GGUF metadata -> hyper-parameters, and tensor binding per architecture.
 * Supported: llama (Llama 2/3, TinyLlama, SmolLM2, Mistral-style), qwen2 (q/k/v biases,
 * NEOX rope), qwen3 (per-head q/k RMSNorm, head_dim from attention.key_length, NEOX rope)
 * gemma3 (qwen3's plus post-norms, GeGLU, sliding-window layers: see read_gemma3), gemma2
 * (read_gemma2: no q/k norms, attention soft-capping, every other layer local) and phi3
 * (Phi-3/3.5: fused attn_qkv and gate+up ffn_up, see bind_fused; LongRoPE factors) and
 * falcon-h1 (llama's attention with NEOX rope beside a Mamba-2 mixer: read_falcon_h1,
 * bind_ssm; the forward pass of the mixer is ssm.c). Rope
 * scaling (read_rope_scaling) and llama's rope_freqs (Llama 3.1/3.2) for every one of them.
 * Every tensor is checked for presence, type and shape before the forward pass ever sees
 * it; weights stay in the read-only mapping. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "runtime/internal.h"

#define EM_DEFAULT_N_CTX_TRAIN 2048  /* when the file gives no context length */

static const struct { const char *name; int arch; } arch_names[] = {
    { "llama", EM_ARCH_LLAMA }, { "qwen2", EM_ARCH_QWEN2 }, { "qwen3", EM_ARCH_QWEN3 },
    { "gemma3", EM_ARCH_GEMMA3 }, { "phi3", EM_ARCH_PHI3 }, { "gemma2", EM_ARCH_GEMMA2 },
    { "falcon-h1", EM_ARCH_FALCON_H1 },
};

/* Reads "{arch}.{key}" as an integer; def when absent. Fails on wrong type or range. */
static ember_status get_int(const gguf_ctx *g, const char *arch, const char *key, int def,
                            int required, int *out) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    int64_t v;
    int r = gguf_get_int(g, full, &v);
    if (r == -1) {
        if (required) return em_fail(EMBER_E_FORMAT, "missing key '%s'", full);
        *out = def;
        return EMBER_OK;
    }
    if (r != 0) return em_fail(EMBER_E_FORMAT, "key '%s' is not an integer", full);
    if (v < 0 || v > (1 << 30)) return em_fail(EMBER_E_FORMAT, "key '%s' = %lld is out of range", full, (long long)v);
    *out = (int)v;
    return EMBER_OK;
}

static ember_status get_float(const gguf_ctx *g, const char *arch, const char *key, float def,
                              float *out) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    double v;
    int r = gguf_get_float(g, full, &v);
    if (r == -1) { *out = def; return EMBER_OK; }
    if (r != 0 || !(v > 0) || v > 1e30) return em_fail(EMBER_E_FORMAT, "key '%s' is not a positive number", full);
    *out = (float)v;
    return EMBER_OK;
}

/* Gemma 3, as llama.cpp reads it: token embeddings times sqrt(n_embd); queries times
 * 1/sqrt(head_dim) (1/sqrt(n_embd/n_head) for the 62-layer 27B); GeGLU; sliding-window
 * layers when attention.sliding_window > 0 (which layers: see read_swa) with their own
 * rope base (rope.freq_base_swa, else 10000) and no rope scaling, which the global layers
 * keep (read_rope_scaling); optional final logit soft-capping. */
static ember_status read_gemma3(em_hparams *hp, const gguf_ctx *g, const char *arch) {
    ember_status st;
    if ((st = get_int(g, arch, "attention.sliding_window", 0, 0, &hp->n_swa)) ||
        (st = get_float(g, arch, "rope.freq_base_swa", 10000.0f, &hp->rope_base_swa)))
        return st;
    char full[128];
    double v;
    snprintf(full, sizeof full, "%s.final_logit_softcapping", arch);
    int r = gguf_get_float(g, full, &v);
    if (r == -2 || (r == 0 && !(v >= 0 && v < 1e30)))
        return em_fail(EMBER_E_FORMAT, "key '%s' is not a number >= 0", full);
    hp->logit_softcap = r == 0 ? (float)v : 0.0f;
    hp->embd_scale = sqrtf((float)hp->n_embd);
    hp->attn_scale = hp->n_layer == 62 ? 1.0f / sqrtf((float)(hp->n_embd / hp->n_head))
                                       : 1.0f / sqrtf((float)hp->head_dim);
    hp->gelu = 1;
    return EMBER_OK;
}

/* "{arch}.{key}" as a number >= 0 (0 turns the feature off); def when absent. */
static ember_status get_nonneg(const gguf_ctx *g, const char *arch, const char *key, float def, float *out) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    double v;
    int r = gguf_get_float(g, full, &v);
    if (r == -2 || (r == 0 && !(v >= 0 && v < 1e30)))
        return em_fail(EMBER_E_FORMAT, "key '%s' is not a number >= 0", full);
    *out = r == 0 ? (float)v : def;
    return EMBER_OK;
}

/* Gemma 2, as llama.cpp reads it: Gemma 3's embedding scale, query scale, GeGLU and
 * post-norms, no q/k norms; a sliding window (default 4096) on every other layer (pattern
 * period 2: even layers local) with the global rope base and scale unless
 * rope.freq_base_swa says otherwise; attention logits soft-capped at
 * attn_logit_softcapping (default 50) and the output at final_logit_softcapping (default
 * 30); the output is always the token embedding. */
static ember_status read_gemma2(em_hparams *hp, const gguf_ctx *g, const char *arch) {
    ember_status st;
    if ((st = get_int(g, arch, "attention.sliding_window", 4096, 0, &hp->n_swa)) ||
        (st = get_float(g, arch, "rope.freq_base_swa", hp->rope_base, &hp->rope_base_swa)) ||
        (st = get_nonneg(g, arch, "attn_logit_softcapping", 50.0f, &hp->attn_softcap)) ||
        (st = get_nonneg(g, arch, "final_logit_softcapping", 30.0f, &hp->logit_softcap)))
        return st;
    hp->rope_freq_scale_swa = hp->rope_freq_scale;
    hp->embd_scale = sqrtf((float)hp->n_embd);
    hp->attn_scale = hp->n_layer == 46 ? 1.0f / sqrtf((float)(hp->n_embd / hp->n_head))
                                       : 1.0f / sqrtf((float)hp->head_dim);
    hp->gelu = 1;
    return EMBER_OK;
}

/* Falcon-H1's Mamba-2 mixer, as llama.cpp reads it: ssm.conv_kernel (d_conv),
 * ssm.inner_size (d_inner), ssm.state_size (d_state), ssm.time_step_rank (the number of
 * SSM heads: one dt and one A each, head width d_inner / n_head) and ssm.group_count (B and
 * C shared by n_head / n_group heads), all required. Falcon-H1's multipliers are folded
 * into the weights by llama.cpp's converter, so nothing else is read. */
static ember_status read_falcon_h1(em_hparams *hp, const gguf_ctx *g, const char *arch) {
    ember_status st;
    if ((st = get_int(g, arch, "ssm.conv_kernel", 0, 1, &hp->ssm_d_conv)) ||
        (st = get_int(g, arch, "ssm.inner_size", 0, 1, &hp->ssm_d_inner)) ||
        (st = get_int(g, arch, "ssm.state_size", 0, 1, &hp->ssm_d_state)) ||
        (st = get_int(g, arch, "ssm.time_step_rank", 0, 1, &hp->ssm_n_head)) ||
        (st = get_int(g, arch, "ssm.group_count", 0, 1, &hp->ssm_n_group)))
        return st;
    if (hp->ssm_d_conv < 1 || hp->ssm_d_conv > 64 || hp->ssm_d_inner <= 0 || hp->ssm_d_inner > (1 << 20) ||
        hp->ssm_d_state <= 0 || hp->ssm_d_state > 4096 || hp->ssm_n_head <= 0 || hp->ssm_n_group <= 0 ||
        hp->ssm_d_inner % hp->ssm_n_head || hp->ssm_n_head % hp->ssm_n_group || hp->ssm_d_inner % hp->ssm_n_group)
        return em_fail(EMBER_E_FORMAT, "bad SSM hyper-parameters: conv_kernel %d, inner_size %d, state_size %d, "
                       "time_step_rank %d, group_count %d", hp->ssm_d_conv, hp->ssm_d_inner, hp->ssm_d_state,
                       hp->ssm_n_head, hp->ssm_n_group);
    return EMBER_OK;
}

/* Rope scaling as llama.cpp reads it for every architecture: rope.scaling.type absent,
 * "none", "linear" or "longrope" (phi3: its frequency factors are tensors, bound later);
 * rope.scaling.factor (or the old rope.scale_linear) divides every angle unless the type is
 * "none"; rope.scaling.attn_factor multiplies cos and sin; rope.scaling.original_context_length
 * (default: the training context) decides phi3's long or short factors. YaRN is refused
 * rather than run without its ramp. */
static ember_status read_rope_scaling(em_hparams *hp, const gguf_ctx *g, const char *arch) {
    char full[128];
    const char *s;
    size_t len;
    int none = 0;
    snprintf(full, sizeof full, "%s.rope.scaling.type", arch);
    if (gguf_get_str(g, full, &s, &len) == 0) {
        none = len == 4 && !memcmp(s, "none", 4);
        if (!none && !(len == 6 && !memcmp(s, "linear", 6)) && !(len == 8 && !memcmp(s, "longrope", 8)))
            return em_fail(EMBER_E_UNSUPPORTED, "rope scaling '%.*s' is not supported for %s",
                           (int)(len < 32 ? len : 32), s, arch);
    }
    ember_status st;
    float factor = 0.0f;
    if ((st = get_float(g, arch, "rope.scaling.factor", 0.0f, &factor))) return st;
    if (factor == 0.0f && (st = get_float(g, arch, "rope.scale_linear", 0.0f, &factor))) return st;
    hp->rope_freq_scale = factor == 0.0f || none ? 1.0f : 1.0f / factor;
    if ((st = get_float(g, arch, "rope.scaling.attn_factor", 1.0f, &hp->rope_attn_factor)) ||
        (st = get_int(g, arch, "rope.scaling.original_context_length", hp->n_ctx_train, 0, &hp->n_ctx_orig)))
        return st;
    if (hp->n_ctx_orig <= 0) hp->n_ctx_orig = hp->n_ctx_train;
    return EMBER_OK;
}

/* Which layers use the sliding window (n_swa > 0): attention.sliding_window_pattern as one
 * flag per layer, or as a period p (default 6; gemma2: 2): layer i is local unless
 * i % p == p - 1, so every p-th layer is global (p = 0: all local). */
static ember_status read_swa(struct ember_model *m, const char *arch) {
    const em_hparams *hp = &m->hp;
    if (hp->n_swa <= 0) return EMBER_OK;
    char full[128];
    snprintf(full, sizeof full, "%s.attention.sliding_window_pattern", arch);
    int et;
    uint64_t n;
    const void *data;
    if (gguf_get_arr(m->gguf, full, &et, &n, &data) == 0) {
        const int esz = et == GGUF_BOOL || et == GGUF_U8 || et == GGUF_I8 ? 1
                      : et == GGUF_U16 || et == GGUF_I16 ? 2 : et == GGUF_U32 || et == GGUF_I32 ? 4 : 0;
        if (!esz || !data || n != (uint64_t)hp->n_layer)
            return em_fail(EMBER_E_FORMAT, "key '%s' must be %d flags", full, hp->n_layer);
        for (int i = 0; i < hp->n_layer; i++) {
            uint32_t f = 0;
            memcpy(&f, (const char *)data + (size_t)i * esz, (size_t)esz);  /* little-endian */
            m->layers[i].swa = f != 0;
        }
        return EMBER_OK;
    }
    int p;
    ember_status st = get_int(m->gguf, arch, "attention.sliding_window_pattern",
                              hp->arch == EM_ARCH_GEMMA2 ? 2 : 6, 0, &p);
    if (st) return st;
    for (int i = 0; i < hp->n_layer; i++) m->layers[i].swa = p == 0 || i % p < p - 1;
    return EMBER_OK;
}

static ember_status read_hparams(struct ember_model *m, const gguf_ctx *g) {
    const char *s;
    size_t len;
    if (gguf_get_str(g, "general.architecture", &s, &len) != 0)
        return em_fail(EMBER_E_FORMAT, "missing key 'general.architecture'");
    char arch[64];
    snprintf(arch, sizeof arch, "%.*s", (int)(len < 63 ? len : 63), s);
    em_hparams *hp = &m->hp;
    hp->arch = -1;
    for (size_t i = 0; i < sizeof arch_names / sizeof arch_names[0]; i++)
        if (!strcmp(arch, arch_names[i].name) && strlen(arch) == len) hp->arch = arch_names[i].arch;
    if (hp->arch < 0) return em_fail(EMBER_E_UNSUPPORTED, "unsupported architecture %s", arch);

    ember_status st;
    if ((st = get_int(g, arch, "embedding_length", 0, 1, &hp->n_embd)) ||
        (st = get_int(g, arch, "block_count", 0, 1, &hp->n_layer)) ||
        (st = get_int(g, arch, "feed_forward_length", 0, 1, &hp->n_ff)) ||
        (st = get_int(g, arch, "attention.head_count", 0, 1, &hp->n_head)) ||
        (st = get_int(g, arch, "attention.head_count_kv", hp->n_head, 0, &hp->n_head_kv)) ||
        (st = get_int(g, arch, "context_length", -1, 0, &hp->n_ctx_train)) ||
        (st = get_float(g, arch, "attention.layer_norm_rms_epsilon", 1e-5f, &hp->rms_eps)) ||
        (st = get_float(g, arch, "rope.freq_base",
                         hp->arch == EM_ARCH_QWEN2 || hp->arch == EM_ARCH_QWEN3 ? 1e6f : 10000.0f, &hp->rope_base)))
        return st;
    if (hp->n_embd <= 0 || hp->n_layer <= 0 || hp->n_ff <= 0 || hp->n_head <= 0 ||
        hp->n_head_kv <= 0 || hp->n_head % hp->n_head_kv)
        return em_fail(EMBER_E_FORMAT, "bad hyper-parameters: n_embd %d, n_layer %d, n_ff %d, n_head %d, n_head_kv %d",
                       hp->n_embd, hp->n_layer, hp->n_ff, hp->n_head, hp->n_head_kv);
    if (hp->n_layer > 4096) return em_fail(EMBER_E_FORMAT, "block_count %d is implausible", hp->n_layer);
    int hd_def = hp->n_embd / hp->n_head;
    if ((st = get_int(g, arch, "attention.key_length", hd_def, 0, &hp->head_dim)) ||
        (st = get_int(g, arch, "attention.value_length", hp->head_dim, 0, &hp->head_dim_v)) ||
        (st = get_int(g, arch, "rope.dimension_count", hp->head_dim, 0, &hp->n_rot)))
        return st;
    if (hp->head_dim <= 0 || hp->head_dim_v <= 0 || hp->n_rot <= 0 || hp->n_rot > hp->head_dim || hp->n_rot % 2)
        return em_fail(EMBER_E_FORMAT, "bad head sizes: head_dim %d, value_length %d, rope dims %d",
                       hp->head_dim, hp->head_dim_v, hp->n_rot);
    if (hp->head_dim > EM_ATTN_MAX_HD)
        return em_fail(EMBER_E_UNSUPPORTED, "head_dim %d is larger than %d", hp->head_dim, EM_ATTN_MAX_HD);
    if (hp->head_dim_v != hp->head_dim)
        return em_fail(EMBER_E_UNSUPPORTED, "value_length %d != key_length %d is not supported yet",
                       hp->head_dim_v, hp->head_dim);
    if (hp->n_ctx_train <= 0) {  /* llama.cpp requires the key; say what stands in for it */
        em_log(EMBER_LOG_WARN, "%s.context_length is %s; assuming a training context of %d positions "
               "(a context of n_ctx 0 gets that many)", arch, hp->n_ctx_train < 0 ? "missing" : "0",
               EM_DEFAULT_N_CTX_TRAIN);
        hp->n_ctx_train = EM_DEFAULT_N_CTX_TRAIN;
    }
    hp->rope_neox = hp->arch != EM_ARCH_LLAMA;
    if ((st = read_rope_scaling(hp, g, arch))) return st;
    /* phi3: llama.cpp turns the sliding window off (attention.sliding_window is ignored) */
    return hp->arch == EM_ARCH_GEMMA3 ? read_gemma3(hp, g, arch)
         : hp->arch == EM_ARCH_GEMMA2 ? read_gemma2(hp, g, arch)
         : hp->arch == EM_ARCH_FALCON_H1 ? read_falcon_h1(hp, g, arch) : EMBER_OK;
}

/* Binds tensor `name`, checking its shape (ne0, ne1); ne1 = 0 means a vector. Vectors must
 * be F32; matrices need a matmul kernel (or, for the embedding table, a dequantizer). */
static ember_status bind(struct ember_model *m, const char *name, int64_t ne0, int64_t ne1,
                         int required, em_weight *w) {
    const gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    memset(w, 0, sizeof *w);
    if (!t) return required ? em_fail(EMBER_E_FORMAT, "missing tensor '%s'", name) : EMBER_OK;
    int64_t want1 = ne1 ? ne1 : 1;
    if (t->ne[0] != ne0 || t->ne[1] != want1 || t->ne[2] != 1 || t->ne[3] != 1)
        return em_fail(EMBER_E_FORMAT, "tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                       name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                       (long long)t->ne[3], (long long)ne0, (long long)want1);
    const em_type_info *ti = em_type_get((int)t->type);
    const char *tn = gguf_type_name(t->type);
    if (!ti || ti->vec_dot_type < 0)
        return em_fail(EMBER_E_UNSUPPORTED, "tensor '%s' has type %s, which ember does not run yet",
                       name, tn ? tn : "unknown");
    if (!ne1 && t->type != EM_F32)
        return em_fail(EMBER_E_UNSUPPORTED, "tensor '%s' is %s; norm and bias vectors must be f32", name, tn);
    w->data = t->data;
    w->type = (int)t->type;
    w->rows = want1;
    w->cols = ne0;
    w->row_bytes = em_row_size(w->type, ne0);
    return EMBER_OK;
}

/* Rows r0..r0+n of a bound matrix, as a matrix of its own (fused tensors). */
static em_weight row_range(const em_weight *w, int64_t r0, int64_t n) {
    em_weight v = *w;
    v.data = (const char *)w->data + (size_t)r0 * w->row_bytes;
    v.rows = n;
    return v;
}

/* phi3's fused tensors: attn_qkv (q, k, v rows in that order; separate attn_q/k/v are
 * accepted too, as llama.cpp does) and ffn_up, whose first n_ff rows are the gate and the
 * rest the up projection (llama.cpp's swiglu of one 2*n_ff-wide output). The forward pass
 * sees row ranges, so it runs them as the group of matmuls it runs for separate tensors. */
static ember_status bind_fused(struct ember_model *m, int i, em_layer *L) {
    const em_hparams *hp = &m->hp;
    const int64_t d = hp->n_embd, q = (int64_t)hp->n_head * hp->head_dim;
    const int64_t kv = (int64_t)hp->n_head_kv * hp->head_dim, vv = (int64_t)hp->n_head_kv * hp->head_dim_v;
    char n[3][96];
    snprintf(n[0], sizeof n[0], "blk.%d.attn_qkv.weight", i);
    snprintf(n[1], sizeof n[1], "blk.%d.ffn_up.weight", i);
    ember_status st;
    if ((st = bind(m, n[0], d, q + kv + vv, 0, &L->wqkv)) ||
        (st = bind(m, n[1], d, 2 * (int64_t)hp->n_ff, 1, &L->w_gate_up)))
        return st;
    if (L->wqkv.data) {
        L->wq = row_range(&L->wqkv, 0, q);
        L->wk = row_range(&L->wqkv, q, kv);
        L->wv = row_range(&L->wqkv, q + kv, vv);
    } else {
        const char *sfx[3] = { "attn_q", "attn_k", "attn_v" };
        em_weight *w[3] = { &L->wq, &L->wk, &L->wv };
        const int64_t rows[3] = { q, kv, vv };
        for (int j = 0; j < 3; j++) {
            snprintf(n[2], sizeof n[2], "blk.%d.%s.weight", i, sfx[j]);
            if ((st = bind(m, n[2], d, rows[j], 1, w[j]))) return st;
        }
    }
    L->w_gate = row_range(&L->w_gate_up, 0, hp->n_ff);
    L->w_up = row_range(&L->w_gate_up, hp->n_ff, hp->n_ff);
    return EMBER_OK;
}

/* A bound tensor that must be F32 (read as floats, not through a matmul kernel). */
static ember_status need_f32(const char *name, const em_weight *w) {
    if (!w->data || w->type == EM_F32) return EMBER_OK;
    return em_fail(EMBER_E_UNSUPPORTED, "tensor '%s' is %s; it must be f32", name, gguf_type_name(w->type));
}

/* falcon-h1: the Mamba-2 mixer's tensors under llama.cpp's names (ssm_a and ssm_d without
 * a .weight suffix), and its FFN norm, which llama.cpp looks up as blk.N.ffn_norm while
 * its converter writes blk.N.ffn_norm.weight: either is taken. Biases llama.cpp would
 * add (attn_output, ffn_*) are refused rather than ignored. */
static ember_status bind_ssm(struct ember_model *m, int i, em_layer *L) {
    const em_hparams *hp = &m->hp;
    const int64_t d = hp->n_embd, di = hp->ssm_d_inner, nh = hp->ssm_n_head, ng = hp->ssm_n_group;
    const int64_t ch = di + 2 * ng * hp->ssm_d_state, proj = di + ch + nh;
    static const char *const sfx[9] = { "ssm_in.weight", "ssm_conv1d.weight", "ssm_conv1d.bias", "ssm_dt.bias",
                                        "ssm_a", "ssm_d", "ssm_norm.weight", "ssm_out.weight", "ffn_norm" };
    char n[9][96];
    for (int j = 0; j < 9; j++) snprintf(n[j], sizeof n[j], "blk.%d.%s", i, sfx[j]);
    ember_status st;
    if ((st = bind(m, n[0], d, proj, 1, &L->ssm_in)) || (st = bind(m, n[1], hp->ssm_d_conv, ch, 1, &L->ssm_conv1d)) ||
        (st = bind(m, n[2], ch, 0, 0, &L->ssm_conv1d_b)) || (st = bind(m, n[3], nh, 0, 1, &L->ssm_dt_b)) ||
        (st = bind(m, n[4], 1, nh, 1, &L->ssm_a)) || (st = bind(m, n[5], 1, nh, 1, &L->ssm_d)) ||
        (st = bind(m, n[6], di / ng, ng, 0, &L->ssm_norm)) || (st = bind(m, n[7], di, d, 1, &L->ssm_out)) ||
        (st = need_f32(n[1], &L->ssm_conv1d)) || (st = need_f32(n[4], &L->ssm_a)) ||
        (st = need_f32(n[5], &L->ssm_d)) || (st = need_f32(n[6], &L->ssm_norm)) ||
        (!L->ffn_norm.data && (st = bind(m, n[8], d, 0, 1, &L->ffn_norm))))
        return st;
    static const char *const bias[4] = { "attn_output.bias", "ffn_gate.bias", "ffn_up.bias", "ffn_down.bias" };
    for (int j = 0; j < 4; j++) {
        snprintf(n[0], sizeof n[0], "blk.%d.%s", i, bias[j]);
        if (gguf_find_tensor(m->gguf, n[0]))
            return em_fail(EMBER_E_UNSUPPORTED, "tensor '%s': falcon-h1 biases outside q/k/v are not supported yet", n[0]);
    }
    return EMBER_OK;
}

static ember_status bind_layers(struct ember_model *m) {
    const em_hparams *hp = &m->hp;
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return em_fail(EMBER_E_NOMEM, "out of memory for %d layers", hp->n_layer);
    const int64_t d = hp->n_embd, q = (int64_t)hp->n_head * hp->head_dim;
    const int64_t kv = (int64_t)hp->n_head_kv * hp->head_dim, vv = (int64_t)hp->n_head_kv * hp->head_dim_v;
    const int64_t o = (int64_t)hp->n_head * hp->head_dim_v;
    const int bias = hp->arch == EM_ARCH_QWEN2, gemma = hp->arch == EM_ARCH_GEMMA3 || hp->arch == EM_ARCH_GEMMA2;
    const int qknorm = hp->arch == EM_ARCH_QWEN3 || hp->arch == EM_ARCH_GEMMA3, sep = hp->arch != EM_ARCH_PHI3;
    const int fh1 = hp->arch == EM_ARCH_FALCON_H1;
    for (int i = 0; i < hp->n_layer; i++) {
        em_layer *L = &m->layers[i];
        char n[15][96];
        const char *suffix[15] = { "attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight",
            "attn_output.weight", "attn_q.bias", "attn_k.bias", "attn_v.bias", "attn_q_norm.weight",
            "attn_k_norm.weight", "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight", "" };
        for (int j = 0; j < 14; j++) snprintf(n[j], sizeof n[j], "blk.%d.%s", i, suffix[j]);
        ember_status st;
        if ((st = bind(m, n[0], d, 0, 1, &L->attn_norm)) ||
            (sep && ((st = bind(m, n[1], d, q, 1, &L->wq)) || (st = bind(m, n[2], d, kv, 1, &L->wk)) ||
                     (st = bind(m, n[3], d, vv, 1, &L->wv)) || (st = bind(m, n[11], d, hp->n_ff, 1, &L->w_gate)) ||
                     (st = bind(m, n[12], d, hp->n_ff, 1, &L->w_up)))) ||
            (!sep && (st = bind_fused(m, i, L))) ||
            (st = bind(m, n[4], o, d, 1, &L->wo)) || (st = bind(m, n[5], q, 0, bias, &L->bq)) ||
            (st = bind(m, n[6], kv, 0, bias, &L->bk)) || (st = bind(m, n[7], vv, 0, bias, &L->bv)) ||
            (st = bind(m, n[8], hp->head_dim, 0, qknorm, &L->q_norm)) ||
            (st = bind(m, n[9], hp->head_dim, 0, qknorm, &L->k_norm)) ||
            (st = bind(m, n[10], d, 0, !fh1, &L->ffn_norm)) || (st = bind(m, n[13], hp->n_ff, d, 1, &L->w_down)) ||
            (fh1 && (st = bind_ssm(m, i, L))))
            return st;
        snprintf(n[0], sizeof n[0], "blk.%d.post_attention_norm.weight", i);
        snprintf(n[1], sizeof n[1], "blk.%d.post_ffw_norm.weight", i);
        if ((st = bind(m, n[0], d, 0, gemma, &L->attn_post_norm)) || (st = bind(m, n[1], d, 0, gemma, &L->ffn_post_norm)))
            return st;
    }
    return EMBER_OK;
}

/* Rope frequency factors: rope_freqs (llama) or rope_factors_long/_short (phi3, both or
 * neither), n_rot/2 positive finite floats each. */
static ember_status bind_rope_factors(struct ember_model *m) {
    const int64_t nf = m->hp.n_rot / 2;
    const int llama = m->hp.arch == EM_ARCH_LLAMA, phi3 = m->hp.arch == EM_ARCH_PHI3;
    ember_status st;
    if ((llama && (st = bind(m, "rope_freqs.weight", nf, 0, 0, &m->rope_freqs))) ||
        (phi3 && ((st = bind(m, "rope_factors_long.weight", nf, 0, 0, &m->rope_long)) ||
                  (st = bind(m, "rope_factors_short.weight", nf, 0, 0, &m->rope_short)))))
        return st;
    if (!m->rope_long.data != !m->rope_short.data)
        return em_fail(EMBER_E_FORMAT, "rope_factors_%s.weight is missing (LongRoPE needs both)",
                       m->rope_long.data ? "short" : "long");
    const em_weight *w[3] = { &m->rope_freqs, &m->rope_long, &m->rope_short };
    static const char *const names[3] = { "rope_freqs", "rope_factors_long", "rope_factors_short" };
    for (int j = 0; j < 3; j++)
        for (int64_t i = 0; w[j]->data && i < nf; i++) {
            const float f = ((const float *)w[j]->data)[i];
            if (!(f > 0.0f && f < 1e30f))
                return em_fail(EMBER_E_FORMAT, "%s.weight[%lld] = %g is not a positive number",
                               names[j], (long long)i, (double)f);
        }
    return EMBER_OK;
}

static ember_status load_vocab(struct ember_model *m) {
    if (gguf_find_key(m->gguf, "tokenizer.ggml.model") < 0) return EMBER_OK;  /* no tokenizer */
    char err[256] = "";
    if (em_vocab_load_gguf(m->gguf, &m->vocab, err, sizeof err) != 0)
        return em_fail(EMBER_E_UNSUPPORTED, "tokenizer: %s", err);
    const char *s;
    size_t len;
    if (gguf_get_str(m->gguf, "tokenizer.chat_template", &s, &len) == 0) {
        m->chat_template = malloc(len + 1);
        if (!m->chat_template) return em_fail(EMBER_E_NOMEM, "out of memory");
        memcpy(m->chat_template, s, len);
        m->chat_template[len] = 0;
    }
    return EMBER_OK;
}

/* Special token ids outside the vocabulary: the tokenizer keeps its default for them (as
 * llama.cpp does); say so, and which id is used, instead of substituting silently. */
static void warn_special_ids(const struct ember_model *m) {
    static const struct { const char *key, *name; } ids[] = {
        { "tokenizer.ggml.bos_token_id", "BOS" }, { "tokenizer.ggml.eos_token_id", "EOS" },
        { "tokenizer.ggml.eot_token_id", "EOT" }, { "tokenizer.ggml.eom_token_id", "EOM" },
        { "tokenizer.ggml.unknown_token_id", "UNK" }, { "tokenizer.ggml.padding_token_id", "PAD" },
        { "tokenizer.ggml.seperator_token_id", "SEP" },
    };
    const int n = em_vocab_n(m->vocab);
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
        int64_t id;
        int r = gguf_get_int(m->gguf, ids[i].key, &id);
        if (r == -1 || (r == 0 && id >= 0 && id < n)) continue;
        int32_t now = i == 0 ? em_vocab_bos(m->vocab) : i == 1 ? em_vocab_eos(m->vocab) : i == 2 ? em_vocab_eot(m->vocab) : -1;
        if (r == 0 && (id == -1 || id == 0xFFFFFFFF) && now < 0) continue;  /* the usual "none" marker, read as none */
        char what[192];
        if (r) snprintf(what, sizeof what, "%s is not an integer", ids[i].key);
        else snprintf(what, sizeof what, "%s = %lld is outside the vocabulary (%d tokens)", ids[i].key, (long long)id, n);
        if (now >= 0)
            em_log(EMBER_LOG_WARN, "%s; using the tokenizer's default %s id %d", what, ids[i].name, (int)now);
        else if (i == 0)
            em_log(EMBER_LOG_WARN, "%s; the model has no BOS token, so none is added", what);
        else if (i == 1)
            em_log(EMBER_LOG_WARN, "%s; the model has no EOS token, so generation stops only at its length "
                   "limit, the end of the context or another end-of-generation token", what);
        else
            em_log(EMBER_LOG_WARN, "%s; ignored (the tokenizer keeps its default)", what);
    }
}

/* Totals for info/bench, and the most common matrix type for the description. */
static void count_params(struct ember_model *m) {
    int64_t by_type[EM_TYPE_COUNT] = { 0 };
    for (int64_t i = 0; i < gguf_n_tensors(m->gguf); i++) {
        const gguf_tensor *t = gguf_tensor_at(m->gguf, i);
        int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        m->n_params += n;
        m->weight_bytes += t->size;
        if (t->n_dims >= 2 && t->type < EM_TYPE_COUNT) {
            by_type[t->type] += n;
            const em_type_info *ti = em_type_get(t->type);
            const int vt = ti ? ti->vec_dot_type : -1;
            if (vt == EM_Q8_0 || vt == EM_Q8_1 || vt == EM_Q8_K) m->int8_elems += n;
            else m->float_elems += n;
        }
    }
    m->ftype_main = EM_F32;
    for (int t = 0; t < EM_TYPE_COUNT; t++)
        if (by_type[t] > by_type[m->ftype_main]) m->ftype_main = t;
}

ember_status em_model_load_gguf(struct ember_model *m, const char *path, int vocab_only) {
    char err[512] = "";
    m->gguf = gguf_open(path, err, sizeof err);
    if (!m->gguf)  /* err names the path; a file we cannot read is I/O, the rest format */
        return em_fail(access(path, R_OK) ? EMBER_E_IO : EMBER_E_FORMAT, "%s", err);
    m->file_bytes = gguf_file_size(m->gguf);
    ember_status st = load_vocab(m);
    if (st) return st;
    if (m->vocab) warn_special_ids(m);
    count_params(m);
    m->vocab_only = vocab_only || gguf_n_tensors(m->gguf) == 0;
    if (m->vocab_only) {
        if (!m->vocab) return em_fail(EMBER_E_FORMAT, "%s: no tensors and no tokenizer", path);
        return EMBER_OK;
    }
    if ((st = read_hparams(m, m->gguf))) return st;
    const gguf_tensor *te = gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!te) return em_fail(EMBER_E_FORMAT, "missing tensor 'token_embd.weight'");
    if (te->ne[1] <= 0 || te->ne[1] > (1 << 24))
        return em_fail(EMBER_E_FORMAT, "token_embd.weight has %lld rows", (long long)te->ne[1]);
    m->hp.n_vocab = (int)te->ne[1];
    const int64_t d = m->hp.n_embd, nv = m->hp.n_vocab;
    if ((st = bind(m, "token_embd.weight", d, nv, 1, &m->tok_embd)) ||
        (st = bind(m, "output_norm.weight", d, 0, 1, &m->output_norm)) ||
        (m->hp.arch != EM_ARCH_GEMMA2 && (st = bind(m, "output.weight", d, nv, 0, &m->output))))
        return st;
    if (!m->output.data) { m->output = m->tok_embd; m->tied_output = 1; }
    if (m->vocab && em_vocab_n(m->vocab) > m->hp.n_vocab)
        return em_fail(EMBER_E_FORMAT, "tokenizer has %d tokens but the model only %d",
                       em_vocab_n(m->vocab), m->hp.n_vocab);
    if ((st = bind_layers(m)) || (st = bind_rope_factors(m))) return st;
    const char *arch;
    size_t len;
    gguf_get_str(m->gguf, "general.architecture", &arch, &len);  /* read_hparams checked it */
    char a[64];
    snprintf(a, sizeof a, "%.*s", (int)(len < 63 ? len : 63), arch);
    return read_swa(m, a);
}
