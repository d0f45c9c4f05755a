/* test_sampler.c: the sampler against brute-force references.
 * Covers: defaults, parameter validation, greedy and top_k=1, seeded reproducibility and
 * reset replay, empirical frequencies vs softmax(logits/temp), exact top_k/top_p/min_p
 * kept sets (small hand cases and a 50k vocab vs a full-sort reference), penalties,
 * NaN/inf logits, and that the caller's logits are never written. */
#include "runtime/sampler.h"
#include "test.h"

#include <float.h>
#include <stdint.h>

/* Test-local PRNG (independent of the sampler's) for making logits. */
static uint64_t tr_state = 88172645463325252ull;
static uint64_t tr_next(void) {
    tr_state ^= tr_state << 13; tr_state ^= tr_state >> 7; tr_state ^= tr_state << 17;
    return tr_state;
}
static float tr_unif(void) { return (float)((tr_next() >> 40) * 0x1.0p-24); }
/* Roughly normal (sum of 4 uniforms), scaled. */
static float tr_gauss(float sd) {
    float a = tr_unif() + tr_unif() + tr_unif() + tr_unif() - 2.0f;
    return a * sd * 1.732f;
}

/* Defaults with a fixed seed and the filters turned off (tests turn on what they test). */
static em_sampler_params plain(float temp) {
    em_sampler_params p;
    em_sampler_default_params(&p);
    p.temp = temp;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = 1234;
    return p;
}

static int argmax(const float *l, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[b]) b = i;
    return b;
}

TEST(test_defaults) {
    em_sampler_params p;
    memset(&p, 0x5a, sizeof p);
    em_sampler_default_params(&p);
    CHECK(p.temp == 0.8f);
    CHECK(p.top_k == 40);
    CHECK(p.top_p == 0.95f);
    CHECK(p.min_p == 0.05f);
    CHECK(p.repeat_penalty == 1.0f);
    CHECK(p.repeat_last_n == 64);
    CHECK(p.presence_penalty == 0.0f);
    CHECK(p.frequency_penalty == 0.0f);
    CHECK(p.seed == EM_SAMPLER_SEED_RANDOM);
    em_sampler_default_params(NULL); /* no crash */
}

TEST(test_bad_params) {
    em_sampler_params p = plain(0.8f);
    em_sampler *s;
    CHECK(em_sampler_new(NULL, 10) == NULL);
    CHECK(em_sampler_new(&p, 0) == NULL);
    CHECK(em_sampler_new(&p, -5) == NULL);
#define REJECT(field, val) do { em_sampler_params q = p; q.field = (val);            \
        s = em_sampler_new(&q, 10); CHECKF(s == NULL, "%s = %g accepted", #field,  \
        (double)(val)); em_sampler_free(s); } while (0)
#define ACCEPT(field, val) do { em_sampler_params q = p; q.field = (val);            \
        s = em_sampler_new(&q, 10); CHECKF(s != NULL, "%s = %g rejected", #field,  \
        (double)(val)); em_sampler_free(s); } while (0)
    REJECT(temp, NAN);
    REJECT(temp, INFINITY);
    REJECT(top_p, NAN);
    REJECT(top_p, -0.1f);
    REJECT(top_p, INFINITY);
    REJECT(min_p, NAN);
    REJECT(repeat_penalty, 0.0f);
    REJECT(repeat_penalty, -1.1f);
    REJECT(repeat_penalty, NAN);
    REJECT(repeat_last_n, -1);
    REJECT(presence_penalty, NAN);
    REJECT(frequency_penalty, -INFINITY);
    ACCEPT(temp, -1.0f);      /* llama.cpp: temp < 0 is greedy */
    ACCEPT(top_k, -3);        /* off */
    ACCEPT(top_k, 1000000);   /* more than the vocab: off */
    ACCEPT(top_p, 0.0f);
    ACCEPT(top_p, 1.5f);      /* off */
    ACCEPT(min_p, -1.0f);     /* off */
    ACCEPT(min_p, 2.0f);      /* clamped: keeps only the max */
    ACCEPT(repeat_last_n, 0);
    ACCEPT(presence_penalty, -2.0f);
#undef REJECT
#undef ACCEPT
    em_sampler_free(NULL);
    CHECK(em_sampler_sample(NULL, NULL) == -1);
    s = em_sampler_new(&p, 10);
    CHECK(s && em_sampler_sample(s, NULL) == -1);
    em_sampler_accept(NULL, 1);
    em_sampler_reset(NULL);
    em_sampler_free(s);
}

TEST(test_greedy) {
    float l[6] = { 0.5f, 3.0f, -1.0f, 3.0f, 2.9f, -7.0f };
    float copy[6];
    memcpy(copy, l, sizeof l);
    em_sampler_params p = plain(0.0f);
    p.top_k = 2;
    p.top_p = 0.5f;
    p.min_p = 0.1f;
    em_sampler *s = em_sampler_new(&p, 6);
    CHECK(s != NULL);
    if (!s) return;
    for (int i = 0; i < 10; i++) CHECK(em_sampler_sample(s, l) == 1); /* tie 1,3 -> 1 */
    l[4] = 3.5f;
    CHECK(em_sampler_sample(s, l) == 4);
    l[4] = 2.9f;
    CHECK(memcmp(l, copy, sizeof l) == 0);
    em_sampler_free(s);

    p.temp = -1.0f;
    s = em_sampler_new(&p, 6);
    CHECK(s && em_sampler_sample(s, l) == 1);
    em_sampler_free(s);
}

