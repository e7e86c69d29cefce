/*
 * consistency_cluster.c - the consistency checker (history.h) over three
 * nodes on one PostgreSQL schema: many clients, few keys, each request
 * sent to a node chosen at random; every operation is recorded with its
 * invocation and completion times and the history is checked for stale
 * reads and versions going back, across nodes.
 *
 * Scenarios (each on a fresh schema, three fresh nodes, --member-timeout
 * 1000, --testing-fill-delay-us so that the stale-fill race is frequent):
 *   plain     nothing else happens: 0 violations;
 *   pause     one node (the victim) is SIGSTOPped for 2.5 s (longer than
 *             its membership lease) a third of the way in, then SIGCONT.
 *             Meanwhile half the clients go on sending to it (their
 *             requests wait, or time out: they give up on the victim
 *             after 1.5 s), the other half use the two other nodes only
 *             (so the keys change while the victim sleeps). An unanswered
 *             request to the victim is indeterminate (history.h: it may or
 *             may not have been applied), to any other node an error.
 *             0 violations: after resuming, the victim must not serve what
 *             its memory tier held from before;
 *   kill      the victim is SIGKILLed a third of the way in; clients skip
 *             it from then on (requests in flight to it are
 *             indeterminate). 0 violations, no error from the others;
 *   selftest  the plain load on nodes started with
 *             --testing-skip-cluster-invalidation (no node tells the
 *             others of its writes): must REPORT violations, or the
 *             checker is blind (one retry if the race was missed).
 * Before each load every key is written once and read on every node, so
 * that every node's memory tier holds every key (what makes a missing
 * invalidation visible at once).
 *
 * The verdict is the contract's: no read returns an older value, a deleted
 * value or a 404 once a write was answered before the read began (stale,
 * resurrected, missing), and no phantom, wrong value, read from the future
 * or version out of order. The history's per-client "not monotonic" count
 * is printed, not judged: across nodes a client may see a write at one
 * node (read from the database once committed) and the value before it at
 * another (whose invalidation is still on its way) while that write is not
 * answered yet; both reads overlap the write, and "reads that overlap a
 * write may see either side of it" (docs/consistency.md). Once the write
 * is answered, an older read is counted as stale.
 *
 *   test_consistency_cluster              the short form (`make check`):
 *       every scenario, 4000 operations each (the self-test 2000);
 *   --ops N                               operations per scenario
 *       (`make check-cluster`: 200000);
 *   --scenario plain|pause|kill|selftest|all, --clients C, --keys K,
 *   --seed S, --on-write replace|invalidate.
 * Prints per scenario the reads checked and the violations found (stale
 * reads of every kind), the indeterminate operations, and each node's
 * /v1/stats "cluster" figures. PostgreSQL only (SQLCACHED_TEST_NO_PG=1:
 * exit 77). Under $SQLCACHED_WRAPPER (valgrind) only plain and selftest,
 * 10x shorter, with --member-timeout 5000.
 */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dbread.h"
#include "history.h"
#include "kvops.h"
#include "relcluster.h"
#include "relpg.h"
#include "testutil.h"

#define NODES 3
#define PAUSE_MS 2500
#define VICTIM_TIMEOUT_MS 1500
#define CLIENT_TIMEOUT_MS 10000

enum { SC_PLAIN, SC_PAUSE, SC_KILL, SC_SELFTEST, SC_COUNT };

static const char *const scenario_names[SC_COUNT] = {"plain", "pause", "kill", "selftest"};

typedef struct run {
    unsigned ops, clients, keys, delay_us, member_timeout_ms;
    uint64_t seed;
    int scenario;
    const char *on_write;
    int scale; /* timeouts x20 under a wrapper */
    pg_fixture_t *pg;
} run_t;

/* What the clients and the main thread share during one load. */
typedef struct shared {
    const run_t *run;
    const rel_cluster_t *cl;
    unsigned victim;
    int alive[NODES]; /* atomic; 0 once the node is killed */
    int paused;       /* atomic; 1 while the victim is stopped */
    int64_t resumed;  /* when the victim was resumed or killed (ns) */
    unsigned done;    /* atomic; operations done */
} shared_t;

typedef struct client {
    pthread_t thread;
    shared_t *sh;
    unsigned id, nops, done;
    hop_t *log;
} client_t;

static bool disturbed(const run_t *r)
{
    return r->scenario == SC_PAUSE || r->scenario == SC_KILL;
}

