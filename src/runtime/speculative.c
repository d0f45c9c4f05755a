/* speculative.c: speculative decoding (docs/techniques.md §9): draft a few tokens
 * cheaply, verify them with the target model in one batch, keep the accepted prefix.
 *
 * State between steps: the target's sequence holds the history h (every token of the
 * generation so far except the last one sampled), and `last`, sampled from the logits after
 * h and already accepted into the target's sampler, waits to be decoded. A step
 *   1. drafts d_0..d_{k-1} to follow h + last: by prompt lookup (the tokens after the latest
 *      earlier occurrence of the longest matching suffix n-gram of h + last) or with the
 *      draft model (its own context and sampler);
 *   2. decodes [last, d_0..d_{k-1}] in the target with logits for every position; row i
 *      is the target's next-token logits after h + last + d_0..d_{i-1};
 *   3. verifies d_i against row i in order, each accepted token entering the target's
 *      sampler history, so the target's distribution at draft i is taken with the history
 *      extended by d_0..d_{i-1}, as plain decoding would have it:
 *      - greedy: t = the sampler's pick from row i; d_i is accepted iff t == d_i, and on a
 *        mismatch t is the target's own token. The output is plain greedy decoding's,
 *        token for token, because the batched rows are bit-identical to single-token ones.
 *      - sampling (Leviathan et al. 2023, Chen et al. 2023): p = the target sampler's
 *        distribution for row i after all transforms, q = the one d_i was drawn from (a
 *        point mass for lookup drafts); accept with probability min(1, p(d_i)/q(d_i)),
 *        otherwise draw the replacement from max(0, p - q) normalized, and stop;
 *      after k accepted drafts one more token is sampled from row k;
 *   4. truncates both contexts to h + last + the accepted drafts. The output (the accepted
 *      drafts and the final sampled token) is at least one token, and its last token is
 *      the next step's `last`.
 * ember_spec_draft is step 1, ember_spec_accept steps 3 and 4; between them the caller
 * runs step 2, alone (ember_spec_step) or inside a batch of its own with other sequences
 * (a server), so the verification rows are read at the batch indices it says.
 * The overlap (params.overlap, a draft model at temperature 0, ember_spec_step only; the
 * Dovetail idea of docs/techniques.md §9 on one CPU): while the target verifies a block
 * d_0..d_{k-1}, a worker thread decodes d_{k-1} in the draft context and drafts on as if
 * the block were accepted: e_0 (its guess of the target's next token), then e_1..e_m. If
 * the target accepts the whole block and its own next token is e_0, the next step's
 * drafts are e_1..e_m, already made, and the worker starts on the block after them;
 * otherwise the worker is told to stop and the next step drafts as usual. Joined before
 * the step returns, the worker touches only the draft context, its sampler and its token
 * list, and the output is the target's verification alone, so it is unchanged.
 * The draft sampler is the target's parameters with its own seed; its penalty history is
 * copied from the target's at each step (a checkpoint restore), so the drafts see the
 * history the target sees. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "runtime/internal.h"
#include "runtime/sampler.h"

/* Contexts are used through the public calls (ember_seq_n_past, ember_context_n_ctx,
 * ember_decode_batch, ember_seq_truncate), so the KV cache's layout stays its own. */

#define SPEC_DRAFT_CAP 64

