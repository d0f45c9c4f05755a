/* test_falcon_h1.c: the falcon-h1 architecture (attention and Mamba-2 SSM heads side by side
 * in every layer) against llama.cpp, and the recurrent state's sequence operations.
 *  - logits: random-weight falcon-h1 models under llama.cpp's converter names (F32, and
 *    llama.cpp's Q8_0 of it; scripts/make_falcon_h1_goldens.py), all 48 positions of the
 *    prompt 1, 300, ..., 346, fed as one batch, one token at a time, and in chunks of 5
 *    (chunked prefill: the state carries across chunks), against llama.cpp's logits of the
 *    same tokens as one batch. Tolerances as test_logits argues them: 1% of the logit rms for
 *    F32 (only summation order differs), 10% for Q8_0 weights (a last-bit difference can move
 *    an activation across a Q8 rounding boundary). The three feedings and 1 vs 3 threads
 *    must agree bit for bit (the scan takes a sequence's tokens one by one in every case).
 *  - greedy: the prompt as one batch, then 32 single-token steps; the ids must equal
 *    llama.cpp's (its smallest top-2 margin is printed: a near-tie below 1e-3 would be
 *    allowed to differ, none is that close).
 *  - sequence operations on a 3-sequence context: interleaved sequences give each one's
 *    solo logits; seq_cp of a whole sequence continues bit-identically; the operations a
 *    recurrent state cannot do (remove a middle range, truncate without a checkpoint, copy
 *    part of a sequence, shift the context) are refused with a message and change nothing;
 *    removing a whole sequence (seq_rm, seq_keep, truncate to 0) restarts it from the zero
 *    state; with checkpoints on, truncating back over the last decode restores the state
 *    exactly; speculative decoding (prompt lookup, and the Q8_0 model drafting for the F32
 *    one) gives plain greedy decoding's tokens, rejected drafts rolled back that way.
 *  - bad files: missing SSM keys and tensors, SSM sizes that do not fit, truncations. */
#include <stdint.h>
#include <unistd.h>
#include "runtime/internal.h"
#include "test.h"

#define N_TOK 48
#define N_GEN 32
#define DIR "tests/models/synthetic/"
#define GOLD "tests/golden/synthetic/"

static ember_token prompt[N_TOK];

static void init_prompt(void) {
    prompt[0] = 1;
    for (int i = 1; i < N_TOK; i++) prompt[i] = 300 + i - 1;
}

static ember_model *load(const char *path) {
    ember_model *m = NULL;
    if (ember_model_load(path, NULL, &m)) printf("  load %s: %s\n", path, ember_last_error());
    return m;
}

static ember_context *new_ctx(ember_model *m, int n_seq, int n_threads, int n_batch, const char *policy) {
    ember_context_params cp = ember_context_default_params();
    cp.n_ctx = 256;
    cp.n_seq = n_seq;
    cp.n_threads = n_threads;
    cp.n_batch = n_batch;
    cp.kv_policy = policy;
    ember_context *c = NULL;
    if (ember_context_new(m, &cp, &c)) printf("  context: %s\n", ember_last_error());
    return c;
}

/* All-position logits of the prompt: one decode (chunk = 0) or decodes of `chunk` tokens. */
static float *prompt_logits(ember_model *m, int n_threads, int chunk) {
    ember_context *c = new_ctx(m, 1, n_threads, 0, NULL);
    if (!c) return NULL;
    const int nv = ember_model_n_vocab(m);
    float *out = malloc((size_t)N_TOK * nv * sizeof(float));
    int ok = out != NULL;
    const int step = chunk ? chunk : N_TOK;
    for (int i0 = 0; ok && i0 < N_TOK; i0 += step) {
        const int n = N_TOK - i0 < step ? N_TOK - i0 : step;
        ok = ember_decode(c, prompt + i0, n, 1) == EMBER_OK;
        for (int i = 0; ok && i < n; i++)
            memcpy(out + (size_t)(i0 + i) * nv, ember_get_logits(c, i), (size_t)nv * sizeof(float));
    }
    if (!ok) { printf("  decode: %s\n", ember_last_error()); free(out); out = NULL; }
    ember_context_free(c);
    return out;
}

