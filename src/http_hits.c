/*
 * http_hits.c - replies to GETs served from the memory tier, built once per
 * tier entry and queued again.
 *
 * A GET hit is a hash lookup and a reference to the cached bytes; building
 * its MHD response (the response object, three headers each copied with
 * malloc and strdup, all freed again after the send) cost more than the
 * lookup. MHD responses are reference-counted and may be queued on many
 * connections at once, so each worker thread keeps the responses of the
 * last HIT_SLOTS entries it answered, in a small direct-mapped table keyed
 * by the entry's bytes (value->data) and version.
 *
 * Lifetimes: a kept response holds one value reference (released by MHD's
 * free callback when the response is freed), so the entry's bytes stay
 * valid, and their address cannot be reused by another entry, while the
 * response lives; the slot holds one response reference, every connection
 * sending it holds another (MHD's). A slot whose entry is replaced in the
 * tier (a write) simply stops matching: the next GET brings a value with
 * other bytes and takes the slot. Values over HIT_BYTES_MAX are not kept,
 * so a thread pins at most HIT_SLOTS * HIT_BYTES_MAX bytes of replaced
 * entries. Each thread's table is freed when the thread ends (MHD stops
 * its workers in MHD_stop_daemon), through a thread-specific key.
 */
#include "http_int.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#define HIT_SLOT_BITS 6
#define HIT_SLOTS (1u << HIT_SLOT_BITS)
#define HIT_BYTES_MAX (64 * 1024) /* larger values: the headers are noise */

typedef struct hit_slot {
    const void *data; /* the tier entry's bytes: its identity while kept */
    int64_t version;
    size_t len;
    struct MHD_Response *resp; /* one reference, ours */
} hit_slot_t;

static pthread_key_t slots_key;
static pthread_once_t slots_once = PTHREAD_ONCE_INIT;
static int slots_key_ok;

static void free_slots(void *p)
{
    hit_slot_t *slots = p;
    for (size_t i = 0; i < HIT_SLOTS; i++)
        if (slots[i].resp)
            MHD_destroy_response(slots[i].resp);
    free(slots);
}

static void make_slots_key(void)
{
    slots_key_ok = pthread_key_create(&slots_key, free_slots) == 0;
}

/* This thread's table (made on first use); NULL when out of memory. */
static hit_slot_t *thread_slots(void)
{
    pthread_once(&slots_once, make_slots_key);
    if (!slots_key_ok)
        return NULL;
    hit_slot_t *slots = pthread_getspecific(slots_key);
    if (slots)
        return slots;
    slots = calloc(HIT_SLOTS, sizeof *slots);
    if (slots && pthread_setspecific(slots_key, slots) != 0) {
        free(slots);
        return NULL;
    }
    return slots;
}

static hit_slot_t *slot_for(hit_slot_t *slots, const void *data)
{
    uint64_t h = (uint64_t)(uintptr_t)data * 0x9e3779b97f4a7c15ull;
    return &slots[h >> (64 - HIT_SLOT_BITS)];
}

enum MHD_Result hi_reply_hit(http_request_t *req, sqlcached_value_t *value)
{
    hit_slot_t *slots = thread_slots();
    hit_slot_t *slot = slots ? slot_for(slots, value->data) : NULL;
    if (slot && slot->resp && slot->data == value->data && slot->version == value->version) {
        size_t len = slot->len;
        sqlcached_value_release(value); /* the kept response holds its own */
        return hi_queue_kept(req, MHD_HTTP_OK, slot->resp, len);
    }
    const void *data = value->data;
    int64_t version = value->version;
    size_t len = value->len;
    struct MHD_Response *resp = hi_value_response(value, "X-Cache", "HIT");
    if (!resp)
        return http_reply_problem(req, "unavailable", "out of memory");
    if (!slot || len > HIT_BYTES_MAX)
        return hi_queue(req, MHD_HTTP_OK, resp, len);
    if (slot->resp)
        MHD_destroy_response(slot->resp);
    *slot = (hit_slot_t){data, version, len, resp};
    return hi_queue_kept(req, MHD_HTTP_OK, resp, len);
}
