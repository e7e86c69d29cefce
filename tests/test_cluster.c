/*
 * test_cluster.c - the contract across the nodes of a cluster, over real
 * HTTP: three daemons on one throwaway PostgreSQL schema (tests/cluster.h),
 * each test case on a fresh cluster.
 *
 *   membership   /v1/cluster on every node (ids, addresses, states,
 *                heartbeats that advance); a SIGKILLed node shows "down"
 *                while the others keep answering; it rejoins on restart.
 *   kv           writes on one node, reads on every node, many keys and
 *                rounds, with every node's memory tier warmed (hits, and
 *                remembered absences) before each write: a node that kept
 *                its cached copy would answer the old value; versions grow
 *                cluster-wide.
 *   kv_ops       DELETE, If-Match and incr across nodes (incr also from
 *                one thread per node at once).
 *   flash_sale   one item, orders from many users on every node at once,
 *                one node SIGKILLed mid-run: the invariants afterwards.
 *   sale_reset   sold out on every node, reset on one: the others sell again.
 *   payment_deadline  an order placed on one node, sold out on the others:
 *                cancelled within 1 s of its pay_by, once across the
 *                nodes, and every node sells the unit again; a cancel on
 *                one node clears the others' sold-out flags; the order of
 *                a node stopped before its pay_by is cancelled by another.
 *   leases       waiters parked on every node behind a holder: the lease
 *                passes from one holder to the next, never two at once,
 *                with growing tokens, every waiter served in time; each
 *                holder releases on the next node; prints the wake-up
 *                latencies, woken by a release on another node or on its
 *                own (no assertion on speed).
 *   pause        a node SIGSTOPped for longer than --member-timeout while
 *                the others write: their writes complete; resumed, it
 *                answers none of the values it held before the pause.
 *   not_blind    the kv check against nodes started with
 *                --testing-skip-cluster-invalidation must see stale reads.
 *   sessions     a sliding key read only on node B stays alive for node A
 *                (whose memory tier holds an older expiry) and then
 *                expires everywhere; read-and-delete on A, then 404 on the
 *                nodes that had it cached, and one winner among takers on
 *                every node; PATCH on A seen by B's warm tier, and
 *                concurrent patches from every node all kept.
 *   queue_wake, queue_claims: the delay queue across nodes (see there).
 *
 * cmocka asserts only in the main thread: the load threads record what
 * they saw and the main thread checks it. SQLCACHED_TEST_NO_PG=1: exit 77.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "cluster.h"
#include "testutil.h"
#include "daemon.h"

#define NODES 3

static const char *const JSON_HEADERS[] = {"Content-Type: application/json", NULL};

/* ------------------------------------------------------------------------
 * Fixture
 * ------------------------------------------------------------------------ */

static int start_with(void **state, const char *const args[])
{
    cluster_t *c = calloc(1, sizeof *c);
    *state = c;
    if (!c)
        return -1;
    return cluster_start(c, NODES, args);
}

static int setup(void **state)
{
    static const char *const args[] = {"--threads", "4", NULL};
    return start_with(state, args);
}

/* The broken mode the checks must catch. */
static int setup_skip_invalidation(void **state)
{
    static const char *const args[] = {"--threads", "4", "--testing-skip-cluster-invalidation",
                                       NULL};
    return start_with(state, args);
}

