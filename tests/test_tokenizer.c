/* tests/test_tokenizer.c: the tokenizer against reference tokenizations.
 *  - llama.cpp's vocab vectors (../shared/fixtures/vocab/ggml-vocab-*.gguf + .inp/.out):
 *    every string must give exactly the expected ids (no BOS, special parsing off);
 *  - tok512 (SentencePiece) vectors through llama2.c's tokenizer.bin and stories260K.gguf;
 *  - llama2.c's own prompt tokens for "Once upon a time";
 *  - goldens made by scripts/make_tokenizer_goldens.py (tests/golden/tokenizer/):
 *    SmolLM2 and bert-bge hand-picked strings (llama.cpp), SmolLM2 on a ~290 KB varied
 *    corpus (HF tokenizers, id for id) and on hostile inputs (1 MiB without spaces, NULs,
 *    random bytes), when models/ has SmolLM2;
 *  - decode(encode(corpus)) == corpus for every vocab that can represent it, also as a
 *    stream of pieces with incomplete UTF-8 held back;
 *  - round trips, buffer contracts, odd bytes, error messages, speed. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "test.h"
#include "model/gguf.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

#define SMOLLM2_PATH "models/SmolLM2-135M-Instruct.Q4_1.gguf"
#define GOLDEN_DIR "tests/golden/tokenizer/"
#define SMOLLM2_GOLDEN GOLDEN_DIR "smollm2.txt"
#define BERT_GOLDEN GOLDEN_DIR "bert-bge.txt"

static em_vocab *load_vocab(const char *path, gguf_ctx **gout) {
    char err[256];
    gguf_ctx *g = gguf_open(path, err, sizeof err);
    if (!g) { printf("  gguf_open(%s): %s\n", path, err); return NULL; }
    em_vocab *v = NULL;
    if (em_vocab_load_gguf(g, &v, err, sizeof err) != 0) printf("  load %s: %s\n", path, err);
    if (gout) *gout = g;
    else gguf_close(g);
    return v;
}

/* Tokenizes into a malloc'ed array (the count in *n). */
static int32_t *tok_all(const em_vocab *v, const char *s, size_t len, int add_special, int parse_special, int *n) {
    int need = em_tokenize(v, s, len, add_special, parse_special, NULL, 0);
    if (need < 0) need = -need;
    int32_t *ids = malloc((size_t)(need ? need : 1) * sizeof *ids);
    *n = em_tokenize(v, s, len, add_special, parse_special, ids, need);
    return ids;
}

/* Concatenated pieces of ids (special pieces included when asked). */
static char *detok(const em_vocab *v, const int32_t *ids, int n, int special, size_t *out_len) {
    size_t cap = 64, len = 0;
    char *s = malloc(cap);
    for (int i = 0; i < n; i++) {
        int k = em_token_to_piece(v, ids[i], s + len, (int)(cap - len), special);
        if (k < 0) {
            while (cap - len < (size_t)-k) cap *= 2;
            s = realloc(s, cap);
            k = em_token_to_piece(v, ids[i], s + len, (int)(cap - len), special);
        }
        len += (size_t)k;
    }
    *out_len = len;
    return s;
}

static int parse_ids(const char *line, int32_t *ids, int max) {
    int n = 0;
    char *end;
    for (const char *p = line; *p && n < max;) {
        long x = strtol(p, &end, 10);
        if (end == p) break;
        ids[n++] = (int32_t)x;
        p = end;
    }
    return n;
}

/* Splits the .inp text on "\n__ggml_vocab_test__\n" in place; returns the count. */
static int split_inputs(char *inp, char **items, size_t *lens, int max) {
    const char *sep = "\n__ggml_vocab_test__\n";
    int n = 0;
    char *p = inp;
    while (n < max) {
        char *q = strstr(p, sep);
        items[n] = p;
        lens[n] = q ? (size_t)(q - p) : strlen(p);
        n++;
        if (!q) break;
        p = q + strlen(sep);
    }
    /* The file ends with a separator whose trailing newline leaves one empty item. */
    if (n > 0 && lens[n - 1] == 0 && items[n - 1][0] == 0) n--;
    return n;
}

