/*
 * sqlcached-bench - load generator and invariant checker for a running
 * sqlcached daemon.
 *
 *   sqlcached-bench seckill [--url URL] [--item ID] [-S STOCK] [-U USERS]
 *                           [-K TRIES] [-C CONNECTIONS] [-P PROBES]
 *                           [--token TOKEN] [--seed N]
 *                           [--pay-timeout MS [--pay-share PERCENT]]
 *
 * seckill: resets the item to STOCK units, then USERS distinct users each
 * try TRIES times to order it (the USERS x TRIES attempts shuffled), from
 * CONNECTIONS concurrent keep-alive connections (libcurl multi interface,
 * one thread). A progress line goes to stderr. Afterwards it reads the item
 * and every order back and checks the flash-sale invariants; then, with
 * the item sold out, it measures the rate of refused orders next to the rate
 * of plain KV GETs over the same connections (PROBES requests each).
 *
 * Payment mode (--pay-timeout MS): the item is reset with that payment
 * timeout, so every order is pending until paid. After the sale, a share
 * of the buyers (--pay-share, default 50%) pay; the others let the deadline
 * pass, and the units of their cancelled orders go back on sale (a buyer
 * still trying gets one). The item is sampled all along (stock + sold = S
 * at every sample); once every pay_by has passed it checks that units sold
 * = paid orders, that no order is left pending, that every answered payment
 * is a paid order, and reports the delay from pay_by to each cancellation
 * (settled_at - pay_by: p50, p99, max; at most 1 s is the contract).
 *
 * Exit status: 0 when every check passed, 1 when one failed, 2 on bad usage
 * or when the daemon cannot be reached.
 */
#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RATE_ROUNDS 4

/* ------------------------------------------------------------------------
 * Settings, buffers, clock
 * ------------------------------------------------------------------------ */

typedef struct settings {
    const char *url, *item, *token;
    int stock, users, tries, conns, probes;
    int pay_timeout, pay_share; /* payment mode: ms (0 = off), percent of buyers */
    unsigned seed;
} settings_t;

typedef struct buf {
    char *p;
    size_t n;
} buf_t;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    buf_t *b = userdata;
    size_t add = size * nmemb;
    char *grown = realloc(b->p, b->n + add + 1);
    if (!grown)
        return 0;
    memcpy(grown + b->n, ptr, add);
    b->p = grown;
    b->n += add;
    b->p[b->n] = '\0';
    return add;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The p-th percentile (0..100) of n sorted values. */
static double percentile(const double *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return sorted[i < n ? i : n - 1];
}

/* ------------------------------------------------------------------------
 * Requests: one connection slot = one reusable easy handle
 * ------------------------------------------------------------------------ */

typedef struct bench bench_t;

typedef struct slot {
    CURL *easy;
    char url[1024];
    char body[256];
    buf_t resp;
    size_t index; /* request number within the phase */
    double t0;
    bool busy;
} slot_t;

struct bench {
    settings_t s;
    CURLM *multi;
    struct curl_slist *headers;
    slot_t *slots;      /* s.conns of them */
    slot_t monitor;     /* polls the item during the sale */
    CURL *sync;         /* blocking requests (setup, read back) */
    struct sale *watch; /* what the monitor's samples go to */
    int failures;
};

/* Point the handle at method + path with an optional JSON body. */
static void prepare(bench_t *b, CURL *e, char *url, size_t urlcap, const char *method,
                    const char *path, const char *body, buf_t *resp)
{
    snprintf(url, urlcap, "%s%s", b->s.url, path);
    free(resp->p);
    *resp = (buf_t){NULL, 0};
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, b->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(e, CURLOPT_TIMEOUT, 60L);
    if (body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, strcmp(method, "POST") ? method : NULL);
    } else {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, strcmp(method, "GET") ? method : NULL);
    }
}

/* A blocking request; returns the HTTP status (0 when no answer) and the
 * body parsed as JSON in *out (may be NULL; caller decrefs). */
static long request(bench_t *b, const char *method, const char *path, const char *body,
                    json_t **out)
{
    char url[1024];
    buf_t resp = {0};
    prepare(b, b->sync, url, sizeof url, method, path, body, &resp);
    long status = 0;
    if (curl_easy_perform(b->sync) == CURLE_OK)
        curl_easy_getinfo(b->sync, CURLINFO_RESPONSE_CODE, &status);
    if (out)
        *out = resp.p ? json_loadb(resp.p, resp.n, 0, NULL) : NULL;
    free(resp.p);
    return status;
}

/* Percent-encode s into a path segment. */
static void segment(char *out, size_t cap, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && n + 4 < cap; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = '\0';
}

/* ------------------------------------------------------------------------
 * Phases: N requests spread over the slots
 * ------------------------------------------------------------------------ */

typedef struct phase phase_t;
struct phase {
    const char *name;
    size_t total, issued, done; /* run_phase goes on until done == total */
    size_t cap;                 /* requests over every round (0: total) */
    long connects;              /* new connections opened */
    double *lat_ms;
    double started, ended, elapsed; /* elapsed: summed over rounds */
    /* fill slot->body / path for request i; returns the method */
    const char *(*next)(bench_t *b, phase_t *ph, size_t i, char *path, size_t cap, char *body,
                        size_t bcap);
    /* the answer of request i */
    void (*answer)(bench_t *b, phase_t *ph, size_t i, long status, const buf_t *resp);
    void (*progress)(bench_t *b, phase_t *ph, bool last);
    void *ctx;
};

