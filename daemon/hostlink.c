// Host links: an agent's connection carrying one host's workers of a job;
// their frames relayed both ways and their Assignments sent per host.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/hostlink.h"

#include "daemon/assignment.h"
#include "daemon/job.h"
#include "daemon/worker_msgs.h"
#include "util/grow.h"

struct hostlink {
    conn *c; // the agent's connection
    job *job;
    char host[ROSTER_MAX_HOST + 1];
    conn **workers; // its live workers (CONN_REMOTE)
    int num_workers, cap_workers;
    wire_relay_batch relay; // the next Relay
    // The next HostGone: workers gridd dropped.
    uint32_t *gone;
    int num_gone, cap_gone;
    // The HostAssignment being gathered: ranks and their devices.
    int *assign_ranks;
    uint32_t *assign_devices;
    int num_assign, cap_assign;
    int expected; // its workers in the job, counted at a generation's first (-1: count again)
    bool dirty, closing;
    hostlink *next_dirty;
    hostlink *prev, *next; // all open links (hostlink_forget_job)
};

// Links with something to send (or closed, to free) before the loop next
// waits (a prepare handle: timers' work too goes out at once), and remote
// conns to free then.
static hostlink *dirty_links, *open_links;
static conn *dropped;
static uv_prepare_t flush_prepare;
static bool flush_prepare_on;

static void mark_dirty(hostlink *l)
{
    if (l->dirty)
        return;
    l->dirty = true;
    l->next_dirty = dirty_links;
    dirty_links = l;
}

static void link_free(hostlink *l)
{
    free(l->workers);
    wire_relay_free(&l->relay);
    free(l->gone);
    free(l->assign_ranks);
    free(l->assign_devices);
    free(l);
}

static conn *find_worker(const hostlink *l, uint32_t device)
{
    for (int i = 0; i < l->num_workers; i++)
        if (l->workers[i]->device == device)
            return l->workers[i];
    return NULL;
}

// Takes w off its link's list; true if it was there.
static bool unlist(hostlink *l, const conn *w)
{
    for (int i = 0; i < l->num_workers; i++)
        if (l->workers[i] == w) {
            l->workers[i] = l->workers[--l->num_workers];
            return true;
        }
    return false;
}

// ---- sending

// The pending Relay, then the pending HostGone. Returns -1 if the link
// closed.
static int link_flush(hostlink *l)
{
    if (l->closing)
        return -1;
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    if (l->relay.num) {
        Hgrid__Relay relay;
        ProtobufCBinaryData *frames = wire_relay_message(&l->relay, &relay);
        if (!frames) {
            conn_close(l->c, "out of memory relaying frames");
            return -1;
        }
        env.msg_case = HGRID__ENVELOPE__MSG_RELAY;
        env.relay = &relay;
        int rc = conn_send(l->c, &env);
        free(frames);
        wire_relay_free(&l->relay); // a link is idle most of the time: it holds no buffer meanwhile
        if (rc)
            return -1;
    }
    if (l->num_gone) {
        Hgrid__HostGone gone = HGRID__HOST_GONE__INIT;
        gone.n_devices = (size_t)l->num_gone;
        gone.devices = l->gone;
        gone.reason = "dropped by gridd";
        env.msg_case = HGRID__ENVELOPE__MSG_HOST_GONE;
        env.host_gone = &gone;
        l->num_gone = 0;
        if (conn_send(l->c, &env))
            return -1;
    }
    return 0;
}

static void on_flush(uv_prepare_t *h)
{
    (void)h;
    while (dirty_links) {
        hostlink *l = dirty_links;
        dirty_links = l->next_dirty;
        l->dirty = false;
        if (l->closing)
            link_free(l);
        else if (link_flush(l) == 0 && !l->job && l->num_workers == 0)
            conn_finish(l->c); // its job is gone and so are its workers: close it
    }
    while (dropped) {
        conn *c = dropped;
        dropped = c->next;
        wire_reader_free(&c->reader);
        free(c);
    }
}

