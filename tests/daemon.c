/*
 * daemon.c - see daemon.h.
 */
#include "daemon.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static void print_log(const daemon_t *d)
{
    FILE *f = fopen(d->log_path, "r");
    if (!f)
        return;
    char line[1024];
    fprintf(stderr, "--- daemon log %s ---\n", d->log_path);
    while (fgets(line, sizeof line, f))
        fputs(line, stderr);
    fclose(f);
}

static void exec_daemon(const daemon_t *d)
{
    char *argv[96];
    int n = 0;
    char *wrapper = getenv("SQLCACHED_WRAPPER") ? strdup(getenv("SQLCACHED_WRAPPER")) : NULL;
    for (char *tok = wrapper ? strtok(wrapper, " ") : NULL; tok && n < 40; tok = strtok(NULL, " "))
        argv[n++] = tok;
    const char *bin = getenv("SQLCACHED_BIN");
    argv[n++] = (char *)(bin ? bin : "src/sqlcached");
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", d->port);
    argv[n++] = "--listen";
    argv[n++] = listen;
    argv[n++] = "--db";
    argv[n++] = (char *)d->db_path;
    for (int i = 0; i < d->nargs; i++)
        argv[n++] = d->args[i];
    argv[n] = NULL;
    int fd = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    execvp(argv[0], argv);
    _exit(127);
}

static int healthy(const daemon_t *d)
{
    client_resp_t r;
    int ok = client_request(d, "GET", "/healthz", NULL, NULL, 0, &r) == 0 && r.status == 200;
    client_resp_free(&r);
    return ok;
}

static int launch(daemon_t *d)
{
    d->port = testutil_free_port();
    if (d->port < 0)
        return -1;
    snprintf(d->base_url, sizeof d->base_url, "http://127.0.0.1:%d", d->port);
    d->pid = fork();
    if (d->pid < 0)
        return -1;
    if (d->pid == 0)
        exec_daemon(d);
    for (int i = 0; i < 500 * testutil_scale(); i++) { /* up to 10 s (x20 under a wrapper) */
        int status;
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            d->pid = 0;
            print_log(d);
            return -1;
        }
        if (healthy(d))
            return 0;
        usleep(20000);
    }
    print_log(d);
    daemon_kill(d);
    return -1;
}

int daemon_start(daemon_t *d, const char *dir, const char *const extra_args[])
{
    memset(d, 0, sizeof *d);
    snprintf(d->dir, sizeof d->dir, "%s", dir);
    char *db = testutil_db(dir, "sqlcached.db"); /* a file, or a PostgreSQL URL */
    if (!db || strlen(db) >= sizeof d->db_path) {
        free(db);
        return -1;
    }
    snprintf(d->db_path, sizeof d->db_path, "%s", db);
    free(db);
    snprintf(d->log_path, sizeof d->log_path, "%s/daemon.log", dir);
    for (int i = 0; extra_args && extra_args[i] && i < 47; i++)
        d->args[d->nargs++] = strdup(extra_args[i]);
    return launch(d);
}

int daemon_restart(daemon_t *d)
{
    return launch(d);
}

