/* test_realmodels.c: greedy decoding of real GGUF files that no one here made against
 * llama.cpp's. The files are optional (scripts/fetch-models.sh fetches them, 1.8 GB); each
 * absent one is skipped with SKIP_OPTIONAL. Goldens: tests/golden/<name>/greedy.txt from
 * scripts/make_realmodel_goldens.py (llama.cpp, n_ctx 1024, one thread, flash attention,
 * F16 KV cache, prompt as one batch, then 64 argmax steps; margins = llama.cpp's top-1
 * minus top-2 logit per step).
 *
 * Per prompt: ember must tokenize the prompt text to llama.cpp's ids, then its own 64
 * greedy tokens (free-running, from llama.cpp's prompt ids) must be llama.cpp's, or first
 * differ at a step where llama.cpp's own margin is at most NEAR_TIE: there the order in
 * which a kernel adds (ember's AVX-512 against the AVX2 build of llama.cpp that made the
 * goldens) decides the token, and after a different token the two runs continue from
 * different texts. The count of prompts identical over all 64 tokens is printed per model.
 *
 * EMBER_MODELS_DIR overrides models/ (as for scripts/fetch-models.sh);
 * EMBER_REALMODELS=name,name runs only those models. A sanitizer build skips them all:
 * 1.8 GB of weights under ASan or TSan take too long for what they would add. */
#include <stdint.h>
#include "ember.h"
#include "test.h"
#include "golden_file.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif

#define NEAR_TIE 0.5f
#define N_CTX 1024

/* One model: every prompt block of tests/golden/<name>/greedy.txt. */
static void check_model(const char *name, const char *file) {
#ifdef SANITIZED
    SKIP_OPTIONAL("%s: not run in a sanitizer build", name);
#endif
    const char *only = getenv("EMBER_REALMODELS");
    if (only && *only && !in_list(only, name)) SKIP_OPTIONAL("%s: not in EMBER_REALMODELS", name);
    const char *dir = getenv("EMBER_MODELS_DIR");
    char path[1024], gpath[256];
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "models", file);
    snprintf(gpath, sizeof gpath, "tests/golden/%s/greedy.txt", name);
    if (!file_exists(gpath)) SKIP_OPTIONAL("%s: no goldens yet (scripts/make_realmodel_goldens.py %s)", name, name);
    if (!file_exists(path)) {
        if (!strncmp(file, "requant/", 8)) SKIP_OPTIONAL("%s absent (scripts/make-requant-models.sh)", path);
        SKIP_OPTIONAL("%s absent (scripts/fetch-models.sh %s)", path, name);
    }
    char *g = (char *)read_file(gpath, NULL);
    CHECK(g);
    ember_model *m = NULL;
    if (ember_model_load(path, NULL, &m)) printf("  load %s: %s\n", path, ember_last_error());
    CHECK(m);
    if (!m || !g) { free(g); return; }
    ember_context_params cp = ember_context_default_params();
    cp.n_ctx = N_CTX;
    ember_context *c = NULL;
    if (ember_context_new(m, &cp, &c)) printf("  context: %s\n", ember_last_error());
    CHECK(c);
    const int nv = ember_model_n_vocab(m);
    static char prompt[65536], pname[128];
    static ember_token pids[N_CTX], want_p[N_CTX];
    ember_token want_g[256], got[256];
    float margins[256];
    int special = 0, nwp = 0, nwg = 0, nm = 0, blocks = 0, identical = 0, near_ties = 0;
    for (char *line = g; c && line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (!strncmp(line, "name:", 5)) sscanf(line + 5, "%127s", pname);
        else if (!strncmp(line, "prompt_b64:", 11)) b64(line + 11, prompt, sizeof prompt);
        else if (!strncmp(line, "parse_special:", 14)) special = atoi(line + 14);
        else if (!strncmp(line, "prompt_ids:", 11)) nwp = parse_ids(line + 11, want_p, N_CTX);
        else if (!strncmp(line, "gen_ids:", 8)) nwg = parse_ids(line + 8, want_g, 256);
        else if (!strncmp(line, "margins:", 8)) nm = parse_floats(line + 8, margins, 256);
        else if (!strncmp(line, "min_margin:", 11)) {  /* last key of a block we need */
            blocks++;
            int np = ember_tokenize(m, prompt, strlen(prompt), pids, N_CTX, 1, special);
            CHECKF(np == nwp && !memcmp(pids, want_p, (size_t)nwp * sizeof *pids),
                   "%s %s: prompt tokenizes differently (%d vs %d tokens)", name, pname, np, nwp);
            CHECKF(nm == nwg && nwg > 0 && nwp > 0 && nwp + nwg <= N_CTX, "%s %s: bad golden block", name, pname);
            if (nm != nwg || nwg <= 0 || nwp <= 0 || nwp + nwg > N_CTX) continue;
            ember_context_truncate(c, 0);
            int err = ember_decode(c, want_p, nwp, 0) != EMBER_OK, same;
            for (int i = 0; !err && i < nwg; i++) {
                const float *l = ember_get_logits(c, -1);
                if (!l) { err = 1; break; }
                got[i] = argmax(l, nv);
                if (i + 1 < nwg) err = ember_decode(c, &got[i], 1, 0) != EMBER_OK;
            }
            CHECKF(!err, "%s %s: decode: %s", name, pname, ember_last_error());
            if (err) continue;
            for (same = 0; same < nwg && got[same] == want_g[same]; same++) {}
            if (same == nwg) {
                identical++;
                printf("  %-20s %-18s %3d prompt tokens: identical (%d tokens)\n", name, pname, nwp, nwg);
                continue;
            }
            const int tie = margins[same] <= NEAR_TIE;
            near_ties += tie;
            printf("  %-20s %-18s %3d prompt tokens: first difference at step %d (ember %d, llama.cpp %d), "
                   "llama.cpp margin %.4f: %s\n", name, pname, nwp, same, got[same], want_g[same], margins[same],
                   tie ? "near-tie" : "NOT a near-tie");
            CHECKF(tie, "%s %s: ember's token %d differs from llama.cpp's %d at step %d, margin %.4f > %.1f",
                   name, pname, got[same], want_g[same], same, margins[same], NEAR_TIE);
        }
    }
    printf("  %s: %d of %d prompts identical to llama.cpp over %d tokens, %d first differ at a near-tie\n",
           name, identical, blocks, nwg, near_ties);
    CHECKF(blocks >= 8, "%s: only %d golden prompts", name, blocks);
    ember_context_free(c);
    ember_model_free(m);
    free(g);
}

