/*
 * history.h - a recorded history of key-value operations and the checker
 * of the contract's consistency promise over it.
 *
 * Each operation carries its invocation and completion times (monotonic
 * clock, taken by the client just before sending and just after the
 * answer), its result and the version it wrote or read (the ETag). Versions
 * come from one store-wide counter, so they order the writes; a DELETE's
 * version is not returned, so deletes are placed by their times only. The
 * checker reports, per read:
 *   - stale: a GET returned version v although a write with a larger
 *     version had been acknowledged before the GET was sent;
 *   - resurrected: a GET returned v although a DELETE sent after the write
 *     of v completed had been acknowledged before the GET was sent;
 *   - lost delete / missing: a GET answered 404 although a write had been
 *     acknowledged before it was sent and no DELETE can be placed between
 *     that write and the GET;
 *   - phantom / future / wrong value: the version read was never written,
 *     was written only after the GET completed, or holds another value;
 * and per write and per client:
 *   - version order: a write sent after another completed got a smaller
 *     version;
 *   - not monotonic: one client saw a key's version go back (or saw an old
 *     version again after seeing the key absent).
 * These are necessary conditions of linearizability, checked in
 * O(n log n); they are exactly what "no stale read after an acknowledged
 * write" forbids.
 *
 * Indeterminate operations (HOP_UNKNOWN: a request the run allows to go
 * unanswered, e.g. to a node it paused or killed) may or may not have
 * taken effect, at any time after their invocation: such a write never
 * makes a read stale, but a read may return it (a version no acknowledged
 * write has, with the PUT's value, from a write invoked before the read
 * completed: counted as from_indeterminate, not phantom), and such a
 * delete may explain a 404.
 */
#ifndef SQLCACHED_HISTORY_H
#define SQLCACHED_HISTORY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum hop_kind { HOP_GET, HOP_PUT, HOP_DELETE, HOP_INCR } hop_kind_t;

typedef enum hop_result {
    HOP_OK,     /* 2xx */
    HOP_ABSENT, /* 404 */
    HOP_OTHER,  /* an answer that changed nothing (412, 409) */
    HOP_ERROR,  /* no answer or 5xx: counts against the run */
    HOP_UNKNOWN /* no answer or 5xx where the run allows it: indeterminate */
} hop_result_t;

typedef struct hop {
    int64_t invoke, complete; /* ns */
    int64_t version;          /* written (PUT, INCR) or read (GET); 0 = none */
    int64_t value;            /* written (PUT), resulting (INCR) or read (GET) */
    uint32_t client;
    uint16_t key;
    uint8_t kind;            /* hop_kind_t */
    uint8_t result;          /* hop_result_t */
    uint16_t status;         /* HTTP status, 0 = no answer */
    uint8_t node;            /* the node asked (runs over several), else 0 */
    uint8_t transport_error; /* without an answer: the client's error code */
} hop_t;

typedef struct history_report {
    uint64_t reads_checked, writes_checked;
    uint64_t stale, resurrected, missing, phantom, future, wrong_value;
    uint64_t version_order, not_monotonic, duplicate_version, errors;
    uint64_t indeterminate;      /* HOP_UNKNOWN operations (not violations) */
    uint64_t from_indeterminate; /* reads that returned an indeterminate write */
} history_report_t;

/* Total violations in a report. */
uint64_t history_violations(const history_report_t *r);

/* Check ops[0..n) (any order; per client, ops must appear in the order the
 * client issued them). Prints up to `print` violations to out (may be
 * NULL). Sorts scratch copies; ops is not changed. 0, or -1 on ENOMEM. */
int history_check(const hop_t *ops, size_t n, unsigned nkeys, history_report_t *r, FILE *out,
                  int print);

#endif
