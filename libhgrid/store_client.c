// The client side of the job's key-value store: one blocking connection,
// one request at a time, replies matched by id.
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "libhgrid/hgrid.h"
#include "wire/wire.h"

struct hgrid_store {
    int fd;
    wire_reader reader;
    uint64_t next_id, want_id;
    Hgrid__Envelope *reply; // the awaited reply, once read
    uint8_t *value;         // the last reply's value
    size_t value_len;
    char error[512];
};

static int store_fail(hgrid_store *s, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int store_fail(hgrid_store *s, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->error, sizeof s->error, fmt, ap);
    va_end(ap);
    return status;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// Keeps the reply awaited (or an Error); drops replies to requests that
// timed out.
static int keep_frame(void *ctx, const uint8_t *body, uint32_t len)
{
    hgrid_store *s = ctx;
    Hgrid__Envelope *env = wire_unpack(body, len);
    if (!env)
        return 0;
    bool wanted = env->msg_case == HGRID__ENVELOPE__MSG_ERROR ||
                  (env->msg_case == HGRID__ENVELOPE__MSG_STORE_REPLY &&
                   env->store_reply->id == s->want_id);
    if (!wanted || s->reply) {
        wire_free_envelope(env);
        return 0;
    }
    s->reply = env;
    return 0;
}

// Waits for the reply to id: HGRID_OK with *out (the caller frees it).
static int await_reply(hgrid_store *s, uint64_t id, double deadline, Hgrid__Envelope **out)
{
    s->want_id = id;
    while (!s->reply) {
        int wait_ms = -1;
        if (deadline >= 0) {
            double left = deadline - now_s();
            if (left <= 0)
                return store_fail(s, HGRID_ERR_TIMEOUT, "no reply from gridd's store in time");
            wait_ms = (int)(left * 1000.0) + 1;
        }
        struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
        int ready = poll(&pfd, 1, wait_ms);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready < 0)
            return store_fail(s, HGRID_ERR_IO, "poll failed: %s", strerror(errno));
        if (ready == 0)
            continue; // the deadline check says it
        uint8_t buf[65536];
        ssize_t n = recv(s->fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return store_fail(s, HGRID_ERR_IO, "gridd closed the store connection%s%s",
                              n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
        char err[256];
        if (wire_reader_feed(&s->reader, buf, (size_t)n, keep_frame, s, err, sizeof err) < 0)
            return store_fail(s, HGRID_ERR_IO, "bad frame from gridd: %s", err);
    }
    Hgrid__Envelope *env = s->reply;
    s->reply = NULL;
    if (env->msg_case == HGRID__ENVELOPE__MSG_ERROR) {
        int rc = store_fail(s, HGRID_ERR_REFUSED, "%s", env->error->message);
        wire_free_envelope(env);
        return rc;
    }
    *out = env;
    return HGRID_OK;
}

static int send_env(hgrid_store *s, const Hgrid__Envelope *env)
{
    if (wire_send(s->fd, env) != 0)
        return store_fail(s, HGRID_ERR_IO, "cannot send to gridd's store: %s", strerror(errno));
    return HGRID_OK;
}

hgrid_store *hgrid_store_open(const char *coordinator, const char *job, const char *token,
                              char *err, size_t errlen)
{
    if (!job || !token) {
        snprintf(err, errlen, "a store needs the job's name and token");
        return NULL;
    }
    hgrid_store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->fd = wire_connect(coordinator, err, errlen);
    if (s->fd < 0) {
        free(s);
        return NULL;
    }
    wire_reader_init(&s->reader, WIRE_DEFAULT_MAX_FRAME);
    Hgrid__StoreOpen open_msg = HGRID__STORE_OPEN__INIT;
    open_msg.job = (char *)job;
    open_msg.token.data = (uint8_t *)token;
    open_msg.token.len = strlen(token);
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_STORE_OPEN;
    env.store_open = &open_msg;
    Hgrid__Envelope *reply = NULL;
    int rc = send_env(s, &env);
    if (rc == HGRID_OK)
        rc = await_reply(s, 0, now_s() + 30.0, &reply);
    if (rc != HGRID_OK) {
        snprintf(err, errlen, "%s", s->error);
        hgrid_store_close(s);
        return NULL;
    }
    wire_free_envelope(reply);
    s->next_id = 1;
    return s;
}

int hgrid_store_request(hgrid_store *s, hgrid_store_op op, const uint8_t *const *keys,
                        const size_t *key_lens, int num_keys, const uint8_t *value,
                        size_t value_len, const uint8_t *expected, size_t expected_len,
                        int timeout_ms, int64_t *number)
{
    bool many = op == HGRID_STORE_WAIT || op == HGRID_STORE_CHECK;
    if (num_keys < (op == HGRID_STORE_NUM_KEYS ? 0 : 1) || (!many && num_keys > 1))
        return store_fail(s, HGRID_ERR_STATE, "store operation %d takes %s key", (int)op,
                          many ? "at least one" : "one");
    ProtobufCBinaryData list[num_keys > 0 ? num_keys : 1];
    for (int i = 0; i < num_keys; i++)
        list[i] = (ProtobufCBinaryData){key_lens[i], (uint8_t *)keys[i]};
    Hgrid__StoreRequest rq = HGRID__STORE_REQUEST__INIT;
    rq.id = s->next_id++;
    rq.op = (Hgrid__StoreOp)op;
    if (many) {
        rq.n_keys = (size_t)num_keys;
        rq.keys = list;
    } else if (num_keys == 1) {
        rq.key = list[0];
    }
    rq.value = (ProtobufCBinaryData){value_len, (uint8_t *)value};
    rq.expected = (ProtobufCBinaryData){expected_len, (uint8_t *)expected};
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_STORE_REQUEST;
    env.store_request = &rq;
    int rc = send_env(s, &env);
    if (rc != HGRID_OK)
        return rc;
    Hgrid__Envelope *reply;
    rc = await_reply(s, rq.id, timeout_ms < 0 ? -1 : now_s() + timeout_ms / 1000.0, &reply);
    if (rc != HGRID_OK)
        return rc;
    const Hgrid__StoreReply *r = reply->store_reply;
    if (r->error && *r->error) {
        rc = store_fail(s, HGRID_ERR_REFUSED, "gridd's store: %s", r->error);
        wire_free_envelope(reply);
        return rc;
    }
    free(s->value);
    s->value = malloc(r->value.len ? r->value.len : 1);
    if (!s->value) {
        wire_free_envelope(reply);
        s->value_len = 0;
        return store_fail(s, HGRID_ERR_IO, "out of memory for a %zu-byte value", r->value.len);
    }
    memcpy(s->value, r->value.data, r->value.len);
    s->value_len = r->value.len;
    if (number)
        *number = r->number;
    wire_free_envelope(reply);
    return HGRID_OK;
}

const uint8_t *hgrid_store_value(const hgrid_store *s, size_t *len)
{
    *len = s->value_len;
    return s->value;
}

const char *hgrid_store_error(const hgrid_store *s)
{
    return s->error;
}

void hgrid_store_close(hgrid_store *s)
{
    if (!s)
        return;
    if (s->fd >= 0)
        close(s->fd);
    if (s->reply)
        wire_free_envelope(s->reply);
    wire_reader_free(&s->reader);
    free(s->value);
    free(s);
}
