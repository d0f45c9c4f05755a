/* l2c.c: llama2.c legacy checkpoints (the .bin written by export.py --version 0).
 * Layout: 7 x int32 header {dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
 * seq_len} (vocab_size < 0 means a separate classifier), then float32 arrays in order:
 * token_embedding (vocab, dim), rms_att (L, dim), wq (L, n_heads*hs, dim),
 * wk (L, n_kv*hs, dim), wv (L, n_kv*hs, dim), wo (L, dim, n_heads*hs), rms_ffn (L, dim),
 * w1 (L, hidden, dim), w2 (L, dim, hidden), w3 (L, hidden, dim), rms_final (dim),
 * freq_cis_real (seq_len, hs/2), freq_cis_imag (seq_len, hs/2), [wcls (vocab, dim)].
 * Matrices are row-major with output rows, as in GGUF, so they bind as F32 views. RoPE is
 * the adjacent-pair (NORM) kind and rms eps is 1e-5, as llama2.c's run.c uses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "runtime/internal.h"

typedef struct { int32_t dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len; } l2c_header;

/* Number of floats the checkpoint must hold after the header; 0 if the header is absurd. */
static size_t l2c_floats(const l2c_header *h, int shared) {
    if (h->dim <= 0 || h->hidden <= 0 || h->n_layers <= 0 || h->n_heads <= 0 || h->n_kv <= 0 ||
        h->vocab == 0 || h->seq_len <= 0 || h->dim % h->n_heads || h->n_heads % h->n_kv ||
        h->dim > (1 << 16) || h->hidden > (1 << 18) || h->n_layers > 1024 || h->seq_len > (1 << 20) ||
        h->vocab > (1 << 22) || h->vocab < -(1 << 22) || (h->dim / h->n_heads) % 2)
        return 0;
    size_t d = (size_t)h->dim, f = (size_t)h->hidden, L = (size_t)h->n_layers;
    size_t v = (size_t)(h->vocab < 0 ? -h->vocab : h->vocab), hs = d / (size_t)h->n_heads;
    size_t kv = (size_t)h->n_kv * hs;
    /* All factors are bounded above, so this cannot overflow 64-bit size_t. */
    size_t n = v * d + L * (d + d * d + 2 * kv * d + d * d + d + 3 * f * d) + d + (size_t)h->seq_len * hs;
    if (!shared) n += v * d;
    return n;
}

int em_is_l2c_checkpoint(const char *path) {
    ember_status st;
    FILE *f = em_fopen_regular(path, &st);
    if (!f) return 0;
    l2c_header h;
    int ok = fread(&h, sizeof h, 1, f) == 1;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    if (!ok || !memcmp(&h, "GGUF", 4)) return 0;
    size_t n = l2c_floats(&h, h.vocab > 0);
    return n && size > 0 && (size_t)size == sizeof h + n * sizeof(float);
}

static em_weight f32_view(const float *p, int64_t rows, int64_t cols) {
    em_weight w = { p, EM_F32, rows, cols, (size_t)cols * sizeof(float) };
    return w;
}

