/*
 * config.c - command line and environment parsing for the daemon.
 *
 * Every value is validated here so that a bad flag is a clear message and a
 * non-zero exit at start-up, never a surprise at run time.
 */
#include "config.h"

#include <ctype.h>
#include <stdbool.h>
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"

#define MAX_BODY_LIMIT ((size_t)1 << 30)
#define SQLITE_CACHE_MAX ((size_t)1 << 40)

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

void config_defaults(config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->listen_host, sizeof cfg->listen_host, "127.0.0.1");
    cfg->listen_port = 8080;
    cfg->db_path = "sqlcached.db";
    cfg->threads = usable_cpus();
    cfg->max_body = 1024 * 1024;
    cfg->durability = SQLCACHED_DURABILITY_FULL;
    cfg->log_level = LOG_INFO;
    cfg->max_connections = 10000;
    cfg->connection_timeout_s = 60;
    cfg->cache_memory = 64u << 20;
    cfg->policy = "allkeys-lfu";
    cfg->negative_ttl_ms = 5000;
    cfg->seckill_strategy = SQLCACHED_SECKILL_STOCK;
    cfg->seckill_retries = 3;
    cfg->on_write = SQLCACHED_ON_WRITE_REPLACE;
    cfg->hotkeys = 1;
    cfg->busy_timeout_ms = 5000;
    cfg->sqlite_cache = 64u << 20;
    cfg->shutdown_timeout_ms = 10000;
    cfg->member_timeout_ms = 2000;
}

const char *config_usage(void)
{
    return "Usage: sqlcached [OPTION]...\n"
           "A persistent cache: SQLite source of truth, in-memory tier, HTTP/JSON API.\n"
           "\n"
           "  --listen HOST:PORT     address to serve on (default 127.0.0.1:8080)\n"
           "  --db PATH              database file (default ./sqlcached.db)\n"
           "  --threads N            worker threads (default: the CPUs it may run on)\n"
           "  --max-body BYTES       largest request body, e.g. 1M (default 1 MiB)\n"
           "  --auth-token TOKEN     require 'Authorization: Bearer TOKEN' on /v1/...\n"
           "                         (or env SQLCACHED_AUTH_TOKEN)\n"
           "  --durability MODE      full (fsync each commit, default) or normal\n"
           "  --max-connections N    concurrent connections (default 10000)\n"
           "  --timeout SECONDS      idle connection timeout (default 60)\n"
           "  --cache-memory BYTES   memory tier limit, e.g. 256MB (default 64MiB; 0 = off)\n"
           "  --sqlite-cache BYTES   SQLite page cache of the writer (default 64MiB); each\n"
           "                         reader connection gets at most 2000KiB of it\n"
           "  --policy NAME          eviction: allkeys-lfu (default), allkeys-lru,\n"
           "                         volatile-lru, volatile-lfu, allkeys-random,\n"
           "                         volatile-random, volatile-ttl, noeviction\n"
           "  --negative-ttl SECONDS remember absent keys this long (default 5)\n"
           "  --ttl-jitter PERCENT   spread TTLs by +-PERCENT, 0 to 50 (default 0)\n"
           "  --seckill-strategy S   how an order takes stock: stock (guard stock > 0,\n"
           "                         default) or version (guard on the version read,\n"
           "                         retried; sells less under contention)\n"
           "  --seckill-retries N    version strategy: retries per order (default 3)\n"
           "  --on-write MODE        after a committed write, the cached copy of its key:\n"
           "                         replace (with the value written, default) or\n"
           "                         invalidate (delete it: update-then-delete)\n"
           "  --hotkeys on|off       count KV reads for GET /v1/stats/hotkeys (default on)\n"
           "  --busy-timeout MS      wait this long for a database lock held by another\n"
           "                         process before answering 503 (default 5000)\n"
           "  --shutdown-timeout MS  on SIGTERM, how long requests in flight get; writes\n"
           "                         not committed by then get 503 (default 10000)\n"
           "  --advertise HOST:PORT  cluster (a shared PostgreSQL): where the other nodes\n"
           "                         reach this one (default: the --listen address)\n"
           "  --member-timeout MS    cluster: a node that has not renewed its membership\n"
           "                         for this long is down (default 2000)\n"
           "  --log-level LEVEL      error, warn, info (default) or debug\n"
           "  --access-log PATH      log one line per request (- = stderr)\n"
           "  --backup-dir DIR       allow POST /v1/admin/backup into DIR\n"
           "  --admin-token TOKEN    token for /v1/admin/... (or env SQLCACHED_ADMIN_TOKEN)\n"
           "  --config FILE          read 'key = value' settings (flags win)\n"
           "  --restore FILE         copy a backup into --db, then exit\n"
           "  -h, --help             show this help and exit\n"
           "  -V, --version          show the version and exit\n";
}

