// hgrid-swarm's network side: one thread, one epoll set, N non-blocking
// connections, each a small state machine (connect, Hello, mint, assigned).
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tools/swarm/net.h"

#define MAX_EVENTS 1024
#define READ_BUF 65536

typedef struct {
    net *n;
    swarm_conn *c;
} frame_ctx;

void conn_fail(swarm *s, swarm_conn *c, const char *fmt, ...)
{
    if (c->state == CONN_FAILED)
        return;
    if (c->state == CONN_ASSIGNED)
        s->num_assigned--;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    free(c->error);
    c->error = strdup(buf);
    c->state = CONN_FAILED;
    __atomic_add_fetch(&s->num_failed, 1, __ATOMIC_RELAXED); // connect threads too
}

static int send_env(swarm *s, swarm_conn *c, const Hgrid__Envelope *env)
{
    uint8_t *frame;
    size_t len = wire_pack(env, &frame);
    if (len == 0) {
        conn_fail(s, c, "out of memory packing a message");
        return -1;
    }
    // Frames are small and each socket has few in flight: a short write
    // means gridd stopped reading, which fails this worker.
    ssize_t w = send(c->fd, frame, len, MSG_NOSIGNAL);
    free(frame);
    if (w != (ssize_t)len) {
        conn_fail(s, c, "cannot send to gridd: %s", w < 0 ? strerror(errno) : "short write");
        return -1;
    }
    s->bytes_sent += len;
    s->frames_sent++;
    return 0;
}

// Sends the Hello; false (state unchanged) if the socket is still connecting.
static bool try_hello(net *n, swarm_conn *c)
{
    const swarm_options *o = &n->s->opt;
    char host[32];
    snprintf(host, sizeof host, "swarm-%d", c->host);
    Hgrid__Hello hello = HGRID__HELLO__INIT;
    hello.job = (char *)o->job;
    hello.token.data = (uint8_t *)o->token;
    hello.token.len = strlen(o->token);
    hello.host = host;
    hello.local_device = (uint32_t)c->device;
    hello.gpu_uuid = "";
    hello.dry_run = true;
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_HELLO;
    env.hello = &hello;
    uint8_t *frame;
    size_t len = wire_pack(&env, &frame);
    if (len == 0) {
        conn_fail(n->s, c, "out of memory packing a message");
        return false;
    }
    ssize_t w = send(c->fd, frame, len, MSG_NOSIGNAL);
    int err = errno;
    free(frame);
    if (w < 0 && err == EAGAIN)
        return false;
    if (w != (ssize_t)len) {
        conn_fail(n->s, c, "cannot send to gridd: %s", w < 0 ? strerror(err) : "short write");
        return false;
    }
    c->state = CONN_JOINED;
    n->last_hello = now_s();
    __atomic_add_fetch(&n->s->bytes_sent, len, __ATOMIC_RELAXED);
    __atomic_add_fetch(&n->s->frames_sent, 1, __ATOMIC_RELAXED);
    return true;
}

uint64_t next_random(swarm *s)
{
    s->rng ^= s->rng << 13; // xorshift64: ids only need to differ
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return s->rng;
}

int mint_ids(swarm *s, swarm_conn *c, const Hgrid__MintRequest *req,
             ProtobufCBinaryData ids[ASSIGN_MAX_GROUPS])
{
    swarm_phases *ph = &s->phases;
    if (ph->first_request == 0)
        ph->first_request = now_s();
    if (req->count > ASSIGN_MAX_GROUPS) {
        conn_fail(s, c, "gridd asked for %u ids; no worker leads that many", req->count);
        return -1;
    }
    free(c->minted);
    c->minted = malloc((size_t)(req->count ? req->count : 1) * ASSIGN_ID_BYTES);
    if (!c->minted) {
        conn_fail(s, c, "out of memory minting ids");
        return -1;
    }
    for (uint32_t i = 0; i < req->count; i++) {
        uint8_t *id = c->minted + (size_t)i * ASSIGN_ID_BYTES;
        for (int b = 0; b < ASSIGN_ID_BYTES; b += 8) {
            uint64_t r = next_random(s);
            memcpy(id + b, &r, 8);
        }
        ids[i] = (ProtobufCBinaryData){ASSIGN_ID_BYTES, id};
    }
    c->mint_generation = req->generation;
    c->minted_count = (int)req->count;
    return 0;
}

