// NCCL communicators for a worker's groups: non-blocking inits in one
// group call (or the module communicator split into the rest), a deadline,
// and ncclCommAbort on anything that goes wrong.
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libhgrid/hgrid_comms.h"
#include "libhgrid/hgrid_layout.h"
#include "libhgrid/assignment_check.h"
#include "util/clock.h"

#define POLL_NS 200000 // between looks at the inits' progress
#define FINALIZE_S 10   // a clean teardown's limit; then the communicators are aborted

struct hgrid_comms {
    int num_groups;
    const hgrid_worker *w;
    ncclComm_t comm[ASSIGN_MAX_GROUPS]; // by group position; NULL: none or shared
    uint8_t id[ASSIGN_MAX_GROUPS][HGRID_ID_BYTES]; // the id each was created from
};

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

// Whether group i's members hold one of the n ranks.
static bool holds_any(const hgrid_group *g, const int *ranks, int n)
{
    for (int m = 0; m < g->size; m++)
        for (int r = 0; r < n; r++)
            if (g->members[m] == ranks[r])
                return true;
    return false;
}

int hgrid_comms_abort_lost(hgrid_comms *c)
{
    int lost[HGRID_MAX_LOST], n = hgrid_lost_ranks(c->w, lost, HGRID_MAX_LOST), aborted = 0;
    bool hit[ASSIGN_MAX_GROUPS] = {false};
    for (int i = 0; i < c->num_groups; i++) { // a shared communicator goes with any of its groups
        const hgrid_group *g = hgrid_group_at(c->w, i);
        if (g->nccl_id && (n == 0 || holds_any(g, lost, n) || hgrid_group_broken(c->w, i)))
            hit[g->shares_with] = true;
    }
    for (int i = 0; i < c->num_groups; i++)
        if (hit[i] && c->comm[i]) {
            ncclCommAbort(c->comm[i]);
            c->comm[i] = NULL;
            aborted++;
        }
    return aborted;
}

void hgrid_comms_destroy(hgrid_comms *c)
{
    if (!c)
        return;
    double deadline = now_s() + FINALIZE_S;
    for (int i = 0; i < c->num_groups; i++) {
        if (!c->comm[i])
            continue;
        ncclResult_t state = ncclCommFinalize(c->comm[i]);
        while (state == ncclInProgress && now_s() < deadline &&
               ncclCommGetAsyncError(c->comm[i], &state) == ncclSuccess)
            nanosleep(&(struct timespec){0, POLL_NS}, NULL);
        if (state == ncclSuccess)
            ncclCommDestroy(c->comm[i]);
        else // a peer left mid-flush: no waiting on it
            ncclCommAbort(c->comm[i]);
    }
    free(c);
}

static void remember_ids(const hgrid_worker *w, hgrid_comms *c)
{
    for (int i = 0; i < c->num_groups; i++) {
        const hgrid_group *g = hgrid_group_at(w, i);
        if (c->comm[i] && g->nccl_id)
            memcpy(c->id[i], g->nccl_id, HGRID_ID_BYTES);
    }
}

