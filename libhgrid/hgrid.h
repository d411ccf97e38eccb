// libhgrid: the C API a training program uses to join an hgrid job.
//
//   hgrid_worker *w = hgrid_connect("head:7420", err, sizeof err);
//   hgrid_hello(w, &(hgrid_hello_options){.job = "demo", .token = tok,
//                                          .device = hgrid_default_device(),
//                                          .requested_rank = -1});
//   while ((st = hgrid_wait_assignment(w, 60000)) == HGRID_ABORTED) {}
//   ... hgrid_rank(w), hgrid_coord(w, "tp"), hgrid_group_find(w, "tp")->members ...
//   hgrid_ready(w);
//   for (step = 1; step <= steps; step++) {
//       train a step; hgrid_heartbeat(w, step, loss, tok_s);
//       if (hgrid_poll(w) != HGRID_OK) break; }
//   hgrid_done(w, steps);   // every rank done: gridd releases them all
//   st = hgrid_wait_end(w, 1000, -1);  // HGRID_RELEASED, hgrid_outcome(w)
//   hgrid_close(w);
//
// Functions returning int return an hgrid_status; on a negative one,
// hgrid_error(w) says why in one line.
//
// This library has no CUDA or NCCL in it. A worker that creates NCCL
// communicators passes .mint = hgrid_nccl_mint (libhgrid_nccl, hgrid_comms.h);
// one without a minter joins assignment-only: ranks, coordinates and group
// members, and gridd mints no ids for its job.
#ifndef HGRID_H
#define HGRID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HGRID_ID_BYTES 128 // NCCL_UNIQUE_ID_BYTES

typedef enum {
    HGRID_OK = 0,
    HGRID_ABORTED = 1,         // gridd aborted the generation: wait for the next assignment
    HGRID_RELEASED = 2,        // the job was cancelled or finished: exit
    HGRID_ERR_IO = -1,         // connection lost or protocol broken
    HGRID_ERR_REFUSED = -2,    // gridd refused this worker (wrong token, duplicate device, ...)
    HGRID_ERR_TIMEOUT = -3,    // no assignment within the timeout
    HGRID_ERR_MISMATCH = -4,   // the assignment disagrees with this build's layout engine
    HGRID_ERR_STATE = -5,      // called out of order (e.g. ready before an assignment)
} hgrid_status;

// Creates one communicator id (HGRID_ID_BYTES bytes) for a group this worker
// leads. 0, or -1 with a one-line reason in err.
typedef int (*hgrid_mint_fn)(uint8_t *id, char *err, size_t errlen);

typedef struct {
    const char *job;
    const char *token;
    const char *host;     // NULL: hgrid_default_host()
    int device;           // local GPU index
    const char *gpu_uuid; // NULL when unknown (dry run)
    int requested_rank;   // -1: gridd chooses
    bool dry_run;         // coordination only, no GPU
    hgrid_mint_fn mint;   // NULL: an assignment-only join (no NCCL ids in the job)
} hgrid_hello_options;

// One process group of this worker.
typedef struct {
    const char *name;     // "tp", "dp", ..., "bridge" ("bridge:NAME" with several
                          // encoders; "llm.tp", ... for a colocated rank's second module)
    int size, rank_in_group, index;
    const int *members;   // size global ranks, in group order
    const uint8_t *nccl_id; // HGRID_ID_BYTES bytes; NULL for one-rank groups
    int shares_with;      // position (hgrid_group_at) of the group whose communicator it uses
    bool kept;            // same id as the last generation: its communicator can be kept
} hgrid_group;

// A bridge edge: the peer's global rank and its rank in the bridge group.
typedef struct {
    int rank, rank_in_bridge;
    bool send; // this worker sends activations to the peer
    int bridge; // which bridge (its encoder's module index; 0 with one encoder)
} hgrid_bridge_peer;

typedef struct hgrid_worker hgrid_worker;

#define HGRID_DEFAULT_PORT 7420
#define HGRID_CONNECT_TIMEOUT_S 300.0 // hgrid-worker's --connect-timeout default

