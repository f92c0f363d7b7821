/*
 * handoff: see handoff.h for the protocol and its memory ordering.
 */
#include "handoff.h"

#include <stddef.h>

void nps_handoff_init(nps_handoff *handoff, struct nps_delta *spare)
{
    atomic_init(&handoff->full, NULL);
    atomic_init(&handoff->spare, spare);
}

bool nps_handoff_publish_spsc(nps_handoff *handoff, struct nps_delta **current)
{
    /* The merger returns a delta only after taking the previous one, so
     * holding the spare means `full` is empty. */
    struct nps_delta *spare = atomic_exchange_explicit(&handoff->spare, NULL, memory_order_acquire);
    if (!spare)
        return false;
    atomic_store_explicit(&handoff->full, *current, memory_order_release);
    *current = spare;
    return true;
}

struct nps_delta *nps_handoff_take_spsc(nps_handoff *handoff)
{
    /* Cheap check first so an idle poll does not write the cache line. */
    if (!atomic_load_explicit(&handoff->full, memory_order_relaxed))
        return NULL;
    return atomic_exchange_explicit(&handoff->full, NULL, memory_order_acquire);
}

void nps_handoff_give_back_spsc(nps_handoff *handoff, struct nps_delta *delta)
{
    atomic_store_explicit(&handoff->spare, delta, memory_order_release);
}
