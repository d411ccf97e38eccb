// The plan for people: summary, a picture of the grids, bridge, groups.
#include "ctl/plan_print.h"

#include <stdlib.h>

// Long listings show their head and a count, so a 16K-rank plan stays readable.
#define SHOW_ROWS 8
#define SHOW_GROUPS 6

static void write_summary(const hg_plan *p, FILE *out)
{
    const hg_layout_spec *s = &p->spec;
    const hg_model_config *m = &s->model;
    fprintf(out, "world %d ranks", p->world_size);
    for (int i = 0; i < p->num_modules; i++)
        fprintf(out, "%s %s %d", i ? " +" : " =", hg_module_name(p->modules[i].id),
                p->modules[i].num_ranks);
    fprintf(out, "; %d micro-batch%s of %d per llm dp rank (global batch %d)\n",
            p->num_microbatches, p->num_microbatches == 1 ? "" : "es", s->micro_batch_size,
            s->global_batch_size);
    for (int i = 0; i < p->num_modules; i++) {
        const hg_module_grid *g = &p->modules[i];
        fprintf(out, "  %-8s ranks %d-%d  tp %d x cp %d x dp %d x pp %d", hg_module_name(g->id),
                g->rank_offset, g->rank_offset + g->num_ranks - 1, g->dense[HG_DIM_TP],
                g->dense[HG_DIM_CP], g->dense[HG_DIM_DP], g->dense[HG_DIM_PP]);
        if (g->id == HG_MODULE_LLM)
            fprintf(out, "; experts: expt_tp %d x ep %d x expt_dp %d x pp %d",
                    g->expert[HG_XDIM_TP], g->expert[HG_XDIM_EP], g->expert[HG_XDIM_DP],
                    g->expert[HG_XDIM_PP]);
        fputc('\n', out);
    }
    fprintf(out, "  llm model: %d layers, hidden %d, %d heads, ffn %d, vocab %d", m->num_layers,
            m->hidden_size, m->num_attention_heads, m->ffn_hidden_size, m->vocab_size);
    if (p->padded_vocab_size != m->vocab_size)
        fprintf(out, " (padded to %d for --llm-tp %d)", p->padded_vocab_size, s->llm_tp);
    fprintf(out, ", seq %d, ", m->seq_length);
    if (m->num_experts)
        fprintf(out, "%d experts top-%d\n", m->num_experts, m->moe_router_topk);
    else
        fprintf(out, "dense\n");
    if (!s->llm_only) {
        int side = m->image_size / m->patch_size;
        fprintf(out, "  encoder model: %d layers, hidden %d, %d heads, image %d / patch %d = %d "
                "patches; %d sample(s) per encoder rank per micro-batch\n",
                m->encoder_num_layers, m->encoder_hidden_size, m->encoder_num_attention_heads,
                m->image_size, m->patch_size, side * side,
                s->micro_batch_size * s->llm_dp / s->encoder_dp);
    }
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
                fprintf(out, "  %-8s pp %d", hg_module_name(g->id), stage);
                if (cp > 1)
                    fprintf(out, " cp %d", c);
                fputc('\n', out);
                for (int d = 0; d < dp && d < SHOW_ROWS; d++) {
                    fprintf(out, "    dp %-4d", d);
                    for (int t = 0; t < tp && t < SHOW_ROWS; t++) {
                        int r = g->rank_offset + t + tp * (c + cp * (d + dp * stage));
                        char cell[16];
                        snprintf(cell, sizeof cell, "%c%d%s", tag, r,
                                 hg_bridge_index_of_rank(p, r) >= 0 ? "*" : "");
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

static void write_bridge(const hg_plan *p, FILE *out)
{
    static const char *fans[] = {[HG_FAN_EQUAL] = "equal", [HG_FAN_IN] = "fan-in",
                                 [HG_FAN_OUT] = "fan-out"};
    int n = hg_bridge_num_edges(p);
    fprintf(out, "\nbridge (%s, %d edges, encoder -> llm):", fans[hg_bridge_fan(p)], n);
    for (int e = 0; e < n && e < SHOW_GROUPS * 2; e++) {
        int enc, llm;
        hg_bridge_edge(p, e, &enc, &llm);
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
            fprintf(out, "  %-8s %-9s %4d x %-4d", hg_module_name(g->id),
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
    if (hg_plan_has_bridge(p))
        write_bridge(p, out);
    write_groups(p, out);
}
