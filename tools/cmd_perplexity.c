/* cmd_perplexity.c: `ember perplexity`, llama.cpp's perplexity method and its KL-divergence
 * comparison, with its flags, printed lines and logits file, so numbers compare across the
 * two engines and either engine's base file serves the other.
 *
 * Method (llama-perplexity's): tokenize the whole text (BOS as the model asks, control-token
 * text not parsed) and cut it into n_chunk = n_tokens / n_ctx chunks. Each chunk is decoded
 * from an empty cache, its first token replaced by BOS when the model adds one, and only its
 * second half is scored: the logits at position j predict token j+1, j = n_ctx/2 .. n_ctx-2
 * (n_ctx/2 - 1 scores per chunk). PPL = exp(mean NLL); its +/- is the standard error of the
 * mean NLL times PPL.
 *
 * --kl-divergence-base FILE (without --kl-divergence) also writes the tokens and every
 * scored position's log-probabilities to FILE; with --kl-divergence it reads FILE instead of
 * a text, evaluates the same tokens and compares the two distributions per position.
 * The file, little-endian:
 *   "_logits_", int32 n_ctx, int32 n_vocab, int32 n_chunk, int32 tokens[n_chunk * n_ctx],
 *   then for each chunk and scored position a row of nv = 2*((n_vocab + 1)/2) + 4 uint16:
 *   float scale and float min_log_prob (the first 4 uint16), then n_vocab codes q with
 *   log p(i) = scale*q[i] + min_log_prob, where log-probs more than 16 below the top one
 *   are clamped to it (code 0), and one uint16 of padding when n_vocab is odd.
 *
 * --kv-policy sink|elastic (with --kv-size N, --kv-sink, --kv-window, --kv-ratio) scores
 * the same chunks and positions through a bounded KV cache of N cells (default -c): each
 * chunk streams through it in pieces of the context's batch size, so the scored tokens see
 * only what the policy keeps, and the result compares directly with the full cache. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "common.h"

static void ppl_usage(FILE *f) {
    fprintf(f,
        "usage: ember perplexity -m MODEL -f TEXT [-c 512] [-b N] [--chunks N] [-t N]\n"
        "                        [-ctk T -ctv T] [--kl-divergence-base FILE [--kl-divergence]]\n"
        "                        [--kv-policy sink|elastic [--kv-size N] [--kv-sink N] [--kv-window N] [--kv-ratio R]]\n\n"
        "  -f TEXT                     text to score (at least 2*c tokens)\n"
        "  -c N                        tokens per chunk (default 512); the second half is scored\n"
        "  --chunks N                  score at most N chunks (default: all)\n"
        "  --kl-divergence-base FILE   also save the log-probabilities (llama.cpp's layout);\n"
        "                              with --kl-divergence: read FILE (no -f) and compare\n"
        "  --kl-divergence             KL divergence, delta-p and top-1 agreement against FILE\n"
        "  -b N, -t N, -ctk T, -ctv T  batch, threads and K / V cache types, as for 'ember run'\n"
        "  --kv-policy P               full (default), sink or elastic: the chunks stream through a\n"
        "                              cache of --kv-size N cells (default -c) kept by that policy\n"
        "  --kv-sink, --kv-window, --kv-ratio   the policy's parameters, as for 'ember run'\n");
}

/* llama.cpp's rounding through the float mantissa (|x| < 2^22). */
static int nearest_int(float x) {
    float v = x + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* Largest logit (first index on ties) and the sum of expf(l - max) in double, as
 * llama.cpp's perplexity computes them. */
static double sum_exp(const float *l, int n, float *max, int *imax) {
    float m = l[0];
    int im = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > m) { m = l[i]; im = i; }
    double s = 0.0;
    for (int i = 0; i < n; i++) s += expf(l[i] - m);
    *max = m;
    if (imax) *imax = im;
    return s;
}

