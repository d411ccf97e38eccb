// gridd's keep-or-re-create verdict after an Abort (daemon/core/settle.h),
// against a plain model of the rule on random layouts, a random replaced
// rank and random per-group operation counts: a group is re-created when
// it holds a replaced rank or a counting rank that did not report, or when
// all its members count and their collectives differ or a send lacks its
// receive; groups sharing a communicator add up; rebuild_plan then marks
// exactly those ids changed.
#include <stdlib.h>
#include <string.h>

#include "daemon/core/rebuild.h"
#include "daemon/core/settle.h"
#include "tests/check.h"
#include "tests/daemon_test_plan.h"

static const char *layouts[] = {
    "--llm-only --llm-tp 2 --llm-dp 2 --micro-batch-size 2 --global-batch-size 4",
    "",
    "--llm-pp 2 --global-batch-size 4",
    "--llm-only --llm-tp 2 --llm-dp 4 --llm-ep 2 --num-experts 4",
    "--mimo-layout colocated",
    "--encoder vision:tp=2,dp=2 --encoder audio:tp=1,dp=2",
};

static unsigned rnd(unsigned n) { return (unsigned)rand() % n; }

// A random valid layout of at most 48 ranks.
static void random_plan(hg_plan *plan)
{
    static const int sizes[] = {1, 2, 4};
    for (;;) {
        hg_layout_spec spec;
        hg_layout_spec_defaults(&spec);
        spec.encoder_tp = sizes[rnd(3)], spec.encoder_dp = sizes[rnd(3)];
        spec.llm_tp = sizes[rnd(3)], spec.llm_pp = sizes[rnd(2)], spec.llm_dp = sizes[rnd(3)];
        spec.llm_only = rnd(4) == 0;
        spec.colocated = !spec.llm_only && rnd(6) == 0;
        if (rnd(3) == 0) {
            spec.llm_ep = sizes[rnd(3)];
            spec.model.num_experts = 4;
        }
        spec.micro_batch_size = 2;
        spec.global_batch_size = 2 * spec.llm_dp * (1 + (int)rnd(2)) * spec.llm_pp;
        char err[HG_ERR_LEN];
        if (hg_plan_build(&spec, plan, err, sizeof err) == 0 && plan->world_size <= 48)
            return;
    }
}

enum { MAXW = 64 };

// One round's truth: what each rank reports, per position.
typedef struct {
    int np;
    settle_position pos[SETTLE_MAX_POSITIONS];
    uint64_t coll[SETTLE_MAX_POSITIONS];
    uint64_t sent[SETTLE_MAX_POSITIONS][MAXW], recv[SETTLE_MAX_POSITIONS][MAXW];
} rank_truth;

static rank_truth truth[MAXW];

// The rule in plain terms, per id, from every member's whole counts.
static bool model_broken(const mint_plan *mp, int id, const uint8_t *replaced,
                         const uint8_t *expected, const uint8_t *reported)
{
    int members[MAXW * 2];
    int n = rebuild_id_members(mp, id, members);
    bool all_count = true;
    for (int m = 0; m < n; m++) {
        int r = members[m];
        if (replaced[r] || (expected[r] && !reported[r]))
            return true;
        all_count &= expected[r] != 0;
    }
    if (!all_count)
        return false;
    static uint64_t coll[MAXW], sent[MAXW][MAXW], recv[MAXW][MAXW]; // by member index
    memset(coll, 0, sizeof coll), memset(sent, 0, sizeof sent), memset(recv, 0, sizeof recv);
    for (int m = 0; m < n; m++) {
        const rank_truth *t = &truth[members[m]];
        for (int p = 0; p < t->np; p++) {
            if (t->pos[p].id != id)
                continue;
            CHECK_EQ(t->pos[p].rank_in_group, m);
            coll[m] += t->coll[p];
            for (int j = 0; j < n; j++)
                sent[m][j] += t->sent[p][j], recv[m][j] += t->recv[p][j];
        }
    }
    for (int m = 1; m < n; m++)
        if (coll[m] != coll[0])
            return true;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            if (sent[i][j] != recv[j][i])
                return true;
    return false;
}

static int rounds, broken_seen, kept_seen, mismatch_cases, unmatched_cases;

