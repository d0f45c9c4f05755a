/* cmd_run.c: `ember run` (prompt -> streamed continuation) and `ember chat` (interactive
 * multi-turn chat through the model's chat template). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "common.h"

typedef struct gen {
    ember_model *m;
    ember_context *ctx;
    ember_sampler *smp;
    ember_model *dm;          /* -md: the draft model */
    ember_context *dctx;
    ember_spec *spec;         /* --lookup or -md */
    ember_token *hist;        /* with spec: the tokens the KV cache holds (ember_spec_begin
                                 takes them), following its context shifts */
    int n_hist, n_keep;       /* n_keep: what a shift keeps (the context's n_keep) */
    ember_sampler_state *ck;  /* with spec in chat: the sampler before a step */
    double t_prompt_ms, t_gen_ms;
    int n_prompt, n_gen;
    int shift;                /* the KV policy makes room when full (shift, sink, elastic) instead of stopping */
} gen;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int gen_init(gen *g, const opts *o) {
    memset(g, 0, sizeof *g);
    double t0 = now_ms();
    if (!(g->m = load_model(o, 0))) return 1;
    ember_context_params cp = ember_context_default_params();
    cp.n_ctx = o->n_ctx;
    cp.n_threads = o->n_threads;
    cp.n_batch = o->n_batch;
    cp.isa = o->isa;
    cp.type_k = o->cache_k;
    cp.type_v = o->cache_v;
    cp.kv_policy = o->kv_policy ? o->kv_policy : !strcmp(cli_command, "chat") ? "shift" : "full";
    cp.n_keep = o->n_keep + (ember_add_bos(g->m) && !o->no_bos);  /* BOS stays, as in llama.cpp */
    cp.n_sink = o->n_sink;
    cp.n_window = o->n_window;
    cp.kv_ratio = o->kv_ratio;
    g->shift = strcmp(cp.kv_policy, "full") != 0;  /* shift, sink, elastic: never full */
    g->n_keep = cp.n_keep;
    ember_sampler_params sp = o->sp;
    ember_status st = ember_context_new(g->m, &cp, &g->ctx);
    if (!st && sp.repeat_last_n < 0) sp.repeat_last_n = ember_context_n_ctx(g->ctx);  /* -1: whole context */
    if (st || ember_sampler_new(g->m, &sp, &g->smp)) {
        fprintf(stderr, "error: %s\n", ember_last_error());
        return 1;
    }
    if (o->model_draft) {
        ember_model_params mp = ember_model_default_params();
        cp.n_ctx = ember_context_n_ctx(g->ctx);
        if (o->n_threads_draft) cp.n_threads = o->n_threads_draft;
        if (ember_model_load(o->model_draft, &mp, &g->dm) || ember_context_new(g->dm, &cp, &g->dctx)) {
            fprintf(stderr, "error: -md %s: %s\n", o->model_draft, ember_last_error());
            return 1;
        }
    }
    if (o->model_draft || o->lookup) {
        ember_spec_params spp = o->spec;
        spp.draft = g->dctx;
        if (!o->lookup) spp.lookup_ngram = 0;
        spp.overlap = o->spec_overlap >= 0 ? o->spec_overlap : SPEC_OVERLAP_DEFAULT;
        if (ember_spec_new(g->ctx, &spp, &g->spec) || ember_sampler_state_new(g->smp, &g->ck)) {
            fprintf(stderr, "error: %s\n", ember_last_error());
            return 1;
        }
        if (!(g->hist = malloc(((size_t)ember_context_n_ctx(g->ctx) + 1) * sizeof *g->hist))) {
            fprintf(stderr, "error: out of memory\n");
            return 1;
        }
    }
    if (o->verbose) {
        char desc[128];
        ember_model_desc(g->m, desc, sizeof desc);
        fprintf(stderr, "model: %s | ctx %d | isa %s | seed %llu | load %.0f ms\n", desc,
                ember_context_n_ctx(g->ctx), ember_context_isa(g->ctx),
                (unsigned long long)ember_sampler_seed(g->smp), now_ms() - t0);
        ember_mem_plan mp;
        if (o->mem_budget && !ember_context_mem_plan(g->ctx, &mp)) {
            if (mp.all_resident) fprintf(stderr, "memory plan: everything fits in %.1f MiB, nothing streams\n",
                                         mp.budget / 1048576.0);
            else fprintf(stderr, "memory plan: %d of %d layers resident, %d streamed through %d buffers (prefetch %d); "
                                 "%.1f MiB resident, %.1f MiB read per token\n", mp.n_pinned, mp.n_layer, mp.n_streamed,
                         mp.n_buffers, mp.prefetch, mp.resident / 1048576.0, mp.streamed / 1048576.0);
        }
        if (g->dm) {
            ember_model_desc(g->dm, desc, sizeof desc);
            fprintf(stderr, "draft model: %s | draft-max %d, draft-min %d, draft-p-min %g, overlap %s\n", desc,
                    o->spec.draft_max, o->spec.draft_min, o->spec.draft_p_min,
                    o->spec_overlap > 0 || (o->spec_overlap < 0 && SPEC_OVERLAP_DEFAULT) ? "on" : "off");
        } else if (o->lookup)
            fprintf(stderr, "prompt lookup: n-grams %d..1 | draft-max %d, draft-min %d\n", o->spec.lookup_ngram,
                    o->spec.draft_max, o->spec.draft_min);
    }
    return 0;
}