struct ember_spec {
    ember_context *tgt, *dft;
    ember_spec_params prm;
    int n_vocab;
    ember_token *hist;        /* (target n_ctx + 1) h, then last at hist[n_hist] during a step */
    int n_hist;               /* tokens of h: what the target's sequence holds */
    ember_token *dhist;       /* (draft n_ctx) the tokens in the draft's sequence */
    int n_dhist;
    int cur_max;              /* the adaptive draft length */
    em_sampler *dsmp;         /* the draft's sampler, made from the target sampler's params */
    em_sampler_params dsmp_params;
    em_sampler_state *xfer;   /* carries the target's history into dsmp */
    float *p;                 /* (n_vocab) the target's distribution */
    float *q;                 /* (draft_max, n_vocab) the draft's, when sampling with a draft model */
    ember_token *batch;       /* (SPEC_DRAFT_CAP + 1) last and the drafts */
    int *bseq;                /* (SPEC_DRAFT_CAP + 1) all prm.seq */
    int8_t *bwant;            /* (SPEC_DRAFT_CAP + 1) all 1 */
    int n_pend;               /* drafts in batch[1..] awaiting ember_spec_accept; -1: none */
    int pend_model_q;         /* they were drawn from the draft model's q rows */
    /* overlap: the worker drafts after wfull[0..wn) into pre while the target verifies */
    pthread_t wk;
    atomic_int wk_cancel;     /* the block was not accepted whole: stop drafting */
    ember_token *wfull;       /* (target n_ctx + SPEC_DRAFT_CAP + 1) h + last + the block's drafts */
    int wn, wk_m;             /* its length; the worker drafts e_0..e_wk_m */
    ember_status wk_st;
    ember_token pre[SPEC_DRAFT_CAP + 1];  /* e_0 (its guess of the target's next token), then
                                             the drafts that follow it */
    int n_pre;
    int pre_valid, pre_base;  /* pre holds the drafts after hist[0..pre_base) + pre[0] */
    ember_spec_stats st;
};

ember_spec_params ember_spec_default_params(void) {
    ember_spec_params p;
    memset(&p, 0, sizeof p);
    p.lookup_ngram = 3;
    p.draft_max = 8;
    p.adaptive = 1;
    return p;
}

void ember_spec_free(ember_spec *sp) {
    if (!sp) return;
    free(sp->hist);
    free(sp->dhist);
    em_sampler_free(sp->dsmp);
    em_sampler_state_free(sp->xfer);
    free(sp->p);
    free(sp->q);
    free(sp->batch);
    free(sp->bseq);
    free(sp->bwant);
    free(sp->wfull);
    free(sp);
}

/* The adaptive length's floor: max(1, draft_min). */
static int len_floor(const ember_spec *sp) { return sp->prm.draft_min > 1 ? sp->prm.draft_min : 1; }

