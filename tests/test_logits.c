/* test_logits.c: logits against independent references, per architecture and weight type.
 *  - llama.cpp: the synthetic random-weight models in every weight type (llama) and in
 *    F32/Q8_0/Q4_K_M (qwen2, qwen3), stories260K and TinyStories-656K Q8_0; all positions
 *    of one 32/64-token batch. Types the fixtures lack (Q5_0, Q5_1, IQ4_NL, IQ4_XS, TQ2_0,
 *    TQ1_0) are quantized from the
 *    same F32 model by llama.cpp and committed under tests/models/synthetic, as are a
 *    random-weight gemma3 model (F32, Q8_0) and its logits for a 48-token batch, and
 *    random-weight gemma2 model (F32, Q8_0; attention soft-capping), random-weight phi3
 *    models (fused tensors, LongRoPE at two context sizes), and a
 *    llama model with Llama 3.1's rope_freqs, 2304 positions long.
 *  - numpy: tiny generated models (scripts/make_tiny_models.py, scripts/ref_forward.py),
 *    float64 forward pass over dequantized weights.
 *  - invariants: identical logits for 1, 2, 3 and 7 threads, and for one batch versus
 *    token-by-token decoding.
 * Tolerances are max |diff| over all logits, stated per type in `tol_for` with the reason. */
#include <stdint.h>
#include "ember.h"
#include "test.h"

static ember_model *load(const char *path) {
    ember_model *m = NULL;
    if (ember_model_load(path, NULL, &m)) printf("  load %s: %s\n", path, ember_last_error());
    return m;
}

/* All-position logits of tokens through a fresh context of n_ctx positions (n_threads as
 * given; one_by_one: one token per decode call) with the given K and V cache types.
 * Returns malloc'ed (n x n_vocab) or NULL. */
static float *run_logits_kv_ctx(ember_model *m, const ember_token *toks, int n, int n_threads, int one_by_one,
                                const char *type_k, const char *type_v, int n_ctx) {
    ember_context_params cp = ember_context_default_params();
    cp.n_ctx = n_ctx;
    cp.type_k = type_k;
    cp.type_v = type_v;
    cp.n_threads = n_threads;
    ember_context *c = NULL;
    if (ember_context_new(m, &cp, &c)) { printf("  context: %s\n", ember_last_error()); return NULL; }
    const int nv = ember_model_n_vocab(m);
    float *out = malloc((size_t)n * nv * sizeof(float));
    int ok = out != NULL;
    if (ok && !one_by_one) {
        ok = ember_decode(c, toks, n, 1) == EMBER_OK;
        for (int i = 0; ok && i < n; i++) memcpy(out + (size_t)i * nv, ember_get_logits(c, i), (size_t)nv * sizeof(float));
    }
    for (int i = 0; ok && one_by_one && i < n; i++) {
        ok = ember_decode(c, &toks[i], 1, 0) == EMBER_OK;
        if (ok) memcpy(out + (size_t)i * nv, ember_get_logits(c, -1), (size_t)nv * sizeof(float));
    }
    if (!ok) { printf("  decode: %s\n", ember_last_error()); free(out); out = NULL; }
    ember_context_free(c);
    return out;
}

static float *run_logits(ember_model *m, const ember_token *toks, int n, int n_threads, int one_by_one,
                         const char *kv_type) {
    return run_logits_kv_ctx(m, toks, n, n_threads, one_by_one, kv_type, kv_type, 256);
}

static double max_abs_diff(const float *a, const float *b, size_t n, double *rms) {
    double m = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > m || d != d) m = d;
        s += (double)b[i] * b[i];
    }
    if (rms) *rms = sqrt(s / n);
    return m;
}

