/*
 * config.c - the daemon's options: command line, config file, environment.
 *
 * One table, `options`, holds a row per option (name, type, bounds, target
 * field, default, secret, testing-only, help text); the flags (getopt),
 * the config-file keys, the environment variables, the defaults, --help
 * and the effective settings (GET /v1/admin/config) are all read from it.
 * The defaults of the options that are library settings are not repeated
 * here: they come from sqlcached_options_init().
 *
 * The sources apply in this order, a later one overriding: the defaults,
 * the config file (--config), the environment (the options that have a
 * variable), the command line.
 *
 * Every value is validated as it is read (the parsers of sizes, addresses
 * and decimals are in config_values.c), so that a bad flag is a clear
 * message and a non-zero exit at start-up, never a surprise at run time.
 */
#include "config.h"

#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"

/* The CPUs this process may run on (its affinity mask, as set by taskset
 * or a container's cpuset), which is what the worker pool should match:
 * more event-loop threads than cores only adds context switches. */
static unsigned usable_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return (unsigned)CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 2;
}

/* A bearer token: 1..4096 printable ASCII characters, no spaces. */
static bool token_ok(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 4096)
        return false;
    for (size_t i = 0; i < n; i++)
        if (t[i] <= 0x20 || t[i] > 0x7e)
            return false;
    return true;
}

/* ------------------------------------------------------------------------
 * The options: one row each (after redis's standardConfig table). A row
 * drives the flag (getopt), the config-file key (the flag's name), the
 * environment variable, the default, --help and GET /v1/admin/config.
 * ------------------------------------------------------------------------ */

typedef enum opt_type {
    OT_UINT,    /* unsigned field, a decimal in [min, max] */
    OT_SIZE,    /* size_t field, a size (config_parse_size) in [min, max] */
    OT_SECONDS, /* int64_t field in ms, given in whole seconds in [min, max] */
    OT_ENUM,    /* int-sized field, one of `choices` */
    OT_PATH,    /* const char * field, not empty */
    OT_STRING,  /* const char * field, any value */
    OT_TOKEN,   /* const char * field, a bearer token (token_ok) */
    OT_FLAG,    /* int field set to 1; takes no value */
    OT_CUSTOM,  /* `set` parses and stores; `show` renders (when shown) */
    OT_HELP,
    OT_VERSION
} opt_type_t;

/* Where a library-backed default is read from in sqlcached_options_t. */
typedef enum lib_kind { LIB_NONE, LIB_INT, LIB_UINT, LIB_INT64, LIB_SIZE, LIB_STR } lib_kind_t;

enum {
    OF_SECRET = 1,  /* never shown: "***" in the settings, no "got" in messages */
    OF_TESTING = 2, /* hidden from --help and the settings, refused in a file */
    OF_NO_FILE = 4, /* not a config-file key */
    OF_NO_JSON = 8  /* not in GET /v1/admin/config */
};

typedef struct choice {
    const char *name;
    int value;
} choice_t;

typedef struct option_def option_def_t;
struct option_def {
    const char *name; /* the flag without "--"; the config-file key */
    char short_name;  /* -h, -V; 0 = none */
    opt_type_t type;
    size_t field;                /* offsetof(config_t, ...) */
    unsigned long long min, max; /* OT_UINT, OT_SIZE, OT_SECONDS */
    const choice_t *choices;     /* OT_ENUM, ended by a NULL name */
    const char *dflt;            /* default, parsed as a value; NULL = zero */
    lib_kind_t lib;              /* default from sqlcached_options_init() */
    size_t lib_field;            /* offsetof(sqlcached_options_t, ...) */
    unsigned flags;              /* OF_* */
    const char *env;             /* environment variable, or NULL */
    const char *expected;        /* in messages: "--NAME: expected ..." */
    const char *unit;            /* after a generated "MIN to MAX" */
    const char *metavar;         /* --help: the value's name; NULL = none */
    const char *help;            /* --help lines ('\n' between); NULL = hidden */
    int (*set)(config_t *cfg, const option_def_t *o, const char *arg, char *err,
               size_t errlen);            /* OT_CUSTOM */
    json_t *(*show)(const config_t *cfg); /* OT_CUSTOM: its JSON value */
};

