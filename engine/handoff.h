/*
 * handoff: the lock-free, double-buffered hand-off of deltas from one
 * worker (the producer) to the merger (the consumer).
 *
 * DESIGN. Each worker owns two deltas. It counts into one; at a batch
 * boundary it offers that one to the merger and takes the other back, but
 * only once the merger has emptied it. Two single-pointer mailboxes carry
 * them:
 *   full  - written by the worker (release) when it publishes; emptied by
 *           the merger (acquire exchange), which then owns the delta.
 *   spare - written by the merger (release) after it cleared a delta;
 *           emptied by the worker (acquire exchange).
 * The release/acquire pairs make every plain write to a delta by one side
 * visible to the other before it touches the delta. Each call is one
 * atomic operation: wait-free for both sides, no lock, and the worker never
 * waits: when the merger is behind, the worker keeps counting into the
 * delta it has (memory grows with segments x panes, not with events).
 *
 * Why C11 atomics and not ck_ring: a two-slot exchange needs no ring, and
 * ThreadSanitizer understands C11 atomics but not Concurrency Kit's
 * inline-assembly fences, so tests/stress_handoff.c can be checked under
 * TSan.
 */
#ifndef NPS_HANDOFF_H
#define NPS_HANDOFF_H

#ifdef __cplusplus
/* bench/ is C++: std::atomic<T *> has the layout and lock-free operations
 * of C11's _Atomic(T *) with GCC and Clang (what C++23's <stdatomic.h>
 * maps it to). */
#include <atomic>
#define _Atomic(T) std::atomic<T>
#else
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#endif

struct nps_delta;

typedef struct nps_handoff {
    alignas(64) _Atomic(struct nps_delta *) full;  /* worker -> merger */
    alignas(64) _Atomic(struct nps_delta *) spare; /* merger -> worker */
} nps_handoff;

/* Start with `spare` available to the worker. */
void nps_handoff_init(nps_handoff *handoff, struct nps_delta *spare);

/* @locality worker thread. Offer *current; on success *current becomes the
 * spare delta and true is returned. Wait-free. */
bool nps_handoff_publish_spsc(nps_handoff *handoff, struct nps_delta **current);

/* @locality merger thread. The published delta, or NULL. Wait-free. */
struct nps_delta *nps_handoff_take_spsc(nps_handoff *handoff);

/* @locality merger thread. Return a delta taken with take, cleared. */
void nps_handoff_give_back_spsc(nps_handoff *handoff, struct nps_delta *delta);

#endif
