/*
 * lease_int.h - what lease.c (the lease calls, run by the writer) and
 * lease_wait.c (the waiter registry and its timer thread) share: the
 * registry's types and the functions each file gives the other. Not part
 * of the library's interface (see lease.h).
 *
 * Locking and states: see lease.c's file comment. Names: li_ for what is
 * declared here (so a reader tells it from lease.h's interface), then do_
 * when the caller holds reg->lock, tx_ for a write function that runs on
 * the writer thread inside its transaction (store_write).
 */
#ifndef SQLCACHED_LEASE_INT_H
#define SQLCACHED_LEASE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "lease.h"
#include "store.h"

#define LEASE_BUCKETS 1024

/* ------------------------------------------------------------------------
 * Types
 * ------------------------------------------------------------------------ */

typedef enum waiter_state { W_QUEUED, W_GRANTING, W_DONE } waiter_state_t;

typedef struct lease_entry {
    struct lease_entry *hnext;       /* hash chain */
    struct lease_entry *prev, *next; /* every entry, for the timer */
    lease_waiter_t *head, *tail;     /* FIFO of waiters (QUEUED or GRANTING) */
    size_t queued;                   /* how many of them are QUEUED */
    int64_t expires_at;              /* the holder's expiry as last written */
    int64_t checked_at;              /* mono ms: last look at its row (recheck) */
    size_t name_len;
    char name[];
} lease_entry_t;

struct sqlcached_lease_wait {
    lease_registry_t *reg;
    lease_entry_t *entry;          /* while in a queue */
    lease_waiter_t *qprev, *qnext; /* entry queue */
    lease_waiter_t *dprev, *dnext; /* deadline list (QUEUED only) */
    lease_waiter_t *next_done;     /* a job's grants / the timer's batch */
    waiter_state_t state;
    bool on_deadline_list;
    bool notifying;   /* on_wake is running */
    int64_t deadline; /* CLOCK_MONOTONIC ms */
    int64_t ttl_ms;
    lease_wake_fn on_wake;
    sqlcached_done_fn done; /* the public form of on_wake */
    void *arg;
    pthread_cond_t cond;
    sqlcached_status_t status; /* outcome once DONE */
    sqlcached_lease_t lease;   /* the lease granted */
    size_t owner_len;
    char owner[SQLCACHED_LEASE_OWNER_MAX + 1];
};

struct lease_registry {
    sqlcached_t *db;
    pthread_mutex_t lock;
    pthread_cond_t timer_cond; /* CLOCK_MONOTONIC */
    pthread_t timer;
    bool timer_started;
    bool stopping;
    int64_t backoff_until; /* mono ms: no hand-over before this after a failure */
    int64_t recheck_ms;    /* > 0: look at a waited-on lease this often */
    lease_entry_t *buckets[LEASE_BUCKETS];
    lease_entry_t *entries;
    lease_waiter_t *dhead, *dtail;
    /* figures for sqlcached_stats (a grant whose transaction then fails
     * still counts: rare, and only under storage errors) */
    atomic_uint_fast64_t grants;
    atomic_long waiting;
};

typedef struct name_ref {
    char *name;
    size_t len;
} name_ref_t;

typedef struct expire_job {
    lease_registry_t *reg;
    int64_t now;
    name_ref_t *names; /* hand-over: these names; sweep: filled by the job */
    size_t count, cap;
    int swept;
    lease_waiter_t *grants;
} expire_job_t;

/* ------------------------------------------------------------------------
 * lease_wait.c: the registry and the waiters
 * ------------------------------------------------------------------------ */

lease_entry_t *li_do_find_entry(lease_registry_t *reg, const char *name, size_t n);
/* Insert into / remove from the deadline list (kept sorted). */
void li_do_deadline_insert(lease_registry_t *reg, lease_waiter_t *w);
void li_do_deadline_remove(lease_registry_t *reg, lease_waiter_t *w);
/* Queue w at the tail of the entry for name (w->state becomes QUEUED);
 * false when out of memory. */
bool li_do_enqueue(lease_registry_t *reg, lease_waiter_t *w, const char *name, size_t n,
                   int64_t holder_expires_at);
/* Mark w DONE with status (leaving every list). Returns true when its wake
 * callback must be called: then call li_notify() once the lock is released. */
bool li_do_complete(lease_registry_t *reg, lease_waiter_t *w, sqlcached_status_t status);
/* Run w's wake callback (lock not held), then let lease_wait_end go on. */
void li_notify(lease_registry_t *reg, lease_waiter_t *w);
/* Record a holder's new expiry for the timer, if anyone waits on name
 * (takes the lock). */
void li_note_expiry(lease_registry_t *reg, const char *name, size_t n, int64_t expires_at);
/* A waiter, not queued yet (DONE with SQLCACHED_LEASE_HELD until then);
 * NULL when out of memory. Freed by lease_wait_end(), or li_waiter_free()
 * when it was never queued. NULL is allowed. */
lease_waiter_t *li_waiter_new(lease_registry_t *reg, const char *name, size_t name_len,
                              const char *owner, size_t owner_len, int64_t ttl_ms, int64_t wait_ms,
                              lease_wake_fn on_wake, sqlcached_done_fn done, void *arg);
void li_waiter_free(lease_waiter_t *w);

/* ------------------------------------------------------------------------
 * lease.c: writes the timer runs, and what both fill in
 * ------------------------------------------------------------------------ */

void li_set_name(sqlcached_lease_t *l, const char *name, size_t n);
/* Write function (store_write): hand the leases named in the expire_job_t
 * arg over to their waiters, or delete them, when expired. */
sqlcached_status_t li_tx_handover(store_conn_t *w, void *arg);
/* After store_write: grants of a committed write are done (waiters woken);
 * those of a failed one go back to their place in the queue. */
void li_finish_grants(lease_registry_t *reg, lease_waiter_t *grants, sqlcached_status_t st);
/* Add a copy of name to j's names (false when out of memory); free them. */
bool li_names_add(void *cls, const void *name, size_t len);
void li_names_free(expire_job_t *j);

#endif
