/* test_kv_cache.c: the KV cache's sequence operations (ember_seq_rm / keep / cp / add).
 *  - isolation: on a 3-sequence context, each operation on one sequence leaves the cached
 *    rows and positions of every other sequence byte-identical (read through the internal
 *    cache), for f16 and q8_0 caches; errors change nothing; afterwards every sequence
 *    continues with logits bit-identical to a fresh context fed what it holds.
 *  - shift: llama.cpp's context shift (keep the first n_keep tokens, remove the next
 *    n_discard, move the rest back by n_discard, re-rotating their keys) against an f32
 *    reference: each kept key rotated by the shift in double from the RoPE formula, V rows
 *    and positions exact (bounds per cache type below), on a llama model and on gemma3
 *    (sliding-window layers with their own rope base). A fresh context fed the kept tokens
 *    is no reference: the kept tokens' rows were computed while the removed ones were
 *    still there, as in llama.cpp.
 *  - sink / elastic: each bounded policy against an f32 reference forward pass in double
 *    that keeps every K/V row before RoPE and attends only to the rows the policy keeps, at
 *    the positions it assigns (the section's own comment has the details); an endurance
 *    smoke of 3000 tokens through 256 cells on the default model with flat memory. */
#include <stdint.h>
#include <unistd.h>
#include "runtime/internal.h"
#include "test.h"

static ember_model *load(const char *path) {
    ember_model *m = NULL;
    if (ember_model_load(path, NULL, &m)) printf("  load %s: %s\n", path, ember_last_error());
    return m;
}

static ember_context *new_ctx_full(ember_model *m, int n_seq, const char *type, int n_ctx, const char *policy,
                                   int n_keep) {
    ember_context_params cp = ember_context_default_params();
    cp.n_ctx = n_ctx;
    cp.kv_policy = policy;
    cp.n_keep = n_keep;
    cp.n_seq = n_seq;
    cp.n_threads = 2;
    cp.n_batch = 16;
    cp.type_k = cp.type_v = type;
    ember_context *c = NULL;
    if (ember_context_new(m, &cp, &c)) printf("  context: %s\n", ember_last_error());
    return c;
}

static ember_context *new_ctx(ember_model *m, int n_seq, const char *type) {
    return new_ctx_full(m, n_seq, type, 64, NULL, 0);
}

/* A copy of what sequence s holds: its positions and its K and V rows of every layer. */
typedef struct { int n; int32_t pos[64]; char *rows; } snap;

static void take(const ember_context *c, int s, snap *out) {
    const em_kv_cache *kv = &c->kv;
    out->n = kv->n_cells[s];
    memcpy(out->pos, kv->pos + (size_t)s * kv->n_ctx, (size_t)out->n * sizeof(int32_t));
    const size_t per = (size_t)out->n * (kv->row_k + kv->row_v);
    out->rows = malloc(per * kv->n_layer + 1);
    for (int l = 0; l < kv->n_layer; l++) {
        char *d = out->rows + per * l;
        memcpy(d, em_kv_k(kv, l, s, 0), (size_t)out->n * kv->row_k);
        memcpy(d + (size_t)out->n * kv->row_k, em_kv_v(kv, l, s, 0), (size_t)out->n * kv->row_v);
    }
}

static int same(const ember_context *c, int s, const snap *a) {
    snap b;
    take(c, s, &b);
    const em_kv_cache *kv = &c->kv;
    const int eq = a->n == b.n && !memcmp(a->pos, b.pos, (size_t)a->n * sizeof(int32_t)) &&
                   !memcmp(a->rows, b.rows, (size_t)a->n * (kv->row_k + kv->row_v) * kv->n_layer);
    free(b.rows);
    return eq;
}

/* Logits of the last of toks[0..n) fed to a fresh one-sequence context. */
static float *fresh_last(ember_model *m, const char *type, const ember_token *toks, int n) {
    ember_context *c = new_ctx(m, 1, type);
    if (!c) return NULL;
    const int nv = ember_model_n_vocab(m);
    float *out = NULL;
    if (ember_decode(c, toks, n, 0) == EMBER_OK && (out = malloc((size_t)nv * sizeof(float))))
        memcpy(out, ember_get_logits(c, -1), (size_t)nv * sizeof(float));
    ember_context_free(c);
    return out;
}

