/* tests/test_gguf.c: GGUF reader/writer tests.
 * (1) every fixture GGUF opens with sane metadata and tensor shapes;
 * (2) writer output reads back identically (memory and file paths);
 * (3) truncated files (writer output, stories260K.gguf) fail cleanly at every header offset;
 * (4) hostile header fields (built byte by byte below) give NULL and a specific message.
 * Every buffer handed to gguf_open_mem is an exact-size heap copy, so ASan flags any read
 * past its end. */
#include <inttypes.h>
#include <stdint.h>
#include <unistd.h>

#include "model/gguf.h"
#include "test.h"

/* ---- raw byte builder for hand-made (mostly hostile) files ---- */

typedef struct { unsigned char *p; size_t n, cap; } rb;

static void rb_put(rb *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    if (src) memcpy(b->p + b->n, src, n);
    else memset(b->p + b->n, 0, n);
    b->n += n;
}
static void rb_u8(rb *b, uint8_t v) { rb_put(b, &v, 1); }
static void rb_u32(rb *b, uint32_t v) {
    unsigned char q[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    rb_put(b, q, 4);
}
static void rb_u64(rb *b, uint64_t v) { rb_u32(b, (uint32_t)v); rb_u32(b, (uint32_t)(v >> 32)); }
static void rb_str(rb *b, const char *s) { rb_u64(b, strlen(s)); rb_put(b, s, strlen(s)); }
static void rb_hdr(rb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    b->n = 0;
    rb_put(b, "GGUF", 4);
    rb_u32(b, version);
    rb_u64(b, n_tensors);
    rb_u64(b, n_kv);
}
static void rb_kv_u32(rb *b, const char *key, uint32_t v) { rb_str(b, key); rb_u32(b, GGUF_U32); rb_u32(b, v); }
static void rb_kv_str(rb *b, const char *key, const char *v) { rb_str(b, key); rb_u32(b, GGUF_STRING); rb_str(b, v); }
static void rb_tensor(rb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off) {
    rb_str(b, name);
    rb_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) rb_u64(b, ne[i]);
    rb_u32(b, type);
    rb_u64(b, off);
}
static void rb_pad(rb *b, size_t a) { while (b->n % a) rb_u8(b, 0); }

/* Opens an exact-size copy of buf[0..n); returns the context (or NULL) and the message. */
static gguf_ctx *open_copy(const void *buf, size_t n, char *err, size_t errsz, void **copy) {
    *copy = malloc(n ? n : 1);
    if (n) memcpy(*copy, buf, n);
    return gguf_open_mem(*copy, n, err, errsz);
}

/* Expects failure with a message containing `want` (NULL: any nonempty message). */
static void expect_fail_(const void *buf, size_t n, const char *want, const char *label) {
    char err[512] = "";
    void *copy;
    gguf_ctx *g = open_copy(buf, n, err, sizeof err, &copy);
    CHECKF(g == NULL, "%s: opened but should fail", label);
    CHECKF(err[0] != 0, "%s: empty error message", label);
    if (want) CHECKF(strstr(err, want) != NULL, "%s: message \"%s\" lacks \"%s\"", label, err, want);
    gguf_close(g);
    free(copy);
}
#define expect_fail(b, want) expect_fail_((b)->p, (b)->n, want, #b " @" _STR(__LINE__))
#define _STR(x) _STR2(x)
#define _STR2(x) #x

static void expect_ok_(const void *buf, size_t n, const char *label) {
    char err[512] = "";
    void *copy;
    gguf_ctx *g = open_copy(buf, n, err, sizeof err, &copy);
    CHECKF(g != NULL, "%s: %s", label, err);
    gguf_close(g);
    free(copy);
}
#define expect_ok(b) expect_ok_((b)->p, (b)->n, #b " @" _STR(__LINE__))

/* ---- ggml type facts ---- */

TEST(test_type_table) {
    static const struct { uint32_t t; size_t blck, bytes; const char *name; } want[] = {
        {0, 1, 4, "f32"}, {1, 1, 2, "f16"}, {2, 32, 18, "q4_0"}, {3, 32, 20, "q4_1"},
        {6, 32, 22, "q5_0"}, {7, 32, 24, "q5_1"}, {8, 32, 34, "q8_0"}, {9, 32, 36, "q8_1"},
        {10, 256, 84, "q2_K"}, {11, 256, 110, "q3_K"}, {12, 256, 144, "q4_K"},
        {13, 256, 176, "q5_K"}, {14, 256, 210, "q6_K"}, {15, 256, 292, "q8_K"},
        {16, 256, 66, "iq2_xxs"}, {17, 256, 74, "iq2_xs"}, {18, 256, 98, "iq3_xxs"},
        {19, 256, 50, "iq1_s"}, {20, 32, 18, "iq4_nl"}, {21, 256, 110, "iq3_s"},
        {22, 256, 82, "iq2_s"}, {23, 256, 136, "iq4_xs"}, {24, 1, 1, "i8"}, {25, 1, 2, "i16"},
        {26, 1, 4, "i32"}, {27, 1, 8, "i64"}, {28, 1, 8, "f64"}, {29, 256, 56, "iq1_m"},
        {30, 1, 2, "bf16"}, {34, 256, 54, "tq1_0"}, {35, 256, 66, "tq2_0"}, {39, 32, 17, "mxfp4"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        size_t blck = 0, bytes = 0;
        CHECKF(gguf_type_block(want[i].t, &blck, &bytes) == 0, "type %u", want[i].t);
        CHECKF(blck == want[i].blck && bytes == want[i].bytes, "type %u: %zu/%zu", want[i].t, blck, bytes);
        CHECKF(gguf_type_name(want[i].t) && !strcmp(gguf_type_name(want[i].t), want[i].name), "type %u", want[i].t);
    }
    static const uint32_t retired[] = {4, 5, 31, 32, 33, 36, 37, 38, 40, 41, 1000, 0xFFFFFFFFu};
    for (size_t i = 0; i < sizeof retired / sizeof retired[0]; i++) {
        CHECKF(gguf_type_block(retired[i], NULL, NULL) == -1, "type %u", retired[i]);
        CHECK(gguf_type_name(retired[i]) == NULL);
    }
    CHECK(!strcmp(gguf_vtype_name(GGUF_U32), "u32") && !strcmp(gguf_vtype_name(GGUF_F64), "f64"));
    CHECK(gguf_vtype_name(13) == NULL && gguf_vtype_name(-1) == NULL);
}

/* ---- (1) fixtures ---- */

/* Checks invariants every valid file must satisfy. */
static void check_sane(const gguf_ctx *g, const char *label) {
    const char *s;
    size_t n;
    CHECKF(gguf_get_str(g, "general.architecture", &s, &n) == 0 && n > 0, "%s: architecture", label);
    CHECKF(gguf_version(g) == 3, "%s: version %u", label, gguf_version(g));
    for (int64_t i = 0; i < gguf_n_kv(g); i++) {
        const char *k = gguf_kv_key(g, i);
        CHECKF(k && gguf_find_key(g, k) == i, "%s: key %" PRId64, label, i);
    }
    const unsigned char *base = gguf_base(g);
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        size_t blck, bytes;
        CHECKF(gguf_type_block(t->type, &blck, &bytes) == 0, "%s: %s type", label, t->name);
        size_t want = (size_t)(t->ne[0] / (int64_t)blck) * bytes * (size_t)(t->ne[1] * t->ne[2] * t->ne[3]);
        CHECKF(t->size == want, "%s: %s size %zu want %zu", label, t->name, t->size, want);
        size_t off = (size_t)((const unsigned char *)t->data - base);
        CHECKF(off % gguf_alignment(g) == 0 && off + t->size <= gguf_file_size(g), "%s: %s", label, t->name);
        CHECKF(gguf_find_tensor(g, t->name) == t, "%s: find %s", label, t->name);
    }
}

