/* test_speculative.c: what speculative decoding rests on, and speculative decoding itself.
 *  - batch_exact: batches of 1..16 tokens of one sequence (ember_decode_batch with logits
 *    for every position) give logits bit-identical to decoding the tokens one at a time,
 *    for the tiny models and SmolLM2, every thread count tried, two start positions, and
 *    a chunk size (n_batch) that splits the batch.
 *  - sampler_api: the public sample-without-accept, distribution and checkpoint calls.
 *  - greedy_*: speculative greedy output equals plain greedy decoding token for token
 *    (prompt lookup with n-grams 1..4 and a draft model, draft lengths 1..16, adaptive on
 *    and off, penalties on, a context that ends inside a draft).
 *  - sampling_*: the joint distribution of 3 sampled tokens, with and without speculation,
 *    against the exact distribution enumerated from the target's ember_sampler_probs
 *    (chi-square, fail below p = 1e-3), with and without penalties.
 * The tiny models share one 275-token vocabulary, so any of them drafts for another. */
#include <stdint.h>
#include "ember.h"
#include "test.h"

#define SMOL "models/SmolLM2-135M-Instruct.Q4_1.gguf"

static const char *tiny[] = {
    "tests/models/llama-f32.gguf", "tests/models/llama-f16.gguf", "tests/models/llama-bf16.gguf",
    "tests/models/llama-q8_0.gguf", "tests/models/llama-q4_0.gguf", "tests/models/llama-q4_1.gguf",
    "tests/models/llama-q4_K.gguf", "tests/models/llama-q5_K.gguf", "tests/models/llama-q6_K.gguf",
    "tests/models/llama-tied-q8_0.gguf", "tests/models/qwen2-f32.gguf", "tests/models/qwen3-f32.gguf",
};
#define N_TINY (int)(sizeof tiny / sizeof *tiny)

/* Under an emulator (RUN set, as scripts/test-arm.sh does) the loops are cut down: the
 * same checks on fewer prompts, lengths, thread counts and samples. */
static int emulated(void) {
    const char *r = getenv("RUN");
    return r && *r;
}

static ember_model *load(const char *path) {
    ember_model *m = NULL;
    if (ember_model_load(path, NULL, &m)) printf("  %s: %s\n", path, ember_last_error());
    return m;
}

static ember_context *ctx_new_kv(ember_model *m, int n_ctx, int n_threads, int n_batch, const char *kv) {
    ember_context_params cp = ember_context_default_params();
    cp.kv_type = kv;
    cp.n_ctx = n_ctx;
    cp.n_threads = n_threads;
    cp.n_batch = n_batch;
    ember_context *c = NULL;
    if (ember_context_new(m, &cp, &c)) printf("  context: %s\n", ember_last_error());
    return c;
}

static ember_context *ctx_new(ember_model *m, int n_ctx, int n_threads, int n_batch) {
    return ctx_new_kv(m, n_ctx, n_threads, n_batch, NULL);
}

/* ---- batch exactness ---- */

/* toks[0..n) one token per call at 1 thread: the reference rows. */
static float *one_by_one(ember_model *m, const ember_token *toks, int n) {
    ember_context *c = ctx_new(m, 128, 1, 0);
    const int nv = ember_model_n_vocab(m);
    float *out = c ? malloc((size_t)n * nv * sizeof(float)) : NULL;
    for (int i = 0; out && i < n; i++) {
        if (ember_decode(c, &toks[i], 1, 0)) { free(out); out = NULL; break; }
        memcpy(out + (size_t)i * nv, ember_get_logits(c, -1), (size_t)nv * sizeof(float));
    }
    ember_context_free(c);
    return out;
}

/* Every batch of 1..16 tokens starting at position p0 (for each p0 in starts) against the
 * reference rows; returns the number of mismatching batches. */
static int check_batches(ember_model *m, const ember_token *toks, const float *ref, int n_threads, int n_batch,
                         const char *name) {
    const int starts[] = { 1, 29 };
    const int nv = ember_model_n_vocab(m);
    ember_context *c = ctx_new(m, 128, n_threads, n_batch);
    if (!c) return 1;
    int bad = 0;
    int8_t want[16];
    memset(want, 1, sizeof want);
    for (int s = 0; s < 2; s++) {
        const int p0 = starts[s];
        ember_context_truncate(c, 0);
        if (ember_decode(c, toks, p0, 0)) { bad++; break; }
        for (int k = 1; k <= 16; k++) {
            ember_seq_truncate(c, 0, p0);
            ember_batch b = { k, toks + p0, NULL, want };
            if (ember_decode_batch(c, &b)) { bad++; continue; }
            for (int i = 0; i < k; i++) {
                const float *l = ember_get_logits(c, i);
                if (!l || memcmp(l, ref + (size_t)(p0 + i) * nv, (size_t)nv * sizeof(float))) {
                    if (bad < 5)
                        printf("  %s: %d threads, n_batch %d: batch of %d at %d, row %d differs\n", name,
                               n_threads, n_batch, k, p0, i);
                    bad++;
                    break;
                }
            }
        }
    }
    ember_context_free(c);
    return bad;
}

