// Worker bookkeeping for one job: slots, hosts and the sticky rank map.
#include "daemon/core/roster.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/assign.h"

static uint64_t device_key(int host, int device)
{
    return (uint64_t)(uint32_t)host << 32 | (uint32_t)device;
}

typedef struct {
    const roster *r;
    const char *name;
} host_match;

static bool same_host(void *ctx, int32_t host)
{
    host_match *m = ctx;
    return strcmp(m->r->hosts[host], m->name) == 0;
}

static int find_host(const roster *r, const char *name)
{
    host_match m = {r, name};
    return table_find(&r->host_index, table_hash_bytes(name, (uint32_t)strlen(name)), same_host,
                      &m);
}

// Drops the hosts no slot refers to and renumbers the rest (order kept).
static int compact_hosts(roster *r)
{
    int *renumber = malloc(sizeof *renumber * (size_t)(r->num_hosts ? r->num_hosts : 1));
    if (!renumber)
        return -1;
    for (int h = 0; h < r->num_hosts; h++)
        renumber[h] = -1;
    for (int s = 0; s < r->world_size; s++)
        if (r->slots[s].host >= 0)
            renumber[r->slots[s].host] = 0;
    int kept = 0;
    table_clear(&r->host_index);
    for (int h = 0; h < r->num_hosts; h++) {
        if (renumber[h] < 0) {
            free(r->hosts[h]);
            continue;
        }
        renumber[h] = kept;
        r->hosts[kept] = r->hosts[h];
        // Fewer entries than before: the index does not grow, inserts cannot fail.
        table_insert(&r->host_index, table_hash_bytes(r->hosts[kept], (uint32_t)strlen(r->hosts[kept])),
                     kept);
        kept++;
    }
    r->num_hosts = kept;
    table_clear(&r->device_index);
    for (int s = 0; s < r->world_size; s++) {
        roster_slot *slot = &r->slots[s];
        if (slot->host < 0)
            continue;
        slot->host = renumber[slot->host];
        table_insert(&r->device_index, device_key(slot->host, slot->device), s);
    }
    free(renumber);
    return 0;
}

static int add_host(roster *r, const char *name)
{
    if (r->num_hosts >= ROSTER_MAX_HOSTS(r->world_size) && compact_hosts(r))
        return -1;
    if (r->num_hosts == r->hosts_cap) {
        int cap = r->hosts_cap ? 2 * r->hosts_cap : 16;
        char **hosts = realloc(r->hosts, sizeof *hosts * (size_t)cap);
        if (!hosts)
            return -1;
        r->hosts = hosts;
        r->hosts_cap = cap;
    }
    char *copy = strdup(name);
    if (!copy || table_insert(&r->host_index, table_hash_bytes(name, (uint32_t)strlen(name)),
                              r->num_hosts)) {
        free(copy);
        return -1;
    }
    r->hosts[r->num_hosts] = copy;
    return r->num_hosts++;
}

static bool is_live(const roster_slot *s)
{
    return s->state != SLOT_EMPTY && s->state != SLOT_LOST;
}

static void reset_slot(roster_slot *s)
{
    free(s->self_test);
    memset(s, 0, sizeof *s);
    s->host = -1;
    s->requested = -1;
}

int roster_init(roster *r, int world_size)
{
    memset(r, 0, sizeof *r);
    r->world_size = world_size;
    r->slots = calloc((size_t)world_size, sizeof *r->slots);
    r->requested_by = malloc(sizeof *r->requested_by * (size_t)world_size);
    r->free_slots = malloc(sizeof *r->free_slots * (size_t)world_size);
    if (!r->slots || !r->requested_by || !r->free_slots || table_init(&r->host_index, 16) ||
        table_init(&r->device_index, (uint32_t)world_size)) {
        roster_free(r);
        return -1;
    }
    for (int i = 0; i < world_size; i++) {
        reset_slot(&r->slots[i]);
        r->requested_by[i] = -1;
        r->free_slots[i] = world_size - 1 - i; // slot 0 on top
    }
    r->num_free = world_size;
    return 0;
}

