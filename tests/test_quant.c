/* test_quant.c: src/quant/quant.c against independent references.
 *   - fp16/bf16: every half / bf16 value, every rounding tie, a 1M-value sample of all
 *     floats against a double-precision rounding reference, and numpy / gguf-py vectors.
 *   - dequantizers and Q8_0/Q4_0/Q4_1/Q5_0/Q5_1 quantizers: bit-exact against gguf-py vectors in
 *     tests/data/quant (made by scripts/make_quant_vectors.py; skipped when absent), incl.
 *     blocks cut from the synthetic GGUF fixtures.
 *   - activation quantizers: ties-to-even and the exact formulas; error bounds per type.
 *   - vec_dot: against a double dot of the dequantized operands with a bound derived from
 *     the float operations involved, and bit for bit against re-statements of ggml's
 *     generic k-quant loops (their summation order is part of the spec). */
#include "model/gguf.h"
#include "quant/quant.h"
#include "test.h"

#include <stdint.h>

/* ---------------------------------------------------------------- helpers */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {  /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float frand(void) { return (float)((rnd() >> 40) * (1.0 / 16777216.0)); }  /* [0,1) */
static float gauss(void) {  /* sum of uniforms: bell-shaped, no libm dependence on tails */
    float s = 0;
    for (int i = 0; i < 6; i++) s += frand();
    return s - 3.0f;
}
static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* A random fp16 scale of magnitude in [1e-3, 1e-1] with random sign. */
static uint16_t rand_scale16(void) {
    float m = expf(logf(1e-3f) + frand() * (logf(1e-1f) - logf(1e-3f)));
    return (uint16_t)(em_f32_to_f16(m) | ((rnd() & 1) << 15));
}

/* Random but valid weight blocks: random bytes, sane fp16 scale fields. */
static void rand_weight_blocks(int type, void *buf, int64_t nb) {
    const em_type_info *ti = em_type_get(type);
    uint8_t *p = buf;
    for (size_t i = 0; i < (size_t)nb * ti->bytes; i++) p[i] = (uint8_t)rnd();
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = p + b * ti->bytes;
        uint16_t s0 = rand_scale16(), s1 = rand_scale16();
        switch (type) {
        case EM_Q4_0: case EM_Q5_0: case EM_Q8_0: memcpy(blk, &s0, 2); break;
        case EM_Q4_1: case EM_Q5_1: case EM_Q4_K: case EM_Q5_K: memcpy(blk, &s0, 2); memcpy(blk + 2, &s1, 2); break;
        case EM_Q6_K: memcpy(blk + 208, &s0, 2); break;
        case EM_Q2_K: memcpy(blk + 80, &s0, 2); memcpy(blk + 82, &s1, 2); break;
        case EM_Q3_K: memcpy(blk + 108, &s0, 2); break;
        case EM_IQ4_NL: case EM_IQ4_XS: memcpy(blk, &s0, 2); break;
        case EM_TQ1_0: case EM_TQ2_0: memcpy(blk + ti->bytes - 2, &s0, 2); break;
        default: break;
        }
    }
}

typedef struct {
    int kind, type, nblocks, bytes, blck;
    uint8_t *blocks;  /* nblocks * bytes, malloc'd (aligned for any block type) */
    float *floats;    /* nblocks * blck */
} vecfile;

/* Reads tests/data/quant/<name>; 0 if absent or malformed (format: make_quant_vectors.py). */
static int load_vec(const char *name, vecfile *v) {
    char path[256];
    snprintf(path, sizeof path, "tests/data/quant/%s", name);
    size_t n = 0;
    unsigned char *d = read_file(path, &n);
    if (!d) return 0;
    uint32_t h[8];
    if (n < 32 || memcmp(d, "EMQV", 4)) { free(d); return 0; }
    memcpy(h, d, 32);
    v->kind = (int)h[2]; v->type = (int)h[3]; v->nblocks = (int)h[4];
    v->bytes = (int)h[5]; v->blck = (int)h[6];
    size_t nbytes = (size_t)v->nblocks * v->bytes, nfl = (size_t)v->nblocks * v->blck;
    if (h[1] != 1 || n != 32 + nbytes + 4 * nfl) { free(d); return 0; }
    v->blocks = malloc(nbytes + 1);
    v->floats = malloc(4 * nfl + 4);
    const unsigned char *pb = d + 32, *pf = d + 32 + nbytes;
    if (v->kind == 2) { pf = d + 32; pb = d + 32 + 4 * nfl; }
    memcpy(v->blocks, pb, nbytes);
    memcpy(v->floats, pf, 4 * nfl);
    free(d);
    return 1;
}
static void free_vec(vecfile *v) { free(v->blocks); free(v->floats); }

/* ---------------------------------------------------------------- type table */

TEST(test_type_info) {
    static const struct { int t; const char *name; int blck; size_t bytes; int vdt; } want[] = {
        { EM_F32, "f32", 1, 4, EM_F32 },       { EM_F16, "f16", 1, 2, EM_F16 },
        { EM_BF16, "bf16", 1, 2, EM_BF16 },    { EM_Q8_0, "q8_0", 32, 34, EM_Q8_0 },
        { EM_Q8_1, "q8_1", 32, 36, -1 },       { EM_Q4_0, "q4_0", 32, 18, EM_Q8_0 },
        { EM_Q4_1, "q4_1", 32, 20, EM_Q8_1 },  { EM_Q5_0, "q5_0", 32, 22, EM_Q8_0 },
        { EM_Q5_1, "q5_1", 32, 24, EM_Q8_1 },  { EM_Q4_K, "q4_K", 256, 144, EM_Q8_K },
        { EM_Q5_K, "q5_K", 256, 176, EM_Q8_K }, { EM_Q6_K, "q6_K", 256, 210, EM_Q8_K },
        { EM_Q8_K, "q8_K", 256, 292, -1 },     { EM_Q2_K, "q2_K", 256, 84, EM_Q8_K },
        { EM_Q3_K, "q3_K", 256, 110, EM_Q8_K },
        { EM_IQ4_NL, "iq4_nl", 32, 18, EM_Q8_0 }, { EM_IQ4_XS, "iq4_xs", 256, 136, EM_Q8_K },
        { EM_TQ1_0, "tq1_0", 256, 54, EM_Q8_K },  { EM_TQ2_0, "tq2_0", 256, 66, EM_Q8_K },
    };
    int count = 0;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const em_type_info *ti = em_type_get(want[i].t);
        CHECK(ti != NULL);
        if (!ti) continue;
        CHECKF(strcmp(ti->name, want[i].name) == 0, "%s", ti->name);
        CHECK(ti->blck == want[i].blck);
        CHECK(ti->bytes == want[i].bytes);
        CHECK(ti->vec_dot_type == want[i].vdt);
        CHECK(em_row_size(want[i].t, 4096) == 4096 / want[i].blck * want[i].bytes);
    }
    for (int t = -2; t < EM_TYPE_COUNT + 2; t++) count += em_type_get(t) != NULL;
    CHECK(count == 32);  /* 19 ggml types, 13 of ember's own */
    CHECK(em_type_get(16) == NULL && em_type_get(EM_TYPE_COUNT) == NULL && em_type_get(-1) == NULL);
    /* the same table knows the types ember does not compute with, for GGUF layout */
    const em_type_info *iq2 = em_type_traits(16), *mx = em_type_traits(39);
    CHECK(iq2 && !strcmp(iq2->name, "iq2_xxs") && iq2->blck == 256 && iq2->bytes == 66 && !iq2->to_float);
    CHECK(mx && !strcmp(mx->name, "mxfp4") && mx->blck == 32 && mx->bytes == 17);
    CHECK(em_type_traits(4) == NULL && em_type_traits(EM_TYPE_COUNT) == NULL && em_type_traits(0xFFFFFFFFu) == NULL);
    for (int t = 0; t < EM_TYPE_COUNT; t++) {
        const em_type_info *ti = em_type_traits((uint32_t)t);
        if (ti && ti->vec_dot_type >= 0) CHECKF(ti->vec_dot && em_type_get(ti->vec_dot_type) && em_type_get(ti->vec_dot_type)->from_float, "%s", ti->name);
    }
    CHECK(em_row_size(EM_Q4_0, 33) == 0);
    CHECK(em_row_size(EM_Q4_K, -256) == 0);
    CHECK(em_row_size(16, 256) == 0);
    CHECK(em_row_size(EM_Q6_K, 0) == 0);
}

