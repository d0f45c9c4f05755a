/* sampler.h: picks the next token from a row of logits.
 *
 * One fixed chain, llama.cpp's default order (common/sampling, src/llama-sampling.cpp):
 *   penalties -> top_k -> top_p -> min_p -> temperature -> dist
 * top_p and min_p look at the untempered (penalized) logits, as llama.cpp does; the
 * temperature only shapes the final draw. temp <= 0 is greedy (argmax of the penalized
 * logits, ties -> lowest id). Every filter keeps at least one candidate.
 *
 * Invariants: libc + libm only; never prints or exits; all scratch is allocated at
 * em_sampler_new (no malloc per token); the caller's logits are never written. NaN logits
 * count as -inf, +inf as FLT_MAX; if every logit is -inf the result is token 0.
 * Same seed + same logits/accept sequence -> same tokens (xoshiro256** seeded by
 * SplitMix64; each non-greedy em_sampler_sample consumes exactly one draw).
 * One em_sampler per generation stream; not thread-safe. */
#ifndef EMBER_SAMPLER_H
#define EMBER_SAMPLER_H
#include <stdint.h>

/* llama.cpp's LLAMA_DEFAULT_SEED: "pick a random seed" (then read it back with
 * em_sampler_seed to reproduce the run). */
#define EM_SAMPLER_SEED_RANDOM 0xFFFFFFFFu

typedef struct em_sampler_params {
    float    temp;              /* <= 0: greedy. Default 0.8 */
    int      top_k;             /* <= 0: off (whole vocab). Default 40 */
    float    top_p;             /* >= 1: off; 0 keeps only the top token; < 0 rejected. 0.95 */
    float    min_p;             /* <= 0: off; keep p >= min_p * p_max (clamped to 1). 0.05 */
    float    repeat_penalty;    /* 1 = off; must be > 0. Default 1.0 */
    int      repeat_last_n;     /* history length for all penalties; 0 = off, < 0 rejected
                                   (resolve llama.cpp's -1 = n_ctx before calling). 64 */
    float    presence_penalty;  /* subtracted once if the token is in the history. 0 */
    float    frequency_penalty; /* subtracted per occurrence in the history. 0 */
    uint64_t seed;              /* EM_SAMPLER_SEED_RANDOM (or UINT64_MAX, i.e. -1) =
                                   random. Default random */
} em_sampler_params;

typedef struct em_sampler em_sampler;

/* llama.cpp defaults (repeat penalty 1.0 since llama.cpp PR #6127). */
void em_sampler_default_params(em_sampler_params *p);

/* NULL on bad params (p NULL, n_vocab <= 0, non-finite floats, top_p < 0,
 * repeat_penalty <= 0, repeat_last_n < 0) or out of memory. */
em_sampler *em_sampler_new(const em_sampler_params *p, int n_vocab);
void em_sampler_free(em_sampler *s); /* NULL ok */

/* Picks a token in [0, n_vocab) from logits[n_vocab]; does not accept it (call
 * em_sampler_accept with the token actually used, prompt tokens too if they should count
 * toward the penalties). Returns -1 only if s or logits is NULL. */
int32_t em_sampler_sample(em_sampler *s, const float *logits);

/* Pushes tok into the penalty history (the last repeat_last_n tokens). Ids outside
 * [0, n_vocab) are ignored. */
void em_sampler_accept(em_sampler *s, int32_t tok);

/* The distribution em_sampler_sample draws from for these logits and this history, after
 * every transform (penalties, top_k, top_p, min_p, temperature): probs[n_vocab] gets the
 * probability of each token, 0 for those filtered out. Greedy gives 1 at the argmax. Uses
 * no random draw. 0, or -1 if an argument is NULL. */
int em_sampler_probs(em_sampler *s, const float *logits, float *probs);

/* One uniform draw in [0, 1) from the sampler's RNG (speculative acceptance tests). */
double em_sampler_uniform(em_sampler *s);

/* The parameters the sampler was made with (seed: the resolved one). */
em_sampler_params em_sampler_get_params(const em_sampler *s);

/* 1 when temp <= 0 (sampling is argmax and uses no random draws). */
int em_sampler_greedy(const em_sampler *s);

/* A checkpoint of the penalty history and the RNG, to roll back tokens accepted for a
 * speculative draft that the target then rejected. A state belongs to samplers of the
 * same n_vocab and history length (save/restore return -1 otherwise). Restoring the
 * history costs O(repeat_last_n). */
typedef struct em_sampler_state em_sampler_state;
enum { EM_SAMPLER_STATE_HISTORY = 1, EM_SAMPLER_STATE_RNG = 2 };
em_sampler_state *em_sampler_state_new(const em_sampler *s);  /* holds s's current state */
void em_sampler_state_free(em_sampler_state *st);
int em_sampler_save(const em_sampler *s, em_sampler_state *st);
int em_sampler_restore(em_sampler *s, const em_sampler_state *st, int parts);

/* Clears the history and restarts the RNG from em_sampler_seed(s), so the same inputs
 * replay the same tokens (also for a randomly chosen seed). */
void em_sampler_reset(em_sampler *s);

/* The seed in use: params.seed, or the one drawn when it was EM_SAMPLER_SEED_RANDOM
 * (a 32-bit value other than EM_SAMPLER_SEED_RANDOM, so it can be passed back as -s). */
uint64_t em_sampler_seed(const em_sampler *s);

#endif