TEST(batch_exact) {
    enum { N = 29 + 16 };
    ember_token toks[N];
    for (int mi = 0; mi < N_TINY; mi++) {
        ember_model *m = load(tiny[mi]);
        CHECK(m);
        if (!m) continue;
        for (int i = 0; i < N; i++) toks[i] = i ? (ember_token)((i * 97 + mi * 13) % 275) : 1;
        float *ref = one_by_one(m, toks, N);
        CHECK(ref);
        const int threads[] = { 1, 2, 3, 4 };
        for (int t = 0; ref && t < (emulated() ? 2 : 4); t++) {
            CHECKF(!check_batches(m, toks, ref, threads[t], 0, tiny[mi]), "%s, %d threads", tiny[mi], threads[t]);
            CHECKF(!check_batches(m, toks, ref, threads[t], 5, tiny[mi]), "%s, %d threads, n_batch 5", tiny[mi],
                   threads[t]);
        }
        free(ref);
        ember_model_free(m);
    }
}

TEST(batch_exact_smollm2) {
    if (!file_exists(SMOL)) SKIP("model missing: %s (scripts/fetch-model.sh)", SMOL);
    ember_model *m = load(SMOL);
    CHECK(m);
    if (!m) return;
    enum { N = 29 + 16 };
    const char *text = "def binary_search(items, target):\n    lo, hi = 0, len(items) - 1\n    while lo <= hi:\n"
                       "        mid = (lo + hi) // 2\n        if items[mid] == target:\n            return mid\n";
    ember_token toks[256];
    int n = ember_tokenize(m, text, strlen(text), toks, 256, 1, 0);
    CHECK(n >= N);
    float *ref = n >= N ? one_by_one(m, toks, N) : NULL;
    CHECK(ref);
    const int threads[] = { 1, 2, 3, 4 };
    for (int t = emulated() ? 1 : 0; ref && t < (emulated() ? 2 : 4); t++)
        CHECKF(!check_batches(m, toks, ref, threads[t], 0, "SmolLM2"), "SmolLM2, %d threads", threads[t]);
    if (ref) CHECK(!check_batches(m, toks, ref, 2, 7, "SmolLM2"));
    free(ref);
    ember_model_free(m);
}

/* ---- the public sampler calls speculation uses ---- */

TEST(sampler_api) {
    ember_model *m = load(tiny[0]);
    CHECK(m);
    if (!m) return;
    ember_context *c = ctx_new(m, 64, 1, 0);
    ember_sampler_params sp = ember_sampler_default_params();
    sp.temp = 0.0f;
    sp.repeat_penalty = 50.0f;  /* a repeated token loses its place */
    sp.repeat_last_n = 8;
    ember_sampler *s = NULL;
    CHECK(c && ember_sampler_new(m, &sp, &s) == EMBER_OK);
    if (!c || !s) { ember_context_free(c); ember_model_free(m); return; }
    ember_token t0 = 1;
    CHECK(ember_decode(c, &t0, 1, 0) == EMBER_OK);
    const float *row = ember_get_logits(c, -1);
    /* sample_row does not record: twice the same; sample does */
    ember_token a = ember_sampler_sample_row(s, row), b = ember_sampler_sample_row(s, row);
    CHECK(a >= 0 && a == b);
    float probs[275];
    CHECK(ember_sampler_probs(s, row, probs) == EMBER_OK && probs[a] == 1.0f);
    ember_sampler_state *st = NULL;
    CHECK(ember_sampler_state_new(s, &st) == EMBER_OK && st);
    CHECK(ember_sampler_sample(s, c, -1) == a);
    CHECK(ember_sampler_sample_row(s, row) != a);  /* a is in the history now */
    CHECK(ember_sampler_restore(s, st, EMBER_SAMPLER_HISTORY | EMBER_SAMPLER_RNG) == EMBER_OK);
    CHECK(ember_sampler_sample_row(s, row) == a);
    ember_sampler_accept(s, a);
    CHECK(ember_sampler_save(s, st) == EMBER_OK);
    ember_sampler_reset(s);
    CHECK(ember_sampler_sample_row(s, row) == a);
    CHECK(ember_sampler_restore(s, st, EMBER_SAMPLER_HISTORY) == EMBER_OK && ember_sampler_sample_row(s, row) != a);
    /* bad arguments */
    CHECK(ember_sampler_restore(s, st, 0) == EMBER_E_INVALID && ember_sampler_restore(s, st, 4) == EMBER_E_INVALID);
    CHECK(ember_sampler_restore(s, NULL, 1) == EMBER_E_INVALID && ember_sampler_save(NULL, st) == EMBER_E_INVALID);
    CHECK(ember_sampler_probs(s, NULL, probs) == EMBER_E_INVALID && ember_sampler_sample_row(s, NULL) == -1);
    ember_sampler_params other = sp;
    other.repeat_last_n = 9;
    ember_sampler *o = NULL;
    CHECK(ember_sampler_new(m, &other, &o) == EMBER_OK);
    CHECK(ember_sampler_restore(o, st, 1) == EMBER_E_INVALID && strstr(ember_last_error(), "repeat_last_n"));
    ember_sampler_free(o);
    ember_sampler_state_free(st);
    ember_sampler_free(s);
    ember_context_free(c);
    ember_model_free(m);
}

