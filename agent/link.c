// hgrid-agent's links to gridd: one per (gridd, job, host); the host's
// Hellos gathered into one HostHello, frames batched into one Relay per
// loop iteration, HostAssignments expanded into each worker's Assignment.
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "util/grow.h"

static uint8_t read_buffer[64 * 1024];

static void mark_dirty(uplink *l)
{
    if (l->dirty || l->closing)
        return;
    l->dirty = true;
    l->next_dirty = l->a->dirty;
    l->a->dirty = l;
}

static lworker *find_worker(uplink *l, uint32_t device)
{
    for (lworker *w = l->workers; w; w = w->next)
        if (w->device == device && w->joined)
            return w;
    return NULL;
}

static void on_link_closed(uv_handle_t *h)
{
    uplink *l = h->data;
    if (--l->open_handles > 0)
        return; // freed with the last of its socket and timer
    wire_reader_free(&l->reader);
    for (int i = 0; i < l->num_pending; i++)
        wire_free_envelope(l->pending[i]);
    free(l->pending);
    free(l->pending_from);
    wire_relay_free(&l->relay);
    free(l->gone);
    free(l);
}

// The link is gone: its workers are closed (libhgrid reconnects them,
// which opens a new link).
static void close_link(uplink *l, const char *why)
{
    if (l->closing)
        return;
    agent *a = l->a;
    for (uplink **p = &a->dirty; *p; p = &(*p)->next_dirty)
        if (*p == l) {
            *p = l->next_dirty;
            break;
        }
    for (uplink **p = &a->links; *p; p = &(*p)->next)
        if (*p == l) {
            *p = l->next;
            break;
        }
    l->closing = true;
    if (why)
        agent_log("link to gridd at %s for job %s closed: %s", l->coordinator, l->job, why);
    while (l->workers) {
        lworker *w = l->workers;
        l->workers = w->next;
        w->link = NULL;
        local_drop(w);
    }
    l->open_handles = 2;
    uv_close((uv_handle_t *)&l->hello_timer, on_link_closed);
    uv_close((uv_handle_t *)&l->tcp, on_link_closed);
}

void links_close_all(agent *a)
{
    while (a->links)
        close_link(a->links, NULL);
}

// ---- from gridd

static void host_assignment(uplink *l, const Hgrid__HostAssignment *ha)
{
    for (size_t i = 0; i < ha->n_devices && i < ha->n_assignments; i++) {
        lworker *w = find_worker(l, ha->devices[i]);
        if (!w)
            continue; // gone meanwhile: gridd hears of it
        uint8_t *frame;
        char err[256];
        size_t len = wire_host_assignment_frame(ha, i, l->job, &frame, err, sizeof err);
        if (!len) {
            agent_log("bad HostAssignment from gridd: %s", err);
            continue;
        }
        if (outq_write(&w->out, frame, len))
            local_drop(w);
        free(frame);
    }
}

static void relay_in(uplink *l, const Hgrid__Relay *r)
{
    for (size_t i = 0; i < r->n_devices; i++) {
        lworker *w = find_worker(l, r->devices[i]);
        const ProtobufCBinaryData *f = wire_relay_frame(r, i);
        if (!f)
            return; // neither one frame nor one per device
        if (w)
            local_deliver(w, f->data, f->len);
    }
}

static int on_frame(void *ctx, const uint8_t *body, uint32_t len)
{
    uplink *l = ctx;
    Hgrid__Envelope *env = wire_unpack(body, len);
    char why[256];
    const char *bad = env ? wire_check_version(env, why, sizeof why) : "undecodable frame";
    if (bad) {
        close_link(l, bad);
    } else if (env->msg_case == HGRID__ENVELOPE__MSG_HOST_ASSIGNMENT) {
        host_assignment(l, env->host_assignment);
    } else if (env->msg_case == HGRID__ENVELOPE__MSG_RELAY) {
        relay_in(l, env->relay);
    } else if (env->msg_case == HGRID__ENVELOPE__MSG_HOST_GONE) {
        for (size_t i = 0; i < env->host_gone->n_devices; i++) {
            lworker *w = find_worker(l, env->host_gone->devices[i]);
            if (w)
                local_drop(w);
        }
    } else if (env->msg_case == HGRID__ENVELOPE__MSG_ERROR) {
        agent_log("gridd at %s refused the link for job %s: %s", l->coordinator, l->job,
                  env->error->message);
        while (l->workers) { // each worker hears why
            lworker *w = l->workers;
            l->workers = w->next;
            w->link = NULL;
            local_refuse(w, env->error->code, "%s", env->error->message);
        }
        close_link(l, NULL);
    } else {
        agent_log("unexpected message %d from gridd on the link for job %s", (int)env->msg_case,
                  l->job);
    }
    wire_free_envelope(env);
    return l->closing;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init((char *)read_buffer, sizeof read_buffer);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    uplink *l = stream->data;
    if (nread == 0 || l->closing)
        return;
    if (nread < 0) {
        close_link(l, nread == UV_EOF ? "gridd closed it" : uv_strerror((int)nread));
        return;
    }
    char err[128];
    if (wire_reader_feed(&l->reader, (const uint8_t *)buf->base, (size_t)nread, on_frame, l, err,
                         sizeof err) < 0)
        close_link(l, err);
}

