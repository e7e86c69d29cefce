/*
 * relclient.c - see relclient.h.
 */
#include "relclient.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    rel_client_t *c = userdata;
    size_t add = size * nmemb;
    if (c->len + add + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 1024;
        while (cap < c->len + add + 1)
            cap *= 2;
        char *grown = realloc(c->body, cap);
        if (!grown)
            return 0;
        c->body = grown;
        c->cap = cap;
    }
    memcpy(c->body + c->len, ptr, add);
    c->len += add;
    c->body[c->len] = '\0';
    return add;
}

/* Header lines arrive one by one; a status line starts a new response. */
static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    rel_client_t *c = userdata;
    size_t n = size * nmemb;
    char line[256];
    if (n >= sizeof line)
        return n;
    memcpy(line, ptr, n);
    line[n] = '\0';
    if (strncmp(line, "HTTP/", 5) == 0) {
        c->etag = -1;
        c->retry_after = -1;
    } else if (strncasecmp(line, "ETag:", 5) == 0) {
        const char *q = strchr(line, '"');
        c->etag = q ? strtoll(q + 1, NULL, 10) : -1;
    } else if (strncasecmp(line, "Retry-After:", 12) == 0) {
        c->retry_after = atoi(line + 12);
    }
    return n;
}

int rel_client_init(rel_client_t *c, const char *base_url, long timeout_ms)
{
    memset(c, 0, sizeof *c);
    c->curl = curl_easy_init();
    c->cap = 1024;
    c->body = malloc(c->cap); /* always a buffer, even for an empty body */
    if (!c->curl || !c->body) {
        rel_client_free(c);
        return -1;
    }
    c->body[0] = '\0';
    c->timeout_ms = timeout_ms;
    rel_client_set_base(c, base_url);
    return 0;
}

void rel_client_set_base(rel_client_t *c, const char *base_url)
{
    snprintf(c->base_url, sizeof c->base_url, "%s", base_url);
}

void rel_client_free(rel_client_t *c)
{
    if (c->curl)
        curl_easy_cleanup(c->curl);
    free(c->body);
    memset(c, 0, sizeof *c);
}

rel_transport_t rel_request(rel_client_t *c, const char *method, const char *path, const void *body,
                            size_t len)
{
    char url[1024];
    snprintf(url, sizeof url, "%s%s", c->base_url, path);
    CURL *h = c->curl;
    c->len = 0;
    c->status = 0;
    c->etag = -1;
    c->retry_after = -1;
    c->body[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, url);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
    c->curl_code = (int)curl_easy_perform(h);
    if (c->curl_code != CURLE_OK)
        return REL_IN_DOUBT;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &c->status);
    return REL_ANSWERED;
}

const char *rel_problem_code(rel_client_t *c)
{
    static _Thread_local char code[64];
    code[0] = '\0';
    json_t *j = c->len ? json_loadb(c->body, c->len, 0, NULL) : NULL;
    const char *s = json_string_value(json_object_get(j, "code"));
    if (s)
        snprintf(code, sizeof code, "%s", s);
    json_decref(j);
    return code;
}

int rel_json_int(rel_client_t *c, const char *member, int64_t *out)
{
    json_t *j = c->len ? json_loadb(c->body, c->len, 0, NULL) : NULL;
    json_t *v = json_object_get(j, member);
    int rc = json_is_integer(v) ? 0 : -1;
    if (rc == 0)
        *out = json_integer_value(v);
    json_decref(j);
    return rc;
}

int rel_json_string(rel_client_t *c, const char *member, char *out, size_t cap)
{
    json_t *j = c->len ? json_loadb(c->body, c->len, 0, NULL) : NULL;
    const char *s = json_string_value(json_object_get(j, member));
    if (cap)
        snprintf(out, cap, "%s", s ? s : "");
    json_decref(j);
    return s ? 0 : -1;
}

int64_t rel_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint64_t rel_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}
