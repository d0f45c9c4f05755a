/* sampler.c: the token sampler (see sampler.h for the contract).
 *
 * Chain, as llama.cpp's default: penalties -> top_k -> top_p -> min_p -> temp -> dist.
 * Penalties are applied as each logit is read (logit_at), from a per-id count of the
 * history ring, so the caller's row is never copied whole unless top_k is off. Candidates
 * live in one scratch array of n_vocab {logit, weight, id} made at em_sampler_new.
 * Ordering is the total order "higher logit first, then lower id", so every selection and
 * sort is deterministic whatever algorithm does it, and ties go to the lowest id like
 * llama.cpp's greedy.
 *
 * Cost for a 128k vocabulary: top_k streams the row through a size-k heap (O(n log k),
 * mostly one compare per token). With top_k off, a provably safe weight bound and min_p
 * drop the tail while copying, and top_p pops a max-heap only as far as the nucleus
 * reaches. Heaps are in place: nothing is allocated per call (glibc's qsort may malloc).
 *
 * min_p runs before top_p here, but the result equals llama.cpp's top_p -> min_p: both keep
 * a prefix of the sorted candidates that contains the max (the max is unchanged by either),
 * so the final set is the shorter prefix; top_p's normalizer is taken over the set before
 * min_p, exactly as top_p would see it. */
#include "runtime/sampler.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct em_cand {
    float logit;   /* penalized, sanitized: never NaN, never +inf */
    float w;       /* unnormalized weight, filled by the stage that needs it */
    int32_t id;
} em_cand;

struct em_sampler {
    em_sampler_params p;
    int n_vocab;
    uint64_t seed;        /* resolved seed (never the "random" sentinel) */
    uint64_t rng[4];      /* xoshiro256** state */
    em_cand *cand;        /* (n_vocab) scratch */
    /* penalty history; only allocated when a penalty is active and repeat_last_n > 0 */
    int32_t *hist;        /* (repeat_last_n) ring of accepted ids */
    int32_t *count;       /* (n_vocab) occurrences of each id in the ring */
    int hist_len, hist_pos;
};

/* ---- RNG: SplitMix64 seeds xoshiro256** (Vigna; both public domain algorithms) ---- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(uint64_t s[4]) {
    uint64_t r = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return r;
}

static void rng_seed(em_sampler *s) {
    uint64_t x = s->seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
    /* The four words are distinct (SplitMix64's output mix is a bijection), so never all
     * zero, xoshiro's one fixed point; the guard only documents that. */
    if (!(s->rng[0] | s->rng[1] | s->rng[2] | s->rng[3])) s->rng[0] = 1;
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(em_sampler *s) {
    return (double)(xoshiro_next(s->rng) >> 11) * 0x1.0p-53;
}

