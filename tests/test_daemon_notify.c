// daemon/notify.c against a socket of our own standing in for systemd: the
// messages arrive byte for byte at a path and at an abstract '@' name,
// nothing is sent without NOTIFY_SOCKET, bad addresses fail, WATCHDOG_PID
// decides whose watchdog it is, READY=1 carries the server's status, the
// loop's timer pings at half the interval and the status is sent again when
// it changes.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/gridd.h"
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

// Midway: a job and a worker arrive, so the status changes once.
static void on_change(uv_timer_t *t)
{
    server *srv = t->loop->data;
    srv->num_jobs = 1;
    srv->worker_connections = 1;
}

static void close_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

typedef struct {
    int started, ready, pings, statuses;
    char ready_msg[512], status_msg[512];
} run_result;

// Runs gridd's notify timers on a loop for run_ms, the server changing at
// 100 ms; tallies what the socket received.
static run_result run_loop(int fd, int run_ms)
{
    run_result r = {0};
    server srv = {.opt = {.listen = "0.0.0.0:7420", .control = "/run/hgrid/gridd.sock"}};
    uv_loop_t loop;
    uv_loop_init(&loop);
    loop.data = &srv;
    r.started = notify_ready(&loop);
    uv_timer_t stop, change;
    uv_timer_init(&loop, &stop);
    uv_timer_init(&loop, &change);
    stop.data = change.data = &srv;
    uv_timer_start(&stop, on_stop, (uint64_t)run_ms, 0);
    uv_timer_start(&change, on_change, 100, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_walk(&loop, close_handle, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ(uv_loop_close(&loop), 0);
    const char *m;
    while (*(m = receive(fd))) {
        if (!strcmp(m, "WATCHDOG=1")) {
            r.pings++;
        } else if (!strncmp(m, "READY=1\n", 8)) {
            r.ready++;
            snprintf(r.ready_msg, sizeof r.ready_msg, "%s", m);
        } else if (!strncmp(m, "STATUS=", 7)) {
            r.statuses++;
            snprintf(r.status_msg, sizeof r.status_msg, "%s", m);
        } else {
            CHECK(0, "unexpected message '%s'", m);
        }
    }
    return r;
}

int main(void)
{
    // A private directory for the test's socket, named by the process (a
    // leftover of a crashed run with the same pid is removed first).
    char path[64], sock[160], abstract[64];
    snprintf(path, sizeof path, "/tmp/hgrid-notify-%d", (int)getpid());
    snprintf(sock, sizeof sock, "%s/notify", path);
    unlink(sock);
    rmdir(path);
    CHECK(mkdir(path, 0700) == 0, "mkdir %s", path);
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

    // READY=1 with the status at once; a 400 ms watchdog pings every 200 ms,
    // so about 6 in 1250 ms; the status checked each second changed once.
    int fd = bind_socket(sock);
    setenv("NOTIFY_SOCKET", sock, 1);
    setenv("WATCHDOG_USEC", "400000", 1);
    run_result r = run_loop(fd, 1250);
    CHECK_EQ(r.started, 2);
    CHECK_EQ(r.ready, 1);
    CHECK(!strcmp(r.ready_msg, "READY=1\nSTATUS=serving workers on 0.0.0.0:7420, hgridctl on "
                               "/run/hgrid/gridd.sock: 0 jobs, 0 worker connections"),
          "READY message '%s'", r.ready_msg);
    CHECK(r.pings >= 3 && r.pings <= 7, "%d pings in 1250 ms at a 200 ms period", r.pings);
    CHECK_EQ(r.statuses, 1);
    CHECK(!strcmp(r.status_msg, "STATUS=serving workers on 0.0.0.0:7420, hgridctl on "
                                "/run/hgrid/gridd.sock: 1 job, 1 worker connection"),
          "status message '%s'", r.status_msg);
    // No watchdog asked for: READY and the status timer only.
    unsetenv("WATCHDOG_USEC");
    r = run_loop(fd, 150);
    CHECK_EQ(r.started, 1);
    CHECK_EQ(r.ready, 1);
    CHECK_EQ(r.pings, 0);
    // Not under systemd: nothing starts, nothing is sent.
    unsetenv("NOTIFY_SOCKET");
    r = run_loop(fd, 50);
    CHECK_EQ(r.started, 0);
    CHECK_EQ(r.ready + r.pings + r.statuses, 0);
    close(fd);
    unlink(sock);
    rmdir(path);
    return check_summary("test_daemon_notify");
}