static const choice_t durability_choices[] = {{"full", SQLCACHED_DURABILITY_FULL},
                                              {"normal", SQLCACHED_DURABILITY_NORMAL},
                                              {NULL, 0}};
static const choice_t level_choices[] = {
    {"error", LOG_ERROR}, {"warn", LOG_WARN}, {"info", LOG_INFO}, {"debug", LOG_DEBUG}, {NULL, 0}};
static const choice_t strategy_choices[] = {{"stock", SQLCACHED_SECKILL_STOCK},
                                            {"version", SQLCACHED_SECKILL_VERSION},
                                            {NULL, 0}};
static const choice_t on_write_choices[] = {{"replace", SQLCACHED_ON_WRITE_REPLACE},
                                            {"invalidate", SQLCACHED_ON_WRITE_INVALIDATE},
                                            {NULL, 0}};
static const choice_t on_off_choices[] = {{"on", 1}, {"off", 0}, {NULL, 0}};

static int set_listen(config_t *cfg, const option_def_t *o, const char *arg, char *err,
                      size_t errlen);
static int set_advertise(config_t *cfg, const option_def_t *o, const char *arg, char *err,
                         size_t errlen);
static int set_policy(config_t *cfg, const option_def_t *o, const char *arg, char *err,
                      size_t errlen);
static json_t *show_listen(const config_t *cfg);
static json_t *show_db(const config_t *cfg);
static json_t *show_advertise(const config_t *cfg);
static json_t *show_policy(const config_t *cfg);

#define F(field) offsetof(config_t, field)
#define L(field) offsetof(sqlcached_options_t, field)

