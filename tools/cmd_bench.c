/* cmd_bench.c: `ember bench`: throughput in llama-bench's format, so tables can be put side
 * by side with llama.cpp's (tools/llama-bench, its Markdown table).
 *
 *   ember bench -m MODEL[,MODEL...] [-p 512] [-n 128] [-r 5] [-t 1,2] [-o md|csv|json]
 *               [--isa NAME] [-b N] [--no-bw] [--progress] [--mem-budget SIZE] [--prefetch N]
 *
 * Semantics follow llama-bench: inputs are synthetic random token ids (BOS first when the
 * model adds one), nothing is tokenized or sampled, and each test runs once as a warmup
 * before -r timed repetitions; t/s is the mean ± sample standard deviation over them.
 *   ppN: one ember_decode of N tokens into an emptied context (KV truncated to 0).
 *   tgN: N single-token decodes starting from an empty context.
 * Extras: model load time, time to first token (ppN then one more token; mean over the pp
 * repetitions), peak RSS per model (VmHWM after resetting it per model; getrusage's
 * ru_maxrss where that is unavailable), the memory read bandwidth measured with the same
 * thread count (ember_read_bandwidth in a child process, so its 1 GiB buffer stays out of
 * the RSS), and for tg the fraction of the bandwidth roofline reached:
 *   bound t/s = bandwidth / mean bytes read per token over the test, where bytes per
 *   token = ember_context_bytes_per_token (all weights, token_embd as one row unless tied
 *   to the output; K and V of the positions attended; activations not counted).
 * Weights that fit in the last-level cache can beat that bound (bw% > 100). For pp the
 * compute roofline: the int8 and f32 multiply-add peaks of the same thread count
 * (ember_compute_peak, same child process) and
 *   peak t/s = 1 / (2 * int8 MACs per token / int8 peak + 2 * float MACs / f32 peak),
 * with MACs per token from ember_context_macs_per_token (the weight matrices; attention
 * not counted). The md table's roof% column holds bw% for tg rows and this fraction for pp
 * rows. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "common.h"

#define MAX_LIST 64

typedef struct int_list { int v[MAX_LIST]; int n; } int_list;

typedef struct bench_cfg {
    const char **models;
    int n_models;
    int_list p, n, t;
    int reps, n_batch, bw_probe, progress;
    const char *isa;
    const char *type_k, *type_v; /* -ctk / -ctv */
    const char *fmt;            /* "md", "csv", "json" */
    uint64_t mem_budget;        /* --mem-budget (0: none) */
    int prefetch;               /* --prefetch (default 1) */
    double bw[MAX_LIST];        /* GB/s for each t.v[i]; 0 if not measured */
    double pk_i8[MAX_LIST], pk_f32[MAX_LIST]; /* multiply-add peaks, GOP/s; 0 if not measured */
    char build[96];
} bench_cfg;

/* One table row: a model x threads x test. */
typedef struct result {
    const char *path;
    char model[128];
    char isa[32];
    char kv[64];                /* "K f16, V f16, 24.0 KiB per token" */
    uint64_t size;
    int64_t params;
    int threads, n_batch, n_prompt, n_gen, reps;
    double samples_ts[MAX_LIST], samples_ns[MAX_LIST];
    double avg_ts, sd_ts, avg_ns, sd_ns;
    double load_ms, ttft_ms, rss_bytes;
    double bw_gbps, bytes_per_token, bound_ts, bw_frac;
    double pk_i8, pk_f32, macs_per_token, peak_ts, peak_frac; /* pp's compute roofline */
} result;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- options ---------------------------------------------------------------------------- */
static int parse_list(const char *flag, const char *s, int_list *l, int min) {
    l->n = 0;
    while (*s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || (*end && *end != ',') || v < min || v > INT_MAX || l->n == MAX_LIST) {
            fprintf(stderr, "error: %s expects a comma list of integers >= %d, got '%s'\n", flag, min, s);
            return 1;
        }
        l->v[l->n++] = (int)v;
        s = *end ? end + 1 : end;
    }
    if (l->n == 0) { fprintf(stderr, "error: %s is empty\n", flag); return 1; }
    return 0;
}

/* Adds each comma-separated path of s to the model list (strings point into argv or a
 * strdup that lives until exit). */
