/*
 * pg_conn.c - one libpq connection: prepared statements, transactions,
 * migrations, SQLSTATE classification and reconnection (see pg_conn.h).
 *
 * Data: the PGconn; a copy of the configuration (the URL included, so a
 * reconnect can use it; it is never logged: it may hold a password); a
 * growing array mapping the address of a static SQL text to the name of its
 * server-side prepared statement ("s0", "s1", ... per connection; emptied
 * when a reconnect drops them all); the last error (SQLSTATE + message);
 * the reconnection backoff; whether a transaction is open; the deferred
 * statements (queued by pg_conn_savepoint_later, pg_conn_release_later and
 * pg_conn_run_later, with copies of their parameters).
 *
 * Not thread-safe: a connection is used by one thread at a time.
 *
 * Statements run with PQexecPrepared, or, when the configuration names a
 * deadline (the writer: the store's stop deadline), with
 * PQsendQueryPrepared and a poll of the socket in steps of at most 100 ms,
 * so that a statement still waiting past the deadline (for a lock held by
 * another session) is cancelled with PQcancel. COMMIT and ROLLBACK are
 * never cancelled: a batch that began before the deadline runs to its end
 * (a cancelled wait for a synchronous standby would leave a commit that is
 * local only, yet answered).
 *
 * Group commit relies on PostgreSQL details handled here: COMMIT of a
 * transaction that had an error answers "ROLLBACK" with success, so
 * pg_conn_commit() checks the transaction state first and the command tag
 * after; statements prepared inside a transaction outlive its rollback
 * (prepared statements are per session), so the cache stays valid.
 *
 * Deferred statements: the group commit wraps every write in SAVEPOINT w /
 * RELEASE w, whose answers nobody waits for, and a write whose answer is
 * needed only after the commit (pg_conn_run_later) need not wait either.
 * They are queued (parameters copied) and sent with the next statement
 * that must be answered (at the latest the COMMIT) in one libpq pipeline
 * (PQenterPipelineMode, one PQpipelineSync: one round trip for all), each
 * answer going to its on_result. In a pipeline, the statements after a
 * failed one are not run. So:
 *   - a SAVEPOINT or RELEASE that fails (or a lost connection) ends the
 *     whole transaction here (rolled back; every queued statement is
 *     answered with the failure): a failed RELEASE can never leave its
 *     savepoint for a later ROLLBACK TO to undo a write reported as done;
 *   - a queued write that fails is answered with its failure, and so is
 *     every statement queued after it up to the next RELEASE w (the rest
 *     of that write); then ROLLBACK TO w undoes it alone, exactly as the
 *     group commit does for a write that fails in the open, and that
 *     RELEASE and everything after it are sent again (they never ran).
 *     When no RELEASE follows (the write is still running: the statement
 *     that sent the pipeline is its own), the failure is returned to that
 *     statement instead, and undoing it is left to the caller.
 */
#include "pg_conn.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_BACKOFF_MIN_MS 50
#define DEFAULT_BACKOFF_MAX_MS 2000
#define MAX_DEFERRED 1024 /* statements queued before a pipeline is sent anyway */

/* A statement queued for the next pipeline. */
#define STMT_NAME_MAX 16

typedef struct deferred {
    const char *sql;
    char name[STMT_NAME_MAX];    /* its prepared statement */
    pg_params_t *params;         /* owned copy; NULL = none */
    pg_conn_result_fn on_result; /* NULL: SAVEPOINT, RELEASE or ROLLBACK TO */
    void *cls;
} deferred_t;

typedef struct prepared {
    const char *sql; /* static text: its address is the key */
    char name[STMT_NAME_MAX];
} prepared_t;

struct pg_conn {
    PGconn *conn;
    pg_conn_config_t cfg;
    char *url;
    prepared_t *stmts;
    size_t nstmts, capstmts;
    bool in_tx;
    deferred_t *q; /* the deferred statements, in order */
    int nq, capq;
    bool ending;             /* COMMIT or ROLLBACK running: never cancelled */
    int backoff_ms;          /* 0 = the next reconnect may run at once */
    int64_t next_attempt_ms; /* CLOCK_MONOTONIC */
    unsigned reconnects;
    char sqlstate[6];
    char errmsg[256];
};

static const char SQL_SYNC_ON[] = "SET synchronous_commit = on";
static const char SQL_SYNC_OFF[] = "SET synchronous_commit = off";
static const char SQL_READ_ONLY[] = "SET default_transaction_read_only = on";
static const char SQL_LOCK_TIMEOUT[] = "SELECT set_config('lock_timeout', $1, false)";
static const char SQL_IDLE_TX_TIMEOUT[] =
    "SELECT set_config('idle_in_transaction_session_timeout', $1, false)";
static const char SQL_BEGIN[] = "BEGIN";
static const char SQL_COMMIT[] = "COMMIT";
static const char SQL_ROLLBACK[] = "ROLLBACK";
static const char SQL_SAVEPOINT[] = "SAVEPOINT w";
static const char SQL_RELEASE[] = "RELEASE w";
static const char SQL_ROLLBACK_TO[] = "ROLLBACK TO w";

/* ------------------------------------------------------------------------
 * Outcomes
 * ------------------------------------------------------------------------ */