static void slot_start(bench_t *b, phase_t *ph, slot_t *sl)
{
    char path[1024];
    sl->index = ph->issued++;
    const char *method = ph->next(b, ph, sl->index, path, sizeof path, sl->body, sizeof sl->body);
    prepare(b, sl->easy, sl->url, sizeof sl->url, method, path, sl->body[0] ? sl->body : NULL,
            &sl->resp);
    sl->t0 = now_ms();
    sl->busy = true;
    curl_multi_add_handle(b->multi, sl->easy);
}

static void slot_done(bench_t *b, phase_t *ph, CURLMsg *msg);

static void run_phase(bench_t *b, phase_t *ph)
{
    size_t cap = ph->cap ? ph->cap : ph->total;
    if (!ph->lat_ms)
        ph->lat_ms = calloc(cap ? cap : 1, sizeof *ph->lat_ms);
    double t0 = now_ms(), next_tick = t0;
    if (!ph->started)
        ph->started = t0;
    while (ph->done < ph->total) {
        for (int i = 0; i < b->s.conns && ph->issued < ph->total; i++)
            if (!b->slots[i].busy)
                slot_start(b, ph, &b->slots[i]);
        int running;
        curl_multi_perform(b->multi, &running);
        CURLMsg *msg;
        int left;
        size_t before = ph->done;
        while ((msg = curl_multi_info_read(b->multi, &left)))
            if (msg->msg == CURLMSG_DONE)
                slot_done(b, ph, msg);
        /* a slot just freed starts its next request at once; else wait */
        if (ph->done == before && ph->done < ph->total)
            curl_multi_poll(b->multi, NULL, 0, 50, NULL);
        if (ph->progress && now_ms() >= next_tick) {
            ph->progress(b, ph, false);
            next_tick = now_ms() + 250;
        }
    }
    ph->ended = now_ms();
    ph->elapsed += ph->ended - t0;
    if (ph->progress)
        ph->progress(b, ph, true);
}

/* ------------------------------------------------------------------------
 * The sale
 * ------------------------------------------------------------------------ */

typedef struct sale {
    int *attempt_user; /* user of each attempt (shuffled) */
    int64_t *ok_order; /* per user: order_id of its 201, 0 = none */
    long created, sold_out, already, conflict, other, ok_twice;
    /* item observed by the monitor */
    long samples, bad_samples;
    int64_t last_stock, min_stock;
    bool monitor_busy;
    double monitor_next, print_next;
    double sold_out_at_ms; /* when the last unit was answered 201 */
    size_t sold_out_at_attempt;
} sale_t;

static const char *sale_next(bench_t *b, phase_t *ph, size_t i, char *path, size_t cap, char *body,
                             size_t bcap)
{
    sale_t *sa = ph->ctx;
    char item[400];
    segment(item, sizeof item, b->s.item);
    snprintf(path, cap, "/v1/items/%s/orders", item);
    snprintf(body, bcap, "{\"user_id\": \"user-%d\"}", sa->attempt_user[i]);
    return "POST";
}

/* The problem code of an answer, or "". sqlcached writes compact JSON, so
 * a scan for "code":"..." does; parsing every refusal with jansson would
 * cost the client more than a KV GET costs it, skewing the rate probes. */
static void problem_code(const buf_t *resp, char *code, size_t cap)
{
    code[0] = '\0';
    const char *p = resp->p ? strstr(resp->p, "\"code\":\"") : NULL;
    if (!p)
        return;
    p += 8;
    size_t n = strcspn(p, "\"");
    if (n < cap) {
        memcpy(code, p, n);
        code[n] = '\0';
    }
}

static void sale_answer(bench_t *b, phase_t *ph, size_t i, long status, const buf_t *resp)
{
    sale_t *sa = ph->ctx;
    char code[64];
    problem_code(resp, code, sizeof code);
    int user = sa->attempt_user[i];
    if (status == 201) {
        if (++sa->created == b->s.stock) {
            sa->sold_out_at_ms = now_ms() - ph->started;
            sa->sold_out_at_attempt = ph->done + 1;
        }
        json_t *j = json_loadb(resp->p ? resp->p : "", resp->n, 0, NULL);
        if (sa->ok_order[user] && !b->s.pay_timeout) /* payment mode: again after a cancel */
            sa->ok_twice++;
        sa->ok_order[user] = json_integer_value(json_object_get(j, "order_id"));
        json_decref(j);
    } else if (status == 409 && strcmp(code, "sold_out") == 0) {
        sa->sold_out++;
    } else if (status == 409 && strcmp(code, "already_ordered") == 0) {
        sa->already++;
    } else if (status == 503) {
        sa->conflict++;
    } else {
        sa->other++;
    }
}

static void monitor_start(bench_t *b, sale_t *sa)
{
    char item[400], path[512];
    segment(item, sizeof item, b->s.item);
    snprintf(path, sizeof path, "/v1/items/%s", item);
    prepare(b, b->monitor.easy, b->monitor.url, sizeof b->monitor.url, "GET", path, NULL,
            &b->monitor.resp);
    sa->monitor_busy = true;
    curl_multi_add_handle(b->multi, b->monitor.easy);
}

