/* test_imatrix.c: importance matrices (ember_imatrix_collector, `ember imatrix`) against
 * llama.cpp's llama-imatrix.
 *
 * Goldens are llama-imatrix's own files for the same model, text and flags
 * (scripts/make_imatrix_goldens.py; the stories260K one from make_quantize_goldens.py). The
 * engines' activations round differently, so the sums are compared with a tolerance; the
 * counts, chunk count, entry names and order and every byte outside the sums (the GGUF
 * header and metadata, the .dat's structure) must be identical. The flags of the tiny-model
 * goldens make llama-imatrix run interleaved micro-batches and skip one under 16 tokens, so
 * equal counts show ember feeds and skips the same tokens. Also: quantizing with ember's
 * matrix gives (nearly) the bytes of quantizing with llama-imatrix's, layer 0's sums equal a
 * float64 computation from the weights, and the API's contracts. Runs build/ember (or
 * $EMBER_BIN). */
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>
#include "ember.h"
#include "model/gguf.h"
#include "test.h"

#define TEXT "/usr/share/common-licenses/GPL-3"  /* Debian base-files; the goldens record this path */
#define STORIES "models/stories260K.gguf"
#define STORIES_IMATRIX "tests/data/quantize/stories260K.imatrix.gguf"

static char tmp[4][64];

/* Runs `ember ARGS` quietly; returns its exit status (-1 if it did not exit). */
static int ember(const char *args) {
    const char *bin = getenv("EMBER_BIN");
    const char *run = getenv("RUN");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "timeout -s KILL 600 %s %s %s >/dev/null 2>/tmp/ember_imatrix_%d.err", run ? run : "",
             bin ? bin : "build/ember", args, (int)getpid());
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static float rd_f32(const void *p) { float f; memcpy(&f, p, 4); return f; }

/* Compares ember's GGUF imatrix with llama-imatrix's: every byte before the data section
 * and every count identical, each sum within rel_max of the golden and the mean relative
 * difference under rel_mean. */
static void compare_gguf(const char *mine, const char *gold, double rel_max, double rel_mean) {
    char e1[256], e2[256];
    gguf_ctx *a = gguf_open(mine, e1, sizeof e1), *b = gguf_open(gold, e2, sizeof e2);
    CHECKF(a && b, "%s / %s", a ? "" : e1, b ? "" : e2);
    if (!a || !b) { gguf_close(a); gguf_close(b); return; }
    CHECK(gguf_file_size(a) == gguf_file_size(b));
    CHECK(gguf_data_offset(a) == gguf_data_offset(b));
    CHECK(!memcmp(gguf_base(a), gguf_base(b), gguf_data_offset(b)));
    CHECK(gguf_n_tensors(a) == gguf_n_tensors(b));
    double worst = 0, sum_rel = 0;
    long n_vals = 0, bad_counts = 0;
    for (int64_t i = 0; i < gguf_n_tensors(a) && i < gguf_n_tensors(b); i++) {
        const gguf_tensor *x = gguf_tensor_at(a, i), *y = gguf_tensor_at(b, i);
        CHECKF(!strcmp(x->name, y->name) && x->size == y->size, "%s vs %s", x->name, y->name);
        if (strcmp(x->name, y->name) || x->size != y->size) continue;
        const int is_count = strstr(x->name, ".counts") != NULL;
        for (size_t k = 0; k < x->size / 4; k++) {
            const float u = rd_f32((const char *)x->data + 4 * k), v = rd_f32((const char *)y->data + 4 * k);
            if (is_count) { bad_counts += u != v; continue; }
            const double r = fabs((double)u - v) / (fabs(v) > 1e-30 ? fabs(v) : 1e-30);
            if (r > worst) worst = r;
            sum_rel += r;
            n_vals++;
        }
    }
    CHECKF(bad_counts == 0, "%ld counts differ", bad_counts);
    CHECKF(n_vals > 0 && worst <= rel_max && sum_rel / n_vals <= rel_mean, "sums: max rel %.3g (limit %.3g), mean rel %.3g (limit %.3g)",
           worst, rel_max, n_vals ? sum_rel / n_vals : 0.0, rel_mean);
    printf("  %s: %ld sums, max rel diff %.3g, mean %.3g\n", gold, n_vals, worst, n_vals ? sum_rel / n_vals : 0.0);
    gguf_close(a);
    gguf_close(b);
}