// Starts the inits of the groups at positions where want[] (NULL: every
// group owning a communicator) in one group call; non-blocking, so it
// returns at once.
static int start_inits(hgrid_worker *w, hgrid_comms *c, const bool *want)
{
    ncclResult_t r = ncclGroupStart();
    if (r != ncclSuccess)
        return NCCL_FAIL(w, "ncclGroupStart", r);
    for (int i = 0; i < c->num_groups; i++) {
        const hgrid_group *g = hgrid_group_at(w, i);
        if (!g->nccl_id || g->shares_with != i || (want && !want[i]))
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

// Position of the worker's group of kind `kind`, or -1 when not a member.
static int group_position(const hgrid_worker *w, hg_group_kind kind)
{
    const char *name = hg_group_name(kind);
    for (int i = 0; i < hgrid_num_groups(w); i++)
        if (!strcmp(hgrid_group_at(w, i)->name, name))
            return i;
    return -1;
}

// The module communicator (and the bridges') by init, then every other
// distinct group of the module split from it, one split at a time: a split
// is collective over the whole module, so every rank walks the kinds in the
// same order, passing NCCL_SPLIT_NOCOLOR for kinds it is not in.
static int create_by_split(hgrid_worker *w, hgrid_comms *c, double deadline)
{
    int module_pos = group_position(w, HG_GROUP_MODULE);
    int parent = module_pos >= 0 ? hgrid_group_at(w, module_pos)->shares_with : -1;
    bool want[ASSIGN_MAX_GROUPS] = {false};
    if (parent >= 0)
        want[parent] = true;
    for (int i = 0; i < c->num_groups; i++)
        if (!strncmp(hgrid_group_at(w, i)->name, "bridge", 6))
            want[i] = true;
    int st = start_inits(w, c, want);
    if (st == HGRID_OK)
        st = await_inits(w, c, deadline);
    if (st != HGRID_OK || parent < 0 || !c->comm[parent])
        return st; // a one-rank module: nothing to split
    const hg_module_grid *m = hg_plan_module_of_rank(hgrid_plan(w), hgrid_rank(w));
    for (int k = 0; k < HG_NUM_GROUP_KINDS; k++) {
        if (!hg_group_applies(m, (hg_group_kind)k) ||
            hg_group_canonical(m, (hg_group_kind)k) != (hg_group_kind)k ||
            hg_group_size(m, (hg_group_kind)k) < 2)
            continue;
        int pos = group_position(w, (hg_group_kind)k);
        if (pos == parent)
            continue;
        const hgrid_group *g = pos >= 0 ? hgrid_group_at(w, pos) : NULL;
        ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
        config.blocking = 0;
        ncclComm_t none = NULL;
        ncclResult_t r = ncclCommSplit(c->comm[parent], g ? g->index : NCCL_SPLIT_NOCOLOR,
                                       g ? g->rank_in_group : 0, g ? &c->comm[pos] : &none,
                                       &config);
        if (r != ncclSuccess && r != ncclInProgress)
            return NCCL_FAIL(w, "ncclCommSplit", r);
        st = await_inits(w, c, deadline); // the new child, or the parent for NOCOLOR
        if (st != HGRID_OK)
            return st;
    }
    return HGRID_OK;
}

int hgrid_comms_create(hgrid_worker *w, int device, int timeout_ms, hgrid_comms **out)
{
    return hgrid_comms_create_with(w, device, timeout_ms, HGRID_COMMS_DEFAULT, out);
}

int hgrid_comms_create_with(hgrid_worker *w, int device, int timeout_ms,
                            hgrid_comms_strategy how, hgrid_comms **out)
{
    *out = NULL;
    if (!hgrid_assigned(w))
        return hgrid_fail(w, HGRID_ERR_STATE, "hgrid_comms_create needs an assignment first");
    if (hgrid_assignment_only(w))
        return hgrid_fail(w, HGRID_ERR_STATE,
                          "job %s runs without NCCL ids: a worker of it joined assignment-only "
                          "(without .mint = hgrid_nccl_mint); its communicators cannot form",
                          hgrid_job(w));
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
    int st;
    // Splitting walks one module's kinds; a colocated rank's two modules init.
    if (how == HGRID_COMMS_SPLIT && hgrid_num_modules(w) == 1) {
        st = create_by_split(w, c, deadline);
    } else {
        st = start_inits(w, c, NULL);
        if (st == HGRID_OK)
            st = await_inits(w, c, deadline);
    }
    if (st != HGRID_OK) {
        hgrid_comms_abort(c);
        return st;
    }
    remember_ids(w, c);
    *out = c;
    return HGRID_OK;
}

int hgrid_comms_rebuild(hgrid_worker *w, int device, int timeout_ms, hgrid_comms **comms,
                        int *kept)
{
    hgrid_comms *old = *comms;
    *comms = NULL;
    *kept = 0;
    if (old && hgrid_assignment_only(w))
        hgrid_comms_abort(old); // no ids: hgrid_comms_create says why
    if (!old || hgrid_assignment_only(w))
        return hgrid_comms_create(w, device, timeout_ms, comms);
    cudaError_t ce = cudaSetDevice(device);
    if (!hgrid_assigned(w) || ce != cudaSuccess) {
        hgrid_comms_abort(old);
        return ce != cudaSuccess
                   ? hgrid_fail(w, HGRID_ERR_IO, "cudaSetDevice(%d) failed at %s:%d: %s", device,
                                __FILE__, __LINE__, cudaGetErrorString(ce))
                   : hgrid_fail(w, HGRID_ERR_STATE, "hgrid_comms_rebuild needs an assignment first");
    }
    hgrid_comms *c = calloc(1, sizeof *c);
    if (!c) {
        hgrid_comms_abort(old);
        return hgrid_fail(w, HGRID_ERR_IO, "out of memory for communicators");
    }
    c->num_groups = hgrid_num_groups(w);
    c->w = w;
    bool want[ASSIGN_MAX_GROUPS] = {false};
    for (int i = 0; i < c->num_groups; i++) {
        const hgrid_group *g = hgrid_group_at(w, i);
        if (!g->nccl_id || g->shares_with != i)
            continue;
        want[i] = true;
        for (int j = 0; g->kept && j < old->num_groups; j++)
            if (old->comm[j] && !memcmp(old->id[j], g->nccl_id, HGRID_ID_BYTES)) {
                c->comm[i] = old->comm[j]; // same id: the same members, still formed
                old->comm[j] = NULL;
                want[i] = false;
                ++*kept;
                break;
            }
    }
    hgrid_comms_abort(old); // what holds a replaced rank
    double deadline = now_s() + timeout_ms / 1000.0;
    int st = start_inits(w, c, want);
    if (st == HGRID_OK)
        st = await_inits(w, c, deadline);
    if (st != HGRID_OK) {
        hgrid_comms_abort(c);
        return st;
    }
    remember_ids(w, c);
    *comms = c;
    return HGRID_OK;
}

ncclComm_t hgrid_comms_get(const hgrid_comms *c, const char *name)
{
    for (int i = 0; i < c->num_groups; i++)
        if (!strcmp(hgrid_group_at(c->w, i)->name, name))
            return hgrid_comms_at(c, i);
    return NULL;
}

ncclComm_t hgrid_comms_at(const hgrid_comms *c, int i)
{
    const hgrid_group *g = hgrid_group_at(c->w, i);
    return g && g->nccl_id ? c->comm[g->shares_with] : NULL;
}

int hgrid_nccl_mint(uint8_t *id, char *err, size_t errlen)
{
    ncclUniqueId unique;
    ncclResult_t r = ncclGetUniqueId(&unique);
    if (r != ncclSuccess) {
        snprintf(err, errlen, "ncclGetUniqueId failed: %s", ncclGetErrorString(r));
        return -1;
    }
    memcpy(id, unique.internal, HGRID_ID_BYTES);
    return 0;
}
