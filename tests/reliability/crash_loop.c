/*
 * crash_loop.c - kill the daemon with SIGKILL under write load, again and
 * again, and check after each kill that every acknowledged write survived.
 *
 * For each backend and durability mode: start the daemon on a fresh
 * database (SQLite: a file in a temporary directory; PostgreSQL: a fresh
 * schema of one throwaway cluster per run, tests/pg.h), start worker
 * threads that call the domains' operation generators (crash.h), then per
 * cycle: let the load run for a random 50..300 ms, SIGKILL the daemon (only
 * the daemon: PostgreSQL stays up), wait for every worker to park, check
 * the database through tests/dbread.h (SQLite: PRAGMA integrity_check;
 * both: the persisted version counter not below the largest acknowledged
 * version, each domain's check_file), restart, run each domain's
 * check_restart, check a new write gets a version above every acknowledged
 * one, and let the workers go on.
 *
 *   test_crash [--cycles N] [--durability normal|full|both] [--workers N]
 *              [--seed S] [--backend sqlite|postgresql|both] [--expect-lost]
 *              [--expect-partial]
 *              [--on-write replace|invalidate|both]
 * Each durability mode runs with each --on-write mode asked for (default
 * both: what survives a crash must not depend on how the memory tier
 * takes a write).
 *
 * Defaults (the short form run by `make check`): 5 cycles, both modes, both
 * backends, then a self-test on SQLite: 2 cycles in which the loop itself
 * deletes the WAL after the kill (what a daemon that acknowledged before
 * its commit reached the file would look like), which every domain must
 * report as lost writes; otherwise its checker is broken.
 * `--sabotage-drop-wal` runs only that. `--sabotage-payment` starts the
 * daemon with --testing-payment-unguarded (its payment deadline cancels
 * paid orders too) and passes only if the loop reports violations. On PostgreSQL the same proof uses a
 * daemon built to answer before it commits (tests/reliability/pg-sabotage.sh):
 * `--expect-lost` then passes only if every domain reports lost writes.
 * Likewise `--expect-partial` passes only if the transactions domain
 * reports transactions stored in part: for a daemon built to commit each
 * transaction in two writes (tests/reliability/txn-sabotage.sh).
 * `--expect-broken DOMAIN` passes only if that domain reports lost writes
 * or violations: for a daemon built broken in one domain
 * (tests/reliability/queue-sabotage.sh: acks that do not remove the job).
 * `make check-crash` runs 100 cycles per mode and backend. Exit 0 when
 * nothing was lost and nothing violated, 1 otherwise, 77 (skip) under
 * $SQLCACHED_WRAPPER (valgrind cannot say anything useful about a process
 * killed with -9, and the loop would take hours under it).
 * SQLCACHED_TEST_NO_PG=1 leaves the PostgreSQL forms out.
 *
 * Clusters: `--nodes N` (2..8, PostgreSQL only) runs N nodes on the one
 * schema (--member-timeout 1000, each node's sessions named
 * application_name=sqlcached-n<i> so that the wait for a killed node's
 * sessions counts only its own); each worker sends each operation to a
 * node chosen at random; each cycle SIGKILLs a random node while the others
 * keep serving (a request to another node left unanswered counts as
 * unanswered_while_up), checks the database, restarts the node, waits until
 * every node sees N members up, and runs every check_restart and the
 * version probe through every node in turn, the restarted one first (the
 * model is exact after the first: the others must agree with it).
 * `--sabotage-skip-invalidation` starts the nodes with
 * --testing-skip-cluster-invalidation and passes only if the loop reports
 * lost writes or violations (a node serving its stale memory tier).
 * test_crash_cluster is this program built with the cluster form's
 * defaults (-DCRASH_CLUSTER_FORM): 3 nodes, PostgreSQL, 4 cycles,
 * durability normal, --on-write replace, then the sabotage self-test over
 * 2 cycles; `make check-cluster` runs 25 cycles in each durability and
 * --on-write mode.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crash.h"
#include "daemon.h"
#include "dbread.h"
#include "relcluster.h"
#include "relpg.h"
#include "testutil.h"

/* The domains under test (see crash.h). */
static const rel_domain_t *const domains[] = {
    &rel_domain_kv, &rel_domain_orders, &rel_domain_leases, &rel_domain_txn, &rel_domain_queue,
};
#define NDOMAINS (sizeof domains / sizeof domains[0])

#define MAX_WORKERS 64

