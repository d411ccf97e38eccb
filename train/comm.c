// The backend-independent entry points; a group of one needs no backend.
#include "train/comm.h"

#include <stdlib.h>

size_t tr_dtype_size(tr_dtype t) { return t == TR_BF16 ? 2 : 4; }

void tr_all_reduce(tr_group *g, void *buf, size_t n, tr_dtype t)
{
    if (g->size > 1)
        g->be->all_reduce(g, buf, n, t);
}

void tr_all_gather(tr_group *g, const void *send, void *recv, size_t n, tr_dtype t)
{
    if (g->size > 1)
        g->be->all_gather(g, send, recv, n, t);
    else if (send != recv)
        g->be->copy(g, recv, send, n * tr_dtype_size(t));
}

void tr_reduce_scatter(tr_group *g, const void *send, void *recv, size_t n, tr_dtype t)
{
    if (g->size > 1)
        g->be->reduce_scatter(g, send, recv, n, t);
    else if (send != recv)
        g->be->copy(g, recv, send, n * tr_dtype_size(t));
}

void tr_broadcast(tr_group *g, void *buf, size_t n, tr_dtype t, int root)
{
    if (g->size > 1)
        g->be->broadcast(g, buf, n, t, root);
}

void tr_all_to_all_v(tr_group *g, const void *send, const size_t *send_counts, void *recv,
                     const size_t *recv_counts, tr_dtype t)
{
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
        ops[0].group->be->p2p(ops, n, t);
}

void tr_group_join(tr_group *g)
{
    if (g->size > 1 && g->be->join)
        g->be->join(g);
}

void tr_group_free(tr_group *g)
{
    if (g)
        g->be->free(g);
}
