/*
 * lease.h - leases inside the library: the waiter registry, the
 * asynchronous acquire the HTTP daemon uses, and the hooks sqlcached.c
 * calls. Not public; the public calls are sqlcached_lease_* in sqlcached.h.
 *
 * Waiting: an acquire that finds the lease held by another owner and may
 * wait is queued as a waiter on that lease's name (FIFO). When the lease
 * becomes free (release to count 0, or expiry seen by the timer, the sweep
 * or any later acquire) it is handed to the first queued waiter inside the
 * same write transaction, so a newcomer can never take it first. A waiter
 * ends in one of three ways: granted (SQLCACHED_OK), its deadline passed
 * (SQLCACHED_LEASE_HELD), or the store closed (SQLCACHED_UNAVAILABLE).
 *
 * Nothing here blocks a thread per waiter: the in-process call
 * sqlcached_lease_acquire() sleeps on the waiter's condition variable, and
 * the daemon passes a wake callback that resumes a suspended connection.
 */
#ifndef SQLCACHED_LEASE_H
#define SQLCACHED_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sqlcached.h"

typedef struct lease_registry lease_registry_t;
typedef struct sqlcached_lease_wait lease_waiter_t; /* public: sqlcached_lease_wait_t */

/* Called once when a queued waiter's outcome is known, from whichever
 * thread decided it (a releasing caller, the timer thread, the sweep). It
 * must be quick and must not call back into the lease module. */
typedef void (*lease_wake_fn)(void *arg);

/* Create the registry of db and start its timer thread (waiter deadlines,
 * hand-over at a holder's expiry). Returns NULL with a message in err. */
lease_registry_t *lease_registry_create(sqlcached_t *db, char *err, size_t errlen);

/* Stop the timer; every waiter still queued ends with
 * SQLCACHED_UNAVAILABLE. Calls in flight must have returned. NULL is
 * allowed. */
void lease_registry_destroy(lease_registry_t *reg);

/* Live (held, not expired) leases now; 0 when it cannot be read. */
uint64_t lease_count_live(sqlcached_t *db, int64_t now);

/* Leases granted to a new holder since open, and requests waiting now. */
void lease_stats(lease_registry_t *reg, uint64_t *grants, uint64_t *waiting);

/* Sweep up to max_rows leases expired at `now`: hand each to its first
 * waiter, or delete it. Returns how many were swept, or -1 on error. */
int lease_sweep(sqlcached_t *db, int64_t now, int max_rows);

/* Acquire without blocking the calling thread (the public form, with a
 * sqlcached_done_fn instead of on_wake, is sqlcached_lease_acquire_async;
 * lease_wait_end and lease_release_grant are sqlcached_lease_wait_end and
 * sqlcached_lease_give_back). Arguments are checked as
 * for sqlcached_lease_acquire(). Returns:
 *   SQLCACHED_OK with *waiter NULL: acquired; *out is the lease.
 *   SQLCACHED_OK with *waiter set: held by another owner and queued (only
 *     when wait_ms > 0); *out is the holder's lease. on_wake(arg) will be
 *     called once the outcome is known, unless lease_wait_end() is called
 *     first; collect the outcome with lease_wait_end() in every case.
 *   SQLCACHED_LEASE_HELD (wait_ms == 0): *out is the holder's lease.
 *   any other status: nothing was queued. */
sqlcached_status_t lease_acquire_start(sqlcached_t *db, const char *name, size_t name_len,
                                       const char *owner, size_t owner_len, int64_t ttl_ms,
                                       int64_t wait_ms, lease_wake_fn on_wake, void *arg,
                                       sqlcached_lease_t *out, lease_waiter_t **waiter);

/* Collect a waiter's outcome and free it. A waiter still queued is taken
 * out of the queue (cancelled) and gets SQLCACHED_LEASE_HELD; a grant in
 * progress is waited for (briefly). On return on_wake is not running and
 * will never run. Returns SQLCACHED_OK (granted, *out the lease),
 * SQLCACHED_LEASE_HELD (*out the current holder, or all zero when the
 * lease is free by now) or SQLCACHED_UNAVAILABLE. out may be NULL. */
sqlcached_status_t lease_wait_end(lease_waiter_t *w, sqlcached_lease_t *out);

/* Give back one acquisition of the holding l (a lease granted to a waiter
 * whose caller is gone: name, owner and token as granted), handing the
 * lease to the next waiter when it becomes free. Only that holding: once
 * it has expired, or the lease changed hands, nothing happens
 * (SQLCACHED_NOT_OWNER). */
sqlcached_status_t lease_release_grant(sqlcached_t *db, const sqlcached_lease_t *l);

/* Cluster: look at every lease with waiters at least every ms (0 = only
 * at its holder's expiry), so a release on another node whose message
 * was missed still serves them. */
void lease_set_recheck(lease_registry_t *reg, int64_t ms);

/* Cluster: another node released `name`: if waiters queue for it here,
 * the timer hands it over now. */
void lease_remote_freed(lease_registry_t *reg, const char *name, size_t n);

#endif