static double max_abs_diff(const float *a, const float *b, size_t n, double *rms) {
    double mx = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - b[i]);
        if (d > mx || d != d) mx = d;
        s += (double)b[i] * b[i];
    }
    if (rms) *rms = sqrt(s / n);
    return mx;
}

static const char *names[] = { "falcon-h1-f32", "falcon-h1-q8_0" };
static int cur;

TEST(logits_vs_llamacpp) {
    char mp[128], gp[160];
    snprintf(mp, sizeof mp, DIR "%s.gguf", names[cur]);
    snprintf(gp, sizeof gp, GOLD "%s.llamacpp_logits_48x512.f32", names[cur]);
    if (!file_exists(mp) || !file_exists(gp)) SKIP("missing: %s (scripts/make_falcon_h1_goldens.py)", mp);
    ember_model *m = load(mp);
    CHECK(m);
    if (!m) return;
    const int nv = ember_model_n_vocab(m);
    char desc[64];
    ember_model_desc(m, desc, sizeof desc);
    CHECKF(strstr(desc, "falcon-h1"), "%s", desc);
    size_t sz;
    float *want = (float *)read_file(gp, &sz);
    CHECK(want && sz == (size_t)N_TOK * nv * sizeof(float));
    float *batch = prompt_logits(m, 0, 0), *one = prompt_logits(m, 1, 1), *chunked = prompt_logits(m, 3, 5);
    CHECK(batch && one && chunked);
    if (want && batch && one && chunked && sz == (size_t)N_TOK * nv * sizeof(float)) {
        const size_t n = (size_t)N_TOK * nv;
        double rms, d = max_abs_diff(batch, want, n, &rms);
        const double tol = (strstr(names[cur], "f32") ? 0.01 : 0.10) * rms;
        printf("  %-16s max|diff| %.3g (logit rms %.3g, tol %.2g)\n", names[cur], d, rms, tol);
        CHECK(d <= tol);
        CHECKF(!memcmp(batch, one, n * sizeof(float)), "one token per decode (1 thread) differs from one batch by %g",
               max_abs_diff(one, batch, n, NULL));
        CHECKF(!memcmp(batch, chunked, n * sizeof(float)), "chunks of 5 (3 threads) differ from one batch by %g",
               max_abs_diff(chunked, batch, n, NULL));
    }
    free(want); free(batch); free(one); free(chunked);
    ember_model_free(m);
}

/* "key: v v v" line of a golden text file into vals (at most max); returns the count. */
static int read_list(const char *text, const char *key, double *vals, int max) {
    const char *p = strstr(text, key);
    if (!p) return 0;
    p += strlen(key);
    int n = 0;
    while (n < max && *p && *p != '\n') {
        char *e;
        const double v = strtod(p, &e);
        if (e == p) break;
        vals[n++] = v;
        p = e;
    }
    return n;
}

TEST(greedy_vs_llamacpp) {
    char mp[128], gp[160];
    snprintf(mp, sizeof mp, DIR "%s.gguf", names[cur]);
    snprintf(gp, sizeof gp, GOLD "%s.greedy.txt", names[cur]);
    if (!file_exists(mp) || !file_exists(gp)) SKIP("missing: %s (scripts/make_falcon_h1_goldens.py)", gp);
    size_t sz;
    char *text = (char *)read_file(gp, &sz);
    double ids[N_GEN], margins[N_GEN];
    CHECK(text && read_list(text, "\ngen_ids:", ids, N_GEN) == N_GEN && read_list(text, "\nmargins:", margins, N_GEN) == N_GEN);
    ember_model *m = load(mp);
    ember_context *c = m ? new_ctx(m, 1, 0, 0, NULL) : NULL;
    CHECK(c);
    if (c && text) {
        const int nv = ember_model_n_vocab(m);
        int ok = ember_decode(c, prompt, N_TOK, 0) == EMBER_OK, same = 0;
        double min_margin = 1e9;
        for (int i = 0; ok && i < N_GEN; i++) {
            const float *lg = ember_get_logits(c, -1);
            int best = 0;
            for (int j = 1; j < nv; j++) best = lg[j] > lg[best] ? j : best;
            if (margins[i] < min_margin) min_margin = margins[i];
            same += best == (int)ids[i];
            CHECKF(best == (int)ids[i] || margins[i] < 1e-3, "step %d: %d, llama.cpp %d (margin %.4f)", i, best,
                   (int)ids[i], margins[i]);
            const ember_token t = (ember_token)ids[i];  /* teacher-forced: llama.cpp's id */
            ok = ember_decode(c, &t, 1, 0) == EMBER_OK;
        }
        CHECK(ok);
        printf("  %-16s %d/%d greedy ids identical (llama.cpp's smallest top-2 margin %.4f)\n", names[cur], same, N_GEN,
               min_margin);
    }
    ember_context_free(c);
    ember_model_free(m);
    free(text);
}

