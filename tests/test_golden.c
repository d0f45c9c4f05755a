/* test_golden.c: end-to-end greedy decoding against independent references.
 *  - stories260K (llama2.c .bin + tok512.bin, and the GGUF): llama2.c run.c's greedy ids
 *    and text from BOS (256) and from "Once upon a time" (128 positions).
 *  - TinyStories-656K Q8_0: llama.cpp's greedy continuations of two prompts.
 *  - SmolLM2-135M-Instruct Q4_1 (default model, fetched): llama.cpp's greedy ids for the
 *    prompts in tests/golden/smollm2/greedy.txt (made by scripts/make_smollm2_goldens.py). */
#include <stdint.h>
#include "ember.h"
#include "test.h"
#include "golden_file.h"

static ember_model *load(const char *path, const char *tok) {
    ember_model_params mp = ember_model_default_params();
    mp.tokenizer_path = tok;
    ember_model *m = NULL;
    if (ember_model_load(path, &mp, &m)) printf("  load %s: %s\n", path, ember_last_error());
    return m;
}

static ember_context *new_ctx(ember_model *m, int n_threads) {
    ember_context_params cp = ember_context_default_params();
    cp.n_ctx = 512;
    cp.n_threads = n_threads;
    ember_context *c = NULL;
    if (ember_context_new(m, &cp, &c)) printf("  context: %s\n", ember_last_error());
    return c;
}

/* Feeds prompt, then appends n_gen greedy tokens to out (argmax of the logits). */
static int greedy(ember_context *c, const ember_model *m, const ember_token *prompt, int n_prompt,
                  int n_gen, ember_token *out) {
    if (ember_decode(c, prompt, n_prompt, 0)) { printf("  decode: %s\n", ember_last_error()); return -1; }
    for (int i = 0; i < n_gen; i++) {
        ember_token t = argmax(ember_get_logits(c, -1), ember_model_n_vocab(m));
        out[i] = t;
        if (i + 1 < n_gen && ember_decode(c, &t, 1, 0)) { printf("  decode: %s\n", ember_last_error()); return -1; }
    }
    return 0;
}

static int read_ids(const char *path, ember_token *ids, int max) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int n = 0;
    while (n < max && fscanf(f, "%d", &ids[n]) == 1) n++;
    fclose(f);
    return n;
}

/* Detokenizes ids the way llama2.c prints them (first piece after BOS loses its space). */
static void detok(const ember_model *m, const ember_token *ids, int n, int strip_first, char *out, size_t cap) {
    size_t u = 0;
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        char piece[256];
        int k = ember_token_to_piece(m, ids[i], piece, sizeof piece, 0);
        const char *p = piece;
        if (i == 0 && strip_first && k > 0 && piece[0] == ' ') { p++; k--; }
        if (k > 0 && u + (size_t)k < cap) { memcpy(out + u, p, (size_t)k); u += (size_t)k; out[u] = 0; }
    }
}

static void check_stories(const char *model, const char *tok) {
    const char *ids_bos = fixture_path("golden/stories260K_greedy_bos_256.ids");
    const char *ids_once = fixture_path("golden/stories260K_greedy_onceupon_128.ids");
    if (!file_exists(model) || !file_exists(ids_bos) || !file_exists(ids_once)) SKIP("fixture missing: %s", model);
    ember_model *m = load(model, tok);
    CHECK(m);
    if (!m) return;
    ember_token want[256], got[256];
    CHECK(read_ids(ids_bos, want, 256) == 256);
    ember_context *c = new_ctx(m, 0);
    ember_token bos = ember_token_bos(m);
    CHECK(bos == 1);
    CHECK(greedy(c, m, &bos, 1, 256, got) == 0);
    int same = 0;
    while (same < 256 && got[same] == want[same]) same++;
    CHECKF(same == 256, "BOS greedy: first mismatch at %d (got %d, want %d)", same, got[same], want[same]);

    static char text[65536], gold[65536];
    size_t n;
    unsigned char *g = read_file(fixture_path("golden/stories260K_greedy_bos_256.txt"), &n);
    CHECK(g);
    detok(m, got, 256, 1, text, sizeof text - 2);
    strcat(text, "\n");  /* run.c ends its output with a newline */
    snprintf(gold, sizeof gold, "%s", g ? (char *)g : "");
    CHECKF(!strcmp(text, gold), "BOS text differs:\n%s\n---\n%s", text, gold);
    free(g);

    /* "Once upon a time": the golden starts with the prompt's tokens. */
    int nw = read_ids(ids_once, want, 256);
    CHECK(nw == 128);
    ember_token prompt[64];
    const char *ptxt = "Once upon a time";
    int np = ember_tokenize(m, ptxt, strlen(ptxt), prompt, 64, 1, 0);
    CHECKF(np > 1 && prompt[0] == 1, "prompt tokens: %d", np);
    if (np <= 1) { ember_context_free(c); ember_model_free(m); return; }
    for (int i = 1; i < np; i++) CHECKF(prompt[i] == want[i - 1], "prompt token %d: %d vs %d", i, prompt[i], want[i - 1]);
    ember_context_truncate(c, 0);
    memcpy(got, prompt + 1, (size_t)(np - 1) * sizeof *got);
    CHECK(greedy(c, m, prompt, np, 128 - (np - 1), got + np - 1) == 0);
    same = 0;
    while (same < 128 && got[same] == want[same]) same++;
    CHECKF(same == 128, "'Once upon a time': first mismatch at %d", same);
    g = read_file(fixture_path("golden/stories260K_greedy_onceupon_128.txt"), &n);
    detok(m, got, 128, 1, text, sizeof text - 2);
    strcat(text, "\n");
    CHECKF(g && !strcmp(text, (char *)g), "'Once upon a time' text differs:\n%s", text);
    free(g);
    ember_context_free(c);
    ember_model_free(m);
}

