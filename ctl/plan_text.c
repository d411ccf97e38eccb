// The plan for people: summary, a picture of the grids, bridge, groups.
#include "ctl/plan_print.h"

#include <stdlib.h>

// Long listings show their head and a count, so a 16K-rank plan stays readable.
#define SHOW_ROWS 8
#define SHOW_GROUPS 6

void plan_module_ranks(const hg_module_grid *m, char *buf, size_t len)
{
    if (m->num_ranks == 1)
        snprintf(buf, len, "rank %d", m->rank_offset);
    else
        snprintf(buf, len, "ranks %d-%d", m->rank_offset, m->rank_offset + m->num_ranks - 1);
}

static void write_summary(const hg_plan *p, FILE *out)
{
    const hg_layout_spec *s = &p->spec;
    const hg_model_config *m = &s->model;
    fprintf(out, "world %d ranks", p->world_size);
    if (p->colocated)
        fprintf(out, ", colocated: every rank in each module");
    else
        for (int i = 0; i < p->num_modules; i++)
            fprintf(out, "%s %s %d", i ? " +" : " =", p->modules[i].name, p->modules[i].num_ranks);
    fprintf(out, "; %d micro-batch%s of %d per llm dp rank (global batch %d)\n",
            p->num_microbatches, p->num_microbatches == 1 ? "" : "es", s->micro_batch_size,
            s->global_batch_size);
    for (int i = 0; i < p->num_modules; i++) {
        const hg_module_grid *g = &p->modules[i];
        char ranks[40];
        plan_module_ranks(g, ranks, sizeof ranks);
        fprintf(out, "  %-8s %-9s  tp %d x cp %d x dp %d x pp %d", g->name, ranks,
                g->dense[HG_DIM_TP], g->dense[HG_DIM_CP], g->dense[HG_DIM_DP],
                g->dense[HG_DIM_PP]);
        if (g->id == HG_MODULE_LLM)
            fprintf(out, "; experts: expt_tp %d x ep %d x expt_dp %d x pp %d",
                    g->expert[HG_XDIM_TP], g->expert[HG_XDIM_EP], g->expert[HG_XDIM_DP],
                    g->expert[HG_XDIM_PP]);
        fputc('\n', out);
    }
    fprintf(out, "  llm model: %d layers, hidden %d, %d heads, ffn %d, vocab %d (padded to %d: a "
            "multiple of ", m->num_layers, m->hidden_size, m->num_attention_heads,
            m->ffn_hidden_size, m->vocab_size, p->padded_vocab_size);
    if (s->make_vocab_size_divisible_by)
        fprintf(out, "--make-vocab-size-divisible-by %d x ", s->make_vocab_size_divisible_by);
    fprintf(out, "--llm-tp %d)", s->llm_tp);
    fprintf(out, ", seq %d, ", m->seq_length);
    if (m->num_experts)
        fprintf(out, "%d experts top-%d\n", m->num_experts, m->moe_router_topk);
    else
        fprintf(out, "dense\n");
    if (p->num_encoders == 0)
        return;
    int side = m->image_size / m->patch_size;
    fprintf(out, "  encoder model: %d layers, hidden %d, %d heads, image %d / patch %d = %d "
            "patches; per micro-batch:",
            m->encoder_num_layers, m->encoder_hidden_size, m->encoder_num_attention_heads,
            m->image_size, m->patch_size, side * side);
    for (int i = 0; i < p->num_encoders; i++)
        fprintf(out, "%s %d sample(s) per %s rank", i ? "," : "",
                s->micro_batch_size * s->llm_dp / p->modules[i].dense[HG_DIM_DP],
                p->modules[i].name);
    fputc('\n', out);
}

// Whether rank leads in any bridge.
static bool bridge_leader(const hg_plan *p, int rank)
{
    for (int b = 0; b < hg_plan_num_bridges(p); b++)
        if (hg_bridge_index_of_rank(p, b, rank) >= 0)
            return true;
    return false;
}