/* top_k = 1 is greedy at any temperature (random rows, 1000 tokens). */
TEST(test_top_k1_is_greedy) {
    enum { N = 1000 };
    static float l[N];
    const float temps[] = { 0.3f, 0.8f, 1.0f, 5.0f, 100.0f };
    for (int t = 0; t < 5; t++) {
        em_sampler_params p = plain(temps[t]);
        p.top_k = 1;
        em_sampler *s = em_sampler_new(&p, N);
        CHECK(s != NULL);
        if (!s) return;
        int bad = 0;
        for (int r = 0; r < 50; r++) {
            for (int i = 0; i < N; i++) l[i] = tr_gauss(2.0f);
            if (em_sampler_sample(s, l) != argmax(l, N)) bad++;
        }
        CHECKF(bad == 0, "temp %g: %d rows differ from argmax", temps[t], bad);
        em_sampler_free(s);
    }
}

/* Runs 1000 steps of sample+accept over rows from the test PRNG restarted at row_seed. */
static void run_seq(em_sampler *s, uint64_t row_seed, int n, int32_t *out) {
    static float l[256];
    tr_state = row_seed;
    for (int t = 0; t < 1000; t++) {
        for (int i = 0; i < n; i++) l[i] = tr_gauss(1.5f);
        out[t] = em_sampler_sample(s, l);
        em_sampler_accept(s, out[t]);
    }
}

TEST(test_reproducible) {
    static int32_t a[1000], b[1000], c[1000], d[1000];
    em_sampler_params p;
    em_sampler_default_params(&p); /* the real defaults: top_k, top_p, min_p on */
    p.seed = 42;
    p.repeat_penalty = 1.1f;       /* and penalties, whose history reset must clear */
    p.frequency_penalty = 0.1f;
    em_sampler *s1 = em_sampler_new(&p, 256), *s2 = em_sampler_new(&p, 256);
    CHECK(s1 && s2);
    if (!s1 || !s2) { em_sampler_free(s1); em_sampler_free(s2); return; }
    CHECK(em_sampler_seed(s1) == 42);
    run_seq(s1, 777, 256, a);
    run_seq(s2, 777, 256, b);
    CHECK(memcmp(a, b, sizeof a) == 0);
    em_sampler_reset(s1);
    run_seq(s1, 777, 256, c);
    CHECK(memcmp(a, c, sizeof a) == 0);
    int distinct = 0; /* the sequence must actually be random, not stuck on argmax */
    for (int i = 1; i < 1000; i++) distinct += a[i] != a[0];
    CHECK(distinct > 100);
    em_sampler_free(s2);
    p.seed = 43;
    s2 = em_sampler_new(&p, 256);
    CHECK(s2 != NULL);
    if (s2) {
        run_seq(s2, 777, 256, d);
        int same = 0;
        for (int i = 0; i < 1000; i++) same += a[i] == d[i];
        CHECKF(same < 900, "seed 42 and 43 agree on %d of 1000", same);
    }
    em_sampler_free(s1);
    em_sampler_free(s2);
}

TEST(test_random_seed) {
    static int32_t a[1000], b[1000];
    em_sampler_params p = plain(1.0f);
    p.seed = EM_SAMPLER_SEED_RANDOM;
    em_sampler *r1 = em_sampler_new(&p, 256), *r2 = em_sampler_new(&p, 256);
    CHECK(r1 && r2);
    if (r1 && r2) {
        uint64_t s1 = em_sampler_seed(r1), s2 = em_sampler_seed(r2);
        CHECK(s1 != EM_SAMPLER_SEED_RANDOM && s1 <= 0xFFFFFFFFull);
        CHECK(s1 != s2); /* 2^-32 chance of a false failure */
        /* The reported seed replays the run. */
        run_seq(r1, 99, 256, a);
        p.seed = s1;
        em_sampler *f = em_sampler_new(&p, 256);
        CHECK(f != NULL);
        if (f) { run_seq(f, 99, 256, b); CHECK(memcmp(a, b, sizeof a) == 0); }
        em_sampler_free(f);
        em_sampler_reset(r1);
        CHECK(em_sampler_seed(r1) == s1);
        run_seq(r1, 99, 256, b);
        CHECK(memcmp(a, b, sizeof a) == 0);
        p.seed = UINT64_MAX; /* "-s -1" stored in 64 bits */
        em_sampler *m1 = em_sampler_new(&p, 4);
        CHECK(m1 && em_sampler_seed(m1) <= 0xFFFFFFFFull &&
              em_sampler_seed(m1) != EM_SAMPLER_SEED_RANDOM);
        em_sampler_free(m1);
    }
    em_sampler_free(r1);
    em_sampler_free(r2);
}