ember_status ember_spec_new(ember_context *tgt, const ember_spec_params *params, ember_spec **out) {
    if (!out) return em_fail(EMBER_E_INVALID, "ember_spec_new: out is NULL");
    *out = NULL;
    if (!tgt) return em_fail(EMBER_E_INVALID, "ember_spec_new: target context is NULL");
    ember_spec_params p = params ? *params : ember_spec_default_params();
    if (p.draft_max < 1 || p.draft_max > SPEC_DRAFT_CAP)
        return em_fail(EMBER_E_INVALID, "draft_max must be in [1, %d], got %d", SPEC_DRAFT_CAP, p.draft_max);
    if (p.draft_min < 0 || p.draft_min > p.draft_max)
        return em_fail(EMBER_E_INVALID, "draft_min must be in [0, draft_max = %d], got %d", p.draft_max, p.draft_min);
    if (!(p.draft_p_min >= 0.0f && p.draft_p_min <= 1.0f))
        return em_fail(EMBER_E_INVALID, "draft_p_min must be in [0, 1], got %g", p.draft_p_min);
    if (p.lookup_ngram < 0 || p.lookup_ngram > 64)
        return em_fail(EMBER_E_INVALID, "lookup_ngram must be in [0, 64], got %d", p.lookup_ngram);
    if (p.seq < 0 || p.seq >= ember_context_n_seq(tgt))
        return em_fail(EMBER_E_INVALID, "sequence %d is out of range [0, %d)", p.seq, ember_context_n_seq(tgt));
    if (p.draft) {
        if (p.draft == tgt) return em_fail(EMBER_E_INVALID, "the draft context must not be the target context");
        if (p.draft->m->hp.n_vocab != tgt->m->hp.n_vocab)
            return em_fail(EMBER_E_INVALID, "the draft model has %d tokens, the target %d: they must share the vocabulary",
                           p.draft->m->hp.n_vocab, tgt->m->hp.n_vocab);
        if (p.seq >= ember_context_n_seq(p.draft))
            return em_fail(EMBER_E_INVALID, "sequence %d is out of range [0, %d) in the draft context", p.seq,
                           ember_context_n_seq(p.draft));
    }
    /* a recurrent (SSM) state rolls back through checkpoints: one per token of a step */
    ember_status cst = em_ssm_set_checkpoints(&tgt->kv.ssm, p.draft_max + 2);
    if (cst || (p.draft && (cst = em_ssm_set_checkpoints(&p.draft->kv.ssm, p.draft_max + 2)))) return cst;
    ember_spec *sp = calloc(1, sizeof *sp);
    if (!sp) return em_fail(EMBER_E_NOMEM, "out of memory");
    sp->tgt = tgt;
    sp->dft = p.draft;
    sp->prm = p;
    sp->n_vocab = tgt->m->hp.n_vocab;
    sp->cur_max = p.draft_max;
    sp->n_pend = -1;
    sp->hist = malloc(((size_t)ember_context_n_ctx(tgt) + 1) * sizeof *sp->hist);
    sp->p = malloc((size_t)sp->n_vocab * sizeof *sp->p);
    sp->batch = malloc((SPEC_DRAFT_CAP + 1) * sizeof *sp->batch);
    sp->bseq = malloc((SPEC_DRAFT_CAP + 1) * sizeof *sp->bseq);
    sp->bwant = malloc(SPEC_DRAFT_CAP + 1);
    if (p.draft) sp->dhist = malloc(((size_t)ember_context_n_ctx(p.draft) + 1) * sizeof *sp->dhist);
    if (p.draft && p.overlap)
        sp->wfull = malloc(((size_t)ember_context_n_ctx(tgt) + SPEC_DRAFT_CAP + 1) * sizeof *sp->wfull);
    if (!sp->hist || !sp->p || !sp->batch || !sp->bseq || !sp->bwant || (p.draft && !sp->dhist) ||
        (p.draft && p.overlap && !sp->wfull)) {
        ember_spec_free(sp);
        return em_fail(EMBER_E_NOMEM, "out of memory");
    }
    for (int i = 0; i <= SPEC_DRAFT_CAP; i++) { sp->bseq[i] = p.seq; sp->bwant[i] = 1; }
    *out = sp;
    return EMBER_OK;
}

ember_spec_stats ember_spec_get_stats(const ember_spec *sp) {
    ember_spec_stats z = { 0, 0, 0, 0, 0 };
    return sp ? sp->st : z;
}

/* Brings the draft's sequence to full[0..n) with the logits of full[n-1] current, reusing
 * the prefix it already holds. 1: the draft cannot hold them (no drafting this step). */
static ember_status draft_sync(ember_spec *sp, const ember_token *full, int n, int *skip) {
    ember_context *d = sp->dft;
    const int seq = sp->prm.seq;
    *skip = 1;
    if (n < 1 || n > ember_context_n_ctx(d)) return EMBER_OK;
    if (ember_seq_n_past(d, seq) != sp->n_dhist) sp->n_dhist = 0;  /* someone else used the sequence */
    int c = 0;
    while (c < sp->n_dhist && c < n && sp->dhist[c] == full[c]) c++;
    if (c == n) c = n - 1;  /* its logits are gone: decode the last token again */
    ember_status st = ember_seq_truncate(d, seq, c);
    if (st == EMBER_E_UNSUPPORTED) st = ember_seq_truncate(d, seq, c = 0);  /* a recurrent draft: no checkpoint */
    if (st) return st;
    sp->n_dhist = c;
    while (c < n) {
        int k = n - c < SPEC_DRAFT_CAP + 1 ? n - c : SPEC_DRAFT_CAP + 1;
        ember_batch b = { k, full + c, sp->bseq, NULL };
        if ((st = ember_decode_batch(d, &b))) return st;
        memcpy(sp->dhist + c, full + c, (size_t)k * sizeof *full);
        c += k;
        sp->n_dhist = c;
    }
    *skip = 0;
    return EMBER_OK;
}