/* A fresh 32-bit seed, printable and replayable with -s like llama.cpp's. */
static uint64_t random_seed(const void *salt) {
    uint64_t x = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (f) {
        if (fread(&x, sizeof x, 1, f) != 1) x = 0;
        fclose(f);
    }
    struct timespec ts;
    if (timespec_get(&ts, TIME_UTC) == TIME_UTC)
        x ^= (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec;
    x ^= (uint64_t)(uintptr_t)salt ^ (uint64_t)clock();
    uint64_t seed = splitmix64(&x) & 0xFFFFFFFFull;
    if (seed == EM_SAMPLER_SEED_RANDOM) seed = 0; /* the sentinel would re-randomize */
    return seed;
}

/* ---- params and lifecycle ---- */

void em_sampler_default_params(em_sampler_params *p) {
    if (!p) return;
    p->temp = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    p->presence_penalty = 0.0f;
    p->frequency_penalty = 0.0f;
    p->seed = EM_SAMPLER_SEED_RANDOM;
}

static int params_valid(const em_sampler_params *p) {
    /* isfinite rejects NaN and +-inf for every float knob. */
    if (!isfinite(p->temp) || !isfinite(p->top_p) || !isfinite(p->min_p) ||
        !isfinite(p->repeat_penalty) || !isfinite(p->presence_penalty) ||
        !isfinite(p->frequency_penalty))
        return 0;
    if (p->top_p < 0.0f) return 0;
    if (p->repeat_penalty <= 0.0f) return 0; /* 0 zeroes logits, < 0 flips their sign */
    if (p->repeat_last_n < 0) return 0;
    return 1;
}

static int penalties_active(const em_sampler_params *p) {
    return p->repeat_last_n > 0 && (p->repeat_penalty != 1.0f ||
           p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f);
}

em_sampler *em_sampler_new(const em_sampler_params *p, int n_vocab) {
    if (!p || n_vocab <= 0 || !params_valid(p)) return NULL;
    em_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    s->n_vocab = n_vocab;
    /* calloc checks count * size for overflow itself. */
    s->cand = calloc((size_t)n_vocab, sizeof *s->cand);
    if (!s->cand) goto oom;
    if (penalties_active(p)) {
        s->hist = calloc((size_t)p->repeat_last_n, sizeof *s->hist);
        s->count = calloc((size_t)n_vocab, sizeof *s->count);
        if (!s->hist || !s->count) goto oom;
    }
    /* (uint64_t)-1 too: a front end that stores "-s -1" in 64 bits means "random". */
    int rnd = p->seed == EM_SAMPLER_SEED_RANDOM || p->seed == UINT64_MAX;
    s->seed = rnd ? random_seed(s) : p->seed;
    rng_seed(s);
    return s;
oom:
    em_sampler_free(s);
    return NULL;
}

void em_sampler_free(em_sampler *s) {
    if (!s) return;
    free(s->cand);
    free(s->hist);
    free(s->count);
    free(s);
}

uint64_t em_sampler_seed(const em_sampler *s) { return s ? s->seed : 0; }

void em_sampler_reset(em_sampler *s) {
    if (!s) return;
    if (s->count) {
        /* Only ids in the ring can be nonzero: clear those, not the whole vocab. */
        for (int i = 0; i < s->hist_len; i++) s->count[s->hist[i]] = 0;
    }
    s->hist_len = s->hist_pos = 0;
    rng_seed(s);
}

void em_sampler_accept(em_sampler *s, int32_t tok) {
    if (!s || !s->hist || tok < 0 || tok >= s->n_vocab) return;
    int cap = s->p.repeat_last_n;
    if (s->hist_len == cap) s->count[s->hist[s->hist_pos]]--; /* evict the oldest */
    else s->hist_len++;
    s->hist[s->hist_pos] = tok;
    s->count[tok]++;
    s->hist_pos = (s->hist_pos + 1) % cap;
}

/* ---- candidate helpers ---- */

/* NaN -> -inf (never chosen), +inf -> FLT_MAX (so max subtraction stays finite). */
static inline float clean_logit(float x) {
    if (x != x) return -INFINITY;
    if (x > FLT_MAX) return FLT_MAX;
    return x;
}

/* The total order: a goes before b. */
static inline int cand_before(const em_cand *a, const em_cand *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

/* Sift down in a heap c[0..n) whose root is the LAST in cand order if worst_root, else the
 * first. */
static inline void heap_sift(em_cand *c, int n, int i, int worst_root) {
    em_cand x = c[i];
    for (;;) {
        int j = 2 * i + 1;
        if (j >= n) break;
        if (j + 1 < n && (worst_root ? cand_before(&c[j], &c[j + 1])
                                     : cand_before(&c[j + 1], &c[j])))
            j++;
        /* stop once x belongs above its larger ("more root-like") child */
        if (worst_root ? cand_before(&c[j], &x) : cand_before(&x, &c[j])) break;
        c[i] = c[j];
        i = j;
    }
    c[i] = x;
}

static void heap_build(em_cand *c, int n, int worst_root) {
    for (int i = n / 2 - 1; i >= 0; i--) heap_sift(c, n, i, worst_root);
}

/* The penalized, sanitized logit of token i: what every stage sees. cnt is the history
 * count array, or NULL when no penalty applies this call. Each distinct id in the history
 * is penalized once, with its count (llama.cpp's penalties sampler). */
static inline float logit_at(const em_sampler *s, const float *logits, const int32_t *cnt,
                             int i) {
    float l = clean_logit(logits[i]);
    if (cnt && cnt[i] > 0 && l > -INFINITY) {
        /* Float arithmetic in llama.cpp's order, so greedy runs match it bit for bit. */
        const em_sampler_params *p = &s->p;
        float f = l > 0.0f ? l / p->repeat_penalty : l * p->repeat_penalty;
        f -= (float)cnt[i] * p->frequency_penalty + p->presence_penalty;
        if (f - f != 0.0f) {
            /* Overflowed to inf or NaN (extreme penalties): redo in double and clamp, so a
             * token the model allowed stays finite and "all -inf" still means the model's
             * own row. */
            double d = l > 0.0f ? (double)l / p->repeat_penalty
                                : (double)l * p->repeat_penalty;
            d -= (double)cnt[i] * p->frequency_penalty + p->presence_penalty;
            f = d > FLT_MAX ? FLT_MAX : d < -FLT_MAX ? -FLT_MAX : (float)d;
        }
        l = f;
    }
    return l;
}

/* Greedy: argmax with strict > so ties go to the lowest id; all -inf gives 0. */
static int32_t sample_greedy(const em_sampler *s, const float *logits, const int32_t *cnt) {
    int32_t best = 0;
    float bl = logit_at(s, logits, cnt, 0);
    for (int i = 1; i < s->n_vocab; i++) {
        float l = logit_at(s, logits, cnt, i);
        if (l > bl) { bl = l; best = i; }
    }
    return best;
}

/* top_k straight from the logits: a size-k heap with the worst kept token at the root,
 * so most tokens cost one compare and the vocabulary is never copied. Leaves the best k
 * in s->cand[0..k), sorted best first. Needs 0 < k < n_vocab. */
static void select_top_k(em_sampler *s, const float *logits, const int32_t *cnt, int k) {
    em_cand *c = s->cand;
    for (int i = 0; i < k; i++) {
        c[i].logit = logit_at(s, logits, cnt, i);
        c[i].id = i;
    }
    heap_build(c, k, 1);
    for (int i = k; i < s->n_vocab; i++) {
        em_cand x = { logit_at(s, logits, cnt, i), 0.0f, i };
        if (cand_before(&x, &c[0])) {
            c[0] = x;
            heap_sift(c, k, 0, 1);
        }
    }
    /* Heapsort with the worst at the root moves the worst to the back: best first. */
    for (int m = k - 1; m > 0; m--) {
        em_cand t = c[0]; c[0] = c[m]; c[m] = t;
        heap_sift(c, m, 0, 1);
    }
}

/* top_k off: copies into s->cand (in id order) only the finite tokens with logit >= thr
 * (min_p, in llama.cpp's form) and logit - max >= off (the top_p bound below, taken as an
 * offset so a huge max cannot round it), and returns how many. Neither bound exceeds the
 * max, so at least one token is kept. */
static int gather(em_sampler *s, const float *logits, const int32_t *cnt, float thr,
                  float max, float off) {
    em_cand *c = s->cand;
    int m = 0;
    for (int i = 0; i < s->n_vocab; i++) {
        float l = logit_at(s, logits, cnt, i);
        if (l >= thr && l - max >= off && l > -INFINITY) {
            c[m].logit = l;
            c[m].id = i;
            m++;
        }
    }
    return m;
}

/* Nucleus: the shortest best-first prefix whose weight exp(logit - max) reaches target.
 * c must be sorted if sorted, otherwise it is heap-popped only as far as needed. Returns
 * the new start (*n updated); the kept candidates come out sorted best first. */
static em_cand *cut_top_p(em_cand *c, int *n, int sorted, float max, double target) {
    double cum = 0.0;
    if (sorted) {
        for (int i = 0; i < *n; i++) {
            cum += expf(c[i].logit - max);
            if (cum >= target) { *n = i + 1; break; }
        }
        return c;
    }
    /* Max-heap; each pop moves the current best to the back, so the kept set builds up
     * at the end, best last; reversed after. */
    int m = *n, kept = 0;
    heap_build(c, m, 0);
    while (m > 0) {
        em_cand t = c[0]; c[0] = c[m - 1]; c[m - 1] = t;
        m--;
        heap_sift(c, m, 0, 0);
        kept++;
        cum += expf(t.logit - max);
        if (cum >= target) break;
    }
    em_cand *out = c + (*n - kept);
    for (int i = 0, j = kept - 1; i < j; i++, j--) {
        em_cand t = out[i]; out[i] = out[j]; out[j] = t;
    }
    *n = kept;
    return out;
}

/* Draws from softmax(logit / temp) over c[0..n) with uniform u in [0,1). max is the
 * largest logit in c, so every weight is in [0, 1] and the max's is 1. */
static int32_t draw(em_cand *c, int n, float max, float temp, double u) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        c[i].w = expf((c[i].logit - max) / temp);
        sum += c[i].w;
    }
    double target = u * sum, cum = 0.0;
    int last = 0;
    for (int i = 0; i < n; i++) {
        if (c[i].w <= 0.0f) continue; /* -inf or underflow: never drawn */
        cum += c[i].w;
        last = i;
        if (cum > target) return c[i].id;
    }
    return c[last].id; /* rounding left target at the very end */
}

