// hgrid-agent's local side: workers on the Unix socket, checked by the
// kernel's SO_PEERCRED; their Hello joins a link, every later frame is
// relayed, and their socket closing is reported at once.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/agent.h"

static uint8_t read_buffer[64 * 1024];

typedef struct {
    uv_write_t req;
    outq *q;
    uint8_t *frame;
    size_t len;
} write_req;

static void on_written(uv_write_t *req, int status)
{
    (void)status; // a failed write shows as EOF on the read side
    write_req *w = (write_req *)req;
    w->q->queued -= w->len;
    free(w->frame);
    free(w);
}

int outq_write(outq *q, const uint8_t *frame, size_t len)
{
    size_t done = 0;
    if (q->queued == 0) {
        uv_buf_t buf = uv_buf_init((char *)frame, (unsigned)len);
        int n = uv_try_write(q->stream, &buf, 1);
        if (n > 0)
            done = (size_t)n;
        else if (n != UV_EAGAIN)
            return -1;
    }
    if (done == len)
        return 0;
    write_req *w = malloc(sizeof *w);
    uint8_t *rest = malloc(len - done);
    if (!w || !rest) {
        free(w);
        free(rest);
        return -1;
    }
    memcpy(rest, frame + done, len - done);
    w->q = q;
    w->frame = rest;
    w->len = len - done;
    uv_buf_t buf = uv_buf_init((char *)rest, (unsigned)w->len);
    if (uv_write(&w->req, q->stream, &buf, 1, on_written)) {
        free(rest);
        free(w);
        return -1;
    }
    q->queued += w->len;
    return 0;
}

int outq_send(outq *q, const Hgrid__Envelope *env)
{
    uint8_t *frame;
    size_t len = wire_pack(env, &frame);
    if (!len)
        return -1;
    int rc = outq_write(q, frame, len);
    free(frame);
    return rc;
}

static void on_closed(uv_handle_t *h)
{
    lworker *w = h->data;
    agent *a = w->a;
    wire_reader_free(&w->reader);
    free(w);
    agent_local_count(a, -1);
}

static void close_worker(lworker *w)
{
    if (w->closing)
        return;
    w->closing = true;
    if (w->link)
        link_worker_closed(w->link, w);
    uv_close((uv_handle_t *)&w->pipe, on_closed);
}

void local_close(lworker *w)
{
    close_worker(w);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    lworker *w = req->data;
    free(req);
    close_worker(w);
}

// Closes w once what was queued for it is written.
static void finish(lworker *w)
{
    uv_shutdown_t *req = malloc(sizeof *req);
    if (req) {
        req->data = w;
        if (uv_shutdown(req, (uv_stream_t *)&w->pipe, on_shutdown) == 0)
            return;
    }
    free(req);
    close_worker(w);
}

void local_refuse(lworker *w, Hgrid__ErrorCode code, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    agent_log("refused a worker: %s", message);
    Hgrid__Error error = HGRID__ERROR__INIT;
    error.code = code;
    error.message = message;
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_ERROR;
    env.error = &error;
    outq_send(&w->out, &env);
    w->dropped = true; // nothing to report: gridd never heard of it
    finish(w);
}

void local_drop(lworker *w)
{
    w->dropped = true;
    if (!w->closing)
        finish(w);
}

void local_deliver(lworker *w, const uint8_t *body, size_t len)
{
    if (w->closing)
        return;
    uint8_t stack[4096], *frame = len + WIRE_HEADER_BYTES <= sizeof stack ? stack : malloc(len + 4);
    if (!frame) {
        close_worker(w);
        return;
    }
    frame[0] = (uint8_t)(len >> 24);
    frame[1] = (uint8_t)(len >> 16);
    frame[2] = (uint8_t)(len >> 8);
    frame[3] = (uint8_t)len;
    memcpy(frame + WIRE_HEADER_BYTES, body, len);
    if (outq_write(&w->out, frame, len + WIRE_HEADER_BYTES))
        close_worker(w);
    if (frame != stack)
        free(frame);
}

