/*
 * storage_pg_cluster.c - the cluster operations of storage.h on
 * PostgreSQL: the membership rows (sql/postgresql/004_cluster.sql) and the
 * channel between nodes (LISTEN/NOTIFY).
 *
 * Channel: sqlcached_listen() runs LISTEN for this database and schema's
 * channel (sqlcached_channel()); pg_notify() sends on it. A NOTIFY inside
 * a transaction is delivered when, and only if, it commits, to every
 * listening session (the sender's own included), and PostgreSQL delivers
 * the notifications of different transactions in commit order: what the
 * cluster's invalidations rest on (cluster.c).
 *
 * The link: LISTEN belongs to one server session. pg_conn.c reconnects a
 * lost connection by itself on the next call, into a session that does not
 * listen: every call on the link checks that the session is the one that
 * ran LISTEN (pg_conn_reconnects() unchanged since) and answers
 * UNAVAILABLE otherwise, until listen() runs again.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include "log.h"
#include "storage_pg.h"

static const char SQL_LISTEN[] = "SELECT sqlcached_listen()";
static const char SQL_PUBLISH[] = "SELECT pg_notify(sqlcached_channel(), $1)";
static const char SQL_LOCK_COUNTERS[] = "SELECT name FROM meta ORDER BY name FOR UPDATE";
static const char SQL_NEXT_ID[] =
    "UPDATE meta SET value = value + 1 WHERE name = 'node_id' RETURNING value";
static const char SQL_NEXT_EPOCH[] =
    "UPDATE meta SET value = value + 1 WHERE name = 'node_epoch' RETURNING value";
static const char SQL_JOIN[] =
    "INSERT INTO cluster_nodes (id, epoch, address, started_at, heartbeat_at, lease_ms) "
    "VALUES ($1, $2, $3, $4, sqlcached_now_ms(), $5) "
    "ON CONFLICT (id) DO UPDATE SET epoch = EXCLUDED.epoch, address = EXCLUDED.address, "
    "heartbeat_at = EXCLUDED.heartbeat_at, lease_ms = EXCLUDED.lease_ms";
static const char SQL_RENEW[] =
    "UPDATE cluster_nodes SET heartbeat_at = sqlcached_now_ms() WHERE id = $1 AND epoch = $2";
static const char SQL_LEAVE[] = "DELETE FROM cluster_nodes WHERE id = $1 AND epoch = $2";
static const char SQL_NODES[] =
    "SELECT id, epoch, address, started_at, heartbeat_at, lease_ms, sqlcached_now_ms() "
    "FROM cluster_nodes ORDER BY id";
static const char SQL_NODE[] =
    "SELECT id, epoch, NULL, started_at, heartbeat_at, lease_ms, sqlcached_now_ms() "
    "FROM cluster_nodes WHERE id = $1 AND epoch = $2";
static const char SQL_EVICT[] =
    "DELETE FROM cluster_nodes WHERE id = $1 AND epoch = $2 AND heartbeat_at = $3";
static const char SQL_FORGET_DOWN[] =
    "DELETE FROM cluster_nodes WHERE heartbeat_at + lease_ms + $1 < sqlcached_now_ms()";

/* Is the link's session the one that listens? */
static bool still_listening(pg_store_conn_t *c)
{
    return c->listening && pg_conn_reconnects(c->pg) == c->listen_mark &&
           PQstatus(pg_conn_raw(c->pg)) == CONNECTION_OK;
}

/* A call on the link: UNAVAILABLE when the session lost its LISTEN. */
static sqlcached_status_t link_run(store_conn_t *l, const char *sql, const pg_params_t *p,
                                   PGresult **out)
{
    if (!still_listening(pgc(l)))
        return SQLCACHED_UNAVAILABLE;
    sqlcached_status_t st = storage_pg_run(l, sql, p, out);
    if (st == SQLCACHED_OK && !still_listening(pgc(l))) {
        if (out && *out) {
            PQclear(*out);
            *out = NULL;
        }
        st = SQLCACHED_UNAVAILABLE;
    }
    return st;
}

static store_conn_t *link_open(storage_db_t *db, char *err, size_t errlen)
{
    return storage_pg_link_open(db, err, errlen);
}