/* ---------------------------------------------------------------- fp16 */

/* Reference float -> half by exact double arithmetic (f not NaN). */
static uint16_t ref_f32_to_f16(float f) {
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    double a = fabs((double)f);
    if (a >= 65520.0) return sign | 0x7c00;
    if (a < ldexp(1, -14)) return sign | (uint16_t)nearbyint(ldexp(a, 24));
    int e;
    frexp(a, &e);                           /* a in [2^(e-1), 2^e) */
    double q = nearbyint(ldexp(a, 11 - e)); /* 11 significant bits: [1024, 2048] */
    int E = e - 1;
    if (q == 2048) { q = 1024; E++; }
    if (E + 15 >= 31) return sign | 0x7c00;
    return sign | (uint16_t)(((E + 15) << 10) | ((int)q - 1024));
}

TEST(test_f16_exhaustive) {
    int bad_val = 0, bad_rt = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = em_f16_to_f32((uint16_t)h);
        int ex = (h >> 10) & 31, mant = h & 0x3ff;
        double ref = ex == 0 ? ldexp(mant, -24) : ex == 31 ? INFINITY : ldexp(1024 + mant, ex - 25);
        if (h & 0x8000) ref = -ref;
        if (ex == 31 && mant) {  /* NaN keeps sign and payload */
            if (!isnan(f) || f2u(f) != (((h & 0x8000u) << 16) | 0x7f800000u | ((uint32_t)mant << 13))) bad_val++;
        } else if ((float)ref != f || !signbit(f) != !signbit(ref)) {
            bad_val++;
        }
        if (em_f32_to_f16(f) != h) bad_rt++;
    }
    CHECKF(bad_val == 0, "%d halves convert wrongly", bad_val);
    CHECKF(bad_rt == 0, "%d halves do not round-trip", bad_rt);
}

/* Every midpoint between adjacent halves is exact in float: it must go to the even
 * neighbour, and one float ulp either side to the nearer one. */
TEST(test_f16_ties) {
    int bad = 0;
    for (uint32_t s = 0; s <= 0x8000; s += 0x8000) {
        for (uint32_t h = 0; h < 0x7c00; h++) {
            double lo = em_f16_to_f32((uint16_t)h);
            double hi = h == 0x7bff ? 65536.0 : em_f16_to_f32((uint16_t)(h + 1));
            float mid = (float)((lo + hi) / 2);
            if ((double)mid != (lo + hi) / 2) { bad++; continue; }
            uint16_t even = (uint16_t)(((h & 1) ? h + 1 : h) | s);
            float m = s ? -mid : mid;
            float below = nextafterf(m, 0.0f), above = nextafterf(m, s ? -INFINITY : INFINITY);
            if (em_f32_to_f16(m) != even) bad++;
            if (em_f32_to_f16(below) != (uint16_t)(h | s)) bad++;
            if (em_f32_to_f16(above) != (uint16_t)((h + 1) | s)) bad++;
        }
    }
    CHECKF(bad == 0, "%d tie cases wrong", bad);
    CHECK(em_f32_to_f16(65520.0f) == 0x7c00);
    CHECK(em_f32_to_f16(nextafterf(65520.0f, 0)) == 0x7bff);
    CHECK(em_f32_to_f16(ldexpf(1, -25)) == 0x0000);
    CHECK(em_f32_to_f16(nextafterf(ldexpf(1, -25), 1)) == 0x0001);
    CHECK(em_f32_to_f16(-1e-40f) == 0x8000);
    CHECK(em_f32_to_f16(INFINITY) == 0x7c00 && em_f32_to_f16(-INFINITY) == 0xfc00);
    CHECK(em_f32_to_f16(u2f(0x7f800001)) == 0x7c01);  /* NaN stays NaN */
    CHECK(em_f32_to_f16(u2f(0xffc00000)) == 0xfe00);
}

TEST(test_f16_sampled) {
    int bad = 0, n = 0;
    for (uint64_t u = 0; u < 0x100000000ull; u += 4093) {
        float f = u2f((uint32_t)u);
        if (isnan(f)) continue;
        n++;
        if (em_f32_to_f16(f) != ref_f32_to_f16(f)) {
            if (bad++ < 5) printf("  %08x -> %04x, want %04x\n", (unsigned)u, em_f32_to_f16(f), ref_f32_to_f16(f));
        }
    }
    CHECKF(bad == 0, "%d of %d floats convert wrongly", bad, n);
}

/* ---------------------------------------------------------------- bf16 */

static uint16_t ref_f32_to_bf16(float f) {
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    double a = fabs((double)f);
    if (isinf(a)) return sign | 0x7f80;
    if (a < ldexp(1, -126)) return sign | (uint16_t)nearbyint(ldexp(a, 133));
    int e;
    frexp(a, &e);
    double q = nearbyint(ldexp(a, 8 - e)); /* [128, 256] */
    int E = e - 1;
    if (q == 256) { q = 128; E++; }
    if (E + 127 >= 255) return sign | 0x7f80;
    return sign | (uint16_t)(((E + 127) << 7) | ((int)q - 128));
}

TEST(test_bf16) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = em_bf16_to_f32((uint16_t)h);
        if (f2u(f) != h << 16) bad++;
        uint16_t back = em_f32_to_bf16(f);
        if (isnan(f)) {  /* ggml: truncate and force quiet */
            if (back != (h | 0x40)) bad++;
        } else if (back != h) {
            bad++;
        } else if (h != 0x7f7f && h != 0xff7f && ((h & 0x7f80) != 0x7f80)) {
            /* the midpoint to the next bf16 up (in magnitude) goes to the even one */
            float mid = u2f((h << 16) | 0x8000);
            uint16_t even = (uint16_t)((h & 1) ? h + 1 : h);
            if (em_f32_to_bf16(mid) != even) bad++;
            if (em_f32_to_bf16(u2f((h << 16) | 0x7fff)) != h) bad++;
            if (em_f32_to_bf16(u2f((h << 16) | 0x8001)) != h + 1) bad++;
        }
    }
    CHECKF(bad == 0, "%d bf16 cases wrong", bad);
    int n = 0;
    bad = 0;
    for (uint64_t u = 0; u < 0x100000000ull; u += 4099) {
        float f = u2f((uint32_t)u);
        if (isnan(f)) continue;
        n++;
        if (em_f32_to_bf16(f) != ref_f32_to_bf16(f)) bad++;
    }
    CHECKF(bad == 0, "%d of %d sampled floats convert wrongly to bf16", bad, n);
    CHECK(em_f32_to_bf16(u2f(0x7f7fffff)) == 0x7f80);  /* FLT_MAX rounds to inf */
    CHECK(em_f32_to_bf16(u2f(0x7f800001)) == 0x7fc0);
}

