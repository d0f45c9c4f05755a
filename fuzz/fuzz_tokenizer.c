/* fuzz/fuzz_tokenizer.c: libFuzzer target for the tokenizer. Builds three vocabularies
 * once (byte-level BPE gpt-2, SPM llama, WordPiece bert-bge) from the fixture vocab files,
 * then tokenizes the input with and without special parsing, renders every id, and checks
 * the round trip where it must hold: BPE on valid UTF-8, SPM on input without spaces (byte
 * fallback keeps every byte); WordPiece (lowercasing, accent-stripping) only must not
 * crash and must give in-range ids. Plain-text spans (em_tokenize_spans): no span equals
 * special parsing, one span over everything equals none. Fixture root: $EMBER_FIXTURES or ../shared/fixtures (run from the
 * repository root); without the fixtures every input is a no-op. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/gguf.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

static em_vocab *load(const char *name) {
    const char *root = getenv("EMBER_FIXTURES");
    char path[1024], err[256];
    if (!root || !*root) root = "../shared/fixtures";
    snprintf(path, sizeof path, "%s/vocab/%s", root, name);
    gguf_ctx *g = gguf_open(path, err, sizeof err);
    if (!g) return NULL;
    em_vocab *v = NULL;
    if (em_vocab_load_gguf(g, &v, err, sizeof err) != 0) v = NULL;
    gguf_close(g);
    return v;
}

/* Concatenates the pieces of ids into out (cap bytes); returns the length. */
static size_t render(const em_vocab *v, const int32_t *ids, int n, int special, char *out, size_t cap) {
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        char piece[512];
        int k = em_token_to_piece(v, ids[i], piece, sizeof piece, special);
        if (k < 0) abort();  /* no fixture token is longer than 512 bytes */
        if (len + (size_t)k <= cap) memcpy(out + len, piece, (size_t)k);
        len += (size_t)k;
    }
    return len;
}

enum { K_BPE, K_SPM, K_WPM };

static void check(const em_vocab *v, const uint8_t *data, size_t size, int kind) {
    const char *text = (const char *)data;
    int n = em_tokenize(v, text, size, 0, 0, NULL, 0);
    int need = n < 0 ? -n : n;
    int32_t *ids = malloc((size_t)(need ? need : 1) * sizeof *ids);
    char *out = malloc(4 * size + 16);
    if (!ids || !out) abort();
    if (em_tokenize(v, text, size, 0, 0, ids, need) != need) abort();
    for (int i = 0; i < need; i++)
        if (ids[i] < 0 || ids[i] >= em_vocab_n(v)) abort();
    size_t len = render(v, ids, need, 0, out, 4 * size + 16);
    if (kind == K_BPE && em_utf8_valid(text, size) && (len != size || memcmp(out, text, size))) abort();
    if (kind == K_SPM && size && !memchr(text, ' ', size) && !memmem(text, size, "\xE2\x96\x81", 3) &&
        (len != size + 1 || out[0] != ' ' || memcmp(out + 1, text, size)))
        abort();
    free(ids);
    /* Special parsing and BOS/EOS: only must not crash, and the sizing contract holds. */
    n = em_tokenize(v, text, size, 1, 1, NULL, 0);
    need = n < 0 ? -n : n;
    ids = malloc((size_t)(need ? need : 1) * sizeof *ids);
    if (!ids || em_tokenize(v, text, size, 1, 1, ids, need) != need) abort();
    render(v, ids, need, 1, out, 4 * size + 16);
    /* Spans: none is exactly parse_special; one over the whole text is exactly no special
     * parsing; two spans taken from the input's first bytes keep the sizing contract. */
    int32_t *alt = malloc((size_t)(need ? need : 1) * sizeof *alt);
    if (!alt || em_tokenize_spans(v, text, size, 1, 1, NULL, 0, alt, need) != need ||
        (need && memcmp(alt, ids, (size_t)need * sizeof *ids)))
        abort();
    free(alt);
    free(ids);
    const em_span all = { 0, size };
    n = em_tokenize(v, text, size, 1, 0, NULL, 0);
    need = n < 0 ? -n : n;
    ids = malloc((size_t)(need ? need : 1) * sizeof *ids);
    alt = malloc((size_t)(need ? need : 1) * sizeof *alt);
    if (!ids || !alt || em_tokenize(v, text, size, 1, 0, ids, need) != need ||
        em_tokenize_spans(v, text, size, 1, 1, &all, 1, alt, need) != need ||
        (need && memcmp(alt, ids, (size_t)need * sizeof *ids)))
        abort();
    free(alt);
    free(ids);
    if (size >= 4) {
        const em_span sp[2] = { { data[0] % (size + 1), data[1] % 64 }, { data[2] % (size + 1), data[3] } };
        n = em_tokenize_spans(v, text, size, 1, 1, sp, 2, NULL, 0);
        need = n < 0 ? -n : n;
        ids = malloc((size_t)(need ? need : 1) * sizeof *ids);
        if (!ids || em_tokenize_spans(v, text, size, 1, 1, sp, 2, ids, need) != need) abort();
        for (int i = 0; i < need; i++)
            if (ids[i] < 0 || ids[i] >= em_vocab_n(v)) abort();
        free(ids);
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static em_vocab *bpe, *spm, *wpm;
    static int loaded;
    if (!loaded) {
        loaded = 1;
        bpe = load("ggml-vocab-gpt-2.gguf");
        spm = load("ggml-vocab-llama-spm.gguf");
        wpm = load("ggml-vocab-bert-bge.gguf");
    }
    if (size > 4096) return 0;  /* long inputs only slow the search down */
    if (bpe) check(bpe, data, size, K_BPE);
    if (spm) check(spm, data, size, K_SPM);
    if (wpm) check(wpm, data, size, K_WPM);
    return 0;
}