static void monitor_done(bench_t *b, sale_t *sa, long status)
{
    sa->monitor_busy = false;
    json_t *j = status == 200 ? json_loadb(b->monitor.resp.p, b->monitor.resp.n, 0, NULL) : NULL;
    if (!j)
        return;
    int64_t stock = json_integer_value(json_object_get(j, "stock"));
    int64_t sold = json_integer_value(json_object_get(j, "sold"));
    sa->samples++;
    sa->bad_samples += stock < 0 || stock + sold != b->s.stock;
    sa->last_stock = stock;
    if (stock < sa->min_stock)
        sa->min_stock = stock;
    json_decref(j);
}

static void sale_progress(bench_t *b, phase_t *ph, bool last)
{
    sale_t *sa = ph->ctx;
    if (!sa->monitor_busy && !last && now_ms() >= sa->monitor_next) {
        monitor_start(b, sa);
        sa->monitor_next = now_ms() + 200;
    }
    bool tty = isatty(2);
    if (!last && (ph->done == 0 || (!tty && now_ms() < sa->print_next)))
        return; /* nothing yet; or a log, which gets one line a second */
    sa->print_next = now_ms() + 1000;
    double secs = ((last ? ph->ended : now_ms()) - ph->started) / 1e3;
    fprintf(stderr,
            "\r  %zu/%zu attempts  201 %ld  sold_out %ld  already %ld  503 %ld  other %ld  "
            "stock %lld  %.0f/s ",
            ph->done, ph->total, sa->created, sa->sold_out, sa->already, sa->conflict, sa->other,
            (long long)sa->last_stock, secs > 0 ? (double)ph->done / secs : 0.0);
    if (last || !tty)
        fputc('\n', stderr);
}

static void slot_done(bench_t *b, phase_t *ph, CURLMsg *msg)
{
    long status = 0;
    if (msg->data.result == CURLE_OK)
        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(b->multi, msg->easy_handle);
    long nconn = 0;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_NUM_CONNECTS, &nconn);
    ph->connects += nconn;
    if (msg->easy_handle == b->monitor.easy) {
        monitor_done(b, b->watch, status);
        return;
    }
    for (int i = 0; i < b->s.conns; i++) {
        slot_t *sl = &b->slots[i];
        if (sl->easy != msg->easy_handle)
            continue;
        ph->lat_ms[sl->index] = now_ms() - sl->t0;
        ph->answer(b, ph, sl->index, status, &sl->resp);
        sl->busy = false;
        ph->done++;
        return;
    }
}

/* ------------------------------------------------------------------------
 * Reading back and checking
 * ------------------------------------------------------------------------ */

static void check(bench_t *b, const char *verdict, const char *what)
{
    if (strcmp(verdict, "FAIL") == 0)
        b->failures++;
    printf("  %-4s  %s\n", verdict, what);
}

/* Every order of the item: fills by_user (order id per user), counts
 * duplicates and strangers. Returns the count, or -1. */
static long read_orders(bench_t *b, int64_t *by_user, long *dups, long *strangers)
{
    char item[400], path[512];
    segment(item, sizeof item, b->s.item);
    long n = 0;
    int64_t after = 0;
    for (;;) {
        json_t *page;
        snprintf(path, sizeof path, "/v1/items/%s/orders?limit=1000&after=%lld", item,
                 (long long)after);
        if (request(b, "GET", path, NULL, &page) != 200) {
            json_decref(page);
            return -1;
        }
        size_t i;
        json_t *o;
        json_array_foreach (json_object_get(page, "orders"), i, o) {
            int u = -1;
            const char *user = json_string_value(json_object_get(o, "user_id"));
            if (!user || sscanf(user, "user-%d", &u) != 1 || u < 0 || u >= b->s.users) {
                (*strangers)++;
                continue;
            }
            *dups += by_user[u] != 0;
            by_user[u] = json_integer_value(json_object_get(o, "order_id"));
            n++;
        }
        json_t *next = json_object_get(page, "next");
        bool more = json_is_integer(next);
        after = json_integer_value(next);
        json_decref(page);
        if (!more)
            return n;
    }
}

static void print_latency(const char *label, phase_t *ph)
{
    qsort(ph->lat_ms, ph->total, sizeof *ph->lat_ms, cmp_double);
    double secs = ph->elapsed / 1e3;
    printf("  %-20s %8.0f req/s   p50 %.2f ms   p99 %.2f ms   max %.0f ms   "
           "(%zu requests, %.2f s, %ld new connections)\n",
           label, secs > 0 ? (double)ph->total / secs : 0.0, percentile(ph->lat_ms, ph->total, 50),
           percentile(ph->lat_ms, ph->total, 99), percentile(ph->lat_ms, ph->total, 100), ph->total,
           secs, ph->connects);
}

