/*
 * main.c - the sqlcached daemon: configuration, store, HTTP, signals.
 *
 * Wiring only. SIGTERM and SIGINT are blocked in every thread and taken by
 * sigwait() here, so the stop sequence runs in normal context: stop HTTP
 * (in-flight requests finish), then close the store (writer drained, WAL
 * checkpointed).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "http.h"
#include "log.h"
#include "sqlcached.h"

static int serve(const config_t *cfg, sigset_t *stop_signals)
{
    char err[512] = "";
    sqlcached_options_t opts;
    sqlcached_options_init(&opts);
    opts.path = cfg->db_path;
    opts.durability = cfg->durability;
    opts.seckill_strategy = cfg->seckill_strategy;
    opts.seckill_retries = (int)cfg->seckill_retries;
    sqlcached_t *db = NULL;
    if (sqlcached_open(&opts, &db, err, sizeof err) != SQLCACHED_OK) {
        log_error("main", "%s", err);
        return 1;
    }
    http_config_t hc = {
        .host = cfg->listen_host, .port = cfg->listen_port, .threads = cfg->threads,
        .max_body = cfg->max_body, .auth_token = cfg->auth_token,
        .max_connections = cfg->max_connections,
        .connection_timeout_s = cfg->connection_timeout_s,
    };
    http_server_t *srv = http_start(&hc, db, err, sizeof err);
    if (!srv) {
        log_error("main", "%s", err);
        sqlcached_close(db);
        return 1;
    }
    log_info("main", "sqlcached %s listening on http://%s:%u, database %s, %u threads, "
             "seckill strategy %s%s",
             sqlcached_version(), cfg->listen_host, http_port(srv), cfg->db_path, cfg->threads,
             cfg->seckill_strategy == SQLCACHED_SECKILL_VERSION ? "version" : "stock",
             cfg->auth_token ? ", auth required" : "");
    int sig = 0;
    sigwait(stop_signals, &sig);
    log_info("main", "signal %d: stopping", sig);
    http_stop(srv);
    sqlcached_close(db);
    log_info("main", "stopped");
    return 0;
}

int main(int argc, char **argv)
{
    config_t cfg;
    char err[512] = "";
    config_defaults(&cfg);
    switch (config_parse(&cfg, argc, argv, err, sizeof err)) {
    case CONFIG_HELP:
        fputs(config_usage(), stdout);
        return 0;
    case CONFIG_VERSION:
        printf("sqlcached %s\n", sqlcached_version());
        return 0;
    case CONFIG_ERROR:
        fprintf(stderr, "sqlcached: %s\n", err);
        return 1;
    case CONFIG_USAGE:
        fprintf(stderr, "sqlcached: %s\nTry 'sqlcached --help'.\n", err);
        return 2;
    case CONFIG_OK:
        break;
    }
    log_set_level((log_level_t)cfg.log_level);
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL); /* inherited by every thread */
    signal(SIGPIPE, SIG_IGN);
    return serve(&cfg, &stop_signals);
}