static int teardown(void **state)
{
    cluster_t *c = *state;
    if (!c)
        return -1;
    int failures = cluster_stop(c);
    free(c);
    *state = NULL;
    return failures == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------------
 * Helpers (main thread: they assert)
 * ------------------------------------------------------------------------ */

/* One request to node i; asserts that an answer came. */
static client_resp_t call(cluster_t *c, int i, const char *method, const char *path,
                          const char *const headers[], const char *body)
{
    client_resp_t r;
    if (client_request(cluster_node(c, i), method, path, headers, body, body ? strlen(body) : 0,
                       &r) != 0)
        fail_msg("node %d: %s %s: no answer", i, method, path);
    return r;
}

/* POST a JSON body to node i; the status, the body parsed into *out when
 * out is not NULL (caller decrefs). */
static long post_json(cluster_t *c, int i, const char *path, json_t **out, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static long post_json(cluster_t *c, int i, const char *path, json_t **out, const char *fmt, ...)
{
    char body[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    client_resp_t r = call(c, i, "POST", path, JSON_HEADERS, body);
    long status = r.status;
    if (out) {
        *out = client_json(&r);
        if (!*out)
            fail_msg("node %d: POST %s: not JSON: %s", i, path, r.body);
    }
    client_resp_free(&r);
    return status;
}

static int64_t jint(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    if (!json_is_integer(v))
        fail_msg("member %s is not an integer", name);
    return json_integer_value(v);
}

static const char *jstr(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    if (!json_is_string(v))
        fail_msg("member %s is not a string", name);
    return json_string_value(v);
}

/* The version in an ETag header ("\"123\""), or -1. */
static int64_t etag_version(const client_resp_t *r)
{
    char *etag = client_header(r, "ETag");
    long long v = -1;
    if (!etag || sscanf(etag, "\"%lld\"", &v) != 1)
        v = -1;
    free(etag);
    return v;
}

/* PUT value at key on node i (if_match >= 0: with If-Match); the status,
 * the new version in *version (when 2xx). */
static long kv_put(cluster_t *c, int i, const char *key, const char *value, int64_t if_match,
                   int64_t *version)
{
    char path[256], im[64];
    snprintf(path, sizeof path, "/v1/kv/%s", key);
    snprintf(im, sizeof im, "If-Match: \"%lld\"", (long long)if_match);
    const char *h[] = {"Content-Type: text/plain", if_match >= 0 ? im : NULL, NULL};
    client_resp_t r = call(c, i, "PUT", path, h, value);
    long status = r.status;
    if (status == 200 || status == 201) {
        json_t *j = client_json(&r);
        assert_non_null(j);
        *version = jint(j, "version");
        assert_int_equal(etag_version(&r), *version);
        json_decref(j);
    }
    client_resp_free(&r);
    return status;
}

/* GET key on node i: the status; on 200 the value (malloc'd) in *value,
 * its version, and whether it was a memory-tier hit. */
static long kv_get(cluster_t *c, int i, const char *key, char **value, int64_t *version, bool *hit)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/kv/%s", key);
    client_resp_t r = call(c, i, "GET", path, NULL, NULL);
    long status = r.status;
    char *xc = client_header(&r, "X-Cache");
    if (hit)
        *hit = xc && strcmp(xc, "HIT") == 0;
    free(xc);
    if (value)
        *value = status == 200 ? strdup(r.body) : NULL;
    if (version)
        *version = status == 200 ? etag_version(&r) : -1;
    client_resp_free(&r);
    return status;
}

static long kv_delete(cluster_t *c, int i, const char *key, int64_t if_match)
{
    char path[256], im[64];
    snprintf(path, sizeof path, "/v1/kv/%s", key);
    snprintf(im, sizeof im, "If-Match: \"%lld\"", (long long)if_match);
    const char *h[] = {if_match >= 0 ? im : NULL, NULL};
    client_resp_t r = call(c, i, "DELETE", path, h, NULL);
    long status = r.status;
    client_resp_free(&r);
    return status;
}

/* Assert that GET key answers 404 on every node. */
static void expect_absent_everywhere(cluster_t *c, const char *key)
{
    for (int j = 0; j < NODES; j++) {
        long st = kv_get(c, j, key, NULL, NULL, NULL);
        if (st != 404)
            fail_msg("node %d: GET %s answered %ld after its DELETE, want 404", j, key, st);
    }
}

/* Assert that GET key answers value at version on every running node. */
static void expect_everywhere(cluster_t *c, const char *key, const char *value, int64_t version)
{
    for (int j = 0; j < NODES; j++) {
        if (cluster_node(c, j)->pid <= 0)
            continue;
        char *got = NULL;
        int64_t v = -1;
        long st = kv_get(c, j, key, &got, &v, NULL);
        if (st != 200 || strcmp(got, value) != 0 || v != version)
            fail_msg("node %d: GET %s: %ld '%s' version %lld, want '%s' version %lld", j, key, st,
                     got ? got : "", (long long)v, value, (long long)version);
        free(got);
    }
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* ------------------------------------------------------------------------
 * Membership
 * ------------------------------------------------------------------------ */

/* The member of view whose id is id, or NULL. */
static json_t *member(json_t *view, int64_t id)
{
    size_t k;
    json_t *m;
    json_array_foreach (json_object_get(view, "members"), k, m) {
        if (json_integer_value(json_object_get(m, "id")) == id)
            return m;
    }
    return NULL;
}

/* Check node i's view against the contract; its own id. */
static int64_t check_view(cluster_t *c, int i, int64_t ids_seen[NODES])
{
    json_t *v = cluster_view(c, i);
    if (!v)
        fail_msg("node %d: GET /v1/cluster gave no 200 JSON answer", i);
    assert_int_equal(json_object_size(v), 2);
    int64_t self = jint(v, "node");
    json_t *members = json_object_get(v, "members");
    assert_true(json_is_array(members));
    assert_int_equal(json_array_size(members), NODES);
    char own[64];
    snprintf(own, sizeof own, "127.0.0.1:%d", cluster_node(c, i)->port);
    size_t k;
    json_t *m;
    int64_t now = testutil_wall_ms();
    json_array_foreach (members, k, m) {
        assert_int_equal(json_object_size(m), 4);
        int64_t id = jint(m, "id");
        const char *addr = jstr(m, "address");
        assert_string_equal(jstr(m, "state"), "up");
        int64_t hb = jint(m, "heartbeat_at");
        /* epoch ms, recent (loose: only the unit and the epoch are checked) */
        if (hb < now - 60000 || hb > now + 60000)
            fail_msg("node %d: member %lld heartbeat_at %lld, now %lld", i, (long long)id,
                     (long long)hb, (long long)now);
        ids_seen[k] = id;
        for (size_t l = 0; l < k; l++)
            assert_true(ids_seen[l] != id);
        if (id == self)
            assert_string_equal(addr, own);
        bool known = false; /* the address is one of the nodes' */
        for (int j = 0; j < NODES; j++) {
            char a[64];
            snprintf(a, sizeof a, "127.0.0.1:%d", cluster_node(c, j)->port);
            known |= strcmp(a, addr) == 0;
        }
        if (!known)
            fail_msg("node %d: member %lld has address %s, not a node's", i, (long long)id, addr);
    }
    assert_non_null(member(v, self));
    json_decref(v);
    return self;
}

/* Wait until every member's heartbeat on node i is later than in before. */
static void expect_heartbeats_advance(cluster_t *c, int i, json_t *before)
{
    int64_t until = testutil_mono_ms() + 10LL * c->member_timeout_ms * testutil_scale();
    for (;;) {
        json_t *now = cluster_view(c, i);
        assert_non_null(now);
        int advanced = 0;
        size_t k;
        json_t *m;
        json_array_foreach (json_object_get(before, "members"), k, m) {
            json_t *n = member(now, jint(m, "id"));
            advanced += n && jint(n, "heartbeat_at") > jint(m, "heartbeat_at");
        }
        json_decref(now);
        if (advanced == NODES)
            return;
        if (testutil_mono_ms() > until)
            fail_msg("node %d: only %d of %d heartbeats advanced", i, advanced, NODES);
        usleep(50000);
    }
}

/* The state node i shows for member id ("up", "down") or NULL. */
static char *state_of(cluster_t *c, int i, int64_t id)
{
    json_t *v = cluster_view(c, i);
    if (!v)
        fail_msg("node %d stopped answering /v1/cluster", i);
    json_t *m = member(v, id);
    char *s = m ? strdup(jstr(m, "state")) : NULL;
    json_decref(v);
    return s;
}

static void test_cluster_membership(void **state)
{
    cluster_t *c = *state;
    int64_t ids[NODES][NODES], self[NODES];
    for (int i = 0; i < NODES; i++) {
        /* a renewal late under load would show a member down for a moment */
        assert_int_equal(cluster_wait_up(c, i, NODES, 10000), 0);
        self[i] = check_view(c, i, ids[i]);
    }
    for (int i = 0; i < NODES; i++) {
        for (int j = 0; j < i; j++)
            assert_true(self[i] != self[j]); /* one id per node */
        qsort(ids[i], NODES, sizeof ids[i][0], cmp_i64);
        assert_memory_equal(ids[i], ids[0], sizeof ids[0]); /* the same members everywhere */
    }
    for (int i = 0; i < NODES; i++) {
        json_t *before = cluster_view(c, i);
        expect_heartbeats_advance(c, i, before);
        json_decref(before);
    }
    /* /v1/stats: the node, trusting its tiers */
    client_resp_t r = call(c, 1, "GET", "/v1/stats", NULL, NULL);
    assert_int_equal(r.status, 200);
    json_t *stats = client_json(&r);
    client_resp_free(&r);
    json_t *cs = json_object_get(stats, "cluster");
    assert_non_null(cs);
    assert_int_equal(jint(cs, "node"), self[1]);
    assert_true(json_is_true(json_object_get(cs, "trusted")));
    json_decref(stats);

    /* SIGKILL node 2: 0 and 1 see it down and keep answering meanwhile */
    cluster_kill(c, 2);
    int64_t t0 = testutil_mono_ms();
    int64_t until = t0 + 10LL * c->member_timeout_ms * testutil_scale() + 5000;
    int64_t seen_down[2] = {-1, -1};
    int64_t version = 0;
    for (int round = 0; seen_down[0] < 0 || seen_down[1] < 0; round++) {
        for (int i = 0; i < 2; i++) {
            char *s = state_of(c, i, self[2]);
            if (seen_down[i] < 0 && s && strcmp(s, "down") == 0)
                seen_down[i] = testutil_mono_ms() - t0;
            free(s);
        }
        char value[32];
        snprintf(value, sizeof value, "r%d", round);
        long st = kv_put(c, round % 2, "alive", value, -1, &version);
        assert_true(st == 200 || st == 201);
        char *got;
        assert_int_equal(kv_get(c, (round + 1) % 2, "alive", &got, NULL, NULL), 200);
        assert_string_equal(got, value);
        free(got);
        if (testutil_mono_ms() > until)
            fail_msg("node 2 not shown down after %lld ms (node 0: %lld, node 1: %lld)",
                     (long long)(testutil_mono_ms() - t0), (long long)seen_down[0],
                     (long long)seen_down[1]);
        usleep(20000);
    }
    print_message("killed node shown down after %lld ms on node 0, %lld ms on node 1 "
                  "(--member-timeout %d)\n",
                  (long long)seen_down[0], (long long)seen_down[1], c->member_timeout_ms);
    assert_int_equal(cluster_members_up(c, 0), 2);
    assert_int_equal(cluster_members_up(c, 1), 2);

    /* it rejoins: every node lists three members up, and it serves writes */
    assert_int_equal(cluster_restart(c, 2), 0);
    assert_int_equal(cluster_wait_up(c, 0, NODES, 15000), 0);
    assert_int_equal(cluster_wait_up(c, 1, NODES, 15000), 0);
    int64_t v2;
    long st = kv_put(c, 2, "alive", "back", -1, &v2);
    assert_int_equal(st, 200);
    assert_true(v2 > version);
    expect_everywhere(c, "alive", "back", v2);
}

/* ------------------------------------------------------------------------
 * KV across nodes
 * ------------------------------------------------------------------------ */

typedef struct kv_tally {
    long reads;      /* reads checked after a write */
    long stale;      /* of those, not the newest write */
    long warm_hits;  /* warming reads answered from the memory tier */
    long warm_reads; /* second warming reads */
} kv_tally_t;

/* Rounds of: read every key twice on every node (the second read comes
 * from the memory tier: a cached value, or a remembered absence in the
 * first round), write every key on node round % NODES, read every key on
 * every node. A read that is not the newest write counts as stale; with
 * strict, the first one fails the test. Versions must grow with every
 * write, whichever node takes it. */
static void kv_cross_check(cluster_t *c, int keys, int rounds, bool strict, kv_tally_t *t)
{
    memset(t, 0, sizeof *t);
    int64_t last = 0;
    char key[32], value[64], want[64][64];
    int64_t want_version[64];
    assert_true(keys <= 64);
    for (int r = 0; r < rounds; r++) {
        int w = r % NODES;
        for (int j = 0; j < NODES; j++)
            for (int k = 0; k < keys; k++) {
                snprintf(key, sizeof key, "k%d", k);
                bool hit;
                kv_get(c, j, key, NULL, NULL, NULL);
                kv_get(c, j, key, NULL, NULL, &hit);
                t->warm_reads++;
                t->warm_hits += hit;
            }
        for (int k = 0; k < keys; k++) {
            snprintf(key, sizeof key, "k%d", k);
            snprintf(want[k], sizeof want[k], "value-%d-round-%d-node-%d", k, r, w);
            long st = kv_put(c, w, key, want[k], -1, &want_version[k]);
            assert_int_equal(st, r == 0 ? 201 : 200);
            if (want_version[k] <= last)
                fail_msg("node %d: version %lld after %lld", w, (long long)want_version[k],
                         (long long)last);
            last = want_version[k];
        }
        for (int j = 0; j < NODES; j++)
            for (int k = 0; k < keys; k++) {
                snprintf(key, sizeof key, "k%d", k);
                char *got = NULL;
                int64_t v;
                long st = kv_get(c, j, key, &got, &v, NULL);
                bool fresh = st == 200 && strcmp(got, want[k]) == 0 && v == want_version[k];
                t->reads++;
                if (!fresh) {
                    t->stale++;
                    snprintf(value, sizeof value, "%s", got ? got : "");
                    if (strict || t->stale <= 3)
                        print_message("stale read: node %d, %s after the write on node %d: "
                                      "%ld '%s' version %lld, want '%s' version %lld\n",
                                      j, key, w, st, value, (long long)v, want[k],
                                      (long long)want_version[k]);
                    if (strict)
                        fail_msg("stale read");
                }
                free(got);
            }
    }
}

#define KV_KEYS 20
#define KV_ROUNDS 6

static void test_cluster_kv(void **state)
{
    cluster_t *c = *state;
    kv_tally_t t;
    kv_cross_check(c, KV_KEYS, KV_ROUNDS, true, &t);
    print_message("cross-node reads: %ld checked, %ld stale; warming reads: %ld of %ld hits\n",
                  t.reads, t.stale, t.warm_hits, t.warm_reads);
    assert_int_equal(t.stale, 0);
}

/* The same check against nodes that skip the cross-node invalidation: it
 * must see stale reads, or it would pass a broken cluster. */
static void test_cluster_not_blind(void **state)
{
    cluster_t *c = *state;
    kv_tally_t t;
    kv_cross_check(c, KV_KEYS, KV_ROUNDS, false, &t);
    print_message("with --testing-skip-cluster-invalidation: %ld reads checked, %ld stale; "
                  "warming reads: %ld of %ld hits\n",
                  t.reads, t.stale, t.warm_hits, t.warm_reads);
    assert_true(t.warm_hits > 0); /* the tiers were warm */
    assert_true(t.stale > 0);
}

typedef struct incr_worker {
    cluster_t *c;
    int node;
    int n;
    int ok; /* 200 answers */
    int64_t versions[32];
    pthread_t thread;
} incr_worker_t;

static void *incr_main(void *arg)
{
    incr_worker_t *w = arg;
    for (int k = 0; k < w->n; k++) {
        client_resp_t r;
        const char *body = "{\"by\": 1}";
        if (client_request(cluster_node(w->c, w->node), "POST", "/v1/kv/hits/incr", JSON_HEADERS,
                           body, strlen(body), &r) == 0 &&
            r.status == 200) {
            json_t *j = client_json(&r);
            json_t *v = j ? json_object_get(j, "version") : NULL;
            if (json_is_integer(v))
                w->versions[w->ok++] = json_integer_value(v);
            json_decref(j);
        }
        client_resp_free(&r);
    }
    return NULL;
}

#define INCR_EACH 20

static void test_cluster_kv_ops(void **state)
{
    cluster_t *c = *state;
    int64_t v1, v2, v3;
    /* DELETE on one node: 404 on every node, whose tiers held the value */
    assert_int_equal(kv_put(c, 0, "gone", "here", -1, &v1), 201);
    expect_everywhere(c, "gone", "here", v1);
    expect_everywhere(c, "gone", "here", v1);
    assert_int_equal(kv_delete(c, 1, "gone", -1), 204);
    expect_absent_everywhere(c, "gone");
    assert_int_equal(kv_delete(c, 2, "gone", -1), 404);

    /* If-Match with versions taken on other nodes */
    assert_int_equal(kv_put(c, 0, "cas", "a", -1, &v1), 201);
    expect_everywhere(c, "cas", "a", v1);
    assert_int_equal(kv_put(c, 1, "cas", "b", v1, &v2), 200);
    assert_true(v2 > v1);
    assert_int_equal(kv_put(c, 2, "cas", "c", v1, &v3), 412); /* v1 is gone, cluster-wide */
    expect_everywhere(c, "cas", "b", v2);
    assert_int_equal(kv_put(c, 2, "cas", "c", v2, &v3), 200);
    assert_true(v3 > v2);
    expect_everywhere(c, "cas", "c", v3);
    assert_int_equal(kv_delete(c, 0, "cas", v2), 412);
    assert_int_equal(kv_delete(c, 0, "cas", v3), 204);
    expect_absent_everywhere(c, "cas");

    /* incr on each node in turn; every node reads each new count */
    int64_t last = v3;
    char want[32];
    for (int k = 0; k < 3 * NODES; k++) {
        json_t *j;
        assert_int_equal(post_json(c, k % NODES, "/v1/kv/count/incr", &j, "{\"by\": 2}"), 200);
        assert_int_equal(jint(j, "value"), 2 * (k + 1));
        assert_true(jint(j, "version") > last);
        last = jint(j, "version");
        json_decref(j);
        snprintf(want, sizeof want, "%d", 2 * (k + 1));
        expect_everywhere(c, "count", want, last);
    }

    /* incr from one thread per node at once: none lost, versions distinct */
    incr_worker_t w[NODES];
    for (int i = 0; i < NODES; i++) {
        w[i] = (incr_worker_t){.c = c, .node = i, .n = INCR_EACH};
        assert_int_equal(pthread_create(&w[i].thread, NULL, incr_main, &w[i]), 0);
    }
    int64_t all[NODES * INCR_EACH];
    int n = 0;
    for (int i = 0; i < NODES; i++) {
        pthread_join(w[i].thread, NULL);
        assert_int_equal(w[i].ok, INCR_EACH);
        for (int k = 0; k < w[i].ok; k++) {
            if (k > 0)
                assert_true(w[i].versions[k] > w[i].versions[k - 1]);
            all[n++] = w[i].versions[k];
        }
    }
    qsort(all, (size_t)n, sizeof all[0], cmp_i64);
    for (int k = 1; k < n; k++)
        assert_true(all[k] > all[k - 1]);
    snprintf(want, sizeof want, "%d", NODES * INCR_EACH);
    expect_everywhere(c, "hits", want, all[n - 1]);
}

/* ------------------------------------------------------------------------
 * Flash sale
 * ------------------------------------------------------------------------ */

#define SALE_STOCK 50
#define SALE_USERS 120
#define SALE_THREADS 6
#define SALE_KILLED 2 /* the node killed mid-run */

enum { U_NONE, U_ORDERED, U_SOLD_OUT, U_ALREADY, U_OTHER };

typedef struct sale_user {
    int outcome;       /* of the first answered attempt */
    int64_t order_id;  /* U_ORDERED */
    int lost;          /* attempts that got no answer (the killed node) */
    long other_status; /* U_OTHER */
    char other_body[160];
} sale_user_t;

typedef struct sale {
    cluster_t *c;
    sale_user_t users[SALE_USERS];
    atomic_int answered;
} sale_t;

typedef struct sale_worker {
    sale_t *s;
    int t;
    pthread_t thread;
} sale_worker_t;

/* One order for user u: on node u % NODES, then the next nodes while no
 * answer comes (the killed node's clients move on). */
static void sale_order(sale_t *s, int u)
{
    sale_user_t *user = &s->users[u];
    char body[64];
    snprintf(body, sizeof body, "{\"user_id\": \"user-%d\"}", u);
    for (int a = 0; a < NODES && user->outcome == U_NONE; a++) {
        client_resp_t r;
        if (client_request(cluster_node(s->c, (u + a) % NODES), "POST", "/v1/items/sale/orders",
                           JSON_HEADERS, body, strlen(body), &r) != 0) {
            user->lost++;
            client_resp_free(&r);
            continue;
        }
        json_t *j = client_json(&r);
        const char *code = j ? json_string_value(json_object_get(j, "code")) : NULL;
        if (r.status == 201 && json_is_integer(json_object_get(j, "order_id"))) {
            user->outcome = U_ORDERED;
            user->order_id = json_integer_value(json_object_get(j, "order_id"));
        } else if (r.status == 409 && code && strcmp(code, "sold_out") == 0) {
            user->outcome = U_SOLD_OUT;
        } else if (r.status == 409 && code && strcmp(code, "already_ordered") == 0) {
            user->outcome = U_ALREADY;
        } else {
            user->outcome = U_OTHER;
            user->other_status = r.status;
            snprintf(user->other_body, sizeof user->other_body, "%s", r.body);
        }
        json_decref(j);
        client_resp_free(&r);
        atomic_fetch_add(&s->answered, 1);
    }
}

static void *sale_main(void *arg)
{
    sale_worker_t *w = arg;
    for (int u = w->t; u < SALE_USERS; u += SALE_THREADS)
        sale_order(w->s, u);
    return NULL;
}

/* Every order of the item, read on node i (all pages). */
static json_t *all_orders(cluster_t *c, int i)
{
    json_t *all = json_array();
    long long after = 0;
    for (int pages = 0; pages < 1000; pages++) {
        char path[128];
        snprintf(path, sizeof path, "/v1/items/sale/orders?limit=50&after=%lld", after);
        client_resp_t r = call(c, i, "GET", path, NULL, NULL);
        assert_int_equal(r.status, 200);
        json_t *page = client_json(&r);
        client_resp_free(&r);
        assert_non_null(page);
        json_array_extend(all, json_object_get(page, "orders"));
        json_t *next = json_object_get(page, "next");
        bool more = json_is_integer(next);
        after = more ? json_integer_value(next) : 0;
        json_decref(page);
        if (!more)
            return all;
    }
    fail_msg("more than 1000 pages of orders");
    return all;
}

static void expect_item(cluster_t *c, int i, const char *id, int64_t stock, int64_t sold)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/items/%s", id);
    client_resp_t r = call(c, i, "GET", path, NULL, NULL);
    assert_int_equal(r.status, 200);
    json_t *it = client_json(&r);
    client_resp_free(&r);
    if (jint(it, "stock") != stock || jint(it, "sold") != sold)
        fail_msg("node %d: item %s stock %lld sold %lld, want %lld and %lld", i, id,
                 (long long)jint(it, "stock"), (long long)jint(it, "sold"), (long long)stock,
                 (long long)sold);
    json_decref(it);
}

static void put_item(cluster_t *c, int i, const char *id, int stock, long want)
{
    char path[128], body[128];
    snprintf(path, sizeof path, "/v1/items/%s", id);
    snprintf(body, sizeof body, "{\"name\": \"Item %s\", \"stock\": %d}", id, stock);
    client_resp_t r = call(c, i, "PUT", path, JSON_HEADERS, body);
    assert_int_equal(r.status, want);
    client_resp_free(&r);
}

static void test_cluster_flash_sale(void **state)
{
    cluster_t *c = *state;
    put_item(c, 0, "sale", SALE_STOCK, 201);
    for (int i = 0; i < NODES; i++) /* every node's tier holds the item */
        expect_item(c, i, "sale", SALE_STOCK, 0);
    sale_t *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->c = c;
    sale_worker_t w[SALE_THREADS];
    for (int t = 0; t < SALE_THREADS; t++) {
        w[t] = (sale_worker_t){.s = s, .t = t};
        assert_int_equal(pthread_create(&w[t].thread, NULL, sale_main, &w[t]), 0);
    }
    /* SIGKILL a node once a quarter of the users were answered */
    int64_t until = testutil_mono_ms() + 30000LL * testutil_scale();
    while (atomic_load(&s->answered) < SALE_USERS / 4 && testutil_mono_ms() < until)
        usleep(2000);
    int answered_at_kill = atomic_load(&s->answered);
    cluster_kill(c, SALE_KILLED);
    for (int t = 0; t < SALE_THREADS; t++)
        pthread_join(w[t].thread, NULL);

    /* the answers */
    int ordered = 0, sold_out = 0, lost = 0, lost_users = 0;
    for (int u = 0; u < SALE_USERS; u++) {
        sale_user_t *user = &s->users[u];
        if (user->outcome == U_OTHER || user->outcome == U_NONE)
            fail_msg("user-%d: answered %ld %s", u, user->other_status, user->other_body);
        /* already_ordered only after an attempt whose answer was lost */
        if (user->outcome == U_ALREADY && user->lost == 0)
            fail_msg("user-%d: already_ordered on the first order", u);
        ordered += user->outcome == U_ORDERED;
        sold_out += user->outcome == U_SOLD_OUT;
        lost += user->lost;
        lost_users += user->lost > 0;
    }
    /* the orders, read on a surviving node */
    json_t *orders = all_orders(c, 1);
    int64_t sold = (int64_t)json_array_size(orders);
    int unanswered_committed = 0;
    int64_t *ids = calloc((size_t)sold + 1, sizeof *ids);
    bool *has = calloc(SALE_USERS, sizeof *has);
    assert_non_null(ids);
    assert_non_null(has);
    size_t k;
    json_t *o;
    json_array_foreach (orders, k, o) {
        ids[k] = jint(o, "order_id");
        int u = -1;
        if (sscanf(jstr(o, "user_id"), "user-%d", &u) != 1 || u < 0 || u >= SALE_USERS)
            fail_msg("an order of an unknown user %s", jstr(o, "user_id"));
        if (has[u])
            fail_msg("user-%d holds two orders", u);
        has[u] = true;
        sale_user_t *user = &s->users[u];
        if (user->outcome == U_ORDERED)
            assert_int_equal(user->order_id, ids[k]);
        else if (user->lost > 0)
            unanswered_committed++; /* committed, the answer lost with the node */
        else
            fail_msg("user-%d holds order %lld but was answered %d", u, (long long)ids[k],
                     user->outcome);
    }
    for (int u = 0; u < SALE_USERS; u++)
        if (s->users[u].outcome == U_ORDERED && !has[u])
            fail_msg("user-%d was answered 201 (order %lld) but holds no order", u,
                     (long long)s->users[u].order_id);
    qsort(ids, (size_t)sold, sizeof ids[0], cmp_i64);
    for (int64_t i = 1; i < sold; i++)
        if (ids[i] == ids[i - 1])
            fail_msg("order id %lld given twice", (long long)ids[i]);
    print_message("flash sale over %d nodes, node %d SIGKILLed after %d of %d users answered: "
                  "stock %d, sold %lld, 201 answers %d, orders committed whose answer was lost "
                  "%d, sold_out %d, requests without answer %d (%d users, each retried on "
                  "another node), duplicate users 0, duplicate order ids 0\n",
                  NODES, SALE_KILLED, answered_at_kill, SALE_USERS, SALE_STOCK, (long long)sold,
                  ordered, unanswered_committed, sold_out, lost, lost_users);
    assert_int_equal(sold, ordered + unanswered_committed);
    assert_int_equal(sold, SALE_STOCK); /* more users than stock: it sold out */
    for (int i = 0; i < NODES; i++)
        if (i != SALE_KILLED)
            expect_item(c, i, "sale", 0, sold); /* stock + sold == S */

    /* every user again, on a surviving node: no second order */
    for (int u = 0; u < SALE_USERS; u++) {
        json_t *j;
        int node = u % 2; /* nodes 0 and 1 */
        long st = post_json(c, node, "/v1/items/sale/orders", &j, "{\"user_id\": \"user-%d\"}", u);
        assert_int_equal(st, 409);
        const char *code = jstr(j, "code");
        assert_true(strcmp(code, "already_ordered") == 0 || strcmp(code, "sold_out") == 0);
        json_decref(j);
    }
    json_t *again = all_orders(c, 0);
    assert_int_equal(json_array_size(again), sold);
    json_decref(again);
    json_decref(orders);
    free(ids);
    free(has);
    free(s);
}

static long order(cluster_t *c, int i, const char *item, const char *user, const char **code_out)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/items/%s/orders", item);
    json_t *j;
    long st = post_json(c, i, path, &j, "{\"user_id\": \"%s\"}", user);
    static char code[64];
    snprintf(code, sizeof code, "%s", st == 409 ? jstr(j, "code") : "");
    if (code_out)
        *code_out = code;
    json_decref(j);
    return st;
}

static void test_cluster_sale_reset(void **state)
{
    cluster_t *c = *state;
    const char *code;
    put_item(c, 0, "drop", 2, 201);
    assert_int_equal(order(c, 0, "drop", "u1", NULL), 201);
    assert_int_equal(order(c, 1, "drop", "u2", NULL), 201);
    for (int i = 0; i < NODES; i++) { /* every node learns it is sold out */
        assert_int_equal(order(c, i, "drop", "late", &code), 409);
        assert_string_equal(code, "sold_out");
        expect_item(c, i, "drop", 0, 2);
    }
    put_item(c, 2, "drop", 2, 200); /* reset on node 2: orders deleted, stock 2 */
    for (int i = 0; i < NODES; i++)
        expect_item(c, i, "drop", 2, 0);
    assert_int_equal(order(c, 0, "drop", "u3", NULL), 201);
    assert_int_equal(order(c, 1, "drop", "u1", NULL), 201); /* its old order went with the reset */
    assert_int_equal(order(c, 2, "drop", "u4", &code), 409);
    assert_string_equal(code, "sold_out");
    for (int i = 0; i < NODES; i++)
        expect_item(c, i, "drop", 0, 2);
}

/* ------------------------------------------------------------------------
 * Leases
 * ------------------------------------------------------------------------ */

#define LEASE_WAITERS_MAX 9
#define LEASE_WAIT_MS 20000
#define LEASE_HOLD_MS 30

typedef struct holding {
    int node;         /* where it acquires */
    int release_node; /* where it releases */
    long status;      /* of the acquire */
    char body[200];   /* of a failed acquire */
    int64_t token;
    int64_t sent, acquired; /* acquire sent, answered */
    int64_t release_sent, released;
    long release_status;
    bool overlapped; /* another holder was in when it got it */
    pthread_t thread;
} holding_t;

typedef struct lease_run {
    cluster_t *c;
    const char *name;
    atomic_int holders; /* holders between "answered" and "release sent" */
    atomic_int started;
    int waiters;
    holding_t h[LEASE_WAITERS_MAX + 1]; /* the waiters, then the first holder */
} lease_run_t;

typedef struct lease_waiter {
    lease_run_t *run;
    int k;
} lease_waiter_t;

/* One request from a thread (no asserts); the status, the body in *out
 * (caller decrefs, may be NULL), -1 when no answer came. */
static long thread_post(cluster_t *c, int node, const char *path, const char *body, json_t **out,
                        char *raw, size_t rawlen)
{
    client_resp_t r;
    long st = -1;
    if (client_request(cluster_node(c, node), "POST", path, JSON_HEADERS, body, strlen(body), &r) ==
        0)
        st = r.status;
    if (out)
        *out = client_json(&r);
    if (raw)
        snprintf(raw, rawlen, "%s", r.body ? r.body : "");
    client_resp_free(&r);
    return st;
}

/* Hold the lease LEASE_HOLD_MS, then release it on h->release_node. */
static void hold_and_release(lease_run_t *run, holding_t *h, const char *owner)
{
    if (atomic_fetch_add(&run->holders, 1) != 0)
        h->overlapped = true;
    usleep(LEASE_HOLD_MS * 1000);
    atomic_fetch_sub(&run->holders, 1);
    char path[128], body[128];
    snprintf(path, sizeof path, "/v1/leases/%s/release", run->name);
    snprintf(body, sizeof body, "{\"owner\": \"%s\"}", owner);
    h->release_sent = testutil_mono_ms();
    h->release_status = thread_post(run->c, h->release_node, path, body, NULL, NULL, 0);
    h->released = testutil_mono_ms();
}

static void *waiter_main(void *arg)
{
    lease_waiter_t *w = arg;
    holding_t *h = &w->run->h[w->k];
    char owner[32], path[128], body[160];
    snprintf(owner, sizeof owner, "waiter-%d-on-node-%d", w->k, h->node);
    snprintf(path, sizeof path, "/v1/leases/%s/acquire", w->run->name);
    snprintf(body, sizeof body, "{\"owner\": \"%s\", \"ttl_ms\": 20000, \"wait_ms\": %d}", owner,
             LEASE_WAIT_MS);
    atomic_fetch_add(&w->run->started, 1);
    json_t *j = NULL;
    h->sent = testutil_mono_ms();
    h->status = thread_post(w->run->c, h->node, path, body, &j, h->body, sizeof h->body);
    h->acquired = testutil_mono_ms();
    if (h->status == 200 && json_is_integer(json_object_get(j, "token"))) {
        h->token = json_integer_value(json_object_get(j, "token"));
        hold_and_release(w->run, h, owner);
    }
    json_decref(j);
    return NULL;
}

/* "what: n, min/median/max" of the latencies (sorted in place). */
static void print_latencies(const char *what, int64_t *ms, int n)
{
    if (n == 0) {
        print_message("leases: wake-up latency, %s: none\n", what);
        return;
    }
    qsort(ms, (size_t)n, sizeof ms[0], cmp_i64);
    print_message("leases: wake-up latency (release answered -> next holder answered; below 0: "
                  "the waiter was answered first), %s: %d hand-overs, min %lld ms, median %lld "
                  "ms, max %lld ms\n",
                  what, n, (long long)ms[0], (long long)ms[n / 2], (long long)ms[n - 1]);
}

static int cmp_acquired(const void *a, const void *b)
{
    const holding_t *x = *(holding_t *const *)a, *y = *(holding_t *const *)b;
    return cmp_i64(&x->acquired, &y->acquired);
}

/* Check the hand-overs of a finished run; count the wake-up latencies
 * (release answered -> next holder answered; it may be answered first: a
 * release is answered after it commits) into same[] (the release was on
 * the waiter's node) and cross[] (on another node). */
static void check_relay(lease_run_t *run, int64_t *same, int *nsame, int64_t *cross, int *ncross)
{
    holding_t *order_of[LEASE_WAITERS_MAX + 1];
    int n = run->waiters + 1;
    for (int k = 0; k < run->waiters; k++)
        order_of[k] = &run->h[k];
    order_of[run->waiters] = &run->h[LEASE_WAITERS_MAX];
    qsort(order_of, (size_t)n, sizeof order_of[0], cmp_acquired);
    assert_ptr_equal(order_of[0], &run->h[LEASE_WAITERS_MAX]); /* the first holder */
    int overlaps = 0;
    for (int k = 1; k < n; k++) {
        holding_t *h = order_of[k], *prev = order_of[k - 1];
        if (h->status != 200)
            fail_msg("waiter on node %d: acquire answered %ld %s", h->node, h->status, h->body);
        assert_int_equal(h->release_status, 200);
        assert_true(h->acquired - h->sent < LEASE_WAIT_MS); /* served before its wait ran out */
        assert_true(h->token > prev->token);
        /* it got the lease only after the previous holder let it go */
        if (h->overlapped || h->acquired < prev->release_sent)
            overlaps++;
        int64_t lat = h->acquired - prev->released;
        if (h->node == prev->release_node)
            same[(*nsame)++] = lat;
        else
            cross[(*ncross)++] = lat;
    }
    print_message("leases: %s: %d waiters, handed on %d times, overlaps %d, tokens strictly "
                  "growing, every waiter served within its wait_ms\n",
                  run->name, run->waiters, run->waiters, overlaps);
    assert_int_equal(overlaps, 0);
}

/* A holder on node 0; nwaiters waiters, waiter k parked on node
 * first_node + k % span (acquire with wait_ms); the holder releases on
 * node 0; each waiter, once it holds the lease, holds it LEASE_HOLD_MS and
 * releases it on release_node (-1: its own node), handing it on. */
static void lease_relay(cluster_t *c, const char *name, int nwaiters, int first_node, int span,
                        int release_node, int64_t *same, int *nsame, int64_t *cross, int *ncross)
{
    lease_run_t *run = calloc(1, sizeof *run);
    assert_non_null(run);
    assert_true(nwaiters <= LEASE_WAITERS_MAX);
    run->c = c;
    run->name = name;
    run->waiters = nwaiters;
    holding_t *first = &run->h[LEASE_WAITERS_MAX];
    first->node = first->release_node = 0;
    char path[128];
    snprintf(path, sizeof path, "/v1/leases/%s/acquire", name);
    json_t *j;
    assert_int_equal(post_json(c, 0, path, &j, "{\"owner\": \"first\", \"ttl_ms\": 20000}"), 200);
    first->token = jint(j, "token");
    first->acquired = testutil_mono_ms();
    json_decref(j);
    atomic_store(&run->holders, 1); /* the first holder is in */

    lease_waiter_t lw[LEASE_WAITERS_MAX];
    for (int k = 0; k < nwaiters; k++) {
        run->h[k].node = first_node + k % span;
        run->h[k].release_node = release_node >= 0 ? release_node : run->h[k].node;
        lw[k] = (lease_waiter_t){.run = run, .k = k};
        assert_int_equal(pthread_create(&run->h[k].thread, NULL, waiter_main, &lw[k]), 0);
    }
    /* let the waiters park (no assertion rests on it: a late one waits or
     * gets a free lease, under the same checks) */
    while (atomic_load(&run->started) < nwaiters)
        usleep(1000);
    usleep(300000 * (useconds_t)testutil_scale());
    atomic_fetch_sub(&run->holders, 1);
    first->release_sent = testutil_mono_ms();
    snprintf(path, sizeof path, "/v1/leases/%s/release", name);
    assert_int_equal(post_json(c, 0, path, NULL, "{\"owner\": \"first\"}"), 200);
    first->released = testutil_mono_ms();
    for (int k = 0; k < nwaiters; k++)
        pthread_join(run->h[k].thread, NULL);
    check_relay(run, same, nsame, cross, ncross);
    snprintf(path, sizeof path, "/v1/leases/%s", name);
    client_resp_t r = call(c, 1, "GET", path, NULL, NULL);
    assert_int_equal(r.status, 404); /* free again, seen from another node */
    client_resp_free(&r);
    free(run);
}

static void test_cluster_leases(void **state)
{
    cluster_t *c = *state;
    int64_t same[2 * LEASE_WAITERS_MAX], cross[2 * LEASE_WAITERS_MAX];
    int nsame = 0, ncross = 0;
    /* waiters on every node, each releasing on its own node (a waiter on
     * the releasing node, woken in that process, tends to win) */
    lease_relay(c, "everywhere", 3 * NODES, 0, NODES, -1, same, &nsame, cross, &ncross);
    /* waiters on nodes 1 and 2, every release on node 0: each hand-over
     * is a wake-up from another node */
    lease_relay(c, "across", 6, 1, NODES - 1, 0, same, &nsame, cross, &ncross);
    print_latencies("released on another node", cross, ncross);
    print_latencies("released on the waiter's node", same, nsame);
    assert_true(ncross >= 6);
}

/* ------------------------------------------------------------------------
 * A paused node
 * ------------------------------------------------------------------------ */

#define PAUSE_KEYS 10
#define PAUSED 2

static void test_cluster_pause(void **state)
{
    cluster_t *c = *state;
    char key[32], want[PAUSE_KEYS][64];
    int64_t version[PAUSE_KEYS];
    for (int k = 0; k < PAUSE_KEYS; k++) {
        snprintf(key, sizeof key, "p%d", k);
        snprintf(want[k], sizeof want[k], "before-%d", k);
        assert_int_equal(kv_put(c, 0, key, want[k], -1, &version[k]), 201);
        expect_everywhere(c, key, want[k], version[k]);
        expect_everywhere(c, key, want[k], version[k]); /* warm: node 2 holds it */
    }
    assert_int_equal(cluster_pause(c, PAUSED), 0);
    int64_t t0 = testutil_mono_ms(), slowest = 0;
    int writes = 0;
    /* write on 0 and 1 for twice the member timeout */
    for (int round = 0; testutil_mono_ms() - t0 < 2LL * c->member_timeout_ms || round < 2;
         round++) {
        for (int k = 0; k < PAUSE_KEYS; k++) {
            snprintf(key, sizeof key, "p%d", k);
            snprintf(want[k], sizeof want[k], "paused-%d-round-%d", k, round);
            int64_t w0 = testutil_mono_ms();
            assert_int_equal(kv_put(c, (k + round) % 2, key, want[k], -1, &version[k]), 200);
            int64_t took = testutil_mono_ms() - w0;
            slowest = took > slowest ? took : slowest;
            writes++;
        }
        assert_true(testutil_mono_ms() - t0 < 60000LL * testutil_scale()); /* bounded */
    }
    int64_t paused_for = testutil_mono_ms() - t0;
    /* the others see it down, and keep answering reads */
    assert_int_equal(cluster_wait_up(c, 0, NODES - 1, 10 * c->member_timeout_ms), 0);
    for (int k = 0; k < PAUSE_KEYS; k++) {
        snprintf(key, sizeof key, "p%d", k);
        for (int j = 0; j < 2; j++) {
            char *got;
            int64_t v;
            assert_int_equal(kv_get(c, j, key, &got, &v, NULL), 200);
            assert_string_equal(got, want[k]);
            assert_int_equal(v, version[k]);
            free(got);
        }
    }
    assert_int_equal(cluster_resume(c, PAUSED), 0);
    /* at once: every key read through the resumed node is the newest */
    int stale = 0, reads = 0, refused = 0;
    for (int k = 0; k < PAUSE_KEYS; k++) {
        snprintf(key, sizeof key, "p%d", k);
        char *got = NULL;
        int64_t v = -1;
        long st = kv_get(c, PAUSED, key, &got, &v, NULL);
        reads++;
        refused += st == 503;
        /* it may refuse (503) until it rejoins; never answer the old value */
        if (st == 200 && (strcmp(got, want[k]) != 0 || v != version[k])) {
            stale++;
            print_message("stale read on the resumed node: %s = '%s' version %lld, newest '%s' "
                          "version %lld\n",
                          key, got, (long long)v, want[k], (long long)version[k]);
        } else if (st != 200 && st != 503) {
            fail_msg("resumed node: GET %s answered %ld", key, st);
        }
        free(got);
    }
    print_message("paused node: %lld ms stopped (--member-timeout %d), %d writes on the others, "
                  "slowest %lld ms; after SIGCONT %d reads through it at once: %d answered 503, "
                  "%d stale\n",
                  (long long)paused_for, c->member_timeout_ms, writes, (long long)slowest, reads,
                  refused, stale);
    assert_int_equal(stale, 0);
    /* it rejoins and serves every key's newest value */
    assert_int_equal(cluster_wait_up(c, PAUSED, NODES, 15000), 0);
    for (int k = 0; k < PAUSE_KEYS; k++) {
        snprintf(key, sizeof key, "p%d", k);
        expect_everywhere(c, key, want[k], version[k]);
    }
}

/* ------------------------------------------------------------------------
 * sessions: sliding expiry, read-and-delete and PATCH across nodes
 * ------------------------------------------------------------------------ */

static const char *const PREFER_REPR[] = {"Prefer: return=representation", NULL};
static const char *const MERGE_PATCH[] = {"Content-Type: application/merge-patch+json", NULL};

static long status_call(cluster_t *c, int i, const char *method, const char *path,
                        const char *const headers[], const char *body)
{
    client_resp_t r = call(c, i, method, path, headers, body);
    long st = r.status;
    client_resp_free(&r);
    return st;
}

static void sessions_sliding(cluster_t *c)
{
    const char *h[] = {"Content-Type: text/plain", NULL};
    assert_int_equal(status_call(c, 0, "PUT", "/v1/kv/sess:tok?ttl=2&sliding=true", h, "u1"), 201);
    bool hit = false;
    assert_int_equal(kv_get(c, 0, "sess:tok", NULL, NULL, &hit), 200);
    assert_int_equal(kv_get(c, 0, "sess:tok", NULL, NULL, &hit), 200);
    assert_true(hit); /* node 0's tier holds it, expiring 2 s after the PUT */
    int64_t last = 0;
    for (int i = 0; i < 9; i++) { /* 4.5 s of reads on node 1 only */
        usleep(500 * 1000);
        long st = kv_get(c, 1, "sess:tok", NULL, NULL, NULL);
        if (st != 200)
            fail_msg("read %d on node 1: %ld, want 200", i, st);
        last = testutil_wall_ms();
    }
    /* node 0 was never read since: its copy expired, the row did not */
    char *v = NULL;
    assert_int_equal(kv_get(c, 0, "sess:tok", &v, NULL, NULL), 200);
    assert_string_equal(v, "u1");
    free(v);
    last = testutil_wall_ms();
    /* no more reads: gone everywhere within 2 s + 1 s (+ margin) */
    usleep((useconds_t)(last + 3300 - testutil_wall_ms()) * 1000);
    for (int j = 0; j < NODES; j++)
        assert_int_equal(kv_get(c, j, "sess:tok", NULL, NULL, NULL), 404);
}

typedef struct cross_taker {
    cluster_t *c;
    int node;
    pthread_barrier_t *go;
    long status;
} cross_taker_t;

static void *cross_take(void *arg)
{
    cross_taker_t *t = arg;
    pthread_barrier_wait(t->go);
    client_resp_t r;
    t->status = client_request(cluster_node(t->c, t->node), "DELETE", "/v1/kv/sess:race",
                               PREFER_REPR, NULL, 0, &r) == 0
                    ? r.status
                    : -1;
    client_resp_free(&r);
    return NULL;
}

static void sessions_take(cluster_t *c)
{
    int64_t v;
    assert_int_equal(kv_put(c, 0, "sess:otp", "4711", -1, &v), 201);
    expect_everywhere(c, "sess:otp", "4711", v); /* warm every tier */
    expect_everywhere(c, "sess:otp", "4711", v);
    client_resp_t r = call(c, 0, "DELETE", "/v1/kv/sess:otp", PREFER_REPR, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "4711");
    assert_int_equal(etag_version(&r), v);
    client_resp_free(&r);
    expect_absent_everywhere(c, "sess:otp");
    assert_int_equal(status_call(c, 1, "DELETE", "/v1/kv/sess:otp", PREFER_REPR, NULL), 404);
    enum { PER_NODE = 4 };
    for (int round = 0; round < 3; round++) {
        assert_int_equal(kv_put(c, round % NODES, "sess:race", "x", -1, &v), 201);
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, NODES * PER_NODE);
        cross_taker_t t[NODES * PER_NODE];
        pthread_t th[NODES * PER_NODE];
        for (int i = 0; i < NODES * PER_NODE; i++) {
            t[i] = (cross_taker_t){c, i % NODES, &go, 0};
            assert_int_equal(pthread_create(&th[i], NULL, cross_take, &t[i]), 0);
        }
        int ok = 0, gone = 0;
        for (int i = 0; i < NODES * PER_NODE; i++) {
            pthread_join(th[i], NULL);
            ok += t[i].status == 200;
            gone += t[i].status == 404;
        }
        pthread_barrier_destroy(&go);
        assert_int_equal(ok, 1);
        assert_int_equal(gone, NODES * PER_NODE - 1);
    }
}

