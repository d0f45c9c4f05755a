/* ssm_state.c: falcon-h1's per-sequence recurrent state (see ssm_state.h). */
#include <stdlib.h>
#include <string.h>
#include "runtime/internal.h"

ember_status em_ssm_state_init(em_ssm_state *st, const em_hparams *hp, int n_seq, int n_ckpt) {
    memset(st, 0, sizeof *st);
    if (hp->ssm_d_inner <= 0) return EMBER_OK;
    st->n_layer = hp->n_layer;
    st->n_seq = n_seq;
    st->conv_ch = hp->ssm_d_inner + 2 * hp->ssm_n_group * hp->ssm_d_state;
    st->d_conv = hp->ssm_d_conv;
    st->n_head = hp->ssm_n_head;
    st->head_dim = hp->ssm_d_inner / hp->ssm_n_head;
    st->d_state = hp->ssm_d_state;
    st->conv_n = (size_t)st->conv_ch * (size_t)(st->d_conv - 1);
    st->ssm_n = (size_t)hp->ssm_d_inner * (size_t)st->d_state;
    st->n_ckpt = n_ckpt;
    size_t per_seq, all, ck;  /* the sizes are bounded by the load checks; n_seq and n_ckpt are not */
    if (em_mul_size(st->conv_n + st->ssm_n, (size_t)st->n_layer, &per_seq) ||
        em_mul_size(per_seq, (size_t)n_seq * sizeof(float), &all) ||
        em_mul_size(all, (size_t)n_ckpt, &ck))
        return em_fail(EMBER_E_NOMEM, "an SSM state of %d sequences is too large", n_seq);
    st->seq_n = per_seq;
    st->state = calloc(all, 1);
    st->ckpt = ck ? malloc(ck) : NULL;
    st->ckpt_cells = n_ckpt ? malloc((size_t)n_seq * (size_t)n_ckpt * sizeof *st->ckpt_cells) : NULL;
    if (!st->state || (ck && !st->ckpt) || (n_ckpt && !st->ckpt_cells)) {
        em_ssm_state_free(st);
        return em_fail(EMBER_E_NOMEM, "out of memory for the SSM state of %d sequences (%d checkpoints each)",
                       n_seq, n_ckpt);
    }
    for (size_t i = 0; i < (size_t)n_seq * (size_t)n_ckpt; i++) st->ckpt_cells[i] = -1;
    return EMBER_OK;
}

void em_ssm_state_free(em_ssm_state *st) {
    free(st->state);
    free(st->ckpt);
    free(st->ckpt_cells);
    memset(st, 0, sizeof *st);
}

uint64_t em_ssm_state_bytes(const em_ssm_state *st) {
    return (uint64_t)st->seq_n * st->n_seq * (1 + (uint64_t)st->n_ckpt) * sizeof(float);
}

ember_status em_ssm_set_checkpoints(em_ssm_state *st, int n_ckpt) {
    if (!st->n_layer || n_ckpt <= st->n_ckpt) return EMBER_OK;
    size_t bytes;
    if (em_mul_size(st->seq_n * sizeof(float), (size_t)st->n_seq * (size_t)n_ckpt, &bytes))
        return em_fail(EMBER_E_NOMEM, "%d SSM state checkpoints are too large", n_ckpt);
    float *ck = malloc(bytes);
    int *cells = malloc((size_t)st->n_seq * (size_t)n_ckpt * sizeof *cells);
    if (!ck || !cells) {
        free(ck);
        free(cells);
        return em_fail(EMBER_E_NOMEM, "out of memory for %d SSM state checkpoints per sequence (%zu bytes)", n_ckpt,
                       bytes);
    }
    for (size_t i = 0; i < (size_t)st->n_seq * (size_t)n_ckpt; i++) cells[i] = -1;
    free(st->ckpt);
    free(st->ckpt_cells);
    st->ckpt = ck;
    st->ckpt_cells = cells;
    st->n_ckpt = n_ckpt;
    return EMBER_OK;
}

float *em_ssm_ckpt_slot(em_ssm_state *st, int s, int cells) {
    const int k = cells % st->n_ckpt;
    st->ckpt_cells[(size_t)s * st->n_ckpt + k] = cells;
    return st->ckpt + ((size_t)s * st->n_ckpt + k) * st->seq_n;
}

/* The checkpoint of sequence s after `cells` cells, or NULL. */
static const float *find_ckpt(const em_ssm_state *st, int s, int cells) {
    if (!st->n_ckpt || cells <= 0) return NULL;
    const int k = cells % st->n_ckpt;
    if (st->ckpt_cells[(size_t)s * st->n_ckpt + k] != cells) return NULL;
    return st->ckpt + ((size_t)s * st->n_ckpt + k) * st->seq_n;
}

ember_status em_ssm_check_rm(const em_ssm_state *st, int s, int n, int c0, int c1) {
    if (!st->n_layer || c0 >= c1 || (c0 == 0 && c1 == n)) return EMBER_OK;
    if (c1 < n)
        return em_fail(EMBER_E_UNSUPPORTED, "sequence %d: the model's recurrent (SSM) state cannot forget tokens "
                       "in the middle (cells %d..%d of %d); only the whole sequence or its end can go", s, c0, c1, n);
    if (!find_ckpt(st, s, c0))
        return em_fail(EMBER_E_UNSUPPORTED, "sequence %d: the model's recurrent (SSM) state has no checkpoint "
                       "after %d of its %d tokens, so it cannot be truncated there (checkpoints: the last %d "
                       "tokens decoded)", s, c0, n, st->n_ckpt);
    return EMBER_OK;
}

void em_ssm_rm(em_ssm_state *st, int s, int n) {
    if (!st->n_layer) return;
    const float *ck = find_ckpt(st, s, n);
    if (ck) memcpy(st->state + (size_t)s * st->seq_n, ck, st->seq_n * sizeof(float));
    for (int k = 0; k < st->n_ckpt; k++)
        if (st->ckpt_cells[(size_t)s * st->n_ckpt + k] > n) st->ckpt_cells[(size_t)s * st->n_ckpt + k] = -1;
}

void em_ssm_cp(em_ssm_state *st, int src, int dst) {
    if (!st->n_layer || src == dst) return;
    memcpy(st->state + (size_t)dst * st->seq_n, st->state + (size_t)src * st->seq_n, st->seq_n * sizeof(float));
    if (!st->n_ckpt) return;
    memcpy(st->ckpt + (size_t)dst * st->n_ckpt * st->seq_n, st->ckpt + (size_t)src * st->n_ckpt * st->seq_n,
           (size_t)st->n_ckpt * st->seq_n * sizeof(float));
    memcpy(st->ckpt_cells + (size_t)dst * st->n_ckpt, st->ckpt_cells + (size_t)src * st->n_ckpt,
           (size_t)st->n_ckpt * sizeof *st->ckpt_cells);
}