TEST(test_stories260k) {
    const char *p = fixture_path("models/stories260K.gguf");
    if (!file_exists(p)) SKIP("fixture missing: %s", p);
    char err[512];
    gguf_ctx *g = gguf_open(p, err, sizeof err);
    CHECKF(g, "%s", err);
    if (!g) return;
    check_sane(g, "stories260K");
    const char *s;
    size_t n;
    CHECK(gguf_get_str(g, "general.architecture", &s, &n) == 0 && n == 5 && !memcmp(s, "llama", 5));
    CHECK(gguf_get_str(g, "tokenizer.ggml.model", &s, &n) == 0 && n == 5 && !memcmp(s, "llama", 5));
    int64_t v;
    CHECK(gguf_get_int(g, "llama.context_length", &v) == 0 && v == 2048);
    CHECK(gguf_get_int(g, "llama.embedding_length", &v) == 0 && v == 64);
    CHECK(gguf_get_int(g, "llama.block_count", &v) == 0 && v == 5);
    double d;
    CHECK(gguf_get_float(g, "llama.attention.layer_norm_rms_epsilon", &d) == 0 && d > 0 && d < 1e-3);
    CHECK(gguf_get_int(g, "llama.attention.layer_norm_rms_epsilon", &v) == -2);
    CHECK(gguf_get_int(g, "no.such.key", &v) == -1);
    int et;
    uint64_t cnt;
    const void *data;
    CHECK(gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &cnt, &data) == 0 && et == GGUF_STRING && cnt == 512 && !data);
    CHECK(gguf_get_arr_str(g, "tokenizer.ggml.tokens", 0, &s, &n) == 0 && n == 5 && !memcmp(s, "<unk>", 5));
    CHECK(gguf_get_arr_str(g, "tokenizer.ggml.tokens", 1, &s, &n) == 0 && n == 3 && !memcmp(s, "<s>", 3));
    CHECK(gguf_get_arr_str(g, "tokenizer.ggml.tokens", 3, &s, &n) == 0 && n == 6 && !memcmp(s, "<0x00>", 6));
    CHECK(gguf_get_arr_str(g, "tokenizer.ggml.tokens", 511, &s, &n) == 0 && n > 0);
    CHECK(gguf_get_arr_str(g, "tokenizer.ggml.tokens", 512, &s, &n) == -3);
    CHECK(gguf_get_arr_str(g, "tokenizer.ggml.scores", 0, &s, &n) == -2);
    CHECK(gguf_get_arr(g, "tokenizer.ggml.scores", &et, &cnt, &data) == 0 && et == GGUF_F32 && cnt == 512 && data);
    CHECK(gguf_n_tensors(g) == 48);
    const gguf_tensor *t = gguf_find_tensor(g, "token_embd.weight");
    CHECK(t && t->type == 0 && t->n_dims == 2 && t->ne[0] == 64 && t->ne[1] == 512 && t->ne[2] == 1 && t->size == 64 * 512 * 4);
    t = gguf_find_tensor(g, "blk.4.ffn_down.weight");
    CHECK(t && t->ne[0] == 172 && t->ne[1] == 64);
    t = gguf_find_tensor(g, "output_norm.weight");
    CHECK(t && t->n_dims == 1 && t->ne[0] == 64 && t->ne[1] == 1);
    CHECK(gguf_find_tensor(g, "blk.5.attn_q.weight") == NULL);
    gguf_close(g);
}

TEST(test_tinystories_q8) {
    const char *p = fixture_path("models/tinystories656k/TinyStories-656K-Q8_0.gguf");
    if (!file_exists(p)) SKIP("fixture missing: %s", p);
    char err[512];
    gguf_ctx *g = gguf_open(p, err, sizeof err);
    CHECKF(g, "%s", err);
    if (!g) return;
    check_sane(g, "tinystories");
    CHECK(gguf_n_tensors(g) == 20);
    const gguf_tensor *t = gguf_find_tensor(g, "token_embd.weight");
    CHECK(t && t->type == 8 && t->ne[0] == 128 && t->ne[1] == 2048 && t->size == 2048 * 4 * 34);
    CHECK(gguf_find_tensor(g, "output.weight") == NULL);  /* tied embeddings */
    int b;
    int64_t v;
    uint64_t cnt;
    CHECK(gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b) == 0);
    CHECK(gguf_get_int(g, "general.quantization_version", &v) == 0 && v == 2);
    CHECK(gguf_get_arr(g, "tokenizer.ggml.tokens", NULL, &cnt, NULL) == 0 && cnt == 2048);
    gguf_close(g);
}

