// The NCCL backend: one communicator per group, device buffers, one stream.
// all-to-all(v) and point-to-point batches are grouped send/recv calls.
#include "train/comm_nccl.h"

#include <stdio.h>
#include <stdlib.h>

#define NCCL_CHECK(call)                                                                   \
    do {                                                                                   \
        ncclResult_t r_ = (call);                                                          \
        if (r_ != ncclSuccess) {                                                           \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,                  \
                    ncclGetErrorString(r_));                                               \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

typedef struct {
    ncclComm_t comm;
    cudaStream_t stream;
} nccl_impl;

static ncclDataType_t type_of(tr_dtype t)
{
    return t == TR_F32 ? ncclFloat32 : t == TR_BF16 ? ncclBfloat16 : ncclInt32;
}

static nccl_impl *impl(const tr_group *g) { return g->impl; }

static void nc_all_reduce(tr_group *g, void *buf, size_t n, tr_dtype t)
{
    NCCL_CHECK(ncclAllReduce(buf, buf, n, type_of(t), ncclSum, impl(g)->comm, impl(g)->stream));
}

static void nc_all_gather(tr_group *g, const void *send, void *recv, size_t n, tr_dtype t)
{
    NCCL_CHECK(ncclAllGather(send, recv, n, type_of(t), impl(g)->comm, impl(g)->stream));
}

static void nc_reduce_scatter(tr_group *g, const void *send, void *recv, size_t n, tr_dtype t)
{
    NCCL_CHECK(ncclReduceScatter(send, recv, n, type_of(t), ncclSum, impl(g)->comm,
                                 impl(g)->stream));
}

static void nc_broadcast(tr_group *g, void *buf, size_t n, tr_dtype t, int root)
{
    NCCL_CHECK(ncclBroadcast(buf, buf, n, type_of(t), root, impl(g)->comm, impl(g)->stream));
}

static void nc_all_to_all_v(tr_group *g, const void *send, const size_t *send_counts, void *recv,
                            const size_t *recv_counts, tr_dtype t)
{
    size_t es = tr_dtype_size(t), so = 0, ro = 0;
    NCCL_CHECK(ncclGroupStart());
    for (int j = 0; j < g->size; j++) {
        if (send_counts[j])
            NCCL_CHECK(ncclSend((const char *)send + so * es, send_counts[j], type_of(t), j,
                                impl(g)->comm, impl(g)->stream));
        if (recv_counts[j])
            NCCL_CHECK(ncclRecv((char *)recv + ro * es, recv_counts[j], type_of(t), j,
                                impl(g)->comm, impl(g)->stream));
        so += send_counts[j];
        ro += recv_counts[j];
    }
    NCCL_CHECK(ncclGroupEnd());
}

static void nc_p2p(const tr_p2p_op *ops, int n, tr_dtype t)
{
    NCCL_CHECK(ncclGroupStart());
    for (int i = 0; i < n; i++) {
        const tr_p2p_op *op = &ops[i];
        nccl_impl *x = impl(op->group);
        if (op->is_send)
            NCCL_CHECK(ncclSend(op->buf, op->count, type_of(t), op->peer, x->comm, x->stream));
        else
            NCCL_CHECK(ncclRecv(op->buf, op->count, type_of(t), op->peer, x->comm, x->stream));
    }
    NCCL_CHECK(ncclGroupEnd());
}

static void nc_copy(tr_group *g, void *dst, const void *src, size_t bytes)
{
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, impl(g)->stream);
    if (e != cudaSuccess) {
        fprintf(stderr, "%s:%d: cudaMemcpyAsync: %s\n", __FILE__, __LINE__, cudaGetErrorString(e));
        abort();
    }
}

static void nc_free(tr_group *g)
{
    free(g->impl);
    free(g->members);
    free(g);
}

static const tr_backend nccl_backend = {
    .all_reduce = nc_all_reduce,
    .all_gather = nc_all_gather,
    .reduce_scatter = nc_reduce_scatter,
    .broadcast = nc_broadcast,
    .all_to_all_v = nc_all_to_all_v,
    .p2p = nc_p2p,
    .copy = nc_copy,
    .free = nc_free,
};

tr_group *tr_nccl_group(ncclComm_t comm, cudaStream_t stream, const int *members, int size,
                        int rank_in_group)
{
    tr_group *g = calloc(1, sizeof *g);
    nccl_impl *x = calloc(1, sizeof *x);
    int *copy = malloc(sizeof(int) * size);
    if (!g || !x || !copy) {
        free(g), free(x), free(copy);
        return NULL;
    }
    for (int j = 0; j < size; j++)
        copy[j] = members[j];
    *x = (nccl_impl){comm, stream};
    *g = (tr_group){.be = &nccl_backend, .impl = x, .size = size, .rank = rank_in_group,
                    .members = copy};
    return g;
}