/* In --help order. */
static const option_def_t options[] = {
    {.name = "listen",
     .type = OT_CUSTOM,
     .set = set_listen,
     .show = show_listen,
     .dflt = "127.0.0.1:8080",
     .expected = "HOST:PORT",
     .metavar = "HOST:PORT",
     .help = "address to serve on (default 127.0.0.1:8080)"},
    {.name = "db",
     .type = OT_PATH,
     .field = F(db_path),
     .lib = LIB_STR,
     .lib_field = L(path),
     .show = show_db,
     .metavar = "PATH",
     .help = "database file (default ./sqlcached.db)"},
    {.name = "threads",
     .type = OT_UINT,
     .field = F(threads),
     .min = 1,
     .max = 1024,
     .metavar = "N",
     .help = "worker threads (default: the CPUs it may run on)"},
    {.name = "max-body",
     .type = OT_SIZE,
     .field = F(max_body),
     .min = 1,
     .max = (size_t)1 << 30,
     .dflt = "1M",
     .expected = "a size from 1 byte to 1G",
     .metavar = "BYTES",
     .help = "largest request body, e.g. 1M (default 1 MiB)"},
    {.name = "auth-token",
     .type = OT_TOKEN,
     .field = F(auth_token),
     .flags = OF_SECRET,
     .env = "SQLCACHED_AUTH_TOKEN",
     .metavar = "TOKEN",
     .help = "require 'Authorization: Bearer TOKEN' on /v1/...\n(or env SQLCACHED_AUTH_TOKEN)"},
    {.name = "durability",
     .type = OT_ENUM,
     .field = F(durability),
     .choices = durability_choices,
     .lib = LIB_INT,
     .lib_field = L(durability),
     .metavar = "MODE",
     .help = "full (fsync each commit, default) or normal"},
    {.name = "max-connections",
     .type = OT_UINT,
     .field = F(max_connections),
     .min = 1,
     .max = 1000000,
     .dflt = "10000",
     .metavar = "N",
     .help = "concurrent connections (default 10000)"},
    {.name = "timeout",
     .type = OT_UINT,
     .field = F(connection_timeout_s),
     .min = 1,
     .max = 86400,
     .dflt = "60",
     .unit = " seconds",
     .metavar = "SECONDS",
     .help = "idle connection timeout (default 60)"},
    {.name = "cache-memory",
     .type = OT_SIZE,
     .field = F(cache_memory),
     .max = SIZE_MAX,
     .lib = LIB_SIZE,
     .lib_field = L(cache_memory),
     .expected = "a size like 64MB",
     .metavar = "BYTES",
     .help = "memory tier limit, e.g. 256MB (default 64MiB; 0 = off)"},
    /* SQLite's cache_size counts KiB in an int */
    {.name = "sqlite-cache",
     .type = OT_SIZE,
     .field = F(sqlite_cache),
     .max = (size_t)1 << 40,
     .lib = LIB_SIZE,
     .lib_field = L(sqlite_cache),
     .expected = "a size from 0 to 1T",
     .metavar = "BYTES",
     .help = "SQLite page cache of the writer (default 64MiB); each\n"
             "reader connection gets at most 2000KiB of it"},
    {.name = "policy",
     .type = OT_CUSTOM,
     .set = set_policy,
     .show = show_policy,
     .field = F(policy),
     .lib = LIB_STR,
     .lib_field = L(cache_policy),
     .metavar = "NAME",
     .help = "eviction: allkeys-lfu (default), allkeys-lru,\n"
             "volatile-lru, volatile-lfu, allkeys-random,\n"
             "volatile-random, volatile-ttl, noeviction"},
    {.name = "negative-ttl",
     .type = OT_SECONDS,
     .field = F(negative_ttl_ms),
     .min = 1,
     .max = 86400,
     .lib = LIB_INT64,
     .lib_field = L(negative_ttl_ms),
     .unit = " seconds",
     .metavar = "SECONDS",
     .help = "remember absent keys this long (default 5)"},
    {.name = "ttl-jitter",
     .type = OT_UINT,
     .field = F(ttl_jitter),
     .max = 50,
     .lib = LIB_UINT,
     .lib_field = L(ttl_jitter_percent),
     .unit = " percent",
     .metavar = "PERCENT",
     .help = "spread TTLs by +-PERCENT, 0 to 50 (default 0)"},
    {.name = "seckill-strategy",
     .type = OT_ENUM,
     .field = F(seckill_strategy),
     .choices = strategy_choices,
     .lib = LIB_INT,
     .lib_field = L(seckill_strategy),
     .metavar = "S",
     .help = "how an order takes stock: stock (guard stock > 0,\n"
             "default) or version (guard on the version read,\n"
             "retried; sells less under contention)"},
    {.name = "seckill-retries",
     .type = OT_UINT,
     .field = F(seckill_retries),
     .max = SQLCACHED_SECKILL_RETRIES_MAX,
     .lib = LIB_INT,
     .lib_field = L(seckill_retries),
     .metavar = "N",
     .help = "version strategy: retries per order (default 3)"},
    {.name = "on-write",
     .type = OT_ENUM,
     .field = F(on_write),
     .choices = on_write_choices,
     .lib = LIB_INT,
     .lib_field = L(on_write),
     .metavar = "MODE",
     .help = "after a committed write, the cached copy of its key:\n"
             "replace (with the value written, default) or\n"
             "invalidate (delete it: update-then-delete)"},
    {.name = "hotkeys",
     .type = OT_ENUM,
     .field = F(hotkeys),
     .choices = on_off_choices,
     .lib = LIB_INT,
     .lib_field = L(hotkeys),
     .metavar = "on|off",
     .help = "count KV reads for GET /v1/stats/hotkeys (default on)"},
    {.name = "busy-timeout",
     .type = OT_UINT,
     .field = F(busy_timeout_ms),
     .min = 1,
     .max = 600000,
     .lib = LIB_INT,
     .lib_field = L(busy_timeout_ms),
     .unit = " ms",
     .metavar = "MS",
     .help = "wait this long for a database lock held by another\n"
             "process before answering 503 (default 5000)"},
    {.name = "shutdown-timeout",
     .type = OT_UINT,
     .field = F(shutdown_timeout_ms),
     .min = 1,
     .max = 600000,
     .dflt = "10000",
     .unit = " ms",
     .metavar = "MS",
     .help = "on SIGTERM, how long requests in flight get; writes\n"
             "not committed by then get 503 (default 10000)"},
    {.name = "advertise",
     .type = OT_CUSTOM,
     .set = set_advertise,
     .show = show_advertise,
     .expected = "HOST:PORT",
     .metavar = "HOST:PORT",
     .help = "cluster (a shared PostgreSQL): where the other nodes\n"
             "reach this one (default: the --listen address)"},
    {.name = "member-timeout",
     .type = OT_UINT,
     .field = F(member_timeout_ms),
     .min = SQLCACHED_MEMBER_TIMEOUT_MIN,
     .max = SQLCACHED_MEMBER_TIMEOUT_MAX,
     .lib = LIB_INT64,
     .lib_field = L(member_timeout_ms),
     .unit = " ms",
     .metavar = "MS",
     .help = "cluster: a node that has not renewed its membership\n"
             "for this long is down (default 2000)"},
    {.name = "watch-history",
     .type = OT_UINT,
     .field = F(watch_history),
     .min = SQLCACHED_WATCH_HISTORY_MIN,
     .max = 1000000000,
     .lib = LIB_INT64,
     .lib_field = L(watch_history),
     .metavar = "N",
     .help = "changes kept for GET /v1/watch?since= (default 100000)"},
    {.name = "max-watchers",
     .type = OT_UINT,
     .field = F(max_watchers),
     .min = 1,
     .max = 1000000,
     .lib = LIB_UINT,
     .lib_field = L(max_watchers),
     .metavar = "N",
     .help = "watch streams and blocking GETs open at once;\n"
             "more get 503 (default 1000)"},
    {.name = "log-level",
     .type = OT_ENUM,
     .field = F(log_level),
     .choices = level_choices,
     .dflt = "info",
     .metavar = "LEVEL",
     .help = "error, warn, info (default) or debug"},
    {.name = "access-log",
     .type = OT_PATH,
     .field = F(access_log),
     .expected = "a path or -",
     .metavar = "PATH",
     .help = "log one line per request (- = stderr)"},
    {.name = "backup-dir",
     .type = OT_PATH,
     .field = F(backup_dir),
     .metavar = "DIR",
     .help = "allow POST /v1/admin/backup into DIR"},
    {.name = "admin-token",
     .type = OT_TOKEN,
     .field = F(admin_token),
     .flags = OF_SECRET,
     .env = "SQLCACHED_ADMIN_TOKEN",
     .metavar = "TOKEN",
     .help = "token for /v1/admin/... (or env SQLCACHED_ADMIN_TOKEN)"},
    {.name = "config",
     .type = OT_STRING,
     .field = F(config_path),
     .flags = OF_NO_FILE,
     .metavar = "FILE",
     .help = "read 'key = value' settings (flags win)"},
    {.name = "restore",
     .type = OT_PATH,
     .field = F(restore_from),
     .flags = OF_NO_FILE | OF_NO_JSON,
     .metavar = "FILE",
     .help = "copy a backup into --db, then exit"},
    {.name = "help",
     .short_name = 'h',
     .type = OT_HELP,
     .flags = OF_NO_FILE | OF_NO_JSON,
     .help = "show this help and exit"},
    {.name = "version",
     .short_name = 'V',
     .type = OT_VERSION,
     .flags = OF_NO_FILE | OF_NO_JSON,
     .help = "show the version and exit"},
    /* Testing only: see "Testing-only flags" in docs/operations.md. */
    {.name = "testing-max-pages",
     .type = OT_UINT,
     .field = F(testing_max_pages),
     .min = 1,
     .max = 2147483647u,
     .flags = OF_TESTING,
     .expected = "a page count"},
    {.name = "testing-disable-fill-guard",
     .type = OT_FLAG,
     .field = F(testing_disable_fill_guard),
     .flags = OF_TESTING},
    {.name = "testing-fill-delay-us",
     .type = OT_UINT,
     .field = F(testing_fill_delay_us),
     .min = 1,
     .max = 1000000,
     .flags = OF_TESTING},
    {.name = "testing-seckill-naive",
     .type = OT_FLAG,
     .field = F(testing_seckill_naive),
     .flags = OF_TESTING},
    {.name = "testing-payment-unguarded",
     .type = OT_FLAG,
     .field = F(testing_payment_unguarded),
     .flags = OF_TESTING},
    {.name = "testing-skip-cluster-invalidation",
     .type = OT_FLAG,
     .field = F(testing_skip_cluster_invalidation),
     .flags = OF_TESTING},
};
#define NOPTIONS (sizeof options / sizeof options[0])