pg_conn_rc_t pg_conn_classify(const char *s)
{
    if (!s || strlen(s) != 5)
        return PG_CONN_ERROR;
    static const struct {
        const char *code;
        pg_conn_rc_t rc;
    } exact[] = {
        {"23505", PG_CONN_UNIQUE},      {"23503", PG_CONN_FOREIGN_KEY},
        {"40001", PG_CONN_RETRY},       {"40P01", PG_CONN_RETRY},
        {"53100", PG_CONN_FULL},        {"53200", PG_CONN_UNAVAILABLE}, /* server out of memory */
        {"53300", PG_CONN_UNAVAILABLE},                                 /* too_many_connections */
        {"57P01", PG_CONN_UNAVAILABLE},                                 /* admin_shutdown */
        {"57P02", PG_CONN_UNAVAILABLE},                                 /* crash_shutdown */
        {"57P03", PG_CONN_UNAVAILABLE}, /* cannot_connect_now (starting up) */
        {"57014", PG_CONN_UNAVAILABLE}, /* query_canceled (statement_timeout) */
        {"55P03", PG_CONN_UNAVAILABLE}, /* lock_not_available (lock_timeout) */
        {"25006", PG_CONN_UNAVAILABLE}, /* read_only_sql_transaction: a standby */
    };
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (strcmp(s, exact[i].code) == 0)
            return exact[i].rc;
    if (strncmp(s, "08", 2) == 0) /* connection_exception */
        return PG_CONN_UNAVAILABLE;
    if (strncmp(s, "22", 2) == 0) /* data_exception */
        return PG_CONN_INVALID;
    return PG_CONN_ERROR;
}

sqlcached_status_t pg_conn_rc_status(pg_conn_rc_t rc)
{
    switch (rc) {
    case PG_CONN_OK:
        return SQLCACHED_OK;
    case PG_CONN_UNIQUE:
    case PG_CONN_RETRY:
        return SQLCACHED_CONFLICT;
    case PG_CONN_FOREIGN_KEY:
        return SQLCACHED_NOT_FOUND;
    case PG_CONN_FULL:
        return SQLCACHED_STORAGE_FULL;
    case PG_CONN_INVALID:
        return SQLCACHED_INVALID_ARGUMENT;
    case PG_CONN_UNAVAILABLE:
    case PG_CONN_IN_DOUBT:
        return SQLCACHED_UNAVAILABLE;
    case PG_CONN_NOMEM:
        return SQLCACHED_NOMEM;
    case PG_CONN_ERROR:
    default:
        return SQLCACHED_INTERNAL;
    }
}

const char *pg_conn_rc_name(pg_conn_rc_t rc)
{
    static const char *const names[] = {
        "ok",          "unique_violation", "foreign_key_violation",
        "retry",       "disk_full",        "invalid_data",
        "unavailable", "in_doubt",         "out_of_memory",
        "error",
    };
    return (unsigned)rc < sizeof names / sizeof names[0] ? names[rc] : "error";
}

/* Remember an error; the message is trimmed of libpq's trailing newline. */
static void set_error(pg_conn_t *c, const char *sqlstate, const char *msg)
{
    snprintf(c->sqlstate, sizeof c->sqlstate, "%s", sqlstate ? sqlstate : "");
    snprintf(c->errmsg, sizeof c->errmsg, "%s", msg && *msg ? msg : "unknown error");
    size_t n = strlen(c->errmsg);
    while (n > 0 && (c->errmsg[n - 1] == '\n' || c->errmsg[n - 1] == ' '))
        c->errmsg[--n] = '\0';
}

static void clear_error(pg_conn_t *c)
{
    c->sqlstate[0] = '\0';
    c->errmsg[0] = '\0';
}

/* A deferred statement's answer (res NULL unless rc is PG_CONN_OK): to its
 * on_result, then its parameters freed. */
static void entry_done(deferred_t *e, pg_conn_rc_t rc, const PGresult *res)
{
    if (e->on_result)
        e->on_result(e->cls, rc, res);
    free(e->params);
    *e = (deferred_t){0};
}

/* Every deferred statement is answered rc without running. */
static void drop_deferred(pg_conn_t *c, pg_conn_rc_t rc)
{
    for (int i = 0; i < c->nq; i++)
        entry_done(&c->q[i], rc, NULL);
    c->nq = 0;
}

/* The outcome of a result (which may be NULL); records the error. */
static pg_conn_rc_t result_rc(pg_conn_t *c, const PGresult *res)
{
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        clear_error(c);
        return PG_CONN_OK;
    }
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorMessage(res) : "";
    set_error(c, state, msg && *msg ? msg : PQerrorMessage(c->conn));
    if (PQstatus(c->conn) != CONNECTION_OK)
        return PG_CONN_UNAVAILABLE;
    if (!res)
        return PG_CONN_NOMEM;
    return pg_conn_classify(state);
}

const char *pg_conn_sqlstate(const pg_conn_t *c)
{
    return c->sqlstate;
}

const char *pg_conn_errmsg(const pg_conn_t *c)
{
    return c->errmsg;
}

/* ------------------------------------------------------------------------
 * Connecting
 * ------------------------------------------------------------------------ */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool pg_conn_is_url(const char *s)
{
    return s && (strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0);
}

/* Server notices (e.g. "relation already exists, skipping") go to the log
 * at debug level instead of stderr. */
static void on_notice(void *arg, const char *msg)
{
    (void)arg;
    int n = (int)strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        n--;
    log_debug("pg", "%.*s", n, msg);
}

/* One setting in milliseconds, by the static set_config() text sql. */
static pg_conn_rc_t set_ms(pg_conn_t *c, const char *sql, int ms)
{
    char text[16];
    snprintf(text, sizeof text, "%d", ms);
    const char *const values[] = {text};
    PGresult *res = PQexecParams(c->conn, sql, 1, NULL, values, NULL, NULL, 0);
    pg_conn_rc_t rc = result_rc(c, res);
    PQclear(res);
    return rc;
}

/* Per-session settings, after every (re)connection. */
static pg_conn_rc_t apply_settings(pg_conn_t *c)
{
    PQsetNoticeProcessor(c->conn, on_notice, NULL);
    PGresult *res = PQexec(c->conn, c->cfg.durability == SQLCACHED_DURABILITY_FULL ? SQL_SYNC_ON
                                                                                   : SQL_SYNC_OFF);
    pg_conn_rc_t rc = result_rc(c, res);
    PQclear(res);
    if (rc == PG_CONN_OK && c->cfg.read_only) {
        res = PQexec(c->conn, SQL_READ_ONLY);
        rc = result_rc(c, res);
        PQclear(res);
    }
    if (rc == PG_CONN_OK && c->cfg.lock_timeout_ms > 0)
        rc = set_ms(c, SQL_LOCK_TIMEOUT, c->cfg.lock_timeout_ms);
    if (rc == PG_CONN_OK && c->cfg.idle_tx_timeout_ms > 0)
        rc = set_ms(c, SQL_IDLE_TX_TIMEOUT, c->cfg.idle_tx_timeout_ms);
    return rc;
}

