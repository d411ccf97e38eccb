// libhgrid: the worker side of the gridd protocol over one TCP connection.
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "libhgrid/libhgrid_impl.h"
#include "util/clock.h"

#define READ_CHUNK 65536
#define MAX_MINT (ASSIGN_MAX_GROUPS)
#define MAX_UNUSED_MINTS 8 // generations in a row minted for without an Assignment

int hgrid_fail(hgrid_worker *w, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->error, sizeof w->error, fmt, ap);
    va_end(ap);
    return status;
}

hgrid_worker *hgrid_connect(const char *coordinator, char *err, size_t errlen)
{
    return hgrid_connect_wait(coordinator, 0, err, errlen);
}

hgrid_worker *hgrid_worker_new(int fd, const char *coordinator, char *err, size_t errlen)
{
    wire_watch_peer(fd);
    hgrid_worker *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        close(fd);
        return NULL;
    }
    w->fd = fd;
    w->rank = -1;
    w->end.loss = HGRID_NO_LOSS;
    wire_reader_init(&w->reader, WIRE_DEFAULT_MAX_FRAME);
    hgrid_reconnect_init(w, coordinator);
    return w;
}

int hgrid_send(hgrid_worker *w, const Hgrid__Envelope *env)
{
    if (w->rc.lost) {
        int rc = hgrid_reconnect(w, 0);
        if (rc != HGRID_OK || w->rc.lost)
            return rc; // gridd is away: nothing to tell it now
    }
    if (wire_send(w->fd, env) != 0) {
        char why[128];
        snprintf(why, sizeof why, "cannot send to gridd: %s", strerror(errno));
        return hgrid_lost(w, why, false);
    }
    return HGRID_OK;
}

int hgrid_send_hello(hgrid_worker *w)
{
    const hello_copy *h = &w->hello;
    Hgrid__Hello hello = HGRID__HELLO__INIT;
    Hgrid__RankRequest req = HGRID__RANK_REQUEST__INIT;
    Hgrid__Resume resume = HGRID__RESUME__INIT;
    hello.job = (char *)h->job;
    hello.token.data = (uint8_t *)h->token;
    hello.token.len = strlen(h->token);
    hello.host = (char *)h->host;
    hello.local_device = (uint32_t)h->device;
    hello.gpu_uuid = (char *)h->gpu_uuid;
    hello.dry_run = h->dry_run;
    if (w->via_agent) // the agent opens its link to the gridd this worker was given
        hello.coordinator = w->rc.coordinator;
    hello.assignment_only = h->mint == NULL;
    hello.counts_ops = w->counts_ops;
    int rank = w->rank >= 0 ? w->rank : h->requested_rank; // after an assignment: its rank
    if (rank >= 0) {
        req.rank = (uint32_t)rank;
        hello.requested_rank = &req;
    }
    if (w->assigned) {
        resume.generation = w->generation;
        resume.ready = w->ready_sent;
        resume.done = w->end.done_sent;
        hello.resume = &resume;
    }
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_HELLO;
    env.hello = &hello;
    if (wire_send(w->fd, &env) != 0)
        return hgrid_fail(w, HGRID_ERR_IO, "cannot send Hello to gridd: %s", strerror(errno));
    return HGRID_OK;
}

static bool copy_field(char *dst, size_t size, const char *src)
{
    return (size_t)snprintf(dst, size, "%s", src ? src : "") < size;
}

int hgrid_hello(hgrid_worker *w, const hgrid_hello_options *opt)
{
    if (!opt->job || !opt->token)
        return hgrid_fail(w, HGRID_ERR_STATE, "hgrid_hello needs a job name and a token");
    if (w->hello.sent)
        return hgrid_fail(w, HGRID_ERR_STATE, "hgrid_hello was called already");
    hello_copy *h = &w->hello;
    if (opt->host)
        copy_field(h->host, sizeof h->host, opt->host);
    else
        hgrid_default_host(h->host, sizeof h->host);
    if (!copy_field(h->job, sizeof h->job, opt->job) ||
        !copy_field(h->token, sizeof h->token, opt->token) ||
        !copy_field(h->gpu_uuid, sizeof h->gpu_uuid, opt->gpu_uuid))
        return hgrid_fail(w, HGRID_ERR_STATE,
                          "job name, token or GPU UUID too long (gridd takes names of 64 bytes "
                          "and tokens of 256)");
    h->device = opt->device;
    h->requested_rank = opt->requested_rank;
    h->dry_run = opt->dry_run;
    h->mint = opt->mint;
    int rc = hgrid_send_hello(w);
    h->sent = rc == HGRID_OK;
    return rc;
}

