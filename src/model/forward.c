/* forward.c: the transformer forward pass, written out like llama2.c, calling only
 * kernels from the context's table. One call processes a chunk of up to n_batch tokens;
 * activations are token-major (T, width) so a matmul sees T activation columns and reads
 * each weight row once per chunk.
 *
 * Per layer (llama / qwen2 / qwen3 / gemma3 / gemma2 / phi3 / falcon-h1):
 *   h   = x + post(Wo . attn(rope(norm_q(Wq . rms(x)) + bq), rope(norm_k(Wk . rms(x)) + bk), Wv . rms(x) + bv))
 *   x'  = h + post(Wdown . (act(Wgate . rms(h)) * (Wup . rms(h))))
 * then logits = Wout . rms(x). Biases only for qwen2, q/k norms for qwen3 and gemma3;
 * gemma3 adds: x0 = embedding * sqrt(n_embd), the post RMSNorms, act = GELU (SiLU
 * elsewhere), queries scaled before attention, sliding-window layers with their own rope
 * base, and optionally logits = c * tanh(logits / c); gemma2 is gemma3 without q/k norms
 * and with attention scores soft-capped the same way. phi3's fused q/k/v and gate/up
 * matrices arrive as row ranges of one tensor (model.c), so they run as the same group.
 * falcon-h1 adds a Mamba-2 branch on the same normed input (ssm.c) whose output joins the
 * attention output: h = x + (attn + ssm).
 * Threads split matmul output rows and attention heads statically, so every output value
 * is computed by the same code in the same order whatever the thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "runtime/internal.h"

/* ---- matmuls over the thread pool ------------------------------------------------- */
#define MAX_GROUP 3  /* matrices sharing one input: q/k/v, gate/up */

typedef struct {
    const em_weight *w;
    const char *xq;      /* the input, quantized to w's vec_dot type */
    float *y;
    int ldy;
} mm_job;

typedef struct {
    const em_kernels *k;
    mm_job job[MAX_GROUP];
    int n_jobs, T;
    size_t xq_col;
} mm_task;

/* Each thread takes the same share of rows of every matrix in the group, so one hand-over
 * serves them all; each output's arithmetic does not depend on the split. */
static void mm_worker(void *arg, int ith, int nth) {
    const mm_task *t = arg;
    for (int j = 0; j < t->n_jobs; j++) {
        const mm_job *jb = &t->job[j];
        const int rows = (int)jb->w->rows;
        const int r0 = (int)((int64_t)rows * ith / nth), r1 = (int)((int64_t)rows * (ith + 1) / nth);
        if (r0 >= r1) continue;
        for (int c = 0; c < t->T; c += 8) {
            int nc = t->T - c < 8 ? t->T - c : 8;
            t->k->matmul[jb->w->type](jb->w->cols, jb->w->data, jb->w->row_bytes, r0, r1,
                                      jb->xq + (size_t)c * t->xq_col, t->xq_col, nc,
                                      jb->y + (size_t)c * jb->ldy, jb->ldy);
        }
    }
}

/* y_j[t] = W_j . x[t] for t < T and each of the n matrices (all with x's width as input).
 * x rows are ldx floats apart. The input is quantized once per distinct vec_dot type. */
static void matmuls(struct ember_context *ctx, const float *x, int ldx, int T, int n,
                    const em_weight *const w[], float *const y[], const int ldy[]) {
    mm_task task = { .k = ctx->kern, .n_jobs = n, .T = T, .xq_col = ctx->xq_col };
    int types[MAX_GROUP], n_types = 0;
    for (int j = 0; j < n; j++) {
        const int vt = em_type_get(w[j]->type)->vec_dot_type;
        int slot = 0;
        while (slot < n_types && types[slot] != vt) slot++;
        char *buf = (char *)ctx->xq + (size_t)slot * ctx->n_batch * ctx->xq_col;
        if (slot == n_types) {
            types[n_types++] = vt;
            for (int t = 0; t < T; t++)
                ctx->kern->quantize_act[vt](x + (size_t)t * ldx, buf + (size_t)t * ctx->xq_col, w[j]->cols);
        }
        task.job[j] = (mm_job){ w[j], buf, y[j], ldy[j] };
    }
    if (ctx->mm_hook)
        for (int j = 0; j < n; j++) ctx->mm_hook(ctx->mm_hook_user, w[j], x, ldx, T);
    em_pool_run(ctx->pool, mm_worker, &task);
}