/* Why a connection attempt failed: the server is away or refusing
 * (UNAVAILABLE), or it is up and said no (ERROR: authentication, no such
 * database), or the parameters are wrong (INVALID). */
static pg_conn_rc_t connect_failure(const char *const *keys, const char *const *vals)
{
    switch (PQpingParams(keys, vals, 1)) {
    case PQPING_OK:
        return PG_CONN_ERROR;
    case PQPING_NO_ATTEMPT:
        return PG_CONN_INVALID;
    case PQPING_REJECT:
    case PQPING_NO_RESPONSE:
    default:
        return PG_CONN_UNAVAILABLE;
    }
}

/* A new PGconn into c->conn (the old one, if any, is closed); on failure
 * c->conn may be NULL (libpq reports CONNECTION_BAD for NULL). */
static pg_conn_rc_t do_connect(pg_conn_t *c)
{
    char timeout[16];
    int secs = (c->cfg.connect_timeout_ms + 999) / 1000;
    snprintf(timeout, sizeof timeout, "%d", secs < 2 ? 2 : secs);
    /* Before dbname, so that the URL's own parameters override them. */
    const char *const keys[] = {"connect_timeout", "fallback_application_name", "dbname", NULL};
    const char *const vals[] = {timeout, "sqlcached", c->url, NULL};
    if (c->conn)
        PQfinish(c->conn);
    c->conn = PQconnectdbParams(keys, vals, 1);
    if (!c->conn) {
        set_error(c, NULL, "out of memory");
        return PG_CONN_NOMEM;
    }
    if (PQstatus(c->conn) != CONNECTION_OK) {
        set_error(c, NULL, PQerrorMessage(c->conn));
        return connect_failure(keys, vals);
    }
    c->nstmts = 0; /* a new session has no prepared statements */
    drop_deferred(c, PG_CONN_UNAVAILABLE);
    pg_conn_rc_t rc = apply_settings(c);
    if (rc != PG_CONN_OK) {
        /* never keep a session without its settings (synchronous_commit):
         * drop it, the next pg_conn_ensure() connects again */
        PQfinish(c->conn);
        c->conn = NULL;
    }
    return rc;
}

pg_conn_t *pg_conn_open(const pg_conn_config_t *cfg, pg_conn_rc_t *rc, char *err, size_t errlen)
{
    if (!pg_conn_is_url(cfg->url)) {
        snprintf(err, errlen, "not a postgresql:// or postgres:// URL");
        *rc = PG_CONN_INVALID;
        return NULL;
    }
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(cfg->url, &perr);
    if (!opts) {
        snprintf(err, errlen, "bad PostgreSQL URL: %s", perr ? perr : "out of memory");
        *rc = perr ? PG_CONN_INVALID : PG_CONN_NOMEM;
        PQfreemem(perr);
        return NULL;
    }
    PQconninfoFree(opts);
    pg_conn_t *c = calloc(1, sizeof *c);
    if (!c || !(c->url = strdup(cfg->url))) {
        free(c);
        snprintf(err, errlen, "out of memory");
        *rc = PG_CONN_NOMEM;
        return NULL;
    }
    c->cfg = *cfg;
    c->cfg.url = c->url;
    if (c->cfg.connect_timeout_ms <= 0)
        c->cfg.connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    if (c->cfg.backoff_min_ms <= 0)
        c->cfg.backoff_min_ms = DEFAULT_BACKOFF_MIN_MS;
    if (c->cfg.backoff_max_ms < c->cfg.backoff_min_ms)
        c->cfg.backoff_max_ms = c->cfg.backoff_min_ms > DEFAULT_BACKOFF_MAX_MS
                                    ? c->cfg.backoff_min_ms
                                    : DEFAULT_BACKOFF_MAX_MS;
    *rc = do_connect(c);
    if (*rc != PG_CONN_OK) {
        snprintf(err, errlen, "cannot connect to PostgreSQL: %s", c->errmsg);
        pg_conn_close(c);
        return NULL;
    }
    return c;
}

void pg_conn_close(pg_conn_t *c)
{
    if (!c)
        return;
    drop_deferred(c, PG_CONN_UNAVAILABLE);
    free(c->q);
    if (c->conn)
        PQfinish(c->conn);
    free(c->stmts);
    free(c->url);
    free(c);
}

PGconn *pg_conn_raw(pg_conn_t *c)
{
    return c->conn;
}

unsigned pg_conn_reconnects(pg_conn_t *c)
{
    return c->reconnects;
}

int pg_conn_backoff_ms(pg_conn_t *c)
{
    if (PQstatus(c->conn) == CONNECTION_OK)
        return 0;
    int64_t wait = c->next_attempt_ms - mono_ms();
    return wait > 0 ? (int)wait : 0;
}

