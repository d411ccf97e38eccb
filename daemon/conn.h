// A connection (worker over TCP or hgridctl over the control socket):
// framing, sending with a bounded queue, deadlines and closing. A worker
// behind an hgrid-agent is a CONN_REMOTE: no socket of its own, its frames
// go through its host link (daemon/hostlink.h).
#ifndef HGRID_DAEMON_CONN_H
#define HGRID_DAEMON_CONN_H

#include "daemon/gridd.h"
#include "wire/wire.h"

typedef struct hostlink hostlink;

typedef enum { CONN_WORKER, CONN_CONTROL, CONN_REMOTE } conn_kind;

struct conn {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h; // first: the handle's address is the conn's
    server *srv;
    conn_kind kind;
    wire_reader reader;
    struct conn *prev, *next; // in lists[list]
    int64_t deadline;         // monotonic ms
    deadline_list list;
    bool closing;  // uv_close called
    bool draining; // an Error or Release went out: input is ignored until EOF
    size_t queued; // bytes handed to uv_write, not yet written
    job *job;      // the worker's job once its Hello is accepted
    struct store_client *store; // a store connection's state (daemon/store.c)
    bool assignment_only; // its Hello asked for no NCCL ids
    bool counts_ops;      // it answers an Abort with OpCounts and takes AbortGroups
    int slot;      // its roster slot (= rank once ranks are assigned)
    uint64_t hello_ns; // uv_hrtime() of its accepted Hello until its first Assignment; else 0
    char peer[64]; // "address:port" for the log, filled on first use
    bool authenticated; // a control peer that passed SO_PEERCRED; a worker that once joined
    bool busy;   // a request of this control connection is being worked on off the loop
    bool closed; // the handle is closed while busy: the work's callback frees the conn
    hostlink *link; // CONN_WORKER: set once it sent a HostHello; CONN_REMOTE: its host's
    uint32_t device; // CONN_REMOTE: its local device, its address on the link
};

conn *conn_new(server *srv, conn_kind kind);
void conn_start(conn *c);                           // after accept: read, hello deadline
int conn_send(conn *c, const Hgrid__Envelope *env); // 0, or -1 (the conn is closing)
// A frame packed by the caller (header included) of Envelope type msg_case.
int conn_send_frame(conn *c, const uint8_t *frame, size_t len, int msg_case);
// Sends Error{code, message}, detaches the conn and closes it once the peer
// hung up or GRIDD_LINGER_MS passed.
void conn_fail(conn *c, Hgrid__ErrorCode code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void conn_finish(conn *c); // the same after a final message (Release, Leave)
// Refusal at a cap: one try to write Error{code, message}, then close at
// once (no linger, no log line; the caller counts it for the summary).
void conn_refuse(conn *c, Hgrid__ErrorCode code, const char *message);
// Reads what the socket holds now, as a read callback would: after accept
// the Hello has usually arrived with the connection.
void conn_read_now(conn *c);
void conn_close(conn *c, const char *reason);
void conn_watch(conn *c);       // (re)starts c's heartbeat deadline
void conn_await_ready(conn *c); // starts c's Ready deadline
void conn_unwatch(conn *c);     // no deadline
void conn_list_remove(conn *c); // off its deadline list (e.g. Hello accepted)
void conn_list_append(conn *c, deadline_list list); // (re)starts c's deadline on list
// Whether c's peer is a control client or a worker whose Hello was
// accepted: only those get a log line and a lingering close per refusal.
bool conn_trusted(const conn *c);
void conn_sweep(server *srv);   // expires deadlines

#endif
