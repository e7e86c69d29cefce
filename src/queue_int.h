/*
 * queue_int.h - what queue.c (the queue calls, the claims' writes) and
 * queue_wait.c (the registry of waiting claims and its timer thread)
 * share: the registry's types and the functions each file gives the
 * other. Not part of the library's interface (see queue.h). Locking and
 * ownership: see queue.c's file comment; do_ names are called with
 * reg->lock held.
 */
#ifndef SQLCACHED_QUEUE_INT_H
#define SQLCACHED_QUEUE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "queue.h"
#include "sqlcached.h"

#define QUEUE_BUCKETS 256

/* ------------------------------------------------------------------------
 * Types
 * ------------------------------------------------------------------------ */

typedef struct qentry qentry_t;
typedef struct qclaim qclaim_t;

struct qentry {
    qentry_t *hnext;       /* hash chain */
    qentry_t *prev, *next; /* every entry, for the timer */
    qclaim_t *head, *tail; /* parked claims, FIFO */
    int64_t next_due;      /* store ms: run a look then; INT64_MAX = none known */
    int64_t checked_at;    /* mono ms: last kick (recheck) */
    size_t name_len;
    char name[];
};

struct qclaim {
    queue_registry_t *reg;
    qentry_t *entry;       /* while parked */
    qclaim_t *prev, *next; /* entry FIFO; `next` also chains kicked claims */
    char queue[SQLCACHED_QUEUE_NAME_MAX + 1];
    size_t queue_len;
    char worker[SQLCACHED_JOB_ID_MAX + 1];
    size_t worker_len;
    int64_t visibility_ms;
    unsigned max;
    bool waits;
    int64_t deadline; /* mono ms */
    sqlcached_jobs_t **out;
    sqlcached_done_fn done;
    void *cls;
    /* the write (writer thread) */
    sqlcached_jobs_t *jobs; /* capacity max */
    int64_t now;
    uint64_t epoch_seen;
    int64_t next_due; /* INT64_MAX: no job at all */
    int64_t seqs[SQLCACHED_QUEUE_CLAIM_MAX], tokens[SQLCACHED_QUEUE_CLAIM_MAX];
    bool expired[SQLCACHED_QUEUE_CLAIM_MAX]; /* its last claim ended unacked */
    unsigned nseq;
    uint64_t expired_claims;
};

struct queue_registry {
    sqlcached_t *db;
    pthread_mutex_t lock;
    pthread_cond_t timer_cond; /* CLOCK_MONOTONIC */
    pthread_cond_t idle_cond;  /* running reached 0 while stopping */
    pthread_t timer;
    bool timer_started;
    bool stopping;
    int64_t recheck_ms;
    size_t running; /* claims submitted, not yet parked or answered */
    size_t parked;
    atomic_uint_fast64_t epoch;
    qentry_t *buckets[QUEUE_BUCKETS];
    qentry_t *entries;
    qclaim_t *kicked; /* to run again (timer thread) */
    sqlcached_queue_stat_t stats[SQLCACHED_QUEUE_STATS_MAX + 1];
    size_t nstats;
};

/* ------------------------------------------------------------------------
 * Given by queue.c
 * ------------------------------------------------------------------------ */

/* CLOCK_MONOTONIC in ms. */
int64_t qi_mono_ms(void);

/* Queue c's write; false when it could not be queued (*st says why).
 * Counted in running by the caller. */
bool qi_submit(qclaim_t *c, sqlcached_status_t *st);

/* Answer c (status; on OK its jobs go to the caller) and free it. */
void qi_complete(qclaim_t *c, sqlcached_status_t st);

/* A claim is no longer in flight (lock not held). */
void qi_not_running(queue_registry_t *reg);

/* ------------------------------------------------------------------------
 * Given by queue_wait.c
 * ------------------------------------------------------------------------ */

/* Under the lock: park c at the tail of its queue's entry; false when out
 * of memory. */
bool qi_do_park(queue_registry_t *reg, qclaim_t *c);

/* A job of queue is due at run_at (enqueued or nacked, here or on another
 * node): kick one parked claim if it is due now, else let the timer know. */
void qi_job_due_at(queue_registry_t *reg, const char *queue, size_t n, int64_t run_at);

#endif