pg_conn_rc_t pg_conn_ensure(pg_conn_t *c)
{
    if (PQstatus(c->conn) == CONNECTION_OK)
        return PG_CONN_OK;
    if (c->in_tx) {
        set_error(c, NULL, "connection lost inside a transaction");
        return PG_CONN_UNAVAILABLE;
    }
    int64_t now = mono_ms();
    if (now < c->next_attempt_ms) {
        set_error(c, NULL, "no connection to PostgreSQL (next attempt in a moment)");
        return PG_CONN_UNAVAILABLE;
    }
    pg_conn_rc_t rc = do_connect(c);
    if (rc == PG_CONN_OK) {
        c->reconnects++;
        c->backoff_ms = 0;
        c->next_attempt_ms = 0;
        log_info("pg", "reconnected to PostgreSQL");
        return PG_CONN_OK;
    }
    int b = c->backoff_ms ? c->backoff_ms * 2 : c->cfg.backoff_min_ms;
    c->backoff_ms = b > c->cfg.backoff_max_ms ? c->cfg.backoff_max_ms : b;
    c->next_attempt_ms = mono_ms() + c->backoff_ms;
    log_warn("pg", "reconnect failed (next attempt in %d ms): %s", c->backoff_ms, c->errmsg);
    return rc == PG_CONN_NOMEM ? rc : PG_CONN_UNAVAILABLE;
}

/* ------------------------------------------------------------------------
 * Parameters
 * ------------------------------------------------------------------------ */

void pg_params_init(pg_params_t *p)
{
    p->n = 0;
    p->overflow = false;
}

/* The next slot, or NULL (and the overflow flag) when full. */
static int next_slot(pg_params_t *p)
{
    if (p->n >= PG_CONN_MAX_PARAMS) {
        p->overflow = true;
        return -1;
    }
    return p->n++;
}

void pg_params_int64(pg_params_t *p, int64_t v)
{
    int i = next_slot(p);
    if (i < 0)
        return;
    snprintf(p->ints[i], sizeof p->ints[i], "%lld", (long long)v);
    p->values[i] = p->ints[i];
    p->lengths[i] = 0;
    p->formats[i] = 0;
}

void pg_params_text(pg_params_t *p, const char *s)
{
    int i = next_slot(p);
    if (i < 0)
        return;
    p->values[i] = s;
    p->lengths[i] = 0;
    p->formats[i] = 0;
}

void pg_params_bytes(pg_params_t *p, const void *data, size_t len)
{
    if (len > INT_MAX) {
        p->overflow = true;
        return;
    }
    int i = next_slot(p);
    if (i < 0)
        return;
    p->values[i] = len ? data : ""; /* non-NULL: an empty value, not SQL NULL */
    p->lengths[i] = (int)len;
    p->formats[i] = 1;
}

void pg_params_null(pg_params_t *p)
{
    int i = next_slot(p);
    if (i < 0)
        return;
    p->values[i] = NULL;
    p->lengths[i] = 0;
    p->formats[i] = 0;
}

/* ------------------------------------------------------------------------
 * Statements
 * ------------------------------------------------------------------------ */

/* Copy the name of sql's prepared statement on this connection into name,
 * preparing it on first use; false on failure (*rc says why). The name is
 * copied because c->stmts moves when it grows: a pointer into it would
 * not survive the next statement's first use. */
static bool prepared_name(pg_conn_t *c, const char *sql, pg_conn_rc_t *rc, char name[STMT_NAME_MAX])
{
    for (size_t i = 0; i < c->nstmts; i++)
        if (c->stmts[i].sql == sql) {
            memcpy(name, c->stmts[i].name, STMT_NAME_MAX);
            return true;
        }
    if (c->nstmts == c->capstmts) {
        size_t cap = c->capstmts ? c->capstmts * 2 : 16;
        prepared_t *grown = realloc(c->stmts, cap * sizeof *grown);
        if (!grown) {
            set_error(c, NULL, "out of memory");
            *rc = PG_CONN_NOMEM;
            return false;
        }
        c->stmts = grown;
        c->capstmts = cap;
    }
    prepared_t *s = &c->stmts[c->nstmts];
    snprintf(s->name, sizeof s->name, "s%zu", c->nstmts);
    PGresult *res = PQprepare(c->conn, s->name, sql, 0, NULL);
    *rc = result_rc(c, res);
    PQclear(res);
    if (*rc != PG_CONN_OK) {
        log_error("pg", "prepare failed: %s (%s)", c->errmsg, sql);
        return false;
    }
    s->sql = sql;
    c->nstmts++;
    memcpy(name, s->name, STMT_NAME_MAX);
    return true;
}

/* Cancel the statement running on c (a request on a connection of its
 * own, as libpq does it); its result then fails with 57014. */
static void cancel_running(pg_conn_t *c)
{
    PGcancel *cancel = PQgetCancel(c->conn);
    char err[256] = "";
    if (!cancel || !PQcancel(cancel, err, sizeof err))
        log_warn("pg", "could not cancel a statement at the stop deadline: %s",
                 cancel ? err : "out of memory");
    PQfreeCancel(cancel);
}

/* Wait until the next result can be read without blocking, except that
 * with cfg.deadline_ms a statement still running past the deadline is
 * cancelled (never a COMMIT or ROLLBACK: c->ending): the wait is polled in
 * steps of at most 100 ms, rereading the deadline (it may be set while the
 * statement waits for a lock). Returns at once without a deadline hook;
 * on a failure it returns and the read that follows reports it. */
static void await_answer(pg_conn_t *c)
{
    if (!c->cfg.deadline_ms || c->ending)
        return;
    bool cancelled = false;
    while (PQisBusy(c->conn)) {
        int wait = 100;
        int64_t deadline = c->cfg.deadline_ms(c->cfg.deadline_arg);
        if (deadline != 0 && !cancelled) {
            int64_t left = deadline - mono_ms();
            if (left <= 0) {
                log_warn("pg", "the stop deadline passed: cancelling the running statement");
                cancel_running(c);
                cancelled = true;
            } else if (left < wait) {
                wait = (int)left;
            }
        }
        struct pollfd pfd = {.fd = PQsocket(c->conn), .events = POLLIN};
        int ready = poll(&pfd, 1, wait);
        if (ready < 0 && errno != EINTR)
            break; /* the read that follows waits without the deadline */
        if (ready > 0 && !PQconsumeInput(c->conn))
            break; /* the connection failed: PQgetResult reports it */
    }
}