TEST(stories260K_bin) {
    check_stories(fixture_path("models/stories260K.bin"), fixture_path("models/tok512.bin"));
}

TEST(stories260K_gguf) {
    check_stories(fixture_path("models/stories260K.gguf"), NULL);
}

/* llama.cpp's greedy text after the prompt, from the fixture's two quoted blocks. */
TEST(tinystories656k_q8_0) {
    const char *model = fixture_path("models/tinystories656k/TinyStories-656K-Q8_0.gguf");
    const char *gold = fixture_path("golden/tinystories656k_q8_0_llamacpp_greedy.txt");
    if (!file_exists(model) || !file_exists(gold)) SKIP("fixture missing: %s", model);
    ember_model *m = load(model, NULL);
    CHECK(m);
    if (!m) return;
    static const struct { const char *prompt; int n; const char *want; } cases[] = {
        { "Once upon a time", 32, NULL }, { "Hello", 16, NULL },
    };
    size_t gn;
    char *g = (char *)read_file(gold, &gn);
    CHECK(g);
    for (int k = 0; g && k < 2; k++) {
        /* the k-th line that starts with a quote holds the expected text (with \n escapes) */
        char *line = g;
        for (int seen = -1; line && seen < k;) {
            line = strchr(line, '\n');
            if (line) line++;
            if (line && line[0] == '"') seen++;
        }
        CHECK(line);
        if (!line) break;
        char want[2048];
        size_t w = 0;
        for (char *p = line + 1; *p && *p != '\n' && w + 1 < sizeof want; p++) {
            if (p[0] == '"' && (p[1] == '\n' || !p[1])) break;
            if (p[0] == '\\' && p[1] == 'n') { want[w++] = '\n'; p++; }
            else want[w++] = *p;
        }
        want[w] = 0;
        ember_context *c = new_ctx(m, 0);
        ember_token prompt[64], got[64];
        int np = ember_tokenize(m, cases[k].prompt, strlen(cases[k].prompt), prompt, 64, 1, 0);
        CHECK(np > 1);
        CHECK(greedy(c, m, prompt, np, cases[k].n, got) == 0);
        char text[4096];
        detok(m, got, cases[k].n, 0, text, sizeof text);
        CHECKF(!strcmp(text, want), "prompt '%s':\n got '%s'\nwant '%s'", cases[k].prompt, text, want);
        ember_context_free(c);
    }
    free(g);
    ember_model_free(m);
}

/* SmolLM2 against llama.cpp (tests/golden/smollm2/greedy.txt, flash attention on, F16 KV).
 * Two checks per prompt:
 *  - teacher-forced: feed llama.cpp's tokens; at every step ember's argmax must be
 *    llama.cpp's token, except where llama.cpp's own top-1/top-2 margin is below
 *    NEAR_TIE. This Q4_1 model is chaotic under Q8 activation rounding: a 1-ulp change of
 *    the input embedding moves its logits by up to ~0.8 (so a top-1/top-2 gap by up to
 *    about twice that is possible, 1.0 is what we allow), and llama.cpp itself changes
 *    tokens on 8 of the 15 prompts when flash attention is switched off. No engine that
 *    does not repeat llama.cpp's float operations bit for bit (its SIMD exp
 *    approximation, lane order of every dot product) can hold near-ties.
 *  - free-running: ember's own 64 greedy tokens; the prompts where they are identical
 *    to llama.cpp's are counted, and at least MIN_IDENTICAL (with a chat prompt among
 *    them) are required.
 * EMBER_GOLDEN_PROMPTS=name,name,... runs only those prompts (scripts/test-arm.sh sets it:
 * under qemu all 15 take ~17 minutes). Every listed name must exist; each runs both checks
 * in full, but MIN_IDENTICAL, a count over all 15 prompts, is only required of a full run. */
