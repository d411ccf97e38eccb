// NCCL communicators for a worker's groups: non-blocking inits in one
// group call, a deadline, and ncclCommAbort on anything that goes wrong.
#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/hgrid_comms.h"
#include "client/libhgrid_impl.h"

#define POLL_NS 200000 // between looks at the inits' progress

struct hgrid_comms {
    int num_groups;
    const hgrid_worker *w;
    ncclComm_t comm[ASSIGN_MAX_GROUPS]; // by group position; NULL: none or shared
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#define NCCL_FAIL(w, call, r)                                                                 \
    hgrid_fail(w, HGRID_ERR_IO, "%s failed at %s:%d: %s", call, __FILE__, __LINE__,           \
               ncclGetErrorString(r))

void hgrid_comms_abort(hgrid_comms *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->num_groups; i++)
        if (c->comm[i])
            ncclCommAbort(c->comm[i]);
    free(c);
}

void hgrid_comms_destroy(hgrid_comms *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->num_groups; i++) {
        if (!c->comm[i])
            continue;
        ncclResult_t state = ncclCommFinalize(c->comm[i]);
        while (state == ncclInProgress && ncclCommGetAsyncError(c->comm[i], &state) == ncclSuccess)
            nanosleep(&(struct timespec){0, POLL_NS}, NULL);
        ncclCommDestroy(c->comm[i]);
    }
    free(c);
}

// Starts every init in one group call; non-blocking, so it returns at once.
static int start_inits(hgrid_worker *w, hgrid_comms *c)
{
    ncclResult_t r = ncclGroupStart();
    if (r != ncclSuccess)
        return NCCL_FAIL(w, "ncclGroupStart", r);
    for (int i = 0; i < c->num_groups; i++) {
        const hgrid_group *g = hgrid_group_at(w, i);
        if (!g->nccl_id || g->shares_with != i)
            continue;
        ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
        config.blocking = 0;
        ncclUniqueId id;
        memcpy(id.internal, g->nccl_id, sizeof id.internal);
        r = ncclCommInitRankConfig(&c->comm[i], g->size, id, g->rank_in_group, &config);
        if (r != ncclSuccess && r != ncclInProgress) {
            ncclGroupEnd();
            return NCCL_FAIL(w, "ncclCommInitRankConfig", r);
        }
    }
    r = ncclGroupEnd();
    if (r != ncclSuccess && r != ncclInProgress)
        return NCCL_FAIL(w, "ncclGroupEnd", r);
    return HGRID_OK;
}

// Polls the inits until all are ready, one fails, the deadline passes or
// gridd aborts the generation.
static int await_inits(hgrid_worker *w, hgrid_comms *c, double deadline)
{
    for (;;) {
        int pending = 0;
        for (int i = 0; i < c->num_groups; i++) {
            if (!c->comm[i])
                continue;
            ncclResult_t state;
            ncclResult_t r = ncclCommGetAsyncError(c->comm[i], &state);
            if (r != ncclSuccess)
                return NCCL_FAIL(w, "ncclCommGetAsyncError", r);
            if (state == ncclInProgress)
                pending++;
            else if (state != ncclSuccess)
                return hgrid_fail(w, HGRID_ERR_IO, "communicator for group %s failed to form: %s",
                                  hgrid_group_at(w, i)->name, ncclGetErrorString(state));
        }
        if (!pending)
            return HGRID_OK;
        int st = hgrid_poll(w);
        if (st != HGRID_OK)
            return st;
        if (now_s() > deadline)
            return hgrid_fail(w, HGRID_ERR_TIMEOUT,
                              "%d communicator(s) not formed within the deadline: a peer is "
                              "missing or slow; all aborted",
                              pending);
        nanosleep(&(struct timespec){0, POLL_NS}, NULL);
    }
}

int hgrid_comms_create(hgrid_worker *w, int device, int timeout_ms, hgrid_comms **out)
{
    *out = NULL;
    if (!w->assigned)
        return hgrid_fail(w, HGRID_ERR_STATE, "hgrid_comms_create needs an assignment first");
    cudaError_t ce = cudaSetDevice(device);
    if (ce != cudaSuccess)
        return hgrid_fail(w, HGRID_ERR_IO, "cudaSetDevice(%d) failed at %s:%d: %s", device,
                          __FILE__, __LINE__, cudaGetErrorString(ce));
    hgrid_comms *c = calloc(1, sizeof *c);
    if (!c)
        return hgrid_fail(w, HGRID_ERR_IO, "out of memory for communicators");
    c->num_groups = hgrid_num_groups(w);
    c->w = w;
    double deadline = now_s() + timeout_ms / 1000.0;
    int st = start_inits(w, c);
    if (st == HGRID_OK)
        st = await_inits(w, c, deadline);
    if (st != HGRID_OK) {
        hgrid_comms_abort(c);
        return st;
    }
    *out = c;
    return HGRID_OK;
}

ncclComm_t hgrid_comms_get(const hgrid_comms *c, const char *name)
{
    const hgrid_group *g = hgrid_group_find(c->w, name);
    if (!g || !g->nccl_id)
        return NULL;
    for (int i = 0; i < c->num_groups; i++)
        if (hgrid_group_at(c->w, i) == g)
            return c->comm[hgrid_group_at(c->w, i)->shares_with];
    return NULL;
}
