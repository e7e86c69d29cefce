/*
 * cluster.h - test fixture: N sqlcached daemons (at most CLUSTER_MAX) on
 * one throwaway PostgreSQL schema, which makes them the nodes of one
 * cluster (see the contract, "PostgreSQL and clusters").
 *
 * One PostgreSQL server per test process (tests/pg.h), started by the first
 * cluster_start() and stopped at exit (atexit, in that process; its watchdog
 * stops it if the process dies otherwise); each cluster_start() takes a
 * fresh schema of it. Each node is a daemon_t (tests/daemon.h) with its log
 * in a temporary directory of its own, on a free loopback port, started
 * with --db URL --member-timeout MS (CLUSTER_MEMBER_TIMEOUT_MS, or
 * CLUSTER_MEMBER_TIMEOUT_WRAPPED_MS under $SQLCACHED_WRAPPER, unless the
 * extra flags give one) and the extra flags.
 *
 * Every wait is bounded (and lengthened under $SQLCACHED_WRAPPER, as in
 * daemon.c). SQLCACHED_TEST_NO_PG=1: cluster_skip() is true and a test
 * program should exit 77 (skipped).
 */
#ifndef SQLCACHED_TEST_CLUSTER_H
#define SQLCACHED_TEST_CLUSTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "daemon.h"

#define CLUSTER_MAX 5
#define CLUSTER_MEMBER_TIMEOUT_MS 1000
#define CLUSTER_MEMBER_TIMEOUT_WRAPPED_MS 8000 /* under $SQLCACHED_WRAPPER */

typedef struct cluster {
    int n;                  /* nodes started */
    int member_timeout_ms;  /* the --member-timeout every node runs with */
    char url[512];          /* the schema's postgresql:// URL (--db) */
    char *dir[CLUSTER_MAX]; /* each node's directory (malloc'd) */
    daemon_t node[CLUSTER_MAX];
    bool paused[CLUSTER_MAX]; /* SIGSTOPped by cluster_pause */
} cluster_t;

/* True when SQLCACHED_TEST_NO_PG=1 (prints why): exit 77. */
bool cluster_skip(void);

/* Start n nodes on a fresh schema, with extra flags (NULL-terminated, may
 * be NULL), and wait until /v1/cluster on every node lists n members up.
 * 0, or -1 (reported; whatever started is stopped, *c is empty). */
int cluster_start(cluster_t *c, int n, const char *const extra_args[]);

/* Resume paused nodes, SIGTERM every running node and wait for it, remove
 * the directories. Returns how many running nodes did not exit 0 (their
 * logs are printed). Safe on a stopped or failed cluster. */
int cluster_stop(cluster_t *c);

/* The node's daemon (its base_url, port, pid; pid 0 when not running). */
daemon_t *cluster_node(cluster_t *c, int i);

/* SIGKILL node i and reap it. */
void cluster_kill(cluster_t *c, int i);

/* SIGSTOP / SIGCONT node i. 0 or -1. */
int cluster_pause(cluster_t *c, int i);
int cluster_resume(cluster_t *c, int i);

/* Start node i again (after cluster_kill or a stop) with the same flags on
 * a fresh port, and wait until it lists every running node up. 0 or -1. */
int cluster_restart(cluster_t *c, int i);

/* Nodes running (started, not killed). */
int cluster_running(const cluster_t *c);

/* GET /v1/cluster on node i: the parsed 200 body (caller decrefs), or
 * NULL (no answer, another status, not JSON). */
json_t *cluster_view(cluster_t *c, int i);

/* Members node i shows "up", or -1 when it does not answer. */
int cluster_members_up(cluster_t *c, int i);

/* Wait until node i shows exactly `want` members up, at most timeout_ms
 * (times the wrapper's scale). 0, or -1 on timeout. */
int cluster_wait_up(cluster_t *c, int i, int want, int timeout_ms);

#endif
