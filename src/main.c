/*
 * main.c - the sqlcached daemon: configuration, store, HTTP, signals.
 *
 * Wiring only. SIGTERM and SIGINT are blocked in every thread and taken by
 * sigwait() here, so the stop sequence runs in normal context: bound the
 * store's writes by --shutdown-timeout (sqlcached_drain: a write not
 * committed by then fails 503 and is never stored), stop HTTP (in-flight
 * requests finish, parked writes get their true outcome, within the same
 * timeout plus HTTP_STOP_GRACE_MS), then close the store (writer drained,
 * WAL checkpointed).
 */
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "http.h"
#include "log.h"
#include "sqlcached.h"

/* --testing-fill-delay-us: widen the window between a reader's SQLite read
 * and its fill of the memory tier (installed only when the flag is given). */
static void testing_fill_delay(void *arg)
{
    usleep(*(const unsigned *)arg);
}

static int serve(const config_t *cfg, sigset_t *stop_signals)
{
    char err[512] = "";
    sqlcached_options_t opts;
    sqlcached_options_init(&opts);
    opts.path = cfg->db_path;
    opts.durability = cfg->durability;
    opts.cache_memory = cfg->cache_memory;
    opts.sqlite_cache = cfg->sqlite_cache;
    opts.cache_policy = cfg->policy;
    opts.negative_ttl_ms = cfg->negative_ttl_ms;
    opts.ttl_jitter_percent = cfg->ttl_jitter;
    opts.seckill_strategy = cfg->seckill_strategy;
    opts.seckill_retries = (int)cfg->seckill_retries;
    if (cfg->testing_seckill_naive)
        opts.seckill_strategy = SQLCACHED_SECKILL_TESTING_NAIVE;
    opts.on_write = cfg->on_write;
    opts.hotkeys = cfg->hotkeys;
    opts.busy_timeout_ms = (int)cfg->busy_timeout_ms;
    opts.testing_max_pages = cfg->testing_max_pages;
    opts.testing_disable_fill_guard = cfg->testing_disable_fill_guard;
    opts.member_timeout_ms = cfg->member_timeout_ms;
    opts.watch_history = cfg->watch_history;
    opts.max_watchers = cfg->max_watchers;
    char advertise[300];
    if (cfg->advertise[0])
        snprintf(advertise, sizeof advertise, "%s", cfg->advertise);
    else
        snprintf(advertise, sizeof advertise, "%s:%u", cfg->listen_host, cfg->listen_port);
    opts.advertise = advertise;
    opts.testing_skip_cluster_invalidation = cfg->testing_skip_cluster_invalidation;
    opts.testing_payment_unguarded = cfg->testing_payment_unguarded;
    if (cfg->testing_fill_delay_us) {
        opts.testing_before_fill = testing_fill_delay;
        opts.testing_arg = (void *)&cfg->testing_fill_delay_us;
    }
    sqlcached_t *db = NULL;
    if (sqlcached_open(&opts, &db, err, sizeof err) != SQLCACHED_OK) {
        log_error("main", "%s", err);
        return 1;
    }
    json_t *settings = config_json(cfg);
    http_config_t hc = {
        .host = cfg->listen_host,
        .port = cfg->listen_port,
        .threads = cfg->threads,
        .max_body = cfg->max_body,
        .auth_token = cfg->auth_token,
        .max_connections = cfg->max_connections,
        .connection_timeout_s = cfg->connection_timeout_s,
        .admin_token = cfg->admin_token,
        .backup_dir = cfg->backup_dir,
        .access_log = cfg->access_log,
        .settings = settings,
        .shutdown_timeout_ms = cfg->shutdown_timeout_ms,
    };
    http_server_t *srv = http_start(&hc, db, err, sizeof err);
    if (!srv) {
        log_error("main", "%s", err);
        json_decref(settings);
        sqlcached_close(db);
        return 1;
    }
    if (cfg->testing_max_pages || cfg->testing_disable_fill_guard || cfg->testing_fill_delay_us ||
        cfg->testing_seckill_naive || cfg->testing_skip_cluster_invalidation ||
        cfg->testing_payment_unguarded)
        log_warn("main", "testing-only flags are set: not for production use");
    char shown[1024]; /* the --db value without its password */
    log_info("main",
             "sqlcached %s listening on http://%s:%u, database %s, %u threads, "
             "memory tier %zu bytes (%s, on write %s), seckill strategy %s%s",
             sqlcached_version(), cfg->listen_host, http_port(srv),
             config_db_display(cfg->db_path, shown, sizeof shown), cfg->threads, cfg->cache_memory,
             cfg->policy, cfg->on_write == SQLCACHED_ON_WRITE_INVALIDATE ? "invalidate" : "replace",
             cfg->testing_seckill_naive                           ? "naive (testing only)"
             : cfg->seckill_strategy == SQLCACHED_SECKILL_VERSION ? "version"
                                                                  : "stock",
             cfg->auth_token ? ", auth required" : "");
    int sig = 0;
    sigwait(stop_signals, &sig);
    log_info("main", "signal %d: stopping (at most %u ms for requests in flight)", sig,
             cfg->shutdown_timeout_ms);
    sqlcached_drain(db, cfg->shutdown_timeout_ms);
    http_stop(srv);
    json_decref(settings);
    sqlcached_close(db);
    log_info("main", "stopped");
    return 0;
}

