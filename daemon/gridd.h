// gridd's server: options, limits and the state one libuv loop thread owns
// (listeners, deadline lists, jobs, metrics); and the log. Connections:
// conn.h, jobs: job.h, metrics: metrics.h.
#ifndef HGRID_DAEMON_GRIDD_H
#define HGRID_DAEMON_GRIDD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "daemon/metrics.h"

#define GRIDD_DEFAULT_MAX_JOBS 256
#define GRIDD_MAX_ALLOW_UIDS 16
#define GRIDD_LINGER_MS 2000            // after an Error: wait this long for the peer's EOF
#define GRIDD_SLOW_CONSUMER (4u << 20)  // bytes queued to a peer (beyond one frame) before it is dropped
#define GRIDD_SWEEP_MS 100              // deadline check period
#define GRIDD_SETTLE_MS 1000            // after an Abort: the workers' OpCounts (job_settle.c)
#define GRIDD_SETTLE_LOG_GROUPS 32      // broken groups logged one by one per Abort
// Descriptors gridd makes room for at start (util/fd_table.h): --max-connections
// and a few, at most this many (512 KiB of kernel memory).
#define GRIDD_FD_RESERVE_MAX 65536
#define GRIDD_HELLO_MAX_FRAME 4096      // frame limit before a worker's Hello is accepted
#define GRIDD_SELF_TEST_MAX 8192        // largest SelfTestReport kept per worker (bytes)
#define GRIDD_SELF_TEST_GROUPS 32       // checks kept per SelfTestReport
#define GRIDD_MAX_PENDING 1024          // default cap on connections without an accepted Hello
#define GRIDD_REFUSAL_LOG_MS 1000       // refusals and Hello timeouts: one log line per period
#define GRIDD_KEEP_FINISHED_S 3600      // default --keep-finished
#define GRIDD_MAX_RESTARTS 10           // default --max-restarts
#define GRIDD_MAX_CONTROL 64            // hgridctl connections at once
#define GRIDD_CONTROL_IDLE_S 60         // default --control-idle-timeout
#define GRIDD_CONTROL_MAX_FRAME 65536   // largest control request (a submit is ~1 KiB)
#define GRIDD_LOOP_BUSY_LOG_MS 200      // a loop iteration busy this long is logged
#define GRIDD_MAX_SUBMITS 4             // submits being built off the loop at once
#define GRIDD_SHOW_PAGE 1024            // workers in one JobInfo at most (a reply <= ~9 MiB)

typedef struct {
    const char *listen;        // HOST:PORT for workers
    char control[108];         // Unix socket path for hgridctl
    const char *state_dir;     // NULL: no persistence
    const char *port_file;     // NULL: none
    double heartbeat_timeout;  // seconds
    double ready_timeout;      // seconds from Assignment to Ready (communicator setup)
    double hello_timeout;      // seconds
    double resume_timeout;     // seconds after a restart for a running generation's workers to return
    double keep_finished;      // seconds an ended job stays listed
    int max_restarts;          // generations after the first before a job fails
    double control_idle_timeout; // seconds: an idle hgridctl connection is closed
    int max_jobs;
    uint32_t max_frame;        // bytes
    int max_connections;
    int max_pending;           // connections without an accepted Hello
    uid_t allow_uids[GRIDD_MAX_ALLOW_UIDS]; // control peers besides root and gridd's own uid
    int num_allow_uids;
    const char *metrics;       // HOST:PORT of the Prometheus endpoint; NULL: none
    int verbosity;             // 0: notices and worse, 1 (-v): info, 2 (-vv): debug
} gridd_options;

typedef struct server server;
typedef struct conn conn;
typedef struct job job;

// Deadline lists: each has one fixed timeout, so appending keeps it sorted.
typedef enum {
    LIST_NONE = -1,
    LIST_HELLO,  // accepted, no Hello yet
    LIST_WATCH,  // owes a MintReply or is running: any frame restarts its deadline
    LIST_READY,  // assigned, setting up communicators: Ready is due
    LIST_LINGER, // sent its last message, waiting for EOF
    LIST_CONTROL, // hgridctl's: closed when idle
    NUM_LISTS
} deadline_list;

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
    int worker_connections; // capped by --max-connections
    int control_connections; // capped by GRIDD_MAX_CONTROL
    int submits_in_flight;   // on the thread pool, capped by GRIDD_MAX_SUBMITS
    // Peers refused before they proved themselves, since the last summary.
    int refused_unauth;
    char refused_unauth_peer[64], refused_unauth_reason[160];
    uint64_t loop_prepared_ns, loop_idle_ns; // at the last prepare: time, poll's idle total
    int pending;            // worker connections on lists[LIST_HELLO], capped by --max-pending
    // Refusals at the caps and Hello timeouts since the last summary line
    // (conn_sweep logs them).
    int refused_pending, refused_full, timed_out, accept_errors;
    int last_accept_error;
    int64_t refusals_logged_at;
    job *jobs; // a list, newest first
    int num_jobs;
    int64_t started_ms; // when the loop started (restart times in the log)
    bool stopping;
    metrics_counters metrics;
};

// ---- log (daemon/log.c): one line per event on stderr,
//   gridd: LEVEL [job=NAME] [rank=R] [gen=G] what happened [key=value ...]
// led by an ISO-8601 UTC time, or under journald by a "<N>" syslog priority
// (journald adds the time and keeps the level).
typedef enum { GRIDD_ERROR, GRIDD_WARN, GRIDD_NOTICE, GRIDD_INFO, GRIDD_DEBUG } gridd_level;
extern gridd_level gridd_log_max; // lines of a higher level are skipped

// verbosity 0: errors, warnings and notices (gridd's and jobs' lifecycle);
// 1: info (per-worker events); 2: debug (every frame).
void gridd_log_init(int verbosity);
static inline bool gridd_log_enabled(gridd_level level)
{
    return level <= gridd_log_max;
}
// j: the job the event belongs to (NULL: none); rank < 0: none.
void gridd_log_at(gridd_level level, const job *j, int rank, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
// A notice about gridd itself (listening, ready, shutting down).
void gridd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int64_t gridd_now_ms(void);

#endif