/* Tolerance for max |logit diff| against llama.cpp, relative to the rms of llama.cpp's
 * logits. Both engines use the same numerics where it matters (activations quantized to
 * the weight type's Q8 blocks, F16 KV cache, flash-attention-style online softmax with an
 * F16 V accumulator); what remains is summation order (llama.cpp's SIMD and tinyBLAS
 * paths sum blocks in another order than the scalar reference). For float weights that
 * moves logits by well under 1% of their rms. For quantized weights a last-bit difference
 * can push an activation across a Q8 rounding boundary, changing it by 1/127 of its block
 * maximum; on these random 2-layer models that reaches about 6% of the logit rms, so 10%
 * is allowed. A real error (wrong block layout, scale, rope or head mapping) gives
 * differences of the order of the rms itself. */
static double tol_for(const char *name, double rms) {
    if (strstr(name, "bf16")) return 0.02 * rms;  /* bf16 activations keep 8 mantissa bits */
    if (strstr(name, "f32") || strstr(name, "f16") || strstr(name, "stories260K")) return 0.01 * rms;
    return 0.10 * rms;
}

/* model and gold are paths; label names the model in the output and picks the tolerance;
 * the context has n_ctx positions. */
static void check_llamacpp_ctx(const char *model, const char *gold, const char *label, int n, int t0, int n_ctx) {
    ember_model *m = load(model);
    CHECK(m);
    if (!m) return;
    ember_token toks[64];
    toks[0] = 1;
    for (int i = 1; i < n; i++) toks[i] = t0 + i - 1;
    size_t sz;
    float *want = (float *)read_file(gold, &sz);
    const int nv = ember_model_n_vocab(m);
    CHECK(want && sz == (size_t)n * nv * sizeof(float));
    float *got = run_logits_kv_ctx(m, toks, n, 0, 0, NULL, NULL, n_ctx);
    CHECK(got);
    if (got && want && sz == (size_t)n * nv * sizeof(float)) {
        double rms, d = max_abs_diff(got, want, (size_t)n * nv, &rms);
        double tol = tol_for(label, rms);
        printf("  %-48s max|diff| %.3g (logit rms %.3g, tol %.1g)\n", label, d, rms, tol);
        CHECK(d <= tol);
    }
    free(got);
    free(want);
    ember_model_free(m);
}

static void check_llamacpp_at(const char *model, const char *gold, const char *label, int n, int t0) {
    check_llamacpp_ctx(model, gold, label, n, t0, 256);
}

static void check_llamacpp(const char *model_rel, const char *gold_rel, int n, int t0) {
    const char *model = fixture_path(model_rel), *gold = fixture_path(gold_rel);
    if (!file_exists(model) || !file_exists(gold)) SKIP("fixture missing: %s", model_rel);
    check_llamacpp_at(model, gold, model_rel, n, t0);
}

static void syn(const char *name) {
    char m[128], g[160];
    snprintf(m, sizeof m, "synthetic/%s.gguf", name);
    snprintf(g, sizeof g, "golden/synthetic/%s.llamacpp_logits_32x512.f32", name);
    check_llamacpp(m, g, 32, 300);
}

static const char *syn_names[] = {
    "llama-f32", "llama-f16", "llama-bf16", "llama-q8_0", "llama-q4_0", "llama-q4_1",
    "llama-q4_k_m", "llama-q5_k_m", "llama-q6_k", "qwen2-f32", "qwen2-q8_0", "qwen2-q4_k_m",
    "qwen3-f32", "qwen3-q8_0", "qwen3-q4_k_m",
};
static int syn_i;
TEST(synthetic_vs_llamacpp) { syn(syn_names[syn_i]); }

/* The same synthetic F32 model quantized to more types by llama.cpp, committed with their
 * logits (scripts/make_synthetic_quant_goldens.py): tests/models/synthetic, tests/golden/synthetic.
 * IQ4_XS, TQ2_0 and TQ1_0 come out within 5e-7 of llama.cpp's with
 * the ref and x86 kernel sets (the x86 ones repeat its AVX2 float order); NEON's TQ order
 * differs and shows a Q8 rounding flip (9e-3). IQ4_NL: llama.cpp computes
 * this one-batch golden with tinyBLAS (one accumulator per output), its decode with
 * ggml_vec_dot_iq4_nl_q8_0 (two); ember's AVX2/AVX-512 kernels follow the decode order
 * (a column must give the same bits alone or in a batch), ref and NEON the generic one, so
 * here the SIMD kernels show the Q8 rounding flips described above (about 4% of the rms). */