// ---- receiving: frames are decoded as they arrive and queued in order

static int enqueue(void *ctx, const uint8_t *body, uint32_t len)
{
    hgrid_worker *w = ctx;
    Hgrid__Envelope *env = wire_unpack(body, len);
    if (!env) {
        hgrid_fail(w, HGRID_ERR_IO, "undecodable %u-byte frame from gridd", len);
        return 1;
    }
    wire_printable_envelope(env); // reasons and names reach stderr and logs
    w->rc.heard = true;
    if (w->queue_head + w->queue_len == w->queue_cap) {
        if (w->queue_head > 0) { // slide to the front before growing
            memmove(w->queue, w->queue + w->queue_head, w->queue_len * sizeof *w->queue);
            w->queue_head = 0;
        } else {
            size_t cap = w->queue_cap ? 2 * w->queue_cap : 8;
            Hgrid__Envelope **q = realloc(w->queue, cap * sizeof *q);
            if (!q) {
                wire_free_envelope(env);
                hgrid_fail(w, HGRID_ERR_IO, "out of memory queueing gridd's messages");
                return 1;
            }
            w->queue = q;
            w->queue_cap = cap;
        }
    }
    w->queue[w->queue_head + w->queue_len++] = env;
    return 0;
}

// Reads what arrives within timeout_ms (0: only what is there). Returns
// HGRID_OK (possibly nothing new), HGRID_ERR_TIMEOUT, or HGRID_ERR_IO.
static int fill(hgrid_worker *w, int timeout_ms)
{
    if (w->rc.lost)
        return hgrid_reconnect(w, timeout_ms);
    struct pollfd pfd = {.fd = w->fd, .events = POLLIN};
    int ready;
    do
        ready = poll(&pfd, 1, timeout_ms);
    while (ready < 0 && errno == EINTR);
    if (ready < 0)
        return hgrid_fail(w, HGRID_ERR_IO, "poll failed: %s", strerror(errno));
    if (ready == 0)
        return timeout_ms == 0 ? HGRID_OK : HGRID_ERR_TIMEOUT;
    uint8_t buf[READ_CHUNK];
    ssize_t n = recv(w->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return HGRID_OK;
    if (n <= 0) {
        char why[128];
        snprintf(why, sizeof why, "%s", n == 0 ? "gridd closed the connection" : strerror(errno));
        return hgrid_lost(w, why, false);
    }
    char err[256];
    int rc = wire_reader_feed(&w->reader, buf, (size_t)n, enqueue, w, err, sizeof err);
    if (rc < 0)
        return hgrid_fail(w, HGRID_ERR_IO, "bad frame from gridd: %s", err);
    return rc > 0 ? HGRID_ERR_IO : HGRID_OK; // enqueue stopped it and said why
}

static Hgrid__Envelope *dequeue(hgrid_worker *w)
{
    if (w->queue_len == 0)
        return NULL;
    w->queue_len--;
    return w->queue[w->queue_head++];
}

static long long ms_left(double deadline)
{
    if (deadline < 0)
        return -1;
    double left = deadline - now_s();
    return left <= 0 ? 0 : (long long)(left * 1000.0) + 1;
}

// The next message within the deadline (< 0: none), or NULL with status.
static Hgrid__Envelope *next_message(hgrid_worker *w, double deadline, int *status)
{
    for (;;) {
        Hgrid__Envelope *env = dequeue(w);
        if (env) {
            char buf[256];
            const char *bad = wire_check_version(env, buf, sizeof buf);
            if (!bad)
                return env;
            wire_free_envelope(env);
            *status = hgrid_fail(w, HGRID_ERR_IO, "gridd: %s", bad);
            return NULL;
        }
        long long left = ms_left(deadline);
        if (left == 0) {
            *status = hgrid_fail(w, HGRID_ERR_TIMEOUT, "no assignment from gridd in time");
            return NULL;
        }
        int rc = fill(w, left > 0x7fffffff ? 0x7fffffff : (int)left);
        if (rc == HGRID_ERR_TIMEOUT)
            continue; // the deadline check above reports it
        if (rc != HGRID_OK) {
            *status = rc;
            return NULL;
        }
    }
}

// ---- handling gridd's messages

// Fresh ids for a generation. GPU workers take them from their minter
// (hgrid_nccl_mint: each keeps a bootstrap thread and socket until its group
// forms); dry-run workers, which form no group, draw random bytes.
static int mint_ids(hgrid_worker *w, uint8_t *out, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        uint8_t *id = out + (size_t)i * HGRID_ID_BYTES;
        if (w->hello.dry_run) {
            if (getrandom(id, HGRID_ID_BYTES, 0) != HGRID_ID_BYTES)
                return hgrid_fail(w, HGRID_ERR_IO, "no random bytes for an id: %s",
                                  strerror(errno));
            continue;
        }
        char err[256];
        if (w->hello.mint(id, err, sizeof err) != 0)
            return hgrid_fail(w, HGRID_ERR_IO, "minting an NCCL id failed: %s", err);
    }
    return HGRID_OK;
}