static void matmul(struct ember_context *ctx, const em_weight *w, const float *x, int ldx,
                   int T, float *y, int ldy) {
    matmuls(ctx, x, ldx, T, 1, &w, &y, &ldy);
}

void em_matmul(struct ember_context *ctx, const em_weight *w, const float *x, int ldx, int T, float *y, int ldy) {
    matmul(ctx, w, x, ldx, T, y, ldy);
}

static void add_bias(float *y, int ldy, int T, const em_weight *b) {
    if (!b->data) return;
    const float *bv = b->data;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < b->cols; i++) y[(size_t)t * ldy + i] += bv[i];
}

/* ---- rope ---------------------------------------------------------------------------- */
/* cos/sin for one position: theta_i = freq_scale * (pos * base^(-2i/n_rot) / ff[i]), the
 * power computed by repeated multiplication as llama.cpp does so the angles agree to the
 * last bit (freq_scale: linear rope scaling, 1 without; ff: frequency factors, NULL for
 * none), cos and sin then multiplied by mscale (rope.scaling.attn_factor, 1 without). */
static void rope_cache(float *cs, int pos, int n_rot, float base, float freq_scale,
                       const float *ff, float mscale) {
    const float scale = powf(base, -2.0f / n_rot);
    float theta = (float)pos;
    for (int i = 0; i < n_rot / 2; i++) {
        const float t = freq_scale * (ff ? theta / ff[i] : theta);
        cs[2 * i] = cosf(t) * mscale;
        cs[2 * i + 1] = sinf(t) * mscale;
        theta *= scale;
    }
}

/* The frequency factors a context uses: llama's rope_freqs, or phi3's long factors when
 * the context is longer than the original one and its short factors otherwise. llama.cpp
 * compares its per-sequence context rounded up to a multiple of 256, so ember does too. */
static const float *rope_factors(const struct ember_model *m, int n_ctx) {
    if (m->rope_freqs.data) return m->rope_freqs.data;
    const int64_t padded = ((int64_t)n_ctx + 255) / 256 * 256;
    return padded > m->hp.n_ctx_orig ? m->rope_long.data : m->rope_short.data;
}

/* Rotates the pairs with one fused multiply-add each, as llama.cpp's build contracts
 * x0*c - x1*s and x0*s + x1*c: a last-bit difference here can flip the F16 rounding of a
 * cached K or of q and so decide a near-tie. */
static void rope_apply(float *v, const float *cs, int n_rot, int neox) {
    const int half = n_rot / 2;
    for (int i = 0; i < half; i++) {
        const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
        const float c = cs[2 * i], s = cs[2 * i + 1], x0 = v[i0], x1 = v[i1];
        v[i0] = fmaf(x0, c, -(x1 * s));
        v[i1] = fmaf(x0, s, x1 * c);
    }
}

/* ---- attention over the KV cache ---------------------------------------------------- */
typedef struct {
    struct ember_context *ctx;
    int layer, T;
} attn_task;

/* Work items are (token, KV head, slice of its query heads): one kernel call serves the
 * up to EM_ATTN_MAX_GROUP query heads of a GQA group that share the K/V rows. A token
 * attends to its sequence's cells up to its own (kv_cache.h: positions increase with the
 * cells), or in a sliding-window layer to those at the last n_swa positions
 * (pos - n_swa + 1..pos, as llama.cpp masks). */