/* ---- speculative decoding ---- */

/* Plain decoding: the prompt (accepted into the sampler, as `ember run` does), then n
 * tokens, end-of-generation tokens included. Returns the count made (n unless the context
 * fills up). */
static int gen_plain(ember_context *c, ember_sampler *s, const ember_token *prompt, int np, int n, ember_token *out) {
    ember_context_truncate(c, 0);
    ember_sampler_reset(s);
    for (int i = 0; i < np; i++) ember_sampler_accept(s, prompt[i]);
    if (ember_decode(c, prompt, np, 0)) return -1;
    int i = 0;
    for (; i < n; i++) {
        out[i] = ember_sampler_sample(s, c, -1);
        if (out[i] < 0) return -1;
        if (i + 1 == n || ember_context_n_past(c) >= ember_context_n_ctx(c)) { i++; break; }
        if (ember_decode(c, &out[i], 1, 0)) return -1;
    }
    return i;
}

/* The same through ember_spec_step. */
static int gen_spec(ember_context *c, ember_spec *sp, ember_sampler *s, const ember_token *prompt, int np, int n,
                    ember_token *out) {
    ember_context_truncate(c, 0);
    ember_sampler_reset(s);
    for (int i = 0; i < np; i++) ember_sampler_accept(s, prompt[i]);
    if (ember_decode(c, prompt, np, 0) || ember_spec_begin(sp, prompt, np)) return -1;
    out[0] = ember_sampler_sample(s, c, -1);
    int i = 1;
    while (i < n && ember_context_n_past(c) < ember_context_n_ctx(c)) {
        int k = 0;
        if (ember_spec_step(sp, s, out[i - 1], out + i, n - i, &k) || k < 1 || k > n - i) {
            printf("  step: %s (k %d)\n", ember_last_error(), k);
            return -1;
        }
        i += k;
    }
    return i;
}

/* Prompts for the tiny models: repetitive ones (lookup finds n-grams), and pseudo-random. */
static int tiny_prompt(int which, ember_token *p) {
    int n = 0;
    p[n++] = 1;
    switch (which % 4) {
    case 0: for (int i = 0; i < 24; i++) p[n++] = (ember_token)(10 + i % 5); break;
    case 1: for (int i = 0; i < 30; i++) p[n++] = (ember_token)((i * 37 + which) % 275); break;
    case 2: for (int i = 0; i < 20; i++) p[n++] = (ember_token)(100 + (i % 7) * (i % 3)); break;
    default: for (int i = 0; i < 9; i++) p[n++] = (ember_token)(200 + i); break;
    }
    return n;
}

typedef struct spec_case {
    const char *target, *draft;
    int ngram, n_ctx;
    float rep;
    const char *draft_kv;
    int overlap;  /* ember_spec_params.overlap */
} spec_case;