static int add_models(bench_cfg *c, const char *s, int cap) {
    char *copy = strdup(s);
    if (!copy) return 1;
    for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
        if (c->n_models == cap) { fprintf(stderr, "error: too many models\n"); return 1; }
        c->models[c->n_models++] = tok;
    }
    return 0;
}

static void bench_usage(FILE *f) {
    fprintf(f,
        "usage: ember bench [-m MODEL[,MODEL]]... [-p 512] [-n 128] [-r 5] [-t N[,N]] [-o md|csv|json]\n"
        "                   [--isa NAME] [-b N] [-ctk T] [-ctv T] [--no-bw] [--progress]\n"
        "                   [--mem-budget SIZE] [--prefetch N]\n"
        "  -p/-n/-t take comma lists (0 in -p or -n skips those tests); -t defaults to the\n"
        "  physical cores; -b is the forward chunk size (0: ember's default); --no-bw skips the\n"
        "  memory-bandwidth and multiply-add peak probes (and the roof%% column); -ctk/-ctv: K / V\n"
        "  cache types (f32, f16, bf16, q8_0, q4_0; default f16); --mem-budget: load under a memory\n"
        "  budget (600M, 2G), streaming the layers that do not fit, --prefetch N layers ahead\n"
        "  (default 1; STREAMING.md)\n");
}

static int bench_parse(bench_cfg *c, int argc, char **argv) {
    memset(c, 0, sizeof *c);
    c->models = calloc((size_t)argc + 1 + MAX_LIST, sizeof *c->models);
    if (!c->models) return 1;
    c->p.v[0] = 512; c->p.n = 1;
    c->n.v[0] = 128; c->n.n = 1;
    c->t.v[0] = ember_cpu_cores(); c->t.n = 1;
    c->reps = 5;
    c->bw_probe = 1;
    c->fmt = "md";
    c->prefetch = 1;
    int bad = 0;
    for (int i = 0; i < argc && !bad; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define IS(s) (!strcmp(a, s))
        if (IS("--no-bw")) { c->bw_probe = 0; continue; }
        if (IS("--progress")) { c->progress = 1; continue; }
        if (IS("-h") || IS("--help")) { bench_usage(stdout); return 2; }
        if (!v) { fprintf(stderr, "error: %s needs a value (see 'ember bench -h')\n", a); return 1; }
        i++;
        if (IS("-m") || IS("--model")) bad = add_models(c, v, argc + MAX_LIST);
        else if (IS("-p") || IS("--n-prompt")) bad = parse_list(a, v, &c->p, 0);
        else if (IS("-n") || IS("--n-gen")) bad = parse_list(a, v, &c->n, 0);
        else if (IS("-t") || IS("--threads")) bad = parse_list(a, v, &c->t, 1);
        else if (IS("-r") || IS("--repetitions")) {
            int_list r;
            bad = parse_list(a, v, &r, 1);
            if (!bad && (r.n != 1 || r.v[0] > MAX_LIST)) { fprintf(stderr, "error: -r takes one value, 1..%d\n", MAX_LIST); bad = 1; }
            if (!bad) c->reps = r.v[0];
        } else if (IS("-b") || IS("--batch-size")) {
            int_list b;
            bad = parse_list(a, v, &b, 0);
            if (!bad) c->n_batch = b.v[0];
        } else if (IS("-o") || IS("--output")) {
            c->fmt = v;
            if (strcmp(v, "md") && strcmp(v, "csv") && strcmp(v, "json")) { fprintf(stderr, "error: -o takes md, csv or json\n"); bad = 1; }
        } else if (IS("--isa")) c->isa = v;
        else if (IS("--mem-budget")) {
            bad = parse_size(a, v, &c->mem_budget);
            if (!bad && !c->mem_budget) { fprintf(stderr, "error: --mem-budget must be above 0\n"); bad = 1; }
        } else if (IS("--prefetch")) {
            int_list pf;
            bad = parse_list(a, v, &pf, 0);
            if (!bad && (pf.n != 1 || pf.v[0] > 64)) { fprintf(stderr, "error: --prefetch takes one value, 0..64\n"); bad = 1; }
            if (!bad) c->prefetch = pf.v[0];
        }
        else if (IS("-ctk") || IS("--cache-type-k")) c->type_k = v;
        else if (IS("-ctv") || IS("--cache-type-v")) c->type_v = v;
        else { fprintf(stderr, "error: unknown bench option '%s' (see 'ember bench -h')\n", a); bad = 1; }
#undef IS
    }
    for (int i = 0; !bad && i < c->t.n; i++) warn_threads("-t", c->t.v[i]);
    if (!bad && c->n_models == 0) {
        opts o;
        memset(&o, 0, sizeof o);
        const char *def = opts_model_path(&o);
        if (!def) return 1;
        c->models[c->n_models++] = def;
    }
    return bad;
}

