/*
 * test_config.c - tests of src/config.c: flags, environment, parsers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

static config_result_t parse(config_t *cfg, char **argv, char *err)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    config_defaults(cfg);
    return config_parse(cfg, argc, argv, err, 256);
}

static void test_config_defaults(void **state)
{
    (void)state;
    config_t cfg;
    char err[256];
    unsetenv("SQLCACHED_AUTH_TOKEN");
    char *argv[] = {"sqlcached", NULL};
    assert_int_equal(parse(&cfg, argv, err), CONFIG_OK);
    assert_string_equal(cfg.listen_host, "127.0.0.1");
    assert_int_equal(cfg.listen_port, 8080);
    assert_string_equal(cfg.db_path, "sqlcached.db");
    assert_int_equal(cfg.max_body, 1024 * 1024);
    assert_null(cfg.auth_token);
    assert_int_equal(cfg.durability, SQLCACHED_DURABILITY_FULL);
    assert_true(cfg.threads >= 1);
    assert_int_equal(cfg.seckill_strategy, SQLCACHED_SECKILL_STOCK);
    assert_int_equal(cfg.seckill_retries, 3);
}

static void test_config_flags(void **state)
{
    (void)state;
    config_t cfg;
    char err[256];
    char *argv[] = {"sqlcached",
                    "--listen",
                    "0.0.0.0:9000",
                    "--db",
                    "/tmp/x.db",
                    "--threads",
                    "4",
                    "--max-body=64KiB",
                    "--auth-token",
                    "s3cret",
                    "--durability",
                    "normal",
                    "--log-level",
                    "debug",
                    "--seckill-strategy",
                    "version",
                    "--seckill-retries",
                    "0",
                    NULL};
    assert_int_equal(parse(&cfg, argv, err), CONFIG_OK);
    assert_string_equal(cfg.listen_host, "0.0.0.0");
    assert_int_equal(cfg.listen_port, 9000);
    assert_string_equal(cfg.db_path, "/tmp/x.db");
    assert_int_equal(cfg.threads, 4);
    assert_int_equal(cfg.max_body, 64 * 1024);
    assert_string_equal(cfg.auth_token, "s3cret");
    assert_int_equal(cfg.durability, SQLCACHED_DURABILITY_NORMAL);
    assert_int_equal(cfg.log_level, LOG_DEBUG);
    assert_int_equal(cfg.seckill_strategy, SQLCACHED_SECKILL_VERSION);
    assert_int_equal(cfg.seckill_retries, 0);
}

static void test_config_env_token_and_flag_wins(void **state)
{
    (void)state;
    config_t cfg;
    char err[256];
    setenv("SQLCACHED_AUTH_TOKEN", "from-env", 1);
    char *argv1[] = {"sqlcached", NULL};
    assert_int_equal(parse(&cfg, argv1, err), CONFIG_OK);
    assert_string_equal(cfg.auth_token, "from-env");
    char *argv2[] = {"sqlcached", "--auth-token", "from-flag", NULL};
    assert_int_equal(parse(&cfg, argv2, err), CONFIG_OK);
    assert_string_equal(cfg.auth_token, "from-flag");
    setenv("SQLCACHED_AUTH_TOKEN", "", 1);
    assert_int_equal(parse(&cfg, argv1, err), CONFIG_ERROR);
    unsetenv("SQLCACHED_AUTH_TOKEN");
}

static void test_config_rejects_bad_values(void **state)
{
    (void)state;
    config_t cfg;
    char err[256];
    const char *bad[][2] = {
        {"--listen", "nope"},
        {"--listen", "127.0.0.1:99999"},
        {"--listen", "1.2.3.4:x"},
        {"--threads", "0"},
        {"--threads", "-1"},
        {"--threads", "many"},
        {"--max-body", "0"},
        {"--max-body", "1T"},
        {"--max-body", "-5"},
        {"--durability", "sometimes"},
        {"--log-level", "loud"},
        {"--auth-token", ""},
        {"--auth-token", "has space"},
        {"--db", ""},
        {"--seckill-strategy", "fast"},
        {"--seckill-strategy", ""},
        {"--seckill-retries", "-1"},
        {"--seckill-retries", "1001"},
        {"--seckill-retries", "x"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *argv[] = {"sqlcached", (char *)bad[i][0], (char *)bad[i][1], NULL};
        err[0] = '\0';
        assert_int_equal(parse(&cfg, argv, err), CONFIG_ERROR);
        assert_non_null(strstr(err, bad[i][0]));
    }
}

static void test_config_usage_errors(void **state)
{
    (void)state;
    config_t cfg;
    char err[256];
    char *unknown[] = {"sqlcached", "--frobnicate", NULL};
    assert_int_equal(parse(&cfg, unknown, err), CONFIG_USAGE);
    assert_non_null(strstr(err, "--frobnicate"));
    char *missing[] = {"sqlcached", "--db", NULL};
    assert_int_equal(parse(&cfg, missing, err), CONFIG_USAGE);
    char *extra[] = {"sqlcached", "stray", NULL};
    assert_int_equal(parse(&cfg, extra, err), CONFIG_USAGE);
    char *help[] = {"sqlcached", "--help", NULL};
    assert_int_equal(parse(&cfg, help, err), CONFIG_HELP);
    char *version[] = {"sqlcached", "-V", NULL};
    assert_int_equal(parse(&cfg, version, err), CONFIG_VERSION);
}

static void test_config_parse_size(void **state)
{
    (void)state;
    size_t n;
    assert_int_equal(config_parse_size("1048576", &n), 0);
    assert_int_equal(n, 1048576);
    assert_int_equal(config_parse_size("64MB", &n), 0);
    assert_int_equal(n, 64u << 20);
    assert_int_equal(config_parse_size("1g", &n), 0);
    assert_int_equal(n, 1u << 30);
    assert_int_equal(config_parse_size("2KiB", &n), 0);
    assert_int_equal(n, 2048);
    assert_int_equal(config_parse_size("", &n), -1);
    assert_int_equal(config_parse_size("MB", &n), -1);
    assert_int_equal(config_parse_size("12 MB", &n), -1);
    assert_int_equal(config_parse_size("99999999999999999999999", &n), -1);
    assert_int_equal(config_parse_size("18446744073709551615G", &n), -1);
}

static void test_config_parse_listen(void **state)
{
    (void)state;
    char host[64];
    uint16_t port;
    assert_int_equal(config_parse_listen("[::1]:8081", host, sizeof host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 8081);
    assert_int_equal(config_parse_listen(":0", host, sizeof host, &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 0);
    assert_int_equal(config_parse_listen("::1:80", host, sizeof host, &port), -1);
    assert_int_equal(config_parse_listen("host", host, sizeof host, &port), -1);
}

static void test_config_file_then_env_then_flags(void **state)
{
    (void)state;
    char path[] = "/tmp/sqlcached-conf-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "# comment\n\n  listen = 127.0.0.1:9100 \nthreads=3\n"
                       "db = \"/tmp/from file.db\"\nauth-token = filetok\n"
                       "durability = normal\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    config_t cfg;
    char err[256];
    setenv("SQLCACHED_AUTH_TOKEN", "envtok", 1);
    char *argv[] = {"sqlcached", "--config", path, "--threads", "5", NULL};
    assert_int_equal(parse(&cfg, argv, err), CONFIG_OK);
    assert_int_equal(cfg.listen_port, 9100);
    assert_int_equal(cfg.threads, 5);                      /* flag beats file */
    assert_string_equal(cfg.db_path, "/tmp/from file.db"); /* quotes stripped */
    assert_string_equal(cfg.auth_token, "envtok");         /* env beats file */
    assert_int_equal(cfg.durability, SQLCACHED_DURABILITY_NORMAL);
    json_t *j = config_json(&cfg);
    assert_string_equal(json_string_value(json_object_get(j, "auth_token")), "***");
    char *dump = json_dumps(j, 0);
    assert_null(strstr(dump, "envtok"));
    free(dump);
    json_decref(j);
    config_free(&cfg);
    unsetenv("SQLCACHED_AUTH_TOKEN");
    unlink(path);
}

