/* test_stream.c: layer streaming under a memory budget (ember_model_params.mem_budget,
 * src/runtime/stream.c). The logits of a prompt (fed in several chunks, every token's
 * logits kept) and of a few decoded tokens after it must be bit-identical with and
 * without a budget, for budgets from the minimum (one layer streamed through one buffer)
 * up to one the whole file fits in, prefetch depths 0/1/2 and 1 and 2 threads; a budget
 * below the minimum must fail with EMBER_E_INVALID naming the minimum in bytes. Both ways
 * of streaming run: madvise on the mapping (the default) and pread into buffers on a
 * prefetch thread (EMBER_STREAM=pread).
 * Models: the tiny test models (llama, qwen2, gemma2/3, phi3 with fused tensors), the
 * fixtures' stories260K (5 layers), the default SmolLM2 model (30 layers), and, optional,
 * the real Qwen2.5-Coder-0.5B file (EMBER_MODELS_DIR, default models/). */
#include <stdint.h>
#include "ember.h"
#include "test.h"

#define N_PROMPT 23
#define N_GEN 4

/* Prompt logits (N_PROMPT rows, in chunks of n_batch) then N_GEN greedy steps' logits,
 * with threads and n_batch as given; malloc'ed, rows * n_vocab floats. n_seq 2 puts a
 * second sequence's prompt beside the first in one batch. */
static float *run(ember_model *m, int threads, int n_batch, int n_seq, int *rows_out, ember_mem_plan *plan) {
    ember_context_params cp = ember_context_default_params();
    cp.n_ctx = 64;
    cp.n_threads = threads;
    cp.n_batch = n_batch;
    cp.n_seq = n_seq;
    ember_context *c = NULL;
    if (ember_context_new(m, &cp, &c)) { printf("  context: %s\n", ember_last_error()); return NULL; }
    if (plan) ember_context_mem_plan(c, plan);
    const int nv = ember_model_n_vocab(m);
    const int rows = N_PROMPT * n_seq + N_GEN;
    float *out = malloc((size_t)rows * nv * sizeof(float));
    ember_token tok[2 * N_PROMPT];
    int seq[2 * N_PROMPT];
    int8_t want[2 * N_PROMPT];
    for (int i = 0; i < N_PROMPT * n_seq; i++) {
        tok[i] = (ember_token)((i * 37 + 11) % (nv > 300 ? 300 : nv));
        seq[i] = i % n_seq;
        want[i] = 1;
    }
    ember_batch b = { N_PROMPT * n_seq, tok, seq, want };
    int ok = out && !ember_decode_batch(c, &b);
    for (int i = 0; ok && i < N_PROMPT * n_seq; i++)
        memcpy(out + (size_t)i * nv, ember_get_logits(c, i), (size_t)nv * sizeof(float));
    for (int g = 0; ok && g < N_GEN; g++) {
        const float *l = ember_get_logits(c, -1);
        ember_token best = 0;
        for (int j = 1; j < nv; j++) if (l[j] > l[best]) best = j;
        int s0 = 0;
        ember_batch one = { 1, &best, &s0, NULL };
        ok = !ember_decode_batch(c, &one);
        if (ok) memcpy(out + (size_t)(N_PROMPT * n_seq + g) * nv, ember_get_logits(c, -1), (size_t)nv * sizeof(float));
    }
    if (!ok) { printf("  decode: %s\n", ember_last_error()); free(out); out = NULL; }
    ember_context_free(c);
    *rows_out = rows;
    return out;
}

static ember_model *load(const char *path, uint64_t budget, int prefetch) {
    ember_model_params mp = ember_model_default_params();
    mp.mem_budget = budget;
    mp.prefetch = prefetch;
    ember_model *m = NULL;
    if (ember_model_load(path, &mp, &m)) return NULL;
    return m;
}

/* Every budget in budgets[] (0 ends; 1 stands for the minimum), each prefetch depth and
 * thread count of the lists: logits equal to the unbudgeted run's. Returns the number of
 * runs that streamed. */