// Connects to gridd at "HOST:PORT" ("HOST", "[V6]" or a bare IPv6 address:
// port 7420), through this host's hgrid-agent when
// HGRID_AGENT_SOCKET names its socket or the default one exists
// (/run/hgrid/agent.sock; HGRID_AGENT_SOCKET=none: always direct). NULL
// with a one-line reason in err.
hgrid_worker *hgrid_connect(const char *coordinator, char *err, size_t errlen);
// The same, waiting for gridd: a refused, unreachable or unresolvable
// address is tried again with exponential backoff (100 ms doubling to 2 s,
// each +-50% jitter) until timeout_s, with one line on stderr every 10 s;
// timeout_s then also bounds reconnections (hgrid_set_reconnect). A
// malformed address fails at once.
hgrid_worker *hgrid_connect_wait(const char *coordinator, double timeout_s, char *err,
                                 size_t errlen);
// Splits a coordinator address as hgrid_connect reads it into host and port
// (port: HGRID_DEFAULT_PORT when none). Returns 0, or -1 if malformed.
int hgrid_split_coordinator(const char *coordinator, char *host, size_t hostlen, char *port,
                            size_t portlen);
int hgrid_hello(hgrid_worker *w, const hgrid_hello_options *opt);
// Waits up to timeout_ms (-1: forever) for this worker's next Assignment,
// minting NCCL ids when gridd asks. HGRID_OK once assigned and checked;
// HGRID_ABORTED if the forming generation was aborted (call again);
// HGRID_RELEASED if the job ended; a negative status otherwise.
int hgrid_wait_assignment(hgrid_worker *w, int timeout_ms);
// The connection's descriptor, to wait for gridd's messages in the caller's
// own poll loop (then call hgrid_poll); -1 between reconnection attempts
// (see hgrid_wake_ms).
int hgrid_fd(const hgrid_worker *w);

// ---- the current assignment (valid after HGRID_OK from wait)
int hgrid_rank(const hgrid_worker *w);
int hgrid_world_size(const hgrid_worker *w);
uint64_t hgrid_generation(const hgrid_worker *w);
// "encoder" or "llm". (hgrid_layout.h gives the layout engine's view.)
const char *hgrid_module_name(const hgrid_worker *w);
// The modules this rank is in: 1, or 2 for a colocated rank (encoder, then
// llm); hgrid_layout.h's hgrid_coords_at gives the i-th one's coordinates.
int hgrid_num_modules(const hgrid_worker *w);
const char *hgrid_job(const hgrid_worker *w);
int hgrid_num_groups(const hgrid_worker *w);
const hgrid_group *hgrid_group_at(const hgrid_worker *w, int i);
// The group named name ("tp", ..., "bridge"); NULL if this worker is not
// in one (embd on a middle pipeline stage, bridge on a non-leader).
const hgrid_group *hgrid_group_find(const hgrid_worker *w, const char *name);
int hgrid_num_bridge_peers(const hgrid_worker *w);
const hgrid_bridge_peer *hgrid_bridge_peer_at(const hgrid_worker *w, int i);
// True while this worker holds an assignment (after HGRID_OK from wait,
// until an abort, release or leave).
bool hgrid_assigned(const hgrid_worker *w);
// True when the job's generation runs without NCCL ids (some worker joined
// assignment-only): no group carries one.
bool hgrid_assignment_only(const hgrid_worker *w);
// This rank's coordinate along dim ("tp", "cp", "dp", "pp", "ep",
// "expt_tp", "expt_dp"); -1 for an unknown name.
int hgrid_coord(const hgrid_worker *w, const char *dim);
// 0 for the encoder, 1 for the LLM (hg_module_id), as a plain int.
int hgrid_module_index(const hgrid_worker *w);