static void isolation(const char *type) {
    const char *model = fixture_path("synthetic/llama-q4_k_m.gguf");
    if (!file_exists(model)) SKIP("fixture missing: %s", model);
    ember_model *m = load(model);
    CHECK(m);
    if (!m) return;
    enum { NS = 3 };
    const int len[NS] = { 30, 20, 25 };
    ember_token toks[NS][40];
    for (int s = 0; s < NS; s++)
        for (int i = 0; i < 40; i++) toks[s][i] = i ? 3 + (i * 53 + s * 101) % 500 : 1;
    ember_context *c = new_ctx(m, NS, type);
    CHECK(c);
    if (!c) { ember_model_free(m); return; }
    for (int s = 0; s < NS; s++) {
        int seq[40];
        for (int i = 0; i < len[s]; i++) seq[i] = s;
        ember_batch b = { len[s], toks[s], seq, NULL };
        CHECK(ember_decode_batch(c, &b) == EMBER_OK);
    }
    snap sn[NS];
    for (int s = 0; s < NS; s++) take(c, s, &sn[s]);
#define OTHERS_SAME(op, target)                                                                \
    for (int s = 0; s < NS; s++)                                                              \
        if (s != (target)) CHECKF(same(c, s, &sn[s]), "%s: %s changed sequence %d", type, op, s)

    /* remove positions 5..9 of sequence 1: a gap, positions kept */
    CHECK(ember_seq_rm(c, 1, 5, 10) == EMBER_OK);
    OTHERS_SAME("seq_rm", 1);
    CHECK(ember_seq_n_past(c, 1) == 15 && ember_seq_pos_min(c, 1) == 0 && ember_seq_pos_max(c, 1) == 19);
    /* close the gap: positions 10.. move back by 5, keys re-rotated */
    CHECK(ember_seq_add(c, 1, 10, -1, -5) == EMBER_OK);
    OTHERS_SAME("seq_add", 1);
    CHECK(ember_seq_n_past(c, 1) == 15 && ember_seq_pos_max(c, 1) == 14);
    /* errors change nothing: a shift that would reorder, bad sequences */
    snap s1;
    take(c, 1, &s1);
    CHECK(ember_seq_add(c, 1, 10, -1, -6) == EMBER_E_INVALID);
    CHECK(ember_seq_add(c, 1, 0, 5, 20) == EMBER_E_INVALID);
    CHECK(ember_seq_add(c, NS, 0, -1, 1) == EMBER_E_INVALID);
    CHECK(ember_seq_cp(c, 0, NS, 0, -1) == EMBER_E_INVALID && ember_seq_keep(c, -1) == EMBER_E_INVALID);
    CHECK(ember_seq_rm(c, NS, 0, -1) == EMBER_E_INVALID);
    CHECK(same(c, 1, &s1));
    OTHERS_SAME("a failed operation", 1);
    free(s1.rows);
    /* a shift that drops what falls below 0 */
    CHECK(ember_seq_add(c, 1, 0, 3, -2) == EMBER_OK);  /* 0, 1, 2 -> (dropped), (dropped), 0 */
    OTHERS_SAME("seq_add dropping", 1);
    CHECK(ember_seq_n_past(c, 1) == 13 && ember_seq_pos_min(c, 1) == 0 && ember_seq_pos_max(c, 1) == 14);
    /* copy the first 12 positions of sequence 0 over sequence 1 */
    CHECK(ember_seq_cp(c, 0, 1, -1, 12) == EMBER_OK);
    OTHERS_SAME("seq_cp", 1);
    CHECK(ember_seq_n_past(c, 1) == 12 && ember_seq_pos_max(c, 1) == 11);
    /* every sequence continues as a fresh context fed what it holds */
    const int nv = ember_model_n_vocab(m);
    ember_token next[NS] = { 77, 88, 99 };
    int seqs[NS] = { 0, 1, 2 };
    int8_t want[NS] = { 1, 1, 1 };
    ember_batch b = { NS, next, seqs, want };
    CHECK(ember_decode_batch(c, &b) == EMBER_OK);
    ember_token expect[NS][41];
    const int held[NS] = { 30, 12, 25 };
    for (int s = 0; s < NS; s++) {
        const int src = s == 1 ? 0 : s;
        memcpy(expect[s], toks[src], (size_t)held[s] * sizeof(ember_token));
        expect[s][held[s]] = next[s];
        float *f = fresh_last(m, type, expect[s], held[s] + 1);
        const float *l = ember_get_logits(c, s);
        CHECKF(f && l && !memcmp(f, l, (size_t)nv * sizeof(float)), "%s: sequence %d differs from a fresh context", type, s);
        free(f);
    }
    for (int s = 0; s < NS; s++) { free(sn[s].rows); take(c, s, &sn[s]); }
    /* keep sequence 2 only; then remove everything */
    CHECK(ember_seq_keep(c, 2) == EMBER_OK);
    CHECK(same(c, 2, &sn[2]) && ember_seq_n_past(c, 0) == 0 && ember_seq_n_past(c, 1) == 0);
    CHECK(ember_seq_pos_min(c, 0) == -1 && ember_seq_pos_max(c, 0) == -1);
    CHECK(ember_seq_rm(c, -1, -1, -1) == EMBER_OK && ember_seq_n_past(c, 2) == 0);
#undef OTHERS_SAME
    for (int s = 0; s < NS; s++) free(sn[s].rows);
    ember_context_free(c);
    ember_model_free(m);
}

TEST(seq_ops_isolation_f16) { isolation("f16"); }
TEST(seq_ops_isolation_q8_0) { isolation("q8_0"); }

/* RoPE by delta positions in double, written from the formula (theta_i = delta * scale *
 * base^(-2i/n_rot); pairs (2i, 2i+1), or (i, i + n_rot/2) for neox). */
static void rope_double(const em_hparams *hp, int swa, double *x, int delta) {
    const double base = swa ? hp->rope_base_swa : hp->rope_base;
    const double fs = swa || hp->rope_freq_scale == 0.0f ? 1.0 : hp->rope_freq_scale;
    for (int h = 0; h < hp->n_head_kv; h++) {
        double *v = x + (size_t)h * hp->head_dim;
        for (int i = 0; i < hp->n_rot / 2; i++) {
            const double th = delta * fs * pow(base, -2.0 * i / hp->n_rot), c = cos(th), sn = sin(th);
            const int i0 = hp->rope_neox ? i : 2 * i, i1 = hp->rope_neox ? i + hp->n_rot / 2 : 2 * i + 1;
            const double x0 = v[i0], x1 = v[i1];
            v[i0] = x0 * c - x1 * sn;
            v[i1] = x0 * sn + x1 * c;
        }
    }
}

