// Layout engine: every validation rule (valid and invalid side), Megatron's
// worked enumeration examples, bridge edges, and properties over random shapes.
#include <stdlib.h>
#include <string.h>

#include "layout/layout.h"
#include "tests/check.h"

#define MAX_ARGS 40

// Parses a space-separated flag string onto the defaults and builds a plan.
// Returns 0 valid, 1 invalid layout, 2 usage error; err holds the reason.
static int plan_from(const char *flags, hg_plan *plan, char *err)
{
    char buf[1024], *argv[MAX_ARGS];
    int argc = 0;
    snprintf(buf, sizeof buf, "%s", flags);
    for (char *tok = strtok(buf, " "); tok && argc < MAX_ARGS; tok = strtok(NULL, " "))
        argv[argc++] = tok;
    hg_layout_spec spec;
    hg_layout_spec_defaults(&spec);
    for (int i = 0; i < argc;) {
        hg_flag_status st = hg_layout_parse_flag(&spec, argc, argv, &i, err, HG_ERR_LEN);
        if (st == HG_FLAG_UNKNOWN) {
            snprintf(err, HG_ERR_LEN, "unknown %s", argv[i]);
            return 2;
        }
        if (st == HG_FLAG_USAGE)
            return 2;
        if (st == HG_FLAG_INVALID)
            return 1;
    }
    return hg_plan_build(&spec, plan, err, HG_ERR_LEN) ? 1 : 0;
}

typedef struct {
    const char *flags;
    int status;         // 0 valid, 1 invalid, 2 usage
    const char *reason; // substring of the error, for status != 0
} rule_case;

