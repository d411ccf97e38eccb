// Rank assignment: requested ranks first, then whole tp blocks per host.
#include "daemon/core/assign.h"

#include <stdlib.h>
#include <string.h>

// A tp group: ranks [start, start + size), `free` of them not requested.
typedef struct {
    int start, size, free;
} block;

typedef struct {
    const hg_plan *plan;
    const gridd_assign_worker *w;
    int n;
    block *blocks;
    int num_blocks;
    int *order;      // free workers sorted by (host, device)
    int num_free;
    char *requested; // requested[rank]: held by a requested worker
    int *values;     // distinct free counts > 0, ascending
    int num_values;
    int **bucket;    // bucket[v]: blocks with values[v] free ranks, in rank order
    int *bucket_len, *cursor;
} assigner;

static int by_host_device(const void *a, const void *b, void *workers)
{
    const gridd_assign_worker *w = workers;
    const gridd_assign_worker *x = &w[*(const int *)a], *y = &w[*(const int *)b];
    if (x->host != y->host)
        return x->host < y->host ? -1 : 1;
    if (x->device != y->device)
        return x->device < y->device ? -1 : 1;
    return *(const int *)a - *(const int *)b;
}

static int gcd(int x, int y)
{
    return y ? gcd(y, x % y) : x;
}

// One block per tp group; a colocated plan's modules share their ranks, so
// a block there holds whole tp groups of both (the lcm of their tp sizes).
static int build_blocks(assigner *a)
{
    const hg_plan *p = a->plan;
    int spans = p->colocated ? 1 : p->num_modules, colocated_tp = 1;
    for (int m = 0; p->colocated && m < p->num_modules; m++) {
        int tp = p->modules[m].dense[HG_DIM_TP];
        colocated_tp = colocated_tp / gcd(colocated_tp, tp) * tp;
    }
    for (int m = 0; m < spans; m++)
        a->num_blocks += p->modules[m].num_ranks /
                         (p->colocated ? colocated_tp : p->modules[m].dense[HG_DIM_TP]);
    a->blocks = malloc(sizeof *a->blocks * (size_t)a->num_blocks);
    if (!a->blocks)
        return -1;
    int b = 0;
    for (int m = 0; m < spans; m++) {
        const hg_module_grid *g = &p->modules[m];
        int tp = p->colocated ? colocated_tp : g->dense[HG_DIM_TP];
        for (int s = g->rank_offset; s < g->rank_offset + g->num_ranks; s += tp, b++) {
            a->blocks[b] = (block){s, tp, 0};
            for (int r = s; r < s + tp; r++)
                a->blocks[b].free += !a->requested[r];
        }
    }
    return 0;
}

static int cmp_int(const void *x, const void *y)
{
    return *(const int *)x - *(const int *)y;
}

// Groups the blocks by their number of free ranks.
static int build_buckets(assigner *a)
{
    a->values = malloc(sizeof *a->values * (size_t)a->num_blocks);
    a->bucket = calloc((size_t)a->num_blocks, sizeof *a->bucket);
    a->bucket_len = calloc((size_t)a->num_blocks, sizeof *a->bucket_len);
    a->cursor = calloc((size_t)a->num_blocks, sizeof *a->cursor);
    if (!a->values || !a->bucket || !a->bucket_len || !a->cursor)
        return -1;
    int n = 0;
    for (int b = 0; b < a->num_blocks; b++)
        if (a->blocks[b].free > 0)
            a->values[n++] = a->blocks[b].free;
    qsort(a->values, (size_t)n, sizeof *a->values, cmp_int);
    for (int i = 0; i < n; i++)
        if (a->num_values == 0 || a->values[a->num_values - 1] != a->values[i])
            a->values[a->num_values++] = a->values[i];
    for (int v = 0; v < a->num_values; v++) {
        a->bucket[v] = malloc(sizeof **a->bucket * (size_t)a->num_blocks);
        if (!a->bucket[v])
            return -1;
    }
    for (int b = 0; b < a->num_blocks; b++) {
        if (a->blocks[b].free == 0)
            continue;
        int v = 0;
        while (a->values[v] != a->blocks[b].free)
            v++;
        a->bucket[v][a->bucket_len[v]++] = b;
    }
    return 0;
}

// The bucket to take the next block from for a host with `left` free GPUs:
// the earliest block that fits (in_order) or the earliest of the largest
// that fit. -1 if none fits.
static int pick_bucket(const assigner *a, int left, bool in_order)
{
    int best = -1;
    for (int v = 0; v < a->num_values && a->values[v] <= left; v++) {
        if (a->cursor[v] == a->bucket_len[v])
            continue;
        if (!in_order || best < 0 ||
            a->bucket[v][a->cursor[v]] < a->bucket[best][a->cursor[best]])
            best = v;
    }
    return best;
}

