/* threads.c: a fixed pthread pool. em_pool_run(fn) runs fn(arg, i, n) once for each
 * thread index i in 0..n-1 (the caller is index 0) and returns when all are done. Work is
 * split by the callers with a static rule over i and n, never by who finishes first, so
 * results do not depend on scheduling.
 *
 * A decode step issues a few hundred short parallel sections, so handing work over must
 * cost microseconds, not a futex round trip: workers spin on a generation counter (with
 * pause, then sched_yield so an oversubscribed machine still makes progress) and only
 * block on a condition variable after ~2 ms without work. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include "runtime/internal.h"

#define SPIN_PAUSES 2000      /* busy pauses before yielding the CPU */
#define SPIN_MS 2.0           /* time spent spinning/yielding before sleeping */

struct em_pool {
    int n;                      /* threads including the caller */
    pthread_t *tids;
    em_task_fn fn;              /* written before gen is bumped, read after */
    void *arg;
    atomic_uint gen;            /* bumped once per run */
    atomic_int done;            /* workers finished with the current run */
    atomic_int sleepers;        /* workers blocked on cv */
    atomic_int quit;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

typedef struct { em_pool *p; int ith; } worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/* Waits until gen differs from seen (returns the new value) or quit is set (returns seen). */
static unsigned wait_gen(em_pool *p, unsigned seen) {
    double t0 = 0.0;
    for (long spins = 0;; spins++) {
        unsigned g = atomic_load(&p->gen);
        if (g != seen || atomic_load(&p->quit)) return g;
        if (spins < SPIN_PAUSES) { cpu_relax(); continue; }
        if (spins == SPIN_PAUSES) t0 = em_time_ms();
        if (em_time_ms() - t0 < SPIN_MS) { sched_yield(); continue; }
        /* Idle: block. sleepers is raised before gen is re-checked under the lock, and
         * em_pool_run bumps gen before reading sleepers, so no wake-up is lost. */
        pthread_mutex_lock(&p->mu);
        atomic_fetch_add(&p->sleepers, 1);
        while (atomic_load(&p->gen) == seen && !atomic_load(&p->quit)) pthread_cond_wait(&p->cv, &p->mu);
        atomic_fetch_sub(&p->sleepers, 1);
        pthread_mutex_unlock(&p->mu);
        spins = -1;
    }
}

static void *worker(void *v) {
    worker_arg *wa = v;
    em_pool *p = wa->p;
    const int ith = wa->ith;
    free(wa);
    unsigned seen = 0;
    for (;;) {
        unsigned g = wait_gen(p, seen);
        if (atomic_load(&p->quit)) break;
        seen = g;
        p->fn(p->arg, ith, p->n);
        atomic_fetch_add(&p->done, 1);
    }
    return NULL;
}

em_pool *em_pool_new(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    em_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->tids = calloc((size_t)n_threads, sizeof *p->tids);
    if (!p->tids) { p->n = 1; em_pool_free(p); return NULL; }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) { wa->p = p; wa->ith = i; }
        if (!wa || pthread_create(&p->tids[i], NULL, worker, wa)) {
            free(wa);
            p->n = i;
            em_pool_free(p);
            return NULL;
        }
    }
    return p;
}

void em_pool_free(em_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->tids[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->tids);
    free(p);
}

int em_pool_size(const em_pool *p) { return p ? p->n : 1; }

void em_pool_run(em_pool *p, em_task_fn fn, void *arg) {
    if (!p || p->n == 1) { fn(arg, 0, 1); return; }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->done, 0);
    atomic_fetch_add(&p->gen, 1);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    fn(arg, 0, p->n);
    for (long spins = 0; atomic_load(&p->done) != p->n - 1; spins++) {
        if (spins < SPIN_PAUSES) cpu_relax();
        else sched_yield();
    }
}