/* PQexecPrepared (binary results), bounded by the stop deadline as
 * await_answer() says. The last result, as PQexec returns it; NULL only
 * when out of memory. */
static PGresult *exec_prepared(pg_conn_t *c, const char *name, const pg_params_t *p)
{
    int n = p ? p->n : 0;
    const char *const *values = p ? p->values : NULL;
    const int *lengths = p ? p->lengths : NULL, *formats = p ? p->formats : NULL;
    if (!c->cfg.deadline_ms || c->ending)
        return PQexecPrepared(c->conn, name, n, values, lengths, formats, 1);
    if (!PQsendQueryPrepared(c->conn, name, n, values, lengths, formats, 1))
        return PQmakeEmptyPGresult(c->conn, PGRES_FATAL_ERROR);
    await_answer(c);
    PGresult *last = NULL, *r;
    while ((r = PQgetResult(c->conn)) != NULL) {
        PQclear(last);
        last = r;
    }
    return last ? last : PQmakeEmptyPGresult(c->conn, PGRES_FATAL_ERROR);
}

/* The result of the next query of a pipeline (NULL when the connection
 * gave none), having read the NULL that ends that query's results; the
 * wait for it bounded by the stop deadline (await_answer). */
static PGresult *pipeline_result(pg_conn_t *c)
{
    PGconn *conn = c->conn;
    await_answer(c);
    PGresult *res = PQgetResult(conn);
    for (int i = 0; res && i < 4; i++) { /* one result per query: bounded */
        PGresult *more = PQgetResult(conn);
        if (!more)
            break;
        PQclear(more);
    }
    return res;
}

/* Leave pipeline mode after the PGRES_PIPELINE_SYNC; on a broken
 * connection libpq may refuse, which does not matter: nothing runs on it
 * until it is replaced (pg_conn_ensure). */
static void pipeline_end(PGconn *conn)
{
    for (int i = 0; i < 4 && PQpipelineStatus(conn) != PQ_PIPELINE_OFF; i++) {
        PGresult *res = PQgetResult(conn);
        ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
        PQclear(res);
        if (st == PGRES_PIPELINE_SYNC || PQstatus(conn) != CONNECTION_OK) {
            PQexitPipelineMode(conn);
            break;
        }
    }
}

/* A deferred statement failed: the transaction is over (see the top of
 * the file). Keeps the error of the failure. */
static pg_conn_rc_t deferred_failed(pg_conn_t *c, pg_conn_rc_t rc)
{
    char state[sizeof c->sqlstate], msg[sizeof c->errmsg];
    memcpy(state, c->sqlstate, sizeof state);
    memcpy(msg, c->errmsg, sizeof msg);
    drop_deferred(c, rc);
    pg_conn_rollback(c);
    memcpy(c->sqlstate, state, sizeof state);
    memcpy(c->errmsg, msg, sizeof msg);
    return rc;
}

/* Send q[0..n) and then, if own_name is not NULL, the caller's statement
 * (params p) in one pipeline with one sync, and read every answer. Entries
 * answered before the first failure are reported to their on_result and
 * freed. Returns the index of the first failure (n for the caller's own
 * statement; -1: none) with its outcome in *frc; *out gets the own result
 * when it succeeded. -2: the pipeline could not be sent. */
static int send_pipeline(pg_conn_t *c, int n, const char *own_name, const pg_params_t *p,
                         PGresult **out, pg_conn_rc_t *frc)
{
    int total = own_name ? n + 1 : n;
    bool sent = PQenterPipelineMode(c->conn) == 1;
    for (int i = 0; sent && i < total; i++) {
        const pg_params_t *ps = i < n ? c->q[i].params : p;
        sent = PQsendQueryPrepared(c->conn, i < n ? c->q[i].name : own_name, ps ? ps->n : 0,
                                   ps ? ps->values : NULL, ps ? ps->lengths : NULL,
                                   ps ? ps->formats : NULL, 1) == 1;
    }
    sent = sent && PQpipelineSync(c->conn) == 1;
    if (!sent) {
        set_error(c, NULL, PQerrorMessage(c->conn));
        pipeline_end(c->conn);
        *frc = PQstatus(c->conn) == CONNECTION_OK ? PG_CONN_ERROR : PG_CONN_UNAVAILABLE;
        return -2;
    }
    int failed = -1;
    for (int i = 0; i < total; i++) {
        PGresult *res = pipeline_result(c);
        if (failed < 0) {
            pg_conn_rc_t rc = result_rc(c, res);
            if (rc != PG_CONN_OK) {
                failed = i;
                *frc = rc;
            } else if (i < n) {
                entry_done(&c->q[i], PG_CONN_OK, res);
            } else if (out) {
                *out = res;
                res = NULL;
            }
        }
        PQclear(res);
    }
    pipeline_end(c->conn);
    return failed;
}

/* Send the deferred statements, then sql with p (if sql is not NULL), in
 * one pipeline; read every answer. Like pg_conn_run(). A deferred write
 * that fails is undone with ROLLBACK TO w and the rest sent again (see the
 * top of the file). */