// A MintRequest is obeyed only between generations (no Assignment held,
// or the last one aborted), once per generation (asked again, the same ids
// go back; older generations are ignored), and for at most MAX_UNUSED_MINTS
// generations in a row that never brought an Assignment: whatever gridd
// sends, a worker holds at most MAX_UNUSED_MINTS x MAX_MINT unused ids.
static int mint(hgrid_worker *w, const Hgrid__MintRequest *req)
{
    if (!w->hello.mint)
        return hgrid_fail(w, HGRID_ERR_IO, "gridd asked an assignment-only worker for NCCL ids "
                          "(gridd older than this library?)");
    if (req->count > MAX_MINT)
        return hgrid_fail(w, HGRID_ERR_IO, "gridd asked for %u ids; no worker leads more than %d",
                          req->count, MAX_MINT);
    if (w->assigned)
        return hgrid_fail(w, HGRID_ERR_IO, "gridd asked for ids of generation %llu while "
                          "generation %llu runs, without an Abort",
                          (unsigned long long)req->generation, (unsigned long long)w->generation);
    if (w->minted && req->generation < w->mint_generation)
        return HGRID_OK; // an old request: nothing to do
    bool again = w->minted && req->generation == w->mint_generation;
    if (again && req->count != (uint32_t)w->minted_count)
        return hgrid_fail(w, HGRID_ERR_IO, "gridd asked for %u ids of generation %llu after "
                          "asking for %d", req->count, (unsigned long long)req->generation,
                          w->minted_count);
    if (!again) {
        if (w->unused_mints >= MAX_UNUSED_MINTS)
            return hgrid_fail(w, HGRID_ERR_IO, "gridd asked for ids of %d generations in a row "
                              "that never reached this worker's Assignment", MAX_UNUSED_MINTS);
        free(w->minted);
        w->minted = malloc((size_t)(req->count ? req->count : 1) * HGRID_ID_BYTES);
        w->minted_count = 0;
        if (!w->minted)
            return hgrid_fail(w, HGRID_ERR_IO, "out of memory minting ids");
        int rc = mint_ids(w, w->minted, req->count);
        if (rc != HGRID_OK)
            return rc;
        w->mint_generation = req->generation;
        w->minted_count = (int)req->count;
        w->unused_mints++;
    }
    ProtobufCBinaryData ids[MAX_MINT];
    for (uint32_t i = 0; i < req->count; i++)
        ids[i] = (ProtobufCBinaryData){HGRID_ID_BYTES, w->minted + (size_t)i * HGRID_ID_BYTES};
    Hgrid__MintReply reply = HGRID__MINT_REPLY__INIT;
    reply.generation = req->generation;
    reply.n_ids = req->count;
    reply.ids = ids;
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_MINT_REPLY;
    env.mint_reply = &reply;
    return hgrid_send(w, &env);
}

static void keep_reason(hgrid_worker *w, const char *reason)
{
    snprintf(w->reason, sizeof w->reason, "%s", reason && *reason ? reason : "no reason given");
}