/* ---- the chain ---- */

/* Runs the filters (top_k, top_p, min_p) on the penalized logits of a non-greedy sampler
 * and returns the kept candidates (*n of them, at the returned pointer into s->cand) and
 * their largest logit in *max. All -inf logits leave one candidate, id 0, with *max =
 * -inf: the caller returns that id without a draw. */
static em_cand *chain(em_sampler *s, const float *logits, int *n_out, float *max_out) {
    const em_sampler_params *p = &s->p;
    const int32_t *cnt = (s->count && s->hist_len > 0) ? s->count : NULL;
    int n = s->n_vocab;
    em_cand *c = s->cand;
    int sorted = 0, do_top_p = p->top_p < 1.0f;
    float min_p = p->min_p < 1.0f ? p->min_p : 1.0f;
    double top_p_target = 0.0;
    float max;
    if (p->top_k > 0 && p->top_k < n) {
        select_top_k(s, logits, cnt, p->top_k);
        n = p->top_k;
        sorted = 1;
        max = c[0].logit;
        if (max == -INFINITY) { *n_out = 1; *max_out = max; return c; } /* c[0] is id 0 */
        if (do_top_p) {
            double sum = 0.0; /* top_p's normalizer: the top_k set, at temp 1 */
            for (int i = 0; i < n; i++) sum += expf(c[i].logit - max);
            top_p_target = (double)p->top_p * sum;
        }
        if (min_p > 0.0f) {
            /* p_i >= min_p * p_max, in logits; sorted, so a prefix (the max passes) */
            float thr = max + logf(min_p);
            int m = 1;
            while (m < n && c[m].logit >= thr) m++;
            n = m;
        }
    } else {
        max = -INFINITY;
        for (int i = 0; i < n; i++) {
            float l = logit_at(s, logits, cnt, i);
            max = l > max ? l : max;
        }
        if (max == -INFINITY) { /* all -inf */
            c[0].logit = max;
            c[0].id = 0;
            *n_out = 1;
            *max_out = max;
            return c;
        }
        float thr = min_p > 0.0f ? max + logf(min_p) : -INFINITY, off = -INFINITY;
        if (do_top_p) {
            double sum = 0.0;
            for (int i = 0; i < n; i++) sum += expf(logit_at(s, logits, cnt, i) - max);
            top_p_target = (double)p->top_p * sum;
            /* The nucleus holds no token with weight < d = (1-top_p)/(2n) * sum: all those
             * together weigh < (1-top_p)/2 * sum, so the heavier tokens, which come first,
             * already reach top_p * sum. Dropping them up front is exact and keeps the
             * heap small for a 128k vocabulary. */
            double d = (1.0 - (double)p->top_p) / (2.0 * n) * sum;
            off = (float)log(d); /* < 0 since sum <= n; float rounding is far inside
                                    the factor-2 margin */
        }
        n = gather(s, logits, cnt, thr, max, off);
    }
    if (do_top_p) c = cut_top_p(c, &n, sorted, max, top_p_target);
    *n_out = n;
    *max_out = max;
    return c;
}

