// hgrid-swarm's checks: every assignment against the plan the layout engine
// computes here, and across workers (ranks, shared ids, host-local tp).
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/swarm/swarm.h"

#define MAX_REPORTED 10

typedef struct {
    int failed;
} report;

static void fail(report *r, const char *fmt, ...)
{
    if (r->failed++ >= MAX_REPORTED) {
        if (r->failed == MAX_REPORTED + 1)
            fprintf(stderr, "hgrid-swarm: (further failures not shown)\n");
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "hgrid-swarm: check failed: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

// One id slot per group that needs a communicator: per module and canonical
// kind of size > 1, then the bridges.
typedef struct {
    int base[HG_MAX_MODULES][HG_NUM_GROUP_KINDS]; // by module index; -1: no slots
    int bridge[HG_MAX_ENCODERS];                  // -1: no bridge
    int count;
    uint8_t *ids;   // count * ASSIGN_ID_BYTES
    int *owner;     // rank that filled the slot, -1 while empty
} id_slots;

static int slots_init(id_slots *t, const assign_ref *ref)
{
    const hg_plan *p = &ref->plan;
    t->count = 0;
    memset(t->base, -1, sizeof t->base);
    for (int i = 0; i < p->num_modules; i++) {
        const hg_module_grid *m = &p->modules[i];
        for (int k = 0; k < HG_NUM_GROUP_KINDS; k++) {
            if (!hg_group_applies(m, (hg_group_kind)k) || (int)ref->canonical.kind[i][k] != k ||
                hg_group_size(m, (hg_group_kind)k) < 2)
                continue;
            t->base[i][k] = t->count;
            t->count += hg_group_count(m, (hg_group_kind)k);
        }
    }
    for (int b = 0; b < HG_MAX_ENCODERS; b++)
        t->bridge[b] = b < hg_plan_num_bridges(p) && hg_bridge_size(p, b) > 1 ? t->count++ : -1;
    t->ids = malloc((size_t)t->count * ASSIGN_ID_BYTES + 1);
    t->owner = malloc(((size_t)t->count + 1) * sizeof(int));
    if (!t->ids || !t->owner)
        return -1;
    for (int i = 0; i < t->count; i++)
        t->owner[i] = -1;
    return 0;
}

// Same group, same id: the first member fills the slot, the others compare.
static void slot_visit(id_slots *t, report *r, int slot, int rank, const Hgrid__Group *g)
{
    uint8_t *id = t->ids + (size_t)slot * ASSIGN_ID_BYTES;
    if (t->owner[slot] < 0) {
        memcpy(id, g->nccl_id.data, ASSIGN_ID_BYTES);
        t->owner[slot] = rank;
    } else if (memcmp(id, g->nccl_id.data, ASSIGN_ID_BYTES) != 0) {
        fail(r, "rank %d's %s group %u has a different id than rank %d's", rank, g->name,
             g->index, t->owner[slot]);
    }
}

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, ASSIGN_ID_BYTES);
}

// Different groups, different ids.
static void slots_distinct(id_slots *t, report *r)
{
    qsort(t->ids, (size_t)t->count, ASSIGN_ID_BYTES, cmp_id);
    for (int i = 1; i < t->count; i++)
        if (memcmp(t->ids + (size_t)(i - 1) * ASSIGN_ID_BYTES, t->ids + (size_t)i * ASSIGN_ID_BYTES,
                   ASSIGN_ID_BYTES) == 0) {
            fail(r, "two different groups received the same id");
            return;
        }
}

static void check_worker(const assign_ref *ref, const swarm_conn *c,
                         const uint8_t *layout_bytes, size_t layout_len, uint64_t generation,
                         id_slots *t, report *r)
{
    const Hgrid__Assignment *a = c->assignment->assignment;
    uint8_t buf[512];
    size_t len = a->layout ? hgrid__layout__get_packed_size(a->layout) : 0;
    if (len != layout_len || len > sizeof buf ||
        (hgrid__layout__pack(a->layout, buf), memcmp(buf, layout_bytes, len) != 0)) {
        fail(r, "swarm-%d/%d got a different layout than the others", c->host, c->device);
        return;
    }
    if (a->generation != generation)
        fail(r, "swarm-%d/%d is in generation %llu, others in %llu", c->host, c->device,
             (unsigned long long)a->generation, (unsigned long long)generation);
    char err[512];
    if (assign_check(ref, a, err, sizeof err)) {
        fail(r, "swarm-%d/%d: %s", c->host, c->device, err);
        return;
    }
    int minted = c->mint_generation == a->generation ? c->minted_count : 0;
    if (assign_check_minted(ref, a, c->minted, minted, err, sizeof err))
        fail(r, "swarm-%d/%d: %s", c->host, c->device, err);
    assign_group want[ASSIGN_MAX_GROUPS];
    int n = assign_expected_groups(ref, (int)a->rank, want);
    for (int i = 0; i < n; i++) {
        if (want[i].size < 2 || want[i].kind != want[i].canonical)
            continue; // one-rank groups have no id; shared ids were checked per worker
        int slot = want[i].kind == ASSIGN_BRIDGE
                       ? t->bridge[want[i].bridge]
                       : t->base[want[i].module_index][want[i].kind] + want[i].index;
        const Hgrid__Group *g = (size_t)i < a->n_groups
                                    ? a->groups[i]
                                    : a->colocated_modules[0]->groups[(size_t)i - a->n_groups];
        slot_visit(t, r, slot, (int)a->rank, g);
    }
}

