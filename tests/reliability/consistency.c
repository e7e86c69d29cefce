/*
 * consistency.c - many clients, few keys, one daemon: record every
 * operation with its invocation and completion times, then check the
 * history (history.h) for stale reads and versions going back.
 *
 *   test_consistency                      the short form (`make check`),
 *   on each backend (SQLite, then PostgreSQL: a fresh schema of one
 *   throwaway cluster, tests/pg.h):
 *       1. 20000 operations, fill guard on, --on-write replace (the
 *          default) -> must report 0 violations;
 *       2. 10000 operations, fill guard on, --on-write invalidate -> 0
 *          violations too;
 *       3. the load of 1 with the memory tier's fill guard disabled
 *          (--testing-disable-fill-guard) -> must report violations, or
 *          the checker is blind.
 *   Runs 1 and 2 also check that the daemon ran the mode asked for
 *   (/v1/stats cache.on_write, and no cached copy replaced by a write in
 *   invalidate mode, some in replace mode).
 *   test_consistency --ops N [--clients C] [--keys K] [--seed S]
 *       one run with the guard on in each --on-write mode
 *       (`make check-consistency`: 1M ops each).
 *   --on-write replace|invalidate|both    which modes (default both).
 *   test_consistency --inject [--ops N]   only the run with the guard off.
 *   test_consistency --demo [--ops N] [--delay-us US]   (make
 *       demo-consistency) SQLite only: the same load against three daemons,
 *       invalidate + guard, replace + guard, invalidate without the guard,
 *       printed side by side; passes when the first two show no stale read
 *       and the third some (one retry if the race was missed).
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
#include "kvops.h"
#include "relpg.h"
#include "relclient.h"
#include "testutil.h"

enum { MODE_REPLACE = 1, MODE_INVALIDATE = 2, MODE_BOTH = 3 };

typedef struct run {
    unsigned ops, clients, keys, delay_us;
    bool guard_off;
    int on_write; /* MODE_REPLACE or MODE_INVALIDATE */
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
        kvops_random(&c, &rng, cl->run->keys, o);
        cl->done++;
    }
    rel_client_free(&c);
    return NULL;
}

/* What one run measured. */
typedef struct outcome {
    int64_t violations; /* -1: the run itself failed (daemon, errors) */
    history_report_t rep;
    double ops_per_s;
    /* /v1/stats cache, -1 when unknown */
    int64_t hits, misses, fills_dropped, write_replaced, write_invalidated;
    char on_write[16];
} outcome_t;

static const char *mode_name(int on_write)
{
    return on_write == MODE_INVALIDATE ? "invalidate" : "replace";
}

static double hit_ratio(const outcome_t *o)
{
    return o->hits + o->misses > 0 ? (double)o->hits / (double)(o->hits + o->misses) : 0.0;
}

/* Read the memory tier's figures into o, to show the reads went through
 * it and which --on-write mode the daemon ran. */
static void read_cache_stats(const daemon_t *d, outcome_t *o)
{
    rel_client_t c;
    o->hits = o->misses = o->fills_dropped = o->write_replaced = o->write_invalidated = -1;
    snprintf(o->on_write, sizeof o->on_write, "?");
    if (rel_client_init(&c, d->base_url, 10000) != 0)
        return;
    if (rel_request(&c, "GET", "/v1/stats", NULL, 0) == REL_ANSWERED && c.status == 200) {
        json_t *j = json_loadb(c.body, c.len, 0, NULL);
        json_t *cache = json_object_get(j, "cache");
        o->hits = json_integer_value(json_object_get(cache, "hits"));
        o->misses = json_integer_value(json_object_get(cache, "misses"));
        o->fills_dropped = json_integer_value(json_object_get(cache, "fills_dropped"));
        o->write_replaced = json_integer_value(json_object_get(cache, "write_replaced"));
        o->write_invalidated = json_integer_value(json_object_get(cache, "write_invalidated"));
        const char *mode = json_string_value(json_object_get(cache, "on_write"));
        if (mode)
            snprintf(o->on_write, sizeof o->on_write, "%s", mode);
        json_decref(j);
    }
    printf("consistency: memory tier hits=%" PRId64 " misses=%" PRId64 " fills dropped=%" PRId64
           ", on write %s: replaced=%" PRId64 " invalidated=%" PRId64 "\n",
           o->hits, o->misses, o->fills_dropped, o->on_write, o->write_replaced,
           o->write_invalidated);
    rel_client_free(&c);
}

