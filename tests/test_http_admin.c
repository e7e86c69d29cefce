/*
 * test_http_admin.c - /v1/admin over real HTTP: the admin token, the
 * effective configuration with secrets masked, online backup under write
 * load and restore into a fresh daemon, backup names at the limits and
 * concurrent backups, restore keeping every counter ahead of the database
 * it replaces, the access log.
 *
 * On PostgreSQL (SQLCACHED_TEST_BACKEND=postgresql) backups and restores
 * are refused (409 / exit 1, naming pg_dump and pg_restore: docs/operations.md):
 * test_http_admin_backup_per_backend checks that; the tests of backup files
 * are skipped there.
 */
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <sqlite3.h>

#include "daemon.h"
#include "testutil.h"

#define AUTH "Authorization: Bearer user-token"
#define ADMIN "Authorization: Bearer admin-token"

typedef struct fixture {
    char *dir;
    char backup_dir[512];
    char access_log[512];
    daemon_t d;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    f->dir = testutil_mkdtemp();
    snprintf(f->backup_dir, sizeof f->backup_dir, "%s/backups", f->dir);
    snprintf(f->access_log, sizeof f->access_log, "%s/access.log", f->dir);
    mkdir(f->backup_dir, 0700);
    const char *args[] = {"--auth-token",
                          "user-token",
                          "--admin-token",
                          "admin-token",
                          "--backup-dir",
                          f->backup_dir,
                          "--access-log",
                          f->access_log,
                          "--durability",
                          "normal",
                          NULL};
    *state = f;
    return daemon_start(&f->d, f->dir, args);
}

static void rm_tree(const char *dir)
{
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    int rc = daemon_stop(&f->d);
    daemon_free(&f->d);
    rm_tree(f->dir);
    free(f->dir);
    free(f);
    return rc == 0 ? 0 : -1;
}

static long request(const daemon_t *d, const char *method, const char *path, const char *auth,
                    const char *body, json_t **json)
{
    const char *h[] = {auth, "Content-Type: application/json", NULL};
    client_resp_t r;
    assert_int_equal(client_request(d, method, path, auth ? h : NULL, body, body ? strlen(body) : 0,
                                    &r),
                     0);
    long status = r.status;
    if (json)
        *json = client_json(&r);
    client_resp_free(&r);
    return status;
}

static void test_http_admin_needs_the_admin_token(void **state)
{
    fixture_t *f = *state;
    json_t *j = NULL;
    assert_int_equal(request(&f->d, "GET", "/v1/admin/config", NULL, NULL, NULL), 401);
    assert_int_equal(request(&f->d, "GET", "/v1/admin/config", AUTH, NULL, NULL), 401);
    assert_int_equal(request(&f->d, "GET", "/v1/admin/config", ADMIN, NULL, &j), 200);
    assert_string_equal(json_string_value(json_object_get(j, "auth_token")), "***");
    assert_string_equal(json_string_value(json_object_get(j, "admin_token")), "***");
    assert_string_equal(json_string_value(json_object_get(j, "durability")), "normal");
    char *dump = json_dumps(j, 0);
    assert_null(strstr(dump, "user-token"));
    assert_null(strstr(dump, "admin-token"));
    free(dump);
    json_decref(j);
    /* the admin token is not a user token */
    assert_int_equal(request(&f->d, "GET", "/v1/kv/x", ADMIN, NULL, NULL), 401);
}

/* Hot keys are user data: with --admin-token set, /v1/stats/hotkeys takes
 * it (not the user token), as /v1/admin/... do. */