int daemon_stop(daemon_t *d)
{
    if (d->pid <= 0)
        return -1;
    kill(d->pid, SIGTERM);
    for (int i = 0; i < 1500 * testutil_scale(); i++) { /* up to 30 s */
        int status;
        pid_t r = waitpid(d->pid, &status, WNOHANG);
        if (r == d->pid) {
            d->pid = 0;
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return 0;
            print_log(d);
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        usleep(20000);
    }
    print_log(d);
    daemon_kill(d);
    return -1;
}

void daemon_kill(daemon_t *d)
{
    if (d->pid <= 0)
        return;
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    d->pid = 0;
}

void daemon_free(daemon_t *d)
{
    for (int i = 0; i < d->nargs; i++)
        free(d->args[i]);
    d->nargs = 0;
}

/* Read what the child writes to fd until EOF or the deadline; false on
 * timeout. */
static bool drain_output(int fd, int64_t deadline_ms, char *out, size_t outlen, size_t *n)
{
    for (;;) {
        int64_t left = deadline_ms - testutil_mono_ms();
        if (left <= 0)
            return false;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int rc = poll(&p, 1, (int)left);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            return false;
        char buf[4096];
        ssize_t got = read(fd, buf, sizeof buf);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return true; /* EOF (or error): the child closed its output */
        size_t keep = (size_t)got;
        if (*n + keep >= outlen)
            keep = outlen - 1 - *n;
        memcpy(out + *n, buf, keep);
        *n += keep;
        out[*n] = '\0';
    }
}

int daemon_run(const char *const args[], int timeout_ms, char *out, size_t outlen)
{
    if (outlen == 0)
        return -1;
    out[0] = '\0';
    const char *bin = getenv("SQLCACHED_BIN") ? getenv("SQLCACHED_BIN") : "src/sqlcached";
    char *argv[64];
    int n = 0;
    argv[n++] = (char *)bin;
    for (int i = 0; args && args[i] && n < 63; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        execv(bin, argv);
        _exit(127);
    }
    close(fds[1]);
    size_t got = 0;
    int64_t deadline = testutil_mono_ms() + timeout_ms;
    bool done = drain_output(fds[0], deadline, out, outlen, &got);
    close(fds[0]);
    int status = 0;
    while (done && waitpid(pid, &status, WNOHANG) == 0) {
        if (testutil_mono_ms() >= deadline) {
            done = false;
            break;
        }
        usleep(5000);
    }
    if (!done) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ------------------------------------------------------------------------
 * Client
 * ------------------------------------------------------------------------ */

size_t client_buf_append(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    client_buf_t *b = userdata;
    size_t add = size * nmemb;
    char *grown = realloc(b->p, b->n + add + 1);
    if (!grown)
        return 0;
    memcpy(grown + b->n, ptr, add);
    b->p = grown;
    b->n += add;
    b->p[b->n] = '\0';
    return add;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    client_buf_t *b = userdata;
    if (nmemb * size >= 5 && strncmp(ptr, "HTTP/", 5) == 0)
        b->n = 0; /* a new response (after 100 Continue): keep only the last */
    return client_buf_append(ptr, size, nmemb, userdata);
}

int client_request(const daemon_t *d, const char *method, const char *path,
                   const char *const headers[], const void *body, size_t body_len,
                   client_resp_t *out)
{
    memset(out, 0, sizeof *out);
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    char url[8192];
    snprintf(url, sizeof url, "%s%s", d->base_url, path);
    client_buf_t b = {0}, h = {0};
    struct curl_slist *hl = NULL;
    for (int i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    hl = curl_slist_append(hl, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, client_buf_append);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L * testutil_scale());
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    out->body = b.p ? b.p : strdup("");
    out->body_len = b.n;
    out->headers = h.p ? h.p : strdup("");
    return rc == CURLE_OK ? 0 : -1;
}

char *client_header(const client_resp_t *r, const char *name)
{
    size_t n = strlen(name);
    for (const char *line = r->headers; line && *line;) {
        const char *eol = strstr(line, "\r\n");
        if (!eol)
            break;
        if ((size_t)(eol - line) > n && strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            return strndup(v, (size_t)(eol - v));
        }
        line = eol + 2;
    }
    return NULL;
}

json_t *client_json(const client_resp_t *r)
{
    return json_loadb(r->body, r->body_len, 0, NULL);
}

void client_resp_free(client_resp_t *r)
{
    free(r->body);
    free(r->headers);
    memset(r, 0, sizeof *r);
}

client_resp_t client_req(const daemon_t *d, const char *method, const char *path,
                         const char *const headers[], const char *body, size_t len)
{
    client_resp_t r;
    if (client_request(d, method, path, headers, body, len, &r) != 0) {
        client_resp_free(&r);
        fail_msg("%s %s: no response", method, path);
    }
    return r;
}

long client_status(const daemon_t *d, const char *method, const char *path,
                   const char *const headers[], const char *body)
{
    client_resp_t r = client_req(d, method, path, headers, body, body ? strlen(body) : 0);
    long status = r.status;
    client_resp_free(&r);
    return status;
}

void client_header_is(const client_resp_t *r, const char *name, const char *want)
{
    char *h = client_header(r, name);
    if (!h)
        fail_msg("header %s missing (want \"%s\")", name, want);
    bool same = strcmp(h, want) == 0;
    if (!same)
        print_error("header %s: \"%s\", want \"%s\"\n", name, h, want);
    free(h);
    assert_true(same);
}

void client_assert_problem(const client_resp_t *r, long status, const char *code)
{
    if (r->status != status)
        fail_msg("expected HTTP %ld, got %ld; body: %.400s", status, r->status, r->body);
    client_header_is(r, "Content-Type", "application/problem+json");
    json_t *j = client_json(r);
    if (!j || !json_is_object(j))
        fail_msg("problem body is not a JSON object: %.400s", r->body);
    char type[96];
    snprintf(type, sizeof type, "urn:sqlcached:problem:%s", code);
    json_t *t = json_object_get(j, "type"), *ti = json_object_get(j, "title"),
           *st = json_object_get(j, "status"), *de = json_object_get(j, "detail"),
           *co = json_object_get(j, "code");
    bool ok = json_is_string(t) && strcmp(json_string_value(t), type) == 0 && json_is_string(ti) &&
              json_string_length(ti) > 0 && json_is_integer(st) &&
              json_integer_value(st) == status && json_is_string(de) && json_is_string(co) &&
              strcmp(json_string_value(co), code) == 0;
    json_decref(j);
    if (!ok)
        fail_msg("not a %ld %s problem: %.400s", status, code, r->body);
}

int64_t client_int_member(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    if (!json_is_integer(v))
        fail_msg("member %s is not an integer", name);
    return json_integer_value(v);
}

const char *client_str_member(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    if (!json_is_string(v))
        fail_msg("member %s is not a string", name);
    return json_string_value(v);
}

/* ------------------------------------------------------------------------
 * cmocka fixture
 * ------------------------------------------------------------------------ */

static int fixture_stop_failures; /* daemons that did not exit 0 on SIGTERM */

int daemon_fixture_start(void **state, const char *const args[])
{
    daemon_fixture_t *f = calloc(1, sizeof *f);
    *state = f;
    if (!f || !(f->dir = testutil_mkdtemp()))
        return -1;
    return daemon_start(&f->d, f->dir, args);
}

int daemon_fixture_stop(void **state)
{
    daemon_fixture_t *f = *state;
    if (!f)
        return -1;
    int rc = f->d.pid > 0 ? daemon_stop(&f->d) : 0;
    if (rc != 0) {
        fprintf(stderr, "daemon did not stop cleanly: status %d\n", rc);
        fixture_stop_failures++;
    }
    daemon_free(&f->d);
    if (f->dir)
        testutil_rmdir(f->dir);
    free(f);
    *state = NULL;
    return rc == 0 ? 0 : -1;
}

int daemon_fixture_stop_failures(void)
{
    return fixture_stop_failures;
}

int daemon_raw_connect(const daemon_t *d)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)d->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

bool daemon_raw_send(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

size_t daemon_raw_read_all(int fd, char *out, size_t outlen, int timeout_ms, bool *closed)
{
    size_t n = 0;
    int64_t deadline = testutil_mono_ms() + (int64_t)timeout_ms * testutil_scale();
    *closed = false;
    out[0] = '\0';
    for (;;) {
        int64_t left = deadline - testutil_mono_ms();
        if (left <= 0)
            return n;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int rc = poll(&p, 1, (int)left);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            return n;
        char buf[4096];
        ssize_t got = recv(fd, buf, sizeof buf, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            *closed = true;
            return n;
        }
        size_t keep = (size_t)got < outlen - 1 - n ? (size_t)got : outlen - 1 - n;
        memcpy(out + n, buf, keep);
        n += keep;
        out[n] = '\0';
    }
}