static void round_on(const hg_plan *plan)
{
    mint_plan mp;
    mint_plan_init(&mp, plan);
    int w = plan->world_size;
    settle_state s;
    rebuild_state rb;
    CHECK_EQ(settle_init(&s, &mp), 0);
    CHECK_EQ(rebuild_init(&rb, &mp), 0);
    rebuild_plan(&rb, &mp);
    rebuild_formed(&rb);
    settle_begin(&s);
    uint8_t replaced[MAXW] = {0}, expected[MAXW] = {0}, reported[MAXW] = {0};
    int dead = (int)rnd((unsigned)w);
    replaced[dead] = 1;
    rebuild_lose(&rb, dead);
    bool everyone_counts = rnd(2) == 0;
    for (int r = 0; r < w; r++) {
        expected[r] = r != dead && (everyone_counts || rnd(5) != 0);
        if (expected[r])
            settle_expect(&s, r);
    }
    if (rnd(3) == 0) { // the dead rank counted too and is forgotten when it goes
        settle_expect(&s, dead);
        settle_forget(&s, dead);
    }
    // The ids' true counts: collectives per id, sends per (id, src, dst).
    static uint64_t base[1024], pair[1024][MAXW][MAXW];
    CHECK(mp.num_ids <= 1024, "%d ids", mp.num_ids);
    for (int id = 0; id < mp.num_ids; id++) {
        base[id] = rnd(3) ? rnd(1000) : 0;
        for (int i = 0; i < MAXW; i++)
            for (int j = 0; j < MAXW; j++)
                pair[id][i][j] = 0;
        int members[MAXW * 2], n = rebuild_id_members(&mp, id, members);
        for (int k = 0; k < 3 && n > 1; k++)
            pair[id][rnd((unsigned)n)][rnd((unsigned)n)] += 1 + rnd(50);
    }
    for (int r = 0; r < w; r++) {
        rank_truth *t = &truth[r];
        memset(t, 0, sizeof *t);
        t->np = settle_positions(&mp, r, t->pos);
        for (int p = 0; p < t->np; p++) {
            int id = t->pos[p].id, me = t->pos[p].rank_in_group;
            if (id < 0) {
                t->coll[p] = rnd(100);
                continue;
            }
            bool first = true; // the first position of the id carries it, a later one splits
            for (int q = 0; q < p; q++)
                first &= t->pos[q].id != id;
            if (first) {
                t->coll[p] = base[id];
                for (int j = 0; j < t->pos[p].size; j++)
                    t->sent[p][j] = pair[id][me][j], t->recv[p][j] = pair[id][j][me];
            } else {
                int q = 0;
                while (t->pos[q].id != id)
                    q++;
                uint64_t part = t->coll[q] ? rnd((unsigned)t->coll[q] + 1) : 0;
                t->coll[q] -= part, t->coll[p] += part;
            }
            if (rnd(12) == 0) // it left with a collective issued, or one short
                t->coll[p] += rnd(2) ? 1 : (uint64_t)-1 + (t->coll[p] == 0);
            if (rnd(12) == 0 && t->pos[p].size > 1) { // a send or a receive unmatched
                int j = (int)rnd((unsigned)t->pos[p].size);
                if (rnd(2))
                    t->sent[p][j]++;
                else
                    t->recv[p][j]++;
            }
        }
    }
    for (int r = 0; r < w; r++) {
        if (!expected[r] || rnd(15) == 0)
            continue; // not counting, or silent past the deadline
        rank_truth *t = &truth[r];
        settle_group groups[SETTLE_MAX_POSITIONS];
        static settle_peer peers[SETTLE_MAX_POSITIONS][MAXW];
        int n = 0;
        for (int p = 0; p < t->np; p++) {
            int np = 0;
            for (int j = 0; j < t->pos[p].size; j++)
                if (t->sent[p][j] || t->recv[p][j])
                    peers[p][np++] = (settle_peer){j, t->sent[p][j], t->recv[p][j]};
            if (t->coll[p] || np || rnd(2)) // nothing issued may be left out
                groups[n++] = (settle_group){p, t->coll[p], peers[p], np};
        }
        for (int i = n - 1; i > 0; i--) { // in any order
            int k = (int)rnd((unsigned)i + 1);
            settle_group x = groups[i];
            groups[i] = groups[k], groups[k] = x;
        }
        char err[256];
        CHECK_EQ(settle_report(&s, &mp, r, groups, n, err, sizeof err), 0);
        CHECK_EQ(settle_report(&s, &mp, r, groups, n, err, sizeof err), 1); // once only
        reported[r] = 1;
    }
    int awaited = 0;
    for (int r = 0; r < w; r++)
        awaited += expected[r] && !reported[r];
    CHECK_EQ(s.awaited, awaited);
    int *members = malloc(sizeof *members * (size_t)w);
    int nb = settle_judge(&s, &mp, replaced, members), count = 0;
    for (int id = 0; id < mp.num_ids; id++) {
        bool want = model_broken(&mp, id, replaced, expected, reported);
        CHECK(s.broken[id] == want, "id %d of %d (world %d, rank %d replaced): broken %d, the "
              "model says %d", id, mp.num_ids, w, dead, s.broken[id], want);
        count += want;
        mismatch_cases += s.mismatch[id];
        if (s.broken[id])
            rebuild_break(&rb, id);
    }
    CHECK_EQ(nb, count);
    // The next generation re-creates exactly the broken ids (they include
    // every id holding the replaced rank).
    CHECK_EQ(rebuild_plan(&rb, &mp), count);
    for (int id = 0; id < mp.num_ids; id++)
        CHECK_EQ(rebuild_id_changed(&rb, id), s.broken[id]);
    rebuild_formed(&rb);
    CHECK_EQ(rebuild_plan(&rb, &mp), 0);
    broken_seen += count;
    kept_seen += mp.num_ids - count;
    unmatched_cases += s.num_pairs > 0;
    rounds++;
    free(members);
    rebuild_free(&rb);
    settle_free(&s);
}