static void test_http_admin_hotkeys_need_the_admin_token(void **state)
{
    fixture_t *f = *state;
    json_t *j = NULL;
    assert_int_equal(request(&f->d, "GET", "/v1/kv/secret:key", AUTH, NULL, NULL), 404);
    assert_int_equal(request(&f->d, "GET", "/v1/stats/hotkeys", NULL, NULL, NULL), 401);
    assert_int_equal(request(&f->d, "GET", "/v1/stats/hotkeys", AUTH, NULL, NULL), 401);
    assert_int_equal(request(&f->d, "GET", "/v1/stats/hotkeys?limit=5", AUTH, NULL, NULL), 401);
    assert_int_equal(request(&f->d, "GET", "/v1/stats/hotkeys", ADMIN, NULL, &j), 200);
    json_t *first = json_array_get(json_object_get(j, "keys"), 0);
    assert_string_equal(json_string_value(json_object_get(first, "key")), "secret:key");
    json_decref(j);
    /* the rest of /v1/stats stays behind the user token */
    assert_int_equal(request(&f->d, "GET", "/v1/stats", AUTH, NULL, NULL), 200);
}

static void test_http_admin_backup_rejects_escaping_paths(void **state)
{
    fixture_t *f = *state;
    const char *bad[] = {"{\"path\":\"../x.db\"}",
                         "{\"path\":\"/tmp/x.db\"}",
                         "{\"path\":\"sub/x.db\"}",
                         "{\"path\":\".hidden\"}",
                         "{\"path\":\"\"}",
                         "{\"path\":5}",
                         "{}",
                         "{\"path\":\"x.db\",\"extra\":1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(request(&f->d, "POST", "/v1/admin/backup", ADMIN, bad[i], NULL), 400);
    assert_int_equal(request(&f->d, "POST", "/v1/admin/backup", ADMIN, "{nope", NULL), 400);
}

typedef struct load {
    const daemon_t *d;
    atomic_int stop;
    atomic_int acked; /* keys w0..w(acked-1) were answered 201 */
} load_t;

static void *writer(void *p)
{
    load_t *l = p;
    const char *h[] = {AUTH, NULL};
    char path[64];
    for (int i = 0; !atomic_load(&l->stop) && i < 100000; i++) {
        snprintf(path, sizeof path, "/v1/kv/w%d", i);
        client_resp_t r;
        if (client_request(l->d, "PUT", path, h, "payload", 7, &r) == 0 && r.status == 201)
            atomic_store(&l->acked, i + 1);
        client_resp_free(&r);
    }
    return NULL;
}

static void test_http_admin_backup_under_load_then_restore(void **state)
{
    TESTUTIL_SKIP_ON_PG("a backup is a copy of the SQLite file; on PostgreSQL backups answer 409 "
                        "(test_http_admin_backup_per_backend)");
    fixture_t *f = *state;
    load_t l = {.d = &f->d};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, writer, &l), 0);
    for (int i = 0; i < 500 && atomic_load(&l.acked) < 200; i++)
        usleep(10000);
    int before = atomic_load(&l.acked); /* acknowledged before the backup began */
    json_t *j = NULL;
    assert_int_equal(request(&f->d, "POST", "/v1/admin/backup", ADMIN, "{\"path\":\"snap.db\"}",
                             &j),
                     200);
    int during = atomic_load(&l.acked);
    atomic_store(&l.stop, 1);
    pthread_join(t, NULL);
    assert_true(before >= 200);
    assert_true(json_integer_value(json_object_get(j, "bytes")) > 0);
    char backup[700];
    snprintf(backup, sizeof backup, "%s", json_string_value(json_object_get(j, "path")));
    json_decref(j);
    assert_true(atomic_load(&l.acked) > before); /* writes went on */

    /* restore into a fresh directory and serve it */
    char *dir2 = testutil_mkdtemp();
    char db2[600], cmd[2048];
    snprintf(db2, sizeof db2, "%s/sqlcached.db", dir2);
    snprintf(cmd, sizeof cmd, "'%s' --restore '%s' --db '%s' 2>/dev/null", getenv("SQLCACHED_BIN"),
             backup, db2);
    assert_int_equal(system(cmd), 0);
    daemon_t d2;
    const char *args[] = {"--auth-token", "user-token", NULL};
    assert_int_equal(daemon_start(&d2, dir2, args), 0);
    char path[64];
    for (int i = 0; i < before; i++) { /* every write acked before the backup */
        snprintf(path, sizeof path, "/v1/kv/w%d", i);
        assert_int_equal(request(&d2, "GET", path, AUTH, NULL, NULL), 200);
    }
    /* and nothing after the end of the backup */
    snprintf(path, sizeof path, "/v1/kv/w%d", during + 50);
    assert_int_equal(request(&d2, "GET", path, AUTH, NULL, NULL), 404);
    assert_int_equal(daemon_stop(&d2), 0);
    daemon_free(&d2);
    rm_tree(dir2);
    free(dir2);
}