static void mint(net *n, swarm_conn *c, const Hgrid__MintRequest *req)
{
    ProtobufCBinaryData ids[ASSIGN_MAX_GROUPS];
    if (mint_ids(n->s, c, req, ids))
        return;
    Hgrid__MintReply reply = HGRID__MINT_REPLY__INIT;
    reply.generation = req->generation;
    reply.n_ids = req->count;
    reply.ids = ids;
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_MINT_REPLY;
    env.mint_reply = &reply;
    send_env(n->s, c, &env);
    n->s->phases.last_reply = now_s();
}

// The Envelope's message field number (= its msg_case), found by walking
// the top-level fields: the varint version, then the message. 0 if unsure.
int peek_message(const uint8_t *p, uint32_t len)
{
    const uint8_t *end = p + len;
    while (p < end) {
        uint64_t tag = 0;
        for (int shift = 0; p < end && shift < 64; shift += 7) {
            tag |= (uint64_t)(*p & 0x7f) << shift;
            if (!(*p++ & 0x80))
                break;
        }
        if ((tag & 7) == 2)
            return (int)(tag >> 3);
        if ((tag & 7) != 0)
            return 0;
        while (p < end && (*p++ & 0x80)) // skip a varint field
            ;
    }
    return 0;
}

// An Assignment's bytes are kept and decoded after the clock stops
// (swarm_decode): a real worker decodes its own on its own CPU, while here
// 16K decodes would share two cores with gridd.
static void keep_assignment(swarm *s, swarm_conn *c, const uint8_t *body, uint32_t len)
{
    if (c->state == CONN_FAILED)
        return;
    free(c->assignment_bytes);
    c->assignment_bytes = malloc(len ? len : 1);
    if (!c->assignment_bytes) {
        conn_fail(s, c, "out of memory keeping an assignment");
        return;
    }
    memcpy(c->assignment_bytes, body, len);
    c->assignment_len = len;
    if (c->state != CONN_ASSIGNED)
        s->num_assigned++;
    c->state = CONN_ASSIGNED;
    c->t_assigned = s->t_last_assigned = now_s();
    if (s->phases.first_assigned == 0)
        s->phases.first_assigned = c->t_assigned;
}

void swarm_decode(swarm *s)
{
    if (!s->opt.direct) {
        hosts_decode(s);
        return;
    }
    for (int i = 0; i < s->opt.workers; i++) {
        swarm_conn *c = &s->conns[i];
        if (!c->assignment_bytes)
            continue;
        Hgrid__Envelope *env = wire_unpack(c->assignment_bytes, c->assignment_len);
        free(c->assignment_bytes);
        c->assignment_bytes = NULL;
        char buf[256];
        const char *bad = env ? wire_check_version(env, buf, sizeof buf) : "undecodable frame";
        if (!bad && env->msg_case != HGRID__ENVELOPE__MSG_ASSIGNMENT)
            bad = "an Assignment that decodes as another message";
        if (bad) {
            conn_fail(s, c, "bad assignment from gridd: %s", bad);
            wire_free_envelope(env);
            continue;
        }
        wire_free_envelope(c->assignment);
        c->assignment = env;
    }
}

// Handles one frame from gridd; the Assignment is kept for the checks.
static int on_frame(void *ctx, const uint8_t *body, uint32_t len)
{
    frame_ctx *f = ctx;
    swarm *s = f->n->s;
    swarm_conn *c = f->c;
    if (peek_message(body, len) == HGRID__ENVELOPE__MSG_ASSIGNMENT) {
        keep_assignment(s, c, body, len);
        return c->state == CONN_FAILED;
    }
    Hgrid__Envelope *env = wire_unpack(body, len);
    char buf[256];
    const char *bad = env ? wire_check_version(env, buf, sizeof buf) : "undecodable frame";
    if (bad) {
        conn_fail(s, c, "bad message from gridd: %s", bad);
        wire_free_envelope(env);
        return 1;
    }
    switch (env->msg_case) {
    case HGRID__ENVELOPE__MSG_MINT_REQUEST:
        mint(f->n, c, env->mint_request);
        break;
    case HGRID__ENVELOPE__MSG_ASSIGNMENT: // fields in an order peek_message did not expect
        keep_assignment(s, c, body, len);
        break;
    case HGRID__ENVELOPE__MSG_ERROR:
        conn_fail(s, c, "refused by gridd: %s", env->error->message);
        break;
    case HGRID__ENVELOPE__MSG_ABORT:
        if (c->state != CONN_LEAVING) // others leaving abort the generation
            conn_fail(s, c, "generation aborted: %s", env->abort->reason);
        break;
    case HGRID__ENVELOPE__MSG_RELEASE:
        if (c->state == CONN_ASSIGNED || c->state == CONN_LEAVING) {
            s->num_assigned -= c->state == CONN_ASSIGNED;
            c->state = CONN_RELEASED;
            s->num_released++;
        } else {
            conn_fail(s, c, "released before its assignment: %s", env->release->reason);
        }
        break;
    default:
        conn_fail(s, c, "unexpected message %d from gridd", (int)env->msg_case);
        break;
    }
    wire_free_envelope(env);
    return c->state == CONN_FAILED;
}