#undef F
#undef L

static void *field_of(config_t *cfg, const option_def_t *o)
{
    return (char *)cfg + o->field;
}

static const void *field_in(const config_t *cfg, const option_def_t *o)
{
    return (const char *)cfg + o->field;
}

/* "--NAME: expected WHAT, got 'ARG'" (no ARG for a secret); -1. */
static int bad_value(const option_def_t *o, const char *arg, char *err, size_t errlen)
{
    char range[96];
    const char *what = o->expected;
    if (!what && o->type == OT_ENUM) { /* "a, b or c" */
        range[0] = '\0';
        for (const choice_t *c = o->choices; c->name; c++) {
            size_t n = strlen(range);
            snprintf(range + n, sizeof range - n, "%s%s",
                     c == o->choices ? ""
                     : c[1].name     ? ", "
                                     : " or ",
                     c->name);
        }
        what = range;
    } else if (!what) {
        snprintf(range, sizeof range, "%llu to %llu%s", o->min, o->max, o->unit ? o->unit : "");
        what = range;
    }
    if (o->flags & OF_SECRET)
        snprintf(err, errlen, "--%s: expected %s", o->name, what);
    else
        snprintf(err, errlen, "--%s: expected %s, got '%s'", o->name, what, arg);
    return -1;
}

