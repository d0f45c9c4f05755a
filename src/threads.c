/* threads.c: a fixed pthread pool. em_pool_run(fn) runs fn(arg, i, n) once for each
 * thread index i in 0..n-1 (the caller is index 0) and returns when all are done. Work is
 * split by the callers with a static rule over i and n, never by who finishes first, so
 * results do not depend on scheduling. */
#include <pthread.h>
#include <stdlib.h>
#include "internal.h"

struct em_pool {
    int n;                      /* threads including the caller */
    pthread_t *tids;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    em_task_fn fn;
    void *arg;
    unsigned long generation;   /* bumped per run; workers wait for a change */
    int pending;                /* workers still running the current generation */
    int quit;
};

typedef struct { em_pool *p; int ith; } worker_arg;

static void *worker(void *v) {
    worker_arg *wa = v;
    em_pool *p = wa->p;
    const int ith = wa->ith;
    free(wa);
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->generation == seen && !p->quit) pthread_cond_wait(&p->go, &p->mu);
        if (p->quit) break;
        seen = p->generation;
        em_task_fn fn = p->fn;
        void *arg = p->arg;
        pthread_mutex_unlock(&p->mu);
        fn(arg, ith, p->n);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

em_pool *em_pool_new(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    em_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    p->tids = calloc((size_t)n_threads, sizeof *p->tids);
    if (!p->tids) { em_pool_free(p); return NULL; }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) { p->n = i; em_pool_free(p); return NULL; }
        wa->p = p;
        wa->ith = i;
        if (pthread_create(&p->tids[i], NULL, worker, wa)) { free(wa); p->n = i; em_pool_free(p); return NULL; }
    }
    return p;
}

void em_pool_free(em_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->tids[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p->tids);
    free(p);
}

int em_pool_size(const em_pool *p) { return p ? p->n : 1; }

void em_pool_run(em_pool *p, em_task_fn fn, void *arg) {
    if (!p || p->n == 1) { fn(arg, 0, 1); return; }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->pending = p->n - 1;
    p->generation++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