static const rule_case rule_cases[] = {
    // defaults: encoder 2x2 + llm 2x1x1x2
    {"", 0, NULL},
    // rule 1: positive sizes
    {"--encoder-tp 0", 1, "--encoder-tp 0 must be a positive integer"},
    {"--llm-dp -2", 1, "--llm-dp -2 must be a positive integer"},
    {"--micro-batch-size 0", 1, "--micro-batch-size 0"},
    {"--global-batch-size 0", 1, "--global-batch-size 0 must be a positive integer"},
    {"--hidden-size 0", 1, "--hidden-size 0"},
    {"--encoder-tp 0 --llm-only", 0, NULL}, // encoder flags do not matter without an encoder
    // usage errors
    {"--llm-tp two", 2, "--llm-tp 'two' is not an integer"},
    {"--llm-tp", 2, "--llm-tp needs an integer value"},
    {"--llm-tp 2x", 2, "not an integer"},
    {"--llm-tp 99999999999", 2, "is out of range: a whole number from 1 to 2147483647"},
    {"--no-such-flag 1", 2, "unknown"},
    {"--llm-tp=4 --num-attention-heads=16", 0, NULL},
    // rule 2: world size
    {"--world-size 8", 0, NULL},
    {"--world-size 9", 1, "--world-size 9 does not match encoder (--encoder-tp 2 x --encoder-dp 2 = 4)"},
    {"--llm-only --world-size 4", 0, NULL},
    {"--llm-only --world-size 8", 1, "--world-size 8 does not match the llm grid"},
    // rule 3: cp
    {"--llm-cp 2", 1, "--llm-cp 2 is not supported"},
    // rule 4: experts
    {"--num-experts 4 --llm-ep 2", 0, NULL},
    {"--num-experts 6 --llm-ep 4 --llm-dp 4", 1, "--num-experts 6 is not divisible by --llm-ep 4"},
    {"--llm-ep 2", 1, "--llm-ep 2 needs experts"},
    {"--num-experts 4 --moe-router-topk 5", 1, "--moe-router-topk 5"},
    // rule 5: expert view divides the llm
    {"--num-experts 8 --llm-ep 4 --llm-tp 1 --llm-dp 4", 0, NULL},
    {"--num-experts 8 --llm-ep 8", 1, "llm size 4 (tp x cp x pp x dp) is not divisible by --llm-expt-tp 1 x --llm-ep 8 x --llm-pp 1 = 8"},
    {"--num-experts 4 --llm-ep 2 --llm-expt-tp 2 --llm-pp 2 --llm-tp 1 --llm-dp 4", 0, NULL},
    {"--num-experts 4 --llm-ep 2 --llm-expt-tp 2 --llm-pp 2 --llm-dp 1 --encoder-dp 1", 1, "--llm-expt-tp 2 x --llm-ep 2 x --llm-pp 2 = 8"},
    // rule 6: bridge
    {"--encoder-dp 4 --llm-dp 2 --micro-batch-size 2", 0, NULL},
    {"--encoder-dp 4 --llm-dp 2", 1, "--micro-batch-size 1 x --llm-dp 2 = 2 is not divisible by --encoder-dp 4"},
    {"--encoder-dp 3 --llm-dp 2 --micro-batch-size 3", 1, "--encoder-dp 3 and --llm-dp 2: one must divide the other"},
    {"--encoder-dp 1 --llm-dp 4", 0, NULL},
    {"--encoder-dp 3 --llm-dp 2 --micro-batch-size 3 --llm-only", 0, NULL},
    // rule 7: global batch
    {"--global-batch-size 8", 0, NULL},
    {"--global-batch-size 7", 1, "--global-batch-size 7 is not divisible by --micro-batch-size 1 x --llm-dp 2 = 2"},
    // rule 8: model shape
    {"--llm-tp 4 --num-attention-heads 12 --hidden-size 768", 0, NULL},
    {"--llm-tp 8 --llm-dp 1 --encoder-dp 1", 1, "--num-attention-heads 12 is not divisible by --llm-tp 8"},
    {"--hidden-size 770 --llm-tp 2 --num-attention-heads 4 --ffn-hidden-size 3080", 1, "--hidden-size 770 is not divisible by --num-attention-heads 4"},
    {"--ffn-hidden-size 3001", 1, "--ffn-hidden-size 3001 is not divisible by --llm-tp 2"},
    {"--llm-pp 5", 1, "--num-layers 12 is not divisible by --llm-pp 5"},
    {"--llm-pp 4", 0, NULL},
    {"--encoder-tp 4 --encoder-num-attention-heads 6", 1, "--encoder-num-attention-heads 6 is not divisible by --encoder-tp 4"},
    {"--vocab-size 50257", 0, NULL}, // padded, said so
    {"--make-vocab-size-divisible-by 0", 1, "--make-vocab-size-divisible-by 0 must be a positive integer"},
    {"--make-vocab-size-divisible-by 16777216", 1, "--make-vocab-size-divisible-by 16777216 x --llm-tp 2 = 33554432 is above the vocabulary limit"},
    // --llm-offset: upstream's meaning (the llm's first rank) and rules
    {"--llm-offset 4", 0, NULL},
    {"--llm-offset 3", 1, "--llm-offset 3 overlaps the encoders, which take ranks 0-3: use --llm-offset 4"},
    {"--llm-offset 6", 1, "--llm-offset 6 leaves ranks 4-5 to no module (the encoders take ranks 0-3): use --llm-offset 4"},
    {"--llm-offset 5", 1, "--llm-offset 5 leaves rank 4 to no module (the encoders take ranks 0-3): use --llm-offset 4"},
    {"--llm-offset -1", 1, "--llm-offset -1 must be 0 or a positive integer"},
    {"--llm-offset x", 2, "--llm-offset 'x' is not an integer"},
    {"--llm-only --llm-offset 0", 0, NULL},
    {"--llm-only --llm-offset 4", 1, "--llm-offset 4: with --llm-only the llm starts at rank 0"},
    {"--encoder-tp 1 --encoder-dp 1 --llm-offset 1", 0, NULL},
    // the upstream 8-rank MoE recipe (20 layers, 128 experts)
    {"--encoder-tp 2 --encoder-dp 2 --llm-offset 4 --llm-tp 2 --llm-dp 2 --llm-ep 4 --num-experts 128 --num-layers 20", 0, NULL},
    // --mimo-layout colocated: upstream's rules
    {"--mimo-layout colocated", 0, NULL},
    {"--mimo-layout=non-colocated", 0, NULL},
    {"--mimo-layout sideways", 2, "--mimo-layout 'sideways' must be colocated or non-colocated"},
    {"--mimo-layout", 2, "--mimo-layout needs a value"},
    {"--mimo-layout colocated --llm-offset 0", 0, NULL},
    {"--mimo-layout colocated --llm-offset 4", 1, "--llm-offset 4: with --mimo-layout colocated both modules start at rank 0"},
    {"--mimo-layout colocated --llm-only", 1, "--mimo-layout colocated needs an encoder; drop --llm-only"},
    {"--mimo-layout colocated --llm-pp 2 --llm-dp 1", 1, "--mimo-layout colocated needs --llm-pp 1, not 2"},
    {"--mimo-layout colocated --num-experts 2 --llm-ep 2 --llm-expt-tp 2 --llm-tp 1 --llm-dp 4", 1, "--mimo-layout colocated needs --llm-expt-tp 1, not 2"},
    {"--mimo-layout colocated --llm-dp 4", 1, "--mimo-layout colocated: the encoder (--encoder-tp 2 x --encoder-dp 2 = 4) and the llm (--llm-tp 2 x --llm-cp 1 x --llm-pp 1 x --llm-dp 4 = 8) must each cover the world"},
    {"--mimo-layout colocated --world-size 4", 0, NULL},
    {"--mimo-layout colocated --world-size 8", 1, "--world-size 8 does not match the llm grid"},
    {"--mimo-layout colocated --encoder-tp 1 --encoder-dp 4 --llm-tp 4 --llm-dp 1", 1, "--micro-batch-size 1 x --llm-dp 1 = 1 is not divisible by --encoder-dp 4"},
    {"--mimo-layout colocated --encoder-tp 1 --encoder-dp 4 --llm-tp 4 --llm-dp 1 --micro-batch-size 4", 0, NULL},
    {"--mimo-layout colocated --encoder-tp 2 --encoder-dp 3 --llm-tp 3 --llm-dp 2 --micro-batch-size 3 --num-attention-heads 12 --hidden-size 768", 1, "--encoder-dp 3 and --llm-dp 2: one must divide the other for the re-sharding between them"},
    {"--mimo-layout colocated --encoder a:tp=2,dp=2", 0, NULL},
    {"--mimo-layout colocated --encoder a:tp=2,dp=2 --encoder b:tp=2,dp=2", 1, "--mimo-layout colocated takes one encoder, not 2"},
    // several encoders
    {"--encoder vision:tp=2,dp=2 --encoder audio:tp=1,dp=2", 0, NULL},
    {"--encoder vision:tp=2,dp=2 --encoder audio:tp=1,dp=2 --llm-offset 6", 0, NULL},
    {"--encoder vision:tp=2,dp=2 --encoder audio:tp=1,dp=2 --llm-offset 4", 1, "--llm-offset 4 overlaps the encoders, which take ranks 0-5: use --llm-offset 6"},
    {"--encoder vision:tp=2,dp=2 --encoder audio:tp=1,dp=2 --world-size 9", 1, "--world-size 9 does not match encoder (vision 4 + audio 2 = 6) + llm"},
    {"--encoder vision", 0, NULL}, // tp and dp default to 1
    {"--encoder a:tp=2 --encoder a:dp=2", 1, "--encoder a is given twice"},
    {"--encoder llm:tp=1", 1, "--encoder name 'llm' must be 1 to 31 of a-z 0-9 _ - and not 'llm'"},
    {"--encoder Vision:tp=1", 1, "--encoder name 'Vision'"},
    {"--encoder :tp=1", 2, "needs NAME:tp=T,dp=D"},
    {"--encoder a:tp=0", 1, "--encoder a: tp 0 and dp 1 must be positive integers"},
    {"--encoder a:pp=2", 2, "'pp=2' is not tp=N or dp=N"},
    {"--encoder a:tp=x", 2, "'tp=x' is not tp=N or dp=N"},
    {"--encoder a:tp=1 --encoder-dp 1", 1, "--encoder-tp/--encoder-dp and --encoder both describe encoders"},
    {"--encoder-tp 1 --encoder a:tp=1", 1, "--encoder-tp/--encoder-dp and --encoder both describe encoders"},
    {"--encoder a:tp=1 --llm-only", 1, "--llm-only has no encoder; drop the 1 --encoder flag(s)"},
    {"--encoder a:tp=1,dp=4", 1, "not divisible by --encoder a dp 4 (each encoder rank needs a whole number of samples)"},
    {"--encoder a:tp=4,dp=1", 1, "--encoder-num-attention-heads 6 is not divisible by --encoder a tp 4"},
    {"--encoder a --encoder b --encoder c --encoder d --encoder e --encoder f --encoder g --encoder h --encoder i", 1, "--encoder: at most 8 encoders"},
    {"--image-size 225", 1, "--image-size 225 is not a multiple of --patch-size 16"},
    // the model's own rules (one validator: what a worker refuses, plan refuses)
    {"--seq-length 200", 1, "--seq-length 200 leaves 4 caption positions after 196 patches"},
    {"--seq-length 204", 0, NULL},
    {"--vocab-size 10", 1, "--vocab-size 10 is below the 22 caption tokens"},
    {"--vocab-size 22", 0, NULL},
    {"--num-experts 512 --llm-ep 4", 1, "--num-experts 512 is above the limit of 256"},
    {"--num-experts 256 --llm-ep 4 --llm-tp 1 --llm-dp 4", 0, NULL},
    {"--hidden-size 768 --num-attention-heads 10 --llm-tp 1", 1, "--hidden-size 768 is not divisible by --num-attention-heads 10"},
    {"--encoder-hidden-size 384 --encoder-num-attention-heads 5 --encoder-tp 1", 1, "--encoder-hidden-size 384 is not divisible by --encoder-num-attention-heads 5"},
    {"--patch-size 448", 1, "--image-size 224 is not a multiple of --patch-size 448"},
    // bounds: each named, and no derived size overflows
    {"--num-layers 1000000000", 1, "--num-layers 1000000000 is above the limit of 1024"},
    {"--num-layers 1024 --llm-pp 1", 0, NULL},
    {"--encoder-num-layers 1025", 1, "--encoder-num-layers 1025 is above the limit of 1024"},
    {"--seq-length 2000000", 1, "--seq-length 2000000 is above the limit of 1048576"},
    {"--vocab-size 2147483647", 1, "--vocab-size 2147483647 is above the limit of 16777216"},
    {"--hidden-size 131072", 1, "--hidden-size 131072 is above the limit of 65536"},
    {"--image-size 65536 --patch-size 1", 1, "--image-size 65536 is above the limit of 8192"},
    {"--image-size 65537 --patch-size 1", 1, "--image-size 65537 is above the limit of 8192"},
    {"--image-size 8192 --patch-size 1", 1, "leaves -67107840 caption positions after 67108864 patches"},
    {"--image-size 8192 --patch-size 8192", 1, "the patch embedding of 201326592 x 384"},
    {"--hidden-size 65536 --num-attention-heads 64", 1, "an MLP weight of 65536 x 262144 exceeds the limit of 2147483647"},
    {"--hidden-size 65536 --num-attention-heads 64 --ffn-hidden-size 1024 --vocab-size 40000", 1, "the token embedding of 40000 x 65536 exceeds the limit of 2147483647"},
    {"--llm-only --image-size 65536 --patch-size 1", 1, "--image-size 65536 is above the limit"},
};

