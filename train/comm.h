// Collectives for training over one process group, with two backends: the
// in-process threads backend (N ranks as pthreads, for CPU tests; reduction
// order fixed by member order, so results are bit-reproducible and equal on
// every member) and NCCL (device buffers, one communicator per group).
#ifndef HGRID_TRAIN_COMM_H
#define HGRID_TRAIN_COMM_H

#include <stddef.h>

// TR_BF16: activations of the bf16 GPU step (sums in fp32, rounded once).
typedef enum { TR_F32, TR_I32, TR_BF16 } tr_dtype;

typedef struct tr_group tr_group;
typedef struct tr_backend tr_backend;

// A group as one member sees it. members: global ranks in the layout
// engine's order; rank: this member's index among them.
struct tr_group {
    const tr_backend *be;
    void *impl;
    int size, rank;
    int *members; // (size)
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

// ---- threads backend
typedef struct tr_threads_world tr_threads_world;
tr_threads_world *tr_threads_world_create(int world_size);
void tr_threads_world_free(tr_threads_world *w);
// This member's handle on the group of the given global ranks; every
// member calls it with the same list. NULL if memory is short.
tr_group *tr_threads_group(tr_threads_world *w, const int *members, int size, int my_rank);

#endif
