// hgrid-swarm's host links: each simulated host joins its workers in one
// HostHello, answers its leaders' MintRequests in one Relay and gets its
// workers' Assignments in one HostAssignment, as an hgrid-agent does; and
// the replacement of one rank (--replace-rank).
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/swarm/net.h"


typedef struct {
    net *n;
    swarm_host *h;
} host_ctx;

// The replacement's Abort round: who got the Abort, and when the last did.
static struct {
    bool waiting;
    int lost_rank;
    uint8_t *aborted; // per worker
    int num_aborted, wrong_lost;
    double last_abort;
} abort_round;

// Sends a whole frame (a host's link is one socket for many workers: its
// frames can exceed what a socket takes at once).
static int send_frame(swarm_host *h, const uint8_t *frame, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t w = send(h->fd, frame + done, len - done, MSG_NOSIGNAL);
        if (w > 0) {
            done += (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            struct pollfd p = {.fd = h->fd, .events = POLLOUT};
            poll(&p, 1, 100);
        } else {
            return -1;
        }
    }
    return 0;
}

static void fail_host(swarm *s, swarm_host *h, const char *why)
{
    for (int i = 0; i < h->count; i++)
        if (s->conns[h->first + i].state != CONN_RELEASED)
            conn_fail(s, &s->conns[h->first + i], "%s", why);
}

static int send_env(swarm *s, swarm_host *h, const Hgrid__Envelope *env)
{
    uint8_t *frame;
    size_t len = wire_pack(env, &frame);
    int rc = len ? send_frame(h, frame, len) : -1;
    free(frame);
    if (rc) {
        fail_host(s, h, len ? "cannot send to gridd" : "out of memory packing a message");
        return -1;
    }
    __atomic_add_fetch(&s->bytes_sent, len, __ATOMIC_RELAXED); // connect threads too
    __atomic_add_fetch(&s->frames_sent, 1, __ATOMIC_RELAXED);
    return 0;
}

// HostHello for count workers of h from device first_device on.
static int host_hello(net *n, swarm_host *h, int first_device, int count)
{
    const swarm_options *o = &n->s->opt;
    char host[32];
    snprintf(host, sizeof host, "swarm-%d", (int)(h - n->s->hosts));
    Hgrid__Hello *hellos = calloc((size_t)count, sizeof *hellos);
    Hgrid__Hello **ptrs = calloc((size_t)count, sizeof *ptrs);
    if (!hellos || !ptrs) {
        free(hellos);
        free(ptrs);
        fail_host(n->s, h, "out of memory for a HostHello");
        return -1;
    }
    for (int i = 0; i < count; i++) {
        hgrid__hello__init(&hellos[i]);
        hellos[i].local_device = (uint32_t)(first_device + i);
        hellos[i].dry_run = true;
        ptrs[i] = &hellos[i];
    }
    Hgrid__HostHello hh = HGRID__HOST_HELLO__INIT;
    hh.job = (char *)o->job;
    hh.token.data = (uint8_t *)o->token;
    hh.token.len = strlen(o->token);
    hh.host = host;
    hh.n_workers = (size_t)count;
    hh.workers = ptrs;
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_HOST_HELLO;
    env.host_hello = &hh;
    int rc = send_env(n->s, h, &env);
    free(hellos);
    free(ptrs);
    return rc;
}

// Sends the HostHello once the socket is connected; false while connecting.
static bool try_hello(net *n, swarm_host *h)
{
    struct pollfd p = {.fd = h->fd, .events = POLLOUT};
    if (poll(&p, 1, 0) != 1 || !(p.revents & POLLOUT))
        return false;
    if (host_hello(n, h, 0, h->count) == 0) {
        h->hello_sent = true;
        for (int i = 0; i < h->count; i++)
            n->s->conns[h->first + i].state = CONN_JOINED;
        n->last_hello = now_s();
    }
    return true;
}

