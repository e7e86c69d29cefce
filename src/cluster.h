/*
 * cluster.h - this process as one node of a cluster: many daemons over one
 * shared database (PostgreSQL), each with its own memory tier. See
 * cluster.c and docs/architecture.md, "The cluster".
 *
 * Ownership: cluster_open() creates the node (its link connection and its
 * thread), cluster_close() leaves the cluster and frees it. Everything
 * else borrows.
 */
#ifndef SQLCACHED_CLUSTER_H
#define SQLCACHED_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sqlcached.h"

typedef struct cluster cluster_t;

/* What a write changed, as the cluster tells the other nodes (store_note
 * kinds). */
#define CLUSTER_KEY 'k'   /* a KV key */
#define CLUSTER_ITEM 'i'  /* a flash-sale item (stock, version) */
#define CLUSTER_RESET 'r' /* an item reset, at the version noted */
#define CLUSTER_LEASE 'l' /* a lease was released (waiters elsewhere may take it) */
/* A pending order of the item must be paid by the time noted (epoch ms):
 * every node's deadline timer learns it. (A unit that goes back to stock
 * is noted as CLUSTER_RESET at the version of the change.) */
#define CLUSTER_DEADLINE 'd'

#define CLUSTER_QUEUE 'q' /* a job of a queue is due at the version noted (run_at) */

/* Join the cluster of db's database: register, listen, start the node's
 * thread, install the store hooks. Only for a store whose backend has a
 * cluster (store_link_open); NULL with a message in err on failure. */
cluster_t *cluster_open(sqlcached_t *db, char *err, size_t errlen);

/* Leave the cluster (its row deleted, so no write waits for this node),
 * stop the thread, free. Call after the last write. NULL is allowed. */
void cluster_close(cluster_t *c);

/* May this node serve from its memory tiers now? False from the moment
 * its membership could have run out in the others' eyes (or it may have
 * missed a message) until it has joined again and emptied its tiers. */
bool cluster_trusted(const cluster_t *c);

/* Writer thread, inside a KV write's on_commit hook: may the tier take
 * the written value in place (--on-write replace)? False when another
 * node's invalidation was applied since this batch began to commit (that
 * change may be newer): then invalidate instead. */
bool cluster_replace_ok(const cluster_t *c);

/* This node's id (> 0). */
int64_t cluster_node_id(const cluster_t *c);

/* Every member, as the database has them (on a reader connection). */
sqlcached_status_t cluster_members(cluster_t *c, sqlcached_member_fn fn, void *cls);

/* Counters for /v1/stats. */
void cluster_stats(cluster_t *c, sqlcached_cluster_stats_t *out);

#endif
