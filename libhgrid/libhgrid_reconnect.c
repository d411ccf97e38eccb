// libhgrid: reconnecting to gridd after the connection dropped (gridd was
// restarted, or the network blinked). Attempts are non-blocking so that a
// training loop calling hgrid_heartbeat / hgrid_poll never waits on them;
// they back off exponentially with jitter, so that thousands of workers do
// not all knock at once, and go to the address of the first connection.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "libhgrid/libhgrid_impl.h"
#include "util/clock.h"

#define FIRST_DELAY_S 0.05
#define MAX_DELAY_S 2.0
#define ATTEMPT_S 2.0   // a connect() still pending this long has failed
#define CONNECTING_WAKE_MS 10
#define DEFAULT_TOTAL_S 60.0
// A reconnection ends the outage once gridd has sent a frame on it or it
// has stayed up this long (a resumed generation hears nothing from gridd):
// an address that accepts and then drops at once (a proxy whose backend is
// down) keeps the backoff growing and the give-up clock running from the
// first loss; one that holds connections longer is tried once per STABLE_S.
#define STABLE_S 1.0

// One line on stderr per change of the reconnection's state.
static void say(const hgrid_worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const hgrid_worker *w, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "hgrid: %s/%d: %s\n", w->hello.host, w->hello.device, line);
}

// Uniform in [0, 1) (xorshift64*).
static double jitter(reconnect_state *rc)
{
    rc->rng ^= rc->rng >> 12;
    rc->rng ^= rc->rng << 25;
    rc->rng ^= rc->rng >> 27;
    return (double)((rc->rng * 0x2545f4914f6cdd1dull) >> 11) / 9007199254740992.0;
}

// The next attempt: 50 ms doubling per failure up to 2 s, each +-50%.
static void schedule(reconnect_state *rc, double now)
{
    double delay = FIRST_DELAY_S;
    for (int i = 0; i < rc->attempts && delay < MAX_DELAY_S; i++)
        delay *= 2;
    if (delay > MAX_DELAY_S)
        delay = MAX_DELAY_S;
    rc->next_at = now + delay * (0.5 + jitter(rc));
}

void hgrid_reconnect_init(hgrid_worker *w, const char *coordinator)
{
    reconnect_state *rc = &w->rc;
    rc->total_s = DEFAULT_TOTAL_S;
    snprintf(rc->coordinator, sizeof rc->coordinator, "%s", coordinator);
    rc->addrlen = sizeof rc->addr;
    if (getpeername(w->fd, (struct sockaddr *)&rc->addr, &rc->addrlen))
        rc->addrlen = 0; // then a loss is final
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    rc->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)getpid() << 40 ^
              (uint64_t)(uintptr_t)w;
    if (!rc->rng)
        rc->rng = 1;
}

void hgrid_set_reconnect(hgrid_worker *w, double total_s)
{
    w->rc.total_s = total_s > 0 ? total_s : 0;
}

static void close_fd(hgrid_worker *w)
{
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
    w->rc.connecting = false;
}

int hgrid_lost(hgrid_worker *w, const char *why, bool same_outage)
{
    reconnect_state *rc = &w->rc;
    if (!w->hello.sent || rc->total_s <= 0 || rc->addrlen == 0)
        return hgrid_fail(w, HGRID_ERR_IO, "lost the connection to gridd: %s", why);
    close_fd(w);
    wire_reader_free(&w->reader); // a partial frame of the old connection
    wire_reader_init(&w->reader, WIRE_DEFAULT_MAX_FRAME);
    double now = now_s();
    rc->lost = true;
    bool unproven = rc->reconnects > 0 && !rc->heard && now - rc->connected_at < STABLE_S;
    if (same_outage) {
        rc->attempts++;
        say(w, "gridd turned the Hello away (%s); trying again", why);
    } else if (unproven) { // accepted, then dropped before gridd proved itself
        rc->attempts++; // one line per attempt: the backoff keeps them apart
        say(w, "lost gridd at %s again (%s) %.3f s into the outage, before it answered; "
               "reconnecting, giving up %.3g s after the first loss", rc->coordinator, why,
            now - rc->lost_at, rc->total_s);
    } else {
        rc->lost_at = now;
        rc->attempts = 0;
        rc->said[0] = '\0';
        say(w, "lost gridd at %s (%s); reconnecting (backoff %.0f ms to %.0f s, giving up after "
               "%.3g s)", rc->coordinator, why, FIRST_DELAY_S * 1000, MAX_DELAY_S, rc->total_s);
    }
    schedule(rc, now);
    return HGRID_OK;
}

