// Connections: reading and framing, sending, deadlines and closing.
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "daemon/conn.h"

#include "daemon/control.h"
#include "daemon/hostlink.h"
#include "daemon/job.h"
#include "daemon/store.h"
#include "daemon/worker_msgs.h"

// One read buffer for the whole loop: frames are handled before the read
// callback returns, and partial frames are copied by the wire_reader.
static uint8_t read_buffer[64 * 1024];

typedef struct {
    uv_write_t req;
    conn *c;
    uint8_t *frame;
    size_t len;
} write_req;

conn *conn_new(server *srv, conn_kind kind)
{
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->srv = srv;
    c->kind = kind;
    c->list = LIST_NONE;
    c->slot = -1;
    c->h.handle.data = c;
    // Until its Hello is accepted a worker may send only small frames, so
    // that unauthenticated peers cannot make gridd hold large partial frames.
    // A control request (a submit's layout) is small, so is hgridctl's buffer.
    uint32_t first = kind == CONN_WORKER ? GRIDD_HELLO_MAX_FRAME : GRIDD_CONTROL_MAX_FRAME;
    wire_reader_init(&c->reader, srv->opt.max_frame > first ? first : srv->opt.max_frame);
    if (kind == CONN_WORKER)
        srv->worker_connections++;
    else if (kind == CONN_CONTROL) // a host link's workers (CONN_REMOTE) hold no descriptor
        srv->control_connections++;
    return c;
}

// "address:port" for the log, looked up on first use.
static const char *conn_peer(conn *c)
{
    if (c->peer[0])
        return c->peer;
    if (c->kind == CONN_CONTROL) {
        snprintf(c->peer, sizeof c->peer, "control");
        return c->peer;
    }
    if (c->kind == CONN_REMOTE) {
        hostlink_peer(c, c->peer, sizeof c->peer);
        return c->peer;
    }
    struct sockaddr_storage sa;
    int len = sizeof sa;
    char host[INET6_ADDRSTRLEN] = "?", port[8] = "?";
    if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&sa, &len) == 0)
        getnameinfo((struct sockaddr *)&sa, (socklen_t)len, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(c->peer, sizeof c->peer, "%s:%s", host, port);
    return c->peer;
}

// The worker's rank for the log; -1 before its job's ranks are assigned.
static int conn_rank(const conn *c)
{
    return c->job && c->job->rec.roster.assigned ? c->slot : -1;
}

// ---- deadline lists

void conn_list_remove(conn *c)
{
    if (c->list == LIST_NONE)
        return;
    conn_list *l = &c->srv->lists[c->list];
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->prev = c->next = NULL;
    if (c->list == LIST_HELLO)
        c->srv->pending--;
    c->list = LIST_NONE;
}

void conn_list_append(conn *c, deadline_list list)
{
    conn_list_remove(c);
    conn_list *l = &c->srv->lists[list];
    c->list = list;
    if (list == LIST_HELLO)
        c->srv->pending++;
    c->deadline = gridd_now_ms() + l->timeout_ms;
    c->prev = l->tail;
    c->next = NULL;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
}

void conn_watch(conn *c)
{
    if (!c->closing && !c->draining)
        conn_list_append(c, LIST_WATCH);
}

void conn_await_ready(conn *c)
{
    if (!c->closing && !c->draining)
        conn_list_append(c, LIST_READY);
}

void conn_unwatch(conn *c)
{
    if (c->list == LIST_WATCH || c->list == LIST_READY)
        conn_list_remove(c);
}

// One line for all connections refused at the caps or dropped without a
// Hello since the last one: a flood of connections must not become a flood
// of log lines.
static void log_refusals(server *srv, int64_t now)
{
    if (srv->refused_pending + srv->refused_full + srv->timed_out + srv->accept_errors +
                srv->refused_unauth == 0 ||
        now - srv->refusals_logged_at < GRIDD_REFUSAL_LOG_MS)
        return;
    if (srv->refused_unauth) {
        gridd_log_at(GRIDD_WARN, NULL, -1, "refused %d connections before an accepted Hello "
                     "or control request (last: peer=%s reason=\"%s\")", srv->refused_unauth,
                     srv->refused_unauth_peer, srv->refused_unauth_reason);
        srv->refused_unauth = 0;
        srv->refusals_logged_at = now;
        if (srv->refused_pending + srv->refused_full + srv->timed_out + srv->accept_errors == 0)
            return;
    }
    char accept_err[128] = "";
    if (srv->accept_errors)
        snprintf(accept_err, sizeof accept_err, ", %d failed accepts (last: %s)",
                 srv->accept_errors, uv_strerror(srv->last_accept_error));
    gridd_log_at(GRIDD_WARN, NULL, -1,
                 "refused connections: %d without a Hello within %.3g s, %d dropped at "
                 "--max-pending %d (oldest first), %d over --max-connections %d%s",
                 srv->timed_out, srv->opt.hello_timeout, srv->refused_pending,
                 srv->opt.max_pending, srv->refused_full, srv->opt.max_connections, accept_err);
    srv->refused_pending = srv->refused_full = srv->timed_out = srv->accept_errors = 0;
    srv->refusals_logged_at = now;
}