/* Runs one .inp/.out pair; prints mismatches; returns the number of passing strings. */
static int run_vectors(const em_vocab *v, const char *inp_path, const char *out_path, int *total,
                       int sp_normalise) {
    char *inp = (char *)read_file(inp_path, NULL), *outf = (char *)read_file(out_path, NULL);
    static char *items[512];
    static size_t lens[512];
    int n = split_inputs(inp, items, lens, 512), pass = 0;
    char *line = outf;
    for (int i = 0; i < n; i++) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        int32_t want[4096];
        int nw = parse_ids(line, want, 4096), ng;
        char *txt = items[i];
        size_t tl = lens[i];
        char norm[8192];
        if (sp_normalise) {  /* SentencePiece's remove_extra_whitespaces on ' ' */
            size_t k = 0;
            for (size_t j = 0; j < tl && k < sizeof norm; j++) {
                if (txt[j] == ' ' && (k == 0 || norm[k - 1] == ' ')) continue;
                norm[k++] = txt[j];
            }
            while (k > 0 && norm[k - 1] == ' ') k--;
            txt = norm;
            tl = k;
        }
        int32_t *got = tok_all(v, txt, tl, 0, 0, &ng);
        if (ng == nw && !memcmp(got, want, (size_t)nw * sizeof *got)) pass++;
        else {
            printf("  mismatch #%d '%.40s': want", i, items[i]);
            for (int j = 0; j < nw && j < 24; j++) printf(" %d", want[j]);
            printf(" | got");
            for (int j = 0; j < ng && j < 24; j++) printf(" %d", got[j]);
            printf("\n");
        }
        free(got);
        line = nl ? nl + 1 : line + strlen(line);
    }
    free(inp);
    free(outf);
    *total = n;
    return pass;
}

static void vocab_case(const char *name) {
    char g[256], i[256], o[256];
    snprintf(g, sizeof g, "vocab/ggml-vocab-%s.gguf", name);
    snprintf(i, sizeof i, "vocab/ggml-vocab-%s.gguf.inp", name);
    snprintf(o, sizeof o, "vocab/ggml-vocab-%s.gguf.out", name);
    if (!file_exists(fixture_path(g)) || !file_exists(fixture_path(i))) SKIP("fixture missing: %s", g);
    em_vocab *v = load_vocab(fixture_path(g), NULL);
    CHECKF(v != NULL, "load %s", name);
    if (!v) return;
    int total = 0, pass = run_vectors(v, fixture_path(i), fixture_path(o), &total, 0);
    printf("  %s: %d/%d strings match\n", name, pass, total);
    CHECKF(pass == total && total > 0, "%s: %d/%d", name, pass, total);
    em_vocab_free(v);
}

TEST(vocab_llama_spm) { vocab_case("llama-spm"); }
TEST(vocab_phi_3) { vocab_case("phi-3"); }
TEST(vocab_gpt_2) { vocab_case("gpt-2"); }
TEST(vocab_falcon) { vocab_case("falcon"); }
TEST(vocab_mpt) { vocab_case("mpt"); }
TEST(vocab_refact) { vocab_case("refact"); }
TEST(vocab_starcoder) { vocab_case("starcoder"); }
TEST(vocab_deepseek_coder) { vocab_case("deepseek-coder"); }
TEST(vocab_deepseek_llm) { vocab_case("deepseek-llm"); }
TEST(vocab_bert_bge) { vocab_case("bert-bge"); }

/* tok512 vectors (SentencePiece with tok512.model). SentencePiece applies
 * remove_extra_whitespaces (collapse runs of ' ', strip both ends) before its BPE; llama.cpp
 * does not for SPM vocabs, so the input is normalised the same way here first. */
static void tok512_case(em_vocab *v, const char *what) {
    int total = 0, pass = run_vectors(v, fixture_path("vocab/tok512.model.inp"),
                                      fixture_path("vocab/tok512.model.out"), &total, 1);
    printf("  tok512 via %s: %d/%d strings match\n", what, pass, total);
    CHECKF(pass == total && total > 0, "%s: %d/%d", what, pass, total);
}

TEST(tok512_l2c) {
    if (!file_exists(fixture_path("models/tok512.bin")) || !file_exists(fixture_path("vocab/tok512.model.inp")))
        SKIP("fixture missing: models/tok512.bin");
    char err[256];
    em_vocab *v = NULL;
    CHECKF(em_vocab_load_l2c(fixture_path("models/tok512.bin"), 512, &v, err, sizeof err) == 0, "%s", err);
    if (!v) return;
    tok512_case(v, "tok512.bin");
    em_vocab_free(v);
}

TEST(tok512_gguf) {
    if (!file_exists(fixture_path("models/stories260K.gguf")) || !file_exists(fixture_path("vocab/tok512.model.inp")))
        SKIP("fixture missing: models/stories260K.gguf");
    em_vocab *v = load_vocab(fixture_path("models/stories260K.gguf"), NULL);
    CHECK(v != NULL);
    if (!v) return;
    tok512_case(v, "stories260K.gguf");
    em_vocab_free(v);
}