/* Greedy: every draft length 1..16, adaptive on and off, equals plain decoding. */
static void greedy_cases(const spec_case *cs, int n_cases, int n_prompts, int n_gen, const int *dmaxs, int n_dmax) {
    static const int few[] = { 1, 2, 5, 16 };
    if (emulated() && n_dmax > 4) { dmaxs = few; n_dmax = 4; }
    if (emulated() && n_prompts > 2) n_prompts = 2;
    for (int ci = 0; ci < n_cases; ci++) {
        const spec_case *k = &cs[ci];
        ember_model *m = load(k->target), *dm = k->draft ? load(k->draft) : NULL;
        CHECK(m && (!k->draft || dm));
        if (!m || (k->draft && !dm)) { ember_model_free(m); ember_model_free(dm); continue; }
        const int nt = ember_model_n_vocab(m) == 275 ? 1 : 2;
        ember_context *c = ctx_new(m, k->n_ctx, nt, 0), *dc = dm ? ctx_new_kv(dm, k->n_ctx, 1, 0, k->draft_kv) : NULL;
        ember_sampler_params spp = ember_sampler_default_params();
        spp.temp = 0.0f;
        spp.repeat_penalty = k->rep;
        spp.repeat_last_n = 16;
        ember_sampler *s = NULL;
        CHECK(c && (!dm || dc) && ember_sampler_new(m, &spp, &s) == EMBER_OK);
        ember_token prompt[256], want[256], got[256];
        int64_t drafted = 0, accepted = 0, overlapped = 0;
        for (int pi = 0; s && pi < n_prompts; pi++) {
            int np;
            if (ember_model_n_vocab(m) == 275) np = tiny_prompt(pi, prompt);
            else {
                static const char *texts[] = {
                    "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\ndef mul(a, b):\n",
                    "The capital of France is Paris. The capital of Italy is Rome. The capital of Spain is",
                    "<|im_start|>user\nList three colors.<|im_end|>\n<|im_start|>assistant\n",
                    "for i in range(10):\n    print(i)\nfor j in range(10):\n",
                };
                const char *t = texts[pi % 4];
                np = ember_tokenize(m, t, strlen(t), prompt, 256, 1, 1);
            }
            const int n = gen_plain(c, s, prompt, np, n_gen, want);
            CHECK(n > 0);
            for (int di = 0; n > 0 && di < n_dmax; di++)
                for (int adaptive = 0; adaptive < 2; adaptive++) {
                    const int dmax = dmaxs[di];
                    ember_spec_params p = ember_spec_default_params();
                    p.draft = dc;
                    p.lookup_ngram = k->ngram;
                    p.draft_max = dmax;
                    p.adaptive = adaptive;
                    p.overlap = k->overlap;
                    ember_spec *sp = NULL;
                    if (ember_spec_new(c, &p, &sp)) { CHECKF(0, "spec_new: %s", ember_last_error()); continue; }
                    int g = gen_spec(c, sp, s, prompt, np, n_gen, got);
                    CHECKF(g == n && !memcmp(got, want, (size_t)n * sizeof *got),
                           "%s%s%s ngram %d prompt %d draft_max %d adaptive %d overlap %d: %d tokens vs %d, or different",
                           k->target, k->draft ? " drafted by " : "", k->draft ? k->draft : "", k->ngram, pi, dmax,
                           adaptive, k->overlap, g, n);
                    ember_spec_stats st = ember_spec_get_stats(sp);
                    CHECK(st.n_accepted <= st.n_drafted && st.n_tokens == n - 1);
                    drafted += st.n_drafted;
                    accepted += st.n_accepted;
                    overlapped += st.n_overlapped;
                    CHECK(st.n_overlapped <= st.n_steps && (k->overlap || st.n_overlapped == 0));
                    ember_spec_free(sp);
                }
        }
        printf("  %s%s%s (ngram %d, n_ctx %d, repeat penalty %g%s): %lld drafted, %lld accepted, %lld overlapped\n",
               k->target, k->draft ? " <- " : "", k->draft ? k->draft : "", k->ngram, k->n_ctx, k->rep,
               k->overlap ? ", overlap" : "", (long long)drafted, (long long)accepted, (long long)overlapped);
        /* drafting for itself, every block is accepted and the worker's guess is right */
        if (k->overlap && k->draft && !strcmp(k->draft, k->target) && !k->draft_kv) CHECK(overlapped > 0);
        /* the cases are chosen so that drafts do get accepted, but for an unrelated draft */
        if (!k->draft || !strcmp(k->draft, k->target)) CHECK(accepted > 0);
        ember_sampler_free(s);
        ember_context_free(dc);
        ember_context_free(c);
        ember_model_free(dm);
        ember_model_free(m);
    }
}

static const int all_lengths[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };

TEST(greedy_lookup) {
    const spec_case cs[] = {
        { "tests/models/llama-q8_0.gguf", NULL, 1, 128, 1.0f, NULL, 0 },
        { "tests/models/llama-q4_K.gguf", NULL, 2, 128, 1.0f, NULL, 0 },
        { "tests/models/qwen2-f32.gguf", NULL, 3, 128, 1.0f, NULL, 0 },
        { "tests/models/qwen3-f32.gguf", NULL, 4, 128, 1.0f, NULL, 0 },
        { "tests/models/llama-f32.gguf", NULL, 3, 128, 1.3f, NULL, 0 },  /* penalties */
        { "tests/models/llama-q4_0.gguf", NULL, 3, 50, 1.0f, NULL, 0 },  /* the context fills up mid-draft */
    };
    greedy_cases(cs, (int)(sizeof cs / sizeof *cs), 8, 48, all_lengths, 16);
}

TEST(greedy_draft_model) {
    const spec_case cs[] = {
        { "tests/models/llama-q8_0.gguf", "tests/models/llama-q8_0.gguf", 0, 128, 1.0f, NULL, 0 },  /* drafts for itself */
        /* the same weights with an F32 KV cache: close, mostly accepted */
        { "tests/models/llama-q8_0.gguf", "tests/models/llama-q8_0.gguf", 0, 128, 1.0f, "f32", 0 },
        { "tests/models/llama-q4_0.gguf", "tests/models/llama-q4_0.gguf", 0, 128, 1.3f, "f32", 0 },  /* penalties */
        { "tests/models/llama-q8_0.gguf", "tests/models/qwen2-f32.gguf", 0, 128, 1.0f, NULL, 0 },  /* another model */
        { "tests/models/llama-q8_0.gguf", "tests/models/llama-q8_0.gguf", 0, 45, 1.0f, "f32", 0 },  /* context fills */
    };
    greedy_cases(cs, (int)(sizeof cs / sizeof *cs), 4, 40, all_lengths, 16);
}