/* May client `id` send to node n now? Not to a killed node; while the
 * victim is paused, only the odd clients. */
static bool usable(shared_t *sh, unsigned n, unsigned id)
{
    return __atomic_load_n(&sh->alive[n], __ATOMIC_ACQUIRE) &&
           !(n == sh->victim && id % 2 == 0 && __atomic_load_n(&sh->paused, __ATOMIC_ACQUIRE));
}

/* A node at random among those client `id` may use. */
static unsigned pick_node(shared_t *sh, uint64_t *rng, unsigned id)
{
    unsigned n = (unsigned)(rel_rand(rng) % NODES);
    for (unsigned k = 0; k < NODES && !usable(sh, n, id); k++)
        n = (n + 1) % NODES;
    return n;
}

static void *client_main(void *arg)
{
    client_t *cl = arg;
    shared_t *sh = cl->sh;
    const run_t *r = sh->run;
    rel_client_t c[NODES];
    unsigned ready = 0;
    uint64_t rng = r->seed * 0x9e3779b97f4a7c15ULL + cl->id + 1;
    for (; ready < NODES; ready++) {
        long timeout = disturbed(r) && ready == sh->victim ? VICTIM_TIMEOUT_MS : CLIENT_TIMEOUT_MS;
        if (rel_client_init(&c[ready], sh->cl->d[ready].base_url, timeout * r->scale) != 0)
            break;
    }
    for (unsigned i = 0; ready == NODES && i < cl->nops; i++) {
        hop_t *o = &cl->log[i];
        memset(o, 0, sizeof *o);
        unsigned n = pick_node(sh, &rng, cl->id);
        o->client = cl->id;
        o->node = (uint8_t)n;
        kvops_random(&c[n], &rng, r->keys, o);
        /* the victim may leave a request unanswered (or answer 5xx while
         * it finds its feet): in doubt, not an error */
        if (o->result == HOP_ERROR && disturbed(r) && n == sh->victim)
            o->result = HOP_UNKNOWN;
        cl->done++;
        __atomic_add_fetch(&sh->done, 1, __ATOMIC_RELEASE);
    }
    for (unsigned k = 0; k < ready; k++)
        rel_client_free(&c[k]);
    return NULL;
}

/* Write every key once, then read every key on every node: every memory
 * tier holds every key. Recorded as client `id`; the operations used. */
static size_t warm_up(const run_t *r, const rel_cluster_t *cl, unsigned id, hop_t *log)
{
    size_t n = 0;
    rel_client_t c;
    for (unsigned node = 0; node < NODES; node++) {
        if (rel_client_init(&c, cl->d[node].base_url, CLIENT_TIMEOUT_MS * r->scale) != 0)
            continue;
        for (unsigned k = 0; k < r->keys; k++) {
            hop_t *o = &log[n++];
            *o = (hop_t){.client = id,
                         .node = (uint8_t)node,
                         .key = (uint16_t)k,
                         .kind = node == 0 ? HOP_PUT : HOP_GET,
                         .value = 1000000 + k};
            kvops_send(&c, o);
            if (node == 0) { /* and read it back on node 0 too */
                o = &log[n++];
                *o = (hop_t){.client = id, .key = (uint16_t)k, .kind = HOP_GET};
                kvops_send(&c, o);
            }
        }
        rel_client_free(&c);
    }
    return n;
}

/* Wait (bounded) until a third of the operations are done. */
static void wait_third(shared_t *sh)
{
    unsigned third = sh->run->ops / 3;
    for (int i = 0; i < 6000 * sh->run->scale; i++) { /* 60 s */
        if (__atomic_load_n(&sh->done, __ATOMIC_ACQUIRE) >= third)
            return;
        usleep(10000);
    }
}

static int copy_text(void *cls, int ncols, const char *const *cols)
{
    snprintf(cls, 160, "%s", ncols > 0 && cols[0] ? cols[0] : "");
    return 1;
}

/* While the victim sleeps (past its membership lease): how many of its
 * sessions sit inside a transaction, and how many of the other nodes'
 * wait for a lock (each node's sessions carry application_name
 * sqlcached-n<i>). Printed: a victim stopped inside a write transaction
 * holds its row locks, and the others' writes wait for it. */
