/*
 * queue.h - the delay queue inside the library: the registry of waiting
 * claims and its timer, and the hooks sqlcached.c and cluster.c call. Not
 * public; the public calls are sqlcached_queue_* in sqlcached.h.
 *
 * Ownership: queue_registry_create() starts the timer thread,
 * queue_registry_destroy() ends every waiting claim (SQLCACHED_UNAVAILABLE),
 * waits for the claims in flight and stops it.
 */
#ifndef SQLCACHED_QUEUE_H
#define SQLCACHED_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "sqlcached.h"

typedef struct queue_registry queue_registry_t;

/* Create the registry of db and start its timer thread. NULL with a
 * message in err. */
queue_registry_t *queue_registry_create(sqlcached_t *db, char *err, size_t errlen);

/* Stop: end every waiting claim (SQLCACHED_UNAVAILABLE), wait for those
 * in flight (the store must still run), stop the timer. Later claims are
 * refused; queue_remote_due() stays harmless. NULL is allowed. */
void queue_registry_stop(queue_registry_t *reg);

/* Stop if not yet stopped, then free. NULL is allowed. */
void queue_registry_destroy(queue_registry_t *reg);

/* Cluster: retry every waiting claim at least every ms (0 = only when a
 * job is due or enqueued), so an enqueue on another node whose message
 * was missed still serves them. */
void queue_set_recheck(queue_registry_t *reg, int64_t ms);

/* Cluster: another node enqueued (or nacked) a job of `queue` due at
 * run_at: waiting claims here are served when it is due. */
void queue_remote_due(queue_registry_t *reg, const char *queue, size_t n, int64_t run_at);

#endif