static void on_connect(uv_connect_t *req, int status)
{
    uplink *l = req->data;
    if (l->closing)
        return;
    if (status < 0) { // its workers are closed and reconnect, as to a gridd that is away
        char why[320];
        snprintf(why, sizeof why, "cannot connect to gridd at %s: %s", l->coordinator,
                 uv_strerror(status));
        close_link(l, why);
        return;
    }
    l->connected = true;
    if (uv_read_start((uv_stream_t *)&l->tcp, on_alloc, on_read)) {
        close_link(l, "cannot read from gridd");
        return;
    }
    mark_dirty(l);
}

uplink *link_for(agent *a, const Hgrid__Hello *h, char *err, size_t errlen)
{
    const char *host = a->opt.host ? a->opt.host : h->host;
    for (uplink *l = a->links; l; l = l->next) {
        if (strcmp(l->coordinator, h->coordinator) || strcmp(l->job, h->job) ||
            strcmp(l->host, host))
            continue;
        if (l->token_len != h->token.len || memcmp(l->token, h->token.data, h->token.len)) {
            snprintf(err, errlen, "wrong token for job %s; use the token hgridctl submit printed",
                     h->job);
            return NULL;
        }
        return l;
    }
    if (strlen(h->coordinator) >= sizeof ((uplink *)0)->coordinator ||
        strlen(h->job) >= sizeof ((uplink *)0)->job || strlen(host) >= sizeof ((uplink *)0)->host ||
        h->token.len > sizeof ((uplink *)0)->token) {
        snprintf(err, errlen, "coordinator, job, host or token too long");
        return NULL;
    }
    char name[256];
    const char *port;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (wire_split_host_port(h->coordinator, name, sizeof name, &port)) {
        snprintf(err, errlen, "coordinator '%s' is not HOST:PORT", h->coordinator);
        return NULL;
    }
    int gai = getaddrinfo(name, port, &hints, &res);
    if (gai) {
        snprintf(err, errlen, "cannot resolve gridd's address '%s': %s", h->coordinator,
                 gai_strerror(gai));
        return NULL;
    }
    uplink *l = calloc(1, sizeof *l);
    if (!l) {
        freeaddrinfo(res);
        snprintf(err, errlen, "out of memory for a link to gridd");
        return NULL;
    }
    l->a = a;
    snprintf(l->coordinator, sizeof l->coordinator, "%s", h->coordinator);
    snprintf(l->job, sizeof l->job, "%s", h->job);
    snprintf(l->host, sizeof l->host, "%s", host);
    memcpy(l->token, h->token.data, h->token.len);
    l->token_len = h->token.len;
    wire_reader_init(&l->reader, WIRE_DEFAULT_MAX_FRAME);
    uv_tcp_init(a->loop, &l->tcp);
    uv_timer_init(a->loop, &l->hello_timer);
    l->tcp.data = l->hello_timer.data = l->connect_req.data = l;
    l->out.stream = (uv_stream_t *)&l->tcp;
    uv_tcp_nodelay(&l->tcp, 1);
    l->next = a->links;
    a->links = l;
    int rc = uv_tcp_connect(&l->connect_req, &l->tcp, res->ai_addr, on_connect);
    freeaddrinfo(res);
    if (rc) {
        snprintf(err, errlen, "cannot connect to gridd at %s: %s", h->coordinator, uv_strerror(rc));
        close_link(l, NULL);
        return NULL;
    }
    agent_log("link to gridd at %s for job %s (host %s) opening", l->coordinator, l->job, l->host);
    return l;
}

// ---- to gridd

static void on_hello_timer(uv_timer_t *t)
{
    uplink *l = t->data;
    l->hello_due = true;
    mark_dirty(l);
}

static int links_on_host(const uplink *l)
{
    int n = 0;
    for (const lworker *w = l->workers; w; w = w->next)
        n++;
    return n;
}