/* Apply one option's value (NULL for OT_FLAG); 0 or -1 with a message in
 * err. A refused value leaves the setting as it was. */
static int apply_option(config_t *cfg, const option_def_t *o, const char *arg, char *err,
                        size_t errlen)
{
    void *f = field_of(cfg, o);
    unsigned u;
    size_t size;
    switch (o->type) {
    case OT_UINT:
        if (config_parse_uint(arg, (unsigned)o->min, (unsigned)o->max, &u) != 0)
            return bad_value(o, arg, err, errlen);
        *(unsigned *)f = u;
        return 0;
    case OT_SIZE:
        if (config_parse_size(arg, &size) != 0 || size < o->min || size > o->max)
            return bad_value(o, arg, err, errlen);
        *(size_t *)f = size;
        return 0;
    case OT_SECONDS:
        if (config_parse_uint(arg, (unsigned)o->min, (unsigned)o->max, &u) != 0)
            return bad_value(o, arg, err, errlen);
        *(int64_t *)f = (int64_t)u * 1000;
        return 0;
    case OT_ENUM:
        for (const choice_t *c = o->choices; c->name; c++)
            if (strcmp(arg, c->name) == 0)
                return *(int *)f = c->value, 0;
        return bad_value(o, arg, err, errlen);
    case OT_PATH:
        if (!*arg && o->expected)
            return snprintf(err, errlen, "--%s: expected %s", o->name, o->expected), -1;
        if (!*arg)
            return snprintf(err, errlen, "--%s: the path is empty", o->name), -1;
        *(const char **)f = arg;
        return 0;
    case OT_STRING:
        *(const char **)f = arg;
        return 0;
    case OT_TOKEN:
        if (!token_ok(arg))
            return snprintf(err, errlen,
                            "--%s: expected 1 to 4096 printable ASCII characters "
                            "without spaces",
                            o->name),
                   -1;
        *(const char **)f = arg;
        return 0;
    case OT_FLAG:
        *(int *)f = 1;
        return 0;
    case OT_CUSTOM:
        return o->set(cfg, o, arg, err, errlen);
    default:
        return snprintf(err, errlen, "unknown option"), -1;
    }
}

static int set_listen(config_t *cfg, const option_def_t *o, const char *arg, char *err,
                      size_t errlen)
{
    if (config_parse_listen(arg, cfg->listen_host, sizeof cfg->listen_host, &cfg->listen_port) != 0)
        return bad_value(o, arg, err, errlen);
    return 0;
}

