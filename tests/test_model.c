/* test_model.c: model loading through the public API: metadata, hyper-parameters, and
 * bad files. Every corrupt file must give a clear error and a status, never a crash
 * (this suite runs under ASan+UBSan in CI). */
#include <stdint.h>
#include <unistd.h>
#include "ember.h"
#include "test.h"

static ember_status load_bytes(const unsigned char *d, size_t n, const char *tmp) {
    FILE *f = fopen(tmp, "wb");
    if (!f) return EMBER_E_IO;
    if (n) fwrite(d, 1, n, f);
    fclose(f);
    ember_model *m = NULL;
    ember_status st = ember_model_load(tmp, NULL, &m);
    if (st == EMBER_OK) {
        /* a file that loads must also run */
        ember_context_params cp = ember_context_default_params();
        cp.n_ctx = 8;
        ember_context *c = NULL;
        if (ember_context_new(m, &cp, &c) == EMBER_OK) {
            ember_token t = 1;
            ember_decode(c, &t, 1, 0);
            ember_context_free(c);
        }
        ember_model_free(m);
    }
    return st;
}

TEST(hparams_smollm2_shape) {
    const char *p = fixture_path("synthetic/qwen3-q4_k_m.gguf");
    if (!file_exists(p)) SKIP("fixture missing: %s", p);
    ember_model *m = NULL;
    CHECK(ember_model_load(p, NULL, &m) == EMBER_OK);
    if (!m) return;
    CHECK(ember_model_n_vocab(m) == 512);
    CHECK(ember_model_n_embd(m) == 256);
    CHECK(ember_model_n_layer(m) == 2);
    char desc[64], buf[4096];
    ember_model_desc(m, desc, sizeof desc);
    CHECKF(!strncmp(desc, "qwen3 ", 6), "%s", desc);
    int n = ember_model_info(m, buf, sizeof buf);
    CHECK(n > 0 && n < (int)sizeof buf && strstr(buf, "head_dim 128") && strstr(buf, "neox"));
    /* snprintf contract: a short buffer still says how much is needed */
    char tiny[8];
    CHECK(ember_model_info(m, tiny, sizeof tiny) == n && strlen(tiny) == 7);
    CHECK(ember_model_meta_str(m, "general.architecture", buf, sizeof buf) == 5 && !strcmp(buf, "qwen3"));
    CHECK(ember_model_meta_str(m, "no.such.key", buf, sizeof buf) == -1);
    ember_model_free(m);
}

TEST(missing_file_and_bad_args) {
    ember_model *m = (ember_model *)1;
    CHECK(ember_model_load("/nonexistent/model.gguf", NULL, &m) == EMBER_E_IO && m == NULL);
    CHECK(strstr(ember_last_error(), "/nonexistent/model.gguf") != NULL);
    CHECK(ember_model_load(NULL, NULL, &m) == EMBER_E_INVALID);
    CHECK(ember_model_load("x", NULL, NULL) == EMBER_E_INVALID);
    ember_model_free(NULL);
    ember_context_free(NULL);
    ember_sampler_free(NULL);
}

TEST(unsupported_architecture) {
    const char *p = fixture_path("synthetic/llama-q8_0.gguf");
    if (!file_exists(p)) SKIP("fixture missing: %s", p);
    size_t n;
    unsigned char *d = read_file(p, &n);
    /* rename the architecture value in place: "llama" -> "lxama" (same length) */
    unsigned char *hit = NULL;
    for (size_t i = 0; i + 5 < n && i < 4096 && !hit; i++)
        if (!memcmp(d + i, "\x05\0\0\0\0\0\0\0llama", 13)) hit = d + i + 8;
    CHECK(hit);
    if (hit) {
        hit[1] = 'x';
        ember_status st = load_bytes(d, n, "/tmp/ember_test_arch.gguf");
        CHECK(st == EMBER_E_UNSUPPORTED || st == EMBER_E_FORMAT);
        CHECKF(strstr(ember_last_error(), "unsupported architecture lxama") || st == EMBER_E_FORMAT,
               "%s", ember_last_error());
    }
    free(d);
    unlink("/tmp/ember_test_arch.gguf");
}

/* A weight type GGUF knows but ember does not compute with: the load is refused with the
 * tensor's name and the type's name. tq2_0 and iq2_xxs blocks have the same size (256
 * elements, 66 bytes), so retyping a tq2_0 tensor in its header keeps the file valid. */