/* NLL of `tok` (plain perplexity). */
static double nll_plain(const float *l, int n, int tok) {
    float max;
    double s = sum_exp(l, n, &max, NULL);
    return -((double)(l[tok] - max) - log(s));
}

/* NLL of `tok`, storing the row's quantized log-probs in q (nv uint16). */
static double nll_store(const float *l, int n, int tok, uint16_t *q) {
    float max, min = l[0];
    double s = sum_exp(l, n, &max, NULL);
    for (int i = 1; i < n; i++) if (l[i] < min) min = l[i];
    if (min < max - 16) min = max - 16;
    const float lse = (float)log(s);
    const float head[2] = { (max - min) / 65535.f, min - max - lse };  /* scale, min log-prob */
    memcpy(q, head, sizeof head);
    uint16_t *c = q + 4;
    if (head[0] != 0) {
        const float inv = 1 / head[0];
        for (int i = 0; i < n; i++) c[i] = l[i] > min ? (uint16_t)nearest_int(inv * (l[i] - min)) : 0;
    } else memset(c, 0, (size_t)n * sizeof *c);
    if (n & 1) c[n] = 0;
    return max + lse - l[tok];
}

/* ---- KL divergence against a base row ---------------------------------------------- */
typedef struct kld_sums {
    double nll, nll2, nll_base, nll_base2, nll_nll_base, kld, kld2, dp, dp2, dp4;
    size_t same_top, count;
} kld_sums;

/* One position: returns its KL divergence and sets *dp to p(tok) - p_base(tok). */
static double kld_row(const float *l, int n, const uint16_t *base, int tok, kld_sums *k, float *dp) {
    float max;
    int imax;
    double s = sum_exp(l, n, &max, &imax);
    const float lse = (float)log(s);
    float head[2];
    memcpy(head, base, sizeof head);
    const float scale = head[0], min_lp = head[1];
    const uint16_t *c = base + 4;
    const float nll = max + lse - l[tok];
    const float nll_base = -(scale * c[tok] + min_lp);
    k->nll += nll;
    k->nll2 += nll * nll;
    k->nll_base += nll_base;
    k->nll_base2 += nll_base * nll_base;
    k->nll_nll_base += nll * nll_base;
    const float top = max + lse;
    double sum = 0;
    int imax_base = 0;
    float lp_max = 0;
    for (int i = 0; i < n; i++) {
        const float lp = scale * c[i] + min_lp;
        if (i == 0 || lp > lp_max) { lp_max = lp; imax_base = i; }
        if (lp > -16.f) sum += expf(lp) * (lp - l[i] + top);
    }
    k->kld += sum;
    k->kld2 += sum * sum;
    k->count++;
    k->same_top += imax == imax_base;
    const float d = expf(-nll) - expf(-nll_base);
    k->dp += d;
    const double d2 = (double)d * d;
    k->dp2 += d2;
    k->dp4 += d2 * d2;
    *dp = d;
    return sum;
}

/* Mean and its standard error, as llama.cpp reports them (no error under 11 values). */
static void mean_unc(double sum, double sum2, size_t n, double *mean, double *unc) {
    *mean = *unc = 0;
    if (n < 1) return;
    double f = sum / n, df = sum2 / n - f * f;
    *mean = f;
    *unc = df > 0 && n > 10 ? sqrt(df / (n - 1)) : 0;
}

