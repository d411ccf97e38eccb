// Blocking socket helpers for the command-line clients.
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "wire/wire.h"

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int wire_send(int fd, const Hgrid__Envelope *env)
{
    uint8_t *frame;
    size_t len = wire_pack(env, &frame);
    if (len == 0) {
        errno = ENOMEM;
        return -1;
    }
    int rc = write_all(fd, frame, len);
    free(frame);
    return rc;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

// Reads exactly n bytes before the deadline (-1: none).
static int read_exact(int fd, uint8_t *p, size_t n, long long deadline, char *err, size_t errlen)
{
    while (n > 0) {
        int wait = -1;
        if (deadline >= 0) {
            long long left = deadline - now_ms();
            if (left <= 0) {
                snprintf(err, errlen, "timed out waiting for gridd's reply");
                return -1;
            }
            wait = (int)left;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int ready = poll(&pfd, 1, wait);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready == 0)
            continue; // the deadline check above reports it
        ssize_t r = recv(fd, p, n, 0);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r == 0) {
            snprintf(err, errlen, "connection closed by gridd");
            return -1;
        }
        if (r < 0) {
            snprintf(err, errlen, "receive failed: %s", strerror(errno));
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

Hgrid__Envelope *wire_recv(int fd, uint32_t max_frame, int timeout_ms, char *err, size_t errlen)
{
    long long deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    uint8_t header[WIRE_HEADER_BYTES];
    if (read_exact(fd, header, sizeof header, deadline, err, errlen))
        return NULL;
    uint32_t len = (uint32_t)header[0] << 24 | (uint32_t)header[1] << 16 |
                   (uint32_t)header[2] << 8 | header[3];
    if (len > max_frame) {
        snprintf(err, errlen, "frame of %u bytes exceeds the %u-byte limit", len, max_frame);
        return NULL;
    }
    uint8_t *body = malloc(len ? len : 1);
    if (!body) {
        snprintf(err, errlen, "out of memory for a %u-byte frame", len);
        return NULL;
    }
    Hgrid__Envelope *env = NULL;
    if (read_exact(fd, body, len, deadline, err, errlen) == 0) {
        env = wire_unpack(body, len);
        if (!env)
            snprintf(err, errlen, "undecodable %u-byte frame from gridd", len);
    }
    free(body);
    return env;
}

static int connect_unix(const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(err, errlen, "socket path '%s' is too long (max %zu bytes)", path,
                 sizeof sa.sun_path - 1);
        return -1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        snprintf(err, errlen, "cannot connect to gridd at %s: %s (is gridd running? use --socket PATH)",
                 path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

int wire_split_host_port(const char *addr, char *host, size_t hostlen, const char **port)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || !colon[1])
        return -1;
    const char *h = addr;
    size_t n = (size_t)(colon - addr);
    if (h[0] == '[' && n >= 2 && h[n - 1] == ']') {
        h++;
        n -= 2;
    }
    if (n >= hostlen)
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    *port = colon + 1;
    return 0;
}

int wire_connect(const char *addr, char *err, size_t errlen)
{
    if (strchr(addr, '/'))
        return connect_unix(addr, err, errlen);
    char host[256];
    const char *port;
    if (wire_split_host_port(addr, host, sizeof host, &port)) {
        snprintf(err, errlen, "address '%s' is not HOST:PORT", addr);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai) {
        snprintf(err, errlen, "cannot resolve '%s': %s", addr, gai_strerror(gai));
        return -1;
    }
    int fd = -1, saved = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        saved = errno;
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(err, errlen, "cannot connect to gridd at %s: %s (is gridd listening there?)",
                 addr, strerror(saved));
    return fd;
}

void wire_watch_peer(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
        (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
        return;
    int on = 1, idle_s = 4, interval_s = 2, probes = 3; // 4 + 3 x 2 = 10 s idle
    unsigned timeout_ms = WIRE_PEER_TIMEOUT_MS;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof interval_s);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout_ms, sizeof timeout_ms);
}

void wire_default_control_path(char *buf, size_t buflen)
{
    const char *env = getenv("HGRID_CONTROL");
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (env && *env)
        snprintf(buf, buflen, "%s", env);
    else if (getuid() == 0)
        snprintf(buf, buflen, "/run/hgrid/gridd.sock");
    else if (xdg && *xdg)
        snprintf(buf, buflen, "%s/hgrid/gridd.sock", xdg);
    else
        snprintf(buf, buflen, "/tmp/hgrid-%u/gridd.sock", (unsigned)getuid());
}