/* llama2.c run.c's prompt tokens: the .ids file starts with them (BOS not listed). */
TEST(l2c_once_upon) {
    const char *ids_path = fixture_path("golden/stories260K_greedy_onceupon_128.ids");
    if (!file_exists(fixture_path("models/tok512.bin")) || !file_exists(ids_path))
        SKIP("fixture missing: golden/stories260K_greedy_onceupon_128.ids");
    char err[256], *txt = (char *)read_file(ids_path, NULL);
    int32_t want[64];
    int nw = parse_ids(txt, want, 64), n;
    free(txt);
    em_vocab *v = NULL;
    CHECKF(em_vocab_load_l2c(fixture_path("models/tok512.bin"), 512, &v, err, sizeof err) == 0, "%s", err);
    if (!v) return;
    int32_t *got = tok_all(v, "Once upon a time", 16, 1, 0, &n);
    CHECK(n >= 2 && got[0] == 1);
    CHECK(nw >= n - 1);
    for (int i = 1; i < n && i - 1 < nw; i++) CHECKF(got[i] == want[i - 1], "id %d: %d vs %d", i, got[i], want[i - 1]);
    printf("  'Once upon a time' ->");
    for (int i = 0; i < n; i++) printf(" %d", got[i]);
    printf("\n");
    free(got);
    em_vocab_free(v);
}