static void test_rules(void)
{
    for (size_t i = 0; i < sizeof rule_cases / sizeof rule_cases[0]; i++) {
        const rule_case *c = &rule_cases[i];
        hg_plan plan;
        char err[HG_ERR_LEN] = "";
        int status = plan_from(c->flags, &plan, err);
        CHECK(status == c->status, "'%s': status %d, expected %d (%s)", c->flags, status,
              c->status, err);
        if (c->reason)
            CHECK(strstr(err, c->reason) != NULL, "'%s': reason '%s' lacks '%s'", c->flags, err,
                  c->reason);
        if (c->status != 0)
            CHECK(strchr(err, '\n') == NULL, "'%s': reason spans lines", c->flags);
    }
    hg_plan plan;
    char err[HG_ERR_LEN];
    // Megatron's padding: a multiple of 128 x llm_tp (32000 with tp 3: 32256).
    plan_from("--vocab-size 50257", &plan, err);
    CHECK_EQ(plan.padded_vocab_size, 50432);
    plan_from("--llm-tp 3 --num-attention-heads 12 --hidden-size 768 --llm-dp 1 --encoder-dp 1", &plan, err);
    CHECK_EQ(plan.padded_vocab_size, 32256);
    plan_from("--vocab-size 50257 --make-vocab-size-divisible-by 1", &plan, err);
    CHECK_EQ(plan.padded_vocab_size, 50258);
    plan_from("", &plan, err);
    CHECK_EQ(plan.padded_vocab_size, 32000);
    plan_from("--global-batch-size 8", &plan, err);
    CHECK_EQ(plan.num_microbatches, 4);
    plan_from("", &plan, err);
    CHECK_EQ(plan.num_microbatches, 1);
    CHECK_EQ(plan.world_size, 8);
    CHECK_EQ(plan.modules[1].rank_offset, 4);
}

