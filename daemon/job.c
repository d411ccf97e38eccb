// Jobs and their state machine: join, mint, assign, ready, abort, cancel.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/job.h"

#include "daemon/assignment.h"
#include "daemon/hostlink.h"
#include "daemon/store.h"

const char *job_state_name(job_state s)
{
    static const char *names[] = {"waiting",  "minting", "assigned", "running",
                                  "resuming", "finished", "failed",  "cancelled"};
    return names[s];
}

const char *slot_state_name(slot_state s)
{
    static const char *names[] = {"empty", "joined", "assigned", "ready", "lost"};
    return names[s];
}

job *job_find(server *srv, const char *name)
{
    for (job *j = srv->jobs; j; j = j->next)
        if (strcmp(j->rec.name, name) == 0)
            return j;
    return NULL;
}

job *job_create(server *srv, const job_record *rec, const hg_plan *plan)
{
    job *j = job_build(rec, plan);
    if (j)
        job_link(srv, j);
    return j;
}

job *job_build(const job_record *rec, const hg_plan *plan)
{
    job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->rec = *rec;
    j->plan = *plan;
    mint_plan_init(&j->mint, &j->plan);
    size_t world = (size_t)plan->world_size;
    j->ids = malloc((size_t)j->mint.num_ids * MINT_ID_BYTES + 1);
    j->missing = malloc(sizeof *j->missing * world);
    j->members = malloc(sizeof *j->members * world);
    j->ranks = calloc(world, sizeof *j->ranks);
    if (!j->ids || !j->missing || !j->members || !j->ranks ||
        rebuild_init(&j->rebuild, &j->mint) || settle_init(&j->settle, &j->mint)) {
        rebuild_free(&j->rebuild);
        settle_free(&j->settle);
        free(j->ids);
        free(j->missing);
        free(j->members);
        free(j->ranks);
        free(j);
        return NULL;
    }
    wire_layout_from_spec(&j->rec.spec, &j->wire);
    j->state = JOB_WAITING;
    return j;
}

void job_link(server *srv, job *j)
{
    j->srv = srv;
    j->next = srv->jobs;
    srv->jobs = j;
    srv->num_jobs++;
}

void job_restored(job *j)
{
    if (j->rec.outcome) {
        j->state = j->rec.outcome == HGRID__OUTCOME__OUTCOME_FINISHED ? JOB_FINISHED
                   : j->rec.outcome == HGRID__OUTCOME__OUTCOME_FAILED ? JOB_FAILED
                                                                       : JOB_CANCELLED;
        return;
    }
    if (!j->rec.roster.assigned || j->rec.generation == 0)
        return;
    j->state = JOB_RESUMING;
    j->resume_deadline = gridd_now_ms() + (int64_t)(j->srv->opt.resume_timeout * 1000);
}

// What the loop shares with a job (host links, store clients) lets go of
// it: on the loop, never on the thread pool.
static void job_detach(job *j)
{
    hostlink_forget_job(j);
    store_job_gone(j);
}

// The job's own memory: any thread.
static void job_release_memory(job *j)
{
    roster_free(&j->rec.roster);
    rebuild_free(&j->rebuild);
    settle_free(&j->settle);
    free(j->ids);
    free(j->missing);
    free(j->members);
    free(j->ranks);
    free(j);
}

void job_free(job *j)
{
    job_detach(j);
    job_release_memory(j);
}

static void unlink_job(server *srv, job *j)
{
    for (job **p = &srv->jobs; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            break;
        }
    srv->num_jobs--;
}

void job_remove(server *srv, job *j)
{
    unlink_job(srv, j);
    job_free_later(srv, j);
}

int jobs_save(server *srv)
{
    if (!srv->opt.state_dir)
        return 0;
    const job_record **recs = malloc(sizeof *recs * (size_t)(srv->num_jobs + 1));
    char err[512];
    int rc = -1;
    if (!recs) {
        snprintf(err, sizeof err, "out of memory listing %d jobs", srv->num_jobs);
    } else {
        int n = 0;
        for (job *j = srv->jobs; j; j = j->next)
            if (!j->leaving)
                recs[n++] = &j->rec;
        rc = state_save(srv->opt.state_dir, recs, n, err, sizeof err);
    }
    free(recs);
    if (rc) {
        gridd_log_at(GRIDD_ERROR, NULL, -1,
                     "cannot save state: %s (fix --state-dir; a restart would lose this change)",
                     err);
        return -1;
    }
    for (job *j = srv->jobs; j; j = j->next)
        j->saved_map_version = j->rec.roster.map_version;
    return 0;
}