TEST(unsupported_weight_type) {
    const char *p = "tests/models/synthetic/llama-tq2_0.gguf";
    if (!file_exists(p)) SKIP("missing: %s (scripts/make_synthetic_quant_goldens.py)", p);
    size_t n;
    unsigned char *d = read_file(p, &n);
    static const char name[] = "blk.0.attn_q.weight";
    const size_t len = sizeof name - 1;
    unsigned char *type = NULL;
    for (size_t i = 8; i + len + 64 < n && !type; i++) {
        if (memcmp(d + i, name, len) || d[i - 8] != len) continue;
        const unsigned char *q = d + i + len;
        const uint32_t n_dims = q[0] | q[1] << 8;
        if (n_dims >= 1 && n_dims <= 4) type = (unsigned char *)q + 4 + 8 * n_dims;
    }
    CHECK(type && type[0] == 35 && !type[1] && !type[2] && !type[3]);  /* tq2_0 */
    if (type && type[0] == 35) {
        type[0] = 16;  /* iq2_xxs */
        ember_status st = load_bytes(d, n, "/tmp/ember_test_type.gguf");
        CHECK(st == EMBER_E_UNSUPPORTED);
        CHECKF(strstr(ember_last_error(), "tensor 'blk.0.attn_q.weight' has type iq2_xxs, which ember does not run yet"),
               "%s", ember_last_error());
    }
    free(d);
    unlink("/tmp/ember_test_type.gguf");
}

/* phi3 LongRoPE files: one of the two factor tensors missing, or an unknown rope scaling
 * type, is refused with a message naming it (the names are patched in place, same length). */
static void patched_phi3(const char *from, const char *to, ember_status want, const char *msg) {
    const char *p = "tests/models/synthetic/phi3-longrope-f32.gguf";
    if (!file_exists(p)) SKIP("missing: %s (scripts/make_phi3_goldens.py)", p);
    size_t n, len = strlen(from);
    unsigned char *d = read_file(p, &n);
    unsigned char *hit = NULL;
    for (size_t i = 0; i + len < n && i < 65536 && !hit; i++)
        if (!memcmp(d + i, from, len)) hit = d + i;
    CHECK(hit);
    if (hit) {
        CHECK(load_bytes(d, n, "/tmp/ember_test_phi3.gguf") == EMBER_OK);  /* the file as made */
        memcpy(hit, to, len);
        ember_status st = load_bytes(d, n, "/tmp/ember_test_phi3.gguf");
        CHECK(st == want);
        CHECKF(strstr(ember_last_error(), msg), "%s", ember_last_error());
    }
    free(d);
    unlink("/tmp/ember_test_phi3.gguf");
}

TEST(phi3_longrope_bad) {
    patched_phi3("rope_factors_short.weight", "rope_factors_shorx.weight", EMBER_E_FORMAT,
                 "rope_factors_short.weight is missing");
    patched_phi3("longrope", "longropx", EMBER_E_UNSUPPORTED, "rope scaling 'longropx' is not supported");
}

/* Truncation at every offset in the header/metadata and at a stride through the data. */
static void truncations(const char *rel, size_t stride) {
    const char *p = fixture_path(rel);
    if (!file_exists(p)) SKIP("fixture missing: %s", p);
    size_t n;
    unsigned char *d = read_file(p, &n);
    int bad = 0, tried = 0;
    char tmp[64];
    snprintf(tmp, sizeof tmp, "/tmp/ember_trunc_%d.gguf", (int)getpid());
    for (size_t len = 0; len < n; len += len < 2048 ? 1 : stride) {
        ember_status st = load_bytes(d, len, tmp);
        tried++;
        if (st != EMBER_E_FORMAT || !*ember_last_error()) { bad++; if (bad < 5) printf("  len %zu: status %d\n", len, st); }
    }
    printf("  %s: %d truncations, %d without a format error\n", rel, tried, bad);
    CHECK(bad == 0);
    free(d);
    unlink(tmp);
}

TEST(truncated_stories_gguf) { truncations("models/stories260K.gguf", 1021); }
TEST(truncated_q4_k_m) { truncations("synthetic/qwen3-q4_k_m.gguf", 1999); }

/* Random byte flips in the header region must load or fail cleanly. */
TEST(flipped_bytes) {
    const char *p = fixture_path("synthetic/llama-q4_0.gguf");
    if (!file_exists(p)) SKIP("fixture missing: %s", p);
    size_t n;
    unsigned char *d = read_file(p, &n);
    uint64_t s = 0x9E3779B97F4A7C15ull;
    char tmp[64];
    snprintf(tmp, sizeof tmp, "/tmp/ember_flip_%d.gguf", (int)getpid());
    for (int it = 0; it < 300; it++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        size_t off = (size_t)(s % 6000);
        unsigned char old = d[off];
        d[off] = (unsigned char)(s >> 32);
        load_bytes(d, n, tmp);  /* any status; ASan/UBSan catch the rest */
        d[off] = old;
    }
    free(d);
    unlink(tmp);
}

TEST(l2c_bad_files) {
    unsigned char hdr[28] = { 0 };
    int32_t v[7] = { 64, 172, 5, 8, 4, 512, 512 };
    memcpy(hdr, v, sizeof v);
    /* a plausible header with no weights is not taken for a checkpoint -> GGUF error */
    ember_status st = load_bytes(hdr, sizeof hdr, "/tmp/ember_l2c.bin");
    CHECK(st == EMBER_E_FORMAT);
    int32_t w[7] = { 64, 172, 5, 7, 4, 512, 512 };  /* heads not a multiple of kv heads */
    memcpy(hdr, w, sizeof w);
    CHECK(load_bytes(hdr, sizeof hdr, "/tmp/ember_l2c.bin") == EMBER_E_FORMAT);
    unlink("/tmp/ember_l2c.bin");
}

