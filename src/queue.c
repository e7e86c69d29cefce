/*
 * queue.c - the delay queue: durable jobs due at a time, claimed with a
 * visibility timeout and strictly increasing claim tokens; and the claims
 * that wait for a job.
 *
 * Storage: the queue operations of the storage seam (storage.h), one row
 * per job; the claim token counter is the store counter `claim_token`.
 * Every change is a write function run by the store's writer thread, so
 * each call's read-decide-write is one atomic write. A claim reads the due
 * rows (due()), then takes each with a conditional change (take(): still
 * due, still under the token it was read with) and a new token; on
 * PostgreSQL the rows read are locked FOR UPDATE SKIP LOCKED, so claims on
 * several nodes never get one job twice. A job's run_at is when it is due
 * next: a claim sets it to the claim's end, so a claim that is never acked
 * makes the job due again with no sweep.
 *
 * Waiting claims: a claim runs as an asynchronous write (store_write_async)
 * and its completion (claim_done, on the writer thread) answers it, or,
 * when it found nothing due and may wait, parks it on its queue's entry in
 * the registry (FIFO), with the earliest run_at of the queue's jobs read in
 * the same write (next_due: a delayed job, or a claim's end). No thread
 * waits per claim. A parked claim is run again ("kicked") when
 *   - a job of its queue is enqueued or nacked due now (on this node: the
 *     write's on_commit hook, one parked claim per job; on another node:
 *     the cluster message, queue_remote_due());
 *   - the timer thread reaches the entry's next_due (every parked claim of
 *     the queue; a later enqueue lowers next_due);
 *   - in a cluster, every recheck_ms (a message that was missed).
 * and ends with an empty answer at its deadline (the timer). A claim in
 * flight when an enqueue commits could miss that enqueue's kick: every
 * enqueue and nack (and every remote message) bumps `epoch`, a claim
 * records it when its write begins, and parks only if it has not changed
 * since; otherwise it runs again at once.
 *
 * Locking: `lock` guards the entries, their FIFOs, `running` and the
 * figures by queue. Completions (the caller's done callback) run without
 * it. The timer thread sleeps on timer_cond until the earliest deadline,
 * next_due or recheck (at most TIMER_MAX_SLEEP_MS: a jump of the store's
 * clock is noticed), and without a timeout while nobody waits.
 *
 * Ownership: a claim (qclaim_t) is allocated by sqlcached_queue_claim_async
 * and freed by qi_complete(), after its done callback; its jobs list is handed
 * to the caller (sqlcached_jobs_free) on success.
 *
 * The registry, the kicks and the timer thread are in queue_wait.c; what
 * the two files share is in queue_int.h.
 */
#include "queue.h"
#include "queue_int.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cluster.h"
#include "engine.h"
#include "log.h"
#include "storage.h"

#define LOCKED_RETRY_MS 20 /* a due row locked by another node's claim: look again */
#define OTHER_QUEUES "_other"

/* ------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------ */

int64_t qi_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool text_ok(const char *p, size_t n, size_t max)
{
    return p && n >= 1 && n <= max && !memchr(p, '\0', n);
}

static void set_text(char *dst, size_t *len, const char *src, size_t n)
{
    memcpy(dst, src, n);
    dst[n] = '\0';
    *len = n;
}

void sqlcached_job_clear(sqlcached_job_t *job)
{
    if (!job)
        return;
    free(job->payload);
    job->payload = NULL;
    job->payload_len = 0;
}

void sqlcached_jobs_free(sqlcached_jobs_t *jobs)
{
    if (!jobs)
        return;
    for (size_t i = 0; i < jobs->count; i++)
        sqlcached_job_clear(&jobs->jobs[i]);
    free(jobs);
}

