/*
 * test_pg_outage.c - PostgreSQL stopped under write load, then started
 * again: the daemon answers 503 meanwhile and recovers by itself.
 *
 * One throwaway cluster (tests/pg.h), the daemon on a fresh schema of it
 * (--durability full). WRITERS threads each write distinct keys (PUT
 * out-W-N = "vW-N") and increment a counter of their own (POST
 * outc-W/incr by 1), a few ms apart, each write recorded with its
 * invocation and completion times and its answer. The main thread:
 *   1. lets the load run LOAD_MS with PostgreSQL up;
 *   2. stops PostgreSQL (pg_fixture_server_stop: a fast shutdown) and
 *      keeps the load on for OUTAGE_MS; meanwhile /healthz must answer
 *      503, and GETs of keys written before may be served from memory
 *      (200 with the value written) or refused (503), nothing else;
 *   3. starts PostgreSQL again (same port, same data) and waits, bounded,
 *      for the first write sent after the start to be answered 2xx: the
 *      recovery time (no restart of the daemon);
 *   4. runs LOAD_MS more, stops the writers; /healthz must answer 200;
 *      the daemon must stop cleanly;
 *   5. reads the kv table through libpq (tests/dbread.h) and checks:
 *      every write answered 2xx is there with its value (lost = 0); no
 *      write sent after PostgreSQL was down and answered before it was
 *      started again got a 2xx; every write not answered 2xx was answered
 *      503 (or 2xx), never another status and never left unanswered; and
 *      a write not answered 2xx is absent (counters: value = acknowledged
 *      increments) unless the daemon logged a COMMIT in doubt, the one
 *      case the contract allows (such writes are counted and reported).
 *
 * Prints the figures; exit 0 when every check held, 1 otherwise, 77 with
 * SQLCACHED_TEST_NO_PG=1. Under $SQLCACHED_WRAPPER (valgrind) the bounds
 * are 20 times longer, the phases and the pause between writes 4 times.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "dbread.h"
#include "relclient.h"
#include "relpg.h"
#include "testutil.h"

#define WRITERS 4
#define MAX_WRITES 4000 /* per writer: bounds the run */
#define PAUSE_US 2000   /* between two writes of one writer */
#define LOAD_MS 500
#define OUTAGE_MS 1500
#define RECOVERY_BOUND_MS 30000
#define PROBE_KEYS 8

enum { W_PUT, W_INCR };

typedef struct wrec {
    int64_t invoke, complete; /* ns, rel_now_ns() */
    long status;              /* 0 = no answer */
    unsigned seq;             /* PUT: the key's number */
    unsigned char kind;
} wrec_t;

typedef struct writer {
    pthread_t thread;
    unsigned id;
    const daemon_t *d;
    wrec_t recs[MAX_WRITES];
    unsigned n;
} writer_t;

static volatile int stop_load; /* written by main, read by writers */
static int64_t started_at;     /* ns: PostgreSQL is up again from here on (under lock) */
static int64_t first_ok_after; /* ns: first 2xx of a write sent after started_at */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* of the phases and the pace of the writers */
static int phase(void)
{
    return testutil_scale() > 1 ? 4 : 1;
}

