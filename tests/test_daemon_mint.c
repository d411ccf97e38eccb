// NCCL id planning: which groups get an id, who mints it, in which order,
// and which id each rank's groups use.
#include <stdlib.h>
#include <string.h>

#include "daemon/core/mint.h"
#include "tests/check.h"
#include "tests/daemon_test_plan.h"

// The rank that should mint id: member 0 of its group, from the layout
// engine directly (what mint_leader_ids must agree with).
static int mint_id_leader(const mint_plan *mp, int id)
{
    mint_group mg;
    mint_id_group(mp, id, &mg);
    if (mg.kind == MINT_BRIDGE)
        return hg_bridge_member(mp->plan, mg.group, 0);
    if (mg.kind < 0)
        return -1;
    const hg_module_grid *m = &mp->plan->modules[mg.module_index];
    int *members = malloc(sizeof *members * (size_t)hg_group_size(m, (hg_group_kind)mg.kind));
    if (!members)
        return -1;
    hg_group_members(m, (hg_group_kind)mg.kind, mg.group, members);
    int leader = members[0];
    free(members);
    return leader;
}

static const char *layouts[] = {
    "",                                                            // default: shared kinds
    "--llm-pp 2 --global-batch-size 4",                            // embd, pp
    "--llm-pp 4 --encoder-dp 1 --llm-dp 1",                        // embd distinct from pp
    "--encoder-tp 1 --encoder-dp 4 --llm-pp 2 --micro-batch-size 2", // fan-in bridge
    "--encoder-dp 1 --llm-dp 4 --llm-tp 1",                        // fan-out bridge
    "--llm-only --llm-tp 2 --llm-dp 4 --llm-ep 2 --num-experts 4", // experts, no bridge
    "--encoder-tp 1 --encoder-dp 1 --llm-tp 1 --llm-dp 1",         // one-rank groups only
};

// Checks the plan against the rule written out from PROTOCOL.md.
static void check_plan(const char *flags)
{
    hg_plan plan;
    plan_of(flags, &plan);
    mint_plan mp;
    mint_plan_init(&mp, &plan);
    int n = plan.world_size;
    int *minted_by = malloc(sizeof *minted_by * (size_t)(mp.num_ids + 1));
    for (int id = 0; id < mp.num_ids; id++)
        minted_by[id] = -1;
    // Every rank's list: ids it leads, in kind order, each exactly once overall.
    for (int r = 0; r < n; r++) {
        int ids[MINT_MAX_PER_RANK];
        int count = mint_leader_ids(&mp, r, ids);
        int last_kind = -1;
        for (int i = 0; i < count; i++) {
            mint_group mg;
            mint_id_group(&mp, ids[i], &mg);
            CHECK(mg.kind > last_kind, "%s: rank %d mints kind %d after %d", flags, r, mg.kind,
                  last_kind);
            last_kind = mg.kind;
            CHECK(minted_by[ids[i]] < 0, "%s: id %d minted twice", flags, ids[i]);
            minted_by[ids[i]] = r;
            CHECK_EQ(mint_id_leader(&mp, ids[i]), r);
        }
    }
    // Every canonical group of size > 1 (and the bridge) has exactly one id.
    int expected = 0;
    for (int mi = 0; mi < plan.num_modules; mi++) {
        const hg_module_grid *m = &plan.modules[mi];
        for (int k = 0; k < HG_NUM_GROUP_KINDS; k++)
            if (hg_group_applies(m, (hg_group_kind)k) &&
                hg_group_canonical(m, (hg_group_kind)k) == (hg_group_kind)k &&
                hg_group_size(m, (hg_group_kind)k) > 1)
                expected += hg_group_count(m, (hg_group_kind)k);
    }
    expected += hg_plan_has_bridge(&plan);
    CHECK(mp.num_ids == expected, "%s: %d ids, expected %d", flags, mp.num_ids, expected);
    for (int id = 0; id < mp.num_ids; id++)
        CHECK(minted_by[id] >= 0, "%s: id %d has no minter", flags, id);
    // Each rank's group of every kind uses the id of a group holding the rank
    // with the same members.
    int *members = malloc(sizeof *members * (size_t)n), *canon = malloc(sizeof *canon * (size_t)n);
    for (int r = 0; r < n; r++) {
        const hg_module_grid *m = hg_plan_module_of_rank(&plan, r);
        for (int k = 0; k < HG_NUM_GROUP_KINDS; k++) {
            int g, j;
            if (!hg_group_applies(m, (hg_group_kind)k) ||
                !hg_group_of_rank(m, (hg_group_kind)k, r, &g, &j))
                continue;
            int id = mint_group_id(&mp, r, (hg_group_kind)k);
            int size = hg_group_size(m, (hg_group_kind)k);
            CHECK((id < 0) == (size == 1), "%s: rank %d kind %s size %d has id %d", flags, r,
                  hg_group_name((hg_group_kind)k), size, id);
            if (id < 0)
                continue;
            mint_group mg;
            mint_id_group(&mp, id, &mg);
            CHECK_EQ(hg_group_size(m, (hg_group_kind)mg.kind), size);
            hg_group_members(m, (hg_group_kind)k, g, members);
            hg_group_members(m, (hg_group_kind)mg.kind, mg.group, canon);
            CHECK(memcmp(members, canon, sizeof *members * (size_t)size) == 0,
                  "%s: rank %d kind %s shares the id of a different group", flags, r,
                  hg_group_name((hg_group_kind)k));
        }
    }
    free(members);
    free(canon);
    free(minted_by);
}