/* The overlap (the draft model drafting the next block on its own thread while the target
 * verifies): the same output as plain decoding in the same cases. */
TEST(greedy_draft_overlap) {
    const spec_case cs[] = {
        { "tests/models/llama-q8_0.gguf", "tests/models/llama-q8_0.gguf", 0, 128, 1.0f, NULL, 1 },
        { "tests/models/llama-q8_0.gguf", "tests/models/llama-q8_0.gguf", 0, 128, 1.0f, "f32", 1 },
        { "tests/models/llama-q4_0.gguf", "tests/models/llama-q4_0.gguf", 0, 128, 1.3f, "f32", 1 },
        { "tests/models/llama-q8_0.gguf", "tests/models/qwen2-f32.gguf", 0, 128, 1.0f, NULL, 1 },
        { "tests/models/llama-q8_0.gguf", "tests/models/llama-q8_0.gguf", 0, 45, 1.0f, "f32", 1 },
        { "tests/models/llama-q8_0.gguf", "tests/models/llama-q8_0.gguf", 0, 45, 1.0f, NULL, 1 },
    };
    greedy_cases(cs, (int)(sizeof cs / sizeof *cs), 4, 40, all_lengths, 16);
}

/* ember_spec_draft / ember_spec_accept with the verification inside a batch of two
 * sequences, as the server runs it: sequence 1 speculates (prompt lookup, or a draft
 * model whose context also has two sequences) while sequence 0 decodes plainly, its token
 * before the block on even steps and after it on odd ones; both give their plain greedy
 * tokens. */
TEST(split_batch) {
    ember_model *m = load("tests/models/llama-q8_0.gguf");
    CHECK(m != NULL);
    if (!m) return;
    ember_context_params cp = ember_context_default_params();
    cp.n_ctx = 128;
    cp.n_threads = 1;
    cp.n_seq = 2;
    ember_context *c = NULL, *one = ctx_new(m, 128, 1, 0), *dc = NULL;
    CHECK(ember_context_new(m, &cp, &c) == EMBER_OK && one);
    cp.type_k = cp.type_v = "f32";  /* the draft: close to the target, not equal */
    CHECK(ember_context_new(m, &cp, &dc) == EMBER_OK);
    ember_sampler_params spp = ember_sampler_default_params();
    spp.temp = 0.0f;
    ember_sampler *s0 = NULL, *s1 = NULL;
    CHECK(ember_sampler_new(m, &spp, &s0) == EMBER_OK && ember_sampler_new(m, &spp, &s1) == EMBER_OK);
    for (int way = 0; c && one && dc && s0 && s1 && way < 2; way++)
        for (int pi = 0; pi < 4; pi++) {
            enum { N = 40 };
            ember_token pa[64], pb[64], want_a[N], want_b[N], got_a[N + 1], got_b[N + 70];
            const int na = tiny_prompt(pi + 1, pa), nb = tiny_prompt(pi, pb);
            CHECK(gen_plain(one, s0, pa, na, N, want_a) == N && gen_plain(one, s1, pb, nb, N, want_b) == N);
            ember_seq_truncate(c, 0, 0);
            ember_seq_truncate(c, 1, 0);
            ember_sampler_reset(s0);
            ember_sampler_reset(s1);
            for (int i = 0; i < na; i++) ember_sampler_accept(s0, pa[i]);
            for (int i = 0; i < nb; i++) ember_sampler_accept(s1, pb[i]);
            ember_token bt[128];
            int bs[128];
            int8_t bw[128];
            for (int i = 0; i < na; i++) { bt[i] = pa[i]; bs[i] = 0; bw[i] = i == na - 1; }
            for (int i = 0; i < nb; i++) { bt[na + i] = pb[i]; bs[na + i] = 1; bw[na + i] = i == nb - 1; }
            ember_batch b = { na + nb, bt, bs, bw };
            CHECK(ember_decode_batch(c, &b) == EMBER_OK);
            got_a[0] = ember_sampler_sample(s0, c, na - 1);
            got_b[0] = ember_sampler_sample(s1, c, na + nb - 1);
            ember_spec_params p = ember_spec_default_params();
            p.seq = 1;
            p.lookup_ngram = 2;
            p.draft_max = 5;
            p.draft = way ? dc : NULL;
            ember_spec *sp = NULL;
            CHECK(ember_spec_new(c, &p, &sp) == EMBER_OK && ember_spec_begin(sp, pb, nb) == EMBER_OK);
            int ga = 1, gb = 1, step = 0;
            while (sp && (ga < N || gb < N) && step < 4 * N) {
                const ember_token *toks = NULL;
                int nt = 0, n = 0, row_a = -1, row_b = -1;
                if (gb < N && ember_spec_draft(sp, s1, got_b[gb - 1], N - gb, &toks, &nt)) {
                    CHECKF(0, "draft: %s", ember_last_error());
                    break;
                }
                if (ga < N && step % 2 == 0) { row_a = n; bt[n] = got_a[ga - 1]; bs[n] = 0; bw[n++] = 1; }
                row_b = n;
                for (int i = 0; i < nt; i++) { bt[n] = toks[i]; bs[n] = 1; bw[n++] = 1; }
                if (ga < N && step % 2 == 1) { row_a = n; bt[n] = got_a[ga - 1]; bs[n] = 0; bw[n++] = 1; }
                ember_batch bb = { n, bt, bs, bw };
                if (ember_decode_batch(c, &bb)) { CHECKF(0, "decode: %s", ember_last_error()); break; }
                if (row_a >= 0) got_a[ga++] = ember_sampler_sample(s0, c, row_a);
                if (nt > 0) {
                    if (ember_spec_accept(sp, s1, row_b, got_b + gb, &n) || n < 1 || n > nt) {
                        CHECKF(0, "accept: %s (%d)", ember_last_error(), n);
                        break;
                    }
                    gb += n;
                }
                step++;
            }
            CHECKF(ga >= N && gb >= N && !memcmp(got_a, want_a, sizeof want_a) && !memcmp(got_b, want_b, sizeof want_b),
                   "way %d prompt %d: %d, %d tokens", way, pi, ga, gb);
            ember_spec_stats st = ember_spec_get_stats(sp);
            if (pi == 0) CHECKF(st.n_accepted > 0, "way %d: nothing accepted", way);
            ember_spec_free(sp);
        }
    /* accept without a pending draft, and after the sequence changed, are refused */
    ember_spec_params p = ember_spec_default_params();
    ember_spec *sp = NULL;
    ember_token out[8];
    int n = 0;
    if (c && s0 && ember_spec_new(c, &p, &sp) == EMBER_OK) {
        CHECK(ember_spec_accept(sp, s0, 0, out, &n) == EMBER_E_INVALID && n == 0);
        ember_spec_free(sp);
    }
    ember_sampler_free(s0);
    ember_sampler_free(s1);
    ember_context_free(dc);
    ember_context_free(one);
    ember_context_free(c);
    ember_model_free(m);
}