ember_status ember_spec_begin(ember_spec *sp, const ember_token *tokens, int n) {
    if (!sp || (!tokens && n)) return em_fail(EMBER_E_INVALID, "ember_spec_begin: NULL argument");
    if (n < 0 || n != ember_seq_n_past(sp->tgt, sp->prm.seq))
        return em_fail(EMBER_E_INVALID, "ember_spec_begin: %d tokens given, the target's sequence holds %d", n,
                       ember_seq_n_past(sp->tgt, sp->prm.seq));
    memcpy(sp->hist, tokens, (size_t)n * sizeof *tokens);
    sp->n_hist = n;
    sp->n_pend = -1;
    sp->pre_valid = 0;
    sp->cur_max = sp->prm.draft_max;
    if (sp->dft && n > 0) {
        int skip;
        ember_status st = draft_sync(sp, tokens, n, &skip);
        if (st) return st;
    }
    return EMBER_OK;
}

/* Prompt lookup: the tokens that followed the latest earlier occurrence of the last g tokens
 * of full[0..n), for g = lookup_ngram down to 1; at most k of them. Returns the count. */
static int draft_lookup(const ember_spec *sp, const ember_token *full, int n, int k, ember_token *out) {
    for (int g = sp->prm.lookup_ngram; g >= 1; g--) {
        if (n < g + 1) continue;
        const ember_token *suf = full + n - g;
        for (int j = n - g - 1; j >= 0; j--) {
            if (full[j] != suf[0] || memcmp(full + j, suf, (size_t)g * sizeof *suf)) continue;
            int m = 0;
            while (m < k && j + g + m < n) { out[m] = full[j + g + m]; m++; }
            return m;
        }
    }
    return 0;
}

/* The draft sampler for target sampler t: same parameters, another seed; its history is
 * set to t's. */
static ember_status draft_sampler_sync(ember_spec *sp, const em_sampler *t) {
    em_sampler_params tp = em_sampler_get_params(t);
    tp.seed = (tp.seed ^ 0x5DEECE66Dull) & 0xFFFFFFFFull;  /* a fixed, distinct stream */
    if (tp.seed == EM_SAMPLER_SEED_RANDOM) tp.seed = 0;
    if (!sp->dsmp || memcmp(&tp, &sp->dsmp_params, sizeof tp)) {
        em_sampler_free(sp->dsmp);
        em_sampler_state_free(sp->xfer);
        sp->xfer = NULL;
        sp->dsmp = em_sampler_new(&tp, sp->n_vocab);
        if (!sp->dsmp || !(sp->xfer = em_sampler_state_new(t))) return em_fail(EMBER_E_NOMEM, "out of memory");
        sp->dsmp_params = tp;
    }
    if (em_sampler_save(t, sp->xfer) || em_sampler_restore(sp->dsmp, sp->xfer, EM_SAMPLER_STATE_HISTORY))
        return em_fail(EMBER_E_INVALID, "the sampler does not match the speculative state");
    return EMBER_OK;
}

/* Softmax (temperature 1) probability of the most likely token of a row. */
static float top_prob(const float *l, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = l[i] > mx ? l[i] : mx;
    if (mx == -INFINITY) return 0.0f;
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += expf(l[i] - mx);
    return (float)(1.0 / sum);
}

/* Draft-model drafting: up to k tokens after full[0..n) into out; q rows filled when
 * sampling. Returns the count (0 when the draft cannot run). */
