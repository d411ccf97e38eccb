// How jobs end: Done and Failure from workers, the outcome (finished,
// failed, cancelled) recorded, saved and sent to every worker in its
// Release, ended jobs kept for --keep-finished.
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "daemon/job.h"
#include "daemon/store.h"

int64_t gridd_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static job_state ended_state(Hgrid__Outcome outcome)
{
    return outcome == HGRID__OUTCOME__OUTCOME_FINISHED ? JOB_FINISHED
           : outcome == HGRID__OUTCOME__OUTCOME_FAILED ? JOB_FAILED
                                                       : JOB_CANCELLED;
}

static void send_release(const job *j, conn *c)
{
    Hgrid__Envelope env;
    Hgrid__Release release;
    wire_envelope_init(&env);
    hgrid__release__init(&release);
    release.reason = (char *)j->rec.end_reason;
    release.outcome = (Hgrid__Outcome)j->rec.outcome;
    env.msg_case = HGRID__ENVELOPE__MSG_RELEASE;
    env.release = &release;
    conn_send(c, &env);
    conn_finish(c);
}

static void record_end(job *j, Hgrid__Outcome outcome, const char *reason)
{
    j->state = ended_state(outcome);
    j->rec.outcome = (uint32_t)outcome;
    j->rec.ended_unix_ms = gridd_unix_ms();
    snprintf(j->rec.end_reason, sizeof j->rec.end_reason, "%s", reason);
}

// Counts the recorded end, releases every worker with it and logs it.
static void release_all(job *j)
{
    server *srv = j->srv;
    roster *r = &j->rec.roster;
    srv->metrics.jobs_ended[j->state - JOB_FINISHED]++;
    int released = 0;
    for (int s = 0; s < r->world_size; s++) {
        conn *c = r->slots[s].conn;
        if (!c)
            continue;
        c->job = NULL;
        c->slot = -1;
        conn_unwatch(c);
        roster_leave(r, s);
        send_release(j, c);
        released++;
    }
    store_job_gone(j); // torch's rendezvous ends with the job
    gridd_log_at(j->state == JOB_FAILED ? GRIDD_WARN : GRIDD_NOTICE, j, -1,
                 "job %s reason=\"%s\" generation=%llu released=%d kept_for=%.3gs",
                 job_state_name(j->state), j->rec.end_reason,
                 (unsigned long long)j->rec.generation, released, srv->opt.keep_finished);
}

void job_end(job *j, Hgrid__Outcome outcome, const char *reason)
{
    record_end(j, outcome, reason);
    jobs_save(j->srv); // before any worker hears of it; unsaved, it ends all the same
    release_all(j);
}

int job_cancel(job *j, const char *reason)
{
    job_state state = j->state;
    record_end(j, HGRID__OUTCOME__OUTCOME_CANCELLED, reason);
    if (jobs_save(j->srv)) { // unsaved, it is not cancelled: it runs on
        j->state = state;
        j->rec.outcome = HGRID__OUTCOME__OUTCOME_UNSPECIFIED;
        j->rec.ended_unix_ms = 0;
        j->rec.end_reason[0] = '\0';
        return -1;
    }
    release_all(j);
    return 0;
}

void job_release_late(job *j, conn *c)
{
    gridd_log_at(GRIDD_INFO, j, -1, "worker said Hello to the %s job; released",
                 job_state_name(j->state));
    send_release(j, c);
}

bool job_expired(const job *j, int64_t now_unix_ms)
{
    return job_ended(j) &&
           now_unix_ms - j->rec.ended_unix_ms >= (int64_t)(j->srv->opt.keep_finished * 1000);
}

void job_done(conn *c, const Hgrid__Done *done)
{
    job *j = c->job;
    roster *r = &j->rec.roster;
    int s = c->slot;
    if (done->generation != j->rec.generation) {
        gridd_log_at(GRIDD_INFO, j, s, "stale Done ignored done_gen=%llu",
                     (unsigned long long)done->generation);
        return;
    }
    if (r->slots[s].state != SLOT_READY) {
        conn_fail(c, HGRID__ERROR_CODE__ERROR_BAD_REQUEST,
                  "Done from rank %d before its Ready; send Ready first", s);
        return;
    }
    if (j->ranks[s].done)
        return;
    j->ranks[s].done = true;
    j->num_done++;
    r->slots[s].step = done->step > r->slots[s].step ? done->step : r->slots[s].step;
    gridd_log_at(GRIDD_INFO, j, s, "rank done step=%llu done=%d/%d",
                 (unsigned long long)done->step, j->num_done, r->world_size);
    if (j->num_done == r->world_size && j->state == JOB_RUNNING) {
        char reason[128];
        snprintf(reason, sizeof reason, "every rank finished its training (%d ranks)",
                 r->world_size);
        job_end(j, HGRID__OUTCOME__OUTCOME_FINISHED, reason);
    }
}

void job_failure(conn *c, const Hgrid__Failure *f)
{
    job *j = c->job;
    const roster *r = &j->rec.roster;
    int s = c->slot;
    if (f->generation && f->generation != j->rec.generation) {
        gridd_log_at(GRIDD_INFO, j, s, "stale Failure ignored failure_gen=%llu reason=\"%.200s\"",
                     (unsigned long long)f->generation, f->reason);
        return;
    }
    char reason[STATE_REASON_MAX + 1];
    if (r->assigned)
        snprintf(reason, sizeof reason, "rank %d (%s/%d) failed: %.160s", s,
                 roster_host_name(r, r->slots[s].host), r->slots[s].device, f->reason);
    else
        snprintf(reason, sizeof reason, "a worker (%s/%d) failed: %.160s",
                 roster_host_name(r, r->slots[s].host), r->slots[s].device, f->reason);
    wire_printable(reason); // the text of a token holder: every worker's Release, hgridctl
    if (!f->retry) {
        job_end(j, HGRID__OUTCOME__OUTCOME_FAILED, reason);
        return;
    }
    if (j->state == JOB_WAITING) {
        gridd_log_at(GRIDD_WARN, j, s, "worker reports a failure while the job waits for its "
                     "workers reason=\"%s\"", reason);
        return;
    }
    if (r->assigned) // its communicators are suspect: re-create its groups
        rebuild_lose(&j->rebuild, s);
    job_abort_generation(j, reason, NULL, r->assigned ? s : -1);
    if (!job_ended(j) && roster_full(r) && !j->settling) // nobody left: the next one at once
        job_start_generation(j);
}