static double covariance(double a, double b, double ab, size_t n) {
    if (n < 10) return 0;
    return (ab / n - (a / n) * (b / n)) / (n - 1);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* llama.cpp's interpolated percentile of sorted values (float arithmetic). */
static float percentile(const float *v, size_t n, float frac) {
    if (frac <= 0) return v[0];
    if (frac >= 1) return v[n - 1];
    float p = frac * (float)(n - 1);
    size_t ip = (size_t)p;
    p -= (float)ip;
    return (1 - p) * v[ip] + p * v[ip + 1 < n ? ip + 1 : n - 1];
}

static float median(const float *v, size_t n) {
    return n % 2 == 0 ? 0.5f * (v[n / 2] + v[n / 2 - 1]) : v[n / 2];
}

static void print_kld_summary(const kld_sums *k, float *kl, float *dp, size_t n) {
    qsort(kl, n, sizeof *kl, cmp_float);
    qsort(dp, n, sizeof *dp, cmp_float);
    double lp, lp_unc, lb, lb_unc;
    mean_unc(k->nll, k->nll2, k->count, &lp, &lp_unc);
    mean_unc(k->nll_base, k->nll_base2, k->count, &lb, &lb_unc);
    const double ppl = exp(lp), ppl_unc = ppl * lp_unc, pb = exp(lb), pb_unc = pb * lb_unc;
    const double cov = covariance(k->nll, k->nll_base, k->nll_nll_base, k->count);
    const double ratio = lp - lb, ratio_unc = sqrt(lp_unc * lp_unc + lb_unc * lb_unc - 2.0 * cov);
    printf("====== Perplexity statistics ======\n");
    printf("Mean PPL(Q)                   : %10.6f ± %10.6f\n", ppl, ppl_unc);
    printf("Mean PPL(base)                : %10.6f ± %10.6f\n", pb, pb_unc);
    printf("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%\n", 100.0 * cov / (lp_unc * lb_unc));
    printf("Mean ln(PPL(Q)/PPL(base))     : %10.6f ± %10.6f\n", ratio, ratio_unc);
    printf("Mean PPL(Q)/PPL(base)         : %10.6f ± %10.6f\n", exp(ratio), exp(ratio) * ratio_unc);
    printf("Mean PPL(Q)-PPL(base)         : %10.6f ± %10.6f\n", ppl - pb,
           sqrt(ppl_unc * ppl_unc + pb_unc * pb_unc - 2.0 * ppl * pb * cov));
    printf("\n====== KL divergence statistics ======\n");
    double m, u;
    mean_unc(k->kld, k->kld2, k->count, &m, &u);
    printf("Mean    KLD: %10.6f ± %10.6f\n", m, u);
    printf("Maximum KLD: %10.6f\n", kl[n - 1]);
    static const struct { const char *label; float f; } kp[] = {
        { "99.9%", 0.999f }, { "99.0%", 0.990f }, { "95.0%", 0.950f }, { "90.0%", 0.900f },
        { NULL, 0 }, { "10.0%", 0.100f }, { " 5.0%", 0.050f }, { " 1.0%", 0.010f }, { " 0.1%", 0.001f },
    };
    for (size_t i = 0; i < sizeof kp / sizeof *kp; i++) {
        if (kp[i].label) printf("%s   KLD: %10.6f\n", kp[i].label, percentile(kl, n, kp[i].f));
        else printf("Median  KLD: %10.6f\n", median(kl, n));
    }
    printf("Minimum KLD: %10.6f\n", kl[0]);
    printf("\n====== Token probability statistics ======\n");
    mean_unc(k->dp, k->dp2, k->count, &m, &u);
    printf("Mean    Δp: %6.3f ± %5.3f %%\n", 100.0 * m, 100.0 * u);
    printf("Maximum Δp: %6.3f%%\n", 100.0 * dp[n - 1]);
    static const struct { const char *label; float f; } pp[] = {
        { "99.9%", 0.999f }, { "99.0%", 0.990f }, { "95.0%", 0.950f }, { "90.0%", 0.900f },
        { "75.0%", 0.750f }, { NULL, 0 }, { "25.0%", 0.250f }, { "10.0%", 0.100f },
        { " 5.0%", 0.050f }, { " 1.0%", 0.010f }, { " 0.1%", 0.001f },
    };
    for (size_t i = 0; i < sizeof pp / sizeof *pp; i++) {
        if (pp[i].label) printf("%s   Δp: %6.3f%%\n", pp[i].label, 100.0 * percentile(dp, n, pp[i].f));
        else printf("Median  Δp: %6.3f%%\n", 100.0 * median(dp, n));
    }
    printf("Minimum Δp: %6.3f%%\n", 100.0 * dp[0]);
    mean_unc(k->dp2, k->dp4, k->count, &m, &u);
    const double rms = sqrt(m);
    printf("RMS Δp    : %6.3f ± %5.3f %%\n", 100.0 * rms, 100.0 * 0.5 / rms * u);
    const double same = (double)k->same_top / k->count;
    printf("Same top p: %6.3f ± %5.3f %%\n", 100.0 * same, 100.0 * sqrt(same * (1.0 - same) / (k->count - 1)));
}

/* ---- the base file ------------------------------------------------------------------ */
static int write_all(FILE *f, const void *p, size_t n, const char *path) {
    if (fwrite(p, 1, n, f) == n) return 0;
    fprintf(stderr, "error: %s: write failed: %s\n", path, strerror(errno));
    return 1;
}

static int read_all(FILE *f, void *p, size_t n, const char *path, const char *what) {
    if (fread(p, 1, n, f) == n) return 0;
    fprintf(stderr, "error: %s: file ends in %s (not a complete logits file)\n", path, what);
    return 1;
}

/* Reads the header and tokens of a base file; checks its size against what it declares. */
static FILE *open_base(const char *path, int n_vocab_model, int *n_ctx, int *n_chunk, ember_token **tokens) {
    struct stat st;
    if (stat(path, &st) || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "error: %s: not a readable regular file\n", path);
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "error: %s: %s\n", path, strerror(errno)); return NULL; }
    char magic[8];
    int32_t h[3];
    if (read_all(f, magic, 8, path, "the header") || memcmp(magic, "_logits_", 8)) {
        fprintf(stderr, "error: %s does not look like a file of log-probabilities (no \"_logits_\")\n", path);
        fclose(f);
        return NULL;
    }
    if (read_all(f, h, sizeof h, path, "the header")) { fclose(f); return NULL; }
    if (h[0] < 4 || h[0] > (1 << 20) || h[2] < 1 || h[1] != n_vocab_model) {
        if (h[1] != n_vocab_model)
            fprintf(stderr, "error: %s: vocabulary of %d tokens, the model has %d\n", path, h[1], n_vocab_model);
        else fprintf(stderr, "error: %s: bad header (n_ctx %d, n_chunk %d)\n", path, h[0], h[2]);
        fclose(f);
        return NULL;
    }
    const uint64_t nv = 2 * (((uint64_t)h[1] + 1) / 2) + 4, scored = (uint64_t)(h[0] - 1 - h[0] / 2);
    const uint64_t want = 20 + 4 * (uint64_t)h[0] * (uint64_t)h[2] + 2 * nv * scored * (uint64_t)h[2];
    if ((uint64_t)st.st_size != want) {
        fprintf(stderr, "error: %s: %lld bytes, but its header (n_ctx %d, n_vocab %d, %d chunks) means %llu\n",
                path, (long long)st.st_size, h[0], h[1], h[2], (unsigned long long)want);
        fclose(f);
        return NULL;
    }
    *tokens = malloc((size_t)h[0] * (size_t)h[2] * sizeof **tokens);
    if (!*tokens || read_all(f, *tokens, (size_t)h[0] * (size_t)h[2] * sizeof **tokens, path, "the tokens")) {
        free(*tokens);
        *tokens = NULL;
        fclose(f);
        return NULL;
    }
    for (size_t i = 0; i < (size_t)h[0] * (size_t)h[2]; i++)
        if ((*tokens)[i] < 0 || (*tokens)[i] >= n_vocab_model) {
            fprintf(stderr, "error: %s: token %d at %zu is outside the vocabulary\n", path, (*tokens)[i], i);
            free(*tokens);
            *tokens = NULL;
            fclose(f);
            return NULL;
        }
    *n_ctx = h[0];
    *n_chunk = h[2];
    return f;
}