/* Did the daemon run the --on-write mode asked for? In replace mode a hot
 * key's writes replace its cached copy; in invalidate mode none may. */
static bool mode_honoured(const run_t *r, const outcome_t *o)
{
    bool ok = strcmp(o->on_write, mode_name(r->on_write)) == 0 &&
              (r->on_write == MODE_INVALIDATE ? o->write_replaced == 0 : o->write_replaced > 0);
    if (!ok)
        printf("consistency: --on-write %s NOT HONOURED: the daemon reports on_write %s, "
               "%" PRId64 " cached copies replaced by writes\n",
               mode_name(r->on_write), o->on_write, o->write_replaced);
    return ok;
}

/* Run the load, check it; out->violations is the number of violations, or
 * -1 if the run itself failed (daemon, errors). */
static void run_measure(const run_t *r, outcome_t *out)
{
    memset(out, 0, sizeof *out);
    out->violations = -1;
    char *dir = testutil_mkdtemp();
    char delay[32];
    snprintf(delay, sizeof delay, "%u", r->delay_us);
    const char *args[] = {"--threads",
                          "8",
                          "--log-level",
                          "warn",
                          "--on-write",
                          mode_name(r->on_write),
                          "--testing-fill-delay-us",
                          delay,
                          r->guard_off ? "--testing-disable-fill-guard" : NULL,
                          NULL};
    daemon_t d;
    char url[256];
    if (r->backend == REL_PG && pg_fixture_new_db(r->pg, url, sizeof url) != 0)
        return;
    if (!dir || rel_daemon_start(&d, dir, r->backend == REL_PG ? url : NULL, args) != 0)
        return;
    hop_t *ops = calloc(r->ops, sizeof *ops);
    client_t *cl = calloc(r->clients, sizeof *cl);
    unsigned per = r->ops / r->clients, total = 0;
    int64_t t0 = rel_now_ns();
    for (unsigned i = 0; ops && cl && i < r->clients; i++) {
        cl[i] = (client_t){.run = r,
                           .d = &d,
                           .id = i,
                           .log = ops + (size_t)i * per,
                           .nops = i + 1 == r->clients ? r->ops - per * i : per};
        pthread_create(&cl[i].thread, NULL, client_main, &cl[i]);
    }
    for (unsigned i = 0; ops && cl && i < r->clients; i++) {
        pthread_join(cl[i].thread, NULL);
        total += cl[i].done;
    }
    double secs = (double)(rel_now_ns() - t0) / 1e9;
    read_cache_stats(&d, out);
    int stop_rc = daemon_stop(&d);
    history_report_t rep;
    if (ops && cl && total == r->ops &&
        history_check(ops, r->ops, r->keys, &rep, stdout, 10) == 0) {
        uint64_t v = history_violations(&rep);
        out->rep = rep;
        out->ops_per_s = r->ops / (secs > 0 ? secs : 1);
        printf("consistency: %s: on write %s, %s: %u ops (%u clients, %u keys, %.0f ops/s), "
               "reads checked %" PRIu64 ", writes checked %" PRIu64 ", violations %" PRIu64
               " (stale %" PRIu64 ", resurrected %" PRIu64 ", missing %" PRIu64 ", phantom %" PRIu64
               ", wrong value %" PRIu64 ", future %" PRIu64 ", version order %" PRIu64
               ", not monotonic %" PRIu64 ", duplicate %" PRIu64 "), errors %" PRIu64 "\n",
               rel_backend_name(r->backend), mode_name(r->on_write),
               r->guard_off ? "fill guard DISABLED" : "fill guard on", r->ops, r->clients, r->keys,
               out->ops_per_s, rep.reads_checked, rep.writes_checked, v, rep.stale, rep.resurrected,
               rep.missing, rep.phantom, rep.wrong_value, rep.future, rep.version_order,
               rep.not_monotonic, rep.duplicate_version, rep.errors);
        out->violations = rep.errors || stop_rc != 0 ? -1 : (int64_t)v;
    }
    fflush(stdout);
    free(ops);
    free(cl);
    daemon_free(&d);
    testutil_rmdir(dir);
}

/* run_measure, for the pass/fail runs: the violations, or -1 when the run
 * failed or (guard on) the daemon did not run the mode asked for. */