/* Fill job from a row seen at now (payload copied). false: out of memory. */
static bool job_from_row(sqlcached_job_t *job, const storage_job_row_t *row, int64_t now)
{
    char *payload = malloc(row->payload_len + 1);
    if (!payload || row->queue_len > SQLCACHED_QUEUE_NAME_MAX ||
        row->id_len > SQLCACHED_JOB_ID_MAX) {
        free(payload);
        return false;
    }
    memcpy(payload, row->payload, row->payload_len);
    payload[row->payload_len] = '\0';
    set_text(job->queue, &job->queue_len, row->queue, row->queue_len);
    set_text(job->id, &job->id_len, row->id, row->id_len);
    job->payload = payload;
    job->payload_len = row->payload_len;
    job->run_at = row->run_at;
    job->attempts = row->attempts;
    job->claim_token = row->claim_token;
    job->state = row->run_at <= now ? SQLCACHED_JOB_READY
                 : row->claimed     ? SQLCACHED_JOB_CLAIMED
                                    : SQLCACHED_JOB_DELAYED;
    return true;
}

/* ------------------------------------------------------------------------
 * Figures by queue (bounded: the first SQLCACHED_QUEUE_STATS_MAX names,
 * then one slot for every other)
 * ------------------------------------------------------------------------ */

typedef enum { STAT_ENQUEUED, STAT_CLAIMED, STAT_ACKED, STAT_EXPIRED } stat_kind_t;

static void count(queue_registry_t *reg, const char *queue, size_t n, stat_kind_t kind, uint64_t by)
{
    if (!by)
        return;
    pthread_mutex_lock(&reg->lock);
    sqlcached_queue_stat_t *s = NULL;
    for (size_t i = 0; i < reg->nstats && !s; i++)
        if (strlen(reg->stats[i].queue) == n && memcmp(reg->stats[i].queue, queue, n) == 0)
            s = &reg->stats[i];
    if (!s && reg->nstats < SQLCACHED_QUEUE_STATS_MAX) {
        s = &reg->stats[reg->nstats++];
        memcpy(s->queue, queue, n);
        s->queue[n] = '\0';
    }
    if (!s) {
        s = &reg->stats[SQLCACHED_QUEUE_STATS_MAX];
        strcpy(s->queue, OTHER_QUEUES);
    }
    uint64_t *field = kind == STAT_ENQUEUED  ? &s->enqueued
                      : kind == STAT_CLAIMED ? &s->claimed
                      : kind == STAT_ACKED   ? &s->acked
                                             : &s->expired_claims;
    *field += by;
    pthread_mutex_unlock(&reg->lock);
}

void sqlcached_queue_stats(sqlcached_t *db, sqlcached_queue_stats_t *out)
{
    memset(out, 0, sizeof *out);
    queue_registry_t *reg = db->queues;
    if (!reg)
        return;
    pthread_mutex_lock(&reg->lock);
    for (size_t i = 0; i < reg->nstats; i++)
        out->by_queue[out->count++] = reg->stats[i];
    if (reg->stats[SQLCACHED_QUEUE_STATS_MAX].queue[0])
        out->by_queue[out->count++] = reg->stats[SQLCACHED_QUEUE_STATS_MAX];
    out->waiters = reg->parked;
    pthread_mutex_unlock(&reg->lock);
}

/* ------------------------------------------------------------------------
 * Claims
 * ------------------------------------------------------------------------ */

/* Under the lock: a claim is no longer in flight. */
static void do_not_running(queue_registry_t *reg)
{
    reg->running--;
    if (reg->running == 0)
        pthread_cond_broadcast(&reg->idle_cond);
}

/* A claim is no longer in flight (lock not held). */
void qi_not_running(queue_registry_t *reg)
{
    pthread_mutex_lock(&reg->lock);
    do_not_running(reg);
    pthread_mutex_unlock(&reg->lock);
}