typedef struct cross_patcher {
    cluster_t *c;
    int id;
    long status;
} cross_patcher_t;

static void *cross_patch(void *arg)
{
    cross_patcher_t *p = arg;
    char body[64];
    snprintf(body, sizeof body, "{\"m%d\":%d}", p->id, p->id);
    client_resp_t r;
    p->status = client_request(cluster_node(p->c, p->id % NODES), "PATCH", "/v1/kv/sess:h",
                               MERGE_PATCH, body, strlen(body), &r) == 0
                    ? r.status
                    : -1;
    client_resp_free(&r);
    return NULL;
}

static void sessions_patch(cluster_t *c)
{
    assert_int_equal(status_call(c, 0, "PATCH", "/v1/kv/sess:p", MERGE_PATCH, "{\"a\":1}"), 201);
    for (int k = 0; k < 2; k++) /* warm node 1's tier */
        assert_int_equal(kv_get(c, 1, "sess:p", NULL, NULL, NULL), 200);
    assert_int_equal(status_call(c, 0, "PATCH", "/v1/kv/sess:p", MERGE_PATCH,
                                 "{\"b\":2,\"a\":null}"),
                     200);
    for (int j = 0; j < NODES; j++) {
        char *v = NULL;
        assert_int_equal(kv_get(c, j, "sess:p", &v, NULL, NULL), 200);
        assert_string_equal(v, "{\"b\":2}");
        free(v);
    }
    enum { PATCHERS = 30 };
    cross_patcher_t p[PATCHERS];
    pthread_t th[PATCHERS];
    for (int i = 0; i < PATCHERS; i++) {
        p[i] = (cross_patcher_t){c, i, 0};
        assert_int_equal(pthread_create(&th[i], NULL, cross_patch, &p[i]), 0);
    }
    for (int i = 0; i < PATCHERS; i++) {
        pthread_join(th[i], NULL);
        assert_true(p[i].status == 200 || p[i].status == 201);
    }
    for (int j = 0; j < NODES; j++) {
        client_resp_t r = call(c, j, "GET", "/v1/kv/sess:h", NULL, NULL);
        assert_int_equal(r.status, 200);
        json_t *o = client_json(&r);
        assert_non_null(o);
        assert_int_equal(json_object_size(o), PATCHERS);
        json_decref(o);
        client_resp_free(&r);
    }
}

