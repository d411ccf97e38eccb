// Jobs and their state machine: join, mint, assign, ready, abort, cancel
// (docs/PROTOCOL.md).
#ifndef HGRID_DAEMON_JOB_H
#define HGRID_DAEMON_JOB_H

#include "daemon/conn.h"
#include "daemon/gridd.h"
#include "daemon/core/mint.h"
#include "daemon/core/rebuild.h"
#include "daemon/core/roster.h"
#include "daemon/core/settle.h"
#include "daemon/core/state.h"
#include "wire/wire.h"

// JOB_RESUMING: gridd restarted; the saved generation's workers have until
// resume_deadline to come back with it (then it carries on, no new ids).
// The last three are the ended states (job_ended): the job stays listed for
// --keep-finished with its outcome, then gridd drops it.
typedef enum {
    JOB_WAITING, JOB_MINTING, JOB_ASSIGNED, JOB_RUNNING, JOB_RESUMING,
    JOB_FINISHED, JOB_FAILED, JOB_CANCELLED, NUM_JOB_STATES
} job_state;

#define JOB_LOSS_HISTORY 64 // recent losses kept per module (hgridctl watch's sparkline)

// Per rank, for the current generation.
typedef struct {
    bool done;     // reported Done
    bool has_loss; // its last heartbeat carried a loss
} job_rank;

// A module's recent losses: one per step gridd heard of, a ring.
typedef struct {
    uint64_t generation, step; // the last step recorded, and its generation
    float loss[JOB_LOSS_HISTORY];
    int next, count;
} job_loss_history;

struct job {
    job_record rec;
    hg_plan plan;
    mint_plan mint;
    rebuild_state rebuild; // which ids the next generation re-mints
    settle_state settle;   // after an Abort: the workers' OpCounts (job_settle.c)
    bool settling;         // OpCounts awaited: the next generation waits for the verdict
    uint64_t settle_generation; // the aborted generation they count
    int64_t settle_deadline;    // ms: then the silent ones count as replaced
    uint64_t minted_generation; // the generation whose ids this gridd minted (j->ids)
    wire_layout wire; // rec.spec on the wire (Assignment, JobInfo)
    job_state state;
    uint8_t *ids;  // mint.num_ids ids of MINT_ID_BYTES, this generation's
    int *missing;  // per rank: ids its Assignment still waits for
    int *members;  // scratch: one group's member ranks
    int mint_pending, assigned, ready;
    uint64_t saved_map_version; // rec.roster.map_version last persisted
    server *srv;
    int64_t whole_at; // when the worker set last became whole (ms)
    int64_t resume_deadline; // JOB_RESUMING: ms
    job_rank *ranks;         // per rank
    int num_done;            // ranks done in this generation
    job_loss_history history[HG_MAX_MODULES]; // per module, in plan order
    bool leaving;                // about to be removed: jobs_save leaves it out
    struct gridd_store *store; // torch's rendezvous store (daemon/store.c); NULL until opened
    bool assignment_only; // this generation mints no ids (a worker joined assignment-only)
    job *next;
};

job *job_find(server *srv, const char *name);
// A new job from a validated plan; NULL if out of memory.
job *job_create(server *srv, const job_record *rec, const hg_plan *plan);
// job_create in two steps: job_build touches nothing shared (any thread;
// O(world size) and more: the id plan), job_link adds it to srv's jobs.
job *job_build(const job_record *rec, const hg_plan *plan);
void job_link(server *srv, job *j);
// A restored job whose ranks were assigned waits --resume-timeout for its
// workers to resume its generation.
void job_restored(job *j);
// ---- ending (daemon/job_end.c)
static inline bool job_ended(const job *j)
{
    return j->state >= JOB_FINISHED;
}
// Ends the job with outcome (HGRID__OUTCOME__*): records it and the time,
// saves, releases every worker with it (workers of a failed job exit
// non-zero) and counts it.
void job_end(job *j, Hgrid__Outcome outcome, const char *reason);
// job_end with the cancelled outcome for a job that has not ended, once that
// is saved: -1 (j unchanged, nothing sent) if the state could not be saved.
int job_cancel(job *j, const char *reason);
// Sends an ended job's Release to a worker that says Hello, and finishes c.
void job_release_late(job *j, conn *c);
void job_done(conn *c, const Hgrid__Done *done);
void job_failure(conn *c, const Hgrid__Failure *failure);
// Mints and assigns the next generation (the worker set is whole).
void job_start_generation(job *j);
// Aborts the generation (every connected worker but skip gets Abort,
// naming lost_rank when >= 0 so its peers drop the communicators holding
// it at once) and waits for the worker set to be whole again; past
// --max-restarts the job fails instead.
void job_abort_generation(job *j, const char *reason, const conn *skip, int lost_rank);
// The job ended longer than --keep-finished ago.
bool job_expired(const job *j, int64_t now_unix_ms);
int64_t gridd_unix_ms(void);
// ---- progress (daemon/job_progress.c)
// Records rank's loss at step for its module's recent losses.
void job_record_loss(job *j, int rank, uint64_t step, float loss);
// Each module's progress, in plan order.
void job_progress(const job *j, metrics_module out[HG_MAX_MODULES], int *num_modules);
// Unlinks j and frees it on the thread pool; nothing sent.
void job_remove(server *srv, job *j);
void job_free(job *j);
// Frees an unlinked job: host links and store clients let go of it on the
// loop, its memory goes back on the thread pool (a huge job's arrays are
// slow to give back).
void job_free_later(server *srv, job *j);
// After roster_join put c into its slot; resume: the Hello's (NULL: none).
void job_joined(job *j, conn *c, const Hgrid__Resume *resume);
void job_worker_gone(conn *c, const char *reason);
void job_mint_reply(conn *c, const Hgrid__MintReply *reply);
void job_ready(conn *c, uint64_t generation);
// c's worker aborted communicators of groups that kept their id after the
// Abort of generation: its rank counts as replaced (the next generation
// re-creates its groups); a generation already forming without knowing
// that is aborted.
void job_comms_lost(conn *c, const Hgrid__CommsLost *lost);
void job_heartbeat(conn *c, const Hgrid__Heartbeat *hb);
// ---- after an Abort (daemon/job_settle.c, docs/DESIGN.md "Partial rebuild"):
// the generation was aborted: await OpCounts from every worker that counts.
void job_settle_begin(job *j, uint64_t generation);
// c's OpCounts; the verdict once every awaited worker reported.
void job_op_counts(conn *c, const Hgrid__OpCounts *m);
// rank's worker is gone: no OpCounts awaited from it.
void job_settle_gone(job *j, int rank);
// The verdict of a round past its deadline (the sweep).
void job_settle_sweep(job *j, int64_t now_ms);
const char *job_state_name(job_state s);
const char *slot_state_name(slot_state s);
// Saves every job but those leaving to --state-dir (if given). Returns 0,
// or -1 after logging why.
int jobs_save(server *srv);
// Ends resumptions past their deadline and drops ended jobs past
// --keep-finished (called by the sweep timer).
void jobs_sweep(server *srv);

#endif
