// The kernel's floor for a rendezvous on this machine: N loopback TCP
// connections, made from one thread per CPU as hgrid-swarm makes them (the
// same source-address spread),
// one HELLO_BYTES message each way in, and after all arrived one
// REPLY_BYTES message back on each, from a second single-threaded process
// doing only accept/read/write. No protocol, no parsing, no ids.
// Usage: tcp_floor N [THREADS]   Prints: floor workers=N rendezvous_s=S
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"

#define HELLO_BYTES 155  // what a swarm worker sends (Hello, half a MintReply)
#define REPLY_BYTES 1100 // what it receives (Assignment, half a MintRequest)

static void die(const char *what)
{
    perror(what);
    exit(1);
}

// Accepts n connections, reads one message from each, then replies to all.
static void serve(int listener, int n)
{
    int ep = epoll_create1(0), *fds = malloc(sizeof(int) * (size_t)n), accepted = 0, got = 0;
    static char buf[65536], reply[REPLY_BYTES];
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = listener}, evs[1024];
    if (ep < 0 || !fds || epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev))
        die("tcp_floor: server setup");
    while (got < n) {
        int k = epoll_wait(ep, evs, 1024, -1);
        for (int i = 0; i < k; i++) {
            if (evs[i].data.fd != listener) {
                got += read(evs[i].data.fd, buf, sizeof buf) > 0;
                continue;
            }
            int c;
            while (accepted < n && (c = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                struct epoll_event e = {.events = EPOLLIN, .data.fd = c};
                epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
                fds[accepted++] = c;
            }
        }
    }
    for (int i = 0; i < accepted; i++)
        if (write(fds[i], reply, sizeof reply) != sizeof reply)
            die("tcp_floor: reply");
    pause(); // the client kills us once it has every reply
}

typedef struct {
    struct sockaddr_in addr;
    int ep, *fds, first, end;
    pthread_t thread;
} connect_range;

// Connects [first, end) and sends each its message; those still connecting
// are finished by the event loop.
static void *connect_range_run(void *arg)
{
    connect_range *r = arg;
    static const char hello[HELLO_BYTES];
    for (int i = r->first; i < r->end; i++) {
        int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl((127u << 24 | 18u << 16) + (uint32_t)(i / 128));
        setsockopt(s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (s < 0 || bind(s, (struct sockaddr *)&src, sizeof src))
            die("tcp_floor: socket");
        connect(s, (struct sockaddr *)&r->addr, sizeof r->addr);
        r->fds[i] = s;
        struct epoll_event e = {.events = EPOLLIN | EPOLLOUT, .data.u32 = 0};
        if (send(s, hello, sizeof hello, MSG_NOSIGNAL) == sizeof hello)
            e.events = EPOLLIN;
        e.data.u32 = e.events & EPOLLOUT ? 1u << 31 | (uint32_t)s : (uint32_t)s;
        epoll_ctl(r->ep, EPOLL_CTL_ADD, s, &e);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 0;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = argc > 2 ? atoi(argv[2]) : cpus < 1 ? 1 : cpus > 16 ? 16 : (int)cpus;
    if (n <= 0 || threads < 1 || threads > 16) {
        fprintf(stderr, "usage: tcp_floor N [THREADS (1..16, default one per CPU)]\n");
        return 2;
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) ||
        listen(listener, 4096) || getsockname(listener, (struct sockaddr *)&addr, &len))
        die("tcp_floor: listen");
    pid_t server = fork();
    if (server == 0)
        serve(listener, n);
    close(listener);
    int ep = epoll_create1(0), *fds = malloc(sizeof(int) * (size_t)n);
    static char hello[HELLO_BYTES], buf[65536];
    if (ep < 0 || !fds)
        die("tcp_floor: client setup");
    double t0 = now_s();
    connect_range ranges[16];
    for (int t = 0; t < threads; t++) {
        ranges[t] = (connect_range){addr, ep, fds, (int)((long)n * t / threads),
                                    (int)((long)n * (t + 1) / threads), 0};
        if (t > 0 && pthread_create(&ranges[t].thread, NULL, connect_range_run, &ranges[t]))
            die("tcp_floor: thread");
    }
    connect_range_run(&ranges[0]);
    for (int t = 1; t < threads; t++)
        pthread_join(ranges[t].thread, NULL);
    struct epoll_event evs[1024];
    for (int done = 0; done < n;) {
        int k = epoll_wait(ep, evs, 1024, 0); // busy polling, as hgrid-swarm --busy-poll
        for (int i = 0; i < k; i++) {
            int s = (int)(evs[i].data.u32 & 0x7fffffff);
            if (evs[i].data.u32 >> 31 && (evs[i].events & EPOLLOUT)) { // connected late
                if (send(s, hello, sizeof hello, MSG_NOSIGNAL) != sizeof hello)
                    die("tcp_floor: send");
                struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)s};
                epoll_ctl(ep, EPOLL_CTL_MOD, s, &e);
                continue;
            }
            done += read(s, buf, sizeof buf) > 0; // a 1100-byte reply arrives in one read
        }
    }
    printf("floor workers=%d rendezvous_s=%.3f\n", n, now_s() - t0);
    struct linger reset = {.l_onoff = 1, .l_linger = 0}; // leave no TIME_WAIT behind
    for (int i = 0; i < n; i++) {
        setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
        close(fds[i]);
    }
    kill(server, SIGTERM);
    waitpid(server, NULL, 0);
    return 0;
}