TEST(greedy_smollm2) {
    if (!file_exists(SMOL)) SKIP("model missing: %s (scripts/fetch-model.sh)", SMOL);
    const spec_case cs[] = { { SMOL, NULL, 3, 256, 1.0f, NULL, 0 } };
    const int lengths[] = { 3, 16, 1, 8 };
    if (emulated()) greedy_cases(cs, 1, 1, 24, lengths, 2);  /* qemu: a few minutes as it is */
    else greedy_cases(cs, 1, 4, 24, lengths, 4);
}

/* ---- sampling: the distribution ---- */

/* Regularized upper incomplete gamma Q(a, x): the series for P below a + 1, Lentz's
 * continued fraction above (the textbook pair). */
static double gamma_q(double a, double x) {
    if (x <= 0.0) return 1.0;
    if (isinf(x)) return 0.0;
    const double lg = lgamma(a);
    if (x < a + 1.0) {
        double term = 1.0 / a, sum = term;
        for (int n = 1; n < 1000; n++) {
            term *= x / (a + n);
            sum += term;
            if (fabs(term) < fabs(sum) * 1e-15) break;
        }
        return 1.0 - sum * exp(-x + a * log(x) - lg);
    }
    double b = x + 1.0 - a, c = 1e300, d = 1.0 / b, h = d;
    for (int i = 1; i < 1000; i++) {
        double an = -i * (i - a);
        b += 2.0;
        d = an * d + b;
        if (fabs(d) < 1e-300) d = 1e-300;
        c = b + an / c;
        if (fabs(c) < 1e-300) c = 1e-300;
        d = 1.0 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1.0) < 1e-15) break;
    }
    return exp(-x + a * log(x) - lg) * h;
}

#define SEQ_LEN 3
#define NV 275
#define N_SEQ (NV * NV * NV)

/* The target's next-token distribution after prompt + prefix, history = prompt + prefix. */
static void target_probs(ember_context *c, ember_sampler *s, const ember_token *prompt, int np, const ember_token *pre,
                         int npre, float *probs) {
    ember_context_truncate(c, np - 1);
    ember_decode(c, prompt + np - 1, 1, 0);
    if (npre) ember_decode(c, pre, npre, 0);
    ember_sampler_reset(s);
    for (int i = 0; i < np; i++) ember_sampler_accept(s, prompt[i]);
    for (int i = 0; i < npre; i++) ember_sampler_accept(s, pre[i]);
    ember_sampler_probs(s, ember_get_logits(c, -1), probs);
}

/* The exact joint distribution of the first SEQ_LEN tokens, as (index, probability) pairs
 * with index = t0 * NV^2 + t1 * NV + t2. Returns the count. */