static void free_job_work(uv_work_t *req)
{
    job_release_memory(req->data);
}

static void free_job_done(uv_work_t *req, int status)
{
    (void)status;
    free(req);
}

void job_free_later(server *srv, job *j)
{
    job_detach(j); // the loop's lists are the loop's (a pool thread must not walk them)
    uv_work_t *req = malloc(sizeof *req);
    if (req) {
        req->data = j;
        if (uv_queue_work(srv->loop, req, free_job_work, free_job_done) == 0)
            return;
    }
    free(req);
    job_release_memory(j);
}

// Sends rank's Assignment. Returns false if that lost a worker and so
// aborted the generation (the caller stops).
static bool assign_rank(job *j, int rank)
{
    uint64_t gen = j->rec.generation;
    roster_slot *slot = &j->rec.roster.slots[rank];
    conn *c = slot->conn;
    slot->state = SLOT_ASSIGNED;
    if (assignment_send(j, rank, c) == 0 && c->hello_ns) {
        metrics_observe_join(&j->srv->metrics, (double)(uv_hrtime() - c->hello_ns) * 1e-9);
        c->hello_ns = 0;
    }
    conn_await_ready(c);
    if (j->state != JOB_MINTING || j->rec.generation != gen)
        return false;
    if (++j->assigned == j->plan.world_size) {
        j->state = JOB_ASSIGNED;
        gridd_log_at(GRIDD_NOTICE, j, -1, "assignments sent assigned=%d after_whole_ms=%lld",
                     j->assigned, (long long)(gridd_now_ms() - j->whole_at));
    }
    return true;
}

// An id came in: members of its group that now hold all their ids get
// their Assignment at once, while other leaders are still minting.
static bool id_arrived(job *j, int id)
{
    int n = rebuild_id_members(&j->mint, id, j->members);
    for (int i = 0; i < n; i++)
        if (--j->missing[j->members[i]] == 0 && !assign_rank(j, j->members[i]))
            return false;
    return true;
}

// A generation mints no ids when any worker joined assignment-only (it
// could not mint, and a communicator needs every member): every
// Assignment then says so.
static bool any_assignment_only(const job *j)
{
    for (int s = 0; s < j->plan.world_size; s++)
        if (((const conn *)j->rec.roster.slots[s].conn)->assignment_only)
            return true;
    return false;
}

void job_start_generation(job *j)
{
    uint64_t gen = ++j->rec.generation;
    j->assignment_only = any_assignment_only(j);
    j->srv->metrics.generations_started++;
    jobs_save(j->srv);
    j->state = JOB_MINTING;
    j->mint_pending = 0;
    j->assigned = 0;
    j->ready = 0;
    j->whole_at = gridd_now_ms();
    for (int s = 0; s < j->plan.world_size; s++)
        j->ranks[s].done = false;
    j->num_done = 0;
    // An assignment-only generation forms no communicators: every rank
    // counts as replaced, so the next minting generation mints every id.
    if (j->assignment_only)
        rebuild_lose_all(&j->rebuild);
    int changed = j->assignment_only ? 0 : rebuild_plan(&j->rebuild, &j->mint);
    if (!j->assignment_only)
        j->minted_generation = gen;
    Hgrid__Envelope env;
    Hgrid__MintRequest req;
    wire_envelope_init(&env);
    hgrid__mint_request__init(&req);
    req.generation = gen;
    env.msg_case = HGRID__ENVELOPE__MSG_MINT_REQUEST;
    env.mint_request = &req;
    if (j->assignment_only) {
        memset(j->missing, 0, sizeof *j->missing * (size_t)j->plan.world_size);
        memset(j->rebuild.leads, 0, sizeof *j->rebuild.leads * (size_t)j->plan.world_size);
    } else {
        rebuild_count(&j->rebuild, &j->mint, j->missing, j->members);
    }
    const int *leads = j->rebuild.leads;
    for (int s = 0; s < j->plan.world_size; s++) {
        roster_slot *slot = &j->rec.roster.slots[s];
        slot->state = SLOT_JOINED;
        int n = leads[s];
        if (n == 0)
            continue;
        slot->mint_pending = true;
        j->mint_pending++;
        req.count = (uint32_t)n;
        conn_watch(slot->conn);
        conn_send(slot->conn, &env);
        if (j->state != JOB_MINTING || j->rec.generation != gen)
            return;
    }
    gridd_log_at(j->rec.generation > 1 ? GRIDD_NOTICE : GRIDD_INFO, j, -1,
                 "generation started leaders=%d ids=%d changed=%d assignment_only=%d",
                 j->mint_pending, j->assignment_only ? 0 : j->mint.num_ids, changed,
                 j->assignment_only);
    for (int s = 0; s < j->plan.world_size; s++) // ranks whose groups need no id
        if (j->missing[s] == 0 && !assign_rank(j, s))
            return;
}