static void gen_free(gen *g) {
    ember_spec_free(g->spec);
    ember_sampler_state_free(g->ck);
    free(g->hist);
    ember_context_free(g->dctx);
    ember_model_free(g->dm);
    ember_sampler_free(g->smp);
    ember_context_free(g->ctx);
    ember_model_free(g->m);
}

/* Tokenizes len bytes of text (BOS when the model asks and bos is set). Returns a malloc'ed
 * array. */
static ember_token *tokenize_n(const ember_model *m, const char *text, size_t len, int bos, int special, int *n) {
    int cap = (int)(len < 1 << 28 ? len : 1 << 28) + 8;
    ember_token *t = malloc((size_t)cap * sizeof *t);
    if (!t) return NULL;
    *n = ember_tokenize(m, text, len, t, cap, bos, special);
    if (*n < 0) { free(t); return NULL; }
    return t;
}

/* ember_decode of k tokens, with the token mirror (speculation only) following it: the
 * context shifts the decode makes first (as the KV cache does them: keep n_keep, drop half
 * of the rest, until the tokens fit), then the tokens. */
static ember_status decode_mirrored(gen *g, const ember_token *t, int k) {
    ember_status st = ember_decode(g->ctx, t, k, 0);
    if (st || !g->hist) return st;
    int n = g->n_hist;
    const int n_ctx = ember_context_n_ctx(g->ctx);
    while (k > n_ctx - n) {
        const int keep = g->n_keep < n ? g->n_keep : n, d = (n - keep) / 2;
        if (d == 0) break;
        memmove(g->hist + keep, g->hist + keep + d, (size_t)(n - keep - d) * sizeof *g->hist);
        n -= d;
    }
    memcpy(g->hist + n, t, (size_t)k * sizeof *t);
    g->n_hist = n + k;
    return EMBER_OK;
}

/* Decodes the prompt. A long one (over 256 tokens, when stderr is a terminal or with
 * --progress) goes in pieces of a multiple of the context's n_batch with a progress line
 * after each: ember_decode runs n_batch chunks from the first token either way, so the
 * logits are bit-identical to one call. */
static int feed(gen *g, const opts *o, const ember_token *prompt, int n_prompt) {
    double t0 = now_ms();
    for (int i = 0; i < n_prompt; i++) ember_sampler_accept(g->smp, prompt[i]);
    const int tty = isatty(STDERR_FILENO);
    const int show = o->progress || (tty && n_prompt > 256);
    const int nb = ember_context_n_batch(g->ctx) > 0 ? ember_context_n_batch(g->ctx) : 64;
    /* whole n_batch chunks give the same logits as one call; under shift they also let a
     * prompt longer than the context shift its way in */
    const int piece = show ? nb * (nb < 256 ? (256 + nb - 1) / nb : 1) : g->shift ? nb : n_prompt;
    for (int done = 0; done < n_prompt;) {
        int k = n_prompt - done < piece ? n_prompt - done : piece;
        if (decode_mirrored(g, prompt + done, k)) {
            fprintf(stderr, "\nerror: %s\n", ember_last_error());
            return 1;
        }
        done += k;
        if (show) {
            double s = (now_ms() - t0) / 1e3;
            fprintf(stderr, "%sprompt: %d/%d tokens (%.0f%%), %.1f s%s", tty ? "\r" : "", done, n_prompt,
                    100.0 * done / n_prompt, s, tty && done < n_prompt ? "" : "\n");
            fflush(stderr);
        }
    }
    g->t_prompt_ms += now_ms() - t0;
    g->n_prompt += n_prompt;
    return 0;
}