int32_t em_sampler_sample(em_sampler *s, const float *logits) {
    if (!s || !logits) return -1;
    const int32_t *cnt = (s->count && s->hist_len > 0) ? s->count : NULL;
    /* Greedy: every filter keeps the max, so it is plain argmax. No RNG draw. */
    if (s->p.temp <= 0.0f) return sample_greedy(s, logits, cnt);
    double u = rng_uniform(s); /* exactly one draw per non-greedy call */
    int n;
    float max;
    em_cand *c = chain(s, logits, &n, &max);
    if (max == -INFINITY) return c[0].id;
    return draw(c, n, max, s->p.temp, u);
}

int em_sampler_probs(em_sampler *s, const float *logits, float *probs) {
    if (!s || !logits || !probs) return -1;
    for (int i = 0; i < s->n_vocab; i++) probs[i] = 0.0f;
    const int32_t *cnt = (s->count && s->hist_len > 0) ? s->count : NULL;
    if (s->p.temp <= 0.0f) {
        probs[sample_greedy(s, logits, cnt)] = 1.0f;
        return 0;
    }
    int n;
    float max;
    em_cand *c = chain(s, logits, &n, &max);
    if (max == -INFINITY) { probs[c[0].id] = 1.0f; return 0; }
    /* The weights draw() uses, in the same float arithmetic. */
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        c[i].w = expf((c[i].logit - max) / s->p.temp);
        sum += c[i].w;
    }
    for (int i = 0; i < n; i++) probs[c[i].id] = (float)(c[i].w / sum);
    return 0;
}

