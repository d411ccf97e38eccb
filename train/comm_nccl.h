// The NCCL backend of train/comm.h: buffers are device pointers and every
// operation is enqueued on the group's stream.
#ifndef HGRID_TRAIN_COMM_NCCL_H
#define HGRID_TRAIN_COMM_NCCL_H

#include <cuda_runtime.h>
#include <nccl.h>

#include "train/comm.h"

// A handle on an existing communicator (not owned: libhgrid created it and
// destroys it); members are the group's global ranks in layout order. A
// group of one rank may pass a NULL comm. NULL if memory is short.
tr_group *tr_nccl_group(ncclComm_t comm, cudaStream_t stream, const int *members, int size,
                        int rank_in_group);
// The same, with the operations on stream `side` beside the compute on
// `stream`: each waits for the compute issued before it, and
// tr_group_join makes the compute wait for them (gradient reductions
// overlapping the backward pass).
tr_group *tr_nccl_group_beside(ncclComm_t comm, cudaStream_t stream, cudaStream_t side,
                               const int *members, int size, int rank_in_group);

// Profiling: with timing on, every operation first waits for the work
// before it and then for itself, and its seconds add up (this thread's
// operations; the waits remove any overlap of communication and compute).
void tr_nccl_timing(int on);
double tr_nccl_comm_seconds(void);

#endif