static int exact_joint(ember_context *c, ember_sampler *s, const ember_token *prompt, int np, int *idx, double *pr) {
    static float p0[NV], p1[NV], p2[NV];
    int n = 0;
    target_probs(c, s, prompt, np, NULL, 0, p0);
    for (int a = 0; a < NV; a++) {
        if (p0[a] <= 0.0f) continue;
        ember_token pre[2] = { a, 0 };
        target_probs(c, s, prompt, np, pre, 1, p1);
        for (int b = 0; b < NV; b++) {
            if (p1[b] <= 0.0f) continue;
            pre[1] = b;
            target_probs(c, s, prompt, np, pre, 2, p2);
            for (int d = 0; d < NV; d++) {
                if (p2[d] <= 0.0f) continue;
                idx[n] = (a * NV + b) * NV + d;
                pr[n++] = (double)p0[a] * p1[b] * p2[d];
            }
        }
    }
    return n;
}

/* One sampled sequence: the first token from the target's logits after the prompt, the
 * rest from speculative steps (sp) or plain decoding (sp NULL). */
static int sample_seq(ember_context *c, ember_spec *sp, ember_sampler *s, const ember_token *prompt, int np,
                      ember_token *out) {
    ember_context_truncate(c, np - 1);
    if (ember_decode(c, prompt + np - 1, 1, 0)) return -1;
    for (int i = 0; i < np; i++) ember_sampler_accept(s, prompt[i]);
    if (sp && ember_spec_begin(sp, prompt, np)) return -1;
    ember_token buf[80];
    buf[0] = ember_sampler_sample(s, c, -1);
    int n = 1;
    while (n < SEQ_LEN) {
        int k = 0;
        if (sp) {
            if (ember_spec_step(sp, s, buf[n - 1], buf + n, 8, &k)) return -1;
        } else {
            if (ember_decode(c, &buf[n - 1], 1, 0)) return -1;
            buf[n] = ember_sampler_sample(s, c, -1);
            k = 1;
        }
        n += k;
    }
    memcpy(out, buf, SEQ_LEN * sizeof *out);
    return 0;
}

/* Chi-square of counts against the exact distribution: bins with an expected count of at
 * least 5, the rest (and anything outside the support) pooled. Returns the p-value. */
static double chi_square(const int *idx, const double *pr, int n_support, const int *cnt_by_seq, int n_samples,
                         int *df_out) {
    double x2 = 0.0, pool_e = 0.0, pool_o = n_samples;
    int bins = 0;
    for (int i = 0; i < n_support; i++) {
        const double e = pr[i] * n_samples;
        const int o = cnt_by_seq[idx[i]];
        if (e >= 5.0) {
            x2 += (o - e) * (o - e) / e;
            bins++;
            pool_o -= o;
        } else pool_e += e;
    }
    if (pool_e > 0.0) { x2 += (pool_o - pool_e) * (pool_o - pool_e) / pool_e; bins++; }
    else if (pool_o > 0.0) x2 = INFINITY;  /* samples outside the support */
    *df_out = bins - 1;
    return gamma_q((bins - 1) / 2.0, x2 / 2.0);
}

typedef struct samp_arm { const char *name, *draft; const char *draft_kv; int lookup; } samp_arm;