static int set_advertise(config_t *cfg, const option_def_t *o, const char *arg, char *err,
                         size_t errlen)
{
    char host[256];
    uint16_t port;
    if (config_parse_listen(arg, host, sizeof host, &port) != 0 || port == 0)
        return bad_value(o, arg, err, errlen);
    snprintf(cfg->advertise, sizeof cfg->advertise, "%s", arg);
    return 0;
}

static int set_policy(config_t *cfg, const option_def_t *o, const char *arg, char *err,
                      size_t errlen)
{
    if (!sqlcached_policy_valid(arg))
        return snprintf(err, errlen, "--%s: unknown eviction policy '%s'", o->name, arg), -1;
    cfg->policy = arg;
    return 0;
}

/* The default of a library-backed option: sqlcached_options_init()'s. */
static void library_default(config_t *cfg, const option_def_t *o, const sqlcached_options_t *lib)
{
    const char *p = (const char *)lib + o->lib_field;
    long long v = 0;
    switch (o->lib) {
    case LIB_INT:
        v = *(const int *)p;
        break;
    case LIB_UINT:
        v = *(const unsigned *)p;
        break;
    case LIB_INT64:
        v = *(const int64_t *)p;
        break;
    case LIB_SIZE:
        *(size_t *)field_of(cfg, o) = *(const size_t *)p;
        return;
    case LIB_STR:
        *(const char **)field_of(cfg, o) = *(const char *const *)p;
        return;
    default:
        return;
    }
    if (o->type == OT_UINT)
        *(unsigned *)field_of(cfg, o) = (unsigned)v;
    else if (o->type == OT_SECONDS)
        *(int64_t *)field_of(cfg, o) = v; /* ms on both sides */
    else
        *(int *)field_of(cfg, o) = (int)v;
}

void config_defaults(config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    sqlcached_options_t lib;
    sqlcached_options_init(&lib);
    char err[256];
    for (size_t i = 0; i < NOPTIONS; i++) {
        const option_def_t *o = &options[i];
        if (o->lib != LIB_NONE)
            library_default(cfg, o, &lib);
        else if (o->dflt && apply_option(cfg, o, o->dflt, err, sizeof err) != 0)
            abort(); /* a row's own default must parse */
    }
    cfg->threads = usable_cpus();
}

#define HELP_COLUMN 25
static char usage_text[4096];

static void usage_append(const char *s, size_t n)
{
    size_t used = strlen(usage_text);
    if (n > sizeof usage_text - 1 - used)
        n = sizeof usage_text - 1 - used;
    memcpy(usage_text + used, s, n);
    usage_text[used + n] = '\0';
}

/* One option's lines: "  --name METAVAR", padded to HELP_COLUMN, then its
 * help lines (the later ones indented to HELP_COLUMN). */
static void usage_option(const option_def_t *o)
{
    char head[96];
    int n = o->short_name ? snprintf(head, sizeof head, "  -%c, --%s", o->short_name, o->name)
                          : snprintf(head, sizeof head, "  --%s", o->name);
    if (o->metavar)
        n += snprintf(head + n, sizeof head - (size_t)n, " %s", o->metavar);
    usage_append(head, strlen(head));
    int pad = n < HELP_COLUMN ? HELP_COLUMN - n : 1;
    for (const char *line = o->help; line;) {
        const char *nl = strchr(line, '\n');
        usage_append("                                ", (size_t)pad);
        usage_append(line, nl ? (size_t)(nl - line) : strlen(line));
        usage_append("\n", 1);
        line = nl ? nl + 1 : NULL;
        pad = HELP_COLUMN;
    }
}

static void build_usage(void)
{
    static const char head[] =
        "Usage: sqlcached [OPTION]...\n"
        "A persistent cache: SQLite source of truth, in-memory tier, HTTP/JSON API.\n"
        "\n";
    usage_append(head, sizeof head - 1);
    for (size_t i = 0; i < NOPTIONS; i++)
        if (options[i].help && !(options[i].flags & OF_TESTING))
            usage_option(&options[i]);
}

const char *config_usage(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, build_usage);
    return usage_text;
}