static int hexval(char c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

/* Hex digits at h (stopping at the first non-hex char) into bytes. */
static size_t unhex(const char *h, char *out) {
    size_t k = 0;
    while (isxdigit((unsigned char)h[0]) && isxdigit((unsigned char)h[1])) {
        out[k++] = (char)(hexval(h[0]) << 4 | hexval(h[1]));
        h += 2;
    }
    return k;
}

/* One golden line (T or P, see scripts/make_tokenizer_goldens.py). With round_trip, also
 * decode(encode(s)) == s on the valid-UTF-8 inputs with specials rendered. */
static void golden_line(const em_vocab *v, char *line, int round_trip, int *pass, int *total) {
    static char in[8192], piece[8192];
    if (line[0] == 'T') {
        int add, sp, off;
        if (sscanf(line, "T %d %d %n", &add, &sp, &off) != 2) return;
        char *colon = strchr(line + off, ':');
        if (!colon) return;
        size_t n = unhex(line + off, in);
        int32_t want[2048];
        int nw = parse_ids(colon + 1, want, 2048), ng;
        int32_t *got = tok_all(v, in, n, add, sp, &ng);
        int ok = ng == nw && !memcmp(got, want, (size_t)nw * sizeof *got);
        if (!ok) printf("  golden mismatch (add %d special %d) '%.*s'\n", add, sp, (int)(n < 50 ? n : 50), in);
        if (ok && sp && round_trip && em_utf8_valid(in, n)) {
            size_t dl;
            char *d = detok(v, got, ng, 1, &dl);
            CHECKF(dl == n && !memcmp(d, in, n), "round trip '%.*s'", (int)(n < 50 ? n : 50), in);
            free(d);
        }
        *pass += ok;
        (*total)++;
        free(got);
    } else if (line[0] == 'P') {
        int id, sp, off;
        if (sscanf(line, "P %d %d %n", &id, &sp, &off) != 2) return;
        size_t n = unhex(line + off, in);
        int k = em_token_to_piece(v, id, piece, sizeof piece, sp);
        int ok = k == (int)n && !memcmp(piece, in, n);
        if (!ok) printf("  golden piece mismatch id %d special %d\n", id, sp);
        *pass += ok;
        (*total)++;
    }
}

TEST(smollm2_goldens) {
    if (!file_exists(SMOLLM2_PATH)) SKIP("model missing: %s (scripts/fetch-model.sh)", SMOLLM2_PATH);
    char *txt = (char *)read_file(SMOLLM2_GOLDEN, NULL);
    CHECKF(txt != NULL, "missing %s", SMOLLM2_GOLDEN);
    if (!txt) return;
    em_vocab *v = load_vocab(SMOLLM2_PATH, NULL);
    CHECK(v != NULL);
    if (!v) { free(txt); return; }
    CHECK(em_vocab_add_bos(v) == 0);
    CHECK(em_vocab_bos(v) == 1 && em_vocab_eos(v) == 2);
    CHECK(em_vocab_is_eog(v, 2) && em_vocab_is_eog(v, 0) && !em_vocab_is_eog(v, 1));
    CHECK(em_vocab_attr(v, 1) == EM_TOK_CONTROL);
    CHECK(em_vocab_find(v, "<|im_start|>", 12) == 1);
    int pass = 0, total = 0;
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n")) golden_line(v, line, 1, &pass, &total);
    printf("  smollm2: %d/%d golden cases match\n", pass, total);
    CHECKF(pass == total && total > 0, "%d/%d", pass, total);
    em_vocab_free(v);
    free(txt);
}

/* llama.cpp's ids for hand-picked strings through the WordPiece (bert-bge) vocab, with
 * [CLS]/[SEP] and special parsing; no round trip (WordPiece lowercases, drops accents). */
TEST(bert_goldens) {
    const char *path = fixture_path("vocab/ggml-vocab-bert-bge.gguf");
    if (!file_exists(path)) SKIP("fixture missing: vocab/ggml-vocab-bert-bge.gguf");
    char *txt = (char *)read_file(BERT_GOLDEN, NULL);
    CHECKF(txt != NULL, "missing %s", BERT_GOLDEN);
    em_vocab *v = txt ? load_vocab(path, NULL) : NULL;
    CHECK(v != NULL);
    if (!v) { free(txt); return; }
    CHECK(em_vocab_add_bos(v) == 1 && em_vocab_bos(v) == 101);
    int pass = 0, total = 0;
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n")) golden_line(v, line, 0, &pass, &total);
    printf("  bert-bge: %d/%d golden cases match\n", pass, total);
    CHECKF(pass == total && total > 0, "%d/%d", pass, total);
    em_vocab_free(v);
    free(txt);
}

/* Feeds pieces one by one through a hold-back of incomplete UTF-8 (as a streaming
 * front end does); every chunk let out must be valid UTF-8 and all of them together must
 * be `want`. Returns 1 when that holds. */
static int stream_ok(const em_vocab *v, const int32_t *ids, int n, const char *want, size_t want_len) {
    char hold[600];
    size_t nh = 0, done = 0;
    int ok = 1;
    for (int i = 0; i < n && ok; i++) {
        int k = em_token_to_piece(v, ids[i], hold + nh, (int)(sizeof hold - nh), 1);
        if (k < 0 || nh + (size_t)k > 512) return 0;
        nh += (size_t)k;
        /* Let out everything but an incomplete sequence at the end (at most 3 bytes). */
        size_t cut = nh, back = 0;
        while (back < 3 && back < nh && ((unsigned char)hold[nh - 1 - back] & 0xC0) == 0x80) back++;
        if (back < nh) {
            unsigned char lead = (unsigned char)hold[nh - 1 - back];
            if (lead >= 0xC0 && em_utf8_len(lead) > back + 1) cut = nh - 1 - back;
        }
        ok = em_utf8_valid(hold, cut) && done + cut <= want_len && !memcmp(want + done, hold, cut);
        done += cut;
        memmove(hold, hold + cut, nh - cut);
        nh -= cut;
    }
    return ok && nh == 0 && done == want_len;
}

/* SmolLM2 against HF tokenizers on the committed ~290 KB corpus (ids as uint16), then
 * decode(encode(corpus)) == corpus, also as a stream of pieces. */
TEST(smollm2_corpus) {
    if (!file_exists(SMOLLM2_PATH)) SKIP("model missing: %s (scripts/fetch-model.sh)", SMOLLM2_PATH);
    size_t tl, il;
    char *text = (char *)read_file(GOLDEN_DIR "smollm2_corpus.txt", &tl);
    unsigned char *raw = read_file(GOLDEN_DIR "smollm2_corpus.u16", &il);
    CHECKF(text && raw && il % 2 == 0, "missing %ssmollm2_corpus.*", GOLDEN_DIR);
    em_vocab *v = text && raw ? load_vocab(SMOLLM2_PATH, NULL) : NULL;
    if (!v) { free(text); free(raw); return; }
    int n, nw = (int)(il / 2), bad = -1;
    int32_t *got = tok_all(v, text, tl, 0, 1, &n);
    for (int i = 0; i < nw && i < n && bad < 0; i++)
        if (got[i] != (raw[2 * i] | raw[2 * i + 1] << 8)) bad = i;
    if (bad < 0 && n != nw) bad = n < nw ? n : nw;
    printf("  corpus: %zu bytes, %d ids (HF %d)%s\n", tl, n, nw, bad < 0 ? ", all equal" : "");
    if (bad >= 0) {
        size_t dl;
        char *d = detok(v, got, bad, 1, &dl);
        printf("  first difference at id %d (byte %zu): got %d, HF %d; text there '%.40s'\n", bad, dl,
               bad < n ? got[bad] : -1, bad < nw ? raw[2 * bad] | raw[2 * bad + 1] << 8 : -1, text + dl);
        free(d);
    }
    CHECK(bad < 0);
    size_t dl;
    char *d = detok(v, got, n, 1, &dl);
    CHECK(dl == tl && !memcmp(d, text, tl));
    CHECK(stream_ok(v, got, n, text, tl));
    free(d); free(got); free(text); free(raw);
    em_vocab_free(v);
}

/* The hostile inputs of scripts/tokenizer_corpus.py, rebuilt with the same LCG. */
static uint32_t lcg(uint32_t x) { return x * 1103515245u + 12345u; }

static char *hostile(const char *name, size_t *len) {
    static const char *const alpha[] = {  /* NOSPACE_ALPHABET, in order */
        "a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q","r","s","t","u","v","w",
        "x","y","z","A","B","C","D","E","F","G","H","I","J","K","L","M","N","O","P","Q","R","S","T",
        "U","V","W","X","Y","Z","0","1","2","3","4","5","6","7","8","9","!","\"","#","$","%","&","'",
        "(",")","*","+",",","-",".","/",":",";","<","=",">","?","@","[","\\","]","^","_","`","{","|",
        "}","~","\xc3\xa9","\xc3\x9f","\xc3\xb1","\xc3\xb8","\xd1\x8f","\xd0\xb6","\xe4\xb8\xad",
        "\xe6\x96\x87","\xe5\xad\x97","\xe3\x81\xae","\xed\x95\x9c","\xf0\x9f\x98\x80",
        "\xf0\x9f\x9a\x80","\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd","\xe2\x82\xac","\xc2\xbd",
    };
    static const char *const words[] = {"alpha", "beta", "\0", "\0\0", " ", "\x01\x02", "gamma delta", "\n"};
    static const size_t wlen[] = {5, 4, 1, 2, 1, 2, 11, 1};
    const size_t cap = 1 << 20;
    char *out = malloc(cap + 64);
    size_t n = 0;
    uint32_t x = 1;
    if (!strcmp(name, "nospace_1m")) {
        for (;;) {
            x = lcg(x);
            const char *c = alpha[(x >> 16) % (sizeof alpha / sizeof *alpha)];
            size_t k = strlen(c);
            if (n + k > cap) break;
            memcpy(out + n, c, k);
            n += k;
        }
    } else if (!strcmp(name, "letters_1m")) {
        for (; n < cap; n++) { x = lcg(x); out[n] = (char)('a' + (x >> 16) % 26); }
    } else if (!strcmp(name, "nul_text")) {
        for (int i = 0; i < 20000; i++) {
            x = lcg(x);
            size_t w = (x >> 16) % 8;
            memcpy(out + n, words[w], wlen[w]);
            n += wlen[w];
        }
    } else {  /* bytes_64k: F4..F7 become FF (see the script) */
        for (; n < 65536; n++) {
            x = lcg(x);
            unsigned b = (x >> 16) & 0xFF;
            out[n] = (char)(b >= 0xF4 && b <= 0xF7 ? 0xFF : b);
        }
    }
    *len = n;
    return out;
}

static uint64_t fnv1a64_ids(const int32_t *ids, int n) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (int i = 0; i < n; i++)
        for (int b = 0; b < 4; b++) h = (h ^ (((uint32_t)ids[i] >> (8 * b)) & 0xFF)) * 0x100000001B3ull;
    return h;
}

