/*
 * consistency.c - many clients, few keys, one daemon: record every
 * operation with its invocation and completion times, then check the
 * history (history.h) for stale reads and versions going back.
 *
 *   test_consistency                      the short form (`make check`),
 *   on each backend (SQLite, then PostgreSQL: a fresh schema of one
 *   throwaway cluster, tests/pg.h):
 *       1. 20000 operations, fill guard on  -> must report 0 violations;
 *       2. the same load with the memory tier's fill guard disabled
 *          (--testing-disable-fill-guard) -> must report violations, or
 *          the checker is blind.
 *   test_consistency --ops N [--clients C] [--keys K] [--seed S]
 *       one run with the guard on (`make check-consistency`: 1M ops).
 *   test_consistency --inject [--ops N]   only the run with the guard off.
 *   --backend sqlite|postgresql|both      which backends (default both;
 *       SQLCACHED_TEST_NO_PG=1 leaves PostgreSQL out).
 *   --expect-violations                   pass only if the run with the
 *       guard on reports violations (for a daemon built broken on purpose:
 *       tests/reliability/pg-sabotage.sh).
 *
 * Both runs pass --testing-fill-delay-us so that a reader sleeps between
 * its read of the database and its fill of the memory tier: the stale-fill
 * race then happens often, and only the guard stands between it and a
 * stale read. Under $SQLCACHED_WRAPPER (valgrind) the runs are 10x shorter.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "history.h"
#include "relpg.h"
#include "relclient.h"
#include "testutil.h"

typedef struct run {
    unsigned ops, clients, keys, delay_us;
    bool guard_off;
    uint64_t seed;
    int backend;      /* REL_SQLITE or REL_PG */
    pg_fixture_t *pg; /* the cluster (REL_PG) */
} run_t;

typedef struct client {
    pthread_t thread;
    const run_t *run;
    const daemon_t *d;
    unsigned id, nops;
    hop_t *log;
    unsigned done;
} client_t;

/* Fill o from the answer to the request just made. */
static void record_answer(rel_client_t *c, hop_t *o)
{
    long st = c->status;
    o->status = (uint16_t)st;
    o->result = st >= 200 && st < 300 ? HOP_OK
                : st == 404           ? HOP_ABSENT
                : st == 412 || st == 409 ? HOP_OTHER
                                      : HOP_ERROR;
    if (o->result != HOP_OK)
        return;
    if (o->kind == HOP_GET) {
        o->version = c->etag;
        o->value = strtoll(c->body, NULL, 10);
    } else if (o->kind == HOP_PUT) {
        o->version = c->etag;
    } else if (o->kind == HOP_INCR) {
        o->version = c->etag;
        if (rel_json_int(c, "value", &o->value) != 0)
            o->result = HOP_ERROR;
    }
}

/* One random operation, recorded in o. */
static void one_op(rel_client_t *c, uint64_t *rng, unsigned nkeys, hop_t *o)
{
    char path[64], body[32];
    unsigned dice = (unsigned)(rel_rand(rng) % 100);
    o->key = (uint16_t)(rel_rand(rng) % nkeys);
    const char *method = "GET";
    const char *payload = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "/v1/kv/c%u", o->key);
    if (dice < 55) {
        o->kind = HOP_GET;
    } else if (dice < 80) {
        o->kind = HOP_PUT;
        method = "PUT";
        o->value = (int64_t)(rel_rand(rng) % 1000000);
        len = (size_t)snprintf(body, sizeof body, "%" PRId64, o->value);
        payload = body;
    } else if (dice < 90) {
        o->kind = HOP_DELETE;
        method = "DELETE";
    } else {
        o->kind = HOP_INCR;
        method = "POST";
        snprintf(path, sizeof path, "/v1/kv/c%u/incr", o->key);
        len = (size_t)snprintf(body, sizeof body, "{\"by\":%u}", 1 + (unsigned)(rel_rand(rng) % 3));
        payload = body;
    }
    o->invoke = rel_now_ns();
    rel_transport_t t = rel_request(c, method, path, payload, len);
    o->complete = rel_now_ns();
    if (t != REL_ANSWERED) {
        o->result = HOP_ERROR;
        o->value = c->curl_code; /* for the error report */
    }
    else
        record_answer(c, o);
}