TEST(tiny_llama_gguf_equals_llamacpp) {
    if (!file_exists(TEXT)) SKIP("%s missing (Debian base-files)", TEXT);
    char args[1024];
    snprintf(args, sizeof args, "imatrix -m tests/models/llama-f32.gguf -o %s -f " TEXT " -c 64 -b 256 -ub 32 "
             "--chunks 7 --no-ppl -t 2 --process-output", tmp[0]);
    CHECK(ember(args) == 0);
    compare_gguf(tmp[0], "tests/golden/imatrix/llama-f32.imatrix.gguf", 1e-3, 1e-5);
    /* 7 chunks of 64 tokens less the skipped micro-batch of 12; output.weight is there */
    char e[256];
    gguf_ctx *g = gguf_open(tmp[0], e, sizeof e);
    CHECK(g);
    if (!g) return;
    const gguf_tensor *c = gguf_find_tensor(g, "blk.1.ffn_down.weight.counts");
    CHECK(c && rd_f32(c->data) == 436.0f);
    CHECK(gguf_find_tensor(g, "output.weight.in_sum2") != NULL);
    CHECK(gguf_find_tensor(g, "token_embd.weight.in_sum2") == NULL);
    int64_t chunks = 0;
    CHECK(gguf_get_int(g, "imatrix.chunk_count", &chunks) == 0 && chunks == 6);
    gguf_close(g);
}

/* The legacy .dat: i32 n, per entry (i32 len, name, i32 ncall, i32 nval, f32 vals), i32
 * chunks, i32 len, dataset. Everything but the values must be identical. */
TEST(tiny_qwen2_dat_equals_llamacpp) {
    if (!file_exists(TEXT)) SKIP("%s missing (Debian base-files)", TEXT);
    char args[1024];
    snprintf(args, sizeof args, "imatrix -m tests/models/qwen2-f32.gguf -o %s -f " TEXT " -c 64 -b 256 -ub 32 "
             "--chunks 7 --no-ppl -t 2 --output-format dat", tmp[1]);
    CHECK(ember(args) == 0);
    size_t na, nb;
    unsigned char *a = read_file(tmp[1], &na), *b = read_file("tests/golden/imatrix/qwen2-f32.imatrix.dat", &nb);
    CHECK(a && b && na == nb);
    if (!a || !b || na != nb) { free(a); free(b); return; }
    size_t pos = 0;
    int32_t n, v;
    memcpy(&n, b, 4);
    CHECK(!memcmp(a, b, 4) && n == 14);  /* 2 layers x 7 matrices */
    pos = 4;
    double worst = 0;
    for (int32_t i = 0; i < n && pos + 4 <= nb; i++) {
        memcpy(&v, b + pos, 4);
        const size_t head = 4 + (size_t)v + 8;  /* name length, name, ncall, nval */
        if (pos + head > nb) break;
        CHECK(!memcmp(a + pos, b + pos, head));
        int32_t nval;
        memcpy(&nval, b + pos + head - 4, 4);
        pos += head;
        for (int32_t k = 0; k < nval && pos + 4 <= nb; k++, pos += 4) {
            const double x = rd_f32(a + pos), y = rd_f32(b + pos), r = fabs(x - y) / fabs(y);
            if (r > worst) worst = r;
        }
    }
    CHECK(pos < nb && !memcmp(a + pos, b + pos, nb - pos));  /* chunk count and dataset */
    CHECKF(worst <= 1e-3, "max rel diff %g", worst);
    printf("  qwen2-f32 .dat: max rel diff %.3g\n", worst);
    free(a);
    free(b);
}

/* Tensor-data bytes that differ between two quantized files of the same layout. */
static long differing_bytes(const char *p1, const char *p2, long *total) {
    char e[256];
    gguf_ctx *a = gguf_open(p1, e, sizeof e), *b = gguf_open(p2, e, sizeof e);
    long d = -1;
    *total = 0;
    if (a && b && gguf_n_tensors(a) == gguf_n_tensors(b)) {
        d = 0;
        for (int64_t i = 0; i < gguf_n_tensors(a); i++) {
            const gguf_tensor *x = gguf_tensor_at(a, i), *y = gguf_tensor_at(b, i);
            if (strcmp(x->name, y->name) || x->type != y->type || x->size != y->size) { d = -1; break; }
            for (size_t k = 0; k < x->size; k++) d += ((const unsigned char *)x->data)[k] != ((const unsigned char *)y->data)[k];
            *total += (long)x->size;
        }
    }
    gguf_close(a);
    gguf_close(b);
    return d;
}

/* A trained model (quantized-model weights are F32 here too): the sums agree with
 * llama-imatrix's to its F16 attention rounding, and the quantized files nearly byte for
 * byte (Q8_0 ignores the matrix; the k-quants fall back to 32-blocks on these rows). */