/* The Sylvester Hadamard matrix applied in double to each block of b values:
 * H[i][j] = (-1)^popcount(i & j) / sqrt(b) (symmetric and its own inverse). */
static void hadamard_double(double *x, int n, int b) {
    double *y = malloc(sizeof(double) * b);
    for (int o = 0; o < n; o += b) {
        for (int i = 0; i < b; i++) {
            double acc = 0;
            for (int j = 0; j < b; j++) acc += (__builtin_popcount((unsigned)(i & j)) & 1 ? -x[o + j] : x[o + j]);
            y[i] = acc / sqrt((double)b);
        }
        memcpy(x + o, y, sizeof(double) * b);
    }
    free(y);
}

/* llama.cpp's context shift on a context holding n tokens: keep n_keep, remove the next
 * n_discard, move the rest back by n_discard. The f32 reference: every kept key is the
 * stored key (as a float row) rotated by -n_discard in double (for quantized caches, which
 * hold keys Hadamard-rotated as llama.cpp's do, rotated back first and again after), every
 * V row is moved as it is, positions are consecutive; then one more token decodes. Returns the largest key
 * error relative to the row's max |k|, or -1 on a failure. */
static double shift_case(ember_model *m, const char *type, int n, int n_keep, int n_discard) {
    ember_token toks[64];
    for (int i = 0; i < n; i++) toks[i] = i ? 3 + (i * 37) % 200 : 1;
    ember_context *c = new_ctx(m, 1, type);
    if (!c) return -1;
    const em_kv_cache *kv = &c->kv;
    const em_hparams *hp = &m->hp;
    const int kvdim = kv->n_head_kv * kv->head_dim;
    double r = -1;
    snap before;
    if (ember_decode(c, toks, n, 0) == EMBER_OK) {
        take(c, 0, &before);
        if (ember_seq_rm(c, 0, n_keep, n_keep + n_discard) == EMBER_OK &&
            ember_seq_add(c, 0, n_keep + n_discard, -1, -n_discard) == EMBER_OK) {
            r = 0;
            CHECK(ember_seq_n_past(c, 0) == n - n_discard && ember_seq_pos_max(c, 0) == n - n_discard - 1);
            float *row = malloc(sizeof(float) * kvdim), *got = malloc(sizeof(float) * kvdim);
            double *want = malloc(sizeof(double) * kvdim);
            const size_t per = (size_t)n * (kv->row_k + kv->row_v);
            for (int cell = 0; cell < n - n_discard; cell++) {
                const int from = cell < n_keep ? cell : cell + n_discard;
                CHECK(kv->pos[cell] == cell);
                for (int l = 0; l < kv->n_layer; l++) {
                    const char *k0 = before.rows + per * l + (size_t)from * kv->row_k;
                    const char *v0 = before.rows + per * l + (size_t)n * kv->row_k + (size_t)from * kv->row_v;
                    CHECK(!memcmp(em_kv_v(kv, l, 0, cell), v0, kv->row_v));
                    em_dequantize_row(kv->type_k, k0, row, kvdim);
                    em_dequantize_row(kv->type_k, em_kv_k(kv, l, 0, cell), got, kvdim);
                    double mx = 0;
                    for (int i = 0; i < kvdim; i++) { want[i] = row[i]; mx = fmax(mx, fabs(row[i])); }
                    if (from != cell) {
                        if (kv->rot_k) hadamard_double(want, kvdim, kv->rot_k);
                        rope_double(hp, m->layers[l].swa, want, cell - from);
                        if (kv->rot_k) hadamard_double(want, kvdim, kv->rot_k);
                    }
                    for (int i = 0; i < kvdim && mx > 0; i++) r = fmax(r, fabs(got[i] - want[i]) / mx);
                }
            }
            free(row); free(got); free(want);
            const ember_token next = 42;
            CHECK(ember_decode(c, &next, 1, 0) == EMBER_OK && ember_seq_pos_max(c, 0) == n - n_discard);
        }
        free(before.rows);
    }
    ember_context_free(c);
    return r;
}

/* Bounds relative to a key row's max |k|: f32 sees only float rounding of ember's rotation
 * (a few ulps); f16 adds one f16 rounding of the stored result (2^-11 relative, of values
 * up to the row's max); q8_0 re-quantizes the block: half a step of amax/127 plus the f16
 * rounding of the scale, 0.0044 x the block's amax, where the new amax can exceed the old
 * row's max|k| (RoPE between two Hadamard rotations mixes the block); the largest seen
 * over these cases is 0.0063 x max|k|. */
static void shift_model(const char *path) {
    if (!file_exists(path)) SKIP("fixture missing: %s", path);
    ember_model *m = load(path);
    CHECK(m);
    if (!m) return;
    static const struct { const char *type; double tol; } types[] = { { "f32", 1e-5 }, { "f16", 1e-3 }, { "q8_0", 1e-2 } };
    static const int cases[][3] = { { 40, 4, 18 }, { 33, 0, 10 }, { 50, 10, 20 }, { 20, 19, 1 } };
    for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
        double worst = 0;
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            const double r = shift_case(m, types[t].type, cases[i][0], cases[i][1], cases[i][2]);
            CHECKF(r >= 0 && r <= types[t].tol, "%s shift n=%d keep=%d discard=%d: key error %.3g x max|k|",
                   types[t].type, cases[i][0], cases[i][1], cases[i][2], r);
            worst = r > worst ? r : worst;
        }
        printf("  %s cache: re-rotated keys within %.2e x max|k| of the double reference (bound %.0e)\n",
               types[t].type, worst, types[t].tol);
    }
    ember_model_free(m);
}