/* numpy's float16 cast and gguf-py's bf16 on random bit patterns, ties and edges. */
TEST(test_conversion_vectors) {
    static const char *files[] = { "quant_f16.bin", "quant_bf16.bin" };
    for (int k = 0; k < 2; k++) {
        vecfile v;
        if (!load_vec(files[k], &v)) SKIP("tests/data/quant/%s missing (scripts/make_quant_vectors.py)", files[k]);
        const uint16_t *want = (const uint16_t *)v.blocks;
        int bad = 0;
        for (int i = 0; i < v.nblocks; i++) {
            uint16_t got = k ? em_f32_to_bf16(v.floats[i]) : em_f32_to_f16(v.floats[i]);
            if (got != want[i] && bad++ < 5)
                printf("  %s: %08x -> %04x, want %04x\n", files[k], f2u(v.floats[i]), got, want[i]);
        }
        CHECKF(bad == 0, "%s: %d of %d wrong", files[k], bad, v.nblocks);
        free_vec(&v);
    }
}

/* ---------------------------------------------------------------- gguf-py vectors */

static void check_deq_file(const char *name, int *seen) {
    vecfile v;
    if (!load_vec(name, &v)) return;
    (*seen)++;
    const em_type_info *ti = em_type_get(v.type);
    CHECKF(v.kind == 1 && ti && ti->blck == v.blck && (int)ti->bytes == v.bytes, "%s header", name);
    if (v.kind != 1 || !ti || ti->blck != v.blck || (int)ti->bytes != v.bytes) { free_vec(&v); return; }
    int64_t n = (int64_t)v.nblocks * v.blck;
    CHECK(em_row_size(v.type, n) == (size_t)v.nblocks * v.bytes);
    float *y = malloc((size_t)n * sizeof *y);
    CHECK(em_dequantize_row(v.type, v.blocks, y, n) == 0);
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        if (f2u(y[i]) != f2u(v.floats[i]) && bad++ < 5)
            printf("  %s[%lld]: %.9g (%08x), want %.9g (%08x)\n", name, (long long)i, y[i], f2u(y[i]),
                   v.floats[i], f2u(v.floats[i]));
    }
    CHECKF(bad == 0, "%s: %d of %lld values differ", name, bad, (long long)n);
    free(y);
    free_vec(&v);
}

TEST(test_dequant_vectors) {
    static const char *types[] = { "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_K", "q5_K", "q6_K",
                                   "q2_K", "q3_K",
                                   "iq4_nl", "iq4_xs", "tq1_0", "tq2_0" };
    int seen = 0;
    char name[64];
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        snprintf(name, sizeof name, "deq_%s.bin", types[i]);
        check_deq_file(name, &seen);
    }
    if (!seen) SKIP("tests/data/quant/deq_*.bin missing (scripts/make_quant_vectors.py)");
    CHECK(seen == 16);
}

/* Blocks cut from the synthetic GGUF fixtures: real quantizer output, not random bytes. */
TEST(test_fixture_vectors) {
    static const char *types[] = { "f16", "bf16", "q8_0", "q4_0", "q4_1", "q4_K", "q5_K", "q6_K", "q2_K", "q3_K" };
    int seen = 0;
    char name[64];
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        snprintf(name, sizeof name, "fixture_%s.bin", types[i]);
        check_deq_file(name, &seen);
    }
    if (!seen) SKIP("tests/data/quant/fixture_*.bin missing (needs ../shared/fixtures when generated)");
}

TEST(test_quant_vectors) {
    static const char *files[] = { "quant_q8_0.bin", "quant_q4_0.bin", "quant_q4_1.bin", "quant_q5_0.bin", "quant_q5_1.bin",
                                   "quant_tq1_0.bin", "quant_tq2_0.bin" };
    for (int k = 0; k < 7; k++) {
        vecfile v;
        if (!load_vec(files[k], &v)) SKIP("tests/data/quant/%s missing (scripts/make_quant_vectors.py)", files[k]);
        int64_t n = (int64_t)v.nblocks * v.blck;
        uint8_t *q = malloc((size_t)v.nblocks * v.bytes);
        CHECK(v.kind == 2);
        CHECK(em_quantize_row(v.type, v.floats, q, n) == 0);
        int bad = 0;
        for (int b = 0; b < v.nblocks; b++) {
            if (memcmp(q + (size_t)b * v.bytes, v.blocks + (size_t)b * v.bytes, (size_t)v.bytes) && bad++ < 3)
                printf("  %s: block %d differs\n", files[k], b);
        }
        CHECKF(bad == 0, "%s: %d of %d blocks differ", files[k], bad, v.nblocks);
        free(q);
        free_vec(&v);
    }
}

/* The weight quantizers against llama.cpp's own: tests/models/synthetic holds the
 * synthetic F32 fixture quantized by llama_model_quantize
 * (scripts/make_synthetic_quant_goldens.py), which uses ggml's quantize_<type> without an
 * importance matrix. Quantizing the F32 rows here must give the same bytes, tensor by tensor. */
TEST(test_quantizers_vs_llamacpp) {
    const char *f32 = fixture_path("synthetic/llama-f32.gguf");
    static const struct { const char *file; int type, count; } q[] = {
        { "tests/models/synthetic/llama-q5_0.gguf", EM_Q5_0, 15 },
        { "tests/models/synthetic/llama-q5_1.gguf", EM_Q5_1, 15 },
        { "tests/models/synthetic/llama-iq4_nl.gguf", EM_IQ4_NL, 15 },
        { "tests/models/synthetic/llama-iq4_xs.gguf", EM_IQ4_XS, 15 },
        { "tests/models/synthetic/llama-tq1_0.gguf", EM_TQ1_0, 14 },  /* token_embd is Q4_K */
        { "tests/models/synthetic/llama-tq2_0.gguf", EM_TQ2_0, 14 },
    };
    if (!file_exists(f32)) SKIP("fixture missing: %s", f32);
    for (size_t k = 0; k < sizeof q / sizeof q[0]; k++)
        if (!file_exists(q[k].file)) SKIP("missing: %s (scripts/make_synthetic_quant_goldens.py)", q[k].file);
    char err[256];
    gguf_ctx *src = gguf_open(f32, err, sizeof err);
    CHECKF(src, "%s", err);
    for (size_t k = 0; src && k < sizeof q / sizeof q[0]; k++) {
        gguf_ctx *g = gguf_open(q[k].file, err, sizeof err);
        CHECKF(g, "%s", err);
        int seen = 0;
        for (int64_t i = 0; g && i < gguf_n_tensors(g); i++) {
            const gguf_tensor *t = gguf_tensor_at(g, i);
            if ((int)t->type != q[k].type) continue;
            const gguf_tensor *s0 = gguf_find_tensor(src, t->name);
            const em_type_info *ti = em_type_get(q[k].type);
            CHECKF(s0 && s0->type == EM_F32 && s0->size == (size_t)(t->size / ti->bytes * ti->blck * 4),
                   "%s: %s", q[k].file, t->name);
            if (!s0) continue;
            uint8_t *out = malloc(t->size);
            const int64_t ne0 = t->ne[0], nrows = (int64_t)(s0->size / 4) / ne0;
            CHECK(em_quantize_weights(q[k].type, s0->data, out, nrows, ne0, NULL) == t->size);
            CHECKF(!memcmp(out, t->data, t->size), "%s: %s differs from llama.cpp's quantizer", q[k].file, t->name);
            free(out);
            seen++;
        }
        CHECKF(seen == q[k].count, "%s: %d tensors of the type", q[k].file, seen);
        gguf_close(g);
    }
    gguf_close(src);
}