static void test_config_file_errors_name_the_line(void **state)
{
    (void)state;
    char path[] = "/tmp/sqlcached-conf-XXXXXX";
    int fd = mkstemp(path);
    const char *text = "threads = 2\nthreads = zero\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    config_t cfg;
    char err[256] = "";
    char *argv[] = {"sqlcached", "--config", path, NULL};
    assert_int_equal(parse(&cfg, argv, err), CONFIG_ERROR);
    assert_non_null(strstr(err, ":2: --threads"));
    config_free(&cfg);
    fd = open(path, O_WRONLY | O_TRUNC);
    const char *unknown = "colour = blue\n";
    assert_int_equal(write(fd, unknown, strlen(unknown)), (ssize_t)strlen(unknown));
    close(fd);
    assert_int_equal(parse(&cfg, argv, err), CONFIG_ERROR);
    assert_non_null(strstr(err, "unknown setting 'colour'"));
    config_free(&cfg);
    unlink(path);
    char *missing[] = {"sqlcached", "--config", "/nonexistent/sqlcached.conf", NULL};
    assert_int_equal(parse(&cfg, missing, err), CONFIG_ERROR);
    assert_non_null(strstr(err, "cannot read"));
}

/* config_parse_text: the file format without a file (also what fuzz/ calls). */
static void test_config_parse_text(void **state)
{
    (void)state;
    config_t cfg;
    char err[256] = "";
    config_defaults(&cfg);
    const char text[] = "# comment\n\n  threads = 3  \r\nmax-body = \"2K\"\ntimeout=7";
    assert_int_equal(config_parse_text(&cfg, text, strlen(text), "t.conf", err, sizeof err), 0);
    assert_int_equal(cfg.threads, 3);
    assert_int_equal(cfg.max_body, 2048);
    assert_int_equal(cfg.connection_timeout_s, 7);
    config_free(&cfg);

    config_defaults(&cfg);
    const char nul[] = "threads = 3\nthreads\0 = 4\n";
    assert_int_equal(config_parse_text(&cfg, nul, sizeof nul - 1, "t.conf", err, sizeof err), -1);
    assert_string_equal(err, "t.conf:2: NUL byte in the line");
    config_free(&cfg);

    config_defaults(&cfg);
    size_t n = CONFIG_LINE_MAX + 10;
    char *longline = malloc(n);
    assert_non_null(longline);
    memset(longline, '#', n);
    assert_int_equal(config_parse_text(&cfg, longline, n, "t.conf", err, sizeof err), -1);
    assert_non_null(strstr(err, "t.conf:1: line longer than"));
    free(longline);
    config_free(&cfg);
}