static const char *syn_local_names[] = { "llama-q5_0", "llama-q5_1", "llama-q2_k", "llama-q3_k_s",
                                         "llama-iq4_nl", "llama-iq4_xs", "llama-tq2_0", "llama-tq1_0" };
TEST(synthetic_local_vs_llamacpp) {
    char m[128], g[160], label[128];
    snprintf(m, sizeof m, "tests/models/synthetic/%s.gguf", syn_local_names[syn_i]);
    snprintf(g, sizeof g, "tests/golden/synthetic/%s.llamacpp_logits_32x512.f32", syn_local_names[syn_i]);
    snprintf(label, sizeof label, "tests/models/synthetic/%s.gguf", syn_local_names[syn_i]);
    if (!file_exists(m) || !file_exists(g)) SKIP("missing: %s (scripts/make_synthetic_quant_goldens.py)", m);
    check_llamacpp_at(m, g, label, 32, 300);
}

/* gemma3: a random-weight model written under llama.cpp's names (8 layers, every 6th
 * global, a 16-position sliding window, GeGLU, post-norms, soft-capped tied output), F32
 * and llama.cpp's Q8_0 and Q5_0 of it, 48 tokens so the window decides most rows
 * (scripts/make_gemma3_goldens.py). With the AVX2 kernels all three come out bit-identical
 * to llama.cpp's (AVX2 build), the Q5_0 one (Q5_0 matrices, Q8_0 tied output) within 2e-6
 * with AVX-512 too; its 8 layers of Q8 activation rounding amplify any last-bit difference
 * (GELU table, rope, attention lanes) to ~5% of the logit rms, which is what the ref
 * kernels (another summation order) show. The generic tolerances apply. */
static const char *gemma3_names[] = { "gemma3-f32", "gemma3-q8_0", "gemma3-q5_0" };
TEST(gemma3_vs_llamacpp) {
    char m[128], g[160];
    snprintf(m, sizeof m, "tests/models/synthetic/%s.gguf", gemma3_names[syn_i]);
    snprintf(g, sizeof g, "tests/golden/synthetic/%s.llamacpp_logits_48x512.f32", gemma3_names[syn_i]);
    if (!file_exists(m) || !file_exists(g)) SKIP("missing: %s (scripts/make_gemma3_goldens.py)", m);
    check_llamacpp_at(m, g, m, 48, 300);
}

/* gemma2: a random-weight model under llama.cpp's names (4 layers, every other one local
 * with a 16-position window, GeGLU, post-norms, no q/k norms, attention scores soft-capped
 * at 5 with q/k weights large enough to reach the cap, soft-capped tied output), F32 and
 * llama.cpp's Q8_0, 48 tokens (scripts/make_gemma2_goldens.py). Generic tolerances. */
static const char *gemma2_names[] = { "gemma2-f32", "gemma2-q8_0" };
TEST(gemma2_vs_llamacpp) {
    char m[128], g[160];
    snprintf(m, sizeof m, "tests/models/synthetic/%s.gguf", gemma2_names[syn_i]);
    snprintf(g, sizeof g, "tests/golden/synthetic/%s.llamacpp_logits_48x512.f32", gemma2_names[syn_i]);
    if (!file_exists(m) || !file_exists(g)) SKIP("missing: %s (scripts/make_gemma2_goldens.py)", m);
    check_llamacpp_at(m, g, m, 48, 300);
}

/* phi3: random-weight models under llama.cpp's converter names (fused attn_qkv, gate+up
 * ffn_up), 48 tokens (scripts/make_phi3_goldens.py): Phi-3-mini-4k style with a declared
 * 16-position sliding window that llama.cpp ignores for phi3 (F32, llama.cpp's Q4_0), and
 * LongRoPE (F32, llama.cpp's Q8_0) at n_ctx 256, which takes the short factors, and 512,
 * which takes the long ones (original context 256); both scale cos/sin by the attention
 * factor. The two contexts' logits differ by 4x the logit rms, so a wrong choice of
 * factors fails. The generic tolerances apply. */
