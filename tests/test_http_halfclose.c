/*
 * test_http_halfclose.c - clients that half-close: each sends a request,
 * then shutdown(SHUT_WR) (nc -N and some proxies do this) 0, 0.5, 2, 10 or
 * 50 ms later, and must still read its whole answer. The requests are the
 * ones the daemon parks (MHD_suspend_connection) until an event: PUT,
 * DELETE and incr until their group commit, a lease acquire with a wait
 * until the holder releases (about 300 ms later).
 *
 * The machine is loaded for the duration of each test (spinning child
 * processes, killed by PID in the teardown, each also bounded by its own
 * deadline), and the writes run twice: as they come, and with the writer
 * stalled by a second SQLite connection holding BEGIN IMMEDIATE until every
 * client has sent its FIN, so that every FIN surely reaches the daemon
 * while the request is parked (libmicrohttpd 0.9.75 closed such a
 * connection without an answer when it resumed it: see the parking
 * comment of src/http.c).
 *
 * Every client prints what it got; the figures per FIN delay are printed
 * as "answered X/N". A lease waiter that vanished (closed with a reset
 * while parked) must not keep the lease it is then granted: the lease is
 * free again at once, not at the end of its ttl.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon.h"
#include "sidedb.h"
#include "testutil.h"

#define NDELAYS 5
#define PER_DELAY 4 /* clients per FIN delay in each round */
#define NCLIENTS (NDELAYS * PER_DELAY)
#define LEASE_PARK_MS 300
#define LEASE_TTL_MS 20000
#define LOAD_MAX_S 60 /* a load process ends by itself after this */
#define MAX_LOAD 8

static const int fin_delay_us[NDELAYS] = {0, 500, 2000, 10000, 50000};

typedef struct fixture {
    daemon_fixture_t *df;
    pid_t load[MAX_LOAD];
    int nload;
} fixture_t;

static void sleep_us(int64_t us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ------------------------------------------------------------------------
 * CPU load: spinning child processes
 * ------------------------------------------------------------------------ */

static void load_start(fixture_t *f)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n = (int)(cpus > 0 ? cpus : 1) * 2;
    if (n > MAX_LOAD)
        n = MAX_LOAD;
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            int64_t end = testutil_mono_ms() + LOAD_MAX_S * 1000;
            volatile uint64_t x = 0;
            while (testutil_mono_ms() < end)
                for (int k = 0; k < 100000; k++)
                    x += (uint64_t)k;
            _exit(0);
        }
        if (pid > 0)
            f->load[f->nload++] = pid;
    }
}

static void load_stop(fixture_t *f)
{
    for (int i = 0; i < f->nload; i++) {
        kill(f->load[i], SIGKILL);
        waitpid(f->load[i], NULL, 0);
    }
    f->nload = 0;
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    *state = f;
    if (!f)
        return -1;
    static const char *const args[] = {"--threads", "2", NULL};
    void *df = NULL;
    int rc = daemon_fixture_start(&df, args);
    f->df = df;
    if (rc == 0)
        load_start(f);
    return rc;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    if (!f)
        return -1;
    load_stop(f);
    void *df = f->df;
    int rc = daemon_fixture_stop(&df);
    free(f);
    *state = NULL;
    return rc;
}

/* ------------------------------------------------------------------------
 * Half-closing clients, one thread each
 * ------------------------------------------------------------------------ */

typedef struct client {
    const daemon_t *d;
    char request[512];
    int delay_us;       /* FIN (or reset) this long after the request */
    bool reset;         /* vanish: close with a reset instead of a FIN ... */
    atomic_int *go;     /* ... once this is set (bounded wait) */
    atomic_int *finned; /* counts clients past their FIN */
    char reply[4096];
    size_t reply_len;
    int status; /* of the answer; 0: none */
    pthread_t thread;
    bool started;
} client_t;

/* Read until the daemon closes (it does after answering a half-closed
 * client) or the deadline. */
static void read_reply(client_t *c, int fd)
{
    int64_t deadline = testutil_mono_ms() + 10000LL * testutil_scale();
    for (;;) {
        int64_t left = deadline - testutil_mono_ms();
        if (left <= 0)
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int rc = poll(&p, 1, (int)left);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            break;
        ssize_t got = recv(fd, c->reply + c->reply_len, sizeof c->reply - 1 - c->reply_len, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        c->reply_len += (size_t)got;
        if (c->reply_len == sizeof c->reply - 1)
            break;
    }
    c->reply[c->reply_len] = '\0';
    if (strncmp(c->reply, "HTTP/1.1 ", 9) == 0 && strstr(c->reply, "\r\n\r\n"))
        c->status = atoi(c->reply + 9);
}

static void *client_main(void *arg)
{
    client_t *c = arg;
    int fd = daemon_raw_connect(c->d);
    if (fd < 0) {
        atomic_fetch_add(c->finned, 1);
        return NULL;
    }
    bool sent = daemon_raw_send(fd, c->request, strlen(c->request));
    sleep_us(c->delay_us);
    int64_t deadline = testutil_mono_ms() + 10000LL * testutil_scale();
    while (c->go && !atomic_load(c->go) && testutil_mono_ms() < deadline)
        sleep_us(1000);
    if (c->reset) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fd);
        atomic_fetch_add(c->finned, 1);
        return NULL;
    }
    shutdown(fd, SHUT_WR);
    atomic_fetch_add(c->finned, 1);
    if (sent)
        read_reply(c, fd);
    close(fd);
    return NULL;
}

