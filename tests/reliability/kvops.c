/*
 * kvops.c - see kvops.h.
 */
#include "kvops.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* Fill o from the answer to the request just made. */
static void record_answer(rel_client_t *c, hop_t *o)
{
    long st = c->status;
    o->status = (uint16_t)st;
    o->result = st >= 200 && st < 300    ? HOP_OK
                : st == 404              ? HOP_ABSENT
                : st == 412 || st == 409 ? HOP_OTHER
                                         : HOP_ERROR;
    if (o->result != HOP_OK)
        return;
    if (o->kind == HOP_GET) {
        o->version = c->etag;
        o->value = strtoll(c->body, NULL, 10);
    } else if (o->kind == HOP_PUT) {
        o->version = c->etag;
    } else if (o->kind == HOP_INCR) {
        o->version = c->etag;
        if (rel_json_int(c, "value", &o->value) != 0)
            o->result = HOP_ERROR;
    }
}

void kvops_send(rel_client_t *c, hop_t *o)
{
    char path[64], body[32];
    const char *method = "GET";
    const char *payload = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "/v1/kv/c%u", o->key);
    if (o->kind == HOP_PUT) {
        method = "PUT";
        len = (size_t)snprintf(body, sizeof body, "%" PRId64, o->value);
        payload = body;
    } else if (o->kind == HOP_DELETE) {
        method = "DELETE";
    } else if (o->kind == HOP_INCR) {
        method = "POST";
        snprintf(path, sizeof path, "/v1/kv/c%u/incr", o->key);
        len = (size_t)snprintf(body, sizeof body, "{\"by\":%" PRId64 "}", o->value);
        payload = body;
    }
    o->invoke = rel_now_ns();
    rel_transport_t t = rel_request(c, method, path, payload, len);
    o->complete = rel_now_ns();
    if (t != REL_ANSWERED) {
        o->result = HOP_ERROR;
        o->status = 0;
        o->transport_error = (uint8_t)c->curl_code; /* for the error report */
    } else
        record_answer(c, o);
}

void kvops_random(rel_client_t *c, uint64_t *rng, unsigned nkeys, hop_t *o)
{
    unsigned dice = (unsigned)(rel_rand(rng) % 100);
    o->key = (uint16_t)(rel_rand(rng) % nkeys);
    if (dice < 55) {
        o->kind = HOP_GET;
    } else if (dice < 80) {
        o->kind = HOP_PUT;
        o->value = (int64_t)(rel_rand(rng) % 1000000);
    } else if (dice < 90) {
        o->kind = HOP_DELETE;
    } else {
        o->kind = HOP_INCR;
        o->value = 1 + (int64_t)(rel_rand(rng) % 3); /* the step until the answer */
    }
    kvops_send(c, o);
}