/* Draws `draws` tokens and checks each frequency against probs within 3 sigma. */
static void check_freqs(em_sampler *s, const float *l, const double *prob, int n,
                        int draws) {
    long cnt[16] = { 0 };
    for (int i = 0; i < draws; i++) {
        int32_t t = em_sampler_sample(s, l);
        CHECK(t >= 0 && t < n);
        if (t >= 0 && t < n) cnt[t]++;
    }
    for (int i = 0; i < n; i++) {
        double e = prob[i] * draws, sd = sqrt(draws * prob[i] * (1.0 - prob[i]));
        if (prob[i] == 0.0) { CHECKF(cnt[i] == 0, "token %d drawn %ld times", i, cnt[i]); continue; }
        CHECKF(fabs(cnt[i] - e) <= 3.0 * sd, "token %d: %ld draws, expected %.1f +- %.1f",
               i, cnt[i], e, sd);
    }
}

/* softmax(l / temp) restricted to keep[] (NULL = all). */
static void softmax_ref(const float *l, const int *keep, int n, double temp, double *out) {
    double mx = -INFINITY, sum = 0.0;
    for (int i = 0; i < n; i++) if ((!keep || keep[i]) && l[i] > mx) mx = l[i];
    for (int i = 0; i < n; i++) {
        out[i] = (!keep || keep[i]) ? exp((l[i] - mx) / temp) : 0.0;
        sum += out[i];
    }
    for (int i = 0; i < n; i++) out[i] /= sum;
}

TEST(test_distribution) {
    const float l[4] = { 1.0f, 2.0f, 0.5f, -1.0f };
    const float temps[] = { 1.0f, 0.7f, 2.0f };
    double prob[4];
    for (int t = 0; t < 3; t++) {
        em_sampler_params p = plain(temps[t]);
        p.seed = 2024 + (uint64_t)t;
        em_sampler *s = em_sampler_new(&p, 4);
        CHECK(s != NULL);
        if (!s) return;
        softmax_ref(l, NULL, 4, temps[t], prob);
        check_freqs(s, l, prob, 4, 200000);
        em_sampler_free(s);
    }
}

/* Hand cases: probabilities 0.5, 0.3, 0.15, 0.05 (+ a 0.0 tail of -inf). */
TEST(test_filters_small) {
    float l[5];
    const double base[4] = { 0.5, 0.3, 0.15, 0.05 };
    for (int i = 0; i < 4; i++) l[i] = logf((float)base[i]);
    l[4] = -INFINITY;
    double prob[5];
    struct { int top_k; float top_p, min_p, temp; int keep[5]; } cs[] = {
        { 2, 1.0f, 0.0f, 1.0f, { 1, 1, 0, 0, 0 } },   /* top_k */
        { 3, 1.0f, 0.0f, 3.0f, { 1, 1, 1, 0, 0 } },
        { 0, 0.75f, 0.0f, 1.0f, { 1, 1, 0, 0, 0 } },  /* 0.5 < 0.75 <= 0.8 */
        { 0, 0.75f, 0.0f, 4.0f, { 1, 1, 0, 0, 0 } },  /* top_p ignores temp */
        { 0, 0.9f, 0.0f, 1.0f, { 1, 1, 1, 0, 0 } },   /* 0.8 < 0.9 <= 0.95 */
        { 0, 0.0f, 0.0f, 1.0f, { 1, 0, 0, 0, 0 } },   /* top_p 0: top token */
        { 0, 1.0f, 0.2f, 1.0f, { 1, 1, 1, 0, 0 } },   /* min_p: p >= 0.1 */
        { 0, 1.0f, 0.5f, 2.0f, { 1, 1, 0, 0, 0 } },   /* p >= 0.25, temp ignored */
        { 0, 1.0f, 2.0f, 1.0f, { 1, 0, 0, 0, 0 } },   /* clamped */
        { 4, 0.9f, 0.2f, 1.0f, { 1, 1, 1, 0, 0 } },
        { 3, 0.75f, 0.2f, 1.5f, { 1, 1, 0, 0, 0 } },  /* top_p narrower than min_p */
        { 0, 0.99f, 0.5f, 1.0f, { 1, 1, 0, 0, 0 } },  /* min_p narrower than top_p */
        { 0, 1.0f, 0.0f, 1.0f, { 1, 1, 1, 1, 0 } },   /* all off: -inf never drawn */
    };
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        em_sampler_params p = plain(cs[c].temp);
        p.top_k = cs[c].top_k;
        p.top_p = cs[c].top_p;
        p.min_p = cs[c].min_p;
        p.seed = 100 + c;
        em_sampler *s = em_sampler_new(&p, 5);
        CHECK(s != NULL);
        if (!s) return;
        softmax_ref(l, cs[c].keep, 5, cs[c].temp, prob);
        int before = t_cur_fail;
        check_freqs(s, l, prob, 5, 40000);
        if (t_cur_fail != before) printf("  (case %zu)\n", c);
        em_sampler_free(s);
    }
}