TEST(smollm2_hostile) {
    if (!file_exists(SMOLLM2_PATH)) SKIP("model missing: %s (scripts/fetch-model.sh)", SMOLLM2_PATH);
    char *txt = (char *)read_file(GOLDEN_DIR "smollm2_hostile.txt", NULL);
    CHECKF(txt != NULL, "missing %ssmollm2_hostile.txt", GOLDEN_DIR);
    em_vocab *v = txt ? load_vocab(SMOLLM2_PATH, NULL) : NULL;
    if (!v) { free(txt); return; }
    int cases = 0;
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n")) {
        char name[64];
        int nw, off;
        unsigned long long hash;
        if (line[0] != 'H' || sscanf(line, "H %63s %d %llx : %n", name, &nw, &hash, &off) != 3) continue;
        size_t len, dl;
        char *in = hostile(name, &len);
        int n;
        int32_t *got = tok_all(v, in, len, 0, 1, &n), first[32];
        int nf = parse_ids(line + off, first, 32);
        int ok = n == nw && fnv1a64_ids(got, n) == hash && n >= nf && !memcmp(got, first, (size_t)nf * 4);
        printf("  %s: %zu bytes -> %d ids (want %d)%s\n", name, len, n, nw, ok ? ", equal" : ", DIFFERENT");
        CHECKF(ok, "%s", name);
        if (em_utf8_valid(in, len)) {  /* what is valid UTF-8 must also decode back exactly */
            char *d = detok(v, got, n, 1, &dl);
            CHECKF(dl == len && !memcmp(d, in, len), "%s round trip", name);
            free(d);
        }
        cases++;
        free(got); free(in);
    }
    CHECK(cases == 4);
    em_vocab_free(v);
    free(txt);
}

