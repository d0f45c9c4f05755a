/* api.c: the ember_* entry points. Argument checks, object lifecycles and the mapping
 * from public structs to the internal modules; no computation lives here. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "runtime/internal.h"
#include "runtime/sampler.h"

#define CHECK_ARG(c, ...) do { if (!(c)) return em_fail(EMBER_E_INVALID, __VA_ARGS__); } while (0)

/* ---- models ---- */
ember_model_params ember_model_default_params(void) {
    ember_model_params p = { 0, NULL, 0, 1 };
    return p;
}

/* A memory budget (stream.h): GGUF weights only; the budget must hold the weights' part
 * of the minimum here, and the context's part is checked when a context is made. */
static ember_status model_budget(struct ember_model *m, const char *path, const ember_model_params *p) {
    if (p->prefetch < 0 || p->prefetch > 64)
        return em_fail(EMBER_E_INVALID, "prefetch must be in [0, 64], got %d", p->prefetch);
    if (!m->gguf) return em_fail(EMBER_E_UNSUPPORTED, "a memory budget needs a GGUF file (%s is a llama2.c checkpoint)", path);
    if (m->vocab_only) return EMBER_OK;
    m->mem_budget = p->mem_budget;
    m->prefetch = p->prefetch;
    em_mem_plan plan;
    return em_mem_plan_make(m, p->mem_budget, p->prefetch, 0, &plan);
}

ember_status ember_model_load(const char *path, const ember_model_params *params, ember_model **out) {
    CHECK_ARG(out, "ember_model_load: out is NULL");
    *out = NULL;
    CHECK_ARG(path && *path, "ember_model_load: no path");
    ember_model_params p = params ? *params : ember_model_default_params();
    em_clear_error();
    ember_status st = em_check_regular(path);  /* before anything opens it */
    if (st) return st;
    struct ember_model *m = calloc(1, sizeof *m);
    if (!m) return em_fail(EMBER_E_NOMEM, "out of memory");
    st = em_is_l2c_checkpoint(path) ? em_model_load_l2c(m, path, p.tokenizer_path)
                                    : em_model_load_gguf(m, path, p.vocab_only);
    if (!st && m->gguf && !(m->path = strdup(path))) st = em_fail(EMBER_E_NOMEM, "out of memory");
    if (!st && p.mem_budget) st = model_budget(m, path, &p);
    if (st) { ember_model_free(m); return st; }
    *out = m;
    return EMBER_OK;
}

void ember_model_free(ember_model *m) {
    if (!m) return;
    free(m->layers);
    gguf_close(m->gguf);
    em_free_aligned(m->owned);
    em_vocab_free(m->vocab);
    free(m->chat_template);
    free(m->path);
    free(m);
}

int ember_model_n_vocab(const ember_model *m) { return m ? (m->vocab_only ? em_vocab_n(m->vocab) : m->hp.n_vocab) : 0; }
int ember_model_n_ctx_train(const ember_model *m) { return m ? m->hp.n_ctx_train : 0; }
int ember_model_n_embd(const ember_model *m) { return m ? m->hp.n_embd : 0; }
int ember_model_n_layer(const ember_model *m) { return m ? m->hp.n_layer : 0; }
int64_t ember_model_n_params(const ember_model *m) { return m ? m->n_params : 0; }
uint64_t ember_model_size(const ember_model *m) { return m ? m->weight_bytes : 0; }
const char *ember_model_chat_template(const ember_model *m) { return m ? m->chat_template : NULL; }

static const char *arch_name(int arch) {
    return arch == EM_ARCH_QWEN2 ? "qwen2" : arch == EM_ARCH_QWEN3 ? "qwen3" : arch == EM_ARCH_GEMMA3 ? "gemma3"
         : arch == EM_ARCH_PHI3 ? "phi3" : arch == EM_ARCH_GEMMA2 ? "gemma2"
         : arch == EM_ARCH_FALCON_H1 ? "falcon-h1" : "llama";
}

int ember_model_desc(const ember_model *m, char *buf, size_t len) {
    if (!m) return snprintf(buf, len, "(null)");
    if (m->vocab_only) return snprintf(buf, len, "vocab-only (%d tokens)", em_vocab_n(m->vocab));
    double n = (double)m->n_params;
    const em_type_info *ti = em_type_get(m->ftype_main);
    char size[32];
    if (n >= 1e9) snprintf(size, sizeof size, "%.1fB", n / 1e9);
    else if (n >= 1e6) snprintf(size, sizeof size, "%.0fM", n / 1e6);
    else snprintf(size, sizeof size, "%.0fK", n / 1e3);
    char tn[16];
    snprintf(tn, sizeof tn, "%s", ti ? ti->name : "?");
    for (char *c = tn; *c; c++) if (*c >= 'a' && *c <= 'z') *c = (char)(*c - 'a' + 'A');
    return snprintf(buf, len, "%s %s %s", arch_name(m->hp.arch), size, tn);
}

