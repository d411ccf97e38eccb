// Checking an Assignment against the layout engine, shared by libhgrid
// (each worker checks its own) and hgrid-swarm (checks thousands).
#ifndef HGRID_ASSIGNMENT_H
#define HGRID_ASSIGNMENT_H

#include <stddef.h>
#include <stdint.h>

#include "layout/layout.h"
#include "proto/hgrid.pb-c.h"

// NCCL_UNIQUE_ID_BYTES; nccl.h is not needed to check ids.
#define ASSIGN_ID_BYTES 128
// Groups a worker can be in: its module's kinds and bridges, and a
// colocated rank's second module's kinds.
#define ASSIGN_MAX_GROUPS (2 * HG_MAX_RANK_GROUPS)
#define ASSIGN_BRIDGE HG_GROUP_BRIDGE // the `kind` of a bridge group

// A validated plan plus what every check needs and is costly to derive
// (hg_group_canonical walks the whole module): computed once per layout.
typedef struct {
    hg_plan plan;
    hg_canonical_kinds canonical; // by module index
} assign_ref;

// One group of one rank as the engine derives it, and its module.
typedef struct {
    int kind;  // hg_group_kind, or ASSIGN_BRIDGE
    int canonical; // kind whose communicator it shares (ASSIGN_BRIDGE for a bridge)
    int size, rank_in_group, index;
    int bridge;       // a bridge's index; -1 otherwise
    int module_index; // the module whose group it is
} assign_group;

// Validates layout with the engine and fills ref. -1 with a reason.
int assign_ref_build(assign_ref *ref, const Hgrid__Layout *layout, char *err, size_t errlen);

// The groups of rank in Assignment order (its first module's, then a
// colocated rank's second module's); returns how many.
int assign_expected_groups(const assign_ref *ref, int rank, assign_group *out);

// How many ids rank mints as a leader (PROTOCOL "Mint order"); fills
// which[i] with the position in assign_expected_groups' list of the group
// minted i-th when which is not NULL.
int assign_mint_plan(const assign_ref *ref, int rank, int *which);

// Checks an Assignment's rank, module, coordinates, groups (names, sizes,
// ranks in group, indices, an id exactly on each communicator's canonical
// group), bridge peers and a colocated rank's second module.
// Returns 0, or -1 with the first difference in err.
int assign_check(const assign_ref *ref, const Hgrid__Assignment *a, char *err, size_t errlen);

// Checks that the ids this worker minted (count of them, in mint order)
// are the ones its Assignment carries for the groups it leads and that
// changed (a kept group keeps the last generation's id).
int assign_check_minted(const assign_ref *ref, const Hgrid__Assignment *a, const uint8_t *ids,
                        int count, char *err, size_t errlen);

#endif