// One block per (pp stage, cp rank): rows are dp lanes, columns tp ranks.
// '*' marks bridge leaders.
static void write_picture(const hg_plan *p, FILE *out)
{
    fprintf(out, "\ngrid (rows: dp lanes, columns: tp ranks; * bridge leader)\n");
    for (int i = 0; i < p->num_modules; i++) {
        const hg_module_grid *g = &p->modules[i];
        int tp = g->dense[HG_DIM_TP], cp = g->dense[HG_DIM_CP];
        int dp = g->dense[HG_DIM_DP], pp = g->dense[HG_DIM_PP];
        char tag = g->id == HG_MODULE_ENCODER ? 'E' : 'L';
        for (int stage = 0; stage < pp && stage < SHOW_ROWS; stage++) {
            for (int c = 0; c < cp; c++) {
                fprintf(out, "  %-8s pp %d", g->name, stage);
                if (cp > 1)
                    fprintf(out, " cp %d", c);
                fputc('\n', out);
                for (int d = 0; d < dp && d < SHOW_ROWS; d++) {
                    fprintf(out, "    dp %-4d", d);
                    for (int t = 0; t < tp && t < SHOW_ROWS; t++) {
                        int r = g->rank_offset + t + tp * (c + cp * (d + dp * stage));
                        char cell[16];
                        snprintf(cell, sizeof cell, "%c%d%s", tag, r,
                                 bridge_leader(p, r) ? "*" : "");
                        fprintf(out, " %-7s", cell);
                    }
                    fprintf(out, tp > SHOW_ROWS ? " ... (%d tp ranks)\n" : "\n", tp);
                }
                if (dp > SHOW_ROWS)
                    fprintf(out, "    ... (%d dp lanes)\n", dp);
            }
        }
        if (pp > SHOW_ROWS)
            fprintf(out, "  ... (%d pp stages)\n", pp);
    }
}

static void write_bridge(const hg_plan *p, int b, FILE *out)
{
    static const char *fans[] = {[HG_FAN_EQUAL] = "equal", [HG_FAN_IN] = "fan-in",
                                 [HG_FAN_OUT] = "fan-out"};
    int n = hg_bridge_num_edges(p, b);
    if (b == 0)
        fputc('\n', out);
    fprintf(out, "bridge (%s, %d edges, %s -> llm):", fans[hg_bridge_fan(p, b)], n,
            p->modules[b].name);
    for (int e = 0; e < n && e < SHOW_GROUPS * 2; e++) {
        int enc, llm;
        hg_bridge_edge(p, b, e, &enc, &llm);
        fprintf(out, " %d->%d", enc, llm);
    }
    fprintf(out, n > SHOW_GROUPS * 2 ? " ...\n" : "\n");
}

static void write_groups(const hg_plan *p, FILE *out)
{
    int *members = malloc(sizeof(int) * (size_t)p->world_size);
    if (!members)
        abort();
    fprintf(out, "\ngroups (= marks groups identical to an earlier kind: one communicator)\n");
    for (int i = 0; i < p->num_modules; i++) {
        const hg_module_grid *g = &p->modules[i];
        for (int k = 0; k < HG_NUM_GROUP_KINDS; k++) {
            if (!hg_group_applies(g, (hg_group_kind)k))
                continue;
            int count = hg_group_count(g, (hg_group_kind)k);
            int size = hg_group_size(g, (hg_group_kind)k);
            hg_group_kind same = hg_group_canonical(g, (hg_group_kind)k);
            fprintf(out, "  %-8s %-9s %4d x %-4d", g->name,
                    hg_group_name((hg_group_kind)k), count, size);
            if (same != (hg_group_kind)k && size > 1)
                fprintf(out, " =%s", hg_group_name(same));
            for (int n = 0; n < count && n < SHOW_GROUPS; n++) {
                hg_group_members(g, (hg_group_kind)k, n, members);
                fputs(" [", out);
                for (int j = 0; j < size && j < SHOW_ROWS; j++)
                    fprintf(out, j ? ",%d" : "%d", members[j]);
                fputs(size > SHOW_ROWS ? ",...]" : "]", out);
            }
            fputs(count > SHOW_GROUPS ? " ...\n" : "\n", out);
        }
    }
    free(members);
}

void plan_write_text(const hg_plan *p, FILE *out)
{
    write_summary(p, out);
    write_picture(p, out);
    for (int b = 0; b < hg_plan_num_bridges(p); b++)
        write_bridge(p, b, out);
    write_groups(p, out);
}