static void note_ok(const wrec_t *r)
{
    pthread_mutex_lock(&lock);
    if (started_at && r->invoke >= started_at && !first_ok_after)
        first_ok_after = r->complete;
    pthread_mutex_unlock(&lock);
}

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    rel_client_t c;
    if (rel_client_init(&c, w->d->base_url, 10000 * testutil_scale()) != 0)
        return NULL;
    unsigned puts = 0;
    while (!__atomic_load_n(&stop_load, __ATOMIC_RELAXED) && w->n < MAX_WRITES) {
        wrec_t *r = &w->recs[w->n++];
        char path[64], body[64];
        int len;
        r->kind = w->n % 3 == 0 ? W_INCR : W_PUT;
        r->invoke = rel_now_ns();
        rel_transport_t t;
        if (r->kind == W_PUT) {
            r->seq = puts++;
            snprintf(path, sizeof path, "/v1/kv/out-%u-%u", w->id, r->seq);
            len = snprintf(body, sizeof body, "v%u-%u", w->id, r->seq);
            t = rel_request(&c, "PUT", path, body, (size_t)len);
        } else {
            snprintf(path, sizeof path, "/v1/kv/outc-%u/incr", w->id);
            len = snprintf(body, sizeof body, "{\"by\":1}");
            t = rel_request(&c, "POST", path, body, (size_t)len);
        }
        r->complete = rel_now_ns();
        r->status = t == REL_ANSWERED ? c.status : 0;
        if (r->status >= 200 && r->status < 300)
            note_ok(r);
        usleep((useconds_t)(PAUSE_US * phase()));
    }
    rel_client_free(&c);
    return NULL;
}

static void sleep_ms(int ms)
{
    usleep((useconds_t)ms * 1000);
}

static long health(rel_client_t *c)
{
    return rel_request(c, "GET", "/healthz", NULL, 0) == REL_ANSWERED ? c->status : 0;
}

/* ------------------------------------------------------------------------
 * What PostgreSQL holds after the run
 * ------------------------------------------------------------------------ */

typedef struct stored {
    char (*keys)[32];
    char (*values)[32];
    size_t n, cap;
} stored_t;

/* the schema is the run's own: every row is one of ours */
static const char SQL_ROWS[] =
    "SELECT convert_from(key, 'UTF8'), convert_from(value, 'UTF8') FROM kv";

static int take_row(void *cls, int ncols, const char *const *cols)
{
    stored_t *s = cls;
    if (ncols < 2 || !cols[0] || !cols[1])
        return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        char(*k)[32] = realloc(s->keys, cap * sizeof *k);
        if (k)
            s->keys = k;
        char(*v)[32] = realloc(s->values, cap * sizeof *v);
        if (v)
            s->values = v;
        if (!k || !v)
            return -1;
        s->cap = cap;
    }
    snprintf(s->keys[s->n], sizeof s->keys[s->n], "%s", cols[0]);
    snprintf(s->values[s->n], sizeof s->values[s->n], "%s", cols[1]);
    s->n++;
    return 0;
}

/* The stored value of key, or NULL. */
static const char *stored_value(const stored_t *s, const char *key)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->keys[i], key) == 0)
            return s->values[i];
    return NULL;
}

/* ------------------------------------------------------------------------
 * The checks
 * ------------------------------------------------------------------------ */

typedef struct figures {
    uint64_t before_ok, outage_writes, outage_503, outage_2xx_edge, after_ok;
    uint64_t acked, lost, acked_while_down, other_status, unanswered;
    uint64_t refused_present, refused;
    uint64_t cached_reads_200, cached_reads_503, cached_reads_wrong;
} figures_t;

static bool ok2xx(long st)
{
    return st >= 200 && st < 300;
}

