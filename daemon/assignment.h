// One worker's Assignment, built on the stack from the layout engine.
#ifndef HGRID_DAEMON_ASSIGNMENT_H
#define HGRID_DAEMON_ASSIGNMENT_H

#include "daemon/job.h"

#define ASSIGNMENT_STACK_PEERS 64

// One module's coordinates and groups of rank, in the engine's order.
typedef struct {
    Hgrid__Coordinates coords;
    Hgrid__Group groups[HG_MAX_RANK_GROUPS], *group_ptrs[HG_MAX_RANK_GROUPS];
    char names[HG_MAX_RANK_GROUPS][HG_GROUP_NAME_LEN];
    hg_rank_group rank_groups[HG_MAX_RANK_GROUPS];
    size_t n;
} assignment_module;

// One Assignment and the storage its pointers reach (ids point into j->ids);
// not to be moved once built.
typedef struct {
    Hgrid__Assignment a;
    assignment_module parts[2]; // its module, then a colocated one
    Hgrid__ModuleAssignment colocated, *colocated_ptrs[1];
    Hgrid__BridgePeer stack_peers[ASSIGNMENT_STACK_PEERS], *peers;
    Hgrid__BridgePeer *stack_peer_ptrs[ASSIGNMENT_STACK_PEERS], **peer_ptrs;
    hg_bridge_peer stack_scratch[ASSIGNMENT_STACK_PEERS], *scratch;
} assignment_buf;

// Builds rank's Assignment in b; 0, or -1 if out of memory. Free with
// assignment_buf_free.
int assignment_build(const job *j, int rank, assignment_buf *b);
void assignment_buf_free(assignment_buf *b);
// Sends rank's Assignment on c (a worker behind an agent: into its host's
// batch); 0, or -1 (c is closing).
int assignment_send(job *j, int rank, conn *c);

#endif
