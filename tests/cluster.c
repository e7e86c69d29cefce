/*
 * cluster.c - see cluster.h. A node is started the way
 * tests/reliability/relpg.c starts a daemon on a given database: a
 * daemon_t filled with the URL as its --db, launched by daemon_restart().
 */
#include "cluster.h"
#include "pg.h"
#include "testutil.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define START_WAIT_MS 15000 /* until every node lists every member up */

static pthread_mutex_t pg_lock = PTHREAD_MUTEX_INITIALIZER;
static pg_fixture_t pg;
static pid_t pg_owner; /* the process that started the server */
static int pg_state;   /* 0 not started, 1 running, -1 failed */

bool cluster_skip(void)
{
    return pg_fixture_skip() != 0;
}

static void pg_stop_at_exit(void)
{
    if (getpid() != pg_owner)
        return;
    pthread_mutex_lock(&pg_lock);
    if (pg_state == 1)
        pg_fixture_stop(&pg);
    pg_state = 0;
    pthread_mutex_unlock(&pg_lock);
}

/* A fresh schema of the process's server (started on first use) into url. */
static int new_schema(char *url, size_t len)
{
    pthread_mutex_lock(&pg_lock);
    if (pg_state == 0) {
        pg_state = pg_fixture_start(&pg) == 0 ? 1 : -1;
        if (pg_state == 1) {
            pg_owner = getpid();
            printf("cluster: PostgreSQL at %s (%s)\n", pg.url, pg.dir);
            if (atexit(pg_stop_at_exit) != 0)
                fprintf(stderr, "atexit failed: the server's watchdog will stop it\n");
        }
    }
    int rc = pg_state == 1 ? pg_fixture_new_db(&pg, url, len) : -1;
    pthread_mutex_unlock(&pg_lock);
    if (rc != 0)
        fprintf(stderr, "cluster: no PostgreSQL schema for the cluster\n");
    return rc;
}

/* Fill node i (directory, --db, log, flags) without starting it. */
static int node_init(cluster_t *c, int i, const char *const extra_args[], bool add_timeout)
{
    daemon_t *d = &c->node[i];
    memset(d, 0, sizeof *d);
    c->dir[i] = testutil_mkdtemp();
    if (!c->dir[i] || strlen(c->url) >= sizeof d->db_path)
        return -1;
    snprintf(d->dir, sizeof d->dir, "%s", c->dir[i]);
    snprintf(d->db_path, sizeof d->db_path, "%s", c->url);
    snprintf(d->log_path, sizeof d->log_path, "%s/daemon.log", c->dir[i]);
    if (add_timeout) {
        char ms[16];
        snprintf(ms, sizeof ms, "%d", c->member_timeout_ms);
        d->args[d->nargs++] = strdup("--member-timeout");
        d->args[d->nargs++] = strdup(ms);
    }
    for (int k = 0; extra_args && extra_args[k] && d->nargs < 47; k++)
        d->args[d->nargs++] = strdup(extra_args[k]);
    for (int k = 0; k < d->nargs; k++)
        if (!d->args[k])
            return -1;
    return 0;
}

/* The --member-timeout among the extra flags, or 0. */
static int timeout_in(const char *const extra_args[])
{
    for (int k = 0; extra_args && extra_args[k]; k++) {
        if (strcmp(extra_args[k], "--member-timeout") == 0 && extra_args[k + 1])
            return atoi(extra_args[k + 1]);
        if (strncmp(extra_args[k], "--member-timeout=", 17) == 0)
            return atoi(extra_args[k] + 17);
    }
    return 0;
}

