// hgrid-agent: one per host. The host's workers connect to its Unix
// socket (a 0700 directory, peers checked with SO_PEERCRED) and speak the
// worker protocol as to gridd; the agent carries them to gridd over one
// link per job (docs/PROTOCOL.md, "Host links"): their Hellos in one
// HostHello, their frames in Relays, their Assignments from one
// HostAssignment, and a worker's death the moment its socket closes.
#ifndef HGRID_AGENT_H
#define HGRID_AGENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "wire/wire.h"

#define AGENT_MAX_ALLOW_UIDS 16

typedef struct {
    const char *socket;      // the Unix socket workers connect to
    const char *host;        // host name in HostHellos; NULL: each worker's own
    int gpus;                // workers expected per job on this host (0: unknown)
    int hello_wait_ms;       // how long the first Hello waits for the others
    uid_t allow_uids[AGENT_MAX_ALLOW_UIDS];
    int num_allow_uids;
    int exit_idle_s; // exit after this long with no worker connected (0: never)
    int verbose;     // -v
} agent_options;

typedef struct agent agent;
typedef struct lworker lworker;
typedef struct uplink uplink;

// A buffered writer for a stream handle: frames go out in order; the
// handle is closed by the owner.
typedef struct {
    uv_stream_t *stream;
    size_t queued;
} outq;

struct lworker { // a local worker connection
    uv_pipe_t pipe; // first: the handle's address is the worker's
    agent *a;
    wire_reader reader;
    outq out;
    uplink *link;   // after its Hello
    uint32_t device;
    bool joined;    // its Hello reached gridd (else it waits in link->pending)
    bool left;      // it sent Leave: its socket's close is no death
    bool dropped;   // gridd dropped it: close quietly
    bool closing;
    lworker *next;  // in its link's list
};

struct uplink { // one job's link from this host to gridd
    uv_tcp_t tcp;   // first: the handle's address is the link's
    agent *a;
    char coordinator[256], job[72], host[256];
    uint8_t token[256];
    size_t token_len;
    wire_reader reader;
    outq out;
    uv_connect_t connect_req;
    uv_timer_t hello_timer;
    bool connected, closing;
    int open_handles; // while closing: its socket and timer not yet closed
    bool hello_due; // the pending Hellos go in the next HostHello
    lworker *workers; // every worker on this link, joined or pending
    Hgrid__Envelope **pending; // Hellos not yet sent (the worker's envelope)
    lworker **pending_from;
    int num_pending, cap_pending;
    // The next Relay to gridd and HostGone.
    wire_relay_batch relay;
    uint32_t *gone;
    int num_gone, cap_gone;
    bool dirty;
    uplink *next, *next_dirty;
};

struct agent {
    uv_loop_t *loop;
    agent_options opt;
    uv_pipe_t listener;
    uv_signal_t sigterm, sigint;
    uv_prepare_t flush; // sends what the links gathered, before the loop waits
    uv_timer_t idle;    // --exit-idle: runs while no worker is connected
    int num_local;      // local connections open
    uplink *links, *dirty;
    bool stopping;
};

// ---- log: one line per event on stderr
void agent_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// ---- writing frames (agent/local.c)
// Queues a whole frame (header included); 0, or -1 (the stream failed).
int outq_write(outq *q, const uint8_t *frame, size_t len);
int outq_send(outq *q, const Hgrid__Envelope *env);

// ---- local workers (agent/local.c)
void local_accept(agent *a);
// gridd's frame for w (an Envelope body): sent as is; after Release or
// Error the worker is expected to go.
void local_deliver(lworker *w, const uint8_t *body, size_t len);
// Sends env to w and closes w after it (refusals).
void local_refuse(lworker *w, Hgrid__ErrorCode code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
// gridd dropped w (or its link went): close it without reporting it.
void local_drop(lworker *w);
void local_close(lworker *w); // at once (shutdown)
// The count of local connections changed by delta (+1 accepted, -1 closed):
// --exit-idle's timer runs while it is 0 (agent/main.c).
void agent_local_count(agent *a, int delta);

// ---- links to gridd (agent/link.c)
// The link for (coordinator, job, host), opened on first use; NULL with
// err set if the coordinator cannot be resolved or out of memory.
uplink *link_for(agent *a, const Hgrid__Hello *h, char *err, size_t errlen);
// w's Hello (env, owned by the link from now) waits for the HostHello.
int link_join(uplink *l, lworker *w, Hgrid__Envelope *env);
// A frame from w (an Envelope body) for gridd.
int link_relay(uplink *l, lworker *w, const uint8_t *body, size_t len);
// w's socket closed: reported to gridd at once unless it left or was dropped.
void link_worker_closed(uplink *l, lworker *w);
void links_flush(agent *a); // what every dirty link has to send (before the loop waits)
void links_close_all(agent *a);

#endif