int hostlink_send(conn *remote, const Hgrid__Envelope *env)
{
    hostlink *l = remote->link;
    if (remote->closing || remote->draining || !l || l->closing)
        return -1;
    if (env->msg_case == HGRID__ENVELOPE__MSG_ABORT)
        l->num_assign = 0; // the generation they were for is over
    size_t len = hgrid__envelope__get_packed_size(env);
    uint8_t *at = wire_relay_add(&l->relay, remote->device, len);
    if (!at) {
        conn_close(l->c, "out of memory relaying frames");
        return -1;
    }
    hgrid__envelope__pack(env, at);
    metrics_frame_out(&remote->srv->metrics, env, 0);
    mark_dirty(l);
    return 0;
}

// For each id of j, its position in the HostAssignment being built (-1:
// not in it); reset after each.
static int *id_slot;
static int id_slot_cap;
// What a HostAssignment is built in, kept from host to host: one
// Assignment at a time, the host's Assignments packed back to back, its
// ids, the frame, and the packed Layout of the job last sent (the same for
// every host of a job; forgotten with the job).
static struct {
    assignment_buf one;
    uint8_t *packed;
    size_t packed_cap;
    size_t *lens;
    ProtobufCBinaryData *ids;
    int lens_cap, ids_cap;
    uint8_t *frame;
    size_t frame_cap;
    const job *layout_job;
    uint8_t *layout;
    size_t layout_len;
} host_buf;

// Grows *buf to hold need bytes; -1 out of memory.
static int reserve(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 4096;
    while (n < need)
        n *= 2;
    uint8_t *p = realloc(*buf, n);
    if (!p)
        return -1;
    *buf = p;
    *cap = n;
    return 0;
}

// j's Layout packed, in host_buf; -1 out of memory.
static int pack_layout(const job *j)
{
    if (host_buf.layout_job == j)
        return 0;
    size_t len = hgrid__layout__get_packed_size(&j->wire.layout);
    uint8_t *p = realloc(host_buf.layout, len ? len : 1);
    if (!p)
        return -1;
    host_buf.layout = p;
    host_buf.layout_len = hgrid__layout__pack(&j->wire.layout, p);
    host_buf.layout_job = j;
    return 0;
}

// Replaces each group's id by an id_ref into ids, adding the ids not
// there yet.
static void refer_ids(const job *j, Hgrid__Group **groups, size_t n, ProtobufCBinaryData *ids,
                      int *num_ids)
{
    for (size_t g = 0; g < n; g++) {
        Hgrid__Group *grp = groups[g];
        if (!grp->nccl_id.len)
            continue;
        int id = (int)((grp->nccl_id.data - j->ids) / MINT_ID_BYTES);
        if (id_slot[id] < 0) {
            id_slot[id] = *num_ids;
            ids[(*num_ids)++] = grp->nccl_id;
        }
        grp->id_ref = (uint32_t)id_slot[id] + 1;
        grp->nccl_id = (ProtobufCBinaryData){0, NULL};
    }
}

// Packs rank's Assignment after the host's others in host_buf.packed (at
// *used), its ids as id_refs; -1 out of memory (or packed other than sized).
static int pack_one(const job *j, int rank, size_t *used, size_t *len, int *num_ids)
{
    assignment_buf *b = &host_buf.one;
    if (assignment_build(j, rank, b))
        return -1;
    b->a.layout = NULL; // once per host, in the HostAssignment
    b->a.job = (char *)protobuf_c_empty_string;
    refer_ids(j, b->a.groups, b->a.n_groups, host_buf.ids, num_ids);
    if (b->a.n_colocated_modules)
        refer_ids(j, b->a.colocated_modules[0]->groups, b->a.colocated_modules[0]->n_groups,
                  host_buf.ids, num_ids);
    *len = wire_assignment_size(&b->a);
    int rc = reserve(&host_buf.packed, &host_buf.packed_cap, *used + *len);
    if (rc == 0 && wire_assignment_pack(&b->a, host_buf.packed + *used) != *len)
        rc = -1;
    *used += *len;
    assignment_buf_free(b);
    return rc;
}