TEST(stories260K_equals_llamacpp_and_quantizes_alike) {
    const char *m = fixture_path(STORIES);
    if (!file_exists(m)) SKIP("fixture missing: %s", m);
    if (!file_exists(TEXT)) SKIP("%s missing (Debian base-files)", TEXT);
    char args[1024];
    snprintf(args, sizeof args, "imatrix -m %s -o %s -f " TEXT " -c 128 --chunks 4 --no-ppl -t 2", m, tmp[2]);
    CHECK(ember(args) == 0);
    compare_gguf(tmp[2], STORIES_IMATRIX, 1e-2, 5e-4);
    static const char *types[] = { "Q4_0", "Q5_1", "Q4_K_M" };
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        ember_imatrix *ie = NULL, *il = NULL;
        CHECK(ember_imatrix_load(tmp[2], &ie) == EMBER_OK && ember_imatrix_load(STORIES_IMATRIX, &il) == EMBER_OK);
        CHECK(ember_imatrix_n_entries(ie) == 35 && ember_imatrix_n_entries(il) == 35 && ember_imatrix_n_chunks(ie) == 4);
        ember_quantize_params qp = ember_quantize_default_params();
        qp.ftype = ember_ftype_from_name(types[i]);
        qp.imatrix = ie;
        CHECK(ember_model_quantize(m, tmp[3], &qp) == EMBER_OK);
        char other[80];
        snprintf(other, sizeof other, "%s.llamacpp", tmp[3]);
        qp.imatrix = il;
        CHECK(ember_model_quantize(m, other, &qp) == EMBER_OK);
        long total, d = differing_bytes(tmp[3], other, &total);
        CHECKF(d >= 0 && d * 500 < total, "%s: %ld of %ld bytes differ", types[i], d, total);
        printf("  stories260K %s: %ld of %ld tensor-data bytes differ\n", types[i], d, total);
        unlink(other);
        ember_imatrix_free(ie);
        ember_imatrix_free(il);
    }
}

/* Layer 0's q/k/v input is RMSNorm(embedding) * attn_norm: its sums, computed here in
 * float64 from the file's weights, must match the collector's; q, k and v share the input,
 * gate and up share theirs; pausing stops the counting; the API's misuse is refused. */