/* ---- measurements ----------------------------------------------------------------------- */
/* "git describe" of the tree the binary was built from, else the version. */
static void build_string(char *buf, size_t len) {
#ifdef EMBER_BUILD_COMMIT
    snprintf(buf, len, "%s (ember %s)", EMBER_BUILD_COMMIT, ember_version());
    return;
#endif
    char exe[4096], cmd[4200], line[64] = "";
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        snprintf(cmd, sizeof cmd, "git -C '%s' describe --always --dirty 2>/dev/null", exe);
        FILE *f = popen(cmd, "r");
        if (f) {
            if (!fgets(line, sizeof line, f)) line[0] = 0;
            pclose(f);
        }
        line[strcspn(line, "\r\n")] = 0;
    }
    if (line[0]) snprintf(buf, len, "%s (ember %s)", line, ember_version());
    else snprintf(buf, len, "ember %s", ember_version());
}

/* Runs the bandwidth and multiply-add peak probes for every thread count in a child
 * process, so that the parent's peak RSS does not include the probe's buffer. Leaves zeros
 * on failure. */
static void probe_roofline(bench_cfg *c) {
    int fd[2];
    if (pipe(fd)) return;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) { close(fd[0]); close(fd[1]); return; }
    if (pid == 0) {
        close(fd[0]);
        for (int i = 0; i < c->t.n; i++) {
            double g[3] = { 0, 0, 0 };
            if (ember_read_bandwidth(c->t.v[i], 0, 0, &g[0])) g[0] = 0;
            if (ember_compute_peak(c->t.v[i], EMBER_PEAK_INT8, c->isa, &g[1])) g[1] = 0;
            if (ember_compute_peak(c->t.v[i], EMBER_PEAK_F32, c->isa, &g[2])) g[2] = 0;
            if (write(fd[1], g, sizeof g) != (ssize_t)sizeof g) _exit(1);
        }
        _exit(0);
    }
    close(fd[1]);
    for (int i = 0; i < c->t.n; i++) {
        double g[3];
        if (read(fd[0], g, sizeof g) != (ssize_t)sizeof g) break;
        c->bw[i] = g[0];
        c->pk_i8[i] = g[1];
        c->pk_f32[i] = g[2];
    }
    close(fd[0]);
    waitpid(pid, NULL, 0);
}

/* Resets the kernel's peak-RSS mark (Linux >= 4.0) so each model gets its own peak. */
static void rss_peak_reset(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) { fputs("5", f); fclose(f); }
}

static double rss_peak_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
    if (f) fclose(f);
    if (kb < 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        kb = ru.ru_maxrss;
    }
    return kb * 1024.0;
}

static uint64_t rng_next(uint64_t *s) {  /* xorshift64* */
    *s ^= *s >> 12; *s ^= *s << 25; *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static void random_tokens(const ember_model *m, ember_token *t, int n, uint64_t *rng, int bos_first) {
    const int nv = ember_model_n_vocab(m);
    for (int i = 0; i < n; i++) t[i] = (ember_token)(rng_next(rng) % (uint64_t)nv);
    if (bos_first && n > 0 && ember_add_bos(m) && ember_token_bos(m) >= 0) t[0] = ember_token_bos(m);
}

static void mean_sd(const double *x, int n, double *mean, double *sd) {
    double s = 0, q = 0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) q += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(q / (n - 1)) : 0;
}

/* ppN: warmup, then reps timed decodes of N tokens from an empty cache; after each, one
 * more token gives the time to first token. Returns 0 or 1 (error printed). */
