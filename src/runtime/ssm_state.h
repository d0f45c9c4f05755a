/* ssm_state.h: the recurrent state of falcon-h1's Mamba-2 layers, per sequence, beside the
 * KV cache (em_kv_cache.ssm; kv_cache.c owns it and applies the sequence operations to it).
 *
 * Per layer and sequence it holds the convolution state (the last d_conv - 1 inputs of each
 * conv channel, oldest first) and the SSM state (n_head x head_dim x d_state floats), in
 * F32 as llama.cpp keeps them. A sequence's state is the state after all of its cached
 * tokens; a sequence with no cells has the zero state (the forward pass clears it when a
 * sequence's first cell is written), so emptying a sequence (seq_rm of everything,
 * seq_keep, truncate to 0) needs no work here.
 *
 * A recurrent state summarizes its tokens and cannot forget some of them: removing a range
 * of positions that is neither empty, nor the whole sequence, nor an end range it holds a
 * checkpoint for is refused (em_ssm_check_rm). Checkpoints: with n_ckpt > 0 the state after
 * each of a sequence's last n_ckpt tokens is kept (written as the tokens are decoded), so
 * truncating a sequence back by up to n_ckpt - 1 tokens of its latest decode restores the
 * state exactly: how speculation rolls back rejected drafts. */
#ifndef EMBER_SSM_STATE_H
#define EMBER_SSM_STATE_H
#include <stddef.h>
#include <stdint.h>
#include "ember.h"

struct em_hparams;

typedef struct em_ssm_state {
    int n_layer, n_seq;          /* n_layer 0: the model has no SSM (nothing allocated) */
    int conv_ch, d_conv;         /* conv channels (d_inner + 2*n_group*d_state) and taps */
    int n_head, head_dim, d_state;
    size_t conv_n, ssm_n;        /* floats of one (layer, sequence) conv / SSM state */
    size_t seq_n;                /* floats of one sequence's state over all layers */
    float *state;                /* (n_seq, seq_n): per sequence, layer by layer: conv, ssm */
    /* checkpoints: ckpt[s][k] is the state of sequence s after ckpt_cells[s][k] cells */
    int n_ckpt;
    float *ckpt;                 /* (n_seq, n_ckpt, seq_n) */
    int *ckpt_cells;             /* (n_seq, n_ckpt); -1: empty */
} em_ssm_state;

/* Allocates zeroed states for n_seq sequences when hp has an SSM (ssm_d_inner > 0), with
 * n_ckpt checkpoints per sequence; EMBER_E_NOMEM (recorded) when it does not fit. */
ember_status em_ssm_state_init(em_ssm_state *st, const struct em_hparams *hp, int n_seq, int n_ckpt);
void em_ssm_state_free(em_ssm_state *st);
/* Keeps at least n_ckpt checkpoints per sequence from now on (the checkpoints held so far
 * are dropped when the ring grows); nothing without an SSM. speculative.c asks for
 * draft_max + 1, so a verify step can roll back to any accepted prefix. */
ember_status em_ssm_set_checkpoints(em_ssm_state *st, int n_ckpt);
uint64_t em_ssm_state_bytes(const em_ssm_state *st);

/* The conv and SSM state of layer l, sequence s. */
static inline float *em_ssm_conv(const em_ssm_state *st, int l, int s) {
    return st->state + (size_t)s * st->seq_n + (size_t)l * (st->conv_n + st->ssm_n);
}
static inline float *em_ssm_ssm(const em_ssm_state *st, int l, int s) {
    return em_ssm_conv(st, l, s) + st->conv_n;
}

/* The checkpoint slot for sequence s after `cells` cells (n_ckpt > 0): slot cells %
 * n_ckpt, marked as holding that count; the forward pass copies each layer's state into
 * it (at the layer's offset, as in `state`) once the token is through that layer. */
float *em_ssm_ckpt_slot(em_ssm_state *st, int s, int cells);

/* Whether sequence s, holding n cells, may drop cells [c0, c1): OK when nothing or
 * everything goes, or an end range [c0, n) whose start has a checkpoint; otherwise
 * EMBER_E_UNSUPPORTED (recorded) saying why. */
ember_status em_ssm_check_rm(const em_ssm_state *st, int s, int n, int c0, int c1);
/* Sequence s now holds n cells after a removal em_ssm_check_rm allowed: restores the
 * checkpoint of n cells (n > 0) and drops the checkpoints past n. */
void em_ssm_rm(em_ssm_state *st, int s, int n);
/* dst gets src's state and checkpoints (seq_cp of src's whole range). */
void em_ssm_cp(em_ssm_state *st, int src, int dst);
#endif