int ember_model_meta_str(const ember_model *m, const char *key, char *buf, size_t len) {
    if (!m || !m->gguf || !key) return -1;
    int64_t i = gguf_find_key(m->gguf, key);
    if (i < 0) return -1;
    int64_t iv; double fv; const char *s; size_t sl; int et; uint64_t n; const void *d;
    switch (gguf_kv_type(m->gguf, i)) {
    case GGUF_STRING: gguf_get_str(m->gguf, key, &s, &sl); return snprintf(buf, len, "%.*s", (int)(sl > 1 << 20 ? 1 << 20 : sl), s);
    case GGUF_F32: case GGUF_F64: gguf_get_float(m->gguf, key, &fv); return snprintf(buf, len, "%g", fv);
    case GGUF_BOOL: gguf_get_int(m->gguf, key, &iv); return snprintf(buf, len, "%s", iv ? "true" : "false");
    case GGUF_ARRAY: gguf_get_arr(m->gguf, key, &et, &n, &d); return snprintf(buf, len, "[%llu items]", (unsigned long long)n);
    default:
        if (gguf_get_int(m->gguf, key, &iv) == 0) return snprintf(buf, len, "%lld", (long long)iv);
        return snprintf(buf, len, "?");
    }
}

/* Appends printf output to buf at *used, keeping the snprintf contract over the whole. */
static void appendf(char *buf, size_t len, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void appendf(char *buf, size_t len, size_t *used, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(*used < len ? buf + *used : NULL, *used < len ? len - *used : 0, fmt, ap);
    va_end(ap);
    if (n > 0) *used += (size_t)n;
}

int ember_model_info(const ember_model *m, char *buf, size_t len) {
    size_t u = 0;
    if (buf && len) buf[0] = 0;
    if (!m || m->vocab_only) return 0;
    const em_hparams *hp = &m->hp;
    appendf(buf, len, &u, "%-22s %d (kv %d, head_dim %d)\n", "n_head", hp->n_head, hp->n_head_kv, hp->head_dim);
    appendf(buf, len, &u, "%-22s %d\n", "n_ff", hp->n_ff);
    appendf(buf, len, &u, "%-22s %s, %d dims, base %g\n", "rope", hp->rope_neox ? "neox" : "norm", hp->n_rot, hp->rope_base);
    if (hp->n_swa > 0) {
        int n_local = 0;
        for (int l = 0; l < hp->n_layer; l++) n_local += m->layers[l].swa;
        appendf(buf, len, &u, "%-22s %d positions in %d of %d layers (rope base %g there)\n", "sliding window",
                hp->n_swa, n_local, hp->n_layer, hp->rope_base_swa);
    }
    if (hp->logit_softcap > 0) appendf(buf, len, &u, "%-22s %g\n", "logit soft-cap", hp->logit_softcap);
    appendf(buf, len, &u, "%-22s %g\n", "rms_eps", hp->rms_eps);
    appendf(buf, len, &u, "%-22s %s\n", "output", m->tied_output ? "tied to token_embd" : "separate");
    if (m->gguf) {
        int64_t count[EM_TYPE_COUNT + 1] = { 0 };
        for (int64_t i = 0; i < gguf_n_tensors(m->gguf); i++) {
            uint32_t t = gguf_tensor_at(m->gguf, i)->type;
            count[t < EM_TYPE_COUNT ? t : EM_TYPE_COUNT]++;
        }
        appendf(buf, len, &u, "%-22s", "tensor types");
        for (int t = 0; t <= EM_TYPE_COUNT; t++)
            if (count[t]) appendf(buf, len, &u, " %s:%lld", t < EM_TYPE_COUNT && gguf_type_name((uint32_t)t) ? gguf_type_name((uint32_t)t) : "other", (long long)count[t]);
        appendf(buf, len, &u, "\n");
    }
    appendf(buf, len, &u, "%-22s %.2f MiB (%s)\n", "file", m->file_bytes / 1048576.0,
            m->gguf ? "memory-mapped, read-only" : "read into memory");
    const double kv_tok = (double)em_kv_bytes_per_token(hp, EM_F16, EM_F16);
    const int n_ctx = hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096;
    appendf(buf, len, &u, "%-22s %.1f KiB per token (f16); %.1f MiB at the default context of %d\n",
            "kv cache", kv_tok / 1024.0, kv_tok * n_ctx / 1048576.0, n_ctx);
    appendf(buf, len, &u, "%-22s", "kv cache types");
    static const int kv_show[] = { EM_F32, EM_BF16, EM_Q8_0, EM_Q4_0 };
    for (size_t i = 0; i < sizeof kv_show / sizeof *kv_show; i++)
        if (!(hp->head_dim % em_type_get(kv_show[i])->blck))
            appendf(buf, len, &u, "%s %s %.1f KiB", i ? "," : "", em_kv_type_name(kv_show[i]),
                    em_kv_bytes_per_token(hp, kv_show[i], kv_show[i]) / 1024.0);
    appendf(buf, len, &u, " per token (-ctk/-ctv)\n");
    appendf(buf, len, &u, "%-22s %.1f MiB weights + %.1f MiB kv cache\n", "memory",
            m->weight_bytes / 1048576.0, kv_tok * n_ctx / 1048576.0);
    appendf(buf, len, &u, "%-22s %s\n", "kernels", em_kernels_best()->name);
    return (int)(u > 0x7fffffff ? 0x7fffffff : u);
}

/* ---- tokens ---- */
ember_token ember_token_bos(const ember_model *m) { return m && m->vocab ? em_vocab_bos(m->vocab) : 1; }
ember_token ember_token_eos(const ember_model *m) { return m && m->vocab ? em_vocab_eos(m->vocab) : 2; }
int ember_token_is_eog(const ember_model *m, ember_token t) {
    return m && m->vocab ? em_vocab_is_eog(m->vocab, t) : t == 2;
}
int ember_add_bos(const ember_model *m) { return m && m->vocab ? em_vocab_add_bos(m->vocab) : 1; }

int ember_tokenize(const ember_model *m, const char *text, size_t len, ember_token *out, int n_max,
                   int add_special, int parse_special) {
    if (!m || !m->vocab) { em_fail(EMBER_E_INVALID, "model has no tokenizer"); return 0; }
    if (!text) len = 0;
    return em_tokenize(m->vocab, text ? text : "", len, add_special, parse_special, out, n_max);
}

int ember_tokenize_spans(const ember_model *m, const char *text, size_t len, const ember_span *plain,
                         size_t n_plain, ember_token *out, int n_max, int add_special) {
    if (!m || !m->vocab) { em_fail(EMBER_E_INVALID, "model has no tokenizer"); return 0; }
    if (!plain && n_plain) { em_fail(EMBER_E_INVALID, "ember_tokenize_spans: NULL spans"); return 0; }
    if (!text) len = 0;
    /* ember_span and em_span have the same layout: two size_t. */
    em_span *sp = n_plain ? malloc(n_plain * sizeof *sp) : NULL;
    if (n_plain && !sp) { em_fail(EMBER_E_NOMEM, "out of memory"); return 0; }
    for (size_t i = 0; i < n_plain; i++) sp[i] = (em_span){plain[i].off, plain[i].len};
    int n = em_tokenize_spans(m->vocab, text ? text : "", len, add_special, 1, sp, n_plain, out, n_max);
    free(sp);
    return n;
}

int ember_token_to_piece(const ember_model *m, ember_token t, char *buf, int len, int special) {
    if (!m || !m->vocab) return 0;
    return em_token_to_piece(m->vocab, t, buf, len, special);
}

/* ---- contexts ---- */
ember_context_params ember_context_default_params(void) {
    ember_context_params p = { 0, 0, 0, NULL, NULL, 0, NULL, NULL, NULL, 0, 0, 0, 0.0f };
    return p;
}

/* Bytes a context allocates up front: the KV cache and the activation scratch (one row of
 * logits; decoding with logits for many tokens grows that array). */
static uint64_t context_bytes(const em_hparams *hp, int n_ctx, int n_batch, int n_seq, int type_k, int type_v) {
    const uint64_t kvdim = (uint64_t)hp->n_head_kv * hp->head_dim, qdim = (uint64_t)hp->n_head * hp->head_dim;
    const uint64_t B = (uint64_t)n_batch, d = (uint64_t)hp->n_embd, ff = (uint64_t)hp->n_ff;
    uint64_t maxw = d > qdim ? d : qdim;
    if (ff > maxw) maxw = ff;
    const uint64_t xq_col = (maxw * sizeof(float) + 63) & ~(uint64_t)63;
    const uint64_t act = B * (d + (d > qdim ? d : qdim) + d + qdim + 2 * kvdim + 2 * ff) * sizeof(float);
    return em_kv_bytes_per_token(hp, type_k, type_v) * (uint64_t)n_ctx * (uint64_t)n_seq + act + 3 * B * xq_col +
           (uint64_t)hp->n_vocab * sizeof(float);
}

ember_status ember_context_new(ember_model *m, const ember_context_params *params, ember_context **out) {
    CHECK_ARG(out, "ember_context_new: out is NULL");
    *out = NULL;
    CHECK_ARG(m, "ember_context_new: model is NULL");
    if (m->vocab_only) return em_fail(EMBER_E_INVALID, "model was loaded vocab-only; it cannot decode");
    ember_context_params p = params ? *params : ember_context_default_params();
    CHECK_ARG(p.n_ctx >= 0 && p.n_threads >= 0 && p.n_batch >= 0 && p.n_seq >= 0 && p.n_keep >= 0 &&
              p.n_sink >= 0 && p.n_window >= 0, "ember_context_new: negative parameter");
    const int policy = em_kv_policy_parse(p.kv_policy);
    CHECK_ARG(policy >= 0, "KV cache policy '%s' is not supported (full, shift, sink, elastic)", p.kv_policy);
    CHECK_ARG(p.n_seq <= 4096, "ember_context_new: %d sequences is too many (at most 4096)", p.n_seq);
    const em_hparams *hp = &m->hp;
    struct ember_context *c = calloc(1, sizeof *c);
    if (!c) return em_fail(EMBER_E_NOMEM, "out of memory");
    c->m = m;
    c->kern = p.isa ? em_kernels_by_name(p.isa) : em_kernels_best();
    if (!c->kern) { free(c); return em_fail(EMBER_E_UNSUPPORTED, "ISA '%s' is not available on this CPU", p.isa); }
    c->n_ctx = p.n_ctx ? p.n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    c->n_batch = p.n_batch ? p.n_batch : 64;  /* the sink and elastic policies may lower it */
    c->n_seq = p.n_seq ? p.n_seq : 1;
    const char *name_k = p.type_k ? p.type_k : p.kv_type, *name_v = p.type_v ? p.type_v : p.kv_type;
    const int type_k = em_kv_type_parse(name_k), type_v = em_kv_type_parse(name_v);
    if (type_k < 0 || type_v < 0) {
        free(c);
        return em_fail(EMBER_E_UNSUPPORTED, "KV cache type '%s' is not supported (%s)", type_k < 0 ? name_k : name_v,
                       em_kv_type_names);
    }
    int nt = p.n_threads ? p.n_threads : em_physical_cores();
    if (nt > 256) nt = 256;
    const size_t kvdim = (size_t)hp->n_head_kv * hp->head_dim, qdim = (size_t)hp->n_head * hp->head_dim;
    ember_status st = em_kv_init(&c->kv, hp, c->n_seq, c->n_ctx, type_k, type_v);
    if (st) { free(c); return st; }
    if ((st = em_kv_set_policy(&c->kv, policy, p.n_keep, p.n_sink, p.n_window, p.kv_ratio, hp->n_ctx_train,
                               &c->n_batch))) {
        em_kv_free(&c->kv);
        free(c);
        return st;
    }
    const size_t B = (size_t)c->n_batch, d = (size_t)hp->n_embd, ff = (size_t)hp->n_ff;
    size_t maxw = d > qdim ? d : qdim;
    if (ff > maxw) maxw = ff;
    if ((size_t)hp->ssm_d_inner > maxw) maxw = (size_t)hp->ssm_d_inner;  /* falcon-h1's ssm_out input */
    c->xq_col = (maxw * sizeof(float) + 63) & ~(size_t)63;  /* f32 is the widest activation type */
    c->pool = em_pool_new(nt);
    c->x = em_alloc_aligned(B * d * sizeof(float));
    c->xb = em_alloc_aligned(B * (d > qdim ? d : qdim) * sizeof(float));
    c->xb2 = em_alloc_aligned(B * d * sizeof(float));
    c->q = em_alloc_aligned(B * qdim * sizeof(float));
    c->k = em_alloc_aligned(B * kvdim * sizeof(float));
    c->v = em_alloc_aligned(B * kvdim * sizeof(float));
    c->hg = em_alloc_aligned(B * ff * sizeof(float));
    c->hu = em_alloc_aligned(B * ff * sizeof(float));
    c->xq = em_alloc_aligned(3 * B * c->xq_col);  /* one slot per vec_dot type in a matmul group */
    c->rope_cs = em_alloc_aligned((size_t)hp->n_rot * sizeof(float));
    c->seq_cnt = calloc((size_t)c->n_seq, sizeof *c->seq_cnt);
    c->tok_seq = malloc(B * sizeof *c->tok_seq);
    c->tok_cell = malloc(B * sizeof *c->tok_cell);
    c->tok_pos = malloc(B * sizeof *c->tok_pos);
    c->out_tok = malloc(B * sizeof *c->out_tok);
    c->logits = malloc((size_t)hp->n_vocab * sizeof(float));
    c->n_logits_cap = 1;
    int ssm_ok = 1;
    if (hp->ssm_d_inner) {  /* falcon-h1's SSM branch (model/ssm.c) */
        const size_t ch = (size_t)c->kv.ssm.conv_ch, proj = (size_t)hp->ssm_d_inner + ch + (size_t)hp->ssm_n_head;
        c->ssm_zxbcdt = em_alloc_aligned(B * proj * sizeof(float));
        c->ssm_y = em_alloc_aligned(B * (size_t)hp->ssm_d_inner * sizeof(float));
        c->ssm_o = em_alloc_aligned(B * d * sizeof(float));
        c->ssm_one = em_alloc_aligned(ch * sizeof(float));
        ssm_ok = c->ssm_zxbcdt && c->ssm_y && c->ssm_o && c->ssm_one;
        for (size_t i = 0; ssm_ok && i < ch; i++) c->ssm_one[i] = 1.0f;
    }
    if (!c->pool || !c->x || !c->xb || !c->xb2 || !c->q || !c->k ||
        !c->v || !c->hg || !c->hu || !c->xq || !c->rope_cs || !c->logits || !c->seq_cnt ||
        !c->tok_seq || !c->tok_cell || !c->tok_pos || !c->out_tok || !ssm_ok) {
        const int n_ctx = c->n_ctx;
        ember_context_free(c);
        return em_fail(EMBER_E_NOMEM, "out of memory for a context of %d positions", n_ctx);
    }
    if ((st = em_stream_new(c, context_bytes(hp, c->n_ctx, c->n_batch, c->n_seq, type_k, type_v)))) {
        ember_context_free(c);
        return st;
    }
    *out = c;
    return EMBER_OK;
}

void ember_context_free(ember_context *c) {
    if (!c) return;
    em_stream_free(c->stream);
    em_pool_free(c->pool);
    em_kv_free(&c->kv);
    em_free_aligned(c->x); em_free_aligned(c->xb); em_free_aligned(c->xb2);
    em_free_aligned(c->q); em_free_aligned(c->k); em_free_aligned(c->v);
    em_free_aligned(c->hg); em_free_aligned(c->hu);
    em_free_aligned(c->xq); em_free_aligned(c->rope_cs);
    em_free_aligned(c->ssm_zxbcdt); em_free_aligned(c->ssm_y); em_free_aligned(c->ssm_o); em_free_aligned(c->ssm_one);
    free(c->logits); free(c->logit_row);
    free(c->seq_cnt); free(c->tok_seq); free(c->tok_cell); free(c->tok_pos); free(c->out_tok);
    free(c);
}

int ember_context_n_ctx(const ember_context *c) { return c ? c->n_ctx : 0; }
int ember_context_n_batch(const ember_context *c) { return c ? c->n_batch : 0; }
int ember_context_n_past(const ember_context *c) { return c ? c->kv.n_cells[0] : 0; }
int ember_context_n_seq(const ember_context *c) { return c ? c->n_seq : 0; }
const char *ember_context_isa(const ember_context *c) { return c ? c->kern->name : ""; }
const char *ember_context_type_k(const ember_context *c) { return c ? em_kv_type_name(c->kv.type_k) : ""; }
const char *ember_context_type_v(const ember_context *c) { return c ? em_kv_type_name(c->kv.type_v) : ""; }
uint64_t ember_context_kv_bytes_per_token(const ember_context *c) {
    return c ? em_kv_bytes_per_token(&c->m->hp, c->kv.type_k, c->kv.type_v) : 0;
}

int ember_seq_n_past(const ember_context *c, int seq) {
    return c && seq >= 0 && seq < c->n_seq ? c->kv.n_cells[seq] : 0;
}

ember_status ember_seq_truncate(ember_context *c, int seq, int n_past) {
    CHECK_ARG(c && seq >= 0 && seq < c->n_seq, "ember_seq_truncate: bad sequence %d", seq);
    CHECK_ARG(n_past >= 0 && n_past <= c->kv.n_cells[seq], "ember_seq_truncate: bad position %d", n_past);
    const int n = c->kv.n_cells[seq];
    ember_status st = em_ssm_check_rm(&c->kv.ssm, seq, n, n_past, n);  /* a recurrent state: a checkpoint */
    if (st) return st;
    em_kv_seq_truncate(&c->kv, seq, n_past);
    if (n_past < n) em_ssm_rm(&c->kv.ssm, seq, n_past);
    return EMBER_OK;
}

ember_status ember_context_truncate(ember_context *c, int n_past) { return ember_seq_truncate(c, 0, n_past); }

#define CHECK_SEQ(c, s, fn) CHECK_ARG((c) && (s) >= 0 && (s) < (c)->n_seq, fn ": bad sequence %d", (s))

ember_status ember_seq_rm(ember_context *c, int seq, int p0, int p1) {
    CHECK_ARG(c && seq < c->n_seq, "ember_seq_rm: bad sequence %d", seq);
    for (int s = seq < 0 ? 0 : seq; s < (seq < 0 ? c->n_seq : seq + 1); s++) {
        ember_status st = em_kv_seq_rm_check(&c->kv, s, p0, p1);  /* what a recurrent state refuses */
        if (st) return st;
    }
    for (int s = seq < 0 ? 0 : seq; s < (seq < 0 ? c->n_seq : seq + 1); s++) em_kv_seq_rm(&c->kv, s, p0, p1);
    return EMBER_OK;
}

ember_status ember_seq_keep(ember_context *c, int seq) {
    CHECK_SEQ(c, seq, "ember_seq_keep");
    em_kv_seq_keep(&c->kv, seq);
    return EMBER_OK;
}

ember_status ember_seq_cp(ember_context *c, int src, int dst, int p0, int p1) {
    CHECK_SEQ(c, src, "ember_seq_cp");
    CHECK_SEQ(c, dst, "ember_seq_cp");
    ember_status st = em_kv_seq_cp_check(&c->kv, src, p0, p1);
    if (st) return st;
    em_kv_seq_cp(&c->kv, src, dst, p0, p1);
    return EMBER_OK;
}

ember_status ember_seq_add(ember_context *c, int seq, int p0, int p1, int delta) {
    CHECK_SEQ(c, seq, "ember_seq_add");
    return em_kv_seq_add(&c->kv, c->m, seq, p0, p1, delta);
}

int ember_seq_pos_min(const ember_context *c, int seq) {
    if (!c || seq < 0 || seq >= c->n_seq || !c->kv.n_cells[seq]) return -1;
    return c->kv.pos[(size_t)seq * c->kv.n_ctx];
}

int ember_seq_pos_max(const ember_context *c, int seq) {
    if (!c || seq < 0 || seq >= c->n_seq || !c->kv.n_cells[seq]) return -1;
    return em_kv_next_pos(&c->kv, seq) - 1;
}

ember_status ember_decode(ember_context *c, const ember_token *tokens, int n, int all_logits) {
    CHECK_ARG(c && (tokens || n == 0), "ember_decode: NULL argument");
    if (!all_logits) return em_forward(c, tokens, NULL, NULL, n);
    int8_t *want = malloc(n > 0 ? (size_t)n : 1);
    if (!want) return em_fail(EMBER_E_NOMEM, "out of memory");
    memset(want, 1, n > 0 ? (size_t)n : 1);
    ember_status st = em_forward(c, tokens, NULL, want, n);
    free(want);
    return st;
}

ember_status ember_decode_batch(ember_context *c, const ember_batch *b) {
    CHECK_ARG(c && b && (b->token || b->n_tokens == 0), "ember_decode_batch: NULL argument");
    return em_forward(c, b->token, b->seq, b->logits, b->n_tokens);
}

const float *ember_get_logits(ember_context *c, int i) {
    if (!c || c->last_n == 0) return NULL;
    if (i < 0) i = c->last_n + i;
    if (i < 0 || i >= c->last_n || c->logit_row[i] < 0) return NULL;
    return c->logits + (size_t)c->logit_row[i] * c->m->hp.n_vocab;
}

/* ---- sampling ---- */

ember_sampler_params ember_sampler_default_params(void) {
    em_sampler_params e;
    em_sampler_default_params(&e);
    ember_sampler_params p = { e.temp, e.top_k, e.top_p, e.min_p, e.repeat_penalty, e.repeat_last_n,
                               e.presence_penalty, e.frequency_penalty, e.seed };
    return p;
}

/* The allowed range of each sampling parameter: the one table the CLI, the server and
 * ember_sampler_new check against. */
static const struct { const char *name; double lo, hi; } param_range[] = {
    { "temp", 0, 100 },                 /* 0: greedy */
    { "top_k", 0, 1 << 30 },            /* 0: off */
    { "top_p", 0, 1 },                  /* 1: off */
    { "min_p", 0, 1 },                  /* 0: off */
    { "repeat_penalty", 1e-6, 100 },    /* 1: off; 0 would zero the logits */
    { "repeat_last_n", -1, 1 << 30 },   /* -1: the whole context */
    { "presence_penalty", -2, 2 },      /* OpenAI's range */
    { "frequency_penalty", -2, 2 },
};

int ember_sampler_param_range(const char *name, double *lo, double *hi) {
    for (size_t i = 0; name && i < sizeof param_range / sizeof *param_range; i++)
        if (!strcmp(name, param_range[i].name)) {
            if (lo) *lo = param_range[i].lo;
            if (hi) *hi = param_range[i].hi;
            return 0;
        }
    return -1;
}

ember_status ember_sampler_params_check(const ember_sampler_params *p, const char **bad_field) {
    if (bad_field) *bad_field = NULL;
    CHECK_ARG(p, "ember_sampler_params_check: NULL argument");
    const double v[] = { p->temp, p->top_k, p->top_p, p->min_p, p->repeat_penalty, p->repeat_last_n,
                         p->presence_penalty, p->frequency_penalty };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        /* Bounds as floats: the fields are floats, and a bound like 1e-6 read into a float
         * (as the CLI and the server do) lands just below the double 1e-6. NaN fails. */
        if (v[i] >= (float)param_range[i].lo && v[i] <= (float)param_range[i].hi) continue;
        if (bad_field) *bad_field = param_range[i].name;
        return em_fail(EMBER_E_INVALID, "%s must be in [%g, %g], got %g", param_range[i].name,
                       param_range[i].lo, param_range[i].hi, v[i]);
    }
    return EMBER_OK;
}

