// Which NCCL unique ids a plan needs and who mints them (PROTOCOL.md,
// "Which ids" and "Mint order"). Pure code over the layout engine: ids are
// numbered 0..num_ids-1, one per group of each canonical kind of size > 1,
// then one for the bridge.
#ifndef HGRID_DAEMON_MINT_H
#define HGRID_DAEMON_MINT_H

#include "layout/layout.h"

#define MINT_ID_BYTES 128                       // NCCL_UNIQUE_ID_BYTES
#define MINT_BRIDGE HG_NUM_GROUP_KINDS          // mint_group.kind of the bridge
#define MINT_MAX_PER_RANK (HG_NUM_GROUP_KINDS + 1)

typedef struct {
    hg_module_id module;
    int kind;  // a canonical hg_group_kind, or MINT_BRIDGE
    int group; // group index of that kind (0 for the bridge)
} mint_group;

typedef struct {
    const hg_plan *plan;
    // Per plan->modules index and kind: the canonical kind, and the id of
    // group 0 of each canonical kind with groups of size > 1 (else -1).
    hg_group_kind canonical[2][HG_NUM_GROUP_KINDS];
    int id_base[2][HG_NUM_GROUP_KINDS];
    int bridge_id; // -1 without a bridge
    int num_ids;
} mint_plan;

void mint_plan_init(mint_plan *mp, const hg_plan *plan);
// The ids rank mints, in MintRequest order; returns how many (0: no leader).
int mint_leader_ids(const mint_plan *mp, int rank, int ids[MINT_MAX_PER_RANK]);
// The id rank uses for its group of `kind` (whose module holds rank), or -1
// when that group has one rank or does not hold rank.
int mint_group_id(const mint_plan *mp, int rank, hg_group_kind kind);
// What id stands for.
void mint_id_group(const mint_plan *mp, int id, mint_group *out);

#endif