/* ---------------------------------------------------------------- activation quantizers */

TEST(test_q8_ties_to_even) {
    /* amax = 127 makes the multiplier exactly 1, so x*id are exact ties */
    float x[QK8_0] = { 127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 3.5f, 126.5f, -126.5f, -4.5f, 5.5f };
    const int8_t want[12] = { 127, 0, 2, 2, 0, -2, -2, 4, 126, -126, -4, 6 };
    block_q8_0 b0;
    block_q8_1 b1;
    CHECK(em_quantize_row(EM_Q8_0, x, &b0, QK8_0) == 0);
    CHECK(em_quantize_row(EM_Q8_1, x, &b1, QK8_1) == 0);
    CHECK(b0.d == 0x3c00 && b1.d == 0x3c00);
    int sum = 0;
    for (int j = 0; j < QK8_0; j++) {
        int w = j < 12 ? want[j] : 0;
        CHECKF(b0.qs[j] == w && b1.qs[j] == w, "j=%d: %d %d, want %d", j, b0.qs[j], b1.qs[j], w);
        sum += w;
    }
    CHECK(b1.s == em_f32_to_f16((float)sum));
    /* q8_K: max = 127 gives iscale = -1: ties of -x */
    float xk[QK_K] = { 0 };
    memcpy(xk, x, sizeof x);
    block_q8_K bk;
    CHECK(em_quantize_row(EM_Q8_K, xk, &bk, QK_K) == 0);
    CHECK(bk.d == -1.0f);
    for (int j = 0; j < 12; j++) CHECKF(bk.qs[j] == -want[j], "q8_K j=%d: %d", j, bk.qs[j]);
}

/* Q8_0/Q8_1 multiply by 127/amax (llama.cpp's x86 path), not by 1/d with d = amax/127
 * (ggml's scalar _ref and ARM path). The two multipliers differ by an ulp for many amax;
 * find an x where that moves x*id across a rounding boundary and check which one is used. */
TEST(test_q8_multiplier) {
    int found = 0;
    for (int tries = 0; tries < 100000 && !found; tries++) {
        float amax = 0.5f + 100.0f * frand();
        float id1 = 127.f / amax, id2 = 1.0f / (amax / 127.f);
        if (id1 == id2) continue;
        for (int k = 0; k < 126 && !found; k++) {
            float x = (k + 0.5f) / id1;
            for (int s = -3; s <= 3 && !found; s++) {
                float xs = x;
                for (int i = 0; i < (s < 0 ? -s : s); i++) xs = nextafterf(xs, s < 0 ? 0.0f : INFINITY);
                if (xs >= amax || nearbyintf(xs * id1) == nearbyintf(xs * id2)) continue;
                float blk[QK8_0] = { amax, xs };
                block_q8_0 b;
                block_q8_1 b1;
                em_quantize_row(EM_Q8_0, blk, &b, QK8_0);
                em_quantize_row(EM_Q8_1, blk, &b1, QK8_1);
                CHECKF(b.qs[1] == (int)nearbyintf(xs * id1) && b1.qs[1] == b.qs[1],
                       "amax %.9g x %.9g: q %d, want %d (1/d gives %d)", amax, xs, b.qs[1],
                       (int)nearbyintf(xs * id1), (int)nearbyintf(xs * id2));
                found = 1;
            }
        }
    }
    CHECK(found);
}

/* The quantizers restated with nearbyintf, on random data of many scales. */
TEST(test_q8_formulas) {
    enum { N = 4096 };
    static float x[N];
    static block_q8_0 q0[N / QK8_0];
    static block_q8_1 q1[N / QK8_1];
    static block_q8_K qk[N / QK_K];
    int bad = 0;
    for (int trial = 0; trial < 8; trial++) {
        float scale = powf(10.0f, (float)trial - 4.0f);
        for (int i = 0; i < N; i++) x[i] = gauss() * scale * (i % 97 == 0 ? 10.0f : 1.0f);
        for (int i = 0; i < 32; i++) x[64 + i] = 0.0f;    /* one all-zero q8_0 block */
        for (int i = 0; i < QK_K; i++) x[512 + i] = 0.0f;  /* one all-zero q8_K block */
        x[1024] = -50.0f * scale;                          /* a negative max for q8_K */
        CHECK(em_quantize_row(EM_Q8_0, x, q0, N) == 0);
        CHECK(em_quantize_row(EM_Q8_1, x, q1, N) == 0);
        CHECK(em_quantize_row(EM_Q8_K, x, qk, N) == 0);
        for (int b = 0; b < N / 32; b++) {
            const float *xb = x + 32 * b;
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(xb[j]));
            float id = amax != 0 ? 127.f / amax : 0.f;
            int sum = 0;
            bad += q0[b].d != em_f32_to_f16(amax / 127.f) || q1[b].d != q0[b].d;
            for (int j = 0; j < 32; j++) {
                int q = (int)nearbyintf(xb[j] * id);
                bad += q0[b].qs[j] != q || q1[b].qs[j] != q;
                sum += q;
            }
            bad += q1[b].s != em_f32_to_f16(amax / 127.f * (float)sum);
        }
        for (int b = 0; b < N / QK_K; b++) {
            const float *xb = x + QK_K * b;
            float amax = 0, max = 0;
            for (int j = 0; j < QK_K; j++) if (fabsf(xb[j]) > amax) { amax = fabsf(xb[j]); max = xb[j]; }
            if (amax == 0) {
                block_q8_K z;
                memset(&z, 0, sizeof z);
                bad += memcmp(&z, &qk[b], sizeof z) != 0;
                continue;
            }
            float is = -127.f / max;
            bad += qk[b].d != 1 / is;
            for (int j = 0; j < QK_K; j++) {
                int q = (int)nearbyintf(is * xb[j]);
                bad += qk[b].qs[j] != (q < 127 ? q : 127);
                if (xb[j] == max) bad += qk[b].qs[j] != -127;
            }
            for (int g = 0; g < 16; g++) {
                int s = 0;
                for (int j = 0; j < 16; j++) s += qk[b].qs[16 * g + j];
                bad += qk[b].bsums[g] != s;
            }
        }
    }
    CHECKF(bad == 0, "%d mismatches", bad);
}

/* quantize -> dequantize error bounds. With d the exact scale and d16 its fp16 rounding
 * (|d - d16| <= d * 2^-11 while d is a normal half), an element with code q is off by at
 * most the rounding step (d/2, or d for q4_0's clamped +8 code) plus |q| * |d - d16|;
 * 1e-5 relative covers rounding of x*id itself. */
