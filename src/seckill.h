/*
 * seckill.h - the flash sale's in-memory state, owned by the open store.
 *
 * The public calls (sqlcached_item_*, sqlcached_order_*) live in seckill.c
 * and are declared in include/sqlcached.h. This header only lets
 * sqlcached_open() and sqlcached_close() create and destroy the state that
 * backs the sold-out fast path and the counters.
 */
#ifndef SQLCACHED_SECKILL_H
#define SQLCACHED_SECKILL_H

#include <stdbool.h>

typedef struct seckill seckill_t;

/* The empty state: no item known sold out, counters at 0. NULL when out of
 * memory. */
seckill_t *seckill_create(void);

/* Free the state. NULL is allowed. */
void seckill_destroy(seckill_t *sk);

/* True when the item is currently refused from memory (its sold-out flag
 * is set and valid). For tests and diagnostics. */
bool seckill_flag_is_set(seckill_t *sk, const char *item_id);

/* Another node committed a reset of the item at `version`: every sold-out
 * observation older than it is void. */
void seckill_note_reset(seckill_t *sk, const char *item_id, int64_t version);

/* Forget every sold-out flag, and void the observations in flight (the
 * node may have missed a reset). */
void seckill_forget_flags(seckill_t *sk);

#endif