static void check_sale(bench_t *b, sale_t *sa, int64_t stock, int64_t sold)
{
    const settings_t *s = &b->s;
    int64_t *by_user = calloc((size_t)s->users, sizeof *by_user);
    long dups = 0, strangers = 0;
    long orders = read_orders(b, by_user, &dups, &strangers);
    long missing = 0;
    for (int u = 0; u < s->users; u++)
        missing += sa->ok_order[u] && by_user[u] != sa->ok_order[u];
    printf("item: stock %lld, sold %lld; orders listed %ld\ninvariants:\n", (long long)stock,
           (long long)sold, orders);
    char what[256];
    snprintf(what, sizeof what, "orders == sold (%ld == %lld)", orders, (long long)sold);
    check(b, orders == sold && strangers == 0 ? "PASS" : "FAIL", what);
    snprintf(what, sizeof what, "stock + sold == S (%lld + %lld == %d)", (long long)stock,
             (long long)sold, s->stock);
    check(b, stock + sold == s->stock ? "PASS" : "FAIL", what);
    if (s->users >= s->stock) {
        snprintf(what, sizeof what, "sold == S when U >= S (%lld == %d)%s", (long long)sold,
                 s->stock,
                 sold != s->stock && sa->conflict
                     ? ": not required, 503 answers (version conflicts) turned buyers away"
                     : "");
        check(b, sold == s->stock ? "PASS" : sa->conflict ? "INFO" : "FAIL", what);
    }
    snprintf(what, sizeof what, "no user holds two orders (%ld duplicates, %ld 201s twice)", dups,
             sa->ok_twice);
    check(b, dups == 0 && sa->ok_twice == 0 ? "PASS" : "FAIL", what);
    snprintf(what, sizeof what,
             "stock never negative (final %lld, lowest seen %lld, %ld samples, "
             "%ld inconsistent)",
             (long long)stock, (long long)sa->min_stock, sa->samples, sa->bad_samples);
    check(b, stock >= 0 && sa->min_stock >= 0 && sa->bad_samples == 0 ? "PASS" : "FAIL", what);
    snprintf(what, sizeof what, "every 201 order exists (%ld answered, %ld missing)", sa->created,
             missing);
    check(b, missing == 0 ? "PASS" : "FAIL", what);
    snprintf(what, sizeof what, "201s == sold (%ld == %lld)", sa->created, (long long)sold);
    check(b, sa->created == sold ? "PASS" : "FAIL", what);
    long oversold = orders > s->stock ? orders - s->stock : 0;
    snprintf(what, sizeof what, "no oversell: orders <= S (%ld <= %d; %ld oversold)", orders,
             s->stock, oversold);
    check(b, oversold == 0 ? "PASS" : "FAIL", what);
    free(by_user);
}

/* ------------------------------------------------------------------------
 * Once sold out: refused orders vs plain KV GETs, same connections
 * ------------------------------------------------------------------------ */

typedef struct probe {
    long expected, unexpected;
} probe_t;

static const char *reject_next(bench_t *b, phase_t *ph, size_t i, char *path, size_t cap,
                               char *body, size_t bcap)
{
    (void)ph;
    char item[400];
    segment(item, sizeof item, b->s.item);
    snprintf(path, cap, "/v1/items/%s/orders", item);
    snprintf(body, bcap, "{\"user_id\": \"probe-%zu\"}", i);
    return "POST";
}

static void reject_answer(bench_t *b, phase_t *ph, size_t i, long status, const buf_t *resp)
{
    (void)b, (void)i;
    probe_t *p = ph->ctx;
    char code[64];
    problem_code(resp, code, sizeof code);
    if (status == 409 && strcmp(code, "sold_out") == 0)
        p->expected++;
    else
        p->unexpected++;
}

static const char *kv_next(bench_t *b, phase_t *ph, size_t i, char *path, size_t cap, char *body,
                           size_t bcap)
{
    (void)ph, (void)i, (void)bcap;
    char item[400];
    segment(item, sizeof item, b->s.item);
    snprintf(path, cap, "/v1/kv/bench-%s", item);
    body[0] = '\0';
    return "GET";
}

static void kv_answer(bench_t *b, phase_t *ph, size_t i, long status, const buf_t *resp)
{
    (void)b, (void)i, (void)resp;
    probe_t *p = ph->ctx;
    if (status == 200)
        p->expected++;
    else
        p->unexpected++;
}

static void compare_rates(bench_t *b)
{
    char item[400], path[512];
    segment(item, sizeof item, b->s.item);
    snprintf(path, sizeof path, "/v1/kv/bench-%s", item);
    if (request(b, "PUT", path, "{\"stock\": 0}", NULL) / 100 != 2) {
        fprintf(stderr, "sqlcached-bench: cannot write the KV key %s\n", path);
        b->failures++;
        return;
    }
    /* alternate the two in rounds so that both meet the same machine load */
    probe_t rej = {0}, kv = {0};
    size_t n = (size_t)b->s.probes;
    phase_t p1 = {.name = "reject",
                  .cap = n,
                  .next = reject_next,
                  .answer = reject_answer,
                  .ctx = &rej};
    phase_t p2 = {.name = "kv", .cap = n, .next = kv_next, .answer = kv_answer, .ctx = &kv};
    for (size_t r = 1; r <= RATE_ROUNDS; r++) {
        p1.total = p2.total = n * r / RATE_ROUNDS;
        run_phase(b, &p1);
        run_phase(b, &p2);
    }
    printf("once sold out, over the same %d connections (%d alternating rounds):\n", b->s.conns,
           RATE_ROUNDS);
    print_latency("rejected orders", &p1);
    print_latency("plain KV GETs", &p2);
    char what[160];
    snprintf(what, sizeof what, "every order after sell-out refused sold_out (%ld of %zu)",
             rej.expected, p1.total);
    check(b, rej.unexpected == 0 ? "PASS" : "FAIL", what);
    if (kv.unexpected)
        printf("  note: %ld KV GETs did not answer 200\n", kv.unexpected);
    free(p1.lat_ms);
    free(p2.lat_ms);
}