static void test_cluster_sessions(void **state)
{
    cluster_t *c = *state;
    sessions_take(c);
    sessions_patch(c);
    sessions_sliding(c);
}

/* ------------------------------------------------------------------------
 * Payment deadline
 * ------------------------------------------------------------------------ */

static void put_item_paying(cluster_t *c, int i, const char *id, int stock, int timeout_ms)
{
    char path[128], body[160];
    snprintf(path, sizeof path, "/v1/items/%s", id);
    snprintf(body, sizeof body,
             "{\"name\": \"Item %s\", \"stock\": %d, \"payment_timeout_ms\": %d}", id, stock,
             timeout_ms);
    client_resp_t r = call(c, i, "PUT", path, JSON_HEADERS, body);
    assert_int_equal(r.status, 201);
    client_resp_free(&r);
}

/* The user's order as node i has it (caller decrefs). */
static json_t *get_order(cluster_t *c, int i, const char *item, const char *user)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/items/%s/orders/%s", item, user);
    client_resp_t r = call(c, i, "GET", path, NULL, NULL);
    assert_int_equal(r.status, 200);
    json_t *o = client_json(&r);
    client_resp_free(&r);
    assert_non_null(o);
    return o;
}

/* Poll node i every 5 ms (at most max_ms) until the order is cancelled;
 * the wall clock then, or -1. */
