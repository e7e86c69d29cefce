/*
 * payment.h - the flash sale's payment deadlines: pending orders, pay,
 * cancel, and the timer that cancels orders still pending at pay_by.
 *
 * The public calls (sqlcached_order_pay, sqlcached_order_cancel,
 * sqlcached_payment_stats) live in payment.c and are declared in
 * include/sqlcached.h. This header lets sqlcached_open()/close() create,
 * start and destroy the timer, and lets seckill.c and cluster.c tell it
 * about deadlines.
 *
 * Ownership: payment_create() returns the state, owned by the open store;
 * payment_destroy() stops the timer (if started) and frees it.
 */
#ifndef SQLCACHED_PAYMENT_H
#define SQLCACHED_PAYMENT_H

#include <stdint.h>

#include "sqlcached.h"

typedef struct payment payment_t;

/* The state of db's deadlines, timer not started. NULL when out of
 * memory. */
payment_t *payment_create(sqlcached_t *db);

/* Start the timer thread (after the store and the cluster are open). Its
 * first job is to read the earliest pending pay_by from the store, so a
 * deadline that passed while the store was closed is honoured at once.
 * 0, or -1 with a message in err. */
int payment_start(payment_t *p, char *err, size_t errlen);

/* Stop the timer (before the store and the cluster close) and free.
 * NULL is allowed. */
void payment_destroy(payment_t *p);

/* A pending order (of this node or another) must be paid by `pay_by`
 * (store clock, ms): wake the timer if that is earlier than it knew.
 * Any thread; never blocks on the store. NULL p is allowed (ignored). */
void payment_note_deadline(payment_t *p, int64_t pay_by);

/* Deadline notes may have been missed (a cluster node that missed
 * messages): read the earliest pending pay_by from the store again. Any
 * thread. NULL p is allowed. */
void payment_rescan(payment_t *p);

#endif
