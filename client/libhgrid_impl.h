// libhgrid's internals, shared by its source files only.
#ifndef HGRID_LIBHGRID_IMPL_H
#define HGRID_LIBHGRID_IMPL_H

#include "client/assignment.h"
#include "client/hgrid.h"
#include "wire/wire.h"

#define HGRID_ERR_LEN 512

typedef struct {
    hgrid_group pub;
    uint8_t id[HGRID_ID_BYTES];
} group_slot;

struct hgrid_worker {
    int fd;
    wire_reader reader;
    Hgrid__Envelope **queue; // frames received, not yet handled (FIFO)
    size_t queue_head, queue_len, queue_cap;
    char error[HGRID_ERR_LEN];
    char reason[HGRID_ERR_LEN];

    // ids this worker minted for the generation being formed
    uint64_t mint_generation;
    uint8_t *minted;
    int minted_count;

    // the current assignment
    bool assigned;
    uint64_t generation;
    char job[72];
    int rank;
    assign_ref ref;
    hg_coords coords;
    group_slot groups[ASSIGN_MAX_GROUPS];
    int num_groups;
    int *members; // backing store of every group's member list
    hgrid_bridge_peer *peers;
    int num_peers;

    // heartbeat bookkeeping for step_time_s
    uint64_t last_step;
    double last_beat_s;
};

int hgrid_fail(hgrid_worker *w, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
// Takes in a received Assignment (owned by the caller): checks it against
// the engine and the ids minted, then replaces the current one.
int hgrid_take_assignment(hgrid_worker *w, const Hgrid__Assignment *a);
void hgrid_drop_assignment(hgrid_worker *w);

#endif