TEST(test_all_fixtures) {
    static const char *const files[] = {
        "synthetic/llama-f32.gguf", "synthetic/llama-f16.gguf", "synthetic/llama-bf16.gguf",
        "synthetic/llama-q8_0.gguf", "synthetic/llama-q4_0.gguf", "synthetic/llama-q4_1.gguf",
        "synthetic/llama-q4_k_m.gguf", "synthetic/llama-q5_k_m.gguf", "synthetic/llama-q6_k.gguf",
        "synthetic/qwen2-f32.gguf", "synthetic/qwen2-q8_0.gguf", "synthetic/qwen2-q4_k_m.gguf",
        "synthetic/qwen3-f32.gguf", "synthetic/qwen3-q8_0.gguf", "synthetic/qwen3-q4_k_m.gguf",
        "vocab/ggml-vocab-bert-bge.gguf", "vocab/ggml-vocab-deepseek-coder.gguf",
        "vocab/ggml-vocab-deepseek-llm.gguf", "vocab/ggml-vocab-falcon.gguf",
        "vocab/ggml-vocab-gpt-2.gguf", "vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-mpt.gguf",
        "vocab/ggml-vocab-phi-3.gguf", "vocab/ggml-vocab-refact.gguf", "vocab/ggml-vocab-starcoder.gguf",
    };
    int opened = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        const char *p = fixture_path(files[i]);
        if (!file_exists(p)) SKIP("fixture missing: %s", p);
        char err[512];
        gguf_ctx *g = gguf_open(p, err, sizeof err);
        CHECKF(g, "%s", err);
        if (!g) continue;
        opened++;
        check_sane(g, files[i]);
        int64_t nt = gguf_n_tensors(g), v;
        uint64_t cnt = 0;
        int et = -1;
        const char *s;
        size_t n;
        if (!strncmp(files[i], "vocab/", 6)) {
            CHECKF(nt == 0, "%s: %" PRId64 " tensors", files[i], nt);
        } else {
            int64_t want = !strncmp(files[i], "synthetic/llama", 15) ? 21 : !strncmp(files[i], "synthetic/qwen2", 15) ? 27 : 25;
            CHECKF(nt == want, "%s: %" PRId64 " tensors, want %" PRId64, files[i], nt, want);
            const gguf_tensor *t = gguf_find_tensor(g, "token_embd.weight");
            CHECKF(t && t->ne[0] == 256 && t->ne[1] == 512, "%s: token_embd", files[i]);
            CHECKF(gguf_find_tensor(g, "output.weight") != NULL, "%s: output", files[i]);
            const char *arch = strchr(files[i], '/') + 1;
            char key[64];
            snprintf(key, sizeof key, "%.*s.block_count", (int)(strchr(arch, '-') - arch), arch);
            CHECKF(gguf_get_int(g, key, &v) == 0 && v == 2, "%s: %s", files[i], key);
        }
        CHECKF(gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &cnt, NULL) == 0 && et == GGUF_STRING && cnt > 0, "%s: tokens", files[i]);
        CHECKF(cnt == 0 || gguf_get_arr_str(g, "tokenizer.ggml.tokens", cnt - 1, &s, &n) == 0, "%s", files[i]);
        CHECKF(gguf_get_str(g, "tokenizer.ggml.model", &s, &n) == 0, "%s: tokenizer model", files[i]);
        gguf_close(g);
    }
    /* the q4_k_m mix: 13 q4_K + 3 q6_K matrices */
    gguf_ctx *g = gguf_open(fixture_path("synthetic/llama-q4_k_m.gguf"), NULL, 0);
    int nk4 = 0, nk6 = 0;
    for (int64_t i = 0; g && i < gguf_n_tensors(g); i++) {
        nk4 += gguf_tensor_at(g, i)->type == 12;
        nk6 += gguf_tensor_at(g, i)->type == 14;
    }
    CHECK(nk4 == 13 && nk6 == 3);
    gguf_close(g);
    CHECK(opened == (int)(sizeof files / sizeof files[0]));
}

/* ---- (2) writer ---- */

/* A small valid file with most value types, arrays and several tensors. Caller frees. */
static void *make_small(size_t *size) {
    gguf_writer *w = gguf_writer_new();
    int rc = 0;
    rc |= gguf_writer_set_str(w, "general.architecture", "llama");
    rc |= gguf_writer_set_u32(w, "llama.block_count", 7);
    rc |= gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f);
    int32_t ia[5] = {-1, 2, -3, 4, 2147483647};
    rc |= gguf_writer_set_arr(w, "test.i32s", GGUF_I32, ia, 5);
    uint8_t bools[3] = {1, 0, 1};
    rc |= gguf_writer_set_arr(w, "test.bools", GGUF_BOOL, bools, 3);
    const char *toks[4] = {"<unk>", "", "hello", "w\xc3\xb6rld"};
    rc |= gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 4);
    int8_t i8 = -5;
    uint16_t u16 = 65535;
    int16_t i16 = -32768;
    int32_t i32 = -123456;
    uint64_t u64 = 18446744073709551615ull;
    int64_t i64 = INT64_MIN;
    double f64 = 3.25;
    uint8_t u8 = 200, bl = 1;
    rc |= gguf_writer_set_scalar(w, "t.u8", GGUF_U8, &u8);
    rc |= gguf_writer_set_scalar(w, "t.i8", GGUF_I8, &i8);
    rc |= gguf_writer_set_scalar(w, "t.u16", GGUF_U16, &u16);
    rc |= gguf_writer_set_scalar(w, "t.i16", GGUF_I16, &i16);
    rc |= gguf_writer_set_scalar(w, "t.i32", GGUF_I32, &i32);
    rc |= gguf_writer_set_scalar(w, "t.u64", GGUF_U64, &u64);
    rc |= gguf_writer_set_scalar(w, "t.i64", GGUF_I64, &i64);
    rc |= gguf_writer_set_scalar(w, "t.f64", GGUF_F64, &f64);
    rc |= gguf_writer_set_scalar(w, "t.bool", GGUF_BOOL, &bl);
    float f[12];
    for (int i = 0; i < 12; i++) f[i] = (float)i * 0.5f;
    unsigned char q8[2 * 34], q4k[144], f16[6] = {1, 2, 3, 4, 5, 6};
    for (size_t i = 0; i < sizeof q8; i++) q8[i] = (unsigned char)(i * 7);
    for (size_t i = 0; i < sizeof q4k; i++) q4k[i] = (unsigned char)(255 - i);
    rc |= gguf_writer_add_tensor(w, "a.f32", 0, 2, (const int64_t[]){4, 3}, f, sizeof f);
    rc |= gguf_writer_add_tensor(w, "b.f16", 1, 1, (const int64_t[]){3}, f16, 6);
    rc |= gguf_writer_add_tensor(w, "c.empty", 0, 2, (const int64_t[]){0, 5}, NULL, 0);
    rc |= gguf_writer_add_tensor(w, "d.q8_0", 8, 3, (const int64_t[]){32, 1, 2}, q8, sizeof q8);
    rc |= gguf_writer_add_tensor(w, "e.q4_K", 12, 4, (const int64_t[]){256, 1, 1, 1}, q4k, sizeof q4k);
    void *out = NULL;
    rc |= gguf_writer_finish(w, &out, size);
    gguf_writer_free(w);
    if (rc) { free(out); return NULL; }
    return out;
}