/* names and files as in scripts/fetch-models.sh and scripts/make_realmodel_goldens.py */
TEST(qwen2_5_coder_1_5b_q4_k_m) { check_model("qwen2.5-coder-1.5b", "Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf"); }
TEST(qwen2_5_coder_0_5b_q4_k_m) { check_model("qwen2.5-coder-0.5b", "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf"); }
TEST(gemma3_270m_q4_k_m) { check_model("gemma3-270m", "gemma-3-270m-Q4_K_M.gguf"); }
/* llama-quantize's Q2_K and Q3_K_M of the Qwen files (scripts/make-requant-models.sh) */
TEST(qwen2_5_coder_0_5b_q2_k) { check_model("qwen2.5-coder-0.5b-q2_k", "requant/Qwen2.5-Coder-0.5B-Instruct-Q2_K.gguf"); }
TEST(qwen2_5_coder_0_5b_q3_k_m) { check_model("qwen2.5-coder-0.5b-q3_k_m", "requant/Qwen2.5-Coder-0.5B-Instruct-Q3_K_M.gguf"); }
TEST(qwen2_5_coder_1_5b_q2_k) { check_model("qwen2.5-coder-1.5b-q2_k", "requant/Qwen2.5-Coder-1.5B-Instruct-Q2_K.gguf"); }
TEST(qwen2_5_coder_1_5b_q3_k_m) { check_model("qwen2.5-coder-1.5b-q3_k_m", "requant/Qwen2.5-Coder-1.5B-Instruct-Q3_K_M.gguf"); }

int main(void) {
    RUN(qwen2_5_coder_1_5b_q4_k_m);
    RUN(qwen2_5_coder_0_5b_q4_k_m);
    RUN(gemma3_270m_q4_k_m);
    RUN(qwen2_5_coder_0_5b_q2_k);
    RUN(qwen2_5_coder_0_5b_q3_k_m);
    RUN(qwen2_5_coder_1_5b_q2_k);
    RUN(qwen2_5_coder_1_5b_q3_k_m);
    return test_done();
}
