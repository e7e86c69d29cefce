/*
 * test_http_security.c - security properties of the daemon, end to end:
 * no token ever reaches its logs (debug level, access log on stderr), and
 * it binds to loopback unless told otherwise.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "daemon.h"
#include "testutil.h"

#define TOKEN "tok-9f2c41d7e8b3a605"
#define NEAR_MISS "tok-9f2c41d7e8b3a606" /* a wrong token one byte off */
#define ADMIN_TOKEN "adm-5b7e90c2d4f61a83"

static long status_of(const daemon_t *d, const char *method, const char *path, const char *auth,
                      const char *body)
{
    const char *h[] = {auth, NULL};
    return client_status(d, method, path, auth ? h : NULL, body);
}

/* Authorised and refused requests with the daemon at --log-level debug and
 * its access log on stderr: after a clean stop, neither token, nor a near
 * miss a client sent, appears anywhere in what it wrote. */
static void test_security_no_token_in_logs(void **state)
{
    (void)state;
    char *dir = testutil_mkdtemp();
    assert_non_null(dir);
    daemon_t d;
    const char *args[] = {"--auth-token", TOKEN,         "--admin-token",
                          ADMIN_TOKEN,    "--log-level", "debug",
                          "--access-log", "-",           NULL};
    assert_int_equal(daemon_start(&d, dir, args), 0);
    const char *good = "Authorization: Bearer " TOKEN;
    const char *admin = "Authorization: Bearer " ADMIN_TOKEN;
    const char *wrong = "Authorization: Bearer " NEAR_MISS;
    assert_int_equal(status_of(&d, "PUT", "/v1/kv/secret-test", good, "v"), 201);
    assert_int_equal(status_of(&d, "GET", "/v1/kv/secret-test", good, NULL), 200);
    assert_int_equal(status_of(&d, "GET", "/v1/kv/secret-test", wrong, NULL), 401);
    assert_int_equal(status_of(&d, "GET", "/v1/kv/secret-test", NULL, NULL), 401);
    assert_int_equal(status_of(&d, "PUT", "/v1/kv/x", "Authorization: Basic " TOKEN, "v"), 401);
    assert_int_equal(status_of(&d, "GET", "/v1/admin/config", admin, NULL), 200);
    assert_int_equal(status_of(&d, "GET", "/v1/admin/config", good, NULL), 401);
    assert_int_equal(status_of(&d, "GET", "/v1/stats", good, NULL), 200);
    assert_int_equal(status_of(&d, "GET", "/metrics", NULL, NULL), 200);
    assert_int_equal(daemon_stop(&d), 0); /* flushes and closes the log */

    char *log = testutil_read_file(d.log_path, NULL);
    assert_non_null(log);
    /* the grep below only means something if the requests were logged */
    assert_non_null(strstr(log, "\"GET /v1/kv/secret-test\" 401 "));
    assert_non_null(strstr(log, "\"GET /v1/admin/config\" 200 "));
    assert_non_null(strstr(log, "listening on"));
    const char *secrets[] = {TOKEN, ADMIN_TOKEN, NEAR_MISS, "9f2c41d7", "5b7e90c2"};
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
        if (strstr(log, secrets[i]))
            fail_msg("the daemon log contains '%s':\n%s", secrets[i], log);
    printf("  %zu bytes of daemon log (debug level, access log), no token in them\n", strlen(log));
    free(log);
    daemon_free(&d);
    testutil_rmdir(dir);
}

/* The local address of the socket listening on port, from /proc/net/tcp
 * and tcp6 ("0100007F" is 127.0.0.1), into addr; false if none. */
static bool listening_address(int port, char *addr, size_t addrlen)
{
    const char *tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    for (int t = 0; t < 2; t++) {
        FILE *f = fopen(tables[t], "r");
        if (!f)
            continue;
        char line[512], local[128];
        unsigned lport, state;
        while (fgets(line, sizeof line, f)) {
            if (sscanf(line, " %*d: %127[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x", local, &lport,
                       &state) == 3 &&
                (int)lport == port && state == 0x0A) {
                snprintf(addr, addrlen, "%s", local);
                fclose(f);
                return true;
            }
        }
        fclose(f);
    }
    return false;
}

/* --listen :PORT (no host) binds 127.0.0.1, as the default 127.0.0.1:8080
 * does (test_config checks the default itself without taking port 8080). */
static void test_security_default_bind_is_loopback(void **state)
{
    (void)state;
    if (access("/proc/net/tcp", R_OK) != 0)
        skip();
    char *dir = testutil_mkdtemp();
    char db[600], logpath[600], listen[32];
    snprintf(db, sizeof db, "%s/sqlcached.db", dir);
    snprintf(logpath, sizeof logpath, "%s/daemon.log", dir);
    int port = testutil_free_port();
    assert_true(port > 0);
    snprintf(listen, sizeof listen, ":%d", port);
    const char *bin = getenv("SQLCACHED_BIN") ? getenv("SQLCACHED_BIN") : "src/sqlcached";
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(bin, bin, "--listen", listen, "--db", db, (char *)NULL);
        _exit(127);
    }
    char addr[128] = "";
    bool found = false;
    for (int i = 0; i < 500 * testutil_scale() && !found; i++) { /* up to 10 s */
        found = listening_address(port, addr, sizeof addr);
        if (!found)
            usleep(20000);
    }
    kill(pid, SIGTERM);
    int status = -1;
    for (int i = 0; i < 1500 * testutil_scale(); i++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            break;
        usleep(20000);
        status = -1;
    }
    if (status == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    testutil_rmdir(dir);
    printf("  --listen :%d listens on %s (hex, from /proc/net)\n", port, addr);
    assert_true(found);
    assert_string_equal(addr, "0100007F");
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    setvbuf(stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_security_no_token_in_logs),
        cmocka_unit_test(test_security_default_bind_is_loopback),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