static int64_t wait_cancelled(cluster_t *c, int i, const char *item, const char *user, int max_ms)
{
    int64_t until = testutil_wall_ms() + max_ms;
    do {
        json_t *o = get_order(c, i, item, user);
        bool done = strcmp(jstr(o, "state"), "cancelled") == 0;
        json_decref(o);
        if (done)
            return testutil_wall_ms();
        usleep(5000);
    } while (testutil_wall_ms() < until);
    return -1;
}

/* Node i's count of orders it cancelled at their pay_by. */
static int64_t auto_cancellations(cluster_t *c, int i)
{
    client_resp_t r = call(c, i, "GET", "/v1/stats", NULL, NULL);
    assert_int_equal(r.status, 200);
    json_t *st = client_json(&r);
    client_resp_free(&r);
    int64_t n = jint(json_object_get(st, "seckill"), "auto_cancellations");
    json_decref(st);
    return n;
}

static int64_t order_pay_by(cluster_t *c, int i, const char *item, const char *user)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/items/%s/orders", item);
    json_t *o;
    assert_int_equal(post_json(c, i, path, &o, "{\"user_id\": \"%s\"}", user), 201);
    assert_string_equal(jstr(o, "state"), "pending");
    int64_t pay_by = jint(o, "pay_by");
    json_decref(o);
    return pay_by;
}