int cluster_start(cluster_t *c, int n, const char *const extra_args[])
{
    memset(c, 0, sizeof *c);
    if (n < 1 || n > CLUSTER_MAX || new_schema(c->url, sizeof c->url) != 0)
        return -1;
    int given = timeout_in(extra_args);
    /* under a wrapper (valgrind) a node renews far more slowly */
    c->member_timeout_ms = given > 0              ? given
                           : testutil_scale() > 1 ? CLUSTER_MEMBER_TIMEOUT_WRAPPED_MS
                                                  : CLUSTER_MEMBER_TIMEOUT_MS;
    for (int i = 0; i < n; i++) {
        c->n = i + 1;
        if (node_init(c, i, extra_args, given <= 0) != 0 || daemon_restart(&c->node[i]) != 0) {
            fprintf(stderr, "cluster: node %d did not start\n", i);
            cluster_stop(c);
            return -1;
        }
    }
    for (int i = 0; i < n; i++) {
        if (cluster_wait_up(c, i, n, START_WAIT_MS) != 0) {
            fprintf(stderr, "cluster: node %d does not list %d members up (it shows %d)\n", i, n,
                    cluster_members_up(c, i));
            cluster_stop(c);
            return -1;
        }
    }
    return 0;
}

int cluster_stop(cluster_t *c)
{
    int failures = 0;
    for (int i = 0; i < c->n; i++)
        if (c->paused[i])
            cluster_resume(c, i);
    for (int i = 0; i < c->n; i++) {
        daemon_t *d = &c->node[i];
        if (d->pid > 0) {
            int rc = daemon_stop(d);
            if (rc != 0) {
                fprintf(stderr, "cluster: node %d did not stop cleanly: status %d\n", i, rc);
                failures++;
            }
        }
        daemon_free(d);
        if (c->dir[i])
            testutil_rmdir(c->dir[i]);
        c->dir[i] = NULL;
    }
    c->n = 0;
    return failures;
}

daemon_t *cluster_node(cluster_t *c, int i)
{
    return &c->node[i];
}

void cluster_kill(cluster_t *c, int i)
{
    c->paused[i] = false; /* SIGKILL ends a stopped process too */
    daemon_kill(&c->node[i]);
}

static int signal_node(cluster_t *c, int i, int sig)
{
    return c->node[i].pid > 0 && kill(c->node[i].pid, sig) == 0 ? 0 : -1;
}

int cluster_pause(cluster_t *c, int i)
{
    if (signal_node(c, i, SIGSTOP) != 0)
        return -1;
    c->paused[i] = true;
    return 0;
}

int cluster_resume(cluster_t *c, int i)
{
    if (signal_node(c, i, SIGCONT) != 0)
        return -1;
    c->paused[i] = false;
    return 0;
}

int cluster_running(const cluster_t *c)
{
    int running = 0;
    for (int i = 0; i < c->n; i++)
        running += c->node[i].pid > 0;
    return running;
}

int cluster_restart(cluster_t *c, int i)
{
    if (c->node[i].pid > 0 || daemon_restart(&c->node[i]) != 0)
        return -1;
    return cluster_wait_up(c, i, cluster_running(c), START_WAIT_MS);
}

json_t *cluster_view(cluster_t *c, int i)
{
    client_resp_t r;
    json_t *j = NULL;
    if (client_request(&c->node[i], "GET", "/v1/cluster", NULL, NULL, 0, &r) == 0 &&
        r.status == 200)
        j = client_json(&r);
    client_resp_free(&r);
    return j;
}

int cluster_members_up(cluster_t *c, int i)
{
    json_t *j = cluster_view(c, i);
    json_t *members = j ? json_object_get(j, "members") : NULL;
    if (!json_is_array(members)) {
        json_decref(j);
        return -1;
    }
    int up = 0;
    size_t k;
    json_t *m;
    json_array_foreach (members, k, m) {
        const char *state = json_string_value(json_object_get(m, "state"));
        up += state && strcmp(state, "up") == 0;
    }
    json_decref(j);
    return up;
}

int cluster_wait_up(cluster_t *c, int i, int want, int timeout_ms)
{
    int64_t until = testutil_mono_ms() + (int64_t)timeout_ms * testutil_scale();
    for (;;) {
        if (cluster_members_up(c, i) == want)
            return 0;
        if (testutil_mono_ms() > until)
            return -1;
        usleep(20000);
    }
}