static long backup(const daemon_t *d, const char *name, json_t **json)
{
    char body[600];
    snprintf(body, sizeof body, "{\"path\":\"%s\"}", name);
    return request(d, "POST", "/v1/admin/backup", ADMIN, body, json);
}

/* PRAGMA integrity_check of a file, read-only: 1 when "ok". */
static int intact(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
             sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
             sqlite3_step(st) == SQLITE_ROW &&
             strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return ok;
}

/* Every name the API accepts (1..255 bytes) is backed up, whatever the
 * temporary name; 256 bytes is 400. */
static void test_http_admin_backup_long_names(void **state)
{
    TESTUTIL_SKIP_ON_PG("a backup is a copy of the SQLite file; on PostgreSQL backups answer 409 "
                        "(test_http_admin_backup_per_backend)");
    fixture_t *f = *state;
    char name[300];
    int ok = 0;
    for (size_t n = 240; n <= 256; n++) {
        memset(name, 'a', n);
        name[n] = '\0';
        json_t *j = NULL;
        long st = backup(&f->d, name, &j);
        if (n <= 255 && st != 200)
            printf("# backup name of %zu bytes: %ld %s\n", n, st,
                   json_string_value(json_object_get(j, "detail")));
        ok += n <= 255 && st == 200;
        if (n == 256)
            assert_int_equal(st, 400);
        json_decref(j);
    }
    printf("# names of 240..255 bytes backed up: %d of 16\n", ok);
    assert_int_equal(ok, 16);
}

