// The NCCL backend: one communicator per group, device buffers; a group's
// operations run on the compute stream or on a side stream ordered with it
// by events. all-to-all(v) and point-to-point batches are grouped
// send/recv calls. Also: timing each operation alone for --profile-comm.
#include "train/comm_nccl.h"
#include "util/clock.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

// NCCL groups this thread opened and has not ended. An escape from inside
// one ends it first: else the thread's later NCCL calls, the rebuilt
// communicators' inits among them, would wait for an end that never comes.
static _Thread_local int open_groups;

static void escape(const tr_group *g, const char *what)
{
    for (; open_groups > 0; open_groups--)
        ncclGroupEnd(); // the group's operations are abandoned: its result does not matter
    tr_group_escape(g, what);
}

// libhgrid's communicators are non-blocking: a call may answer
// ncclInProgress, and the next call on that communicator must wait until
// it settles. Any other failure escapes through the group's fence once
// another thread raised it (it aborted communicators on purpose), else
// ends the process (file, line, reason).
static void die(const tr_group *g, const char *file, int line, const char *call, ncclResult_t r)
{
    char what[256];
    snprintf(what, sizeof what, "%s:%d: %s: %s", file, line, call, ncclGetErrorString(r));
    escape(g, what);
}

static void settle(const tr_group *g, ncclComm_t comm, const char *file, int line,
                   const char *call)
{
    for (;;) {
        if (g->fence && atomic_load(&g->fence->raised))
            escape(g, "fence raised");
        ncclResult_t state, r = ncclCommGetAsyncError(comm, &state);
        if (r != ncclSuccess)
            die(g, file, line, "ncclCommGetAsyncError", r);
        if (state == ncclSuccess)
            return;
        if (state != ncclInProgress)
            die(g, file, line, call, state);
        sched_yield();
    }
}

