/* test_quantize.c: ember_model_quantize against llama.cpp's llama-quantize.
 *
 * The test writes the two random-weight F32 models (and their importance matrices) that
 * scripts/make_quantize_goldens.py describes, bit for bit the same weights, quantizes them
 * for every case of tests/golden/quantize/llamacpp.txt and compares the file type, the
 * type of every tensor and a sha256 over every tensor's name and data with what
 * llama-quantize wrote; the same for the trained stories260K fixture with an importance
 * matrix that llama-imatrix computed on it. Also: the thread count does not change the bytes, the legacy .dat
 * imatrix gives the same result as the GGUF one, and a failed run leaves no file.
 * ember's own formats (INT2..INT8, BFP3..BFP7, OVP4; no llama.cpp reference exists): their
 * layout against a decoder written here from quant.h's description, the quantizers' error
 * against plain round-to-nearest, the scalar dot against a double dot, the GGUF type ids,
 * and stories260K quantized to each: loads, runs, and its logits approach F32's as the
 * width grows. */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include "ember.h"
#include "model/gguf.h"
#include "quant/quant.h"
#include "test.h"

/* ---------------------------------------------------------------- sha256 (FIPS 180-4) */

typedef struct { uint32_t h[8]; uint8_t buf[64]; uint64_t len; size_t n; } sha256;

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t ror(uint32_t x, int n) { return x >> n | x << (32 - n); }

static void sha_block(sha256 *s, const uint8_t *p) {
    uint32_t w[64], a[8];
    for (int i = 0; i < 16; i++) w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    memcpy(a, s->h, sizeof a);
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = a[7] + (ror(a[4], 6) ^ ror(a[4], 11) ^ ror(a[4], 25)) + ((a[4] & a[5]) ^ (~a[4] & a[6])) + K256[i] + w[i];
        uint32_t t2 = (ror(a[0], 2) ^ ror(a[0], 13) ^ ror(a[0], 22)) + ((a[0] & a[1]) ^ (a[0] & a[2]) ^ (a[1] & a[2]));
        memmove(a + 1, a, 7 * sizeof *a);
        a[4] += t1;
        a[0] = t1 + t2;
    }
    for (int i = 0; i < 8; i++) s->h[i] += a[i];
}

static void sha_init(sha256 *s) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof h0);
    s->len = 0;
    s->n = 0;
}

static void sha_update(sha256 *s, const void *data, size_t n) {
    const uint8_t *p = data;
    s->len += n;
    while (n) {
        size_t k = 64 - s->n < n ? 64 - s->n : n;
        memcpy(s->buf + s->n, p, k);
        s->n += k;
        p += k;
        n -= k;
        if (s->n == 64) { sha_block(s, s->buf); s->n = 0; }
    }
}

static void sha_hex(sha256 *s, char out[65]) {
    uint64_t bits = s->len * 8;
    uint8_t pad = 0x80, z = 0, lenb[8];
    sha_update(s, &pad, 1);
    while (s->n != 56) sha_update(s, &z, 1);
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha_update(s, lenb, 8);
    for (int i = 0; i < 8; i++) snprintf(out + 8 * i, 9, "%08x", s->h[i]);
}

TEST(test_sha256) {
    sha256 s;
    char hex[65];
    sha_init(&s);
    sha_update(&s, "abc", 3);
    sha_hex(&s, hex);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
}

/* ---------------------------------------------------------------- the inputs */

#define SEED 0x5EED0F11ull

static uint64_t mix(uint64_t c) {
    uint64_t z = SEED + (c + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

typedef struct { char name[64]; int64_t ne0, ne1; } tdesc;  /* ne1 0: a vector */

typedef struct {
    const char *arch;
    int d, L, nh, nkv, ff, nv, tied, bias;
    tdesc t[128];
    int nt;
} mspec;

static void add(mspec *m, const char *name, int64_t ne0, int64_t ne1) {
    snprintf(m->t[m->nt].name, sizeof m->t[0].name, "%s", name);
    m->t[m->nt].ne0 = ne0;
    m->t[m->nt].ne1 = ne1;
    m->nt++;
}

static void spec(char which, mspec *m) {
    memset(m, 0, sizeof *m);
    if (which == 'A') { m->arch = "llama"; m->d = 256; m->L = 8; m->nh = 4; m->nkv = 1; m->ff = 256; m->nv = 128; m->tied = 1; }
    else { m->arch = "qwen2"; m->d = 288; m->L = 4; m->nh = 3; m->nkv = 1; m->ff = 200; m->nv = 96; m->bias = 1; }
    const int hd = m->d / m->nh;
    char n[64];
    add(m, "token_embd.weight", m->d, m->nv);
    for (int i = 0; i < m->L; i++) {
#define T(s, a, b) do { snprintf(n, sizeof n, "blk.%d." s, i); add(m, n, a, b); } while (0)
        T("attn_norm.weight", m->d, 0);
        T("attn_q.weight", m->d, m->nh * hd);
        T("attn_k.weight", m->d, m->nkv * hd);
        T("attn_v.weight", m->d, m->nkv * hd);
        if (m->bias) {
            T("attn_q.bias", m->nh * hd, 0);
            T("attn_k.bias", m->nkv * hd, 0);
            T("attn_v.bias", m->nkv * hd, 0);
        }
        T("attn_output.weight", m->nh * hd, m->d);
        T("ffn_norm.weight", m->d, 0);
        T("ffn_gate.weight", m->d, m->ff);
        T("ffn_up.weight", m->d, m->ff);
        T("ffn_down.weight", m->ff, m->d);
#undef T
    }
    add(m, "output_norm.weight", m->d, 0);
    if (!m->tied) add(m, "output.weight", m->d, m->nv);
}

/* Writes the model and its GGUF imatrix (and, if dat_path, the same imatrix as legacy .dat
 * with ncall 1 and the sums divided by the count). */
static int write_inputs(char which, const char *model_path, const char *im_path, const char *dat_path) {
    mspec m;
    spec(which, &m);
    gguf_writer *w = gguf_writer_new();
    char key[128];
    int ok = w != NULL;
#define KEY(s) (snprintf(key, sizeof key, "%s." s, m.arch), key)
    ok = ok && !gguf_writer_set_str(w, "general.architecture", m.arch);
    ok = ok && !gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)m.L);
    ok = ok && !gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)m.d);
    ok = ok && !gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)m.nh);
    ok = ok && !gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)m.nkv);