int link_join(uplink *l, lworker *w, Hgrid__Envelope *env)
{
    if (grow_array(&l->pending, &(int){l->cap_pending}, l->num_pending + 1, sizeof *l->pending) ||
        grow_array(&l->pending_from, &l->cap_pending, l->num_pending + 1, sizeof *l->pending_from)) {
        wire_free_envelope(env);
        return -1;
    }
    l->pending[l->num_pending] = env;
    l->pending_from[l->num_pending++] = w;
    w->link = l;
    w->next = l->workers;
    l->workers = w;
    bool joined_before = false; // a replacement or a late worker goes at once
    for (lworker *o = l->workers; o; o = o->next)
        joined_before |= o->joined;
    if (joined_before || (l->a->opt.gpus && links_on_host(l) >= l->a->opt.gpus)) {
        uv_timer_stop(&l->hello_timer);
        l->hello_due = true;
        mark_dirty(l);
    } else if (!uv_is_active((uv_handle_t *)&l->hello_timer)) {
        uv_timer_start(&l->hello_timer, on_hello_timer, (uint64_t)l->a->opt.hello_wait_ms, 0);
    }
    return 0;
}

int link_relay(uplink *l, lworker *w, const uint8_t *body, size_t len)
{
    if (!w->joined)
        return 0; // gridd has not heard of it yet; a worker waits for its Assignment
    uint8_t *at = wire_relay_add(&l->relay, w->device, len);
    if (!at)
        return -1;
    memcpy(at, body, len);
    mark_dirty(l);
    return 0;
}

void link_worker_closed(uplink *l, lworker *w)
{
    for (lworker **p = &l->workers; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            break;
        }
    w->link = NULL;
    for (int i = 0; i < l->num_pending; i++)
        if (l->pending_from[i] == w) { // gridd never heard of it
            wire_free_envelope(l->pending[i]);
            l->num_pending--;
            l->pending[i] = l->pending[l->num_pending];
            l->pending_from[i] = l->pending_from[l->num_pending];
            return;
        }
    if (w->left || w->dropped || l->closing)
        return;
    if (l->a->opt.verbose)
        agent_log("worker on device %u of job %s exited; reporting it", w->device, l->job);
    if (grow_array(&l->gone, &l->cap_gone, l->num_gone + 1, sizeof *l->gone))
        return;
    l->gone[l->num_gone++] = w->device;
    mark_dirty(l); // sent at the end of this loop iteration: at once
}

static int send_hello(uplink *l)
{
    int n = l->num_pending;
    Hgrid__Hello **hellos = malloc(sizeof *hellos * (size_t)n);
    if (!hellos)
        return -1;
    for (int i = 0; i < n; i++)
        hellos[i] = l->pending[i]->hello;
    Hgrid__HostHello hh = HGRID__HOST_HELLO__INIT;
    hh.job = l->job;
    hh.token.data = l->token;
    hh.token.len = l->token_len;
    hh.host = l->host;
    hh.n_workers = (size_t)n;
    hh.workers = hellos;
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_HOST_HELLO;
    env.host_hello = &hh;
    int rc = outq_send(&l->out, &env);
    free(hellos);
    for (int i = 0; i < n; i++) {
        l->pending_from[i]->joined = true;
        wire_free_envelope(l->pending[i]);
    }
    l->num_pending = 0;
    if (l->a->opt.verbose)
        agent_log("HostHello sent for job %s: %d workers", l->job, n);
    return rc;
}

static int flush_link(uplink *l)
{
    if (l->hello_due && l->num_pending && send_hello(l))
        return -1;
    l->hello_due = false;
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    if (l->relay.num) {
        Hgrid__Relay relay;
        ProtobufCBinaryData *frames = wire_relay_message(&l->relay, &relay);
        if (!frames)
            return -1;
        env.msg_case = HGRID__ENVELOPE__MSG_RELAY;
        env.relay = &relay;
        int rc = outq_send(&l->out, &env);
        free(frames);
        wire_relay_clear(&l->relay);
        if (rc)
            return -1;
    }
    if (l->num_gone) {
        Hgrid__HostGone gone = HGRID__HOST_GONE__INIT;
        gone.n_devices = (size_t)l->num_gone;
        gone.devices = l->gone;
        gone.reason = "its socket to the agent closed (the worker exited)";
        env.msg_case = HGRID__ENVELOPE__MSG_HOST_GONE;
        env.host_gone = &gone;
        l->num_gone = 0;
        if (outq_send(&l->out, &env))
            return -1;
    }
    return 0;
}

void links_flush(agent *a)
{
    while (a->dirty) {
        uplink *l = a->dirty;
        a->dirty = l->next_dirty;
        l->dirty = false;
        if (l->connected && !l->closing && flush_link(l))
            close_link(l, "cannot write to gridd");
    }
}