/* Answer c (status; on OK its jobs go to the caller) and free it. */
void qi_complete(qclaim_t *c, sqlcached_status_t st)
{
    if (st == SQLCACHED_OK && c->jobs && c->jobs->count) {
        count(c->reg, c->queue, c->queue_len, STAT_CLAIMED, c->jobs->count);
        count(c->reg, c->queue, c->queue_len, STAT_EXPIRED, c->expired_claims);
    }
    if (st == SQLCACHED_OK && !c->jobs)
        st = SQLCACHED_NOMEM;
    if (st == SQLCACHED_OK) {
        *c->out = c->jobs;
    } else {
        *c->out = NULL;
        sqlcached_jobs_free(c->jobs);
    }
    c->jobs = NULL;
    c->done(c->cls, st);
    free(c);
}

static bool collect_due(void *cls, int64_t seq, int64_t token, bool claimed)
{
    qclaim_t *c = cls;
    if (c->nseq >= c->max)
        return false;
    c->seqs[c->nseq] = seq;
    c->tokens[c->nseq] = token;
    c->expired[c->nseq] = claimed;
    c->nseq++;
    return true;
}

static sqlcached_status_t add_claimed(void *cls, const storage_job_row_t *row)
{
    qclaim_t *c = cls;
    sqlcached_job_t *job = &c->jobs->jobs[c->jobs->count];
    if (!job_from_row(job, row, c->now))
        return SQLCACHED_NOMEM;
    job->state = SQLCACHED_JOB_CLAIMED;
    c->jobs->count++;
    return SQLCACHED_OK;
}

/* The claim's write: take up to max due jobs; when none and it may wait,
 * read the queue's next due time. */
static sqlcached_status_t claim_write(store_conn_t *w, void *arg)
{
    qclaim_t *c = arg;
    for (size_t i = 0; i < c->jobs->count; i++)
        sqlcached_job_clear(&c->jobs->jobs[i]);
    c->jobs->count = 0;
    c->nseq = 0;
    c->expired_claims = 0;
    c->next_due = INT64_MAX;
    c->epoch_seen = atomic_load(&c->reg->epoch);
    c->now = engine_now(c->reg->db);
    const storage_queue_ops_t *q = storage_queue(w);
    sqlcached_status_t st = q->due(w, c->queue, c->queue_len, c->now, c->max, collect_due, c);
    for (unsigned i = 0; i < c->nseq && st == SQLCACHED_OK; i++) {
        int64_t token;
        st = store_counter_next(w, "claim_token", &token);
        if (st != SQLCACHED_OK)
            break;
        st = q->take(w, c->seqs[i], c->tokens[i], c->now, token, c->worker, c->worker_len,
                     c->now + c->visibility_ms, add_claimed, c);
        if (st == SQLCACHED_OK && c->expired[i])
            c->expired_claims++;
        if (st == SQLCACHED_NOT_FOUND) /* taken meanwhile (another node) */
            st = SQLCACHED_OK;
    }
    if (st != SQLCACHED_OK || c->jobs->count || !c->waits)
        return st;
    st = q->next_due(w, c->queue, c->queue_len, &c->next_due);
    if (st == SQLCACHED_NOT_FOUND) {
        c->next_due = INT64_MAX;
        return SQLCACHED_OK;
    }
    if (st == SQLCACHED_OK && c->next_due <= c->now) /* a due row locked by another claim */
        c->next_due = c->now + LOCKED_RETRY_MS;
    return st;
}

static void claim_done(void *cls, sqlcached_status_t st);

/* Queue c's write; false when it could not be queued. Counted in running
 * by the caller. */
bool qi_submit(qclaim_t *c, sqlcached_status_t *st)
{
    *st = store_write_async(c->reg->db->store, claim_write, NULL, c, claim_done, c);
    return *st == SQLCACHED_OK;
}