/* Full-sort reference for the kept set on a big vocab. */
static const float *g_l;
static int cmp_desc(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    if (g_l[i] != g_l[j]) return g_l[i] > g_l[j] ? -1 : 1;
    return i < j ? -1 : 1;
}

static int ref_kept(const float *l, int n, int top_k, float top_p, float min_p, int *ord,
                    int *keep) {
    for (int i = 0; i < n; i++) { ord[i] = i; keep[i] = 0; }
    g_l = l;
    qsort(ord, (size_t)n, sizeof *ord, cmp_desc);
    int m = (top_k > 0 && top_k < n) ? top_k : n;
    double mx = l[ord[0]], sum = 0.0;
    for (int i = 0; i < m; i++) sum += exp(l[ord[i]] - mx);
    if (top_p < 1.0f) {
        double cum = 0.0;
        for (int i = 0; i < m; i++) {
            cum += exp(l[ord[i]] - mx) / sum;
            if (cum >= top_p) { m = i + 1; break; }
        }
    }
    int kept = 0;
    float thr = (float)mx + logf(min_p > 0.0f ? min_p : 1.0f);
    for (int i = 0; i < m; i++) {
        if (min_p > 0.0f && l[ord[i]] < thr) break;
        keep[ord[i]] = 1;
        kept++;
    }
    return kept;
}

/* 50k vocab: with a huge temperature the draw is near uniform over the kept set, so every
 * kept token shows up and nothing else may: the kept set is checked exactly. */
TEST(test_filters_large_vocab) {
    enum { N = 50000 };
    static float l[N];
    static int ord[N], keep[N], seen[N];
    struct { int top_k; float top_p, min_p; } cs[] = {
        { 0, 0.9f, 0.0f }, { 0, 0.9f, 0.05f }, { 0, 1.0f, 0.05f }, { 100, 0.9f, 0.05f },
        { 40, 0.95f, 0.05f }, { 40, 1.0f, 0.0f }, { 300, 0.5f, 0.0f }, { 0, 0.3f, 0.01f },
    };
    for (int i = 0; i < N; i++) l[i] = tr_gauss(2.0f);
    for (int i = 0; i < 200; i++) l[tr_next() % N] += 8.0f + tr_gauss(1.0f); /* a head */
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        int kept = ref_kept(l, N, cs[c].top_k, cs[c].top_p, cs[c].min_p, ord, keep);
        em_sampler_params p = plain(1e4f);
        p.top_k = cs[c].top_k;
        p.top_p = cs[c].top_p;
        p.min_p = cs[c].min_p;
        em_sampler *s = em_sampler_new(&p, N);
        CHECK(s != NULL);
        if (!s) return;
        memset(seen, 0, sizeof seen);
        int draws = kept * 15 + 50, outside = 0, missing = 0;
        for (int d = 0; d < draws; d++) {
            int32_t t = em_sampler_sample(s, l);
            if (t < 0 || t >= N || !keep[t]) outside++;
            else seen[t] = 1;
        }
        for (int i = 0; i < N; i++) missing += keep[i] && !seen[i];
        CHECKF(outside == 0 && missing == 0, "case %zu (kept %d): %d outside, %d missing",
               c, kept, outside, missing);
        em_sampler_free(s);
    }
}

/* A flat 1000-token row where the nucleus is hundreds of tokens: nothing outside the
 * reference set is drawn, and its worst member (the boundary token) is. */
TEST(test_top_p_boundary) {
    enum { N = 1000 };
    static float l[N];
    static int ord[N], keep[N];
    struct { int top_k; float top_p, min_p; } cs[] = {
        { 0, 0.5f, 0.0f }, { 0, 0.9f, 0.0f }, { 0, 0.9f, 0.3f }, { 700, 0.7f, 0.0f },
    };
    for (int i = 0; i < N; i++) l[i] = tr_gauss(1.0f);
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        int kept = ref_kept(l, N, cs[c].top_k, cs[c].top_p, cs[c].min_p, ord, keep);
        int worst = ord[kept - 1];
        em_sampler_params p = plain(1e4f);
        p.top_k = cs[c].top_k;
        p.top_p = cs[c].top_p;
        p.min_p = cs[c].min_p;
        em_sampler *s = em_sampler_new(&p, N);
        CHECK(s != NULL);
        if (!s) return;
        int outside = 0, worst_seen = 0;
        for (int d = 0; d < kept * 8; d++) {
            int32_t t = em_sampler_sample(s, l);
            if (t < 0 || t >= N || !keep[t]) outside++;
            worst_seen += t == worst;
        }
        CHECKF(outside == 0 && worst_seen > 0, "case %zu (kept %d): %d outside, worst seen %d",
               c, kept, outside, worst_seen);
        em_sampler_free(s);
    }
}