// One check of a self-test, as hgridctl status shows it.
typedef struct {
    char name[40];     // the group's name, or "bridge->R" / "bridge<-R" per edge
    bool ok;
    double busbw_gbps; // 0 when not measured (one-rank groups, edges)
    char detail[200];  // what was checked, or the one-line failure
} hgrid_check;
// Reports checks to gridd (hgridctl status shows them).
int hgrid_report_checks(hgrid_worker *w, const hgrid_check *checks, int count);
// Sets hgrid_error(w) and returns status (for libhgrid_nccl and callers
// that fail on the worker's behalf).
int hgrid_fail(hgrid_worker *w, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// ---- running
// Tells gridd this worker's communicators exist.
int hgrid_ready(hgrid_worker *w);
// Progress report; also the liveness signal (send every ~heartbeat timeout / 3).
// loss HGRID_NO_LOSS (NaN): this rank computes none (hgridctl shows none).
#define HGRID_NO_LOSS (__builtin_nanf(""))
int hgrid_heartbeat(hgrid_worker *w, uint64_t step, float loss, float throughput);
// Handles whatever gridd sent, without blocking: HGRID_OK (nothing to act
// on), HGRID_ABORTED, HGRID_RELEASED, or a negative status.
int hgrid_poll(hgrid_worker *w);
// gridd's reason for the last Abort or Release.
const char *hgrid_reason(const hgrid_worker *w);
// The ranks whose loss caused the last Abort (their groups' communicators
// are the ones to abort now): how many (at most max into ranks); 0 when
// gridd named none (abort them all).
#define HGRID_MAX_LOST 64
int hgrid_lost_ranks(const hgrid_worker *w, int *ranks, int max);
// After an Abort: tells gridd this worker aborted communicators of groups
// that may keep their id (one could not finish its operations), so the
// next generation re-creates every group holding this rank.
int hgrid_report_comms_lost(hgrid_worker *w, const char *reason);
int hgrid_leave(hgrid_worker *w, const char *reason);

// ---- keeping communicators across an Abort (docs/DESIGN.md, "Partial rebuild")
// What the worker issued on one group (position i) in the generation:
// collectives, and per member index point-to-point sends to it and
// receives from it (arrays of the group's size).
typedef struct {
    uint64_t collectives;
    uint64_t *sent, *received;
} hgrid_group_ops;
// Fills ops[i] for each of the num_groups group positions (zeros in).
typedef void (*hgrid_op_counter_fn)(void *ctx, hgrid_group_ops *ops, int num_groups);
// Before hgrid_hello: this worker counts its operations. It answers every
// Abort with what it issued on each group in the aborted generation (the
// counter's word, called on the thread handling the Abort, after which no
// operation of the worker may start; no counter: nothing issued), and
// gridd names the groups that a member left with an operation unmatched
// (hgrid_group_broken): their communicators must be aborted too
// (hgrid_comms_abort_lost), which frees a member waiting in one.
void hgrid_count_ops(hgrid_worker *w, bool on);
// fn NULL: none (between trainings). Set it while no other thread calls
// libhgrid on w (before handing w to a polling thread, after taking it back).
void hgrid_set_op_counter(hgrid_worker *w, hgrid_op_counter_fn fn, void *ctx);
// After an Abort: whether gridd named group position i broken, and how
// many such words came since the Abort.
bool hgrid_group_broken(const hgrid_worker *w, int i);
int hgrid_broken_notices(const hgrid_worker *w);
// After an Abort: hgrid_poll that leaves the next Assignment for
// hgrid_wait_assignment (for a thread still cleaning up the generation).
int hgrid_poll_aborted(hgrid_worker *w);

// ---- the end of a job
// Tells gridd this rank's training finished at step (after Ready). Once
// every rank is done gridd releases them all (HGRID_RELEASED, outcome
// finished). Said again after a reconnection; a new generation (another
// rank failed first) needs it again.
int hgrid_done(hgrid_worker *w, uint64_t step);
// After hgrid_done: heartbeats every heartbeat_ms with the last progress
// until gridd's word: HGRID_RELEASED (see hgrid_outcome), HGRID_ABORTED (a
// rank failed before the job finished: wait for the next assignment), or a
// negative status (HGRID_ERR_TIMEOUT after timeout_ms; -1: no limit).
int hgrid_wait_end(hgrid_worker *w, int heartbeat_ms, int timeout_ms);
// Tells gridd this rank cannot go on, why in one line. retry: a new
// generation may cure it (gridd aborts this one, up to its --max-restarts);
// else the job fails and every worker is released with that outcome.
int hgrid_report_failure(hgrid_worker *w, const char *reason, bool retry);
typedef enum {
    HGRID_OUTCOME_NONE,      // not released yet
    HGRID_OUTCOME_FINISHED,  // every rank done: exit 0
    HGRID_OUTCOME_FAILED,    // exit non-zero (hgrid_reason says why)
    HGRID_OUTCOME_CANCELLED, // hgridctl cancel
} hgrid_outcome;
// How the job ended, after HGRID_RELEASED.
hgrid_outcome hgrid_job_outcome(const hgrid_worker *w);
void hgrid_close(hgrid_worker *w);
const char *hgrid_error(const hgrid_worker *w);

// ---- gridd restarts
// When the connection to gridd drops after hgrid_hello (gridd restarted),
// libhgrid reconnects to the same address with exponential backoff (50 ms
// doubling to 2 s, each +-50% jitter) and says Hello again with its rank and
// generation; gridd carries the generation on when every rank comes back, so
// communicators and training continue. Meanwhile hgrid_heartbeat and
// hgrid_poll return HGRID_OK without blocking (nothing reaches gridd) and
// hgrid_wait_assignment keeps waiting; one line on stderr marks each change
// (lost, a new kind of failure, back). After total_s seconds without gridd
// they return HGRID_ERR_IO. total_s <= 0: no reconnection (the loss is
// HGRID_ERR_IO at once). Default 60 s.
void hgrid_set_reconnect(hgrid_worker *w, double total_s);
// While reconnecting, the milliseconds until an attempt is due: a poll loop
// on hgrid_fd should wake by then and call hgrid_poll. -1 when connected.
int hgrid_wake_ms(const hgrid_worker *w);

// ---- the job's key-value store (gridd serves torch.distributed's Store)
// A connection of its own, opened with the job's name and token; one
// request at a time (open one store per thread). Values live in gridd until
// deleted or the job ends.
typedef struct hgrid_store hgrid_store;
typedef enum {
    HGRID_STORE_SET,         // keys[0] = value
    HGRID_STORE_GET,         // waits until keys[0] exists; hgrid_store_value gives it
    HGRID_STORE_ADD,         // keys[0] += decimal value (absent: 0); number: the sum
    HGRID_STORE_COMPARE_SET, // keys[0] = value if it holds expected (absent: expected is
                             // empty); hgrid_store_value: its value after
    HGRID_STORE_WAIT,        // waits until every key exists
    HGRID_STORE_CHECK,       // number: 1 if every key exists
    HGRID_STORE_DELETE,      // number: 1 if keys[0] existed
    HGRID_STORE_NUM_KEYS,    // number: how many keys the store holds
} hgrid_store_op;

hgrid_store *hgrid_store_open(const char *coordinator, const char *job, const char *token,
                              char *err, size_t errlen);
// One request; GET and WAIT wait up to timeout_ms (-1: forever) for their
// keys: HGRID_ERR_TIMEOUT. HGRID_OK, or a negative status with
// hgrid_store_error's line (gridd's refusal: HGRID_ERR_REFUSED).
int hgrid_store_request(hgrid_store *s, hgrid_store_op op, const uint8_t *const *keys,
                        const size_t *key_lens, int num_keys, const uint8_t *value,
                        size_t value_len, const uint8_t *expected, size_t expected_len,
                        int timeout_ms, int64_t *number);
// The last reply's value (valid until the next request).
const uint8_t *hgrid_store_value(const hgrid_store *s, size_t *len);
const char *hgrid_store_error(const hgrid_store *s);
void hgrid_store_close(hgrid_store *s);

// ---- defaults for launchers
// $HGRID_HOSTNAME, else gethostname(); into buf.
void hgrid_default_host(char *buf, size_t buflen);
// LOCAL_RANK, else SLURM_LOCALID, else 0.
int hgrid_default_device(void);
// RANK, else SLURM_PROCID, else -1.
int hgrid_launcher_rank(void);
// The hgrid version this library was built from (what --version prints).
const char *hgrid_version(void);

#endif