// The head of list if its deadline passed even after reading what its
// socket holds; NULL when no connection on list is overdue.
static conn *expired(server *srv, deadline_list list, int64_t now)
{
    conn *c;
    while ((c = srv->lists[list].head) && c->deadline <= now) {
        conn_read_now(c); // a frame restarts the deadline (moves c) or fails it
        if (srv->lists[list].head == c && c->deadline <= now)
            return c;
    }
    return NULL;
}

void conn_sweep(server *srv)
{
    int64_t now = gridd_now_ms();
    conn *c;
    if ((c = srv->lists[LIST_HELLO].head) && c->deadline <= now) {
        char message[128];
        snprintf(message, sizeof message, "no Hello within %.3g s; send Hello first",
                 srv->opt.hello_timeout);
        for (; (c = srv->lists[LIST_HELLO].head) && c->deadline <= now; srv->timed_out++) {
            conn_refuse(c, HGRID__ERROR_CODE__ERROR_TIMEOUT, message);
            srv->metrics.refused[REFUSED_HELLO_TIMEOUT]++;
        }
    }
    // A worker is silent only if nothing it sent waits in its socket: after
    // a stalled loop (a huge submit, a slow disk) its heartbeats are queued
    // there, unread. Each overdue connection is read once, then judged.
    while ((c = expired(srv, LIST_WATCH, now))) {
        char reason[128];
        snprintf(reason, sizeof reason, "silent for more than %.3g s", srv->opt.heartbeat_timeout);
        srv->metrics.heartbeat_timeouts++;
        conn_close(c, reason);
    }
    while ((c = expired(srv, LIST_READY, now))) {
        char reason[128];
        snprintf(reason, sizeof reason, "not Ready %.3g s after its Assignment",
                 srv->opt.ready_timeout);
        srv->metrics.ready_timeouts++;
        conn_close(c, reason);
    }
    while ((c = srv->lists[LIST_LINGER].head) && c->deadline <= now)
        conn_close(c, "no EOF after the final message");
    while ((c = srv->lists[LIST_CONTROL].head) && c->deadline <= now)
        conn_refuse(c, HGRID__ERROR_CODE__ERROR_TIMEOUT, "control connection idle too long");
    log_refusals(srv, now);
}

// ---- closing

static void on_closed(uv_handle_t *h)
{
    conn *c = h->data;
    wire_reader_free(&c->reader);
    if (c->busy)
        c->closed = true; // freed when its work is done
    else
        free(c);
}