// Compares every group of a kind with the expected flat list.
static void expect_groups(const hg_module_grid *m, hg_group_kind kind, int count, int size,
                          const int *expected)
{
    CHECK_EQ(hg_group_count(m, kind), count);
    CHECK_EQ(hg_group_size(m, kind), size);
    int members[64];
    for (int g = 0; g < count; g++) {
        hg_group_members(m, kind, g, members);
        for (int j = 0; j < size; j++)
            CHECK(members[j] == expected[g * size + j], "%s group %d member %d: %d, expected %d",
                  hg_group_name(kind), g, j, members[j], expected[g * size + j]);
    }
}

// DESIGN's example: tp=2 cp=1 dp=2 pp=2 at offset 4.
static void test_design_example(void)
{
    hg_plan p;
    char err[HG_ERR_LEN];
    CHECK_EQ(plan_from("--llm-pp 2", &p, err), 0);
    const hg_module_grid *llm = hg_plan_module(&p, HG_MODULE_LLM);
    CHECK_EQ(llm->rank_offset, 4);
    expect_groups(llm, HG_GROUP_TP, 4, 2, (int[]){4, 5, 6, 7, 8, 9, 10, 11});
    expect_groups(llm, HG_GROUP_DP, 4, 2, (int[]){4, 6, 5, 7, 8, 10, 9, 11});
    expect_groups(llm, HG_GROUP_PP, 4, 2, (int[]){4, 8, 5, 9, 6, 10, 7, 11});
    expect_groups(llm, HG_GROUP_TP_DP, 2, 4, (int[]){4, 5, 6, 7, 8, 9, 10, 11});
    expect_groups(llm, HG_GROUP_MP, 2, 4, (int[]){4, 5, 8, 9, 6, 7, 10, 11});
    expect_groups(llm, HG_GROUP_EMBD, 4, 2, (int[]){4, 8, 5, 9, 6, 10, 7, 11});
    expect_groups(llm, HG_GROUP_POS_EMBD, 4, 1, (int[]){4, 5, 6, 7});
    expect_groups(llm, HG_GROUP_MODULE, 1, 8, (int[]){4, 5, 6, 7, 8, 9, 10, 11});
    const hg_module_grid *enc = hg_plan_module(&p, HG_MODULE_ENCODER);
    expect_groups(enc, HG_GROUP_TP, 2, 2, (int[]){0, 1, 2, 3});
    expect_groups(enc, HG_GROUP_DP, 2, 2, (int[]){0, 2, 1, 3});
    CHECK(!hg_group_applies(enc, HG_GROUP_EP), "expert groups are the llm's");
    // identical kinds share a communicator: dp_cp is dp when cp = 1, embd is pp when pp = 2
    CHECK_EQ(hg_group_canonical(llm, HG_GROUP_DP_CP), HG_GROUP_DP);
    CHECK_EQ(hg_group_canonical(llm, HG_GROUP_TP_DP_CP), HG_GROUP_TP_DP);
    CHECK_EQ(hg_group_canonical(llm, HG_GROUP_EMBD), HG_GROUP_PP);
    CHECK_EQ(hg_group_canonical(llm, HG_GROUP_MP), HG_GROUP_MP);
    // expert view with ep = expt_tp = 1: ep groups are single ranks, expt_dp is tp_dp
    CHECK_EQ(llm->expert[HG_XDIM_DP], 4);
    expect_groups(llm, HG_GROUP_EXPT_DP, 2, 4, (int[]){4, 5, 6, 7, 8, 9, 10, 11});
}

