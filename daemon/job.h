// Jobs and their state machine: join, mint, assign, ready, abort, cancel
// (docs/PROTOCOL.md).
#ifndef HGRID_DAEMON_JOB_H
#define HGRID_DAEMON_JOB_H

#include "daemon/conn.h"
#include "daemon/gridd.h"
#include "daemon/core/mint.h"
#include "daemon/core/roster.h"
#include "daemon/core/state.h"
#include "wire/wire.h"

// JOB_RESUMING: gridd restarted; the saved generation's workers have until
// resume_deadline to come back with it (then it carries on, no new ids).
typedef enum { JOB_WAITING, JOB_MINTING, JOB_ASSIGNED, JOB_RUNNING, JOB_RESUMING } job_state;

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
    int64_t resume_deadline; // JOB_RESUMING: ms
    struct gridd_store *store; // torch's rendezvous store (daemon/store.c); NULL until opened
    bool assignment_only; // this generation mints no ids (a worker joined assignment-only)
    job *next;
};

job *job_find(server *srv, const char *name);
// A new job from a validated plan; NULL if out of memory.
job *job_create(server *srv, const job_record *rec, const hg_plan *plan);
// A restored job whose ranks were assigned waits --resume-timeout for its
// workers to resume its generation.
void job_restored(job *j);
// Saves the job list without j, then sends Release to its workers.
void job_cancel(server *srv, job *j, const char *reason);
void job_remove(server *srv, job *j); // unlinks and frees, nothing sent
void job_free(job *j);
// After roster_join put c into its slot; resume: the Hello's (NULL: none).
void job_joined(job *j, conn *c, const Hgrid__Resume *resume);
void job_worker_gone(conn *c, const char *reason);
void job_mint_reply(conn *c, const Hgrid__MintReply *reply);
void job_ready(conn *c, uint64_t generation);
void job_heartbeat(conn *c, const Hgrid__Heartbeat *hb);
const char *job_state_name(job_state s);
const char *slot_state_name(slot_state s);
// Saves every job to --state-dir (if given). Returns 0, or -1 after logging
// why.
int jobs_save(server *srv);
// Ends resumptions past their deadline (called by the sweep timer).
void jobs_sweep(server *srv);

#endif