void config_free(config_t *cfg)
{
    for (int i = 0; i < cfg->nowned; i++)
        free(cfg->owned[i]);
    cfg->nowned = 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* The row of a config-file key: a flag taking a value, not testing-only. */
static const option_def_t *option_by_name(const char *name)
{
    for (size_t i = 0; i < NOPTIONS; i++) {
        const option_def_t *o = &options[i];
        if (strcmp(o->name, name) == 0 && !(o->flags & (OF_NO_FILE | OF_TESTING)) &&
            o->type != OT_FLAG)
            return o;
    }
    return NULL;
}

/* Apply one "key = value" line; 0, or -1 with a message. */
static int apply_line(config_t *cfg, char *line, char *err, size_t errlen)
{
    char *eq = strchr(line, '=');
    if (!eq)
        return snprintf(err, errlen, "expected 'key = value'"), -1;
    *eq = '\0';
    char *key = trim(line), *value = trim(eq + 1);
    size_t n = strlen(value);
    if (n >= 2 && value[0] == '"' && value[n - 1] == '"') {
        value[n - 1] = '\0';
        value++;
    }
    const option_def_t *opt = option_by_name(key);
    if (!opt)
        return snprintf(err, errlen, "unknown setting '%s'", key), -1;
    if (cfg->nowned == (int)(sizeof cfg->owned / sizeof cfg->owned[0]))
        return snprintf(err, errlen, "too many settings"), -1;
    char *copy = strdup(value);
    if (!copy)
        return snprintf(err, errlen, "out of memory"), -1;
    cfg->owned[cfg->nowned++] = copy;
    return apply_option(cfg, opt, copy, err, errlen);
}

int config_parse_text(config_t *cfg, const char *text, size_t len, const char *name, char *err,
                      size_t errlen)
{
    char line[CONFIG_LINE_MAX + 1], msg[512];
    int lineno = 0;
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        lineno++;
        if (n > CONFIG_LINE_MAX)
            return snprintf(err, errlen, "%s:%d: line longer than %d bytes", name, lineno,
                            CONFIG_LINE_MAX),
                   -1;
        if (memchr(text + pos, '\0', n))
            return snprintf(err, errlen, "%s:%d: NUL byte in the line", name, lineno), -1;
        memcpy(line, text + pos, n);
        line[n] = '\0';
        pos += n + (nl ? 1 : 0);
        char *t = trim(line);
        if (*t == '\0' || *t == '#')
            continue;
        if (apply_line(cfg, t, msg, sizeof msg) != 0)
            return snprintf(err, errlen, "%s:%d: %s", name, lineno, msg), -1;
    }
    return 0;
}

/* Read the config file (at most CONFIG_FILE_MAX bytes) and apply it; 0, or
 * -1 with "FILE:LINE: message". */
static int load_file(config_t *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return snprintf(err, errlen, "--config: cannot read %s: %s", path, strerror(errno)), -1;
    char *text = malloc(CONFIG_FILE_MAX + 1);
    size_t n = text ? fread(text, 1, CONFIG_FILE_MAX + 1, f) : 0;
    int rc = -1;
    if (!text)
        snprintf(err, errlen, "--config: out of memory");
    else if (ferror(f))
        snprintf(err, errlen, "--config: cannot read %s: %s", path, strerror(errno));
    else if (n > CONFIG_FILE_MAX)
        snprintf(err, errlen, "--config: %s is larger than %d bytes", path, CONFIG_FILE_MAX);
    else
        rc = config_parse_text(cfg, text, n, path, err, errlen);
    free(text);
    fclose(f);
    return rc;
}

/* The value of --config in argv, if any (before the full parse). */
static const char *find_config_flag(int argc, char **argv)
{
    const char *found = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            found = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            found = argv[i] + 9;
    }
    return found;
}

/* The options read from the environment (after the file, before the
 * flags); a bad value names the variable. */
static int apply_env(config_t *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < NOPTIONS; i++) {
        const option_def_t *o = &options[i];
        const char *v = o->env ? getenv(o->env) : NULL;
        char msg[512];
        if (v && apply_option(cfg, o, v, msg, sizeof msg) != 0) {
            const char *why = strstr(msg, ": ");
            snprintf(err, errlen, "%s: %s (unset it to disable)", o->env, why ? why + 2 : msg);
            return -1;
        }
    }
    return 0;
}