static void roundtrip_one(int type, const float *x, int n, double scale_floor, int *bad, double *worst) {
    const em_type_info *ti = em_type_get(type);
    size_t bytes = em_row_size(type, n);
    uint8_t *q = malloc(bytes);
    float *y = malloc((size_t)n * sizeof *y);
    CHECK(em_quantize_row(type, x, q, n) == 0 && em_dequantize_row(type, q, y, n) == 0);
    const double h = ldexp(1, -11), tiny = 1e-5;
    for (int b = 0; b < n / ti->blck; b++) {
        const float *xb = x + b * ti->blck;
        const float *yb = y + b * ti->blck;
        double amax = 0, max = 0, mn = xb[0], mx = xb[0];
        for (int j = 0; j < ti->blck; j++) {
            if (fabs(xb[j]) > amax) { amax = fabs(xb[j]); max = xb[j]; }
            mn = fmin(mn, xb[j]); mx = fmax(mx, xb[j]);
        }
        for (int j = 0; j < ti->blck; j++) {
            double err = fabs((double)xb[j] - yb[j]), bound;
            if (type == EM_Q8_0 || type == EM_Q8_1) {
                double d = amax / 127;
                bound = d * (0.5 + tiny) + 127 * d * h;
            } else if (type == EM_Q8_K) {
                double d = amax / 127;
                bound = d * (0.5 + tiny) + 127 * d * ldexp(1, -23);
            } else if (type == EM_Q4_0 || type == EM_Q5_0) {
                const double L = type == EM_Q4_0 ? 8 : 16;  /* codes -L..L-1; +L clamps */
                double d = fabs(max) / L, t = xb[j] / (max / -L);
                bound = d * ((t >= L - 0.5 ? 1.0 : 0.5) + tiny) + L * d * h;
            } else {  /* Q4_1, Q5_1 */
                const double L = type == EM_Q4_1 ? 15 : 31;
                double d = (mx - mn) / L;
                bound = d * (0.5 + tiny) + L * d * h + fabs(mn) * h;
            }
            bound += scale_floor;
            if (err > bound && (*bad)++ < 5)
                printf("  %s block %d [%d]: x %g y %g err %g > %g\n", ti->name, b, j, xb[j], yb[j], err, bound);
            if (bound > 0 && err / bound > *worst) *worst = err / bound;
        }
    }
    free(q);
    free(y);
}

TEST(test_roundtrip_error) {
    enum { N = 8192 };
    static float x[N];
    const int types[] = { EM_Q8_0, EM_Q8_1, EM_Q8_K, EM_Q4_0, EM_Q4_1, EM_Q5_0, EM_Q5_1 };
    int bad = 0;
    double worst = 0;
    for (int trial = 0; trial < 6; trial++) {
        /* keep fp16 scales normal: amax/127 and amax/8 above 2^-14 */
        float scale = powf(10.0f, (float)trial - 1.0f);
        for (int i = 0; i < N; i++) x[i] = gauss() * scale;
        for (int i = 0; i < 32; i++) x[i] = 0.0f;           /* zero block */
        for (int i = 32; i < 64; i++) x[i] = 0.75f * scale;  /* constant block */
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) roundtrip_one(types[t], x, N, 0.0, &bad, &worst);
    }
    CHECKF(bad == 0, "%d elements outside their bound", bad);
    CHECKF(worst > 0.5, "worst error only %.3f of the bound: bound too loose?", worst);
    /* zero blocks come back as zeros; a constant block as itself for q4_1 (d = 0, m = x) */
    float z[QK_K] = { 0 }, y[QK_K];
    uint8_t buf[sizeof(block_q8_K)];
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        int blck = em_type_get(types[t])->blck;
        CHECK(em_quantize_row(types[t], z, buf, blck) == 0 && em_dequantize_row(types[t], buf, y, blck) == 0);
        for (int j = 0; j < blck; j++) CHECK(y[j] == 0.0f);
    }
    float c[32];
    block_q4_1 b41;
    block_q5_1 b51;
    for (int j = 0; j < 32; j++) c[j] = 0.75f;
    em_quantize_row(EM_Q4_1, c, &b41, 32);
    em_dequantize_row(EM_Q4_1, &b41, y, 32);
    for (int j = 0; j < 32; j++) CHECK(y[j] == 0.75f);
    em_quantize_row(EM_Q5_1, c, &b51, 32);
    em_dequantize_row(EM_Q5_1, &b51, y, 32);
    for (int j = 0; j < 32; j++) CHECK(y[j] == 0.75f);
}

/* ---------------------------------------------------------------- dot products */

/* Restatements of ggml's generic k-quant dots in their own shape (unpack all 256 weights
 * to aux8, the utmp/kmask scale unpack, 8 int16 products per step into 8 int32 lanes,
 * float lanes across blocks). em_vec_dot must agree bit for bit. */
static float ggml_shape_q45_K(int nb, const void *vx, const block_q8_K *y, int five) {
    const uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
    uint32_t utmp[4];
    int8_t aux8[QK_K];
    int16_t aux16[8];
    int32_t aux32[8];
    float sums[8] = { 0 }, sumf = 0;
    for (int i = 0; i < nb; i++) {
        const block_q4_K *x4 = (const block_q4_K *)vx + i;
        const block_q5_K *x5 = (const block_q5_K *)vx + i;
        const uint8_t *q4 = five ? x5->qs : x4->qs, *hm = five ? x5->qh : NULL;
        const uint8_t *sc12 = five ? x5->scales : x4->scales;
        uint16_t d16 = five ? x5->d : x4->d, dmin16 = five ? x5->dmin : x4->dmin;
        int8_t *a = aux8;
        unsigned m = 1;
        for (int j = 0; j < QK_K / 64; j++, q4 += 32) {
            for (int l = 0; l < 32; l++) a[l] = (int8_t)((q4[l] & 0xF) + (hm && (hm[l] & m) ? 16 : 0));
            a += 32; m <<= 1;
            for (int l = 0; l < 32; l++) a[l] = (int8_t)((q4[l] >> 4) + (hm && (hm[l] & m) ? 16 : 0));
            a += 32; m <<= 1;
        }
        memcpy(utmp, sc12, 12);
        utmp[3] = ((utmp[2] >> 4) & kmask2) | (((utmp[1] >> 6) & kmask3) << 4);
        const uint32_t uaux = utmp[1] & kmask1;
        utmp[1] = (utmp[2] & kmask2) | (((utmp[0] >> 6) & kmask3) << 4);
        utmp[2] = uaux;
        utmp[0] &= kmask1;
        uint8_t scales[8], mins[8];
        memcpy(scales, utmp, 8);   /* little-endian host assumed, as in ggml */
        memcpy(mins, utmp + 2, 8);
        int sumi = 0;
        for (int j = 0; j < QK_K / 16; j++) sumi += y[i].bsums[j] * mins[j / 2];
        memset(aux32, 0, sizeof aux32);
        const int8_t *q8 = y[i].qs;
        a = aux8;
        for (int j = 0; j < QK_K / 32; j++) {
            for (int k = 0; k < 4; k++, q8 += 8, a += 8) {
                for (int l = 0; l < 8; l++) aux16[l] = (int16_t)(q8[l] * a[l]);
                for (int l = 0; l < 8; l++) aux32[l] += scales[j] * aux16[l];
            }
        }
        const float d = em_f16_to_f32(d16) * y[i].d;
        for (int l = 0; l < 8; l++) sums[l] += d * aux32[l];
        const float dmin = em_f16_to_f32(dmin16) * y[i].d;
        sumf -= dmin * sumi;
    }
    for (int l = 0; l < 8; l++) sumf += sums[l];
    return sumf;
}