int read_frames(net *n, int fd, wire_reader *reader, wire_frame_fn on_frame, void *ctx,
                char *why, size_t whylen)
{
    static uint8_t buf[READ_BUF];
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN)
            return 0;
        if (r <= 0) {
            snprintf(why, whylen, "%s", r == 0 ? "end of stream" : strerror(errno));
            return 1;
        }
        n->s->bytes_received += (uint64_t)r;
        int fed = wire_reader_feed(reader, buf, (size_t)r, on_frame, ctx, why, whylen);
        if (fed < 0)
            return -1;
        if (fed > 0 || r < (ssize_t)sizeof buf)
            return 0; // level-triggered: epoll reports what is left
    }
}

static void on_readable(net *n, swarm_conn *c)
{
    frame_ctx f = {n, c};
    char why[256];
    int rc = read_frames(n, c->fd, &c->reader, on_frame, &f, why, sizeof why);
    if (rc > 0 && c->state == CONN_LEAVING) {
        c->state = CONN_RELEASED;
        n->s->num_released++;
    } else if (rc > 0 && c->state != CONN_RELEASED) {
        conn_fail(n->s, c, "gridd closed the connection: %s", why);
    } else if (rc < 0) {
        conn_fail(n->s, c, "bad frame from gridd: %s", why);
    }
    if (rc || c->state == CONN_FAILED)
        epoll_ctl(n->epfd, EPOLL_CTL_DEL, c->fd, NULL);
}

