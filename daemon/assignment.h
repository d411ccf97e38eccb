// One worker's Assignment, built on the stack from the layout engine.
#ifndef HGRID_DAEMON_ASSIGNMENT_H
#define HGRID_DAEMON_ASSIGNMENT_H

#include "daemon/job.h"

#define ASSIGNMENT_STACK_PEERS 64

// One Assignment and the storage its pointers reach (ids point into j->ids).
typedef struct {
    Hgrid__Assignment a;
    Hgrid__Coordinates coords;
    Hgrid__Group groups[HG_NUM_GROUP_KINDS + 1], *group_ptrs[HG_NUM_GROUP_KINDS + 1];
    Hgrid__BridgePeer stack_peers[ASSIGNMENT_STACK_PEERS], *peers;
    Hgrid__BridgePeer *stack_peer_ptrs[ASSIGNMENT_STACK_PEERS], **peer_ptrs;
} assignment_buf;

// Builds rank's Assignment in b; 0, or -1 if out of memory. Free with
// assignment_buf_free.
int assignment_build(const job *j, int rank, assignment_buf *b);
void assignment_buf_free(assignment_buf *b);
// Sends rank's Assignment on c (a worker behind an agent: into its host's
// batch); 0, or -1 (c is closing).
int assignment_send(job *j, int rank, conn *c);

#endif