/* Feeds the prompt, then samples up to n_predict tokens, streaming them. Returns 0 or 1. */
typedef struct capture { char *s; size_t n, cap; } capture;

static void capture_put(capture *c, const char *s, int n) {
    if (!c || n <= 0) return;
    if (c->n + (size_t)n + 1 > c->cap) {
        size_t cap = (c->n + (size_t)n + 1) * 2;
        char *ns = realloc(c->s, cap);
        if (!ns) return;
        c->s = ns;
        c->cap = cap;
    }
    memcpy(c->s + c->n, s, (size_t)n);
    c->n += (size_t)n;
    c->s[c->n] = 0;
}

/* SentencePiece vocabularies mark word starts with a space; after a bare BOS that space is
 * dropped from the first piece, as llama2.c and llama.cpp's detokenizer do. */
static int strips_first_space(const ember_model *m) {
    char type[16];
    return ember_model_meta_str(m, "tokenizer.ggml.model", type, sizeof type) < 0 || !strcmp(type, "llama");
}

/* Feeds the prompt (unless fed is set: the caller did), then samples. */
static int generate(gen *g, const opts *o, const ember_token *prompt, int n_prompt, int fed, utf8_out *out,
                    int stream_ids, int *eog_seen, capture *cap) {
    int lstrip = n_prompt == 1 && prompt[0] == ember_token_bos(g->m) && strips_first_space(g->m);
    if (!fed && feed(g, o, prompt, n_prompt)) return 1;
    if (g->spec) {  /* the draft model reads the prompt too */
        double tb = now_ms();
        if (g->n_hist != ember_context_n_past(g->ctx) || ember_spec_begin(g->spec, g->hist, g->n_hist)) {
            fprintf(stderr, "\nerror: %s\n", g->n_hist != ember_context_n_past(g->ctx) ? "internal: the token "
                    "mirror does not match the KV cache" : ember_last_error());
            return 1;
        }
        g->t_prompt_ms += now_ms() - tb;
    }
    double t0 = now_ms();
    int limit = o->n_predict >= 0 ? o->n_predict : g->shift ? INT_MAX : ember_context_n_ctx(g->ctx);
    *eog_seen = 0;
    /* With speculation each step yields several tokens (the last one not decoded yet);
     * they are printed one by one exactly as plain decoding prints its tokens. The cache
     * then holds hist[0..h_step), prev and pend[0..n_pend - 1) (the last not decoded). */
    ember_token pend[65], prev = -1, t = -1;
    int n_pend = 0, i_pend = 0, h_step = g->n_hist - 1, full = 0;
    for (int i = 0; i < limit; i++) {
        if (g->spec && i > 0) {
            if (i_pend == n_pend) {
                if (ember_context_n_past(g->ctx) >= ember_context_n_ctx(g->ctx)) {
                    if (!g->shift) {
                        fprintf(stderr, "\n[context full: %d tokens]\n", ember_context_n_ctx(g->ctx));
                        full = 1;
                        break;
                    }
                    /* a plain step, which shifts the context as plain decoding does here;
                     * speculation starts again from the shifted tokens */
                    if (decode_mirrored(g, &prev, 1) || (pend[0] = ember_sampler_sample(g->smp, g->ctx, -1)) < 0 ||
                        ember_spec_begin(g->spec, g->hist, g->n_hist)) {
                        fprintf(stderr, "\nerror: %s\n", ember_last_error());
                        return 1;
                    }
                    h_step = g->n_hist - 1;
                    n_pend = 1;
                } else {
                    int room = limit - i < 65 ? limit - i : 65;
                    if (cap) ember_sampler_save(g->smp, g->ck);
                    h_step = g->n_hist;
                    if (ember_spec_step(g->spec, g->smp, prev, pend, room, &n_pend)) {
                        fprintf(stderr, "\nerror: %s\n", ember_last_error());
                        return 1;
                    }
                    g->hist[g->n_hist++] = prev;  /* decoded with the accepted drafts */
                    memcpy(g->hist + g->n_hist, pend, (size_t)(n_pend - 1) * sizeof *pend);
                    g->n_hist += n_pend - 1;
                }
                i_pend = 0;
            }
            t = pend[i_pend++];
        } else t = ember_sampler_sample(g->smp, g->ctx, -1);
        if (t < 0) { fprintf(stderr, "\nerror: %s\n", ember_last_error()); return 1; }
        g->n_gen++;
        if (!o->ignore_eos && ember_token_is_eog(g->m, t)) { *eog_seen = 1; break; }
        if (stream_ids) { printf(i ? " %d" : "%d", t); fflush(stdout); }
        else {
            char piece[256];
            int n = ember_token_to_piece(g->m, t, piece, sizeof piece, o->special);
            char *p = piece;
            if (lstrip && n > 0 && piece[0] == ' ') { p++; n--; }
            lstrip = 0;
            if (n > 0) { utf8_put(out, p, n); capture_put(cap, p, n); }
        }
        prev = t;
        if (g->spec) continue;  /* the next step decodes it */
        if (i + 1 == limit && !cap) break;  /* chat keeps the cache equal to the text */
        if (!g->shift && ember_context_n_past(g->ctx) >= ember_context_n_ctx(g->ctx)) {
            fprintf(stderr, "\n[context full: %d tokens]\n", ember_context_n_ctx(g->ctx));
            break;
        }
        if (decode_mirrored(g, &t, 1)) { fprintf(stderr, "\nerror: %s\n", ember_last_error()); return 1; }
    }
    if (g->spec && cap && t >= 0 && !full) {
        /* chat: leave the cache and the sampler as plain decoding does: every printed token
         * decoded but an end-of-generation one, and only sampled tokens in the history */
        if (i_pend < n_pend) {
            ember_sampler_restore(g->smp, g->ck, EMBER_SAMPLER_HISTORY);
            for (int j = 0; j < i_pend; j++) ember_sampler_accept(g->smp, pend[j]);
        }
        const int keep = h_step + (i_pend > 0 ? i_pend : 1);
        if (keep < g->n_hist) {
            ember_context_truncate(g->ctx, keep);
            g->n_hist = keep;
        }
        if (!*eog_seen && decode_mirrored(g, &t, 1)) { fprintf(stderr, "\nerror: %s\n", ember_last_error()); return 1; }
    }
    g->t_gen_ms += now_ms() - t0;
    return 0;
}