static float ggml_shape_q6_K(int nb, const block_q6_K *x, const block_q8_K *y) {
    int8_t aux8[QK_K];
    int16_t aux16[8];
    int32_t aux32[8];
    float sums[8] = { 0 }, sumf = 0;
    for (int i = 0; i < nb; i++) {
        const uint8_t *q4 = x[i].ql, *qh = x[i].qh;
        int8_t *a = aux8;
        for (int j = 0; j < QK_K; j += 128, a += 128, q4 += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                a[l + 0] = (int8_t)(((q4[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
                a[l + 32] = (int8_t)(((q4[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                a[l + 64] = (int8_t)(((q4[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                a[l + 96] = (int8_t)(((q4[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        }
        memset(aux32, 0, sizeof aux32);
        const int8_t *q8 = y[i].qs;
        a = aux8;
        for (int j = 0; j < QK_K / 16; j++) {
            int scale = x[i].scales[j];
            for (int k = 0; k < 2; k++, q8 += 8, a += 8) {
                for (int l = 0; l < 8; l++) aux16[l] = (int16_t)(q8[l] * a[l]);
                for (int l = 0; l < 8; l++) aux32[l] += scale * aux16[l];
            }
        }
        const float d = em_f16_to_f32(x[i].d) * y[i].d;
        for (int l = 0; l < 8; l++) sums[l] += d * aux32[l];
    }
    for (int l = 0; l < 8; l++) sumf += sums[l];
    return sumf;
}

/* ggml's generic q2_K dot: per block, the mins term from bsums, then per 128-element half
 * four 2-bit shifts, each two runs of 16 with their own scale; one float sum. */
static float ggml_shape_q2_K(int nb, const block_q2_K *x, const block_q8_K *y) {
    float sumf = 0;
    for (int i = 0; i < nb; i++) {
        const uint8_t *q2 = x[i].qs, *sc = x[i].scales;
        const int8_t *q8 = y[i].qs;
        int summs = 0;
        for (int j = 0; j < 16; j++) summs += y[i].bsums[j] * (sc[j] >> 4);
        const float dall = y[i].d * em_f16_to_f32(x[i].d);
        const float dmin = y[i].d * em_f16_to_f32(x[i].dmin);
        int isum = 0, is = 0;
        for (int k = 0; k < QK_K / 128; k++, q2 += 32) {
            for (int shift = 0; shift < 8; shift += 2, q8 += 32) {
                int d = sc[is++] & 0xF, isuml = 0;
                for (int l = 0; l < 16; l++) isuml += q8[l] * ((q2[l] >> shift) & 3);
                isum += d * isuml;
                d = sc[is++] & 0xF;
                isuml = 0;
                for (int l = 16; l < 32; l++) isuml += q8[l] * ((q2[l] >> shift) & 3);
                isum += d * isuml;
            }
        }
        sumf += dall * isum - dmin * summs;
    }
    return sumf;
}

/* ggml's generic q3_K dot: aux8 from the planes and hmask (m walks the 8 bits), the
 * kmask scale unpack into auxs, 8 int16 products per step into 8 int32 lanes. */
static float ggml_shape_q3_K(int nb, const block_q3_K *x, const block_q8_K *y) {
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    int8_t aux8[QK_K];
    int16_t aux16[8];
    int32_t aux32[8];
    uint32_t auxs[4];
    float sums[8] = { 0 }, sumf = 0;
    for (int i = 0; i < nb; i++) {
        const uint8_t *q3 = x[i].qs, *hm = x[i].hmask;
        int8_t *a = aux8;
        uint8_t m = 1;
        for (int j = 0; j < QK_K; j += 128, q3 += 32) {
            for (int shift = 0; shift < 8; shift += 2, a += 32, m = (uint8_t)(m << 1))
                for (int l = 0; l < 32; l++) a[l] = (int8_t)(((q3[l] >> shift) & 3) - (hm[l] & m ? 0 : 4));
        }
        memcpy(auxs, x[i].scales, 12);
        const uint32_t tmp = auxs[2];
        auxs[2] = ((auxs[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
        auxs[3] = ((auxs[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
        auxs[0] = (auxs[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
        auxs[1] = (auxs[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
        int8_t scales[16];
        memcpy(scales, auxs, 16);
        memset(aux32, 0, sizeof aux32);
        const int8_t *q8 = y[i].qs;
        a = aux8;
        for (int j = 0; j < QK_K / 16; j++) {
            for (int k = 0; k < 2; k++, q8 += 8, a += 8) {
                for (int l = 0; l < 8; l++) aux16[l] = (int16_t)(q8[l] * a[l]);
                for (int l = 0; l < 8; l++) aux32[l] += (scales[j] - 32) * aux16[l];
            }
        }
        const float d = em_f16_to_f32(x[i].d) * y[i].d;
        for (int l = 0; l < 8; l++) sums[l] += d * aux32[l];
    }
    for (int l = 0; l < 8; l++) sumf += sums[l];
    return sumf;
}

/* ggml's generic q4_0/q4_1/q5_0/q5_1/q8_0 dots, with their exact float expressions. */
static float ggml_shape_small(int t, int nb, const void *vx, const void *vy) {
    float sumf = 0;
    for (int i = 0; i < nb; i++) {
        int sumi0 = 0, sumi1 = 0;
        if (t == EM_Q4_0) {
            const block_q4_0 *x = (const block_q4_0 *)vx + i;
            const block_q8_0 *y = (const block_q8_0 *)vy + i;
            for (int j = 0; j < 16; j++) {
                sumi0 += ((x->qs[j] & 0x0F) - 8) * y->qs[j];
                sumi1 += ((x->qs[j] >> 4) - 8) * y->qs[j + 16];
            }
            int sumi = sumi0 + sumi1;
            sumf += sumi * em_f16_to_f32(x->d) * em_f16_to_f32(y->d);
        } else if (t == EM_Q5_0 || t == EM_Q5_1) {
            /* the fifth bits read as ggml does: memcpy into a u32 (little-endian hosts) */
            const uint8_t *qh = t == EM_Q5_0 ? ((const block_q5_0 *)vx + i)->qh : ((const block_q5_1 *)vx + i)->qh;
            const uint8_t *qs = t == EM_Q5_0 ? ((const block_q5_0 *)vx + i)->qs : ((const block_q5_1 *)vx + i)->qs;
            const int8_t *yq = t == EM_Q5_0 ? ((const block_q8_0 *)vy + i)->qs : ((const block_q8_1 *)vy + i)->qs;
            uint32_t h;
            memcpy(&h, qh, 4);
            const int off = t == EM_Q5_0 ? 16 : 0;
            for (int j = 0; j < 16; j++) {
                const uint8_t xh_0 = (uint8_t)(((h >> (j + 0)) << 4) & 0x10);
                const uint8_t xh_1 = (uint8_t)((h >> (j + 12)) & 0x10);
                sumi0 += (((qs[j] & 0x0F) | xh_0) - off) * yq[j];
                sumi1 += (((qs[j] >> 4) | xh_1) - off) * yq[j + 16];
            }
            int sumi = sumi0 + sumi1;
            if (t == EM_Q5_0) {
                const block_q5_0 *x = (const block_q5_0 *)vx + i;
                const block_q8_0 *y = (const block_q8_0 *)vy + i;
                sumf += (em_f16_to_f32(x->d) * em_f16_to_f32(y->d)) * sumi;
            } else {
                const block_q5_1 *x = (const block_q5_1 *)vx + i;
                const block_q8_1 *y = (const block_q8_1 *)vy + i;
                sumf += (em_f16_to_f32(x->d) * em_f16_to_f32(y->d)) * sumi + em_f16_to_f32(x->m) * em_f16_to_f32(y->s);
            }
        } else if (t == EM_Q4_1) {
            const block_q4_1 *x = (const block_q4_1 *)vx + i;
            const block_q8_1 *y = (const block_q8_1 *)vy + i;
            for (int j = 0; j < 16; j++) {
                sumi0 += (x->qs[j] & 0x0F) * y->qs[j];
                sumi1 += (x->qs[j] >> 4) * y->qs[j + 16];
            }
            int sumi = sumi0 + sumi1;
            sumf += (em_f16_to_f32(x->d) * em_f16_to_f32(y->d)) * sumi + em_f16_to_f32(x->m) * em_f16_to_f32(y->s);
        } else {
            const block_q8_0 *x = (const block_q8_0 *)vx + i;
            const block_q8_0 *y = (const block_q8_0 *)vy + i;
            int sumi = 0;
            for (int j = 0; j < 32; j++) sumi += x->qs[j] * y->qs[j];
            sumf += sumi * (em_f16_to_f32(x->d) * em_f16_to_f32(y->d));
        }
    }
    return sumf;
}

/* Makes a random weight row of type t (n elements) and its activation row in t's
 * vec_dot type from floats of the given scale. Returns malloc'd buffers. */
static void make_operands(int t, int n, float scale, uint8_t **w, uint8_t **a) {
    const em_type_info *ti = em_type_get(t);
    float *x = malloc((size_t)n * sizeof *x);
    *w = malloc(em_row_size(t, n));
    *a = malloc(em_row_size(ti->vec_dot_type, n));
    if (t == EM_F32 || t == EM_F16 || t == EM_BF16) {
        for (int i = 0; i < n; i++) x[i] = gauss();
        em_quantize_row(t, x, *w, n);
    } else {
        rand_weight_blocks(t, *w, n / ti->blck);
    }
    for (int i = 0; i < n; i++) x[i] = gauss() * scale;
    em_quantize_row(ti->vec_dot_type, x, *a, n);
    free(x);
}

/* vec_dot vs double(dequant(w) . dequant(a)). Every float operation in either path has
 * relative error <= 2^-24, applied to partial sums bounded by A = sum |a_i| * (|w_i| +
 * |offset_i|), where offset_i is the block's min term (q4_1 m, q4_K/q5_K dmin*m; the
 * dequantized min cancels against d*q, so |w_i| alone can be smaller than the terms that
 * were rounded). Float accumulation over k terms adds at most k roundings, so the bound is
 * tol = (k + 8) * 2^-23 * A with k = n for f32 (sequential float sum), 1 for f16/bf16
 * (double sum), and the number of blocks for quantized types. */
TEST(test_vec_dot_vs_double) {
    const int types[] = { EM_F32, EM_F16, EM_BF16, EM_Q4_0, EM_Q4_1, EM_Q5_0, EM_Q5_1, EM_Q8_0, EM_Q4_K, EM_Q5_K, EM_Q6_K,
                          EM_Q2_K, EM_Q3_K,
                          EM_IQ4_NL, EM_IQ4_XS, EM_TQ1_0, EM_TQ2_0 };
    const int n = 4096;
    float *wf = malloc(n * sizeof *wf), *af = malloc(n * sizeof *af), *wz = malloc(n * sizeof *wz);
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        int t = types[k];
        const em_type_info *ti = em_type_get(t);
        double worst = 0;
        for (int trial = 0; trial < 6; trial++) {
            uint8_t *w, *a;
            make_operands(t, n, powf(10.0f, (float)(trial % 3) - 1.0f), &w, &a);
            em_dequantize_row(t, w, wf, n);
            em_dequantize_row(ti->vec_dot_type, a, af, n);
            /* the min terms: dequantize with every quant bit cleared */
            memset(wz, 0, n * sizeof *wz);
            if (t == EM_Q2_K) {  /* codes 0: scales (mins) kept, qs cleared */
                for (int b = 0; b < n / ti->blck; b++) {
                    block_q2_K tmp;
                    memcpy(&tmp, w + (size_t)b * ti->bytes, sizeof tmp);
                    memset(tmp.qs, 0, sizeof tmp.qs);
                    em_dequantize_row(t, &tmp, wz + b * ti->blck, ti->blck);
                }
            }
            if (t == EM_Q4_1 || t == EM_Q5_1 || t == EM_Q4_K || t == EM_Q5_K) {
                for (int b = 0; b < n / ti->blck; b++) {
                    uint8_t *blk = w + (size_t)b * ti->bytes;
                    size_t keep = t == EM_Q4_1 || t == EM_Q5_1 ? 4 : 16;  /* d, m / d, dmin, scales */
                    uint8_t tmp[sizeof(block_q5_K)];
                    memcpy(tmp, blk, ti->bytes);
                    memset(tmp + keep, 0, ti->bytes - keep);
                    em_dequantize_row(t, tmp, wz + b * ti->blck, ti->blck);
                }
            }
            double ref = 0, A = 0;
            for (int i = 0; i < n; i++) {
                ref += (double)wf[i] * af[i];
                A += fabs((double)af[i]) * (fabs((double)wf[i]) + fabs((double)wz[i]));
            }
            double kacc = t == EM_F32 ? n : (t == EM_F16 || t == EM_BF16) ? 1 : t == EM_IQ4_XS ? n / 32 : n / ti->blck;
            double tol = (kacc + 8) * ldexp(1, -23) * A;
            float got = em_vec_dot(t, n, w, a);
            CHECKF(fabs(got - ref) <= tol, "%s trial %d: %.9g vs %.9g, diff %g > tol %g", ti->name, trial,
                   got, ref, fabs(got - ref), tol);
            if (tol > 0 && fabs(got - ref) / tol > worst) worst = fabs(got - ref) / tol;
            if (t == EM_Q4_K || t == EM_Q5_K) {
                float g2 = ggml_shape_q45_K(n / QK_K, w, (const block_q8_K *)a, t == EM_Q5_K);
                CHECKF(f2u(g2) == f2u(got), "%s: %.9g vs ggml-shaped %.9g", ti->name, got, g2);
            } else if (t == EM_Q6_K) {
                float g2 = ggml_shape_q6_K(n / QK_K, (const block_q6_K *)w, (const block_q8_K *)a);
                CHECKF(f2u(g2) == f2u(got), "%s: %.9g vs ggml-shaped %.9g", ti->name, got, g2);
            } else if (t == EM_Q2_K) {
                float g2 = ggml_shape_q2_K(n / QK_K, (const block_q2_K *)w, (const block_q8_K *)a);
                CHECKF(f2u(g2) == f2u(got), "%s: %.9g vs ggml-shaped %.9g", ti->name, got, g2);
            } else if (t == EM_Q3_K) {
                float g2 = ggml_shape_q3_K(n / QK_K, (const block_q3_K *)w, (const block_q8_K *)a);
                CHECKF(f2u(g2) == f2u(got), "%s: %.9g vs ggml-shaped %.9g", ti->name, got, g2);
            } else if (t == EM_Q4_0 || t == EM_Q4_1 || t == EM_Q5_0 || t == EM_Q5_1 || t == EM_Q8_0) {
                float g2 = ggml_shape_small(t, n / 32, w, a);
                CHECKF(f2u(g2) == f2u(got), "%s: %.9g vs ggml-shaped %.9g", ti->name, got, g2);
            }
            free(w);
            free(a);
        }
        printf("  %-6s worst |diff| / tol = %.2g\n", ti->name, worst);
    }
    free(wf);
    free(af);
    free(wz);
}

/* Hand-computable cases: exact integer results and the q4_K mins path alone. */
TEST(test_vec_dot_exact) {
    block_q8_0 x[2], y[2];
    int want = 0;
    for (int b = 0; b < 2; b++) {
        x[b].d = y[b].d = 0x3c00;  /* 1.0 */
        for (int j = 0; j < 32; j++) {
            x[b].qs[j] = (int8_t)(j - 16 + b);
            y[b].qs[j] = (int8_t)(3 * j - 50);
            want += x[b].qs[j] * y[b].qs[j];
        }
    }
    CHECK(em_vec_dot(EM_Q8_0, 64, x, y) == (float)want);

    /* q4_0 code 8 is zero: all-8 weights give exactly 0 */
    block_q4_0 w0;
    w0.d = 0x3c00;
    memset(w0.qs, 0x88, sizeof w0.qs);
    CHECK(em_vec_dot(EM_Q4_0, 32, &w0, &y[0]) == 0.0f);

    /* q5_0 code 16 (nibble 0, fifth bit 1) is zero; then element 20 (high nibble of qs[4])
     * alone gets code 31, weight 15 */
    block_q5_0 w5;
    w5.d = 0x3c00;
    memset(w5.qs, 0, sizeof w5.qs);
    memset(w5.qh, 0xFF, sizeof w5.qh);
    CHECK(em_vec_dot(EM_Q5_0, 32, &w5, &y[0]) == 0.0f);
    w5.qs[4] = 0xF0;
    CHECK(em_vec_dot(EM_Q5_0, 32, &w5, &y[0]) == (float)(15 * y[0].qs[20]));
    /* q5_1: only the fifth bit of element 3 (qh bit 3) set, zero min: weight 16 */
    block_q5_1 w51;
    memset(&w51, 0, sizeof w51);
    w51.d = 0x3c00;
    w51.qh[0] = 0x08;
    block_q8_1 y1;
    float xy[32];
    for (int j = 0; j < 32; j++) xy[j] = (float)(j - 10);
    em_quantize_row(EM_Q8_1, xy, &y1, 32);
    CHECK(em_vec_dot(EM_Q5_1, 32, &w51, &y1) == em_f16_to_f32(y1.d) * (float)(16 * y1.qs[3]));

    /* q4_K with all codes 0: the dot is -dmin * y.d * sum_j m_j * (bsums[2j] + bsums[2j+1]) */
    block_q4_K wk;
    memset(&wk, 0, sizeof wk);
    wk.d = 0x3c00;
    wk.dmin = 0x3800;  /* 0.5 */
    for (int i = 0; i < 12; i++) wk.scales[i] = (uint8_t)(37 * i + 11);
    float xa[QK_K];
    for (int i = 0; i < QK_K; i++) xa[i] = (float)((i * 7) % 23) - 11.0f;
    block_q8_K ak;
    em_quantize_row(EM_Q8_K, xa, &ak, QK_K);
    float deq[QK_K];
    em_dequantize_row(EM_Q4_K, &wk, deq, QK_K);
    int sumi = 0;
    for (int j = 0; j < 8; j++) {
        int m = (int)lroundf(-deq[32 * j] / 0.5f);  /* dequantized value is -dmin*m */
        CHECK(m >= 0 && m < 64);
        sumi += m * (ak.bsums[2 * j] + ak.bsums[2 * j + 1]);
    }
    CHECK(em_vec_dot(EM_Q4_K, QK_K, &wk, &ak) == -(0.5f * ak.d) * (float)sumi);

    /* f16: exact products, double sum: 1 + 2^-11 * 2048 ones gives exactly 2 */
    uint16_t h1[2048], h2[2048];
    for (int i = 0; i < 2048; i++) { h1[i] = 0x3c00; h2[i] = 0x1000; }  /* 2^-11 */
    h2[0] = 0x3c00;
    CHECK(em_vec_dot(EM_F16, 2048, h1, h2) == 2.0f - ldexpf(1, -11));
}

/* ---------------------------------------------------------------- dispatch, alignment */

TEST(test_dispatch) {
    float x[QK_K], y[QK_K];
    uint8_t buf[1024];
    for (int i = 0; i < QK_K; i++) x[i] = gauss();
    CHECK(em_quantize_row(EM_Q4_K, x, buf, QK_K) == -1);
    CHECK(em_quantize_row(EM_Q5_K, x, buf, QK_K) == -1);
    CHECK(em_quantize_row(EM_Q6_K, x, buf, QK_K) == -1);
    CHECK(em_quantize_row(10, x, buf, QK_K) == -1);  /* q2_K: known, not computed */
    CHECK(em_quantize_row(EM_Q8_0, x, buf, 33) == -1);
    CHECK(em_quantize_row(EM_Q8_0, x, buf, -32) == -1);
    CHECK(em_dequantize_row(99, buf, y, 32) == -1);
    CHECK(em_dequantize_row(EM_Q8_K, buf, y, 100) == -1);
    CHECK(isnan(em_vec_dot(EM_Q8_K, QK_K, buf, buf)));
    CHECK(isnan(em_vec_dot(EM_Q8_1, 32, buf, buf)));
    CHECK(isnan(em_vec_dot(EM_Q4_0, 31, buf, buf)));
    /* f32/f16/bf16 "quantize" is conversion */
    CHECK(em_quantize_row(EM_F32, x, buf, 64) == 0 && memcmp(buf, x, 256) == 0);
    uint16_t h[64];
    CHECK(em_quantize_row(EM_F16, x, h, 64) == 0);
    for (int i = 0; i < 64; i++) CHECK(h[i] == em_f32_to_f16(x[i]));
    CHECK(em_quantize_row(EM_BF16, x, h, 64) == 0);
    for (int i = 0; i < 64; i++) CHECK(h[i] == em_f32_to_bf16(x[i]));
    CHECK(em_dequantize_row(EM_BF16, h, y, 64) == 0);
    for (int i = 0; i < 64; i++) CHECK(y[i] == em_bf16_to_f32(h[i]));
    CHECK(em_quantize_row(EM_Q8_0, x, buf, 0) == 0);
}

/* GGUF rows of 18-, 20- or 210-byte blocks start only 2-byte aligned: run the kernels on
 * such addresses (UBSan checks the struct accesses) and compare with aligned copies. */
TEST(test_two_byte_aligned_rows) {
    const int types[] = { EM_Q4_0, EM_Q4_1, EM_Q5_0, EM_Q5_1, EM_Q8_0, EM_Q4_K, EM_Q5_K, EM_Q6_K, EM_F16, EM_BF16,
                          EM_IQ4_NL, EM_IQ4_XS, EM_TQ1_0, EM_TQ2_0 };
    const int n = 512;
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        int t = types[k];
        uint8_t *w, *a;
        make_operands(t, n, 1.0f, &w, &a);
        size_t bytes = em_row_size(t, n);
        uint8_t *raw = malloc(bytes + 16);
        uint8_t *odd = raw + 2;  /* malloc is 16-aligned: this is 2 mod 16 */
        memcpy(odd, w, bytes);
        float y1[512], y2[512];
        em_dequantize_row(t, w, y1, n);
        em_dequantize_row(t, odd, y2, n);
        CHECK(memcmp(y1, y2, sizeof y1) == 0);
        float d1 = em_vec_dot(t, n, w, a), d2 = em_vec_dot(t, n, odd, a);
        CHECK(f2u(d1) == f2u(d2));
        free(raw);
        free(w);
        free(a);
    }
}

int main(void) {
    RUN(test_type_info);
    RUN(test_f16_exhaustive);
    RUN(test_f16_ties);
    RUN(test_f16_sampled);
    RUN(test_bf16);
    RUN(test_conversion_vectors);
    RUN(test_dequant_vectors);
    RUN(test_fixture_vectors);
    RUN(test_quant_vectors);
    RUN(test_quantizers_vs_llamacpp);
    RUN(test_q8_ties_to_even);
    RUN(test_q8_multiplier);
    RUN(test_q8_formulas);
    RUN(test_roundtrip_error);
    RUN(test_vec_dot_vs_double);
    RUN(test_vec_dot_exact);
    RUN(test_dispatch);
    RUN(test_two_byte_aligned_rows);
    return test_done();
}
