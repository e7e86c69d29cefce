/*
 * pg.h - test fixture: a throwaway PostgreSQL cluster for a test program
 * (scripts/pg-cluster: initdb'd template copied into a temporary directory,
 * server on 127.0.0.1 on a free port, socket in that directory, run as the
 * user postgres when the tests run as root), stopped and removed at the end.
 *
 * Without the PostgreSQL binaries the start fails with a message naming the
 * package; SQLCACHED_TEST_NO_PG=1 (an explicit opt-out that CI never sets)
 * makes pg_fixture_skip() true, and the program exits 77 (skipped).
 * The script is $SQLCACHED_SRCDIR/scripts/pg-cluster (set by make check).
 * Every call is bounded in time.
 */
#ifndef SQLCACHED_TEST_PG_H
#define SQLCACHED_TEST_PG_H

#include <stddef.h>

typedef struct pg_fixture {
    char *dir;     /* the cluster's directory (malloc'd) */
    char url[256]; /* postgresql://postgres@127.0.0.1:PORT/postgres */
    unsigned dbs;  /* schemas made by pg_fixture_new_db */
} pg_fixture_t;

/* True when SQLCACHED_TEST_NO_PG=1: the program should exit 77 at once
 * (it prints why). */
int pg_fixture_skip(void);

/* Make a temporary directory and start a cluster in it. 0, or -1 with the
 * reason on stderr (then *f holds nothing to stop). */
int pg_fixture_start(pg_fixture_t *f);

/* Stop the cluster (if running), delete its directory, free. 0, or -1 if
 * the server did not stop (reported). Safe on a fixture that failed to
 * start or was already stopped. */
int pg_fixture_stop(pg_fixture_t *f);

/* Stop / start the server of a started fixture, keeping its data and port
 * (for tests of connection loss). 0 or -1. */
int pg_fixture_server_stop(pg_fixture_t *f);
int pg_fixture_server_start(pg_fixture_t *f);

/* A fresh, empty place for tables: a new schema of the cluster's database,
 * and in url a URL whose search_path is that schema (so it acts as an
 * empty database, at a fraction of the cost). 0 or -1. */
int pg_fixture_new_db(pg_fixture_t *f, char *url, size_t len);

#endif