static ember_status draft_model(ember_spec *sp, const em_sampler *tsmp, const ember_token *full, int n, int k,
                                ember_token *out, int *n_out) {
    *n_out = 0;
    int skip;
    ember_status st = draft_sync(sp, full, n, &skip);
    if (st || skip) return st;
    if (k > ember_context_n_ctx(sp->dft) - n + 1) k = ember_context_n_ctx(sp->dft) - n + 1;
    if ((st = draft_sampler_sync(sp, tsmp))) return st;
    const int greedy = em_sampler_greedy(sp->dsmp);
    if (!greedy && !sp->q) {
        sp->q = malloc((size_t)sp->prm.draft_max * sp->n_vocab * sizeof *sp->q);
        if (!sp->q) return em_fail(EMBER_E_NOMEM, "out of memory for the draft's distributions");
    }
    for (int j = 0; j < k; j++) {
        const float *row = ember_get_logits(sp->dft, -1);
        if (!row) return em_fail(EMBER_E_INVALID, "draft: no logits");
        ember_token d;
        if (greedy) {
            if (sp->prm.draft_p_min > 0.0f && top_prob(row, sp->n_vocab) < sp->prm.draft_p_min) break;
            d = em_sampler_sample(sp->dsmp, row);
        } else {
            float *q = sp->q + (size_t)j * sp->n_vocab;
            em_sampler_probs(sp->dsmp, row, q);
            if (sp->prm.draft_p_min > 0.0f) {
                float mx = 0.0f;
                for (int i = 0; i < sp->n_vocab; i++) mx = q[i] > mx ? q[i] : mx;
                if (mx < sp->prm.draft_p_min) break;
            }
            /* A draw from the distribution q describes (the same chain). */
            d = em_sampler_sample(sp->dsmp, row);
            if (!(q[d] > 0.0f)) break;  /* rounding at the edge of the support: stop here */
        }
        em_sampler_accept(sp->dsmp, d);
        out[(*n_out)++] = d;
        if (j + 1 < k) {
            ember_batch b = { 1, &d, sp->bseq, NULL };
            if ((st = ember_decode_batch(sp->dft, &b))) return st;
            sp->dhist[sp->n_dhist++] = d;
        }
    }
    return EMBER_OK;
}

/* Draws from the unnormalized weights w[0..n) with u in [0, 1); -1 if they sum to 0. */
static int draw_dense(const float *w, int n, double u) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += w[i] > 0.0f ? w[i] : 0.0f;
    if (!(sum > 0.0)) return -1;
    double target = u * sum, cum = 0.0;
    int last = -1;
    for (int i = 0; i < n; i++) {
        if (!(w[i] > 0.0f)) continue;
        cum += w[i];
        last = i;
        if (cum > target) return i;
    }
    return last;
}

/* Checks the arguments a step shares. */
static ember_status step_check(const ember_spec *sp, const ember_sampler *s, ember_token last) {
    if (s->n_vocab != sp->n_vocab)
        return em_fail(EMBER_E_INVALID, "the sampler is for %d tokens, the target model has %d", s->n_vocab, sp->n_vocab);
    if (last < 0 || last >= sp->n_vocab)
        return em_fail(EMBER_E_INVALID, "token %d is out of range [0, %d)", last, sp->n_vocab);
    return EMBER_OK;
}

/* Step 1: the drafts after h + last into batch[1..], batch[0] = last; *k_out gets the
 * length asked for. The overlap's drafts are taken when they follow exactly h + last. */