static void hello(lworker *w, Hgrid__Envelope *env)
{
    const Hgrid__Hello *h = env->hello;
    if (!h->coordinator || !h->coordinator[0]) {
        local_refuse(w, HGRID__ERROR_CODE__ERROR_AGENT,
                     "this Hello names no coordinator: the agent opens its link to the gridd "
                     "address the worker was given (libhgrid sends it)");
        wire_free_envelope(env);
        return;
    }
    char err[256];
    uplink *l = link_for(w->a, h, err, sizeof err);
    if (!l) {
        local_refuse(w, HGRID__ERROR_CODE__ERROR_AGENT, "%s", err);
        wire_free_envelope(env);
        return;
    }
    for (lworker *o = l->workers; o; o = o->next)
        if (o->device == h->local_device) {
            local_refuse(w, HGRID__ERROR_CODE__ERROR_DUPLICATE_DEVICE,
                         "device %u of host %s already joined job %s through this agent",
                         h->local_device, l->host, l->job);
            wire_free_envelope(env);
            return;
        }
    w->device = h->local_device;
    if (link_join(l, w, env))
        close_worker(w);
}

static int on_frame(void *ctx, const uint8_t *body, uint32_t len)
{
    lworker *w = ctx;
    if (w->link) {
        // Frames are relayed untouched; Leave is the one the agent must
        // notice: the close that follows it is no death.
        Hgrid__Envelope *env = NULL;
        if (len <= 4096 && (env = wire_unpack(body, len)) &&
            env->msg_case == HGRID__ENVELOPE__MSG_LEAVE)
            w->left = true;
        wire_free_envelope(env);
        if (link_relay(w->link, w, body, len))
            close_worker(w);
        return w->closing;
    }
    Hgrid__Envelope *env = wire_unpack(body, len);
    char why[256];
    const char *bad = env ? wire_check_version(env, why, sizeof why) : "undecodable frame";
    if (bad)
        local_refuse(w, HGRID__ERROR_CODE__ERROR_BAD_FRAME, "%s", bad);
    else if (env->msg_case != HGRID__ENVELOPE__MSG_HELLO)
        local_refuse(w, HGRID__ERROR_CODE__ERROR_BAD_REQUEST,
                     "message %d before a Hello; send Hello first", (int)env->msg_case);
    else {
        hello(w, env); // takes env
        return w->closing;
    }
    wire_free_envelope(env);
    return 1;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init((char *)read_buffer, sizeof read_buffer);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    lworker *w = stream->data;
    if (nread == 0 || w->closing)
        return;
    if (nread < 0) {
        close_worker(w);
        return;
    }
    char err[128];
    if (wire_reader_feed(&w->reader, (const uint8_t *)buf->base, (size_t)nread, on_frame, w, err,
                         sizeof err) < 0 && !w->closing)
        local_refuse(w, HGRID__ERROR_CODE__ERROR_BAD_FRAME, "%s", err);
}

// The peer's uid (from the kernel) must be root, the agent's own, or an
// --allow-uid.
static bool peer_allowed(agent *a, lworker *w, uid_t *uid)
{
    uv_os_fd_t fd;
    struct ucred cred;
    socklen_t len = sizeof cred;
    *uid = (uid_t)-1;
    if (uv_fileno((uv_handle_t *)&w->pipe, &fd) ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len))
        return false;
    *uid = cred.uid;
    if (cred.uid == 0 || cred.uid == geteuid())
        return true;
    for (int i = 0; i < a->opt.num_allow_uids; i++)
        if (a->opt.allow_uids[i] == cred.uid)
            return true;
    return false;
}

void local_accept(agent *a)
{
    lworker *w = calloc(1, sizeof *w);
    if (!w || uv_pipe_init(a->loop, &w->pipe, 0)) {
        free(w);
        agent_log("out of memory accepting a worker");
        return;
    }
    w->pipe.data = w;
    w->a = a;
    agent_local_count(a, +1); // on_closed counts it out
    w->out.stream = (uv_stream_t *)&w->pipe;
    wire_reader_init(&w->reader, WIRE_DEFAULT_MAX_FRAME);
    if (uv_accept((uv_stream_t *)&a->listener, (uv_stream_t *)&w->pipe) ||
        uv_read_start((uv_stream_t *)&w->pipe, on_alloc, on_read)) {
        close_worker(w);
        return;
    }
    uid_t uid;
    if (!peer_allowed(a, w, &uid))
        local_refuse(w, HGRID__ERROR_CODE__ERROR_PERMISSION,
                     "uid %u may not use this agent (it runs as uid %u); start it with "
                     "--allow-uid %u to allow it", (unsigned)uid, (unsigned)geteuid(),
                     (unsigned)uid);
}
