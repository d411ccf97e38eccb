// The backend-independent entry points; a group of one needs no backend.
#include "train/comm.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

size_t tr_dtype_size(tr_dtype t) { return t == TR_BF16 ? 2 : 4; }

// With begin_op: the raiser stores raised then reads issuing, the rank
// stores issuing then reads raised (both sequentially consistent), so
// either the rank sees the fence and counts nothing, or the raiser waits
// until the rank counted its operation.
void tr_fence_raise(tr_fence *f)
{
    atomic_store(&f->raised, 1);
    while (atomic_load(&f->issuing))
        sched_yield();
}

void tr_group_escape(const tr_group *g, const char *what)
{
    if (g->fence && g->fence->escape && atomic_load(&g->fence->raised))
        longjmp(*g->fence->escape, 1);
    fprintf(stderr, "group of %d ranks (rank %d): %s\n", g->size, g->rank, what);
    abort();
}

// No operation starts once the rank's fence is up.
static void fence_check(const tr_group *g)
{
    if (g->fence && atomic_load(&g->fence->raised))
        tr_group_escape(g, "fence raised");
}

// Checks the fence and opens the window in which the caller counts the
// operation it is about to issue; end_op closes it.
static void begin_op(const tr_group *g)
{
    if (!g->fence)
        return;
    atomic_store(&g->fence->issuing, 1);
    if (atomic_load(&g->fence->raised)) {
        atomic_store(&g->fence->issuing, 0);
        tr_group_escape(g, "fence raised");
    }
}

static void end_op(const tr_group *g)
{
    if (g->fence)
        atomic_store(&g->fence->issuing, 0);
}

// A collective: checked against the fence and counted before it runs.
static void collective_op(tr_group *g)
{
    begin_op(g);
    atomic_fetch_add(&g->ops.collectives, 1);
    end_op(g);
}

int tr_group_counts_init(tr_group *g)
{
    atomic_init(&g->ops.collectives, 0);
    g->ops.sent = calloc((size_t)g->size, sizeof *g->ops.sent);
    g->ops.received = calloc((size_t)g->size, sizeof *g->ops.received);
    if (g->ops.sent && g->ops.received)
        return 0;
    tr_group_counts_free(g);
    return -1;
}

void tr_group_counts_free(tr_group *g)
{
    free(g->ops.sent);
    free(g->ops.received);
    g->ops.sent = g->ops.received = NULL;
}

uint64_t tr_group_counts(const tr_group *g, uint64_t *sent, uint64_t *received)
{
    for (int j = 0; g && j < g->size; j++) {
        if (sent)
            sent[j] = atomic_load(&g->ops.sent[j]);
        if (received)
            received[j] = atomic_load(&g->ops.received[j]);
    }
    return g ? atomic_load(&g->ops.collectives) : 0;
}

bool tr_group_holds(const tr_group *g, const int *ranks, int n)
{
    for (int m = 0; m < g->size; m++)
        for (int r = 0; r < n; r++)
            if (g->members[m] == ranks[r])
                return true;
    return false;
}

void tr_group_abort(tr_group *g)
{
    if (g && g->size > 1 && g->be->abort)
        g->be->abort(g);
}

bool tr_group_drain(tr_group *g, double deadline)
{
    return !g || g->size == 1 || !g->be->drain || g->be->drain(g, deadline);
}

void tr_all_reduce(tr_group *g, void *buf, size_t n, tr_dtype t)
{
    collective_op(g);
    if (g->size > 1)
        g->be->all_reduce(g, buf, n, t);
}

void tr_all_gather(tr_group *g, const void *send, void *recv, size_t n, tr_dtype t)
{
    collective_op(g);
    if (g->size > 1)
        g->be->all_gather(g, send, recv, n, t);
    else if (send != recv)
        g->be->copy(g, recv, send, n * tr_dtype_size(t));
}

void tr_reduce_scatter(tr_group *g, const void *send, void *recv, size_t n, tr_dtype t)
{
    collective_op(g);
    if (g->size > 1)
        g->be->reduce_scatter(g, send, recv, n, t);
    else if (send != recv)
        g->be->copy(g, recv, send, n * tr_dtype_size(t));
}

void tr_broadcast(tr_group *g, void *buf, size_t n, tr_dtype t, int root)
{
    collective_op(g);
    if (g->size > 1)
        g->be->broadcast(g, buf, n, t, root);
}

void tr_all_to_all_v(tr_group *g, const void *send, const size_t *send_counts, void *recv,
                     const size_t *recv_counts, tr_dtype t)
{
    collective_op(g);
    if (g->size > 1)
        g->be->all_to_all_v(g, send, send_counts, recv, recv_counts, t);
    else if (send != recv)
        g->be->copy(g, recv, send, send_counts[0] * tr_dtype_size(t));
}

void tr_all_to_all(tr_group *g, const void *send, void *recv, size_t n, tr_dtype t)
{
    size_t *counts = malloc(sizeof(size_t) * g->size);
    for (int j = 0; j < g->size; j++)
        counts[j] = n;
    tr_all_to_all_v(g, send, counts, recv, counts, t);
    free(counts);
}

void tr_p2p(const tr_p2p_op *ops, int n, tr_dtype t)
{
    if (n <= 0)
        return;
    begin_op(ops[0].group); // the batch is one rank's: one fence
    for (int i = 0; i < n; i++)
        atomic_fetch_add(ops[i].is_send ? &ops[i].group->ops.sent[ops[i].peer]
                                        : &ops[i].group->ops.received[ops[i].peer],
                         1);
    end_op(ops[0].group);
    ops[0].group->be->p2p(ops, n, t);
}

void tr_group_join(tr_group *g)
{
    fence_check(g);
    if (g->size > 1 && g->be->join)
        g->be->join(g);
}

void tr_group_free(tr_group *g)
{
    if (!g)
        return;
    tr_group_counts_free(g);
    g->be->free(g);
}
