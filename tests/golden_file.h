/* tests/golden_file.h: reading the greedy-golden files of tests/golden/<model>/greedy.txt
 * (blocks of "key: value" lines written by scripts/make_smollm2_goldens.py and
 * scripts/make_realmodel_goldens.py), shared by test_golden.c and test_realmodels.c. */
#ifndef EMBER_TESTS_GOLDEN_FILE_H
#define EMBER_TESTS_GOLDEN_FILE_H
#include <stdlib.h>
#include <string.h>
#include "ember.h"

__attribute__((unused)) static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[b]) b = i;
    return b;
}

/* Base64 (a prompt_b64 value, up to the end of the line) into out; returns the length. */
__attribute__((unused)) static int b64(const char *s, char *out, int cap) {
    int n = 0, bits = 0;
    unsigned acc = 0;
    for (; *s && *s != '\n'; s++) {
        const char *tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const char *q = strchr(tbl, *s);
        if (*s == '=' || !q) continue;
        acc = ((acc << 6) | (unsigned)(q - tbl)) & 0xFFFFFFu;
        bits += 6;
        if (bits >= 8) { bits -= 8; if (n + 1 < cap) out[n++] = (char)((acc >> bits) & 0xFF); }
    }
    out[n] = 0;
    return n;
}

/* Whitespace-separated ids / floats (a prompt_ids, gen_ids or margins value). */
__attribute__((unused)) static int parse_ids(const char *s, ember_token *ids, int max) {
    int n = 0;
    char *end;
    while (n < max) {
        long v = strtol(s, &end, 10);
        if (end == s) break;
        ids[n++] = (ember_token)v;
        s = end;
    }
    return n;
}

__attribute__((unused)) static int parse_floats(const char *s, float *v, int max) {
    int n = 0;
    char *end;
    while (n < max) {
        float x = strtof(s, &end);
        if (end == s) break;
        v[n++] = x;
        s = end;
    }
    return n;
}

/* Is name one of the comma-separated names of list (EMBER_GOLDEN_PROMPTS, EMBER_REALMODELS)? */
__attribute__((unused)) static int in_list(const char *list, const char *name) {
    const size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        const size_t k = e ? (size_t)(e - p) : strlen(p);
        if (k == n && !strncmp(p, name, n)) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}
#endif