// The host's Assignments in one HostAssignment frame, each shared id once.
static int send_host_assignment(hostlink *l)
{
    if (link_flush(l)) // what went before (an Abort, MintRequests) stays before
        return -1;
    job *j = l->job;
    int n = l->num_assign;
    l->num_assign = 0;
    int old_cap = id_slot_cap;
    bool ok = grow_array(&id_slot, &id_slot_cap, j->mint.num_ids + 1, sizeof *id_slot) == 0 &&
              grow_array(&host_buf.lens, &host_buf.lens_cap, n, sizeof *host_buf.lens) == 0 &&
              grow_array(&host_buf.ids, &host_buf.ids_cap, n * MINT_MAX_PER_RANK,
                         sizeof *host_buf.ids) == 0 &&
              pack_layout(j) == 0;
    for (int i = old_cap; i < id_slot_cap; i++)
        id_slot[i] = -1;
    size_t used = 0;
    int num_ids = 0;
    for (int i = 0; ok && i < n; i++)
        ok = pack_one(j, l->assign_ranks[i], &used, &host_buf.lens[i], &num_ids) == 0;
    for (int i = 0; i < num_ids; i++)
        id_slot[(host_buf.ids[i].data - j->ids) / MINT_ID_BYTES] = -1;
    wire_host_parts parts = {
        .generation = j->rec.generation, .layout = host_buf.layout,
        .layout_len = host_buf.layout_len, .devices = l->assign_devices,
        .assignments = host_buf.packed, .assignment_lens = host_buf.lens, .n = (size_t)n,
        .ids = host_buf.ids, .n_ids = (size_t)num_ids};
    size_t len = 0;
    if (ok && reserve(&host_buf.frame, &host_buf.frame_cap, wire_host_frame_size(&parts)) == 0)
        len = wire_host_frame_pack(&parts, host_buf.frame);
    int rc = -1;
    if (len)
        rc = conn_send_frame(l->c, host_buf.frame, len, HGRID__ENVELOPE__MSG_HOST_ASSIGNMENT);
    else
        conn_close(l->c, "out of memory for a HostAssignment");
    return rc;
}

int hostlink_assign(conn *remote, int rank)
{
    hostlink *l = remote->link;
    if (remote->closing || remote->draining || !l || l->closing)
        return -1;
    int n = l->num_assign, cap = l->cap_assign;
    if (grow_array(&l->assign_ranks, &cap, n + 1, sizeof *l->assign_ranks) ||
        grow_array(&l->assign_devices, &(int){l->cap_assign}, n + 1, sizeof *l->assign_devices)) {
        conn_close(l->c, "out of memory for a HostAssignment");
        return -1;
    }
    l->cap_assign = cap;
    l->assign_ranks[n] = rank;
    l->assign_devices[n] = remote->device;
    l->num_assign++;
    // Sent once each of the host's workers in the job has one: counted at
    // the generation's first, not at each (a worker's conn is a cache miss
    // away at 16K workers); a worker joining or dropped counts them again.
    if (n == 0 || l->expected < 0) {
        l->expected = 0;
        for (int i = 0; i < l->num_workers; i++)
            l->expected += l->workers[i]->job == l->job;
    }
    if (l->num_assign < l->expected)
        return 0;
    return send_host_assignment(l);
}

void hostlink_drop(conn *remote)
{
    hostlink *l = remote->link;
    remote->link = NULL;
    remote->next = dropped;
    dropped = remote;
    if (l)
        l->expected = -1;
    if (!l || !unlist(l, remote) || l->closing)
        return; // the agent said it is gone, or the link is
    for (int i = 0; i < l->num_assign; i++)
        if (l->assign_devices[i] == remote->device) {
            l->num_assign--;
            l->assign_ranks[i] = l->assign_ranks[l->num_assign];
            l->assign_devices[i] = l->assign_devices[l->num_assign];
            break;
        }
    if (grow_array(&l->gone, &l->cap_gone, l->num_gone + 1, sizeof *l->gone)) {
        conn_close(l->c, "out of memory");
        return;
    }
    l->gone[l->num_gone++] = remote->device;
    mark_dirty(l);
}

void hostlink_peer(const conn *remote, char *buf, size_t len)
{
    snprintf(buf, len, "%.40s/%u (agent)", remote->link ? remote->link->host : "?",
             remote->device);
}