// Expert view [expt_tp, ep, expt_dp, pp], derived by hand from RankGenerator
// with order tp-ep-dp-pp.
static void test_expert_view(void)
{
    hg_plan p;
    char err[HG_ERR_LEN];
    CHECK_EQ(plan_from("--llm-only --llm-tp 2 --llm-dp 4 --num-experts 4 --llm-ep 2", &p, err), 0);
    const hg_module_grid *llm = hg_plan_module(&p, HG_MODULE_LLM);
    CHECK_EQ(p.num_modules, 1);
    CHECK_EQ(llm->expert[HG_XDIM_DP], 4);
    expect_groups(llm, HG_GROUP_EP, 4, 2, (int[]){0, 1, 2, 3, 4, 5, 6, 7});
    expect_groups(llm, HG_GROUP_EXPT_DP, 2, 4, (int[]){0, 2, 4, 6, 1, 3, 5, 7});
    expect_groups(llm, HG_GROUP_EXPT_TP, 8, 1, (int[]){0, 1, 2, 3, 4, 5, 6, 7});
    expect_groups(llm, HG_GROUP_TP_EP_PP, 4, 2, (int[]){0, 1, 2, 3, 4, 5, 6, 7});
    CHECK_EQ(hg_group_canonical(llm, HG_GROUP_EP), HG_GROUP_TP);

    CHECK_EQ(plan_from("--llm-only --llm-tp 2 --llm-pp 2 --llm-dp 2 --num-experts 4 --llm-ep 2 "
                       "--llm-expt-tp 1",
                       &p, err),
             0);
    llm = hg_plan_module(&p, HG_MODULE_LLM);
    // 8 ranks, expert view [1, 2, 2, 2]
    expect_groups(llm, HG_GROUP_EP, 4, 2, (int[]){0, 1, 2, 3, 4, 5, 6, 7});
    expect_groups(llm, HG_GROUP_EXPT_DP, 4, 2, (int[]){0, 2, 1, 3, 4, 6, 5, 7});
    expect_groups(llm, HG_GROUP_TP_EP, 4, 2, (int[]){0, 1, 2, 3, 4, 5, 6, 7});
    expect_groups(llm, HG_GROUP_TP_EP_PP, 2, 4, (int[]){0, 1, 4, 5, 2, 3, 6, 7});
    hg_coords c;
    hg_rank_coords(&p, 7, &c);
    CHECK(c.tp == 1 && c.dp == 1 && c.pp == 1 && c.ep == 1 && c.expt_dp == 1 && c.expt_tp == 0,
          "rank 7 coords tp%d dp%d pp%d ep%d expt_dp%d", c.tp, c.dp, c.pp, c.ep, c.expt_dp);
}