ember_status ember_sampler_new(const ember_model *m, const ember_sampler_params *p, ember_sampler **out) {
    CHECK_ARG(out && m, "ember_sampler_new: NULL argument");
    *out = NULL;
    ember_sampler_params q = p ? *p : ember_sampler_default_params();
    ember_status st = ember_sampler_params_check(&q, NULL);
    if (st) return st;
    em_sampler_params e = { q.temp, q.top_k, q.top_p, q.min_p, q.repeat_penalty, q.repeat_last_n,
                            q.presence_penalty, q.frequency_penalty, q.seed };
    ember_sampler *s = calloc(1, sizeof *s);
    if (!s) return em_fail(EMBER_E_NOMEM, "out of memory");
    s->n_vocab = m->hp.n_vocab;
    s->s = em_sampler_new(&e, s->n_vocab);
    if (!s->s) { free(s); return em_fail(EMBER_E_INVALID, "bad sampler parameters"); }
    *out = s;
    return EMBER_OK;
}

void ember_sampler_free(ember_sampler *s) {
    if (!s) return;
    em_sampler_free(s->s);
    free(s);
}

ember_token ember_sampler_sample(ember_sampler *s, ember_context *c, int i) {
    const float *logits = ember_get_logits(c, i);
    if (!s || !logits) { em_fail(EMBER_E_INVALID, "no logits for token %d", i); return -1; }
    if (c->m->hp.n_vocab != s->n_vocab) {
        em_fail(EMBER_E_INVALID, "the sampler is for %d tokens, the context's model has %d", s->n_vocab,
                c->m->hp.n_vocab);
        return -1;
    }
    ember_token t = em_sampler_sample(s->s, logits);
    em_sampler_accept(s->s, t);
    return t;
}