TEST(shift_llama) { shift_model(fixture_path("synthetic/llama-q4_k_m.gguf")); }
TEST(shift_gemma3) { shift_model("tests/models/synthetic/gemma3-f32.gguf"); }

/* The shift policy: a context of 32 positions with n_keep 4 fed 100 tokens one at a time
 * gives, at every step, logits bit-identical to a full-policy context on which the same
 * llama.cpp steps are done by hand (ember_seq_rm of the 14 oldest after the kept 4, then
 * ember_seq_add of the rest by -14: the operations shift_llama holds to the f32
 * reference); it never runs out, and its positions stay below 32. A batch of 20 into a
 * full context shifts as often as needed; a batch that cannot fit after the kept tokens
 * fails and changes nothing. */
static void shift_policy(ember_model *m, const char *type) {
    enum { NC = 32, KEEP = 4 };
    ember_context *a = new_ctx_full(m, 1, type, NC, "shift", KEEP), *b = new_ctx_full(m, 1, type, NC, NULL, 0);
    CHECK(a && b);
    const int nv = ember_model_n_vocab(m);
    int shifts = 0, mismatch = 0;
    for (int i = 0; a && b && i < 100; i++) {
        const ember_token t = i ? 3 + (i * 29) % 300 : 1;
        if (ember_seq_n_past(b, 0) == NC) {
            const int d = (NC - KEEP) / 2;
            CHECK(ember_seq_rm(b, 0, KEEP, KEEP + d) == EMBER_OK && ember_seq_add(b, 0, KEEP + d, -1, -d) == EMBER_OK);
            shifts++;
        }
        CHECK(ember_decode(a, &t, 1, 0) == EMBER_OK && ember_decode(b, &t, 1, 0) == EMBER_OK);
        const float *la = ember_get_logits(a, -1), *lb = ember_get_logits(b, -1);
        mismatch += !la || !lb || memcmp(la, lb, (size_t)nv * sizeof(float));
        CHECK(ember_seq_pos_max(a, 0) < NC && ember_seq_n_past(a, 0) == ember_seq_n_past(b, 0));
    }
    CHECKF(mismatch == 0, "%s: %d of 100 steps differ from the hand-made shift", type, mismatch);
    CHECK(shifts == 5);  /* at tokens 33, 47, 61, 75, 89 */
    if (a) {
        ember_token big[29];
        for (int i = 0; i < 29; i++) big[i] = 5 + i;
        while (ember_seq_n_past(a, 0) < NC) CHECK(ember_decode(a, big, 1, 0) == EMBER_OK);
        CHECK(ember_decode(a, big, 29, 0) == EMBER_E_CONTEXT_FULL && ember_seq_n_past(a, 0) == NC);
        CHECK(ember_decode(a, big, 20, 0) == EMBER_OK);  /* 32 -> 18 -> 11 cells, then 20 more */
        CHECK(ember_seq_n_past(a, 0) == 31 && ember_seq_pos_max(a, 0) == 30);
    }
    ember_context_free(a);
    ember_context_free(b);
}

TEST(shift_policy_f32_q8_0) {
    const char *model = fixture_path("synthetic/llama-q4_k_m.gguf");
    if (!file_exists(model)) SKIP("fixture missing: %s", model);
    ember_model *m = load(model);
    CHECK(m);
    if (!m) return;
    shift_policy(m, "f32");
    shift_policy(m, "q8_0");
    ember_context_params cp = ember_context_default_params();
    cp.kv_policy = "sideways";
    ember_context *c = NULL;
    CHECK(ember_context_new(m, &cp, &c) == EMBER_E_INVALID && strstr(ember_last_error(), "sideways"));
    ember_model_free(m);
}

/* ---- the bounded policies (sink, elastic) against an f32 reference ------------------- */
/* The reference runs llama's forward pass in double from the model's weights, one token
 * at a time. It keeps every token's K row before RoPE, and its own cache of entries: the K
 * row after RoPE at the entry's position, the V row, the position, the token it came from
 * and its importance. Before each chunk, a step written from the policy's description in
 * kv_cache.h decides which entries stay and where they sit; each token then attends to
 * exactly those entries (and the chunk's tokens before it). The same chunks go through an
 * ember context with the policy; at every chunk the test compares the cache's positions
 * with the reference's and the last token's logits with the reference's. A variant
 * reference that gets the policy slightly wrong (sinks left at their first positions;
 * evicted rows dropped instead of merged) must differ far beyond the bound, so the
 * comparison can fail. */
enum { RMAX = 96, RTOK = 256 };

typedef struct {
    float *an, *wq, *wk, *wv, *wo, *fn, *wg, *wu, *wd;
} rlayer;

typedef struct {
    const ember_model *m;
    const em_hparams *hp;
    int nl, d, nh, nkv, hd, kvdim, nff, nv;
    float *emb, *onorm, *out;
    rlayer *L;
    double *kpre;                 /* (nl, RTOK, kvdim) every token's K before RoPE */
    int n, pos[RMAX], tok[RMAX];  /* the cache's entries */
    double imp[RMAX];
    double *k, *v;                /* (nl, RMAX, kvdim) K after RoPE, V */
    int track_imp;
} rref;

