// A job's training progress per module, from its ranks' heartbeats: the
// summary /metrics exports and hgridctl shows, and the recent losses.
#include <string.h>

#include "daemon/job.h"

// The loss is the LLM's: it counts from the ranks of its last pipeline stage
// (those computing it), as hgridctl's per-module loss does.
void job_record_loss(job *j, int rank, uint64_t step, float loss)
{
    const hg_module_grid *mods[2];
    int n = hg_plan_modules_of_rank(&j->plan, rank, mods);
    const hg_module_grid *m = hg_plan_module(&j->plan, HG_MODULE_LLM);
    hg_coords c;
    if (!m || !(mods[0] == m || (n == 2 && mods[1] == m)))
        return;
    hg_module_coords(m, rank, &c);
    if (c.pp != m->dense[HG_DIM_PP] - 1)
        return;
    job_loss_history *h = &j->history[m - j->plan.modules];
    if (h->generation != j->rec.generation) { // it may resume from an older checkpoint
        h->generation = j->rec.generation;
        h->step = 0;
    }
    if (h->count > 0 && step <= h->step)
        return;
    h->step = step;
    h->loss[h->next] = loss;
    h->next = (h->next + 1) % JOB_LOSS_HISTORY;
    if (h->count < JOB_LOSS_HISTORY)
        h->count++;
}

void job_progress(const job *j, metrics_module out[HG_MAX_MODULES], int *num_modules)
{
    const roster *r = &j->rec.roster;
    *num_modules = j->plan.num_modules;
    for (int i = 0; i < j->plan.num_modules; i++) {
        const hg_module_grid *m = &j->plan.modules[i];
        metrics_module *p = &out[i];
        memset(p, 0, sizeof *p);
        p->module = hg_module_name(m->id);
        if (!r->assigned)
            continue;
        for (int rank = m->rank_offset; rank < m->rank_offset + m->num_ranks; rank++) {
            const roster_slot *slot = &r->slots[rank];
            // A live job counts its connected ranks; an ended one the last word of each.
            if (!slot->last_heartbeat || (!job_ended(j) && !slot->conn))
                continue;
            if (p->reporting == 0 || slot->throughput < p->tokens_per_s)
                p->tokens_per_s = slot->throughput;
            p->reporting++;
            if (slot->step > p->step)
                p->step = slot->step;
            if (j->ranks[rank].has_loss) {
                p->loss += slot->loss;
                p->loss_ranks++;
            }
        }
        if (p->loss_ranks)
            p->loss /= p->loss_ranks;
    }
}