static int run_pp(ember_context *ctx, const ember_model *m, result *r, ember_token *tok, uint64_t *rng) {
    const int n = r->n_prompt;
    double ttft = 0;
    for (int rep = -1; rep < r->reps; rep++) {
        random_tokens(m, tok, n + 1, rng, 1);
        if (ember_context_truncate(ctx, 0)) return 1;
        const double t0 = now_ms();
        if (ember_decode(ctx, tok, n, 0)) return 1;
        const double t1 = now_ms();
        if (ember_decode(ctx, tok + n, 1, 0)) return 1;
        const double t2 = now_ms();
        if (rep < 0) continue;  /* warmup */
        r->samples_ns[rep] = (t1 - t0) * 1e6;
        r->samples_ts[rep] = n / ((t1 - t0) / 1e3);
        ttft += t2 - t0;
    }
    r->ttft_ms = ttft / r->reps;
    return 0;
}

/* tgN: warmup of one token, then reps runs of N single-token decodes from an empty cache. */
static int run_tg(ember_context *ctx, const ember_model *m, result *r, ember_token *tok, uint64_t *rng) {
    const int n = r->n_gen;
    for (int rep = -1; rep < r->reps; rep++) {
        random_tokens(m, tok, rep < 0 ? 1 : n, rng, 1);
        if (ember_context_truncate(ctx, 0)) return 1;
        const double t0 = now_ms();
        for (int i = 0; i < (rep < 0 ? 1 : n); i++)
            if (ember_decode(ctx, tok + i, 1, 0)) return 1;
        const double t1 = now_ms();
        if (rep < 0) continue;
        r->samples_ns[rep] = (t1 - t0) * 1e6;
        r->samples_ts[rep] = n / ((t1 - t0) / 1e3);
    }
    double bytes = 0;
    for (int i = 0; i < n; i++) bytes += (double)ember_context_bytes_per_token(ctx, i);
    r->bytes_per_token = bytes / n;
    if (r->bw_gbps > 0 && r->bytes_per_token > 0) r->bound_ts = r->bw_gbps * 1e9 / r->bytes_per_token;
    return 0;
}

/* ---- output ----------------------------------------------------------------------------- */
static void fmt_test(const result *r, char *buf, size_t len) {
    if (r->n_gen == 0) snprintf(buf, len, "pp%d", r->n_prompt);
    else snprintf(buf, len, "tg%d", r->n_gen);
}

static void print_md_header(void) {
    printf("| %-30s | %10s | %10s | %-10s | %7s | %15s | %20s | %5s |\n",
           "model", "size", "params", "backend", "threads", "test", "t/s", "roof%");
    printf("| %.30s | %.9s: | %.9s: | %.10s | %.6s: | %.14s: | %.19s: | %.4s: |\n",
           "------------------------------", "----------", "----------", "----------",
           "-------", "---------------", "--------------------", "-----");
}

static void print_md_row(const result *r) {
    char size[32], params[32], backend[48], test[32], ts[64], bw[16] = "-";
    if (r->size < (1ull << 30)) snprintf(size, sizeof size, "%.2f MiB", r->size / 1048576.0);
    else snprintf(size, sizeof size, "%.2f GiB", r->size / 1073741824.0);
    if (r->params < 1000000000) snprintf(params, sizeof params, "%.2f M", r->params / 1e6);
    else snprintf(params, sizeof params, "%.2f B", r->params / 1e9);
    snprintf(backend, sizeof backend, "CPU %s", r->isa);
    fmt_test(r, test, sizeof test);
    snprintf(ts, sizeof ts, "%.2f ± %.2f", r->avg_ts, r->sd_ts);
    if (r->bw_frac > 0) snprintf(bw, sizeof bw, "%.0f%%", 100 * r->bw_frac);
    else if (r->peak_frac > 0) snprintf(bw, sizeof bw, "%.0f%%", 100 * r->peak_frac);
    printf("| %-30s | %10s | %10s | %-10s | %7d | %15s | %21s | %5s |\n",
           r->model, size, params, backend, r->threads, test, ts, bw);
}

/* ns samples as integers, t/s samples with 4 decimals (as llama-bench prints them). */
static void print_samples(const double *x, int n, const char *sep, int decimals) {
    for (int i = 0; i < n; i++) printf("%s%.*f", i ? sep : "", decimals, x[i]);
}