static void check_writer(const writer_t *w, const stored_t *s, int64_t down_from, int64_t down_to,
                         figures_t *f)
{
    int64_t incr_acked = 0, incr_refused = 0;
    for (unsigned i = 0; i < w->n; i++) {
        const wrec_t *r = &w->recs[i];
        bool inside = r->invoke >= down_from && r->complete <= down_to;
        bool touches = r->complete >= down_from && r->invoke <= down_to;
        if (ok2xx(r->status)) {
            f->acked++;
            if (inside) {
                f->acked_while_down++;
                fprintf(stderr,
                        "outage: writer %u write %u answered %ld while PostgreSQL was "
                        "down\n",
                        w->id, i, r->status);
            } else if (touches) {
                f->outage_2xx_edge++;
            }
        } else if (r->status == 503) {
            f->refused++;
        } else if (r->status == 0) {
            f->unanswered++;
            f->refused++;
        } else {
            f->other_status++;
            f->refused++;
            fprintf(stderr, "outage: writer %u write %u answered %ld\n", w->id, i, r->status);
        }
        if (inside)
            f->outage_writes++, f->outage_503 += r->status == 503;
        if (r->kind == W_INCR) {
            incr_acked += ok2xx(r->status);
            incr_refused += !ok2xx(r->status);
            continue;
        }
        char key[32], want[32];
        snprintf(key, sizeof key, "out-%u-%u", w->id, r->seq);
        snprintf(want, sizeof want, "v%u-%u", w->id, r->seq);
        const char *got = stored_value(s, key);
        if (ok2xx(r->status) && (!got || strcmp(got, want) != 0)) {
            f->lost++;
            fprintf(stderr, "outage: %s answered %ld, stored: %s\n", key, r->status,
                    got ? got : "(absent)");
        } else if (!ok2xx(r->status) && got) {
            f->refused_present++;
            fprintf(stderr, "outage: %s answered %ld, but stored\n", key, r->status);
        }
    }
    char key[32];
    snprintf(key, sizeof key, "outc-%u", w->id);
    const char *got = stored_value(s, key);
    int64_t value = got ? strtoll(got, NULL, 10) : 0;
    if (value < incr_acked) {
        f->lost += (uint64_t)(incr_acked - value);
        fprintf(stderr, "outage: counter %s = %" PRId64 ", %" PRId64 " increments acknowledged\n",
                key, value, incr_acked);
    } else if (value > incr_acked) {
        f->refused_present += (uint64_t)(value - incr_acked);
        fprintf(stderr,
                "outage: counter %s = %" PRId64 ", %" PRId64 " acknowledged, %" PRId64 " refused\n",
                key, value, incr_acked, incr_refused);
    }
}

/* Lines of the daemon's log that report a COMMIT in doubt (printed, with
 * the error that follows each); *confirmed: COMMITs answered just before
 * the server ended the connection (committed, answered 2xx). */
static unsigned in_doubt_logged(const daemon_t *d, unsigned *confirmed)
{
    FILE *fp = fopen(d->log_path, "r");
    if (!fp)
        return 0;
    char line[1024];
    unsigned n = 0;
    bool next = false; /* print the line after one in doubt: the error */
    while (fgets(line, sizeof line, fp)) {
        bool doubt = strstr(line, "in doubt") != NULL;
        if ((doubt && n < 5) || next)
            printf("outage: daemon log: %s", line);
        next = doubt && n < 5;
        n += doubt;
        *confirmed += strstr(line, "COMMIT was answered, then") != NULL;
    }
    fclose(fp);
    return n;
}

/* GETs of the first PROBE_KEYS keys of w acknowledged: before the outage
 * (f NULL) they fill the memory tier; during it the tier may serve them
 * (with the value written), or the daemon refuses (503). */
static void read_cached(rel_client_t *c, const writer_t *w, figures_t *f)
{
    unsigned seen = 0;
    for (unsigned i = 0; i < w->n && seen < PROBE_KEYS; i++) {
        const wrec_t *r = &w->recs[i];
        if (r->kind != W_PUT || !ok2xx(r->status))
            continue;
        seen++;
        char path[64], want[32];
        snprintf(path, sizeof path, "/v1/kv/out-%u-%u", w->id, r->seq);
        snprintf(want, sizeof want, "v%u-%u", w->id, r->seq);
        if (rel_request(c, "GET", path, NULL, 0) != REL_ANSWERED && f)
            f->cached_reads_wrong++;
        else if (!f)
            continue;
        else if (c->status == 200 && strcmp(c->body, want) == 0)
            f->cached_reads_200++;
        else if (c->status == 503)
            f->cached_reads_503++;
        else {
            f->cached_reads_wrong++;
            fprintf(stderr, "outage: GET %s while down: %ld %s\n", path, c->status, c->body);
        }
    }
}