static void attempt_failed(hgrid_worker *w, const char *why, double now)
{
    reconnect_state *rc = &w->rc;
    close_fd(w);
    rc->attempts++;
    if (strcmp(rc->said, why) != 0) { // a new kind of failure
        snprintf(rc->said, sizeof rc->said, "%s", why);
        say(w, "gridd at %s not back yet (%s); still trying", rc->coordinator, why);
    }
    schedule(rc, now);
}

// The socket is connected: blocking again, then Hello with rank and generation.
static void connected(hgrid_worker *w, double now)
{
    reconnect_state *rc = &w->rc;
    int flags = fcntl(w->fd, F_GETFL);
    rc->connecting = false;
    if (flags < 0 || fcntl(w->fd, F_SETFL, flags & ~O_NONBLOCK) || hgrid_send_hello(w) != HGRID_OK) {
        attempt_failed(w, "cannot send Hello", now);
        return;
    }
    rc->lost = false;
    rc->reconnects++;
    rc->connected_at = now;
    rc->heard = false;
    char what[96];
    if (w->assigned)
        snprintf(what, sizeof what, "rank %d resuming generation %llu", w->rank,
                 (unsigned long long)w->generation);
    else
        snprintf(what, sizeof what, "waiting for an assignment");
    say(w, "reconnected to gridd at %s after %.3f s (%d failed attempts); Hello again, %s",
        rc->coordinator, now - rc->lost_at, rc->attempts, what);
}

static void start_attempt(hgrid_worker *w, double now)
{
    reconnect_state *rc = &w->rc;
    rc->attempt_at = now;
    w->fd = socket(rc->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (w->fd < 0) {
        attempt_failed(w, strerror(errno), now);
        return;
    }
    wire_watch_peer(w->fd);
    if (connect(w->fd, (struct sockaddr *)&rc->addr, rc->addrlen) == 0) {
        connected(w, now);
        return;
    }
    if (errno != EINPROGRESS) {
        attempt_failed(w, strerror(errno), now);
        return;
    }
    rc->connecting = true;
}

// One non-blocking step: finish or start an attempt when due.
static int step(hgrid_worker *w)
{
    reconnect_state *rc = &w->rc;
    double now = now_s();
    if (now - rc->lost_at >= rc->total_s) {
        close_fd(w);
        return hgrid_fail(w, HGRID_ERR_IO,
                          "lost gridd at %s and could not reconnect within %.3g s (%d attempts; "
                          "last: %s)", rc->coordinator, rc->total_s, rc->attempts,
                          rc->said[0] ? rc->said : "none");
    }
    if (rc->connecting) {
        struct pollfd pfd = {.fd = w->fd, .events = POLLOUT};
        if (poll(&pfd, 1, 0) == 0) {
            if (now - rc->attempt_at >= ATTEMPT_S)
                attempt_failed(w, "connect timed out", now);
            return HGRID_OK;
        }
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &err, &len) || err)
            attempt_failed(w, strerror(err ? err : errno), now);
        else
            connected(w, now);
        return HGRID_OK;
    }
    if (now >= rc->next_at)
        start_attempt(w, now);
    return HGRID_OK;
}

int hgrid_wake_ms(const hgrid_worker *w)
{
    const reconnect_state *rc = &w->rc;
    if (!rc->lost)
        return -1;
    if (rc->connecting)
        return CONNECTING_WAKE_MS;
    double left = rc->next_at - now_s();
    return left <= 0 ? 0 : (int)(left * 1000) + 1;
}

int hgrid_reconnect(hgrid_worker *w, int timeout_ms)
{
    double deadline = timeout_ms < 0 ? -1 : now_s() + timeout_ms / 1000.0;
    for (;;) {
        int st = step(w);
        if (st != HGRID_OK || !w->rc.lost || timeout_ms == 0)
            return st;
        double now = now_s();
        if (deadline >= 0 && now >= deadline)
            return HGRID_ERR_TIMEOUT;
        double until = w->rc.lost_at + w->rc.total_s; // the give-up
        if (deadline >= 0 && deadline < until)
            until = deadline;
        int wait = hgrid_wake_ms(w);
        if ((until - now) * 1000 < wait)
            wait = (int)((until - now) * 1000) + 1;
        struct pollfd pfd = {.fd = w->fd, .events = POLLOUT}; // fd -1 while waiting: a sleep
        poll(&pfd, 1, wait);
    }
}
