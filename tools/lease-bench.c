/*
 * lease-bench.c - measure leases: acquire+release round trips per second,
 * uncontended (one client) and contended (N clients on one name, all
 * waiting), and the wake-up latency of a waiter after a release (p50/p99).
 *
 *   tools/lease-bench [--threads N] [--seconds S] [--rounds R] \
 *                     [--durability full|normal] [--db PATH]      in-process
 *   tools/lease-bench --url http://127.0.0.1:8080 [--threads N] ...  over HTTP
 *
 * In-process, the library is opened on a temporary database (or --db).
 * Over HTTP, each client is one libcurl handle on a kept-alive connection.
 * Wake-up latency: a holder holds the lease, a waiter asks for it with a
 * long wait_ms, the holder releases; the latency is from just before the
 * release call to the waiter's acquire returning (over HTTP: from sending
 * the release to the waiter's response arriving).
 *
 * Built by `make`, never run by `make check`.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sqlcached.h"

typedef struct bench {
    sqlcached_t *db; /* in-process, or NULL */
    const char *url; /* over HTTP, or NULL */
    int threads, rounds;
    double seconds;
    atomic_bool stop;
    atomic_long cycles;
    atomic_long errors;
} bench_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------------
 * One client: in-process or over HTTP
 * ------------------------------------------------------------------------ */

typedef struct client {
    bench_t *b;
    CURL *curl;
    char owner[32];
    long status;
} client_t;

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p, (void)arg;
    return size * n;
}

static void client_init(client_t *c, bench_t *b, const char *owner)
{
    memset(c, 0, sizeof *c);
    c->b = b;
    snprintf(c->owner, sizeof c->owner, "%s", owner);
    if (b->url) {
        c->curl = curl_easy_init();
        curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c->curl, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(c->curl, CURLOPT_TCP_NODELAY, 1L);
    }
}

static void client_free(client_t *c)
{
    if (c->curl)
        curl_easy_cleanup(c->curl);
}

static bool http_post(client_t *c, const char *name, const char *verb, const char *body)
{
    char url[512];
    snprintf(url, sizeof url, "%s/v1/leases/%s/%s", c->b->url, name, verb);
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
    c->status = 0;
    if (curl_easy_perform(c->curl) != CURLE_OK)
        return false;
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &c->status);
    return c->status == 200;
}

static bool acquire(client_t *c, const char *name, int wait_ms)
{
    if (!c->b->url)
        return sqlcached_lease_acquire(c->b->db, name, strlen(name), c->owner, strlen(c->owner),
                                       10000, wait_ms, NULL) == SQLCACHED_OK;
    char body[128];
    snprintf(body, sizeof body, "{\"owner\":\"%s\",\"ttl_ms\":10000,\"wait_ms\":%d}", c->owner,
             wait_ms);
    return http_post(c, name, "acquire", body);
}

static bool release(client_t *c, const char *name)
{
    if (!c->b->url)
        return sqlcached_lease_release(c->b->db, name, strlen(name), c->owner, strlen(c->owner),
                                       NULL) == SQLCACHED_OK;
    char body[64];
    snprintf(body, sizeof body, "{\"owner\":\"%s\"}", c->owner);
    return http_post(c, name, "release", body);
}

/* ------------------------------------------------------------------------
 * Throughput: acquire + release cycles on one name
 * ------------------------------------------------------------------------ */

static void *cycle_main(void *arg)
{
    client_t *c = arg;
    bench_t *b = c->b;
    while (!atomic_load(&b->stop)) {
        if (acquire(c, "bench-tp", 30000) && release(c, "bench-tp"))
            atomic_fetch_add(&b->cycles, 1);
        else
            atomic_fetch_add(&b->errors, 1);
    }
    return NULL;
}

static void throughput(bench_t *b, int clients)
{
    pthread_t t[256];
    client_t c[256];
    atomic_store(&b->stop, false);
    atomic_store(&b->cycles, 0);
    atomic_store(&b->errors, 0);
    double t0 = now_s();
    for (int i = 0; i < clients; i++) {
        char owner[32];
        snprintf(owner, sizeof owner, "client-%d", i);
        client_init(&c[i], b, owner);
        pthread_create(&t[i], NULL, cycle_main, &c[i]);
    }
    usleep((useconds_t)(b->seconds * 1e6));
    atomic_store(&b->stop, true);
    for (int i = 0; i < clients; i++) {
        pthread_join(t[i], NULL);
        client_free(&c[i]);
    }
    double secs = now_s() - t0;
    printf("%2d client%s: %8.0f acquire+release/s (%ld cycles in %.2f s, %ld errors)\n", clients,
           clients == 1 ? " " : "s", atomic_load(&b->cycles) / secs, atomic_load(&b->cycles), secs,
           atomic_load(&b->errors));
}

