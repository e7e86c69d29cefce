/*
 * relpg.c - see relpg.h.
 */
#include "relpg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rel_backends_parse(const char *s)
{
    if (strcmp(s, "sqlite") == 0)
        return REL_SQLITE;
    if (strcmp(s, "postgresql") == 0)
        return REL_PG;
    if (strcmp(s, "both") == 0)
        return REL_BOTH;
    return -1;
}

const char *rel_backend_name(int backend)
{
    return backend == REL_PG ? "postgresql" : "sqlite";
}

int rel_pg_start(pg_fixture_t *f)
{
    memset(f, 0, sizeof *f);
    if (pg_fixture_skip())
        return 1;
    if (pg_fixture_start(f) != 0) {
        fprintf(stderr, "cannot start a PostgreSQL cluster (SQLCACHED_TEST_NO_PG=1 leaves "
                        "the PostgreSQL forms out)\n");
        return -1;
    }
    return 0;
}

int rel_daemon_start(daemon_t *d, const char *dir, const char *db, const char *const extra_args[])
{
    if (!db)
        return daemon_start(d, dir, extra_args);
    /* daemon_start() with the URL in place of the file: the fixture passes
     * --db d->db_path, so a daemon_t filled the same way launches on it */
    memset(d, 0, sizeof *d);
    if (strlen(db) >= sizeof d->db_path)
        return -1;
    snprintf(d->dir, sizeof d->dir, "%s", dir);
    snprintf(d->db_path, sizeof d->db_path, "%s", db);
    snprintf(d->log_path, sizeof d->log_path, "%s/daemon.log", dir);
    for (int i = 0; extra_args && extra_args[i] && i < 47; i++)
        d->args[d->nargs++] = strdup(extra_args[i]);
    return daemon_restart(d);
}