static const struct { const char *name; int n_ctx; } phi3_runs[] = {
    { "phi3-f32", 256 }, { "phi3-q4_0", 256 }, { "phi3-longrope-f32", 256 }, { "phi3-longrope-f32", 512 },
    { "phi3-longrope-q8_0", 256 }, { "phi3-longrope-q8_0", 512 },
};
TEST(phi3_vs_llamacpp) {
    char m[128], g[192], label[160];
    const char *name = phi3_runs[syn_i].name;
    const int n_ctx = phi3_runs[syn_i].n_ctx;
    snprintf(m, sizeof m, "tests/models/synthetic/%s.gguf", name);
    snprintf(g, sizeof g, "tests/golden/synthetic/%s%s.llamacpp_logits_48x512.f32", name, n_ctx == 256 ? "" : ".ctx512");
    snprintf(label, sizeof label, "%s (n_ctx %d)", m, n_ctx);
    if (!file_exists(m) || !file_exists(g)) SKIP("missing: %s (scripts/make_phi3_goldens.py)", m);
    check_llamacpp_ctx(m, g, label, 48, 300, n_ctx);
}

/* Llama 3.1/3.2 rope scaling: a small random llama model with a rope_freqs tensor as
 * llama.cpp's converter computes it for rope_type "llama3" (factor 8, low/high frequency
 * factors 1/4, original context 8192; rope base 5e5), F16 by llama.cpp's quantizer, 2304
 * tokens and the logits of the last 64 positions, where the slow pairs' angles (divided by
 * up to 8) have moved far apart (scripts/make_rope_freqs_goldens.py). F16 tolerance; without
 * the factors the logits there differ by about 3x the logit rms. */
TEST(rope_freqs_vs_llamacpp) {
    const char *mp = "tests/models/synthetic/llama31-f16.gguf";
    const char *gp = "tests/golden/synthetic/llama31-f16.llamacpp_logits_last64x512.f32";
    if (!file_exists(mp) || !file_exists(gp)) SKIP("missing: %s (scripts/make_rope_freqs_goldens.py)", mp);
    enum { N = 2304, KEEP = 64 };
    ember_model *m = load(mp);
    CHECK(m);
    if (!m) return;
    static ember_token toks[N];
    toks[0] = 1;
    for (int i = 1; i < N; i++) toks[i] = 3 + (int)((i * 7919L) % 509);
    size_t sz;
    float *want = (float *)read_file(gp, &sz), *got = run_logits_kv_ctx(m, toks, N, 0, 0, NULL, NULL, N);
    const int nv = ember_model_n_vocab(m);
    CHECK(want && got && sz == (size_t)KEEP * nv * sizeof(float));
    if (want && got && sz == (size_t)KEEP * nv * sizeof(float)) {
        double rms, d = max_abs_diff(got + (size_t)(N - KEEP) * nv, want, (size_t)KEEP * nv, &rms);
        double tol = tol_for("f16", rms);
        printf("  %-48s max|diff| %.3g (logit rms %.3g, tol %.1g)\n", "llama31-f16.gguf (positions 2240..2303)", d, rms, tol);
        CHECK(d <= tol);
    }
    free(want);
    free(got);
    ember_model_free(m);
}

