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

static ember_model *load(const char *path) {
    ember_model *m = NULL;
    if (ember_model_load(path, NULL, &m)) printf("  %s: %s\n", path, ember_last_error());
    return m;
}

static ember_context *ctx_new(ember_model *m, int n_ctx, int n_threads, int n_batch) {
    ember_context_params cp = ember_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_threads = n_threads;
    cp.n_batch = n_batch;
    ember_context *c = NULL;
    if (ember_context_new(m, &cp, &c)) printf("  context: %s\n", ember_last_error());
    return c;
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
        for (int t = 0; ref && t < 4; t++) {
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
    for (int t = 0; ref && t < 4; t++)
        CHECKF(!check_batches(m, toks, ref, threads[t], 0, "SmolLM2"), "SmolLM2, %d threads", threads[t]);
    if (ref) CHECK(!check_batches(m, toks, ref, 2, 7, "SmolLM2"));
    free(ref);
    ember_model_free(m);
}

int main(void) {
    RUN(batch_exact);
    RUN(batch_exact_smollm2);
    return test_done();
}