static void check_small(const gguf_ctx *g) {
    int64_t v;
    double d;
    int b, et;
    const char *s;
    size_t n;
    uint64_t cnt;
    const void *data;
    check_sane(g, "small");
    CHECK(gguf_alignment(g) == 32 && gguf_n_kv(g) == 15 && gguf_n_tensors(g) == 5);
    CHECK(gguf_get_int(g, "llama.block_count", &v) == 0 && v == 7);
    CHECK(gguf_get_float(g, "llama.rope.freq_base", &d) == 0 && d == 10000.0);
    CHECK(gguf_get_int(g, "t.u8", &v) == 0 && v == 200);
    CHECK(gguf_get_int(g, "t.i8", &v) == 0 && v == -5);
    CHECK(gguf_get_int(g, "t.u16", &v) == 0 && v == 65535);
    CHECK(gguf_get_int(g, "t.i16", &v) == 0 && v == -32768);
    CHECK(gguf_get_int(g, "t.i32", &v) == 0 && v == -123456);
    CHECK(gguf_get_int(g, "t.u64", &v) == -2);  /* > INT64_MAX */
    CHECK(gguf_get_float(g, "t.u64", &d) == 0 && d == 18446744073709551615.0);
    CHECK(gguf_get_bool(g, "t.u64", &b) == 0 && b == 1);
    CHECK(gguf_get_int(g, "t.i64", &v) == 0 && v == INT64_MIN);
    CHECK(gguf_get_float(g, "t.f64", &d) == 0 && d == 3.25);
    CHECK(gguf_get_int(g, "t.f64", &v) == -2);
    CHECK(gguf_get_bool(g, "t.bool", &b) == 0 && b == 1);
    CHECK(gguf_get_int(g, "t.bool", &v) == 0 && v == 1);
    CHECK(gguf_get_bool(g, "llama.block_count", &b) == 0 && b == 1);
    CHECK(gguf_get_float(g, "t.i8", &d) == 0 && d == -5.0);
    CHECK(gguf_get_str(g, "general.architecture", &s, &n) == 0 && n == 5 && !memcmp(s, "llama", 5));
    CHECK(gguf_get_str(g, "t.u8", &s, &n) == -2 && gguf_get_str(g, "nope", &s, &n) == -1);
    CHECK(gguf_get_arr(g, "t.u8", &et, &cnt, &data) == -2);
    CHECK(gguf_get_arr(g, "test.i32s", &et, &cnt, &data) == 0 && et == GGUF_I32 && cnt == 5);
    int32_t ia[5];
    memcpy(ia, data, sizeof ia);
    CHECK(ia[0] == -1 && ia[2] == -3 && ia[4] == 2147483647);
    CHECK(gguf_get_arr(g, "test.bools", &et, &cnt, &data) == 0 && et == GGUF_BOOL && cnt == 3 &&
          !memcmp(data, "\1\0\1", 3));
    CHECK(gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &cnt, &data) == 0 && et == GGUF_STRING && cnt == 4 && !data);
    CHECK(gguf_get_arr_str(g, "tokenizer.ggml.tokens", 0, &s, &n) == 0 && n == 5 && !memcmp(s, "<unk>", 5));
    CHECK(gguf_get_arr_str(g, "tokenizer.ggml.tokens", 1, &s, &n) == 0 && n == 0);
    CHECK(gguf_get_arr_str(g, "tokenizer.ggml.tokens", 3, &s, &n) == 0 && n == 6 && !memcmp(s, "w\xc3\xb6rld", 6));
    CHECK(gguf_get_arr_str(g, "tokenizer.ggml.tokens", 4, &s, &n) == -3);
    CHECK(gguf_get_arr_str(g, "test.i32s", 0, &s, &n) == -2);
    CHECK(gguf_kv_key(g, 15) == NULL && gguf_kv_type(g, -1) == -1 && gguf_tensor_at(g, 5) == NULL);
    CHECK(!strcmp(gguf_kv_key(g, 0), "general.architecture") && gguf_kv_type(g, 0) == GGUF_STRING);
    const gguf_tensor *t = gguf_find_tensor(g, "a.f32");
    CHECK(t && t->ne[0] == 4 && t->ne[1] == 3 && t->size == 48 && t->offset == 0);
    float f[12];
    if (t) memcpy(f, t->data, sizeof f);
    CHECK(t && f[0] == 0.0f && f[11] == 5.5f);
    t = gguf_find_tensor(g, "b.f16");
    CHECK(t && t->offset == 64 && t->size == 6 && !memcmp(t->data, "\1\2\3\4\5\6", 6));
    t = gguf_find_tensor(g, "c.empty");
    CHECK(t && t->size == 0 && t->ne[0] == 0 && t->ne[1] == 5);
    t = gguf_find_tensor(g, "d.q8_0");
    CHECK(t && t->n_dims == 3 && t->ne[2] == 2 && t->size == 68 && ((const unsigned char *)t->data)[67] == (unsigned char)(67 * 7));
    t = gguf_find_tensor(g, "e.q4_K");
    CHECK(t && t->n_dims == 4 && t->size == 144 && ((const unsigned char *)t->data)[0] == 255);
    CHECK(t && (const char *)t->data + t->size == (const char *)gguf_base(g) + gguf_file_size(g));
}

