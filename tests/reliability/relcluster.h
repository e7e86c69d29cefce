/*
 * relcluster.h - the reliability tests over several nodes: daemons started
 * on one PostgreSQL schema (the same URL, so one cluster), each in its own
 * temporary directory (its log), waited for until every node sees every
 * other one up in GET /v1/cluster, stopped by PID.
 *
 * With `app_names`, node i connects with application_name=sqlcached-n<i>
 * (a parameter added to the URL; the schema, hence the cluster, is the
 * same), so that a test can tell one node's PostgreSQL sessions from the
 * others' in pg_stat_activity (rel_cluster_session_sql).
 */
#ifndef SQLCACHED_RELCLUSTER_H
#define SQLCACHED_RELCLUSTER_H

#include <stdbool.h>
#include <stddef.h>

#include "daemon.h"

#define REL_MAX_NODES 8

typedef struct rel_cluster {
    unsigned n;
    daemon_t d[REL_MAX_NODES];
    char *dir[REL_MAX_NODES]; /* owned; removed by rel_cluster_free */
    bool running[REL_MAX_NODES];
} rel_cluster_t;

/* Start n nodes on url with the extra flags (NULL-terminated, may be
 * NULL) and, when n > 1, wait (bounded) until each node sees n members
 * up. url NULL: one node on a SQLite file in its directory. 0, or -1
 * (printed; rel_cluster_free still cleans up). */
int rel_cluster_start(rel_cluster_t *c, unsigned n, const char *url, const char *const extra_args[],
                      bool app_names);

/* Wait (bounded, timeout_ms, longer under $SQLCACHED_WRAPPER) until every
 * running node answers GET /v1/cluster with `up` members up. 0 or -1
 * (the last answer is printed). */
int rel_cluster_wait_up(const rel_cluster_t *c, unsigned up, int timeout_ms);

/* SIGKILL node i (reaped). */
void rel_cluster_kill(rel_cluster_t *c, unsigned i);

/* Restart node i (a new port: its base_url changes). 0 or -1. */
int rel_cluster_restart(rel_cluster_t *c, unsigned i);

/* Print each running node's /v1/stats "cluster" object, one line each,
 * after `prefix`. */
void rel_cluster_print_stats(const rel_cluster_t *c, const char *prefix);

/* A /v1/stats "cluster" member of node i as an integer; -1 if unknown. */
long long rel_cluster_stat(const rel_cluster_t *c, unsigned i, const char *member);

/* SIGTERM every running node; 0 when each exited 0. */
int rel_cluster_stop(rel_cluster_t *c);

/* Stop what still runs, remove the directories, free. */
void rel_cluster_free(rel_cluster_t *c);

/* Node i's application_name (app_names): "sqlcached-n<i>". */
void rel_cluster_app_name(unsigned i, char *name, size_t len);

#endif