static void expect_bridge_edges(const hg_plan *p, int b, hg_fan fan, int n, const int *edges)
{
    CHECK_EQ(hg_bridge_fan(p, b), fan);
    CHECK_EQ(hg_bridge_num_edges(p, b), n);
    for (int e = 0; e < n && e < hg_bridge_num_edges(p, b); e++) {
        int enc, llm;
        hg_bridge_edge(p, b, e, &enc, &llm);
        CHECK(enc == edges[2 * e] && llm == edges[2 * e + 1], "edge %d: %d->%d, expected %d->%d",
              e, enc, llm, edges[2 * e], edges[2 * e + 1]);
    }
}

static void expect_edges(const hg_plan *p, hg_fan fan, int n, const int *edges)
{
    expect_bridge_edges(p, 0, fan, n, edges);
}

static void test_bridge(void)
{
    hg_plan p;
    char err[HG_ERR_LEN];
    CHECK_EQ(plan_from("", &p, err), 0); // equal: encoder leaders 0, 2; llm 4, 6
    expect_edges(&p, HG_FAN_EQUAL, 2, (int[]){0, 4, 2, 6});
    CHECK_EQ(hg_bridge_size(&p, 0), 4);
    CHECK_EQ(hg_bridge_member(&p, 0, 3), 6);
    CHECK_EQ(hg_bridge_index_of_rank(&p, 0, 6), 3);
    CHECK_EQ(hg_bridge_index_of_rank(&p, 0, 5), -1);

    CHECK_EQ(plan_from("--encoder-tp 1 --encoder-dp 4 --llm-dp 2 --micro-batch-size 2", &p, err), 0);
    expect_edges(&p, HG_FAN_IN, 4, (int[]){0, 4, 1, 4, 2, 6, 3, 6});

    // fan-out onto the first pp stage of a pp=2 llm
    CHECK_EQ(plan_from("--encoder-dp 1 --llm-tp 1 --llm-pp 2 --llm-dp 2", &p, err), 0);
    expect_edges(&p, HG_FAN_OUT, 2, (int[]){0, 2, 0, 3});
    CHECK_EQ(hg_bridge_index_of_rank(&p, 0, 4), -1); // last llm stage is no leader
    CHECK_EQ(plan_from("--llm-only", &p, err), 0);
    CHECK(!hg_plan_has_bridge(&p), "llm-only has no bridge");
    CHECK_EQ(plan_from("--mimo-layout colocated", &p, err), 0);
    CHECK(!hg_plan_has_bridge(&p), "colocated has no bridge");

    // Several encoders: each its own fan into the llm's first stage.
    CHECK_EQ(plan_from("--encoder vision:tp=2,dp=2 --encoder audio:tp=1,dp=1 --llm-tp 2 --llm-dp 2 "
                       "--micro-batch-size 2", &p, err), 0);
    CHECK_EQ(hg_plan_num_bridges(&p), 2);
    expect_bridge_edges(&p, 0, HG_FAN_EQUAL, 2, (int[]){0, 5, 2, 7});
    expect_bridge_edges(&p, 1, HG_FAN_OUT, 2, (int[]){4, 5, 4, 7});
    CHECK_EQ(hg_bridge_size(&p, 1), 3);
    CHECK_EQ(hg_bridge_index_of_rank(&p, 1, 7), 2);
    CHECK_EQ(hg_bridge_index_of_rank(&p, 1, 0), -1); // vision's leader is not in audio's bridge
    // The llm leader 5 is in both bridges; its groups name them.
    hg_rank_group g[HG_MAX_RANK_GROUPS];
    int n = hg_rank_groups(&p, NULL, &p.modules[2], 5, g);
    char b0[HG_GROUP_NAME_LEN], b1[HG_GROUP_NAME_LEN];
    CHECK(n >= 2 && g[n - 2].kind == HG_GROUP_BRIDGE && g[n - 1].kind == HG_GROUP_BRIDGE &&
              !strcmp(hg_rank_group_name(&p, &g[n - 2], b0, sizeof b0), "bridge:vision") &&
              !strcmp(hg_rank_group_name(&p, &g[n - 1], b1, sizeof b1), "bridge:audio"),
          "llm leader 5: its last groups are the two bridges");
    hg_bridge_peer peers[4];
    CHECK_EQ(hg_bridge_peers(&p, 1, 4, peers, 4), 2); // audio's one leader feeds both llm lanes
    CHECK(peers[0].rank == 5 && peers[1].rank == 7 && peers[0].send && peers[1].rank_in_bridge == 2,
          "audio leader's peers: %d %d", peers[0].rank, peers[1].rank);
    CHECK_EQ(hg_bridge_peers(&p, 1, 7, peers, 4), 1);
    CHECK(peers[0].rank == 4 && !peers[0].send && peers[0].rank_in_bridge == 0, "llm 7 hears audio 4");
}

