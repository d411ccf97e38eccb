// The self-test's arithmetic: expected sums against a simulated all-reduce
// over every group of real layouts, the failure line, bridge payloads,
// nccl-tests' busbw and the check lines hgridctl prints.
#include <stdlib.h>
#include <string.h>

#include "libhgrid/selftest_calc.h"
#include "layout/layout.h"
#include "tests/check.h"

// What NCCL's all-reduce of (rank, rank^2) returns to `rank` in its group
// of `kind`: every rank of the module that hg_group_of_rank puts in the
// same group contributes, found from the ranks' side, not the member list.
static void simulate_allreduce(const hg_module_grid *m, hg_group_kind kind, int rank,
                               int64_t out[2])
{
    int g, r_in_g, h, h_in_g;
    out[0] = out[1] = 0;
    if (!hg_group_of_rank(m, kind, rank, &g, &r_in_g))
        return;
    for (int s = m->rank_offset; s < m->rank_offset + m->num_ranks; s++)
        if (hg_group_of_rank(m, kind, s, &h, &h_in_g) && h == g) {
            out[0] += s;
            out[1] += (int64_t)s * s;
        }
}

static void check_layout(const char *what, hg_layout_spec *spec)
{
    hg_plan plan;
    char err[HG_ERR_LEN];
    CHECK(hg_plan_build(spec, &plan, err, sizeof err) == 0, "%s: %s", what, err);
    int members[64];
    int groups = 0;
    for (int mi = 0; mi < plan.num_modules; mi++) {
        const hg_module_grid *m = &plan.modules[mi];
        for (int k = 0; k < HG_NUM_GROUP_KINDS; k++) {
            if (!hg_group_applies(m, (hg_group_kind)k))
                continue;
            for (int r = m->rank_offset; r < m->rank_offset + m->num_ranks; r++) {
                int g, r_in_g;
                if (!hg_group_of_rank(m, (hg_group_kind)k, r, &g, &r_in_g))
                    continue;
                int n = hg_group_size(m, (hg_group_kind)k);
                hg_group_members(m, (hg_group_kind)k, g, members);
                CHECK(members[r_in_g] == r, "%s: %s rank %d at %d", what,
                      hg_group_name((hg_group_kind)k), r, r_in_g);
                int64_t want[2], got[2];
                char line[256];
                selftest_expected_sums(members, n, want);
                simulate_allreduce(m, (hg_group_kind)k, r, got);
                CHECK(selftest_check_sums("g", members, n, want, got, line, sizeof line),
                      "%s: %s rank %d: %s", what, hg_group_name((hg_group_kind)k), r, line);
                groups++;
            }
        }
    }
    CHECK(groups > plan.world_size, "%s: only %d groups checked", what, groups);
}

static void test_layouts(void)
{
    hg_layout_spec s;
    hg_layout_spec_defaults(&s);
    s.encoder_tp = 1, s.encoder_dp = 2, s.llm_tp = 2, s.llm_dp = 1, s.micro_batch_size = 2;
    check_layout("encoder tp1 dp2 + llm tp2 dp1", &s);
    hg_layout_spec_defaults(&s);
    s.encoder_tp = 2, s.encoder_dp = 1, s.llm_tp = 1, s.llm_pp = 2;
    check_layout("encoder tp2 dp1 + llm tp1 pp2", &s);
    hg_layout_spec_defaults(&s);
    s.llm_only = true, s.llm_tp = 2, s.llm_dp = 2, s.llm_ep = 2, s.model.num_experts = 4;
    check_layout("llm-only tp2 dp2 ep2", &s);
    hg_layout_spec_defaults(&s);
    s.encoder_tp = 2, s.encoder_dp = 2, s.llm_tp = 2, s.llm_pp = 3, s.llm_dp = 2;
    check_layout("encoder tp2 dp2 + llm tp2 pp3 dp2", &s);
}