ember_token ember_sampler_sample_row(ember_sampler *s, const float *logits) {
    if (!s || !logits) { em_fail(EMBER_E_INVALID, "ember_sampler_sample_row: NULL argument"); return -1; }
    return em_sampler_sample(s->s, logits);
}

ember_status ember_sampler_probs(ember_sampler *s, const float *logits, float *probs) {
    CHECK_ARG(s && logits && probs, "ember_sampler_probs: NULL argument");
    em_sampler_probs(s->s, logits, probs);
    return EMBER_OK;
}

struct ember_sampler_state { em_sampler_state *st; };

ember_status ember_sampler_state_new(const ember_sampler *s, ember_sampler_state **out) {
    CHECK_ARG(out, "ember_sampler_state_new: out is NULL");
    *out = NULL;
    CHECK_ARG(s, "ember_sampler_state_new: sampler is NULL");
    ember_sampler_state *st = calloc(1, sizeof *st);
    if (!st || !(st->st = em_sampler_state_new(s->s))) { free(st); return em_fail(EMBER_E_NOMEM, "out of memory"); }
    *out = st;
    return EMBER_OK;
}

void ember_sampler_state_free(ember_sampler_state *st) {
    if (!st) return;
    em_sampler_state_free(st->st);
    free(st);
}