static ember_status draft_block(ember_spec *sp, em_sampler *ts, ember_token last, int max, int *k_out) {
    ember_context *t = sp->tgt;
    const int seq = sp->prm.seq;
    const int use_pre = sp->pre_valid && sp->pre_base == sp->n_hist && sp->pre[0] == last;
    *k_out = 0;
    sp->n_pend = -1;
    sp->pre_valid = 0;
    if (ember_seq_n_past(t, seq) != sp->n_hist)
        return em_fail(EMBER_E_INVALID, "the target's sequence holds %d tokens, the speculative state %d "
                       "(call ember_spec_begin)", ember_seq_n_past(t, seq), sp->n_hist);
    const int room = ember_context_n_ctx(t) - sp->n_hist;
    if (room < 1) return em_fail(EMBER_E_CONTEXT_FULL, "the context is full (%d tokens)", ember_context_n_ctx(t));
    int k = sp->prm.adaptive ? sp->cur_max : sp->prm.draft_max;
    if (k > max - 1) k = max - 1;
    if (k > room - 1) k = room - 1;
    ember_token *drafts = sp->batch + 1;
    int nd = 0;
    sp->hist[sp->n_hist] = last;
    const int n_full = sp->n_hist + 1;
    ember_status st = EMBER_OK;
    if (k > 0) {
        if (use_pre) {
            nd = sp->n_pre - 1 < k ? sp->n_pre - 1 : k;
            memcpy(drafts, sp->pre + 1, (size_t)nd * sizeof *drafts);
            sp->st.n_overlapped++;
        } else if (sp->dft) {
            st = draft_model(sp, ts, sp->hist, n_full, k, drafts, &nd);
        } else if (sp->prm.lookup_ngram > 0) {
            nd = draft_lookup(sp, sp->hist, n_full, k, drafts);
        }
        if (st) return st;
        if (nd < sp->prm.draft_min) nd = 0;
    }
    sp->batch[0] = last;
    sp->n_pend = nd;
    /* q is the draft model's (the overlap drafts greedily only), else a point mass */
    sp->pend_model_q = sp->dft && !em_sampler_greedy(ts);
    *k_out = k;
    return EMBER_OK;
}

ember_status ember_spec_draft(ember_spec *sp, ember_sampler *s, ember_token last, int max,
                              const ember_token **tokens, int *n_tokens) {
    if (tokens) *tokens = NULL;
    if (n_tokens) *n_tokens = 0;
    if (!sp || !s || !tokens || !n_tokens || max < 1) return em_fail(EMBER_E_INVALID, "ember_spec_draft: bad argument");
    ember_status st = step_check(sp, s, last);
    if (st) return st;
    sp->pre_valid = 0;
    int k;
    if ((st = draft_block(sp, s->s, last, max, &k))) return st;
    *tokens = sp->batch;
    *n_tokens = sp->n_pend + 1;
    return EMBER_OK;
}