TEST(context_limits) {
    const char *p = fixture_path("models/stories260K.gguf");
    if (!file_exists(p)) SKIP("fixture missing: %s", p);
    ember_model *m = NULL;
    CHECK(ember_model_load(p, NULL, &m) == EMBER_OK);
    if (!m) return;
    ember_context_params cp = ember_context_default_params();
    cp.n_ctx = 4;
    ember_context *c = NULL;
    CHECK(ember_context_new(m, &cp, &c) == EMBER_OK);
    ember_token t[5] = { 1, 2, 3, 4, 5 }, bad = 999999;
    CHECK(ember_decode(c, t, 5, 0) == EMBER_E_CONTEXT_FULL);
    CHECK(ember_decode(c, &bad, 1, 0) == EMBER_E_INVALID);
    CHECK(ember_decode(c, t, 4, 1) == EMBER_OK);
    CHECK(ember_get_logits(c, 3) && ember_get_logits(c, -1) == ember_get_logits(c, 3));
    CHECK(ember_get_logits(c, 4) == NULL);
    CHECK(ember_decode(c, t, 1, 0) == EMBER_E_CONTEXT_FULL);
    CHECK(ember_context_truncate(c, 2) == EMBER_OK && ember_context_n_past(c) == 2);
    CHECK(ember_context_truncate(c, 3) == EMBER_E_INVALID);
    ember_context_free(c);
    ember_model_free(m);
}

/* The compute roofline of `ember bench`: multiply-adds per token counted from the shapes
 * (the synthetic llama: 2 layers of q 256x256, k and v 128x256, o 256x256, gate and up
 * 768x256, down 256x768, plus the untied 512x256 output; the token_embd lookup is not a
 * product), split by how the kernels run them; and the peak probe of every ISA here. */
TEST(roofline_counts) {
    const int64_t per_layer = 256 * 256 + 2 * 128 * 256 + 256 * 256 + 3 * 768 * 256;
    const uint64_t want = (uint64_t)(2 * per_layer + 512 * 256);
    static const char *const files[] = { "synthetic/llama-q8_0.gguf", "synthetic/llama-f32.gguf" };
    for (int f = 0; f < 2; f++) {
        const char *p = fixture_path(files[f]);
        if (!file_exists(p)) SKIP("missing: %s", p);
        ember_model *m = NULL;
        CHECK(ember_model_load(p, NULL, &m) == EMBER_OK);
        ember_context_params cp = ember_context_default_params();
        cp.n_ctx = 8;
        ember_context *c = NULL;
        CHECK(ember_context_new(m, &cp, &c) == EMBER_OK);
        uint64_t i8 = 1, fl = 1;
        CHECK(ember_context_macs_per_token(c, &i8, &fl) == want);
        CHECK(f == 0 ? (i8 == want && fl == 0) : (i8 == 0 && fl == want));
        ember_context_free(c);
        ember_model_free(m);
    }
    CHECK(ember_context_macs_per_token(NULL, NULL, NULL) == 0);
    static const char *const isas[] = { "ref", "avx2", "avx512", "neon" };
    for (int i = 0; i < 4; i++)
        for (int kind = EMBER_PEAK_INT8; kind <= EMBER_PEAK_F32; kind++) {
            double g = -1;
            ember_status st = ember_compute_peak(1, (ember_peak_kind)kind, isas[i], &g);
            if (st != EMBER_OK) { CHECK(st == EMBER_E_INVALID && g == 0); continue; } /* not on this CPU */
            CHECK(g > 0);
        }
    double g = -1;
    CHECK(ember_compute_peak(0, EMBER_PEAK_INT8, NULL, &g) == EMBER_OK && g > 0);
    CHECK(ember_compute_peak(1, (ember_peak_kind)7, NULL, &g) == EMBER_E_INVALID && g == 0);
    CHECK(ember_compute_peak(-1, EMBER_PEAK_F32, NULL, &g) == EMBER_E_INVALID);
    CHECK(ember_compute_peak(1, EMBER_PEAK_F32, "mmx", &g) == EMBER_E_INVALID);
    CHECK(ember_compute_peak(1, EMBER_PEAK_F32, NULL, NULL) == EMBER_E_INVALID);
}

int main(void) {
    RUN(hparams_smollm2_shape);
    RUN(missing_file_and_bad_args);
    RUN(unsupported_architecture);
    RUN(unsupported_weight_type);
    RUN(phi3_longrope_bad);
    RUN(truncated_stories_gguf);
    RUN(truncated_q4_k_m);
    RUN(flipped_bytes);
    RUN(l2c_bad_files);
    RUN(context_limits);
    RUN(roofline_counts);
    return test_done();
}
