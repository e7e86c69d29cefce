/*
 * test_http_admin.c - /v1/admin over real HTTP: the admin token, the
 * effective configuration with secrets masked, online backup under write
 * load and restore into a fresh daemon, the access log.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
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
    const char *args[] = {"--auth-token", "user-token", "--admin-token", "admin-token",
                          "--backup-dir", f->backup_dir, "--access-log", f->access_log,
                          "--durability", "normal", NULL};
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
    assert_int_equal(client_request(d, method, path, auth ? h : NULL, body,
                                    body ? strlen(body) : 0, &r), 0);
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

static void test_http_admin_backup_rejects_escaping_paths(void **state)
{
    fixture_t *f = *state;
    const char *bad[] = {"{\"path\":\"../x.db\"}", "{\"path\":\"/tmp/x.db\"}",
                         "{\"path\":\"sub/x.db\"}", "{\"path\":\".hidden\"}",
                         "{\"path\":\"\"}", "{\"path\":5}", "{}",
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
    fixture_t *f = *state;
    load_t l = {.d = &f->d};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, writer, &l), 0);
    for (int i = 0; i < 500 && atomic_load(&l.acked) < 200; i++)
        usleep(10000);
    int before = atomic_load(&l.acked); /* acknowledged before the backup began */
    json_t *j = NULL;
    assert_int_equal(request(&f->d, "POST", "/v1/admin/backup", ADMIN,
                             "{\"path\":\"snap.db\"}", &j), 200);
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
    /* The line is written when MHD reports the request complete, just
     * after the reply went out: give the server thread a moment. */
    int found = 0;
    for (int tries = 0; !found && tries < 200; tries++) {
        if (tries)
            usleep(10000);
        FILE *fp = fopen(f->access_log, "r");
        assert_non_null(fp);
        char line[1024];
        while (fgets(line, sizeof line, fp)) {
            assert_null(strstr(line, "user-token"));
            if (strstr(line, "\"PUT /v1/kv/logged\" 201 "))
                found = 1;
        }
        fclose(fp);
    }
    assert_true(found);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_http_admin_needs_the_admin_token),
        T(test_http_admin_backup_rejects_escaping_paths),
        T(test_http_admin_backup_under_load_then_restore),
        T(test_http_admin_restore_refuses_garbage),
        T(test_http_admin_access_log_has_requests_not_tokens),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