// lost_rank >= 0: the rank whose loss ended the generation (workers abort
// the communicators holding it at once).
static void send_abort(conn *c, uint64_t generation, const char *reason, int lost_rank)
{
    Hgrid__Envelope env;
    Hgrid__Abort abort_msg;
    wire_envelope_init(&env);
    hgrid__abort__init(&abort_msg);
    abort_msg.generation = generation;
    abort_msg.reason = (char *)reason;
    uint32_t lost = (uint32_t)lost_rank;
    abort_msg.n_lost_ranks = lost_rank >= 0;
    abort_msg.lost_ranks = &lost;
    env.msg_case = HGRID__ENVELOPE__MSG_ABORT;
    env.abort = &abort_msg;
    conn_send(c, &env);
}

void job_abort_generation(job *j, const char *reason, const conn *skip, int lost_rank)
{
    uint64_t gen = j->rec.generation;
    if (gen > (uint64_t)j->srv->opt.max_restarts) {
        char why[STATE_REASON_MAX + 1];
        snprintf(why, sizeof why, "generation %llu aborted (%.160s); --max-restarts %d reached",
                 (unsigned long long)gen, reason, j->srv->opt.max_restarts);
        job_end(j, HGRID__OUTCOME__OUTCOME_FAILED, why);
        return;
    }
    j->state = JOB_WAITING;
    for (int s = 0; s < j->plan.world_size; s++)
        j->ranks[s].done = false;
    j->num_done = 0;
    j->mint_pending = 0;
    j->assigned = 0;
    j->ready = 0;
    j->srv->metrics.aborts++;
    gridd_log_at(GRIDD_WARN, j, -1, "generation aborted reason=\"%s\"", reason);
    for (int s = 0; s < j->plan.world_size; s++) {
        roster_slot *slot = &j->rec.roster.slots[s];
        conn *c = slot->conn;
        if (!c)
            continue;
        slot->state = SLOT_JOINED;
        slot->mint_pending = false;
        conn_unwatch(c);
    }
    job_settle_begin(j, gen);
    for (int s = 0; s < j->plan.world_size; s++) {
        conn *c = j->rec.roster.slots[s].conn;
        if (c && c != skip && c->job == j)
            send_abort(c, gen, reason, lost_rank);
    }
}

// A worker back with the generation gridd restored: it keeps its
// communicators; once every rank is back the generation carries on.
static void resumed(job *j, conn *c, const Hgrid__Resume *resume)
{
    bool ready = resume->ready;
    roster *r = &j->rec.roster;
    roster_slot *slot = &r->slots[c->slot];
    if (ready && resume->done && !j->ranks[c->slot].done) {
        j->ranks[c->slot].done = true;
        j->num_done++;
    }
    slot->state = ready ? SLOT_READY : SLOT_ASSIGNED;
    j->assigned++;
    if (ready) {
        j->ready++;
        conn_watch(c);
    } else {
        conn_await_ready(c);
    }
    gridd_log_at(GRIDD_INFO, j, c->slot, "worker resumed the generation host=%s device=%d "
                 "joined=%d/%d", roster_host_name(r, slot->host), slot->device, r->live,
                 r->world_size);
    if (!roster_full(r))
        return;
    j->state = j->ready == r->world_size ? JOB_RUNNING : JOB_ASSIGNED;
    j->whole_at = gridd_now_ms();
    gridd_log_at(GRIDD_NOTICE, j, -1, "generation resumed by all workers, no new ids workers=%d "
                 "after_start_ms=%lld", r->world_size,
                 (long long)(j->whole_at - j->srv->started_ms));
    if (j->num_done == r->world_size)
        job_end(j, HGRID__OUTCOME__OUTCOME_FINISHED, "every rank finished its training");
}