static void *client_main(void *arg)
{
    client_t *cl = arg;
    rel_client_t c;
    uint64_t rng = cl->run->seed * 0x9e3779b97f4a7c15ULL + cl->id + 1;
    if (rel_client_init(&c, cl->d->base_url, 30000) != 0)
        return NULL;
    for (unsigned i = 0; i < cl->nops; i++) {
        hop_t *o = &cl->log[i];
        memset(o, 0, sizeof *o);
        o->client = cl->id;
        one_op(&c, &rng, cl->run->keys, o);
        cl->done++;
    }
    rel_client_free(&c);
    return NULL;
}

/* Print the memory tier's figures, to show the reads went through it. */
static void print_cache_stats(const daemon_t *d)
{
    rel_client_t c;
    if (rel_client_init(&c, d->base_url, 10000) != 0)
        return;
    int64_t hits = -1, misses = -1;
    if (rel_request(&c, "GET", "/v1/stats", NULL, 0) == REL_ANSWERED && c.status == 200) {
        json_t *j = json_loadb(c.body, c.len, 0, NULL);
        json_t *cache = json_object_get(j, "cache");
        hits = json_integer_value(json_object_get(cache, "hits"));
        misses = json_integer_value(json_object_get(cache, "misses"));
        json_decref(j);
    }
    printf("consistency: memory tier hits=%" PRId64 " misses=%" PRId64 "\n", hits, misses);
    rel_client_free(&c);
}

/* Run the load, check it; the number of violations, or -1 if the run
 * itself failed (daemon, errors). */
static int64_t run_once(const run_t *r)
{
    char *dir = testutil_mkdtemp();
    char delay[32];
    snprintf(delay, sizeof delay, "%u", r->delay_us);
    const char *args[] = {"--threads", "8", "--log-level", "warn", "--testing-fill-delay-us",
                          delay, r->guard_off ? "--testing-disable-fill-guard" : NULL, NULL};
    daemon_t d;
    char url[256];
    if (r->backend == REL_PG && pg_fixture_new_db(r->pg, url, sizeof url) != 0)
        return -1;
    if (!dir || rel_daemon_start(&d, dir, r->backend == REL_PG ? url : NULL, args) != 0)
        return -1;
    hop_t *ops = calloc(r->ops, sizeof *ops);
    client_t *cl = calloc(r->clients, sizeof *cl);
    int64_t result = -1;
    unsigned per = r->ops / r->clients, total = 0;
    int64_t t0 = rel_now_ns();
    for (unsigned i = 0; ops && cl && i < r->clients; i++) {
        cl[i] = (client_t){.run = r, .d = &d, .id = i, .log = ops + (size_t)i * per,
                           .nops = i + 1 == r->clients ? r->ops - per * i : per};
        pthread_create(&cl[i].thread, NULL, client_main, &cl[i]);
    }
    for (unsigned i = 0; ops && cl && i < r->clients; i++) {
        pthread_join(cl[i].thread, NULL);
        total += cl[i].done;
    }
    double secs = (double)(rel_now_ns() - t0) / 1e9;
    print_cache_stats(&d);
    int stop_rc = daemon_stop(&d);
    history_report_t rep;
    if (ops && cl && total == r->ops &&
        history_check(ops, r->ops, r->keys, &rep, stdout, 10) == 0) {
        uint64_t v = history_violations(&rep);
        printf("consistency: %s: %s: %u ops (%u clients, %u keys, %.0f ops/s), reads checked %"
               PRIu64 ", writes checked %" PRIu64 ", violations %" PRIu64 " (stale %" PRIu64
               ", resurrected %" PRIu64 ", missing %" PRIu64 ", phantom %" PRIu64
               ", wrong value %" PRIu64 ", future %" PRIu64 ", version order %" PRIu64
               ", not monotonic %" PRIu64 ", duplicate %" PRIu64 "), errors %" PRIu64 "\n",
               rel_backend_name(r->backend),
               r->guard_off ? "fill guard DISABLED" : "fill guard on", r->ops, r->clients,
               r->keys, r->ops / (secs > 0 ? secs : 1), rep.reads_checked, rep.writes_checked,
               v, rep.stale, rep.resurrected, rep.missing, rep.phantom, rep.wrong_value,
               rep.future, rep.version_order, rep.not_monotonic, rep.duplicate_version,
               rep.errors);
        result = rep.errors || stop_rc != 0 ? -1 : (int64_t)v;
    }
    fflush(stdout);
    free(ops);
    free(cl);
    daemon_free(&d);
    testutil_rmdir(dir);
    return result;
}