#define NEAR_TIE 1.0f
#define MIN_IDENTICAL 5

TEST(smollm2_greedy_vs_llamacpp) {
    const char *model = getenv("EMBER_SMOLLM2");
    if (!model) model = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    const char *only = getenv("EMBER_GOLDEN_PROMPTS");
    if (only && !*only) only = NULL;
    int n_only = 0;
    for (const char *p = only; p && *p; p++) n_only += p == only || p[-1] == ',';
    size_t gn;
    char *g = (char *)read_file("tests/golden/smollm2/greedy.txt", &gn);
    if (!g) SKIP("tests/golden/smollm2/greedy.txt missing");
    if (!file_exists(model)) { free(g); SKIP("default model missing: run scripts/fetch-model.sh"); }
    ember_model *m = load(model, NULL);
    CHECK(m);
    int blocks = 0, identical = 0, identical_chat = 0, forced_steps = 0, forced_diff = 0;
    static char prompt[65536], name[128];
    static ember_token pids[4096], want_p[4096], seq[4096 + 256];
    ember_token want_g[256], got[256];
    float margins[256];
    int special = 0, nwp = 0, nwg = 0, nm = 0;
    for (char *line = g; m && line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (!strncmp(line, "name:", 5)) sscanf(line + 5, "%127s", name);
        else if (!strncmp(line, "prompt_b64:", 11)) b64(line + 11, prompt, sizeof prompt);
        else if (!strncmp(line, "parse_special:", 14)) special = atoi(line + 14);
        else if (!strncmp(line, "prompt_ids:", 11)) nwp = parse_ids(line + 11, want_p, 4096);
        else if (!strncmp(line, "gen_ids:", 8)) nwg = parse_ids(line + 8, want_g, 256);
        else if (!strncmp(line, "margins:", 8)) nm = parse_floats(line + 8, margins, 256);
        else if (!strncmp(line, "min_margin:", 11)) {  /* last key of a block we need */
            if (only && !in_list(only, name)) continue;
            int np = ember_tokenize(m, prompt, strlen(prompt), pids, 4096, 1, special);
            CHECKF(np == nwp && !memcmp(pids, want_p, (size_t)np * sizeof *pids),
                   "%s: prompt tokenizes differently (%d vs %d tokens)", name, np, nwp);
            CHECK(nm == nwg && nwg > 0);
            /* free-running */
            ember_context *c = new_ctx(m, 0);
            CHECK(greedy(c, m, want_p, nwp, nwg, got) == 0);
            int same = 0;
            while (same < nwg && got[same] == want_g[same]) same++;
            if (same == nwg) { identical++; identical_chat += special; }
            /* teacher-forced: all logits of prompt + llama.cpp's tokens in one batch */
            memcpy(seq, want_p, (size_t)nwp * sizeof *seq);
            memcpy(seq + nwp, want_g, (size_t)nwg * sizeof *seq);
            ember_context_truncate(c, 0);
            CHECK(ember_decode(c, seq, nwp + nwg - 1, 1) == EMBER_OK);
            int bad = 0, diff = 0;
            for (int i = 0; i < nwg; i++) {
                const float *l = ember_get_logits(c, nwp - 1 + i);
                if (!l) { bad++; continue; }
                int am = argmax(l, ember_model_n_vocab(m));
                if (am != want_g[i]) {
                    diff++;
                    if (margins[i] >= NEAR_TIE) { bad++; printf("  %s step %d: ember %d, llama.cpp %d (margin %.3f)\n", name, i, am, want_g[i], margins[i]); }
                }
            }
            forced_steps += nwg;
            forced_diff += diff;
            printf("  %-15s free-running: %s (first difference at %d); teacher-forced: %d/%d steps differ, all near-ties: %s\n",
                   name, same == nwg ? "identical" : "differs", same, diff, nwg, bad ? "NO" : "yes");
            CHECK(bad == 0);
            ember_context_free(c);
            blocks++;
        }
    }
    printf("  %d prompts%s: %d identical over %d tokens (%d chat); teacher-forced %d/%d steps differ\n",
           blocks, only ? " (EMBER_GOLDEN_PROMPTS)" : "", identical, nwg, identical_chat, forced_diff, forced_steps);
    if (only) {
        CHECKF(blocks == n_only, "EMBER_GOLDEN_PROMPTS=%s: %d of %d names found", only, blocks, n_only);
    } else {
        CHECKF(blocks >= 5, "only %d golden prompts", blocks);
        CHECK(identical >= MIN_IDENTICAL && identical_chat >= 1);
    }
    ember_model_free(m);
    free(g);
}

int main(void) {
    RUN(stories260K_bin);
    RUN(stories260K_gguf);
    RUN(tinystories656k_q8_0);
    RUN(smollm2_greedy_vs_llamacpp);
    return test_done();
}