/* The claim's write is done (writer thread): answer, run again, or park. */
static void claim_done(void *cls, sqlcached_status_t st)
{
    qclaim_t *c = cls;
    queue_registry_t *reg = c->reg;
    bool answer = st != SQLCACHED_OK || c->jobs->count > 0 || !c->waits ||
                  qi_mono_ms() >= c->deadline;
    pthread_mutex_lock(&reg->lock);
    if (!answer && reg->stopping) {
        answer = true;
        st = SQLCACHED_UNAVAILABLE;
    }
    bool again = !answer && atomic_load(&reg->epoch) != c->epoch_seen;
    if (!answer && !again && !qi_do_park(reg, c)) {
        answer = true;
        st = SQLCACHED_NOMEM;
    }
    if (!answer && !again)
        do_not_running(reg); /* parked: c may be run again by now, hands off */
    pthread_mutex_unlock(&reg->lock);
    if (!answer && !again)
        return;
    if (again && qi_submit(c, &st))
        return; /* still in flight */
    qi_complete(c, st);
    qi_not_running(reg); /* last: queue_registry_stop() may free reg after it */
}

sqlcached_status_t sqlcached_queue_claim_async(sqlcached_t *db, const char *queue, size_t queue_len,
                                               const char *worker, size_t worker_len,
                                               int64_t visibility_ms, int64_t wait_ms, unsigned max,
                                               sqlcached_jobs_t **out, sqlcached_done_fn done,
                                               void *cls)
{
    if (!db || !out || !done || !text_ok(queue, queue_len, SQLCACHED_QUEUE_NAME_MAX) ||
        !text_ok(worker, worker_len, SQLCACHED_JOB_ID_MAX) ||
        visibility_ms < SQLCACHED_QUEUE_VISIBILITY_MIN_MS ||
        visibility_ms > SQLCACHED_QUEUE_VISIBILITY_MAX_MS || wait_ms < 0 ||
        wait_ms > SQLCACHED_QUEUE_WAIT_MAX_MS || max < 1 || max > SQLCACHED_QUEUE_CLAIM_MAX)
        return SQLCACHED_INVALID_ARGUMENT;
    queue_registry_t *reg = db->queues;
    qclaim_t *c = calloc(1, sizeof *c);
    sqlcached_jobs_t *jobs = calloc(1, sizeof *jobs + max * sizeof(sqlcached_job_t));
    if (!c || !jobs) {
        free(c);
        free(jobs);
        return SQLCACHED_NOMEM;
    }
    c->reg = reg;
    set_text(c->queue, &c->queue_len, queue, queue_len);
    set_text(c->worker, &c->worker_len, worker, worker_len);
    c->visibility_ms = visibility_ms;
    c->max = max;
    c->waits = wait_ms > 0;
    c->deadline = qi_mono_ms() + wait_ms;
    c->out = out;
    c->done = done;
    c->cls = cls;
    c->jobs = jobs;
    pthread_mutex_lock(&reg->lock);
    bool stopping = reg->stopping;
    if (!stopping)
        reg->running++;
    pthread_mutex_unlock(&reg->lock);
    sqlcached_status_t st = SQLCACHED_UNAVAILABLE;
    if (!stopping && qi_submit(c, &st))
        return SQLCACHED_OK;
    if (!stopping)
        qi_not_running(reg);
    sqlcached_jobs_free(jobs);
    free(c);
    return st;
}

/* The synchronous claim: the async one, and a condition variable. */
typedef struct sync_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    sqlcached_status_t status;
} sync_wait_t;