/* ------------------------------------------------------------------------
 * Payment mode: pay (a share of the buyers), let the rest expire, check
 * ------------------------------------------------------------------------ */

typedef struct payrun {
    sale_t *sa;
    int *users; /* the buyers who pay */
    size_t n;
    char *paid; /* per user: its pay answered 200 */
    long ok, late, other;
} payrun_t;

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *pay_next(bench_t *b, phase_t *ph, size_t i, char *path, size_t cap, char *body,
                            size_t bcap)
{
    payrun_t *pr = ph->ctx;
    char item[400];
    segment(item, sizeof item, b->s.item);
    snprintf(path, cap, "/v1/items/%s/orders/user-%d/pay", item, pr->users[i]);
    snprintf(body, bcap, "{}");
    return "POST";
}

static void pay_answer(bench_t *b, phase_t *ph, size_t i, long status, const buf_t *resp)
{
    (void)b;
    payrun_t *pr = ph->ctx;
    char code[64];
    problem_code(resp, code, sizeof code);
    if (status == 200) {
        pr->ok++;
        pr->paid[pr->users[i]] = 1;
    } else if (status == 409 && strcmp(code, "order_not_pending") == 0) {
        pr->late++; /* its pay_by passed first: cancelled */
    } else {
        pr->other++;
    }
}

static void pay_progress(bench_t *b, phase_t *ph, bool last)
{
    payrun_t *pr = ph->ctx;
    if (!pr->sa->monitor_busy && !last && now_ms() >= pr->sa->monitor_next) {
        monitor_start(b, pr->sa);
        pr->sa->monitor_next = now_ms() + 200;
    }
}

/* Sample the item (blocking) until the wall clock passes `until`. */
static void sample_until(bench_t *b, sale_t *sa, int64_t until)
{
    char item[400], path[512];
    segment(item, sizeof item, b->s.item);
    snprintf(path, sizeof path, "/v1/items/%s", item);
    while (wall_ms() < until) {
        json_t *it = NULL;
        if (request(b, "GET", path, NULL, &it) == 200) {
            int64_t stock = json_integer_value(json_object_get(it, "stock"));
            int64_t sold = json_integer_value(json_object_get(it, "sold"));
            sa->samples++;
            sa->bad_samples += stock < 0 || stock + sold != b->s.stock;
            if (stock < sa->min_stock)
                sa->min_stock = stock;
        }
        json_decref(it);
        usleep(100000);
    }
}

/* What the orders list says once every deadline passed. */
typedef struct pay_tally {
    long pending, paid, cancelled, strangers, two_live, paid_missing;
    int64_t last_pay_by;
    double *delay_ms; /* settled_at - pay_by of each cancelled order */
    size_t ndelays, capdelays;
} pay_tally_t;

static void tally_order(bench_t *b, payrun_t *pr, pay_tally_t *t, char *live, json_t *o)
{
    int u = -1;
    const char *user = json_string_value(json_object_get(o, "user_id"));
    const char *state = json_string_value(json_object_get(o, "state"));
    if (!user || !state || sscanf(user, "user-%d", &u) != 1 || u < 0 || u >= b->s.users) {
        t->strangers++;
        return;
    }
    json_int_t pay_by = json_integer_value(json_object_get(o, "pay_by"));
    if (strcmp(state, "pending") == 0) {
        t->pending++;
        if (pay_by > t->last_pay_by)
            t->last_pay_by = pay_by;
    } else if (strcmp(state, "paid") == 0) {
        t->paid++;
    } else {
        t->cancelled++;
        json_int_t created = json_integer_value(json_object_get(o, "created_at"));
        json_int_t settled = json_integer_value(json_object_get(o, "settled_at"));
        if (t->ndelays == t->capdelays) {
            t->capdelays = t->capdelays ? t->capdelays * 2 : 1024;
            t->delay_ms = realloc(t->delay_ms, t->capdelays * sizeof *t->delay_ms);
        }
        t->delay_ms[t->ndelays++] = (double)(settled - (created + b->s.pay_timeout));
        return;
    }
    t->two_live += live[u];
    live[u] = 1;
    (void)pr;
}