ember_status ember_sampler_save(const ember_sampler *s, ember_sampler_state *st) {
    CHECK_ARG(s && st, "ember_sampler_save: NULL argument");
    CHECK_ARG(!em_sampler_save(s->s, st->st), "ember_sampler_save: the state belongs to a sampler with another "
              "vocabulary or repeat_last_n");
    return EMBER_OK;
}

ember_status ember_sampler_restore(ember_sampler *s, const ember_sampler_state *st, int parts) {
    CHECK_ARG(s && st, "ember_sampler_restore: NULL argument");
    CHECK_ARG(parts > 0 && parts <= (EMBER_SAMPLER_HISTORY | EMBER_SAMPLER_RNG),
              "ember_sampler_restore: parts must be EMBER_SAMPLER_HISTORY, EMBER_SAMPLER_RNG or both, got %d", parts);
    int p = (parts & EMBER_SAMPLER_HISTORY ? EM_SAMPLER_STATE_HISTORY : 0) |
            (parts & EMBER_SAMPLER_RNG ? EM_SAMPLER_STATE_RNG : 0);
    CHECK_ARG(!em_sampler_restore(s->s, st->st, p), "ember_sampler_restore: the state belongs to a sampler with "
              "another vocabulary or repeat_last_n");
    return EMBER_OK;
}