static void start_clients(client_t *cs, int n)
{
    for (int i = 0; i < n; i++)
        cs[i].started = pthread_create(&cs[i].thread, NULL, client_main, &cs[i]) == 0;
}

/* Wait (bounded) until every client has sent its FIN. */
static void wait_finned(atomic_int *finned, int n)
{
    int64_t deadline = testutil_mono_ms() + 10000LL * testutil_scale();
    while (atomic_load(finned) < n && testutil_mono_ms() < deadline)
        sleep_us(1000);
}

static void join_clients(client_t *cs, int n)
{
    for (int i = 0; i < n; i++)
        if (cs[i].started)
            pthread_join(cs[i].thread, NULL);
}

/* Reset the clients: client i sends its FIN fin_delay_us[i / PER_DELAY]
 * after its request (the caller writes the requests). */
static void prepare(client_t *cs, const daemon_t *d, atomic_int *finned)
{
    atomic_store(finned, 0);
    for (int i = 0; i < NCLIENTS; i++) {
        memset(&cs[i], 0, sizeof cs[i]);
        cs[i].d = d;
        cs[i].delay_us = fin_delay_us[i / PER_DELAY];
        cs[i].finned = finned;
    }
}

/* Print the answers per FIN delay; returns how many got `want`. */
static int report(const char *what, const client_t *cs, int want)
{
    int total = 0;
    printf("%-28s", what);
    for (int g = 0; g < NDELAYS; g++) {
        int ok = 0;
        for (int i = g * PER_DELAY; i < (g + 1) * PER_DELAY; i++)
            ok += cs[i].status == want;
        total += ok;
        printf("  fin+%.1fms %d/%d", fin_delay_us[g] / 1000.0, ok, PER_DELAY);
    }
    printf("  answered %d/%d\n", total, NCLIENTS);
    for (int i = 0; i < NCLIENTS; i++)
        if (cs[i].status != want)
            printf("  client %d (fin+%.1fms): got %s\n", i, cs[i].delay_us / 1000.0,
                   cs[i].reply_len ? cs[i].reply : "nothing, connection closed");
    fflush(stdout);
    return total;
}

/* ------------------------------------------------------------------------
 * Writes
 * ------------------------------------------------------------------------ */

/* A second connection holding the lock every write needs (sidedb.h): the
 * daemon's writer waits (--busy-timeout) and every write stays parked
 * meanwhile. */
static sidedb_t *stall_writer(const daemon_t *d)
{
    sidedb_t *db = sidedb_open(d->db_path);
    if (db && !sidedb_lock_writes(db)) {
        sidedb_close(db);
        return NULL;
    }
    return db;
}

static void unstall_writer(sidedb_t *db)
{
    assert_true(sidedb_unlock(db));
    sidedb_close(db);
}

/* One round: NCLIENTS half-closing clients; with `stall`, the writer is
 * held until every client has sent its FIN. Returns the answered count. */
static int write_round(const daemon_t *d, client_t *cs, bool stall, const char *what, int want)
{
    sidedb_t *db = NULL;
    if (stall)
        assert_non_null(db = stall_writer(d));
    atomic_int *finned = cs[0].finned;
    start_clients(cs, NCLIENTS);
    wait_finned(finned, NCLIENTS);
    if (db) {
        sleep_us(20000); /* the last FINs reach the daemon */
        unstall_writer(db);
    }
    join_clients(cs, NCLIENTS);
    return report(what, cs, want);
}

static long get_status(const daemon_t *d, const char *path, json_t **body)
{
    client_resp_t r = {0};
    if (client_request(d, "GET", path, NULL, NULL, 0, &r) != 0)
        return 0;
    long st = r.status;
    if (body)
        *body = client_json(&r);
    client_resp_free(&r);
    return st;
}