TEST(stories260K_vs_llamacpp) {
    /* BOS then the first 63 golden ids */
    const char *model = fixture_path("models/stories260K.gguf");
    const char *gold = fixture_path("golden/stories260K_llamacpp_logits_64x512.f32");
    const char *ids = fixture_path("golden/stories260K_greedy_bos_256.ids");
    if (!file_exists(model) || !file_exists(gold) || !file_exists(ids)) SKIP("fixture missing: stories260K");
    ember_model *m = load(model);
    CHECK(m);
    if (!m) return;
    ember_token toks[64];
    toks[0] = 1;
    FILE *f = fopen(ids, "r");
    for (int i = 1; i < 64; i++) CHECK(fscanf(f, "%d", &toks[i]) == 1);
    fclose(f);
    size_t sz;
    float *want = (float *)read_file(gold, &sz), *got = run_logits(m, toks, 64, 0, 0, NULL);
    CHECK(want && got && sz == 64 * 512 * sizeof(float));
    if (want && got) {
        double rms, d = max_abs_diff(got, want, 64 * 512, &rms);
        printf("  stories260K.gguf max|diff| %.3g (logit rms %.3g)\n", d, rms);
        CHECK(d <= tol_for("stories260K", rms));
    }
    free(want); free(got);
    ember_model_free(m);
}

TEST(tinystories656k_vs_llamacpp) {
    check_llamacpp("models/tinystories656k/TinyStories-656K-Q8_0.gguf",
                   "golden/tinystories656k_q8_0_llamacpp_logits_32x2048.f32", 32, 300);
}

/* Tiny generated models vs a reference: tests/golden/tiny/<name>.tokens and
 * <name>.<ref>.f32 (ref "logits": numpy float64; "llamacpp_logits": llama.cpp with an F32
 * KV cache). ember runs with an F32 KV cache too. */
static void tiny(const char *name, const char *ref, double rel_tol) {
    char mp[256], tp[256], lp[256];
    snprintf(mp, sizeof mp, "tests/models/%s.gguf", name);
    snprintf(tp, sizeof tp, "tests/golden/tiny/%s.tokens", name);
    snprintf(lp, sizeof lp, "tests/golden/tiny/%s.%s.f32", name, ref);
    if (!file_exists(mp) || !file_exists(tp) || !file_exists(lp)) SKIP("tiny model missing: %s", mp);
    ember_model *m = load(mp);
    CHECK(m);
    if (!m) return;
    ember_token toks[256];
    FILE *f = fopen(tp, "r");
    int n = 0;
    while (n < 256 && fscanf(f, "%d", &toks[n]) == 1) n++;
    fclose(f);
    size_t sz;
    float *want = (float *)read_file(lp, &sz), *got = run_logits(m, toks, n, 0, 0, "f32");
    const int nv = ember_model_n_vocab(m);
    CHECK(want && got && sz == (size_t)n * nv * sizeof(float));
    if (want && got && sz == (size_t)n * nv * sizeof(float)) {
        double rms, d = max_abs_diff(got, want, (size_t)n * nv, &rms), tol = rel_tol * rms;
        printf("  %-18s vs %-16s max|diff| %.3g (logit rms %.3g, tol %.2g)\n", name, ref, d, rms, tol);
        CHECK(d <= tol);
    }
    free(want); free(got);
    ember_model_free(m);
}

static char tiny_names[64][256];
static int n_tiny, tiny_i;
TEST(tiny_vs_numpy) {
    const char *n = tiny_names[tiny_i];
    /* numpy computes in float64 on dequantized weights with exact activations; ember
     * keeps the float types' products in float (f32: only rounding, 1e-4 of the rms) but
     * rounds activations to f16 / bf16 / Q8 blocks as llama.cpp does (2^-11, 2^-9 and up
     * to 1/254 of a block maximum). On these random models that error grows to about
     * 0.3%, 1.5% and 10% of the logit rms; a layout or rope error is of the order of the
     * rms itself. */
    double tol = strstr(n, "f32") ? 1e-4 : strstr(n, "bf16") ? 0.03 : strstr(n, "f16") ? 0.01 : 0.15;
    tiny(n, "logits", tol);
}

/* The same models against llama.cpp, which rounds activations exactly as ember does, so
 * only summation order differs: about 1e-6 of the logit rms for F32 and the quantized
 * types (5e-5 allowed). llama.cpp's F16/BF16 matmuls take another path (tinyBLAS) whose
 * results differ by up to 0.1% / 0.9% of the rms (0.5% / 2% allowed). */