/* ---- sequence operations ------------------------------------------------------------- */
static ember_model *seq_model;

/* Logits of the last token after decoding toks (n) into sequence s of c. */
static int feed(ember_context *c, int s, const ember_token *toks, int n, float *last) {
    int seq[N_TOK];
    for (int i = 0; i < n; i++) seq[i] = s;
    ember_batch b = { n, toks, seq, NULL };
    if (ember_decode_batch(c, &b)) { printf("  decode: %s\n", ember_last_error()); return 0; }
    const int nv = ember_model_n_vocab(seq_model);
    if (last) memcpy(last, ember_get_logits(c, n - 1), (size_t)nv * sizeof(float));
    return 1;
}

/* The last logits of a fresh single-sequence context fed toks. */
static int solo(const ember_token *toks, int n, float *last) {
    ember_context *c = new_ctx(seq_model, 1, 2, 0, NULL);
    const int ok = c && feed(c, 0, toks, n, last);
    ember_context_free(c);
    return ok;
}

static int same(const float *a, const float *b) {
    return !memcmp(a, b, (size_t)ember_model_n_vocab(seq_model) * sizeof(float));
}

TEST(sequence_ops) {
    const char *mp = DIR "falcon-h1-f32.gguf";
    if (!file_exists(mp)) SKIP("missing: %s (scripts/make_falcon_h1_goldens.py)", mp);
    seq_model = load(mp);
    CHECK(seq_model);
    if (!seq_model) return;
    const int nv = ember_model_n_vocab(seq_model);
    float *a = malloc((size_t)nv * sizeof(float) * 4), *b = a + nv, *r1 = a + 2 * nv, *r2 = a + 3 * nv;
    ember_token other[16];
    for (int i = 0; i < 16; i++) other[i] = (ember_token)(400 + 3 * i);
    ember_context *c = new_ctx(seq_model, 3, 2, 0, NULL);
    CHECK(c);
    if (!c) { free(a); ember_model_free(seq_model); return; }

    /* interleaved in one batch: each sequence's logits are its solo logits */
    int seq[32];
    ember_token toks[32];
    int8_t want[32];
    for (int i = 0; i < 32; i++) {
        seq[i] = i % 2;
        toks[i] = i % 2 ? other[i / 2] : prompt[i / 2];
        want[i] = i >= 30;
    }
    ember_batch bt = { 32, toks, seq, want };
    CHECK(ember_decode_batch(c, &bt) == EMBER_OK);
    memcpy(a, ember_get_logits(c, 30), (size_t)nv * sizeof(float));
    memcpy(b, ember_get_logits(c, 31), (size_t)nv * sizeof(float));
    CHECK(solo(prompt, 16, r1) && same(a, r1));
    CHECK(solo(other, 16, r2) && same(b, r2));

    /* what a recurrent state cannot do is refused, and nothing changes */
    CHECK(ember_seq_rm(c, 0, 4, 8) == EMBER_E_UNSUPPORTED && strstr(ember_last_error(), "middle"));
    CHECK(ember_seq_rm(c, 0, 12, -1) == EMBER_E_UNSUPPORTED && strstr(ember_last_error(), "checkpoint"));
    CHECK(ember_seq_rm(c, -1, 12, -1) == EMBER_E_UNSUPPORTED);
    CHECK(ember_seq_truncate(c, 1, 10) == EMBER_E_UNSUPPORTED);
    CHECK(ember_seq_cp(c, 0, 2, 0, 8) == EMBER_E_UNSUPPORTED && strstr(ember_last_error(), "whole"));
    CHECK(ember_seq_n_past(c, 0) == 16 && ember_seq_n_past(c, 1) == 16 && ember_seq_n_past(c, 2) == 0);
    CHECK(ember_seq_rm(c, 0, 16, -1) == EMBER_OK && ember_seq_n_past(c, 0) == 16);  /* nothing there: fine */
    CHECK(feed(c, 0, prompt + 16, 4, a) && solo(prompt, 20, r1) && same(a, r1));

    /* seq_cp of a whole sequence: the copy continues as the original does */
    CHECK(ember_seq_cp(c, 0, 2, -1, -1) == EMBER_OK && ember_seq_n_past(c, 2) == 20);
    CHECK(feed(c, 2, other, 3, a) && feed(c, 0, other, 3, b) && same(a, b));
    CHECK(solo((ember_token[]){ 1, 300, 301, 302, 303, 304, 305, 306, 307, 308, 309, 310, 311, 312, 313, 314,
                                315, 316, 317, 318, 400, 403, 406 }, 23, r1) && same(a, r1));

    /* emptying a sequence restarts it from the zero state */
    CHECK(ember_seq_rm(c, 1, -1, -1) == EMBER_OK && ember_seq_n_past(c, 1) == 0);
    CHECK(feed(c, 1, other, 5, a) && solo(other, 5, r1) && same(a, r1));
    CHECK(ember_seq_keep(c, 1) == EMBER_OK && ember_seq_n_past(c, 0) == 0 && ember_seq_n_past(c, 2) == 0);
    CHECK(feed(c, 0, prompt, 6, a) && solo(prompt, 6, r1) && same(a, r1));
    CHECK(ember_seq_truncate(c, 1, 0) == EMBER_OK);
    CHECK(feed(c, 1, prompt, 6, a) && same(a, r1));
    ember_context_free(c);

    /* checkpoints: truncating over the last decode restores the state (speculation) */
    c = new_ctx(seq_model, 1, 2, 0, NULL);
    CHECK(c);
    if (c) {
        CHECK(em_ssm_set_checkpoints(&c->kv.ssm, 6) == EMBER_OK);
        CHECK(feed(c, 0, prompt, 10, NULL) && feed(c, 0, other, 5, NULL));  /* 5 "drafts" */
        CHECK(ember_seq_truncate(c, 0, 12) == EMBER_OK);                     /* 2 accepted */
        CHECK(feed(c, 0, prompt + 20, 3, a));
        ember_token ref[15];
        memcpy(ref, prompt, 10 * sizeof *ref);
        memcpy(ref + 10, other, 2 * sizeof *ref);
        memcpy(ref + 12, prompt + 20, 3 * sizeof *ref);
        CHECK(solo(ref, 15, r1) && same(a, r1));
        CHECK(ember_seq_rm(c, 0, 9, -1) == EMBER_E_UNSUPPORTED);  /* 6 back: beyond the 6 checkpoints 10..15 */
        CHECK(ember_seq_rm(c, 0, 10, -1) == EMBER_OK && ember_seq_n_past(c, 0) == 10);
        CHECK(feed(c, 0, other, 2, a));
        memcpy(ref + 10, other, 2 * sizeof *ref);
        CHECK(solo(ref, 12, r1) && same(a, r1));
        CHECK(ember_seq_truncate(c, 0, 2) == EMBER_E_UNSUPPORTED && strstr(ember_last_error(), "checkpoint"));
        ember_context_free(c);
    }

    /* a full context cannot shift: the state cannot drop its oldest tokens */
    ember_context_params cp = ember_context_default_params();
    cp.n_ctx = 8;
    cp.kv_policy = "shift";
    c = NULL;
    CHECK(ember_context_new(seq_model, &cp, &c) == EMBER_OK);
    if (c) {
        CHECK(ember_decode(c, prompt, 8, 0) == EMBER_OK);
        CHECK(ember_decode(c, prompt + 8, 1, 0) == EMBER_E_CONTEXT_FULL && strstr(ember_last_error(), "recurrent"));
        CHECK(ember_seq_n_past(c, 0) == 8);
        ember_context_free(c);
    }
    free(a);
    ember_model_free(seq_model);
}

