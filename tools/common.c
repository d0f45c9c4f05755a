/* common.c: flag parsing and per-command usage, model and prompt loading, the library's log
 * hook, and UTF-8-safe streaming shared by subcommands. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "common.h"

const char *cli_command = "";
static int cli_verbose;

void cli_log(ember_log_level level, const char *text, void *user_data) {
    (void)user_data;
    if (level >= EMBER_LOG_WARN) fprintf(stderr, "%s: %s\n", level >= EMBER_LOG_ERROR ? "error" : "warning", text);
    else if (cli_verbose) fprintf(stderr, "%s\n", text);
}

/* ---- usage ---- */
enum { C_RUN = 1, C_CHAT = 2, C_INFO = 4, C_TOK = 8, C_DETOK = 16, C_SERVE = 32, C_ALL = 63 };

static int command_bit(const char *cmd) {
    static const char *const names[] = { "run", "chat", "info", "tokenize", "detokenize", "serve" };
    for (int i = 0; i < 6; i++) if (!strcmp(cmd, names[i])) return 1 << i;
    return C_ALL;
}

/* The sampling flags, the sampler parameter each sets (its range comes from the library's
 * table, ember_sampler_param_range) and what its default means. */
static const struct { const char *flag, *field, *meta, *note; } samp_flags[] = {
    { "--temp", "temp", "T", "0.8; 0 is greedy" },
    { "--top-k", "top_k", "K", "40; 0 is off" },
    { "--top-p", "top_p", "P", "0.95; 1 is off" },
    { "--min-p", "min_p", "P", "0.05; 0 is off" },
    { "--repeat-penalty", "repeat_penalty", "R", "1: off" },
    { "--repeat-last-n", "repeat_last_n", "N", "64; -1: the whole context" },
    { "--presence-penalty", "presence_penalty", "P", "0" },
    { "--frequency-penalty", "frequency_penalty", "P", "0" },
};