static void attn_worker(void *arg, int ith, int nth) {
    const attn_task *a = arg;
    struct ember_context *ctx = a->ctx;
    const em_kv_cache *kv = &ctx->kv;
    const em_hparams *hp = &ctx->m->hp;
    const int hd = hp->head_dim, nh = hp->n_head, nkv = hp->n_head_kv, group = nh / nkv;
    const int n_sub = (group + EM_ATTN_MAX_GROUP - 1) / EM_ATTN_MAX_GROUP, per = (group + n_sub - 1) / n_sub;
    const float scale = hp->attn_scale != 0.0f ? 1.0f : 1.0f / sqrtf((float)hd);  /* else q is pre-scaled */
    const int window = ctx->m->layers[a->layer].swa ? hp->n_swa : 0;
    /* F32 and F16 caches (K and V alike) keep their own kernels, llama.cpp's arithmetic */
    const int same = kv->type_k == kv->type_v && (kv->type_k == EM_F32 || kv->type_k == EM_F16);
    const int items = a->T * nkv * n_sub;
    for (int it = items * ith / nth; it < items * (ith + 1) / nth; it++) {
        const int t = it / (nkv * n_sub), kvh = it / n_sub % nkv, sub = it % n_sub;
        const int h0 = kvh * group + sub * per, n_q = group - sub * per < per ? group - sub * per : per;
        const int s = ctx->tok_seq[t], cell = ctx->tok_cell[t], pos = ctx->tok_pos[t];
        const int c0 = window && pos >= window ? em_kv_find(kv, s, cell, pos - window + 1) : 0;
        const char *kr = em_kv_k(kv, a->layer, s, c0) + (size_t)kvh * kv->head_k;
        const char *vr = em_kv_v(kv, a->layer, s, c0) + (size_t)kvh * kv->head_v;
        float *out = ctx->xb + (size_t)t * nh * hd + (size_t)h0 * hd;
        const float *q = ctx->q + (size_t)t * nh * hd + (size_t)h0 * hd;
        if (hp->attn_softcap > 0.0f)  /* gemma2; the context allows only F32/F16 caches here */
            ctx->kern->attn_softcap[kv->type_k](out, q, n_q, kr, vr, cell + 1 - c0, hd, (size_t)nkv * hd, scale,
                                                hp->attn_softcap);
        else if (same)
            ctx->kern->attn[kv->type_k](out, q, n_q, kr, vr, cell + 1 - c0, hd, (size_t)nkv * hd, scale);
        else
            ctx->kern->attn_kv(ctx->kern, out, q, n_q, kv->type_k, kr, kv->row_k, kv->type_v, vr, kv->row_v,
                               cell + 1 - c0, hd, scale);
    }
}

/* The elastic policy's importance: the attention probability each cell gets from each
 * query head of the chunk's tokens, added to its column sum (kv_cache.h). One thread, in
 * token order, so the sums do not depend on the thread count. */
static void attn_colsums(struct ember_context *ctx, int l, int T) {
    em_kv_cache *kv = &ctx->kv;
    const em_hparams *hp = &ctx->m->hp;
    const int hd = hp->head_dim, nh = hp->n_head, nkv = hp->n_head_kv, group = nh / nkv;
    const float scale = hp->attn_scale != 0.0f ? 1.0f : 1.0f / sqrtf((float)hd);
    const int window = ctx->m->layers[l].swa ? hp->n_swa : 0;
    for (int kvh = 0; kvh < nkv; kvh++) {
        const float *ck = NULL;
        int have_s = -1, have_n = 0;
        for (int t = 0; t < T; t++) {
            const int s = ctx->tok_seq[t], cell = ctx->tok_cell[t], pos = ctx->tok_pos[t];
            const int c0 = window && pos >= window ? em_kv_find(kv, s, cell, pos - window + 1) : 0;
            if (s != have_s || cell + 1 > have_n) {  /* rows up to the chunk's last cell of s */
                int last = cell;
                for (int u = t + 1; u < T; u++)
                    if (ctx->tok_seq[u] == s && ctx->tok_cell[u] > last) last = ctx->tok_cell[u];
                ck = em_kv_head_rows(kv, l, s, kvh, 0, last + 1);
                have_s = s;
                have_n = last + 1;
            }
            for (int h = kvh * group; h < (kvh + 1) * group; h++)
                em_kv_colsum(kv, s, ctx->q + (size_t)t * nh * hd + (size_t)h * hd, ck + (size_t)c0 * hd, c0, cell + 1,
                             scale, hp->attn_softcap);
        }
    }
}