static const char *CSV_FIELDS =
    "build_commit,model_filename,model_type,model_size,model_n_params,backend,isa,n_threads,"
    "n_batch,n_prompt,n_gen,test,avg_ns,stddev_ns,avg_ts,stddev_ts,samples_ns,samples_ts,"
    "load_ms,ttft_ms,peak_rss_bytes,read_bw_gbps,bytes_per_token,bound_ts,bw_frac,"
    "peak_int8_gops,peak_f32_gops,macs_per_token,peak_ts,peak_frac";

static void print_csv_row(const bench_cfg *c, const result *r) {
    char test[32];
    fmt_test(r, test, sizeof test);
    printf("\"%s\",\"%s\",\"%s\",%llu,%lld,\"CPU\",\"%s\",%d,%d,%d,%d,\"%s\",%.0f,%.0f,%.6f,%.6f,\"",
           c->build, r->path, r->model, (unsigned long long)r->size, (long long)r->params, r->isa,
           r->threads, r->n_batch, r->n_prompt, r->n_gen, test, r->avg_ns, r->sd_ns, r->avg_ts, r->sd_ts);
    print_samples(r->samples_ns, r->reps, " ", 0);
    printf("\",\"");
    print_samples(r->samples_ts, r->reps, " ", 4);
    printf("\",%.3f,%.3f,%.0f,%.3f,%.0f,%.3f,%.4f,%.1f,%.1f,%.0f,%.3f,%.4f\n", r->load_ms, r->ttft_ms,
           r->rss_bytes, r->bw_gbps, r->bytes_per_token, r->bound_ts, r->bw_frac, r->pk_i8, r->pk_f32,
           r->macs_per_token, r->peak_ts, r->peak_frac);
}

/* JSON strings: paths may hold quotes or backslashes. */
static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
        else putchar(*s);
    }
    putchar('"');
}

static void print_json_row(const bench_cfg *c, const result *r, int first) {
    char test[32];
    fmt_test(r, test, sizeof test);
    printf("%s  {\n    \"build_commit\": ", first ? "" : ",\n");
    json_str(c->build);
    printf(",\n    \"model_filename\": ");
    json_str(r->path);
    printf(",\n    \"model_type\": ");
    json_str(r->model);
    printf(",\n    \"model_size\": %llu,\n    \"model_n_params\": %lld,\n    \"backend\": \"CPU\",\n"
           "    \"isa\": \"%s\",\n    \"n_threads\": %d,\n    \"n_batch\": %d,\n    \"n_prompt\": %d,\n"
           "    \"n_gen\": %d,\n    \"test\": \"%s\",\n    \"avg_ns\": %.0f,\n    \"stddev_ns\": %.0f,\n"
           "    \"avg_ts\": %.6f,\n    \"stddev_ts\": %.6f,\n    \"samples_ns\": [ ",
           (unsigned long long)r->size, (long long)r->params, r->isa, r->threads, r->n_batch,
           r->n_prompt, r->n_gen, test, r->avg_ns, r->sd_ns, r->avg_ts, r->sd_ts);
    print_samples(r->samples_ns, r->reps, ", ", 0);
    printf(" ],\n    \"samples_ts\": [ ");
    print_samples(r->samples_ts, r->reps, ", ", 4);
    printf(" ],\n    \"load_ms\": %.3f,\n    \"ttft_ms\": %.3f,\n    \"peak_rss_bytes\": %.0f,\n"
           "    \"read_bw_gbps\": %.3f,\n    \"bytes_per_token\": %.0f,\n    \"bound_ts\": %.3f,\n"
           "    \"bw_frac\": %.4f,\n    \"peak_int8_gops\": %.1f,\n    \"peak_f32_gops\": %.1f,\n"
           "    \"macs_per_token\": %.0f,\n    \"peak_ts\": %.3f,\n    \"peak_frac\": %.4f\n  }",
           r->load_ms, r->ttft_ms, r->rss_bytes, r->bw_gbps, r->bytes_per_token, r->bound_ts, r->bw_frac,
           r->pk_i8, r->pk_f32, r->macs_per_token, r->peak_ts, r->peak_frac);
}

static void print_row(const bench_cfg *c, const result *r, int index) {
    if (!strcmp(c->fmt, "md")) {
        if (index == 0) print_md_header();
        print_md_row(r);
    } else if (!strcmp(c->fmt, "csv")) {
        if (index == 0) printf("%s\n", CSV_FIELDS);
        print_csv_row(c, r);
    } else {
        if (index == 0) printf("[\n");
        print_json_row(c, r, index == 0);
    }
    fflush(stdout);
}