static int64_t run_once(const run_t *r)
{
    outcome_t o;
    run_measure(r, &o);
    if (o.violations >= 0 && !r->guard_off && !mode_honoured(r, &o))
        return -1;
    return o.violations;
}

/* The runs asked for on one backend; 0 when they went as they must.
 * `modes`: the --on-write modes of the runs with the guard on; `short_form`:
 * the invalidate run gets half the operations (make check time). */
static int run_backend(const run_t *r, int modes, bool short_form, bool only_normal,
                       bool only_inject, bool expect)
{
    int rc = 0;
    const char *name = rel_backend_name(r->backend);
    for (int mode = MODE_REPLACE; !only_inject && mode <= MODE_INVALIDATE; mode++) {
        if (!(modes & mode))
            continue;
        run_t m = *r;
        m.on_write = mode;
        if (short_form && mode == MODE_INVALIDATE && modes == MODE_BOTH)
            m.ops = r->ops / 2;
        int64_t v = run_once(&m);
        if (expect)
            printf("consistency: %s: %s\n", name,
                   v > 0 ? "violations reported, as expected "
                           "of this daemon"
                         : "NO VIOLATION REPORTED");
        rc |= expect ? v <= 0 : v != 0;
    }
    if (!only_normal) {
        run_t bad = *r;
        bad.guard_off = true;
        bad.on_write = modes & MODE_REPLACE ? MODE_REPLACE : MODE_INVALIDATE;
        bad.delay_us = 2000;
        bad.ops = r->ops / 4 > bad.clients ? r->ops / 4 : r->ops;
        int64_t v = 0;
        for (int attempt = 0; attempt < 3 && v == 0; attempt++) /* a race: retry if missed */
            v = run_once(&bad);
        if (v > 0)
            printf("consistency: %s: the checker caught the disabled fill guard (%" PRId64
                   " violations), as it must\n",
                   name, v);
        else
            printf("consistency: %s: CHECKER BLIND: no violation with the fill guard "
                   "disabled\n",
                   name);
        rc |= v <= 0;
    }
    return rc;
}

/* --demo: one column per configuration. */
typedef struct demo_column {
    int on_write;
    bool guard_off;
    const char *label;
} demo_column_t;

static void demo_row_i(const char *what, const outcome_t *o, int64_t (*get)(const outcome_t *))
{
    printf("%-38s", what);
    for (int i = 0; i < 3; i++)
        printf(" %22" PRId64, get(&o[i]));
    printf("\n");
}

static int64_t get_reads(const outcome_t *o)
{
    return (int64_t)o->rep.reads_checked;
}
static int64_t get_viol(const outcome_t *o)
{
    return o->violations;
}
static int64_t get_stale(const outcome_t *o)
{
    return (int64_t)o->rep.stale;
}
static int64_t get_missing(const outcome_t *o)
{
    return (int64_t)o->rep.missing;
}
static int64_t get_resurrected(const outcome_t *o)
{
    return (int64_t)o->rep.resurrected;
}
static int64_t get_back(const outcome_t *o)
{
    return (int64_t)o->rep.not_monotonic;
}
static int64_t get_dropped(const outcome_t *o)
{
    return o->fills_dropped;
}
static int64_t get_replaced(const outcome_t *o)
{
    return o->write_replaced;
}
static int64_t get_invalidated(const outcome_t *o)
{
    return o->write_invalidated;
}
static int64_t get_ops_s(const outcome_t *o)
{
    return (int64_t)o->ops_per_s;
}

/* The same load against three daemons on SQLite, side by side; 0 when the
 * guarded ones show no stale read and the unguarded one some. */
