// Jobs and their state machine: join, mint, assign, ready, abort, cancel
// (docs/PROTOCOL.md).
#ifndef HGRID_DAEMON_JOB_H
#define HGRID_DAEMON_JOB_H

#include "daemon/conn.h"
#include "daemon/gridd.h"
#include "daemon/mint.h"
#include "daemon/roster.h"
#include "daemon/state.h"
#include "wire/wire.h"

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

job *job_find(server *srv, const char *name);
// A new job from a validated plan; NULL if out of memory.
job *job_create(server *srv, const job_record *rec, const hg_plan *plan);
void job_cancel(server *srv, job *j, const char *reason); // Release to its workers
void job_free(job *j);
void job_joined(job *j, conn *c); // after roster_join put c into its slot
void job_worker_gone(conn *c, const char *reason);
void job_mint_reply(conn *c, const Hgrid__MintReply *reply);
void job_ready(conn *c, uint64_t generation);
void job_heartbeat(conn *c, const Hgrid__Heartbeat *hb);
const char *job_state_name(job_state s);
const char *slot_state_name(slot_state s);
// Saves every job to --state-dir (if given); failures are logged.
void jobs_save(server *srv);

#endif