/* decode(encode(corpus)) == corpus through every fixture vocab that can represent any
 * UTF-8 (byte-level BPE; SPM with byte fallback, whose U+2581 reads back as a space and
 * whose dummy prefix adds one leading space). Not WordPiece (it lowercases), and not
 * falcon: its vocab has no token for bytes 03-05, 0B, 11, 13-17, 19, 1C-1E, F2, ... so the
 * corpus's vertical tabs cannot be represented (llama.cpp throws there; ember drops them). */
TEST(corpus_round_trip) {
    const char *names[] = {"llama-spm", "phi-3", "gpt-2", "mpt", "refact", "starcoder",
                           "deepseek-coder", "deepseek-llm"};
    size_t tl;
    char *text = (char *)read_file(GOLDEN_DIR "smollm2_corpus.txt", &tl);
    CHECK(text != NULL);
    if (!text) return;
    char *spm_text = malloc(tl + 1);  /* the corpus with U+2581 written as ' ' */
    size_t sl = 0;
    for (size_t i = 0; i < tl;) {
        if (tl - i >= 3 && !memcmp(text + i, "\xe2\x96\x81", 3)) { spm_text[sl++] = ' '; i += 3; }
        else spm_text[sl++] = text[i++];
    }
    int any = 0;
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        char p[128];
        snprintf(p, sizeof p, "vocab/ggml-vocab-%s.gguf", names[k]);
        if (!file_exists(fixture_path(p))) continue;
        em_vocab *v = load_vocab(fixture_path(p), NULL);
        CHECK(v != NULL);
        if (!v) continue;
        any = 1;
        const int spm = k < 2;
        int n;
        size_t dl;
        int32_t *ids = tok_all(v, text, tl, 0, 0, &n);
        char *d = detok(v, ids, n, 0, &dl);
        const char *want = spm ? spm_text : text;
        const size_t wl = spm ? sl : tl, skip = spm && dl > 0 && d[0] == ' ';
        CHECKF(dl - skip == wl && !memcmp(d + skip, want, wl), "%s: round trip of the corpus", names[k]);
        if (!spm) CHECKF(stream_ok(v, ids, n, text, tl), "%s: streamed pieces", names[k]);
        free(d);
        free(ids);
        em_vocab_free(v);
    }
    free(spm_text);
    free(text);
    if (!any) SKIP("fixture missing: vocab/");
}

static const char *const k_roundtrip[] = {
    "Hello world", " leading", "trailing ", "  two  spaces  ", "\t\ttabs\n\nnewlines\r\n",
    "caf\xc3\xa9 na\xc3\xafve", "\xe4\xb8\xad\xe6\x96\x87", "\xf0\x9f\x98\x80\xf0\x9f\x9a\x80 emoji",
    "\xe2\x96\x81 literal lower block", "1234567890", "'s 'll 're", "\xef\xbf\xbd", "x",
};

/* decode(encode(s)) == s for UTF-8 edge cases on every fixture vocab. SPM drops its
 * dummy-prefix space (the first piece starts with ' '). */
TEST(round_trip) {
    const char *names[] = {"gpt-2", "llama-spm", "falcon", "starcoder", "deepseek-llm", "phi-3"};
    int any = 0;
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        char p[128];
        snprintf(p, sizeof p, "vocab/ggml-vocab-%s.gguf", names[k]);
        if (!file_exists(fixture_path(p))) continue;
        em_vocab *v = load_vocab(fixture_path(p), NULL);
        CHECK(v != NULL);
        if (!v) continue;
        any = 1;
        const int spm = em_vocab_add_bos(v) && em_vocab_bos(v) == 1;
        for (size_t i = 0; i < sizeof k_roundtrip / sizeof *k_roundtrip; i++) {
            const char *s = k_roundtrip[i];
            int n;
            int32_t *ids = tok_all(v, s, strlen(s), 0, 0, &n);
            size_t dl;
            char *d = detok(v, ids, n, 0, &dl);
            const char *dd = d;
            if (spm && dl > 0 && d[0] == ' ') { dd++; dl--; }
            if (spm && strstr(s, "\xe2\x96\x81")) { free(d); free(ids); continue; } /* U+2581 reads back as ' ' */
            CHECKF(dl == strlen(s) && !memcmp(dd, s, dl), "%s: '%s' -> '%.*s'", names[k], s, (int)dl, dd);
            free(d);
            free(ids);
        }
        em_vocab_free(v);
    }
    if (!any) SKIP("fixture missing: vocab/");
}