/* Read every order of the item into t. 0, or -1. */
static int tally_orders(bench_t *b, payrun_t *pr, pay_tally_t *t)
{
    char item[400], path[512];
    segment(item, sizeof item, b->s.item);
    char *live = calloc((size_t)b->s.users, 1);
    int64_t after = 0;
    for (int pages = 0; pages < 1000000; pages++) {
        json_t *page = NULL;
        snprintf(path, sizeof path, "/v1/items/%s/orders?limit=1000&after=%lld", item,
                 (long long)after);
        if (request(b, "GET", path, NULL, &page) != 200) {
            json_decref(page);
            free(live);
            return -1;
        }
        size_t i;
        json_t *o;
        json_array_foreach (json_object_get(page, "orders"), i, o)
            tally_order(b, pr, t, live, o);
        json_t *next = json_object_get(page, "next");
        bool more = json_is_integer(next);
        after = json_integer_value(next);
        json_decref(page);
        if (!more)
            break;
    }
    for (int u = 0; u < b->s.users; u++)
        t->paid_missing += pr->paid[u] && !live[u];
    free(live);
    return 0;
}

static void check_payments(bench_t *b, payrun_t *pr, const pay_tally_t *t, int64_t stock,
                           int64_t sold)
{
    sale_t *sa = pr->sa;
    char what[256];
    printf("item: stock %lld, sold %lld; orders %ld paid, %ld cancelled, %ld pending\n"
           "invariants (every pay_by passed):\n",
           (long long)stock, (long long)sold, t->paid, t->cancelled, t->pending);
    snprintf(what, sizeof what, "units sold == paid orders (%lld == %ld)", (long long)sold,
             t->paid);
    check(b, sold == t->paid && t->strangers == 0 ? "PASS" : "FAIL", what);
    snprintf(what, sizeof what, "no order left pending (%ld)", t->pending);
    check(b, t->pending == 0 ? "PASS" : "FAIL", what);
    snprintf(what, sizeof what,
             "every payment answered 200 is a paid order (%ld answered, %ld "
             "missing)",
             pr->ok, t->paid_missing);
    check(b, t->paid_missing == 0 && pr->ok == t->paid ? "PASS" : "FAIL", what);
    snprintf(what, sizeof what,
             "stock + sold == S throughout (%lld + %lld == %d at the end; "
             "%ld samples, %ld inconsistent, lowest stock %lld)",
             (long long)stock, (long long)sold, b->s.stock, sa->samples, sa->bad_samples,
             (long long)sa->min_stock);
    check(b,
          stock + sold == b->s.stock && sa->bad_samples == 0 && sa->min_stock >= 0 ? "PASS"
                                                                                   : "FAIL",
          what);
    snprintf(what, sizeof what, "no user holds two pending-or-paid orders (%ld)", t->two_live);
    check(b, t->two_live == 0 ? "PASS" : "FAIL", what);
    qsort(t->delay_ms, t->ndelays, sizeof *t->delay_ms, cmp_double);
    double max = percentile(t->delay_ms, t->ndelays, 100);
    snprintf(what, sizeof what,
             "cancelled within 1 s of pay_by (%zu cancellations: p50 %.0f ms, "
             "p99 %.0f ms, max %.0f ms)",
             t->ndelays, percentile(t->delay_ms, t->ndelays, 50),
             percentile(t->delay_ms, t->ndelays, 99), max);
    check(b, max <= 1000 ? "PASS" : "FAIL", what);
}

static void run_payment(bench_t *b, sale_t *sa)
{
    const settings_t *s = &b->s;
    payrun_t pr = {.sa = sa, .paid = calloc((size_t)s->users, 1)};
    pr.users = malloc((size_t)s->users * sizeof *pr.users);
    unsigned seed = s->seed;
    for (int u = 0; u < s->users; u++)
        if (sa->ok_order[u] && (int)(rand_r(&seed) % 100) < s->pay_share)
            pr.users[pr.n++] = u;
    phase_t ph = {.name = "pay",
                  .total = pr.n,
                  .next = pay_next,
                  .answer = pay_answer,
                  .progress = pay_progress,
                  .ctx = &pr};
    if (pr.n)
        run_phase(b, &ph);
    while (sa->monitor_busy) { /* let the last item poll finish */
        int running, left;
        CURLMsg *msg;
        curl_multi_perform(b->multi, &running);
        while ((msg = curl_multi_info_read(b->multi, &left)))
            if (msg->msg == CURLMSG_DONE)
                slot_done(b, &ph, msg);
        if (sa->monitor_busy)
            curl_multi_poll(b->multi, NULL, 0, 50, NULL);
    }
    printf("payments: %zu buyers of %ld pay (%d%%): 200 %ld, 409 order_not_pending %ld (their "
           "pay_by passed first), other %ld\n",
           pr.n, sa->created, s->pay_share, pr.ok, pr.late, pr.other);
    if (pr.n)
        print_latency("payments", &ph);
    if (pr.other)
        b->failures++;
    /* the unpaid orders: every deadline passes (sampling the item meanwhile) */
    pay_tally_t t = {0};
    if (tally_orders(b, &pr, &t) != 0)
        b->failures++;
    if (t.last_pay_by) {
        printf("waiting for the last pay_by (+1.5 s): %.1f s\n",
               (double)(t.last_pay_by + 1500 - wall_ms()) / 1e3);
        sample_until(b, sa, t.last_pay_by + 1500);
    }
    free(t.delay_ms);
    t = (pay_tally_t){0};
    char item[400], path[512];
    segment(item, sizeof item, s->item);
    snprintf(path, sizeof path, "/v1/items/%s", item);
    json_t *it = NULL;
    if (tally_orders(b, &pr, &t) != 0 || request(b, "GET", path, NULL, &it) != 200) {
        fprintf(stderr, "sqlcached-bench: cannot read the item or its orders back\n");
        b->failures++;
    } else {
        check_payments(b, &pr, &t, json_integer_value(json_object_get(it, "stock")),
                       json_integer_value(json_object_get(it, "sold")));
    }
    json_decref(it);
    free(t.delay_ms);
    free(ph.lat_ms);
    free(pr.users);
    free(pr.paid);
}