TEST(test_writer_roundtrip) {
    size_t size;
    void *buf = make_small(&size);
    CHECK(buf != NULL);
    if (!buf) return;
    char err[512] = "";
    void *copy;
    gguf_ctx *g = open_copy(buf, size, err, sizeof err, &copy);
    CHECKF(g, "%s", err);
    if (g) check_small(g);
    gguf_close(g);
    free(copy);
    /* the same through a real file and mmap */
    char path[] = "/tmp/ember_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(write(fd, buf, size) == (ssize_t)size);
        close(fd);
        g = gguf_open(path, err, sizeof err);
        CHECKF(g, "%s", err);
        if (g) check_small(g);
        gguf_close(g);
        unlink(path);
    }
    free(buf);
}

TEST(test_writer_alignment_and_rejects) {
    gguf_writer *w = gguf_writer_new();
    CHECK(gguf_writer_set_u32(w, "general.alignment", 64) == 0);
    CHECK(gguf_writer_set_u32(w, "general.alignment", 48) == -1);
    CHECK(gguf_writer_set_u32(w, "general.alignment", 4) == -1);
    CHECK(gguf_writer_set_str(w, "general.alignment", "64") == -1);
    CHECK(gguf_writer_set_str(w, "", "x") == -1);
    CHECK(gguf_writer_set_str(w, "k", NULL) == -1);
    CHECK(gguf_writer_set_str(w, "k", "first") == 0);
    CHECK(gguf_writer_set_str(w, "k", "second") == 0);  /* replaces */
    uint8_t two = 2;
    CHECK(gguf_writer_set_scalar(w, "b", GGUF_BOOL, &two) == -1);
    CHECK(gguf_writer_set_scalar(w, "b", GGUF_STRING, &two) == -1);
    CHECK(gguf_writer_set_arr(w, "a", GGUF_STRING, &two, 1) == -1);
    CHECK(gguf_writer_set_arr(w, "a", GGUF_BOOL, &two, 1) == -1);
    CHECK(gguf_writer_set_arr(w, "a", GGUF_U8, NULL, 1) == -1);
    CHECK(gguf_writer_set_arr(w, "empty", GGUF_U8, NULL, 0) == 0);
    float f[32] = {0};
    int64_t ne[4] = {32, 1, 1, 1};
    CHECK(gguf_writer_add_tensor(w, "x", 0, 1, ne, f, sizeof f) == 0);
    CHECK(gguf_writer_add_tensor(w, "x", 0, 1, ne, f, sizeof f) == -1);        /* duplicate */
    CHECK(gguf_writer_add_tensor(w, "y", 0, 1, ne, f, 4) == -1);               /* size mismatch */
    CHECK(gguf_writer_add_tensor(w, "y", 4, 1, ne, f, sizeof f) == -1);        /* retired type */
    CHECK(gguf_writer_add_tensor(w, "y", 0, 0, ne, f, sizeof f) == -1);        /* n_dims 0 */
    CHECK(gguf_writer_add_tensor(w, "y", 0, 5, ne, f, sizeof f) == -1);        /* n_dims 5 */
    CHECK(gguf_writer_add_tensor(w, "y", 12, 1, ne, f, sizeof f) == -1);       /* 32 % 256 */
    CHECK(gguf_writer_add_tensor(w, "y", 0, 1, (const int64_t[]){-1}, NULL, 0) == -1);
    char longname[66];
    memset(longname, 'n', 65);
    longname[65] = 0;
    CHECK(gguf_writer_add_tensor(w, longname, 0, 1, ne, f, sizeof f) == -1);
    longname[64] = 0;
    CHECK(gguf_writer_add_tensor(w, longname, 0, 1, ne, NULL, sizeof f) == 0);  /* 64 is allowed */
    CHECK(gguf_writer_add_tensor(w, "z", 8, 1, ne, NULL, 34) == 0);
    void *out;
    size_t size;
    CHECK(gguf_writer_finish(w, &out, &size) == 0);
    gguf_writer_free(w);
    char err[512];
    void *copy;
    gguf_ctx *g = open_copy(out, size, err, sizeof err, &copy);
    CHECKF(g, "%s", err);
    if (g) {
        const char *s;
        size_t n;
        CHECK(gguf_alignment(g) == 64 && gguf_data_offset(g) % 64 == 0);
        CHECK(gguf_get_str(g, "k", &s, &n) == 0 && n == 6 && !memcmp(s, "second", 6));
        CHECK(gguf_tensor_at(g, 1)->offset == 128 && gguf_tensor_at(g, 2)->offset == 256);
        CHECK(gguf_find_tensor(g, longname) != NULL);
    }
    gguf_close(g);
    free(copy);
    free(out);
    gguf_writer_free(NULL);
    gguf_close(NULL);
}

/* ---- (3) truncation ---- */

/* Opens every prefix in [from, to) (step) and checks it fails exactly when it must: a
 * prefix can only be valid if it still holds the whole header and all tensor data. */
static void truncations(const unsigned char *buf, size_t size, size_t need, size_t from, size_t to,
                        size_t step, const char *label) {
    int bad = 0;
    for (size_t len = from; len < to && len < size; len += step) {
        char err[512] = "";
        void *copy;
        gguf_ctx *g = open_copy(buf, len, err, sizeof err, &copy);
        int want_ok = len >= need;
        if ((g != NULL) != want_ok || (!g && !err[0])) {
            if (bad++ < 5) CHECKF(0, "%s: prefix %zu: %s", label, len, g ? "opened" : err);
        }
        gguf_close(g);
        free(copy);
    }
    CHECKF(bad == 0, "%s: %d bad prefixes", label, bad);
}

TEST(test_truncate_small) {
    size_t size;
    unsigned char *buf = make_small(&size);
    CHECK(buf != NULL);
    if (!buf) return;
    truncations(buf, size, size, 0, size, 1, "small");
    free(buf);
}

