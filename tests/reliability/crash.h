/*
 * crash.h - the crash loop's extension point: one rel_domain_t per part of
 * the API under test: the key-value store (crash_kv.c), the flash sale's
 * orders (crash_orders.c), leases (crash_leases.c), transactions
 * (crash_txn.c) and the delay queue (crash_queue.c).
 *
 * The loop (crash_loop.c) runs worker threads that call a random domain's
 * step() against the daemon while the main thread SIGKILLs it at random
 * moments. After each kill, with every worker parked, it checks the database
 * (SQLite: the file's integrity; both backends: each domain's check_file,
 * through tests/dbread.h), restarts the daemon and runs each domain's
 * check_restart. The same domains run on SQLite and on PostgreSQL (the
 * daemon with --db postgresql://..., kill -9 of the daemon only).
 *
 * A domain keeps a model of what the daemon's acknowledged answers prove:
 *   - acknowledged (2xx, or an answer that reveals state such as 404): the
 *     state it implies must be visible after every later restart;
 *   - in doubt (no answer: the daemon died with the request in flight): it
 *     may or may not have been applied.
 * check_restart compares the daemon with the model, counts lost writes
 * (acknowledged but gone) and other violations, then resolves every
 * in-doubt operation to what the daemon now holds, so the next cycle starts
 * from exact knowledge.
 *
 * Adding a domain: write crash_<name>.c defining
 * `const rel_domain_t rel_domain_<name> = {...}`, declare it below, add it
 * to the `domains[]` table at the top of crash_loop.c, and the file to
 * tests_test_crash_SOURCES in Makefile.am. The loop's self-test (the WAL
 * deleted after each kill) requires every domain to report lost writes, so
 * a domain's checkers must notice acknowledged writes going missing.
 */
#ifndef SQLCACHED_CRASH_H
#define SQLCACHED_CRASH_H

#include <stdint.h>
#include <stdio.h>

#include "dbread.h"
#include "relclient.h"

/* What a domain found; the loop sums these per durability mode. */
typedef struct rel_report {
    uint64_t acked;      /* writes acknowledged (2xx) */
    uint64_t in_doubt;   /* writes without an answer (resolved at restart) */
    uint64_t lost;       /* acknowledged writes missing after a restart: must be 0 */
    uint64_t violations; /* any other broken promise (wrong value, bad version, ...) */
    uint64_t partial;    /* of those: transactions stored in part (crash_txn.c) */
} rel_report_t;

/* Print one finding (prefixed with the domain name); counts nothing. */
void rel_fail(const char *domain, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Note a version (ETag) the daemon acknowledged; the loop checks after each
 * kill that the persisted counter is not below the largest one. Thread-safe. */
void rel_note_version(int64_t version);

/* The context of one worker thread. */
typedef struct rel_worker {
    rel_client_t *client;
    uint64_t rng;
    unsigned id;
} rel_worker_t;

typedef struct rel_domain {
    const char *name;
    unsigned weight; /* relative share of the operations generated */

    /* A new model for `workers` threads; NULL on failure. */
    void *(*create)(unsigned workers);
    void (*destroy)(void *model);

    /* Operation generator: issue one random operation through w->client
     * and record what its answer proves (thread-safe; counts acked writes
     * in r with atomic adds). Returns 0 when the daemon answered, -1 when
     * the request is in doubt (recorded as such). A violation seen online
     * (an answer that contradicts the model) is counted in r. */
    int (*step)(void *model, rel_worker_t *w, rel_report_t *r);

    /* Post-kill checker on the database (read-only handle on the SQLite
     * file or the PostgreSQL database; daemon dead, no worker running;
     * SQL common to both backends). May be NULL. */
    void (*check_file)(void *model, dbread_t *db, rel_report_t *r);

    /* Post-restart checker (daemon up, no worker running): verify every
     * acknowledged write and resolve the in-doubt ones. */
    void (*check_restart)(void *model, rel_client_t *c, rel_report_t *r);
} rel_domain_t;

extern const rel_domain_t rel_domain_kv;
extern const rel_domain_t rel_domain_orders;
extern const rel_domain_t rel_domain_leases;
extern const rel_domain_t rel_domain_txn;
extern const rel_domain_t rel_domain_queue;

#endif
