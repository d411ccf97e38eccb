// hgrid-swarm: N simulated workers on H hosts, each host one link to gridd
// as an hgrid-agent holds it (or, with --direct, N real TCP connections),
// from one thread (epoll; connects from a few threads), then every
// assignment checked against the layout engine.
#ifndef HGRID_SWARM_H
#define HGRID_SWARM_H

#include <stdbool.h>
#include <stdint.h>

#include "libhgrid/assignment_check.h"
#include "wire/wire.h"

typedef struct {
    const char *coordinator, *job, *token;
    int workers, hosts;
    int gridd_pid;       // 0: not given
    bool wait_release;   // after the checks wait for Release instead of leaving
    bool busy_poll;      // poll the event queue without sleeping
    double timeout_s;    // for the whole rendezvous
    int connect_threads; // threads that connect and send Hellos (1..SWARM_MAX_CONNECT_THREADS)
    bool direct;         // one connection per worker instead of one per host
    int replace_rank;    // after the checks, replace this rank's worker (-1: none)
} swarm_options;

#define SWARM_MAX_CONNECT_THREADS 16

typedef enum {
    CONN_CONNECTING,
    CONN_JOINED,
    CONN_ASSIGNED,
    CONN_LEAVING, // Leave sent; waiting for gridd to close
    CONN_RELEASED, // released by gridd, or left and closed by it
    CONN_FAILED
} conn_state;

typedef struct {
    int fd;
    int host, device;
    conn_state state;
    wire_reader reader;
    double t_connect, t_assigned; // seconds, CLOCK_MONOTONIC
    uint64_t mint_generation;
    int minted_count;
    uint8_t *minted;              // minted_count ids, as sent
    uint8_t *assignment_bytes;    // as received, until swarm_decode
    uint32_t assignment_len;
    Hgrid__Envelope *assignment;  // decoded after the rendezvous, for the checks
    char *error;                  // gridd's Error or a connection failure
} swarm_conn;

// A simulated host's link (an agent's connection): its workers are
// conns[first .. first + count).
typedef struct {
    int fd;
    int first, count;
    bool hello_sent;
    wire_reader reader;
    uint8_t **kept;    // HostAssignment bodies as received, until swarm_decode
    uint32_t *kept_lens;
    int num_kept, cap_kept;
} swarm_host;

// When the rendezvous passed its steps, as seen from the swarm.
typedef struct {
    double last_hello, first_request, last_reply, first_assigned;
} swarm_phases;

typedef struct {
    swarm_options opt;
    swarm_conn *conns;
    swarm_host *hosts; // without --direct
    int num_assigned, num_failed, num_released;
    double t_first_connect, t_last_assigned;
    uint64_t bytes_sent, bytes_received, frames_sent; // during the rendezvous
    swarm_phases phases;
    uint64_t rng;
} swarm;

// Connects every worker, answers MintRequests and collects assignments.
// Returns 0 when every worker is assigned or failed, -1 on timeout or a
// setup failure (said on stderr).
int swarm_rendezvous(swarm *s);
// Decodes the Assignments kept as bytes during the rendezvous (outside the
// measured time); an undecodable one fails its worker.
void swarm_decode(swarm *s);
// Leaves (or waits for Release from gridd) and closes every connection
// without leaving sockets in TIME_WAIT.
void swarm_finish(swarm *s);
// Checks every assignment; prints each failure (up to a limit) and returns
// how many checks failed. *groups gets the number of distinct ids.
int swarm_check(const swarm *s, int *groups);

// One rank replaced (--replace-rank): its worker dies under its agent, a
// new one joins in its place, and every worker gets the new generation.
typedef struct {
    int rank;
    double abort_s;    // the death reported to the last Abort received
    double reassign_s; // the replacement's Hello to the last new Assignment
    int changed_ids, kept_ids; // communicators re-created and kept
} swarm_replacement;

// Readies every worker, replaces opt.replace_rank and checks the new
// generation: complete, and only the groups holding the rank re-created.
// Returns how many checks failed (the old assignments are checked before).
int swarm_replace(swarm *s, swarm_replacement *out);
// Decodes the HostAssignments kept as bytes (hosts.c).
void hosts_decode(swarm *s);

#endif