// One packing pass; fills rank[] and returns the number of split tp groups.
static int pack(assigner *a, bool in_order, int *rank, char *taken, char *placed)
{
    memset(a->cursor, 0, sizeof *a->cursor * (size_t)a->num_blocks);
    memset(taken, 0, (size_t)a->num_blocks);
    memset(placed, 0, (size_t)a->n);
    for (int i = 0; i < a->n; i++)
        rank[i] = a->w[i].requested;
    for (int first = 0; first < a->num_free;) {
        int host = a->w[a->order[first]].host, end = first;
        while (end < a->num_free && a->w[a->order[end]].host == host)
            end++;
        int next = first, v;
        while ((v = pick_bucket(a, end - next, in_order)) >= 0) {
            int b = a->bucket[v][a->cursor[v]++];
            taken[b] = 1;
            for (int r = a->blocks[b].start; r < a->blocks[b].start + a->blocks[b].size; r++)
                if (!a->requested[r]) {
                    rank[a->order[next]] = r;
                    placed[next++] = 1;
                }
        }
        first = end;
    }
    // Leftover GPUs fill the ranks of the blocks no host could hold whole.
    int k = 0;
    for (int b = 0; b < a->num_blocks; b++) {
        if (taken[b])
            continue;
        for (int r = a->blocks[b].start; r < a->blocks[b].start + a->blocks[b].size; r++) {
            if (a->requested[r])
                continue;
            while (placed[k])
                k++;
            rank[a->order[k]] = r;
            placed[k] = 1;
        }
    }
    return gridd_assign_split_tp_groups(a->plan, a->w, rank);
}

static void assigner_free(assigner *a)
{
    for (int v = 0; a->bucket && v < a->num_values; v++)
        free(a->bucket[v]);
    free(a->bucket);
    free(a->bucket_len);
    free(a->cursor);
    free(a->values);
    free(a->blocks);
    free(a->order);
    free(a->requested);
}

int gridd_assign_ranks(const hg_plan *plan, const gridd_assign_worker *w, int *rank)
{
    int n = plan->world_size;
    assigner a = {.plan = plan, .w = w, .n = n};
    a.requested = calloc((size_t)n, 1);
    a.order = malloc(sizeof *a.order * (size_t)n);
    int *alt = malloc(sizeof *alt * (size_t)n);
    char *taken = NULL, *placed = malloc((size_t)n);
    int rc = -1;
    if (!a.requested || !a.order || !alt || !placed)
        goto out;
    for (int i = 0; i < n; i++) {
        if (w[i].requested >= 0)
            a.requested[w[i].requested] = 1;
        else
            a.order[a.num_free++] = i;
    }
    qsort_r(a.order, (size_t)a.num_free, sizeof *a.order, by_host_device, (void *)w);
    if (build_blocks(&a) || build_buckets(&a) || !(taken = malloc((size_t)a.num_blocks + 1)))
        goto out;
    // Rank order when it keeps every tp group whole; otherwise largest
    // blocks first if that splits fewer.
    int split = pack(&a, true, rank, taken, placed);
    if (split < 0)
        goto out;
    if (split > 0) {
        int alt_split = pack(&a, false, alt, taken, placed);
        if (alt_split < 0)
            goto out;
        if (alt_split < split)
            memcpy(rank, alt, sizeof *rank * (size_t)n);
    }
    rc = 0;
out:
    assigner_free(&a);
    free(alt);
    free(taken);
    free(placed);
    return rc;
}

int gridd_assign_split_tp_groups(const hg_plan *plan, const gridd_assign_worker *w, const int *rank)
{
    int n = plan->world_size;
    int *host_of = malloc(sizeof *host_of * (size_t)n);
    if (!host_of)
        return -1;
    for (int i = 0; i < n; i++)
        host_of[rank[i]] = w[i].host;
    int split = 0;
    for (int m = 0; m < plan->num_modules; m++) {
        const hg_module_grid *g = &plan->modules[m];
        int tp = g->dense[HG_DIM_TP];
        for (int s = g->rank_offset; s < g->rank_offset + g->num_ranks; s += tp)
            for (int r = s + 1; r < s + tp; r++)
                if (host_of[r] != host_of[s]) {
                    split++;
                    break;
                }
    }
    free(host_of);
    return split;
}