void hostlink_forget_job(const job *j)
{
    if (host_buf.layout_job == j)
        host_buf.layout_job = NULL;
    for (hostlink *l = open_links; l; l = l->next)
        if (l->job == j) {
            l->job = NULL; // closed once what it holds is sent (on_flush)
            mark_dirty(l);
        }
}

void hostlink_closed(conn *c, const char *reason)
{
    hostlink *l = c->link;
    if (!l || l->closing)
        return;
    l->closing = true;
    c->link = NULL;
    if (l->prev)
        l->prev->next = l->next;
    else
        open_links = l->next;
    if (l->next)
        l->next->prev = l->prev;
    int workers = l->num_workers;
    char cause[320];
    snprintf(cause, sizeof cause, "its agent's link closed: %.200s", reason ? reason : "gridd stopping");
    while (l->num_workers > 0)
        conn_close(l->workers[--l->num_workers], cause);
    gridd_log_at(workers ? GRIDD_NOTICE : GRIDD_INFO, l->job, -1,
                 "host link closed host=%s workers=%d reason=\"%s\"",
                 l->host, workers, reason ? reason : "gridd stopping");
    mark_dirty(l); // freed at the end of this loop iteration
}

// ---- receiving

static void host_hello(conn *c, const Hgrid__HostHello *hh)
{
    if (c->job) {
        conn_fail(c, HGRID__ERROR_CODE__ERROR_AGENT,
                  "HostHello on a worker's connection; an agent opens a link of its own");
        return;
    }
    // As for a Hello: an unknown job and a wrong token get the same answer.
    static job_record nobody = {.token_len = JOB_TOKEN_MAX};
    job *j = job_find(c->srv, hh->job);
    if (!state_token_matches(j ? &j->rec : &nobody, hh->token.data, hh->token.len) || !j) {
        conn_fail(c, HGRID__ERROR_CODE__ERROR_BAD_TOKEN,
                  "unknown job '%.64s' or wrong token; use the job name and token hgridctl "
                  "submit printed", hh->job);
        return;
    }
    hostlink *l = c->link;
    if (l && !l->job && !strcmp(l->host, hh->host))
        l->job = j; // its job was cancelled and submitted again
    if (l && (l->job != j || strcmp(l->host, hh->host))) {
        conn_fail(c, HGRID__ERROR_CODE__ERROR_AGENT,
                  "HostHello for %.64s on %.64s's link of job %s; one link per host and job",
                  hh->host, l->host, l->job ? l->job->rec.name : "(gone)");
        return;
    }
    if (!l) {
        if (!flush_prepare_on) {
            uv_prepare_init(c->srv->loop, &flush_prepare);
            flush_prepare.data = c->srv; // a server handle for the shutdown walk
            uv_prepare_start(&flush_prepare, on_flush);
            flush_prepare_on = true;
        }
        l = calloc(1, sizeof *l);
        if (!l) {
            conn_fail(c, HGRID__ERROR_CODE__ERROR_LIMIT, "out of memory for a host link");
            return;
        }
        l->c = c;
        l->job = j;
        snprintf(l->host, sizeof l->host, "%s", hh->host);
        c->link = l;
        l->next = open_links;
        if (open_links)
            open_links->prev = l;
        open_links = l;
        conn_list_remove(c); // the Hello deadline
        c->reader.max_frame = c->srv->opt.max_frame;
        gridd_log_at(GRIDD_INFO, j, -1, "host link opened host=%.64s workers=%zu", l->host,
                     hh->n_workers);
    }
    for (size_t i = 0; i < hh->n_workers; i++) {
        const Hgrid__Hello *w = hh->workers[i];
        if (find_worker(l, w->local_device)) {
            conn_fail(c, HGRID__ERROR_CODE__ERROR_AGENT,
                      "device %u of host %.64s joined twice on its link", w->local_device,
                      l->host);
            return;
        }
        conn *r = conn_new(c->srv, CONN_REMOTE);
        if (!r || grow_array(&l->workers, &l->cap_workers, l->num_workers + 1, sizeof *l->workers)) {
            free(r);
            conn_fail(c, HGRID__ERROR_CODE__ERROR_LIMIT, "out of memory for a host's workers");
            return;
        }
        r->link = l;
        r->device = w->local_device;
        l->workers[l->num_workers++] = r;
        l->expected = -1;
        Hgrid__Hello h = *w;
        h.job = hh->job;
        h.token = hh->token;
        h.host = hh->host;
        Hgrid__Envelope env;
        wire_envelope_init(&env);
        env.msg_case = HGRID__ENVELOPE__MSG_HELLO;
        env.hello = &h;
        worker_handle(r, &env);
        if (l->closing)
            return;
    }
}

