/* common.c: flag parsing, model loading and UTF-8-safe streaming shared by subcommands. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "common.h"

static int parse_int(const char *flag, const char *s, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < INT_MIN || v > INT_MAX) {
        fprintf(stderr, "error: %s expects an integer, got '%s'\n", flag, s);
        return 1;
    }
    *out = (int)v;
    return 0;
}

static int parse_float(const char *flag, const char *s, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || *end || end == s || v != v) {
        fprintf(stderr, "error: %s expects a number, got '%s'\n", flag, s);
        return 1;
    }
    *out = v;
    return 0;
}

int opts_parse(opts *o, int argc, char **argv) {
    memset(o, 0, sizeof *o);
    o->n_predict = -1;
    o->sp = ember_sampler_default_params();
    o->rest = calloc((size_t)argc + 1, sizeof *o->rest);
    if (!o->rest) return 1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define IS(s) (!strcmp(a, s))
#define NEED() do { if (!v) { fprintf(stderr, "error: %s needs a value\n", a); return 1; } i++; } while (0)
        int bad = 0;
        if (IS("-m") || IS("--model")) { NEED(); o->model = v; }
        else if (IS("-p") || IS("--prompt")) { NEED(); o->prompt = v; }
        else if (IS("-f") || IS("--file")) { NEED(); o->prompt_file = v; }
        else if (IS("-z") || IS("--tokenizer")) { NEED(); o->tokenizer = v; }
        else if (IS("-sys") || IS("--system-prompt")) { NEED(); o->system = v; }
        else if (IS("--chat-template")) { NEED(); o->chat_template = v; }
        else if (IS("--isa")) { NEED(); o->isa = v; }
        else if (IS("-ctk") || IS("--cache-type-k")) { NEED(); o->cache_k = v; }
        else if (IS("-ctv") || IS("--cache-type-v")) { NEED(); o->cache_v = v; }
        else if (IS("-n") || IS("--n-predict") || IS("--predict")) { NEED(); bad = parse_int(a, v, &o->n_predict); }
        else if (IS("-c") || IS("--ctx-size")) { NEED(); bad = parse_int(a, v, &o->n_ctx); }
        else if (IS("-t") || IS("--threads")) { NEED(); bad = parse_int(a, v, &o->n_threads); }
        else if (IS("-b") || IS("--batch-size")) { NEED(); bad = parse_int(a, v, &o->n_batch); }
        else if (IS("-s") || IS("--seed")) {
            NEED();
            char *end;
            errno = 0;
            long long s = strtoll(v, &end, 10);
            if (errno || *end || end == v) { fprintf(stderr, "error: %s expects an integer\n", a); return 1; }
            o->sp.seed = s < 0 ? 0xFFFFFFFFu : (uint64_t)s;
        }
        else if (IS("--temp")) { NEED(); bad = parse_float(a, v, &o->sp.temp); }
        else if (IS("--top-k")) { NEED(); bad = parse_int(a, v, &o->sp.top_k); }
        else if (IS("--top-p")) { NEED(); bad = parse_float(a, v, &o->sp.top_p); }
        else if (IS("--min-p")) { NEED(); bad = parse_float(a, v, &o->sp.min_p); }
        else if (IS("--repeat-penalty")) { NEED(); bad = parse_float(a, v, &o->sp.repeat_penalty); }
        else if (IS("--repeat-last-n")) { NEED(); bad = parse_int(a, v, &o->sp.repeat_last_n); }
        else if (IS("--presence-penalty")) { NEED(); bad = parse_float(a, v, &o->sp.presence_penalty); }
        else if (IS("--frequency-penalty")) { NEED(); bad = parse_float(a, v, &o->sp.frequency_penalty); }
        else if (IS("--ids")) o->ids = 1;
        else if (IS("--ignore-eos")) o->ignore_eos = 1;
        else if (IS("--no-bos")) o->no_bos = 1;
        else if (IS("--special")) o->special = 1;
        else if (IS("--pieces")) o->pieces = 1;
        else if (IS("-v") || IS("--verbose")) o->verbose = 1;
        else if (a[0] == '-' && a[1] && !(a[1] >= '0' && a[1] <= '9')) {
            fprintf(stderr, "error: unknown option '%s' (see 'ember help')\n", a);
            return 1;
        } else o->rest[o->n_rest++] = argv[i];
        if (bad) return 1;
#undef IS
#undef NEED
    }
    if (o->cache_k && o->cache_v && strcmp(o->cache_k, o->cache_v)) {
        fprintf(stderr, "error: -ctk %s and -ctv %s differ; ember keeps K and V in one type\n", o->cache_k, o->cache_v);
        return 1;
    }
    if (o->n_ctx < 0 || o->n_threads < 0 || o->n_batch < 0) {
        fprintf(stderr, "error: -c, -t and -b must not be negative\n");
        return 1;
    }
    return 0;
}

const char *opts_model_path(const opts *o) {
    if (o->model) return o->model;
    const char *env = getenv("EMBER_MODEL");
    if (env && *env) return env;
    if (access(DEFAULT_MODEL, R_OK) == 0) return DEFAULT_MODEL;
    /* Next to the binary: <repo>/build/ember -> <repo>/models/... */
    static char path[4096];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 64);
    if (n > 0) {
        path[n] = 0;
        for (int up = 0; up < 2; up++) { char *s = strrchr(path, '/'); if (s) *s = 0; }
        strcat(path, "/" DEFAULT_MODEL);
        if (access(path, R_OK) == 0) return path;
    }
    fprintf(stderr, "error: no -m given and the default model %s is missing; "
                    "fetch it with scripts/fetch-model.sh\n", DEFAULT_MODEL);
    return NULL;
}

ember_model *load_model(const opts *o, int vocab_only) {
    const char *path = opts_model_path(o);
    if (!path) return NULL;
    ember_model_params mp = ember_model_default_params();
    mp.vocab_only = vocab_only;
    mp.tokenizer_path = o->tokenizer;
    ember_model *m = NULL;
    ember_status st = ember_model_load(path, &mp, &m);
    if (st) {
        fprintf(stderr, "error: %s\n", ember_last_error());
        return NULL;
    }
    return m;
}

char *read_prompt(const opts *o) {
    if (o->prompt) return strdup(o->prompt);
    if (!o->prompt_file) return NULL;
    FILE *f = fopen(o->prompt_file, "rb");
    if (!f) { fprintf(stderr, "error: cannot open %s\n", o->prompt_file); return NULL; }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0) { char *nb = realloc(buf, cap * 2); if (!nb) { free(buf); buf = NULL; break; } buf = nb; cap *= 2; }
    }
    fclose(f);
    if (buf) buf[n] = 0;
    return buf;
}

/* Length of the UTF-8 sequence a lead byte starts (1 for invalid bytes: print as is). */
static int utf8_len(unsigned char c) {
    return c < 0xC0 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF8 ? 4 : 1;
}

void utf8_put(utf8_out *u, const char *s, int n) {
    for (int i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (u->n > 0 && (c & 0xC0) != 0x80) {  /* a new lead byte: the held sequence was cut */
            fwrite(u->buf, 1, (size_t)u->n, u->f);
            u->n = 0;
        }
        u->buf[u->n++] = (char)c;
        if (u->n >= utf8_len((unsigned char)u->buf[0])) {
            fwrite(u->buf, 1, (size_t)u->n, u->f);
            u->n = 0;
        }
    }
    fflush(u->f);
}

void utf8_flush(utf8_out *u) {
    if (u->n) fwrite(u->buf, 1, (size_t)u->n, u->f);
    u->n = 0;
    fflush(u->f);
}