static void test_wrong_member(void)
{
    int members[] = {0, 1, 2, 3}, wrong_members[] = {0, 1, 2, 5}, swapped[] = {0, 3, 1, 2};
    int64_t want[2], got[2], other[2];
    char line[256] = "";
    selftest_expected_sums(members, 4, want);
    CHECK_EQ(want[0], 6);
    CHECK_EQ(want[1], 14);
    selftest_expected_sums(swapped, 4, got); // order does not matter
    CHECK(selftest_check_sums("tp", members, 4, want, got, line, sizeof line), "%s", line);
    selftest_expected_sums(wrong_members, 4, got);
    CHECK(!selftest_check_sums("tp", members, 4, want, got, line, sizeof line), "rank 5 unseen");
    CHECK(!strcmp(line, "group tp [0,1,2,3]: expected sum 6 sumsq 14, got sum 8 sumsq 30"), "%s",
          line);
    // {1,4} and {2,3} share the sum but not the squares
    int a[] = {1, 4}, b[] = {2, 3};
    selftest_expected_sums(a, 2, want);
    selftest_expected_sums(b, 2, other);
    CHECK(!selftest_check_sums("dp", a, 2, want, other, line, sizeof line), "same sum passed");
    int many[20];
    for (int i = 0; i < 20; i++)
        many[i] = 100 + i;
    selftest_expected_sums(many, 20, want);
    got[0] = want[0] + 1, got[1] = want[1];
    CHECK(!selftest_check_sums("module", many, 20, want, got, line, sizeof line), "off by one");
    CHECK(strstr(line, "[100,101,102,103,104,105,...,119]") != NULL, "%s", line);
}

static void test_payload(void)
{
    enum { N = 4096 };
    int32_t *buf = malloc(N * sizeof *buf);
    for (size_t i = 0; i < N; i++)
        buf[i] = selftest_payload(3, 7, i);
    CHECK_EQ(selftest_payload_mismatch(buf, N, 3, 7), -1);
    CHECK(selftest_payload_mismatch(buf, N, 2, 7) >= 0, "wrong sender accepted");
    CHECK(selftest_payload_mismatch(buf, N, 3, 6) >= 0, "wrong receiver accepted");
    buf[1234] ^= 1;
    CHECK_EQ(selftest_payload_mismatch(buf, N, 3, 7), 1234);
    // a buffer shifted by one element is caught at element 0
    for (size_t i = 0; i < N; i++)
        buf[i] = selftest_payload(3, 7, i + 1);
    CHECK_EQ(selftest_payload_mismatch(buf, N, 3, 7), 0);
    for (size_t i = 0; i < N; i++)
        CHECK(selftest_payload(1 << 19, 1 << 19, i) >= 0, "negative payload at %zu", i);
    free(buf);
}

static void test_bandwidth(void)
{
    double mib64 = 64.0 * 1024 * 1024;
    // 64 MiB in 1 ms on 4 ranks: algbw 67.108864 GB/s, busbw * 2*3/4
    double bw = selftest_allreduce_busbw(mib64, 1e-3, 4);
    CHECK(bw > 100.663295 && bw < 100.663297, "busbw %f", bw);
    bw = selftest_allreduce_busbw(mib64, 1e-3, 2);
    CHECK(bw > 67.108863 && bw < 67.108865, "busbw %f", bw);
    CHECK(selftest_allreduce_busbw(mib64, 1e-3, 1) == 0, "one rank");
    double odd[] = {5, 1, 3}, even[] = {4, 1, 3, 100};
    CHECK(selftest_median(odd, 3) == 3, "odd median");
    CHECK(selftest_median(even, 4) == 3.5, "even median");
    CHECK(selftest_median(even, 0) == 0, "empty median");
}

static void test_format(void)
{
    char buf[256];
    selftest_format_check(buf, sizeof buf, "tp", true, 356.24, "2 ranks, sums 1 1");
    CHECK(!strcmp(buf, "tp ok 356.2 GB/s (2 ranks, sums 1 1)"), "%s", buf);
    selftest_format_check(buf, sizeof buf, "cp", true, 0, "one rank, no communicator");
    CHECK(!strcmp(buf, "cp ok (one rank, no communicator)"), "%s", buf);
    selftest_format_check(buf, sizeof buf, "bridge<-0", false, 0, "element 3 is 1, expected 2");
    CHECK(!strcmp(buf, "bridge<-0 FAILED: element 3 is 1, expected 2"), "%s", buf);
    selftest_format_check(buf, sizeof buf, "dp", false, 0, "");
    CHECK(!strcmp(buf, "dp FAILED: no detail"), "%s", buf);
}

int main(void)
{
    test_layouts();
    test_wrong_member();
    test_payload();
    test_bandwidth();
    test_format();
    return check_summary("test_selftest_calc");
}