static void test_cluster_payment_deadline(void **state)
{
    cluster_t *c = *state;
    const char *code;
    /* 1. placed on node 0, sold out everywhere; the deadline passes: the
     * order is cancelled within 1 s, once (by whichever node), and every
     * node sells the unit again */
    put_item_paying(c, 0, "pd", 1, 1000);
    int64_t pay_by = order_pay_by(c, 0, "pd", "alice");
    for (int i = 1; i < NODES; i++) {
        assert_int_equal(order(c, i, "pd", "bob", &code), 409);
        assert_string_equal(code, "sold_out");
    }
    int64_t seen = wait_cancelled(c, 1, "pd", "alice", 3000);
    assert_true(seen > 0);
    print_message("deadline across nodes: cancelled, seen on node 1 %lld ms after pay_by\n",
                  (long long)(seen - pay_by));
    assert_true(seen - pay_by <= 1000);
    for (int i = 0; i < NODES; i++)
        expect_item(c, i, "pd", 1, 0);
    assert_int_equal(order(c, 2, "pd", "bob", NULL), 201);
    json_t *paid;
    assert_int_equal(post_json(c, 1, "/v1/items/pd/orders/bob/pay", &paid, "{}"), 200);
    json_decref(paid);
    usleep(1200000); /* every node's timer has had its turn */
    int64_t total = 0;
    for (int i = 0; i < NODES; i++)
        total += auto_cancellations(c, i);
    assert_int_equal(total, 1);
    for (int i = 0; i < NODES; i++)
        expect_item(c, i, "pd", 0, 1);

    /* 2. a unit returned on node 0 clears the sold-out flags of nodes 1
     * and 2 (each refused an order from memory before) */
    put_item_paying(c, 0, "pc", 1, 60000);
    order_pay_by(c, 0, "pc", "alice");
    for (int i = 1; i < NODES; i++) {
        assert_int_equal(order(c, i, "pc", "bob", &code), 409);
        assert_string_equal(code, "sold_out");
        assert_int_equal(order(c, i, "pc", "bob", &code), 409); /* now from the flag */
        assert_string_equal(code, "sold_out");
    }
    json_t *o;
    assert_int_equal(post_json(c, 0, "/v1/items/pc/orders/alice/cancel", &o, "{}"), 200);
    assert_string_equal(jstr(o, "state"), "cancelled");
    json_decref(o);
    assert_int_equal(order(c, 1, "pc", "bob", NULL), 201);
    assert_int_equal(order(c, 2, "pc", "carol", &code), 409);
    assert_string_equal(code, "sold_out");

    /* 3. the node that took the order stops before its pay_by: another
     * node's timer (it learned the deadline from the cluster) cancels it */
    put_item_paying(c, 0, "ps", 1, 1000);
    pay_by = order_pay_by(c, 0, "ps", "alice");
    assert_int_equal(daemon_stop(cluster_node(c, 0)), 0);
    seen = wait_cancelled(c, 1, "ps", "alice", 3000);
    assert_true(seen > 0);
    print_message("deadline of a stopped node's order: seen cancelled on node 1 %lld ms after "
                  "pay_by\n",
                  (long long)(seen - pay_by));
    assert_true(seen - pay_by <= 1000);
    usleep(1200000);
    for (int i = 1; i < NODES; i++)
        expect_item(c, i, "ps", 1, 0);
    assert_int_equal(cluster_restart(c, 0), 0);
}