ember_status em_model_load_l2c(struct ember_model *m, const char *path, const char *tok_path) {
    ember_status st;
    FILE *f = em_fopen_regular(path, &st);
    if (!f) return st;
    l2c_header h;
    if (fread(&h, sizeof h, 1, f) != 1) { fclose(f); return em_fail(EMBER_E_FORMAT, "%s: truncated header", path); }
    const int shared = h.vocab > 0;
    size_t n = l2c_floats(&h, shared);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    if (!n || size < 0 || (size_t)size != sizeof h + n * sizeof(float)) {
        fclose(f);
        return em_fail(EMBER_E_FORMAT, "%s: not a llama2.c checkpoint (header/size mismatch)", path);
    }
    m->owned = em_alloc_aligned(n * sizeof(float));
    if (!m->owned) { fclose(f); return em_fail(EMBER_E_NOMEM, "out of memory for %zu weights", n); }
    m->owned_bytes = n * sizeof(float);
    fseek(f, (long)sizeof h, SEEK_SET);
    size_t got = fread(m->owned, sizeof(float), n, f);
    fclose(f);
    if (got != n) return em_fail(EMBER_E_IO, "%s: short read", path);

    em_hparams *hp = &m->hp;
    hp->arch = EM_ARCH_LLAMA;
    hp->n_embd = h.dim; hp->n_ff = h.hidden; hp->n_layer = h.n_layers;
    hp->n_head = h.n_heads; hp->n_head_kv = h.n_kv; hp->n_vocab = h.vocab < 0 ? -h.vocab : h.vocab;
    hp->n_ctx_train = h.seq_len; hp->head_dim = hp->head_dim_v = hp->n_rot = h.dim / h.n_heads;
    hp->rope_neox = 0; hp->rope_base = 10000.0f; hp->rms_eps = 1e-5f;

    const int64_t d = hp->n_embd, ff = hp->n_ff, L = hp->n_layer, nv = hp->n_vocab;
    const int64_t kv = (int64_t)hp->n_head_kv * hp->head_dim;
    m->layers = calloc((size_t)L, sizeof *m->layers);
    if (!m->layers) return em_fail(EMBER_E_NOMEM, "out of memory");
    const float *p = m->owned;
    m->tok_embd = f32_view(p, nv, d); p += nv * d;
    for (int i = 0; i < L; i++) m->layers[i].attn_norm = f32_view(p + i * d, 1, d);
    p += L * d;
    for (int i = 0; i < L; i++) m->layers[i].wq = f32_view(p + i * d * d, d, d);
    p += L * d * d;
    for (int i = 0; i < L; i++) m->layers[i].wk = f32_view(p + i * kv * d, kv, d);
    p += L * kv * d;
    for (int i = 0; i < L; i++) m->layers[i].wv = f32_view(p + i * kv * d, kv, d);
    p += L * kv * d;
    for (int i = 0; i < L; i++) m->layers[i].wo = f32_view(p + i * d * d, d, d);
    p += L * d * d;
    for (int i = 0; i < L; i++) m->layers[i].ffn_norm = f32_view(p + i * d, 1, d);
    p += L * d;
    for (int i = 0; i < L; i++) m->layers[i].w_gate = f32_view(p + i * ff * d, ff, d);
    p += L * ff * d;
    for (int i = 0; i < L; i++) m->layers[i].w_down = f32_view(p + i * d * ff, d, ff);
    p += L * d * ff;
    for (int i = 0; i < L; i++) m->layers[i].w_up = f32_view(p + i * ff * d, ff, d);
    p += L * ff * d;
    m->output_norm = f32_view(p, 1, d); p += d;
    p += (int64_t)h.seq_len * hp->head_dim;  /* freq_cis real + imag: recomputed, not read */
    if (shared) { m->output = m->tok_embd; m->tied_output = 1; }
    else m->output = f32_view(p, nv, d);
    m->n_params = (int64_t)(n - (size_t)h.seq_len * hp->head_dim);
    m->weight_bytes = m->owned_bytes;
    m->float_elems = m->n_params;  /* F32 throughout (norms included: a rounding error) */
    m->file_bytes = (uint64_t)size;
    m->ftype_main = EM_F32;

    if (tok_path) {
        char err[256] = "";
        if ((st = em_check_regular(tok_path))) return st;  /* the tokenizer opens it blocking */
        if (em_vocab_load_l2c(tok_path, hp->n_vocab, &m->vocab, err, sizeof err) != 0) {
            if (strstr(err, tok_path)) return em_fail(EMBER_E_FORMAT, "%s", err);  /* names the file already */
            return em_fail(EMBER_E_FORMAT, "%s: %s", tok_path, err);
        }
    }
    return EMBER_OK;
}