static void print_pause_locks(const rel_cluster_t *cl, unsigned victim)
{
    static const char SQL_IN_TX[] =
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
        "AND state LIKE 'idle in transaction%'";
    static const char SQL_WAITING[] =
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'sqlcached-n%' "
        "AND application_name <> $1 AND wait_event_type = 'Lock'";
    static const char SQL_LAST[] = "SELECT query FROM pg_stat_activity WHERE application_name = $1 "
                                   "AND state LIKE 'idle in transaction%' LIMIT 1";
    char err[256], name[32], last[160] = "";
    int64_t in_tx = -1, waiting = -1;
    snprintf(name, sizeof name, "sqlcached-n%u", victim);
    dbread_t *db = dbread_open(cl->d[victim].db_path, err, sizeof err);
    if (db && (dbread_int(db, SQL_IN_TX, name, &in_tx) != 0 ||
               dbread_int(db, SQL_WAITING, name, &waiting) != 0))
        snprintf(err, sizeof err, "%s", dbread_errmsg(db));
    const char *const params[] = {name};
    if (db && in_tx > 0)
        dbread_query(db, SQL_LAST, 1, params, copy_text, last);
    if (in_tx >= 0 && waiting >= 0)
        printf("consistency-cluster: pause: node %u's sessions inside a transaction: %" PRId64
               "%s%s%s, the other nodes' sessions waiting for a lock: %" PRId64 "\n",
               victim, in_tx, last[0] ? " (last statement: " : "", last, last[0] ? ")" : "",
               waiting);
    else
        printf("consistency-cluster: pause: cannot read pg_stat_activity: %s\n", err);
    dbread_close(db);
}

/* The scenario's disturbance, from the main thread during the load. */
static void disturb(shared_t *sh, rel_cluster_t *cl)
{
    const run_t *r = sh->run;
    if (!disturbed(r))
        return;
    wait_third(sh);
    pid_t pid = cl->d[sh->victim].pid;
    unsigned before = __atomic_load_n(&sh->done, __ATOMIC_ACQUIRE);
    if (r->scenario == SC_PAUSE) {
        __atomic_store_n(&sh->paused, 1, __ATOMIC_RELEASE);
        kill(pid, SIGSTOP);
        usleep((PAUSE_MS - 1000) * 1000);
        print_pause_locks(cl, sh->victim);
        usleep(1000 * 1000);
        kill(pid, SIGCONT);
        sh->resumed = rel_now_ns();
        __atomic_store_n(&sh->paused, 0, __ATOMIC_RELEASE);
        printf("consistency-cluster: node %u (pid %d) paused %d ms after %u operations; "
               "%u operations completed meanwhile\n",
               sh->victim, (int)pid, PAUSE_MS, before,
               __atomic_load_n(&sh->done, __ATOMIC_ACQUIRE) - before);
    } else {
        __atomic_store_n(&sh->alive[sh->victim], 0, __ATOMIC_RELEASE);
        rel_cluster_kill(cl, sh->victim);
        sh->resumed = rel_now_ns();
        printf("consistency-cluster: node %u (pid %d) killed after %u operations\n", sh->victim,
               (int)pid, before);
    }
}

/* Reads the victim answered after it resumed (pause): what shows its
 * memory tier was put to the test. */
static unsigned victim_reads_after(const shared_t *sh, const hop_t *ops, size_t n)
{
    unsigned k = 0;
    for (size_t i = 0; i < n; i++)
        k += ops[i].node == sh->victim && ops[i].kind == HOP_GET && ops[i].invoke >= sh->resumed &&
             (ops[i].result == HOP_OK || ops[i].result == HOP_ABSENT);
    return k;
}

/* Writes answered 409 or 412 (history.h: HOP_OTHER, taken as changing
 * nothing): this load sends no condition, so each is a refused write
 * (e.g. 409 conflict), printed for the record. */
static unsigned refused_writes(const hop_t *ops, size_t n)
{
    unsigned k = 0;
    for (size_t i = 0; i < n; i++)
        k += ops[i].result == HOP_OTHER;
    return k;
}

/* The daemon flags of one scenario into args (NULL-terminated). */
static void node_args(const run_t *r, const char **args, char *delay, char *timeout)
{
    size_t n = 0;
    sprintf(delay, "%u", r->delay_us);
    sprintf(timeout, "%u", r->member_timeout_ms);
    args[n++] = "--threads", args[n++] = "8", args[n++] = "--log-level", args[n++] = "warn";
    args[n++] = "--on-write", args[n++] = r->on_write;
    args[n++] = "--testing-fill-delay-us", args[n++] = delay;
    args[n++] = "--member-timeout", args[n++] = timeout;
    if (r->scenario == SC_SELFTEST)
        args[n++] = "--testing-skip-cluster-invalidation";
    args[n] = NULL;
}