static void run_writes(const daemon_t *d, bool stall)
{
    static client_t cs[NCLIENTS];
    atomic_int finned = 0;
    const char *tag = stall ? "s" : "n";
    char what[64];
    int put = 0, del = 0, incr = 0;

    prepare(cs, d, &finned);
    for (int i = 0; i < NCLIENTS; i++)
        snprintf(cs[i].request, sizeof cs[i].request,
                 "PUT /v1/kv/hc-%s-%d HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nvalue", tag,
                 i);
    snprintf(what, sizeof what, "PUT%s", stall ? " (writer stalled)" : "");
    put = write_round(d, cs, stall, what, 201);

    prepare(cs, d, &finned);
    for (int i = 0; i < NCLIENTS; i++)
        snprintf(cs[i].request, sizeof cs[i].request,
                 "POST /v1/kv/hc-%s-counter/incr HTTP/1.1\r\nHost: t\r\n"
                 "Content-Length: 0\r\n\r\n",
                 tag);
    snprintf(what, sizeof what, "incr%s", stall ? " (writer stalled)" : "");
    incr = write_round(d, cs, stall, what, 200);

    prepare(cs, d, &finned);
    for (int i = 0; i < NCLIENTS; i++)
        snprintf(cs[i].request, sizeof cs[i].request,
                 "DELETE /v1/kv/hc-%s-%d HTTP/1.1\r\nHost: t\r\n\r\n", tag, i);
    snprintf(what, sizeof what, "DELETE%s", stall ? " (writer stalled)" : "");
    del = write_round(d, cs, stall, what, 204);

    /* every incr committed exactly once: a client told nothing would retry
     * and count twice */
    char path[64];
    snprintf(path, sizeof path, "/v1/kv/hc-%s-counter", tag);
    client_resp_t r = {0};
    assert_int_equal(client_request(d, "GET", path, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    printf("counter after %d incr: %s (answered %d)\n", NCLIENTS, r.body, incr);
    assert_int_equal(atoll(r.body), NCLIENTS);
    client_resp_free(&r);

    assert_int_equal(put, NCLIENTS);
    assert_int_equal(incr, NCLIENTS);
    assert_int_equal(del, NCLIENTS);
}

static void test_halfclose_writes(void **state)
{
    fixture_t *f = *state;
    run_writes(&f->df->d, false);
}

static void test_halfclose_writes_stalled(void **state)
{
    fixture_t *f = *state;
    run_writes(&f->df->d, true);
}

/* ------------------------------------------------------------------------
 * Lease waiters
 * ------------------------------------------------------------------------ */

static long lease_call(const daemon_t *d, const char *name, const char *op, const char *owner,
                       long ttl_ms)
{
    char path[128], body[128];
    snprintf(path, sizeof path, "/v1/leases/%s/%s", name, op);
    if (ttl_ms > 0)
        snprintf(body, sizeof body, "{\"owner\":\"%s\",\"ttl_ms\":%ld}", owner, ttl_ms);
    else
        snprintf(body, sizeof body, "{\"owner\":\"%s\"}", owner);
    static const char *const hdrs[] = {"Content-Type: application/json", NULL};
    client_resp_t r = {0};
    if (client_request(d, "POST", path, hdrs, body, strlen(body), &r) != 0)
        return 0;
    long st = r.status;
    client_resp_free(&r);
    return st;
}

/* The waiters the daemon counts (GET /v1/stats), or -1. */
static long lease_waiters(const daemon_t *d)
{
    json_t *stats = NULL;
    long n = -1;
    if (get_status(d, "/v1/stats", &stats) == 200)
        n = (long)json_integer_value(json_object_get(json_object_get(stats, "leases"), "waiters"));
    json_decref(stats);
    return n;
}

/* The owner holding lease `name` now ("" when free). */
static void lease_owner(const daemon_t *d, const char *name, char *out, size_t outlen)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/leases/%s", name);
    json_t *l = NULL;
    out[0] = '\0';
    if (get_status(d, path, &l) == 200)
        snprintf(out, outlen, "%s", json_string_value(json_object_get(l, "owner")));
    json_decref(l);
}

/* Every client waits on its own lease, held by "holder" and released
 * LEASE_PARK_MS after the waiters were started (once all are queued);
 * `go` is set once they are all queued. */
static void lease_round(const daemon_t *d, client_t *cs, atomic_int *finned, atomic_int *go,
                        const char *tag)
{
    for (int i = 0; i < NCLIENTS; i++) {
        char name[32];
        snprintf(name, sizeof name, "%s-%d", tag, i);
        assert_int_equal(lease_call(d, name, "acquire", "holder", LEASE_TTL_MS), 200);
    }
    int64_t t0 = testutil_mono_ms();
    start_clients(cs, NCLIENTS);
    int64_t deadline = testutil_mono_ms() + 10000LL * testutil_scale();
    while (lease_waiters(d) < NCLIENTS && testutil_mono_ms() < deadline)
        sleep_us(5000);
    long queued = lease_waiters(d);
    atomic_store(go, 1);
    wait_finned(finned, NCLIENTS);
    if (queued != NCLIENTS) {
        join_clients(cs, NCLIENTS);
        assert_int_equal(queued, NCLIENTS);
    }
    int64_t left = t0 + LEASE_PARK_MS - testutil_mono_ms();
    if (left > 0)
        sleep_us(left * 1000);
    for (int i = 0; i < NCLIENTS; i++) {
        char name[32];
        snprintf(name, sizeof name, "%s-%d", tag, i);
        assert_int_equal(lease_call(d, name, "release", "holder", 0), 200);
    }
    join_clients(cs, NCLIENTS);
}

/* Client i asks for lease <tag>-i as `owner`, waiting up to 10 s. */
static void lease_requests(client_t *cs, const char *tag, const char *owner)
{
    char body[128];
    snprintf(body, sizeof body, "{\"owner\":\"%s\",\"ttl_ms\":%d,\"wait_ms\":10000}", owner,
             LEASE_TTL_MS);
    for (int i = 0; i < NCLIENTS; i++)
        snprintf(cs[i].request, sizeof cs[i].request,
                 "POST /v1/leases/%s-%d/acquire HTTP/1.1\r\nHost: t\r\n"
                 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                 tag, i, strlen(body), body);
}

static void test_halfclose_lease_waiters(void **state)
{
    fixture_t *f = *state;
    const daemon_t *d = &f->df->d;
    static client_t cs[NCLIENTS];
    atomic_int finned = 0;
    prepare(cs, d, &finned);
    lease_requests(cs, "hw", "w");
    atomic_int go = 0;
    lease_round(d, cs, &finned, &go, "hw");
    int answered = report("lease acquire (parked)", cs, 200);

    /* the waiters that got no answer: who holds their lease now? */
    int orphaned = 0;
    for (int i = 0; i < NCLIENTS; i++) {
        char name[32], owner[64];
        snprintf(name, sizeof name, "hw-%d", i);
        lease_owner(d, name, owner, sizeof owner);
        if (cs[i].status != 200 && strcmp(owner, "w") == 0)
            orphaned++;
        if (cs[i].status == 200) /* the answered waiter holds it */
            assert_string_equal(owner, "w");
    }
    printf("leases held by a waiter that got no answer: %d/%d\n", orphaned, NCLIENTS);
    assert_int_equal(answered, NCLIENTS);
    assert_int_equal(orphaned, 0);
}

/* A waiter that vanishes (reset) while parked must not keep the lease it
 * is then granted: it is free again at once, not after its ttl_ms. */
static void test_halfclose_lease_gone(void **state)
{
    /* Not a storage question, but a defect it uncovers: with PostgreSQL's
     * slower commits some of the 20 acquirers (sent whole, no FIN yet) are
     * never queued until their client resets (1..14 of 20 queued after
     * 10 s in about 1 run of 5; never on SQLite): the handler's deferred
     * suspend (http.c, "Parking") waits for an event that such a client
     * never causes. Left open; see docs/postgresql.md. */
    TESTUTIL_SKIP_ON_PG("known defect: a parked acquirer that sends no FIN may never be "
                        "queued (docs/postgresql.md, Tests)");
    fixture_t *f = *state;
    const daemon_t *d = &f->df->d;
    static client_t cs[NCLIENTS];
    atomic_int finned = 0;
    prepare(cs, d, &finned);
    lease_requests(cs, "hg", "gone");
    atomic_int go = 0;
    for (int i = 0; i < NCLIENTS; i++) {
        cs[i].reset = true; /* once queued, after their delay */
        cs[i].go = &go;
    }
    lease_round(d, cs, &finned, &go, "hg");

    /* granted to a client that is gone: released at once (bounded wait) */
    int held = 0;
    int64_t t_release = testutil_mono_ms(), deadline = t_release + 2000LL * testutil_scale();
    do {
        held = 0;
        for (int i = 0; i < NCLIENTS; i++) {
            char name[32], owner[64];
            snprintf(name, sizeof name, "hg-%d", i);
            lease_owner(d, name, owner, sizeof owner);
            held += strcmp(owner, "gone") == 0;
        }
        if (held)
            sleep_us(20000);
    } while (held && testutil_mono_ms() < deadline);
    printf("leases still held by a vanished waiter %lld ms after the grant: %d/%d\n",
           (long long)(testutil_mono_ms() - t_release), held, NCLIENTS);
    fflush(stdout);
    assert_int_equal(held, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_halfclose_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_halfclose_writes_stalled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_halfclose_lease_waiters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_halfclose_lease_gone, setup, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    return failed || daemon_fixture_stop_failures() ? 1 : 0;
}
