/*
 * cluster.c - this process as one node of a cluster over one shared
 * database: membership, coherent memory tiers, wake-ups across nodes.
 *
 * Every daemon on the same database (and schema) is a node. The database
 * is the one source of truth: versions, fencing and claim tokens, order
 * ids come from its counter rows, and its row locks and UNIQUE constraints
 * guard the flash sale and the leases across nodes as on one. What a node
 * adds is its memory tier, which must never serve a value older than a
 * write any node has answered. The design (docs/architecture.md, "The
 * cluster", compares it with owning keys by node):
 *
 * Membership. A node registers a row (id, epoch, address, heartbeat) in a
 * transaction that locks the counter rows as every write transaction does
 * (storage join), then renews its heartbeat every lease/4 from its link
 * thread. The database's clock alone says whether a row is live
 * (heartbeat_at + lease_ms > now). Clock assumption: the monotonic clocks
 * of the nodes and the database's clock run at the same rate within
 * MARGIN_PERMILLE (NTP keeps real clocks within 0.05%); their offsets do
 * not matter for membership. The node trusts its tiers until the
 * monotonic time at which it sent its last successful renewal plus the
 * lease minus a margin: that is before the database can see the row run
 * out. A node that cannot renew stops serving from memory by then, and
 * empties its tiers before it trusts them again.
 *
 * Invalidations. A write transaction notes what it changes (store_note);
 * before its COMMIT the node publishes the notes on the cluster's channel
 * (NOTIFY: delivered if and when the transaction commits, in commit order)
 * and reads the member rows (inside the transaction, after the counter
 * locks: so every node whose registration committed before is there).
 * After the commit, before any answer, it waits until each live member
 * acknowledged (cumulative sequence numbers per sender), or left, or its
 * row says its lease ran out (it trusts nothing any more), or - if it
 * renews but never answers - it was evicted and its last lease ran out. A
 * receiving node invalidates the keys (which also marks their fills in
 * flight stale: the fill guard across nodes), then acknowledges. A dead
 * node delays writes by at most about one lease.
 *
 * --on-write replace across nodes: the writer replaces a cached key with
 * the value it committed only when no other node's invalidation (nor a
 * tier drop) was applied since the batch began to commit: else that
 * change may be newer, and the key is invalidated instead (apply_lock
 * makes the check and the replacement one step against the link thread).
 *
 * Threads: the link thread owns the link connection (listen, receive,
 * acknowledge, renew, rejoin); the writer thread runs the store hooks
 * (note, before_commit, on_commit_begin/end, after_commit) and owns the
 * batch's notes and member snapshot. `lock` guards peers, seq and
 * stopping; `cond` is broadcast on every acknowledgement.
 */
#include "watch.h"
#include "cluster.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "lease.h"
#include "queue.h"
#include "log.h"
#include "payment.h"
#include "storage.h"

#define MARGIN_MIN_MS 50
#define MARGIN_PERMILLE 100 /* the trust margin: 10% of the lease */
#define RENEWS_PER_LEASE 4
#define RELISTEN_PAUSE_MS 100
#define FORGET_DOWN_MS 600000 /* rows of nodes down this long are deleted */
#define EVICT_AFTER_CHECKS 2  /* a member that renews but never acknowledges */
#define DEAF_WAIT_LEASES 3    /* our own link down: wait this many leases, then 503 */
#define DEAF_RECHECK_MS 100
#define HEADER_ROOM 64 /* "W <id> <seq>" */

typedef struct peer {
    int64_t id;
    int64_t acked; /* highest sequence number of ours it acknowledged */
    int64_t seen;  /* highest of its messages applied here */
    bool ack_due;  /* we owe it an acknowledgement of `seen` */
} peer_t;

/* A member a committed batch waits for (writer thread). */
typedef struct waited {
    int64_t id, epoch, heartbeat_at;
    int64_t deadline; /* monotonic ms: check its row from then on */
    int checks;
    bool done;
} waited_t;