static float *deq(const em_weight *w) {
    float *o = malloc(sizeof(float) * (size_t)(w->rows * w->cols));
    for (int64_t r = 0; r < w->rows; r++)
        em_dequantize_row(w->type, (const char *)w->data + (size_t)r * w->row_bytes, o + r * w->cols, w->cols);
    return o;
}

static void rref_init(rref *R, const ember_model *m) {
    memset(R, 0, sizeof *R);
    R->m = m;
    R->hp = &m->hp;
    R->nl = m->hp.n_layer; R->d = m->hp.n_embd; R->nh = m->hp.n_head; R->nkv = m->hp.n_head_kv;
    R->hd = m->hp.head_dim; R->kvdim = R->nkv * R->hd; R->nff = m->hp.n_ff; R->nv = m->hp.n_vocab;
    R->emb = deq(&m->tok_embd);
    R->onorm = deq(&m->output_norm);
    R->out = deq(&m->output);
    R->L = calloc((size_t)R->nl, sizeof *R->L);
    for (int l = 0; l < R->nl; l++) {
        const em_layer *y = &m->layers[l];
        R->L[l] = (rlayer){ deq(&y->attn_norm), deq(&y->wq), deq(&y->wk), deq(&y->wv), deq(&y->wo),
                            deq(&y->ffn_norm), deq(&y->w_gate), deq(&y->w_up), deq(&y->w_down) };
    }
    R->kpre = calloc((size_t)R->nl * RTOK * R->kvdim, sizeof(double));
    R->k = calloc((size_t)R->nl * RMAX * R->kvdim, sizeof(double));
    R->v = calloc((size_t)R->nl * RMAX * R->kvdim, sizeof(double));
}

static void rref_free(rref *R) {
    free(R->emb); free(R->onorm); free(R->out);
    for (int l = 0; l < R->nl; l++) {
        rlayer *y = &R->L[l];
        free(y->an); free(y->wq); free(y->wk); free(y->wv); free(y->wo); free(y->fn); free(y->wg); free(y->wu); free(y->wd);
    }
    free(R->L); free(R->kpre); free(R->k); free(R->v);
}

static double *rk(rref *R, int l, int e) { return R->k + ((size_t)l * RMAX + e) * R->kvdim; }
static double *rv(rref *R, int l, int e) { return R->v + ((size_t)l * RMAX + e) * R->kvdim; }

/* K of entry e at its position: the token's K before RoPE, rotated (all layers). */
static void rref_place(rref *R, int e) {
    for (int l = 0; l < R->nl; l++) {
        double *k = rk(R, l, e);
        memcpy(k, R->kpre + ((size_t)l * RTOK + R->tok[e]) * R->kvdim, sizeof(double) * R->kvdim);
        rope_double(R->hp, 0, k, R->pos[e]);
    }
}

static void rref_remove(rref *R, int e, int cnt) {
    for (int l = 0; l < R->nl; l++) {
        memmove(rk(R, l, e), rk(R, l, e + cnt), sizeof(double) * R->kvdim * (R->n - e - cnt));
        memmove(rv(R, l, e), rv(R, l, e + cnt), sizeof(double) * R->kvdim * (R->n - e - cnt));
    }
    memmove(R->pos + e, R->pos + e + cnt, sizeof(int) * (R->n - e - cnt));
    memmove(R->tok + e, R->tok + e + cnt, sizeof(int) * (R->n - e - cnt));
    memmove(R->imp + e, R->imp + e + cnt, sizeof(double) * (R->n - e - cnt));
    R->n -= cnt;
}

static void rmsnorm_d(double *o, const double *x, const float *w, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    const double r = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) o[i] = x[i] * r * w[i];
}

static void matvec_d(double *y, const float *W, const double *x, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        double a = 0;
        for (int c = 0; c < cols; c++) a += (double)W[(size_t)r * cols + c] * x[c];
        y[r] = a;
    }
}