TEST(test_truncate_stories) {
    const char *p = fixture_path("models/stories260K.gguf");
    if (!file_exists(p)) SKIP("fixture missing: %s", p);
    size_t size;
    unsigned char *buf = read_file(p, &size);
    CHECK(buf != NULL);
    if (!buf) return;
    gguf_ctx *g = gguf_open_mem(buf, size, NULL, 0);
    CHECK(g != NULL);
    if (g) {
        size_t need = 0, hdr = gguf_data_offset(g);
        for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
            const gguf_tensor *t = gguf_tensor_at(g, i);
            size_t end = (size_t)((const unsigned char *)t->data - buf) + t->size;
            if (end > need) need = end;
        }
        gguf_close(g);
        truncations(buf, size, need, 0, hdr + 1, 1, "stories header");
        truncations(buf, size, need, hdr + 1, size, (size - hdr) / 97, "stories data");
        truncations(buf, size, need, size - 5, size, 1, "stories tail");
    }
    free(buf);
}

/* ---- (4) hostile inputs ---- */

TEST(test_hostile_header) {
    rb b = {0};
    expect_fail_("", 0, "too small", "empty");
    expect_fail_("GGU", 3, "too small", "3 bytes");
    expect_fail_("GGML\3\0\0\0", 8, "not a GGUF file", "magic");
    expect_fail_("GGUF\3\0\0", 7, "header", "short version");
    rb_hdr(&b, 1, 0, 0);
    expect_fail(&b, "version 1 is not supported");
    rb_hdr(&b, 4, 0, 0);
    expect_fail(&b, "unsupported GGUF version 4");
    rb_hdr(&b, 0x03000000u, 0, 0);
    expect_fail(&b, "big-endian");
    rb_hdr(&b, 3, 0, 0);
    b.n = 20;
    expect_fail(&b, "header");
    rb_hdr(&b, 3, 0, 0);
    expect_ok(&b);  /* empty but valid */
    rb_hdr(&b, 2, 0, 0);
    expect_ok(&b);
    rb_hdr(&b, 3, 0, UINT64_MAX);
    expect_fail(&b, "limits");
    rb_hdr(&b, 3, 0, 1000);
    expect_fail(&b, "header claims 1000 key/value pairs, which cannot fit in the 0 bytes after the header");
    rb_hdr(&b, 3, UINT64_MAX, 0);
    expect_fail(&b, "tensors");
    rb_hdr(&b, 3, 1000, 1);
    rb_kv_u32(&b, "a", 1);
    expect_fail(&b, "1000 tensors, which cannot fit");
    rb_hdr(&b, 3, 1, 3);  /* each count fits alone, together they do not */
    rb_put(&b, NULL, 50);
    expect_fail(&b, "cannot fit");
    free(b.p);
}

TEST(test_hostile_kv) {
    rb b = {0};
    rb_hdr(&b, 3, 0, 1);
    rb_u64(&b, UINT64_MAX);
    rb_put(&b, "abcdefgh", 8);
    expect_fail(&b, "name length 18446744073709551615 exceeds the maximum 65535");
    rb_hdr(&b, 3, 0, 1);
    rb_u64(&b, 65536);
    rb_put(&b, NULL, 65536 + 8);
    expect_fail(&b, "exceeds the maximum 65535");
    rb_hdr(&b, 3, 0, 1);
    rb_u64(&b, 60000);
    rb_put(&b, NULL, 20);
    expect_fail(&b, "name length 60000 exceeds file");
    rb_hdr(&b, 3, 0, 1);
    rb_u64(&b, 0);
    rb_u32(&b, GGUF_U8);
    rb_u8(&b, 0);
    rb_u8(&b, 0);  /* one byte more than the minimum KV size, so the count check passes */
    expect_fail(&b, "empty key");
    rb_hdr(&b, 3, 0, 1);
    rb_u64(&b, 3);
    rb_put(&b, "a\0b", 3);
    rb_u32(&b, GGUF_U8);
    rb_u8(&b, 0);
    expect_fail(&b, "NUL");
    rb_hdr(&b, 3, 0, 1);
    rb_str(&b, "general.name");
    rb_u32(&b, GGUF_STRING);
    rb_u64(&b, UINT64_MAX);
    rb_put(&b, "abcd", 4);
    expect_fail(&b, "key 'general.name': string length 18446744073709551615 exceeds file");
    for (uint32_t t = 13; t < 16; t++) {
        rb_hdr(&b, 3, 0, 1);
        rb_str(&b, "k");
        rb_u32(&b, t);
        rb_u64(&b, 0);
        expect_fail(&b, "unknown value type");
    }
    rb_hdr(&b, 3, 0, 1);
    rb_str(&b, "k");
    rb_u32(&b, 0xFFFFFFFFu);
    rb_u64(&b, 0);
    expect_fail(&b, "unknown value type 4294967295");
    rb_hdr(&b, 3, 0, 1);
    rb_str(&b, "k");
    rb_u32(&b, GGUF_ARRAY);
    rb_u32(&b, 13);
    rb_u64(&b, 1);
    rb_u64(&b, 0);
    expect_fail(&b, "unknown array element type 13");
    rb_hdr(&b, 3, 0, 1);
    rb_str(&b, "k");
    rb_u32(&b, GGUF_BOOL);
    rb_u8(&b, 2);
    expect_fail(&b, "bool value is 2");
    rb_hdr(&b, 3, 0, 1);
    rb_str(&b, "k");
    rb_u32(&b, GGUF_ARRAY);
    rb_u32(&b, GGUF_BOOL);
    rb_u64(&b, 3);
    rb_put(&b, "\1\0\7", 3);
    expect_fail(&b, "bool array element 2 is 7");
    rb_hdr(&b, 3, 0, 1);
    rb_str(&b, "k");
    rb_u32(&b, GGUF_U64);
    rb_u32(&b, 0);
    expect_fail(&b, "file ends inside its u64 value");
    rb_hdr(&b, 3, 0, 1);
    rb_str(&b, "k");
    rb_u32(&b, GGUF_ARRAY);
    rb_u32(&b, GGUF_F64);
    rb_u64(&b, (uint64_t)1 << 61);  /* * 8 bytes overflows 64 bits */
    rb_put(&b, NULL, 64);
    expect_fail(&b, "array of 2305843009213693952 f64 elements exceeds file");
    rb_hdr(&b, 3, 0, 1);
    rb_str(&b, "k");
    rb_u32(&b, GGUF_ARRAY);
    rb_u32(&b, GGUF_STRING);
    rb_u64(&b, UINT64_MAX);
    rb_put(&b, NULL, 64);
    expect_fail(&b, "strings exceeds file");
    rb_hdr(&b, 3, 0, 1);
    rb_str(&b, "k");
    rb_u32(&b, GGUF_ARRAY);
    rb_u32(&b, GGUF_STRING);
    rb_u64(&b, 2);
    rb_str(&b, "ok");
    rb_u64(&b, 1000);
    rb_put(&b, NULL, 8);
    expect_fail(&b, "key 'k': array element 1: string length 1000 exceeds file");
    b.n -= 9;  /* 17 bytes after the count: element 0 (10), then 7 of element 1 length */
    expect_fail(&b, "key 'k': array element 1: file ends inside its length");
    rb_hdr(&b, 3, 0, 2);
    rb_kv_u32(&b, "dup", 1);
    rb_kv_u32(&b, "dup", 2);
    expect_fail(&b, "key 'dup': duplicate key");
    rb_hdr(&b, 3, 0, 2);  /* n_kv says 2, only one present */
    rb_kv_u32(&b, "one", 1);
    rb_put(&b, NULL, 14);
    expect_fail(&b, "key #1");
    free(b.p);
}