static void sync_done(void *cls, sqlcached_status_t st)
{
    sync_wait_t *s = cls;
    pthread_mutex_lock(&s->lock);
    s->done = true;
    s->status = st;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

sqlcached_status_t sqlcached_queue_claim(sqlcached_t *db, const char *queue, size_t queue_len,
                                         const char *worker, size_t worker_len,
                                         int64_t visibility_ms, int64_t wait_ms, unsigned max,
                                         sqlcached_jobs_t **out)
{
    sync_wait_t s = {.done = false};
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.cond, NULL);
    sqlcached_status_t st = sqlcached_queue_claim_async(db, queue, queue_len, worker, worker_len,
                                                        visibility_ms, wait_ms, max, out, sync_done,
                                                        &s);
    if (st == SQLCACHED_OK) {
        pthread_mutex_lock(&s.lock);
        while (!s.done) /* bounded: the claim answers by its deadline */
            pthread_cond_wait(&s.cond, &s.lock);
        st = s.status;
        pthread_mutex_unlock(&s.lock);
    }
    pthread_cond_destroy(&s.cond);
    pthread_mutex_destroy(&s.lock);
    return st;
}

/* ------------------------------------------------------------------------
 * Enqueue, ack, nack, cancel, get, counts
 * ------------------------------------------------------------------------ */

typedef struct job_call {
    queue_registry_t *reg;
    const char *queue, *id, *payload;
    size_t queue_len, id_len, payload_len;
    int64_t now, run_at, token;
    bool created; /* enqueue: inserted */
    bool wakes;   /* on commit: a job became due at run_at */
    sqlcached_job_t *out;
    bool found;
} job_call_t;

static sqlcached_status_t read_into(void *cls, const storage_job_row_t *row)
{
    job_call_t *j = cls;
    j->found = true;
    if (j->out && !job_from_row(j->out, row, j->now))
        return SQLCACHED_NOMEM;
    return SQLCACHED_OK;
}

/* Inside a write: a job of the call's queue is due at run_at from now on:
 * the other nodes' claimers are told (delivered iff this commits), and
 * claims in flight here run again instead of parking. */
static void note_due(store_conn_t *w, job_call_t *j)
{
    store_note(w, CLUSTER_QUEUE, j->queue, j->queue_len, j->run_at);
    atomic_fetch_add(&j->reg->epoch, 1);
    j->wakes = true;
}

static void wake_on_commit(void *arg)
{
    job_call_t *j = arg;
    if (j->wakes)
        qi_job_due_at(j->reg, j->queue, j->queue_len, j->run_at);
}

static sqlcached_status_t enqueue_write(store_conn_t *w, void *arg)
{
    job_call_t *j = arg;
    j->wakes = false;
    const storage_queue_ops_t *q = storage_queue(w);
    sqlcached_status_t st = q->insert(w, j->queue, j->queue_len, j->id, j->id_len, j->payload,
                                      j->payload_len, j->run_at, &j->created);
    if (st != SQLCACHED_OK)
        return st;
    if (j->created) {
        note_due(w, j);
        return SQLCACHED_OK;
    }
    if (!j->out)
        return SQLCACHED_OK;
    sqlcached_job_clear(j->out);
    return q->get(w, j->queue, j->queue_len, j->id, j->id_len, read_into, j);
}

/* A new job id: 32 hex digits of random. false when none can be made. */
static bool make_id(char *id, size_t *len)
{
    unsigned char raw[16];
    size_t got = 0;
    for (int tries = 0; got < sizeof raw && tries < 8; tries++) {
        ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
        if (n > 0)
            got += (size_t)n;
        else if (n < 0 && errno != EINTR)
            return false;
    }
    if (got < sizeof raw)
        return false;
    for (size_t i = 0; i < sizeof raw; i++)
        sprintf(id + 2 * i, "%02x", raw[i]);
    *len = 2 * sizeof raw;
    return true;
}