/* Token `tok` (the i-th of the text) at the next position; logits into lg if not NULL. */
static void rref_token(rref *R, int tok, int i, double *lg) {
    const int d = R->d, hd = R->hd, nh = R->nh, grp = nh / R->nkv;
    double *x = calloc(d, sizeof *x), *xn = calloc(d, sizeof *xn), *q = calloc((size_t)nh * hd, sizeof *q);
    double *att = calloc((size_t)nh * hd, sizeof *att), *o = calloc(d, sizeof *o), *sc = calloc(RMAX, sizeof *sc);
    double *g = calloc(R->nff, sizeof *g), *u = calloc(R->nff, sizeof *u);
    for (int j = 0; j < d; j++) x[j] = R->emb[(size_t)tok * d + j];
    const int e = R->n++;
    R->pos[e] = e ? R->pos[e - 1] + 1 : 0;
    R->tok[e] = i;
    R->imp[e] = 0;
    for (int l = 0; l < R->nl; l++) {
        const rlayer *y = &R->L[l];
        rmsnorm_d(xn, x, y->an, d, R->hp->rms_eps);
        matvec_d(q, y->wq, xn, nh * hd, d);
        double *kp = R->kpre + ((size_t)l * RTOK + i) * R->kvdim;
        matvec_d(kp, y->wk, xn, R->kvdim, d);
        matvec_d(rv(R, l, e), y->wv, xn, R->kvdim, d);
        memcpy(rk(R, l, e), kp, sizeof(double) * R->kvdim);
        rope_double(R->hp, 0, rk(R, l, e), R->pos[e]);
        for (int h = 0; h < nh; h++) {  /* q's heads, as K's */
            em_hparams one = *R->hp;
            one.n_head_kv = 1;
            rope_double(&one, 0, q + (size_t)h * hd, R->pos[e]);
        }
        for (int h = 0; h < nh; h++) {
            const int kvh = h / grp;
            double mx = -1e300, sum = 0;
            for (int j = 0; j <= e; j++) {
                double s = 0;
                for (int t = 0; t < hd; t++) s += q[(size_t)h * hd + t] * rk(R, l, j)[(size_t)kvh * hd + t];
                sc[j] = s / sqrt((double)hd);
                mx = fmax(mx, sc[j]);
            }
            for (int j = 0; j <= e; j++) sum += sc[j] = exp(sc[j] - mx);
            double *a = att + (size_t)h * hd;
            memset(a, 0, sizeof(double) * hd);
            for (int j = 0; j <= e; j++) {
                const double p = sc[j] / sum;
                if (R->track_imp) R->imp[j] += p;
                for (int t = 0; t < hd; t++) a[t] += p * rv(R, l, j)[(size_t)kvh * hd + t];
            }
        }
        matvec_d(o, y->wo, att, d, nh * hd);
        for (int j = 0; j < d; j++) x[j] += o[j];
        rmsnorm_d(xn, x, y->fn, d, R->hp->rms_eps);
        matvec_d(g, y->wg, xn, R->nff, d);
        matvec_d(u, y->wu, xn, R->nff, d);
        for (int j = 0; j < R->nff; j++) g[j] = g[j] / (1.0 + exp(-g[j])) * u[j];
        matvec_d(o, y->wd, g, d, R->nff);
        for (int j = 0; j < d; j++) x[j] += o[j];
    }
    if (lg) {
        rmsnorm_d(xn, x, R->onorm, d, R->hp->rms_eps);
        matvec_d(lg, R->out, xn, R->nv, d);
    }
    free(x); free(xn); free(q); free(att); free(o); free(sc); free(g); free(u);
}

/* sink, before a chunk of T: the oldest window entries go so that S + W remain with the
 * chunk; positions become the entry indexes when the chunk would reach `limit`; the sinks
 * sit just before the window (unless `wrong`). */
static void rref_sink(rref *R, int T, int S, int W, int limit, int wrong) {
    const int e = R->n + T - (S + W);
    int moved = 0, next = R->n ? R->pos[R->n - 1] + 1 : 0;
    if (e > 0) { rref_remove(R, S, e); moved = 1; }
    if (R->n >= S && next - 1 + T >= limit) {
        for (int c = S; c < R->n; c++) R->pos[c] = c;
        next = R->n;
        moved = 1;
    }
    if (!moved) return;
    const int first = R->n > S ? R->pos[S] : next;
    for (int i = 0; i < S && !wrong; i++) R->pos[i] = first - S + i;
    for (int c = 0; c < R->n; c++) rref_place(R, c);
}

typedef struct { int pending, fix_p, n_seen; } relastic;

/* elastic merge: of the entries after the first S and before the last, the f least
 * important go (importance: the column sum, or with `seen` > 0 the column sum over the
 * seen - token tokens that have attended the entry), each averaged into the kept entry
 * nearest in position (the earlier on a tie), or just dropped when `wrong`. */
static void rref_merge(rref *R, int S, int f, int wrong, int seen) {
    const int n = R->n, s0 = S < n ? S : n, cand = n - 1 - s0;
    if (f > cand) f = cand;
    if (f <= 0) return;
    int gone[RMAX] = { 0 }, to[RMAX];
    for (int k = 0; k < f; k++) {  /* selection: the least important remaining candidate */
        int best = -1;
        for (int c = s0; c < n - 1; c++)
            if (!gone[c] && (best < 0 || (seen ? R->imp[c] / (seen - R->tok[c]) < R->imp[best] / (seen - R->tok[best])
                                                : R->imp[c] < R->imp[best])))
                best = c;
        gone[best] = 1;
    }
    for (int c = 0; c < n; c++) {
        if (!gone[c]) continue;
        int a = c - 1, b = c + 1;
        while (a >= 0 && gone[a]) a--;
        while (gone[b]) b++;
        to[c] = a >= 0 && R->pos[c] - R->pos[a] <= R->pos[b] - R->pos[c] ? a : b;
    }
    for (int a = 0; a < n && !wrong; a++) {
        if (gone[a]) continue;
        int cnt = 1;
        for (int c = 0; c < n; c++) cnt += gone[c] && to[c] == a;
        if (cnt == 1) continue;
        for (int l = 0; l < R->nl; l++)
            for (int t = 0; t < R->kvdim; t++) {
                double sk = rk(R, l, a)[t], sv = rv(R, l, a)[t];
                for (int c = 0; c < n; c++)
                    if (gone[c] && to[c] == a) { sk += rk(R, l, c)[t]; sv += rv(R, l, c)[t]; }
                rk(R, l, a)[t] = sk / cnt;
                rv(R, l, a)[t] = sv / cnt;
            }
        for (int c = 0; c < n; c++)
            if (gone[c] && to[c] == a) R->imp[a] += R->imp[c];
    }
    for (int c = n - 1; c >= 0; c--)
        if (gone[c]) rref_remove(R, c, 1);
}

