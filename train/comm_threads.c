// The threads backend: every rank is a thread of one process. Collectives
// publish each member's buffers, meet at a barrier, and every member
// computes its result from all inputs in member order (so every member gets
// the same bits); point-to-point sends are copied into the group's
// per-(src, dst) FIFO and never block, receives wait for their message.
// An aborted group (tr_group_abort) fails every member's operations on it
// and leaves the world: a new group of the same members is a new one.
#include "train/comm.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct message {
    struct message *next;
    size_t bytes;
    char data[];
} message;

// State shared by the members of one group.
typedef struct shared {
    struct shared *next;
    int size, refs;
    int *members;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int arrived;
    unsigned long generation;
    int aborted;
    const void **send;          // (size) each member's input
    const size_t **send_counts; // (size) all_to_all_v only
    message **head, **tail;     // (size * size) FIFOs indexed src * size + dst (member indices)
} shared;

struct tr_threads_world {
    int size;
    pthread_mutex_t mu;
    shared *groups; // live (not aborted) groups, found by member list
};

// A member's handle: its group's shared state and the world.
typedef struct {
    shared *s;
    tr_threads_world *w;
} handle;

// 0 once every member arrived; -1 if the group is aborted meanwhile.
static int barrier(shared *s)
{
    pthread_mutex_lock(&s->mu);
    unsigned long gen = s->generation;
    if (s->aborted) {
    } else if (++s->arrived == s->size) {
        s->arrived = 0;
        s->generation++;
        pthread_cond_broadcast(&s->cv);
    } else {
        while (gen == s->generation && !s->aborted)
            pthread_cond_wait(&s->cv, &s->mu);
    }
    int rc = gen == s->generation ? -1 : 0;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

// bf16 <-> fp32 by bits (round to nearest even; no NaNs in training data).
static float bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

static void add_into(void *acc, const void *x, size_t n, tr_dtype t)
{
    if (t == TR_BF16)
        for (size_t i = 0; i < n; i++)
            ((uint16_t *)acc)[i] = f32_to_bf16(bf16_to_f32(((uint16_t *)acc)[i]) +
                                               bf16_to_f32(((const uint16_t *)x)[i]));
    else if (t == TR_F32)
        for (size_t i = 0; i < n; i++)
            ((float *)acc)[i] += ((const float *)x)[i];
    else
        for (size_t i = 0; i < n; i++)
            ((int *)acc)[i] += ((const int *)x)[i];
}

// Publishes this member's input, lets compute() build the result from every
// input into a private buffer, and copies it out once nobody reads inputs.
typedef void compute_fn(shared *s, int rank, void *out, size_t n, tr_dtype t, int root);

static void collective(tr_group *g, const void *send, const size_t *send_counts, void *recv,
                       size_t out_elems, size_t n, tr_dtype t, int root, compute_fn *compute)
{
    shared *s = ((handle *)g->impl)->s;
    size_t bytes = out_elems * tr_dtype_size(t);
    void *out = malloc(bytes ? bytes : 1);
    if (!out) {
        fprintf(stderr, "threads backend: out of memory for %zu bytes\n", bytes);
        abort();
    }
    s->send[g->rank] = send;
    s->send_counts[g->rank] = send_counts;
    int rc = barrier(s);
    if (rc == 0)
        compute(s, g->rank, out, n, t, root);
    if (rc == 0)
        rc = barrier(s);
    if (rc == 0)
        memcpy(recv, out, bytes);
    free(out);
    if (rc)
        tr_group_escape(g, "threads backend: collective on an aborted group");
}

static void sum_all(shared *s, int rank, void *out, size_t n, tr_dtype t, int root)
{
    (void)rank, (void)root;
    memcpy(out, s->send[0], n * tr_dtype_size(t));
    for (int j = 1; j < s->size; j++)
        add_into(out, s->send[j], n, t);
}

static void gather_all(shared *s, int rank, void *out, size_t n, tr_dtype t, int root)
{
    (void)rank, (void)root;
    size_t bytes = n * tr_dtype_size(t);
    for (int j = 0; j < s->size; j++)
        memcpy((char *)out + j * bytes, s->send[j], bytes);
}

static void sum_row(shared *s, int rank, void *out, size_t n, tr_dtype t, int root)
{
    (void)root;
    size_t bytes = n * tr_dtype_size(t);
    memcpy(out, (const char *)s->send[0] + rank * bytes, bytes);
    for (int j = 1; j < s->size; j++)
        add_into(out, (const char *)s->send[j] + rank * bytes, n, t);
}

static void copy_root(shared *s, int rank, void *out, size_t n, tr_dtype t, int root)
{
    (void)rank;
    memcpy(out, s->send[root], n * tr_dtype_size(t));
}

// out gets, from each member j in order, the piece j addressed to rank.
static void exchange(shared *s, int rank, void *out, size_t n, tr_dtype t, int root)
{
    (void)n, (void)root;
    size_t es = tr_dtype_size(t), at = 0;
    for (int j = 0; j < s->size; j++) {
        const size_t *c = s->send_counts[j];
        size_t skip = 0;
        for (int k = 0; k < rank; k++)
            skip += c[k];
        memcpy((char *)out + at * es, (const char *)s->send[j] + skip * es, c[rank] * es);
        at += c[rank];
    }
}

static void th_all_reduce(tr_group *g, void *buf, size_t n, tr_dtype t)
{
    collective(g, buf, NULL, buf, n, n, t, 0, sum_all);
}

static void th_all_gather(tr_group *g, const void *send, void *recv, size_t n, tr_dtype t)
{
    collective(g, send, NULL, recv, n * g->size, n, t, 0, gather_all);
}

static void th_reduce_scatter(tr_group *g, const void *send, void *recv, size_t n, tr_dtype t)
{
    collective(g, send, NULL, recv, n, n, t, 0, sum_row);
}

static void th_broadcast(tr_group *g, void *buf, size_t n, tr_dtype t, int root)
{
    collective(g, buf, NULL, buf, n, n, t, root, copy_root);
}

static void th_all_to_all_v(tr_group *g, const void *send, const size_t *send_counts, void *recv,
                            const size_t *recv_counts, tr_dtype t)
{
    size_t total = 0;
    for (int j = 0; j < g->size; j++)
        total += recv_counts[j];
    collective(g, send, send_counts, recv, total, 0, t, 0, exchange);
}

static shared *shared_of(const tr_group *g) { return ((const handle *)g->impl)->s; }

static void th_p2p(const tr_p2p_op *ops, int n, tr_dtype t)
{
    size_t es = tr_dtype_size(t);
    for (int i = 0; i < n; i++) {
        const tr_p2p_op *op = &ops[i];
        if (!op->is_send)
            continue;
        shared *s = shared_of(op->group);
        size_t bytes = op->count * es;
        message *m = malloc(sizeof *m + bytes);
        if (!m) {
            fprintf(stderr, "threads backend: out of memory for a %zu-byte send\n", bytes);
            abort();
        }
        m->next = NULL;
        m->bytes = bytes;
        memcpy(m->data, op->buf, bytes);
        int q = op->group->rank * s->size + op->peer;
        pthread_mutex_lock(&s->mu);
        if (s->tail[q])
            s->tail[q]->next = m;
        else
            s->head[q] = m;
        s->tail[q] = m;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    for (int i = 0; i < n; i++) {
        const tr_p2p_op *op = &ops[i];
        if (op->is_send)
            continue;
        shared *s = shared_of(op->group);
        int q = op->peer * s->size + op->group->rank;
        pthread_mutex_lock(&s->mu);
        while (!s->head[q] && !s->aborted)
            pthread_cond_wait(&s->cv, &s->mu);
        message *m = s->head[q];
        if (!m) {
            pthread_mutex_unlock(&s->mu);
            tr_group_escape(op->group, "threads backend: receive on an aborted group");
        }
        if (m->bytes != op->count * es) {
            fprintf(stderr, "threads backend: rank %d expected %zu bytes from rank %d, got %zu\n",
                    op->group->members[op->group->rank], op->count * es,
                    op->group->members[op->peer], m->bytes);
            abort();
        }
        memcpy(op->buf, m->data, m->bytes);
        s->head[q] = m->next;
        if (!s->head[q])
            s->tail[q] = NULL;
        pthread_cond_broadcast(&s->cv); // a sender draining waits for this
        pthread_mutex_unlock(&s->mu);
        free(m);
    }
}

// Every member's operations on s fail from now on; s leaves the world's
// list, so the members' next group of the same ranks is a new one.
static void th_abort(tr_group *g)
{
    handle *h = g->impl;
    pthread_mutex_lock(&h->s->mu);
    h->s->aborted = 1;
    pthread_cond_broadcast(&h->s->cv);
    pthread_mutex_unlock(&h->s->mu);
    pthread_mutex_lock(&h->w->mu);
    for (shared **p = &h->w->groups; *p; p = &(*p)->next)
        if (*p == h->s) {
            *p = h->s->next;
            break;
        }
    pthread_mutex_unlock(&h->w->mu);
}

// Collectives finish inside the call; a send is done once its receiver
// took it (or the group was aborted: nothing of it is kept).
static bool th_drain(tr_group *g, double deadline)
{
    shared *s = shared_of(g);
    struct timespec until;
    double whole;
    until.tv_nsec = (long)(modf(deadline, &whole) * 1e9);
    until.tv_sec = (time_t)whole;
    pthread_mutex_lock(&s->mu);
    bool sent = false;
    for (int rc = 0;;) {
        sent = false;
        for (int j = 0; j < s->size; j++)
            sent |= s->head[g->rank * s->size + j] != NULL;
        if (!sent || s->aborted || rc)
            break;
        rc = pthread_cond_timedwait(&s->cv, &s->mu, &until);
    }
    bool drained = !sent || s->aborted; // an aborted group keeps nothing to wait for
    pthread_mutex_unlock(&s->mu);
    return drained;
}

static void th_free(tr_group *g);

static void th_copy(tr_group *g, void *dst, const void *src, size_t bytes)
{
    (void)g;
    memmove(dst, src, bytes);
}

static const tr_backend threads_backend = {
    .all_reduce = th_all_reduce,
    .all_gather = th_all_gather,
    .reduce_scatter = th_reduce_scatter,
    .broadcast = th_broadcast,
    .all_to_all_v = th_all_to_all_v,
    .p2p = th_p2p,
    .copy = th_copy,
    .abort = th_abort,
    .drain = th_drain,
    .free = th_free,
};

tr_threads_world *tr_threads_world_create(int world_size)
{
    tr_threads_world *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->size = world_size;
    pthread_mutex_init(&w->mu, NULL);
    return w;
}

void tr_threads_world_free(tr_threads_world *w)
{
    if (!w)
        return;
    pthread_mutex_destroy(&w->mu);
    free(w);
}

static void shared_free(shared *s)
{
    for (int q = 0; s->head && q < s->size * s->size; q++)
        while (s->head[q]) {
            message *m = s->head[q];
            s->head[q] = m->next;
            free(m);
        }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->members), free(s->send), free(s->send_counts), free(s->head), free(s->tail);
    free(s);
}

static shared *shared_find_or_add(tr_threads_world *w, const int *members, int size)
{
    for (shared *s = w->groups; s; s = s->next)
        if (s->size == size && memcmp(s->members, members, sizeof(int) * size) == 0) {
            s->refs++;
            return s;
        }
    shared *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->size = size;
    s->refs = 1;
    s->members = malloc(sizeof(int) * size);
    s->send = calloc(size, sizeof *s->send);
    s->send_counts = calloc(size, sizeof *s->send_counts);
    s->head = calloc((size_t)size * size, sizeof *s->head);
    s->tail = calloc((size_t)size * size, sizeof *s->tail);
    if (!s->members || !s->send || !s->send_counts || !s->head || !s->tail) {
        free(s->members), free(s->send), free(s->send_counts), free(s->head), free(s->tail);
        free(s);
        return NULL;
    }
    memcpy(s->members, members, sizeof(int) * size);
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t attr; // th_drain's deadline is on now_s()'s clock
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &attr);
    pthread_condattr_destroy(&attr);
    s->next = w->groups;
    w->groups = s;
    return s;
}

