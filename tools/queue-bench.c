/*
 * queue-bench.c - measure the delay queue over HTTP against a running
 * daemon: enqueue throughput, claim+ack throughput (N connections each),
 * and the latency from a job's run_at to a parked claimer receiving it.
 *
 *   tools/queue-bench --url http://127.0.0.1:8080 [--connections N]
 *                     [--seconds S] [--max M] [--rounds R] [--claimers C]
 *
 *   enqueue    N threads, each one kept-alive connection, enqueue jobs
 *              (payload {"n": i}, due now) for S seconds: jobs/s.
 *   claim+ack  N threads claim up to M jobs (visibility 60 s, no wait) and
 *              ack each, until the jobs of the first phase are gone or S
 *              seconds pass: acked jobs/s (each an ack plus 1/M claim).
 *   latency    C claimers parked (wait_ms 10000) on another queue; one
 *              producer enqueues R jobs due 200 ms later, 25 ms apart; the
 *              latency of a job is from its run_at (as the enqueue answered
 *              it: the server's clock, the same machine's) to the claim
 *              answer arriving at a claimer: p50, p99, max.
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

#define MAX_CONNECTIONS 512
#define MAX_ROUNDS 10000

typedef struct settings {
    const char *url;
    int connections, max, rounds, claimers;
    double seconds;
} settings_t;

typedef struct buf {
    char *p;
    size_t len, cap;
} buf_t;

typedef struct client {
    CURL *e;
    struct curl_slist *headers;
    buf_t body;
    long status;
} client_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    buf_t *b = userdata;
    size_t n = size * nmemb;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *grown = realloc(b->p, cap);
        if (!grown)
            return 0;
        b->p = grown;
        b->cap = cap;
    }
    memcpy(b->p + b->len, ptr, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

static int client_init(client_t *c)
{
    memset(c, 0, sizeof *c);
    c->e = curl_easy_init();
    c->headers = curl_slist_append(NULL, "Content-Type: application/json");
    c->headers = c->headers ? curl_slist_append(c->headers, "Expect:") : NULL;
    return c->e && c->headers ? 0 : -1;
}

static void client_free(client_t *c)
{
    curl_easy_cleanup(c->e);
    curl_slist_free_all(c->headers);
    free(c->body.p);
}

/* POST body to url+path on the client's kept-alive connection; the status
 * (0 when no answer), the answer in c->body. */