/* ---- one chunk of tokens --------------------------------------------------------------- */
static void embed(struct ember_context *ctx, const ember_token *tokens, int T) {
    const em_weight *e = &ctx->m->tok_embd;
    const int d = ctx->m->hp.n_embd;
    const float sc = ctx->m->hp.embd_scale;
    for (int t = 0; t < T; t++) {
        float *x = ctx->x + (size_t)t * d;
        em_dequantize_row(e->type, (const char *)e->data + (size_t)tokens[t] * e->row_bytes, x, e->cols);
        if (sc != 0.0f)
            for (int i = 0; i < d; i++) x[i] *= sc;
    }
}

/* gemma2/3: RMSNorm of a block's output (xb2) before it joins the residual stream. */
static void post_norm(struct ember_context *ctx, const em_weight *w, int T) {
    if (!w->data) return;
    const int d = ctx->m->hp.n_embd;
    for (int t = 0; t < T; t++)
        ctx->kern->rmsnorm(ctx->xb2 + (size_t)t * d, ctx->xb2 + (size_t)t * d, w->data, d, ctx->m->hp.rms_eps);
}

static void layer_forward(struct ember_context *ctx, const em_layer *L, int l, int T) {
    const struct ember_model *m = ctx->m;
    const em_hparams *hp = &m->hp;
    const em_kernels *k = ctx->kern;
    const int d = hp->n_embd, hd = hp->head_dim, nh = hp->n_head, nkv = hp->n_head_kv;
    const int qdim = nh * hd, kvdim = nkv * hd;

    for (int t = 0; t < T; t++)
        k->rmsnorm(ctx->xb + (size_t)t * d, ctx->x + (size_t)t * d, L->attn_norm.data, d, hp->rms_eps);
    if (L->ssm_in.data) em_ssm_forward(ctx, l, T);  /* falcon-h1: the SSM branch -> ssm_o */
    const em_weight *qkv[3] = { &L->wq, &L->wk, &L->wv };
    float *const qkv_out[3] = { ctx->q, ctx->k, ctx->v };
    const int qkv_ld[3] = { qdim, kvdim, kvdim };
    matmuls(ctx, ctx->xb, d, T, 3, qkv, qkv_out, qkv_ld);
    add_bias(ctx->q, qdim, T, &L->bq);
    add_bias(ctx->k, kvdim, T, &L->bk);
    add_bias(ctx->v, kvdim, T, &L->bv);

    for (int t = 0; t < T; t++) {
        float *q = ctx->q + (size_t)t * qdim, *kk = ctx->k + (size_t)t * kvdim;
        if (L->q_norm.data) {
            for (int h = 0; h < nh; h++) k->rmsnorm(q + h * hd, q + h * hd, L->q_norm.data, hd, hp->rms_eps);
            for (int h = 0; h < nkv; h++) k->rmsnorm(kk + h * hd, kk + h * hd, L->k_norm.data, hd, hp->rms_eps);
        }
        rope_cache(ctx->rope_cs, ctx->tok_pos[t], hp->n_rot, L->swa ? hp->rope_base_swa : hp->rope_base,
                   L->swa ? (hp->rope_freq_scale_swa == 0.0f ? 1.0f : hp->rope_freq_scale_swa)
                          : hp->rope_freq_scale == 0.0f ? 1.0f : hp->rope_freq_scale, rope_factors(ctx->m, ctx->n_ctx),
                   hp->rope_attn_factor == 0.0f ? 1.0f : hp->rope_attn_factor);
        for (int h = 0; h < nh; h++) rope_apply(q + h * hd, ctx->rope_cs, hp->n_rot, hp->rope_neox);
        for (int h = 0; h < nkv; h++) rope_apply(kk + h * hd, ctx->rope_cs, hp->n_rot, hp->rope_neox);
        if (hp->attn_scale != 0.0f)
            for (int i = 0; i < qdim; i++) q[i] *= hp->attn_scale;
        if (ctx->kv.rot_k) { em_kv_hadamard(q, qdim, ctx->kv.rot_k); em_kv_hadamard(kk, kvdim, ctx->kv.rot_k); }
        if (ctx->kv.rot_v) em_kv_hadamard(ctx->v + (size_t)t * kvdim, kvdim, ctx->kv.rot_v);
        em_kv_store(&ctx->kv, l, ctx->tok_seq[t], ctx->tok_cell[t], kk, ctx->v + (size_t)t * kvdim);
    }
    attn_task at = { ctx, l, T };
    em_pool_run(ctx->pool, attn_worker, &at);  /* -> xb (T, n_head*hd) */
    if (ctx->kv.policy == EM_KV_ELASTIC) attn_colsums(ctx, l, T);
    for (int t = 0; ctx->kv.rot_v && t < T; t++)  /* V was stored rotated: rotate the output back */
        em_kv_hadamard(ctx->xb + (size_t)t * qdim, qdim, ctx->kv.rot_v);

    matmul(ctx, &L->wo, ctx->xb, qdim, T, ctx->xb2, d);
    if (L->ssm_in.data)  /* falcon-h1: attention and SSM outputs join the stream together */
        for (size_t i = 0; i < (size_t)T * d; i++) ctx->xb2[i] += ctx->ssm_o[i];
    post_norm(ctx, &L->attn_post_norm, T);
    for (size_t i = 0; i < (size_t)T * d; i++) ctx->x[i] += ctx->xb2[i];

    for (int t = 0; t < T; t++)
        k->rmsnorm(ctx->xb + (size_t)t * d, ctx->x + (size_t)t * d, L->ffn_norm.data, d, hp->rms_eps);
    const em_weight *gu[2] = { &L->w_gate, &L->w_up };
    float *const gu_out[2] = { ctx->hg, ctx->hu };
    const int gu_ld[2] = { hp->n_ff, hp->n_ff };
    matmuls(ctx, ctx->xb, d, T, 2, gu, gu_out, gu_ld);
    for (int t = 0; t < T; t++)
        (hp->gelu ? k->geglu : k->swiglu)(ctx->hg + (size_t)t * hp->n_ff, ctx->hg + (size_t)t * hp->n_ff,
                                         ctx->hu + (size_t)t * hp->n_ff, hp->n_ff);
    matmul(ctx, &L->w_down, ctx->hg, hp->n_ff, T, ctx->xb2, d);
    post_norm(ctx, &L->ffn_post_norm, T);
    for (size_t i = 0; i < (size_t)T * d; i++) ctx->x[i] += ctx->xb2[i];
}

