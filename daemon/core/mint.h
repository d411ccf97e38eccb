// Which NCCL unique ids a plan needs and who mints them (PROTOCOL.md,
// "Which ids" and "Mint order"). Pure code over the layout engine: ids are
// numbered 0..num_ids-1, one per group of each canonical kind of size > 1
// of each module in plan order, then one per bridge.
#ifndef HGRID_DAEMON_MINT_H
#define HGRID_DAEMON_MINT_H

#include "layout/layout.h"

#define MINT_ID_BYTES 128                       // NCCL_UNIQUE_ID_BYTES
#define MINT_BRIDGE HG_NUM_GROUP_KINDS          // mint_group.kind of a bridge
// A colocated rank leads groups in two modules.
#define MINT_MAX_PER_RANK (2 * HG_MAX_RANK_GROUPS)

typedef struct {
    int module_index; // into plan->modules (the encoder's for a bridge)
    int kind;         // a canonical hg_group_kind, or MINT_BRIDGE
    int group;        // group index of that kind (the bridge's index for a bridge)
} mint_group;

typedef struct {
    const hg_plan *plan;
    hg_canonical_kinds canonical;
    // Per module index and kind: the id of group 0 of each canonical kind
    // with groups of size > 1 (else -1); per bridge its id (else -1).
    int id_base[HG_MAX_MODULES][HG_NUM_GROUP_KINDS];
    int bridge_id[HG_MAX_ENCODERS];
    int num_ids;
} mint_plan;

void mint_plan_init(mint_plan *mp, const hg_plan *plan);
// The ids rank mints, in MintRequest order; returns how many (0: no leader).
int mint_leader_ids(const mint_plan *mp, int rank, int ids[MINT_MAX_PER_RANK]);
// The id of the communicator rank uses for its group g of module m, or -1
// when that group has one rank.
int mint_rank_group_id(const mint_plan *mp, const hg_module_grid *m, int rank,
                       const hg_rank_group *g);
// The id rank uses for its group of `kind` in its first module, or -1 when
// that group has one rank or does not hold rank.
int mint_group_id(const mint_plan *mp, int rank, hg_group_kind kind);
// What id stands for.
void mint_id_group(const mint_plan *mp, int id, mint_group *out);

#endif