void roster_free(roster *r)
{
    for (int h = 0; h < r->num_hosts; h++)
        free(r->hosts[h]);
    free(r->hosts);
    for (int i = 0; r->slots && i < r->world_size; i++)
        free(r->slots[i].self_test);
    free(r->slots);
    free(r->requested_by);
    free(r->free_slots);
    table_free(&r->host_index);
    table_free(&r->device_index);
    memset(r, 0, sizeof *r);
}

const char *roster_host_name(const roster *r, int host)
{
    return host >= 0 && host < r->num_hosts ? r->hosts[host] : "";
}

bool roster_full(const roster *r)
{
    return r->live == r->world_size;
}

static roster_status refuse(roster_status status, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return status;
}

// Puts a live worker into slot s; hostn may be -1 for a host not seen yet.
static roster_status occupy(roster *r, int s, int hostn, const char *host, int device,
                            int requested)
{
    if (hostn < 0 && (hostn = add_host(r, host)) < 0)
        return ROSTER_NOMEM;
    roster_slot *slot = &r->slots[s];
    if (slot->host >= 0)
        table_remove(&r->device_index, device_key(slot->host, slot->device), s);
    if (table_insert(&r->device_index, device_key(hostn, device), s))
        return ROSTER_NOMEM;
    slot->host = hostn;
    slot->device = device;
    slot->requested = r->assigned ? -1 : requested;
    slot->state = SLOT_JOINED;
    slot->mint_pending = false;
    slot->last_heartbeat = 0;
    r->live++;
    return ROSTER_OK;
}

static roster_status join_open(roster *r, int hostn, const char *host, int device, int requested,
                               int *slot, char *err, size_t errlen)
{
    int n = r->world_size;
    if (requested >= n)
        return refuse(ROSTER_RANK_REFUSED, err, errlen,
                      "%s/%d asked for rank %d, outside 0..%d", host, device, requested, n - 1);
    if (requested >= 0 && r->requested_by[requested] >= 0) {
        const roster_slot *o = &r->slots[r->requested_by[requested]];
        snprintf(err, errlen, "%s/%d asked for rank %d, already asked for by %s/%d", host, device,
                 requested, r->hosts[o->host], o->device);
        return ROSTER_RANK_REFUSED;
    }
    if (r->num_free == 0)
        return refuse(ROSTER_FULL, err, errlen, "%s/%d cannot join: all %d of %d workers joined",
                      host, device, n, n);
    int s = r->free_slots[r->num_free - 1];
    roster_status st = occupy(r, s, hostn, host, device, requested);
    if (st != ROSTER_OK)
        return st;
    r->num_free--;
    if (requested >= 0)
        r->requested_by[requested] = s;
    *slot = s;
    return ROSTER_OK;
}

// After assignment: an unknown (host, device) replaces a lost rank, the
// requested one or else the first.
static roster_status join_replacing(roster *r, int hostn, const char *host, int device,
                                    int requested, int *slot, char *err, size_t errlen)
{
    int n = r->world_size, s = requested;
    if (s >= n)
        return refuse(ROSTER_RANK_REFUSED, err, errlen,
                      "%s/%d asked for rank %d, outside 0..%d", host, device, s, n - 1);
    if (s >= 0 && is_live(&r->slots[s])) {
        snprintf(err, errlen, "%s/%d asked for rank %d, held by live worker %s/%d", host, device,
                 s, r->hosts[r->slots[s].host], r->slots[s].device);
        return ROSTER_RANK_REFUSED;
    }
    if (s < 0) { // every slot below lost_hint is live
        while (r->lost_hint < n && is_live(&r->slots[r->lost_hint]))
            r->lost_hint++;
        if (r->lost_hint < n)
            s = r->lost_hint++;
    }
    if (s < 0)
        return refuse(ROSTER_FULL, err, errlen, "%s/%d cannot join: all %d of %d ranks are live",
                      host, device, n, n);
    roster_status st = occupy(r, s, hostn, host, device, -1);
    if (st != ROSTER_OK) {
        if (s < r->lost_hint)
            r->lost_hint = s;
        return st;
    }
    r->map_version++;
    *slot = s;
    return ROSTER_OK;
}