/* ------------------------------------------------------------------------
 * Delay queue across nodes
 *
 * queue_wake    a claim parked on node 0 is served by an enqueue on node 1
 *               (the cluster message wakes it) and by a delayed enqueue on
 *               node 2 when its run_at comes (node 0's timer learns the due
 *               time from the message); prints the latencies.
 * queue_claims  one queue claimed from two threads on each node at once:
 *               no job handed to two claimers, none lost, tokens unique.
 * ------------------------------------------------------------------------ */

typedef struct queue_parked {
    cluster_t *c;
    int node;
    long status;
    json_t *ans;
    int64_t got_at;
} queue_parked_t;

static void *queue_park(void *arg)
{
    queue_parked_t *p = arg;
    p->status = thread_post(p->c, p->node, "/v1/queues/x/claim",
                            "{\"worker\":\"parked\",\"visibility_ms\":30000,\"wait_ms\":20000}",
                            &p->ans, NULL, 0);
    p->got_at = testutil_wall_ms();
    return NULL;
}

/* Park a claim on node 0, run the enqueue on node `on`, return the parked
 * claim's job; *got_at when it was answered. */
static json_t *queue_wake_once(cluster_t *c, int on, const char *body, int64_t *sent_at,
                               int64_t *run_at, int64_t *got_at)
{
    queue_parked_t p = {.c = c, .node = 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, queue_park, &p), 0);
    usleep(300000);
    json_t *a;
    *sent_at = testutil_wall_ms();
    assert_int_equal(post_json(c, on, "/v1/queues/x/jobs", &a, "%s", body), 201);
    *run_at = jint(a, "run_at");
    json_decref(a);
    pthread_join(th, NULL);
    assert_int_equal(p.status, 200);
    json_t *jobs = json_object_get(p.ans, "jobs");
    assert_int_equal(json_array_size(jobs), 1);
    json_t *job = json_incref(json_array_get(jobs, 0));
    json_decref(p.ans);
    *got_at = p.got_at;
    return job;
}

static void test_cluster_queue_wake(void **state)
{
    cluster_t *c = *state;
    int64_t sent, run_at, got;
    for (int round = 0; round < 3; round++) {
        json_t *job = queue_wake_once(c, 1, "{\"payload\":\"now\"}", &sent, &run_at, &got);
        json_decref(job);
        print_message("queue: enqueue on node 1 -> claim parked on node 0: %lld ms\n",
                      (long long)(got - sent));
        assert_true(got - sent < 5000LL * testutil_scale());
        job =
            queue_wake_once(c, 2, "{\"payload\":\"later\",\"delay_ms\":700}", &sent, &run_at, &got);
        assert_string_equal(jstr(job, "payload"), "later");
        json_decref(job);
        print_message("queue: run_at of a job enqueued on node 2 -> claim parked on node 0: "
                      "%lld ms\n",
                      (long long)(got - run_at));
        assert_true(got >= run_at);
        assert_true(got - run_at < 5000LL * testutil_scale());
    }
}