static int check_model(const char *path, const int *prefetch, int n_pf, const int *threads, int n_thr,
                       int n_batch, int n_seq, int n_budgets) {
    ember_model *m0 = load(path, 0, 1);
    CHECK(m0);
    if (!m0) return 0;
    int rows = 0;
    float *ref = run(m0, 1, n_batch, n_seq, &rows, NULL);
    CHECK(ref);
    const int nv = ember_model_n_vocab(m0);
    ember_context_params cp = ember_context_default_params();
    cp.n_ctx = 64;
    cp.n_batch = n_batch;
    cp.n_seq = n_seq;
    ember_mem_plan p;
    CHECK(ember_mem_plan_get(m0, &cp, 1, 0, &p) == EMBER_E_INVALID);
    CHECK(p.min_budget > p.fixed + p.context);
    const uint64_t min = p.min_budget, full = p.file + p.context;
    ember_model_free(m0);
    uint64_t budgets[8];
    int nb = 0;
    budgets[nb++] = min;
    budgets[nb++] = min + (min - p.fixed - p.context) + 1;                      /* two layers' room */
    budgets[nb++] = min + (full - min) / 3;
    budgets[nb++] = min + (full - min) * 2 / 3;
    budgets[nb++] = full;                                                      /* all resident */
    if (n_budgets < nb) { budgets[n_budgets - 1] = budgets[nb - 1]; nb = n_budgets; }
    int streamed = 0;
    for (int mode = 0; mode < 2; mode++)  /* mmap with madvise (the default), then pread into buffers */
    for (int bi = 0; ref && bi < nb; bi++)
        for (int pi = 0; pi < n_pf; pi++)
            for (int ti = 0; ti < n_thr; ti++) {
                if (mode) setenv("EMBER_STREAM", "pread", 1);
                else unsetenv("EMBER_STREAM");
                ember_model *m = load(path, budgets[bi], prefetch[pi]);
                CHECKF(m, "%s budget %llu: %s", path, (unsigned long long)budgets[bi], ember_last_error());
                if (!m) continue;
                int r = 0;
                ember_mem_plan plan;
                memset(&plan, 0, sizeof plan);
                float *got = run(m, threads[ti], n_batch, n_seq, &r, &plan);
                CHECKF(got && r == rows && !memcmp(got, ref, (size_t)rows * nv * sizeof(float)),
                       "%s: logits differ under a budget of %llu bytes, prefetch %d, %d threads (plan: %d pinned, "
                       "%d streamed, %d buffers, %s)", path, (unsigned long long)budgets[bi], prefetch[pi], threads[ti],
                       plan.n_pinned, plan.n_streamed, plan.n_buffers, mode ? "pread" : "mmap");
                CHECK(plan.budget == budgets[bi]);
                if (bi == nb - 1 && n_budgets >= 5) CHECK(plan.all_resident);
                if (bi == 0 && !plan.all_resident) CHECK(plan.n_streamed == plan.n_layer && plan.n_buffers == 1 && plan.n_pinned == 0);
                if (!plan.all_resident) {
                    streamed++;
                    CHECK(plan.resident <= plan.budget);
                    CHECK(plan.n_buffers <= prefetch[pi] + 1);
                    CHECK(plan.n_pinned + plan.n_streamed == plan.n_layer);
                }
                free(got);
                ember_model_free(m);
            }
    unsetenv("EMBER_STREAM");
    free(ref);
    return streamed;
}

static const int pf_all[3] = { 0, 1, 2 }, thr_all[2] = { 1, 2 };

TEST(tiny_models_bit_identical) {
    static const char *const files[] = {
        "tests/models/llama-q4_K.gguf", "tests/models/llama-f16.gguf", "tests/models/synthetic/phi3-q4_0.gguf",
        "tests/models/synthetic/gemma2-q8_0.gguf", "tests/models/synthetic/gemma3-q8_0.gguf",
        "tests/models/synthetic/llama31-f16.gguf",
    };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        if (!file_exists(files[i])) { CHECKF(0, "%s missing", files[i]); continue; }
        const int n = check_model(files[i], pf_all, 3, thr_all, 2, 8, 1, 5);
        printf("  %s: %d of 60 runs streamed\n", files[i], n);
        /* llama-q4_K's embeddings and one layer are as large as the file: it never streams */
        if (i) CHECKF(n >= 36, "%s: %d runs streamed", files[i], n);
    }
}

