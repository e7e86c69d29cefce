/*
 * relclient.h - a keep-alive HTTP client for the reliability tests (crash
 * loop, consistency checker, storage faults).
 *
 * One rel_client_t per thread: a libcurl easy handle that keeps its
 * connection, a reusable body buffer, and the two headers these tests read
 * (ETag as a version, Retry-After). Call curl_global_init() once before
 * any thread starts. Every request has a timeout, so no call blocks forever.
 */
#ifndef SQLCACHED_RELCLIENT_H
#define SQLCACHED_RELCLIENT_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

typedef enum rel_transport {
    REL_ANSWERED = 0, /* a complete response arrived: status, body, headers */
    REL_IN_DOUBT      /* no answer (refused, reset, timeout): the request may
                         or may not have been applied */
} rel_transport_t;

typedef struct rel_client {
    CURL *curl;
    char base_url[64]; /* "http://127.0.0.1:PORT" */
    long timeout_ms;
    /* the last response */
    long status;
    char *body; /* NUL-terminated; owned, reused */
    size_t len, cap;
    int64_t etag;    /* the ETag as an integer version, -1 if none */
    int retry_after; /* seconds, -1 if none */
    int curl_code;   /* CURLcode of the last request (0 = answered) */
} rel_client_t;

/* 0, or -1 when libcurl cannot make a handle. */
int rel_client_init(rel_client_t *c, const char *base_url, long timeout_ms);

/* Point the client at another base URL (after a restart on a new port). */
void rel_client_set_base(rel_client_t *c, const char *base_url);

void rel_client_free(rel_client_t *c);

/* One request; body may be NULL (none). The path is appended to the base
 * URL as is. */
rel_transport_t rel_request(rel_client_t *c, const char *method, const char *path, const void *body,
                            size_t len);

/* The "code" member of the last problem+json body, "" if none (a
 * thread-local buffer: valid until this thread's next call). */
const char *rel_problem_code(rel_client_t *c);

/* A JSON integer member of the last body; 0 and *out, or -1. */
int rel_json_int(rel_client_t *c, const char *member, int64_t *out);

/* A JSON string member of the last body, copied (truncated) into out; 0,
 * or -1 (out is then ""). */
int rel_json_string(rel_client_t *c, const char *member, char *out, size_t cap);

/* Monotonic clock in ns (for invocation and completion times). */
int64_t rel_now_ns(void);

/* xorshift64*: a small per-thread generator; *state must be non-zero. */
uint64_t rel_rand(uint64_t *state);

#endif
