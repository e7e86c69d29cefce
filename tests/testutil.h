/*
 * testutil.h - helpers shared by the tests: temporary directories and a
 * controllable clock for expiry tests.
 */
#ifndef SQLCACHED_TESTUTIL_H
#define SQLCACHED_TESTUTIL_H

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

/* A fake clock for sqlcached_options_t.clock_ms. Atomic: the store's
 * background threads (the lease timer) read it while a test moves it. */
typedef struct testutil_clock {
    _Atomic int64_t now;
} testutil_clock_t;
int64_t testutil_clock_read(void *arg);

/* Open a store in dir/name with the fake clock (NULL = wall clock). */
sqlcached_t *testutil_open(const char *dir, const char *name, testutil_clock_t *clock);

#endif