#define NCCL_CHECK(g, comm, call)                                                          \
    do {                                                                                   \
        ncclResult_t r_ = (call);                                                          \
        if (r_ == ncclInProgress)                                                          \
            settle((g), (comm), __FILE__, __LINE__, #call);                                \
        else if (r_ != ncclSuccess)                                                        \
            die((g), __FILE__, __LINE__, #call, r_);                                       \
    } while (0)

static void group_start(const tr_group *g)
{
    ncclResult_t r = ncclGroupStart();
    if (r != ncclSuccess)
        die(g, __FILE__, __LINE__, "ncclGroupStart", r);
    open_groups++;
}

// ncclGroupEnd over the given communicators: each settles.
static void group_end(const tr_group *g, ncclComm_t const *comms, int n)
{
    ncclResult_t r = ncclGroupEnd();
    open_groups--;
    if (r != ncclSuccess && r != ncclInProgress)
        die(g, __FILE__, __LINE__, "ncclGroupEnd", r);
    for (int i = 0; i < n && r == ncclInProgress; i++)
        settle(g, comms[i], __FILE__, __LINE__, "ncclGroupEnd");
}

typedef struct {
    ncclComm_t comm;
    cudaStream_t stream;  // where the operations run
    cudaStream_t compute; // the stream they are ordered with; == stream unless beside
    cudaEvent_t issued;   // beside: the compute's point, then the side's
} nccl_impl;

static int timing;
static double comm_s, op_start;

void tr_nccl_timing(int on) { timing = on; }
double tr_nccl_comm_seconds(void) { return comm_s; }

static void cuda_ok(cudaError_t e, const char *call)
{
    if (e != cudaSuccess) {
        fprintf(stderr, "%s: %s: %s\n", __FILE__, call, cudaGetErrorString(e));
        abort();
    }
}

static void wait_stream(cudaStream_t s)
{
    cuda_ok(cudaStreamSynchronize(s), "cudaStreamSynchronize");
}

// stream `waiter` waits for the work issued to `on` so far.
static void follow(cudaEvent_t ev, cudaStream_t on, cudaStream_t waiter)
{
    cuda_ok(cudaEventRecord(ev, on), "cudaEventRecord");
    cuda_ok(cudaStreamWaitEvent(waiter, ev, 0), "cudaStreamWaitEvent");
}

static void timing_begin(cudaStream_t compute, cudaStream_t s)
{
    if (!timing)
        return;
    wait_stream(compute);
    wait_stream(s);
    op_start = now_s();
}

static void timing_end(cudaStream_t s)
{
    if (!timing)
        return;
    wait_stream(s);
    comm_s += now_s() - op_start;
}

static ncclDataType_t type_of(tr_dtype t)
{
    return t == TR_F32 ? ncclFloat32 : t == TR_BF16 ? ncclBfloat16 : ncclInt32;
}

static nccl_impl *impl(const tr_group *g) { return g->impl; }

static void before_op(nccl_impl *x)
{
    if (x->stream != x->compute)
        follow(x->issued, x->compute, x->stream);
}

static void nc_join(tr_group *g)
{
    nccl_impl *x = impl(g);
    if (x->stream != x->compute)
        follow(x->issued, x->stream, x->compute);
}

static void nc_all_reduce(tr_group *g, void *buf, size_t n, tr_dtype t)
{
    timing_begin(impl(g)->compute, impl(g)->stream);
    before_op(impl(g));
    NCCL_CHECK(g, impl(g)->comm, ncclAllReduce(buf, buf, n, type_of(t), ncclSum, impl(g)->comm,
                                             impl(g)->stream));
    timing_end(impl(g)->stream);
}

static void nc_all_gather(tr_group *g, const void *send, void *recv, size_t n, tr_dtype t)
{
    timing_begin(impl(g)->compute, impl(g)->stream);
    before_op(impl(g));
    NCCL_CHECK(g, impl(g)->comm,
               ncclAllGather(send, recv, n, type_of(t), impl(g)->comm, impl(g)->stream));
    timing_end(impl(g)->stream);
}

static void nc_reduce_scatter(tr_group *g, const void *send, void *recv, size_t n, tr_dtype t)
{
    timing_begin(impl(g)->compute, impl(g)->stream);
    before_op(impl(g));
    NCCL_CHECK(g, impl(g)->comm, ncclReduceScatter(send, recv, n, type_of(t), ncclSum,
                                                 impl(g)->comm, impl(g)->stream));
    timing_end(impl(g)->stream);
}

static void nc_broadcast(tr_group *g, void *buf, size_t n, tr_dtype t, int root)
{
    timing_begin(impl(g)->compute, impl(g)->stream);
    before_op(impl(g));
    NCCL_CHECK(g, impl(g)->comm,
               ncclBroadcast(buf, buf, n, type_of(t), root, impl(g)->comm, impl(g)->stream));
    timing_end(impl(g)->stream);
}

static void nc_all_to_all_v(tr_group *g, const void *send, const size_t *send_counts, void *recv,
                            const size_t *recv_counts, tr_dtype t)
{
    timing_begin(impl(g)->compute, impl(g)->stream);
    before_op(impl(g));
    size_t es = tr_dtype_size(t), so = 0, ro = 0;
    ncclComm_t comm = impl(g)->comm;
    group_start(g);
    for (int j = 0; j < g->size; j++) {
        if (send_counts[j])
            NCCL_CHECK(g, comm, ncclSend((const char *)send + so * es, send_counts[j], type_of(t), j,
                                      comm, impl(g)->stream));
        if (recv_counts[j])
            NCCL_CHECK(g, comm, ncclRecv((char *)recv + ro * es, recv_counts[j], type_of(t), j, comm,
                                      impl(g)->stream));
        so += send_counts[j];
        ro += recv_counts[j];
    }
    group_end(g, &comm, 1);
    timing_end(impl(g)->stream);
}

static void nc_p2p(const tr_p2p_op *ops, int n, tr_dtype t)
{
    timing_begin(impl(ops[0].group)->compute, impl(ops[0].group)->stream);
    before_op(impl(ops[0].group));
    ncclComm_t comms[n];
    group_start(ops[0].group);
    for (int i = 0; i < n; i++) {
        const tr_p2p_op *op = &ops[i];
        nccl_impl *x = impl(op->group);
        comms[i] = x->comm;
        if (op->is_send)
            NCCL_CHECK(op->group, x->comm, ncclSend(op->buf, op->count, type_of(t), op->peer, x->comm,
                                         x->stream));
        else
            NCCL_CHECK(op->group, x->comm, ncclRecv(op->buf, op->count, type_of(t), op->peer, x->comm,
                                         x->stream));
    }
    group_end(ops[0].group, comms, n);
    timing_end(impl(ops[0].group)->stream);
}

static void nc_copy(tr_group *g, void *dst, const void *src, size_t bytes)
{
    cuda_ok(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, impl(g)->compute),
            "cudaMemcpyAsync");
}

static bool nc_drain(tr_group *g, double deadline)
{
    nccl_impl *x = impl(g);
    for (;;) {
        cudaError_t e = cudaStreamQuery(x->stream);
        if (e == cudaSuccess)
            return true;
        if (e != cudaErrorNotReady || now_s() > deadline)
            return false;
        nanosleep(&(struct timespec){0, 200000}, NULL);
    }
}

static void nc_free(tr_group *g)
{
    nccl_impl *x = impl(g);
    if (x->issued)
        cudaEventDestroy(x->issued);
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
    .join = nc_join,
    .drain = nc_drain,
    .free = nc_free,
};

tr_group *tr_nccl_group_beside(ncclComm_t comm, cudaStream_t stream, cudaStream_t side,
                               const int *members, int size, int rank_in_group)
{
    tr_group *g = calloc(1, sizeof *g);
    nccl_impl *x = calloc(1, sizeof *x);
    int *copy = malloc(sizeof(int) * size);
    cudaEvent_t ev = NULL;
    if (side != stream && cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) != cudaSuccess)
        ev = NULL;
    if (!g || !x || !copy || (side != stream && !ev)) {
        free(g), free(x), free(copy);
        if (ev)
            cudaEventDestroy(ev);
        return NULL;
    }
    for (int j = 0; j < size; j++)
        copy[j] = members[j];
    *x = (nccl_impl){comm, side, stream, ev};
    *g = (tr_group){.be = &nccl_backend, .impl = x, .size = size, .rank = rank_in_group,
                    .members = copy};
    if (tr_group_counts_init(g)) {
        nc_free(g);
        return NULL;
    }
    return g;
}

tr_group *tr_nccl_group(ncclComm_t comm, cudaStream_t stream, const int *members, int size,
                        int rank_in_group)
{
    return tr_nccl_group_beside(comm, stream, stream, members, size, rank_in_group);
}