ember_status ember_spec_accept(ember_spec *sp, ember_sampler *s, int row, ember_token *out, int *n_out) {
    if (n_out) *n_out = 0;
    if (!sp || !s || !out || !n_out || row < 0) return em_fail(EMBER_E_INVALID, "ember_spec_accept: bad argument");
    ember_status st = step_check(sp, s, 0);
    if (st) return st;
    const int nd = sp->n_pend;
    if (nd < 0) return em_fail(EMBER_E_INVALID, "ember_spec_accept: no draft pending (call ember_spec_draft)");
    ember_context *t = sp->tgt;
    const int seq = sp->prm.seq;
    const int n_full = sp->n_hist + 1;
    if (ember_seq_n_past(t, seq) != n_full + nd)
        return em_fail(EMBER_E_INVALID, "ember_spec_accept: the target's sequence holds %d tokens, %d expected "
                       "(the %d drafted tokens decoded)", ember_seq_n_past(t, seq), n_full + nd, nd + 1);
    for (int i = 0; i <= nd; i++)
        if (!ember_get_logits(t, row + i))
            return em_fail(EMBER_E_INVALID, "ember_spec_accept: no logits for batch token %d", row + i);
    sp->n_pend = -1;
    em_sampler *ts = s->s;
    const int greedy = em_sampler_greedy(ts);
    const int model_q = sp->pend_model_q && !greedy;
    const ember_token *drafts = sp->batch + 1;

    int acc = 0, n = 0, stop = 0;
    for (int i = 0; i < nd && !stop; i++) {
        const float *lg = ember_get_logits(t, row + i);
        const ember_token d = drafts[i];
        ember_token tok;
        if (greedy) {
            tok = em_sampler_sample(ts, lg);
            stop = tok != d;
        } else {
            em_sampler_probs(ts, lg, sp->p);
            const double r = em_sampler_uniform(ts);
            const float qd = model_q ? sp->q[(size_t)i * sp->n_vocab + d] : 1.0f;
            if (r * qd < sp->p[d]) {
                tok = d;
            } else {
                /* the residual max(0, p - q), drawn in place over p */
                if (model_q) {
                    const float *q = sp->q + (size_t)i * sp->n_vocab;
                    for (int v = 0; v < sp->n_vocab; v++) sp->p[v] = sp->p[v] > q[v] ? sp->p[v] - q[v] : 0.0f;
                } else {
                    sp->p[d] = 0.0f;
                }
                int x = draw_dense(sp->p, sp->n_vocab, em_sampler_uniform(ts));
                tok = x >= 0 ? x : em_sampler_sample(ts, lg);  /* p == q up to rounding */
                stop = 1;
            }
        }
        em_sampler_accept(ts, tok);
        out[n++] = tok;
        if (stop) break;
        if (ember_token_is_eog(t->m, tok)) { acc++; stop = 2; break; }
        acc++;
    }
    if (!stop) {  /* every draft accepted: one more token from the last row */
        ember_token tok = em_sampler_sample(ts, ember_get_logits(t, row + nd));
        em_sampler_accept(ts, tok);
        out[n++] = tok;
    }

    /* roll back: the target keeps h + last + the accepted drafts that precede the
     * output's last token (an accepted end-of-generation draft is that token) */
    const int kept = n - 1;
    if ((st = ember_seq_truncate(t, seq, n_full + kept))) return st;
    memcpy(sp->hist + n_full, out, (size_t)kept * sizeof *out);
    sp->n_hist = n_full + kept;

    if (nd > 0) {
        if (acc == nd && stop != 2) sp->cur_max = sp->cur_max + 2 < sp->prm.draft_max ? sp->cur_max + 2 : sp->prm.draft_max;
        else if (acc < nd) sp->cur_max = sp->cur_max - 1 > len_floor(sp) ? sp->cur_max - 1 : len_floor(sp);
    }
    sp->st.n_steps++;
    sp->st.n_drafted += nd;
    sp->st.n_accepted += acc;
    sp->st.n_tokens += n;
    *n_out = n;
    return EMBER_OK;
}

/* The overlap's worker: brings the draft's sequence to wfull[0..wn) (decoding the block's
 * last draft), then drafts e_0..e_wk_m greedily, decoding all but the last, until
 * cancelled. Touches only the draft context, dsmp, dhist and pre. */
static void *overlap_worker(void *arg) {
    ember_spec *sp = arg;
    int skip;
    sp->n_pre = 0;
    sp->wk_st = draft_sync(sp, sp->wfull, sp->wn, &skip);
    if (sp->wk_st || skip) return NULL;
    int m = sp->wk_m;
    if (m > ember_context_n_ctx(sp->dft) - sp->wn) m = ember_context_n_ctx(sp->dft) - sp->wn;
    for (int j = 0; j <= m && !atomic_load(&sp->wk_cancel); j++) {
        const float *row = ember_get_logits(sp->dft, -1);
        if (!row) break;
        if (j > 0 && sp->prm.draft_p_min > 0.0f && top_prob(row, sp->n_vocab) < sp->prm.draft_p_min) break;
        ember_token e = em_sampler_sample(sp->dsmp, row);
        em_sampler_accept(sp->dsmp, e);
        sp->pre[sp->n_pre++] = e;
        if (j == m) break;
        ember_batch b = { 1, &e, sp->bseq, NULL };
        if ((sp->wk_st = ember_decode_batch(sp->dft, &b))) break;
        sp->dhist[sp->n_dhist++] = e;
    }
    return NULL;
}