/* The runs asked for on one backend; 0 when they went as they must. */
static int run_backend(const run_t *r, bool only_normal, bool only_inject, bool expect)
{
    int rc = 0;
    const char *name = rel_backend_name(r->backend);
    if (!only_inject) {
        int64_t v = run_once(r);
        if (expect)
            printf("consistency: %s: %s\n", name, v > 0 ? "violations reported, as expected "
                   "of this daemon" : "NO VIOLATION REPORTED");
        rc |= expect ? v <= 0 : v != 0;
    }
    if (!only_normal) {
        run_t bad = *r;
        bad.guard_off = true;
        bad.delay_us = 2000;
        bad.ops = r->ops / 4 > bad.clients ? r->ops / 4 : r->ops;
        int64_t v = 0;
        for (int attempt = 0; attempt < 3 && v == 0; attempt++) /* a race: retry if missed */
            v = run_once(&bad);
        if (v > 0)
            printf("consistency: %s: the checker caught the disabled fill guard (%" PRId64
                   " violations), as it must\n", name, v);
        else
            printf("consistency: %s: CHECKER BLIND: no violation with the fill guard "
                   "disabled\n", name);
        rc |= v <= 0;
    }
    return rc;
}

int main(int argc, char **argv)
{
    const char *wrapper = getenv("SQLCACHED_WRAPPER");
    bool slow = wrapper && *wrapper;
    run_t r = {.ops = slow ? 2000 : 20000, .clients = slow ? 4 : 8, .keys = 4,
               .delay_us = 300, .seed = (uint64_t)time(NULL)};
    bool only_normal = false, only_inject = false, expect = false;
    int backends = REL_BOTH;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--inject") == 0)
            only_inject = true;
        else if (strcmp(argv[i], "--expect-violations") == 0)
            expect = only_normal = true;
        else if (i + 1 < argc && strcmp(argv[i], "--ops") == 0)
            r.ops = (unsigned)atoi(argv[++i]), only_normal = !only_inject;
        else if (i + 1 < argc && strcmp(argv[i], "--clients") == 0)
            r.clients = (unsigned)atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--keys") == 0)
            r.keys = (unsigned)atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--seed") == 0)
            r.seed = strtoull(argv[++i], NULL, 10);
        else if (i + 1 < argc && strcmp(argv[i], "--backend") == 0)
            backends = rel_backends_parse(argv[++i]);
        else
            backends = -1;
        if (backends < 0) {
            fprintf(stderr, "usage: test_consistency [--ops N] [--clients C] [--keys K] "
                            "[--seed S] [--inject] [--backend sqlite|postgresql|both] "
                            "[--expect-violations]\n");
            return 2;
        }
    }
    if (only_inject)
        only_normal = expect = false;
    if (r.clients < 1 || r.clients > 256 || r.keys < 1 || r.keys > 65535 || r.ops < r.clients)
        return 2;
    curl_global_init(CURL_GLOBAL_ALL);
    printf("consistency: seed %" PRIu64 "\n", r.seed);
    int rc = 0;
    if (backends & REL_SQLITE) {
        r.backend = REL_SQLITE;
        rc |= run_backend(&r, only_normal, only_inject, expect);
    }
    pg_fixture_t pg;
    int pg_rc = backends & REL_PG ? rel_pg_start(&pg) : 1;
    if (pg_rc < 0)
        rc = 1;
    if (pg_rc == 0) {
        r.backend = REL_PG;
        r.pg = &pg;
        rc |= run_backend(&r, only_normal, only_inject, expect);
        if (pg_fixture_stop(&pg) != 0)
            rc = 1;
    }
    curl_global_cleanup();
    return rc;
}