void jobs_sweep(server *srv)
{
    int64_t now = gridd_now_ms(), unix_now = gridd_unix_ms();
    int dropped = 0;
    for (job *j = srv->jobs, *next; j; j = next) {
        next = j->next;
        if (job_expired(j, unix_now)) {
            gridd_log_at(GRIDD_NOTICE, j, -1, "job dropped %.3g s after it ended (--keep-finished)",
                         srv->opt.keep_finished);
            job_remove(srv, j);
            dropped++;
        }
    }
    if (dropped)
        jobs_save(srv);
    for (job *j = srv->jobs; j; j = j->next) {
        if (j->state != JOB_RESUMING || now < j->resume_deadline)
            continue;
        const roster *r = &j->rec.roster;
        int first = 0;
        while (first < r->world_size - 1 && r->slots[first].conn)
            first++;
        char reason[512];
        snprintf(reason, sizeof reason,
                 "%d of %d workers did not resume it within %.3g s of gridd's restart (first: "
                 "rank %d, %s/%d)", r->world_size - r->live, r->world_size,
                 srv->opt.resume_timeout, first, roster_host_name(r, r->slots[first].host),
                 r->slots[first].device);
        job_abort_generation(j, reason, NULL, -1);
    }
    for (job *j = srv->jobs; j; j = j->next)
        job_settle_sweep(j, now);
}

void job_joined(job *j, conn *c, const Hgrid__Resume *resume)
{
    roster *r = &j->rec.roster;
    const roster_slot *slot = &r->slots[c->slot];
    const char *host = roster_host_name(r, slot->host);
    if (j->state == JOB_RESUMING) {
        // Only the device that held the rank resumes it, not a replacement.
        bool same_device = r->map_version == j->saved_map_version;
        if (resume && resume->generation == j->rec.generation && same_device) {
            c->hello_ns = 0; // it keeps its Assignment
            resumed(j, c, resume);
            return;
        }
        char reason[512];
        snprintf(reason, sizeof reason, "rank %d (%s/%d) came back without it after gridd's "
                 "restart", c->slot, host, slot->device);
        job_abort_generation(j, reason, c, -1);
        if (job_ended(j))
            return;
    }
    if (resume && resume->generation) { // its generation ended while it was away
        char reason[128];
        snprintf(reason, sizeof reason, "generation %llu ended while this worker was away",
                 (unsigned long long)resume->generation);
        send_abort(c, resume->generation, reason, -1);
        if (c->job != j)
            return; // the send failed and lost the worker
    }
    if (r->assigned) {
        gridd_log_at(GRIDD_INFO, j, c->slot, "worker rejoined host=%s device=%d joined=%d/%d",
                     host, slot->device, r->live, r->world_size);
        if (r->map_version != j->saved_map_version) // it replaced a lost worker
            jobs_save(j->srv);
    } else {
        gridd_log_at(GRIDD_INFO, j, -1, "worker joined host=%s device=%d joined=%d/%d", host,
                     slot->device, r->live, r->world_size);
    }
    if (!roster_full(r))
        return;
    if (!r->assigned) {
        if (roster_assign(r, &j->plan)) {
            gridd_log_at(GRIDD_ERROR, j, -1, "out of memory assigning %d ranks; cancel and "
                         "resubmit the job", r->world_size);
            return;
        }
        for (int s = 0; s < r->world_size; s++)
            ((conn *)r->slots[s].conn)->slot = s;
        gridd_log_at(GRIDD_NOTICE, j, -1, "ranks assigned hosts=%d", r->num_hosts);
    }
    if (j->settling)
        return; // the verdict on the last generation's groups starts it
    job_start_generation(j);
}

void job_worker_gone(conn *c, const char *why)
{
    job *j = c->job;
    roster *r = &j->rec.roster;
    int s = c->slot;
    c->job = NULL;
    c->slot = -1;
    conn_unwatch(c);
    const roster_slot *slot = &r->slots[s];
    char host[ROSTER_MAX_HOST + 1];
    int device = slot->device;
    snprintf(host, sizeof host, "%s", roster_host_name(r, slot->host));
    bool assigned = r->assigned;
    roster_leave(r, s);
    if (assigned)
        rebuild_lose(&j->rebuild, s);
    job_settle_gone(j, s);
    if (!assigned) {
        gridd_log_at(GRIDD_INFO, j, -1, "worker left before ranks were assigned host=%s device=%d "
                     "joined=%d/%d reason=\"%s\"", host, device, r->live, r->world_size, why);
        return;
    }
    gridd_log_at(GRIDD_WARN, j, s, "worker lost host=%s device=%d joined=%d/%d reason=\"%s\"",
                 host, device, r->live, r->world_size, why);
    if (j->state == JOB_WAITING)
        return;
    char reason[512];
    snprintf(reason, sizeof reason, "rank %d (%s/%d) lost: %s", s, host, device, why);
    job_abort_generation(j, reason, NULL, s);
}