/* Final norm and output projection of the n chunk tokens listed in out_tok, into
 * consecutive logits rows. */
static void output_forward(struct ember_context *ctx, int n, float *logits) {
    const struct ember_model *m = ctx->m;
    const int d = m->hp.n_embd;
    for (int r = 0; r < n; r++)
        ctx->kern->rmsnorm(ctx->xb + (size_t)r * d, ctx->x + (size_t)ctx->out_tok[r] * d, m->output_norm.data, d, m->hp.rms_eps);
    matmul(ctx, &m->output, ctx->xb, d, n, logits, m->hp.n_vocab);
    const float cap = m->hp.logit_softcap;
    if (cap > 0.0f)  /* as llama.cpp: scale by 1/cap, tanh, scale by cap */
        for (size_t i = 0; i < (size_t)n * m->hp.n_vocab; i++) logits[i] = tanhf(logits[i] * (1.0f / cap)) * cap;
}

ember_status em_forward(struct ember_context *ctx, const ember_token *tokens, const int *seq,
                        const int8_t *want, int n) {
    const struct ember_model *m = ctx->m;
    if (n <= 0) return em_fail(EMBER_E_INVALID, "decode: empty batch");
    /* Check every token, sequence and the room left in each sequence first. */
    int rows = 0;
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= m->hp.n_vocab)
            return em_fail(EMBER_E_INVALID, "decode: token %d is out of range [0, %d)", tokens[i], m->hp.n_vocab);
        const int s = seq ? seq[i] : 0;
        if (s < 0 || s >= ctx->n_seq)
            return em_fail(EMBER_E_INVALID, "decode: sequence %d is out of range [0, %d)", s, ctx->n_seq);
        rows += want ? want[i] != 0 : i == n - 1;
    }
    memset(ctx->seq_cnt, 0, (size_t)ctx->n_seq * sizeof *ctx->seq_cnt);
    for (int i = 0; i < n; i++) ctx->seq_cnt[seq ? seq[i] : 0]++;
    const int per_chunk = em_kv_per_chunk(&ctx->kv);  /* sink, elastic: room per chunk, always made */
    ember_status st = em_kv_make_room(&ctx->kv, m, ctx->seq_cnt, 0);
    if (st) return st;
    if (rows > ctx->n_logits_cap) {
        float *p = realloc(ctx->logits, (size_t)rows * m->hp.n_vocab * sizeof(float));
        if (!p) return em_fail(EMBER_E_NOMEM, "decode: out of memory for %d logit rows", rows);
        ctx->logits = p;
        ctx->n_logits_cap = rows;
    }
    if (n > ctx->row_cap) {
        int *p = realloc(ctx->logit_row, (size_t)n * sizeof *p);
        if (!p) return em_fail(EMBER_E_NOMEM, "decode: out of memory for a batch of %d", n);
        ctx->logit_row = p;
        ctx->row_cap = n;
    }
    if (!per_chunk) em_kv_make_room(&ctx->kv, m, ctx->seq_cnt, 1);  /* the KV policy may shift a full sequence */
    int row = 0;
    for (int c0 = 0; c0 < n; c0 += ctx->n_batch) {
        const int T = n - c0 < ctx->n_batch ? n - c0 : ctx->n_batch;
        if (per_chunk) {
            memset(ctx->seq_cnt, 0, (size_t)ctx->n_seq * sizeof *ctx->seq_cnt);
            for (int t = 0; t < T; t++) ctx->seq_cnt[seq ? seq[c0 + t] : 0]++;
            em_kv_make_room(&ctx->kv, m, ctx->seq_cnt, 1);
        }
        int n_out = 0;
        for (int t = 0; t < T; t++) {
            const int i = c0 + t, s = seq ? seq[i] : 0;
            ctx->tok_seq[t] = s;
            ctx->tok_pos[t] = em_kv_next_pos(&ctx->kv, s);
            ctx->tok_cell[t] = ctx->kv.n_cells[s];
            ctx->kv.pos[(size_t)s * ctx->kv.n_ctx + ctx->kv.n_cells[s]++] = ctx->tok_pos[t];
            const int keep = want ? want[i] != 0 : i == n - 1;
            ctx->logit_row[i] = keep ? row + n_out : -1;
            if (keep) ctx->out_tok[n_out++] = t;
        }
        embed(ctx, tokens + c0, T);
        for (int l = 0; l < m->hp.n_layer; l++) {
            const em_layer *L = em_weights_acquire(ctx, l);  /* stream.h: a view, or a streamed copy */
            if (!L) {  /* the weights could not be read: leave the cache as before the call */
                em_weights_reset(ctx);
                for (int i = 0; i < c0 + T; i++) ctx->kv.n_cells[seq ? seq[i] : 0]--;
                return EMBER_E_IO;
            }
            layer_forward(ctx, L, l, T);
            em_weights_release(ctx, l);
        }
        if (n_out) output_forward(ctx, n_out, ctx->logits + (size_t)row * m->hp.n_vocab);
        row += n_out;
    }
    ctx->last_n = n;
    return EMBER_OK;
}

void em_rope_shift(const struct ember_model *m, int n_ctx, int l, float *row, int delta) {
    const em_hparams *hp = &m->hp;
    const int swa = m->layers[l].swa;
    float cs[EM_ATTN_MAX_HD];  /* n_rot <= head_dim <= EM_ATTN_MAX_HD */
    /* the forward pass's angles for this layer, without attn_factor: the stored key already
     * carries it, and a shift only rotates */
    rope_cache(cs, delta, hp->n_rot, swa ? hp->rope_base_swa : hp->rope_base,
               swa ? (hp->rope_freq_scale_swa == 0.0f ? 1.0f : hp->rope_freq_scale_swa)
                   : hp->rope_freq_scale == 0.0f ? 1.0f : hp->rope_freq_scale,
               rope_factors(m, n_ctx), 1.0f);
    for (int h = 0; h < hp->n_head_kv; h++) rope_apply(row + (size_t)h * hp->head_dim, cs, hp->n_rot, hp->rope_neox);
}
