/*
 * kvops.h - the consistency checkers' load: one random key-value operation
 * (55% GET, 25% PUT, 10% DELETE, 10% incr) on keys c0..c<nkeys-1>, sent
 * through a relclient and recorded as a history operation (history.h),
 * with its invocation and completion times.
 */
#ifndef SQLCACHED_KVOPS_H
#define SQLCACHED_KVOPS_H

#include "history.h"
#include "relclient.h"

/* Issue one random operation through c and record it in o (whose client
 * and node the caller sets). A request without an answer is recorded as
 * HOP_ERROR with status 0 and the transport error in o->value. */
void kvops_random(rel_client_t *c, uint64_t *rng, unsigned nkeys, hop_t *o);

/* Issue the given operation (kind, key; value for a PUT) through c and
 * record its outcome in o. */
void kvops_send(rel_client_t *c, hop_t *o);

#endif
