// After an Abort: the workers' OpCounts, the verdict on the groups that
// hold no replaced rank (daemon/core/settle.h), AbortGroups to the members
// of the broken ones, and then the next generation (docs/DESIGN.md,
// "Partial rebuild").
#include <stdio.h>
#include <stdlib.h>

#include "daemon/job.h"

void job_settle_begin(job *j, uint64_t generation)
{
    settle_begin(&j->settle);
    j->settling = false;
    if (!j->rec.roster.assigned || j->assignment_only)
        return; // no communicators to keep
    for (int s = 0; s < j->plan.world_size; s++) {
        const conn *c = j->rec.roster.slots[s].conn;
        if (c && c->counts_ops && !j->rebuild.replaced[s])
            settle_expect(&j->settle, s);
    }
    j->settling = j->settle.awaited > 0;
    j->settle_generation = generation;
    j->settle_deadline = gridd_now_ms() + GRIDD_SETTLE_MS;
}

// Tells rank's worker (one that counts) which of its groups are broken.
static void send_abort_groups(job *j, int rank)
{
    conn *c = j->rec.roster.slots[rank].conn;
    if (!c || !c->counts_ops || c->job != j)
        return;
    settle_position pos[SETTLE_MAX_POSITIONS];
    uint32_t groups[SETTLE_MAX_POSITIONS];
    int np = settle_positions(&j->mint, rank, pos), n = 0;
    for (int p = 0; p < np; p++)
        if (pos[p].id >= 0 && j->settle.broken[pos[p].id])
            groups[n++] = (uint32_t)p;
    if (n == 0)
        return;
    Hgrid__AbortGroups msg = HGRID__ABORT_GROUPS__INIT;
    msg.generation = j->settle_generation;
    msg.n_groups = (size_t)n;
    msg.groups = groups;
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_ABORT_GROUPS;
    env.abort_groups = &msg;
    conn_send(c, &env);
}

// The verdict: silent workers count as replaced; the broken ids are
// re-created by the next generation and their members abort them now.
static void finish(job *j)
{
    j->settling = false;
    int silent = 0, reported = 0;
    for (int s = 0; s < j->plan.world_size; s++)
        reported += j->settle.reported[s];
    for (int s = 0; s < j->plan.world_size; s++)
        if (j->settle.expected[s] && !j->settle.reported[s]) {
            rebuild_lose(&j->rebuild, s);
            silent++;
            gridd_log_at(GRIDD_WARN, j, s, "no OpCounts within %d ms of the Abort: its groups "
                         "are re-created", GRIDD_SETTLE_MS);
        }
    int broken = settle_judge(&j->settle, &j->mint, j->rebuild.replaced, j->members), elsewhere = 0;
    for (int id = 0; id < j->mint.num_ids; id++)
        if (j->settle.broken[id]) {
            rebuild_break(&j->rebuild, id);
            int n = rebuild_id_members(&j->mint, id, j->members), lost = 0;
            for (int m = 0; m < n; m++)
                lost |= j->rebuild.replaced[j->members[m]];
            elsewhere += !lost;
            if (lost || elsewhere > GRIDD_SETTLE_LOG_GROUPS)
                continue;
            char list[256];
            size_t at = 0;
            for (int m = 0; m < n && at + 16 < sizeof list; m++)
                at += (size_t)snprintf(list + at, sizeof list - at, "%s%d", m ? "," : "",
                                       j->members[m]);
            gridd_log_at(GRIDD_NOTICE, j, -1, "group broken: a member left it mid-operation "
                         "id=%d members=%s%s", id, list, at + 16 >= sizeof list ? ",..." : "");
        }
    gridd_log_at(GRIDD_NOTICE, j, -1, "groups settled generation=%llu reported=%d silent=%d "
                 "broken=%d without_replaced_rank=%d kept=%d", (unsigned long long)j->settle_generation, reported, silent, broken, elsewhere, j->mint.num_ids - broken);
    uint64_t gen = j->rec.generation;
    // Every member of a broken group is told (those holding a lost rank
    // were aborted by the Abort already; a silent rank's peers were not).
    for (int s = 0; broken && s < j->plan.world_size; s++) {
        send_abort_groups(j, s);
        if (job_ended(j) || j->rec.generation != gen)
            return;
    }
    if (j->state == JOB_WAITING && roster_full(&j->rec.roster))
        job_start_generation(j);
}

void job_op_counts(conn *c, const Hgrid__OpCounts *m)
{
    job *j = c->job;
    int s = c->slot;
    if (!j->settling || m->generation != j->settle_generation)
        return; // late, or for a round already judged
    if (m->n_groups > SETTLE_MAX_POSITIONS) {
        conn_fail(c, HGRID__ERROR_CODE__ERROR_BAD_REQUEST, "OpCounts with %zu groups; a rank "
                  "has at most %d", m->n_groups, SETTLE_MAX_POSITIONS);
        return;
    }
    settle_group groups[SETTLE_MAX_POSITIONS];
    size_t total = 0;
    for (size_t i = 0; i < m->n_groups; i++)
        total += m->groups[i]->n_peers;
    if (total > (size_t)j->plan.world_size * SETTLE_MAX_POSITIONS) {
        conn_fail(c, HGRID__ERROR_CODE__ERROR_BAD_REQUEST, "OpCounts with %zu peers", total);
        return;
    }
    settle_peer *peers = malloc(sizeof *peers * (total ? total : 1));
    if (!peers) {
        gridd_log_at(GRIDD_ERROR, j, s, "out of memory for OpCounts; its groups are re-created");
        return;
    }
    size_t at = 0;
    for (size_t i = 0; i < m->n_groups; i++) {
        const Hgrid__GroupOps *g = m->groups[i];
        groups[i] = (settle_group){g->group > INT32_MAX ? -1 : (int)g->group, g->collectives,
                                   peers + at, (int)g->n_peers};
        for (size_t k = 0; k < g->n_peers; k++, at++)
            peers[at] = (settle_peer){g->peers[k]->peer > INT32_MAX ? -1 : (int)g->peers[k]->peer,
                                      g->peers[k]->sent, g->peers[k]->received};
    }
    char err[256];
    int rc = settle_report(&j->settle, &j->mint, s, groups, (int)m->n_groups, err, sizeof err);
    free(peers);
    if (rc < 0) {
        conn_fail(c, HGRID__ERROR_CODE__ERROR_BAD_REQUEST, "OpCounts: %s", err);
        return;
    }
    if (j->settle.awaited == 0)
        finish(j);
}

void job_settle_gone(job *j, int rank)
{
    if (!j->settling)
        return;
    settle_forget(&j->settle, rank);
    if (j->settle.awaited == 0)
        finish(j);
}

void job_settle_sweep(job *j, int64_t now_ms)
{
    if (j->settling && now_ms >= j->settle_deadline && !job_ended(j))
        finish(j);
}