/* Speculative decoding (prompt lookup) on the hybrid model: rejected drafts are rolled back
 * through the state's checkpoints (ember_spec_new turns them on), so the greedy output is
 * plain greedy decoding's, token for token; a falcon-h1 draft model rolls back too. */
TEST(speculative_rollback) {
    const char *mp = DIR "falcon-h1-f32.gguf", *dp = DIR "falcon-h1-q8_0.gguf";
    if (!file_exists(mp) || !file_exists(dp)) SKIP("missing: %s (scripts/make_falcon_h1_goldens.py)", mp);
    ember_model *m = load(mp), *dm = load(dp);
    ember_context *c = m ? new_ctx(m, 1, 2, 0, NULL) : NULL, *dc = dm ? new_ctx(dm, 1, 2, 0, NULL) : NULL;
    ember_sampler_params spp = ember_sampler_default_params();
    spp.temp = 0.0f;
    ember_sampler *s = NULL;
    CHECK(c && dc && ember_sampler_new(m, &spp, &s) == EMBER_OK);
    enum { NP = 24, NG = 40 };
    ember_token p[NP], plain[NG], spec[NG];
    p[0] = 1;
    for (int i = 1; i < NP; i++) p[i] = (ember_token)(300 + i % 5);  /* repetitive: lookup finds n-grams */
    for (int mode = 0; s && mode < 2; mode++) {
        ember_context_truncate(c, 0);
        ember_sampler_reset(s);
        int ok = ember_decode(c, p, NP, 0) == EMBER_OK;
        for (int i = 0; ok && i < NG; i++) {
            plain[i] = ember_sampler_sample(s, c, -1);
            ok = i + 1 == NG || ember_decode(c, &plain[i], 1, 0) == EMBER_OK;
        }
        ember_spec_params sp = ember_spec_default_params();
        sp.draft = mode ? dc : NULL;
        ember_spec *spec_ctx = NULL;
        ok = ok && ember_spec_new(c, &sp, &spec_ctx) == EMBER_OK;
        ember_context_truncate(c, 0);
        ember_sampler_reset(s);
        ok = ok && ember_decode(c, p, NP, 0) == EMBER_OK && ember_spec_begin(spec_ctx, p, NP) == EMBER_OK;
        int n = 0;
        if (ok) spec[n++] = ember_sampler_sample(s, c, -1);
        while (ok && n < NG) {
            int k = 0;
            ok = ember_spec_step(spec_ctx, s, spec[n - 1], spec + n, NG - n, &k) == EMBER_OK && k >= 1;
            n += k;
        }
        CHECKF(ok, "%s: %s", mode ? "draft model" : "lookup", ember_last_error());
        CHECK(ok && !memcmp(plain, spec, sizeof plain));
        const ember_spec_stats st = ember_spec_get_stats(spec_ctx);
        printf("  %-11s %d tokens identical to plain greedy: %lld steps, %lld drafted, %lld accepted\n",
               mode ? "draft model" : "lookup", ok ? NG : 0, (long long)st.n_steps, (long long)st.n_drafted,
               (long long)st.n_accepted);
        CHECK(mode ? st.n_accepted > 0 : st.n_drafted > st.n_accepted);  /* accepted drafts; rejected ones */
        ember_spec_free(spec_ctx);
    }
    ember_sampler_free(s);
    ember_context_free(c);
    ember_context_free(dc);
    ember_model_free(m);
    ember_model_free(dm);
}