// Colocated: both modules over every rank from 0, as HyperCommGrid does with
// offset 0; each rank has both modules' coordinates and groups.
static void test_colocated(void)
{
    hg_plan p;
    char err[HG_ERR_LEN];
    CHECK_EQ(plan_from("--mimo-layout colocated --encoder-tp 2 --encoder-dp 4 --llm-tp 4 --llm-dp 2 "
                       "--micro-batch-size 2", &p, err), 0);
    CHECK(p.colocated && p.world_size == 8 && p.num_modules == 2, "colocated world %d", p.world_size);
    const hg_module_grid *enc = &p.modules[0], *llm = &p.modules[1];
    CHECK(enc->rank_offset == 0 && llm->rank_offset == 0 && enc->num_ranks == 8 &&
              llm->num_ranks == 8, "both modules cover 0-7");
    expect_groups(enc, HG_GROUP_TP, 4, 2, (int[]){0, 1, 2, 3, 4, 5, 6, 7});
    expect_groups(llm, HG_GROUP_TP, 2, 4, (int[]){0, 1, 2, 3, 4, 5, 6, 7});
    expect_groups(llm, HG_GROUP_DP, 4, 2, (int[]){0, 4, 1, 5, 2, 6, 3, 7});
    const hg_module_grid *mods[2];
    CHECK_EQ(hg_plan_modules_of_rank(&p, 5, mods), 2);
    CHECK(mods[0] == enc && mods[1] == llm, "rank 5 is in the encoder, then the llm");
    hg_coords c;
    hg_module_coords(enc, 5, &c);
    CHECK(c.tp == 1 && c.dp == 2 && c.module_index == 0, "encoder coords of 5: tp%d dp%d", c.tp, c.dp);
    hg_module_coords(llm, 5, &c);
    CHECK(c.tp == 1 && c.dp == 1 && c.module_index == 1, "llm coords of 5: tp%d dp%d", c.tp, c.dp);
    hg_rank_group g[HG_MAX_RANK_GROUPS];
    int n = hg_rank_groups(&p, NULL, llm, 5, g);
    for (int i = 0; i < n; i++)
        CHECK(g[i].kind != HG_GROUP_BRIDGE, "colocated rank 5 has a bridge");
}

// A rank's groups (hg_rank_groups) agree with the kinds' enumeration, and
// bridge peers with the edges.
static void test_rank_groups_of(const hg_plan *p)
{
    hg_canonical_kinds canon;
    hg_canonical_kinds_build(p, &canon);
    int members[4096];
    for (int r = 0; r < p->world_size; r++) {
        const hg_module_grid *mods[2];
        int nm = hg_plan_modules_of_rank(p, r, mods);
        CHECK_EQ(nm, p->colocated ? p->num_modules : 1);
        for (int mi = 0; mi < nm; mi++) {
            hg_rank_group g[HG_MAX_RANK_GROUPS];
            int n = hg_rank_groups(p, &canon, mods[mi], r, g);
            for (int i = 0; i < n; i++) {
                hg_rank_group_members(p, mods[mi], &g[i], members);
                CHECK(members[g[i].rank_in_group] == r, "rank %d not at its place in group %d", r, i);
                if (g[i].kind == HG_GROUP_BRIDGE) {
                    hg_bridge_peer peers[64];
                    int np = hg_bridge_peers(p, g[i].bridge, r, peers, 64), edges = 0;
                    for (int e = 0; e < hg_bridge_num_edges(p, g[i].bridge); e++) {
                        int enc, llm;
                        hg_bridge_edge(p, g[i].bridge, e, &enc, &llm);
                        if (enc != r && llm != r)
                            continue;
                        int peer = enc == r ? llm : enc;
                        CHECK(edges < np && peers[edges].rank == peer &&
                                  peers[edges].send == (enc == r) &&
                                  peers[edges].rank_in_bridge ==
                                      hg_bridge_index_of_rank(p, g[i].bridge, peer),
                              "rank %d bridge %d peer %d", r, g[i].bridge, edges);
                        edges++;
                    }
                    CHECK_EQ(edges, np);
                }
            }
        }
    }
}