/* Decodes one chunk from an empty cache (first token BOS when the model adds one), keeping
 * logits for positions >= first. */
static int eval_chunk(ember_context *ctx, const ember_model *m, const ember_token *chunk, int n_ctx,
                      int first, ember_token *buf, int8_t *want) {
    memcpy(buf, chunk, (size_t)n_ctx * sizeof *buf);
    if (ember_add_bos(m) && ember_token_bos(m) >= 0) buf[0] = ember_token_bos(m);
    for (int j = 0; j < n_ctx; j++) want[j] = j >= first;
    ember_context_truncate(ctx, 0);
    ember_batch b = { n_ctx, buf, NULL, want };
    if (ember_decode_batch(ctx, &b)) {
        fprintf(stderr, "\nerror: %s\n", ember_last_error());
        return 1;
    }
    return 0;
}

int cmd_perplexity(int argc, char **argv) {
    /* Flags of this command only; the rest go through the shared parser. */
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    int n_rest = 0, n_chunks = -1, kld = 0, kv_size = 0;
    const char *base_path = NULL;
    if (!rest) return 1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { ppl_usage(stdout); free(rest); return 0; }
        if (!strcmp(a, "--kl-divergence")) { kld = 1; continue; }
        if (!strcmp(a, "--chunks") || !strcmp(a, "--kl-divergence-base") || !strcmp(a, "--save-all-logits") ||
            !strcmp(a, "--kv-size")) {
            if (i + 1 >= argc) { fprintf(stderr, "error: %s needs a value\n", a); free(rest); return 1; }
            const char *v = argv[++i];
            if (!strcmp(a, "--kl-divergence-base") || !strcmp(a, "--save-all-logits")) { base_path = v; continue; }
            const int is_size = !strcmp(a, "--kv-size");
            char *end;
            errno = 0;
            long c = strtol(v, &end, 10);
            if (errno || *end || end == v || c < (is_size ? 1 : -1) || c > 1 << 30) {
                fprintf(stderr, is_size ? "error: --kv-size expects a count of cells, got '%s'\n"
                                        : "error: --chunks expects a count (-1: all), got '%s'\n", v);
                free(rest);
                return 1;
            }
            if (is_size) kv_size = (int)c;
            else n_chunks = (int)c;
            continue;
        }
        rest[n_rest++] = argv[i];
    }
    opts o;
    int bad = opts_parse(&o, n_rest, rest);
    free(rest);
    if (bad) return 1;
    int rc = 1;
    char *text = NULL;
    ember_model *m = NULL;
    ember_context *ctx = NULL;
    ember_token *tokens = NULL, *buf = NULL;
    int8_t *want = NULL;
    uint16_t *rows = NULL;
    float *kl_vals = NULL, *dp_vals = NULL;
    FILE *base = NULL;
    if (kld && !base_path) { fprintf(stderr, "error: --kl-divergence needs --kl-divergence-base FILE\n"); goto done; }
    if (kld && (o.prompt || o.prompt_file))
        fprintf(stderr, "warning: --kl-divergence scores the tokens saved in %s; the text is not used\n", base_path);
    if (!kld && !o.prompt && !o.prompt_file) { fprintf(stderr, "error: no text: give -f FILE (see 'ember perplexity -h')\n"); goto done; }
    if (!(m = load_model(&o, 0))) goto done;
    const int n_vocab = ember_model_n_vocab(m);
    int n_ctx = o.n_ctx > 0 ? o.n_ctx : 512, n_tok = 0, n_chunk;
    if (kld) {
        if (!(base = open_base(base_path, n_vocab, &n_ctx, &n_chunk, &tokens))) goto done;
        if (o.n_ctx > 0 && o.n_ctx != n_ctx)
            fprintf(stderr, "warning: %s was made with -c %d; using that\n", base_path, n_ctx);
        n_tok = n_ctx * n_chunk;
    } else {
        size_t len;
        if (!(text = read_prompt(&o, &len))) goto done;
        int cap = len < (1u << 30) ? (int)len + 8 : 1 << 30;
        if (!(tokens = malloc((size_t)cap * sizeof *tokens))) { fprintf(stderr, "error: out of memory\n"); goto done; }
        n_tok = ember_tokenize(m, text, len, tokens, cap, 1, 0);
        if (n_tok < 0) { fprintf(stderr, "error: cannot tokenize the text: %s\n", ember_last_error()); goto done; }
        if (n_tok < 2 * n_ctx) {
            fprintf(stderr, "error: you need at least %d tokens to evaluate perplexity with a context of %d; "
                            "the text has %d\n", 2 * n_ctx, n_ctx, n_tok);
            goto done;
        }
        n_chunk = n_tok / n_ctx;
    }
    if (n_chunks >= 0 && n_chunks < n_chunk) n_chunk = n_chunks;
    if (n_chunk < 1) { fprintf(stderr, "error: --chunks 0 leaves nothing to score\n"); goto done; }
    ember_context_params cp = ember_context_default_params();
    const int bounded = o.kv_policy && (!strcmp(o.kv_policy, "sink") || !strcmp(o.kv_policy, "elastic"));
    if (o.kv_policy && !bounded && strcmp(o.kv_policy, "full")) {
        fprintf(stderr, "error: --kv-policy %s: perplexity takes full, sink or elastic\n", o.kv_policy);
        goto done;
    }
    if (kv_size && !bounded) { fprintf(stderr, "error: --kv-size needs --kv-policy sink or elastic\n"); goto done; }
    cp.n_ctx = bounded && kv_size ? kv_size : n_ctx;
    cp.n_threads = o.n_threads;
    cp.n_batch = o.n_batch;
    cp.isa = o.isa;
    cp.type_k = o.cache_k;
    cp.type_v = o.cache_v;
    cp.kv_policy = o.kv_policy;
    cp.n_sink = o.n_sink;
    cp.n_window = o.n_window;
    cp.kv_ratio = o.kv_ratio;
    if (ember_context_new(m, &cp, &ctx)) { fprintf(stderr, "error: %s\n", ember_last_error()); goto done; }
    if (bounded)
        fprintf(stderr, "KV cache: %s policy, %d cells, batch %d\n", o.kv_policy, ember_context_n_ctx(ctx),
                ember_context_n_batch(ctx));
    const int first = n_ctx / 2, scored = n_ctx - 1 - first;
    const size_t nv = 2 * (((size_t)n_vocab + 1) / 2) + 4;
    buf = malloc((size_t)n_ctx * sizeof *buf);
    want = malloc((size_t)n_ctx);
    if (base_path) rows = malloc((size_t)scored * nv * sizeof *rows);
    if (kld) {
        kl_vals = malloc((size_t)scored * n_chunk * sizeof *kl_vals);
        dp_vals = malloc((size_t)scored * n_chunk * sizeof *dp_vals);
    }
    if (!buf || !want || (base_path && !rows) || (kld && (!kl_vals || !dp_vals))) {
        fprintf(stderr, "error: out of memory\n");
        goto done;
    }
    if (base_path && !kld) {
        if (!(base = fopen(base_path, "wb"))) { fprintf(stderr, "error: %s: %s\n", base_path, strerror(errno)); goto done; }
        const int32_t h[3] = { n_ctx, n_vocab, n_chunk };
        if (write_all(base, "_logits_", 8, base_path) || write_all(base, h, sizeof h, base_path) ||
            write_all(base, tokens, (size_t)n_chunk * n_ctx * sizeof *tokens, base_path))
            goto done;
        fprintf(stderr, "saving all logits to %s\n", base_path);
    }
    fprintf(stderr, "%s over %d chunks, n_ctx=%d, %d tokens scored per chunk\n",
            kld ? "computing KL divergence" : "calculating perplexity", n_chunk, n_ctx, scored);
    if (kld)
        printf("chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              Δp RMS            Same top p\n");
    double nll = 0, nll2 = 0;
    long count = 0;
    kld_sums k = { 0 };
    for (int c = 0; c < n_chunk; c++) {
        if (eval_chunk(ctx, m, tokens + (size_t)c * n_ctx, n_ctx, first, buf, want)) goto done;
        const ember_token *t = tokens + (size_t)c * n_ctx + first;
        if (kld && fread(rows, sizeof *rows, (size_t)scored * nv, base) != (size_t)scored * nv) {
            fprintf(stderr, "\nerror: %s: file ends in chunk %d's log-probabilities\n", base_path, c + 1);
            goto done;
        }
        for (int i = 0; i < scored; i++) {
            const float *l = ember_get_logits(ctx, first + i);
            if (!l) { fprintf(stderr, "\nerror: no logits for position %d\n", first + i); goto done; }
            if (kld) {
                size_t at = (size_t)c * scored + i;
                kl_vals[at] = (float)kld_row(l, n_vocab, rows + (size_t)i * nv, t[i + 1], &k, &dp_vals[at]);
                continue;
            }
            const double v = rows ? nll_store(l, n_vocab, t[i + 1], rows + (size_t)i * nv) : nll_plain(l, n_vocab, t[i + 1]);
            nll += v;
            nll2 += v * v;
        }
        count += scored;
        if (!kld) {
            if (rows && write_all(base, rows, (size_t)scored * nv * sizeof *rows, base_path)) goto done;
            printf("[%d]%.4f,", c + 1, exp(nll / count));
            fflush(stdout);
            continue;
        }
        double lp, lp_unc, lb, lb_unc, kv, kv_unc, mse, mse_unc;
        mean_unc(k.nll, k.nll2, k.count, &lp, &lp_unc);
        mean_unc(k.nll_base, k.nll_base2, k.count, &lb, &lb_unc);
        const double cov = covariance(k.nll, k.nll_base, k.nll_nll_base, k.count);
        mean_unc(k.kld, k.kld2, k.count, &kv, &kv_unc);
        mean_unc(k.dp2, k.dp4, k.count, &mse, &mse_unc);
        const double top = (double)k.same_top / k.count;
        printf("%4d    %9.4f ± %9.4f    %10.5f ± %10.5f    %10.5f ± %10.5f    %6.3f ± %6.3f %%    %6.3f ± %6.3f %%\n",
               c + 1, exp(lp), exp(lp) * lp_unc, lp - lb, sqrt(lp_unc * lp_unc + lb_unc * lb_unc - 2.0 * cov),
               kv, kv_unc, 100.0 * sqrt(mse), 100.0 * 0.5 / sqrt(mse) * mse_unc, 100.0 * top,
               100.0 * sqrt(top * (1 - top) / (k.count - 1)));
        fflush(stdout);
    }
    printf("\n");
    if (kld) {
        if (k.count < 100) fprintf(stderr, "note: %zu positions are too few for the summary statistics\n", k.count);
        else print_kld_summary(&k, kl_vals, dp_vals, k.count);
    } else {
        nll /= count;
        nll2 = nll2 / count - nll * nll;
        const double ppl = exp(nll);
        if (nll2 > 0) printf("Final estimate: PPL = %.4f +/- %.5f\n", ppl, sqrt(nll2 / (count - 1)) * ppl);
        else fprintf(stderr, "error: unexpected negative variance of log(prob)\n");
    }
    rc = 0;
    if (base && !kld && (fflush(base) || ferror(base))) {
        fprintf(stderr, "error: %s: write failed\n", base_path);
        rc = 1;
    }
done:
    if (base && fclose(base) && !kld && rc == 0) { fprintf(stderr, "error: %s: write failed\n", base_path); rc = 1; }
    free(kl_vals);
    free(dp_vals);
    free(rows);
    free(want);
    free(buf);
    free(tokens);
    free(text);
    ember_context_free(ctx);
    ember_model_free(m);
    free(o.rest);
    return rc;
}