// Answers an Abort: what this worker issued on each group (the counter's
// word; none: nothing).
static void send_op_counts(hgrid_worker *w, uint64_t generation)
{
    int n = w->op_counter ? w->num_groups : 0;
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += (size_t)w->groups[i].pub.size;
    hgrid_group_ops *ops = calloc((size_t)n + 1, sizeof *ops);
    uint64_t *counts = calloc(2 * total + 1, sizeof *counts);
    Hgrid__GroupOps *groups = calloc((size_t)n + 1, sizeof *groups);
    Hgrid__GroupOps **group_ptrs = calloc((size_t)n + 1, sizeof *group_ptrs);
    Hgrid__PeerOps *peers = calloc(total + 1, sizeof *peers);
    Hgrid__PeerOps **peer_ptrs = calloc(total + 1, sizeof *peer_ptrs);
    Hgrid__OpCounts msg = HGRID__OP_COUNTS__INIT;
    msg.generation = generation;
    if (ops && counts && groups && group_ptrs && peers && peer_ptrs) {
        uint64_t *at = counts;
        for (int i = 0; i < n; i++) {
            ops[i].sent = at, at += w->groups[i].pub.size;
            ops[i].received = at, at += w->groups[i].pub.size;
        }
        if (n)
            w->op_counter(w->op_counter_ctx, ops, n);
        size_t np = 0;
        for (int i = 0; i < n; i++) {
            Hgrid__GroupOps *g = &groups[msg.n_groups];
            hgrid__group_ops__init(g);
            g->group = (uint32_t)i;
            g->collectives = ops[i].collectives;
            g->peers = peer_ptrs + np;
            for (int j = 0; j < w->groups[i].pub.size; j++) {
                if (!ops[i].sent[j] && !ops[i].received[j])
                    continue;
                hgrid__peer_ops__init(&peers[np]);
                peers[np].peer = (uint32_t)j;
                peers[np].sent = ops[i].sent[j];
                peers[np].received = ops[i].received[j];
                peer_ptrs[np] = &peers[np];
                np++, g->n_peers++;
            }
            if (g->collectives || g->n_peers) // a group left out issued nothing
                group_ptrs[msg.n_groups++] = g;
        }
        msg.groups = group_ptrs;
    } // out of memory: no report (gridd counts this rank as replaced at its deadline)
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_OP_COUNTS;
    env.op_counts = &msg;
    if (ops && counts && groups && group_ptrs && peers && peer_ptrs)
        hgrid_send(w, &env);
    free(ops), free(counts), free(groups), free(group_ptrs), free(peers), free(peer_ptrs);
}

// Handles one message. Returns HGRID_OK to go on, HGRID_ABORTED /
// HGRID_RELEASED for the caller, a negative status, or 3 for "assigned".
#define ASSIGNED 3
static int handle(hgrid_worker *w, const Hgrid__Envelope *env)
{
    switch (env->msg_case) {
    case HGRID__ENVELOPE__MSG_MINT_REQUEST:
        return mint(w, env->mint_request);
    case HGRID__ENVELOPE__MSG_ASSIGNMENT: {
        int rc = hgrid_take_assignment(w, env->assignment);
        if (rc == HGRID_OK)
            w->end.done_sent = false;
        return rc == HGRID_OK ? ASSIGNED : rc;
    }
    case HGRID__ENVELOPE__MSG_ABORT:
        if (w->assigned && env->abort->generation < w->generation)
            return HGRID_OK; // an old generation's abort, already past
        keep_reason(w, env->abort->reason);
        w->num_lost = 0;
        for (size_t i = 0; i < env->abort->n_lost_ranks && w->num_lost < HGRID_MAX_LOST; i++)
            w->lost[w->num_lost++] = (int)env->abort->lost_ranks[i];
        if (env->abort->n_lost_ranks > HGRID_MAX_LOST)
            w->num_lost = 0; // too many to tell: every communicator goes
        w->assigned = false;
        memset(w->broken, 0, sizeof w->broken);
        w->broken_notices = 0;
        if (w->counts_ops)
            send_op_counts(w, env->abort->generation); // lost with the connection, if it is
        return HGRID_ABORTED;
    case HGRID__ENVELOPE__MSG_ABORT_GROUPS:
        if (!w->counts_ops)
            return hgrid_fail(w, HGRID_ERR_IO, "gridd sent AbortGroups to a worker that does "
                              "not count its operations");
        if (env->abort_groups->generation != w->generation || w->assigned)
            return HGRID_OK; // another generation's
        for (size_t i = 0; i < env->abort_groups->n_groups; i++)
            if (env->abort_groups->groups[i] < (uint32_t)w->num_groups)
                w->broken[env->abort_groups->groups[i]] = true;
        w->broken_notices++;
        return HGRID_OK;
    case HGRID__ENVELOPE__MSG_RELEASE:
        keep_reason(w, env->release->reason);
        hgrid_take_release(w, env->release);
        w->assigned = false;
        return HGRID_RELEASED;
    case HGRID__ENVELOPE__MSG_ERROR:
        // Back too soon: gridd has not yet noticed this worker's old connection.
        if (env->error->code == HGRID__ERROR_CODE__ERROR_DUPLICATE_DEVICE && w->rc.reconnects > 0)
            return hgrid_lost(w, env->error->message, true);
        return hgrid_fail(w, HGRID_ERR_REFUSED, "%s", env->error->message);
    default:
        return hgrid_fail(w, HGRID_ERR_IO, "unexpected message %d from gridd",
                          (int)env->msg_case);
    }
}