/* Runs the crafted penalty sequence on a sampler that must act as argmax. */
static void penalty_case(em_sampler_params p) {
    p.repeat_penalty = 1.1f;
    p.repeat_last_n = 2;
    em_sampler *s = em_sampler_new(&p, 4);
    CHECK(s != NULL);
    if (!s) return;
    float pos[4] = { 2.0f, 1.9f, -1.0f, -1.1f };
    CHECK(em_sampler_sample(s, pos) == 0);
    em_sampler_accept(s, 0);
    CHECK(em_sampler_sample(s, pos) == 1);   /* 2.0 / 1.1 = 1.82 < 1.9 */
    em_sampler_accept(s, 0);                 /* repeats do not stack */
    em_sampler_accept(s, 0);
    CHECK(em_sampler_sample(s, pos) == 1);
    float neg[4] = { -1.0f, -1.05f, -5.0f, -6.0f };
    CHECK(em_sampler_sample(s, neg) == 1);   /* -1.0 * 1.1 = -1.1 < -1.05 */
    em_sampler_accept(s, 3);
    em_sampler_accept(s, 2);                 /* window of 2: token 0 has left */
    CHECK(em_sampler_sample(s, pos) == 0);
    em_sampler_accept(s, 0);
    CHECK(em_sampler_sample(s, pos) == 1);
    em_sampler_accept(s, -1);                /* out of range: ignored */
    em_sampler_accept(s, 4);
    em_sampler_accept(s, INT32_MAX);
    CHECK(em_sampler_sample(s, pos) == 1);
    em_sampler_reset(s);                     /* history cleared */
    CHECK(em_sampler_sample(s, pos) == 0);
    float copy[4];
    memcpy(copy, pos, sizeof pos);
    em_sampler_accept(s, 0);
    (void)em_sampler_sample(s, pos);
    CHECK(memcmp(copy, pos, sizeof pos) == 0); /* penalties go to scratch, not logits */
    em_sampler_free(s);
}

/* The same sequence through greedy, the top_k heap, and the unsorted top_p / min_p paths
 * (each configured to keep only the best token). */
TEST(test_repeat_penalty) {
    em_sampler_params p = plain(0.0f);
    penalty_case(p);
    p = plain(0.8f);
    p.top_k = 1;
    penalty_case(p);
    p = plain(0.8f);
    p.top_k = 3;
    p.top_p = 0.0f;
    penalty_case(p);
    p = plain(0.8f);
    p.top_p = 0.0f;
    penalty_case(p);
    p = plain(0.8f);
    p.min_p = 1.0f;
    penalty_case(p);
}

TEST(test_freq_presence) {
    float l[3] = { 3.0f, 2.5f, 0.0f };
    em_sampler_params p = plain(0.0f);
    p.frequency_penalty = 0.3f;
    em_sampler *s = em_sampler_new(&p, 3);
    CHECK(s != NULL);
    if (!s) return;
    em_sampler_accept(s, 0);
    CHECK(em_sampler_sample(s, l) == 0);     /* 3 - 0.3 = 2.7 */
    em_sampler_accept(s, 0);
    CHECK(em_sampler_sample(s, l) == 1);     /* 3 - 0.6 = 2.4 */
    em_sampler_free(s);

    p = plain(0.0f);
    p.presence_penalty = 0.6f;
    s = em_sampler_new(&p, 3);
    CHECK(s != NULL);
    if (!s) return;
    CHECK(em_sampler_sample(s, l) == 0);
    em_sampler_accept(s, 0);
    CHECK(em_sampler_sample(s, l) == 1);     /* 2.4 */
    em_sampler_free(s);

    /* Negative frequency penalty encourages repeats (OpenAI allows -2..2). */
    p = plain(0.0f);
    p.frequency_penalty = -1.0f;
    s = em_sampler_new(&p, 3);
    CHECK(s != NULL);
    if (!s) return;
    em_sampler_accept(s, 2);
    em_sampler_accept(s, 2);
    em_sampler_accept(s, 2);
    em_sampler_accept(s, 2);
    CHECK(em_sampler_sample(s, l) == 2);     /* 0 + 4 = 4 > 3 */
    em_sampler_free(s);

    /* Absurd penalties on +-inf logits must not produce NaN picks. */
    p = plain(0.8f);
    p.frequency_penalty = -3e38f;
    p.repeat_penalty = 3e38f;
    s = em_sampler_new(&p, 3);
    CHECK(s != NULL);
    if (!s) return;
    float w[3] = { -INFINITY, INFINITY, 1.0f };
    em_sampler_accept(s, 0);
    em_sampler_accept(s, 0);
    em_sampler_accept(s, 1);
    for (int i = 0; i < 100; i++) {
        int32_t t = em_sampler_sample(s, w);
        CHECK(t >= 0 && t < 3);
    }
    em_sampler_free(s);

    /* A penalty that overflows float keeps an allowed token finite: with every other
     * token -inf/NaN it must still be the one picked (not the all -inf fallback 0). */
    const float temps[2] = { 0.0f, 0.8f };
    for (int k = 0; k < 2; k++) {
        p = plain(temps[k]);
        p.repeat_penalty = 3e38f;
        s = em_sampler_new(&p, 3);
        CHECK(s != NULL);
        if (!s) return;
        float only[3] = { -INFINITY, NAN, -5.0f };
        em_sampler_accept(s, 2);
        CHECK(em_sampler_sample(s, only) == 2);
        em_sampler_free(s);
    }
}

