/*
 * relcluster.c - see relcluster.h.
 */
#include "relcluster.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "relpg.h"
#include "testutil.h"

int rel_cluster_start(rel_cluster_t *c, unsigned n, const char *url, const char *const extra_args[],
                      bool app_names)
{
    memset(c, 0, sizeof *c);
    if (n < 1 || n > REL_MAX_NODES)
        return -1;
    for (unsigned i = 0; i < n; i++) {
        char node_url[512];
        if (!url)
            node_url[0] = '\0';
        else if (app_names)
            snprintf(node_url, sizeof node_url, "%s%capplication_name=sqlcached-n%u", url,
                     strchr(url, '?') ? '&' : '?', i); /* rel_cluster_app_name */
        else
            snprintf(node_url, sizeof node_url, "%s", url);
        c->n = i + 1;
        c->dir[i] = testutil_mkdtemp();
        if (!c->dir[i] ||
            rel_daemon_start(&c->d[i], c->dir[i], url ? node_url : NULL, extra_args) != 0) {
            fprintf(stderr, "cluster: node %u did not start\n", i);
            return -1;
        }
        c->running[i] = true;
    }
    return n > 1 ? rel_cluster_wait_up(c, n, 15000) : 0;
}

/* Members up in node i's /v1/cluster, or -1; the body into last. */
static int members_up(const daemon_t *d, char *last, size_t len)
{
    client_resp_t r;
    int up = -1;
    if (client_request(d, "GET", "/v1/cluster", NULL, NULL, 0, &r) != 0)
        return -1;
    snprintf(last, len, "%ld %s", r.status, r.body ? r.body : "");
    json_t *j = r.status == 200 ? client_json(&r) : NULL;
    json_t *members = json_object_get(j, "members");
    if (json_is_array(members)) {
        size_t k;
        json_t *m;
        up = 0;
        json_array_foreach (members, k, m) {
            const char *st = json_string_value(json_object_get(m, "state"));
            up += st && strcmp(st, "up") == 0;
        }
    }
    json_decref(j);
    client_resp_free(&r);
    return up;
}

int rel_cluster_wait_up(const rel_cluster_t *c, unsigned up, int timeout_ms)
{
    char last[1024] = "";
    int rounds = timeout_ms / 50 * testutil_scale();
    for (int k = 0; k < rounds; k++) {
        bool all = true;
        for (unsigned i = 0; i < c->n && all; i++)
            all = !c->running[i] || members_up(&c->d[i], last, sizeof last) == (int)up;
        if (all)
            return 0;
        usleep(50000);
    }
    fprintf(stderr, "cluster: not every node sees %u members up; last /v1/cluster: %s\n", up, last);
    return -1;
}

void rel_cluster_kill(rel_cluster_t *c, unsigned i)
{
    if (i < c->n && c->running[i])
        daemon_kill(&c->d[i]);
    if (i < c->n)
        c->running[i] = false;
}

int rel_cluster_restart(rel_cluster_t *c, unsigned i)
{
    if (i >= c->n || c->running[i] || daemon_restart(&c->d[i]) != 0)
        return -1;
    c->running[i] = true;
    return 0;
}

/* Node i's /v1/stats "cluster" object (caller decrefs), or NULL. */
static json_t *cluster_stats(const rel_cluster_t *c, unsigned i)
{
    client_resp_t r;
    if (i >= c->n || !c->running[i] ||
        client_request(&c->d[i], "GET", "/v1/stats", NULL, NULL, 0, &r) != 0)
        return NULL;
    json_t *j = r.status == 200 ? client_json(&r) : NULL;
    json_t *cl = json_incref(json_object_get(j, "cluster"));
    json_decref(j);
    client_resp_free(&r);
    return cl;
}

void rel_cluster_print_stats(const rel_cluster_t *c, const char *prefix)
{
    for (unsigned i = 0; i < c->n; i++) {
        json_t *cl = cluster_stats(c, i);
        char *s = cl ? json_dumps(cl, JSON_COMPACT) : NULL;
        printf("%snode %u %s: %s\n", prefix, i, c->running[i] ? "stats.cluster" : "(down)",
               s ? s : "-");
        free(s);
        json_decref(cl);
    }
}

long long rel_cluster_stat(const rel_cluster_t *c, unsigned i, const char *member)
{
    json_t *cl = cluster_stats(c, i);
    json_t *v = json_object_get(cl, member);
    long long x = json_is_integer(v) ? (long long)json_integer_value(v) : -1;
    json_decref(cl);
    return x;
}

int rel_cluster_stop(rel_cluster_t *c)
{
    int rc = 0;
    for (unsigned i = 0; i < c->n; i++) {
        if (!c->running[i])
            continue;
        if (daemon_stop(&c->d[i]) != 0) {
            fprintf(stderr, "cluster: node %u did not exit cleanly (log %s)\n", i,
                    c->d[i].log_path);
            rc = -1;
        }
        c->running[i] = false;
    }
    return rc;
}

void rel_cluster_free(rel_cluster_t *c)
{
    rel_cluster_stop(c);
    for (unsigned i = 0; i < c->n; i++) {
        daemon_free(&c->d[i]);
        if (c->dir[i])
            testutil_rmdir(c->dir[i]); /* frees it */
        c->dir[i] = NULL;
    }
    c->n = 0;
}

void rel_cluster_app_name(unsigned i, char *name, size_t len)
{
    snprintf(name, len, "sqlcached-n%u", i);
}
