/*
 * testutil.c - see testutil.h.
 */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *testutil_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    char *tmpl = NULL;
    if (asprintf(&tmpl, "%s/sqlcached-test-XXXXXX", base && *base ? base : "/tmp") < 0)
        return NULL;
    if (!mkdtemp(tmpl)) {
        free(tmpl);
        return NULL;
    }
    return tmpl;
}

void testutil_rmdir(char *dir)
{
    if (!dir)
        return;
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char *p = testutil_path(dir, e->d_name);
            if (p)
                unlink(p);
            free(p);
        }
        closedir(d);
    }
    rmdir(dir);
    free(dir);
}

char *testutil_path(const char *dir, const char *name)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s", dir, name) < 0)
        return NULL;
    return p;
}

char *testutil_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0)
        buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        if (len)
            *len = (size_t)n;
    }
    return buf;
}

int64_t testutil_clock_read(void *arg)
{
    return ((testutil_clock_t *)arg)->now;
}

sqlcached_t *testutil_open(const char *dir, const char *name, testutil_clock_t *clock)
{
    char *path = testutil_path(dir, name);
    sqlcached_options_t o;
    sqlcached_options_init(&o);
    o.path = path;
    o.durability = SQLCACHED_DURABILITY_NORMAL;
    o.purge_interval_ms = -1; /* tests purge explicitly */
    if (clock) {
        o.clock_ms = testutil_clock_read;
        o.clock_arg = clock;
    }
    sqlcached_t *db = NULL;
    char err[256];
    if (sqlcached_open(&o, &db, err, sizeof err) != SQLCACHED_OK)
        fprintf(stderr, "open %s: %s\n", path, err);
    free(path);
    return db;
}