sqlcached_status_t sqlcached_queue_enqueue(sqlcached_t *db, const char *queue, size_t queue_len,
                                           const char *id, size_t id_len, const char *payload,
                                           size_t payload_len, int64_t delay_ms,
                                           sqlcached_job_t *out, int *created)
{
    char made[SQLCACHED_JOB_ID_MAX + 1];
    if (!db || !text_ok(queue, queue_len, SQLCACHED_QUEUE_NAME_MAX) ||
        (id && !text_ok(id, id_len, SQLCACHED_JOB_ID_MAX)) || (!id && id_len) ||
        !text_ok(payload, payload_len, SQLCACHED_JOB_PAYLOAD_MAX) || delay_ms < 0 ||
        delay_ms > SQLCACHED_QUEUE_DELAY_MAX_MS)
        return SQLCACHED_INVALID_ARGUMENT;
    if (!id) {
        if (!make_id(made, &id_len))
            return SQLCACHED_INTERNAL;
        id = made;
    }
    if (out)
        memset(out, 0, sizeof *out);
    job_call_t j = {.reg = db->queues,
                    .queue = queue,
                    .queue_len = queue_len,
                    .id = id,
                    .id_len = id_len,
                    .payload = payload,
                    .payload_len = payload_len,
                    .now = engine_now(db),
                    .out = out};
    j.run_at = j.now + delay_ms;
    sqlcached_status_t st = store_write_then(db->store, enqueue_write, wake_on_commit, &j);
    if (created)
        *created = st == SQLCACHED_OK && j.created;
    if (st != SQLCACHED_OK) {
        sqlcached_job_clear(out);
        return st;
    }
    if (j.created)
        count(db->queues, queue, queue_len, STAT_ENQUEUED, 1);
    if (j.created && out) {
        storage_job_row_t row = {.queue = queue,
                                 .queue_len = queue_len,
                                 .id = id,
                                 .id_len = id_len,
                                 .payload = payload,
                                 .payload_len = payload_len,
                                 .run_at = j.run_at};
        if (!job_from_row(out, &row, j.now))
            return SQLCACHED_NOMEM;
    }
    return SQLCACHED_OK;
}

/* After an ack or nack that matched nothing: NOT_FOUND when there is no
 * such job, else CLAIM_EXPIRED. */
static sqlcached_status_t missed(store_conn_t *w, job_call_t *j)
{
    j->found = false;
    sqlcached_status_t st =
        storage_queue(w)->get(w, j->queue, j->queue_len, j->id, j->id_len, read_into, j);
    if (st == SQLCACHED_OK)
        return SQLCACHED_CLAIM_EXPIRED;
    return st;
}

static sqlcached_status_t ack_write(store_conn_t *w, void *arg)
{
    job_call_t *j = arg;
#ifdef SQLCACHED_TESTING_QUEUE_KEEP_ACKED
    /* A broken build for the crash loop's self-test only
     * (tests/reliability/queue-sabotage.sh): the ack keeps the job, due
     * again 200 ms later, so an acked job comes back. */
    sqlcached_status_t st = storage_queue(w)->nack(w, j->queue, j->queue_len, j->id, j->id_len,
                                                   j->token, j->now, j->now + 200);
#else
    sqlcached_status_t st =
        storage_queue(w)->ack(w, j->queue, j->queue_len, j->id, j->id_len, j->token, j->now);
#endif
    return st == SQLCACHED_NOT_FOUND ? missed(w, j) : st;
}

static sqlcached_status_t nack_write(store_conn_t *w, void *arg)
{
    job_call_t *j = arg;
    j->wakes = false;
    sqlcached_status_t st = storage_queue(w)->nack(w, j->queue, j->queue_len, j->id, j->id_len,
                                                   j->token, j->now, j->run_at);
    if (st == SQLCACHED_NOT_FOUND)
        return missed(w, j);
    if (st == SQLCACHED_OK)
        note_due(w, j);
    return st;
}

static sqlcached_status_t cancel_write(store_conn_t *w, void *arg)
{
    job_call_t *j = arg;
    return storage_queue(w)->remove(w, j->queue, j->queue_len, j->id, j->id_len);
}

static bool key_ok(const char *queue, size_t queue_len, const char *id, size_t id_len)
{
    return text_ok(queue, queue_len, SQLCACHED_QUEUE_NAME_MAX) &&
           text_ok(id, id_len, SQLCACHED_JOB_ID_MAX);
}