/* ember_spec_step with the overlap: the block's drafts come from the worker's last run when
 * it guessed right (else from draft_model), and while the target verifies them the worker
 * drafts the block after them. The output is the target's verification alone, so it is
 * the sequential step's token for token. */
static ember_status overlap_step(ember_spec *sp, ember_sampler *s, ember_token last, ember_token *out, int max,
                                 int *n_out) {
    em_sampler *ts = s->s;
    int k;
    ember_status st = draft_block(sp, ts, last, max, &k);
    if (st) return st;
    const int nd = sp->n_pend, n_full = sp->n_hist + 1;
    const ember_token *drafts = sp->batch + 1;

    /* the worker drafts after the whole block, from the history the target will have */
    int launched = 0;
    if (k > 0 && n_full + nd < ember_context_n_ctx(sp->dft) && !(st = draft_sampler_sync(sp, ts))) {
        for (int i = 0; i < nd; i++) em_sampler_accept(sp->dsmp, drafts[i]);
        memcpy(sp->wfull, sp->hist, (size_t)n_full * sizeof *sp->wfull);
        memcpy(sp->wfull + n_full, drafts, (size_t)nd * sizeof *drafts);
        sp->wn = n_full + nd;
        sp->wk_m = sp->cur_max + 2 < sp->prm.draft_max ? sp->cur_max + 2 : sp->prm.draft_max;
        sp->wk_st = EMBER_OK;
        sp->n_pre = 0;
        atomic_store(&sp->wk_cancel, 0);
        launched = pthread_create(&sp->wk, NULL, overlap_worker, sp) == 0;
    }
    if (st) { sp->n_pend = -1; return st; }

    ember_batch b = { nd + 1, sp->batch, sp->bseq, sp->bwant };
    const int64_t acc0 = sp->st.n_accepted;
    st = ember_decode_batch(sp->tgt, &b);
    if (st) sp->n_pend = -1;
    else st = ember_spec_accept(sp, s, 0, out, n_out);
    /* the worker's block is the next one when every draft was accepted and the target's
     * own next token is the worker's guess */
    const int whole = !st && sp->st.n_accepted - acc0 == nd && *n_out == nd + 1;
    if (launched) {
        if (!whole) atomic_store(&sp->wk_cancel, 1);
        pthread_join(sp->wk, NULL);
        if (whole && !sp->wk_st && sp->n_pre > 0 && sp->pre[0] == out[nd]) {
            sp->pre_valid = 1;
            sp->pre_base = sp->n_hist;
        }
    }
    return st;
}

ember_status ember_spec_step(ember_spec *sp, ember_sampler *s, ember_token last, ember_token *out, int max,
                             int *n_out) {
    if (n_out) *n_out = 0;
    if (!sp || !s || !out || !n_out || max < 1) return em_fail(EMBER_E_INVALID, "ember_spec_step: bad argument");
    ember_status st = step_check(sp, s, last);
    if (st) return st;
    if (sp->prm.overlap && sp->dft && em_sampler_greedy(s->s)) return overlap_step(sp, s, last, out, max, n_out);
    sp->pre_valid = 0;
    const ember_token *toks;
    int nt;
    if ((st = ember_spec_draft(sp, s, last, max, &toks, &nt))) return st;
    ember_batch b = { nt, toks, sp->bseq, sp->bwant };
    if ((st = ember_decode_batch(sp->tgt, &b))) { sp->n_pend = -1; return st; }
    return ember_spec_accept(sp, s, 0, out, n_out);
}