static void rref_elastic(rref *R, relastic *st, int T, int S, float ratio, int n_ctx, int wrong) {
    const double keep = 1.0 - ratio;
    if (T == 1 && st->pending) {
        rref_merge(R, S, R->n - (int)floor(R->n * keep), wrong, 0);
        st->fix_p = R->n - 25 > S ? R->n - 25 : S;
        st->pending = 0;
    } else if (T == 1 && st->fix_p >= 0) {
        if (R->n + 1 > (int)floor((st->n_seen + 1) * keep) && st->fix_p < R->n - 1) rref_remove(R, st->fix_p, 1);
    }
    if (R->n + T > n_ctx) {
        int f = R->n - (int)floor(R->n * keep);
        if (f < R->n + T - n_ctx) f = R->n + T - n_ctx;
        rref_merge(R, S, f, wrong, st->n_seen);
        if (st->fix_p >= 0) st->fix_p = R->n - 25 > S ? R->n - 25 : S;
    }
    if (T > 1) st->pending = 1;
    st->n_seen += T;
}

typedef struct {
    const char *policy, *type;
    int n_ctx, S, W;
    float ratio;
    int n_ctx_train;   /* sets the sink policy's renumbering limit */
    double tol;        /* largest logit error allowed, x max |logit| */
} pcase;

/* Runs the chunks through ember and the reference (and the wrong variant); returns the
 * largest logit error relative to max |logit|, *wrong_err the wrong variant's. */
static double policy_case(ember_model *m, const pcase *pc, const int *chunks, int n_chunks, double *wrong_err) {
    em_hparams *hp = (em_hparams *)&m->hp;
    const int saved = hp->n_ctx_train;
    hp->n_ctx_train = pc->n_ctx_train;
    ember_context_params cp = ember_context_default_params();
    cp.n_ctx = pc->n_ctx;
    cp.n_threads = 2;
    cp.n_batch = 32;
    cp.type_k = cp.type_v = pc->type;
    cp.kv_policy = pc->policy;
    cp.n_sink = pc->S;
    cp.n_window = pc->W;
    cp.kv_ratio = pc->ratio;
    ember_context *c = NULL;
    const ember_status st = ember_context_new(m, &cp, &c);
    hp->n_ctx_train = saved;
    if (st) { printf("  context: %s\n", ember_last_error()); return -1; }
    const int sink = !strcmp(pc->policy, "sink"), nv = ember_model_n_vocab(m);
    rref R[2];
    relastic es[2] = { { 0, -1, 0 }, { 0, -1, 0 } };
    double *lg = malloc(sizeof(double) * nv);
    double worst = 0, worst_wrong = 0;
    int pos_bad = 0, i = 0;
    for (int v = 0; v < 2; v++) { rref_init(&R[v], m); R[v].track_imp = !sink; }
    for (int ch = 0; ch < n_chunks && i + chunks[ch] <= RTOK; ch++) {
        const int T = chunks[ch];
        ember_token toks[64];
        for (int j = 0; j < T; j++) toks[j] = i + j ? 3 + ((i + j) * 37 + 11) % 500 : 1;
        if (ember_decode(c, toks, T, 0) != EMBER_OK) { printf("  decode: %s\n", ember_last_error()); worst = -1; break; }
        const float *got = ember_get_logits(c, -1);
        for (int v = 0; v < 2; v++) {
            if (sink) rref_sink(&R[v], T, pc->S, pc->W, c->kv.pos_limit, v);
            else rref_elastic(&R[v], &es[v], T, pc->S, pc->ratio, pc->n_ctx, v);
            for (int j = 0; j < T; j++) rref_token(&R[v], toks[j], i + j, j == T - 1 ? lg : NULL);
            double mx = 0, err = 0;
            for (int t = 0; t < nv; t++) { mx = fmax(mx, fabs(lg[t])); err = fmax(err, fabs(got[t] - lg[t])); }
            if (v == 0) worst = fmax(worst, err / mx);
            else worst_wrong = fmax(worst_wrong, err / mx);
        }
        /* the positions the policy assigned are the reference's */
        const int n = c->kv.n_cells[0];
        int same_pos = n == R[0].n;
        for (int e = 0; same_pos && e < n; e++) same_pos = c->kv.pos[e] == R[0].pos[e];
        if (!same_pos && !pos_bad++)
            printf("  %s %s: after token %d the cache holds %d cells, the reference %d entries (or other positions)\n",
                   pc->policy, pc->type, i + T, n, R[0].n);
        CHECK(n <= pc->n_ctx && c->kv.base[0] + n <= pc->n_ctx);
        i += T;
    }
    CHECKF(pos_bad == 0, "%s %s: positions differ from the reference at %d chunks", pc->policy, pc->type, pos_bad);
    for (int v = 0; v < 2; v++) rref_free(&R[v]);
    free(lg);
    ember_context_free(c);
    *wrong_err = worst_wrong;
    return pos_bad ? -1 : worst;
}