static const struct { int cmds; const char *text; } flag_help[] = {
    { C_ALL, "  -m, --model FILE        model: .gguf, or a llama2.c .bin with -z (default " DEFAULT_MODEL ")" },
    { C_ALL, "  -z, --tokenizer FILE    llama2.c tokenizer.bin for a .bin checkpoint" },
    { C_RUN | C_TOK, "  -p, --prompt TEXT       the prompt" },
    { C_RUN | C_TOK, "  -f, --file FILE         the prompt from a file, byte for byte ('-': standard input); not with -p" },
    { C_RUN | C_CHAT, "  -n, --n-predict N       tokens to generate (-1: until end of text or the context is full)" },
    { C_RUN | C_CHAT | C_SERVE, "  -c, --ctx-size N        context size (0: the model's, at most 4096)" },
    { C_RUN | C_CHAT | C_SERVE, "  -b, --batch-size N      tokens per forward chunk (0: 64)" },
    { C_RUN | C_CHAT | C_SERVE, "  -t, --threads N         threads (default: physical cores)" },
    { C_RUN | C_CHAT | C_SERVE, "  -ctk, -ctv TYPE         K / V cache type: f32, f16 (default, as llama.cpp), bf16, q8_0, q4_0" },
    { C_RUN | C_CHAT, "  --kv-policy full|shift|sink|elastic   when the context is full: stop (full; run's\n"
                      "                          default) or shift (llama.cpp's context shift; chat's default): keep\n"
                      "                          BOS and --keep N tokens, drop the oldest half of the rest, go on;\n"
                      "                          sink: keep --kv-sink first and --kv-window last tokens (StreamingLLM);\n"
                      "                          elastic: merge by importance at --kv-ratio (Elastic Cache)" },
    { C_RUN | C_CHAT, "  --kv-sink N             sink / elastic: first tokens always kept (default 4)" },
    { C_RUN | C_CHAT, "  --kv-window N           sink: recent tokens kept (default: ctx - sinks - ctx/4)" },
    { C_RUN | C_CHAT, "  --kv-ratio R            elastic: share of the cache merged away, in (0, 1) (default 0.2)" },
    { C_RUN | C_CHAT, "  --context-shift, --no-context-shift   --kv-policy shift / full" },
    { C_RUN | C_CHAT, "  --keep N                tokens after BOS that a context shift keeps (default 0)" },
    { C_RUN | C_CHAT | C_SERVE, "  -s, --seed N            sampling seed (-1: random)" },
    { C_RUN | C_CHAT | C_SERVE, NULL },  /* the sampling flags */
    { C_RUN | C_CHAT | C_SERVE, "  --lookup                speculative decoding with prompt-lookup drafts (the tokens that followed\n"
             "                          the last n-gram's latest earlier occurrence); output as without it\n"
             "                          for --temp 0, the same distribution otherwise (serve: the default of\n"
             "                          every request; a request's \"speculative\" field overrides it)" },
    { C_RUN | C_CHAT | C_SERVE, "  --lookup-ngram N        longest n-gram --lookup matches, then shorter ones (default 3, 1..64)" },
    { C_RUN | C_CHAT | C_SERVE, "  -md, --model-draft FILE speculative decoding with a draft model of the same vocabulary" },
    { C_RUN | C_CHAT | C_SERVE, "  --draft-max N           most tokens drafted per step (default 8, 1..64); the length adapts to\n"
             "                          the acceptance rate below it" },
    { C_RUN | C_CHAT | C_SERVE, "  --draft-min N           drafts shorter than N are not verified (default 0)" },
    { C_RUN | C_CHAT | C_SERVE, "  --draft-p-min P         stop drafting when the draft model's top probability is below P (default 0)" },
    { C_RUN | C_CHAT | C_SERVE, "  -td, --threads-draft N  threads of the draft model (default: as -t)" },
    { C_RUN | C_CHAT, "  --spec-overlap, --no-spec-overlap   with -md at --temp 0: the draft model drafts the\n"
                      "                          next block on its own threads while the model verifies (default: off)" },
    { C_RUN | C_CHAT | C_SERVE, "  --spec-type TYPE        none, ngram-simple (= --lookup) or draft-simple (needs -md); llama.cpp's\n"
             "                          --spec-draft-model, --spec-draft-n-max/-n-min, --spec-draft-p-min and\n"
             "                          --spec-ngram-simple-size-n are accepted too" },
    { C_RUN, "  --ids                   print the generated token ids instead of text" },
    { C_RUN | C_CHAT, "  --ignore-eos            keep generating past end-of-generation tokens" },
    { C_RUN, "  --progress              prompt progress on stderr (default: when stderr is a terminal\n"
             "                          and the prompt is over 256 tokens)" },
    { C_RUN | C_TOK, "  --no-bos                do not add BOS" },
    { C_RUN | C_TOK | C_DETOK, "  --special               control-token text in the prompt becomes control tokens; print them" },
    { C_TOK, "  --pieces                print each token's text instead of its id" },
    { C_CHAT, "  -sys, --system-prompt TEXT  the system message" },
    { C_CHAT | C_SERVE, "  --chat-template NAME    chatml, qwen3, llama2, llama3, llama3.1, mistral, mistral-nemo, zephyr,\n"
                        "                          phi3, phi3-mini, gemma (default: the model's)" },
    { C_RUN | C_CHAT | C_INFO | C_SERVE, "  --mem-budget SIZE       memory for weights, KV cache and scratch (600M, 2G: MiB, GiB);\n"
                                         "                          layers that do not fit are streamed from the file (STREAMING.md);\n"
                                         "                          info: print the plan and the predicted speed" },
    { C_RUN | C_CHAT | C_INFO | C_SERVE, "  --prefetch N            layers read ahead under --mem-budget (default 1; 0: read when needed)" },
    { C_RUN | C_CHAT | C_SERVE, "  --isa NAME              kernel set: ref, avx2, avx512, neon (default: the best for this CPU)" },
    { C_RUN | C_CHAT | C_INFO | C_SERVE, "  -v, --verbose           model, kernel set, seed and timings on stderr (run, chat: with\n"
                                         "                          speculation, the drafted and accepted counts)" },
    { C_ALL, "  -h, --help              this help" },
};