// The default layout by hand: encoder 0-3 and llm 4-7, tp 2 dp 2 each.
static void test_default_order(void)
{
    hg_plan plan;
    plan_of("", &plan);
    mint_plan mp;
    mint_plan_init(&mp, &plan);
    // Per module: tp (2 groups), dp (2), tp_dp (1); every other kind shares
    // one of these or has one rank. Then the bridge.
    CHECK_EQ(mp.num_ids, 11);
    CHECK_EQ(mp.canonical.kind[0][HG_GROUP_TP_CP], HG_GROUP_TP);
    CHECK_EQ(mp.canonical.kind[0][HG_GROUP_DP_CP], HG_GROUP_DP);
    CHECK_EQ(mp.canonical.kind[0][HG_GROUP_MODULE], HG_GROUP_TP_DP);
    CHECK_EQ(mp.canonical.kind[1][HG_GROUP_EXPT_DP], HG_GROUP_TP_DP);
    int ids[MINT_MAX_PER_RANK];
    mint_group mg;
    // Rank 0: tp 0, dp 0, tp_dp 0 and bridge member 0.
    CHECK_EQ(mint_leader_ids(&mp, 0, ids), 4);
    const int want_kinds[] = {HG_GROUP_TP, HG_GROUP_DP, HG_GROUP_TP_DP, MINT_BRIDGE};
    for (int i = 0; i < 4; i++) {
        mint_id_group(&mp, ids[i], &mg);
        CHECK(mg.kind == want_kinds[i] && mg.group == 0, "rank 0 id %d is kind %d group %d", i,
              mg.kind, mg.group);
    }
    // Rank 1 leads dp group 1 only; rank 2 leads tp group 1; rank 3 nothing.
    CHECK_EQ(mint_leader_ids(&mp, 1, ids), 1);
    mint_id_group(&mp, ids[0], &mg);
    CHECK(mg.kind == HG_GROUP_DP && mg.group == 1, "rank 1 mints kind %d group %d", mg.kind,
          mg.group);
    CHECK_EQ(mint_leader_ids(&mp, 2, ids), 1);
    CHECK_EQ(mint_leader_ids(&mp, 3, ids), 0);
    // Rank 4 leads the llm's tp 0, dp 0, tp_dp 0 but not the bridge (member 2).
    CHECK_EQ(mint_leader_ids(&mp, 4, ids), 3);
    CHECK_EQ(mint_id_leader(&mp, mp.bridge_id[0]), 0);
    CHECK_EQ(mint_group_id(&mp, 5, HG_GROUP_MP), mint_group_id(&mp, 4, HG_GROUP_TP));
}

// pp 4: embd {first, last stage} has its own id, minted by the first stage;
// pos_embd has one rank and no id.
static void test_embedding(void)
{
    hg_plan plan;
    plan_of("--llm-pp 4 --encoder-dp 1 --llm-dp 1", &plan);
    mint_plan mp;
    mint_plan_init(&mp, &plan);
    CHECK_EQ(mp.canonical.kind[1][HG_GROUP_EMBD], HG_GROUP_EMBD);
    CHECK(mp.id_base[1][HG_GROUP_EMBD] >= 0, "embd has no ids");
    CHECK(mp.id_base[1][HG_GROUP_POS_EMBD] < 0, "pos_embd (one rank) has ids");
    int llm0 = plan.modules[1].rank_offset, tp = plan.modules[1].dense[HG_DIM_TP];
    CHECK(mint_group_id(&mp, llm0 + tp, HG_GROUP_EMBD) < 0, "a middle stage is in an embd group");
    CHECK_EQ(mint_group_id(&mp, llm0 + 3 * tp, HG_GROUP_EMBD),
             mint_group_id(&mp, llm0, HG_GROUP_EMBD));
}

int main(void)
{
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++)
        check_plan(layouts[i]);
    test_default_order();
    test_embedding();
    return check_summary("test_daemon_mint");
}