static void sampling_case(int penalties) {
    const int n_samples = emulated() ? 1500 : 6000;
    const double alpha = 1e-3;
    const char *target = "tests/models/llama-tied-q8_0.gguf";
    ember_model *m = load(target);
    CHECK(m);
    if (!m) return;
    ember_context *c = ctx_new(m, 64, 1, 0);
    ember_sampler_params spp = ember_sampler_default_params();
    spp.temp = 1.0f;
    spp.top_k = 5;
    spp.top_p = 1.0f;
    spp.min_p = 0.0f;
    spp.seed = 1;
    if (penalties) {
        /* strong enough to reorder the top 5, mild enough that the loop token stays likely */
        spp.repeat_penalty = 1.3f;
        spp.presence_penalty = 0.3f;
        spp.frequency_penalty = 0.1f;
        spp.repeat_last_n = 6;
    }
    ember_sampler *s = NULL;
    CHECK(c && ember_sampler_new(m, &spp, &s) == EMBER_OK);
    /* The prompt: BOS and the model's own greedy continuation, which falls into a loop
     * (209 209 ...), so that lookup finds n-grams the model is likely to continue. */
    ember_token prompt[16];
    int np = 0;
    prompt[np++] = 1;
    for (int i = 0; c && i < 12; i++) {
        ember_decode(c, &prompt[np - 1], 1, 0);
        const float *l = ember_get_logits(c, -1);
        int best = 0;
        for (int v = 1; v < NV; v++) best = l[v] > l[best] ? v : best;
        prompt[np++] = best;
    }
    if (c) {
        ember_context_truncate(c, 0);
        ember_decode(c, prompt, np, 0);
    }
    int *idx = malloc(NV * NV * NV / 64 * sizeof *idx);  /* top_k 5: at most 125 */
    double *pr = malloc(NV * NV * NV / 64 * sizeof *pr);
    int *cnt = calloc(N_SEQ, sizeof *cnt);
    if (!c || !s || !idx || !pr || !cnt) { CHECK(0); goto out; }
    const int n_support = exact_joint(c, s, prompt, np, idx, pr);
    double total = 0.0;
    for (int i = 0; i < n_support; i++) total += pr[i];
    CHECKF(n_support > 10 && n_support <= 125 && fabs(total - 1.0) < 1e-4, "support %d, total %g", n_support, total);
    const samp_arm arms[] = {
        { "plain", NULL, NULL, 0 },
        { "lookup", NULL, NULL, 1 },
        { "draft: another model", "tests/models/qwen2-f32.gguf", NULL, 0 },
        { "draft: same weights, F32 cache", target, "f32", 0 },
        { "power check: the draft model's own samples", "tests/models/qwen2-f32.gguf", NULL, -1 },
    };
    for (size_t a = 0; a < sizeof arms / sizeof *arms; a++) {
        ember_model *dm = arms[a].draft ? load(arms[a].draft) : NULL;
        ember_context *dc = dm ? ctx_new_kv(dm, 64, 1, 0, arms[a].draft_kv) : NULL;
        ember_spec *sp = NULL;
        if (arms[a].lookup >= 0 && (dc || arms[a].lookup)) {
            ember_spec_params p = ember_spec_default_params();
            p.draft = dc;
            p.lookup_ngram = arms[a].lookup ? 2 : 0;
            p.draft_max = 4;
            p.adaptive = 0;
            CHECK(ember_spec_new(c, &p, &sp) == EMBER_OK);
        }
        memset(cnt, 0, N_SEQ * sizeof *cnt);
        int fails = 0;
        for (int i = 0; i < n_samples; i++) {
            ember_sampler_params q = spp;
            q.seed = 1000 + (uint64_t)i;
            ember_sampler *si = NULL;
            ember_token seq[SEQ_LEN];
            if (ember_sampler_new(m, &q, &si)) { fails++; continue; }
            if (arms[a].lookup < 0) {  /* plain sampling from the draft model */
                ember_sampler *sd = NULL;
                fails += ember_sampler_new(dm, &q, &sd) || sample_seq(dc, NULL, sd, prompt, np, seq);
                ember_sampler_free(sd);
            } else fails += sample_seq(c, sp, si, prompt, np, seq) != 0;
            ember_sampler_free(si);
            cnt[(seq[0] * NV + seq[1]) * NV + seq[2]]++;
        }
        int df = 0;
        const double pv = chi_square(idx, pr, n_support, cnt, n_samples, &df);
        ember_spec_stats st = ember_spec_get_stats(sp);
        printf("  penalties %d, %-42s chi-square p = %.4g (df %d)%s; drafted %lld, accepted %lld\n", penalties,
               arms[a].name, pv, df, arms[a].lookup < 0 ? ", must be < 1e-3" : "", (long long)st.n_drafted,
               (long long)st.n_accepted);
        CHECK(fails == 0);
        if (arms[a].lookup < 0) CHECKF(pv < alpha, "the test cannot tell the draft's distribution from the target's");
        else CHECKF(pv >= alpha, "%s: the sampled distribution differs from the target's (p = %g)", arms[a].name, pv);
        if (sp) CHECK(st.n_drafted > 0 && st.n_accepted > 0 && st.n_accepted < st.n_drafted);
        ember_spec_free(sp);
        ember_context_free(dc);
        ember_model_free(dm);
    }
out:
    free(idx);
    free(pr);
    free(cnt);
    ember_sampler_free(s);
    ember_context_free(c);
    ember_model_free(m);
}

TEST(sampling_distribution) { sampling_case(0); }
TEST(sampling_distribution_penalties) { sampling_case(1); }

static int wanted(int argc, char **argv, const char *name) {
    for (int i = 1; i < argc; i++) if (!strcmp(argv[i], name)) return 1;
    return argc < 2;
}

/* Arguments, if any, name the tests to run. */
int main(int argc, char **argv) {
    if (wanted(argc, argv, "batch_exact")) RUN(batch_exact);
    if (wanted(argc, argv, "batch_exact_smollm2")) RUN(batch_exact_smollm2);
    if (wanted(argc, argv, "sampler_api")) RUN(sampler_api);
    if (wanted(argc, argv, "greedy_lookup")) RUN(greedy_lookup);
    if (wanted(argc, argv, "greedy_draft_model")) RUN(greedy_draft_model);
    if (wanted(argc, argv, "greedy_draft_overlap")) RUN(greedy_draft_overlap);
    if (wanted(argc, argv, "split_batch")) RUN(split_batch);
    if (wanted(argc, argv, "greedy_smollm2")) RUN(greedy_smollm2);
    if (wanted(argc, argv, "sampling_distribution")) RUN(sampling_distribution);
    if (wanted(argc, argv, "sampling_distribution_penalties")) RUN(sampling_distribution_penalties);
    return test_done();
}