static void relay_in(conn *c, const Hgrid__Relay *relay)
{
    hostlink *l = c->link;
    if (relay->n_devices && !wire_relay_frame(relay, 0)) {
        conn_fail(c, HGRID__ERROR_CODE__ERROR_AGENT,
                  "Relay with %zu frames for %zu devices; send one frame, or one per device",
                  relay->n_frames, relay->n_devices);
        return;
    }
    for (size_t i = 0; i < relay->n_devices; i++) {
        conn *w = find_worker(l, relay->devices[i]);
        if (!w)
            continue; // a worker gridd dropped: its last frames are moot
        const ProtobufCBinaryData *f = wire_relay_frame(relay, i);
        Hgrid__Envelope *env = wire_unpack(f->data, f->len);
        char why[256];
        if (!env) {
            conn_fail(w, HGRID__ERROR_CODE__ERROR_BAD_FRAME,
                      "undecodable %zu-byte frame; send one hgrid.Envelope per frame", f->len);
        } else if (wire_check_version(env, why, sizeof why)) {
            conn_fail(w, env->version != HGRID__VERSION__VERSION_CURRENT
                             ? HGRID__ERROR_CODE__ERROR_BAD_VERSION
                             : HGRID__ERROR_CODE__ERROR_BAD_REQUEST,
                      "%s", why);
        } else {
            metrics_frame_in(&c->srv->metrics, (int)env->msg_case);
            if (w->list == LIST_WATCH)
                conn_watch(w);
            worker_handle(w, env);
        }
        wire_free_envelope(env);
        if (l->closing)
            return;
    }
}

static void gone_in(conn *c, const Hgrid__HostGone *gone)
{
    hostlink *l = c->link;
    char cause[320];
    snprintf(cause, sizeof cause, "its agent saw it go: %.200s", gone->reason);
    for (size_t i = 0; i < gone->n_devices && !l->closing; i++) {
        conn *w = find_worker(l, gone->devices[i]);
        if (w && unlist(l, w)) { // the agent knows: no HostGone back
            l->expected = -1;
            conn_close(w, cause);
        }
    }
}

bool hostlink_handle(conn *c, const Hgrid__Envelope *env)
{
    if (c->kind == CONN_REMOTE)
        return false;
    switch (env->msg_case) {
    case HGRID__ENVELOPE__MSG_HOST_HELLO:
        host_hello(c, env->host_hello);
        return true;
    case HGRID__ENVELOPE__MSG_RELAY:
    case HGRID__ENVELOPE__MSG_HOST_GONE:
        if (!c->link)
            conn_fail(c, HGRID__ERROR_CODE__ERROR_AGENT,
                      "message %d before a HostHello; an agent sends HostHello first",
                      (int)env->msg_case);
        else if (env->msg_case == HGRID__ENVELOPE__MSG_RELAY)
            relay_in(c, env->relay);
        else
            gone_in(c, env->host_gone);
        return true;
    default:
        if (!c->link)
            return false;
        conn_fail(c, HGRID__ERROR_CODE__ERROR_AGENT,
                  "message %d on a host link; an agent sends its workers' frames in a Relay",
                  (int)env->msg_case);
        return true;
    }
}

void hostlink_shutdown(void)
{
    on_flush(NULL);
    free(id_slot);
    id_slot = NULL;
    id_slot_cap = 0;
    free(host_buf.packed);
    free(host_buf.lens);
    free(host_buf.ids);
    free(host_buf.frame);
    free(host_buf.layout);
    memset(&host_buf, 0, sizeof host_buf);
}