/* Run the load of one scenario and check it; the violations, or -1 when
 * the run itself failed (a node, errors, operations missing). */
static int64_t run_scenario(const run_t *r)
{
    const char *args[16];
    char delay[16], timeout[16], url[256];
    rel_cluster_t cl;
    memset(&cl, 0, sizeof cl);
    node_args(r, args, delay, timeout);
    const char *name = scenario_names[r->scenario];
    /* the contract's violations: all but the per-client order (see the top) */
    if (pg_fixture_new_db(r->pg, url, sizeof url) != 0 ||
        rel_cluster_start(&cl, NODES, url, args, true) != 0) {
        printf("consistency-cluster: %s: the cluster did not start\n", name);
        rel_cluster_free(&cl);
        return -1;
    }
    size_t warm_max = (size_t)r->keys * (NODES + 1);
    size_t cap = r->ops + warm_max;
    hop_t *ops = calloc(cap, sizeof *ops);
    client_t *cls = calloc(r->clients, sizeof *cls);
    uint64_t rng = r->seed ^ 0x5bd1e995u;
    shared_t sh = {.run = r,
                   .cl = &cl,
                   .victim = (unsigned)(rel_rand(&rng) % NODES),
                   .alive = {1, 1, 1}};
    size_t warm = ops && cls ? warm_up(r, &cl, r->clients, ops + r->ops) : 0;
    unsigned per = r->ops / r->clients, total = 0;
    int64_t t0 = rel_now_ns();
    unsigned started = 0;
    for (; ops && cls && started < r->clients; started++) {
        unsigned i = started;
        cls[i] = (client_t){.sh = &sh,
                            .id = i,
                            .log = ops + (size_t)i * per,
                            .nops = i + 1 == r->clients ? r->ops - per * i : per};
        if (pthread_create(&cls[i].thread, NULL, client_main, &cls[i]) != 0)
            break;
    }
    disturb(&sh, &cl);
    for (unsigned i = 0; i < started; i++) {
        pthread_join(cls[i].thread, NULL);
        total += cls[i].done;
    }
    double secs = (double)(rel_now_ns() - t0) / 1e9;
    rel_cluster_print_stats(&cl, "consistency-cluster:   ");
    int stop_rc = rel_cluster_stop(&cl);
    int64_t result = -1;
    history_report_t rep;
    if (total == r->ops && warm == warm_max &&
        history_check(ops, r->ops + warm, r->keys, &rep, stdout, 10) == 0) {
        uint64_t v = history_violations(&rep) - rep.not_monotonic;
        printf("consistency-cluster: %s: %u ops over %d nodes (%u clients, %u keys, on write "
               "%s, %.0f ops/s; +%zu warm-up), reads checked %" PRIu64 ", writes checked %" PRIu64
               ", violations %" PRIu64 " (stale %" PRIu64 ", resurrected %" PRIu64
               ", missing %" PRIu64 ", phantom %" PRIu64 ", wrong value %" PRIu64
               ", future %" PRIu64 ", version order %" PRIu64 ", duplicate %" PRIu64
               "), indeterminate %" PRIu64 " (reads of them %" PRIu64 "), errors %" PRIu64
               "; not judged: a client "
               "saw a version go back while the newer write was unanswered %" PRIu64 "\n",
               name, r->ops, NODES, r->clients, r->keys, r->on_write,
               r->ops / (secs > 0 ? secs : 1), warm, rep.reads_checked, rep.writes_checked, v,
               rep.stale, rep.resurrected, rep.missing, rep.phantom, rep.wrong_value, rep.future,
               rep.version_order, rep.duplicate_version, rep.indeterminate, rep.from_indeterminate,
               rep.errors, rep.not_monotonic);
        result = rep.errors || stop_rc != 0 ? -1 : (int64_t)v;
        unsigned refused = refused_writes(ops, r->ops + warm);
        if (refused)
            printf("consistency-cluster: %s: %u writes answered 409/412 (taken as not "
                   "applied)\n",
                   name, refused);
        if (r->scenario == SC_PAUSE) {
            unsigned after = victim_reads_after(&sh, ops, r->ops);
            printf("consistency-cluster: pause: reads answered by node %u after it resumed: "
                   "%u\n",
                   sh.victim, after);
            if (after == 0)
                result = -1; /* the scenario did not test what it is for */
        }
    } else {
        printf("consistency-cluster: %s: the run failed (%u of %u operations, %zu of %zu "
               "warm-up)\n",
               name, total, r->ops, warm, warm_max);
    }
    fflush(stdout);
    free(ops);
    free(cls);
    rel_cluster_free(&cl);
    return result;
}