sqlcached_status_t sqlcached_queue_ack(sqlcached_t *db, const char *queue, size_t queue_len,
                                       const char *id, size_t id_len, int64_t claim_token)
{
    if (!db || !key_ok(queue, queue_len, id, id_len) || claim_token < 1)
        return SQLCACHED_INVALID_ARGUMENT;
    job_call_t j = {.reg = db->queues,
                    .queue = queue,
                    .queue_len = queue_len,
                    .id = id,
                    .id_len = id_len,
                    .token = claim_token,
                    .now = engine_now(db)};
    sqlcached_status_t st = store_write(db->store, ack_write, &j);
    if (st == SQLCACHED_OK)
        count(db->queues, queue, queue_len, STAT_ACKED, 1);
    return st;
}

sqlcached_status_t sqlcached_queue_nack(sqlcached_t *db, const char *queue, size_t queue_len,
                                        const char *id, size_t id_len, int64_t claim_token,
                                        int64_t delay_ms)
{
    if (!db || !key_ok(queue, queue_len, id, id_len) || claim_token < 1 || delay_ms < 0 ||
        delay_ms > SQLCACHED_QUEUE_DELAY_MAX_MS)
        return SQLCACHED_INVALID_ARGUMENT;
    job_call_t j = {.reg = db->queues,
                    .queue = queue,
                    .queue_len = queue_len,
                    .id = id,
                    .id_len = id_len,
                    .token = claim_token,
                    .now = engine_now(db)};
    j.run_at = j.now + delay_ms;
    return store_write_then(db->store, nack_write, wake_on_commit, &j);
}

sqlcached_status_t sqlcached_queue_cancel(sqlcached_t *db, const char *queue, size_t queue_len,
                                          const char *id, size_t id_len)
{
    if (!db || !key_ok(queue, queue_len, id, id_len))
        return SQLCACHED_INVALID_ARGUMENT;
    job_call_t j = {.reg = db->queues,
                    .queue = queue,
                    .queue_len = queue_len,
                    .id = id,
                    .id_len = id_len};
    return store_write(db->store, cancel_write, &j);
}

sqlcached_status_t sqlcached_queue_get(sqlcached_t *db, const char *queue, size_t queue_len,
                                       const char *id, size_t id_len, sqlcached_job_t *out)
{
    if (!db || !out || !key_ok(queue, queue_len, id, id_len))
        return SQLCACHED_INVALID_ARGUMENT;
    memset(out, 0, sizeof *out);
    store_conn_t *r = store_reader_acquire(db->store);
    if (!r)
        return SQLCACHED_UNAVAILABLE;
    job_call_t j = {.queue = queue,
                    .queue_len = queue_len,
                    .id = id,
                    .id_len = id_len,
                    .now = engine_now(db),
                    .out = out};
    sqlcached_status_t st = storage_queue(r)->get(r, queue, queue_len, id, id_len, read_into, &j);
    store_reader_release(db->store, r);
    if (st != SQLCACHED_OK)
        sqlcached_job_clear(out);
    return st;
}

sqlcached_status_t sqlcached_queue_counts(sqlcached_t *db, const char *queue, size_t queue_len,
                                          sqlcached_queue_counts_t *out)
{
    if (!db || !out || (queue && !text_ok(queue, queue_len, SQLCACHED_QUEUE_NAME_MAX)))
        return SQLCACHED_INVALID_ARGUMENT;
    memset(out, 0, sizeof *out);
    store_conn_t *r = store_reader_acquire(db->store);
    if (!r)
        return SQLCACHED_UNAVAILABLE;
    storage_queue_counts_t c = {0};
    sqlcached_status_t st = storage_queue(r)->counts(r, queue, queue_len, engine_now(db), &c);
    store_reader_release(db->store, r);
    out->delayed = c.delayed;
    out->ready = c.ready;
    out->claimed = c.claimed;
    return st;
}
