// Partial rebuild: which ids a generation re-mints after ranks are
// replaced, who mints them, and what each rank waits for.
#include <stdlib.h>
#include <string.h>

#include "daemon/core/rebuild.h"
#include "tests/check.h"
#include "tests/daemon_test_plan.h"

static const char *layouts[] = {
    "--llm-only --llm-tp 2 --llm-dp 2 --micro-batch-size 2 --global-batch-size 4",
    "",                                                            // encoder | llm with a bridge
    "--llm-pp 2 --global-batch-size 4",                            // embd, pp
    "--llm-only --llm-tp 2 --llm-dp 4 --llm-ep 2 --num-experts 4", // experts
    "--mimo-layout colocated",                                     // both modules on each rank
    "--encoder vision:tp=2,dp=2 --encoder audio:tp=1,dp=2",        // two encoders, two bridges
};

// Does the group behind id hold rank?
static bool id_holds(const mint_plan *mp, int id, int rank)
{
    mint_group mg;
    mint_id_group(mp, id, &mg);
    if (mg.kind == MINT_BRIDGE)
        return hg_bridge_index_of_rank(mp->plan, mg.group, rank) >= 0;
    const hg_module_grid *m = &mp->plan->modules[mg.module_index];
    int *members = malloc(sizeof *members * (size_t)hg_group_size(m, (hg_group_kind)mg.kind));
    hg_group_members(m, (hg_group_kind)mg.kind, mg.group, members);
    bool holds = false;
    for (int i = 0; i < hg_group_size(m, (hg_group_kind)mg.kind); i++)
        holds |= members[i] == rank;
    free(members);
    return holds;
}

static void check_layout(const char *flags)
{
    hg_plan plan;
    plan_of(flags, &plan);
    mint_plan mp;
    mint_plan_init(&mp, &plan);
    rebuild_state rb;
    CHECK_EQ(rebuild_init(&rb, &mp), 0);
    int n = plan.world_size;
    // The first generation mints everything, as the mint plan says.
    CHECK_EQ(rebuild_plan(&rb, &mp), mp.num_ids);
    for (int r = 0; r < n; r++) {
        int all[MINT_MAX_PER_RANK], some[MINT_MAX_PER_RANK];
        CHECK_EQ(rebuild_leader_ids(&rb, &mp, r, some), mint_leader_ids(&mp, r, all));
    }
    // Formed, then one rank replaced (and, separately, two).
    int victims[][2] = {{0, -1}, {n - 1, -1}, {n / 2, 1}};
    for (size_t v = 0; v < sizeof victims / sizeof victims[0]; v++) {
        rebuild_formed(&rb);
        CHECK_EQ(rebuild_plan(&rb, &mp), 0);
        for (int i = 0; i < 2; i++)
            if (victims[v][i] >= 0)
                rebuild_lose(&rb, victims[v][i]);
        int changed = rebuild_plan(&rb, &mp), expect = 0;
        for (int id = 0; id < mp.num_ids; id++) {
            bool holds = id_holds(&mp, id, victims[v][0]) ||
                         (victims[v][1] >= 0 && id_holds(&mp, id, victims[v][1]));
            CHECK(holds == rebuild_id_changed(&rb, id), "%s: id %d holds a victim %d, changed %d",
                  flags, id, holds, rebuild_id_changed(&rb, id));
            expect += holds;
        }
        CHECK(changed == expect && changed > 0 && (victims[v][1] >= 0 || changed < mp.num_ids),
              "%s: %d ids change, expected %d of %d", flags, changed, expect, mp.num_ids);
        // Leaders mint exactly the changed ids, each once; ranks wait for theirs.
        int *missing = malloc(sizeof *missing * (size_t)n), *scratch = malloc(sizeof *scratch * (size_t)n);
        rebuild_count(&rb, &mp, missing, scratch);
        int minted = 0;
        for (int r = 0; r < n; r++) {
            int ids[MINT_MAX_PER_RANK];
            int k = rebuild_leader_ids(&rb, &mp, r, ids);
            for (int i = 0; i < k; i++)
                CHECK(rebuild_id_changed(&rb, ids[i]), "%s: rank %d mints kept id %d", flags, r,
                      ids[i]);
            minted += k;
            int waits = rebuild_ids_needed(&rb, &mp, r);
            CHECK(missing[r] == waits && rb.leads[r] == k, "%s: rank %d: rebuild_count says %d/%d, "
                  "per rank %d/%d", flags, r, missing[r], rb.leads[r], waits, k);
            bool victim = r == victims[v][0] || r == victims[v][1];
            CHECK(!victim || waits > 0 || mint_group_id(&mp, r, HG_GROUP_MODULE) < 0,
                  "%s: replaced rank %d waits for no id", flags, r);
        }
        CHECK_EQ(minted, changed);
        free(missing);
        free(scratch);
    }
    // gridd restarted: it no longer knows the ids.
    rebuild_formed(&rb);
    rebuild_lose_all(&rb);
    CHECK_EQ(rebuild_plan(&rb, &mp), mp.num_ids);
    rebuild_free(&rb);
}

int main(void)
{
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++)
        check_layout(layouts[i]);
    return check_summary("test_daemon_rebuild");
}