static pg_conn_rc_t run_pipeline(pg_conn_t *c, const char *sql, const pg_params_t *p,
                                 PGresult **out)
{
    pg_conn_rc_t rc = PG_CONN_OK;
    char own_name[STMT_NAME_MAX], undo[STMT_NAME_MAX];
    const char *own = sql ? own_name : NULL;
    if ((sql && !prepared_name(c, sql, &rc, own_name)) ||
        !prepared_name(c, SQL_ROLLBACK_TO, &rc, undo))
        return deferred_failed(c, rc); /* the failed prepare aborted the transaction */
    for (int round = 0; round <= MAX_DEFERRED; round++) {
        int n = c->nq;
        pg_conn_rc_t frc = PG_CONN_OK;
        int failed = send_pipeline(c, n, own, p, out, &frc);
        if (failed == -1 || failed == n) { /* every deferred one went through */
            c->nq = 0;
            return frc;
        }
        /* q[0..failed) were answered (and cleared) by send_pipeline */
        deferred_t *e = failed >= 0 ? &c->q[failed] : NULL;
        if (!e || !e->on_result || PQstatus(c->conn) != CONNECTION_OK)
            return deferred_failed(c, frc); /* SAVEPOINT, RELEASE or the connection */
        /* A write failed: it and the rest of its write (up to its RELEASE) */
        int next = failed;
        entry_done(&c->q[next++], frc, NULL);
        while (next < n && c->q[next].sql != SQL_RELEASE)
            entry_done(&c->q[next++], frc, NULL);
        if (next == n && sql != SQL_ROLLBACK_TO) {
            /* its write is still running (the caller's statement is its):
             * the failure is the caller's to handle, as for any statement */
            c->nq = 0;
            return frc;
        }
        /* undo it, then send its RELEASE and what follows again */
        c->q[0] = (deferred_t){.sql = SQL_ROLLBACK_TO};
        memcpy(c->q[0].name, undo, STMT_NAME_MAX);
        memmove(&c->q[1], &c->q[next], (size_t)(n - next) * sizeof c->q[0]);
        c->nq = 1 + n - next;
        if (sql == SQL_ROLLBACK_TO && next == n)
            c->nq = 0; /* the caller's own ROLLBACK TO is the undo */
    }
    set_error(c, NULL, "too many failed statements in one pipeline");
    return deferred_failed(c, PG_CONN_ERROR);
}

pg_conn_rc_t pg_conn_run(pg_conn_t *c, const char *sql, const pg_params_t *p, PGresult **out)
{
    if (out)
        *out = NULL;
    if (p && p->overflow) {
        set_error(c, NULL, "too many parameters or a value too long");
        return PG_CONN_ERROR;
    }
    pg_conn_rc_t rc = pg_conn_ensure(c);
    if (rc != PG_CONN_OK)
        return rc;
    if (c->nq > 0)
        return run_pipeline(c, sql, p, out);
    char name[STMT_NAME_MAX];
    if (!prepared_name(c, sql, &rc, name))
        return rc;
    PGresult *res = exec_prepared(c, name, p);
    rc = result_rc(c, res);
    if (rc == PG_CONN_OK && out)
        *out = res;
    else
        PQclear(res);
    return rc;
}

/* A copy of p in one allocation (values included); NULL if out of memory. */
static pg_params_t *params_copy(const pg_params_t *p)
{
    size_t extra = 0;
    for (int i = 0; i < p->n; i++)
        if (p->values[i] && p->values[i] != p->ints[i])
            extra += p->formats[i] ? (size_t)p->lengths[i] : strlen(p->values[i]) + 1;
    pg_params_t *q = malloc(sizeof *q + extra);
    if (!q)
        return NULL;
    *q = *p;
    char *buf = (char *)(q + 1);
    for (int i = 0; i < p->n; i++) {
        if (!p->values[i])
            continue;
        if (p->values[i] == p->ints[i]) {
            q->values[i] = q->ints[i];
            continue;
        }
        size_t len = p->formats[i] ? (size_t)p->lengths[i] : strlen(p->values[i]) + 1;
        if (len)
            memcpy(buf, p->values[i], len);
        q->values[i] = buf;
        buf += len;
    }
    return q;
}

/* Queue sql (static text) with a copy of p (NULL = none) inside a
 * transaction; on_result NULL for SAVEPOINT / RELEASE. */
static pg_conn_rc_t defer(pg_conn_t *c, const char *sql, const pg_params_t *p,
                          pg_conn_result_fn on_result, void *cls)
{
    pg_conn_rc_t rc = pg_conn_ensure(c);
    if (rc != PG_CONN_OK)
        return rc;
    if (p && p->overflow) {
        set_error(c, NULL, "too many parameters or a value too long");
        return PG_CONN_ERROR;
    }
    if (c->nq == MAX_DEFERRED && (rc = run_pipeline(c, NULL, NULL, NULL)) != PG_CONN_OK)
        return rc;
    if (c->nq == c->capq) {
        int cap = c->capq ? c->capq * 2 : 64;
        deferred_t *grown = realloc(c->q, (size_t)cap * sizeof *grown);
        if (!grown) {
            set_error(c, NULL, "out of memory");
            return PG_CONN_NOMEM;
        }
        c->q = grown;
        c->capq = cap;
    }
    deferred_t e = {.sql = sql, .on_result = on_result, .cls = cls};
    if (!prepared_name(c, sql, &rc, e.name))
        return rc;
    if (p && !(e.params = params_copy(p))) {
        set_error(c, NULL, "out of memory");
        return PG_CONN_NOMEM;
    }
    c->q[c->nq++] = e;
    return PG_CONN_OK;
}

pg_conn_rc_t pg_conn_savepoint_later(pg_conn_t *c)
{
    return c->in_tx ? defer(c, SQL_SAVEPOINT, NULL, NULL, NULL) : pg_conn_savepoint(c);
}

pg_conn_rc_t pg_conn_release_later(pg_conn_t *c)
{
    return c->in_tx ? defer(c, SQL_RELEASE, NULL, NULL, NULL) : pg_conn_release(c);
}

pg_conn_rc_t pg_conn_run_later(pg_conn_t *c, const char *sql, const pg_params_t *p,
                               pg_conn_result_fn on_result, void *cls)
{
    if (c->in_tx)
        return defer(c, sql, p, on_result, cls);
    PGresult *res = NULL;
    pg_conn_rc_t rc = pg_conn_run(c, sql, p, &res);
    on_result(cls, rc, res);
    PQclear(res);
    return PG_CONN_OK;
}

int64_t pg_conn_affected(const PGresult *r)
{
    const char *n = PQcmdTuples((PGresult *)r);
    return n && *n ? strtoll(n, NULL, 10) : 0;
}

bool pg_conn_col_null(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) != 0;
}