/* One scenario to its verdict; 0 when it went as it must. */
static int run_one(const run_t *base, int scenario)
{
    run_t r = *base;
    r.scenario = scenario;
    if (scenario != SC_SELFTEST) {
        int64_t v = run_scenario(&r);
        printf("consistency-cluster: %s: %s\n", scenario_names[scenario],
               v == 0  ? "ok, no stale read"
               : v > 0 ? "STALE READS FOUND"
                       : "RUN FAILED");
        return v != 0;
    }
    r.ops = r.ops / 2 > r.clients ? r.ops / 2 : r.ops;
    int64_t v = 0;
    for (int attempt = 0; attempt < 2 && v == 0; attempt++) { /* a race: retry if missed */
        r.seed = base->seed + (uint64_t)attempt;
        v = run_scenario(&r);
    }
    if (v > 0)
        printf("consistency-cluster: selftest: the checker caught the skipped cross-node "
               "invalidation (%" PRId64 " violations), as it must\n",
               v);
    else
        printf("consistency-cluster: selftest: CHECKER BLIND: no violation with "
               "--testing-skip-cluster-invalidation\n");
    return v <= 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: test_consistency_cluster [--ops N] [--clients C] [--keys K] "
                    "[--seed S] [--scenario plain|pause|kill|selftest|all] "
                    "[--on-write replace|invalidate]\n");
    return 2;
}

static int parse_scenario(const char *s)
{
    for (int i = 0; i < SC_COUNT; i++)
        if (strcmp(s, scenario_names[i]) == 0)
            return 1 << i;
    return strcmp(s, "all") == 0 ? (1 << SC_COUNT) - 1 : -1;
}

int main(int argc, char **argv)
{
    const char *wrapper = getenv("SQLCACHED_WRAPPER");
    bool slow = wrapper && *wrapper;
    run_t r = {.ops = slow ? 400 : 4000,
               .clients = slow ? 4 : 8,
               .keys = 4,
               .delay_us = 300,
               .member_timeout_ms = slow ? 5000 : 1000,
               .seed = (uint64_t)time(NULL),
               .on_write = "replace",
               .scale = slow ? 20 : 1};
    int scenarios = slow ? (1 << SC_PLAIN) | (1 << SC_SELFTEST) : (1 << SC_COUNT) - 1;
    for (int i = 1; i < argc; i++) {
        if (i + 1 == argc)
            return usage();
        const char *v = argv[++i];
        if (strcmp(argv[i - 1], "--ops") == 0)
            r.ops = (unsigned)atoi(v);
        else if (strcmp(argv[i - 1], "--clients") == 0)
            r.clients = (unsigned)atoi(v);
        else if (strcmp(argv[i - 1], "--keys") == 0)
            r.keys = (unsigned)atoi(v);
        else if (strcmp(argv[i - 1], "--seed") == 0)
            r.seed = strtoull(v, NULL, 10);
        else if (strcmp(argv[i - 1], "--scenario") == 0)
            scenarios = parse_scenario(v);
        else if (strcmp(argv[i - 1], "--on-write") == 0 &&
                 (strcmp(v, "replace") == 0 || strcmp(v, "invalidate") == 0))
            r.on_write = v;
        else
            return usage();
    }
    if (scenarios <= 0 || r.clients < 1 || r.clients > 256 || r.keys < 1 || r.keys > 65535 ||
        r.ops < 3 * r.clients)
        return usage();
    pg_fixture_t pg;
    int pg_rc = rel_pg_start(&pg);
    if (pg_rc != 0)
        return pg_rc > 0 ? 77 : 1;
    curl_global_init(CURL_GLOBAL_ALL);
    printf("consistency-cluster: seed %" PRIu64 "\n", r.seed);
    r.pg = &pg;
    int rc = 0;
    for (int s = 0; s < SC_COUNT; s++)
        if (scenarios & (1 << s))
            rc |= run_one(&r, s);
    if (pg_fixture_stop(&pg) != 0)
        rc = 1;
    curl_global_cleanup();
    return rc;
}
