/*
 * daemon.h - test harness: run the real sqlcached daemon on a free loopback
 * port with a temporary database, and talk to it over real HTTP (libcurl).
 * The database is testutil_db(dir, "sqlcached.db"): a file in the test's
 * directory, or under SQLCACHED_TEST_BACKEND=postgresql a schema of the
 * test process's throwaway PostgreSQL (given as --db).
 *
 * The binary is $SQLCACHED_BIN (set by `make check`); $SQLCACHED_WRAPPER, if
 * set, is a command prefix (e.g. "valgrind --error-exitcode=1") and
 * lengthens every wait. Every wait is bounded.
 */
#ifndef SQLCACHED_TEST_DAEMON_H
#define SQLCACHED_TEST_DAEMON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct daemon {
    pid_t pid;
    int port;
    char dir[256];     /* directory of the database and the log */
    char db_path[512]; /* --db: a SQLite file or a postgresql:// URL */
    char log_path[512];
    char base_url[64]; /* "http://127.0.0.1:PORT" */
    char *args[48];    /* extra flags given at start (kept for restarts) */
    int nargs;
} daemon_t;

/* Start the daemon with its database in dir (created by the caller) and
 * extra flags (NULL-terminated list, may be NULL); waits until /healthz
 * answers. Returns 0, or -1 (the log is printed). */
int daemon_start(daemon_t *d, const char *dir, const char *const extra_args[]);

/* Start again with the same directory and flags (after a stop or kill);
 * a fresh port is picked. */
int daemon_restart(daemon_t *d);

/* SIGTERM, wait for exit; returns the exit status (0 = clean), -1 on
 * timeout (then SIGKILL). */
int daemon_stop(daemon_t *d);

/* SIGKILL and reap. */
void daemon_kill(daemon_t *d);

/* Free the argument copies. */
void daemon_free(daemon_t *d);

/* Run $SQLCACHED_BIN once with args (NULL-terminated, may be NULL), without
 * $SQLCACHED_WRAPPER, and wait for it to exit, at most timeout_ms (then
 * SIGKILL). Its stdout and stderr are captured into out (NUL-terminated,
 * truncated to outlen). Returns the exit status, 128 + N if signal N ended
 * it, or -1 if it could not be started or did not exit in time. For
 * checking start-up errors: pass "--listen 127.0.0.1:0" so that a run that
 * unexpectedly starts serving never takes a fixed port. */
int daemon_run(const char *const args[], int timeout_ms, char *out, size_t outlen);

typedef struct client_resp {
    long status;
    char *body; /* NUL-terminated */
    size_t body_len;
    char *headers; /* raw header block of the final response */
} client_resp_t;

/* One request. headers: NULL-terminated list of "Name: value" (may be
 * NULL). body may be NULL (no body). Returns 0 when a response arrived. */
int client_request(const daemon_t *d, const char *method, const char *path,
                   const char *const headers[], const void *body, size_t body_len,
                   client_resp_t *out);

/* A header's value (malloc'd, caller frees) or NULL. Case-insensitive. */
char *client_header(const client_resp_t *r, const char *name);

/* The body parsed as JSON (caller decrefs) or NULL. */
json_t *client_json(const client_resp_t *r);

void client_resp_free(client_resp_t *r);

/* In a cmocka test: client_request, failing the test when no response
 * came (the caller frees the response). */
client_resp_t client_req(const daemon_t *d, const char *method, const char *path,
                         const char *const headers[], const char *body, size_t len);

/* In a cmocka test: the status of a request (the test fails if none was
 * answered; the response is freed). headers as for client_request. */
long client_status(const daemon_t *d, const char *method, const char *path,
                   const char *const headers[], const char *body);

/* In a cmocka test: assert that header name is present with value want. */
void client_header_is(const client_resp_t *r, const char *name, const char *want);

/* In a cmocka test: assert an RFC 9457 problem with the contract's members
 * (type urn:sqlcached:problem:CODE, title, status, detail, code), this
 * status and code, served as application/problem+json. */
void client_assert_problem(const client_resp_t *r, long status, const char *code);

/* In a cmocka test: member name of the JSON object o, failing the test
 * when it is absent or of another type (the string belongs to o). */
int64_t client_int_member(json_t *o, const char *name);
const char *client_str_member(json_t *o, const char *name);

/* A growing NUL-terminated buffer (p malloc'd; the caller frees it) and
 * the libcurl write callback that appends to it (userdata: the buffer). */
typedef struct client_buf {
    char *p;
    size_t n;
} client_buf_t;
size_t client_buf_append(char *ptr, size_t size, size_t nmemb, void *userdata);

/* A cmocka fixture (*state): a daemon on a database in a fresh temporary
 * directory. */
typedef struct daemon_fixture {
    char *dir;
    daemon_t d;
} daemon_fixture_t;

/* Setup: allocate the fixture into *state and start the daemon with args
 * (NULL-terminated, may be NULL). 0, or -1 (the teardown still frees). */
int daemon_fixture_start(void **state, const char *const args[]);

/* Teardown: stop the daemon with SIGTERM (when running), remove the
 * directory, free the fixture. -1 when the daemon did not exit 0, which is
 * also counted (daemon_fixture_stop_failures). */
int daemon_fixture_stop(void **state);

/* Daemons daemon_fixture_stop saw exit other than 0 since the start. */
int daemon_fixture_stop_failures(void);

/* Raw sockets, for tests of what goes over the wire byte by byte. */

/* A blocking TCP connection to the daemon on 127.0.0.1, or -1. */
int daemon_raw_connect(const daemon_t *d);

/* Send all of buf; false if the peer closed first (that is allowed). */
bool daemon_raw_send(int fd, const void *buf, size_t n);

/* Read until EOF, reset or timeout_ms (times 20 under SQLCACHED_WRAPPER);
 * returns the bytes read (NUL terminated in out[outlen]). *closed tells
 * whether the peer closed. */
size_t daemon_raw_read_all(int fd, char *out, size_t outlen, int timeout_ms, bool *closed);

#endif