TEST(stories260k_five_layers) {
    const char *path = fixture_path("models/stories260K.gguf");
    if (!file_exists(path)) SKIP("fixture missing: %s", path);
    CHECK(check_model(path, pf_all, 3, thr_all, 2, 5, 1, 5) > 0);
}

TEST(batch_of_sequences) {  /* the server's case: two sequences' tokens in one batch */
    const char *path = fixture_path("models/stories260K.gguf");
    if (!file_exists(path)) SKIP("fixture missing: %s", path);
    CHECK(check_model(path, pf_all + 1, 1, thr_all + 1, 1, 64, 2, 3) > 0);
}

TEST(smollm2_thirty_layers) {
    const char *path = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (!file_exists(path)) SKIP("%s missing (scripts/fetch-model.sh)", path);
    static const int pf[2] = { 0, 2 };
    CHECK(check_model(path, pf, 2, thr_all, 2, 32, 1, 3) > 0);
}

TEST(real_qwen_optional) {
    const char *dir = getenv("EMBER_MODELS_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf", dir && *dir ? dir : "models");
    if (!file_exists(path)) SKIP_OPTIONAL("%s absent (scripts/fetch-models.sh)", path);
    static const int pf[1] = { 1 };
    CHECK(check_model(path, pf, 1, thr_all + 1, 1, 32, 1, 2) > 0);
}

TEST(budget_below_minimum) {
    const char *path = "tests/models/llama-q4_K.gguf";
    ember_model *m0 = load(path, 0, 1);
    CHECK(m0);
    if (!m0) return;
    ember_mem_plan p;
    ember_context_params cp = ember_context_default_params();
    cp.n_ctx = 64;
    CHECK(ember_mem_plan_get(m0, &cp, 1000, 1, &p) == EMBER_E_INVALID);
    char want[64];
    snprintf(want, sizeof want, "minimum of %llu bytes", (unsigned long long)p.min_budget);
    CHECKF(strstr(ember_last_error(), want), "'%s' lacks '%s'", ember_last_error(), want);
    ember_model_free(m0);
    /* at load: too small for the weights alone */
    ember_model *m = load(path, 1000, 1);
    CHECK(!m);
    CHECKF(strstr(ember_last_error(), "below the minimum of"), "%s", ember_last_error());
    ember_model_free(m);
    /* at context creation: one byte short of what the context needs */
    m = load(path, p.min_budget - 1, 1);
    CHECKF(m, "%s", ember_last_error());
    ember_context *c = NULL;
    CHECK(ember_context_new(m, &cp, &c) == EMBER_E_INVALID && !c);
    CHECKF(strstr(ember_last_error(), want), "'%s' lacks '%s'", ember_last_error(), want);
    ember_context_free(c);
    ember_model_free(m);
    /* exactly the minimum runs */
    m = load(path, p.min_budget, 1);
    CHECK(m && !ember_context_new(m, &cp, &c) && c);
    ember_context_free(c);
    ember_model_free(m);
    /* bad prefetch, and a llama2.c checkpoint cannot stream */
    ember_model_params mp = ember_model_default_params();
    mp.mem_budget = 1 << 30;
    mp.prefetch = -1;
    m = NULL;
    CHECK(ember_model_load(path, &mp, &m) == EMBER_E_INVALID && !m);
    const char *bin = fixture_path("models/stories260K.bin");
    if (file_exists(bin)) {
        mp.prefetch = 1;
        CHECK(ember_model_load(bin, &mp, &m) == EMBER_E_UNSUPPORTED && !m);
    }
}

TEST(disk_bandwidth) {
    ember_model *m = load("tests/models/llama-q4_K.gguf", 0, 1);
    CHECK(m);
    double gbps = 0;
    CHECK(m && !ember_model_disk_bandwidth(m, 0, &gbps) && gbps > 0);
    ember_model_free(m);
}

int main(void) {
    RUN(tiny_models_bit_identical);
    RUN(stories260k_five_layers);
    RUN(batch_of_sequences);
    RUN(smollm2_thirty_layers);
    RUN(real_qwen_optional);
    RUN(budget_below_minimum);
    RUN(disk_bandwidth);
    return test_done();
}
