// libhgrid's self-test (see hgrid_selftest.h): membership sums, bridge
// payloads and bus bandwidth, every collective waited on with a deadline so
// a missing peer ends the test instead of hanging it.
#include <cuda_runtime.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libhgrid/hgrid_selftest.h"
#include "libhgrid/assignment_check.h"
#include "libhgrid/hgrid_layout.h"
#include "libhgrid/selftest_calc.h"
#include "util/clock.h"

#define EDGE_ELEMS (256 * 1024) // int32 per bridge edge: 1 MiB
#define POLL_NS 20000
#define MAX_REPEATS 1000
#define BW_BATCH 10 // all-reduces per timed batch
#define STUCK_S 1.0 // a collective waited on this long may have lost a peer

typedef struct {
    hgrid_worker *w;
    cudaStream_t stream;
    double timeout_s;
} run_ctx;

#define CUDA_CHECK(w, call)                                                                    \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess)                                                                 \
            return hgrid_fail(w, HGRID_ERR_IO, "%s failed at %s:%d: %s", #call, __FILE__,      \
                              __LINE__, cudaGetErrorString(e_));                               \
    } while (0)

// A non-blocking communicator may answer ncclInProgress to any call; the
// next call on it must wait until it settles (settle: within the deadline).
#define NCCL_CHECK(ctx, comm, what, call)                                                      \
    do {                                                                                       \
        ncclResult_t r_ = (call);                                                              \
        int st_ = r_ == ncclInProgress ? settle(ctx, comm, what)                               \
                  : r_ == ncclSuccess  ? HGRID_OK                                              \
                                       : hgrid_fail((ctx)->w, HGRID_ERR_IO,                    \
                                                    "%s failed at %s:%d: %s", #call, __FILE__, \
                                                    __LINE__, ncclGetErrorString(r_));         \
        if (st_ != HGRID_OK)                                                                   \
            return st_;                                                                        \
    } while (0)

// Spins (a launch settles in microseconds; sleeping would show in the
// timings) until comm's last call settled, watching gridd once it is long.
static int settle(const run_ctx *ctx, ncclComm_t comm, const char *what)
{
    double start = now_s(), deadline = start + ctx->timeout_s;
    for (;;) {
        ncclResult_t state;
        ncclResult_t r = ncclCommGetAsyncError(comm, &state);
        if (r != ncclSuccess || (state != ncclSuccess && state != ncclInProgress))
            return hgrid_fail(ctx->w, HGRID_ERR_IO, "group %s: communicator failed: %s", what,
                              ncclGetErrorString(r != ncclSuccess ? r : state));
        if (state == ncclSuccess)
            return HGRID_OK;
        if (now_s() - start > STUCK_S) {
            int st = hgrid_poll(ctx->w);
            if (st != HGRID_OK)
                return st;
        }
        if (now_s() > deadline)
            return hgrid_fail(ctx->w, HGRID_ERR_TIMEOUT,
                              "group %s: NCCL call not done within %.0f s: a peer is missing or "
                              "stuck",
                              what, ctx->timeout_s);
        sched_yield();
    }
}

// Waits for the stream's work on comm (group `what`) to finish, watching
// the communicator's errors, the deadline and, once the wait is long (a
// peer may be gone), gridd's messages: a peer that finished its self-test
// and left must not abort one that is merely finishing.
static int wait_stream(const run_ctx *ctx, ncclComm_t comm, const char *what)
{
    double start = now_s(), deadline = start + ctx->timeout_s;
    for (;;) {
        cudaError_t e = cudaStreamQuery(ctx->stream);
        if (e == cudaSuccess)
            return HGRID_OK;
        if (e != cudaErrorNotReady)
            return hgrid_fail(ctx->w, HGRID_ERR_IO, "group %s: cudaStreamQuery failed at %s:%d: %s",
                              what, __FILE__, __LINE__, cudaGetErrorString(e));
        ncclResult_t state;
        ncclResult_t r = ncclCommGetAsyncError(comm, &state);
        if (r != ncclSuccess || (state != ncclSuccess && state != ncclInProgress))
            return hgrid_fail(ctx->w, HGRID_ERR_IO, "group %s: communicator failed: %s", what,
                              ncclGetErrorString(r != ncclSuccess ? r : state));
        if (now_s() - start > STUCK_S) {
            int st = hgrid_poll(ctx->w);
            if (st != HGRID_OK)
                return st;
        }
        if (now_s() > deadline)
            return hgrid_fail(ctx->w, HGRID_ERR_TIMEOUT,
                              "group %s: collective not done within %.0f s: a peer is missing or "
                              "stuck",
                              what, ctx->timeout_s);
        nanosleep(&(struct timespec){0, POLL_NS}, NULL);
    }
}