void conn_close(conn *c, const char *reason)
{
    if (c->closing)
        return;
    c->closing = true;
    conn_list_remove(c);
    store_conn_gone(c);
    if (c->job)
        job_worker_gone(c, reason);
    if (c->kind == CONN_REMOTE) {
        hostlink_drop(c);
        return;
    }
    if (c->link)
        hostlink_closed(c, reason);
    else if (reason && !c->draining && c->kind == CONN_WORKER && gridd_log_enabled(GRIDD_INFO))
        gridd_log_at(GRIDD_INFO, NULL, -1, "connection closed peer=%s reason=\"%s\"",
                     conn_peer(c), reason);
    // uv_close closes the descriptor now: the caps count open descriptors
    // (a burst of accepts and refusals in one loop iteration frees each slot
    // at once, not when the close callbacks run).
    if (c->kind == CONN_WORKER)
        c->srv->worker_connections--;
    else if (c->kind == CONN_CONTROL)
        c->srv->control_connections--;
    uv_close(&c->h.handle, on_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    free(req);
}

void conn_finish(conn *c)
{
    if (c->closing || c->draining)
        return;
    c->draining = true;
    if (c->job)
        job_worker_gone(c, "connection finished");
    if (c->kind == CONN_REMOTE) { // the agent closes its socket after what was sent
        conn_list_remove(c);
        hostlink_drop(c);
        return;
    }
    if (c->link)
        hostlink_closed(c, "connection finished");
    conn_list_append(c, LIST_LINGER);
    uv_shutdown_t *req = malloc(sizeof *req);
    if (!req || uv_shutdown(req, &c->h.stream, on_shutdown)) {
        free(req);
        conn_close(c, NULL);
    }
}

void conn_fail(conn *c, Hgrid__ErrorCode code, const char *fmt, ...)
{
    if (c->closing || c->draining)
        return;
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    if (!conn_trusted(c)) {
        // Counted until closed (--max-pending): no linger, and one summary
        // line a second however many are refused.
        server *srv = c->srv;
        srv->refused_unauth++;
        snprintf(srv->refused_unauth_peer, sizeof srv->refused_unauth_peer, "%s", conn_peer(c));
        snprintf(srv->refused_unauth_reason, sizeof srv->refused_unauth_reason, "%.159s", message);
        conn_refuse(c, code, message);
        return;
    }
    gridd_log_at(GRIDD_WARN, c->job, conn_rank(c), "refused peer=%s reason=\"%s\"",
                 conn_peer(c), message);
    Hgrid__Envelope env;
    Hgrid__Error error;
    wire_envelope_init(&env);
    hgrid__error__init(&error);
    error.code = code;
    error.message = message;
    env.msg_case = HGRID__ENVELOPE__MSG_ERROR;
    env.error = &error;
    if (c->job)
        job_worker_gone(c, message);
    if (conn_send(c, &env) == 0)
        conn_finish(c);
}

void conn_refuse(conn *c, Hgrid__ErrorCode code, const char *message)
{
    if (c->closing || c->draining)
        return;
    Hgrid__Envelope env;
    Hgrid__Error error;
    wire_envelope_init(&env);
    hgrid__error__init(&error);
    error.code = code;
    error.message = (char *)message;
    env.msg_case = HGRID__ENVELOPE__MSG_ERROR;
    env.error = &error;
    uint8_t frame[1024];
    size_t len = wire_pack_into(&env, frame, sizeof frame);
    if (len > 0) { // best effort: a fresh socket has room
        metrics_frame_out(&c->srv->metrics, &env, len);
        uv_buf_t buf = uv_buf_init((char *)frame, (unsigned)len);
        uv_try_write(&c->h.stream, &buf, 1);
    }
    conn_close(c, NULL);
}

bool conn_trusted(const conn *c)
{
    // The control socket's mode admits local users only: a refused one
    // (SO_PEERCRED) gets its line, a worker peer not before its Hello.
    return c->kind == CONN_CONTROL || c->job != NULL || c->authenticated;
}

// ---- sending

static void on_written(uv_write_t *req, int status)
{
    write_req *w = (write_req *)req;
    w->c->queued -= w->len;
    if (status < 0 && status != UV_ECANCELED)
        conn_close(w->c, uv_strerror(status));
    free(w->frame);
    free(w);
}

// Frames are packed here; only what the socket does not take at once is
// copied out for uv_write.
static uint8_t send_buffer[64 * 1024];

static int write_frame(conn *c, const uint8_t *frame, size_t len, uint8_t *heap, int msg_case);

int conn_send(conn *c, const Hgrid__Envelope *env)
{
    if (c->closing || c->draining)
        return -1;
    if (c->kind == CONN_REMOTE)
        return hostlink_send(c, env);
    uint8_t *frame = send_buffer, *heap = NULL;
    size_t len = wire_pack_into(env, send_buffer, sizeof send_buffer);
    if (len == 0 && (len = wire_pack(env, &heap)) > 0)
        frame = heap; // larger than the buffer (a JobInfo of a big job)
    if (len == 0) {
        conn_close(c, "out of memory packing a frame");
        return -1;
    }
    metrics_frame_out(&c->srv->metrics, env, len);
    return write_frame(c, frame, len, heap, (int)env->msg_case);
}

int conn_send_frame(conn *c, const uint8_t *frame, size_t len, int msg_case)
{
    if (c->closing || c->draining)
        return -1;
    Hgrid__Envelope env; // for the metrics: its type
    wire_envelope_init(&env);
    env.msg_case = (Hgrid__Envelope__MsgCase)msg_case;
    metrics_frame_out(&c->srv->metrics, &env, len);
    return write_frame(c, frame, len, NULL, msg_case);
}

// Writes a packed frame (heap: its malloc'd copy, freed here, or NULL).
static int write_frame(conn *c, const uint8_t *frame, size_t len, uint8_t *heap, int msg_case)
{
    if (gridd_log_enabled(GRIDD_DEBUG))
        gridd_log_at(GRIDD_DEBUG, c->job, conn_rank(c),
                     "frame sent peer=%s type=%s bytes=%zu", conn_peer(c),
                     metrics_message_name(msg_case), len);
    // Straight to the socket when nothing is queued; the rest goes through
    // uv_write and is freed in its callback.
    size_t done = 0;
    if (c->queued == 0) {
        uv_buf_t buf = uv_buf_init((char *)frame, (unsigned)len);
        int n = uv_try_write(&c->h.stream, &buf, 1);
        if (n > 0)
            done = (size_t)n;
        else if (n != UV_EAGAIN) {
            free(heap);
            conn_close(c, uv_strerror(n));
            return -1;
        }
    }
    if (done == len) {
        free(heap);
        return 0;
    }
    if (c->queued > 0 && c->queued + (len - done) > GRIDD_SLOW_CONSUMER) {
        free(heap);
        gridd_log_at(GRIDD_WARN, c->job, conn_rank(c),
                     "dropped: not reading peer=%s queued=%zu", conn_peer(c), c->queued);
        conn_close(c, "slow consumer");
        return -1;
    }
    write_req *w = malloc(sizeof *w);
    uint8_t *rest = malloc(len - done);
    if (!w || !rest) {
        free(w);
        free(rest);
        free(heap);
        conn_close(c, "out of memory queueing a frame");
        return -1;
    }
    memcpy(rest, frame + done, len - done);
    free(heap);
    w->c = c;
    w->frame = rest;
    w->len = len - done;
    uv_buf_t buf = uv_buf_init((char *)rest, (unsigned)w->len);
    int rc = uv_write(&w->req, &c->h.stream, &buf, 1, on_written);
    if (rc) {
        free(rest);
        free(w);
        conn_close(c, uv_strerror(rc));
        return -1;
    }
    c->queued += w->len;
    return 0;
}

// ---- reading

static int on_frame(void *ctx, const uint8_t *body, uint32_t len)
{
    conn *c = ctx;
    Hgrid__Envelope *env = wire_unpack(body, len);
    if (!env) {
        conn_fail(c, HGRID__ERROR_CODE__ERROR_BAD_FRAME,
                  "undecodable %u-byte frame; send one hgrid.Envelope per frame, "
                  "no string holding a NUL byte", len);
        return 1;
    }
    metrics_frame_in(&c->srv->metrics, (int)env->msg_case);
    if (gridd_log_enabled(GRIDD_DEBUG))
        gridd_log_at(GRIDD_DEBUG, c->job, conn_rank(c),
                     "frame received peer=%s type=%s bytes=%u", conn_peer(c),
                     metrics_message_name((int)env->msg_case), len);
    char why[256];
    if (wire_check_version(env, why, sizeof why)) {
        Hgrid__ErrorCode code = env->version != HGRID__VERSION__VERSION_CURRENT
                                    ? HGRID__ERROR_CODE__ERROR_BAD_VERSION
                                    : HGRID__ERROR_CODE__ERROR_BAD_REQUEST;
        conn_fail(c, code, "%s", why);
    } else if (c->kind == CONN_CONTROL) {
        conn_list_append(c, LIST_CONTROL);
        control_handle(c, env);
    } else {
        if (c->list == LIST_WATCH)
            conn_watch(c);
        worker_handle(c, env);
    }
    wire_free_envelope(env);
    return c->closing || c->draining;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init((char *)read_buffer, sizeof read_buffer);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = stream->data;
    if (nread > 0) {
        c->srv->metrics.bytes_in += (uint64_t)nread;
        if (c->draining || c->closing)
            return;
        char err[128];
        if (wire_reader_feed(&c->reader, (const uint8_t *)buf->base, (size_t)nread, on_frame, c,
                             err, sizeof err) < 0)
            conn_fail(c, HGRID__ERROR_CODE__ERROR_BAD_FRAME, "%s", err);
        return;
    }
    if (nread == 0)
        return; // nothing to read this time
    if (nread == UV_EOF && wire_reader_partial(&c->reader) && !c->draining)
        gridd_log_at(GRIDD_WARN, c->job, conn_rank(c),
                     "truncated frame at EOF peer=%s", conn_peer(c));
    conn_close(c, nread == UV_EOF ? "closed by peer" : uv_strerror((int)nread));
}

void conn_read_now(conn *c)
{
    uv_os_fd_t fd;
    if (c->closing || c->draining || uv_fileno(&c->h.handle, &fd))
        return;
    ssize_t n = recv(fd, read_buffer, sizeof read_buffer, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    uv_buf_t buf = uv_buf_init((char *)read_buffer, sizeof read_buffer);
    on_read(&c->h.stream, n > 0 ? n : n == 0 ? UV_EOF : uv_translate_sys_error(errno), &buf);
}

void conn_start(conn *c)
{
    conn_list_append(c, c->kind == CONN_WORKER ? LIST_HELLO : LIST_CONTROL);
    int rc = uv_read_start(&c->h.stream, on_alloc, on_read);
    if (rc)
        conn_close(c, uv_strerror(rc));
}