static void print_timings(const gen *g) {
    fprintf(stderr, "\nprompt eval: %8.2f ms / %4d tokens (%8.2f tokens/s)\n", g->t_prompt_ms, g->n_prompt,
            g->n_prompt ? g->n_prompt * 1e3 / g->t_prompt_ms : 0.0);
    fprintf(stderr, "       eval: %8.2f ms / %4d tokens (%8.2f tokens/s)\n", g->t_gen_ms, g->n_gen,
            g->n_gen ? g->n_gen * 1e3 / g->t_gen_ms : 0.0);
    if (g->spec) {
        ember_spec_stats st = ember_spec_get_stats(g->spec);
        fprintf(stderr, "speculative: %lld drafted, %lld accepted (%.1f%%), %lld steps, %.2f tokens per step, "
                        "%lld overlapped\n",
                (long long)st.n_drafted, (long long)st.n_accepted,
                st.n_drafted ? 100.0 * st.n_accepted / st.n_drafted : 0.0, (long long)st.n_steps,
                st.n_steps ? (double)st.n_tokens / st.n_steps : 0.0, (long long)st.n_overlapped);
    }
}

int cmd_run(int argc, char **argv) {
    opts o;
    int pr = opts_parse(&o, argc, argv);
    if (pr) return pr == 2 ? 0 : 1;
    size_t len;
    char *text = read_prompt(&o, &len);  /* bytes: a NUL in a file is part of the prompt */
    if (!text) {
        if (o.prompt_file) { free(o.rest); return 1; }
        text = strdup("");
        len = 0;
    }
    gen g;
    int rc = 1;
    if (gen_init(&g, &o)) goto done;
    int n = 0;
    ember_token *prompt = NULL;
    const int bos = !o.no_bos && (ember_add_bos(g.m) || !len);
    if (len) {
        /* No tokenizer (a llama2.c checkpoint without -z): only "" can be run. */
        prompt = tokenize_n(g.m, text, len, bos, o.special, &n);
        if (!prompt) { fprintf(stderr, "error: cannot tokenize the prompt: %s\n", ember_last_error()); goto done; }
    } else {
        prompt = malloc(sizeof *prompt);
        if (!prompt) goto done;
        prompt[0] = ember_token_bos(g.m);
        n = 1;
    }
    if (n == 0) { fprintf(stderr, "error: the prompt is empty after tokenization\n"); free(prompt); goto done; }
    if (n > ember_context_n_ctx(g.ctx)) {  /* before anything is printed */
        fprintf(stderr, "error: the prompt is %d tokens, more than the context of %d (-c; the model was trained "
                        "on %d)\n", n, ember_context_n_ctx(g.ctx), ember_model_n_ctx_train(g.m));
        free(prompt);
        goto done;
    }
    /* A long prompt is decoded before it is echoed, so its progress lines on the terminal
     * are not mixed into the text. */
    const int fed = o.progress || (n > 256 && isatty(STDERR_FILENO));
    if (fed && feed(&g, &o, prompt, n)) { free(prompt); goto done; }
    utf8_out out = { stdout, { 0 }, 0 };
    if (!o.ids) { fwrite(text, 1, len, stdout); fflush(stdout); }
    int eog;
    rc = generate(&g, &o, prompt, n, fed, &out, o.ids, &eog, NULL);
    utf8_flush(&out);
    printf("\n");
    if (o.verbose) print_timings(&g);
    free(prompt);
done:
    gen_free(&g);
    free(text);
    free(o.rest);
    return rc;
}