/* Random valid UTF-8 round-trips exactly through SPM and BPE; random bytes never crash
 * and, without spaces, still round-trip through SPM byte fallback. (A space next to
 * invalid UTF-8 need not: escaped to U+2581 it can land inside a bad sequence's symbol,
 * exactly as in llama.cpp.) */
static size_t random_text(unsigned *x, char *buf, int valid) {
    size_t n = 0, want = (*x >> 8) % 48;
    while (n < want) {
        *x = *x * 1103515245u + 12345u;
        if (!valid) { buf[n++] = (char)(*x >> 16); continue; }
        uint32_t r = *x >> 8, cp;
        switch (r % 4) {
        case 0: cp = 0x20 + r % 95; break;
        case 1: cp = 0x80 + r % 0x780; break;
        case 2: cp = 0x800 + r % 0xF000; break;
        default: cp = 0x10000 + r % 0x100000; break;
        }
        if ((cp >= 0xD800 && cp <= 0xDFFF) || cp == 0x2581) continue;
        n += (size_t)em_utf8_encode(cp, buf + n);
    }
    return n;
}

TEST(odd_bytes) {
    if (!file_exists(fixture_path("vocab/ggml-vocab-llama-spm.gguf"))) SKIP("fixture missing: vocab/");
    em_vocab *spm = load_vocab(fixture_path("vocab/ggml-vocab-llama-spm.gguf"), NULL);
    em_vocab *bpe = load_vocab(fixture_path("vocab/ggml-vocab-gpt-2.gguf"), NULL);
    CHECK(spm && bpe);
    if (!spm || !bpe) { em_vocab_free(spm); em_vocab_free(bpe); return; }
    char buf[256];
    unsigned x = 12345;
    for (int iter = 0; iter < 400; iter++) {
        const int valid = iter & 1;
        size_t n = random_text(&x, buf, valid), dl, bl;
        int ns, nb;
        int32_t *a = tok_all(spm, buf, n, 1, 1, &ns), *b = tok_all(bpe, buf, n, 1, 1, &nb);
        free(a); free(b);
        a = tok_all(spm, buf, n, 0, 0, &ns);
        b = tok_all(bpe, buf, n, 0, 0, &nb);
        char *d = detok(spm, a, ns, 0, &dl), *e = detok(bpe, b, nb, 0, &bl);
        if (valid || !memchr(buf, ' ', n))
            CHECK(n == 0 || (dl == n + 1 && !memcmp(d + 1, buf, n)));
        if (valid) CHECK(bl == n && !memcmp(e, buf, n));
        free(d); free(e); free(a); free(b);
    }
    em_vocab_free(spm);
    em_vocab_free(bpe);
}

/* Buffer contracts: -(needed) when short; pieces follow snprintf; bad ids give 0. */
TEST(contracts) {
    if (!file_exists(fixture_path("vocab/ggml-vocab-gpt-2.gguf"))) SKIP("fixture missing: vocab/");
    em_vocab *v = load_vocab(fixture_path("vocab/ggml-vocab-gpt-2.gguf"), NULL);
    CHECK(v != NULL);
    if (!v) return;
    int32_t ids[4] = {-7, -7, -7, -7};
    CHECK(em_tokenize(v, "Hello world", 11, 0, 0, ids, 1) == -2);
    CHECK(ids[0] == -7);
    CHECK(em_tokenize(v, "Hello world", 11, 0, 0, ids, 4) == 2);
    CHECK(em_tokenize(v, "", 0, 1, 1, ids, 4) == 0);
    char p[8];
    CHECK(em_token_to_piece(v, ids[1], p, 2, 0) == -6);  /* " world" */
    CHECK(em_token_to_piece(v, ids[1], p, 8, 0) == 6 && !memcmp(p, " world", 6));
    CHECK(em_token_to_piece(v, -1, p, 8, 0) == 0 && em_token_to_piece(v, 1 << 30, p, 8, 0) == 0);
    CHECK(em_token_to_piece(v, 50256, p, 8, 0) == 0);   /* <|endoftext|>: control */
    CHECK(em_token_to_piece(v, 50256, p, 8, 1) < 0);
    CHECK(em_vocab_n(v) == 50257 && em_vocab_is_eog(v, 50256));
    em_vocab_free(v);
}