TEST(tiny_vs_llamacpp) {
    const char *n = tiny_names[tiny_i];
    double tol = strstr(n, "bf16") ? 0.02 : strstr(n, "f16") ? 0.005 : 5e-5;
    tiny(n, "llamacpp_logits", tol);
}

/* Same logits for any thread count, and for batched vs token-by-token decoding. */
TEST(thread_and_batch_invariance) {
    const char *model = fixture_path("synthetic/llama-q4_k_m.gguf");
    if (!file_exists(model)) SKIP("fixture missing: %s", model);
    ember_model *m = load(model);
    CHECK(m);
    if (!m) return;
    ember_token toks[40];
    for (int i = 0; i < 40; i++) toks[i] = i ? 260 + (i * 37) % 250 : 1;
    const size_t n = 40 * (size_t)ember_model_n_vocab(m);
    float *base = run_logits(m, toks, 40, 1, 0, NULL);
    CHECK(base);
    const int threads[] = { 2, 3, 7 };
    for (int i = 0; base && i < 3; i++) {
        float *l = run_logits(m, toks, 40, threads[i], 0, NULL);
        CHECKF(l && !memcmp(l, base, n * sizeof(float)), "%d threads differ from 1", threads[i]);
        free(l);
    }
    float *seq = base ? run_logits(m, toks, 40, 2, 1, NULL) : NULL;
    CHECKF(seq && !memcmp(seq, base, n * sizeof(float)), "token-by-token differs from one batch");
    free(seq);
    free(base);
    ember_model_free(m);
}

/* Several sequences in one context: tokens of three sequences interleaved in batches of
 * varying make-up (prompt chunks beside single tokens, chunk edges inside a batch) must
 * give every token the same logits bits as decoding its sequence alone. Then per-sequence
 * truncation, and errors that leave every sequence untouched. */