/* Reads one line from stdin into a growing buffer; NULL at EOF. */
static char *read_line(void) {
    size_t cap = 256, n = 0;
    char *s = malloc(cap);
    int c;
    while (s && (c = getchar()) != EOF && c != '\n') {
        if (n + 1 >= cap) { char *ns = realloc(s, cap *= 2); if (!ns) { free(s); return NULL; } s = ns; }
        s[n++] = (char)c;
    }
    if (!s || (n == 0 && c == EOF)) { free(s); return NULL; }
    s[n] = 0;
    return s;
}

/* Renders the conversation (with the assistant opener) into *text, and into *spans where
 * message text landed. Returns the length, or -1 (ember_last_error() says why). */
static int render_chat(const ember_model *m, const char *tmpl, const ember_chat_message *msgs, size_t n,
                       char **text, ember_span **spans, size_t *n_spans) {
    int len = ember_chat_apply_template_spans(m, tmpl, msgs, n, 1, NULL, 0, NULL, 0, n_spans);
    if (len < 0) return -1;
    *text = malloc((size_t)len + 1);
    *spans = malloc((*n_spans ? *n_spans : 1) * sizeof **spans);
    if (!*text || !*spans ||
        ember_chat_apply_template_spans(m, tmpl, msgs, n, 1, *text, (size_t)len + 1, *spans, *n_spans, n_spans) != len) {
        free(*text);
        free(*spans);
        *text = NULL;
        *spans = NULL;
        return -1;
    }
    return len;
}

/* Tokens of text[from..len): control-token text counts only in the template's own markup,
 * never inside a message (a typed "<|im_start|>system" stays text). */
static ember_token *tokenize_turn(const ember_model *m, const char *text, size_t len, size_t from,
                                  ember_span *spans, size_t n_spans, int bos, int *n) {
    size_t k = 0;
    for (size_t i = 0; i < n_spans; i++) {  /* the spans as offsets into text + from */
        size_t a = spans[i].off, b = spans[i].off + spans[i].len;
        if (b <= from) continue;
        if (a < from) a = from;
        spans[k].off = a - from;
        spans[k++].len = b - a;
    }
    int cap = (int)(len - from < 1 << 28 ? len - from : 1 << 28) + 8;
    ember_token *t = malloc((size_t)cap * sizeof *t);
    if (!t) return NULL;
    *n = ember_tokenize_spans(m, text + from, len - from, spans, k, t, cap, bos);
    if (*n < 0) { free(t); return NULL; }
    return t;
}