roster_status roster_join(roster *r, const char *host, int device, int requested, int *slot,
                          char *err, size_t errlen)
{
    int hostn = find_host(r, host);
    int s = hostn < 0 ? -1 : table_find(&r->device_index, device_key(hostn, device), NULL, NULL);
    if (s >= 0 && is_live(&r->slots[s]))
        return refuse(ROSTER_DUPLICATE, err, errlen, "%s/%d is already joined", host,
                      device);
    if (!r->assigned)
        return join_open(r, hostn, host, device, requested, slot, err, errlen);
    if (s < 0)
        return join_replacing(r, hostn, host, device, requested, slot, err, errlen);
    if (requested >= 0 && requested != s)
        return refuse(ROSTER_RANK_REFUSED, err, errlen,
                      "%s/%d holds rank %d and cannot take rank %d", host, device, s, requested);
    r->slots[s].state = SLOT_JOINED;
    r->slots[s].mint_pending = false;
    r->slots[s].last_heartbeat = 0;
    r->live++;
    *slot = s;
    return ROSTER_OK;
}

void roster_leave(roster *r, int s)
{
    roster_slot *slot = &r->slots[s];
    if (slot->state == SLOT_EMPTY || slot->state == SLOT_LOST)
        return;
    r->live--;
    slot->conn = NULL;
    slot->mint_pending = false;
    if (r->assigned) {
        slot->state = SLOT_LOST;
        if (s < r->lost_hint)
            r->lost_hint = s;
        return;
    }
    table_remove(&r->device_index, device_key(slot->host, slot->device), s);
    if (slot->requested >= 0)
        r->requested_by[slot->requested] = -1;
    reset_slot(slot);
    r->free_slots[r->num_free++] = s;
}

int roster_assign(roster *r, const hg_plan *plan)
{
    int n = r->world_size;
    gridd_assign_worker *w = calloc((size_t)n, sizeof *w);
    int *rank = malloc(sizeof *rank * (size_t)n);
    roster_slot *by_rank = malloc(sizeof *by_rank * (size_t)n);
    int rc = -1;
    if (!w || !rank || !by_rank)
        goto out;
    for (int s = 0; s < n; s++)
        w[s] = (gridd_assign_worker){r->slots[s].host, r->slots[s].device, r->slots[s].requested};
    if (gridd_assign_ranks(plan, w, rank))
        goto out;
    // The index already has room for world_size entries: inserts cannot fail.
    table_clear(&r->device_index);
    for (int s = 0; s < n; s++) {
        by_rank[rank[s]] = r->slots[s];
        by_rank[rank[s]].requested = -1;
        table_insert(&r->device_index, device_key(r->slots[s].host, r->slots[s].device), rank[s]);
    }
    free(r->slots);
    r->slots = by_rank;
    by_rank = NULL;
    r->assigned = true;
    r->map_version++;
    rc = 0;
out:
    free(w);
    free(rank);
    free(by_rank);
    return rc;
}

int roster_restore(roster *r, int world_size, char *const *hosts, int num_hosts,
                   const int *rank_host, const int *rank_device)
{
    if (roster_init(r, world_size))
        return -1;
    r->assigned = true;
    r->num_free = 0;
    int rc = ROSTER_RESTORE_TWICE;
    for (int h = 0; h < num_hosts; h++) {
        if (find_host(r, hosts[h]) >= 0)
            goto fail;
        if (add_host(r, hosts[h]) < 0)
            goto nomem;
    }
    for (int i = 0; i < world_size; i++) {
        roster_slot *s = &r->slots[i];
        uint64_t key = device_key(rank_host[i], rank_device[i]);
        if (table_find(&r->device_index, key, NULL, NULL) >= 0)
            goto fail;
        s->host = rank_host[i];
        s->device = rank_device[i];
        s->state = SLOT_LOST;
        if (table_insert(&r->device_index, key, i))
            goto nomem;
    }
    return 0;
nomem:
    rc = -1;
fail:
    roster_free(r);
    return rc;
}