/* Bad files: a missing SSM key or tensor, SSM sizes that do not divide, and every
 * truncation of the header give a message and a status, never a crash. The patches
 * are made in place on the Q8_0 file (same lengths). */
static ember_status load_patched(unsigned char *d, size_t n, const char *from, const char *to, int value_after) {
    const size_t len = strlen(from);
    unsigned char *hit = NULL;
    for (size_t i = 0; i + len + 8 < n && i < 65536 && !hit; i++)
        if (!memcmp(d + i, from, len)) hit = d + i;
    CHECKF(hit, "%s not found", from);
    if (!hit) return EMBER_OK;
    unsigned char save[64];
    memcpy(save, hit, len + 8);
    if (to) memcpy(hit, to, len);
    else memcpy(hit + len + 4, &value_after, 4);  /* a u32 value: after the key and its type */
    FILE *f = fopen("/tmp/ember_test_falcon_h1.gguf", "wb");
    if (f) { fwrite(d, 1, n, f); fclose(f); }
    memcpy(hit, save, len + 8);
    ember_model *m = NULL;
    const ember_status st = ember_model_load("/tmp/ember_test_falcon_h1.gguf", NULL, &m);
    ember_model_free(m);
    return st;
}

TEST(bad_files) {
    const char *mp = DIR "falcon-h1-q8_0.gguf";
    if (!file_exists(mp)) SKIP("missing: %s (scripts/make_falcon_h1_goldens.py)", mp);
    size_t n;
    unsigned char *d = read_file(mp, &n);
    CHECK(load_patched(d, n, "falcon-h1.ssm.state_size", "falcon-h1.ssm.statx_size", 0) == EMBER_E_FORMAT &&
          strstr(ember_last_error(), "missing key 'falcon-h1.ssm.state_size'"));
    CHECK(load_patched(d, n, "falcon-h1.ssm.group_count", NULL, 3) == EMBER_E_FORMAT &&
          strstr(ember_last_error(), "bad SSM hyper-parameters"));
    CHECK(load_patched(d, n, "falcon-h1.ssm.time_step_rank", NULL, 0) == EMBER_E_FORMAT);
    CHECK(load_patched(d, n, "falcon-h1.ssm.conv_kernel", NULL, 5) == EMBER_E_FORMAT &&
          strstr(ember_last_error(), "ssm_conv1d.weight"));  /* the conv tensor has 4 taps */
    CHECK(load_patched(d, n, "blk.0.ssm_a", "blk.0.ssm_x", 0) == EMBER_E_FORMAT &&
          strstr(ember_last_error(), "missing tensor 'blk.0.ssm_a'"));
    CHECK(load_patched(d, n, "blk.1.ffn_norm", "blk.1.ffn_nors", 0) == EMBER_E_FORMAT &&
          strstr(ember_last_error(), "missing tensor 'blk.1.ffn_norm'"));
    int bad = 0, tried = 0;
    for (size_t len = 0; d && len < n; len += len < 4096 ? 1 : 40961) {
        FILE *f = fopen("/tmp/ember_test_falcon_h1.gguf", "wb");
        if (f) { fwrite(d, 1, len, f); fclose(f); }
        ember_model *m = NULL;
        const ember_status st = ember_model_load("/tmp/ember_test_falcon_h1.gguf", NULL, &m);
        ember_model_free(m);
        tried++;
        bad += st != EMBER_E_FORMAT || !*ember_last_error();
    }
    printf("  %d truncations, %d without a format error\n", tried, bad);
    CHECK(bad == 0);
    free(d);
    unlink("/tmp/ember_test_falcon_h1.gguf");
}

int main(void) {
    init_prompt();
    for (cur = 0; cur < 2; cur++) RUN(logits_vs_llamacpp);
    for (cur = 0; cur < 2; cur++) RUN(greedy_vs_llamacpp);
    RUN(sequence_ops);
    RUN(speculative_rollback);
    RUN(bad_files);
    return test_done();
}