/* ------------------------------------------------------------------------
 * Shared state between the main thread and the workers
 * ------------------------------------------------------------------------ */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static bool killing; /* set before the kill, cleared after the checks */
static bool stopping;
static unsigned epoch; /* bumped when the workers may go on */
static unsigned parked;
static uint64_t unexpected; /* transport failures while the daemon was up */
static unsigned nnodes = 1; /* nodes of the run (set before the workers start) */
static int victim = -1;     /* the node being killed, -1 between kills */
static int64_t max_acked_version;

void rel_note_version(int64_t version)
{
    int64_t cur = __atomic_load_n(&max_acked_version, __ATOMIC_RELAXED);
    while (version > cur && !__atomic_compare_exchange_n(&max_acked_version, &cur, version, true,
                                                         __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

/* Findings printed per domain and mode (they are all counted); the last
 * slot is for a name not in domains[]. */
static int fail_budget[NDOMAINS + 1];

void rel_fail(const char *domain, const char *fmt, ...)
{
    size_t slot = 0;
    while (slot < NDOMAINS && strcmp(domains[slot]->name, domain) != 0)
        slot++;
    if (__atomic_sub_fetch(&fail_budget[slot], 1, __ATOMIC_RELAXED) < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    flockfile(stderr);
    fprintf(stderr, "crash: %s: ", domain);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    funlockfile(stderr);
    va_end(ap);
}

typedef struct worker {
    pthread_t thread;
    rel_worker_t w;
    rel_client_t client[REL_MAX_NODES]; /* one per node */
    uint64_t node_rng;                  /* picks the node of each operation */
    void **models;
    rel_report_t *reports;
} worker_t;

/* Park until the main thread bumps the epoch (lock held). */
static void park(void)
{
    unsigned e = epoch;
    parked++;
    pthread_cond_broadcast(&cond);
    while (epoch == e && !stopping)
        pthread_cond_wait(&cond, &lock);
    parked--;
}

static unsigned pick_domain(uint64_t *rng)
{
    unsigned total = 0;
    for (size_t i = 0; i < NDOMAINS; i++)
        total += domains[i]->weight;
    unsigned x = (unsigned)(rel_rand(rng) % total);
    for (size_t i = 0; i < NDOMAINS; i++) {
        if (x < domains[i]->weight)
            return (unsigned)i;
        x -= domains[i]->weight;
    }
    return 0;
}

static void *worker_main(void *arg)
{
    worker_t *wk = arg;
    for (;;) {
        pthread_mutex_lock(&lock);
        if (killing)
            park();
        bool stop = stopping;
        pthread_mutex_unlock(&lock);
        if (stop)
            break;
        unsigned node = nnodes > 1 ? (unsigned)(rel_rand(&wk->node_rng) % nnodes) : 0;
        wk->w.client = &wk->client[node];
        unsigned d = pick_domain(&wk->w.rng);
        if (domains[d]->step(wk->models[d], &wk->w, &wk->reports[d]) == 0)
            continue;
        pthread_mutex_lock(&lock);
        if (!killing || (int)node != victim) {
            unexpected++;
            fprintf(stderr, "crash: worker %u: no answer from node %u while it was up\n", wk->w.id,
                    node);
        }
        pthread_mutex_unlock(&lock);
        usleep(1000); /* the kill is being noticed: do not spin */
    }
    return NULL;
}

/* ------------------------------------------------------------------------
 * Checks between cycles
 * ------------------------------------------------------------------------ */

static const char SQL_INTEGRITY[] = "PRAGMA integrity_check";
/* the killed daemon's sessions (libpq's fallback_application_name) */
static const char SQL_SESSIONS[] =
    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sqlcached'";
/* a cluster node's sessions (rel_cluster_app_name), but the asker's own */
static const char SQL_NODE_SESSIONS[] =
    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
    "AND pid <> pg_backend_pid()";
static uint64_t zombie_waits; /* kills after which a session of the dead daemon lingered */

/* PostgreSQL: the daemon is dead only once its sessions are. A session
 * reads what the daemon sent before it died: a COMMIT already sent still
 * commits (after its WAL flush), later than the kill. So wait (bounded)
 * until no session of the daemon is left, before checking and resolving
 * in-doubt writes; otherwise a write resolved "not applied" at the restart
 * could still land after it. */
static void wait_sessions_gone(dbread_t *db, const char *app_name)
{
    int64_t n = -1;
    for (int i = 0; i < 1000; i++) { /* 10 s */
        int rc = app_name ? dbread_int(db, SQL_NODE_SESSIONS, app_name, &n)
                          : dbread_int(db, SQL_SESSIONS, NULL, &n);
        if (rc != 0 || n == 0)
            break;
        if (i == 0)
            zombie_waits++;
        usleep(10000);
    }
    if (n != 0)
        fprintf(stderr, "crash: sessions of the killed daemon still there (%" PRId64 "): %s\n", n,
                dbread_errmsg(db));
}
static const char SQL_VERSION[] = "SELECT value FROM meta WHERE name = 'version'";

static int integrity_row(void *cls, int ncols, const char *const *cols)
{
    uint64_t *corrupt = cls;
    const char *row = ncols > 0 ? cols[0] : NULL;
    if (!row || strcmp(row, "ok") != 0) {
        fprintf(stderr, "crash: integrity_check: %s\n", row ? row : "(null)");
        (*corrupt)++;
    }
    return 0;
}

/* The database, read-only: SQLite's integrity_check (PostgreSQL keeps its
 * own), the version counter, each domain's check_file. `killed`: the node
 * just killed (whose sessions must be gone first). */
static void check_file(const char *db_name, unsigned killed, void **models, rel_report_t *reports,
                       uint64_t *corrupt)
{
    char app_name[32];
    rel_cluster_app_name(killed, app_name, sizeof app_name);
    char err[512];
    dbread_t *db = dbread_open(db_name, err, sizeof err);
    if (!db) {
        fprintf(stderr, "crash: %s\n", err);
        (*corrupt)++;
        return;
    }
    if (dbread_is_pg(db))
        wait_sessions_gone(db, nnodes > 1 ? app_name : NULL);
    if (!dbread_is_pg(db) &&
        dbread_query(db, SQL_INTEGRITY, 0, NULL, integrity_row, corrupt) != 0) {
        fprintf(stderr, "crash: integrity_check: %s\n", dbread_errmsg(db));
        (*corrupt)++;
    }
    int64_t persisted = -1;
    if (dbread_int(db, SQL_VERSION, NULL, &persisted) != 0)
        persisted = -1;
    int64_t acked = __atomic_load_n(&max_acked_version, __ATOMIC_RELAXED);
    if (persisted < acked) {
        fprintf(stderr,
                "crash: version counter went back: %" PRId64 " stored, %" PRId64 " acknowledged\n",
                persisted, acked);
        reports[0].violations++;
    }
    for (size_t i = 0; i < NDOMAINS; i++)
        if (domains[i]->check_file)
            domains[i]->check_file(models[i], db, &reports[i]);
    dbread_close(db);
}

/* A new write must get a version above every acknowledged one. */
static void check_version_probe(rel_client_t *c, rel_report_t *r)
{
    int64_t acked = __atomic_load_n(&max_acked_version, __ATOMIC_RELAXED);
    if (rel_request(c, "PUT", "/v1/kv/crash-probe", "p", 1) != REL_ANSWERED ||
        (c->status != 200 && c->status != 201) || c->etag <= acked) {
        fprintf(stderr,
                "crash: probe write after restart: status %ld, version %" PRId64
                ", largest acknowledged %" PRId64 "\n",
                c->status, c->etag, acked);
        r->violations++;
        return;
    }
    rel_note_version(c->etag);
}

/* Wait (bounded) until every worker is parked. */
static int wait_parked(unsigned n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 60;
    int rc = 0;
    pthread_mutex_lock(&lock);
    while (parked < n && rc == 0)
        rc = pthread_cond_timedwait(&cond, &lock, &until);
    bool ok = parked >= n;
    pthread_mutex_unlock(&lock);
    return ok ? 0 : -1;
}

/* ------------------------------------------------------------------------
 * One durability mode
 * ------------------------------------------------------------------------ */

typedef struct params {
    unsigned cycles, workers, nodes;
    bool skip_invalidation; /* self-test: nodes that do not invalidate each other */
    uint64_t seed;
    bool drop_wal;          /* self-test: lose the WAL after each kill */
    int backend;            /* REL_SQLITE or REL_PG */
    pg_fixture_t *pg;       /* the run's cluster (REL_PG) */
    const char *on_write;   /* the daemon's --on-write of this run */
    bool payment_unguarded; /* self-test: --testing-payment-unguarded */
} params_t;

typedef struct outcome {
    unsigned cycles;
    uint64_t lost, corrupt, violations;
    uint64_t lost_by_domain[NDOMAINS];
    bool clean_stop;
    uint64_t partial;                   /* transactions stored in part (crash_txn.c) */
    uint64_t found_by_domain[NDOMAINS]; /* lost + violations */
} outcome_t;

/* The self-test's injected fault: the committed tail of the log is gone. */
static void drop_wal(const char *db_path)
{
    char path[600];
    snprintf(path, sizeof path, "%s-wal", db_path);
    unlink(path);
    snprintf(path, sizeof path, "%s-shm", db_path);
    unlink(path);
}

/* Node `node` restarted on a new port: every client of it follows. */
static void set_base(worker_t *wk, unsigned n, rel_client_t *main_clients, const rel_cluster_t *cl,
                     unsigned node)
{
    for (unsigned i = 0; i < n; i++)
        rel_client_set_base(&wk[i].client[node], cl->d[node].base_url);
    rel_client_set_base(&main_clients[node], cl->d[node].base_url);
}

/* After a restart: every domain's check and the version probe through
 * every node, the restarted one first. */
static void check_nodes(unsigned restarted, rel_client_t *mc, void **models, rel_report_t *reports)
{
    for (unsigned k = 0; k < nnodes; k++) {
        unsigned node = (restarted + k) % nnodes;
        for (size_t i = 0; i < NDOMAINS; i++)
            domains[i]->check_restart(models[i], &mc[node], &reports[i]);
        check_version_probe(&mc[node], &reports[0]);
    }
}

/* One kill: returns -1 if the loop cannot go on. */
static int kill_cycle(rel_cluster_t *cl, worker_t *wk, const params_t *p, rel_client_t *mc,
                      void **models, rel_report_t *reports, uint64_t *rng, uint64_t *corrupt)
{
    usleep((useconds_t)(50000 + rel_rand(rng) % 250000));
    unsigned v = nnodes > 1 ? (unsigned)(rel_rand(rng) % nnodes) : 0;
    daemon_t *d = &cl->d[v];
    pthread_mutex_lock(&lock);
    killing = true;
    victim = (int)v;
    pthread_mutex_unlock(&lock);
    rel_cluster_kill(cl, v);
    if (p->drop_wal)
        drop_wal(d->db_path);
    if (wait_parked(p->workers) != 0) {
        fprintf(stderr, "crash: workers did not park within 60 s\n");
        return -1;
    }
    check_file(d->db_path, v, models, reports, corrupt);
    if (rel_cluster_restart(cl, v) != 0) {
        fprintf(stderr, "crash: node %u did not restart\n", v);
        return -1;
    }
    if (nnodes > 1 && rel_cluster_wait_up(cl, nnodes, 15000) != 0) {
        fprintf(stderr, "crash: node %u did not rejoin\n", v);
        return -1;
    }
    set_base(wk, p->workers, mc, cl, v);
    if (nnodes > 1)
        printf("crash: node %u killed, its sessions gone, restarted on %s, %u members up\n", v,
               cl->d[v].base_url, nnodes);
    check_nodes(v, mc, models, reports);
    pthread_mutex_lock(&lock);
    killing = false;
    victim = -1;
    epoch++;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    return 0;
}

/* Clients of every node into c[0..nnodes); 0 or -1. */
static int init_clients(rel_client_t *c, const rel_cluster_t *cl)
{
    for (unsigned k = 0; k < nnodes; k++)
        if (rel_client_init(&c[k], cl->d[k].base_url, 10000) != 0)
            return -1;
    return 0;
}

static void free_clients(rel_client_t *c)
{
    for (unsigned k = 0; k < nnodes; k++)
        rel_client_free(&c[k]);
}

/* Start the workers; the number started (all, or fewer on failure). */
static unsigned start_workers(worker_t *wk, const params_t *p, const rel_cluster_t *cl,
                              void **models, rel_report_t *reports)
{
    for (unsigned i = 0; i < p->workers; i++) {
        memset(&wk[i], 0, sizeof wk[i]);
        wk[i].w = (rel_worker_t){.client = &wk[i].client[0],
                                 .id = i,
                                 .rng = p->seed * 0x9e3779b97f4a7c15ULL + i + 1};
        wk[i].node_rng = p->seed * 0xbf58476d1ce4e5b9ULL + i + 1;
        wk[i].models = models;
        wk[i].reports = reports;
        if (init_clients(wk[i].client, cl) != 0) {
            free_clients(wk[i].client);
            return i;
        }
        if (pthread_create(&wk[i].thread, NULL, worker_main, &wk[i]) != 0) {
            free_clients(wk[i].client);
            return i;
        }
    }
    return p->workers;
}

static void stop_workers(worker_t *wk, unsigned n)
{
    pthread_mutex_lock(&lock);
    stopping = true;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    for (unsigned i = 0; i < n; i++) {
        pthread_join(wk[i].thread, NULL);
        free_clients(wk[i].client);
    }
}

static void reset_shared(void)
{
    killing = stopping = false;
    parked = 0;
    unexpected = 0;
    victim = -1;
    max_acked_version = 0;
    zombie_waits = 0;
    for (size_t i = 0; i <= NDOMAINS; i++)
        fail_budget[i] = 20;
}

/* The daemon flags of a run into args (NULL-terminated). */
static void node_args(const char *mode, const params_t *p, const char **args)
{
    size_t n = 0;
    args[n++] = "--durability", args[n++] = mode, args[n++] = "--threads", args[n++] = "8";
    args[n++] = "--log-level", args[n++] = "warn";
    args[n++] = "--on-write", args[n++] = p->on_write ? p->on_write : "replace";
    if (p->nodes > 1)
        args[n++] = "--member-timeout", args[n++] = "1000";
    if (p->skip_invalidation)
        args[n++] = "--testing-skip-cluster-invalidation";
    if (p->payment_unguarded)
        args[n++] = "--testing-payment-unguarded";
    args[n] = NULL;
}

/* Start the nodes, the models and the workers, run the cycles; the cycles
 * done. *stop_rc: 0 when every node stopped cleanly at the end. */
static unsigned run_cycles(const char *mode, const params_t *p, void **models,
                           rel_report_t *reports, uint64_t *corrupt, int *stop_rc)
{
    const char *args[16];
    char url[256];
    rel_cluster_t cl;
    worker_t wk[MAX_WORKERS];
    rel_client_t mc[REL_MAX_NODES];
    uint64_t rng = p->seed | 1;
    unsigned done = 0, started = 0;
    bool clients = false;
    memset(&cl, 0, sizeof cl);
    memset(mc, 0, sizeof mc);
    *stop_rc = -1;
    node_args(mode, p, args);
    if (p->backend == REL_PG && pg_fixture_new_db(p->pg, url, sizeof url) != 0)
        fprintf(stderr, "crash: cannot make a PostgreSQL schema\n");
    else if (rel_cluster_start(&cl, p->nodes, p->backend == REL_PG ? url : NULL, args,
                               p->nodes > 1) != 0)
        fprintf(stderr, "crash: cannot start the daemon\n");
    else if (!(clients = init_clients(mc, &cl) == 0))
        fprintf(stderr, "crash: no client\n");
    else if ((started = start_workers(wk, p, &cl, models, reports)) == p->workers) {
        while (done < p->cycles && kill_cycle(&cl, wk, p, mc, models, reports, &rng, corrupt) == 0)
            done++;
    }
    stop_workers(wk, started);
    if (clients)
        *stop_rc = rel_cluster_stop(&cl);
    free_clients(mc);
    rel_cluster_free(&cl);
    return done;
}

/* Run every cycle in one mode. */
static outcome_t run_mode(const char *mode, const params_t *p)
{
    outcome_t out = {0};
    const char *bname = rel_backend_name(p->backend);
    void *models[NDOMAINS] = {0};
    rel_report_t reports[NDOMAINS];
    uint64_t corrupt = 0;
    unsigned done = 0;
    int stop_rc = -1;
    bool ready = true;
    memset(reports, 0, sizeof reports);
    reset_shared();
    nnodes = p->nodes;
    for (size_t i = 0; i < NDOMAINS; i++)
        ready = ready && (models[i] = domains[i]->create(p->workers)) != NULL;
    if (ready)
        done = run_cycles(mode, p, models, reports, &corrupt, &stop_rc);
    rel_report_t sum = {0};
    uint64_t lost_by_domain[NDOMAINS];
    for (size_t i = 0; i < NDOMAINS; i++) {
        lost_by_domain[i] = reports[i].lost;
        printf("crash: backend=%s durability=%s on_write=%s domain=%s acked_writes=%" PRIu64
               " in_doubt=%" PRIu64 " lost_writes=%" PRIu64 " violations=%" PRIu64
               " partial=%" PRIu64 "\n",
               bname, mode, p->on_write ? p->on_write : "replace", domains[i]->name,
               reports[i].acked, reports[i].in_doubt, reports[i].lost, reports[i].violations,
               reports[i].partial);
        sum.partial += reports[i].partial;
        sum.lost += reports[i].lost;
        sum.violations += reports[i].violations;
        if (models[i])
            domains[i]->destroy(models[i]);
    }
    printf("crash: %s%sbackend=%s durability=%s on_write=%s kill_cycles=%u/%u lost_writes=%" PRIu64
           " integrity_failures=%" PRIu64 " other_violations=%" PRIu64
           " unanswered_while_up=%" PRIu64 " clean_stop=%s",
           p->drop_wal ? "SELF-TEST (WAL dropped) " : "",
           p->skip_invalidation ? "SELF-TEST (--testing-skip-cluster-invalidation) " : "", bname,
           mode, p->on_write ? p->on_write : "replace", done, p->cycles, sum.lost, corrupt,
           sum.violations, unexpected, stop_rc == 0 ? "yes" : "no");
    if (p->nodes > 1)
        printf(" nodes=%u", p->nodes);
    if (p->backend == REL_PG)
        printf(" kills_with_lingering_sessions=%" PRIu64, zombie_waits);
    printf("\n");
    fflush(stdout);
    out = (outcome_t){done, sum.lost,     corrupt,     sum.violations + unexpected,
                      {0},  stop_rc == 0, sum.partial, {0}};
    memcpy(out.lost_by_domain, lost_by_domain, sizeof lost_by_domain);
    for (size_t i = 0; i < NDOMAINS; i++)
        out.found_by_domain[i] = reports[i].lost + reports[i].violations;
    return out;
}

static int passed(const outcome_t *o, const params_t *p)
{
    return o->cycles == p->cycles && o->lost == 0 && o->corrupt == 0 && o->violations == 0 &&
           o->clean_stop;
}

/* The checker must see an injected loss: lost writes in every domain,
 * nothing corrupt. 0 when it did. */
static int saw_loss(const outcome_t *o, const params_t *p, const char *what)
{
    int rc = o->cycles == p->cycles && o->corrupt == 0 ? 0 : 1;
    for (size_t i = 0; i < NDOMAINS; i++) {
        if (o->lost_by_domain[i] == 0) {
            printf("crash: SELF-TEST FAILED: %s went unnoticed by domain %s\n", what,
                   domains[i]->name);
            rc = 1;
        }
    }
    if (rc == 0) {
        printf("crash: self-test ok: %s was reported as %" PRIu64 " lost writes (", what, o->lost);
        for (size_t i = 0; i < NDOMAINS; i++)
            printf("%s%s %" PRIu64, i ? ", " : "", domains[i]->name, o->lost_by_domain[i]);
        printf(")\n");
    } else if (o->cycles != p->cycles || o->corrupt != 0)
        printf("crash: SELF-TEST FAILED: %u/%u cycles, %" PRIu64 " integrity failures\n", o->cycles,
               p->cycles, o->corrupt);
    return rc;
}

/* --expect-partial: a daemon built with SQLCACHED_TESTING_TXN_SPLIT (each
 * transaction committed in two writes; tests/reliability/txn-sabotage.sh)
 * must be reported as transactions stored in part. 0 when it was. */
static int saw_partial(const outcome_t *o, const params_t *p)
{
    if (o->cycles == p->cycles && o->corrupt == 0 && o->partial > 0) {
        printf("crash: self-test ok: transactions committed in two writes were reported as %" PRIu64
               " partial transactions\n",
               o->partial);
        return 0;
    }
    printf("crash: SELF-TEST FAILED: transactions committed in two writes went unnoticed "
           "(%u/%u cycles, %" PRIu64 " partial)\n",
           o->cycles, p->cycles, o->partial);
    return 1;
}

/* --expect-broken DOMAIN: a daemon built broken for that domain (e.g.
 * tests/reliability/queue-sabotage.sh) must be caught by it: lost writes or
 * violations reported there. 0 when it was. */
static int saw_broken(const outcome_t *o, const params_t *p, const char *name)
{
    for (size_t i = 0; i < NDOMAINS; i++) {
        if (strcmp(domains[i]->name, name) != 0)
            continue;
        if (o->cycles == p->cycles && o->found_by_domain[i] > 0) {
            printf("crash: self-test ok: the broken daemon was caught by domain %s (%" PRIu64
                   " lost writes or violations)\n",
                   name, o->found_by_domain[i]);
            return 0;
        }
        printf("crash: SELF-TEST FAILED: the broken daemon went unnoticed by domain %s "
               "(%u/%u cycles)\n",
               name, o->cycles, p->cycles);
        return 1;
    }
    printf("crash: no domain named %s\n", name);
    return 1;
}

/* SQLite: the loop drops the WAL after each kill. */
static int self_test(const params_t *base)
{
    params_t p = *base;
    p.cycles = 2;
    p.drop_wal = true;
    p.backend = REL_SQLITE;
    p.nodes = 1;
    outcome_t o = run_mode("normal", &p);
    return saw_loss(&o, &p, "the dropped WAL");
}

/* A cluster whose nodes skip the cross-node invalidation serves stale
 * reads from its memory tiers: the loop must report them (as lost writes
 * or violations). 0 when it did. */
static int stale_self_test(const params_t *base, unsigned cycles)
{
    params_t p = *base;
    p.cycles = cycles;
    p.skip_invalidation = true;
    p.on_write = "replace";
    outcome_t o = run_mode("normal", &p);
    uint64_t found = o.lost + o.violations;
    if (o.cycles == p.cycles && found > 0) {
        printf("crash: self-test ok: --testing-skip-cluster-invalidation was reported as %" PRIu64
               " lost writes and %" PRIu64 " other violations (",
               o.lost, o.violations);
        for (size_t i = 0; i < NDOMAINS; i++)
            printf("%s%s lost %" PRIu64, i ? ", " : "", domains[i]->name, o.lost_by_domain[i]);
        printf(")\n");
        return 0;
    }
    printf("crash: SELF-TEST FAILED: --testing-skip-cluster-invalidation went unnoticed "
           "(%u/%u cycles, %" PRIu64 " found)\n",
           o.cycles, p.cycles, found);
    return 1;
}

/* A daemon whose payment deadline forgets its guard cancels paid orders:
 * the orders domain must report it. 0 when it did. */
static int payment_self_test(const params_t *base, unsigned cycles)
{
    params_t p = *base;
    p.cycles = cycles;
    p.payment_unguarded = true;
    p.on_write = "replace";
    outcome_t o = run_mode("normal", &p);
    if (o.cycles == p.cycles && o.violations > 0) {
        printf("crash: self-test ok: --testing-payment-unguarded was reported as %" PRIu64
               " violations\n",
               o.violations);
        return 0;
    }
    printf("crash: SELF-TEST FAILED: --testing-payment-unguarded went unnoticed (%u/%u cycles)\n",
           o.cycles, p.cycles);
    return 1;
}

/* Every mode asked for on one backend; 0 when all passed (with
 * expect_lost: when every mode saw lost writes in every domain). */
/* Every durability mode asked for, each with every --on-write mode asked
 * for (the memory tier's write mode must not change what survives). */
static const char *expect_broken; /* --expect-broken DOMAIN */

static int run_backend(params_t *p, const char *modes, const char *on_writes, bool expect_lost,
                       bool expect_partial)
{
    static const char *const all[] = {"normal", "full"};
    static const char *const writes[] = {"replace", "invalidate"};
    int rc = 0;
    for (size_t m = 0; m < 2; m++) {
        if (strcmp(modes, all[m]) != 0 && strcmp(modes, "both") != 0)
            continue;
        for (size_t w = 0; w < 2; w++) {
            if (strcmp(on_writes, writes[w]) != 0 && strcmp(on_writes, "both") != 0)
                continue;
            p->on_write = writes[w];
            outcome_t o = run_mode(all[m], p);
            rc |= expect_broken    ? saw_broken(&o, p, expect_broken)
                  : expect_partial ? saw_partial(&o, p)
                  : expect_lost    ? saw_loss(&o, p, "a daemon that answers before its commit")
                                   : !passed(&o, p);
        }
    }
    return rc;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: test_crash [--cycles N] [--durability normal|full|both] "
            "[--workers 1..%d] [--seed S] [--backend sqlite|postgresql|both] "
            "[--on-write replace|invalidate|both] "
            "[--no-self-test] [--sabotage-drop-wal] [--expect-lost] [--expect-partial] "
            "[--nodes 1..%d (2 and more: --backend postgresql)] "
            "[--sabotage-skip-invalidation] [--sabotage-payment] [--expect-broken DOMAIN]\n",
            MAX_WORKERS, REL_MAX_NODES);
    return 2;
}

int main(int argc, char **argv)
{
#ifdef CRASH_CLUSTER_FORM
    params_t p = {.cycles = 4, .workers = 8, .nodes = 3, .seed = (uint64_t)time(NULL)};
    const char *modes = "normal", *on_writes = "replace";
    int backends = REL_PG;
#else
    params_t p = {.cycles = 5, .workers = 8, .nodes = 1, .seed = (uint64_t)time(NULL)};
    const char *modes = "both", *on_writes = "both";
    int backends = REL_BOTH;
#endif
    bool sabotage_only = false, self = true, expect_lost = false, sabotage_stale = false;
    bool expect_partial = false;
    bool sabotage_payment = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--sabotage-drop-wal") == 0) {
            sabotage_only = true;
            continue;
        }
        if (strcmp(argv[i], "--sabotage-skip-invalidation") == 0) {
            sabotage_stale = true;
            continue;
        }
        if (strcmp(argv[i], "--sabotage-payment") == 0) {
            sabotage_payment = true;
            continue;
        }
        if (strcmp(argv[i], "--no-self-test") == 0) {
            self = false;
            continue;
        }
        if (strcmp(argv[i], "--expect-partial") == 0) {
            expect_partial = true;
            continue;
        }
        if (strcmp(argv[i], "--expect-lost") == 0) {
            expect_lost = true;
            continue;
        }
        if (i + 1 == argc)
            return usage();
        if (strcmp(argv[i], "--cycles") == 0)
            p.cycles = (unsigned)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--durability") == 0)
            modes = argv[i + 1];
        else if (strcmp(argv[i], "--workers") == 0)
            p.workers = (unsigned)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--seed") == 0)
            p.seed = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--backend") == 0)
            backends = rel_backends_parse(argv[i + 1]);
        else if (strcmp(argv[i], "--on-write") == 0)
            on_writes = argv[i + 1];
        else if (strcmp(argv[i], "--nodes") == 0)
            p.nodes = (unsigned)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--expect-broken") == 0)
            expect_broken = argv[i + 1];
        else
            return usage();
        i++;
    }
    const char *wrapper = getenv("SQLCACHED_WRAPPER");
    if (wrapper && *wrapper) {
        printf("crash: skipped under %s\n", wrapper);
        return 77;
    }
    if (p.nodes < 1 || p.nodes > REL_MAX_NODES || (p.nodes > 1 && backends != REL_PG) ||
        (sabotage_stale && (p.nodes < 2 || sabotage_only)))
        return usage();
    if (p.workers < 1 || p.workers > MAX_WORKERS || p.cycles < 1 || backends < 0 ||
        (strcmp(on_writes, "replace") != 0 && strcmp(on_writes, "invalidate") != 0 &&
         strcmp(on_writes, "both") != 0))
        return usage();
    curl_global_init(CURL_GLOBAL_ALL);
    printf("crash: seed %" PRIu64 ", %u cycles, %u workers, %u node%s\n", p.seed, p.cycles,
           p.workers, p.nodes, p.nodes > 1 ? "s" : "");
    int rc = 0;
    if (sabotage_payment) { /* only that, on each backend asked for */
        if (backends & REL_SQLITE) {
            p.backend = REL_SQLITE;
            rc |= payment_self_test(&p, p.cycles);
        }
        pg_fixture_t pg;
        if ((backends & REL_PG) && rel_pg_start(&pg) == 0) {
            p.backend = REL_PG;
            p.pg = &pg;
            rc |= payment_self_test(&p, p.cycles);
            rc |= pg_fixture_stop(&pg) != 0;
        }
        curl_global_cleanup();
        return rc;
    }
    if (!sabotage_only && (backends & REL_SQLITE)) {
        p.backend = REL_SQLITE;
        rc |= run_backend(&p, modes, on_writes, expect_lost, expect_partial);
    }
    pg_fixture_t pg;
    int pg_rc = !sabotage_only && (backends & REL_PG) ? rel_pg_start(&pg) : 1;
    if (pg_rc < 0)
        rc = 1;
    if (pg_rc > 0 && p.nodes > 1) {
        curl_global_cleanup();
        return 77; /* a cluster needs PostgreSQL */
    }
    if (pg_rc == 0) {
        p.backend = REL_PG;
        p.pg = &pg;
        if (!sabotage_stale)
            rc |= run_backend(&p, modes, on_writes, expect_lost, expect_partial);
        if (p.nodes > 1 && (sabotage_stale || (self && !expect_lost && !expect_broken)))
            rc |= stale_self_test(&p, sabotage_stale ? p.cycles : 2);
        if (pg_fixture_stop(&pg) != 0)
            rc = 1;
    }
    if ((self && !expect_lost && !expect_partial && !expect_broken && (backends & REL_SQLITE)) ||
        sabotage_only)
        rc |= self_test(&p);
    curl_global_cleanup();
    return rc;
}