static void on_writable(net *n, swarm_conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        conn_fail(n->s, c, "cannot connect to gridd: %s", strerror(err));
        epoll_ctl(n->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        return;
    }
    if (!try_hello(n, c))
        return; // spurious wakeup: still connecting
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)(c - n->s->conns)};
    epoll_ctl(n->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

// The kernel picks a connection's source port by walking the ports in use
// towards the same destination, so N connects from one address cost O(N^2)
// (most of the swarm's time at 16K). Towards a loopback gridd, every
// SOURCE_SPREAD workers get their own 127.x source address instead.
#define SOURCE_SPREAD 128
int spread_source(const net *n, int fd, int i)
{
    if (n->addr.ss_family != AF_INET)
        return 0;
    const struct sockaddr_in *dst = (const struct sockaddr_in *)&n->addr;
    if ((ntohl(dst->sin_addr.s_addr) >> 24) != 127)
        return 0;
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl((127u << 24 | 16u << 16) + (uint32_t)(i / SOURCE_SPREAD));
    return bind(fd, (struct sockaddr *)&src, sizeof src);
}

static void start_connect(net *n, int i)
{
    swarm *s = n->s;
    swarm_conn *c = &s->conns[i];
    c->t_connect = now_s();
    c->fd = socket(n->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        conn_fail(s, c, "cannot create a socket: %s", strerror(errno));
        return;
    }
    if (spread_source(n, c->fd, i) < 0) {
        conn_fail(s, c, "cannot bind a loopback source address: %s", strerror(errno));
        return;
    }
    if (connect(c->fd, (struct sockaddr *)&n->addr, n->addr_len) < 0 && errno != EINPROGRESS) {
        conn_fail(s, c, "cannot connect to gridd: %s", strerror(errno));
        return;
    }
    // Towards loopback the handshake has usually completed by now: try the
    // Hello at once and wait for writability only if it is not through.
    bool sent = try_hello(n, c);
    if (c->state == CONN_FAILED)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (sent ? 0 : EPOLLOUT), .data.u32 = (uint32_t)i};
    if (epoll_ctl(n->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        conn_fail(s, c, "epoll_ctl failed: %s", strerror(errno));
}

static int resolve(net *n, const char *addr)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof host) {
        fprintf(stderr, "hgrid-swarm: --coordinator '%s' is not HOST:PORT\n", addr);
        return -1;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int gai = getaddrinfo(host, colon + 1, &hints, &res);
    if (gai) {
        fprintf(stderr, "hgrid-swarm: cannot resolve '%s': %s\n", addr, gai_strerror(gai));
        return -1;
    }
    memcpy(&n->addr, res->ai_addr, res->ai_addrlen);
    n->addr_len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static void dispatch(net *n, const struct epoll_event *ev)
{
    if (!n->s->opt.direct) {
        hosts_event(n, ev);
        return;
    }
    swarm_conn *c = &n->s->conns[ev->data.u32];
    if (c->state == CONN_FAILED)
        return;
    if (c->state == CONN_CONNECTING) {
        if (ev->events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            on_writable(n, c);
        return;
    }
    if (ev->events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        on_readable(n, c);
}

// Runs the event loop until done(s) or the deadline; returns 0 or -1 on timeout.
int run_until(net *n, int (*done)(const swarm *), double deadline)
{
    struct epoll_event events[MAX_EVENTS];
    while (!done(n->s)) {
        double left = deadline - now_s();
        if (left <= 0)
            return -1;
        // Busy polling keeps the swarm awake, so gridd's sends over loopback
        // do not pay for waking it (an inter-processor interrupt per wakeup,
        // costly in a VM; real workers wake on their own machines).
        int wait_ms = n->s->opt.busy_poll ? 0 : (int)(left * 1000) + 1;
        int k = epoll_wait(n->epfd, events, MAX_EVENTS, wait_ms);
        if (k < 0 && errno != EINTR) {
            fprintf(stderr, "hgrid-swarm: epoll_wait failed: %s\n", strerror(errno));
            return -1;
        }
        for (int i = 0; i < k; i++)
            dispatch(n, &events[i]);
    }
    return 0;
}

int all_settled(const swarm *s)
{
    return s->num_assigned + s->num_failed + s->num_released == s->opt.workers;
}

net the_net;

typedef struct {
    net n; // a copy of the_net: its own last_hello
    int *next, end; // the next endpoint to claim (shared), and where they end
    pthread_t thread;
} connect_range;

// Claims SOURCE_SPREAD endpoints at a time (one source address: its
// ports stay with one thread) until none is left: a thread that shares its
// CPU with gridd takes fewer than one that has a CPU of its own, and no
// CPU idles while another thread still works through a fixed half.
static void *connect_thread(void *arg)
{
    connect_range *r = arg;
    for (;;) {
        int first = __atomic_fetch_add(r->next, SOURCE_SPREAD, __ATOMIC_RELAXED);
        if (first >= r->end)
            return NULL;
        int end = first + SOURCE_SPREAD < r->end ? first + SOURCE_SPREAD : r->end;
        for (int i = first; i < end; i++)
            if (r->n.s->opt.direct)
                start_connect(&r->n, i);
            else
                hosts_connect(&r->n, i);
    }
}

// Connects every worker and sends its Hello from several threads: N real
// workers connect in parallel, and on loopback a connect also runs gridd's
// side of the handshake, which one thread cannot do fast enough for 16K.
// Connections still in progress get their Hello from the event loop.
static int connect_all(net *n)
{
    swarm *s = n->s;
    int threads = s->opt.connect_threads;
    int endpoints = s->opt.direct ? s->opt.workers : s->opt.hosts; // connections to open
    if (threads > endpoints)
        threads = endpoints;
    connect_range ranges[SWARM_MAX_CONNECT_THREADS];
    int next = 0, started = 0;
    s->t_first_connect = now_s(); // the clock starts before the first connect
    for (int t = 0; t < threads; t++) {
        connect_range *r = &ranges[t];
        r->n = *n;
        r->next = &next;
        r->end = endpoints;
        if (t == 0)
            continue; // the calling thread connects too
        if (pthread_create(&r->thread, NULL, connect_thread, r)) {
            fprintf(stderr, "hgrid-swarm: cannot start a connect thread\n");
            break;
        }
        started = t;
    }
    connect_thread(&ranges[0]);
    for (int t = 1; t <= started; t++)
        pthread_join(ranges[t].thread, NULL);
    for (int t = 0; t <= started; t++)
        if (ranges[t].n.last_hello > n->last_hello)
            n->last_hello = ranges[t].n.last_hello;
    return started + 1 == threads ? 0 : -1;
}

int swarm_rendezvous(swarm *s)
{
    net *n = &the_net;
    n->s = s;
    if (resolve(n, s->opt.coordinator))
        return -1;
    n->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (n->epfd < 0) {
        fprintf(stderr, "hgrid-swarm: epoll_create1 failed: %s\n", strerror(errno));
        return -1;
    }
    double deadline = now_s() + s->opt.timeout_s;
    if (connect_all(n))
        return -1;
    int rc = run_until(n, all_settled, deadline);
    s->phases.last_hello = n->last_hello;
    if (rc) {
        fprintf(stderr, "hgrid-swarm: only %d of %d workers got an assignment within %.0f s "
                        "(%d failed); is the job's world size %d?\n",
                s->num_assigned, s->opt.workers, s->opt.timeout_s, s->num_failed,
                s->opt.workers);
        return -1;
    }
    return 0;
}

int all_released(const swarm *s)
{
    return s->num_released + s->num_failed == s->opt.workers;
}

// Sends one message to every assigned worker.
static void send_all(swarm *s, const Hgrid__Envelope *env)
{
    for (int i = 0; i < s->opt.workers; i++)
        if (s->conns[i].state == CONN_ASSIGNED)
            send_env(s, &s->conns[i], env);
}

static uint64_t generation_of(const swarm *s)
{
    for (int i = 0; i < s->opt.workers; i++)
        if (s->conns[i].assignment)
            return s->conns[i].assignment->assignment->generation;
    return 0;
}

// Ready from every worker, then heartbeats (every second: gridd's default
// timeout / 3) until gridd releases them all.
static void wait_release(net *n)
{
    swarm *s = n->s;
    Hgrid__Ready ready = HGRID__READY__INIT;
    ready.generation = generation_of(s);
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_READY;
    env.ready = &ready;
    send_all(s, &env);
    Hgrid__Heartbeat hb = HGRID__HEARTBEAT__INIT;
    hb.generation = ready.generation;
    env.msg_case = HGRID__ENVELOPE__MSG_HEARTBEAT;
    env.heartbeat = &hb;
    double deadline = now_s() + s->opt.timeout_s;
    while (!all_released(s) && now_s() < deadline) {
        double slice = now_s() + 1.0;
        run_until(n, all_released, slice < deadline ? slice : deadline);
        hb.step++;
        send_all(s, &env);
    }
    if (!all_released(s))
        fprintf(stderr, "hgrid-swarm: only %d of %d workers were released within %.0f s\n",
                s->num_released, s->opt.workers, s->opt.timeout_s);
}

void swarm_finish(swarm *s)
{
    net *n = &the_net;
    if (!s->opt.direct) {
        hosts_finish(n);
        return;
    }
    if (s->opt.wait_release) {
        wait_release(n);
    } else {
        Hgrid__Leave leave = HGRID__LEAVE__INIT;
        leave.reason = "swarm done";
        Hgrid__Envelope env;
        wire_envelope_init(&env);
        env.msg_case = HGRID__ENVELOPE__MSG_LEAVE;
        env.leave = &leave;
        send_all(s, &env);
        s->num_assigned = 0;
        for (int i = 0; i < s->opt.workers; i++)
            if (s->conns[i].state == CONN_ASSIGNED)
                s->conns[i].state = CONN_LEAVING;
        run_until(n, all_released, now_s() + 5.0);
    }
    // gridd closed first (or will see the reset): resetting rather than
    // closing leaves no socket in TIME_WAIT to slow the next run's connects.
    struct linger reset = {.l_onoff = 1, .l_linger = 0};
    for (int i = 0; i < s->opt.workers; i++) {
        if (s->conns[i].fd < 0)
            continue;
        setsockopt(s->conns[i].fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
        close(s->conns[i].fd);
    }
    if (n->epfd >= 0)
        close(n->epfd);
}
