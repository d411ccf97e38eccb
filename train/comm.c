// The backend-independent entry points; a group of one needs no backend.
#include "train/comm.h"

#include <stdio.h>
#include <stdlib.h>

size_t tr_dtype_size(tr_dtype t) { return t == TR_BF16 ? 2 : 4; }

void tr_fence_raise(tr_fence *f) { atomic_store(&f->raised, 1); }

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
    fence_check(g);
    if (g->size > 1)
        g->be->all_reduce(g, buf, n, t);
}

void tr_all_gather(tr_group *g, const void *send, void *recv, size_t n, tr_dtype t)
{
    fence_check(g);
    if (g->size > 1)
        g->be->all_gather(g, send, recv, n, t);
    else if (send != recv)
        g->be->copy(g, recv, send, n * tr_dtype_size(t));
}

void tr_reduce_scatter(tr_group *g, const void *send, void *recv, size_t n, tr_dtype t)
{
    fence_check(g);
    if (g->size > 1)
        g->be->reduce_scatter(g, send, recv, n, t);
    else if (send != recv)
        g->be->copy(g, recv, send, n * tr_dtype_size(t));
}

void tr_broadcast(tr_group *g, void *buf, size_t n, tr_dtype t, int root)
{
    fence_check(g);
    if (g->size > 1)
        g->be->broadcast(g, buf, n, t, root);
}

void tr_all_to_all_v(tr_group *g, const void *send, const size_t *send_counts, void *recv,
                     const size_t *recv_counts, tr_dtype t)
{
    fence_check(g);
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
    if (n > 0)
        fence_check(ops[0].group);
    if (n > 0)
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
    if (g)
        g->be->free(g);
}
