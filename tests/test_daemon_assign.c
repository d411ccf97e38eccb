// Rank assignment and the worker roster: tp groups stay on one host,
// requested ranks are honoured, ranks are sticky after assignment.
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/core/assign.h"
#include "daemon/core/roster.h"
#include "tests/check.h"
#include "tests/daemon_test_plan.h"

// rank[] is a permutation of 0..n-1.
static bool is_permutation(const int *rank, int n)
{
    char *seen = calloc((size_t)n, 1);
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        ok = rank[i] >= 0 && rank[i] < n && !seen[rank[i]];
        if (ok)
            seen[rank[i]] = 1;
    }
    free(seen);
    return ok;
}

// 8 workers on 2 hosts joining interleaved; encoder tp 2, llm tp 4.
static void test_two_hosts(void)
{
    hg_plan plan;
    plan_of("--encoder-tp 2 --encoder-dp 2 --llm-tp 4 --llm-dp 1 --micro-batch-size 2", &plan);
    gridd_assign_worker w[8];
    for (int i = 0; i < 8; i++) // a/0 b/0 a/1 b/1 ... with devices in reverse join order
        w[i] = (gridd_assign_worker){i % 2, 3 - i / 2, -1};
    int rank[8];
    CHECK_EQ(gridd_assign_ranks(&plan, w, rank), 0);
    CHECK(is_permutation(rank, 8), "ranks are not a permutation");
    CHECK_EQ(gridd_assign_split_tp_groups(&plan, w, rank), 0);
    // Host by host, GPU by GPU: host 0 (first to join) holds ranks 0-3 in device order.
    for (int i = 0; i < 8; i++)
        CHECK(rank[i] == w[i].host * 4 + w[i].device, "worker %d/%d got rank %d", w[i].host,
              w[i].device, rank[i]);
}

// A 4-GPU and a 2-GPU host: rank order would split the llm's tp-4 group;
// the largest-first pass keeps both groups whole.
static void test_uneven_hosts(void)
{
    hg_plan plan;
    plan_of("--encoder-tp 2 --encoder-dp 1 --llm-tp 4 --llm-dp 1", &plan);
    gridd_assign_worker w[6] = {{0, 0, -1}, {0, 1, -1}, {0, 2, -1}, {0, 3, -1}, {1, 0, -1}, {1, 1, -1}};
    int rank[6];
    CHECK_EQ(gridd_assign_ranks(&plan, w, rank), 0);
    CHECK(is_permutation(rank, 6), "ranks are not a permutation");
    CHECK_EQ(gridd_assign_split_tp_groups(&plan, w, rank), 0);
    CHECK_EQ(rank[0], 2); // host 0 takes the llm block 2..5
    CHECK_EQ(rank[4], 0); // host 1 the encoder block 0..1
}

// Colocated: both modules over ranks 0-7 (encoder tp 2, llm tp 4); blocks
// of 4 keep both tp groups on one host, and every rank is given once.
static void test_colocated(void)
{
    hg_plan plan;
    plan_of("--mimo-layout colocated --encoder-tp 2 --encoder-dp 4 --llm-tp 4 --llm-dp 2 "
            "--micro-batch-size 2",
            &plan);
    gridd_assign_worker w[8];
    for (int i = 0; i < 8; i++) // two 4-GPU hosts joining interleaved
        w[i] = (gridd_assign_worker){i % 2, i / 2, -1};
    int rank[8];
    CHECK_EQ(gridd_assign_ranks(&plan, w, rank), 0);
    CHECK(is_permutation(rank, 8), "colocated ranks are not a permutation");
    CHECK_EQ(gridd_assign_split_tp_groups(&plan, w, rank), 0);
}

static void test_requested(void)
{
    hg_plan plan;
    plan_of("", &plan); // encoder tp2 dp2 + llm tp2 dp2: 8 ranks
    gridd_assign_worker w[8];
    for (int i = 0; i < 8; i++)
        w[i] = (gridd_assign_worker){i / 4, i % 4, -1};
    w[6].requested = 1; // host 1 device 2 asks for rank 1
    w[0].requested = 7; // host 0 device 0 asks for rank 7
    int rank[8];
    CHECK_EQ(gridd_assign_ranks(&plan, w, rank), 0);
    CHECK(is_permutation(rank, 8), "ranks are not a permutation");
    CHECK_EQ(rank[6], 1);
    CHECK_EQ(rank[0], 7);
    // The blocks {0,1} and {6,7} lost a rank to another host; host 0's
    // GPUs 1-3 take free ranks 0, 2, 3 in rank order, host 1's the rest.
    const int want[8] = {7, 0, 2, 3, 4, 5, 1, 6};
    for (int i = 0; i < 8; i++)
        CHECK(rank[i] == want[i], "worker %d got rank %d, want %d", i, rank[i], want[i]);
    CHECK_EQ(gridd_assign_split_tp_groups(&plan, w, rank), 2);
}

