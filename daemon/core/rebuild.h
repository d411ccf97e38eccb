// Which communicators a new generation re-creates (PROTOCOL.md, "Partial
// rebuild"): only the groups holding a replaced rank get a new id; every
// other group keeps its id, and its members keep their communicator. Pure
// code over the mint plan.
#ifndef HGRID_DAEMON_REBUILD_H
#define HGRID_DAEMON_REBUILD_H

#include <stdbool.h>
#include <stdint.h>

#include "daemon/core/mint.h"

typedef struct {
    uint8_t *replaced;  // per rank: its communicators are gone (lost, or never formed)
    uint8_t *changed;   // per id: re-minted in the current generation
    uint8_t *broken;    // per id: its members aborted it (settle_judge): re-minted next
    int *leads;         // per rank: changed ids it mints (rebuild_count)
    int num_replaced;
    int num_changed;
    int world_size, num_ids;
} rebuild_state;

// Every rank starts replaced: the first generation mints every id.
int rebuild_init(rebuild_state *rb, const mint_plan *mp);
void rebuild_free(rebuild_state *rb);
// rank's worker is gone: its groups are re-created in the next generation.
void rebuild_lose(rebuild_state *rb, int rank);
// The group behind id was aborted by its members (a member left it with
// an operation unmatched): the next generation re-creates it.
void rebuild_break(rebuild_state *rb, int id);
// Every rank lost its communicators (e.g. gridd restarted and no longer knows the ids).
void rebuild_lose_all(rebuild_state *rb);
// At a generation's start: marks the ids of every group holding a replaced
// rank, and every broken one, as changed; returns how many ids change.
int rebuild_plan(rebuild_state *rb, const mint_plan *mp);
// Every rank formed the current generation's communicators: none is
// replaced or broken any more.
void rebuild_formed(rebuild_state *rb);
// The member ranks of the group behind id (members holds world_size);
// returns how many.
int rebuild_id_members(const mint_plan *mp, int id, int *members);
// For the current plan: per rank, the changed ids its Assignment waits for
// (missing) and the changed ids it mints (rb->leads), in time linear in
// the changed groups' members. members: scratch of world_size.
void rebuild_count(rebuild_state *rb, const mint_plan *mp, int *missing, int *members);
// The changed ids rank mints, in MintRequest order; returns how many.
int rebuild_leader_ids(const rebuild_state *rb, const mint_plan *mp, int rank,
                       int ids[MINT_MAX_PER_RANK]);
// The distinct changed ids rank's groups use (what its Assignment waits
// for; rebuild_count gives every rank's at once).
int rebuild_ids_needed(const rebuild_state *rb, const mint_plan *mp, int rank);
static inline bool rebuild_id_changed(const rebuild_state *rb, int id)
{
    return id >= 0 && rb->changed[id];
}

#endif