TEST(collector_api) {
    ember_model *m = NULL;
    ember_context *ctx = NULL;
    ember_imatrix_collector *c = NULL, *c2 = NULL;
    CHECK(ember_model_load("tests/models/llama-f32.gguf", NULL, &m) == EMBER_OK);
    if (!m) return;
    ember_context_params cp = ember_context_default_params();
    cp.n_ctx = 64;
    cp.n_batch = 5;  /* the tokens reach the hook in several forward chunks */
    CHECK(ember_context_new(m, &cp, &ctx) == EMBER_OK);
    CHECK(ember_imatrix_collector_new(ctx, 0, &c) == EMBER_OK);
    CHECK(ember_imatrix_collector_new(ctx, 0, &c2) == EMBER_E_INVALID && c2 == NULL);
    ember_imatrix_save_params sp = { .legacy = 0, .chunk_size = 16, .dataset = NULL };
    CHECK(ember_imatrix_collector_save(c, tmp[3], &sp) == EMBER_E_INVALID);  /* nothing decoded */
    const ember_token toks[12] = { 1, 40, 41, 300 - 100, 7, 9, 120, 250, 3, 3, 17, 99 };
    CHECK(ember_decode(ctx, toks, 12, 0) == EMBER_OK);
    ember_imatrix_collector_pause(c, 1);
    CHECK(ember_decode(ctx, toks, 4, 0) == EMBER_OK);
    ember_imatrix_collector_pause(c, 0);
    CHECK(ember_imatrix_collector_n_entries(c) == 14);
    const char *name;
    int64_t cols, count;
    const float *sums;
    CHECK(ember_imatrix_collector_entry(c, 14, &name, &cols, &sums, &count) == EMBER_E_INVALID);
    const float *q = NULL, *k = NULL, *v = NULL, *gate = NULL, *up = NULL;
    for (int i = 0; i < 14; i++) {
        CHECK(ember_imatrix_collector_entry(c, i, &name, &cols, &sums, &count) == EMBER_OK);
        CHECK(count == 12);
        if (!strcmp(name, "blk.0.attn_q.weight")) q = sums;
        if (!strcmp(name, "blk.0.attn_k.weight")) k = sums;
        if (!strcmp(name, "blk.0.attn_v.weight")) v = sums;
        if (!strcmp(name, "blk.1.ffn_gate.weight")) gate = sums;
        if (!strcmp(name, "blk.1.ffn_up.weight")) up = sums;
        if (i == 0) CHECK(!strcmp(name, "blk.0.attn_k.weight") && cols == 64);  /* name order */
    }
    CHECK(q && k && v && gate && up);
    if (q && k && v && gate && up) {
        CHECK(!memcmp(q, k, 64 * sizeof *q) && !memcmp(q, v, 64 * sizeof *q) && !memcmp(gate, up, 64 * sizeof *q));
        char e[256];
        gguf_ctx *g = gguf_open("tests/models/llama-f32.gguf", e, sizeof e);
        const gguf_tensor *emb = g ? gguf_find_tensor(g, "token_embd.weight") : NULL;
        const gguf_tensor *nw = g ? gguf_find_tensor(g, "blk.0.attn_norm.weight") : NULL;
        CHECK(emb && nw);
        double want[64] = { 0 }, worst = 0;
        for (int t = 0; emb && nw && t < 12; t++) {
            double x[64], ss = 0;
            for (int j = 0; j < 64; j++) {
                x[j] = rd_f32((const char *)emb->data + 4 * ((size_t)toks[t] * 64 + j));
                ss += x[j] * x[j];
            }
            const double r = 1 / sqrt(ss / 64 + 1e-5);
            for (int j = 0; j < 64; j++) {
                const double y = x[j] * r * rd_f32((const char *)nw->data + 4 * j);
                want[j] += y * y;
            }
        }
        for (int j = 0; j < 64; j++) {
            const double rel = fabs(q[j] - want[j]) / want[j];
            if (rel > worst) worst = rel;
        }
        CHECKF(worst < 1e-5, "layer-0 sums: max rel diff %g", worst);
        gguf_close(g);
    }
    sp.chunk_size = 0;
    CHECK(ember_imatrix_collector_save(c, tmp[3], &sp) == EMBER_E_INVALID);
    sp.chunk_size = 4;
    sp.legacy = 1;
    CHECK(ember_imatrix_collector_save(c, tmp[3], &sp) == EMBER_OK);
    ember_imatrix *im = NULL;
    CHECK(ember_imatrix_load(tmp[3], &im) == EMBER_OK && ember_imatrix_n_entries(im) == 14 &&
          ember_imatrix_n_chunks(im) == 3);
    ember_imatrix_free(im);
    CHECK(ember_imatrix_collector_save(c, "/nonexistent-dir/x.gguf", &sp) == EMBER_E_IO);
    ember_imatrix_collector_free(c);
    CHECK(ember_decode(ctx, toks, 2, 0) == EMBER_OK);  /* detached: decoding goes on */
    ember_imatrix_collector_free(NULL);
    ember_context_free(ctx);
    ember_model_free(m);
    /* a llama2.c checkpoint has no tensor names */
    const char *l2c = fixture_path("models/stories260K.bin"), *tok = fixture_path("models/tok512.bin");
    if (file_exists(l2c) && file_exists(tok)) {
        ember_model_params mp = ember_model_default_params();
        mp.tokenizer_path = tok;
        CHECK(ember_model_load(l2c, &mp, &m) == EMBER_OK);
        CHECK(m && ember_context_new(m, NULL, &ctx) == EMBER_OK);
        CHECK(ember_imatrix_collector_new(ctx, 0, &c) == EMBER_E_UNSUPPORTED && c == NULL);
        ember_context_free(ctx);
        ember_model_free(m);
    }
}

TEST(cli_errors) {
    CHECK(ember("imatrix -m tests/models/llama-f32.gguf") == 1);                        /* no text */
    CHECK(ember("imatrix -m tests/models/llama-f32.gguf -f " TEXT " --output-format xml") == 1);
    CHECK(ember("imatrix -m tests/models/llama-f32.gguf -f " TEXT " -c 100000") == 1);  /* text too short */
    CHECK(ember("imatrix -h") == 0);
}

int main(void) {
    for (int i = 0; i < 4; i++) snprintf(tmp[i], sizeof tmp[i], "/tmp/ember_imatrix_%d_%d.out", (int)getpid(), i);
    RUN(tiny_llama_gguf_equals_llamacpp);
    RUN(tiny_qwen2_dat_equals_llamacpp);
    RUN(stories260K_equals_llamacpp_and_quantizes_alike);
    RUN(collector_api);
    RUN(cli_errors);
    for (int i = 0; i < 4; i++) unlink(tmp[i]);
    char e[64];
    snprintf(e, sizeof e, "/tmp/ember_imatrix_%d.err", (int)getpid());
    unlink(e);
    return test_done();
}
