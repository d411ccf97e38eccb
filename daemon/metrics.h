// gridd's metrics: counters the loop thread bumps as plain integers on the
// hot path, and their Prometheus text exposition (format 0.0.4) together
// with gauges read from the server at scrape time (daemon/metrics_http.c).
#ifndef HGRID_DAEMON_METRICS_H
#define HGRID_DAEMON_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "wire/wire.h"

#define METRICS_MSG_TYPES 128  // Envelope oneof field numbers are below this
#define METRICS_ERROR_CODES 48 // Hgrid__ErrorCode values are below this
#define METRICS_JOIN_BUCKETS 14

// Join latency bucket bounds (seconds), 1 ms to 30 s.
extern const double metrics_join_bounds[METRICS_JOIN_BUCKETS];

// Why a worker connection was turned away before its Hello was accepted.
typedef enum {
    REFUSED_HELLO_TIMEOUT,   // no Hello within --hello-timeout
    REFUSED_MAX_PENDING,     // dropped, oldest first, at --max-pending
    REFUSED_MAX_CONNECTIONS, // over --max-connections
    REFUSED_ACCEPT_ERROR,    // accept(2) failed (e.g. out of file descriptors)
    NUM_REFUSALS
} metrics_refusal;

// The metrics endpoint's own answers.
typedef enum {
    HTTP_OK,                // 200
    HTTP_BAD_REQUEST,       // 400
    HTTP_NOT_FOUND,         // 404
    HTTP_BAD_METHOD,        // 405
    HTTP_HEADERS_TOO_LARGE, // 431
    NUM_HTTP_STATUSES
} metrics_http_status;
extern const int metrics_http_codes[NUM_HTTP_STATUSES];

typedef struct {
    uint64_t frames_in[METRICS_MSG_TYPES], frames_out[METRICS_MSG_TYPES]; // by Envelope type
    uint64_t bytes_in, bytes_out;
    uint64_t errors[METRICS_ERROR_CODES]; // Error frames sent, by code
    uint64_t accepted_workers, accepted_control;
    uint64_t refused[NUM_REFUSALS];
    uint64_t generations_started, aborts;
    uint64_t heartbeat_timeouts, ready_timeouts;
    uint64_t join_buckets[METRICS_JOIN_BUCKETS + 1]; // not cumulative; the last is +Inf
    uint64_t join_count;
    double join_sum; // seconds
    uint64_t http_responses[NUM_HTTP_STATUSES];
    uint64_t http_dropped; // timed out, or evicted at the connection cap
} metrics_counters;

// What gauges show, read from the server when scraped.
typedef struct {
    const char *name;
    uint64_t generation;
    int joined, world_size;
} metrics_job;

typedef struct {
    const char *const *state_names; // job states, num_states of them
    const int *jobs_in_state;
    int num_states;
    int worker_connections; // open worker TCP connections
    int workers_pending;    // of them, without an accepted Hello
    int workers_joined;     // holding a slot in a job
    const metrics_job *jobs;
    int num_jobs;
} metrics_snapshot;

static inline void metrics_frame_in(metrics_counters *m, int msg_case)
{
    m->frames_in[(unsigned)msg_case % METRICS_MSG_TYPES]++;
}

// A frame of len bytes handed to the socket (an Error also counted by code).
static inline void metrics_frame_out(metrics_counters *m, const Hgrid__Envelope *env, size_t len)
{
    m->frames_out[(unsigned)env->msg_case % METRICS_MSG_TYPES]++;
    m->bytes_out += len;
    if (env->msg_case == HGRID__ENVELOPE__MSG_ERROR)
        m->errors[(unsigned)env->error->code % METRICS_ERROR_CODES]++;
}

void metrics_observe_join(metrics_counters *m, double seconds);
// The Envelope message type's name ("hello", "mint_request"; "?" if none).
const char *metrics_message_name(int msg_case);

// The exposition of m and s, malloc'd into *out (*len bytes, NUL after).
// Returns 0, or -1 out of memory.
int metrics_format(const metrics_counters *m, const metrics_snapshot *s, char **out,
                   size_t *len);

#endif