#undef KEY
    uint64_t c = 0;
    for (int i = 0; ok && i < m.nt; i++) {
        const tdesc *t = &m.t[i];
        const int64_t rows = t->ne1 ? t->ne1 : 1, n = t->ne0 * rows;
        float *x = malloc((size_t)n * sizeof *x);
        if (!x) { ok = 0; break; }
        for (int64_t k = 0; k < n; k++, c++) {
            const uint64_t h = mix(c);
            float v = (float)((int64_t)(h >> 40) - (1 << 23)) / (float)(1 << 23);
            if ((h & 0xff) == 0) v *= 8;
            if (((h >> 8) & 0x3ff) == 0) v = 0;
            x[k] = v * ldexpf(1.0f, -(int)(2 + (k / t->ne0) % 4));
        }
        int64_t ne[2] = {t->ne0, rows};
        ok = !gguf_writer_add_tensor(w, t->name, 0, t->ne1 ? 2 : 1, ne, x, (size_t)n * 4);
        free(x);
    }
    void *buf = NULL;
    size_t size = 0;
    ok = ok && !gguf_writer_finish(w, &buf, &size);
    gguf_writer_free(w);
    FILE *f = ok ? fopen(model_path, "wb") : NULL;
    ok = f && fwrite(buf, 1, size, f) == size;
    if (f) fclose(f);
    free(buf);
    if (!ok) return -1;

    /* importance matrix: per matrix in file order, except token/norm vectors */
    w = gguf_writer_new();
    FILE *dat = dat_path ? fopen(dat_path, "wb") : NULL;
    int n_entries = 0;
    for (int i = 0; i < m.nt; i++) n_entries += m.t[i].ne1 != 0;
    if (dat) fwrite(&n_entries, 4, 1, dat);  /* little-endian host: what the .dat holds */
    const char *ds = "random";
    ok = w && !gguf_writer_set_arr_str(w, "imatrix.datasets", &ds, 1) &&
         !gguf_writer_set_u32(w, "imatrix.chunk_count", 1) && !gguf_writer_set_u32(w, "imatrix.chunk_size", 512);
    int idx = 0;
    for (int i = 0; ok && i < m.nt; i++) {
        const tdesc *t = &m.t[i];
        if (!t->ne1) continue;
        float *s = malloc((size_t)t->ne0 * sizeof *s), cnt = 16.0f * (float)(idx + 1);
        for (int64_t k = 0; k < t->ne0; k++, c++) s[k] = (float)((double)((mix(c) >> 40) + 1) / (1 << 20));
        char name[80];
        int64_t ne[1] = {t->ne0}, one[1] = {1};
        snprintf(name, sizeof name, "%s.in_sum2", t->name);
        ok = !gguf_writer_add_tensor(w, name, 0, 1, ne, s, (size_t)t->ne0 * 4);
        snprintf(name, sizeof name, "%s.counts", t->name);
        ok = ok && !gguf_writer_add_tensor(w, name, 0, 1, one, &cnt, 4);
        if (dat) {
            int32_t len = (int32_t)strlen(t->name), ncall = 1, nval = (int32_t)t->ne0;
            fwrite(&len, 4, 1, dat);
            fwrite(t->name, 1, (size_t)len, dat);
            fwrite(&ncall, 4, 1, dat);
            fwrite(&nval, 4, 1, dat);
            for (int64_t k = 0; k < t->ne0; k++) {
                float e = s[k] / cnt;
                fwrite(&e, 4, 1, dat);
            }
        }
        free(s);
        idx++;
    }
    if (dat) fclose(dat);
    ok = ok && !gguf_writer_finish(w, &buf, &size);
    gguf_writer_free(w);
    f = ok ? fopen(im_path, "wb") : NULL;
    ok = f && fwrite(buf, 1, size, f) == size;
    if (f) fclose(f);
    if (ok) free(buf);
    return ok ? 0 : -1;
}

/* ---------------------------------------------------------------- comparisons */

static char tmpdir[256];

static const char *tpath(const char *name) {
    static char buf[4][512];
    static int slot;
    char *b = buf[slot++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", tmpdir, name);
    return b;
}

/* file type, sha256 over name\0data of each tensor and the comma-separated types. */
static int summarize(const char *path, int *ftype, char hex[65], char *types, size_t tlen) {
    char err[256];
    gguf_ctx *g = gguf_open(path, err, sizeof err);
    if (!g) { printf("  %s: %s\n", path, err); return -1; }
    int64_t v = -1;
    gguf_get_int(g, "general.file_type", &v);
    *ftype = (int)v;
    sha256 s;
    sha_init(&s);
    types[0] = 0;
    size_t at = 0;
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        sha_update(&s, t->name, strlen(t->name) + 1);
        sha_update(&s, t->data, t->size);
        at += (size_t)snprintf(types + at, at < tlen ? tlen - at : 0, "%s%s", i ? "," : "", gguf_type_name(t->type));
    }
    sha_hex(&s, hex);
    gguf_close(g);
    return 0;
}

static int setup_done;