static void test_config_parse_uint(void **state)
{
    (void)state;
    unsigned v = 0;
    assert_int_equal(config_parse_uint("60", 1, 86400, &v), 0);
    assert_int_equal(v, 60);
    const char *bad[] = {"", "0", "86401", "-1", "+5", " 5", "5s", "0x10", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(config_parse_uint(bad[i], 1, 86400, &v), -1);
}

/* Regression (found by fuzz/fuzz_config.c): a refused --max-body (0, or
 * above 1G) used to be stored before it was checked, leaving max_body 0 in
 * the configuration after the error. */
static void test_config_refused_max_body_keeps_the_setting(void **state)
{
    (void)state;
    config_t cfg;
    char err[256] = "";
    config_defaults(&cfg);
    const char text[] = "max-body = 0MiB\n";
    assert_int_equal(config_parse_text(&cfg, text, strlen(text), "t.conf", err, sizeof err), -1);
    assert_int_equal(cfg.max_body, 1024 * 1024);
    config_free(&cfg);
    char *argv[] = {"sqlcached", "--max-body", "2G", NULL};
    assert_int_equal(parse(&cfg, argv, err), CONFIG_ERROR);
    assert_int_equal(cfg.max_body, 1024 * 1024);
}

static void test_config_busy_timeout_and_testing_flags(void **state)
{
    (void)state;
    config_t cfg;
    char err[256];
    char *defaults[] = {"sqlcached", NULL};
    assert_int_equal(parse(&cfg, defaults, err), CONFIG_OK);
    assert_int_equal(cfg.busy_timeout_ms, 5000);
    assert_int_equal(cfg.testing_max_pages, 0);
    assert_int_equal(cfg.testing_disable_fill_guard, 0);
    assert_int_equal(cfg.testing_fill_delay_us, 0);
    char *argv[] = {"sqlcached",
                    "--busy-timeout",
                    "250",
                    "--testing-max-pages",
                    "64",
                    "--testing-disable-fill-guard",
                    "--testing-fill-delay-us",
                    "500",
                    NULL};
    assert_int_equal(parse(&cfg, argv, err), CONFIG_OK);
    assert_int_equal(cfg.busy_timeout_ms, 250);
    assert_int_equal(cfg.testing_max_pages, 64);
    assert_int_equal(cfg.testing_disable_fill_guard, 1);
    assert_int_equal(cfg.testing_fill_delay_us, 500);
    char *bad[] = {"sqlcached", "--busy-timeout", "0", NULL};
    assert_int_equal(parse(&cfg, bad, err), CONFIG_ERROR);
    assert_int_equal(parse(&cfg, defaults, err), CONFIG_OK);
    assert_int_equal(cfg.shutdown_timeout_ms, 10000);
    char *shutdown[] = {"sqlcached", "--shutdown-timeout", "1500", NULL};
    assert_int_equal(parse(&cfg, shutdown, err), CONFIG_OK);
    assert_int_equal(cfg.shutdown_timeout_ms, 1500);
    char *bad_shutdown[] = {"sqlcached", "--shutdown-timeout", "0", NULL};
    assert_int_equal(parse(&cfg, bad_shutdown, err), CONFIG_ERROR);
    assert_non_null(strstr(err, "--shutdown-timeout"));
    /* testing-only flags stay out of --help and out of config files */
    assert_null(strstr(config_usage(), "testing"));
    char path[] = "/tmp/sqlcached-conf-XXXXXX";
    int fd = mkstemp(path);
    const char *text = "testing-max-pages = 10\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    char *file[] = {"sqlcached", "--config", path, NULL};
    assert_int_equal(parse(&cfg, file, err), CONFIG_ERROR);
    assert_non_null(strstr(err, "unknown setting 'testing-max-pages'"));
    config_free(&cfg);
    unlink(path);
}

/* A PostgreSQL URL is shown (log, /v1/admin/config) without its password. */
static void test_config_db_display_hides_passwords(void **state)
{
    (void)state;
    char b[256];
    assert_string_equal(config_db_display("data/cache.db", b, sizeof b), "data/cache.db");
    assert_string_equal(config_db_display("postgresql://app:s3cret@db:5432/cache", b, sizeof b),
                        "postgresql://app:***@db:5432/cache");
    assert_string_equal(config_db_display("postgres://app@db/cache", b, sizeof b),
                        "postgres://app@db/cache");
    assert_string_equal(
        config_db_display("postgresql://db/cache?user=app&password=s3cret&sslmode=require", b,
                          sizeof b),
        "postgresql://db/cache?user=app&password=***&sslmode=require");
    assert_string_equal(config_db_display("postgresql://a:b@h/d?password=c", b, sizeof b),
                        "postgresql://a:***@h/d?password=***");
    assert_string_equal(config_db_display("postgresql://a:b@h/d", b, 12), "postgresql:");
}

static void test_config_sqlite_cache(void **state)
{
    (void)state;
    config_t cfg;
    char err[256];
    char *defaults[] = {"sqlcached", NULL};
    assert_int_equal(parse(&cfg, defaults, err), CONFIG_OK);
    assert_int_equal(cfg.sqlite_cache, (size_t)64 << 20);
    char *argv[] = {"sqlcached", "--sqlite-cache", "1MB", NULL};
    assert_int_equal(parse(&cfg, argv, err), CONFIG_OK);
    assert_int_equal(cfg.sqlite_cache, (size_t)1 << 20);
    char *zero[] = {"sqlcached", "--sqlite-cache", "0", NULL};
    assert_int_equal(parse(&cfg, zero, err), CONFIG_OK);
    assert_int_equal(cfg.sqlite_cache, 0);
    const char *bad_values[] = {"-1", "1X", "", "2T", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++) {
        char *bad[] = {"sqlcached", "--sqlite-cache", (char *)bad_values[i], NULL};
        assert_int_equal(parse(&cfg, bad, err), CONFIG_ERROR);
        assert_non_null(strstr(err, "--sqlite-cache"));
    }
    /* in a config file, in --help, and in the effective settings */
    config_defaults(&cfg);
    const char text[] = "sqlite-cache = 8MiB\n";
    assert_int_equal(config_parse_text(&cfg, text, strlen(text), "t.conf", err, sizeof err), 0);
    assert_int_equal(cfg.sqlite_cache, (size_t)8 << 20);
    assert_non_null(strstr(config_usage(), "--sqlite-cache"));
    json_t *j = config_json(&cfg);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "sqlite_cache")), 8 << 20);
    json_decref(j);
    config_free(&cfg);
}