int hgrid_wait_assignment(hgrid_worker *w, int timeout_ms)
{
    double deadline = timeout_ms < 0 ? -1 : now_s() + timeout_ms / 1000.0;
    for (;;) {
        int status;
        Hgrid__Envelope *env = next_message(w, deadline, &status);
        if (!env)
            return status;
        int rc = handle(w, env);
        wire_free_envelope(env);
        if (rc == ASSIGNED)
            return HGRID_OK;
        if (rc != HGRID_OK)
            return rc;
    }
}

int hgrid_poll(hgrid_worker *w)
{
    int rc = fill(w, 0);
    if (rc != HGRID_OK)
        return rc;
    Hgrid__Envelope *env;
    while ((env = dequeue(w))) {
        char buf[256];
        const char *bad = wire_check_version(env, buf, sizeof buf);
        rc = bad ? hgrid_fail(w, HGRID_ERR_IO, "gridd: %s", bad) : handle(w, env);
        wire_free_envelope(env);
        if (rc == ASSIGNED)
            return hgrid_fail(w, HGRID_ERR_IO, "gridd sent an assignment without an abort first");
        if (rc != HGRID_OK)
            return rc;
    }
    return HGRID_OK;
}

int hgrid_poll_aborted(hgrid_worker *w)
{
    int rc = fill(w, 0);
    if (rc != HGRID_OK)
        return rc;
    while (w->queue_len && w->queue[w->queue_head]->msg_case != HGRID__ENVELOPE__MSG_ASSIGNMENT) {
        Hgrid__Envelope *env = dequeue(w);
        char buf[256];
        const char *bad = wire_check_version(env, buf, sizeof buf);
        rc = bad ? hgrid_fail(w, HGRID_ERR_IO, "gridd: %s", bad) : handle(w, env);
        wire_free_envelope(env);
        if (rc != HGRID_OK)
            return rc;
    }
    return HGRID_OK;
}

void hgrid_count_ops(hgrid_worker *w, bool on) { w->counts_ops = on; }

void hgrid_set_op_counter(hgrid_worker *w, hgrid_op_counter_fn fn, void *ctx)
{
    w->op_counter = fn;
    w->op_counter_ctx = ctx;
}

bool hgrid_group_broken(const hgrid_worker *w, int i)
{
    return i >= 0 && i < w->num_groups && w->broken[i];
}

int hgrid_broken_notices(const hgrid_worker *w) { return w->broken_notices; }

int hgrid_ready(hgrid_worker *w)
{
    if (!w->assigned)
        return hgrid_fail(w, HGRID_ERR_STATE, "hgrid_ready needs an assignment first");
    Hgrid__Ready ready = HGRID__READY__INIT;
    ready.generation = w->generation;
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_READY;
    env.ready = &ready;
    w->last_beat_s = now_s();
    w->ready_sent = true; // said again in a Hello after a reconnection
    return hgrid_send(w, &env);
}