/* Errors name the offending value. */
TEST(load_errors) {
    const char *toks[] = {"a", "b", "a b", "ab"};
    const char *merges[] = {"a b"};
    const char *models[] = {"gpt2", "gpt2", "wordpiece9"};
    const char *pres[] = {"foo", NULL, NULL};
    const char *want[] = {"unknown pre-tokenizer 'foo'", NULL, "unknown tokenizer model 'wordpiece9'"};
    for (int c = 0; c < 3; c++) {
        gguf_writer *w = gguf_writer_new();
        gguf_writer_set_str(w, "tokenizer.ggml.model", models[c]);
        if (pres[c]) gguf_writer_set_str(w, "tokenizer.ggml.pre", pres[c]);
        gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 4);
        gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, 1);
        void *buf; size_t sz;
        CHECK(gguf_writer_finish(w, &buf, &sz) == 0);
        gguf_writer_free(w);
        char err[256] = "";
        gguf_ctx *g = gguf_open_mem(buf, sz, err, sizeof err);
        CHECKF(g != NULL, "%s", err);
        em_vocab *v = NULL;
        int rc = g ? em_vocab_load_gguf(g, &v, err, sizeof err) : -1;
        if (want[c]) CHECKF(rc == -1 && strstr(err, want[c]), "case %d: '%s'", c, err);
        else {
            /* No tokenizer.ggml.pre: llama.cpp's "default" regexes; "ab" merges. */
            CHECKF(rc == 0, "case %d: %s", c, err);
            int32_t ids[8];
            CHECK(v && em_tokenize(v, "ab", 2, 0, 0, ids, 8) == 1 && ids[0] == 3);
        }
        em_vocab_free(v);
        gguf_close(g);
        free(buf);
    }
}

/* 1 MB of mixed text must tokenize well under a second (O(n log n) merges). */
TEST(speed) {
    if (!file_exists(fixture_path("vocab/ggml-vocab-gpt-2.gguf"))) SKIP("fixture missing: vocab/");
    const char *names[] = {"vocab/ggml-vocab-gpt-2.gguf", "vocab/ggml-vocab-llama-spm.gguf"};
    size_t n = 1 << 20;
    char *text = malloc(n);
    const char *chunk = "The quick brown fox, jumps over 12345 lazy dogs!\n\tdef f(x): return x*2  "
                        "\xe4\xb8\xad\xe6\x96\x87 caf\xc3\xa9 ";
    for (size_t i = 0, k = strlen(chunk); i < n; i++) text[i] = chunk[i % k];
    /* A long run with no spaces is the SPM/BPE merge worst case. */
    memset(text + n / 2, 'a', 65536);
    for (int k = 0; k < 2; k++) {
        em_vocab *v = load_vocab(fixture_path(names[k]), NULL);
        if (!v) continue;
        clock_t t0 = clock();
        int cnt;
        int32_t *ids = tok_all(v, text, n, 1, 1, &cnt);
        double sec = (double)(clock() - t0) / CLOCKS_PER_SEC / 2;  /* tok_all runs twice */
        printf("  %s: 1 MiB -> %d tokens in %.3f s\n", names[k], cnt, sec);
        CHECK(cnt > 100000);
        CHECKF(sec < 2.0, "%.3f s", sec);  /* generous: sanitizer builds are slow */
        free(ids);
        em_vocab_free(v);
    }
    free(text);
}

int main(void) {
    RUN(vocab_llama_spm);
    RUN(vocab_phi_3);
    RUN(vocab_gpt_2);
    RUN(vocab_falcon);
    RUN(vocab_mpt);
    RUN(vocab_refact);
    RUN(vocab_starcoder);
    RUN(vocab_deepseek_coder);
    RUN(vocab_deepseek_llm);
    RUN(vocab_bert_bge);
    RUN(tok512_l2c);
    RUN(tok512_gguf);
    RUN(l2c_once_upon);
    RUN(smollm2_goldens);
    RUN(bert_goldens);
    RUN(smollm2_corpus);
    RUN(smollm2_hostile);
    RUN(corpus_round_trip);
    RUN(round_trip);
    RUN(odd_bytes);
    RUN(contracts);
    RUN(load_errors);
    RUN(speed);
    return test_done();
}
