// The kernel's floor for a rendezvous on this machine: N loopback TCP
// connections, made from one thread per CPU as hgrid-swarm makes them (the
// same source-address spread, the threads claiming 128 at a time, the
// descriptor table grown before),
// one IN-byte message each way in, and after all arrived one OUT-byte
// message back on each, from a second single-threaded process doing only
// accept/read/write. No protocol, no parsing, no ids. The defaults are what
// one worker moves over its own connection; a host link of 8 workers moves
// about 8 times that (rendezvous.sh passes the swarm's measured bytes).
// Usage: tcp_floor N [THREADS [IN OUT]]   Prints: floor workers=N rendezvous_s=S
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
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
#include "util/fd_table.h"

#define HELLO_BYTES 155    // what a swarm worker sends (Hello, half a MintReply)
#define REPLY_BYTES 1100   // what it receives (Assignment, half a MintRequest)
#define MAX_BYTES (1 << 20) // the largest IN or OUT

static int hello_bytes = HELLO_BYTES, reply_bytes = REPLY_BYTES;
static char hello[MAX_BYTES], reply[MAX_BYTES];
#define LISTENER UINT32_MAX // epoll data of the listening socket

static void die(const char *what)
{
    perror(what);
    exit(1);
}

// Reads what is there on s; true once it has `want` bytes in all.
static bool take(int s, int *have, int want)
{
    static char buf[65536];
    ssize_t r;
    while (*have < want && (r = read(s, buf, sizeof buf)) > 0)
        *have += (int)r;
    return *have >= want;
}

// Writes all of buf on a non-blocking socket (a host link's reply may not fit at once).
static void put(int s, const char *buf, int len)
{
    while (len > 0) {
        ssize_t w = send(s, buf, (size_t)len, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN)
            die("tcp_floor: reply");
        if (w > 0)
            buf += w, len -= (int)w;
    }
}

// Accepts n connections, reads one message from each, then replies to all.
static void serve(int listener, int n)
{
    int ep = epoll_create1(0), *fds = malloc(sizeof(int) * (size_t)n), accepted = 0, got = 0;
    int *have = calloc((size_t)n, sizeof(int));
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = LISTENER}, evs[1024];
    if (ep < 0 || !fds || !have || epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev))
        die("tcp_floor: server setup");
    while (got < n) {
        int k = epoll_wait(ep, evs, 1024, -1);
        for (int i = 0; i < k; i++) {
            uint32_t c = evs[i].data.u32;
            if (c != LISTENER) {
                bool had = have[c] >= hello_bytes;
                got += !had && take(fds[c], &have[c], hello_bytes);
                continue;
            }
            int s;
            while (accepted < n && (s = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)accepted};
                fds[accepted++] = s;
                epoll_ctl(ep, EPOLL_CTL_ADD, s, &e);
            }
        }
    }
    for (int i = 0; i < accepted; i++)
        put(fds[i], reply, reply_bytes);
    pause(); // the client kills us once it has every reply
}

typedef struct {
    struct sockaddr_in addr;
    int ep, *fds, *next, n;
    pthread_t thread;
} connect_range;

// Claims 128 connections at a time (one source address each) until none
// is left, as hgrid-swarm does, and sends each its message; those still
// connecting are finished by the event loop.
static void *connect_range_run(void *arg)
{
    connect_range *r = arg;
    for (;;) {
        int first = __atomic_fetch_add(r->next, 128, __ATOMIC_RELAXED);
        if (first >= r->n)
            return NULL;
        for (int i = first; i < first + 128 && i < r->n; i++) {
            int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
            struct sockaddr_in src = {.sin_family = AF_INET};
            src.sin_addr.s_addr = htonl((127u << 24 | 18u << 16) + (uint32_t)(i / 128));
            setsockopt(s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
            if (s < 0 || bind(s, (struct sockaddr *)&src, sizeof src))
                die("tcp_floor: socket");
            connect(s, (struct sockaddr *)&r->addr, sizeof r->addr);
            r->fds[i] = s;
            struct epoll_event e = {.events = EPOLLIN | EPOLLOUT, .data.u32 = 0};
            if (send(s, hello, (size_t)hello_bytes, MSG_NOSIGNAL) == hello_bytes)
                e.events = EPOLLIN;
            e.data.u32 = e.events & EPOLLOUT ? 1u << 31 | (uint32_t)i : (uint32_t)i;
            epoll_ctl(r->ep, EPOLL_CTL_ADD, s, &e);
        }
    }
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 0;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = argc > 2 ? atoi(argv[2]) : cpus < 1 ? 1 : cpus > 16 ? 16 : (int)cpus;
    if (argc > 4)
        hello_bytes = atoi(argv[3]), reply_bytes = atoi(argv[4]);
    if (n <= 0 || threads < 1 || threads > 16 || argc == 4 || argc > 5 || hello_bytes < 1 ||
        hello_bytes > MAX_BYTES || reply_bytes < 1 || reply_bytes > MAX_BYTES) {
        fprintf(stderr, "usage: tcp_floor N [THREADS (1..16, default one per CPU) [IN OUT (bytes, "
                        "default %d %d)]]\n", HELLO_BYTES, REPLY_BYTES);
        return 2;
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    fd_table_reserve(n + 64); // as gridd and hgrid-swarm do (util/fd_table.h)
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
    int *have = calloc((size_t)n, sizeof(int));
    if (ep < 0 || !fds || !have)
        die("tcp_floor: client setup");
    double t0 = now_s();
    connect_range ranges[16];
    int next = 0;
    for (int t = 0; t < threads; t++) {
        ranges[t] = (connect_range){addr, ep, fds, &next, n, 0};
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
            uint32_t c = evs[i].data.u32 & 0x7fffffff;
            int s = fds[c];
            if (evs[i].data.u32 >> 31 && (evs[i].events & EPOLLOUT)) { // connected late
                if (send(s, hello, (size_t)hello_bytes, MSG_NOSIGNAL) != hello_bytes)
                    die("tcp_floor: send");
                struct epoll_event e = {.events = EPOLLIN, .data.u32 = c};
                epoll_ctl(ep, EPOLL_CTL_MOD, s, &e);
                continue;
            }
            bool had = have[c] >= reply_bytes;
            done += !had && take(s, &have[c], reply_bytes);
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