void job_mint_reply(conn *c, const Hgrid__MintReply *reply)
{
    job *j = c->job;
    roster_slot *slot = &j->rec.roster.slots[c->slot];
    if (reply->generation != j->rec.generation || j->state != JOB_MINTING || !slot->mint_pending) {
        gridd_log_at(GRIDD_INFO, j, c->slot, "stale MintReply ignored reply_gen=%llu state=%s",
                     (unsigned long long)reply->generation, job_state_name(j->state));
        return;
    }
    int ids[MINT_MAX_PER_RANK];
    int n = rebuild_leader_ids(&j->rebuild, &j->mint, c->slot, ids);
    if (reply->n_ids != (size_t)n) {
        conn_fail(c, HGRID__ERROR_CODE__ERROR_BAD_REQUEST,
                  "MintReply carries %zu ids; MintRequest asked rank %d for %d", reply->n_ids,
                  c->slot, n);
        return;
    }
    for (int i = 0; i < n; i++)
        if (reply->ids[i].len != MINT_ID_BYTES) {
            conn_fail(c, HGRID__ERROR_CODE__ERROR_BAD_REQUEST,
                      "MintReply id %d has %zu bytes; NCCL ids have %d", i, reply->ids[i].len,
                      MINT_ID_BYTES);
            return;
        }
    slot->mint_pending = false;
    j->mint_pending--;
    for (int i = 0; i < n; i++) {
        memcpy(j->ids + (size_t)ids[i] * MINT_ID_BYTES, reply->ids[i].data, MINT_ID_BYTES);
        if (!id_arrived(j, ids[i]))
            return;
    }
}

void job_ready(conn *c, uint64_t generation)
{
    job *j = c->job;
    roster_slot *slot = &j->rec.roster.slots[c->slot];
    if (generation != j->rec.generation || slot->state != SLOT_ASSIGNED)
        return; // a Ready for an aborted generation
    slot->state = SLOT_READY;
    conn_watch(c);
    if (++j->ready < j->plan.world_size)
        return;
    j->state = JOB_RUNNING;
    if (j->minted_generation == j->rec.generation) // every communicator formed
        rebuild_formed(&j->rebuild);
    gridd_log_at(GRIDD_NOTICE, j, -1, "generation running ready=%d after_whole_ms=%lld", j->ready,
                 (long long)(gridd_now_ms() - j->whole_at));
}

void job_comms_lost(conn *c, const Hgrid__CommsLost *lost)
{
    job *j = c->job;
    int s = c->slot;
    if (job_ended(j) || !j->rec.roster.assigned || j->assignment_only ||
        lost->generation > j->rec.generation ||
        j->rebuild.replaced[s])
        return; // nothing kept that holds it
    rebuild_lose(&j->rebuild, s);
    gridd_log_at(GRIDD_NOTICE, j, s, "communicators lost generation=%llu reason=\"%.200s\"",
                 (unsigned long long)lost->generation, lost->reason);
    if (j->state == JOB_WAITING || j->state == JOB_RESUMING)
        return; // the next generation re-creates its groups
    char reason[320];
    snprintf(reason, sizeof reason, "rank %d lost communicators of generation %llu that this "
             "generation keeps; its groups are re-created", s,
             (unsigned long long)lost->generation);
    job_abort_generation(j, reason, NULL, -1);
}

void job_heartbeat(conn *c, const Hgrid__Heartbeat *hb)
{
    job *j = c->job;
    roster_slot *slot = &j->rec.roster.slots[c->slot];
    slot->last_heartbeat = gridd_now_ms();
    slot->step = hb->step;
    slot->loss = hb->no_loss ? 0 : hb->loss;
    if (j->rec.roster.assigned) {
        j->ranks[c->slot].has_loss = !hb->no_loss;
        if (!hb->no_loss)
            job_record_loss(j, c->slot, hb->step, hb->loss);
    }
    slot->throughput = hb->throughput;
    slot->step_time_s = hb->step_time_s;
}