int config_parse_size(const char *s, size_t *out)
{
    if (!s || !isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    char *end;
    unsigned long long n = strtoull(s, &end, 10);
    if (errno)
        return -1;
    unsigned long long mult = 1;
    const char *units[][2] = {{"", "1"}, {"K", "K"}, {"KB", "K"}, {"KiB", "K"},
                              {"M", "M"}, {"MB", "M"}, {"MiB", "M"},
                              {"G", "G"}, {"GB", "G"}, {"GiB", "G"}, {"B", "1"}};
    size_t i;
    for (i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcasecmp(end, units[i][0]) == 0)
            break;
    if (i == sizeof units / sizeof units[0])
        return -1;
    switch (units[i][1][0]) {
    case 'K': mult = 1ULL << 10; break;
    case 'M': mult = 1ULL << 20; break;
    case 'G': mult = 1ULL << 30; break;
    default: break;
    }
    if (n > SIZE_MAX / mult)
        return -1;
    *out = (size_t)(n * mult);
    return 0;
}

static int parse_port(const char *s, uint16_t *port)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

int config_parse_listen(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    const char *colon;
    const char *h = s;
    size_t hl;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return -1;
        h = s + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || memchr(s, ':', (size_t)(colon - s)))
            return -1;
        hl = (size_t)(colon - s);
    }
    if (hl >= hostlen || parse_port(colon + 1, port) != 0)
        return -1;
    if (hl == 0)
        snprintf(host, hostlen, "127.0.0.1");
    else
        snprintf(host, hostlen, "%.*s", (int)hl, h);
    return 0;
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

int config_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || !isdigit((unsigned char)s[0]) || v < min || v > max)
        return -1;
    *out = (unsigned)v;
    return 0;
}

enum { OPT_LISTEN = 256, OPT_DB, OPT_THREADS, OPT_MAX_BODY, OPT_AUTH, OPT_DURABILITY,
       OPT_LOG_LEVEL, OPT_MAX_CONN, OPT_TIMEOUT, OPT_ACCESS_LOG, OPT_BACKUP_DIR, OPT_ADMIN,
       OPT_CONFIG, OPT_RESTORE, OPT_CACHE_MEMORY, OPT_POLICY, OPT_NEGATIVE_TTL,
       OPT_TTL_JITTER, OPT_SECKILL_STRATEGY, OPT_SECKILL_RETRIES, OPT_BUSY_TIMEOUT,
       OPT_SQLITE_CACHE,
       OPT_SHUTDOWN_TIMEOUT, OPT_ON_WRITE, OPT_ADVERTISE, OPT_MEMBER_TIMEOUT, OPT_HOTKEYS,
       /* testing-only flags from here on: hidden, and refused in a config file */
       OPT_TESTING_FIRST, OPT_TESTING_MAX_PAGES = OPT_TESTING_FIRST,
       OPT_TESTING_NO_FILL_GUARD, OPT_TESTING_FILL_DELAY, OPT_TESTING_SECKILL_NAIVE,
       OPT_TESTING_SKIP_CLUSTER_INVALIDATION };