/* Penalty history at the default 64 with a big vocab: many accepts, ring wraps. */
TEST(test_penalty_ring) {
    enum { N = 1000 };
    static float l[N];
    em_sampler_params p = plain(0.0f);
    p.repeat_penalty = 1e6f; /* anything recent is effectively banned */
    p.repeat_last_n = 64;
    em_sampler *s = em_sampler_new(&p, N);
    CHECK(s != NULL);
    if (!s) return;
    for (int i = 0; i < N; i++) l[i] = 1.0f + (float)(N - i) * 1e-3f; /* 0 best */
    /* Greedy with a strong penalty walks 0..64 (0..63 are all still in the window when
     * 64 is picked), then 0 has left the window and the cycle of 65 repeats. */
    int ok = 1;
    for (int t = 0; t < 300; t++) {
        int32_t tok = em_sampler_sample(s, l);
        if (tok != t % 65) ok = 0;
        em_sampler_accept(s, tok);
    }
    CHECK(ok);
    em_sampler_free(s);
}

TEST(test_nan_inf) {
    em_sampler_params g = plain(0.0f), r = plain(0.8f);
    em_sampler_params d;
    em_sampler_default_params(&d);
    d.seed = 5;
    em_sampler *sg = em_sampler_new(&g, 6), *sr = em_sampler_new(&r, 6),
               *sd = em_sampler_new(&d, 6);
    CHECK(sg && sr && sd);
    if (!sg || !sr || !sd) goto out;
    float a[6] = { 1.0f, NAN, 2.0f, -INFINITY, NAN, 0.5f };
    CHECK(em_sampler_sample(sg, a) == 2);
    for (int i = 0; i < 1000; i++) {
        int32_t t = em_sampler_sample(sr, a), u = em_sampler_sample(sd, a);
        CHECK(t == 0 || t == 2 || t == 5);
        CHECK(u == 0 || u == 2 || u == 5);
    }
    float nan6[6] = { NAN, NAN, NAN, NAN, NAN, NAN };
    float ninf[6] = { -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY };
    CHECK(em_sampler_sample(sg, nan6) == 0);
    CHECK(em_sampler_sample(sr, nan6) == 0);
    CHECK(em_sampler_sample(sd, nan6) == 0);
    CHECK(em_sampler_sample(sg, ninf) == 0);
    CHECK(em_sampler_sample(sr, ninf) == 0);
    CHECK(em_sampler_sample(sd, ninf) == 0);
    em_sampler_params k = r;
    k.top_k = 3;
    k.top_p = 0.9f;
    em_sampler *sk = em_sampler_new(&k, 6);
    CHECK(sk != NULL);
    if (sk) {
        CHECK(em_sampler_sample(sk, nan6) == 0);
        CHECK(em_sampler_sample(sk, ninf) == 0);
        for (int i = 0; i < 200; i++) {
            int32_t t = em_sampler_sample(sk, a);
            CHECK(t == 0 || t == 2 || t == 5);
        }
    }
    em_sampler_free(sk);
    float pinf[6] = { 1e30f, INFINITY, 3.0f, NAN, INFINITY, -INFINITY };
    CHECK(em_sampler_sample(sg, pinf) == 1);
    int c1 = 0, c4 = 0;
    for (int i = 0; i < 2000; i++) {
        int32_t t = em_sampler_sample(sr, pinf);
        CHECK(t == 1 || t == 4);
        c1 += t == 1;
        c4 += t == 4;
        t = em_sampler_sample(sd, pinf);
        CHECK(t == 1 || t == 4);
    }
    CHECK(c1 > 800 && c4 > 800); /* the two +inf split evenly */
    float big[6] = { -FLT_MAX, FLT_MAX, FLT_MAX, -FLT_MAX, 0.0f, 0.0f };
    for (int i = 0; i < 200; i++) {
        int32_t t = em_sampler_sample(sd, big);
        CHECK(t == 1 || t == 2);
    }
out:
    em_sampler_free(sg);
    em_sampler_free(sr);
    em_sampler_free(sd);
}

TEST(test_edges) {
    em_sampler_params p;
    em_sampler_default_params(&p);
    p.seed = 9;
    em_sampler *s = em_sampler_new(&p, 1);
    CHECK(s != NULL);
    if (!s) return;
    float one = -3.0f;
    for (int i = 0; i < 10; i++) CHECK(em_sampler_sample(s, &one) == 0);
    em_sampler_accept(s, 0);
    CHECK(em_sampler_sample(s, &one) == 0);
    em_sampler_free(s);
    /* Tiny temperature behaves like greedy without NaN or a crash. */
    p.temp = 1e-30f;
    p.top_k = 0;
    float l[3] = { 1.0f, 1.5f, 1.4999f };
    s = em_sampler_new(&p, 3);
    CHECK(s != NULL);
    if (!s) return;
    for (int i = 0; i < 50; i++) CHECK(em_sampler_sample(s, l) == 1);
    em_sampler_free(s);
}