void opts_usage(const char *cmd, FILE *f) {
    const int bit = command_bit(cmd);
    switch (bit) {
    case C_RUN: fputs("usage: ember run [-m MODEL] [-p TEXT | -f FILE] [-n N] [options]\n"
                      "Streams the prompt and its continuation to stdout.\n", f); break;
    case C_CHAT: fputs("usage: ember chat [-m MODEL] [-sys TEXT] [--chat-template NAME] [options]\n"
                       "Interactive chat through the model's chat template: one message per line on\n"
                       "stdin; an empty line or Ctrl-D ends the chat.\n", f); break;
    case C_INFO: fputs("usage: ember info [-m MODEL] [-z TOKENIZER] [--mem-budget SIZE [--prefetch N] [-c N]]\n"
                       "Architecture, hyper-parameters, tensor types, sizes, and the kernels this CPU uses.\n", f); break;
    case C_TOK: fputs("usage: ember tokenize [-m MODEL] (-p TEXT | -f FILE) [--pieces] [--no-bos] [--special]\n"
                      "Prints the token ids of the text (vocab-only GGUF files work too).\n", f); break;
    case C_DETOK: fputs("usage: ember detokenize [-m MODEL] ID...\n"
                        "Prints the text of the token ids.\n", f); break;
    default: fprintf(f, "usage: ember %s [options]\n", cmd); break;
    }
    fputs("\noptions:\n", f);
    for (size_t i = 0; i < sizeof flag_help / sizeof *flag_help; i++) {
        if (!(flag_help[i].cmds & bit)) continue;
        if (flag_help[i].text) { fprintf(f, "%s\n", flag_help[i].text); continue; }
        for (size_t j = 0; j < sizeof samp_flags / sizeof *samp_flags; j++) {
            double lo = 0, hi = 0;
            char flag[64];
            ember_sampler_param_range(samp_flags[j].field, &lo, &hi);
            snprintf(flag, sizeof flag, "%s %s", samp_flags[j].flag, samp_flags[j].meta);
            fprintf(f, "  %-22s  in [%.10g, %.10g] (default %s)\n", flag, lo, hi, samp_flags[j].note);
        }
    }
}

void warn_threads(const char *flag, int n) {
    static int warned;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (warned || cpus < 1 || n <= cpus) return;
    warned = 1;
    fprintf(stderr, "warning: %s %d is more than the %ld CPUs online: threads beyond them wait for a core "
                    "and slow every step down%s\n", flag, n, cpus, n > 256 ? " (and ember runs at most 256)" : "");
}

/* After parsing: the library's range check, reported with the flag's name. */
static int check_sampling(const opts *o) {
    const char *bad = NULL;
    if (!ember_sampler_params_check(&o->sp, &bad)) return 0;
    const double v[] = { o->sp.temp, o->sp.top_k, o->sp.top_p, o->sp.min_p, o->sp.repeat_penalty,
                         o->sp.repeat_last_n, o->sp.presence_penalty, o->sp.frequency_penalty };
    for (size_t i = 0; bad && i < sizeof samp_flags / sizeof *samp_flags; i++) {
        double lo, hi;
        if (strcmp(bad, samp_flags[i].field) || ember_sampler_param_range(bad, &lo, &hi)) continue;
        fprintf(stderr, "error: %s must be in [%.10g, %.10g], got %.10g\n", samp_flags[i].flag, lo, hi, v[i]);
        return 1;
    }
    fprintf(stderr, "error: %s\n", ember_last_error());
    return 1;
}

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

int parse_size(const char *flag, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    double mul = 1;
    if (end != s && (*end == 'k' || *end == 'K')) { mul = 1024.0; end++; }
    else if (end != s && (*end == 'm' || *end == 'M')) { mul = 1048576.0; end++; }
    else if (end != s && (*end == 'g' || *end == 'G')) { mul = 1073741824.0; end++; }
    if (end != s && (*end == 'i' || *end == 'I') && mul > 1) end++;
    if (end != s && (*end == 'b' || *end == 'B')) end++;
    if (errno || *end || end == s || !(v >= 0) || v * mul > 1.8e19) {
        fprintf(stderr, "error: %s expects a size such as 600M or 2G, got '%s'\n", flag, s);
        return 1;
    }
    *out = (uint64_t)(v * mul);
    return 0;
}