static const struct option long_options[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"db", required_argument, NULL, OPT_DB},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"max-body", required_argument, NULL, OPT_MAX_BODY},
    {"auth-token", required_argument, NULL, OPT_AUTH},
    {"durability", required_argument, NULL, OPT_DURABILITY},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"max-connections", required_argument, NULL, OPT_MAX_CONN},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"access-log", required_argument, NULL, OPT_ACCESS_LOG},
    {"backup-dir", required_argument, NULL, OPT_BACKUP_DIR},
    {"admin-token", required_argument, NULL, OPT_ADMIN},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"restore", required_argument, NULL, OPT_RESTORE},
    {"cache-memory", required_argument, NULL, OPT_CACHE_MEMORY},
    {"sqlite-cache", required_argument, NULL, OPT_SQLITE_CACHE},
    {"policy", required_argument, NULL, OPT_POLICY},
    {"negative-ttl", required_argument, NULL, OPT_NEGATIVE_TTL},
    {"ttl-jitter", required_argument, NULL, OPT_TTL_JITTER},
    {"seckill-strategy", required_argument, NULL, OPT_SECKILL_STRATEGY},
    {"seckill-retries", required_argument, NULL, OPT_SECKILL_RETRIES},
    {"busy-timeout", required_argument, NULL, OPT_BUSY_TIMEOUT},
    {"shutdown-timeout", required_argument, NULL, OPT_SHUTDOWN_TIMEOUT},
    {"on-write", required_argument, NULL, OPT_ON_WRITE},
    {"hotkeys", required_argument, NULL, OPT_HOTKEYS},
    {"advertise", required_argument, NULL, OPT_ADVERTISE},
    {"member-timeout", required_argument, NULL, OPT_MEMBER_TIMEOUT},
    {"testing-max-pages", required_argument, NULL, OPT_TESTING_MAX_PAGES},
    {"testing-disable-fill-guard", no_argument, NULL, OPT_TESTING_NO_FILL_GUARD},
    {"testing-fill-delay-us", required_argument, NULL, OPT_TESTING_FILL_DELAY},
    {"testing-seckill-naive", no_argument, NULL, OPT_TESTING_SECKILL_NAIVE},
    {"testing-skip-cluster-invalidation", no_argument, NULL,
     OPT_TESTING_SKIP_CLUSTER_INVALIDATION},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

