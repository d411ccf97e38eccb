// daemon/notify.c against a socket of our own standing in for systemd: the
// messages arrive byte for byte at a path and at an abstract '@' name,
// nothing is sent without NOTIFY_SOCKET, bad addresses fail, WATCHDOG_PID
// decides whose watchdog it is, and the loop's timer pings at half the
// interval.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/notify.h"
#include "tests/check.h"

// A datagram socket bound to name ("/path" or "@abstract"); -1 on failure.
static int bind_socket(const char *name)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(name);
    memcpy(sa.sun_path, name, len);
    if (name[0] == '@')
        sa.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, (socklen_t)(sizeof sa.sun_family + len))) {
        perror("bind");
        return -1;
    }
    return fd;
}

// The next datagram, or "" if none is waiting.
static const char *receive(int fd)
{
    static char buf[2048];
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static void test_send(const char *name)
{
    int fd = bind_socket(name);
    CHECK(fd >= 0, "bind %s", name);
    setenv("NOTIFY_SOCKET", name, 1);
    CHECK_EQ(notify_send("READY=1\nSTATUS=serving on %s", "0.0.0.0:7420"), 0);
    CHECK(!strcmp(receive(fd), "READY=1\nSTATUS=serving on 0.0.0.0:7420"), "%s: got '%s'", name,
          receive(fd));
    CHECK_EQ(notify_send("STOPPING=1"), 0);
    CHECK(!strcmp(receive(fd), "STOPPING=1"), "%s: STOPPING", name);
    CHECK(!strcmp(receive(fd), ""), "%s: one datagram per message", name);
    close(fd);
    if (name[0] == '/')
        unlink(name);
}

static void on_stop(uv_timer_t *t)
{
    uv_stop(t->loop);
}

static void close_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

// Runs a loop with the watchdog for run_ms; returns how many WATCHDOG=1 came.
static int count_pings(int fd, int run_ms, int *started)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    int owner;
    loop.data = &owner;
    *started = notify_watchdog_start(&loop);
    uv_timer_t stop;
    uv_timer_init(&loop, &stop);
    uv_timer_start(&stop, on_stop, (uint64_t)run_ms, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_walk(&loop, close_handle, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ(uv_loop_close(&loop), 0);
    int pings = 0;
    const char *m;
    while (*(m = receive(fd))) {
        CHECK(!strcmp(m, "WATCHDOG=1"), "unexpected message '%s'", m);
        pings++;
    }
    return pings;
}

int main(void)
{
    char path[] = "/tmp/hgrid-notify-XXXXXX";
    CHECK(mkdtemp(path) != NULL, "mkdtemp");
    char sock[160], abstract[64];
    snprintf(sock, sizeof sock, "%s/notify", path);
    snprintf(abstract, sizeof abstract, "@hgrid-test-notify-%d", (int)getpid());
    test_send(sock);
    test_send(abstract);

    unsetenv("NOTIFY_SOCKET");
    CHECK_EQ(notify_send("READY=1"), 0); // not under systemd: nothing to do
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    CHECK_EQ(notify_send("READY=1"), -1);
    setenv("NOTIFY_SOCKET", "/nonexistent/hgrid/notify", 1);
    CHECK_EQ(notify_send("READY=1"), -1);

    char pid[32], other[32];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    snprintf(other, sizeof other, "%d", (int)getpid() + 1);
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    CHECK_EQ(notify_watchdog_usec(), 0);
    setenv("WATCHDOG_USEC", "200000", 1);
    CHECK_EQ(notify_watchdog_usec(), 200000); // no WATCHDOG_PID: ours
    setenv("WATCHDOG_PID", other, 1);
    CHECK_EQ(notify_watchdog_usec(), 0);
    setenv("WATCHDOG_PID", pid, 1);
    CHECK_EQ(notify_watchdog_usec(), 200000);
    setenv("WATCHDOG_USEC", "20s", 1);
    CHECK_EQ(notify_watchdog_usec(), 0);

    // 200 ms watchdog: a ping every 100 ms, so 4 or so in 450 ms.
    int fd = bind_socket(sock);
    setenv("NOTIFY_SOCKET", sock, 1);
    setenv("WATCHDOG_USEC", "200000", 1);
    int started, pings = count_pings(fd, 450, &started);
    CHECK_EQ(started, 1);
    CHECK(pings >= 2 && pings <= 5, "%d pings in 450 ms at a 100 ms period", pings); // a busy machine delays some
    unsetenv("WATCHDOG_USEC");
    pings = count_pings(fd, 150, &started);
    CHECK_EQ(started, 0);
    CHECK_EQ(pings, 0);
    close(fd);
    unlink(sock);
    rmdir(path);
    return check_summary("test_daemon_notify");
}