/* A name that is an existing directory: 409 conflict, the directory kept. */
static void test_http_admin_backup_onto_directory(void **state)
{
    TESTUTIL_SKIP_ON_PG("a backup is a copy of the SQLite file; on PostgreSQL backups answer 409 "
                        "(test_http_admin_backup_per_backend)");
    fixture_t *f = *state;
    char dir[700];
    snprintf(dir, sizeof dir, "%s/adir", f->backup_dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    json_t *j = NULL;
    long st = backup(&f->d, "adir", &j);
    printf("# backup onto a directory: %ld %s\n", st,
           json_string_value(json_object_get(j, "detail")));
    assert_int_equal(st, 409);
    assert_string_equal(json_string_value(json_object_get(j, "code")), "conflict");
    assert_non_null(strstr(json_string_value(json_object_get(j, "detail")), "directory"));
    json_decref(j);
    struct stat sb;
    assert_int_equal(stat(dir, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
}

typedef struct backup_call {
    const daemon_t *d;
    long status;
} backup_call_t;

static void *backup_thread(void *p)
{
    backup_call_t *c = p;
    client_resp_t r;
    const char *h[] = {ADMIN, "Content-Type: application/json", NULL};
    const char *body = "{\"path\":\"same.db\"}";
    c->status = client_request(c->d, "POST", "/v1/admin/backup", h, body, strlen(body), &r) == 0
                    ? r.status
                    : -1;
    client_resp_free(&r);
    return NULL;
}

/* Files in dir other than those named in keep (NULL-terminated). */
static int strangers(const char *dir, const char *const keep[])
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        bool known = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
        for (int i = 0; keep[i] && !known; i++)
            known = strcmp(e->d_name, keep[i]) == 0;
        if (!known)
            printf("# left in the backup directory: %s\n", e->d_name);
        n += !known;
    }
    closedir(d);
    return n;
}

/* Each backup has a temporary file of its own: neither a file left under
 * the old fixed temporary name ("<name>.tmp", here a directory) nor a
 * concurrent backup to the same name breaks one; the result is intact and
 * no temporary file is left. */
static void test_http_admin_backup_temporary_files_unique(void **state)
{
    TESTUTIL_SKIP_ON_PG("a backup is a copy of the SQLite file; on PostgreSQL backups answer 409 "
                        "(test_http_admin_backup_per_backend)");
    fixture_t *f = *state;
    for (int i = 0; i < 300; i++) {
        char path[64];
        snprintf(path, sizeof path, "/v1/kv/k%d", i);
        assert_int_equal(request(&f->d, "PUT", path, AUTH, "some value bytes", NULL), 201);
    }
    char blocker[700];
    snprintf(blocker, sizeof blocker, "%s/same.db.tmp", f->backup_dir);
    assert_int_equal(mkdir(blocker, 0700), 0);
    long first = backup(&f->d, "same.db", NULL);
    printf("# backup with same.db.tmp present: %ld\n", first);
    assert_int_equal(rmdir(blocker), 0);
    enum { ROUNDS = 5, N = 4 };
    int good = 0;
    for (int round = 0; round < ROUNDS; round++) {
        backup_call_t c[N];
        pthread_t t[N];
        for (int i = 0; i < N; i++) {
            c[i] = (backup_call_t){.d = &f->d};
            assert_int_equal(pthread_create(&t[i], NULL, backup_thread, &c[i]), 0);
        }
        for (int i = 0; i < N; i++) {
            pthread_join(t[i], NULL);
            good += c[i].status == 200;
        }
    }
    printf("# concurrent backups to one name answered 200: %d of %d\n", good, ROUNDS * N);
    assert_int_equal(first, 200);
    assert_int_equal(good, ROUNDS * N);
    char dest[700];
    snprintf(dest, sizeof dest, "%s/same.db", f->backup_dir);
    assert_true(intact(dest));
    const char *keep[] = {"same.db", NULL};
    assert_int_equal(strangers(f->backup_dir, keep), 0);
}

/* The integer member `name` of the JSON answer to a request that must
 * answer `status`. */
static json_int_t call_int(const daemon_t *d, const char *method, const char *path,
                           const char *body, long status, const char *name)
{
    json_t *j = NULL;
    long st = request(d, method, path, AUTH, body, &j);
    if (st != status)
        printf("# %s %s: %ld\n", method, path, st);
    assert_int_equal(st, status);
    json_t *v = json_object_get(j, name);
    assert_true(json_is_integer(v));
    json_int_t n = json_integer_value(v);
    json_decref(j);
    return n;
}

/* The largest version, fencing token and order id issued so far. */
typedef struct issued {
    json_int_t version, token, order_id;
} issued_t;

/* Writes of every kind after the backup: each counter moves on. */
static void write_after_backup(const daemon_t *d, issued_t *max)
{
    char path[64], body[64];
    for (int i = 0; i < 20; i++) {
        snprintf(path, sizeof path, "/v1/kv/later%d", i);
        max->version = call_int(d, "PUT", path, "v", 201, "version");
    }
    for (int i = 0; i < 5; i++) { /* the lease passes to a new holder each time */
        snprintf(body, sizeof body, "{\"owner\":\"o%d\",\"ttl_ms\":60000}", i);
        max->token = call_int(d, "POST", "/v1/leases/job/acquire", body, 200, "token");
        snprintf(body, sizeof body, "{\"owner\":\"o%d\"}", i);
        call_int(d, "POST", "/v1/leases/job/release", body, 200, "count");
    }
    for (int i = 0; i < 5; i++) {
        snprintf(body, sizeof body, "{\"user_id\":\"u%d\"}", i);
        max->order_id = call_int(d, "POST", "/v1/items/sku/orders", body, 201, "order_id");
    }
    max->version = call_int(d, "PUT", "/v1/kv/last", "v", 201, "version");
}

/* Stop the daemon, restore `from` into its database, start it again. */
static void restore_and_restart(daemon_t *d, const char *from)
{
    assert_int_equal(daemon_stop(d), 0);
    const char *args[] = {"--restore", from, "--db", d->db_path, NULL};
    char out[4096];
    int rc = daemon_run(args, 20000, out, sizeof out);
    if (rc != 0)
        printf("# restore: exit %d: %s", rc, out);
    assert_int_equal(rc, 0);
    assert_int_equal(daemon_restart(d), 0);
}

/* After a restore, new writes, lease holders and orders get values above
 * every one the replaced database had issued. */
static void expect_counters_above(const daemon_t *d, const issued_t *max, const char *what)
{
    issued_t now;
    now.version = call_int(d, "PUT", "/v1/kv/new", "v", 201, "version");
    now.token = call_int(d, "POST", "/v1/leases/fresh/acquire",
                         "{\"owner\":\"n\",\"ttl_ms\":60000}", 200, "token");
    call_int(d, "POST", "/v1/leases/fresh/release", "{\"owner\":\"n\"}", 200, "count");
    now.order_id =
        call_int(d, "POST", "/v1/items/sku/orders", "{\"user_id\":\"new\"}", 201, "order_id");
    printf("# after restoring %s: version %lld (issued up to %lld), token %lld (%lld), "
           "order_id %lld (%lld)\n",
           what, (long long)now.version, (long long)max->version, (long long)now.token,
           (long long)max->token, (long long)now.order_id, (long long)max->order_id);
    assert_true(now.version > max->version);
    assert_true(now.token > max->token);
    assert_true(now.order_id > max->order_id);
}

/* Make `path` look like a backup taken by a build before leases existed:
 * no leases table, no fencing_token counter, migration 3 not recorded. */
static void make_pre_lease_backup(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "DROP TABLE leases;"
                                  "DELETE FROM meta WHERE name = 'fencing_token';"
                                  "DELETE FROM schema_migrations WHERE version = 3;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* Restoring an older backup never lets a version (so an ETag), a fencing
 * token or an order id repeat one the replaced database had issued: once
 * from a backup of today's schema, once from one that predates leases. */
static void test_http_admin_restore_keeps_counters_ahead(void **state)
{
    TESTUTIL_SKIP_ON_PG("a backup is a copy of the SQLite file; on PostgreSQL backups answer 409 "
                        "(test_http_admin_backup_per_backend)");
    fixture_t *f = *state;
    daemon_t *d = &f->d;
    json_int_t first = call_int(d, "PUT", "/v1/kv/first", "v", 201, "version");
    call_int(d, "PUT", "/v1/items/sku", "{\"name\":\"x\",\"stock\":100}", 201, "stock");
    json_t *j = NULL;
    assert_int_equal(backup(d, "early.db", &j), 200);
    char early[700], old[700];
    snprintf(early, sizeof early, "%s", json_string_value(json_object_get(j, "path")));
    json_decref(j);
    snprintf(old, sizeof old, "%s/pre-lease.db", f->backup_dir);
    char cmd[1600];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", early, old);
    assert_int_equal(system(cmd), 0);
    make_pre_lease_backup(old);

    issued_t max = {0};
    write_after_backup(d, &max);
    restore_and_restart(d, early);
    client_resp_t r;
    const char *h[] = {AUTH, NULL};
    assert_int_equal(client_request(d, "GET", "/v1/kv/first", h, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200); /* the backup's content is back */
    char *etag = client_header(&r, "ETag");
    char want[32];
    snprintf(want, sizeof want, "\"%lld\"", (long long)first);
    assert_string_equal(etag, want);
    free(etag);
    client_resp_free(&r);
    assert_int_equal(request(d, "GET", "/v1/kv/last", AUTH, NULL, NULL), 404);
    expect_counters_above(d, &max, "a backup");

    write_after_backup(d, &max);
    restore_and_restart(d, old);
    expect_counters_above(d, &max, "a backup older than leases");
}

/* POST /v1/admin/backup writes a file on SQLite; on PostgreSQL it answers
 * 409 conflict saying to use pg_dump, and writes nothing; --restore into a
 * PostgreSQL database exits 1 saying to use pg_restore. */
static void test_http_admin_backup_per_backend(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(request(&f->d, "PUT", "/v1/kv/k", AUTH, "v", NULL), 201);
    json_t *j = NULL;
    long st = backup(&f->d, "per-backend.db", &j);
    char dest[700];
    snprintf(dest, sizeof dest, "%s/per-backend.db", f->backup_dir);
    struct stat sb;
    bool written = stat(dest, &sb) == 0;
    print_message("backup on %s: %ld %s\n", testutil_backend_name(), st,
                  json_string_value(json_object_get(j, "detail")));
    if (!testutil_backend_pg()) {
        assert_int_equal(st, 200);
        assert_true(written && intact(dest));
        json_decref(j);
        return;
    }
    assert_int_equal(st, 409);
    assert_string_equal(json_string_value(json_object_get(j, "code")), "conflict");
    assert_non_null(strstr(json_string_value(json_object_get(j, "detail")), "pg_dump"));
    json_decref(j);
    assert_false(written);
    const char *args[] = {"--restore", dest, "--db", f->d.db_path, NULL};
    char out[4096];
    int rc = daemon_run(args, 20000, out, sizeof out);
    print_message("--restore on PostgreSQL: exit %d: %s", rc, out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "pg_restore"));
    /* the data is untouched */
    assert_int_equal(request(&f->d, "GET", "/v1/kv/k", AUTH, NULL, NULL), 200);
}

static void test_http_admin_restore_refuses_garbage(void **state)
{
    fixture_t *f = *state;
    char junk[600], cmd[2048];
    snprintf(junk, sizeof junk, "%s/junk.db", f->dir);
    FILE *fp = fopen(junk, "w");
    fputs("definitely not sqlite", fp);
    fclose(fp);
    snprintf(cmd, sizeof cmd, "'%s' --restore '%s' --db '%s/out.db' 2>/dev/null",
             getenv("SQLCACHED_BIN"), junk, f->dir);
    int rc = system(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
}

static void test_http_admin_access_log_has_requests_not_tokens(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(request(&f->d, "PUT", "/v1/kv/logged", AUTH, "x", NULL), 201);
    /* the line is written when MHD reports the request complete, just after
     * the answer went out: look for it for up to 5 s */
    int found = 0;
    for (int tries = 0; tries < 500 && !found; tries++) {
        FILE *fp = fopen(f->access_log, "r");
        assert_non_null(fp);
        char line[1024];
        while (fgets(line, sizeof line, fp)) {
            assert_null(strstr(line, "user-token"));
            if (strstr(line, "\"PUT /v1/kv/logged\" 201 "))
                found = 1;
        }
        fclose(fp);
        if (!found)
            usleep(10000);
    }
    assert_true(found);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_http_admin_needs_the_admin_token),
        T(test_http_admin_hotkeys_need_the_admin_token),
        T(test_http_admin_backup_rejects_escaping_paths),
        T(test_http_admin_backup_under_load_then_restore),
        T(test_http_admin_backup_long_names),
        T(test_http_admin_backup_onto_directory),
        T(test_http_admin_backup_temporary_files_unique),
        T(test_http_admin_restore_keeps_counters_ahead),
        T(test_http_admin_backup_per_backend),
        T(test_http_admin_restore_refuses_garbage),
        T(test_http_admin_access_log_has_requests_not_tokens),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
