// sd_notify by hand: the protocol is one AF_UNIX datagram of newline-separated
// assignments, so a dependency on libsystemd is not worth it. The timers
// read the server's counters (gridd.h) from the loop thread they run on.
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/gridd.h"
#include "daemon/notify.h"

static void say_once(const char *socket_name, const char *why)
{
    static int said;
    if (said++)
        return;
    fprintf(stderr, "gridd: cannot notify systemd at NOTIFY_SOCKET=%s: %s (readiness and "
                    "watchdog messages are lost; check the unit's NotifyAccess)\n",
            socket_name, why);
}

int notify_send(const char *fmt, ...)
{
    const char *name = getenv("NOTIFY_SOCKET");
    if (!name || !*name)
        return 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(name);
    if ((name[0] != '/' && name[0] != '@') || len >= sizeof sa.sun_path) {
        say_once(name, "not an absolute path or @abstract name of under 108 bytes");
        return -1;
    }
    memcpy(sa.sun_path, name, len);
    if (name[0] == '@')
        sa.sun_path[0] = '\0'; // abstract: the address is exactly len bytes, no terminator
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);

    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof msg)
        n = (int)strlen(msg);

    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        say_once(name, strerror(errno));
        return -1;
    }
    ssize_t sent = sendto(fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
    int err = errno;
    close(fd);
    if (sent != n) {
        say_once(name, sent < 0 ? strerror(err) : "message cut short");
        return -1;
    }
    return 0;
}

uint64_t notify_watchdog_usec(void)
{
    const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    char *end;
    if (pid && *pid) {
        long p = strtol(pid, &end, 10);
        if (*end || p != (long)getpid())
            return 0; // meant for another process (e.g. our parent)
    }
    if (!usec || !*usec)
        return 0;
    unsigned long long u = strtoull(usec, &end, 10);
    return *end || usec[0] == '-' ? 0 : (uint64_t)u;
}

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    notify_send("WATCHDOG=1");
}

// The server's state in one line, sent with READY=1 and whenever it changes.
static void send_status(const server *srv, const char *also)
{
    static char last[sizeof srv->opt.control + 256];
    char now[sizeof last];
    snprintf(now, sizeof now, "serving workers on %s, hgridctl on %s: %d job%s, %d worker "
             "connection%s", srv->opt.listen, srv->opt.control, srv->num_jobs,
             srv->num_jobs == 1 ? "" : "s", srv->worker_connections,
             srv->worker_connections == 1 ? "" : "s");
    if ((*also || strcmp(now, last)) && notify_send("%sSTATUS=%s", also, now) == 0)
        strcpy(last, now);
}

static void on_status(uv_timer_t *t)
{
    send_status(t->data, "");
}

int notify_ready(uv_loop_t *loop)
{
    static uv_timer_t watchdog, status;
    const char *name = getenv("NOTIFY_SOCKET");
    if (!name || !*name)
        return 0;
    send_status(loop->data, "READY=1\n");
    uv_timer_init(loop, &status);
    status.data = loop->data;
    uv_timer_start(&status, on_status, NOTIFY_STATUS_MS, NOTIFY_STATUS_MS);
    uint64_t usec = notify_watchdog_usec();
    if (!usec)
        return 1;
    // Half the interval (systemd's advice): one late ping is not a restart.
    uint64_t ms = usec / 2000 ? usec / 2000 : 1;
    uv_timer_init(loop, &watchdog);
    watchdog.data = loop->data;
    uv_timer_start(&watchdog, on_watchdog, ms, ms);
    return 2;
}