/* ------------------------------------------------------------------------
 * seckill
 * ------------------------------------------------------------------------ */

static int reset_item(bench_t *b)
{
    char item[400], path[512], body[400];
    segment(item, sizeof item, b->s.item);
    snprintf(path, sizeof path, "/v1/items/%s", item);
    if (b->s.pay_timeout)
        snprintf(body, sizeof body,
                 "{\"name\": \"bench\", \"stock\": %d, \"payment_timeout_ms\": %d}", b->s.stock,
                 b->s.pay_timeout);
    else
        snprintf(body, sizeof body, "{\"name\": \"bench\", \"stock\": %d}", b->s.stock);
    long st = request(b, "PUT", path, body, NULL);
    if (st != 200 && st != 201) {
        fprintf(stderr, "sqlcached-bench: PUT %s%s answered %ld%s\n", b->s.url, path, st,
                st == 0 ? " (no answer: is the daemon running?)" : "");
        return -1;
    }
    return 0;
}

static void shuffle(int *a, size_t n, unsigned *seed)
{
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)rand_r(seed) % (i + 1);
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

static int run_seckill(bench_t *b)
{
    settings_t *s = &b->s;
    if (reset_item(b) != 0)
        return 2;
    printf("sqlcached-bench seckill: %s item %s, S=%d U=%d K=%d C=%d\n", s->url, s->item, s->stock,
           s->users, s->tries, s->conns);
    if (s->pay_timeout)
        printf("payment mode: payment_timeout_ms %d, %d%% of the buyers pay\n", s->pay_timeout,
               s->pay_share);
    size_t total = (size_t)s->users * (size_t)s->tries;
    sale_t sa = {.min_stock = s->stock, .last_stock = s->stock};
    b->watch = &sa;
    sa.attempt_user = malloc(total * sizeof *sa.attempt_user);
    sa.ok_order = calloc((size_t)s->users, sizeof *sa.ok_order);
    for (size_t i = 0; i < total; i++)
        sa.attempt_user[i] = (int)(i % (size_t)s->users);
    shuffle(sa.attempt_user, total, &s->seed);
    phase_t ph = {.name = "sale",
                  .total = total,
                  .next = sale_next,
                  .answer = sale_answer,
                  .progress = sale_progress,
                  .ctx = &sa};
    run_phase(b, &ph);
    while (sa.monitor_busy) { /* let the last item poll finish */
        int running, left;
        CURLMsg *msg;
        curl_multi_perform(b->multi, &running);
        while ((msg = curl_multi_info_read(b->multi, &left)))
            if (msg->msg == CURLMSG_DONE)
                slot_done(b, &ph, msg);
        if (sa.monitor_busy)
            curl_multi_poll(b->multi, NULL, 0, 50, NULL);
    }
    printf("sale: %zu attempts in %.2f s\n", total, ph.elapsed / 1e3);
    printf("  201 created         %8ld\n  409 sold_out        %8ld\n"
           "  409 already_ordered %8ld\n  503 conflict        %8ld\n  other errors        %8ld\n",
           sa.created, sa.sold_out, sa.already, sa.conflict, sa.other);
    print_latency("attempts", &ph);
    if (sa.sold_out_at_attempt)
        printf("  last unit sold after %.3f s, at attempt %zu\n", sa.sold_out_at_ms / 1e3,
               sa.sold_out_at_attempt);
    else
        printf("  not sold out: %ld of %d units sold\n", sa.created, s->stock);
    if (sa.other)
        b->failures++;
    if (s->pay_timeout) {
        run_payment(b, &sa);
        free(ph.lat_ms);
        free(sa.attempt_user);
        free(sa.ok_order);
        printf("result: %s\n", b->failures ? "FAIL" : "PASS");
        return b->failures ? 1 : 0;
    }

    char item[400], path[512];
    segment(item, sizeof item, s->item);
    snprintf(path, sizeof path, "/v1/items/%s", item);
    json_t *it = NULL;
    if (request(b, "GET", path, NULL, &it) != 200) {
        fprintf(stderr, "sqlcached-bench: cannot read the item back\n");
        b->failures++;
    } else {
        int64_t stock = json_integer_value(json_object_get(it, "stock"));
        int64_t sold = json_integer_value(json_object_get(it, "sold"));
        check_sale(b, &sa, stock, sold);
        if (stock == 0 && s->probes > 0)
            compare_rates(b);
        else if (s->probes > 0)
            printf("once sold out: skipped, %lld units are left\n", (long long)stock);
    }
    json_decref(it);
    free(ph.lat_ms);
    free(sa.attempt_user);
    free(sa.ok_order);
    printf("result: %s\n", b->failures ? "FAIL" : "PASS");
    return b->failures ? 1 : 0;
}

