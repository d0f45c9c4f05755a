/* cmd_imatrix.c: `ember imatrix`, llama-imatrix's importance matrix over the library's
 * collector (ember_imatrix_collector), with its flags, its perplexity lines and its file
 * layouts, so a file from either tool quantizes the same in either quantizer.
 *
 * Method (llama-imatrix's, tools/imatrix/imatrix.cpp): tokenize the text (BOS as the model
 * asks), cut it into n_tokens / c chunks of c tokens, and decode each from an empty cache
 * with its first token replaced by BOS when the model adds one. Every matmul input of a
 * blk.* weight is collected (output.weight too with --process-output). llama-imatrix
 * evaluates b / c chunks side by side as sequences of one batch, split into micro-batches of
 * ub tokens, each sequence giving ub / (sequences) consecutive tokens to each one, and it
 * skips micro-batches under 16 tokens; this command feeds the tokens in that same order and
 * skips the same ones, so the float sums add up in llama.cpp's order and the counts are
 * equal. The chunk's second half is scored for the perplexity lines, as llama-imatrix does. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "common.h"

static void imatrix_usage(FILE *f) {
    fprintf(f,
        "usage: ember imatrix -m MODEL -f TEXT [-o FILE] [-c 512] [--chunks N] [-t N]\n"
        "                     [--output-format gguf|dat] [--process-output] [--no-ppl]\n\n"
        "Computes an importance matrix as llama.cpp's llama-imatrix does, for 'ember quantize\n"
        "--imatrix' or llama-quantize.\n\n"
        "  -f TEXT                 calibration text (at least 2*c tokens)\n"
        "  -o FILE                 output (default imatrix.gguf)\n"
        "  --output-format F       gguf (default, llama-imatrix's) or dat (the legacy layout)\n"
        "  -c N                    tokens per chunk (default 512)\n"
        "  --chunks N              use at most N chunks (default: all)\n"
        "  --process-output        also collect output.weight (not a tied embedding)\n"
        "  --no-ppl                do not print the perplexity of the chunks\n"
        "  --parse-special         parse control-token text in TEXT\n"
        "  -b N, -ub N             llama-imatrix's batch and micro-batch (default 2048, 512):\n"
        "                          b/c chunks run together; they set the order the sums add up in\n"
        "  -t N, -ctk T, -ctv T    threads and KV cache type, as for 'ember run'\n");
}

static int parse_count(const char *flag, const char *v, int lo, int *out) {
    char *end;
    errno = 0;
    long c = strtol(v, &end, 10);
    if (errno || *end || end == v || c < lo || c > 1 << 30) {
        fprintf(stderr, "error: %s expects an integer >= %d, got '%s'\n", flag, lo, v);
        return 1;
    }
    *out = (int)c;
    return 0;
}

/* NLL of tok under logits l (max-shifted log-sum-exp in double, as llama.cpp). */
static double nll_of(const float *l, int n, int tok) {
    float m = l[0];
    for (int i = 1; i < n; i++) if (l[i] > m) m = l[i];
    double s = 0;
    for (int i = 0; i < n; i++) s += expf(l[i] - m);
    return -((double)(l[tok] - m) - log(s));
}

typedef struct run {
    ember_context *ctx;
    ember_imatrix_collector *col;
    const ember_token *tokens;      /* the whole text */
    int n_ctx, n_vocab, first, want_all, ppl;
    ember_token *tok;               /* (piece) scratch for one decode call */
    int *seq;
    int8_t *want;
    int *chunk_of, *pos_of;         /* (piece) chunk and position of each token */
    double *nll;                    /* (n_seq, n_ctx) per scored position of the group */
    int piece;                      /* tokens per decode call (the context's n_batch) */
} run;

/* Decodes n tokens (chunk chunk_of[i], position pos_of[i], sequence seq[i]) in calls of at
 * most r->piece tokens, keeping the logits the perplexity needs. */
static int decode_tokens(run *r, int n, int group0) {
    for (int i = 0; i < n; i++) {
        const int p = r->pos_of[i];
        r->want[i] = (int8_t)(r->want_all || (r->ppl && p >= r->first && p < r->n_ctx - 1));
    }
    for (int c0 = 0; c0 < n; c0 += r->piece) {
        const int m = n - c0 < r->piece ? n - c0 : r->piece;
        ember_batch b = { m, r->tok + c0, r->seq + c0, r->want + c0 };
        if (ember_decode_batch(r->ctx, &b)) { fprintf(stderr, "\nerror: %s\n", ember_last_error()); return 1; }
        if (!r->ppl) continue;
        for (int i = 0; i < m; i++) {
            const int k = c0 + i, p = r->pos_of[k], c = r->chunk_of[k];
            if (p < r->first || p >= r->n_ctx - 1) continue;
            const float *l = ember_get_logits(r->ctx, i);
            if (!l) { fprintf(stderr, "\nerror: no logits for position %d\n", p); return 1; }
            const int next = r->tokens[(size_t)c * r->n_ctx + p + 1];
            r->nll[(size_t)(c - group0) * r->n_ctx + p] = nll_of(l, r->n_vocab, next);
        }
    }
    return 0;
}