static sqlcached_status_t listen_channel(store_conn_t *l)
{
    pg_store_conn_t *c = pgc(l);
    c->listening = false;
    sqlcached_status_t st = storage_pg_run(l, SQL_LISTEN, NULL, NULL);
    if (st != SQLCACHED_OK)
        return st;
    c->listening = true;
    c->listen_mark = pg_conn_reconnects(c->pg);
    return SQLCACHED_OK;
}

/* Hand every notification libpq holds to fn. */
static void deliver(PGconn *pc, storage_message_fn fn, void *cls)
{
    PGnotify *n;
    while ((n = PQnotifies(pc)) != NULL) {
        fn(cls, n->extra, strlen(n->extra));
        PQfreemem(n);
    }
}

static sqlcached_status_t receive(store_conn_t *l, int timeout_ms, storage_message_fn fn, void *cls)
{
    pg_store_conn_t *c = pgc(l);
    if (!still_listening(c))
        return SQLCACHED_UNAVAILABLE;
    PGconn *pc = pg_conn_raw(c->pg);
    deliver(pc, fn, cls); /* those that came with the answers of earlier calls */
    struct pollfd pfd = {.fd = PQsocket(pc), .events = POLLIN};
    int rc = poll(&pfd, 1, timeout_ms);
    if (rc < 0 && errno != EINTR)
        return SQLCACHED_UNAVAILABLE;
    if (rc > 0 && !PQconsumeInput(pc))
        return SQLCACHED_UNAVAILABLE; /* the server went away */
    deliver(pc, fn, cls);
    return PQstatus(pc) == CONNECTION_OK ? SQLCACHED_OK : SQLCACHED_UNAVAILABLE;
}

static sqlcached_status_t publish(store_conn_t *c, const char *payload)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_text(&p, payload);
    /* on the writer inside its transaction, or on the link */
    if (pg_conn_in_transaction(pgc(c)->pg))
        return storage_pg_run(c, SQL_PUBLISH, &p, NULL);
    return link_run(c, SQL_PUBLISH, &p, NULL);
}

/* Step of join: the counter's next value. */
static sqlcached_status_t next_value(store_conn_t *l, const char *sql, int64_t *out)
{
    PGresult *r = NULL;
    sqlcached_status_t st = storage_pg_run(l, sql, NULL, &r);
    if (st != SQLCACHED_OK)
        return st;
    if (PQntuples(r) == 1)
        *out = pg_conn_col_int64(r, 0, 0);
    else
        st = SQLCACHED_INTERNAL; /* the migration put the row there */
    PQclear(r);
    return st;
}

static sqlcached_status_t join_steps(store_conn_t *l, int64_t *id, const char *address,
                                     int64_t started_at, int64_t lease_ms, int64_t *epoch)
{
    sqlcached_status_t st = storage_pg_run(l, SQL_LOCK_COUNTERS, NULL, NULL);
    if (st == SQLCACHED_OK && *id == 0)
        st = next_value(l, SQL_NEXT_ID, id);
    if (st == SQLCACHED_OK)
        st = next_value(l, SQL_NEXT_EPOCH, epoch);
    if (st != SQLCACHED_OK)
        return st;
    pg_params_t p;
    pg_params_init(&p);
    pg_params_int64(&p, *id);
    pg_params_int64(&p, *epoch);
    pg_params_text(&p, address);
    pg_params_int64(&p, started_at);
    pg_params_int64(&p, lease_ms);
    return storage_pg_run(l, SQL_JOIN, &p, NULL);
}

static sqlcached_status_t join(store_conn_t *l, int64_t *id, const char *address,
                               int64_t started_at, int64_t lease_ms, int64_t *epoch)
{
    pg_conn_t *pg = pgc(l)->pg;
    if (!still_listening(pgc(l)))
        return SQLCACHED_UNAVAILABLE;
    int64_t new_id = *id;
    sqlcached_status_t st = pg_conn_rc_status(pg_conn_begin(pg));
    if (st != SQLCACHED_OK)
        return st;
    st = join_steps(l, &new_id, address, started_at, lease_ms, epoch);
    if (st != SQLCACHED_OK) {
        pg_conn_rollback(pg);
        return st;
    }
    st = pg_conn_rc_status(pg_conn_commit(pg));
    if (st == SQLCACHED_OK && !still_listening(pgc(l)))
        st = SQLCACHED_UNAVAILABLE;
    if (st == SQLCACHED_OK)
        *id = new_id;
    return st;
}