// Every GPU count per host that tp divides keeps every tp group on one host.
static void test_large(void)
{
    hg_plan plan;
    plan_of("--encoder-tp 8 --encoder-dp 256 --llm-tp 8 --llm-dp 1792 --num-attention-heads 16 "
            "--encoder-num-attention-heads 8",
            &plan);
    int n = plan.world_size;
    CHECK_EQ(n, 16384);
    gridd_assign_worker *w = malloc(sizeof *w * (size_t)n);
    int *rank = malloc(sizeof *rank * (size_t)n);
    for (int i = 0; i < n; i++) // hosts join round-robin
        w[i] = (gridd_assign_worker){i % 2048, i / 2048, -1};
    clock_t t0 = clock();
    CHECK_EQ(gridd_assign_ranks(&plan, w, rank), 0);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    CHECK(is_permutation(rank, n), "ranks are not a permutation");
    CHECK_EQ(gridd_assign_split_tp_groups(&plan, w, rank), 0);
    CHECK(secs < 0.5, "assigning %d ranks took %.3f s", n, secs);
    free(w);
    free(rank);
}

static void test_roster_sticky(void)
{
    hg_plan plan;
    plan_of("", &plan);
    roster r;
    char err[256];
    int slot;
    CHECK_EQ(roster_init(&r, 8), 0);
    const char *hosts[] = {"node-a", "node-b"};
    for (int i = 0; i < 8; i++)
        CHECK_EQ(roster_join(&r, hosts[i % 2], i / 2, -1, &slot, err, sizeof err), ROSTER_OK);
    CHECK_EQ(roster_join(&r, "node-c", 0, -1, &slot, err, sizeof err), ROSTER_FULL);
    // A drop before assignment frees the slot; a duplicate live device is refused.
    roster_leave(&r, 3);
    CHECK_EQ(r.live, 7);
    CHECK_EQ(roster_join(&r, "node-a", 0, -1, &slot, err, sizeof err), ROSTER_DUPLICATE);
    CHECK(strstr(err, "node-a/0") != NULL, "duplicate error lacks the device: %s", err);
    CHECK_EQ(roster_join(&r, "node-b", 1, 9, &slot, err, sizeof err), ROSTER_RANK_REFUSED);
    CHECK_EQ(roster_join(&r, "node-b", 1, -1, &slot, err, sizeof err), ROSTER_OK);
    CHECK_EQ(slot, 3);
    CHECK(roster_full(&r), "8 live workers are not a full roster");
    CHECK_EQ(roster_assign(&r, &plan), 0);
    for (int i = 0; i < 8; i++) // node-a holds 0-3, node-b 4-7, in device order
        CHECK(r.slots[i].host == i / 4 && r.slots[i].device == i % 4, "rank %d is %d/%d", i,
              r.slots[i].host, r.slots[i].device);
    // Sticky: node-b/2 (rank 6) drops and comes back to rank 6.
    roster_leave(&r, 6);
    CHECK_EQ(r.slots[6].state, SLOT_LOST);
    CHECK_EQ(roster_join(&r, "node-b", 2, 5, &slot, err, sizeof err), ROSTER_RANK_REFUSED);
    CHECK_EQ(roster_join(&r, "node-b", 2, -1, &slot, err, sizeof err), ROSTER_OK);
    CHECK_EQ(slot, 6);
    CHECK_EQ(roster_join(&r, "node-b", 2, -1, &slot, err, sizeof err), ROSTER_DUPLICATE);
    // A new machine replaces a lost rank and takes over its map entry.
    roster_leave(&r, 1);
    uint64_t version = r.map_version;
    CHECK_EQ(roster_join(&r, "node-c", 0, -1, &slot, err, sizeof err), ROSTER_OK);
    CHECK_EQ(slot, 1);
    CHECK(r.map_version != version, "a replacement did not change the sticky map");
    CHECK_EQ(roster_join(&r, "node-a", 1, -1, &slot, err, sizeof err), ROSTER_FULL);
    roster_leave(&r, 1);
    CHECK_EQ(roster_join(&r, "node-c", 0, -1, &slot, err, sizeof err), ROSTER_OK);
    CHECK_EQ(slot, 1);
    // Replacements take the lost ranks lowest first, whatever order they were lost in.
    roster_leave(&r, 5);
    roster_leave(&r, 2);
    roster_leave(&r, 7);
    const char *fresh[] = {"node-d", "node-e", "node-f"};
    const int want[] = {2, 5, 7};
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(roster_join(&r, fresh[i], 0, -1, &slot, err, sizeof err), ROSTER_OK);
        CHECK_EQ(slot, want[i]);
    }
    CHECK_EQ(roster_join(&r, "node-g", 0, -1, &slot, err, sizeof err), ROSTER_FULL);
    roster_free(&r);
}

int main(void)
{
    test_two_hosts();
    test_uneven_hosts();
    test_colocated();
    test_requested();
    test_large();
    test_roster_sticky();
    return check_summary("test_daemon_assign");
}