static int parse(opts *o, int argc, char **argv) {
    o->n_predict = -1;
    o->prefetch = 1;
    o->sp = ember_sampler_default_params();
    o->spec = ember_spec_default_params();
    o->spec_overlap = -1;
    const char *spec_type = NULL;
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
        else if (IS("--kv-policy")) { NEED(); o->kv_policy = v; }
        else if (IS("--kv-sink")) { NEED(); bad = parse_int(a, v, &o->n_sink); }
        else if (IS("--kv-window")) { NEED(); bad = parse_int(a, v, &o->n_window); }
        else if (IS("--kv-ratio")) { NEED(); bad = parse_float(a, v, &o->kv_ratio); }
        else if (IS("--context-shift")) o->kv_policy = "shift";
        else if (IS("--no-context-shift")) o->kv_policy = "full";
        else if (IS("--keep")) {
            NEED();
            bad = parse_int(a, v, &o->n_keep);
            if (!bad && o->n_keep < 0) { fprintf(stderr, "error: --keep must be >= 0\n"); bad = 1; }
        }
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
        else if (IS("-md") || IS("--model-draft") || IS("--spec-draft-model")) { NEED(); o->model_draft = v; }
        else if (IS("--lookup")) o->lookup = 1;
        else if (IS("--lookup-ngram") || IS("--spec-ngram-simple-size-n")) { NEED(); bad = parse_int(a, v, &o->spec.lookup_ngram); }
        else if (IS("--draft") || IS("--draft-n") || IS("--draft-max") || IS("--spec-draft-n-max")) {
            NEED();
            bad = parse_int(a, v, &o->spec.draft_max);
        }
        else if (IS("--draft-min") || IS("--draft-n-min") || IS("--spec-draft-n-min")) { NEED(); bad = parse_int(a, v, &o->spec.draft_min); }
        else if (IS("--draft-p-min") || IS("--spec-draft-p-min")) { NEED(); bad = parse_float(a, v, &o->spec.draft_p_min); }
        else if (IS("--spec-type")) { NEED(); spec_type = v; }
        else if (IS("-td") || IS("--threads-draft")) { NEED(); bad = parse_int(a, v, &o->n_threads_draft); }
        else if (IS("--spec-overlap")) o->spec_overlap = 1;
        else if (IS("--no-spec-overlap")) o->spec_overlap = 0;
        else if (IS("--mem-budget")) {
            NEED();
            bad = parse_size(a, v, &o->mem_budget);
            if (!bad && !o->mem_budget) { fprintf(stderr, "error: --mem-budget must be above 0\n"); bad = 1; }
        }
        else if (IS("--prefetch")) {
            NEED();
            bad = parse_int(a, v, &o->prefetch);
            if (!bad && (o->prefetch < 0 || o->prefetch > 64)) {
                fprintf(stderr, "error: --prefetch must be in [0, 64], got %d\n", o->prefetch);
                bad = 1;
            }
        }
        else if (IS("--ids")) o->ids = 1;
        else if (IS("--ignore-eos")) o->ignore_eos = 1;
        else if (IS("--no-bos")) o->no_bos = 1;
        else if (IS("--special")) o->special = 1;
        else if (IS("--pieces")) o->pieces = 1;
        else if (IS("-v") || IS("--verbose")) o->verbose = 1;
        else if (IS("--progress")) o->progress = 1;
        else if (IS("-h") || IS("--help")) { opts_usage(cli_command, stdout); return 2; }
        else if (a[0] == '-' && a[1] && !(a[1] >= '0' && a[1] <= '9')) {
            fprintf(stderr, "error: unknown option '%s' (see 'ember help')\n", a);
            return 1;
        } else o->rest[o->n_rest++] = argv[i];
        if (bad) return 1;
#undef IS
#undef NEED
    }
    if (o->n_ctx < 0 || o->n_threads < 0 || o->n_batch < 0 || o->n_threads_draft < 0) {
        fprintf(stderr, "error: -c, -t, -td and -b must not be negative\n");
        return 1;
    }
    if (o->prompt && o->prompt_file) {
        fprintf(stderr, "error: give the prompt with -p or with -f, not both\n");
        return 1;
    }
    if (check_sampling(o)) return 1;
    if (spec_type) {  /* llama.cpp's names; a comma list as there */
        char buf[128];
        snprintf(buf, sizeof buf, "%s", spec_type);
        for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
            if (!strcmp(t, "none")) { o->lookup = 0; o->model_draft = NULL; }
            else if (!strcmp(t, "ngram-simple")) o->lookup = 1;
            else if (!strcmp(t, "draft-simple")) {
                if (!o->model_draft) { fprintf(stderr, "error: --spec-type draft-simple needs -md FILE\n"); return 1; }
            } else {
                fprintf(stderr, "error: --spec-type %s is not supported (none, ngram-simple, draft-simple)\n", t);
                return 1;
            }
        }
    }
    if ((o->lookup || o->model_draft) && strcmp(cli_command, "run") && strcmp(cli_command, "chat") &&
        strcmp(cli_command, "serve")) {
        fprintf(stderr, "error: speculative decoding (--lookup, -md) is for 'ember run', 'chat' and 'serve'\n");
        return 1;
    }
    if (o->lookup && o->model_draft) {
        fprintf(stderr, "error: --lookup and -md are two ways of drafting; give one\n");
        return 1;
    }
    if (o->spec.draft_max < 1 || o->spec.draft_max > 64) {
        fprintf(stderr, "error: --draft-max must be in [1, 64], got %d\n", o->spec.draft_max);
        return 1;
    }
    if (o->spec.draft_min < 0 || o->spec.draft_min > o->spec.draft_max) {
        fprintf(stderr, "error: --draft-min must be in [0, --draft-max = %d], got %d\n", o->spec.draft_max, o->spec.draft_min);
        return 1;
    }
    if (!(o->spec.draft_p_min >= 0.0f && o->spec.draft_p_min <= 1.0f)) {
        fprintf(stderr, "error: --draft-p-min must be in [0, 1], got %g\n", o->spec.draft_p_min);
        return 1;
    }
    if (o->spec.lookup_ngram < 1 || o->spec.lookup_ngram > 64) {
        fprintf(stderr, "error: --lookup-ngram must be in [1, 64], got %d\n", o->spec.lookup_ngram);
        return 1;
    }
    warn_threads("-t", o->n_threads);
    cli_verbose = o->verbose;
    return 0;
}