static int setup(void) {
    if (setup_done) return setup_done > 0 ? 0 : -1;
    snprintf(tmpdir, sizeof tmpdir, "%s/ember-quantize-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    setup_done = -1;
    if (!mkdtemp(tmpdir)) return -1;
    if (write_inputs('A', tpath("A.gguf"), tpath("A.imatrix.gguf"), tpath("A.imatrix.dat")) ||
        write_inputs('B', tpath("B.gguf"), tpath("B.imatrix.gguf"), NULL))
        return -1;
    setup_done = 1;
    return 0;
}

static void cleanup(void) {
    if (setup_done <= 0) return;
    const char *files[] = {"A.gguf", "A.imatrix.gguf", "A.imatrix.dat", "B.gguf", "B.imatrix.gguf", "out.gguf", "out2.gguf"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) unlink(tpath(files[i]));
    rmdir(tmpdir);
}

/* The trained fixture model and the importance matrix llama-imatrix computed for it. */
#define STORIES "models/stories260K.gguf"
#define STORIES_IMATRIX "tests/data/quantize/stories260K.imatrix.gguf"

/* Parses "<model>-<TYPE>[-imatrix][-pure][-leave-output]"; model A and B are written by
 * the test, S is the stories260K fixture. */
static int run_case(const char *cas, const char *out, int n_threads, const char *imatrix_file) {
    char model = cas[0], type[16] = {0};
    const char *p = cas + 2, *dash = strchr(p, '-');
    size_t tl = dash ? (size_t)(dash - p) : strlen(p);
    if (tl >= sizeof type) return -1;
    memcpy(type, p, tl);
    ember_quantize_params qp = ember_quantize_default_params();
    qp.ftype = ember_ftype_from_name(type);
    qp.n_threads = n_threads;
    qp.pure = strstr(cas, "-pure") != NULL;
    qp.leave_output_tensor = strstr(cas, "-leave-output") != NULL;
    ember_imatrix *im = NULL;
    if (strstr(cas, "-imatrix")) {
        char name[32];
        snprintf(name, sizeof name, "%c.imatrix.gguf", model);
        if (!imatrix_file) imatrix_file = model == 'S' ? STORIES_IMATRIX : tpath(name);
        if (ember_imatrix_load(imatrix_file, &im) != EMBER_OK) {
            printf("  imatrix: %s\n", ember_last_error());
            return -1;
        }
        qp.imatrix = im;
    }
    char in[16];
    snprintf(in, sizeof in, "%c.gguf", model);
    ember_status st = ember_model_quantize(model == 'S' ? fixture_path(STORIES) : tpath(in), out, &qp);
    ember_imatrix_free(im);
    if (st != EMBER_OK) printf("  %s: %s\n", cas, ember_last_error());
    return st == EMBER_OK ? 0 : -1;
}

TEST(test_vs_llamacpp) {
    size_t n;
    char *g = (char *)read_file("tests/golden/quantize/llamacpp.txt", &n);
    if (!g) SKIP("tests/golden/quantize/llamacpp.txt missing");
    if (setup()) { free(g); CHECKF(0, "cannot write the inputs in %s", tmpdir); return; }
    int cases = 0, same = 0, no_fixture = 0;
    const int have_stories = file_exists(fixture_path(STORIES));
    static char types[16384], want_types[16384];
    for (char *line = strtok(g, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        char cas[64], want_hex[65];
        int want_ft, ft = -1;
        if (sscanf(line, "%63s %d %64s %16383s", cas, &want_ft, want_hex, want_types) != 4) {
            CHECKF(0, "bad golden line '%.60s'", line);
            continue;
        }
        if (cas[0] == 'S' && !have_stories) { no_fixture++; continue; }
        cases++;
        char hex[65] = "";
        const char *out = tpath("out.gguf");
        if (run_case(cas, out, 2, NULL) || summarize(out, &ft, hex, types, sizeof types)) {
            CHECKF(0, "%s: no output", cas);
            continue;
        }
        const int ok = ft == want_ft && !strcmp(types, want_types) && !strcmp(hex, want_hex);
        CHECKF(ft == want_ft, "%s: file type %d, llama.cpp %d", cas, ft, want_ft);
        CHECKF(!strcmp(types, want_types), "%s: tensor types\n    ember    %s\n    llama.cpp %s", cas, types, want_types);
        CHECKF(!strcmp(hex, want_hex), "%s: tensor data differ", cas);
        same += ok;
    }
    printf("  %d of %d cases byte-identical to llama-quantize\n", same, cases);
    CHECK(cases >= 86);
    if (no_fixture) {
        free(g);
        SKIP("%d stories260K cases: fixture %s missing", no_fixture, fixture_path(STORIES));
    }
    free(g);
}

TEST(test_threads_and_legacy_imatrix) {
    if (setup()) SKIP("cannot write the inputs");
    char h1[65] = "", h2[65] = "";
    int f1, f2;
    static char t1[16384], t2[16384];
    /* 1 thread vs 3, and the GGUF imatrix vs the same values as a legacy .dat */
    CHECK(run_case("A-Q4_K_M-imatrix", tpath("out.gguf"), 1, NULL) == 0);
    CHECK(run_case("A-Q4_K_M-imatrix", tpath("out2.gguf"), 3, tpath("A.imatrix.dat")) == 0);
    CHECK(summarize(tpath("out.gguf"), &f1, h1, t1, sizeof t1) == 0);
    CHECK(summarize(tpath("out2.gguf"), &f2, h2, t2, sizeof t2) == 0);
    CHECK(h1[0] && !strcmp(h1, h2));
    CHECK(!strcmp(t1, t2));
    struct stat st;
    CHECK(stat(tpath("out.gguf.tmp"), &st) != 0);  /* renamed away */
}

TEST(test_failure_leaves_no_file) {
    if (setup()) SKIP("cannot write the inputs");
    /* a quantized input without allow_requantize fails midway: nothing under OUT's name */
    ember_quantize_params qp = ember_quantize_default_params();
    qp.ftype = EMBER_FTYPE_MOSTLY_Q4_0;
    CHECK(ember_model_quantize(tpath("A.gguf"), tpath("out.gguf"), &qp) == EMBER_OK);
    unlink(tpath("out2.gguf"));
    qp.ftype = EMBER_FTYPE_MOSTLY_Q8_0;
    CHECK(ember_model_quantize(tpath("out.gguf"), tpath("out2.gguf"), &qp) == EMBER_E_INVALID);
    CHECK(strstr(ember_last_error(), "requantizing") != NULL);
    struct stat st;
    CHECK(stat(tpath("out2.gguf"), &st) != 0);
    CHECK(stat(tpath("out2.gguf.tmp"), &st) != 0);
    /* with allow_requantize it works (dequantized Q4_0 -> Q8_0) */
    qp.allow_requantize = 1;
    CHECK(ember_model_quantize(tpath("out.gguf"), tpath("out2.gguf"), &qp) == EMBER_OK);
    /* unknown file types are refused */
    qp.ftype = 19;  /* IQ2_XXS: llama.cpp has it, ember does not */
    CHECK(ember_model_quantize(tpath("A.gguf"), tpath("out2.gguf"), &qp) == EMBER_E_INVALID);
    /* Q2_K_S without an importance matrix is refused, as llama-quantize refuses it */
    qp.ftype = EMBER_FTYPE_MOSTLY_Q2_K_S;
    unlink(tpath("out2.gguf"));
    CHECK(ember_model_quantize(tpath("A.gguf"), tpath("out2.gguf"), &qp) == EMBER_E_INVALID);
    CHECK(strstr(ember_last_error(), "importance matrix") != NULL);
    CHECK(stat(tpath("out2.gguf"), &st) != 0 && stat(tpath("out2.gguf.tmp"), &st) != 0);
    /* a weight beyond the f16 range: inf after conversion fails validation, as in ggml */
    gguf_writer *w = gguf_writer_new();
    float x[64] = {0};
    x[5] = 1e6f;
    int64_t ne[2] = {32, 2};
    void *buf = NULL;
    size_t size = 0;
    CHECK(!gguf_writer_set_str(w, "general.architecture", "llama") && !gguf_writer_set_u32(w, "llama.block_count", 1));
    CHECK(!gguf_writer_add_tensor(w, "blk.0.ffn_up.weight", 0, 2, ne, x, sizeof x));
    CHECK(!gguf_writer_finish(w, &buf, &size));
    gguf_writer_free(w);
    FILE *f = fopen(tpath("out.gguf"), "wb");
    CHECK(f && fwrite(buf, 1, size, f) == size);
    if (f) fclose(f);
    free(buf);
    unlink(tpath("out2.gguf"));
    qp = ember_quantize_default_params();
    qp.ftype = EMBER_FTYPE_MOSTLY_F16;
    CHECK(ember_model_quantize(tpath("out.gguf"), tpath("out2.gguf"), &qp) == EMBER_E_FORMAT);
    CHECK(strstr(ember_last_error(), "validation") != NULL);
    CHECK(stat(tpath("out2.gguf"), &st) != 0 && stat(tpath("out2.gguf.tmp"), &st) != 0);
    qp.ftype = EMBER_FTYPE_MOSTLY_Q8_0;  /* fine as Q8_0 */
    CHECK(ember_model_quantize(tpath("out.gguf"), tpath("out2.gguf"), &qp) == EMBER_OK);
    CHECK(ember_ftype_from_name("q4_k_m") == EMBER_FTYPE_MOSTLY_Q4_K_M);
    CHECK(ember_ftype_from_name("15") == EMBER_FTYPE_MOSTLY_Q4_K_M);
    CHECK(ember_ftype_from_name("q3_k_m") == EMBER_FTYPE_MOSTLY_Q3_K_M);
    CHECK(ember_ftype_from_name("Q2_K_S") == EMBER_FTYPE_MOSTLY_Q2_K_S);
    CHECK(ember_ftype_from_name("IQ2_XXS") == -1);
    CHECK(ember_ftype_from_name("iq4_xs") == EMBER_FTYPE_MOSTLY_IQ4_XS);
    CHECK(ember_ftype_from_name("37") == EMBER_FTYPE_MOSTLY_TQ2_0);
    CHECK(!strcmp(ember_ftype_name(EMBER_FTYPE_MOSTLY_TQ1_0), "TQ1_0"));
    CHECK(!strcmp(ember_ftype_name(EMBER_FTYPE_MOSTLY_BF16), "BF16"));
}

/* The default model (Q4_1, so requantized) with an importance matrix llama-imatrix computed
 * on it: the whole output file, metadata included, is llama-quantize's. */
TEST(test_default_model_imatrix) {
    const char *model = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (!file_exists(model)) SKIP("default model missing: run scripts/fetch-model.sh");
    size_t n;
    char *g = (char *)read_file("tests/golden/quantize/smollm2.txt", &n), want[65] = "";
    if (!g) SKIP("tests/golden/quantize/smollm2.txt missing");
    const char *line = strstr(g, "Q4_K_M-imatrix ");
    CHECK(line && sscanf(line + 15, "%64s", want) == 1);
    free(g);
    if (setup()) SKIP("cannot make %s", tmpdir);
    ember_imatrix *im = NULL;
    CHECK(ember_imatrix_load("tests/data/quantize/smollm2.imatrix.gguf", &im) == EMBER_OK);
    CHECK(ember_imatrix_n_chunks(im) == 6);
    ember_quantize_params qp = ember_quantize_default_params();
    qp.ftype = EMBER_FTYPE_MOSTLY_Q4_K_M;
    qp.n_threads = 2;
    qp.allow_requantize = 1;
    qp.imatrix = im;
    const char *out = tpath("out.gguf");
    CHECKF(ember_model_quantize(model, out, &qp) == EMBER_OK, "%s", ember_last_error());
    /* Q2_K_S with this matrix (blocks 0-3 only): llama-quantize bails out at the first Q2_K
     * tensor the matrix lacks (blk.4.ffn_down; the 576-wide rows fall back to Q4_0) */
    qp.ftype = EMBER_FTYPE_MOSTLY_Q2_K_S;
    const char *out2 = tpath("out2.gguf");
    unlink(out2);
    CHECK(ember_model_quantize(model, out2, &qp) == EMBER_E_INVALID);
    CHECKF(strstr(ember_last_error(), "missing importance matrix for tensor blk.4.ffn_down.weight"), "%s",
           ember_last_error());
    struct stat st;
    CHECK(stat(out2, &st) != 0);
    ember_imatrix_free(im);
    unsigned char *data = read_file(out, &n);
    char hex[65] = "";
    if (data) {
        sha256 s;
        sha_init(&s);
        sha_update(&s, data, n);
        sha_hex(&s, hex);
        free(data);
    }
    CHECKF(!strcmp(hex, want), "sha256 %s, llama-quantize's %s", hex, want);
}

/* Legacy .dat edge cases: a repeated name keeps the last entry (llama.cpp's map), and
 * every truncation of a valid file is an error, not a crash. */
TEST(test_imatrix_legacy_edges) {
    if (setup()) SKIP("cannot make %s", tmpdir);
    unsigned char f[256];
    size_t n = 0;
#define PUT32(v) do { int32_t v_ = (v); memcpy(f + n, &v_, 4); n += 4; } while (0)
    PUT32(3);
    const char *names[3] = {"x.weight", "y.weight", "x.weight"};
    for (int e = 0; e < 3; e++) {
        PUT32((int32_t)strlen(names[e]));
        memcpy(f + n, names[e], strlen(names[e]));
        n += strlen(names[e]);
        PUT32(1);
        PUT32(4);
        for (int k = 0; k < 4; k++) { float v = (float)(e + 1); memcpy(f + n, &v, 4); n += 4; }
    }
#undef PUT32
    ember_imatrix *im = NULL;
    for (size_t cut = 0; cut <= n; cut++) {
        FILE *fp = fopen(tpath("out.gguf"), "wb");
        CHECK(fp && fwrite(f, 1, cut, fp) == cut);
        if (fp) fclose(fp);
        ember_status st = ember_imatrix_load(tpath("out.gguf"), &im);
        if (cut == n) {
            CHECK(st == EMBER_OK && ember_imatrix_n_entries(im) == 2);
        } else {
            CHECKF(st != EMBER_OK && im == NULL, "cut at %zu of %zu", cut, n);
        }
        ember_imatrix_free(im);
        im = NULL;
    }
}


/* ---------------------------------------------------------------- ember's own formats */

static uint64_t seed_rng = 0x2545F4914F6CDD1Dull;
static uint32_t seed_rnd(void) {
    seed_rng ^= seed_rng >> 12; seed_rng ^= seed_rng << 25; seed_rng ^= seed_rng >> 27;
    return (uint32_t)((seed_rng * 0x2545F4914F6CDD1Dull) >> 32);
}
static float seed_unif(void) { return (float)seed_rnd() / 4294967296.0f; }
static float seed_gauss(void) { float s = 0; for (int i = 0; i < 6; i++) s += seed_unif(); return s - 3.0f; }

/* Code j of n (bits wide) read from bit planes as quant.h describes them. */
static int seed_code(const uint8_t *p, int n, int bits, int j) {
    if (bits == 8) return p[j];
    int q = 0, lo = 0;
    const int widths[3] = { 4, 2, 1 };
    for (int k = 0; k < 3; k++) {
        const int wd = widths[k];
        if (!(bits & wd)) continue;
        int v;
        if (wd == 4) v = (p[j % (n / 2)] >> 4 * (j / (n / 2))) & 15;
        else if (wd == 2) v = (p[j % (n / 4)] >> 2 * (j / (n / 4))) & 3;
        else v = (p[j / 8] >> (j % 8)) & 1;
        q |= v << lo;
        lo += wd;
        p += n * wd / 8;
    }
    return q;
}

/* Dequantization of random blocks equals the formula on the codes read here. */
TEST(test_seed_layout) {
    for (int t = EM_SEED_FIRST; t < EM_SEED_END; t++) {
        const em_type_info *ti = em_type_get(t);
        CHECK(ti && ti->vec_dot_type == EM_Q8_0);
        if (!ti) continue;
        if (t == EM_OVP4) continue;  /* test_seed_ovp_layout */
        const int ib = em_int_bits(t), fb = em_bfp_bits(t), bits = ib ? ib : fb;
        CHECK(ti->blck == (ib ? 64 : 32) && ti->bytes == (ib ? 4 + 8 * (size_t)ib : 1 + 4 * (size_t)fb));
        uint8_t blk[4][68];
        float y[4 * 64];
        for (int b = 0; b < 4; b++) {
            for (size_t i = 0; i < ti->bytes; i++) blk[b][i] = (uint8_t)seed_rnd();
            if (ib) {
                const uint16_t d = em_f32_to_f16((seed_unif() - 0.5f) * 0.1f), m = em_f32_to_f16((seed_unif() - 0.5f) * 0.5f);
                memcpy(blk[b], &d, 2);
                memcpy(blk[b] + 2, &m, 2);
            } else {
                blk[b][0] = (uint8_t)(b == 3 ? 0 : 110 + seed_rnd() % 20);
            }
        }
        uint8_t row[4 * 68];
        for (int b = 0; b < 4; b++) memcpy(row + b * ti->bytes, blk[b], ti->bytes);
        CHECK(em_dequantize_row(t, row, y, 4 * ti->blck) == 0);
        int bad = 0;
        for (int b = 0; b < 4; b++)
            for (int j = 0; j < ti->blck; j++) {
                const int q = seed_code(blk[b] + (ib ? 4 : 1), ti->blck, bits, j);
                float want;
                if (ib) {
                    uint16_t d, m;
                    memcpy(&d, blk[b], 2);
                    memcpy(&m, blk[b] + 2, 2);
                    want = em_f16_to_f32(d) * (float)q + em_f16_to_f32(m);
                } else {
                    want = blk[b][0] ? ldexpf((float)(q - (1 << (bits - 1))), blk[b][0] - 127) : 0.0f;
                }
                bad += y[b * ti->blck + j] != want;
            }
        CHECKF(!bad, "%s: %d values differ from the documented layout", ti->name, bad);
    }
}

/* OVP4 values as OliVe's 4-bit pairs: int4 -7..7 in units of 4 of the normalized grid
 * (+-28 at most), the marker 1000b zeroing the victim, the partner an abfloat
 * 2^e (1 + m/2), e = 5..8, 32 excluded: here in units of that grid / 4. */
TEST(test_seed_ovp_layout) {
    const em_type_info *ti = em_type_get(EM_OVP4);
    CHECK(ti && ti->blck == 64 && ti->bytes == 34 && ti->vec_dot_type == EM_Q8_0);
    if (!ti) return;
    block_ovp4 b[8];
    float y[8 * 64];
    for (int i = 0; i < 8; i++) {
        for (int j = 0; j < 32; j++) b[i].qs[j] = (uint8_t)seed_rnd();
        b[i].d = em_f32_to_f16((seed_unif() - 0.5f) * 0.1f);
    }
    CHECK(em_dequantize_row(EM_OVP4, b, y, 8 * 64) == 0);
    int bad = 0;
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 64; j++) {
            const int byte = b[i].qs[j % 32], mine = j < 32 ? byte & 15 : byte >> 4, other = j < 32 ? byte >> 4 : byte & 15;
            double v;  /* in OliVe's normalized units (normal step 4) */
            if (mine == 8) v = 0;
            else if (other == 8) {
                const int k = mine & 7, e = 5 + k / 2;
                v = k == 0 ? 0 : ldexp(1.0 + (k % 2) * 0.5, e);
                if (mine & 8) v = -v;
            } else v = 4.0 * (mine < 8 ? mine : mine - 16);
            bad += y[i * 64 + j] != (float)(em_f16_to_f32(b[i].d) * (v / 4));
        }
    CHECKF(!bad, "%d values differ from OliVe's pair decoding", bad);
}

/* The quantizers: error well under plain round-to-nearest's (min/max scale for INT, the
 * smallest fitting exponent for BFP), falling with the width, and the importance matrix
 * lowers the error it weights. Rows have heavy tails and one outlier per 200 values. */
TEST(test_seed_quantizers) {
    enum { N = 576, ROWS = 24 };
    float *x = malloc(sizeof(float) * N * ROWS), *y = malloc(sizeof(float) * N * ROWS), qw[N];
    uint8_t *q = malloc(68 * (N / 32) * ROWS);
    for (int i = 0; i < N * ROWS; i++) {
        const float g = seed_gauss();
        x[i] = 0.02f * g * (1.0f + g * g / 4) * (seed_rnd() % 200 == 0 ? 8.0f : 1.0f);
    }
    for (int j = 0; j < N; j++) qw[j] = j % 7 == 0 ? 50.0f * seed_unif() : 0.01f + seed_unif();
    double prev_rmse = INFINITY;
    for (int t = EM_SEED_FIRST; t < EM_SEED_END; t++) {
        const em_type_info *ti = em_type_get(t);
        const int ib = em_int_bits(t), ovp = t == EM_OVP4, bits = ib ? ib : ovp ? 4 : em_bfp_bits(t);
        if (t == EM_BFP3 || ovp) prev_rmse = INFINITY;
        CHECK(em_quantize_weights(t, x, q, ROWS, N, NULL) == ti->bytes * (size_t)(N / ti->blck) * ROWS);
        CHECK(em_dequantize_row(t, q, y, (int64_t)N * ROWS) == 0);
        double se = 0, se_rtn = 0, sx = 0;
        for (int g = 0; g < N * ROWS / ti->blck; g++) {
            const float *xg = x + g * ti->blck;
            float lo = xg[0], hi = xg[0], amax = 0;
            for (int j = 0; j < ti->blck; j++) {
                lo = fminf(lo, xg[j]); hi = fmaxf(hi, xg[j]); amax = fmaxf(amax, fabsf(xg[j]));
            }
            for (int j = 0; j < ti->blck; j++) {
                float r;  /* round to nearest with the naive scale */
                if (ovp) {  /* plain symmetric int4, -7..7 */
                    const float d = amax / 7.0f;
                    r = d > 0 ? d * nearbyintf(xg[j] / d) : 0.0f;
                } else if (ib) {
                    const float d = (hi - lo) / (float)((1 << bits) - 1);
                    r = d > 0 ? lo + d * nearbyintf((xg[j] - lo) / d) : lo;
                } else {
                    int e;
                    frexpf(amax / ((float)(1 << (bits - 1)) - 0.5f), &e);
                    const float sc = ldexpf(1.0f, e);
                    r = sc * fminf(fmaxf(nearbyintf(xg[j] / sc), (float)-(1 << (bits - 1))), (float)((1 << (bits - 1)) - 1));
                }
                const double dq = (double)xg[j] - y[g * ti->blck + j];
                se += dq * dq;
                se_rtn += ((double)xg[j] - r) * ((double)xg[j] - r);
                sx += (double)xg[j] * xg[j];
            }
        }
        const double rmse = sqrt(se / sx);
        printf("  %s: relative rms error %.5f (round to nearest %.5f)\n", ti->name, rmse, sqrt(se_rtn / sx));
        CHECKF(se <= 1.02 * se_rtn, "%s: %g > round-to-nearest %g", ti->name, se, se_rtn);
        CHECKF(rmse < 0.75 * prev_rmse, "%s: rms error %g, one bit narrower %g", ti->name, rmse, prev_rmse);
        prev_rmse = rmse;
        /* with an importance matrix: less error where it puts the weight */
        double ew[2];
        for (int k = 0; k < 2; k++) {
            CHECK(em_quantize_weights(t, x, q, ROWS, N, k ? qw : NULL) > 0);
            em_dequantize_row(t, q, y, (int64_t)N * ROWS);
            ew[k] = 0;
            for (int i = 0; i < N * ROWS; i++) ew[k] += qw[i % N] * ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        }
        CHECKF(ew[1] < ew[0], "%s: imatrix-weighted error %g with it, %g without", ti->name, ew[1], ew[0]);
        /* the reference row quantizer (from_float) is the weight quantizer without imatrix */
        uint8_t *q2 = malloc(ti->bytes * (N / ti->blck));
        CHECK(em_quantize_row(t, x, q2, N) == 0);
        em_quantize_weights(t, x, q, 1, N, NULL);
        CHECK(!memcmp(q, q2, ti->bytes * (N / ti->blck)));
        free(q2);
    }
    /* zero and constant groups come back exactly */
    float z[64] = { 0 }, c[64];
    for (int j = 0; j < 64; j++) c[j] = -0.375f;
    for (int t = EM_SEED_FIRST; t < EM_SEED_END; t++) {
        em_quantize_weights(t, z, q, 1, 64, NULL);
        em_dequantize_row(t, q, y, 64);
        int bad = 0;
        for (int j = 0; j < 64; j++) bad += y[j] != 0.0f;
        em_quantize_weights(t, c, q, 1, 64, NULL);
        em_dequantize_row(t, q, y, 64);
        for (int j = 0; j < 64 && t != EM_OVP4; j++) bad += y[j] != -0.375f;  /* OVP4's scale is searched, not fitted */
        CHECKF(!bad, "%s: %d values of a zero or constant row differ", em_type_get(t)->name, bad);
    }
    free(x); free(y); free(q);
}

/* em_vec_dot against a double dot of the dequantized operands. */
TEST(test_seed_vec_dot) {
    enum { N = 1024 };
    float x[N], a[N], wd[N], ad[N];
    uint8_t w[68 * N / 32];
    block_q8_0 aq[N / 32];
    for (int rep = 0; rep < 4; rep++) {
        for (int i = 0; i < N; i++) { x[i] = seed_gauss() * 0.05f; a[i] = seed_gauss() * (rep == 3 ? 30.0f : 1.0f); }
        em_quantize_row(EM_Q8_0, a, aq, N);
        em_dequantize_row(EM_Q8_0, aq, ad, N);
        for (int t = EM_SEED_FIRST; t < EM_SEED_END; t++) {
            em_quantize_weights(t, x, w, 1, N, NULL);
            em_dequantize_row(t, w, wd, N);
            double dot = 0, mag = 0;
            for (int i = 0; i < N; i++) { dot += (double)wd[i] * ad[i]; mag += fabs((double)wd[i] * ad[i]); }
            const float v = em_vec_dot(t, N, w, aq);
            CHECKF(fabs(v - dot) <= 1e-5 * mag + 1e-30, "%s: %.9g vs %.9g", em_type_get(t)->name, v, dot);
        }
    }
}

/* File ids 4096.. map to the seed types and back; ember's internal ids are not file ids. */
TEST(test_seed_gguf_ids) {
    CHECK(em_type_from_gguf(4096) == EM_INT2 && em_type_from_gguf(4102) == EM_INT8);
    CHECK(em_type_from_gguf(4103) == EM_BFP3 && em_type_from_gguf(4107) == EM_BFP7);
    CHECK(em_type_from_gguf(4108) == EM_OVP4 && em_type_from_gguf(4109) == UINT32_MAX && em_type_from_gguf(4095) == UINT32_MAX);
    CHECK(em_type_from_gguf(EM_INT4) == UINT32_MAX && em_type_from_gguf(EM_Q4_K) == EM_Q4_K);
    for (int t = 0; t < EM_TYPE_COUNT; t++)
        if (em_type_traits((uint32_t)t)) CHECK(em_type_from_gguf(em_type_to_gguf((uint32_t)t)) == (uint32_t)t);
    CHECK(ember_ftype_from_name("int4") == EMBER_FTYPE_MOSTLY_INT4 && ember_ftype_from_name("BFP7") == EMBER_FTYPE_MOSTLY_BFP7);
    CHECK(!strcmp(ember_ftype_name(EMBER_FTYPE_MOSTLY_INT2), "INT2"));
}

/* Greedy-free comparison on logits: mean KL divergence of the quantized model from F32
 * over n positions, and how many argmaxes agree. */
static int seed_logits(const char *path, const ember_token *toks, int n, float *out, int n_vocab) {
    ember_model *m = NULL;
    ember_context *ctx = NULL;
    ember_model_params mp = ember_model_default_params();
    if (ember_model_load(path, &mp, &m) != EMBER_OK) { printf("  %s: %s\n", path, ember_last_error()); return -1; }
    ember_context_params cp = ember_context_default_params();
    cp.n_ctx = 128;
    cp.n_threads = 1;
    int ok = ember_model_n_vocab(m) == n_vocab && ember_context_new(m, &cp, &ctx) == EMBER_OK &&
             ember_decode(ctx, toks, n, 1) == EMBER_OK;
    for (int i = 0; ok && i < n; i++) memcpy(out + (size_t)i * n_vocab, ember_get_logits(ctx, i), sizeof(float) * n_vocab);
    ember_context_free(ctx);
    ember_model_free(m);
    return ok ? 0 : -1;
}

static double seed_kld(const float *p, const float *q, int n_vocab, int *same) {
    double mp = -INFINITY, mq = -INFINITY, sp = 0, sq = 0, kl = 0;
    int ap = 0, aq = 0;
    for (int i = 0; i < n_vocab; i++) {
        if (p[i] > mp) { mp = p[i]; ap = i; }
        if (q[i] > mq) { mq = q[i]; aq = i; }
    }
    for (int i = 0; i < n_vocab; i++) { sp += exp(p[i] - mp); sq += exp(q[i] - mq); }
    for (int i = 0; i < n_vocab; i++) {
        const double lp = p[i] - mp - log(sp), lq = q[i] - mq - log(sq);
        kl += exp(lp) * (lp - lq);
    }
    *same += ap == aq;
    return kl;
}

TEST(test_seed_model) {
    if (!file_exists(fixture_path(STORIES))) SKIP("fixture %s missing", fixture_path(STORIES));
    if (setup()) SKIP("cannot write the inputs");
    enum { NT = 48, NV = 512 };
    ember_token toks[NT];
    toks[0] = 1;
    for (int i = 1; i < NT; i++) toks[i] = (ember_token)(3 + (i * 37) % 500);
    float *base = malloc(sizeof(float) * NT * NV), *lg = malloc(sizeof(float) * NT * NV);
    CHECK(seed_logits(fixture_path(STORIES), toks, NT, base, NV) == 0);
    static const int fts[] = { EMBER_FTYPE_MOSTLY_INT2, EMBER_FTYPE_MOSTLY_INT3, EMBER_FTYPE_MOSTLY_INT4,
                               EMBER_FTYPE_MOSTLY_INT6, EMBER_FTYPE_MOSTLY_INT8, EMBER_FTYPE_MOSTLY_BFP3,
                               EMBER_FTYPE_MOSTLY_BFP5, EMBER_FTYPE_MOSTLY_BFP7, EMBER_FTYPE_MOSTLY_OVP4 };
    static const int want[] = { EM_INT2, EM_INT3, EM_INT4, EM_INT6, EM_INT8, EM_BFP3, EM_BFP5, EM_BFP7, EM_OVP4 };
    /* llama.cpp's Q8_0 as the yardstick: its loss is mostly the activations' own Q8_0 */
    double kl_q8 = INFINITY;
    {
        ember_quantize_params qp = ember_quantize_default_params();
        qp.ftype = EMBER_FTYPE_MOSTLY_Q8_0;
        int same = 0;
        if (ember_model_quantize(fixture_path(STORIES), tpath("out.gguf"), &qp) == EMBER_OK &&
            seed_logits(tpath("out.gguf"), toks, NT, lg, NV) == 0) {
            kl_q8 = 0;
            for (int i = 0; i < NT; i++) kl_q8 += seed_kld(base + i * NV, lg + i * NV, NV, &same);
            kl_q8 /= NT;
        }
        printf("  Q8_0: mean KLD %.6f, top-1 %d/%d\n", kl_q8, same, NT);
        CHECK(kl_q8 < 0.01);
    }
    double kl_prev = INFINITY;
    for (size_t k = 0; k < sizeof fts / sizeof *fts; k++) {
        ember_quantize_params qp = ember_quantize_default_params();
        qp.ftype = fts[k];
        if (k == 5 || fts[k] == EMBER_FTYPE_MOSTLY_OVP4) kl_prev = INFINITY;
        CHECK(ember_model_quantize(fixture_path(STORIES), tpath("out.gguf"), &qp) == EMBER_OK);
        /* the file holds the seed type ids (4096..), read back as ember's */
        size_t n = 0;
        unsigned char *raw = read_file(tpath("out.gguf"), &n);
        const uint32_t fid = em_type_to_gguf((uint32_t)want[k]);
        int found = 0;
        for (size_t i = 0; raw && i + 4 <= n && i < 65536; i++) found |= !memcmp(raw + i, &fid, 4);
        free(raw);
        CHECKF(found, "file id %u not in the file", fid);
        char err[256];
        gguf_ctx *g = gguf_open(tpath("out.gguf"), err, sizeof err);
        CHECK(g != NULL);
        const gguf_tensor *tq = g ? gguf_find_tensor(g, "blk.0.attn_q.weight") : NULL;
        const gguf_tensor *td = g ? gguf_find_tensor(g, "blk.0.ffn_down.weight") : NULL;
        CHECK(tq && (int)tq->type == want[k]);
        CHECK(td && td->type == EM_F16);  /* 172 columns: F16, as llama.cpp's fallback */
        if (g) gguf_close(g);
        if (seed_logits(tpath("out.gguf"), toks, NT, lg, NV)) { CHECK(0); continue; }
        double kl = 0;
        int same = 0;
        for (int i = 0; i < NT; i++) kl += seed_kld(base + i * NV, lg + i * NV, NV, &same);
        kl /= NT;
        printf("  %s: mean KLD %.6f, top-1 %d/%d\n", ember_ftype_name(fts[k]), kl, same, NT);
        CHECKF(kl < kl_prev, "%s: KLD %g not below the narrower format's %g", ember_ftype_name(fts[k]), kl, kl_prev);
        if (fts[k] == EMBER_FTYPE_MOSTLY_INT8) CHECKF(kl < 2 * kl_q8, "INT8 KLD %g, Q8_0 %g", kl, kl_q8);
        kl_prev = kl;
    }
    unlink(tpath("out.gguf"));
    free(base);
    free(lg);
}

int main(void) {
    RUN(test_sha256);
    RUN(test_vs_llamacpp);
    RUN(test_threads_and_legacy_imatrix);
    RUN(test_failure_leaves_no_file);
    RUN(test_imatrix_legacy_edges);
    RUN(test_default_model_imatrix);
    RUN(test_seed_layout);
    RUN(test_seed_ovp_layout);
    RUN(test_seed_quantizers);
    RUN(test_seed_vec_dot);
    RUN(test_seed_gguf_ids);
    RUN(test_seed_model);
    cleanup();
    return test_done();
}