/* Defaults at a 128k vocab, logits unchanged after sampling; every path finishes. */
TEST(test_big_vocab_paths) {
    enum { N = 128256 };
    static float l[N], copy[N];
    for (int i = 0; i < N; i++) l[i] = tr_gauss(3.0f);
    memcpy(copy, l, sizeof l);
    struct { int top_k; float top_p, min_p; } cs[] = {
        { 40, 0.95f, 0.05f }, { 0, 0.95f, 0.0f }, { 0, 1.0f, 0.0f }, { 0, 0.95f, 0.05f },
        { N, 0.95f, 0.05f }, { 5000, 0.99f, 0.0f },
    };
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        em_sampler_params p = plain(0.8f);
        p.top_k = cs[c].top_k;
        p.top_p = cs[c].top_p;
        p.min_p = cs[c].min_p;
        p.repeat_penalty = 1.1f;
        em_sampler *s = em_sampler_new(&p, N);
        CHECK(s != NULL);
        if (!s) return;
        for (int t = 0; t < 5; t++) {
            int32_t tok = em_sampler_sample(s, l);
            CHECK(tok >= 0 && tok < N);
            em_sampler_accept(s, tok);
        }
        em_sampler_free(s);
    }
    CHECK(memcmp(l, copy, sizeof l) == 0);
}


/* em_sampler_probs is the distribution the draws come from: against a brute-force
 * reference (full sort, filters, softmax at temp) on a 2000-token row for several filter
 * sets, with and without penalties; greedy gives one-hot at the (penalized) argmax; and it
 * makes no random draw (the draws after it equal those of a sampler that never called it). */
TEST(test_probs) {
    enum { N = 2000 };
    static float l[N], lp[N];
    static int ord[N], keep[N];
    static float pr[N];
    static double ref[N];
    for (int i = 0; i < N; i++) l[i] = tr_gauss(1.5f);
    for (int i = 0; i < 30; i++) l[tr_next() % N] += 5.0f + tr_gauss(1.0f);
    struct { int top_k; float top_p, min_p, temp; } cs[] = {
        { 0, 1.0f, 0.0f, 1.0f }, { 40, 0.95f, 0.05f, 0.8f }, { 0, 0.9f, 0.0f, 0.6f },
        { 0, 1.0f, 0.05f, 1.3f }, { 10, 1.0f, 0.0f, 0.5f }, { 300, 0.7f, 0.01f, 2.0f },
    };
    const int32_t hist[] = { 5, 17, 5, 1999, 0, 42 };
    for (int pen = 0; pen < 2; pen++)
        for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
            em_sampler_params p = plain(cs[c].temp);
            p.top_k = cs[c].top_k;
            p.top_p = cs[c].top_p;
            p.min_p = cs[c].min_p;
            memcpy(lp, l, sizeof l);
            if (pen) {
                p.repeat_penalty = 1.3f;
                p.frequency_penalty = 0.4f;
                p.presence_penalty = 0.2f;
                p.repeat_last_n = 8;
                /* the reference applies the penalties by hand, llama.cpp's formula */
                for (int i = 0; i < N; i++) {
                    int n = 0;
                    for (size_t h = 0; h < sizeof hist / sizeof *hist; h++) n += hist[h] == i;
                    if (!n) continue;
                    lp[i] = lp[i] > 0 ? lp[i] / p.repeat_penalty : lp[i] * p.repeat_penalty;
                    lp[i] -= (float)n * p.frequency_penalty + p.presence_penalty;
                }
            }
            em_sampler *s = em_sampler_new(&p, N), *twin = em_sampler_new(&p, N);
            CHECK(s && twin);
            if (!s || !twin) return;
            for (size_t h = 0; pen && h < sizeof hist / sizeof *hist; h++) {
                em_sampler_accept(s, hist[h]);
                em_sampler_accept(twin, hist[h]);
            }
            ref_kept(lp, N, p.top_k, p.top_p, p.min_p, ord, keep);
            softmax_ref(lp, keep, N, p.temp, ref);
            CHECK(em_sampler_probs(s, l, pr) == 0);
            double sum = 0.0, err = 0.0;
            int support = 1;
            for (int i = 0; i < N; i++) {
                sum += pr[i];
                err = fmax(err, fabs(pr[i] - ref[i]));
                support &= (pr[i] > 0.0f) == (ref[i] > 0.0);
            }
            CHECKF(support && err < 1e-6 && fabs(sum - 1.0) < 1e-5, "case %zu pen %d: support %d, max err %g, sum %g",
                   c, pen, support, err, sum);
            for (int d = 0; d < 50; d++) {  /* no draw was consumed, and draws stay in the support */
                int32_t a = em_sampler_sample(s, l), b = em_sampler_sample(twin, l);
                CHECK(a == b && a >= 0 && pr[a] > 0.0f);
            }
            em_sampler_free(s);
            em_sampler_free(twin);
        }
    /* greedy: one-hot at the penalized argmax */
    em_sampler_params g = plain(0.0f);
    g.repeat_penalty = 100.0f;
    g.repeat_last_n = 4;
    em_sampler *s = em_sampler_new(&g, N);
    CHECK(s != NULL);
    if (!s) return;
    const int top = argmax(l, N);
    CHECK(em_sampler_probs(s, l, pr) == 0 && pr[top] == 1.0f);
    em_sampler_accept(s, top);
    CHECK(em_sampler_probs(s, l, pr) == 0 && pr[top] == 0.0f);
    double sum = 0.0;
    for (int i = 0; i < N; i++) sum += pr[i];
    CHECK(sum == 1.0 && pr[em_sampler_sample(s, l)] == 1.0f);
    CHECK(em_sampler_probs(NULL, l, pr) == -1 && em_sampler_probs(s, NULL, pr) == -1);
    em_sampler_free(s);
}

