// hgrid-swarm's network internals, shared by net.c (direct connections,
// the event loop) and hosts.c (host links).
#ifndef HGRID_SWARM_NET_H
#define HGRID_SWARM_NET_H

#include <sys/epoll.h>
#include <sys/socket.h>

#include "tools/swarm/swarm.h"
#include "util/clock.h"

typedef struct {
    swarm *s;
    int epfd;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    double last_hello; // of the Hellos sent through this net (one per connect thread)
} net;

extern net the_net;

// Marks a worker failed with a one-line reason (kept for the report).
void conn_fail(swarm *s, swarm_conn *c, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
uint64_t next_random(swarm *s);
// Mints req->count random ids as worker c (kept for the checks) into ids;
// 0, or -1 (c failed).
int mint_ids(swarm *s, swarm_conn *c, const Hgrid__MintRequest *req,
             ProtobufCBinaryData ids[ASSIGN_MAX_GROUPS]);
// The Envelope's message field number (= its msg_case); 0 if unsure.
int peek_message(const uint8_t *p, uint32_t len);
// Towards a loopback gridd: binds fd to its own 127.x source address per
// few connections (i: the connection's number).
int spread_source(const net *n, int fd, int i);
// Feeds what fd holds to reader's on_frame (a connection or a host link;
// level-triggered: at most one buffer beyond what arrived). 0: go on
// watching; 1: the peer closed (why says how); -1: a bad frame (why).
// The caller drops fd from the event set on either.
int read_frames(net *n, int fd, wire_reader *reader, wire_frame_fn on_frame, void *ctx,
                char *why, size_t whylen);
// Runs the event loop until done(s) or the deadline; 0, or -1 on timeout.
int run_until(net *n, int (*done)(const swarm *), double deadline);
int all_settled(const swarm *s);
int all_released(const swarm *s);

// ---- host links (hosts.c)
void hosts_connect(net *n, int h);               // opens host h's link and sends its HostHello
void hosts_event(net *n, const struct epoll_event *ev);
void hosts_finish(net *n);                        // leaves (or waits for Release) and closes

#endif