/* A key holding `depth` nested arrays, the innermost holding one u8. */
static void nested(rb *b, int depth, uint64_t count_outer) {
    rb_hdr(b, 3, 0, 1);
    rb_str(b, "nest");
    rb_u32(b, GGUF_ARRAY);
    for (int d = 1; d < depth; d++) {
        rb_u32(b, GGUF_ARRAY);
        rb_u64(b, d == 1 ? count_outer : 1);
    }
    rb_u32(b, GGUF_U8);
    rb_u64(b, 1);
    rb_u8(b, 42);
}

TEST(test_hostile_nesting) {
    rb b = {0};
    char err[256];
    nested(&b, 8, 1);
    expect_ok(&b);
    gguf_ctx *g = gguf_open_mem(b.p, b.n, err, sizeof err);
    int et;
    uint64_t n;
    const void *data = &n;
    CHECK(g && gguf_get_arr(g, "nest", &et, &n, &data) == 0 && et == GGUF_ARRAY && n == 1 && data == NULL);
    gguf_close(g);
    nested(&b, 9, 1);
    expect_fail(&b, "nested deeper than 8");
    nested(&b, 100, 1);
    expect_fail(&b, "nested deeper than 8");
    nested(&b, 3, UINT64_MAX);
    expect_fail(&b, "arrays exceeds file");
    nested(&b, 3, 1000);  /* count fits the 12-byte bound check but data runs out */
    rb_put(&b, NULL, 6000);  /* zeros parse as empty u8 arrays: 12 bytes each */
    expect_fail(&b, "nest");
    /* a depth bomb: arrays of empty arrays, wide and legal, still linear */
    rb_hdr(&b, 3, 0, 1);
    rb_str(&b, "wide");
    rb_u32(&b, GGUF_ARRAY);
    rb_u32(&b, GGUF_ARRAY);
    rb_u64(&b, 5000);
    for (int i = 0; i < 5000; i++) { rb_u32(&b, GGUF_STRING); rb_u64(&b, 0); }
    expect_ok(&b);
    free(b.p);
}

TEST(test_hostile_alignment) {
    rb b = {0};
    static const uint32_t bad[] = {0, 1, 3, 4, 12, 24, 100, 1u << 31, 0xFFFFFFFFu};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rb_hdr(&b, 3, 0, 1);
        rb_kv_u32(&b, "general.alignment", bad[i]);
        expect_fail(&b, "key 'general.alignment'");
    }
    rb_hdr(&b, 3, 0, 1);
    rb_kv_str(&b, "general.alignment", "32");
    expect_fail(&b, "type string");
    rb_hdr(&b, 3, 0, 1);
    rb_str(&b, "general.alignment");
    rb_u32(&b, GGUF_I64);
    rb_u64(&b, (uint64_t)-64);
    expect_fail(&b, "general.alignment");
    /* valid: 8 and 4096 with a tensor placed accordingly */
    static const uint32_t good[] = {8, 64, 4096};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        rb_hdr(&b, 3, 1, 1);
        rb_kv_u32(&b, "general.alignment", good[i]);
        rb_tensor(&b, "t", 1, (const uint64_t[]){2}, 0, good[i]);
        rb_pad(&b, good[i]);
        rb_put(&b, NULL, good[i] + 8);
        expect_ok(&b);
    }
    free(b.p);
}

/* A file with one tensor described by the arguments and `data_bytes` of data. */
static void one_tensor(rb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                       uint64_t off, size_t data_bytes) {
    rb_hdr(b, 3, 1, 0);
    rb_tensor(b, name, n_dims, ne, type, off);
    rb_pad(b, 32);
    rb_put(b, NULL, data_bytes);
}

