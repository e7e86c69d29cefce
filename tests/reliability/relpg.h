/*
 * relpg.h - the reliability tests on either backend: which backends a run
 * covers (--backend sqlite|postgresql|both), one throwaway PostgreSQL
 * cluster per run (tests/pg.h), and the daemon started on a given
 * database: a SQLite file in its directory, or a postgresql:// URL (a
 * fresh schema of the run's cluster).
 */
#ifndef SQLCACHED_RELPG_H
#define SQLCACHED_RELPG_H

#include "daemon.h"
#include "pg.h"

enum { REL_SQLITE = 1, REL_PG = 2, REL_BOTH = 3 };

/* "sqlite", "postgresql" or "both" into a REL_* mask; -1 if none of those. */
int rel_backends_parse(const char *s);

/* "sqlite" or "postgresql" for REL_SQLITE / REL_PG. */
const char *rel_backend_name(int backend);

/* Start the run's cluster into *f. 0; 1 when SQLCACHED_TEST_NO_PG=1 (the
 * PostgreSQL part is skipped; printed); -1 on failure (printed). */
int rel_pg_start(pg_fixture_t *f);

/* daemon_start(), but with --db `db` when db is not NULL (a URL); the
 * daemon's log and any file it makes stay in dir. Restart with
 * daemon_restart(). 0 or -1. */
int rel_daemon_start(daemon_t *d, const char *dir, const char *db, const char *const extra_args[]);

#endif