int64_t pg_conn_col_int64(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    const unsigned char *b = (const unsigned char *)PQgetvalue(r, row, col);
    int len = PQgetlength(r, row, col);
    uint64_t v = 0;
    for (int i = 0; i < len && i < 8; i++)
        v = v << 8 | b[i];
    switch (len) { /* sign-extend the network-order int2 / int4 */
    case 2:
        return (int16_t)v;
    case 4:
        return (int32_t)v;
    case 8:
        return (int64_t)v;
    default:
        return 0;
    }
}

const void *pg_conn_col_bytes(const PGresult *r, int row, int col, size_t *len)
{
    *len = (size_t)PQgetlength(r, row, col);
    return PQgetvalue(r, row, col);
}

const char *pg_conn_col_text(const PGresult *r, int row, int col)
{
    return PQgetvalue(r, row, col);
}

/* ------------------------------------------------------------------------
 * Transactions
 * ------------------------------------------------------------------------ */

pg_conn_rc_t pg_conn_begin(pg_conn_t *c)
{
    drop_deferred(c, PG_CONN_ERROR); /* none: every transaction ends with them answered */
    pg_conn_rc_t rc = pg_conn_run(c, SQL_BEGIN, NULL, NULL);
    c->in_tx = rc == PG_CONN_OK;
    return rc;
}

pg_conn_rc_t pg_conn_savepoint(pg_conn_t *c)
{
    return pg_conn_run(c, SQL_SAVEPOINT, NULL, NULL);
}

pg_conn_rc_t pg_conn_release(pg_conn_t *c)
{
    return pg_conn_run(c, SQL_RELEASE, NULL, NULL);
}

pg_conn_rc_t pg_conn_rollback_to(pg_conn_t *c)
{
    return pg_conn_run(c, SQL_ROLLBACK_TO, NULL, NULL);
}

bool pg_conn_in_transaction(const pg_conn_t *c)
{
    return c->in_tx;
}

/* Send COMMIT and read every result it brings. PostgreSQL answers COMMIT
 * (command tag "COMMIT") only once the commit is done, flushed when
 * synchronous_commit is on; a server stopping at that moment (a fast
 * shutdown: 57P01) sends its FATAL error right after that answer, and
 * PQexec* would return the error alone, hiding that the commit happened.
 * So the results are read one by one: a "COMMIT" tag among them is the
 * commit's proof, whatever follows. Returns OK (committed), ERROR (tag
 * "ROLLBACK": the server rolled back), or the outcome of the error. */
static pg_conn_rc_t commit_exec(pg_conn_t *c)
{
    if (!PQsendQuery(c->conn, SQL_COMMIT)) {
        set_error(c, NULL, PQerrorMessage(c->conn));
        return PQstatus(c->conn) == CONNECTION_OK ? PG_CONN_ERROR : PG_CONN_UNAVAILABLE;
    }
    bool committed = false, rolled_back = false;
    PGresult *res, *failed = NULL;
    while ((res = PQgetResult(c->conn)) != NULL) {
        if (PQresultStatus(res) == PGRES_COMMAND_OK) {
            committed |= strcmp(PQcmdStatus(res), "COMMIT") == 0;
            rolled_back |= strcmp(PQcmdStatus(res), "COMMIT") != 0;
            PQclear(res);
        } else if (!failed) {
            failed = res;
        } else {
            PQclear(res);
        }
    }
    pg_conn_rc_t rc;
    if (committed) {
        if (failed)
            log_warn("pg", "COMMIT was answered, then the connection ended: %s",
                     PQresultErrorMessage(failed));
        clear_error(c);
        rc = PG_CONN_OK;
    } else if (failed || PQstatus(c->conn) != CONNECTION_OK) {
        rc = result_rc(c, failed); /* NULL: no answer at all */
        if (rc == PG_CONN_NOMEM && PQstatus(c->conn) != CONNECTION_OK)
            rc = PG_CONN_UNAVAILABLE;
    } else if (rolled_back) {
        set_error(c, NULL, "COMMIT answered ROLLBACK");
        rc = PG_CONN_ERROR;
    } else {
        set_error(c, NULL, "COMMIT brought no answer");
        rc = PG_CONN_ERROR;
    }
    PQclear(failed);
    return rc;
}

pg_conn_rc_t pg_conn_commit(pg_conn_t *c)
{
    if (!c->in_tx) {
        set_error(c, NULL, "COMMIT outside a transaction");
        return PG_CONN_ERROR;
    }
    if (PQstatus(c->conn) != CONNECTION_OK) { /* lost before COMMIT was sent */
        c->in_tx = false;
        drop_deferred(c, PG_CONN_UNAVAILABLE);
        set_error(c, NULL, "connection lost inside a transaction");
        return PG_CONN_UNAVAILABLE;
    }
    /* the deferred statements first (a write among them that fails is
     * undone alone and told through its own answer), so that COMMIT is
     * read on its own (commit_exec) */
    if (c->nq > 0) {
        pg_conn_rc_t frc = run_pipeline(c, NULL, NULL, NULL);
        if (frc != PG_CONN_OK) {
            pg_conn_rollback(c);
            return frc;
        }
    }
    if (PQtransactionStatus(c->conn) != PQTRANS_INTRANS) {
        /* a statement failed and was not rolled back to its savepoint:
         * COMMIT would roll back and answer success */
        pg_conn_rollback(c);
        set_error(c, NULL, "COMMIT of a failed transaction");
        return PG_CONN_ERROR;
    }
    c->ending = true; /* a batch that began before the deadline runs to its commit */
    pg_conn_rc_t rc = commit_exec(c);
    c->ending = false;
    c->in_tx = false;
    if (rc == PG_CONN_UNAVAILABLE && PQstatus(c->conn) != CONNECTION_OK)
        return PG_CONN_IN_DOUBT;
    if (rc != PG_CONN_OK && PQstatus(c->conn) == CONNECTION_OK &&
        PQtransactionStatus(c->conn) != PQTRANS_IDLE)
        pg_conn_rollback(c);
    return rc;
}