void ember_sampler_accept(ember_sampler *s, ember_token t) { if (s) em_sampler_accept(s->s, t); }
void ember_sampler_reset(ember_sampler *s) { if (s) em_sampler_reset(s->s); }
uint64_t ember_sampler_seed(const ember_sampler *s) { return s ? em_sampler_seed(s->s) : 0; }

/* ---- memory budgets (stream.c) ---- */
static void plan_public(const em_mem_plan *p, uint64_t file, ember_mem_plan *out) {
    memset(out, 0, sizeof *out);
    out->budget = p->budget;
    out->min_budget = p->min_budget;
    out->fixed = p->fixed;
    out->context = p->context;
    out->pinned = p->pinned;
    out->buffers = (uint64_t)p->n_slots * p->slot_bytes;
    out->streamed = p->streamed;
    out->file = file;
    out->resident = p->all_resident ? file + p->context : p->fixed + p->pinned + out->buffers + p->context;
    out->n_layer = p->n_layer;
    out->n_pinned = p->n_pinned;
    out->n_streamed = p->n_streamed;
    out->n_buffers = p->n_slots;
    out->prefetch = p->prefetch;
    out->all_resident = p->all_resident;
}

ember_status ember_mem_plan_get(const ember_model *m, const ember_context_params *cp, uint64_t budget,
                                int prefetch, ember_mem_plan *out) {
    CHECK_ARG(m && out, "ember_mem_plan_get: NULL argument");
    memset(out, 0, sizeof *out);
    CHECK_ARG(prefetch >= 0 && prefetch <= 64, "prefetch must be in [0, 64], got %d", prefetch);
    ember_context_params p = cp ? *cp : ember_context_default_params();
    CHECK_ARG(p.n_ctx >= 0 && p.n_batch >= 0 && p.n_seq >= 0 && p.n_seq <= 4096, "ember_mem_plan_get: bad context parameters");
    const em_hparams *hp = &m->hp;
    const int n_ctx = p.n_ctx ? p.n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    const char *name_k = p.type_k ? p.type_k : p.kv_type, *name_v = p.type_v ? p.type_v : p.kv_type;
    const int type_k = em_kv_type_parse(name_k), type_v = em_kv_type_parse(name_v);
    if (type_k < 0 || type_v < 0)
        return em_fail(EMBER_E_UNSUPPORTED, "KV cache type '%s' is not supported (%s)", type_k < 0 ? name_k : name_v,
                       em_kv_type_names);
    em_mem_plan plan;
    ember_status st = em_mem_plan_make(m, budget, prefetch, context_bytes(hp, n_ctx, p.n_batch ? p.n_batch : 64,
                                                                           p.n_seq ? p.n_seq : 1, type_k, type_v), &plan);
    plan_public(&plan, m->file_bytes, out);
    return st;
}

ember_status ember_context_mem_plan(const ember_context *c, ember_mem_plan *out) {
    CHECK_ARG(c && out, "ember_context_mem_plan: NULL argument");
    memset(out, 0, sizeof *out);
    const em_mem_plan *p = em_stream_plan(c->stream);
    if (p) plan_public(p, c->m->file_bytes, out);
    else if (c->m->mem_budget) {  /* under a budget that the whole file fits in */
        out->budget = c->m->mem_budget;
        out->all_resident = 1;
        out->file = c->m->file_bytes;
        out->n_layer = out->n_pinned = c->m->hp.n_layer;
    }
    return EMBER_OK;
}

ember_status ember_model_disk_bandwidth(const ember_model *m, uint64_t bytes, double *gbps) {
    CHECK_ARG(m && gbps, "ember_model_disk_bandwidth: NULL argument");
    return em_file_read_bandwidth(m, bytes, gbps);
}