/* Markdown footer: the build line (as llama-bench), then what the extra columns mean. */
static void print_md_footer(const bench_cfg *c, const result *rows, int n_rows) {
    printf("\nbuild: %s\n", c->build);
    for (int i = 0; i < n_rows; i++) {
        const result *r = &rows[i];
        if (i == 0 || r->path != rows[i - 1].path)
            printf("\n%s: load %.0f ms, peak RSS %.1f MiB; KV cache %s\n", r->model, r->load_ms,
                   r->rss_bytes / 1048576.0, r->kv);
        if (r->n_gen == 0) {
            printf("  threads %d: time to first token (pp%d + 1 token) %.1f ms\n", r->threads, r->n_prompt, r->ttft_ms);
            if (r->peak_ts > 0)
                printf("  threads %d: pp%d runs %.2f G multiply-adds/token -> %.0f GOP/s, %.0f%% of the peak "
                       "(bound %.1f t/s)\n", r->threads, r->n_prompt, r->macs_per_token / 1e9,
                       2 * r->macs_per_token * r->avg_ts / 1e9, 100 * r->peak_frac, r->peak_ts);
        }
        else if (r->bound_ts > 0)
            printf("  threads %d: tg%d reads %.1f MiB/token -> bound %.2f t/s at %.1f GB/s; reached %.0f%%\n",
                   r->threads, r->n_gen, r->bytes_per_token / 1048576.0, r->bound_ts, r->bw_gbps, 100 * r->bw_frac);
    }
    if (c->bw_probe) {
        printf("\nmemory read bandwidth (1 GiB buffer, best of 5 passes):");
        for (int i = 0; i < c->t.n; i++) printf("%s %d thread%s %.1f GB/s", i ? "," : "", c->t.v[i], c->t.v[i] > 1 ? "s" : "", c->bw[i]);
        printf("\nmultiply-add peak (int8 / f32, GOP/s):");
        for (int i = 0; i < c->t.n; i++)
            printf("%s %d thread%s %.0f / %.0f", i ? "," : "", c->t.v[i], c->t.v[i] > 1 ? "s" : "", c->pk_i8[i], c->pk_f32[i]);
        printf("\nroof%%: for tg, t/s / bandwidth bound; bytes per token = all weights (token_embd as one\n"
               "row unless tied to the output) + K and V of the positions attended, mean over the test;\n"
               "weights that fit in the last-level cache can exceed 100%%. For pp, t/s / compute bound;\n"
               "2 ops per multiply-add of the weight matrices (int8 ones at the int8 peak, float ones at\n"
               "the f32 peak), attention not counted.\n");
    }
}