static void policy_model(const char *path, const pcase *cases, int n_cases) {
    if (!file_exists(path)) SKIP("fixture missing: %s", path);
    ember_model *m = load(path);
    CHECK(m);
    if (!m) return;
    /* a prompt, then single tokens with a few short chunks among them */
    int chunks[200], n_chunks = 0, total = 0;
    chunks[n_chunks++] = 10;
    total = 10;
    while (total < 180) {
        const int T = n_chunks % 23 == 7 ? 5 : 1;
        chunks[n_chunks++] = T;
        total += T;
    }
    for (int k = 0; k < n_cases; k++) {
        const pcase *pc = &cases[k];
        int cc[200], nc = n_chunks;
        memcpy(cc, chunks, sizeof(int) * nc);
        if (!strcmp(pc->policy, "elastic")) { cc[0] = 16; cc[1] = 8; }  /* a prompt of two chunks */
        double wrong = 0;
        const double r = policy_case(m, pc, cc, nc, &wrong);
        CHECKF(r >= 0 && r <= pc->tol, "%s %s: logits %.3g x max|logit| from the reference (bound %.0e)", pc->policy,
               pc->type, r, pc->tol);
        if (!strcmp(pc->type, "f32"))  /* a quantized cache's own error is of the order of the wrong policy's */
            CHECKF(wrong > 10 * pc->tol, "%s %s: the wrong reference is only %.3g away: the test cannot tell",
                   pc->policy, pc->type, wrong);
        printf("  %s (S %d, W %d, r %.2f, %d cells), %s cache: logits within %.2e x max|logit| of the reference "
               "(bound %.0e; the wrong reference %.2e)\n", pc->policy, pc->S, pc->W, pc->ratio, pc->n_ctx, pc->type,
               r, pc->tol, wrong);
    }
    ember_model_free(m);
}

TEST(sink_policy_reference) {
    static const pcase cases[] = {
        { "sink", "f32", 32, 4, 20, 0, 48, 1e-5 },
        { "sink", "f32", 28, 2, 26, 0, 4096, 1e-5 },  /* no slack: the cells move to the front at every step */
        { "sink", "q8_0", 32, 4, 20, 0, 48, 2e-2 },
    };
    policy_model(fixture_path("synthetic/llama-f32.gguf"), cases, 3);
}

TEST(elastic_policy_reference) {
    static const pcase cases[] = {
        { "elastic", "f32", 48, 4, 0, 0.25f, 0, 1e-5 },
        { "elastic", "f32", 40, 1, 0, 0.5f, 0, 1e-5 },
    };
    policy_model(fixture_path("synthetic/llama-f32.gguf"), cases, 2);
}

/* Endurance smoke on the default model (SmolLM2-135M, when present; with the optional
 * real-model tests, EMBER_MODELS_DIR set; skipped under an emulator): 3000 tokens decoded one at a time (greedy) through a 256-cell cache with the
 * sink and the elastic policy. Every decode succeeds, the cache never holds more than 256
 * cells, and the resident memory after the last token is within 1 MiB of what it was
 * after token 500 (every slot of the cache is in use by then). */
static long rss_kib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = -1, res = -1;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = -1;
        fclose(f);
    }
    return res < 0 ? -1 : res * (sysconf(_SC_PAGESIZE) / 1024);
}

TEST(policy_endurance) {
    const char *path = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (getenv("RUN") && *getenv("RUN")) SKIP_OPTIONAL("under an emulator");
    if (!getenv("EMBER_MODELS_DIR")) SKIP_OPTIONAL("a long run: set EMBER_MODELS_DIR (the real-model tests) to run it");
    if (!file_exists(path)) SKIP_OPTIONAL("default model missing: run scripts/fetch-model.sh");
    ember_model *m = load(path);
    CHECK(m);
    if (!m) return;
    static const char *const policies[] = { "sink", "elastic" };
    for (int k = 0; k < 2; k++) {
        ember_context_params cp = ember_context_default_params();
        cp.n_ctx = 256;
        cp.n_threads = 2;
        cp.kv_policy = policies[k];
        ember_context *c = NULL;
        CHECK(ember_context_new(m, &cp, &c) == EMBER_OK);
        if (!c) continue;
        const int nv = ember_model_n_vocab(m);
        ember_token t[8] = { 1, 504, 3094, 281, 253, 1345, 28, 216 };  /* BOS and a few words */
        int ok = ember_decode(c, t, 8, 0) == EMBER_OK, max_cells = 0, i = 0;
        long rss500 = -1, rss_end = -1;
        for (i = 0; ok && i < 3000; i++) {
            const float *l = ember_get_logits(c, -1);
            ember_token best = 0;
            for (int j = 1; j < nv; j++)
                if (l[j] > l[best]) best = j;
            ok = ember_decode(c, &best, 1, 0) == EMBER_OK;
            if (c->kv.n_cells[0] > max_cells) max_cells = c->kv.n_cells[0];
            if (i == 500) rss500 = rss_kib();
        }
        rss_end = rss_kib();
        CHECKF(ok, "%s: decode %d failed: %s", policies[k], i, ember_last_error());
        CHECK(max_cells <= 256);
        if (rss500 > 0)
            CHECKF(rss_end - rss500 <= 1024, "%s: resident memory grew from %ld to %ld KiB", policies[k], rss500, rss_end);
        printf("  %s: 3000 tokens through 256 cells (at most %d held, last position %d), RSS %ld KiB after 500, "
               "%ld KiB at the end\n", policies[k], max_cells, ember_seq_pos_max(c, 0), rss500, rss_end);
        ember_context_free(c);
    }
    ember_model_free(m);
}

int main(void) {
    RUN(seq_ops_isolation_f16);
    RUN(seq_ops_isolation_q8_0);
    RUN(shift_llama);
    RUN(shift_gemma3);
    RUN(shift_policy_f32_q8_0);
    RUN(sink_policy_reference);
    RUN(elastic_policy_reference);
    RUN(policy_endurance);
    return test_done();
}
