/*
 * testutil.h - helpers shared by the tests: temporary directories, the
 * storage backend a test runs on, and a controllable clock for expiry
 * tests.
 *
 * Backends: every test of a store runs on SQLite by default and on
 * PostgreSQL when SQLCACHED_TEST_BACKEND=postgresql (make check runs both
 * forms: tests/on-pg.sh). On PostgreSQL the first testutil_db() call starts
 * one throwaway cluster for the process (tests/pg.c), stopped at exit
 * (atexit, in the process that started it; the cluster's watchdog stops it
 * if the process dies otherwise). SQLCACHED_TEST_NO_PG=1 then makes the
 * program exit 77 (skipped) instead.
 */
#ifndef SQLCACHED_TESTUTIL_H
#define SQLCACHED_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sqlcached.h"

/* Make a fresh temporary directory; returns its path (static buffer per
 * call site is not needed: the result is malloc'd, free it with
 * testutil_rmdir). NULL on failure. */
char *testutil_mkdtemp(void);

/* Remove the directory and the files in it, then free the path. */
void testutil_rmdir(char *dir);

/* A path inside dir (malloc'd). */
char *testutil_path(const char *dir, const char *name);

/* The whole file at path, NUL-terminated (malloc'd; caller frees), its
 * size in *len (may be NULL); NULL if it cannot be read. */
char *testutil_read_file(const char *path, size_t *len);

/* True when SQLCACHED_TEST_BACKEND=postgresql. Any other value but
 * "sqlite" or empty is refused: the program exits 1 saying so. */
bool testutil_backend_pg(void);

/* "sqlite" or "postgresql". */
const char *testutil_backend_name(void);

/* The store location for the database `name` of a test in dir (malloc'd;
 * the caller frees): on SQLite the file dir/name; on PostgreSQL the URL of
 * a fresh, empty schema of the process's cluster, the same URL again for
 * the same dir and name until testutil_rmdir(dir) (so a test that reopens
 * its store finds its data). NULL on failure (reported on stderr). */
char *testutil_db(const char *dir, const char *name);

/* In a cmocka test: skip the test case on PostgreSQL, printing why (for
 * tests of SQLite-only behaviour: the file, WAL, the -lock file...). */
#define TESTUTIL_SKIP_ON_PG(reason)                                                                \
    do {                                                                                           \
        if (testutil_backend_pg()) {                                                               \
            print_message("skipped on PostgreSQL: %s\n", reason);                                  \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* A fake clock for sqlcached_options_t.clock_ms. Atomic: the store's
 * background threads (the lease timer) read it while a test moves it. */
typedef struct testutil_clock {
    _Atomic int64_t now;
} testutil_clock_t;
int64_t testutil_clock_read(void *arg);

/* Open a store at testutil_db(dir, name) with the fake clock (NULL = wall
 * clock). NULL on failure (reported). */
sqlcached_t *testutil_open(const char *dir, const char *name, testutil_clock_t *clock);

/* Open a store at testutil_db(dir, name) with the caller's options o (o->path
 * is set for the call and reset to NULL after); NULL on failure (printed). */
sqlcached_t *testutil_open_opts(const char *dir, const char *name, sqlcached_options_t *o);

/* A store fixture for cmocka (*state): a store "name" in a fresh temporary
 * directory, on the fake clock starting at TESTUTIL_T0 (fake_clock) or on
 * the wall clock. Setup allocates it; teardown closes the store, removes
 * the directory and frees it. */
#define TESTUTIL_T0 1700000000000LL
typedef struct testutil_fixture {
    char *dir;
    testutil_clock_t clock;
    sqlcached_t *db;
} testutil_fixture_t;
int testutil_fixture_setup(void **state, const char *name, bool fake_clock);
int testutil_fixture_teardown(void **state);

/* Waits are stretched under valgrind: 20 when SQLCACHED_WRAPPER is set
 * (make check-valgrind sets it), 1 otherwise. */
int testutil_scale(void);

/* Milliseconds on the monotonic clock and on the wall clock. */
int64_t testutil_mono_ms(void);
int64_t testutil_wall_ms(void);

/* A 127.0.0.1 port that was free a moment ago (bind to 0, read it,
 * close), or -1. */
int testutil_free_port(void);

#endif