static long post(client_t *c, const char *url, const char *path, const char *body)
{
    char full[512];
    snprintf(full, sizeof full, "%s%s", url, path);
    c->body.len = 0;
    if (c->body.p)
        c->body.p[0] = '\0';
    curl_easy_setopt(c->e, CURLOPT_URL, full);
    curl_easy_setopt(c->e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c->e, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(c->e, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c->e, CURLOPT_WRITEDATA, &c->body);
    curl_easy_setopt(c->e, CURLOPT_TIMEOUT_MS, 60000L);
    curl_easy_setopt(c->e, CURLOPT_NOSIGNAL, 1L);
    c->status = 0;
    if (curl_easy_perform(c->e) == CURLE_OK)
        curl_easy_getinfo(c->e, CURLINFO_RESPONSE_CODE, &c->status);
    return c->status;
}

/* ------------------------------------------------------------------------
 * Throughput phases
 * ------------------------------------------------------------------------ */

typedef struct run {
    const settings_t *s;
    double until;
    atomic_long done, errors;
    atomic_bool empty;
} run_t;

static void *enqueue_main(void *arg)
{
    run_t *r = arg;
    client_t c;
    if (client_init(&c) != 0) {
        atomic_fetch_add(&r->errors, 1);
        return NULL;
    }
    char body[64];
    for (long i = 0; now_s() < r->until; i++) {
        snprintf(body, sizeof body, "{\"payload\":{\"n\":%ld}}", i);
        if (post(&c, r->s->url, "/v1/queues/bench/jobs", body) == 201)
            atomic_fetch_add(&r->done, 1);
        else
            atomic_fetch_add(&r->errors, 1);
    }
    client_free(&c);
    return NULL;
}

/* Ack every job of the last claim answer (ids and tokens read from it). */
static void ack_all(run_t *r, client_t *c, client_t *a)
{
    const char *p = c->body.p;
    bool any = false;
    while (p && (p = strstr(p, "\"id\":\"")) != NULL) {
        p += 6;
        const char *end = strchr(p, '"');
        const char *t = end ? strstr(end, "\"claim_token\":") : NULL;
        if (!end || !t || end - p > 128)
            break;
        char path[256], body[64];
        snprintf(path, sizeof path, "/v1/queues/bench/jobs/%.*s/ack", (int)(end - p), p);
        snprintf(body, sizeof body, "{\"claim_token\":%lld}", strtoll(t + 14, NULL, 10));
        if (post(a, r->s->url, path, body) == 204)
            atomic_fetch_add(&r->done, 1);
        else
            atomic_fetch_add(&r->errors, 1);
        any = true;
        p = t;
    }
    if (!any)
        atomic_store(&r->empty, true);
}

static void *claim_main(void *arg)
{
    run_t *r = arg;
    client_t c, a;
    if (client_init(&c) != 0 || client_init(&a) != 0) {
        atomic_fetch_add(&r->errors, 1);
        return NULL;
    }
    char body[128];
    snprintf(body, sizeof body, "{\"worker\":\"bench\",\"visibility_ms\":60000,\"max\":%d}",
             r->s->max);
    while (now_s() < r->until && !atomic_load(&r->empty)) {
        if (post(&c, r->s->url, "/v1/queues/bench/claim", body) != 200) {
            atomic_fetch_add(&r->errors, 1);
            continue;
        }
        ack_all(r, &c, &a);
    }
    client_free(&c);
    client_free(&a);
    return NULL;
}

static double run_threads(const settings_t *s, void *(*fn)(void *), run_t *r, int n)
{
    pthread_t th[MAX_CONNECTIONS];
    double t0 = now_s();
    r->until = t0 + s->seconds;
    int started = 0;
    for (int i = 0; i < n; i++)
        if (pthread_create(&th[i], NULL, fn, r) == 0)
            started++;
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    return now_s() - t0;
}

/* ------------------------------------------------------------------------
 * Latency: run_at to a parked claimer
 * ------------------------------------------------------------------------ */

typedef struct lat {
    const settings_t *s;
    int64_t run_at[MAX_ROUNDS]; /* by job number, from the enqueue answer */
    atomic_bool known[MAX_ROUNDS];
    double got[MAX_ROUNDS]; /* ms from run_at to the claim answer */
    atomic_int received;
    atomic_bool stop;
    atomic_long errors;
} lat_t;

static void *lat_claimer(void *arg)
{
    lat_t *l = arg;
    client_t c, a;
    if (client_init(&c) != 0 || client_init(&a) != 0)
        return NULL;
    const char body[] = "{\"worker\":\"lat\",\"visibility_ms\":60000,\"wait_ms\":10000}";
    while (!atomic_load(&l->stop)) {
        if (post(&c, l->s->url, "/v1/queues/bench-latency/claim", body) != 200) {
            atomic_fetch_add(&l->errors, 1);
            continue;
        }
        int64_t at = wall_ms();
        const char *p = strstr(c.body.p, "\"id\":\"L");
        const char *t = p ? strstr(p, "\"claim_token\":") : NULL;
        if (!p || !t)
            continue; /* the wait ended with nothing */
        int n = atoi(p + 7);
        if (n < 0 || n >= l->s->rounds)
            continue;
        for (int spin = 0; !atomic_load(&l->known[n]) && spin < 1000; spin++)
            usleep(1000); /* the producer has not read its answer yet */
        l->got[n] = (double)(at - l->run_at[n]);
        char path[128], ack[64];
        snprintf(path, sizeof path, "/v1/queues/bench-latency/jobs/L%d/ack", n);
        snprintf(ack, sizeof ack, "{\"claim_token\":%lld}", strtoll(t + 14, NULL, 10));
        if (post(&a, l->s->url, path, ack) != 204)
            atomic_fetch_add(&l->errors, 1);
        atomic_fetch_add(&l->received, 1);
    }
    client_free(&c);
    client_free(&a);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int run_latency(const settings_t *s)
{
    lat_t *l = calloc(1, sizeof *l);
    client_t c;
    if (!l || client_init(&c) != 0)
        return 1;
    l->s = s;
    pthread_t th[MAX_CONNECTIONS];
    int started = 0;
    for (int i = 0; i < s->claimers; i++)
        if (pthread_create(&th[i], NULL, lat_claimer, l) == 0)
            started++;
    usleep(300000); /* parked */
    for (int n = 0; n < s->rounds; n++) {
        char body[96];
        snprintf(body, sizeof body, "{\"payload\":%d,\"id\":\"L%d\",\"delay_ms\":200}", n, n);
        if (post(&c, s->url, "/v1/queues/bench-latency/jobs", body) != 201) {
            atomic_fetch_add(&l->errors, 1);
            continue;
        }
        const char *p = strstr(c.body.p, "\"run_at\":");
        l->run_at[n] = p ? strtoll(p + 9, NULL, 10) : 0;
        atomic_store(&l->known[n], true);
        usleep(25000);
    }
    for (int i = 0; i < 200 && atomic_load(&l->received) < s->rounds; i++)
        usleep(50000);
    atomic_store(&l->stop, true);
    /* the claimers end at their next answer (an empty one after wait_ms) */
    for (int n = 0; n < s->claimers; n++) {
        char body[96];
        snprintf(body, sizeof body, "{\"payload\":0,\"id\":\"stop%d-%lld\"}", n,
                 (long long)wall_ms());
        post(&c, s->url, "/v1/queues/bench-latency/jobs", body);
    }
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    int got = atomic_load(&l->received);
    if (got > s->rounds)
        got = s->rounds;
    qsort(l->got, (size_t)s->rounds, sizeof l->got[0], cmp_double);
    /* jobs never received keep 0 and sort first: take the received tail */
    double *v = l->got + (s->rounds - got);
    if (got > 0)
        printf("latency: %d jobs, run_at -> parked claimer: p50 %.0f ms, p99 %.0f ms, "
               "max %.0f ms (%d claimers, %ld errors)\n",
               got, v[got / 2], v[(got * 99) / 100 < got ? (got * 99) / 100 : got - 1], v[got - 1],
               s->claimers, atomic_load(&l->errors));
    int rc = got == s->rounds ? 0 : 1;
    if (rc)
        printf("latency: only %d of %d jobs received\n", got, s->rounds);
    client_free(&c);
    free(l);
    return rc;
}

/* ------------------------------------------------------------------------ */

static int usage(void)
{
    fprintf(stderr,
            "usage: queue-bench --url URL [--connections 1..%d] [--seconds S] "
            "[--max 1..100] [--rounds 1..%d] [--claimers 1..%d]\n",
            MAX_CONNECTIONS, MAX_ROUNDS, MAX_CONNECTIONS);
    return 2;
}

int main(int argc, char **argv)
{
    settings_t s = {.connections = 64, .max = 1, .rounds = 200, .claimers = 16, .seconds = 10};
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--url") == 0)
            s.url = argv[i + 1];
        else if (strcmp(argv[i], "--connections") == 0)
            s.connections = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--seconds") == 0)
            s.seconds = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--max") == 0)
            s.max = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--rounds") == 0)
            s.rounds = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--claimers") == 0)
            s.claimers = atoi(argv[i + 1]);
        else
            return usage();
    }
    if (argc % 2 == 0 || !s.url || s.connections < 1 || s.connections > MAX_CONNECTIONS ||
        s.max < 1 || s.max > 100 || s.rounds < 1 || s.rounds > MAX_ROUNDS || s.claimers < 1 ||
        s.claimers > MAX_CONNECTIONS || s.seconds <= 0)
        return usage();
    curl_global_init(CURL_GLOBAL_ALL);
    run_t *r = calloc(1, sizeof *r);
    if (!r)
        return 1;
    r->s = &s;
    double took = run_threads(&s, enqueue_main, r, s.connections);
    long enqueued = atomic_load(&r->done);
    printf("enqueue: %ld jobs in %.1f s = %.0f jobs/s (%d connections, %ld errors)\n", enqueued,
           took, enqueued / took, s.connections, atomic_load(&r->errors));
    atomic_store(&r->done, 0);
    atomic_store(&r->errors, 0);
    took = run_threads(&s, claim_main, r, s.connections);
    long acked = atomic_load(&r->done);
    printf("claim+ack: %ld jobs in %.1f s = %.0f jobs/s (%d connections, max %d, %ld errors)\n",
           acked, took, acked / took, s.connections, s.max, atomic_load(&r->errors));
    free(r);
    int rc = run_latency(&s);
    curl_global_cleanup();
    return rc;
}
