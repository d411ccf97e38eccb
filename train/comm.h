// Collectives for training over one process group, with two backends: the
// in-process threads backend (N ranks as pthreads, for CPU tests; reduction
// order fixed by member order, so results are bit-reproducible and equal on
// every member) and NCCL (device buffers, one communicator per group).
#ifndef HGRID_TRAIN_COMM_H
#define HGRID_TRAIN_COMM_H

#include <setjmp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// TR_BF16: activations of the bf16 GPU step (sums in fp32, rounded once).
typedef enum { TR_F32, TR_I32, TR_BF16 } tr_dtype;

typedef struct tr_group tr_group;
typedef struct tr_backend tr_backend;

// A rank's way out of a step when its generation is aborted (another
// thread raises it): the rank's next operation on any of its groups, and
// an operation failing on a group whose communicator was aborted, jump to
// escape (longjmp, value 1) instead of running. escape NULL, or a failure
// before the fence was raised: the process ends, saying where.
// issuing: the rank is between its fence check and counting the operation
// (tr_fence_raise waits it out, so the counts it leaves are final).
typedef struct {
    atomic_int raised;
    atomic_int issuing;
    jmp_buf *escape;
} tr_fence;

// What a member issued on a group since the handle was made: collectives
// (every member issues each one), and per peer (member index) the
// point-to-point sends to it and receives from it. After an Abort, the
// members' counts say whether an operation in flight can still complete
// (daemon/core/settle.h): every member issued the same collectives and
// every send has its receive.
typedef struct {
    atomic_ullong collectives;
    atomic_ullong *sent, *received; // (size)
} tr_op_counts;

// A group as one member sees it. members: global ranks in the layout
// engine's order; rank: this member's index among them.
struct tr_group {
    const tr_backend *be;
    void *impl;
    int size, rank;
    int *members; // (size)
    tr_fence *fence; // NULL: none (failures end the process)
    tr_op_counts ops; // set up by the backend (tr_group_counts_init)
};

// One point-to-point transfer of a batch: peer is an index into group.
typedef struct {
    tr_group *group;
    int peer;
    int is_send;
    void *buf;
    size_t count;
} tr_p2p_op;

struct tr_backend {
    void (*all_reduce)(tr_group *g, void *buf, size_t n, tr_dtype t);
    void (*all_gather)(tr_group *g, const void *send, void *recv, size_t n, tr_dtype t);
    void (*reduce_scatter)(tr_group *g, const void *send, void *recv, size_t n, tr_dtype t);
    void (*broadcast)(tr_group *g, void *buf, size_t n, tr_dtype t, int root);
    void (*all_to_all_v)(tr_group *g, const void *send, const size_t *send_counts, void *recv,
                         const size_t *recv_counts, tr_dtype t);
    void (*p2p)(const tr_p2p_op *ops, int n, tr_dtype t); // all ops of one backend
    // A group of one's collectives: bytes from src to dst in the backend's memory.
    void (*copy)(tr_group *g, void *dst, const void *src, size_t bytes);
    // Optional: the group's operations so far are done before the caller's
    // next work starts (a backend that runs them beside the compute).
    void (*join)(tr_group *g);
    // Optional: aborts the member's communicator (every member's operations
    // on it fail); the threads backend's stand-in for libhgrid's aborts.
    void (*abort)(tr_group *g);
    // Whether every operation this member issued has completed by deadline
    // (now_s() seconds): a communicator it can keep.
    bool (*drain)(tr_group *g, double deadline);
    void (*free)(tr_group *g);
};

size_t tr_dtype_size(tr_dtype t);

// buf (n) = sum over members, in place.
void tr_all_reduce(tr_group *g, void *buf, size_t n, tr_dtype t);
// recv (size, n) = every member's send (n), in member order.
void tr_all_gather(tr_group *g, const void *send, void *recv, size_t n, tr_dtype t);
// recv (n) = sum over members of their send (size, n) row `rank`.
void tr_reduce_scatter(tr_group *g, const void *send, void *recv, size_t n, tr_dtype t);
// buf (n) = root's buf.
void tr_broadcast(tr_group *g, void *buf, size_t n, tr_dtype t, int root);
// send holds send_counts[j] elements for member j, back to back in member
// order; recv gets recv_counts[j] from member j likewise. Counts must agree
// pairwise (member i's send_counts[j] == member j's recv_counts[i]).
void tr_all_to_all_v(tr_group *g, const void *send, const size_t *send_counts, void *recv,
                     const size_t *recv_counts, tr_dtype t);
// Equal counts: n elements to and from every member.
void tr_all_to_all(tr_group *g, const void *send, void *recv, size_t n, tr_dtype t);
// A batch of sends and receives that complete together (no ordering
// between them inside the batch, so neighbours exchanging both ways in
// one batch cannot deadlock). Every op's group has the same backend.
void tr_p2p(const tr_p2p_op *ops, int n, tr_dtype t);
// The group's operations issued so far complete before any work issued
// after this call (a no-op where operations are not run beside compute).
void tr_group_join(tr_group *g);
void tr_group_free(tr_group *g);

// ---- keeping communicators across an Abort (worker/run.c; the threads
// backend runs the same steps in tests/test_train_rebuild.c)
//   other thread: tr_fence_raise, report tr_group_counts to gridd, abort
//   the groups holding a lost rank, then those gridd names broken (their
//   members' counts differ: one left them mid-operation);
//   rank: escapes, then tr_group_drain on the others by a deadline:
//   all drained -> kept for the next generation, else every one aborted
//   and gridd told (its groups get new ids).
// Raises the fence and waits until the rank is not between a fence check
// and counting an operation: from its return no operation starts, and
// every group's counts are final.
void tr_fence_raise(tr_fence *f);
// Jumps to g's escape once its fence is raised; else the process ends
// after one line naming what failed (a backend calls it when an
// operation fails).
void tr_group_escape(const tr_group *g, const char *what);
// Whether g's members hold one of the n ranks.
bool tr_group_holds(const tr_group *g, const int *ranks, int n);
void tr_group_abort(tr_group *g);
// true once this member's operations on g completed (by deadline).
bool tr_group_drain(tr_group *g, double deadline);
// A backend's constructor: g->ops for g->size members; -1 if memory is
// short. tr_group_free frees them.
int tr_group_counts_init(tr_group *g);
void tr_group_counts_free(tr_group *g);
// g's counts now: collectives, and sent/received (g->size each; NULL: not
// wanted). NULL g: nothing issued.
uint64_t tr_group_counts(const tr_group *g, uint64_t *sent, uint64_t *received);

// ---- threads backend
typedef struct tr_threads_world tr_threads_world;
tr_threads_world *tr_threads_world_create(int world_size);
void tr_threads_world_free(tr_threads_world *w);
// This member's handle on the group of the given global ranks; every
// member calls it with the same list. NULL if memory is short.
tr_group *tr_threads_group(tr_threads_world *w, const int *members, int size, int my_rank);

#endif