// Independent enumeration for the property test: every rank of the module
// is placed at (group, position) by its own coordinates.
static void test_properties_of(const hg_plan *p)
{
    int members[4096];
    for (int i = 0; i < p->num_modules; i++) {
        const hg_module_grid *m = &p->modules[i];
        for (int k = 0; k < HG_NUM_GROUP_KINDS; k++) {
            if (!hg_group_applies(m, (hg_group_kind)k))
                continue;
            int count = hg_group_count(m, (hg_group_kind)k);
            int size = hg_group_size(m, (hg_group_kind)k);
            int seen = 0;
            bool embedding = k == HG_GROUP_EMBD || k == HG_GROUP_POS_EMBD;
            if (!embedding)
                CHECK_EQ(count * size, m->num_ranks);
            for (int g = 0; g < count; g++) {
                hg_group_members(m, (hg_group_kind)k, g, members);
                for (int j = 0; j < size; j++) {
                    int gg, jj;
                    bool in = hg_group_of_rank(m, (hg_group_kind)k, members[j], &gg, &jj);
                    CHECK(in && gg == g && jj == j, "%s: rank %d at (%d,%d), of_rank (%d,%d)",
                          hg_group_name((hg_group_kind)k), members[j], g, j, gg, jj);
                    CHECK(members[j] >= m->rank_offset &&
                              members[j] < m->rank_offset + m->num_ranks,
                          "rank %d outside module", members[j]);
                    seen++;
                }
            }
            int in_some = 0;
            for (int r = m->rank_offset; r < m->rank_offset + m->num_ranks; r++) {
                int g, j;
                in_some += hg_group_of_rank(m, (hg_group_kind)k, r, &g, &j);
            }
            CHECK_EQ(in_some, seen); // each rank in at most one group, none missed
            hg_group_kind canon = hg_group_canonical(m, (hg_group_kind)k);
            if (canon != (hg_group_kind)k) {
                int other[4096];
                for (int g = 0; g < count; g++) {
                    hg_group_members(m, (hg_group_kind)k, g, members);
                    hg_group_members(m, canon, g, other);
                    CHECK(memcmp(members, other, sizeof(int) * (size_t)size) == 0,
                          "%s shares with %s but differs", hg_group_name((hg_group_kind)k),
                          hg_group_name(canon));
                }
            }
        }
        for (int r = m->rank_offset; r < m->rank_offset + m->num_ranks; r++) {
            hg_coords c;
            hg_module_coords(m, r, &c);
            int tp = m->dense[0], cp = m->dense[1], dp = m->dense[2];
            CHECK_EQ(m->rank_offset + c.tp + tp * (c.cp + cp * (c.dp + dp * c.pp)), r);
            int etp = m->expert[0], ep = m->expert[1], edp = m->expert[2];
            CHECK_EQ(m->rank_offset + c.expt_tp + etp * (c.ep + ep * (c.expt_dp + edp * c.pp)), r);
        }
    }
    for (int b = 0; b < hg_plan_num_bridges(p); b++) {
        int leaders = 0;
        for (int r = 0; r < p->world_size; r++)
            leaders += hg_bridge_index_of_rank(p, b, r) >= 0;
        CHECK_EQ(leaders, hg_bridge_size(p, b));
        for (int i = 0; i < hg_bridge_size(p, b); i++)
            CHECK_EQ(hg_bridge_index_of_rank(p, b, hg_bridge_member(p, b, i)), i);
    }
    if (p->world_size <= 256)
        test_rank_groups_of(p);
}

static int pick(const int *choices, int n)
{
    return choices[rand() % n];
}

static void test_random_properties(void)
{
    const int small[] = {1, 1, 2, 2, 3, 4, 8};
    int valid = 0;
    srand(1234);
    for (int trial = 0; trial < 3000; trial++) {
        hg_layout_spec s;
        hg_layout_spec_defaults(&s);
        s.encoder_tp = pick(small, 7);
        s.encoder_dp = pick(small, 7);
        s.llm_tp = pick(small, 7);
        s.llm_pp = pick(small, 7);
        s.llm_dp = pick(small, 7);
        s.llm_ep = pick(small, 7);
        s.llm_expt_tp = pick(small, 7);
        s.llm_only = rand() % 4 == 0;
        s.colocated = !s.llm_only && rand() % 4 == 0;
        if (!s.llm_only && !s.colocated && rand() % 3 == 0) {
            s.num_encoders = 1 + rand() % 3;
            for (int e = 0; e < s.num_encoders; e++) {
                s.encoders[e] = (hg_encoder_spec){"", pick(small, 7), pick(small, 7)};
                snprintf(s.encoders[e].name, sizeof s.encoders[e].name, "enc%d", e);
            }
        }
        s.micro_batch_size = pick(small, 7);
        s.model.num_experts = s.llm_ep * pick(small, 7);
        s.model.num_layers = 24;
        s.model.num_attention_heads = 24;
        s.model.hidden_size = 24 * 64;
        s.model.encoder_num_attention_heads = 24;
        s.model.encoder_hidden_size = 24 * 32;
        hg_plan p;
        char err[HG_ERR_LEN];
        if (hg_plan_build(&s, &p, err, sizeof err) != 0)
            continue;
        valid++;
        test_properties_of(&p);
    }
    CHECK(valid > 300, "only %d random layouts were valid", valid);
}

int main(void)
{
    test_rules();
    test_design_example();
    test_expert_view();
    test_bridge();
    test_colocated();
    test_random_properties();
    return check_summary("test_layout");
}