int opts_parse(opts *o, int argc, char **argv) {
    memset(o, 0, sizeof *o);
    int r = parse(o, argc, argv);
    if (r) { free(o->rest); o->rest = NULL; }  /* callers just return */
    return r;
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
    mp.mem_budget = vocab_only ? 0 : o->mem_budget;
    mp.prefetch = o->prefetch;
    ember_model *m = NULL;
    ember_status st = ember_model_load(path, &mp, &m);
    if (st) {
        fprintf(stderr, "error: %s\n", ember_last_error());
        return NULL;
    }
    return m;
}

char *read_prompt(const opts *o, size_t *len) {
    *len = 0;
    if (o->prompt) { *len = strlen(o->prompt); return strdup(o->prompt); }
    if (!o->prompt_file) return NULL;
    const char *path = o->prompt_file;
    FILE *f = stdin;
    if (strcmp(path, "-")) {
        /* Regular files only, looked at before opening: open() blocks on a FIFO, and a
         * directory would read as an empty prompt. */
        struct stat st;
        int fd = -1;
        const char *why = NULL;
        char sys[160];
        if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
            why = S_ISDIR(st.st_mode) ? "is a directory, not a regular file" : "is not a regular file";
        else if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0) {
            snprintf(sys, sizeof sys, "cannot open: %s", strerror(errno));
            why = sys;
        }
        else if (fstat(fd, &st) || !S_ISREG(st.st_mode)) why = "is not a regular file";
        else if (!(f = fdopen(fd, "rb"))) why = strerror(errno);
        if (why) {
            fprintf(stderr, "error: -f %s: %s\n", path, why);
            if (fd >= 0) close(fd);
            return NULL;
        }
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0) { char *nb = realloc(buf, cap * 2); if (!nb) { free(buf); buf = NULL; break; } buf = nb; cap *= 2; }
    }
    int failed = ferror(f);
    if (f != stdin) fclose(f);
    if (!buf || failed) {
        fprintf(stderr, "error: -f %s: %s\n", path, buf ? "read error" : "out of memory");
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
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
