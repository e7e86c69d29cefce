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
    const char *config_path;      /* --config FILE, NULL = none */
    const char *access_log;       /* --access-log PATH or "-" (stderr), NULL = off */
    const char *backup_dir;       /* --backup-dir DIR, NULL = backups disabled */
    const char *admin_token;      /* --admin-token, NULL = /v1/admin uses auth_token */
    const char *restore_from;     /* --restore FILE: restore into --db and exit */
    size_t cache_memory;          /* --cache-memory, 0 = no memory tier */
    size_t sqlite_cache;          /* --sqlite-cache: the writer's page cache, bytes */
    const char *policy;           /* --policy, Redis eviction policy name */
    int64_t negative_ttl_ms;      /* --negative-ttl seconds, in ms */
    unsigned ttl_jitter;          /* --ttl-jitter percent */
    unsigned busy_timeout_ms;     /* --busy-timeout: wait for a lock held elsewhere */
    unsigned shutdown_timeout_ms; /* --shutdown-timeout: how long a stop waits */
    /* Testing only (hidden flags, not in --help, refused in a config file):
     * see "Testing-only flags" in docs/operations.md. */
    unsigned testing_max_pages;     /* --testing-max-pages N */
    int testing_disable_fill_guard; /* --testing-disable-fill-guard */
    unsigned testing_fill_delay_us; /* --testing-fill-delay-us US */
    char *owned[64];                /* strings read from the config file */
    int nowned;
    sqlcached_seckill_strategy_t seckill_strategy;
    unsigned seckill_retries;
    sqlcached_on_write_t on_write;         /* --on-write replace|invalidate */
    int hotkeys;                           /* --hotkeys on|off: 1 = on (default) */
    int testing_seckill_naive;             /* --testing-seckill-naive (oversells) */
    char advertise[300];                   /* --advertise HOST:PORT; "" = the listen address */
    unsigned member_timeout_ms;            /* --member-timeout */
    int testing_skip_cluster_invalidation; /* --testing-skip-cluster-invalidation */
    int testing_payment_unguarded;         /* --testing-payment-unguarded (cancels paid orders) */
    unsigned watch_history;                /* --watch-history */
    unsigned max_watchers;                 /* --max-watchers */
} config_t;

typedef enum config_result {
    CONFIG_OK = 0,
    CONFIG_HELP,    /* --help: print config_usage() and exit 0 */
    CONFIG_VERSION, /* --version */
    CONFIG_ERROR,   /* a bad value: message in err; exit 1 */
    CONFIG_USAGE    /* unknown option, missing value, stray argument; exit 2 */
} config_result_t;

void config_defaults(config_t *cfg);

/* Free the strings config_parse read from a config file. */
void config_free(config_t *cfg);

/* The effective settings as a JSON object, secrets masked ("***"). The
 * caller owns the result; NULL on ENOMEM. */
struct json_t;
struct json_t *config_json(const config_t *cfg);

/* Apply, in order of precedence: the config file named by --config (lines
 * "key = value" mirroring the long flags), the environment
 * (SQLCACHED_AUTH_TOKEN, SQLCACHED_ADMIN_TOKEN), then argv; the last
 * occurrence of a flag wins. */
config_result_t config_parse(config_t *cfg, int argc, char **argv, char *err, size_t errlen);

/* The settings of a config file, text[0..len) (need not be NUL-terminated):
 * lines "key = value" (a long flag's name, without --config and --restore),
 * '#' comments and blank lines; the value may be in double quotes. Lines are
 * at most CONFIG_LINE_MAX bytes and hold no NUL. `name` prefixes messages.
 * Returns 0, or -1 with "NAME:LINE: message" in err (settings before the
 * bad line stay applied). Strings kept in cfg are freed by config_free(). */
#define CONFIG_LINE_MAX 8191
#define CONFIG_FILE_MAX (1024 * 1024)
int config_parse_text(config_t *cfg, const char *text, size_t len, const char *name, char *err,
                      size_t errlen);

/* A whole decimal number in [min, max] (durations in seconds, counts).
 * Returns 0 and *out, or -1 when malformed or out of range. */
int config_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out);

/* The --help text. */
const char *config_usage(void);

/* The --db value as it may be shown (log, /v1/admin/config): a
 * postgresql:// URL with its password replaced by *** (in the user info
 * and in a password= parameter), anything else as it is. Writes at most
 * len bytes to buf (truncating) and returns buf. */
const char *config_db_display(const char *db, char *buf, size_t len);

/* "1048576", "64K", "64KB", "64KiB", "1M", "1G" (all binary multiples).
 * Returns 0 and *out, or -1 when malformed or out of range. */
int config_parse_size(const char *s, size_t *out);

/* "HOST:PORT", "[IPv6]:PORT" or ":PORT" (loopback). Returns 0 or -1. */
int config_parse_listen(const char *s, char *host, size_t hostlen, uint16_t *port);

#endif