int cmd_imatrix(int argc, char **argv) {
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    int n_rest = 0, n_chunks = -1, legacy = 0, process_output = 0, ppl = 1, parse_special = 0;
    int n_batch = 2048, n_ubatch = 512;
    const char *out_path = "imatrix.gguf";
    if (!rest) return 1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { imatrix_usage(stdout); free(rest); return 0; }
        if (!strcmp(a, "--process-output")) { process_output = 1; continue; }
        if (!strcmp(a, "--no-ppl")) { ppl = 0; continue; }
        if (!strcmp(a, "--parse-special")) { parse_special = 1; continue; }
        if (!strcmp(a, "-o") || !strcmp(a, "--output-file") || !strcmp(a, "--output-format") ||
            !strcmp(a, "--chunks") || !strcmp(a, "-b") || !strcmp(a, "--batch-size") || !strcmp(a, "-ub") ||
            !strcmp(a, "--ubatch-size")) {
            if (i + 1 >= argc) { fprintf(stderr, "error: %s needs a value\n", a); free(rest); return 1; }
            const char *v = argv[++i];
            int bad = 0;
            if (!strcmp(a, "-o") || !strcmp(a, "--output-file")) out_path = v;
            else if (!strcmp(a, "--output-format")) {
                if (!strcmp(v, "gguf")) legacy = 0;
                else if (!strcmp(v, "dat")) legacy = 1;
                else { fprintf(stderr, "error: --output-format expects gguf or dat, got '%s'\n", v); bad = 1; }
            } else if (!strcmp(a, "--chunks")) bad = parse_count(a, v, -1, &n_chunks);
            else if (!strcmp(a, "-ub") || !strcmp(a, "--ubatch-size")) bad = parse_count(a, v, 1, &n_ubatch);
            else bad = parse_count(a, v, 1, &n_batch);
            if (bad) { free(rest); return 1; }
            continue;
        }
        rest[n_rest++] = argv[i];
    }
    opts o;
    int bad = opts_parse(&o, n_rest, rest);
    free(rest);
    if (bad) return bad == 2 ? 0 : 1;
    int rc = 1;
    char *text = NULL;
    ember_model *m = NULL;
    run r = { 0 };
    ember_token *tokens = NULL;
    if (!o.prompt && !o.prompt_file) { fprintf(stderr, "error: no text: give -f FILE (see 'ember imatrix -h')\n"); goto done; }
    if (!legacy) {
        size_t ol = strlen(out_path);
        if (ol < 5 || strcmp(out_path + ol - 5, ".gguf"))
            fprintf(stderr, "warning: saving the imatrix in the GGUF layout under a name without .gguf "
                            "(--output-format dat gives the legacy layout)\n");
    }
    if (!(m = load_model(&o, 0))) goto done;
    const int n_ctx = o.n_ctx > 0 ? o.n_ctx : 512;
    size_t len;
    if (!(text = read_prompt(&o, &len))) goto done;
    int cap = len < (1u << 30) ? (int)len + 8 : 1 << 30;
    if (!(tokens = malloc((size_t)cap * sizeof *tokens))) { fprintf(stderr, "error: out of memory\n"); goto done; }
    const int n_tok = ember_tokenize(m, text, len, tokens, cap, 1, parse_special);
    if (n_tok < 0) { fprintf(stderr, "error: cannot tokenize the text: %s\n", ember_last_error()); goto done; }
    if (n_tok < 2 * n_ctx) {
        fprintf(stderr, "error: you need at least %d tokens for a context of %d tokens; the text has %d\n",
                2 * n_ctx, n_ctx, n_tok);
        goto done;
    }
    int n_chunk = n_tok / n_ctx;
    if (n_chunks >= 0 && n_chunks < n_chunk) n_chunk = n_chunks;
    if (n_chunk < 1) { fprintf(stderr, "error: --chunks 0 leaves nothing to collect\n"); goto done; }

    /* llama-imatrix's batching: n_seq chunks per batch, the batch capped at n_seq * n_ctx */
    const int n_seq = n_batch / n_ctx > 1 ? n_batch / n_ctx : 1;
    if (n_batch > n_seq * n_ctx) n_batch = n_seq * n_ctx;
    if (!(n_batch < n_ctx || n_batch % n_ctx == 0)) {
        fprintf(stderr, "error: -b %d must be below -c %d or a multiple of it\n", n_batch, n_ctx);
        goto done;
    }
    if (n_ubatch > n_batch) n_ubatch = n_batch;
    const int num_batches = (n_ctx + n_batch - 1) / n_batch;
    ember_context_params cp = ember_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_seq = n_seq;
    cp.n_threads = o.n_threads;
    cp.isa = o.isa;
    cp.kv_type = o.cache_k ? o.cache_k : o.cache_v;
    if (ember_context_new(m, &cp, &r.ctx) || ember_imatrix_collector_new(r.ctx, process_output, &r.col)) {
        fprintf(stderr, "error: %s\n", ember_last_error());
        goto done;
    }
    r.tokens = tokens;
    r.n_ctx = n_ctx;
    r.n_vocab = ember_model_n_vocab(m);
    r.first = n_ctx / 2;
    r.want_all = process_output;
    r.ppl = ppl;
    r.piece = ember_context_n_batch(r.ctx);
    const size_t bmax = (size_t)n_seq * (n_batch < n_ctx ? n_batch : n_ctx);
    r.tok = malloc(bmax * sizeof *r.tok);
    r.seq = malloc(bmax * sizeof *r.seq);
    r.want = malloc(bmax);
    r.chunk_of = malloc(bmax * sizeof *r.chunk_of);
    r.pos_of = malloc(bmax * sizeof *r.pos_of);
    r.nll = malloc((size_t)n_seq * n_ctx * sizeof *r.nll);
    if (!r.tok || !r.seq || !r.want || !r.chunk_of || !r.pos_of || !r.nll) { fprintf(stderr, "error: out of memory\n"); goto done; }
    const int add_bos = ember_add_bos(m) && ember_token_bos(m) >= 0;
    fprintf(stderr, "computing over %d chunks, n_ctx=%d, batch_size=%d, n_seq=%d\n", n_chunk, n_ctx, n_batch, n_seq);
    double nll = 0, nll2 = 0;
    long count = 0;
    for (int i = 0; i < n_chunk; i += n_seq) {
        const int n_sb = n_chunk - i < n_seq ? n_chunk - i : n_seq;
        for (int s = 0; s < n_seq; s++) ember_seq_truncate(r.ctx, s, 0);
        for (int j = 0; j < num_batches; j++) {
            const int b0 = j * n_batch, bsz = n_ctx - b0 < n_batch ? n_ctx - b0 : n_batch;
            /* the micro-batches: consecutive tokens of one sequence, or per round an equal share
             * of every sequence, concatenated sequence by sequence */
            const int share = n_sb == 1 ? n_ubatch : (n_ubatch / n_sb > 0 ? n_ubatch / n_sb : 1);
            for (int u0 = 0; u0 < bsz; u0 += share) {
                const int per = bsz - u0 < share ? bsz - u0 : share;
                int n = 0;
                for (int s = 0; s < n_sb; s++)
                    for (int k = 0; k < per; k++) {
                        const int c = i + s, p = b0 + u0 + k;
                        ember_token t = tokens[(size_t)c * n_ctx + p];
                        if (p == 0 && add_bos) t = ember_token_bos(m);
                        r.tok[n] = t;
                        r.seq[n] = s;
                        r.chunk_of[n] = c;
                        r.pos_of[n] = p;
                        n++;
                    }
                ember_imatrix_collector_pause(r.col, n < 16);
                if (decode_tokens(&r, n, i)) goto done;
            }
        }
        if (!ppl) continue;
        for (int s = 0; s < n_sb; s++) {
            for (int p = r.first; p < n_ctx - 1; p++) {
                const double v = r.nll[(size_t)s * n_ctx + p];
                nll += v;
                nll2 += v * v;
            }
            count += n_ctx - 1 - r.first;
            printf("[%d]%.4f,", i + s + 1, exp(nll / count));
        }
        fflush(stdout);
    }
    printf("\n");
    if (ppl && count > 1) {
        const double mean = nll / count, var = nll2 / count - mean * mean;
        if (var > 0) printf("Final estimate: PPL = %.4f +/- %.5f\n", exp(mean), sqrt(var / (count - 1)) * exp(mean));
    }
    ember_imatrix_save_params sp = { .legacy = legacy, .chunk_size = n_ctx, .dataset = o.prompt_file };
    if (ember_imatrix_collector_save(r.col, out_path, &sp)) { fprintf(stderr, "error: %s\n", ember_last_error()); goto done; }
    fprintf(stderr, "stored the imatrix of %d entries after %d chunks in %s\n",
            ember_imatrix_collector_n_entries(r.col), n_chunk, out_path);
    rc = 0;
done:
    free(r.tok);
    free(r.seq);
    free(r.want);
    free(r.chunk_of);
    free(r.pos_of);
    free(r.nll);
    ember_imatrix_collector_free(r.col);
    ember_context_free(r.ctx);
    free(tokens);
    free(text);
    ember_model_free(m);
    free(o.rest);
    return rc;
}
