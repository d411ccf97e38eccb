// libhgrid: the first connection to gridd. A worker may start before gridd
// listens (a batch launcher starts every task at once), so refused,
// unreachable and unresolvable addresses are tried again with backoff and
// jitter until the caller's deadline, as torch's TCPStore clients wait.
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "libhgrid/libhgrid_impl.h"
#include "util/clock.h"

#define FIRST_DELAY_S 0.1
#define MAX_DELAY_S 2.0
#define ATTEMPT_S 5.0   // one connect() waits at most this long
#define PROGRESS_S 10.0 // a line on stderr this often while waiting

int hgrid_split_coordinator(const char *coordinator, char *host, size_t hostlen, char *port,
                            size_t portlen)
{
    const char *h = coordinator, *p = NULL, *colon = strrchr(coordinator, ':');
    size_t n = strlen(coordinator);
    if (coordinator[0] == '[') { // "[V6]" or "[V6]:PORT"
        const char *close = strchr(coordinator, ']');
        if (!close || (close[1] && (close[1] != ':' || !close[2])))
            return -1;
        h = coordinator + 1;
        n = (size_t)(close - h);
        p = close[1] ? close + 2 : NULL;
    } else if (colon && strchr(coordinator, ':') == colon) { // "HOST:PORT"
        if (!colon[1])
            return -1;
        n = (size_t)(colon - coordinator);
        p = colon + 1;
    } // else "HOST" or a bare IPv6 address (two colons or more)
    if (n == 0 || n >= hostlen)
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    char *end;
    long v = p ? strtol(p, &end, 10) : HGRID_DEFAULT_PORT;
    if (p && (*end || end == p || v < 1 || v > 65535))
        return -1;
    snprintf(port, portlen, "%ld", v);
    return 0;
}

// Uniform in [0, 1) (xorshift64*).
static double jitter(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (double)((*state * 0x2545f4914f6cdd1dull) >> 11) / 9007199254740992.0;
}

// connect() within limit_s; 0 or an errno.
static int connect_within(int fd, const struct sockaddr *sa, socklen_t len, double limit_s)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK))
        return errno;
    if (connect(fd, sa, len) != 0) {
        if (errno != EINPROGRESS)
            return errno;
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int ready;
        do
            ready = poll(&pfd, 1, (int)(limit_s * 1000) + 1);
        while (ready < 0 && errno == EINTR);
        if (ready <= 0)
            return ready == 0 ? ETIMEDOUT : errno;
        int err = 0;
        socklen_t elen = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen))
            return errno;
        if (err)
            return err;
    }
    return fcntl(fd, F_SETFL, flags) ? errno : 0;
}

// One attempt at every address host resolves to. The fd, or -1 with why.
static int attempt(const char *host, const char *port, double limit_s, char *why, size_t len)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai) {
        snprintf(why, len, "cannot resolve %.100s: %s", host,
                 gai == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai));
        return -1;
    }
    int fd = -1, saved = 0;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        if ((saved = connect_within(fd, ai->ai_addr, ai->ai_addrlen, limit_s)) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(why, len, "%s", strerror(saved));
    return fd;
}

// The host's agent socket: HGRID_AGENT_SOCKET (a path; "none": never),
// else the default path when something listens there. NULL: go direct.
static const char *agent_socket(void)
{
    const char *env = getenv("HGRID_AGENT_SOCKET");
    if (env && *env)
        return strcmp(env, "none") ? env : NULL;
    struct stat st;
    return stat(WIRE_DEFAULT_AGENT_SOCKET, &st) == 0 && S_ISSOCK(st.st_mode)
               ? WIRE_DEFAULT_AGENT_SOCKET : NULL;
}

// Through this host's agent, which holds the one link to gridd.
static hgrid_worker *connect_agent(const char *agent, const char *coordinator, char *err,
                                   size_t errlen)
{
    char why[256];
    int fd = wire_connect(agent, why, sizeof why);
    if (fd < 0) {
        snprintf(err, errlen, "cannot reach this host's hgrid-agent at %s: %s (start it, or set "
                 "HGRID_AGENT_SOCKET=none to connect to gridd directly)", agent, why);
        return NULL;
    }
    hgrid_worker *w = hgrid_worker_new(fd, coordinator, err, errlen);
    if (w)
        w->via_agent = true;
    return w;
}

hgrid_worker *hgrid_connect_wait(const char *coordinator, double timeout_s, char *err,
                                 size_t errlen)
{
    const char *agent = agent_socket();
    if (agent)
        return connect_agent(agent, coordinator, err, errlen);
    if (strchr(coordinator, '/')) { // a Unix socket (tests)
        int fd = wire_connect(coordinator, err, errlen);
        return fd < 0 ? NULL : hgrid_worker_new(fd, coordinator, err, errlen);
    }
    char host[256], port[8], addr[300], why[256];
    if (hgrid_split_coordinator(coordinator, host, sizeof host, port, sizeof port)) {
        snprintf(err, errlen, "coordinator address '%.200s' is not HOST, HOST:PORT or [IPV6]:PORT",
                 coordinator);
        return NULL;
    }
    snprintf(addr, sizeof addr, strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
    double start = now_s(), next_line = start + PROGRESS_S, delay = FIRST_DELAY_S;
    uint64_t rng = (uint64_t)getpid() << 32 ^ (uint64_t)(start * 1e9);
    int attempts = 0;
    for (;;) {
        double left = start + timeout_s - now_s();
        int fd = attempt(host, port, left > ATTEMPT_S || left <= 0 ? ATTEMPT_S : left, why,
                         sizeof why);
        attempts++;
        if (fd >= 0) {
            if (attempts > 1)
                fprintf(stderr, "hgrid: connected to gridd at %s after %.1f s (%d attempts)\n",
                        addr, now_s() - start, attempts);
            hgrid_worker *w = hgrid_worker_new(fd, addr, err, errlen);
            if (w && timeout_s > 0)
                hgrid_set_reconnect(w, timeout_s);
            return w;
        }
        double now = now_s();
        if (now - start >= timeout_s) {
            if (timeout_s > 0)
                snprintf(err, errlen, "no gridd at %s within %.3g s (%d attempts; last: %s)",
                         addr, timeout_s, attempts, why);
            else
                snprintf(err, errlen, "cannot connect to gridd at %s: %s (is gridd listening "
                         "there?)", addr, why);
            return NULL;
        }
        if (now >= next_line) {
            fprintf(stderr, "hgrid: waiting for gridd at %s (%s); %.0f s of %.3g s\n", addr, why,
                    now - start, timeout_s);
            next_line += PROGRESS_S;
        }
        double sleep_s = delay * (0.5 + jitter(&rng));
        if (now + sleep_s > start + timeout_s)
            sleep_s = start + timeout_s - now;
        struct timespec ts = {(time_t)sleep_s, (long)((sleep_s - (time_t)sleep_s) * 1e9)};
        nanosleep(&ts, NULL);
        delay = delay * 2 < MAX_DELAY_S ? delay * 2 : MAX_DELAY_S;
    }
}
