// gridd's shared types: the server, its connections and its jobs. One
// libuv loop thread owns all of them.
#ifndef HGRID_DAEMON_GRIDD_H
#define HGRID_DAEMON_GRIDD_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "daemon/mint.h"
#include "daemon/roster.h"
#include "daemon/state.h"
#include "wire/wire.h"

#define GRIDD_MAX_JOBS 256
#define GRIDD_LINGER_MS 2000            // after an Error: wait this long for the peer's EOF
#define GRIDD_SLOW_CONSUMER (4u << 20)  // bytes queued to a peer (beyond one frame) before it is dropped
#define GRIDD_SWEEP_MS 100              // deadline check period
#define GRIDD_HELLO_MAX_FRAME 4096      // frame limit before a worker's Hello is accepted

typedef struct {
    const char *listen;        // HOST:PORT for workers
    char control[108];         // Unix socket path for hgridctl
    const char *state_dir;     // NULL: no persistence
    const char *port_file;     // NULL: none
    double heartbeat_timeout;  // seconds
    double ready_timeout;      // seconds from Assignment to Ready (communicator setup)
    double hello_timeout;      // seconds
    uint32_t max_frame;        // bytes
    int max_connections;
} gridd_options;

typedef enum { CONN_WORKER, CONN_CONTROL } conn_kind;

// Deadline lists: each has one fixed timeout, so appending keeps it sorted.
typedef enum {
    LIST_NONE = -1,
    LIST_HELLO,  // accepted, no Hello yet
    LIST_WATCH,  // owes a MintReply or is running: any frame restarts its deadline
    LIST_READY,  // assigned, setting up communicators: Ready is due
    LIST_LINGER, // sent its last message, waiting for EOF
    NUM_LISTS
} deadline_list;

typedef struct server server;
typedef struct job job;

typedef struct conn {
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
    int slot;      // its roster slot (= rank once ranks are assigned)
    char peer[64]; // "address:port" for the log, filled on first use (conn_peer)
} conn;

typedef struct {
    conn *head, *tail;
    int64_t timeout_ms;
} conn_list;

struct server {
    uv_loop_t *loop;
    gridd_options opt;
    uv_tcp_t tcp;
    uv_pipe_t control;
    uv_signal_t sigterm, sigint;
    uv_timer_t sweep;
    uv_prepare_t flush_log;
    conn_list lists[NUM_LISTS];
    int connections;
    job *jobs; // a list, newest first
    int num_jobs;
    bool stopping;
};

typedef enum { JOB_WAITING, JOB_MINTING, JOB_ASSIGNED, JOB_RUNNING } job_state;

struct job {
    job_record rec;
    hg_plan plan;
    mint_plan mint;
    Hgrid__Layout layout; // rec.spec on the wire (Assignment, JobInfo)
    Hgrid__ModelConfig model;
    job_state state;
    uint8_t *ids;  // mint.num_ids ids of MINT_ID_BYTES, this generation's
    int *missing;  // per rank: ids its Assignment still waits for
    int *members;  // scratch: one group's member ranks
    int mint_pending, assigned, ready;
    uint64_t saved_map_version; // rec.roster.map_version last persisted
    server *srv;
    int64_t whole_at; // when the worker set last became whole (ms)
    job *next;
};

// ---- log (daemon/log.c): one line "gridd: ..." on stderr per event
void gridd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int64_t gridd_now_ms(void);

// ---- connections (daemon/conn.c)
conn *conn_new(server *srv, conn_kind kind);
void conn_start(conn *c);                 // after accept: read, hello deadline
int conn_send(conn *c, const Hgrid__Envelope *env); // 0, or -1 (the conn is closing)
// Sends Error{code, message}, detaches the conn and closes it once the peer
// hung up or GRIDD_LINGER_MS passed.
void conn_fail(conn *c, Hgrid__ErrorCode code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void conn_finish(conn *c); // the same after a final message (Release, Leave)
void conn_close(conn *c, const char *reason);
void conn_watch(conn *c);       // (re)starts c's heartbeat deadline
void conn_await_ready(conn *c); // starts c's Ready deadline
void conn_unwatch(conn *c);     // no deadline
void conn_sweep(server *srv); // expires deadlines
void conn_list_remove(conn *c); // off its deadline list (e.g. Hello accepted)

// ---- messages (daemon/control.c, daemon/worker.c)
void control_handle(conn *c, const Hgrid__Envelope *env);
void worker_handle(conn *c, const Hgrid__Envelope *env);

// ---- jobs (daemon/job.c)
job *job_find(server *srv, const char *name);
// A new job from a validated plan; NULL if out of memory.
job *job_create(server *srv, const job_record *rec, const hg_plan *plan);
void job_cancel(server *srv, job *j, const char *reason);
void job_free(job *j);
void job_joined(job *j, conn *c); // after roster_join put c into its slot
void job_worker_gone(conn *c, const char *reason);
void job_mint_reply(conn *c, const Hgrid__MintReply *reply);
void job_ready(conn *c, uint64_t generation);
void job_heartbeat(conn *c, const Hgrid__Heartbeat *hb);
const char *job_state_name(job_state s);
const char *slot_state_name(slot_state s);
void gridd_persist(server *srv);

// ---- assignments (daemon/assignment.c)
int assignment_send(job *j, int rank, conn *c);

#endif
