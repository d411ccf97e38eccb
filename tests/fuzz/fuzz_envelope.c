// libFuzzer: one Envelope body; a submitted layout goes through the layout
// engine exactly as gridd would take it.
#include <stdlib.h>

#include "wire/wire.h"

// Walks every group and bridge edge of a small valid plan.
static void walk_plan(const hg_plan *plan)
{
    static int members[4096];
    for (int i = 0; i < plan->num_modules; i++) {
        const hg_module_grid *m = &plan->modules[i];
        for (int k = 0; k < HG_NUM_GROUP_KINDS; k++) {
            if (!hg_group_applies(m, (hg_group_kind)k))
                continue;
            hg_group_canonical(m, (hg_group_kind)k);
            int count = hg_group_count(m, (hg_group_kind)k);
            for (int g = 0; g < count; g++)
                hg_group_members(m, (hg_group_kind)k, g, members);
        }
    }
    for (int b = 0; b < hg_plan_num_bridges(plan); b++)
        for (int e = 0; e < hg_bridge_num_edges(plan, b); e++) {
            int enc, llm;
            hg_bridge_edge(plan, b, e, &enc, &llm);
        }
    for (int r = 0; r < plan->world_size; r++) {
        const hg_module_grid *mods[2];
        int n = hg_plan_modules_of_rank(plan, r, mods);
        for (int i = 0; i < n; i++) {
            hg_rank_group groups[HG_MAX_RANK_GROUPS];
            hg_rank_groups(plan, NULL, mods[i], r, groups);
        }
        hg_coords c;
        hg_rank_coords(plan, r, &c);
        for (int b = 0; b < hg_plan_num_bridges(plan); b++)
            hg_bridge_index_of_rank(plan, b, r);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Hgrid__Envelope *env = wire_unpack(data, size);
    if (!env)
        return 0;
    char why[160];
    const Hgrid__Layout *layout = NULL;
    if (!wire_check_version(env, why, sizeof why)) {
        if (env->msg_case == HGRID__ENVELOPE__MSG_SUBMIT)
            layout = env->submit->layout;
        else if (env->msg_case == HGRID__ENVELOPE__MSG_ASSIGNMENT)
            layout = env->assignment->layout;
    }
    hg_layout_spec spec;
    hg_plan plan;
    char err[HG_ERR_LEN];
    if (layout && wire_layout_to_spec(layout, &spec, err, sizeof err) == 0 &&
        hg_plan_build(&spec, &plan, err, sizeof err) == 0 && plan.world_size <= 4096)
        walk_plan(&plan);
    wire_free_envelope(env);
    return 0;
}