tr_group *tr_threads_group(tr_threads_world *w, const int *members, int size, int my_rank)
{
    tr_group *g = calloc(1, sizeof *g);
    handle *h = calloc(1, sizeof *h);
    int *copy = malloc(sizeof(int) * size);
    pthread_mutex_lock(&w->mu);
    shared *s = g && h && copy ? shared_find_or_add(w, members, size) : NULL;
    pthread_mutex_unlock(&w->mu);
    if (!s) {
        free(g), free(h), free(copy);
        return NULL;
    }
    memcpy(copy, members, sizeof(int) * size);
    *h = (handle){s, w};
    *g = (tr_group){.be = &threads_backend, .impl = h, .size = size, .members = copy};
    for (int j = 0; j < size; j++)
        if (members[j] == my_rank)
            g->rank = j;
    if (tr_group_counts_init(g)) {
        th_free(g);
        return NULL;
    }
    return g;
}

static void th_free(tr_group *g)
{
    handle *h = g->impl;
    tr_threads_world *w = h->w;
    pthread_mutex_lock(&w->mu);
    if (--h->s->refs == 0) {
        for (shared **p = &w->groups; *p; p = &(*p)->next)
            if (*p == h->s) {
                *p = h->s->next;
                break;
            }
        shared_free(h->s);
    }
    pthread_mutex_unlock(&w->mu);
    free(g->members);
    free(h);
    free(g);
}