/* ---- driver ----------------------------------------------------------------------------- */
/* Runs every thread count and test for one model; appends rows. Returns 0 or 1. */
static int bench_model(bench_cfg *c, const char *path, result **rows, int *n_rows, int *cap) {
    rss_peak_reset();
    const double t0 = now_ms();
    ember_model *m = NULL;
    ember_model_params mp = ember_model_default_params();
    mp.mem_budget = c->mem_budget;
    mp.prefetch = c->prefetch;
    if (ember_model_load(path, &mp, &m)) { fprintf(stderr, "error: %s\n", ember_last_error()); return 1; }
    const double load_ms = now_ms() - t0;
    int max_p = 0, max_n = 0;
    for (int i = 0; i < c->p.n; i++) if (c->p.v[i] > max_p) max_p = c->p.v[i];
    for (int i = 0; i < c->n.n; i++) if (c->n.v[i] > max_n) max_n = c->n.v[i];
    ember_token *tok = malloc(((size_t)(max_p > max_n ? max_p : max_n) + 2) * sizeof *tok);
    uint64_t rng = 0x853c49e6748fea9bull;
    int rc = tok ? 0 : 1;
    const int first_row = *n_rows;
    for (int ti = 0; ti < c->t.n && !rc; ti++) {
        ember_context_params cp = ember_context_default_params();
        cp.n_ctx = (max_p > max_n ? max_p : max_n) + 2;
        cp.n_threads = c->t.v[ti];
        cp.n_batch = c->n_batch;
        cp.isa = c->isa;
        cp.type_k = c->type_k;
        cp.type_v = c->type_v;
        ember_context *ctx = NULL;
        if (ember_context_new(m, &cp, &ctx)) { fprintf(stderr, "error: %s\n", ember_last_error()); rc = 1; break; }
        for (int k = 0; k < c->p.n + c->n.n && !rc; k++) {
            const int is_pp = k < c->p.n, len = is_pp ? c->p.v[k] : c->n.v[k - c->p.n];
            if (len == 0) continue;
            if (*n_rows == *cap) {
                result *nr = realloc(*rows, (size_t)(*cap * 2 + 8) * sizeof *nr);
                if (!nr) { rc = 1; break; }
                *rows = nr;
                *cap = *cap * 2 + 8;
            }
            result *r = &(*rows)[*n_rows];
            memset(r, 0, sizeof *r);
            r->path = path;
            ember_model_desc(m, r->model, sizeof r->model);
            snprintf(r->isa, sizeof r->isa, "%s", ember_context_isa(ctx));
            snprintf(r->kv, sizeof r->kv, "K %s, V %s, %.1f KiB per token", ember_context_type_k(ctx),
                     ember_context_type_v(ctx), ember_context_kv_bytes_per_token(ctx) / 1024.0);
            r->size = ember_model_size(m);
            r->params = ember_model_n_params(m);
            r->threads = c->t.v[ti];
            r->n_batch = c->n_batch;
            r->reps = c->reps;
            r->load_ms = load_ms;
            r->bw_gbps = c->bw[ti];
            r->pk_i8 = c->pk_i8[ti];
            r->pk_f32 = c->pk_f32[ti];
            if (is_pp) r->n_prompt = len; else r->n_gen = len;
            if (c->progress) fprintf(stderr, "ember bench: %s, %d threads, %s%d\n", r->model, r->threads, is_pp ? "pp" : "tg", len);
            rc = is_pp ? run_pp(ctx, m, r, tok, &rng) : run_tg(ctx, m, r, tok, &rng);
            if (rc) { fprintf(stderr, "error: %s\n", ember_last_error()); break; }
            mean_sd(r->samples_ts, r->reps, &r->avg_ts, &r->sd_ts);
            mean_sd(r->samples_ns, r->reps, &r->avg_ns, &r->sd_ns);
            if (r->bound_ts > 0) r->bw_frac = r->avg_ts / r->bound_ts;
            if (is_pp) {
                uint64_t i8 = 0, fl = 0;
                r->macs_per_token = (double)ember_context_macs_per_token(ctx, &i8, &fl);
                const double s_tok = (i8 ? 2.0 * (double)i8 / (r->pk_i8 * 1e9) : 0) +
                                     (fl ? 2.0 * (double)fl / (r->pk_f32 * 1e9) : 0);
                if (r->pk_i8 > 0 && r->pk_f32 > 0 && s_tok > 0) {
                    r->peak_ts = 1.0 / s_tok;
                    r->peak_frac = r->avg_ts / r->peak_ts;
                }
            }
            r->rss_bytes = rss_peak_bytes();
            print_row(c, r, (*n_rows)++);
        }
        ember_context_free(ctx);
    }
    /* the model's peak RSS: the high-water mark after all of its tests */
    for (int i = first_row; i < *n_rows; i++) (*rows)[i].rss_bytes = rss_peak_bytes();
    free(tok);
    ember_model_free(m);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    bench_cfg c;
    int pr = bench_parse(&c, argc, argv);
    if (pr) { free(c.models); return pr == 2 ? 0 : 1; }
    build_string(c.build, sizeof c.build);
    if (c.bw_probe) {
        if (c.progress) fprintf(stderr, "ember bench: measuring memory read bandwidth and multiply-add peaks\n");
        probe_roofline(&c);
    }
    result *rows = NULL;
    int n_rows = 0, cap = 0, rc = 0;
    for (int i = 0; i < c.n_models && !rc; i++) rc = bench_model(&c, c.models[i], &rows, &n_rows, &cap);
    if (!strcmp(c.fmt, "md") && n_rows > 0) print_md_footer(&c, rows, n_rows);
    if (!strcmp(c.fmt, "json")) printf(n_rows ? "\n]\n" : "[]\n");
    free(rows);
    free(c.models);
    return rc;
}