/* ------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------ */

static void usage(FILE *to)
{
    fputs("Usage: sqlcached-bench seckill [OPTION]...\n"
          "Flash-sale load against a running sqlcached, then invariant checks.\n"
          "\n"
          "  --url URL        daemon base URL (default http://127.0.0.1:8080)\n"
          "  --item ID        item to reset and sell (default bench-item)\n"
          "  -S N             stock the item is reset to (default 100)\n"
          "  -U N             distinct users (default 10000)\n"
          "  -K N             tries per user (default 2)\n"
          "  -C N             concurrent connections (default 64)\n"
          "  -P N             requests per rate probe once sold out (default 20000, 0 = none)\n"
          "  --token TOKEN    send 'Authorization: Bearer TOKEN'\n"
          "  --seed N         shuffle seed (default 1)\n"
          "  --pay-timeout MS payment mode: the item's payment_timeout_ms (1000..86400000)\n"
          "  --pay-share P    payment mode: percent of the buyers who pay (default 50)\n"
          "Exit status: 0 all checks passed, 1 a check failed, 2 usage or connection error.\n",
          to);
}

static int parse_int(const char *s, int min, int max, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_args(settings_t *s, int argc, char **argv)
{
    static const struct option longs[] = {{"url", required_argument, NULL, 'u'},
                                          {"item", required_argument, NULL, 'i'},
                                          {"token", required_argument, NULL, 't'},
                                          {"seed", required_argument, NULL, 'r'},
                                          {"pay-timeout", required_argument, NULL, 'p'},
                                          {"pay-share", required_argument, NULL, 's'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    int opt, seed = 1;
    while ((opt = getopt_long(argc, argv, "S:U:K:C:P:h", longs, NULL)) != -1) {
        int rc = 0;
        switch (opt) {
        case 'u':
            s->url = optarg;
            break;
        case 'i':
            s->item = optarg;
            break;
        case 't':
            s->token = optarg;
            break;
        case 'r':
            rc = parse_int(optarg, 0, INT32_MAX, &seed);
            break;
        case 'p':
            rc = parse_int(optarg, 1000, 86400000, &s->pay_timeout);
            break;
        case 's':
            rc = parse_int(optarg, 0, 100, &s->pay_share);
            break;
        case 'S':
            rc = parse_int(optarg, 0, 100000000, &s->stock);
            break;
        case 'U':
            rc = parse_int(optarg, 1, 10000000, &s->users);
            break;
        case 'K':
            rc = parse_int(optarg, 1, 1000, &s->tries);
            break;
        case 'C':
            rc = parse_int(optarg, 1, 4096, &s->conns);
            break;
        case 'P':
            rc = parse_int(optarg, 0, 100000000, &s->probes);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return -1;
        }
        if (rc != 0) {
            fprintf(stderr, "sqlcached-bench: bad value '%s'\n", optarg);
            return -1;
        }
    }
    s->seed = (unsigned)seed;
    size_t n = strlen(s->url);
    return n && s->url[n - 1] == '/' ? (fprintf(stderr, "sqlcached-bench: --url without "
                                                        "trailing slash\n"),
                                        -1)
                                     : 0;
}

static int bench_init(bench_t *b)
{
    b->multi = curl_multi_init();
    b->sync = curl_easy_init();
    b->monitor.easy = curl_easy_init();
    b->slots = calloc((size_t)b->s.conns, sizeof *b->slots);
    if (!b->multi || !b->sync || !b->monitor.easy || !b->slots)
        return -1;
    curl_multi_setopt(b->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)b->s.conns + 1);
    curl_multi_setopt(b->multi, CURLMOPT_MAXCONNECTS, (long)b->s.conns + 1);
    for (int i = 0; i < b->s.conns; i++)
        if (!(b->slots[i].easy = curl_easy_init()))
            return -1;
    b->headers = curl_slist_append(NULL, "Content-Type: application/json");
    b->headers = curl_slist_append(b->headers, "Expect:");
    if (b->s.token) {
        char auth[4200];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", b->s.token);
        b->headers = curl_slist_append(b->headers, auth);
    }
    return 0;
}

static void bench_free(bench_t *b)
{
    for (int i = 0; b->slots && i < b->s.conns; i++) {
        curl_easy_cleanup(b->slots[i].easy);
        free(b->slots[i].resp.p);
    }
    free(b->slots);
    curl_easy_cleanup(b->monitor.easy);
    free(b->monitor.resp.p);
    curl_easy_cleanup(b->sync);
    curl_multi_cleanup(b->multi);
    curl_slist_free_all(b->headers);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "seckill") != 0) {
        if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
            usage(stdout);
            return 0;
        }
        usage(stderr);
        return 2;
    }
    bench_t b = {.s = {.url = "http://127.0.0.1:8080",
                       .item = "bench-item",
                       .stock = 100,
                       .users = 10000,
                       .tries = 2,
                       .conns = 64,
                       .probes = 20000,
                       .pay_share = 50}};
    if (parse_args(&b.s, argc - 1, argv + 1) != 0) {
        usage(stderr);
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = bench_init(&b) == 0 ? run_seckill(&b) : 2;
    bench_free(&b);
    curl_global_cleanup();
    return rc;
}