config_result_t config_parse(config_t *cfg, int argc, char **argv, char *err, size_t errlen)
{
    const char *file = find_config_flag(argc, argv);
    if (file && load_file(cfg, file, err, errlen) != 0)
        return CONFIG_ERROR;
    if (apply_env(cfg, err, errlen) != 0)
        return CONFIG_ERROR;
    struct option longopts[NOPTIONS + 1];
    for (size_t i = 0; i < NOPTIONS; i++) {
        const option_def_t *o = &options[i];
        bool has_arg = o->type != OT_FLAG && o->type != OT_HELP && o->type != OT_VERSION;
        longopts[i] = (struct option){o->name, has_arg ? required_argument : no_argument, NULL,
                                      o->short_name ? o->short_name : 256 + (int)i};
    }
    longopts[NOPTIONS] = (struct option){NULL, 0, NULL, 0};
    opterr = 0;
    optind = 1;
    int opt;
    while ((opt = getopt_long(argc, argv, ":hV", longopts, NULL)) != -1) {
        if (opt == 'h')
            return CONFIG_HELP;
        if (opt == 'V')
            return CONFIG_VERSION;
        if (opt == '?' || opt == ':') {
            const char *bad = argv[optind - 1];
            snprintf(err, errlen, opt == ':' ? "option %s needs a value" : "unknown option %s",
                     bad);
            return CONFIG_USAGE;
        }
        if (opt < 256 || opt - 256 >= (int)NOPTIONS ||
            apply_option(cfg, &options[opt - 256], optarg, err, errlen) != 0)
            return CONFIG_ERROR;
    }
    if (optind < argc) {
        snprintf(err, errlen, "unexpected argument '%s'", argv[optind]);
        return CONFIG_USAGE;
    }
    return CONFIG_OK;
}

static json_t *opt_string(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *show_listen(const config_t *cfg)
{
    char listen[300];
    snprintf(listen, sizeof listen, strchr(cfg->listen_host, ':') ? "[%s]:%u" : "%s:%u",
             cfg->listen_host, cfg->listen_port);
    return json_string(listen);
}

static json_t *show_db(const config_t *cfg)
{
    char db[1024];
    return json_string(config_db_display(cfg->db_path, db, sizeof db));
}

static json_t *show_advertise(const config_t *cfg)
{
    return opt_string(cfg->advertise[0] ? cfg->advertise : NULL);
}

static json_t *show_policy(const config_t *cfg)
{
    return opt_string(cfg->policy);
}

/* One option's value in the effective settings. */
static json_t *option_json(const config_t *cfg, const option_def_t *o)
{
    const void *f = field_in(cfg, o);
    if (o->flags & OF_SECRET)
        return *(const char *const *)f ? json_string("***") : json_null();
    if (o->show)
        return o->show(cfg);
    switch (o->type) {
    case OT_UINT:
        return json_integer((json_int_t) * (const unsigned *)f);
    case OT_SIZE:
        return json_integer((json_int_t) * (const size_t *)f);
    case OT_SECONDS:
        return json_integer((json_int_t)(*(const int64_t *)f / 1000));
    case OT_ENUM:
        for (const choice_t *c = o->choices; c->name; c++)
            if (c->value == *(const int *)f)
                return json_string(c->name);
        return json_null();
    case OT_PATH:
    case OT_STRING:
        return opt_string(*(const char *const *)f);
    default:
        return json_null();
    }
}

json_t *config_json(const config_t *cfg)
{
    json_t *doc = json_object();
    for (size_t i = 0; doc && i < NOPTIONS; i++) {
        const option_def_t *o = &options[i];
        if (o->flags & (OF_TESTING | OF_NO_JSON))
            continue;
        char key[64];
        snprintf(key, sizeof key, "%s", o->name);
        for (char *p = key; *p; p++)
            if (*p == '-')
                *p = '_';
        json_t *v = option_json(cfg, o);
        if (!v || json_object_set_new(doc, key, v) != 0) {
            json_decref(doc);
            doc = NULL;
        }
    }
    return doc;
}