static int run_demo(const run_t *base)
{
    static const demo_column_t cols[3] = {
        {MODE_INVALIDATE, false, "invalidate + guard"},
        {MODE_REPLACE, false, "replace + guard"},
        {MODE_INVALIDATE, true, "invalidate, NO guard"},
    };
    outcome_t o[3];
    for (int i = 0; i < 3; i++) {
        run_t m = *base;
        m.backend = REL_SQLITE;
        m.on_write = cols[i].on_write;
        m.guard_off = cols[i].guard_off;
        printf("\n--- run %d: sqlcached --on-write %s%s --testing-fill-delay-us %u ---\n", i + 1,
               mode_name(m.on_write), m.guard_off ? " --testing-disable-fill-guard" : "",
               m.delay_us);
        run_measure(&m, &o[i]);
        if (m.guard_off && o[i].violations == 0) { /* a race: one more try if missed */
            printf("(the race was missed: once more)\n");
            run_measure(&m, &o[i]);
        }
    }
    printf("\nSame load on each: %u operations (55%% GET, 25%% PUT, 10%% DELETE, 10%% incr) "
           "from %u clients on %u keys; a reader sleeps %u us between its read of the "
           "database and its fill of the memory tier.\n\n%-38s",
           base->ops, base->clients, base->keys, base->delay_us, "");
    for (int i = 0; i < 3; i++)
        printf(" %22s", cols[i].label);
    printf("\n");
    demo_row_i("reads checked", o, get_reads);
    demo_row_i("stale reads found (all kinds)", o, get_viol);
    demo_row_i("  older version than acknowledged", o, get_stale);
    demo_row_i("  a value after an acknowledged DELETE", o, get_resurrected);
    demo_row_i("  404 after an acknowledged write", o, get_missing);
    demo_row_i("  a client saw a version go back", o, get_back);
    demo_row_i("fills dropped by the guard", o, get_dropped);
    demo_row_i("cached copies replaced by writes", o, get_replaced);
    demo_row_i("cached copies deleted by writes", o, get_invalidated);
    printf("%-38s", "hit ratio");
    for (int i = 0; i < 3; i++)
        printf(" %22.3f", hit_ratio(&o[i]));
    printf("\n");
    demo_row_i("operations per second", o, get_ops_s);
    bool ok = o[0].violations == 0 && o[1].violations == 0 && o[2].violations > 0;
    printf("\n%s\n", ok ? "result: as expected: no stale read with the guard (either mode), "
                          "stale reads without it"
                        : "result: NOT AS EXPECTED (see above)");
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *wrapper = getenv("SQLCACHED_WRAPPER");
    bool slow = wrapper && *wrapper;
    run_t r = {.ops = slow ? 2000 : 20000,
               .clients = slow ? 4 : 8,
               .keys = 4,
               .delay_us = 300,
               .seed = (uint64_t)time(NULL),
               .on_write = MODE_REPLACE};
    bool only_normal = false, only_inject = false, expect = false, demo = false;
    bool short_form = true;
    int backends = REL_BOTH, modes = MODE_BOTH;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--inject") == 0)
            only_inject = true;
        else if (strcmp(argv[i], "--demo") == 0)
            demo = true;
        else if (i + 1 < argc && strcmp(argv[i], "--delay-us") == 0)
            r.delay_us = (unsigned)atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--on-write") == 0) {
            const char *m = argv[++i];
            modes = strcmp(m, "replace") == 0      ? MODE_REPLACE
                    : strcmp(m, "invalidate") == 0 ? MODE_INVALIDATE
                    : strcmp(m, "both") == 0       ? MODE_BOTH
                                                   : 0;
            if (!modes)
                backends = -1;
        } else if (strcmp(argv[i], "--expect-violations") == 0)
            expect = only_normal = true;
        else if (i + 1 < argc && strcmp(argv[i], "--ops") == 0)
            r.ops = (unsigned)atoi(argv[++i]), only_normal = !only_inject, short_form = false;
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
                            "[--on-write replace|invalidate|both] [--expect-violations] "
                            "[--demo [--delay-us US]]\n");
            return 2;
        }
    }
    if (only_inject)
        only_normal = expect = false;
    if (r.clients < 1 || r.clients > 256 || r.keys < 1 || r.keys > 65535 || r.ops < r.clients ||
        r.delay_us < 1 || r.delay_us > 1000000)
        return 2;
    curl_global_init(CURL_GLOBAL_ALL);
    printf("consistency: seed %" PRIu64 "\n", r.seed);
    int rc = 0;
    if (demo) {
        rc = run_demo(&r);
        curl_global_cleanup();
        return rc;
    }
    if (backends & REL_SQLITE) {
        r.backend = REL_SQLITE;
        rc |= run_backend(&r, modes, short_form, only_normal, only_inject, expect);
    }
    pg_fixture_t pg;
    int pg_rc = backends & REL_PG ? rel_pg_start(&pg) : 1;
    if (pg_rc < 0)
        rc = 1;
    if (pg_rc == 0) {
        r.backend = REL_PG;
        r.pg = &pg;
        rc |= run_backend(&r, modes, short_form, only_normal, only_inject, expect);
        if (pg_fixture_stop(&pg) != 0)
            rc = 1;
    }
    curl_global_cleanup();
    return rc;
}