struct cluster {
    sqlcached_t *db;
    const storage_cluster_ops_t *ops;
    store_conn_t *link; /* link thread */
    int64_t lease_ms, margin_ms;
    char *address;
    int64_t started_at;
    bool skip_invalidation;
    _Atomic int64_t id;
    int64_t epoch;                 /* link thread */
    _Atomic int64_t trusted_until; /* monotonic ms; 0 = untrusted */
    bool listening;                /* link thread */
    atomic_bool hearing;           /* = listening, for the writer */
    int64_t next_renew;            /* link thread, monotonic ms */

    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    peer_t *peers;
    size_t npeers, cap;
    int64_t seq; /* our last message's number */
    bool stopping;

    /* writer thread: the batch's notes and who it waits for */
    char **bodies;
    size_t nbodies, capbodies;
    char *body; /* being filled */
    size_t body_len;
    waited_t *waits;
    size_t nwaits, capwaits;
    int64_t batch_seq;
    uint64_t applied_at_commit;
    bool replace_ok;
    bool notes_failed; /* a note or the member snapshot ran out of memory */
    bool needs_ack;    /* a note other than a lease's: wait for the others */

    pthread_rwlock_t apply_lock;
    atomic_uint_fast64_t applied; /* remote invalidations and tier drops */

    atomic_uint_fast64_t sent, received, ack_waits, ack_wait_ms_max, evictions, drops;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void abs_time(int64_t mono, struct timespec *ts)
{
    ts->tv_sec = mono / 1000;
    ts->tv_nsec = (long)(mono % 1000) * 1000000L;
}

bool cluster_trusted(const cluster_t *c)
{
    return mono_ms() < atomic_load_explicit(&c->trusted_until, memory_order_acquire);
}

bool cluster_replace_ok(const cluster_t *c)
{
    return c->replace_ok;
}

int64_t cluster_node_id(const cluster_t *c)
{
    return atomic_load(&c->id);
}

/* ------------------------------------------------------------------------
 * Peers (under lock)
 * ------------------------------------------------------------------------ */

static peer_t *do_peer(cluster_t *c, int64_t id)
{
    for (size_t i = 0; i < c->npeers; i++)
        if (c->peers[i].id == id)
            return &c->peers[i];
    if (c->npeers == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        peer_t *grown = realloc(c->peers, cap * sizeof *grown);
        if (!grown)
            return NULL;
        c->peers = grown;
        c->cap = cap;
    }
    c->peers[c->npeers] = (peer_t){.id = id};
    return &c->peers[c->npeers++];
}

/* ------------------------------------------------------------------------
 * Hex, for keys in message text
 * ------------------------------------------------------------------------ */

static void hex_put(char *out, const void *data, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
}

static int hex_digit(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/* Decode n hex digits into out (room for n / 2 bytes); false if not hex. */
static bool hex_get(const char *s, size_t n, unsigned char *out)
{
    if (n % 2)
        return false;
    for (size_t i = 0; i < n; i += 2) {
        int hi = hex_digit(s[i]), lo = hex_digit(s[i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

/* ------------------------------------------------------------------------
 * The tiers
 * ------------------------------------------------------------------------ */

/* Empty every memory tier and forget the sold-out flags (under the apply
 * lock, so a writer's replacement cannot slip in with an older value). */
static void drop_tiers(cluster_t *c)
{
    sqlcached_t *db = c->db;
    pthread_rwlock_wrlock(&c->apply_lock);
    atomic_fetch_add(&c->applied, 1);
    if (db->cache)
        cache_clear(db->cache);
    if (db->item_cache)
        cache_clear(db->item_cache);
    seckill_forget_flags(db->seckill);
    payment_rescan(db->payment); /* deadline notes may have been missed too */
    engine_bloom_distrust(db);
    pthread_rwlock_unlock(&c->apply_lock);
    atomic_fetch_add(&c->drops, 1);
}

/* The number of this node's next message (pings and writes share them:
 * an acknowledgement covers every message numbered up to it). */
static int64_t next_seq(cluster_t *c)
{
    pthread_mutex_lock(&c->lock);
    int64_t seq = ++c->seq;
    pthread_mutex_unlock(&c->lock);
    return seq;
}

/* Link thread: the channel is heard (or not); the writer reads `hearing`. */
static void set_listening(cluster_t *c, bool on)
{
    c->listening = on;
    atomic_store(&c->hearing, on);
}

static void untrust(cluster_t *c)
{
    atomic_store_explicit(&c->trusted_until, 0, memory_order_release);
}

/* Trust the tiers until lease - margin after `sent` (when the renewal or
 * registration that succeeded was sent); empty them first if the trust
 * had run out (something may have been missed meanwhile). */
static void trust_from(cluster_t *c, int64_t sent)
{
    if (mono_ms() >= atomic_load(&c->trusted_until))
        drop_tiers(c);
    atomic_store_explicit(&c->trusted_until, sent + c->lease_ms - c->margin_ms,
                          memory_order_release);
}

/* ------------------------------------------------------------------------
 * Receiving (link thread)
 * ------------------------------------------------------------------------ */

/* Apply one item of a write message ("k<hex>", "i<hex>", "r<version>.<hex>",
 * "l<hex>", "d<pay_by>.<hex>", "q<run_at>.<hex>"); false if malformed. */
static bool apply_item(cluster_t *c, const char *s, size_t n)
{
    unsigned char key[SQLCACHED_KEY_MAX + 1];
    sqlcached_t *db = c->db;
    char kind = s[0];
    s++, n--;
    int64_t version = 0;
    if (kind == CLUSTER_RESET || kind == CLUSTER_DEADLINE || kind == CLUSTER_QUEUE) {
        const char *dot = memchr(s, '.', n);
        if (!dot)
            return false;
        version = strtoll(s, NULL, 10);
        n -= (size_t)(dot + 1 - s);
        s = dot + 1;
    }
    if (n / 2 > SQLCACHED_KEY_MAX || !hex_get(s, n, key))
        return false;
    size_t len = n / 2;
    key[len] = '\0';
    switch (kind) {
    case CLUSTER_KEY:
        watch_kick(db->watch);         /* its change is in the log: watches here read it */
        kv_note_key(db->kv, key, len); /* it may be a new key */
        if (db->cache)
            cache_invalidate(db->cache, key, len);
        return true;
    case CLUSTER_RESET:
        seckill_note_reset(db->seckill, (const char *)key, version);
        if (db->item_cache)
            cache_invalidate(db->item_cache, key, len);
        return true;
    case CLUSTER_ITEM:
        if (db->item_cache)
            cache_invalidate(db->item_cache, key, len);
        return true;
    case CLUSTER_LEASE:
        lease_remote_freed(db->leases, (const char *)key, len);
        return true;
    case CLUSTER_DEADLINE:
        payment_note_deadline(db->payment, version);
        if (db->item_cache)
            cache_invalidate(db->item_cache, key, len);
        return true;
    case CLUSTER_QUEUE:
        queue_remote_due(db->queues, (const char *)key, len, version);
        return true;
    default:
        return false;
    }
}

/* The items of "W <from> <seq> item item ..." (the caller then owes the
 * acknowledgement). */
static void on_write_message(cluster_t *c, int64_t from, const char *items)
{
    pthread_rwlock_wrlock(&c->apply_lock);
    atomic_fetch_add(&c->applied, 1);
    for (const char *p = items; *p;) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        if (n && !apply_item(c, p, n))
            log_warn("cluster", "node %" PRId64 " sent an item not understood", from);
        p += n;
    }
    pthread_rwlock_unlock(&c->apply_lock);
}

static void owe_ack(cluster_t *c, int64_t from, int64_t seq)
{
    pthread_mutex_lock(&c->lock);
    peer_t *p = do_peer(c, from);
    if (p && seq > p->seen) {
        p->seen = seq;
        p->ack_due = true;
    }
    pthread_mutex_unlock(&c->lock);
}

static void on_ack(cluster_t *c, int64_t from, int64_t seq)
{
    pthread_mutex_lock(&c->lock);
    peer_t *p = do_peer(c, from);
    if (p && seq > p->acked) {
        p->acked = seq;
        pthread_cond_broadcast(&c->cond);
    }
    pthread_mutex_unlock(&c->lock);
}

/* One message from the channel (ours included). */
static void on_message(void *cls, const char *payload, size_t len)
{
    cluster_t *c = cls;
    (void)len;
    int64_t me = atomic_load(&c->id), a = 0, b = 0, seq = 0;
    int used = 0;
    atomic_fetch_add_explicit(&c->received, 1, memory_order_relaxed);
    if (sscanf(payload, "W %" SCNd64 " %" SCNd64 "%n", &a, &seq, &used) == 2) {
        if (a != me) {
            on_write_message(c, a, payload + used);
            owe_ack(c, a, seq);
        }
    } else if (sscanf(payload, "P %" SCNd64 " %" SCNd64, &a, &seq) == 2) {
        if (a != me)
            owe_ack(c, a, seq);
    } else if (sscanf(payload, "A %" SCNd64 " %" SCNd64 " %" SCNd64, &a, &b, &seq) == 3) {
        if (a == me)
            on_ack(c, b, seq);
    } else {
        log_warn("cluster", "a message not understood on the channel (ignored)");
    }
}

/* Send the acknowledgements owed; false if the link failed. */
static bool send_acks(cluster_t *c)
{
    for (;;) {
        char msg[96];
        bool any = false;
        pthread_mutex_lock(&c->lock);
        for (size_t i = 0; i < c->npeers && !any; i++) {
            peer_t *p = &c->peers[i];
            if (p->ack_due) {
                p->ack_due = false;
                snprintf(msg, sizeof msg, "A %" PRId64 " %" PRId64 " %" PRId64, p->id,
                         atomic_load(&c->id), p->seen);
                any = true;
            }
        }
        pthread_mutex_unlock(&c->lock);
        if (!any)
            return true;
        if (c->ops->publish(c->link, msg) != SQLCACHED_OK)
            return false;
        atomic_fetch_add_explicit(&c->sent, 1, memory_order_relaxed);
    }
}

/* ------------------------------------------------------------------------
 * Membership (link thread)
 * ------------------------------------------------------------------------ */

/* Listen, empty the tiers, register anew (a new epoch: whoever waited on
 * the old one stops), trust, and ask everyone for an acknowledgement of
 * all we sent (those sent while we could not hear were lost). */
static sqlcached_status_t rejoin(cluster_t *c)
{
    untrust(c);
    sqlcached_status_t st = c->ops->listen(c->link);
    if (st != SQLCACHED_OK)
        return st;
    drop_tiers(c);
    int64_t id = atomic_load(&c->id), sent = mono_ms();
    st = c->ops->join(c->link, &id, c->address, c->started_at, c->lease_ms, &c->epoch);
    if (st != SQLCACHED_OK)
        return st;
    atomic_store(&c->id, id);
    atomic_store_explicit(&c->trusted_until, sent + c->lease_ms - c->margin_ms,
                          memory_order_release);
    c->next_renew = sent + c->lease_ms / RENEWS_PER_LEASE;
    char ping[64];
    int64_t seq = next_seq(c);
    snprintf(ping, sizeof ping, "P %" PRId64 " %" PRId64, id, seq);
    st = c->ops->publish(c->link, ping);
    if (st == SQLCACHED_OK)
        set_listening(c, true);
    return st;
}

static void renew(cluster_t *c)
{
    int64_t sent = mono_ms();
    bool held = false;
    sqlcached_status_t st = c->ops->renew(c->link, atomic_load(&c->id), c->epoch, &held);
    c->next_renew = sent + c->lease_ms / RENEWS_PER_LEASE;
    if (st == SQLCACHED_OK && held) {
        /* what came with the answer is older than the renewal: apply it first */
        st = c->ops->receive(c->link, 0, on_message, c);
        if (st == SQLCACHED_OK) {
            trust_from(c, sent);
            return;
        }
    }
    if (st == SQLCACHED_OK && !held)
        log_warn("cluster", "this node's membership was taken away (evicted): joining again");
    else
        log_warn("cluster", "cannot renew this node's membership: %s", sqlcached_status_name(st));
    set_listening(c, false);
    untrust(c);
}

static bool stopping(cluster_t *c)
{
    pthread_mutex_lock(&c->lock);
    bool s = c->stopping;
    pthread_mutex_unlock(&c->lock);
    return s;
}

/* Sleep up to ms, or until the stop. */
static void pause_ms(cluster_t *c, int64_t ms)
{
    struct timespec until;
    abs_time(mono_ms() + ms, &until);
    pthread_mutex_lock(&c->lock);
    if (!c->stopping)
        pthread_cond_timedwait(&c->cond, &c->lock, &until);
    pthread_mutex_unlock(&c->lock);
}

static void link_step(cluster_t *c)
{
    if (!c->listening) {
        sqlcached_status_t st = rejoin(c);
        if (st != SQLCACHED_OK) {
            untrust(c);
            pause_ms(c, RELISTEN_PAUSE_MS);
        } else {
            log_info("cluster", "node %" PRId64 " is a member again (epoch %" PRId64 ")",
                     atomic_load(&c->id), c->epoch);
        }
        return;
    }
    int64_t wait = c->next_renew - mono_ms();
    if (wait > RELISTEN_PAUSE_MS)
        wait = RELISTEN_PAUSE_MS; /* a stop is noticed within this */
    sqlcached_status_t st = c->ops->receive(c->link, wait > 0 ? (int)wait : 0, on_message, c);
    if (st == SQLCACHED_OK && !send_acks(c))
        st = SQLCACHED_UNAVAILABLE;
    if (st != SQLCACHED_OK) {
        log_warn("cluster", "lost the cluster's channel: serving from the database only "
                            "until this node has joined again");
        set_listening(c, false);
        untrust(c);
        return;
    }
    if (mono_ms() >= c->next_renew)
        renew(c);
}

static void *link_main(void *arg)
{
    cluster_t *c = arg;
    int64_t last_forget = mono_ms();
    while (!stopping(c)) {
        link_step(c);
        if (c->listening && mono_ms() - last_forget > FORGET_DOWN_MS / 10) {
            last_forget = mono_ms();
            if (c->ops->forget_down(c->link, FORGET_DOWN_MS) != SQLCACHED_OK) {
                set_listening(c, false);
                untrust(c);
            }
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------
 * Store hooks (writer thread)
 * ------------------------------------------------------------------------ */

/* Close the body being filled into the batch's list; false on ENOMEM. */
static bool close_body(cluster_t *c)
{
    if (!c->body)
        return true;
    if (c->nbodies == c->capbodies) {
        size_t cap = c->capbodies ? c->capbodies * 2 : 4;
        char **grown = realloc(c->bodies, cap * sizeof *grown);
        if (!grown)
            return false;
        c->bodies = grown;
        c->capbodies = cap;
    }
    c->bodies[c->nbodies++] = c->body;
    c->body = NULL;
    c->body_len = 0;
    return true;
}

static void hook_note(void *cls, char kind, const void *key, size_t len, int64_t version)
{
    cluster_t *c = cls;
    if (c->skip_invalidation && kind != CLUSTER_LEASE && kind != CLUSTER_QUEUE)
        return;                    /* testing: the others keep what they cached */
    if (len > SQLCACHED_KEY_MAX) { /* the domains never pass one */
        c->notes_failed = true;
        return;
    }
    size_t need = 2 + 24 + 2 * len; /* " " kind [version "."] hex */
    if (c->body && c->body_len + need > STORAGE_MESSAGE_MAX - HEADER_ROOM && !close_body(c)) {
        c->notes_failed = true; /* an invalidation lost: the batch must fail */
        return;
    }
    if (!c->body) {
        c->body = malloc(STORAGE_MESSAGE_MAX + 1);
        if (!c->body) {
            c->notes_failed = true;
            return;
        }
        c->body_len = 0;
    }
    if (kind != CLUSTER_LEASE && kind != CLUSTER_QUEUE)
        c->needs_ack = true; /* a lease's or queue's message only wakes waiters */
    char *p = c->body + c->body_len;
    *p++ = ' ';
    *p++ = kind;
    if (kind == CLUSTER_RESET || kind == CLUSTER_DEADLINE || kind == CLUSTER_QUEUE)
        p += sprintf(p, "%" PRId64 ".", version);
    hex_put(p, key, len);
    p += 2 * len;
    *p = '\0';
    c->body_len = (size_t)(p - c->body);
}

/* Collect a live member other than this node into the batch's waits. */
static void add_waited(void *cls, const storage_node_t *n)
{
    cluster_t *c = cls;
    int64_t remaining = n->heartbeat_at + n->lease_ms - n->db_now;
    if (n->id == atomic_load(&c->id) || remaining <= 0)
        return;
    if (c->nwaits == c->capwaits) {
        size_t cap = c->capwaits ? c->capwaits * 2 : 8;
        waited_t *grown = realloc(c->waits, cap * sizeof *grown);
        if (!grown) {
            c->notes_failed = true; /* a member not waited for: fail the batch */
            return;
        }
        c->waits = grown;
        c->capwaits = cap;
    }
    c->waits[c->nwaits++] = (waited_t){
        .id = n->id,
        .epoch = n->epoch,
        .heartbeat_at = n->heartbeat_at,
        .deadline = remaining, /* made absolute after the commit */
    };
}

static sqlcached_status_t publish_bodies(cluster_t *c, store_conn_t *w)
{
    char *payload = malloc(STORAGE_MESSAGE_MAX + 1);
    if (!payload)
        return SQLCACHED_NOMEM;
    sqlcached_status_t st = SQLCACHED_OK;
    for (size_t i = 0; i < c->nbodies && st == SQLCACHED_OK; i++) {
        int64_t seq = next_seq(c);
        snprintf(payload, STORAGE_MESSAGE_MAX + 1, "W %" PRId64 " %" PRId64 "%s",
                 atomic_load(&c->id), seq, c->bodies[i]);
        st = c->ops->publish(w, payload);
        if (st == SQLCACHED_OK) {
            c->batch_seq = seq;
            atomic_fetch_add_explicit(&c->sent, 1, memory_order_relaxed);
        }
    }
    free(payload);
    return st;
}

static sqlcached_status_t hook_before_commit(void *cls, store_conn_t *w)
{
    cluster_t *c = cls;
    c->applied_at_commit = atomic_load(&c->applied);
    c->nwaits = 0;
    c->batch_seq = 0;
    if (!close_body(c))
        c->notes_failed = true;
    if (c->notes_failed || c->nbodies == 0)
        return c->notes_failed ? SQLCACHED_NOMEM : SQLCACHED_OK;
    sqlcached_status_t st = publish_bodies(c, w);
    if (st == SQLCACHED_OK && c->needs_ack)
        st = c->ops->nodes(w, add_waited, c);
    return st == SQLCACHED_OK && c->notes_failed ? SQLCACHED_NOMEM : st;
}

static void hook_on_commit_begin(void *cls)
{
    cluster_t *c = cls;
    pthread_rwlock_rdlock(&c->apply_lock);
    c->replace_ok = atomic_load(&c->applied) == c->applied_at_commit;
}

static void hook_on_commit_end(void *cls)
{
    cluster_t *c = cls;
    c->replace_ok = false;
    pthread_rwlock_unlock(&c->apply_lock);
}

static void forget_batch(cluster_t *c)
{
    c->notes_failed = false;
    c->needs_ack = false;
    for (size_t i = 0; i < c->nbodies; i++)
        free(c->bodies[i]);
    c->nbodies = 0;
    free(c->body);
    c->body = NULL;
    c->body_len = 0;
}

/* w's deadline passed without an acknowledgement: look at its row. Done
 * when it left, joined anew or ran out; evicted when it renews but never
 * acknowledges; else a new deadline at the end of its current lease. */
static sqlcached_status_t check_waited(cluster_t *c, store_conn_t *conn, waited_t *m, int64_t start)
{
    if (!atomic_load(&c->hearing)) {
        /* Our own link is down: its acknowledgement may have been lost on
         * the way to us, and evicting a healthy member for it would be
         * wrong. Wait for the link (its rejoin asks everyone to
         * acknowledge again), bounded. */
        if (mono_ms() - start > DEAF_WAIT_LEASES * c->lease_ms)
            return SQLCACHED_UNAVAILABLE;
        m->deadline = mono_ms() + DEAF_RECHECK_MS;
        return SQLCACHED_OK;
    }
    storage_node_t row;
    bool found = false;
    sqlcached_status_t st = c->ops->node(conn, m->id, m->epoch, &found, &row);
    if (st != SQLCACHED_OK)
        return st;
    int64_t remaining = found ? row.heartbeat_at + row.lease_ms - row.db_now : 0;
    if (remaining <= 0) {
        m->done = true;
        return SQLCACHED_OK;
    }
    if (++m->checks >= EVICT_AFTER_CHECKS) {
        bool evicted = false;
        st = c->ops->evict(conn, m->id, m->epoch, row.heartbeat_at, &evicted);
        if (st != SQLCACHED_OK)
            return st;
        if (evicted) {
            atomic_fetch_add(&c->evictions, 1);
            log_warn("cluster", "node %" PRId64 " renews but does not acknowledge: evicted", m->id);
        }
    }
    m->deadline = mono_ms() + remaining + c->margin_ms;
    return SQLCACHED_OK;
}

/* Under lock: is every waited member done or caught up? The earliest
 * deadline among the others into *next; the first one past it into *due. */
static bool do_all_acked(cluster_t *c, int64_t now, int64_t *next, waited_t **due)
{
    bool all = true;
    *due = NULL;
    for (size_t i = 0; i < c->nwaits; i++) {
        waited_t *m = &c->waits[i];
        if (m->done)
            continue;
        peer_t *p = do_peer(c, m->id);
        if (p && p->acked >= c->batch_seq) {
            m->done = true;
            continue;
        }
        all = false;
        if (m->deadline <= now && !*due)
            *due = m;
        if (m->deadline < *next)
            *next = m->deadline;
    }
    return all;
}

static sqlcached_status_t wait_acks(cluster_t *c, store_conn_t *w)
{
    int64_t start = mono_ms();
    for (size_t i = 0; i < c->nwaits; i++)
        c->waits[i].deadline = start + c->waits[i].deadline + c->margin_ms;
    sqlcached_status_t st = SQLCACHED_OK;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        int64_t now = mono_ms(), next = INT64_MAX;
        waited_t *due;
        if (do_all_acked(c, now, &next, &due))
            break;
        if (due) {
            pthread_mutex_unlock(&c->lock);
            st = check_waited(c, w, due, start);
            pthread_mutex_lock(&c->lock);
            if (st != SQLCACHED_OK)
                break;
            continue;
        }
        struct timespec until;
        abs_time(next, &until);
        pthread_cond_timedwait(&c->cond, &c->lock, &until);
    }
    pthread_mutex_unlock(&c->lock);
    uint64_t took = (uint64_t)(mono_ms() - start);
    atomic_fetch_add(&c->ack_waits, 1);
    uint64_t max = atomic_load(&c->ack_wait_ms_max);
    while (took > max && !atomic_compare_exchange_weak(&c->ack_wait_ms_max, &max, took))
        ;
    return st;
}

static sqlcached_status_t hook_after_commit(void *cls, store_conn_t *w, bool committed)
{
    cluster_t *c = cls;
    forget_batch(c);
    sqlcached_status_t st = SQLCACHED_OK;
    if (committed && c->nwaits > 0)
        st = wait_acks(c, w);
    if (st != SQLCACHED_OK)
        log_warn("cluster",
                 "committed, but could not learn whether every node has seen it "
                 "(%s): answered 503",
                 sqlcached_status_name(st));
    c->nwaits = 0;
    return st;
}

static const store_hooks_t hooks = {
    .note = hook_note,
    .before_commit = hook_before_commit,
    .on_commit_begin = hook_on_commit_begin,
    .on_commit_end = hook_on_commit_end,
    .after_commit = hook_after_commit,
};

/* ------------------------------------------------------------------------
 * Open, close, members, stats
 * ------------------------------------------------------------------------ */

static void cluster_free(cluster_t *c)
{
    forget_batch(c);
    free(c->bodies);
    free(c->waits);
    free(c->peers);
    free(c->address);
    pthread_rwlock_destroy(&c->apply_lock);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static int init_sync(cluster_t *c)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return -1;
    int rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(&c->cond, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0)
        return -1;
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        pthread_cond_destroy(&c->cond);
        return -1;
    }
    if (pthread_rwlock_init(&c->apply_lock, NULL) != 0) {
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->cond);
        return -1;
    }
    return 0;
}

static cluster_t *cluster_new(sqlcached_t *db, char *err, size_t errlen)
{
    cluster_t *c = calloc(1, sizeof *c);
    if (!c || init_sync(c) != 0) {
        free(c);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->db = db;
    c->lease_ms = db->opts.member_timeout_ms;
    c->margin_ms = c->lease_ms * MARGIN_PERMILLE / 1000;
    if (c->margin_ms < MARGIN_MIN_MS)
        c->margin_ms = MARGIN_MIN_MS;
    c->skip_invalidation = db->opts.testing_skip_cluster_invalidation != 0;
    c->started_at = engine_now(db);
    c->address = strdup(db->opts.advertise ? db->opts.advertise : "");
    if (!c->address) {
        cluster_free(c);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    return c;
}

cluster_t *cluster_open(sqlcached_t *db, char *err, size_t errlen)
{
    cluster_t *c = cluster_new(db, err, errlen);
    if (!c)
        return NULL;
    c->link = store_link_open(db->store, err, errlen);
    if (!c->link) {
        cluster_free(c);
        return NULL;
    }
    c->ops = store_conn_backend(c->link)->cluster;
    sqlcached_status_t st = rejoin(c);
    if (st != SQLCACHED_OK) {
        snprintf(err, errlen, "cannot join the cluster: %s", sqlcached_status_name(st));
        store_link_close(db->store, c->link);
        cluster_free(c);
        return NULL;
    }
    if (pthread_create(&c->thread, NULL, link_main, c) != 0) {
        snprintf(err, errlen, "cannot start the cluster thread: %s", strerror(errno));
        c->ops->leave(c->link, atomic_load(&c->id), c->epoch);
        store_link_close(db->store, c->link);
        cluster_free(c);
        return NULL;
    }
    c->started = true;
    store_set_hooks(db->store, &hooks, c);
    log_info("cluster", "joined as node %" PRId64 " (member timeout %" PRId64 " ms)",
             atomic_load(&c->id), c->lease_ms);
    return c;
}

void cluster_close(cluster_t *c)
{
    if (!c)
        return;
    store_set_hooks(c->db->store, NULL, NULL);
    pthread_mutex_lock(&c->lock);
    c->stopping = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    if (c->started)
        pthread_join(c->thread, NULL);
    untrust(c);
    if (c->ops->leave(c->link, atomic_load(&c->id), c->epoch) != SQLCACHED_OK)
        log_warn("cluster",
                 "could not leave the cluster: the others wait for this node's "
                 "membership to run out (at most %" PRId64 " ms)",
                 c->lease_ms);
    store_link_close(c->db->store, c->link);
    cluster_free(c);
}

typedef struct members_job {
    sqlcached_member_fn fn;
    void *cls;
} members_job_t;

static void member_out(void *cls, const storage_node_t *n)
{
    members_job_t *j = cls;
    sqlcached_member_t m = {
        .id = n->id,
        .address = n->address ? n->address : "",
        .up = n->heartbeat_at + n->lease_ms > n->db_now,
        .heartbeat_at = n->heartbeat_at,
        .started_at = n->started_at,
    };
    j->fn(j->cls, &m);
}

sqlcached_status_t cluster_members(cluster_t *c, sqlcached_member_fn fn, void *cls)
{
    store_conn_t *r = store_reader_acquire(c->db->store);
    if (!r)
        return SQLCACHED_UNAVAILABLE;
    members_job_t j = {fn, cls};
    sqlcached_status_t st = c->ops->nodes(r, member_out, &j);
    store_reader_release(c->db->store, r);
    return st;
}

void cluster_stats(cluster_t *c, sqlcached_cluster_stats_t *out)
{
    *out = (sqlcached_cluster_stats_t){
        .enabled = 1,
        .node = atomic_load(&c->id),
        .trusted = cluster_trusted(c),
        .messages_sent = atomic_load(&c->sent),
        .messages_received = atomic_load(&c->received),
        .ack_waits = atomic_load(&c->ack_waits),
        .ack_wait_ms_max = atomic_load(&c->ack_wait_ms_max),
        .evictions = atomic_load(&c->evictions),
        .tier_drops = atomic_load(&c->drops),
    };
}