static int run(const config_t *cfg);

/* glibc gives the top of a thread's heap back to the kernel (madvise) as
 * soon as 128 KiB are free there, and the next allocation faults the pages
 * in again. The writer thread frees and reallocates that much around every
 * group transaction, so under load about a tenth of the CPU went to this
 * churn. Keep up to 64 MiB of free heap instead (a fixed threshold also
 * stops glibc from moving it). The daemon only: the library never touches
 * the host's allocator. */
static void tune_malloc(void)
{
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
}

/* SCHED_BATCH for this thread and so for every thread started after it
 * (MHD's workers, the store's writer): a thread woken up no longer
 * preempts the one running. Without it, each PUT answered cost a context
 * switch pair: the writer resumes the connections of a committed batch one
 * by one, and the worker, woken by the first resume, took the CPU back
 * after every one (0.4 switches per request at 64 connections, a third of
 * the CPU of a PUT). With it the writer finishes the batch, the worker
 * then answers all of it. Latency is unchanged when the daemon has its
 * cores; when it shares them, a woken worker waits for the running task's
 * time slice. Failure is harmless (logged at debug level). */
static void prefer_throughput_scheduling(void)
{
    struct sched_param sp = {0};
    int rc = pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
    if (rc != 0)
        log_debug("main", "SCHED_BATCH not set: %s", strerror(rc));
}

/* --restore FILE: copy a backup into --db and exit. */
static int restore(const config_t *cfg)
{
    char err[512] = "";
    if (sqlcached_restore(cfg->restore_from, cfg->db_path, err, sizeof err) != SQLCACHED_OK) {
        log_error("main", "restore from %s failed: %s", cfg->restore_from, err);
        return 1;
    }
    log_info("main", "restored %s from %s", cfg->db_path, cfg->restore_from);
    return 0;
}

/* Settings that need the file system, checked before anything starts. */
static int check_paths(const config_t *cfg)
{
    if (cfg->backup_dir && access(cfg->backup_dir, W_OK | X_OK) != 0) {
        log_error("main", "--backup-dir %s is not a writable directory", cfg->backup_dir);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    config_t cfg;
    char err[512] = "";
    config_defaults(&cfg);
    int rc = -1;
    switch (config_parse(&cfg, argc, argv, err, sizeof err)) {
    case CONFIG_HELP:
        fputs(config_usage(), stdout);
        rc = 0;
        break;
    case CONFIG_VERSION:
        printf("sqlcached %s\n", sqlcached_version());
        rc = 0;
        break;
    case CONFIG_ERROR:
        fprintf(stderr, "sqlcached: %s\n", err);
        rc = 1;
        break;
    case CONFIG_USAGE:
        fprintf(stderr, "sqlcached: %s\nTry 'sqlcached --help'.\n", err);
        rc = 2;
        break;
    case CONFIG_OK:
        break;
    }
    if (rc < 0)
        rc = run(&cfg);
    config_free(&cfg);
    return rc;
}

static int run(const config_t *cfg)
{
    log_set_level((log_level_t)cfg->log_level);
    sqlcached_set_log_level((sqlcached_log_level_t)cfg->log_level); /* the library's lines */
    if (cfg->restore_from)
        return restore(cfg);
    if (check_paths(cfg) != 0)
        return 1;
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL); /* inherited by every thread */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN); /* a file size limit fails the write (503), not the process */
    tune_malloc();
    prefer_throughput_scheduling();
    return serve(cfg, &stop_signals);
}