#define QJOBS 300
#define QTHREADS (2 * NODES)

typedef struct queue_claimer {
    cluster_t *c;
    int node;
    int got; /* jobs this thread claimed */
    char ids[QJOBS][16];
    int64_t tokens[QJOBS];
    int errors;
} queue_claimer_t;

static void *queue_claim_main(void *arg)
{
    queue_claimer_t *q = arg;
    for (int idle = 0; idle < 3 && q->got < QJOBS;) {
        json_t *ans = NULL;
        long st = thread_post(q->c, q->node, "/v1/queues/race/claim",
                              "{\"worker\":\"w\",\"visibility_ms\":60000,\"max\":5,"
                              "\"wait_ms\":300}",
                              &ans, NULL, 0);
        json_t *jobs = json_object_get(ans, "jobs");
        if (st != 200 || !json_is_array(jobs)) {
            q->errors++;
            json_decref(ans);
            if (q->errors > 10)
                break;
            continue;
        }
        idle = json_array_size(jobs) ? 0 : idle + 1;
        for (size_t i = 0; i < json_array_size(jobs) && q->got < QJOBS; i++) {
            json_t *j = json_array_get(jobs, i);
            snprintf(q->ids[q->got], sizeof q->ids[0], "%s",
                     json_string_value(json_object_get(j, "id")));
            q->tokens[q->got] = json_integer_value(json_object_get(j, "claim_token"));
            q->got++;
        }
        json_decref(ans);
    }
    return NULL;
}

static void test_cluster_queue_claims(void **state)
{
    cluster_t *c = *state;
    for (int n = 0; n < QJOBS; n++) {
        json_t *a;
        assert_int_equal(post_json(c, n % NODES, "/v1/queues/race/jobs", &a,
                                   "{\"payload\":%d,\"id\":\"j%d\"}", n, n),
                         201);
        json_decref(a);
    }
    queue_claimer_t *qs = calloc(QTHREADS, sizeof *qs);
    pthread_t th[QTHREADS];
    for (int i = 0; i < QTHREADS; i++) {
        qs[i] = (queue_claimer_t){.c = c, .node = i % NODES};
        assert_int_equal(pthread_create(&th[i], NULL, queue_claim_main, &qs[i]), 0);
    }
    for (int i = 0; i < QTHREADS; i++)
        pthread_join(th[i], NULL);
    static int seen[QJOBS];
    memset(seen, 0, sizeof seen);
    int total = 0, per_node[NODES] = {0};
    int64_t *tokens = calloc(QJOBS * 2, sizeof *tokens);
    for (int i = 0; i < QTHREADS; i++) {
        assert_int_equal(qs[i].errors, 0);
        per_node[qs[i].node] += qs[i].got;
        for (int k = 0; k < qs[i].got; k++) {
            int n = atoi(qs[i].ids[k] + 1);
            assert_true(n >= 0 && n < QJOBS);
            seen[n]++;
            tokens[total++] = qs[i].tokens[k];
        }
    }
    print_message("queue: %d jobs claimed on nodes %d/%d/%d\n", total, per_node[0], per_node[1],
                  per_node[2]);
    assert_int_equal(total, QJOBS);
    for (int n = 0; n < QJOBS; n++)
        if (seen[n] != 1)
            fail_msg("job j%d was claimed %d times", n, seen[n]);
    qsort(tokens, (size_t)total, sizeof *tokens, cmp_i64);
    for (int i = 1; i < total; i++)
        assert_true(tokens[i] > tokens[i - 1]);
    free(tokens);
    free(qs);
    json_t *g;
    client_resp_t r = call(c, 2, "GET", "/v1/queues/race", NULL, NULL);
    assert_int_equal(r.status, 200);
    g = client_json(&r);
    client_resp_free(&r);
    assert_int_equal(jint(g, "claimed"), QJOBS);
    assert_int_equal(jint(g, "ready"), 0);
    json_decref(g);
}

/* ------------------------------------------------------------------------
 * Watch: a stream on one node carries every node's changes, in order
 * ------------------------------------------------------------------------ */

/* Events of a raw HTTP/1.0 stream (GET path on node i), "id: V" lines,
 * collected until `want` came or timeout_ms passed; their ids in ids[]. */
static int watch_collect(int fd, int64_t *ids, int want, int timeout_ms)
{
    static char buf[1 << 20];
    size_t len = 0;
    int got = 0;
    int64_t until = testutil_mono_ms() + (int64_t)timeout_ms * testutil_scale();
    while (got < want && testutil_mono_ms() < until && len < sizeof buf - 1) {
        struct timeval tv = {0, 100000};
        fd_set set;
        FD_ZERO(&set);
        FD_SET(fd, &set);
        if (select(fd + 1, &set, NULL, NULL, &tv) <= 0)
            continue;
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        got = 0;
        for (char *p = buf; (p = strstr(p, "\nid: ")) && got < want; p += 5)
            ids[got++] = strtoll(p + 5, NULL, 10);
    }
    return got;
}

#define WATCH_WRITES 60

typedef struct watch_writer {
    cluster_t *c;
    int node;
    int64_t versions[WATCH_WRITES];
} watch_writer_t;

static void *watch_writer_main(void *arg)
{
    watch_writer_t *w = arg;
    for (int i = 0; i < WATCH_WRITES; i++) {
        char path[64];
        snprintf(path, sizeof path, "/v1/kv/cw:%d:%d", w->node, i % 5);
        const char *h[] = {"Content-Type: text/plain", NULL};
        client_resp_t r;
        w->versions[i] = -1;
        if (client_request(cluster_node(w->c, w->node), "PUT", path, h, "v", 1, &r) != 0)
            continue;
        json_t *j = r.status / 100 == 2 ? client_json(&r) : NULL;
        w->versions[i] = j ? json_integer_value(json_object_get(j, "version")) : -1;
        json_decref(j);
        client_resp_free(&r);
    }
    return NULL;
}

static void test_cluster_watch(void **state)
{
    cluster_t *c = *state;
    int fd = daemon_raw_connect(cluster_node(c, 1));
    assert_true(fd >= 0);
    const char *req = "GET /v1/watch?prefix=cw: HTTP/1.0\r\nHost: t\r\n\r\n";
    assert_true(daemon_raw_send(fd, req, strlen(req)));
    usleep(300000); /* the stream is open */
    /* writers on nodes 0 and 2 at once; node 1 watches */
    watch_writer_t w[2] = {{c, 0, {0}}, {c, 2, {0}}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, watch_writer_main, &w[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    int64_t acked[2 * WATCH_WRITES], ids[2 * WATCH_WRITES];
    for (int i = 0; i < 2 * WATCH_WRITES; i++) {
        acked[i] = w[i / WATCH_WRITES].versions[i % WATCH_WRITES];
        assert_true(acked[i] > 0);
    }
    qsort(acked, 2 * WATCH_WRITES, sizeof acked[0], cmp_i64);
    int got = watch_collect(fd, ids, 2 * WATCH_WRITES, 10000);
    close(fd);
    assert_int_equal(got, 2 * WATCH_WRITES);
    /* every acknowledged write once, in version order */
    for (int i = 0; i < got; i++)
        assert_int_equal(ids[i], acked[i]);
    /* a blocking GET on node 1 is woken by a write on node 0 */
    int64_t v = 0;
    assert_int_equal(kv_put(c, 0, "cw:block", "1", -1, &v) / 100, 2);
    fd = daemon_raw_connect(cluster_node(c, 1));
    assert_true(fd >= 0);
    char get[160];
    snprintf(get, sizeof get, "GET /v1/kv/cw:block?wait=20&index=%lld HTTP/1.0\r\n\r\n",
             (long long)v);
    assert_true(daemon_raw_send(fd, get, strlen(get)));
    usleep(300000);
    int64_t t0 = testutil_mono_ms();
    int64_t v2 = 0;
    assert_int_equal(kv_put(c, 0, "cw:block", "2", -1, &v2) / 100, 2);
    char out[4096];
    bool closed = false;
    daemon_raw_read_all(fd, out, sizeof out - 1, 10000, &closed);
    close(fd);
    print_message("watch: blocking GET on node 1 woken by a PUT on node 0 after %lld ms\n",
                  (long long)(testutil_mono_ms() - t0));
    char etag[64];
    snprintf(etag, sizeof etag, "ETag: \"%lld\"", (long long)v2);
    assert_non_null(strstr(out, etag));
    assert_true(testutil_mono_ms() - t0 < 5000LL * testutil_scale());
}

int main(void)
{
    if (cluster_skip())
        return 77;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (getenv("SQLCACHED_TEST_FILTER")) /* e.g. "test_cluster_queue*": only those */
        cmocka_set_test_filter(getenv("SQLCACHED_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cluster_membership, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cluster_kv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cluster_kv_ops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cluster_flash_sale, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cluster_sale_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cluster_payment_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cluster_leases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cluster_pause, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cluster_not_blind, setup_skip_invalidation, teardown),
        cmocka_unit_test_setup_teardown(test_cluster_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cluster_queue_wake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cluster_queue_claims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cluster_watch, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
