/*
 * testutil.c - see testutil.h.
 *
 * PostgreSQL locations: a list of (dir/name, URL) pairs under a mutex, so
 * that the same test database maps to the same schema; the cluster is
 * started on the first call and stopped by an atexit handler that acts
 * only in the process that started it (a forked child that exits must not
 * stop it).
 */
#include "testutil.h"
#include "pg.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
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

static void forget_dbs(const char *dir);

void testutil_rmdir(char *dir)
{
    if (!dir)
        return;
    forget_dbs(dir);
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

/* ------------------------------------------------------------------------
 * Backends
 * ------------------------------------------------------------------------ */

bool testutil_backend_pg(void)
{
    const char *v = getenv("SQLCACHED_TEST_BACKEND");
    if (!v || !*v || strcmp(v, "sqlite") == 0)
        return false;
    if (strcmp(v, "postgresql") == 0)
        return true;
    fprintf(stderr, "SQLCACHED_TEST_BACKEND=%s: expected sqlite or postgresql\n", v);
    exit(1);
}

const char *testutil_backend_name(void)
{
    return testutil_backend_pg() ? "postgresql" : "sqlite";
}

typedef struct pg_db {
    char *path; /* dir/name */
    char *url;
    struct pg_db *next;
} pg_db_t;

static pthread_mutex_t pg_lock = PTHREAD_MUTEX_INITIALIZER;
static pg_fixture_t pg_cluster;
static pid_t pg_owner; /* the process that started the cluster */
static int pg_state;   /* 0 not started, 1 running, -1 failed to start */
static pg_db_t *pg_dbs;

static void free_dbs(void)
{
    while (pg_dbs) {
        pg_db_t *d = pg_dbs;
        pg_dbs = d->next;
        free(d->path);
        free(d->url);
        free(d);
    }
}

static void stop_cluster(void)
{
    if (getpid() != pg_owner)
        return;
    pthread_mutex_lock(&pg_lock);
    if (pg_state == 1)
        pg_fixture_stop(&pg_cluster);
    pg_state = 0;
    free_dbs();
    pthread_mutex_unlock(&pg_lock);
}

/* Caller holds pg_lock. 0 when the cluster runs. */
static int start_cluster(void)
{
    if (pg_state == 0) {
        if (pg_fixture_skip())
            exit(77);
        pg_state = pg_fixture_start(&pg_cluster) == 0 ? 1 : -1;
        if (pg_state == 1) {
            pg_owner = getpid();
            printf("testutil: PostgreSQL at %s (%s)\n", pg_cluster.url, pg_cluster.dir);
            if (atexit(stop_cluster) != 0)
                fprintf(stderr, "atexit failed: the cluster's watchdog will stop it\n");
        }
    }
    return pg_state == 1 ? 0 : -1;
}

/* Caller holds pg_lock. The URL for path (borrowed), made on first use. */
static const char *pg_url(const char *path)
{
    for (pg_db_t *d = pg_dbs; d; d = d->next)
        if (strcmp(d->path, path) == 0)
            return d->url;
    char url[512];
    if (start_cluster() != 0 || pg_fixture_new_db(&pg_cluster, url, sizeof url) != 0) {
        fprintf(stderr, "no PostgreSQL database for %s\n", path);
        return NULL;
    }
    pg_db_t *d = calloc(1, sizeof *d);
    if (!d || !(d->path = strdup(path)) || !(d->url = strdup(url))) {
        if (d)
            free(d->path);
        free(d);
        return NULL;
    }
    d->next = pg_dbs;
    pg_dbs = d;
    return d->url;
}

char *testutil_db(const char *dir, const char *name)
{
    char *path = testutil_path(dir, name);
    if (!path || !testutil_backend_pg())
        return path;
    pthread_mutex_lock(&pg_lock);
    const char *url = pg_url(path);
    char *copy = url ? strdup(url) : NULL;
    pthread_mutex_unlock(&pg_lock);
    free(path);
    return copy;
}

/* Drop the locations of the databases in dir (a later mkdtemp may reuse
 * its name). */
static void forget_dbs(const char *dir)
{
    size_t n = strlen(dir);
    pthread_mutex_lock(&pg_lock);
    for (pg_db_t **p = &pg_dbs; *p;) {
        pg_db_t *d = *p;
        if (strncmp(d->path, dir, n) == 0 && d->path[n] == '/') {
            *p = d->next;
            free(d->path);
            free(d->url);
            free(d);
        } else {
            p = &d->next;
        }
    }
    pthread_mutex_unlock(&pg_lock);
}

/* ------------------------------------------------------------------------
 * Clock and stores
 * ------------------------------------------------------------------------ */

int64_t testutil_clock_read(void *arg)
{
    return ((testutil_clock_t *)arg)->now;
}

sqlcached_t *testutil_open_opts(const char *dir, const char *name, sqlcached_options_t *o)
{
    char *path = testutil_db(dir, name);
    if (!path)
        return NULL;
    o->path = path;
    sqlcached_t *db = NULL;
    char err[256];
    if (sqlcached_open(o, &db, err, sizeof err) != SQLCACHED_OK)
        fprintf(stderr, "open %s: %s\n", path, err);
    o->path = NULL;
    free(path);
    return db;
}

sqlcached_t *testutil_open(const char *dir, const char *name, testutil_clock_t *clock)
{
    sqlcached_options_t o;
    sqlcached_options_init(&o);
    o.durability = SQLCACHED_DURABILITY_NORMAL;
    o.purge_interval_ms = -1; /* tests purge explicitly */
    if (clock) {
        o.clock_ms = testutil_clock_read;
        o.clock_arg = clock;
    }
    return testutil_open_opts(dir, name, &o);
}

int testutil_fixture_setup(void **state, const char *name, bool fake_clock)
{
    testutil_fixture_t *f = calloc(1, sizeof *f);
    *state = f;
    if (!f)
        return -1;
    f->dir = testutil_mkdtemp();
    f->clock.now = TESTUTIL_T0;
    f->db = f->dir ? testutil_open(f->dir, name, fake_clock ? &f->clock : NULL) : NULL;
    return f->db ? 0 : -1;
}

int testutil_fixture_teardown(void **state)
{
    testutil_fixture_t *f = *state;
    if (!f)
        return 0;
    sqlcached_close(f->db);
    testutil_rmdir(f->dir);
    free(f);
    return 0;
}

/* ------------------------------------------------------------------------
 * Time, waits and ports
 * ------------------------------------------------------------------------ */

int testutil_scale(void)
{
    const char *w = getenv("SQLCACHED_WRAPPER");
    return w && *w ? 20 : 1;
}

static int64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t testutil_mono_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

int64_t testutil_wall_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

int testutil_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}