/* Apply one option; 0 or -1 with a message in err. */
static int apply_option(config_t *cfg, int opt, const char *arg, char *err, size_t errlen)
{
    int level;
    unsigned secs;
    size_t size;
    switch (opt) {
    case OPT_LISTEN:
        if (config_parse_listen(arg, cfg->listen_host, sizeof cfg->listen_host,
                                &cfg->listen_port) != 0)
            return snprintf(err, errlen, "--listen: expected HOST:PORT, got '%s'", arg), -1;
        return 0;
    case OPT_DB:
        if (!*arg)
            return snprintf(err, errlen, "--db: the path is empty"), -1;
        cfg->db_path = arg;
        return 0;
    case OPT_THREADS:
        if (config_parse_uint(arg, 1, 1024, &cfg->threads) != 0)
            return snprintf(err, errlen, "--threads: expected 1 to 1024, got '%s'", arg), -1;
        return 0;
    case OPT_MAX_BODY: /* a refused value leaves the setting as it was */
        if (config_parse_size(arg, &size) != 0 || size == 0 || size > MAX_BODY_LIMIT)
            return snprintf(err, errlen, "--max-body: expected a size from 1 byte to 1G, got '%s'",
                            arg), -1;
        cfg->max_body = size;
        return 0;
    case OPT_AUTH:
        if (!token_ok(arg))
            return snprintf(err, errlen, "--auth-token: expected 1 to 4096 printable ASCII "
                            "characters without spaces"), -1;
        cfg->auth_token = arg;
        return 0;
    case OPT_DURABILITY:
        if (strcmp(arg, "full") == 0)
            cfg->durability = SQLCACHED_DURABILITY_FULL;
        else if (strcmp(arg, "normal") == 0)
            cfg->durability = SQLCACHED_DURABILITY_NORMAL;
        else
            return snprintf(err, errlen, "--durability: expected full or normal, got '%s'", arg), -1;
        return 0;
    case OPT_LOG_LEVEL:
        if ((level = log_level_from_name(arg)) < 0)
            return snprintf(err, errlen, "--log-level: expected error, warn, info or debug, got '%s'",
                            arg), -1;
        cfg->log_level = level;
        return 0;
    case OPT_MAX_CONN:
        if (config_parse_uint(arg, 1, 1000000, &cfg->max_connections) != 0)
            return snprintf(err, errlen, "--max-connections: expected 1 to 1000000, got '%s'", arg), -1;
        return 0;
    case OPT_TIMEOUT:
        if (config_parse_uint(arg, 1, 86400, &cfg->connection_timeout_s) != 0)
            return snprintf(err, errlen, "--timeout: expected 1 to 86400 seconds, got '%s'", arg), -1;
        return 0;
    case OPT_ACCESS_LOG:
        if (!*arg)
            return snprintf(err, errlen, "--access-log: expected a path or -"), -1;
        cfg->access_log = arg;
        return 0;
    case OPT_BACKUP_DIR:
        if (!*arg)
            return snprintf(err, errlen, "--backup-dir: the path is empty"), -1;
        cfg->backup_dir = arg;
        return 0;
    case OPT_ADMIN:
        if (!token_ok(arg))
            return snprintf(err, errlen, "--admin-token: expected 1 to 4096 printable ASCII "
                            "characters without spaces"), -1;
        cfg->admin_token = arg;
        return 0;
    case OPT_CONFIG:
        cfg->config_path = arg;
        return 0;
    case OPT_CACHE_MEMORY:
        if (config_parse_size(arg, &cfg->cache_memory) != 0)
            return snprintf(err, errlen, "--cache-memory: expected a size like 64MB, got '%s'",
                            arg), -1;
        return 0;
    case OPT_SQLITE_CACHE: /* SQLite's cache_size counts KiB in an int */
        if (config_parse_size(arg, &size) != 0 || size > SQLITE_CACHE_MAX)
            return snprintf(err, errlen, "--sqlite-cache: expected a size from 0 to 1T, got '%s'",
                            arg), -1;
        cfg->sqlite_cache = size;
        return 0;
    case OPT_POLICY:
        if (!sqlcached_policy_valid(arg))
            return snprintf(err, errlen, "--policy: unknown eviction policy '%s'", arg), -1;
        cfg->policy = arg;
        return 0;
    case OPT_NEGATIVE_TTL:
        if (config_parse_uint(arg, 1, 86400, &secs) != 0)
            return snprintf(err, errlen, "--negative-ttl: expected 1 to 86400 seconds, got '%s'",
                            arg), -1;
        cfg->negative_ttl_ms = (int64_t)secs * 1000;
        return 0;
    case OPT_TTL_JITTER:
        if (config_parse_uint(arg, 0, 50, &cfg->ttl_jitter) != 0)
            return snprintf(err, errlen, "--ttl-jitter: expected 0 to 50 percent, got '%s'",
                            arg), -1;
        return 0;
    case OPT_BUSY_TIMEOUT:
        if (config_parse_uint(arg, 1, 600000, &cfg->busy_timeout_ms) != 0)
            return snprintf(err, errlen, "--busy-timeout: expected 1 to 600000 ms, got '%s'",
                            arg), -1;
        return 0;
    case OPT_SHUTDOWN_TIMEOUT:
        if (config_parse_uint(arg, 1, 600000, &cfg->shutdown_timeout_ms) != 0)
            return snprintf(err, errlen,
                            "--shutdown-timeout: expected 1 to 600000 ms, got '%s'", arg), -1;
        return 0;
    case OPT_TESTING_MAX_PAGES:
        if (config_parse_uint(arg, 1, 2147483647u, &cfg->testing_max_pages) != 0)
            return snprintf(err, errlen, "--testing-max-pages: expected a page count, got '%s'",
                            arg), -1;
        return 0;
    case OPT_TESTING_NO_FILL_GUARD:
        cfg->testing_disable_fill_guard = 1;
        return 0;
    case OPT_TESTING_SKIP_CLUSTER_INVALIDATION:
        cfg->testing_skip_cluster_invalidation = 1;
        return 0;
    case OPT_ADVERTISE: {
        char host[256];
        uint16_t port;
        if (config_parse_listen(arg, host, sizeof host, &port) != 0 || port == 0)
            return snprintf(err, errlen, "--advertise: expected HOST:PORT, got '%s'", arg), -1;
        snprintf(cfg->advertise, sizeof cfg->advertise, "%s", arg);
        return 0;
    }
    case OPT_MEMBER_TIMEOUT:
        if (config_parse_uint(arg, SQLCACHED_MEMBER_TIMEOUT_MIN, SQLCACHED_MEMBER_TIMEOUT_MAX,
                              &cfg->member_timeout_ms) != 0)
            return snprintf(err, errlen, "--member-timeout: expected %d to %d ms, got '%s'",
                            SQLCACHED_MEMBER_TIMEOUT_MIN, SQLCACHED_MEMBER_TIMEOUT_MAX, arg), -1;
        return 0;
    case OPT_TESTING_SECKILL_NAIVE:
        cfg->testing_seckill_naive = 1;
        return 0;
    case OPT_HOTKEYS:
        if (strcmp(arg, "on") == 0 || strcmp(arg, "off") == 0)
            cfg->hotkeys = strcmp(arg, "on") == 0;
        else
            return snprintf(err, errlen, "--hotkeys: expected on or off, got '%s'", arg), -1;
        return 0;
    case OPT_ON_WRITE:
        if (strcmp(arg, "replace") == 0)
            cfg->on_write = SQLCACHED_ON_WRITE_REPLACE;
        else if (strcmp(arg, "invalidate") == 0)
            cfg->on_write = SQLCACHED_ON_WRITE_INVALIDATE;
        else
            return snprintf(err, errlen, "--on-write: expected replace or invalidate, got '%s'",
                            arg), -1;
        return 0;
    case OPT_TESTING_FILL_DELAY:
        if (config_parse_uint(arg, 1, 1000000, &cfg->testing_fill_delay_us) != 0)
            return snprintf(err, errlen, "--testing-fill-delay-us: expected 1 to 1000000, got '%s'",
                            arg), -1;
        return 0;
    case OPT_RESTORE:
        if (!*arg)
            return snprintf(err, errlen, "--restore: the path is empty"), -1;
        cfg->restore_from = arg;
        return 0;
    case OPT_SECKILL_STRATEGY:
        if (strcmp(arg, "stock") == 0)
            cfg->seckill_strategy = SQLCACHED_SECKILL_STOCK;
        else if (strcmp(arg, "version") == 0)
            cfg->seckill_strategy = SQLCACHED_SECKILL_VERSION;
        else
            return snprintf(err, errlen, "--seckill-strategy: expected stock or version, got '%s'",
                            arg), -1;
        return 0;
    case OPT_SECKILL_RETRIES:
        if (config_parse_uint(arg, 0, SQLCACHED_SECKILL_RETRIES_MAX, &cfg->seckill_retries) != 0)
            return snprintf(err, errlen, "--seckill-retries: expected 0 to %d, got '%s'",
                            SQLCACHED_SECKILL_RETRIES_MAX, arg), -1;
        return 0;
    default:
        return snprintf(err, errlen, "unknown option"), -1;
    }
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

static int option_by_name(const char *name)
{
    for (const struct option *o = long_options; o->name; o++)
        if (strcmp(o->name, name) == 0 && o->has_arg == required_argument &&
            o->val != OPT_CONFIG && o->val != OPT_RESTORE && o->val < OPT_TESTING_FIRST)
            return o->val;
    return -1;
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
    int opt = option_by_name(key);
    if (opt < 0)
        return snprintf(err, errlen, "unknown setting '%s'", key), -1;
    if (cfg->nowned == (int)(sizeof cfg->owned / sizeof cfg->owned[0]))
        return snprintf(err, errlen, "too many settings"), -1;
    char *copy = strdup(value);
    if (!copy)
        return snprintf(err, errlen, "out of memory"), -1;
    cfg->owned[cfg->nowned++] = copy;
    return apply_option(cfg, opt, copy, err, errlen);
}

int config_parse_text(config_t *cfg, const char *text, size_t len, const char *name,
                      char *err, size_t errlen)
{
    char line[CONFIG_LINE_MAX + 1], msg[512];
    int lineno = 0;
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        lineno++;
        if (n > CONFIG_LINE_MAX)
            return snprintf(err, errlen, "%s:%d: line longer than %d bytes", name, lineno,
                            CONFIG_LINE_MAX), -1;
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

static int apply_env(config_t *cfg, const char *name, int opt, char *err, size_t errlen)
{
    const char *v = getenv(name);
    if (v && apply_option(cfg, opt, v, err, errlen) != 0) {
        snprintf(err, errlen, "%s: expected 1 to 4096 printable ASCII characters without "
                 "spaces (unset it to disable)", name);
        return -1;
    }
    return 0;
}

config_result_t config_parse(config_t *cfg, int argc, char **argv, char *err, size_t errlen)
{
    const char *file = find_config_flag(argc, argv);
    if (file && load_file(cfg, file, err, errlen) != 0)
        return CONFIG_ERROR;
    if (apply_env(cfg, "SQLCACHED_AUTH_TOKEN", OPT_AUTH, err, errlen) != 0 ||
        apply_env(cfg, "SQLCACHED_ADMIN_TOKEN", OPT_ADMIN, err, errlen) != 0)
        return CONFIG_ERROR;
    opterr = 0;
    optind = 1;
    int opt;
    while ((opt = getopt_long(argc, argv, ":hV", long_options, NULL)) != -1) {
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
        if (apply_option(cfg, opt, optarg, err, errlen) != 0)
            return CONFIG_ERROR;
    }
    if (optind < argc) {
        snprintf(err, errlen, "unexpected argument '%s'", argv[optind]);
        return CONFIG_USAGE;
    }
    return CONFIG_OK;
}

/* Copy src[0..n) to the end of the string in buf (truncating). */
static void append(char *buf, size_t len, const char *src, size_t n)
{
    size_t used = strlen(buf);
    if (used + 1 >= len)
        return;
    if (n > len - used - 1)
        n = len - used - 1;
    memcpy(buf + used, src, n);
    buf[used + n] = '\0';
}

const char *config_db_display(const char *db, char *buf, size_t len)
{
    if (!len)
        return buf;
    buf[0] = '\0';
    const char *scheme_end = strstr(db, "://");
    if (strncmp(db, "postgres", 8) != 0 || !scheme_end) {
        append(buf, len, db, strlen(db));
        return buf;
    }
    const char *auth = scheme_end + 3;
    const char *at = strchr(auth, '@'), *slash = strchr(auth, '/');
    const char *colon = strchr(auth, ':');
    const char *p = db;
    if (at && (!slash || at < slash) && colon && colon < at) { /* user:password@ */
        append(buf, len, p, (size_t)(colon + 1 - p));
        append(buf, len, "***", 3);
        p = at;
    }
    for (const char *q; (q = strstr(p, "password=")) != NULL;) {
        if (q > db && q[-1] != '?' && q[-1] != '&') { /* not a parameter name */
            append(buf, len, p, (size_t)(q + 9 - p));
            p = q + 9;
            continue;
        }
        append(buf, len, p, (size_t)(q + 9 - p));
        append(buf, len, "***", 3);
        p = q + 9 + strcspn(q + 9, "&");
    }
    append(buf, len, p, strlen(p));
    return buf;
}

static json_t *opt_string(const char *s)
{
    return s ? json_string(s) : json_null();
}

json_t *config_json(const config_t *cfg)
{
    char listen[300];
    snprintf(listen, sizeof listen, strchr(cfg->listen_host, ':') ? "[%s]:%u" : "%s:%u",
             cfg->listen_host, cfg->listen_port);
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    char db[1024];
    config_db_display(cfg->db_path, db, sizeof db);
    json_t *doc = json_pack("{s:s, s:s, s:i, s:I, s:o, s:s, s:s, s:i, s:i, s:o, s:o, s:o, s:o}",
                     "listen", listen, "db", db, "threads", (int)cfg->threads,
                     "max_body", (json_int_t)cfg->max_body,
                     "auth_token", cfg->auth_token ? json_string("***") : json_null(),
                     "durability", cfg->durability == SQLCACHED_DURABILITY_FULL ? "full" : "normal",
                     "log_level", levels[cfg->log_level & 3],
                     "max_connections", (int)cfg->max_connections,
                     "timeout", (int)cfg->connection_timeout_s,
                     "access_log", opt_string(cfg->access_log),
                     "backup_dir", opt_string(cfg->backup_dir),
                     "admin_token", cfg->admin_token ? json_string("***") : json_null(),
                     "config", opt_string(cfg->config_path));
    if (doc && json_object_update_new(
                   doc, json_pack("{s:I, s:s, s:I, s:i, s:s, s:i, s:i, s:i}", "cache_memory",
                                  (json_int_t)cfg->cache_memory, "policy", cfg->policy,
                                  "negative_ttl", (json_int_t)(cfg->negative_ttl_ms / 1000),
                                  "ttl_jitter", (int)cfg->ttl_jitter, "seckill_strategy",
                                  cfg->seckill_strategy == SQLCACHED_SECKILL_VERSION ? "version"
                                                                                     : "stock",
                                  "seckill_retries", (int)cfg->seckill_retries, "busy_timeout",
                                  (int)cfg->busy_timeout_ms, "shutdown_timeout",
                                  (int)cfg->shutdown_timeout_ms)) != 0) {
        json_decref(doc);
        return NULL;
    }
    if (doc && (json_object_set_new(doc, "sqlite_cache",
                                    json_integer((json_int_t)cfg->sqlite_cache)) != 0 ||
                json_object_set_new(doc, "on_write",
                                    json_string(cfg->on_write == SQLCACHED_ON_WRITE_INVALIDATE
                                                    ? "invalidate"
                                                    : "replace")) != 0 ||
                json_object_set_new(doc, "advertise", opt_string(cfg->advertise[0]
                                                                     ? cfg->advertise
                                                                     : NULL)) != 0 ||
                json_object_set_new(doc, "member_timeout",
                                    json_integer((json_int_t)cfg->member_timeout_ms)) != 0 ||
                json_object_set_new(doc, "hotkeys", json_string(cfg->hotkeys ? "on" : "off")) !=
                    0)) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}