/* Checkpoints: after a save, tokens accepted and draws made are undone by a restore, so
 * the sampler replays exactly; restoring only the history keeps the RNG going; a state
 * does not fit a sampler of another shape. */
TEST(test_checkpoint) {
    enum { N = 300 };
    static float l[N];
    for (int i = 0; i < N; i++) l[i] = tr_gauss(1.0f);
    em_sampler_params p = plain(0.9f);
    p.top_k = 50;
    p.repeat_penalty = 1.5f;
    p.frequency_penalty = 0.3f;
    p.repeat_last_n = 5;
    em_sampler *s = em_sampler_new(&p, N);
    CHECK(s != NULL);
    if (!s) return;
    for (int i = 0; i < 7; i++) em_sampler_accept(s, (int32_t)(tr_next() % N));  /* the ring wraps */
    em_sampler_state *st = em_sampler_state_new(s);
    CHECK(st != NULL);
    if (!st) { em_sampler_free(s); return; }
    int32_t first[12], again[12];
    static float pa[N], pb[N];
    em_sampler_probs(s, l, pa);
    for (int i = 0; i < 12; i++) { first[i] = em_sampler_sample(s, l); em_sampler_accept(s, first[i]); }
    CHECK(em_sampler_restore(s, st, EM_SAMPLER_STATE_HISTORY | EM_SAMPLER_STATE_RNG) == 0);
    em_sampler_probs(s, l, pb);
    CHECK(memcmp(pa, pb, sizeof pa) == 0);
    for (int i = 0; i < 12; i++) { again[i] = em_sampler_sample(s, l); em_sampler_accept(s, again[i]); }
    CHECK(memcmp(first, again, sizeof first) == 0);
    /* history only: the same penalties as at the save, a different random stream */
    CHECK(em_sampler_restore(s, st, EM_SAMPLER_STATE_HISTORY) == 0);
    em_sampler_probs(s, l, pb);
    CHECK(memcmp(pa, pb, sizeof pa) == 0);
    int same = 0;
    for (int i = 0; i < 12; i++) { again[i] = em_sampler_sample(s, l); same += again[i] == first[i]; }
    CHECK(same < 12);
    /* rng only: the history stays as it is now */
    em_sampler_restore(s, st, EM_SAMPLER_STATE_HISTORY);
    em_sampler_accept(s, 0);
    em_sampler_probs(s, l, pa);
    CHECK(em_sampler_restore(s, st, EM_SAMPLER_STATE_RNG) == 0);
    em_sampler_probs(s, l, pb);
    CHECK(memcmp(pa, pb, sizeof pa) == 0);
    /* save overwrites; other shapes are refused */
    CHECK(em_sampler_save(s, st) == 0);
    em_sampler_params q = p;
    q.repeat_last_n = 6;
    em_sampler *o = em_sampler_new(&q, N);
    CHECK(o && em_sampler_restore(o, st, EM_SAMPLER_STATE_HISTORY) == -1 && em_sampler_save(o, st) == -1);
    em_sampler_free(o);
    em_sampler_params np = plain(0.9f);  /* no penalties: only the RNG is saved */
    o = em_sampler_new(&np, N);
    em_sampler_state *so = o ? em_sampler_state_new(o) : NULL;
    CHECK(so && em_sampler_restore(s, so, EM_SAMPLER_STATE_RNG) == -1);
    int32_t a = o ? em_sampler_sample(o, l) : -1;
    CHECK(so && em_sampler_restore(o, so, EM_SAMPLER_STATE_RNG) == 0 && em_sampler_sample(o, l) == a);
    em_sampler_state_free(so);
    em_sampler_free(o);
    em_sampler_state_free(st);
    em_sampler_state_free(NULL);
    em_sampler_free(s);
}

int main(void) {
    (void)fixture_path; (void)file_exists; (void)read_file; /* test.h helpers unused here */
    RUN(test_defaults);
    RUN(test_bad_params);
    RUN(test_greedy);
    RUN(test_top_k1_is_greedy);
    RUN(test_reproducible);
    RUN(test_random_seed);
    RUN(test_distribution);
    RUN(test_filters_small);
    RUN(test_filters_large_vocab);
    RUN(test_top_p_boundary);
    RUN(test_repeat_penalty);
    RUN(test_freq_presence);
    RUN(test_penalty_ring);
    RUN(test_nan_inf);
    RUN(test_edges);
    RUN(test_big_vocab_paths);
    RUN(test_probs);
    RUN(test_checkpoint);
    return test_done();
}