// tp groups stay on one host whenever tp divides the GPUs per host.
static void check_tp_local(const swarm *s, const assign_ref *ref, const int *conn_of_rank,
                           report *r)
{
    const hg_plan *p = &ref->plan;
    int per_host = s->opt.workers / s->opt.hosts;
    int members[HG_MAX_WORLD > 4096 ? 4096 : HG_MAX_WORLD];
    for (int i = 0; i < p->num_modules; i++) {
        const hg_module_grid *m = &p->modules[i];
        int tp = hg_group_size(m, HG_GROUP_TP);
        if (per_host % tp != 0 || tp > (int)(sizeof members / sizeof members[0]))
            continue;
        for (int g = 0; g < hg_group_count(m, HG_GROUP_TP); g++) {
            hg_group_members(m, HG_GROUP_TP, g, members);
            int host = s->conns[conn_of_rank[members[0]]].host;
            for (int j = 1; j < tp; j++)
                if (s->conns[conn_of_rank[members[j]]].host != host) {
                    fail(r, "%s tp group %d spans hosts swarm-%d and swarm-%d", hg_module_name(m->id),
                         g, host, s->conns[conn_of_rank[members[j]]].host);
                    break;
                }
        }
    }
}

int swarm_check(const swarm *s, int *groups)
{
    report r = {0};
    id_slots t = {.ids = NULL, .owner = NULL};
    *groups = 0;
    int n = s->opt.workers, first = -1;
    for (int i = 0; i < n; i++) {
        const swarm_conn *c = &s->conns[i];
        if (c->assignment && first < 0)
            first = i;
        if (!c->assignment)
            fail(&r, "swarm-%d/%d has no assignment: %s", c->host, c->device,
                 c->error ? c->error : "none received");
    }
    if (first < 0)
        return r.failed;
    const Hgrid__Assignment *a0 = s->conns[first].assignment->assignment;
    assign_ref *ref = malloc(sizeof *ref);
    int *conn_of_rank = malloc(sizeof(int) * (size_t)n);
    uint8_t layout_bytes[512];
    size_t layout_len = a0->layout ? hgrid__layout__get_packed_size(a0->layout) : 0;
    char err[512];
    if (!ref || !conn_of_rank || layout_len > sizeof layout_bytes) {
        fail(&r, "out of memory, or a layout of %zu bytes", layout_len);
    } else if (assign_ref_build(ref, a0->layout, err, sizeof err)) {
        fail(&r, "%s", err);
    } else if (ref->plan.world_size != n) {
        fail(&r, "the job's world size is %d but the swarm has %d workers", ref->plan.world_size, n);
    } else {
        hgrid__layout__pack(a0->layout, layout_bytes);
        if (slots_init(&t, ref)) {
            fail(&r, "out of memory for the id table");
        } else {
            for (int i = 0; i < n; i++)
                conn_of_rank[i] = -1;
            for (int i = 0; i < n; i++) {
                const swarm_conn *c = &s->conns[i];
                if (!c->assignment)
                    continue;
                uint32_t rank = c->assignment->assignment->rank;
                if (rank < (uint32_t)n && conn_of_rank[rank] >= 0)
                    fail(&r, "rank %u given to both swarm-%d/%d and swarm-%d/%d", rank,
                         s->conns[conn_of_rank[rank]].host, s->conns[conn_of_rank[rank]].device,
                         c->host, c->device);
                else if (rank < (uint32_t)n)
                    conn_of_rank[rank] = i;
                check_worker(ref, c, layout_bytes, layout_len, a0->generation, &t, &r);
            }
            int missing = 0;
            for (int i = 0; i < n; i++)
                missing += conn_of_rank[i] < 0;
            if (missing)
                fail(&r, "%d ranks were given to no worker", missing);
            else
                check_tp_local(s, ref, conn_of_rank, &r);
            for (int i = 0; i < t.count; i++)
                if (t.owner[i] < 0)
                    fail(&r, "id slot %d was received by no worker", i);
            slots_distinct(&t, &r);
            *groups = t.count;
        }
        free(t.ids);
        free(t.owner);
    }
    free(ref);
    free(conn_of_rank);
    return r.failed;
}
