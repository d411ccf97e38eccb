// libhgrid's internals, shared by its source files only.
#ifndef HGRID_LIBHGRID_IMPL_H
#define HGRID_LIBHGRID_IMPL_H

#include <sys/socket.h>

#include "libhgrid/assignment_check.h"
#include "libhgrid/hgrid.h"
#include "libhgrid/hgrid_layout.h"
#include "wire/wire.h"

#define HGRID_ERR_LEN 512

typedef struct {
    hgrid_group pub;
    uint8_t id[HGRID_ID_BYTES];
    char name[HG_NAME_LEN + HG_GROUP_NAME_LEN]; // pub.name's storage
} group_slot;

// Reconnecting after the connection to gridd dropped (libhgrid_reconnect.c).
typedef struct {
    double total_s;     // give up after this long without gridd; 0: never reconnect
    struct sockaddr_storage addr; // gridd's address, from the first connection
    socklen_t addrlen;
    char coordinator[256]; // as given, for the log
    bool lost;          // from the loss until a connection is back and Hello sent
    bool connecting;    // fd is a non-blocking connect() in progress
    double lost_at, attempt_at, next_at; // monotonic seconds
    int attempts;       // failed attempts since lost_at
    int reconnects;     // completed reconnections
    double connected_at; // when the last reconnection completed
    bool heard;         // a frame came from gridd since then
    char said[160];     // the last failure logged (a new one gets a line)
    uint64_t rng;       // jitter
} reconnect_state;

// The Hello, kept to say it again after a reconnection.
typedef struct {
    bool sent;
    char job[72], token[260], host[256], gpu_uuid[128];
    int device, requested_rank;
    bool dry_run;
    hgrid_mint_fn mint; // NULL: assignment-only
} hello_copy;

// The end of the job (libhgrid_end.c).
typedef struct {
    bool done_sent;        // Done went out for the current assignment
    uint64_t done_step;
    hgrid_outcome outcome; // from gridd's Release
    float loss, throughput; // the last heartbeat's, repeated while waiting for the end
} end_state;

struct hgrid_worker {
    int fd;             // -1 while reconnecting between attempts
    bool via_agent;     // fd is this host's hgrid-agent (HGRID_AGENT_SOCKET), not gridd
    reconnect_state rc;
    hello_copy hello;
    end_state end;
    bool ready_sent;    // Ready went out for the current assignment
    wire_reader reader;
    Hgrid__Envelope **queue; // frames received, not yet handled (FIFO)
    size_t queue_head, queue_len, queue_cap;
    char error[HGRID_ERR_LEN];
    char reason[HGRID_ERR_LEN];
    int lost[HGRID_MAX_LOST]; // the last Abort's lost ranks
    int num_lost;
    // Counting operations (hgrid_count_ops): the counter, and gridd's
    // AbortGroups since the last Abort, by group position.
    bool counts_ops;
    hgrid_op_counter_fn op_counter;
    void *op_counter_ctx;
    bool broken[ASSIGN_MAX_GROUPS];
    int broken_notices;

    // ids this worker minted for the generation being formed
    uint64_t mint_generation;
    uint8_t *minted;
    int minted_count;
    int unused_mints;   // generations minted for in a row without an Assignment

    // the current assignment
    bool assigned;
    bool assignment_only; // the current assignment carries no ids
    uint64_t generation;
    char job[72];
    int rank;
    assign_ref ref;
    hg_coords coords;
    hg_coords colocated; // a colocated rank's second module
    int num_modules;
    group_slot groups[ASSIGN_MAX_GROUPS];
    int num_groups;
    int *members; // backing store of every group's member list
    hgrid_bridge_peer *peers;
    int num_peers;

    // heartbeat bookkeeping for step_time_s
    uint64_t last_step;
    double last_beat_s;
    float last_step_time_s; // last reported step time
};

// Takes in a received Assignment (owned by the caller): checks it against
// the engine and the ids minted, then replaces the current one.
int hgrid_take_assignment(hgrid_worker *w, const Hgrid__Assignment *a);
void hgrid_drop_assignment(hgrid_worker *w);

// ---- libhgrid.c
// A worker on the connected socket fd (closed on failure).
hgrid_worker *hgrid_worker_new(int fd, const char *coordinator, char *err, size_t errlen);
// Sends the kept Hello, with this worker's rank and generation when it
// holds an assignment.
int hgrid_send_hello(hgrid_worker *w);
// Sends env; while gridd is away it is dropped (HGRID_OK).
int hgrid_send(hgrid_worker *w, const Hgrid__Envelope *env);

// ---- libhgrid_end.c
// gridd's Release: keeps its outcome.
void hgrid_take_release(hgrid_worker *w, const Hgrid__Release *release);

// ---- libhgrid_reconnect.c
void hgrid_reconnect_init(hgrid_worker *w, const char *coordinator);
// The connection failed (why): after a Hello and with reconnection on,
// closes it and schedules the next attempt (HGRID_OK); else HGRID_ERR_IO.
// same_outage: a reconnection that gridd turned away; total_s still runs
// from the first loss.
int hgrid_lost(hgrid_worker *w, const char *why, bool same_outage);
// Drives the reconnection for up to timeout_ms (0: one non-blocking step;
// -1: until done). HGRID_OK (connected again, or still trying when
// timeout_ms is 0), HGRID_ERR_TIMEOUT, or HGRID_ERR_IO once total_s passed.
int hgrid_reconnect(hgrid_worker *w, int timeout_ms);

#endif