/* --on-write: flag, config file, effective settings; --testing-seckill-naive
 * hidden and refused in a file. */
static void test_config_on_write(void **state)
{
    (void)state;
    config_t cfg;
    char err[256];
    char *defaults[] = {"sqlcached", NULL};
    assert_int_equal(parse(&cfg, defaults, err), CONFIG_OK);
    assert_int_equal(cfg.on_write, SQLCACHED_ON_WRITE_REPLACE);
    assert_int_equal(cfg.testing_seckill_naive, 0);
    char *argv[] = {"sqlcached", "--on-write", "invalidate", "--testing-seckill-naive", NULL};
    assert_int_equal(parse(&cfg, argv, err), CONFIG_OK);
    assert_int_equal(cfg.on_write, SQLCACHED_ON_WRITE_INVALIDATE);
    assert_int_equal(cfg.testing_seckill_naive, 1);
    const char *bad_values[] = {"delete", "", "Invalidate"};
    for (size_t i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++) {
        char *bad[] = {"sqlcached", "--on-write", (char *)bad_values[i], NULL};
        assert_int_equal(parse(&cfg, bad, err), CONFIG_ERROR);
        assert_non_null(strstr(err, "--on-write: expected replace or invalidate"));
    }
    config_defaults(&cfg);
    const char text[] = "on-write = invalidate\n";
    assert_int_equal(config_parse_text(&cfg, text, strlen(text), "t.conf", err, sizeof err), 0);
    assert_int_equal(cfg.on_write, SQLCACHED_ON_WRITE_INVALIDATE);
    assert_non_null(strstr(config_usage(), "--on-write MODE"));
    json_t *j = config_json(&cfg);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "on_write")), "invalidate");
    json_decref(j);
    config_free(&cfg);
    config_defaults(&cfg);
    const char naive[] = "testing-seckill-naive = 1\n";
    assert_int_equal(config_parse_text(&cfg, naive, strlen(naive), "t.conf", err, sizeof err), -1);
    assert_non_null(strstr(err, "unknown setting 'testing-seckill-naive'"));
    config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_flags),
        cmocka_unit_test(test_config_env_token_and_flag_wins),
        cmocka_unit_test(test_config_rejects_bad_values),
        cmocka_unit_test(test_config_usage_errors),
        cmocka_unit_test(test_config_parse_size),
        cmocka_unit_test(test_config_parse_listen),
        cmocka_unit_test(test_config_file_then_env_then_flags),
        cmocka_unit_test(test_config_file_errors_name_the_line),
        cmocka_unit_test(test_config_parse_text),
        cmocka_unit_test(test_config_parse_uint),
        cmocka_unit_test(test_config_refused_max_body_keeps_the_setting),
        cmocka_unit_test(test_config_busy_timeout_and_testing_flags),
        cmocka_unit_test(test_config_sqlite_cache),
        cmocka_unit_test(test_config_on_write),
        cmocka_unit_test(test_config_db_display_hides_passwords),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