double em_sampler_uniform(em_sampler *s) { return s ? rng_uniform(s) : 0.0; }

em_sampler_params em_sampler_get_params(const em_sampler *s) {
    em_sampler_params p = s->p;
    p.seed = s->seed;
    return p;
}

int em_sampler_greedy(const em_sampler *s) { return s && s->p.temp <= 0.0f; }

/* ---- checkpoints ---- */

struct em_sampler_state {
    int n_vocab, cap;     /* the shape of the sampler it belongs to */
    int32_t *hist;        /* (cap) ring, as in em_sampler */
    int hist_len, hist_pos;
    uint64_t rng[4];
};

em_sampler_state *em_sampler_state_new(const em_sampler *s) {
    if (!s) return NULL;
    em_sampler_state *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->n_vocab = s->n_vocab;
    st->cap = s->hist ? s->p.repeat_last_n : 0;
    if (st->cap && !(st->hist = calloc((size_t)st->cap, sizeof *st->hist))) { free(st); return NULL; }
    em_sampler_save(s, st);
    return st;
}

void em_sampler_state_free(em_sampler_state *st) {
    if (!st) return;
    free(st->hist);
    free(st);
}

static int state_fits(const em_sampler *s, const em_sampler_state *st) {
    return s && st && st->n_vocab == s->n_vocab && st->cap == (s->hist ? s->p.repeat_last_n : 0);
}

int em_sampler_save(const em_sampler *s, em_sampler_state *st) {
    if (!state_fits(s, st)) return -1;
    for (int i = 0; i < st->cap; i++) st->hist[i] = s->hist[i];
    st->hist_len = s->hist_len;
    st->hist_pos = s->hist_pos;
    for (int i = 0; i < 4; i++) st->rng[i] = s->rng[i];
    return 0;
}

int em_sampler_restore(em_sampler *s, const em_sampler_state *st, int parts) {
    if (!state_fits(s, st)) return -1;
    if ((parts & EM_SAMPLER_STATE_HISTORY) && s->hist) {
        /* Recount from the saved ring: O(repeat_last_n), never O(n_vocab). */
        for (int i = 0; i < s->hist_len; i++) s->count[s->hist[i]] = 0;
        for (int i = 0; i < st->cap; i++) s->hist[i] = st->hist[i];
        s->hist_len = st->hist_len;
        s->hist_pos = st->hist_pos;
        for (int i = 0; i < s->hist_len; i++) s->count[s->hist[i]]++;
    }
    if (parts & EM_SAMPLER_STATE_RNG)
        for (int i = 0; i < 4; i++) s->rng[i] = st->rng[i];
    return 0;
}