static sqlcached_status_t id_epoch_call(store_conn_t *l, const char *sql, int64_t id, int64_t epoch,
                                        bool *hit)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_int64(&p, id);
    pg_params_int64(&p, epoch);
    PGresult *r = NULL;
    sqlcached_status_t st = link_run(l, sql, &p, &r);
    if (st != SQLCACHED_OK)
        return st;
    if (hit)
        *hit = pg_conn_affected(r) > 0;
    PQclear(r);
    return st;
}

static sqlcached_status_t renew(store_conn_t *l, int64_t id, int64_t epoch, bool *held)
{
    return id_epoch_call(l, SQL_RENEW, id, epoch, held);
}

static sqlcached_status_t leave(store_conn_t *l, int64_t id, int64_t epoch)
{
    return id_epoch_call(l, SQL_LEAVE, id, epoch, NULL);
}

static void node_from_row(const PGresult *r, int row, storage_node_t *n)
{
    *n = (storage_node_t){
        .id = pg_conn_col_int64(r, row, 0),
        .epoch = pg_conn_col_int64(r, row, 1),
        .address = pg_conn_col_null(r, row, 2) ? NULL : pg_conn_col_text(r, row, 2),
        .started_at = pg_conn_col_int64(r, row, 3),
        .heartbeat_at = pg_conn_col_int64(r, row, 4),
        .lease_ms = pg_conn_col_int64(r, row, 5),
        .db_now = pg_conn_col_int64(r, row, 6),
    };
}

static sqlcached_status_t nodes(store_conn_t *c, storage_node_fn fn, void *cls)
{
    PGresult *r = NULL;
    sqlcached_status_t st = storage_pg_run(c, SQL_NODES, NULL, &r);
    if (st != SQLCACHED_OK)
        return st;
    for (int i = 0; i < PQntuples(r); i++) {
        storage_node_t n;
        node_from_row(r, i, &n);
        fn(cls, &n);
    }
    PQclear(r);
    return SQLCACHED_OK;
}

static sqlcached_status_t node(store_conn_t *c, int64_t id, int64_t epoch, bool *found,
                               storage_node_t *out)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_int64(&p, id);
    pg_params_int64(&p, epoch);
    PGresult *r = NULL;
    sqlcached_status_t st = storage_pg_run(c, SQL_NODE, &p, &r);
    if (st != SQLCACHED_OK)
        return st;
    *found = PQntuples(r) == 1;
    if (*found)
        node_from_row(r, 0, out);
    out->address = NULL; /* the result is freed below */
    PQclear(r);
    return SQLCACHED_OK;
}

static sqlcached_status_t evict(store_conn_t *c, int64_t id, int64_t epoch, int64_t heartbeat_at,
                                bool *evicted)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_int64(&p, id);
    pg_params_int64(&p, epoch);
    pg_params_int64(&p, heartbeat_at);
    PGresult *r = NULL;
    sqlcached_status_t st = storage_pg_run(c, SQL_EVICT, &p, &r);
    if (st != SQLCACHED_OK)
        return st;
    *evicted = pg_conn_affected(r) > 0;
    PQclear(r);
    return SQLCACHED_OK;
}

static sqlcached_status_t forget_down(store_conn_t *l, int64_t older_than_ms)
{
    pg_params_t p;
    pg_params_init(&p);
    pg_params_int64(&p, older_than_ms);
    return link_run(l, SQL_FORGET_DOWN, &p, NULL);
}

const storage_cluster_ops_t storage_pg_cluster = {
    .link_open = link_open,
    .listen = listen_channel,
    .receive = receive,
    .publish = publish,
    .join = join,
    .renew = renew,
    .leave = leave,
    .nodes = nodes,
    .node = node,
    .evict = evict,
    .forget_down = forget_down,
};