void hosts_connect(net *n, int hi)
{
    swarm *s = n->s;
    swarm_host *h = &s->hosts[hi];
    double t = now_s();
    for (int i = 0; i < h->count; i++)
        s->conns[h->first + i].t_connect = t;
    h->fd = socket(n->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (h->fd < 0 || spread_source(n, h->fd, hi) < 0 ||
        (connect(h->fd, (struct sockaddr *)&n->addr, n->addr_len) < 0 && errno != EINPROGRESS)) {
        char why[160];
        snprintf(why, sizeof why, "cannot connect to gridd: %s", strerror(errno));
        fail_host(s, h, why);
        return;
    }
    bool sent = try_hello(n, h) && h->hello_sent;
    struct epoll_event ev = {.events = EPOLLIN | (sent ? 0 : EPOLLOUT), .data.u32 = (uint32_t)hi};
    if (epoll_ctl(n->epfd, EPOLL_CTL_ADD, h->fd, &ev) < 0)
        fail_host(s, h, "epoll_ctl failed");
}

// The bytes are decoded after the clock stops (hosts_decode); every worker
// of the host that waits for one counts as assigned now.
static void keep_host_assignment(swarm *s, swarm_host *h, const uint8_t *body, uint32_t len)
{
    if (h->num_kept == h->cap_kept) {
        int cap = h->cap_kept ? h->cap_kept * 2 : 2;
        uint8_t **kept = realloc(h->kept, sizeof *kept * (size_t)cap);
        uint32_t *lens = kept ? realloc(h->kept_lens, sizeof *lens * (size_t)cap) : NULL;
        if (kept)
            h->kept = kept;
        if (!lens) {
            fail_host(s, h, "out of memory keeping an assignment");
            return;
        }
        h->kept_lens = lens;
        h->cap_kept = cap;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) {
        fail_host(s, h, "out of memory keeping an assignment");
        return;
    }
    memcpy(copy, body, len);
    h->kept[h->num_kept] = copy;
    h->kept_lens[h->num_kept++] = len;
    double t = now_s();
    for (int i = 0; i < h->count; i++) {
        swarm_conn *c = &s->conns[h->first + i];
        if (c->state != CONN_JOINED)
            continue;
        c->state = CONN_ASSIGNED;
        c->t_assigned = t;
        s->num_assigned++;
    }
    s->t_last_assigned = t;
    if (s->phases.first_assigned == 0)
        s->phases.first_assigned = t;
}

static void on_abort(swarm *s, swarm_conn *c, const Hgrid__Abort *a)
{
    if (c->state == CONN_LEAVING || c->state == CONN_RELEASED)
        return; // others leaving abort the generation
    if (!abort_round.waiting) {
        conn_fail(s, c, "generation aborted: %s", a->reason);
        return;
    }
    int i = (int)(c - s->conns);
    if (abort_round.aborted[i])
        return;
    abort_round.aborted[i] = 1;
    abort_round.num_aborted++;
    abort_round.last_abort = now_s();
    if (a->n_lost_ranks != 1 || (int)a->lost_ranks[0] != abort_round.lost_rank)
        abort_round.wrong_lost++;
}

static void on_release(swarm *s, swarm_conn *c, const char *reason)
{
    if (c->state == CONN_ASSIGNED || c->state == CONN_LEAVING) {
        s->num_assigned -= c->state == CONN_ASSIGNED;
        c->state = CONN_RELEASED;
        s->num_released++;
    } else {
        conn_fail(s, c, "released before its assignment: %s", reason);
    }
}

// One Relay from gridd: each worker's frame handled; the MintReplies of
// the host's leaders go back in one Relay.
static void relay_in(net *n, swarm_host *h, const Hgrid__Relay *r)
{
    swarm *s = n->s;
    if (r->n_devices && !wire_relay_frame(r, 0)) {
        fail_host(s, h, "a Relay whose frames do not match its devices");
        return;
    }
    wire_relay_batch replies = {0};
    Hgrid__Envelope *shared = NULL;
    for (size_t i = 0; i < r->n_devices; i++) {
        if (r->devices[i] >= (uint32_t)h->count) {
            fail_host(s, h, "a Relay for a device this host does not have");
            break;
        }
        swarm_conn *c = &s->conns[h->first + (int)r->devices[i]];
        const ProtobufCBinaryData *f = wire_relay_frame(r, i);
        Hgrid__Envelope *env = shared ? shared : wire_unpack(f->data, f->len);
        if (r->n_frames == 1)
            shared = env;
        char buf[256];
        const char *bad = env ? wire_check_version(env, buf, sizeof buf) : "undecodable frame";
        if (bad) {
            conn_fail(s, c, "bad message from gridd: %s", bad);
        } else if (env->msg_case == HGRID__ENVELOPE__MSG_MINT_REQUEST) {
            ProtobufCBinaryData ids[ASSIGN_MAX_GROUPS];
            if (mint_ids(s, c, env->mint_request, ids) == 0) {
                Hgrid__MintReply reply = HGRID__MINT_REPLY__INIT;
                reply.generation = env->mint_request->generation;
                reply.n_ids = env->mint_request->count;
                reply.ids = ids;
                Hgrid__Envelope out;
                wire_envelope_init(&out);
                out.msg_case = HGRID__ENVELOPE__MSG_MINT_REPLY;
                out.mint_reply = &reply;
                size_t len = hgrid__envelope__get_packed_size(&out);
                uint8_t *at = wire_relay_add(&replies, r->devices[i], len);
                if (at)
                    hgrid__envelope__pack(&out, at);
                else
                    conn_fail(s, c, "out of memory answering a MintRequest");
            }
        } else if (env->msg_case == HGRID__ENVELOPE__MSG_ABORT) {
            on_abort(s, c, env->abort);
        } else if (env->msg_case == HGRID__ENVELOPE__MSG_RELEASE) {
            on_release(s, c, env->release->reason);
        } else if (env->msg_case == HGRID__ENVELOPE__MSG_ERROR) {
            conn_fail(s, c, "refused by gridd: %s", env->error->message);
        } else {
            conn_fail(s, c, "unexpected message %d from gridd", (int)env->msg_case);
        }
        if (!shared)
            wire_free_envelope(env);
    }
    wire_free_envelope(shared);
    if (replies.num) { // the host's MintReplies in one Relay back
        Hgrid__Relay back;
        ProtobufCBinaryData *frames = wire_relay_message(&replies, &back);
        Hgrid__Envelope env;
        wire_envelope_init(&env);
        env.msg_case = HGRID__ENVELOPE__MSG_RELAY;
        env.relay = &back;
        if (!frames)
            fail_host(s, h, "out of memory answering a Relay");
        else
            send_env(s, h, &env);
        free(frames);
        s->phases.last_reply = now_s();
    }
    wire_relay_free(&replies);
}

static int on_frame(void *ctx, const uint8_t *body, uint32_t len)
{
    host_ctx *x = ctx;
    swarm *s = x->n->s;
    swarm_host *h = x->h;
    if (peek_message(body, len) == HGRID__ENVELOPE__MSG_HOST_ASSIGNMENT) {
        keep_host_assignment(s, h, body, len);
        return 0;
    }
    Hgrid__Envelope *env = wire_unpack(body, len);
    char buf[256];
    const char *bad = env ? wire_check_version(env, buf, sizeof buf) : "undecodable frame";
    if (bad) {
        snprintf(buf, sizeof buf, "bad message from gridd on the host link: %s", bad);
        fail_host(s, h, buf);
    } else if (env->msg_case == HGRID__ENVELOPE__MSG_RELAY) {
        relay_in(x->n, h, env->relay);
    } else if (env->msg_case == HGRID__ENVELOPE__MSG_HOST_ASSIGNMENT) {
        keep_host_assignment(s, h, body, len);
    } else if (env->msg_case == HGRID__ENVELOPE__MSG_HOST_GONE) {
        for (size_t i = 0; i < env->host_gone->n_devices; i++) {
            uint32_t d = env->host_gone->devices[i];
            swarm_conn *c = d < (uint32_t)h->count ? &s->conns[h->first + (int)d] : NULL;
            if (c && c->state == CONN_LEAVING) {
                c->state = CONN_RELEASED;
                s->num_released++;
            } else if (c && c->state != CONN_RELEASED) {
                conn_fail(s, c, "dropped by gridd: %s", env->host_gone->reason);
            }
        }
    } else if (env->msg_case == HGRID__ENVELOPE__MSG_ERROR) {
        snprintf(buf, sizeof buf, "refused by gridd: %s", env->error->message);
        fail_host(s, h, buf);
    } else {
        snprintf(buf, sizeof buf, "unexpected message %d on the host link", (int)env->msg_case);
        fail_host(s, h, buf);
    }
    wire_free_envelope(env);
    return 0;
}

static void on_readable(net *n, swarm_host *h)
{
    host_ctx x = {n, h};
    char why[256], line[320];
    int rc = read_frames(n, h->fd, &h->reader, on_frame, &x, why, sizeof why);
    if (rc == 0)
        return;
    snprintf(line, sizeof line, "%s%s", rc > 0 ? "gridd closed the host link: " : "", why);
    fail_host(n->s, h, line);
    epoll_ctl(n->epfd, EPOLL_CTL_DEL, h->fd, NULL);
}

void hosts_event(net *n, const struct epoll_event *ev)
{
    swarm_host *h = &n->s->hosts[ev->data.u32];
    if (!h->hello_sent) {
        if (!(ev->events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
            char why[160];
            snprintf(why, sizeof why, "cannot connect to gridd: %s", strerror(err ? err : errno));
            fail_host(n->s, h, why);
            epoll_ctl(n->epfd, EPOLL_CTL_DEL, h->fd, NULL);
            return;
        }
        if (!try_hello(n, h) || !h->hello_sent)
            return;
        struct epoll_event in = {.events = EPOLLIN, .data.u32 = ev->data.u32};
        epoll_ctl(n->epfd, EPOLL_CTL_MOD, h->fd, &in);
        return;
    }
    if (ev->events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        on_readable(n, h);
}

void hosts_decode(swarm *s)
{
    for (int hi = 0; hi < s->opt.hosts; hi++) {
        swarm_host *h = &s->hosts[hi];
        for (int k = 0; k < h->num_kept; k++) {
            Hgrid__Envelope *env = wire_unpack(h->kept[k], h->kept_lens[k]);
            free(h->kept[k]);
            char err[256];
            if (!env || env->msg_case != HGRID__ENVELOPE__MSG_HOST_ASSIGNMENT) {
                fail_host(s, h, "an undecodable HostAssignment");
                wire_free_envelope(env);
                continue;
            }
            const Hgrid__HostAssignment *ha = env->host_assignment;
            if (ha->n_devices != ha->n_assignments)
                fail_host(s, h, "a HostAssignment whose devices do not match its assignments");
            for (size_t i = 0; i < ha->n_devices && i < ha->n_assignments; i++) {
                if (ha->devices[i] >= (uint32_t)h->count) {
                    fail_host(s, h, "a HostAssignment for a device this host does not have");
                    continue;
                }
                swarm_conn *c = &s->conns[h->first + (int)ha->devices[i]];
                uint8_t *frame;
                size_t len = wire_host_assignment_frame(ha, i, s->opt.job, &frame, err, sizeof err);
                Hgrid__Envelope *one = len ? wire_unpack(frame + WIRE_HEADER_BYTES,
                                                         len - WIRE_HEADER_BYTES) : NULL;
                if (len)
                    free(frame);
                if (!one)
                    conn_fail(s, c, "bad HostAssignment: %s", len ? "undecodable" : err);
                else if (c->assignment)
                    conn_fail(s, c, "two assignments in one generation");
                else if (c->state != CONN_FAILED)
                    c->assignment = one, one = NULL;
                wire_free_envelope(one);
            }
            wire_free_envelope(env);
        }
        h->num_kept = 0;
    }
}

// One Relay per host carrying env to each of its workers in state `state`.
static void relay_to_all(swarm *s, const Hgrid__Envelope *env, conn_state state)
{
    size_t len = hgrid__envelope__get_packed_size(env);
    uint8_t *body = malloc(len ? len : 1);
    uint32_t *devices = malloc(sizeof *devices * (size_t)s->opt.workers);
    if (!body || !devices) {
        free(body);
        free(devices);
        return;
    }
    hgrid__envelope__pack(env, body);
    ProtobufCBinaryData frame = {len, body};
    for (int hi = 0; hi < s->opt.hosts; hi++) {
        swarm_host *h = &s->hosts[hi];
        int n = 0;
        for (int i = 0; i < h->count; i++)
            if (s->conns[h->first + i].state == state)
                devices[n++] = (uint32_t)i;
        if (!n)
            continue;
        Hgrid__Relay r = HGRID__RELAY__INIT;
        r.n_devices = (size_t)n;
        r.devices = devices;
        r.n_frames = 1;
        r.frames = &frame;
        Hgrid__Envelope out;
        wire_envelope_init(&out);
        out.msg_case = HGRID__ENVELOPE__MSG_RELAY;
        out.relay = &r;
        send_env(s, h, &out);
    }
    free(body);
    free(devices);
}

static uint64_t generation_of(const swarm *s)
{
    for (int i = 0; i < s->opt.workers; i++)
        if (s->conns[i].assignment)
            return s->conns[i].assignment->assignment->generation;
    return 0;
}

static void send_ready(swarm *s)
{
    Hgrid__Ready ready = HGRID__READY__INIT;
    ready.generation = generation_of(s);
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_READY;
    env.ready = &ready;
    relay_to_all(s, &env, CONN_ASSIGNED);
}

static int never(const swarm *s)
{
    (void)s;
    return 0;
}

static int all_aborted(const swarm *s)
{
    (void)s;
    return abort_round.num_aborted + s->num_failed >= s->opt.workers - 1;
}

// Does the group g (as the engine derives it for some rank) hold rank?
static bool group_holds(const assign_ref *ref, const assign_group *g, int rank)
{
    if (g->kind == ASSIGN_BRIDGE)
        return hg_bridge_index_of_rank(&ref->plan, g->bridge, rank) >= 0;
    const hg_module_grid *m = &ref->plan.modules[g->module_index], *mods[2];
    int nm = hg_plan_modules_of_rank(&ref->plan, rank, mods), index, j;
    bool in_module = false;
    for (int i = 0; i < nm; i++)
        in_module |= mods[i] == m;
    return in_module && hg_group_of_rank(m, (hg_group_kind)g->kind, rank, &index, &j) &&
           index == g->index;
}

// Group at of an Assignment's groups followed by its colocated module's;
// NULL past them.
static const Hgrid__Group *group_at(const Hgrid__Assignment *a, int at)
{
    size_t i = (size_t)at, co = a->n_colocated_modules ? a->colocated_modules[0]->n_groups : 0;
    if (i < a->n_groups)
        return a->groups[i];
    return i - a->n_groups < co ? a->colocated_modules[0]->groups[i - a->n_groups] : NULL;
}

// The new generation against the old: a group's id changed exactly when
// it holds the replaced rank, and its kept flag says so.
static int compare_generations(const swarm *s, Hgrid__Envelope **old, int replaced,
                               swarm_replacement *out)
{
    int failed = 0;
    assign_ref *ref = malloc(sizeof *ref);
    char err[256];
    const Hgrid__Assignment *a0 = s->conns[replaced].assignment
                                      ? s->conns[replaced].assignment->assignment : NULL;
    if (!ref || !a0 || assign_ref_build(ref, a0->layout, err, sizeof err)) {
        fprintf(stderr, "hgrid-swarm: check failed: no new assignment for the replacement\n");
        free(ref);
        return 1;
    }
    int rank = s->opt.replace_rank;
    for (int i = 0; i < s->opt.workers; i++) {
        const swarm_conn *c = &s->conns[i];
        if (!c->assignment || !old[i])
            continue;
        const Hgrid__Assignment *a = c->assignment->assignment, *b = old[i]->assignment;
        if (a->rank != b->rank || a->generation != b->generation + 1) {
            if (failed++ < 10)
                fprintf(stderr, "hgrid-swarm: check failed: swarm-%d/%d went from rank %u gen %llu "
                        "to rank %u gen %llu\n", c->host, c->device, b->rank,
                        (unsigned long long)b->generation, a->rank,
                        (unsigned long long)a->generation);
            continue;
        }
        assign_group want[ASSIGN_MAX_GROUPS];
        int n = assign_expected_groups(ref, (int)a->rank, want);
        for (int g = 0; g < n; g++) {
            const Hgrid__Group *ng = group_at(a, g), *og = group_at(b, g);
            if (!ng || !og || !ng->nccl_id.len || og->nccl_id.len != ng->nccl_id.len)
                continue;
            bool holds = group_holds(ref, &want[g], rank);
            bool same = !memcmp(ng->nccl_id.data, og->nccl_id.data, ng->nccl_id.len);
            if (holds == same || ng->kept != same) {
                if (failed++ < 10)
                    fprintf(stderr, "hgrid-swarm: check failed: rank %u's %s group %u %s rank %d "
                            "but its id %s (kept=%d)\n", a->rank, ng->name, ng->index,
                            holds ? "holds" : "does not hold", rank, same ? "stayed" : "changed",
                            ng->kept);
            }
            if (ng->rank_in_group == 0) // each communicator once
                *(same ? &out->kept_ids : &out->changed_ids) += 1;
        }
    }
    free(ref);
    return failed;
}

int swarm_replace(swarm *s, swarm_replacement *out)
{
    net *n = &the_net;
    int rank = s->opt.replace_rank, w = -1;
    memset(out, 0, sizeof *out);
    out->rank = rank;
    for (int i = 0; i < s->opt.workers; i++)
        if (s->conns[i].assignment && (int)s->conns[i].assignment->assignment->rank == rank)
            w = i;
    if (w < 0) {
        fprintf(stderr, "hgrid-swarm: --replace-rank %d: no worker holds that rank\n", rank);
        return 1;
    }
    // Every communicator formed: only then does gridd keep ids.
    send_ready(s);
    run_until(n, never, now_s() + 0.3 + s->opt.workers * 1e-5);
    Hgrid__Envelope **old = calloc((size_t)s->opt.workers, sizeof *old);
    abort_round.aborted = calloc((size_t)s->opt.workers, 1);
    if (!old || !abort_round.aborted) {
        free(old);
        fprintf(stderr, "hgrid-swarm: out of memory for the replacement\n");
        return 1;
    }
    for (int i = 0; i < s->opt.workers; i++) {
        old[i] = s->conns[i].assignment;
        s->conns[i].assignment = NULL;
    }
    swarm_conn *dead = &s->conns[w];
    swarm_host *h = &s->hosts[dead->host];
    abort_round.waiting = true;
    abort_round.lost_rank = rank;
    abort_round.aborted[w] = 1; // the dead one gets none
    // The worker dies: its agent reports the closed socket at once.
    uint32_t device = (uint32_t)dead->device;
    Hgrid__HostGone gone = HGRID__HOST_GONE__INIT;
    gone.n_devices = 1;
    gone.devices = &device;
    gone.reason = "worker exited (hgrid-swarm --replace-rank)";
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_HOST_GONE;
    env.host_gone = &gone;
    double t_death = now_s();
    dead->state = CONN_CONNECTING;
    s->num_assigned--;
    send_env(s, h, &env);
    int failed = 0;
    if (run_until(n, all_aborted, t_death + 10) || abort_round.wrong_lost) {
        fprintf(stderr, "hgrid-swarm: check failed: %d of %d workers got the Abort naming rank %d "
                "(%d named another)\n", abort_round.num_aborted, s->opt.workers - 1, rank,
                abort_round.wrong_lost);
        failed++;
    }
    out->abort_s = abort_round.last_abort - t_death;
    abort_round.waiting = false;
    // Everyone waits for the new generation; the replacement joins.
    for (int i = 0; i < s->opt.workers; i++)
        if (s->conns[i].state == CONN_ASSIGNED)
            s->conns[i].state = CONN_JOINED;
    s->num_assigned = 0;
    double t_hello = now_s();
    if (host_hello(n, h, dead->device, 1) == 0)
        dead->state = CONN_JOINED;
    if (run_until(n, all_settled, t_hello + s->opt.timeout_s)) {
        fprintf(stderr, "hgrid-swarm: check failed: only %d of %d workers got the new generation\n",
                s->num_assigned, s->opt.workers);
        failed++;
    }
    out->reassign_s = s->t_last_assigned - t_hello;
    hosts_decode(s);
    int groups;
    failed += swarm_check(s, &groups);
    failed += compare_generations(s, old, w, out);
    for (int i = 0; i < s->opt.workers; i++)
        wire_free_envelope(old[i]);
    free(old);
    free(abort_round.aborted);
    abort_round.aborted = NULL;
    return failed;
}

void hosts_finish(net *n)
{
    swarm *s = n->s;
    if (s->opt.wait_release) {
        send_ready(s);
        Hgrid__Heartbeat hb = HGRID__HEARTBEAT__INIT;
        hb.generation = generation_of(s);
        Hgrid__Envelope env;
        wire_envelope_init(&env);
        env.msg_case = HGRID__ENVELOPE__MSG_HEARTBEAT;
        env.heartbeat = &hb;
        double deadline = now_s() + s->opt.timeout_s;
        while (!all_released(s) && now_s() < deadline) {
            double slice = now_s() + 1.0;
            run_until(n, all_released, slice < deadline ? slice : deadline);
            hb.step++;
            relay_to_all(s, &env, CONN_ASSIGNED);
        }
        if (!all_released(s))
            fprintf(stderr, "hgrid-swarm: only %d of %d workers were released within %.0f s\n",
                    s->num_released, s->opt.workers, s->opt.timeout_s);
    } else {
        Hgrid__Leave leave = HGRID__LEAVE__INIT;
        leave.reason = "swarm done";
        Hgrid__Envelope env;
        wire_envelope_init(&env);
        env.msg_case = HGRID__ENVELOPE__MSG_LEAVE;
        env.leave = &leave;
        relay_to_all(s, &env, CONN_ASSIGNED);
        s->num_assigned = 0;
        for (int i = 0; i < s->opt.workers; i++)
            if (s->conns[i].state == CONN_ASSIGNED)
                s->conns[i].state = CONN_LEAVING;
        run_until(n, all_released, now_s() + 5.0);
    }
    struct linger reset = {.l_onoff = 1, .l_linger = 0};
    for (int hi = 0; hi < s->opt.hosts; hi++) {
        swarm_host *h = &s->hosts[hi];
        if (h->fd >= 0) {
            setsockopt(h->fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
            close(h->fd);
        }
        wire_reader_free(&h->reader);
        for (int k = 0; k < h->num_kept; k++)
            free(h->kept[k]);
        free(h->kept);
        free(h->kept_lens);
    }
    if (n->epfd >= 0)
        close(n->epfd);
}