int hgrid_heartbeat(hgrid_worker *w, uint64_t step, float loss, float throughput)
{
    if (!w->assigned)
        return hgrid_fail(w, HGRID_ERR_STATE, "hgrid_heartbeat needs an assignment first");
    Hgrid__Heartbeat hb = HGRID__HEARTBEAT__INIT;
    hb.generation = w->generation;
    hb.step = step;
    hb.no_loss = isnan(loss);
    hb.loss = hb.no_loss ? 0.0f : loss;
    hb.throughput = throughput;
    w->end.loss = loss;
    w->end.throughput = throughput;
    // The mean over the steps since the last report that advanced; none
    // for the first (it would include the setup since Ready), the last
    // one again while the step stands still.
    double t = now_s();
    if (step > w->last_step) {
        if (w->last_step > 0)
            w->last_step_time_s = (float)((t - w->last_beat_s) / (double)(step - w->last_step));
        w->last_step = step;
        w->last_beat_s = t;
    }
    hb.step_time_s = w->last_step_time_s;
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_HEARTBEAT;
    env.heartbeat = &hb;
    return hgrid_send(w, &env);
}

int hgrid_leave(hgrid_worker *w, const char *reason)
{
    Hgrid__Leave leave = HGRID__LEAVE__INIT;
    leave.reason = (char *)(reason ? reason : "");
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_LEAVE;
    env.leave = &leave;
    w->assigned = false;
    return hgrid_send(w, &env);
}

void hgrid_close(hgrid_worker *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    Hgrid__Envelope *env;
    while ((env = dequeue(w)))
        wire_free_envelope(env);
    free(w->queue);
    wire_reader_free(&w->reader);
    hgrid_drop_assignment(w);
    free(w->minted);
    free(w);
}

int hgrid_fd(const hgrid_worker *w)
{
    return w->fd;
}

const char *hgrid_error(const hgrid_worker *w)
{
    return w->error;
}

const char *hgrid_reason(const hgrid_worker *w)
{
    return w->reason;
}

int hgrid_lost_ranks(const hgrid_worker *w, int *ranks, int max)
{
    int n = w->num_lost < max ? w->num_lost : max;
    memcpy(ranks, w->lost, sizeof *ranks * (size_t)(n > 0 ? n : 0));
    return n;
}

int hgrid_report_comms_lost(hgrid_worker *w, const char *reason)
{
    Hgrid__CommsLost lost = HGRID__COMMS_LOST__INIT;
    lost.generation = w->generation;
    lost.reason = (char *)(reason && *reason ? reason : "no reason given");
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_COMMS_LOST;
    env.comms_lost = &lost;
    return hgrid_send(w, &env);
}

int hgrid_report_checks(hgrid_worker *w, const hgrid_check *checks, int count)
{
    if (!w->assigned)
        return hgrid_fail(w, HGRID_ERR_STATE, "hgrid_report_checks needs an assignment");
    Hgrid__GroupCheck *msgs = calloc((size_t)(count > 0 ? count : 1), sizeof *msgs);
    Hgrid__GroupCheck **ptrs = calloc((size_t)(count > 0 ? count : 1), sizeof *ptrs);
    if (!msgs || !ptrs) {
        free(msgs);
        free(ptrs);
        return hgrid_fail(w, HGRID_ERR_IO, "out of memory for the self-test report");
    }
    for (int i = 0; i < count; i++) {
        hgrid__group_check__init(&msgs[i]);
        msgs[i].name = (char *)checks[i].name;
        msgs[i].ok = checks[i].ok;
        msgs[i].busbw_gbps = checks[i].busbw_gbps;
        msgs[i].detail = (char *)checks[i].detail;
        ptrs[i] = &msgs[i];
    }
    Hgrid__SelfTestReport report = HGRID__SELF_TEST_REPORT__INIT;
    report.generation = w->generation;
    report.n_groups = (size_t)(count > 0 ? count : 0);
    report.groups = ptrs;
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_SELF_TEST;
    env.self_test = &report;
    int rc = hgrid_send(w, &env); // dropped while gridd is away, like a heartbeat
    free(msgs);
    free(ptrs);
    return rc;
}