TEST(multi_sequence_batch) {
    const char *model = fixture_path("synthetic/llama-q4_k_m.gguf");
    if (!file_exists(model)) SKIP("fixture missing: %s", model);
    ember_model *m = load(model);
    CHECK(m);
    if (!m) return;
    enum { NS = 3 };
    const int len[NS] = { 30, 20, 25 };
    ember_token toks[NS][30];
    float *ref[NS];
    const int nv = ember_model_n_vocab(m);
    for (int s = 0; s < NS; s++) {
        for (int i = 0; i < len[s]; i++) toks[s][i] = i ? 3 + (i * 53 + s * 101) % 500 : 1;
        ref[s] = run_logits(m, toks[s], len[s], 2, 0, NULL);
        CHECK(ref[s]);
        if (!ref[s]) { for (int k = 0; k < s; k++) free(ref[k]); ember_model_free(m); return; }
    }
    ember_context_params cp = ember_context_default_params();
    cp.n_ctx = 64;
    cp.n_seq = NS;
    cp.n_batch = 16;
    cp.n_threads = 3;
    ember_context *c = NULL;
    CHECK(ember_context_new(m, &cp, &c) == EMBER_OK);
    int fed[NS] = { 0 }, mismatch = 0, steps = 0;
    ember_token bt[64];
    int bs[64], bi[64];
    int8_t want[64];
    uint32_t rng = 12345;
    while (c && (fed[0] < len[0] || fed[1] < len[1] || fed[2] < len[2])) {
        int n = 0;
        for (int k = 0; k < NS; k++) {
            const int s = (k + steps) % NS;  /* rotate which sequence comes first */
            rng = rng * 1664525u + 1013904223u;
            int take = steps == 0 && s == 0 ? 12 : 1 + (int)(rng >> 29);  /* a prompt chunk, then 1..8 */
            if (take > len[s] - fed[s]) take = len[s] - fed[s];
            for (int j = 0; j < take; j++, n++) { bt[n] = toks[s][fed[s] + j]; bs[n] = s; bi[n] = fed[s] + j; want[n] = 1; }
            fed[s] += take;
        }
        ember_batch b = { n, bt, bs, want };
        if (ember_decode_batch(c, &b)) { printf("  decode_batch: %s\n", ember_last_error()); mismatch++; break; }
        for (int j = 0; j < n; j++) {
            const float *l = ember_get_logits(c, j);
            if (!l || memcmp(l, ref[bs[j]] + (size_t)bi[j] * nv, (size_t)nv * sizeof(float))) mismatch++;
        }
        steps++;
    }
    CHECKF(mismatch == 0, "%d tokens differ from decoding their sequence alone", mismatch);
    for (int s = 0; c && s < NS; s++) CHECK(ember_seq_n_past(c, s) == len[s]);
    if (c) {
        /* Rewind sequence 1 to 10 and feed its tail again, only the last token's logits kept. */
        CHECK(ember_seq_truncate(c, 1, 10) == EMBER_OK);
        CHECK(ember_seq_n_past(c, 0) == len[0] && ember_seq_n_past(c, 1) == 10);
        int s1[20] = { 0 };
        for (int i = 0; i < 10; i++) s1[i] = 1;
        ember_batch b = { 10, toks[1] + 10, s1, NULL };
        CHECK(ember_decode_batch(c, &b) == EMBER_OK);
        CHECK(ember_get_logits(c, 0) == NULL);
        const float *l = ember_get_logits(c, -1);
        CHECK(l && !memcmp(l, ref[1] + (size_t)19 * nv, (size_t)nv * sizeof(float)));
        /* Errors change nothing: a bad sequence id, a bad token, one sequence out of room. */
        int bad_seq[2] = { 0, NS };
        ember_token two[2] = { 5, 6 };
        b = (ember_batch){ 2, two, bad_seq, NULL };
        CHECK(ember_decode_batch(c, &b) == EMBER_E_INVALID);
        ember_token big[42];
        int s2[42];
        for (int i = 0; i < 42; i++) { big[i] = 7; s2[i] = i < 2 ? 0 : 2; }
        b = (ember_batch){ 42, big, s2, NULL };  /* 40 more for sequence 2 do not fit in 64 */
        CHECK(ember_decode_batch(c, &b) == EMBER_E_CONTEXT_FULL);
        CHECK(ember_seq_n_past(c, 0) == len[0] && ember_seq_n_past(c, 1) == len[1] && ember_seq_n_past(c, 2) == len[2]);
        CHECK(ember_seq_truncate(c, NS, 0) == EMBER_E_INVALID);
        CHECK(ember_seq_truncate(c, 0, len[0] + 1) == EMBER_E_INVALID);
    }
    ember_context_free(c);
    for (int s = 0; s < NS; s++) free(ref[s]);
    ember_model_free(m);
}

/* Quantized and mixed KV caches: logits bit-identical for 1 and 3 threads and for one
 * batch versus token-by-token (the tokens of a batch attend to the rows as stored, so the
 * two agree exactly), and within a bound of the f32 cache: max |diff| over 40 positions at
 * most `tol` x the rms of the f32-cache logits. This random-weight model amplifies small
 * changes (llama.cpp's own f16 cache is 0.065 x rms from f32 here), so the bounds are about
 * 1.5x what each type shows: bf16 0.077, q8_0 0.095, q4_0 0.45-0.49, f16 0.065. */