// Reports that do not fit the rank's groups are refused and change nothing.
static void malformed(void)
{
    hg_plan plan;
    plan_of(layouts[1], &plan);
    mint_plan mp;
    mint_plan_init(&mp, &plan);
    settle_state s;
    CHECK_EQ(settle_init(&s, &mp), 0);
    settle_begin(&s);
    settle_expect(&s, 0);
    char err[256];
    settle_position pos[SETTLE_MAX_POSITIONS];
    int np = settle_positions(&mp, 0, pos);
    settle_group g = {np, 1, NULL, 0};
    CHECK_EQ(settle_report(&s, &mp, 0, &g, 1, err, sizeof err), -1);
    settle_peer far = {pos[0].size, 1, 0};
    g = (settle_group){0, 1, &far, 1};
    CHECK_EQ(settle_report(&s, &mp, 0, &g, 1, err, sizeof err), -1);
    settle_group twice[2] = {{0, 1, NULL, 0}, {0, 1, NULL, 0}};
    CHECK_EQ(settle_report(&s, &mp, 0, twice, 2, err, sizeof err), -1);
    CHECK_EQ(s.awaited, 1);
    CHECK_EQ(settle_report(&s, &mp, 1, twice, 1, err, sizeof err), 1); // not awaited
    CHECK_EQ(settle_report(&s, &mp, 0, twice, 1, err, sizeof err), 0);
    CHECK_EQ(s.awaited, 0);
    settle_free(&s);
}

int main(int argc, char **argv)
{
    srand(argc > 1 ? (unsigned)atoi(argv[1]) : 12345);
    malformed();
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++)
        for (int k = 0; k < 40; k++) {
            hg_plan plan;
            plan_of(layouts[i], &plan);
            round_on(&plan);
        }
    for (int k = 0; k < 400; k++) {
        hg_plan plan;
        random_plan(&plan);
        round_on(&plan);
    }
    printf("%d rounds: %d ids broken, %d kept (%d with collectives that differ, %d with "
           "point-to-point counts)\n", rounds, broken_seen, kept_seen, mismatch_cases,
           unmatched_cases);
    CHECK(broken_seen > 0 && kept_seen > 0 && mismatch_cases > 0,
          "the rounds must break and keep groups, some for mismatched counts");
    return check_summary("test_daemon_settle");
}
