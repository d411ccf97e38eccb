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

#include "client/hgrid.h"

typedef struct hgrid_comms hgrid_comms;

// Creates every communicator on CUDA device `device`: non-blocking inits
// batched in one ncclGroupStart/End, then polled until all are ready. If
// timeout_ms passes, an init fails, or gridd aborts the generation
// meanwhile, every communicator is aborted (ncclCommAbort: no hang on a
// missing peer) and a negative status (or HGRID_ABORTED / HGRID_RELEASED)
// is returned with the reason in hgrid_error(w).
int hgrid_comms_create(hgrid_worker *w, int device, int timeout_ms, hgrid_comms **out);
// The communicator of the worker's group `name`; NULL for one-rank groups
// and groups the worker is not in.
ncclComm_t hgrid_comms_get(const hgrid_comms *c, const char *name);
// Aborts every communicator without waiting for peers, and frees c.
void hgrid_comms_abort(hgrid_comms *c);
// Finalizes and destroys every communicator (a clean end), and frees c.
void hgrid_comms_destroy(hgrid_comms *c);

#endif
