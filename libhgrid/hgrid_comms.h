// libhgrid's NCCL communicators: one per distinct rank set of size > 1 in
// the worker's current assignment (groups with the same rank set share it;
// one-rank groups need none). Needs a GPU; links NCCL and the CUDA runtime.
//
//   hgrid_comms *comms;
//   if (hgrid_comms_create(w, device, 60000, &comms) != HGRID_OK) ...hgrid_error(w)...
//   ncclComm_t tp = hgrid_comms_get(comms, "tp"); // NULL when tp has one rank
//   ... on HGRID_ABORTED from hgrid_poll: hgrid_comms_abort(comms) and rejoin
#ifndef HGRID_COMMS_H
#define HGRID_COMMS_H

#include <nccl.h>

#include "libhgrid/hgrid.h"

typedef struct hgrid_comms hgrid_comms;

// The minter a worker that creates communicators passes in its Hello
// (hgrid_hello_options.mint): ncclGetUniqueId.
int hgrid_nccl_mint(uint8_t *id, char *err, size_t errlen);

typedef enum {
    HGRID_COMMS_INIT,  // ncclCommInitRankConfig per distinct group, batched in one group call
    HGRID_COMMS_SPLIT, // init the module's (and the bridge's), ncclCommSplit the rest from it
} hgrid_comms_strategy;
// The faster of the two on the benchmark, and the one whose groups all
// reach >= 96% of torch.distributed's busbw (docs/PERFORMANCE.md, Communicators).
#define HGRID_COMMS_DEFAULT HGRID_COMMS_SPLIT

// Creates every communicator on CUDA device `device` by HGRID_COMMS_DEFAULT:
// non-blocking inits (batched in one ncclGroupStart/End) and splits, polled
// until all are ready. If
// timeout_ms passes, an init fails, or gridd aborts the generation
// meanwhile, every communicator is aborted (ncclCommAbort: no hang on a
// missing peer) and a negative status (or HGRID_ABORTED / HGRID_RELEASED)
// is returned with the reason in hgrid_error(w).
int hgrid_comms_create(hgrid_worker *w, int device, int timeout_ms, hgrid_comms **out);
// The same with a chosen strategy.
int hgrid_comms_create_with(hgrid_worker *w, int device, int timeout_ms,
                            hgrid_comms_strategy how, hgrid_comms **out);
// For the worker's new assignment (a new generation): keeps every
// communicator of *comms whose group kept its id (hgrid_group.kept, the
// same id bytes: no member was replaced), aborts the others and creates
// the new ones by ncclCommInitRankConfig. *comms NULL: as
// hgrid_comms_create. On failure every communicator is aborted and *comms
// is NULL. *kept: how many were kept. Only for communicators with no
// operation in flight (after an Abort between steps, or once the training
// thread has drained its streams).
int hgrid_comms_rebuild(hgrid_worker *w, int device, int timeout_ms, hgrid_comms **comms,
                        int *kept);
// The communicator of the worker's group `name`; NULL for one-rank groups
// and groups the worker is not in.
ncclComm_t hgrid_comms_get(const hgrid_comms *c, const char *name);
// The communicator of the group at position i (hgrid_group_at), shared
// ones resolved; NULL for one-rank groups.
ncclComm_t hgrid_comms_at(const hgrid_comms *c, int i);
// Aborts every communicator without waiting for peers, and frees c.
void hgrid_comms_abort(hgrid_comms *c);
// After HGRID_ABORTED while operations may be in flight (training): aborts
// the communicators of the groups holding one of the Abort's lost ranks
// (hgrid_lost_ranks; every one when it named none), and those gridd named
// broken since (hgrid_group_broken; call it again after each such word), and keeps the others,
// for hgrid_comms_rebuild once they are quiet. Returns how many it aborted.
int hgrid_comms_abort_lost(hgrid_comms *c);
// Finalizes and destroys every communicator (a clean end), and frees c.
void hgrid_comms_destroy(hgrid_comms *c);

#endif