/* Poll /healthz every 20 ms until it answers want, at most bound_ms; the
 * time it took in ms, or -1. */
static int64_t health_becomes(rel_client_t *c, long want, int bound_ms)
{
    int64_t t0 = rel_now_ns();
    for (int i = 0; i < bound_ms / 20; i++) {
        if (health(c) == want)
            return (rel_now_ns() - t0) / 1000000;
        sleep_ms(20);
    }
    return -1;
}

/* PostgreSQL stopped and started again with no client writing: /healthz
 * must still turn 503, then 200 (the daemon's own periodic writes, the
 * purge of expired rows every second, find out). */
static void idle_outage(pg_fixture_t *pg, rel_client_t *c, int64_t *down_ms, int64_t *up_ms)
{
    if (pg_fixture_server_stop(pg) != 0)
        return;
    *down_ms = health_becomes(c, 503, 10000 * testutil_scale());
    if (pg_fixture_server_start(pg) != 0)
        return;
    *up_ms = health_becomes(c, 200, RECOVERY_BOUND_MS * testutil_scale());
}

int main(void)
{
    if (pg_fixture_skip())
        return 77;
    curl_global_init(CURL_GLOBAL_ALL);
    pg_fixture_t pg;
    char url[256];
    char *dir = testutil_mkdtemp();
    static writer_t writers[WRITERS];
    daemon_t d;
    const char *args[] = {"--durability", "full", "--log-level", "warn", NULL};
    if (!dir || rel_pg_start(&pg) != 0)
        return 1;
    if (pg_fixture_new_db(&pg, url, sizeof url) != 0 || rel_daemon_start(&d, dir, url, args) != 0) {
        fprintf(stderr, "outage: cannot start the daemon on PostgreSQL\n");
        pg_fixture_stop(&pg);
        return 1;
    }
    rel_client_t mc;
    if (rel_client_init(&mc, d.base_url, 10000 * testutil_scale()) != 0)
        return 1;
    int rc = 0;
    figures_t f = {0};
    for (unsigned i = 0; i < WRITERS; i++) {
        writers[i].id = i;
        writers[i].d = &d;
        if (pthread_create(&writers[i].thread, NULL, writer_main, &writers[i]) != 0)
            return 1;
    }
    sleep_ms(LOAD_MS * phase());
    for (unsigned i = 0; i < WRITERS; i++)
        read_cached(&mc, &writers[i], NULL);

    int64_t t_stop = rel_now_ns();
    if (pg_fixture_server_stop(&pg) != 0) {
        fprintf(stderr, "outage: PostgreSQL did not stop\n");
        rc = 1;
    }
    int64_t down_from = rel_now_ns();
    sleep_ms(OUTAGE_MS * phase() / 2);
    long health_down = health(&mc);
    for (unsigned i = 0; i < WRITERS; i++)
        read_cached(&mc, &writers[i], &f);
    sleep_ms(OUTAGE_MS * phase() / 2);
    int64_t down_to = rel_now_ns();
    if (pg_fixture_server_start(&pg) != 0) {
        fprintf(stderr, "outage: PostgreSQL did not start again\n");
        rc = 1;
    }
    int64_t up_at = rel_now_ns();
    pthread_mutex_lock(&lock);
    started_at = up_at;
    pthread_mutex_unlock(&lock);
    int64_t recovered = 0;
    for (int i = 0; i < RECOVERY_BOUND_MS * testutil_scale() / 10 && !recovered; i++) {
        sleep_ms(10);
        pthread_mutex_lock(&lock);
        recovered = first_ok_after;
        pthread_mutex_unlock(&lock);
    }
    sleep_ms(LOAD_MS * phase());
    __atomic_store_n(&stop_load, 1, __ATOMIC_RELAXED);
    for (unsigned i = 0; i < WRITERS; i++)
        pthread_join(writers[i].thread, NULL);
    long health_up = health(&mc);
    int64_t idle_down_ms = -1, idle_up_ms = -1;
    idle_outage(&pg, &mc, &idle_down_ms, &idle_up_ms);
    int stop_rc = daemon_stop(&d);
    unsigned confirmed = 0, in_doubt = in_doubt_logged(&d, &confirmed);

    char err[512];
    stored_t s = {0};
    dbread_t *db = dbread_open(url, err, sizeof err);
    if (!db || dbread_query(db, SQL_ROWS, 0, NULL, take_row, &s) != 0) {
        fprintf(stderr, "outage: cannot read the database: %s\n", db ? dbread_errmsg(db) : err);
        rc = 1;
    }
    dbread_close(db);
    uint64_t total = 0;
    for (unsigned i = 0; i < WRITERS; i++) {
        check_writer(&writers[i], &s, down_from, down_to, &f);
        total += writers[i].n;
    }
    printf("outage: %" PRIu64 " writes by %d clients: %" PRIu64 " answered 2xx, %" PRIu64
           " refused (503 or other), %" PRIu64 " other status, %" PRIu64 " unanswered\n",
           total, WRITERS, f.acked, f.refused, f.other_status, f.unanswered);
    printf("outage: PostgreSQL stopped in %.0f ms, down %.0f ms; writes sent and answered "
           "while down: %" PRIu64 " (503: %" PRIu64 ", 2xx: %" PRIu64 "); 2xx overlapping the "
           "stop or start: %" PRIu64 "\n",
           (double)(down_from - t_stop) / 1e6, (double)(down_to - down_from) / 1e6, f.outage_writes,
           f.outage_503, f.acked_while_down, f.outage_2xx_edge);
    printf("outage: /healthz while down %ld, after recovery %ld; cached reads while down: "
           "%" PRIu64 " served, %" PRIu64 " refused, %" PRIu64 " wrong\n",
           health_down, health_up, f.cached_reads_200, f.cached_reads_503, f.cached_reads_wrong);
    if (recovered)
        printf("outage: recovered %.0f ms after PostgreSQL was started again (its start took "
               "%.0f ms)\n",
               (double)(recovered - up_at) / 1e6, (double)(up_at - down_to) / 1e6);
    else
        printf("outage: NOT RECOVERED within %d ms\n", RECOVERY_BOUND_MS * testutil_scale());
    printf("outage: no writes: /healthz answered 503 %" PRId64 " ms after PostgreSQL "
           "stopped, 200 %" PRId64 " ms after it started again (-1: never)\n",
           idle_down_ms, idle_up_ms);
    printf("outage: checked in PostgreSQL: %" PRIu64 " acknowledged writes, lost %" PRIu64
           "; refused writes found stored %" PRIu64 "; COMMITs logged in doubt %u (answered "
           "just before the connection ended: %u); clean stop %s\n",
           f.acked, f.lost, f.refused_present, in_doubt, confirmed, stop_rc == 0 ? "yes" : "no");
    bool ok = rc == 0 && f.lost == 0 && f.acked_while_down == 0 && f.other_status == 0 &&
              f.unanswered == 0 && f.outage_writes > 0 && f.outage_503 == f.outage_writes &&
              (f.refused_present == 0 || in_doubt > 0) && f.cached_reads_wrong == 0 &&
              health_down == 503 && health_up == 200 && recovered != 0 && stop_rc == 0 &&
              idle_down_ms >= 0 && idle_up_ms >= 0;
    printf("outage: %s\n", ok ? "ok" : "FAILED");
    free(s.keys);
    free(s.values);
    rel_client_free(&mc);
    daemon_free(&d);
    testutil_rmdir(dir);
    if (pg_fixture_stop(&pg) != 0)
        ok = false;
    curl_global_cleanup();
    return ok ? 0 : 1;
}