/* ------------------------------------------------------------------------
 * Wake-up latency after a release
 * ------------------------------------------------------------------------ */

typedef struct waiter_arg {
    client_t c;
    double got;
    bool ok;
} waiter_arg_t;

static void *waiter_main(void *arg)
{
    waiter_arg_t *w = arg;
    w->ok = acquire(&w->c, "bench-wake", 30000);
    w->got = now_s();
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void wake_latency(bench_t *b)
{
    client_t holder;
    waiter_arg_t w;
    client_init(&holder, b, "holder");
    client_init(&w.c, b, "waiter");
    double *lat = calloc((size_t)b->rounds, sizeof *lat);
    int n = 0;
    for (int i = 0; i < b->rounds; i++) {
        if (!acquire(&holder, "bench-wake", 0))
            break;
        pthread_t t;
        pthread_create(&t, NULL, waiter_main, &w);
        usleep(5000); /* let the waiter queue */
        double t0 = now_s();
        bool released = release(&holder, "bench-wake");
        pthread_join(t, NULL);
        if (!released || !w.ok || !release(&w.c, "bench-wake"))
            break;
        lat[n++] = (w.got - t0) * 1e3;
    }
    qsort(lat, (size_t)n, sizeof *lat, cmp_double);
    if (n > 0)
        printf("wake-up after release: p50 %.3f ms, p99 %.3f ms, max %.3f ms (%d rounds)\n",
               lat[n / 2], lat[(n * 99) / 100], lat[n - 1], n);
    else
        printf("wake-up after release: no successful round\n");
    free(lat);
    client_free(&holder);
    client_free(&w.c);
}

/* ------------------------------------------------------------------------
 * Main
 * ------------------------------------------------------------------------ */

static int usage(void)
{
    fprintf(stderr, "usage: lease-bench [--url URL | --db PATH] [--durability full|normal]\n"
                    "                   [--threads N] [--seconds S] [--rounds R]\n");
    return 2;
}

int main(int argc, char **argv)
{
    bench_t b = {.threads = 16, .rounds = 500, .seconds = 3};
    const char *db_path = NULL;
    sqlcached_durability_t durability = SQLCACHED_DURABILITY_FULL;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage();
        if (strcmp(argv[i], "--url") == 0)
            b.url = v;
        else if (strcmp(argv[i], "--db") == 0)
            db_path = v;
        else if (strcmp(argv[i], "--threads") == 0)
            b.threads = atoi(v);
        else if (strcmp(argv[i], "--seconds") == 0)
            b.seconds = atof(v);
        else if (strcmp(argv[i], "--rounds") == 0)
            b.rounds = atoi(v);
        else if (strcmp(argv[i], "--durability") == 0)
            durability = strcmp(v, "normal") == 0 ? SQLCACHED_DURABILITY_NORMAL
                                                  : SQLCACHED_DURABILITY_FULL;
        else
            return usage();
        i++;
    }
    if (b.threads < 1 || b.threads > 256 || b.rounds < 1 || b.seconds <= 0)
        return usage();
    char tmpdir[] = "/tmp/lease-bench-XXXXXX", path[64];
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!b.url) {
        if (!db_path) {
            if (!mkdtemp(tmpdir))
                return 1;
            snprintf(path, sizeof path, "%s/bench.db", tmpdir);
            db_path = path;
        }
        sqlcached_options_t o;
        sqlcached_options_init(&o);
        o.path = db_path;
        o.durability = durability;
        char err[256];
        if (sqlcached_open(&o, &b.db, err, sizeof err) != SQLCACHED_OK) {
            fprintf(stderr, "lease-bench: %s\n", err);
            return 1;
        }
        printf("in-process, %s, durability %s\n", db_path,
               durability == SQLCACHED_DURABILITY_FULL ? "full" : "normal");
    } else {
        printf("over HTTP, %s\n", b.url);
    }
    throughput(&b, 1);
    throughput(&b, b.threads);
    wake_latency(&b);
    if (b.db) {
        sqlcached_close(b.db);
        if (db_path == path) {
            char f[96];
            const char *suffix[] = {"", "-wal", "-shm", "-lock"};
            for (int i = 0; i < 4; i++) {
                snprintf(f, sizeof f, "%s%s", path, suffix[i]);
                unlink(f);
            }
            rmdir(tmpdir);
        }
    }
    curl_global_cleanup();
    return 0;
}