TEST(kv_cache_types) {
    const char *model = fixture_path("synthetic/llama-q4_k_m.gguf");
    if (!file_exists(model)) SKIP("fixture missing: %s", model);
    ember_model *m = load(model);
    CHECK(m);
    if (!m) return;
    enum { N = 40 };
    ember_token toks[N];
    for (int i = 0; i < N; i++) toks[i] = i ? 260 + (i * 37) % 250 : 1;
    const size_t n = N * (size_t)ember_model_n_vocab(m);
    float *f32 = run_logits(m, toks, N, 2, 0, "f32");
    CHECK(f32);
    static const struct { const char *k, *v; double tol; } cases[] = {
        { "bf16", "bf16", 0.12 }, { "q8_0", "q8_0", 0.15 }, { "q4_0", "q4_0", 0.75 },
        { "q8_0", "f16", 0.12 }, { "f16", "q4_0", 0.75 }, { "f32", "f16", 0.1 }, { "f16", "f16", 0.1 },
    };
    for (size_t i = 0; f32 && i < sizeof cases / sizeof *cases; i++) {
        float *one = run_logits_kv_ctx(m, toks, N, 1, 0, cases[i].k, cases[i].v, 256);
        float *three = run_logits_kv_ctx(m, toks, N, 3, 0, cases[i].k, cases[i].v, 256);
        float *seq = run_logits_kv_ctx(m, toks, N, 2, 1, cases[i].k, cases[i].v, 256);
        CHECK(one && three && seq);
        if (one && three && seq) {
            CHECKF(!memcmp(one, three, n * sizeof(float)), "K %s V %s: 3 threads differ from 1", cases[i].k, cases[i].v);
            CHECKF(!memcmp(one, seq, n * sizeof(float)), "K %s V %s: token-by-token differs from one batch",
                   cases[i].k, cases[i].v);
            double rms;
            const double d = max_abs_diff(one, f32, n, &rms);
            printf("  K %-4s V %-4s: max |diff| from the f32 cache %.4f (%.4f x rms, bound %.3f)\n", cases[i].k,
                   cases[i].v, d, d / rms, cases[i].tol);
            CHECKF(d <= cases[i].tol * rms, "K %s V %s: %.4g x rms from the f32 cache", cases[i].k, cases[i].v, d / rms);
        }
        free(one); free(three); free(seq);
    }
    free(f32);
    /* bad types are refused with a message */
    ember_context_params cp = ember_context_default_params();
    cp.type_v = "q5_1";
    ember_context *c = NULL;
    CHECK(ember_context_new(m, &cp, &c) == EMBER_E_UNSUPPORTED && !c && strstr(ember_last_error(), "q5_1"));
    ember_model_free(m);
}

int main(void) {
    for (syn_i = 0; syn_i < (int)(sizeof syn_names / sizeof syn_names[0]); syn_i++) RUN(synthetic_vs_llamacpp);
    for (syn_i = 0; syn_i < (int)(sizeof syn_local_names / sizeof syn_local_names[0]); syn_i++)
        RUN(synthetic_local_vs_llamacpp);
    for (syn_i = 0; syn_i < (int)(sizeof gemma3_names / sizeof gemma3_names[0]); syn_i++) RUN(gemma3_vs_llamacpp);
    for (syn_i = 0; syn_i < (int)(sizeof gemma2_names / sizeof gemma2_names[0]); syn_i++) RUN(gemma2_vs_llamacpp);
    for (syn_i = 0; syn_i < (int)(sizeof phi3_runs / sizeof phi3_runs[0]); syn_i++) RUN(phi3_vs_llamacpp);
    RUN(rope_freqs_vs_llamacpp);
    RUN(stories260K_vs_llamacpp);
    RUN(tinystories656k_vs_llamacpp);
    FILE *p = popen("ls tests/models/*.gguf 2>/dev/null", "r");
    char line[256];
    while (p && n_tiny < 64 && fgets(line, sizeof line, p)) {
        char *b = strrchr(line, '/');
        b = b ? b + 1 : line;
        char *e = strstr(b, ".gguf");
        if (e) *e = 0;
        snprintf(tiny_names[n_tiny++], sizeof tiny_names[0], "%s", b);
    }
    if (p) pclose(p);
    for (tiny_i = 0; tiny_i < n_tiny; tiny_i++) RUN(tiny_vs_numpy);
    for (tiny_i = 0; tiny_i < n_tiny; tiny_i++) RUN(tiny_vs_llamacpp);
    RUN(thread_and_batch_invariance);
    RUN(multi_sequence_batch);
    RUN(kv_cache_types);
    return test_done();
}