pg_conn_rc_t pg_conn_rollback(pg_conn_t *c)
{
    c->in_tx = false;
    drop_deferred(c, PG_CONN_UNAVAILABLE); /* ROLLBACK undoes them anyway */
    if (PQstatus(c->conn) != CONNECTION_OK)
        return PG_CONN_OK; /* the server rolls back what a lost session left */
    if (PQtransactionStatus(c->conn) == PQTRANS_IDLE)
        return PG_CONN_OK;
    c->ending = true;
    pg_conn_rc_t rc = pg_conn_run(c, SQL_ROLLBACK, NULL, NULL);
    c->ending = false;
    return rc;
}

/* ------------------------------------------------------------------------
 * Migrations
 * ------------------------------------------------------------------------ */

/* One transaction-level advisory lock key for every sqlcached migration
 * ("sqlcache" read as a big-endian int64). */
static const char SQL_MIGRATE_LOCK[] = "SELECT pg_advisory_xact_lock(8318549160821483621)";
static const char SQL_MIGRATE_LOCK_TIMEOUT[] = "SET LOCAL lock_timeout = '60s'";
static const char SQL_MIGRATIONS_TABLE[] = "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                           " version INTEGER PRIMARY KEY,"
                                           " name TEXT NOT NULL,"
                                           " applied_at BIGINT NOT NULL)";
static const char SQL_APPLIED_MAX[] = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations";
static const char SQL_IS_APPLIED[] = "SELECT COUNT(*) FROM schema_migrations WHERE version = $1";
static const char SQL_RECORD[] =
    "INSERT INTO schema_migrations (version, name, applied_at) "
    "VALUES ($1, $2, (extract(epoch FROM clock_timestamp()) * 1000)::bigint)";

/* One integer from a one-row query with at most one integer parameter. */
static pg_conn_rc_t query_int(pg_conn_t *c, const char *sql, const int64_t *param, int64_t *out)
{
    pg_params_t p;
    pg_params_init(&p);
    if (param)
        pg_params_int64(&p, *param);
    PGresult *res = NULL;
    pg_conn_rc_t rc = pg_conn_run(c, sql, &p, &res);
    if (rc == PG_CONN_OK)
        *out = PQntuples(res) == 1 ? pg_conn_col_int64(res, 0, 0) : 0;
    PQclear(res);
    return rc;
}

/* Run a migration's script (several statements: the simple query
 * protocol; the text is compiled in from sql/postgresql/) and record it. */
static pg_conn_rc_t apply_one(pg_conn_t *c, const pg_conn_migration_t *m)
{
    PGresult *res = PQexec(c->conn, m->sql);
    pg_conn_rc_t rc = result_rc(c, res);
    PQclear(res);
    if (rc != PG_CONN_OK)
        return rc;
    pg_params_t p;
    pg_params_init(&p);
    pg_params_int64(&p, m->version);
    pg_params_text(&p, m->name);
    return pg_conn_run(c, SQL_RECORD, &p, NULL);
}

/* Inside the locked transaction: apply what is missing. */
static pg_conn_rc_t migrate_locked(pg_conn_t *c, const pg_conn_migration_t *list, int n, char *err,
                                   size_t errlen)
{
    int64_t current = 0;
    pg_conn_rc_t rc = pg_conn_run(c, SQL_MIGRATIONS_TABLE, NULL, NULL);
    if (rc == PG_CONN_OK)
        rc = query_int(c, SQL_APPLIED_MAX, NULL, &current);
    if (rc != PG_CONN_OK) {
        snprintf(err, errlen, "not a usable sqlcached database: %s", c->errmsg);
        return rc;
    }
    int latest = n > 0 ? list[n - 1].version : 0;
    if (current > latest) {
        snprintf(err, errlen,
                 "the database has schema version %lld, newer than this sqlcached (%d)",
                 (long long)current, latest);
        return PG_CONN_ERROR;
    }
    for (int i = 0; i < n; i++) {
        int64_t v = list[i].version, applied = 0;
        rc = query_int(c, SQL_IS_APPLIED, &v, &applied);
        if (rc == PG_CONN_OK && applied)
            continue;
        if (rc == PG_CONN_OK)
            rc = apply_one(c, &list[i]);
        if (rc != PG_CONN_OK) {
            snprintf(err, errlen, "migration %s failed: %s", list[i].name, c->errmsg);
            return rc;
        }
        log_info("pg", "applied migration %s", list[i].name);
    }
    return PG_CONN_OK;
}

pg_conn_rc_t pg_conn_migrate_list(pg_conn_t *c, const pg_conn_migration_t *list, int n, char *err,
                                  size_t errlen)
{
    pg_conn_rc_t rc = pg_conn_begin(c);
    if (rc == PG_CONN_OK)
        rc = pg_conn_run(c, SQL_MIGRATE_LOCK_TIMEOUT, NULL, NULL);
    if (rc == PG_CONN_OK)
        rc = pg_conn_run(c, SQL_MIGRATE_LOCK, NULL, NULL);
    if (rc != PG_CONN_OK) {
        snprintf(err, errlen, "cannot lock the database for migrations: %s", c->errmsg);
        pg_conn_rollback(c);
        return rc;
    }
    rc = migrate_locked(c, list, n, err, errlen);
    if (rc != PG_CONN_OK) {
        pg_conn_rollback(c);
        return rc;
    }
    rc = pg_conn_commit(c);
    if (rc != PG_CONN_OK)
        snprintf(err, errlen, "migrations could not commit: %s", c->errmsg);
    return rc;
}

pg_conn_rc_t pg_conn_migrate(pg_conn_t *c, char *err, size_t errlen)
{
    return pg_conn_migrate_list(c, pg_conn_migrations, pg_conn_migration_count, err, errlen);
}