TEST(test_hostile_tensors) {
    rb b = {0};
    const uint64_t ne4[4] = {32, 2, 1, 1};
    one_tensor(&b, "ok", 2, ne4, 0, 0, 256);
    expect_ok(&b);
    one_tensor(&b, "t", 0, ne4, 0, 0, 256);
    expect_fail(&b, "tensor 't': n_dims is 0");
    one_tensor(&b, "t", 5, (const uint64_t[]){32, 1, 1, 1, 1}, 0, 0, 256);
    expect_fail(&b, "n_dims is 5");
    /* 64, 66: ember's internal numbers of its own types, which are 4096.. in files */
    static const uint32_t badt[] = {4, 5, 31, 33, 36, 38, 40, 64, 66, 255, 4095, 4109, 0xFFFFFFFFu};
    for (size_t i = 0; i < sizeof badt / sizeof badt[0]; i++) {
        one_tensor(&b, "t", 2, ne4, badt[i], 0, 256);
        expect_fail(&b, "unknown or retired ggml type");
    }
    one_tensor(&b, "t", 1, (const uint64_t[]){33}, 2, 0, 256);
    expect_fail(&b, "ne[0] = 33 is not a multiple of the q4_0 block size 32");
    one_tensor(&b, "t", 1, (const uint64_t[]){96}, 4098, 0, 256);  /* file id 4098: ember's INT4 */
    expect_fail(&b, "ne[0] = 96 is not a multiple of the int4 block size 64");
    one_tensor(&b, "t", 2, (const uint64_t[]){32, UINT64_MAX}, 0, 0, 256);
    expect_fail(&b, "ne[1] = 18446744073709551615 is negative");
    one_tensor(&b, "t", 4, (const uint64_t[]){1u << 31, 1u << 31, 1u << 31, 1}, 0, 0, 256);
    expect_fail(&b, "size overflows");
    one_tensor(&b, "t", 2, (const uint64_t[]){(uint64_t)1 << 62, 1}, 0, 0, 256);  /* 2^62 * 4 bytes */
    expect_fail(&b, "size overflows");
    one_tensor(&b, "t", 2, (const uint64_t[]){(uint64_t)1 << 40, 1}, 0, 0, 256);
    expect_fail(&b, "tensor 't': data ends at ");
    one_tensor(&b, "t", 1, (const uint64_t[]){((uint64_t)1 << 61) - 1}, 27, 0, 256);  /* i64: 2^64 - 8 bytes */
    expect_fail(&b, "tensor 't': 18446744073709551608 bytes at byte 64 overflow the address range");
    one_tensor(&b, "t", 2, ne4, 0, 4, 256);
    expect_fail(&b, "offset 4 is not a multiple of the alignment 32");
    one_tensor(&b, "t", 2, ne4, 0, 160, 128);  /* data section starts at 96 */
    expect_fail(&b, "data starts at 256 bytes, past the end of the file (224 bytes)");
    one_tensor(&b, "t", 2, ne4, 0, UINT64_MAX - 31, 256);  /* data_off (96) + offset wraps */
    expect_fail(&b, "offset 18446744073709551584 is past the end of the file (352 bytes)");
    one_tensor(&b, "t", 2, ne4, 0, UINT64_MAX - 127, 256);
    expect_fail(&b, "data starts at 17179869184.0 GiB (18446744073709551584 bytes), past the end");
    one_tensor(&b, "t", 3, (const uint64_t[]){1024, 1024, 512}, 0, 0, 256);
    expect_fail(&b, "tensor 't': data ends at 2.0 GiB (2147483744 bytes), file is 352 bytes");
    one_tensor(&b, "t", 2, ne4, 0, 0, 255);
    expect_fail(&b, "tensor 't': data ends at 352 bytes, file is 351 bytes");
    one_tensor(&b, "t", 2, (const uint64_t[]){32, 0}, 0, 0, 0);  /* empty tensor at EOF */
    expect_ok(&b);
    char name[70];
    memset(name, 'x', 65);
    name[65] = 0;
    one_tensor(&b, name, 2, ne4, 0, 0, 256);
    expect_fail(&b, "name length 65 exceeds the maximum 64");
    name[64] = 0;
    one_tensor(&b, name, 2, ne4, 0, 0, 256);
    expect_ok(&b);
    one_tensor(&b, "", 2, ne4, 0, 0, 256);
    expect_fail(&b, "empty tensor name");
    /* data section start past EOF */
    rb_hdr(&b, 3, 1, 0);
    rb_tensor(&b, "t", 1, (const uint64_t[]){0}, 0, 0);
    expect_fail(&b, "data section would start");
    /* two tensors: duplicates and overlaps */
    rb_hdr(&b, 3, 2, 0);
    rb_tensor(&b, "same", 2, ne4, 0, 0);
    rb_tensor(&b, "same", 2, ne4, 0, 256);
    rb_pad(&b, 32);
    rb_put(&b, NULL, 512);
    expect_fail(&b, "tensor 'same': duplicate tensor name");
    rb_hdr(&b, 3, 2, 0);
    rb_tensor(&b, "a", 2, ne4, 0, 224);
    rb_tensor(&b, "b", 2, ne4, 0, 0);
    rb_pad(&b, 32);
    rb_put(&b, NULL, 512);
    expect_fail(&b, "tensors 'b' [0, 256) and 'a' [224, 480) overlap");
    rb_hdr(&b, 3, 2, 0);
    rb_tensor(&b, "a", 2, ne4, 0, 256);
    rb_tensor(&b, "b", 2, ne4, 0, 0);  /* out of order but disjoint: fine */
    rb_pad(&b, 32);
    rb_put(&b, NULL, 512);
    expect_ok(&b);
    /* truncated tensor info */
    rb_hdr(&b, 3, 1, 0);
    rb_str(&b, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    rb_u32(&b, 2);
    rb_u64(&b, 32);
    expect_fail(&b, "tensor 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb': file ends inside its shape");
    free(b.p);
}

TEST(test_open_errors) {
    char err[512] = "";
    CHECK(gguf_open("/nonexistent/x.gguf", err, sizeof err) == NULL && strstr(err, "cannot open"));
    CHECK(gguf_open("/tmp", err, sizeof err) == NULL && strstr(err, "not a regular file"));
    char path[] = "/tmp/ember_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) {
        close(fd);
        CHECK(gguf_open(path, err, sizeof err) == NULL && strstr(err, "empty"));
        FILE *f = fopen(path, "wb");
        fwrite("GGUF\1\0\0\0", 1, 8, f);
        fclose(f);
        CHECK(gguf_open(path, err, sizeof err) == NULL && strstr(err, path) && strstr(err, "version 1"));
        unlink(path);
    }
    CHECK(gguf_open_mem(NULL, 10, err, sizeof err) == NULL && err[0]);
    CHECK(gguf_open(NULL, err, sizeof err) == NULL && err[0]);
    CHECK(gguf_open_mem(NULL, 0, NULL, 0) == NULL);  /* no err buffer: still safe */
    char tiny[4];
    CHECK(gguf_open_mem("GGUF\3\0\0\0", 8, tiny, sizeof tiny) == NULL && strlen(tiny) == 3);
}

int main(void) {
    RUN(test_type_table);
    RUN(test_stories260k);
    RUN(test_tinystories_q8);
    RUN(test_all_fixtures);
    RUN(test_writer_roundtrip);
    RUN(test_writer_alignment_and_rejects);
    RUN(test_truncate_small);
    RUN(test_truncate_stories);
    RUN(test_hostile_header);
    RUN(test_hostile_kv);
    RUN(test_hostile_nesting);
    RUN(test_hostile_alignment);
    RUN(test_hostile_tensors);
    RUN(test_open_errors);
    return test_done();
}