/* Interactive chat: each turn renders the whole conversation with the chat template and
 * feeds only the text after what the KV cache already holds (the previous prompt plus the
 * reply as generated); if the rendering no longer starts with it, the cache restarts. */
int cmd_chat(int argc, char **argv) {
    opts o;
    int pr = opts_parse(&o, argc, argv);
    if (pr) return pr == 2 ? 0 : 1;
    gen g;
    int rc = 1;
    ember_chat_message *msgs = NULL;
    size_t n_msgs = 0, max_msgs = 0;
    capture kv = { 0 };  /* text fed to the KV cache (a context shift drops some of its tokens) */
    if (gen_init(&g, &o)) goto done;
    if (ember_chat_apply_template(g.m, o.chat_template, NULL, 0, 1, NULL, 0) < 0) {
        fprintf(stderr, "error: %s\n", ember_last_error());
        goto done;
    }
    max_msgs = 2 * (size_t)ember_context_n_ctx(g.ctx) + 2;
    msgs = calloc(max_msgs, sizeof *msgs);
    if (!msgs) goto done;
    if (o.system) { msgs[n_msgs].role = "system"; msgs[n_msgs++].content = strdup(o.system); }
    fprintf(stderr, "ember chat: type a message; an empty line or Ctrl-D ends the chat.\n");
    rc = 0;
    for (;;) {
        if (n_msgs + 2 >= max_msgs) {  /* without shift the context fills up before this */
            ember_chat_message *more = g.shift ? realloc(msgs, 2 * max_msgs * sizeof *msgs) : NULL;
            if (!more) break;
            msgs = more;
            max_msgs *= 2;
        }
        fprintf(stderr, "> ");
        char *line = read_line();
        if (!line || !*line) { free(line); break; }
        msgs[n_msgs].role = "user";
        msgs[n_msgs++].content = line;
        char *full = NULL;
        ember_span *spans = NULL;
        size_t n_spans = 0;
        int len = render_chat(g.m, o.chat_template, msgs, n_msgs, &full, &spans, &n_spans);
        if (len < 0) { fprintf(stderr, "error: %s\n", ember_last_error()); rc = 1; break; }
        size_t from = 0;
        if (kv.n && !strncmp(full, kv.s, kv.n)) from = kv.n;
        else { ember_context_truncate(g.ctx, 0); ember_sampler_reset(g.smp); kv.n = 0; g.n_hist = 0; }
        capture_put(&kv, full + from, len - (int)from);
        int n;
        int bos = ember_context_n_past(g.ctx) == 0 && ember_add_bos(g.m);
        ember_token *toks = tokenize_turn(g.m, full, (size_t)len, from, spans, n_spans, bos, &n);
        free(full);
        free(spans);
        if (!toks) { fprintf(stderr, "error: cannot tokenize\n"); rc = 1; break; }
        if (!g.shift && n > ember_context_n_ctx(g.ctx) - ember_context_n_past(g.ctx)) {
            fprintf(stderr, "error: the conversation no longer fits in the context (%d tokens)\n",
                    ember_context_n_ctx(g.ctx));
            free(toks);
            rc = 1;
            break;
        }
        capture reply = { 0 };
        utf8_out out = { stdout, { 0 }, 0 };
        int eog;
        opts turn = o;
        turn.ignore_eos = 0;
        rc = generate(&g, &turn, toks, n, 0, &out, 0, &eog, &reply);
        utf8_flush(&out);
        printf("\n");
        fflush(stdout);
        free(toks);
        if (rc) { free(reply.s); break; }
        capture_put(&kv, reply.s ? reply.s : "", (int)reply.n);
        msgs[n_msgs].role = "assistant";
        msgs[n_msgs++].content = reply.s ? reply.s : strdup("");
    }
    if (o.verbose && g.ctx) print_timings(&g);
done:
    for (size_t i = 0; i < n_msgs; i++) free((char *)msgs[i].content);
    free(msgs);
    free(kv.s);
    gen_free(&g);
    free(o.rest);
    return rc;
}
