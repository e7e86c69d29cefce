/*
 * config.h - the daemon's settings: defaults < environment < command line.
 *
 * config_parse() fills a config_t that is read-only after start-up. Strings
 * in it point into argv or the environment (never freed). Parsers of sizes
 * and addresses are exported for reuse and for tests.
 */
#ifndef SQLCACHED_CONFIG_H
#define SQLCACHED_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "sqlcached.h"

typedef struct config {
    char listen_host[256];
    uint16_t listen_port;
    const char *db_path;
    unsigned threads;
    size_t max_body;
    const char *auth_token;
    sqlcached_durability_t durability;
    int log_level;
    unsigned max_connections;
    unsigned connection_timeout_s;
    sqlcached_seckill_strategy_t seckill_strategy;
    unsigned seckill_retries;
} config_t;

typedef enum config_result {
    CONFIG_OK = 0,
    CONFIG_HELP,    /* --help: print config_usage() and exit 0 */
    CONFIG_VERSION, /* --version */
    CONFIG_ERROR,   /* a bad value: message in err; exit 1 */
    CONFIG_USAGE    /* unknown option, missing value, stray argument; exit 2 */
} config_result_t;

void config_defaults(config_t *cfg);

/* Apply the environment (SQLCACHED_AUTH_TOKEN) then argv; the last
 * occurrence of a flag wins. */
config_result_t config_parse(config_t *cfg, int argc, char **argv, char *err, size_t errlen);

/* The --help text. */
const char *config_usage(void);

/* "1048576", "64K", "64KB", "64KiB", "1M", "1G" (all binary multiples).
 * Returns 0 and *out, or -1 when malformed or out of range. */
int config_parse_size(const char *s, size_t *out);

/* "HOST:PORT", "[IPv6]:PORT" or ":PORT" (loopback). Returns 0 or -1. */
int config_parse_listen(const char *s, char *host, size_t hostlen, uint16_t *port);

#endif