static int open_ctx(run_ctx *ctx, hgrid_worker *w, int timeout_ms)
{
    ctx->w = w;
    ctx->timeout_s = timeout_ms / 1000.0;
    CUDA_CHECK(w, cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
    return HGRID_OK;
}

// ---- membership: the (rank, rank^2) all-reduce per group

static int check_group(const run_ctx *ctx, const hgrid_comms *c, int i, int64_t *dev,
                       hgrid_check *out)
{
    hgrid_worker *w = ctx->w;
    const hgrid_group *g = hgrid_group_at(w, i);
    snprintf(out->name, sizeof out->name, "%s", g->name);
    int64_t want[2], got[2];
    selftest_expected_sums(g->members, g->size, want);
    if (g->size == 1) { // no communicator: the sums are the rank's own
        int64_t mine[2] = {hgrid_rank(w), (int64_t)hgrid_rank(w) * hgrid_rank(w)};
        out->ok = selftest_check_sums(g->name, g->members, 1, want, mine, out->detail,
                                      sizeof out->detail);
        if (out->ok)
            snprintf(out->detail, sizeof out->detail, "one rank, no communicator");
        return HGRID_OK;
    }
    ncclComm_t comm = hgrid_comms_at(c, i);
    int64_t in[2] = {hgrid_rank(w), (int64_t)hgrid_rank(w) * hgrid_rank(w)};
    CUDA_CHECK(w, cudaMemcpy(dev, in, sizeof in, cudaMemcpyHostToDevice));
    NCCL_CHECK(ctx, comm, g->name,
               ncclAllReduce(dev, dev, 2, ncclInt64, ncclSum, comm, ctx->stream));
    int st = wait_stream(ctx, comm, g->name);
    if (st != HGRID_OK)
        return st;
    CUDA_CHECK(w, cudaMemcpy(got, dev, sizeof got, cudaMemcpyDeviceToHost));
    out->ok = selftest_check_sums(g->name, g->members, g->size, want, got, out->detail,
                                  sizeof out->detail);
    if (out->ok)
        snprintf(out->detail, sizeof out->detail, "%d ranks, sums %lld %lld%s%s%s", g->size,
                 (long long)got[0], (long long)got[1], g->shares_with != i ? ", shares " : "",
                 g->shares_with != i ? hgrid_group_at(w, g->shares_with)->name : "",
                 g->shares_with != i ? "'s communicator" : "");
    return HGRID_OK;
}

// ---- bridge: a known payload over every edge, all in one group call

// The communicator of bridge b ("bridge", or "bridge:NAME" with several encoders).
static ncclComm_t bridge_comm(const hgrid_worker *w, const hgrid_comms *c, int b)
{
    const hg_plan *p = hgrid_plan(w);
    char name[HG_GROUP_NAME_LEN];
    hg_rank_group g = {.kind = HG_GROUP_BRIDGE, .bridge = b};
    return hgrid_comms_get(c, hg_rank_group_name(p, &g, name, sizeof name));
}

static int check_bridge(const run_ctx *ctx, const hgrid_comms *c, int32_t *dev,
                        hgrid_check *out)
{
    hgrid_worker *w = ctx->w;
    int n = hgrid_num_bridge_peers(w), me = hgrid_rank(w);
    for (int k = 0; k < n; k++)
        if (!bridge_comm(w, c, hgrid_bridge_peer_at(w, k)->bridge))
            return hgrid_fail(w, HGRID_ERR_STATE, "bridge peers but no bridge communicator");
    ncclComm_t comm = bridge_comm(w, c, hgrid_bridge_peer_at(w, 0)->bridge); // watched for a stall
    int32_t *host = malloc(EDGE_ELEMS * sizeof *host);
    if (!host)
        return hgrid_fail(w, HGRID_ERR_IO, "out of memory for the bridge payload");
    for (int k = 0; k < n; k++) {
        const hgrid_bridge_peer *p = hgrid_bridge_peer_at(w, k);
        if (!p->send)
            continue;
        for (size_t e = 0; e < EDGE_ELEMS; e++)
            host[e] = selftest_payload(me, p->rank, e);
        cudaError_t ce = cudaMemcpy(dev + (size_t)k * EDGE_ELEMS, host, EDGE_ELEMS * sizeof *host,
                                    cudaMemcpyHostToDevice);
        if (ce != cudaSuccess) {
            free(host);
            return hgrid_fail(w, HGRID_ERR_IO, "cudaMemcpy of a bridge payload failed at %s:%d: %s",
                              __FILE__, __LINE__, cudaGetErrorString(ce));
        }
    }
    free(host);
    NCCL_CHECK(ctx, comm, "bridge", ncclGroupStart());
    // The group is ended on every path: one left open would take in the
    // calling thread's later NCCL calls (the user's own among them).
    ncclResult_t posted = ncclSuccess;
    const char *failed = NULL;
    for (int k = 0; k < n && !failed; k++) {
        const hgrid_bridge_peer *p = hgrid_bridge_peer_at(w, k);
        int32_t *buf = dev + (size_t)k * EDGE_ELEMS;
        ncclComm_t edge = bridge_comm(w, c, p->bridge);
        posted = p->send ? ncclSend(buf, EDGE_ELEMS, ncclInt32, p->rank_in_bridge, edge, ctx->stream)
                         : ncclRecv(buf, EDGE_ELEMS, ncclInt32, p->rank_in_bridge, edge, ctx->stream);
        if (posted != ncclSuccess && posted != ncclInProgress)
            failed = p->send ? "ncclSend" : "ncclRecv";
    }
    ncclResult_t ended = ncclGroupEnd();
    if (failed)
        return hgrid_fail(w, HGRID_ERR_IO, "%s failed at %s:%d: %s", failed, __FILE__, __LINE__,
                          ncclGetErrorString(posted));
    NCCL_CHECK(ctx, comm, "bridge", ended);
    int st = wait_stream(ctx, comm, "bridge");
    if (st != HGRID_OK)
        return st;
    int32_t *got = malloc(EDGE_ELEMS * sizeof *got);
    if (!got)
        return hgrid_fail(w, HGRID_ERR_IO, "out of memory for the bridge payload");
    for (int k = 0; k < n; k++) {
        const hgrid_bridge_peer *p = hgrid_bridge_peer_at(w, k);
        hgrid_check *ck = &out[k];
        snprintf(ck->name, sizeof ck->name, "bridge%s%d", p->send ? "->" : "<-", p->rank);
        ck->ok = true;
        if (p->send) {
            snprintf(ck->detail, sizeof ck->detail, "%d KiB sent to rank %d",
                     (int)(EDGE_ELEMS * sizeof *got >> 10), p->rank);
            continue;
        }
        cudaError_t ce = cudaMemcpy(got, dev + (size_t)k * EDGE_ELEMS, EDGE_ELEMS * sizeof *got,
                                    cudaMemcpyDeviceToHost);
        if (ce != cudaSuccess) {
            free(got);
            return hgrid_fail(w, HGRID_ERR_IO, "cudaMemcpy of a bridge payload failed at %s:%d: %s",
                              __FILE__, __LINE__, cudaGetErrorString(ce));
        }
        long bad = selftest_payload_mismatch(got, EDGE_ELEMS, p->rank, me);
        ck->ok = bad < 0;
        if (ck->ok)
            snprintf(ck->detail, sizeof ck->detail, "%d KiB from rank %d match",
                     (int)(EDGE_ELEMS * sizeof *got >> 10), p->rank);
        else
            snprintf(ck->detail, sizeof ck->detail,
                     "bridge edge %d -> %d: element %ld is %d, expected %d", p->rank, me, bad,
                     (int)got[bad], (int)selftest_payload(p->rank, me, (size_t)bad));
    }
    free(got);
    return HGRID_OK;
}

static int run_verify(const run_ctx *ctx, const hgrid_comms *c, void *dev, hgrid_selftest *t)
{
    hgrid_worker *w = ctx->w;
    // Every group runs even after a wrong one, so the peers' collectives
    // complete and they report too.
    for (int i = 0; i < hgrid_num_groups(w); i++) {
        int st = check_group(ctx, c, i, (int64_t *)dev, &t->checks[t->count]);
        if (st != HGRID_OK)
            return st;
        t->count++;
    }
    if (hgrid_num_bridge_peers(w) > 0) {
        int st = check_bridge(ctx, c, (int32_t *)dev, &t->checks[t->count]);
        if (st != HGRID_OK)
            return st;
        t->count += hgrid_num_bridge_peers(w);
    }
    for (int i = 0; i < t->count; i++)
        if (!t->checks[i].ok) {
            t->all_ok = false;
            return hgrid_fail(w, HGRID_ERR_MISMATCH, "self-test: %s", t->checks[i].detail);
        }
    return HGRID_OK;
}

int hgrid_self_test_verify(hgrid_worker *w, const hgrid_comms *c, int timeout_ms,
                           hgrid_selftest *t)
{
    memset(t, 0, sizeof *t);
    int total = hgrid_num_groups(w) + hgrid_num_bridge_peers(w);
    t->checks = calloc((size_t)(total ? total : 1), sizeof *t->checks);
    if (!t->checks)
        return hgrid_fail(w, HGRID_ERR_IO, "out of memory for the self-test");
    t->all_ok = true;
    run_ctx ctx;
    int st = open_ctx(&ctx, w, timeout_ms);
    if (st != HGRID_OK)
        return st;
    size_t bytes = 16 + (size_t)hgrid_num_bridge_peers(w) * EDGE_ELEMS * sizeof(int32_t);
    void *dev = NULL;
    cudaError_t ce = cudaMalloc(&dev, bytes);
    if (ce == cudaSuccess)
        st = run_verify(&ctx, c, dev, t);
    else
        st = hgrid_fail(w, HGRID_ERR_IO, "cudaMalloc(%zu) failed at %s:%d: %s", bytes, __FILE__,
                        __LINE__, cudaGetErrorString(ce));
    cudaFree(dev);
    cudaStreamDestroy(ctx.stream);
    return st;
}

// ---- bandwidth: nccl-tests' all-reduce busbw per distinct communicator

// Batches of BW_BATCH back-to-back all-reduces, each batch timed with CUDA
// events: the host's launch work overlaps the GPU's, so the time is NCCL's.
static int measure(const run_ctx *ctx, ncclComm_t comm, const hgrid_group *g, float *buf,
                   const hgrid_selftest_options *opt, cudaEvent_t ev[2], double *busbw)
{
    size_t count = opt->bytes / sizeof(float);
    for (int r = 0; r < opt->warmups; r++)
        NCCL_CHECK(ctx, comm, g->name,
                   ncclAllReduce(buf, buf, count, ncclFloat, ncclSum, comm, ctx->stream));
    int st = wait_stream(ctx, comm, g->name);
    if (st != HGRID_OK)
        return st;
    double ms[MAX_REPEATS];
    for (int r = 0; r < opt->repeats; r++) {
        CUDA_CHECK(ctx->w, cudaEventRecord(ev[0], ctx->stream));
        for (int b = 0; b < BW_BATCH; b++)
            NCCL_CHECK(ctx, comm, g->name,
                       ncclAllReduce(buf, buf, count, ncclFloat, ncclSum, comm, ctx->stream));
        CUDA_CHECK(ctx->w, cudaEventRecord(ev[1], ctx->stream));
        st = wait_stream(ctx, comm, g->name);
        if (st != HGRID_OK)
            return st;
        float elapsed;
        CUDA_CHECK(ctx->w, cudaEventElapsedTime(&elapsed, ev[0], ev[1]));
        ms[r] = elapsed / BW_BATCH;
    }
    *busbw = selftest_allreduce_busbw((double)(count * sizeof(float)),
                                      selftest_median(ms, opt->repeats) / 1e3, g->size);
    return HGRID_OK;
}

static int run_bandwidth(const run_ctx *ctx, const hgrid_comms *c, float *buf,
                         const hgrid_selftest_options *opt, cudaEvent_t ev[2], hgrid_selftest *t)
{
    hgrid_worker *w = ctx->w;
    for (int i = 0; i < hgrid_num_groups(w); i++) {
        const hgrid_group *g = hgrid_group_at(w, i);
        if (!g->nccl_id || g->shares_with != i)
            continue;
        double busbw;
        int st = measure(ctx, hgrid_comms_at(c, i), g, buf, opt, ev, &busbw);
        if (st != HGRID_OK)
            return st;
        for (int j = i; j < hgrid_num_groups(w); j++) // checks[j] is group j
            if (hgrid_group_at(w, j)->shares_with == i && hgrid_group_at(w, j)->nccl_id)
                t->checks[j].busbw_gbps = busbw;
    }
    return HGRID_OK;
}

int hgrid_self_test_bandwidth(hgrid_worker *w, const hgrid_comms *c,
                              const hgrid_selftest_options *opt, hgrid_selftest *t)
{
    if (t->count < hgrid_num_groups(w))
        return hgrid_fail(w, HGRID_ERR_STATE, "hgrid_self_test_bandwidth needs a verified test");
    if (opt->bytes < sizeof(float) || opt->repeats < 1 || opt->repeats > MAX_REPEATS ||
        opt->warmups < 0)
        return hgrid_fail(w, HGRID_ERR_STATE,
                          "self-test bandwidth needs bytes >= 4 and 1..%d repeats", MAX_REPEATS);
    run_ctx ctx;
    int st = open_ctx(&ctx, w, opt->timeout_ms);
    if (st != HGRID_OK)
        return st;
    float *buf = NULL;
    cudaEvent_t ev[2] = {NULL, NULL};
    cudaError_t ce = cudaMalloc((void **)&buf, opt->bytes);
    if (ce == cudaSuccess)
        ce = cudaMemset(buf, 0, opt->bytes);
    if (ce == cudaSuccess)
        ce = cudaEventCreate(&ev[0]);
    if (ce == cudaSuccess)
        ce = cudaEventCreate(&ev[1]);
    if (ce == cudaSuccess)
        st = run_bandwidth(&ctx, c, buf, opt, ev, t);
    else
        st = hgrid_fail(w, HGRID_ERR_IO, "self-test buffers of %zu bytes at %s:%d: %s", opt->bytes,
                        __FILE__, __LINE__, cudaGetErrorString(ce));
    for (int k = 0; k < 2; k++)
        if (ev[k])
            cudaEventDestroy(ev[k]);
    cudaFree(buf);
    cudaStreamDestroy(ctx.stream);
    return st;
}

void hgrid_self_test_defaults(hgrid_selftest_options *opt)
{
    *opt = (hgrid_selftest_options){.bytes = HGRID_SELFTEST_DEFAULT_BYTES, .warmups = 3,
                                    .repeats = 5, .timeout_ms = 30000};
}

int hgrid_self_test_send(hgrid_worker *w, const hgrid_selftest *t)
{
    return hgrid_report_checks(w, t->checks, t->count);
}

void hgrid_self_test_free(hgrid_selftest *t)
{
    free(t->checks);
    memset(t, 0, sizeof *t);
}
