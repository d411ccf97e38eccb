// The plan as JSON: modules with every group, ranks with coordinates, bridge.
#include "ctl/plan_print.h"

#include <stdlib.h>

static void write_groups(const hg_module_grid *m, json_writer *w, int *members)
{
    json_key(w, "groups");
    json_begin_object(w);
    for (int k = 0; k < HG_NUM_GROUP_KINDS; k++) {
        if (!hg_group_applies(m, (hg_group_kind)k))
            continue;
        json_key(w, hg_group_name((hg_group_kind)k));
        json_begin_array(w);
        int count = hg_group_count(m, (hg_group_kind)k), size = hg_group_size(m, (hg_group_kind)k);
        for (int g = 0; g < count; g++) {
            hg_group_members(m, (hg_group_kind)k, g, members);
            json_begin_array(w);
            for (int j = 0; j < size; j++)
                json_int(w, members[j]);
            json_end_array(w);
        }
        json_end_array(w);
    }
    json_end_object(w);
}

static void write_module(const hg_module_grid *m, json_writer *w, int *members)
{
    json_begin_object(w);
    json_key(w, "name");
    json_string(w, m->name);
    json_key(w, "rank_offset");
    json_int(w, m->rank_offset);
    json_key(w, "num_ranks");
    json_int(w, m->num_ranks);
    const char *dense[] = {"tp", "cp", "dp", "pp"};
    for (int d = 0; d < HG_NUM_DENSE_DIMS; d++) {
        json_key(w, dense[d]);
        json_int(w, m->dense[d]);
    }
    json_key(w, "ep");
    json_int(w, m->expert[HG_XDIM_EP]);
    json_key(w, "expt_tp");
    json_int(w, m->expert[HG_XDIM_TP]);
    json_key(w, "expt_dp");
    json_int(w, m->expert[HG_XDIM_DP]);
    write_groups(m, w, members);
    json_end_object(w);
}

static void write_coords(const hg_coords *c, json_writer *w)
{
    const char *keys[] = {"tp", "cp", "dp", "pp", "ep", "expt_tp", "expt_dp"};
    const int values[] = {c->tp, c->cp, c->dp, c->pp, c->ep, c->expt_tp, c->expt_dp};
    for (int i = 0; i < 7; i++) {
        json_key(w, keys[i]);
        json_int(w, values[i]);
    }
}

// A rank: its first module's name and coordinates; a colocated rank also
// lists every module it is in under "modules".
static void write_rank(const hg_plan *plan, int rank, json_writer *w)
{
    const hg_module_grid *mods[2];
    int n = hg_plan_modules_of_rank(plan, rank, mods);
    hg_coords c;
    hg_module_coords(mods[0], rank, &c);
    json_begin_object(w);
    json_key(w, "rank");
    json_int(w, rank);
    json_key(w, "module");
    json_string(w, mods[0]->name);
    write_coords(&c, w);
    if (plan->colocated) {
        json_key(w, "modules");
        json_begin_array(w);
        for (int i = 0; i < n; i++) {
            hg_module_coords(mods[i], rank, &c);
            json_begin_object(w);
            json_key(w, "module");
            json_string(w, mods[i]->name);
            write_coords(&c, w);
            json_end_object(w);
        }
        json_end_array(w);
    }
    json_end_object(w);
}

// One bridge's fan and edges (as "bridge": the first; in "bridges": each,
// named by its encoder).
static void write_bridge(const hg_plan *plan, int b, bool named, json_writer *w)
{
    static const char *fans[] = {[HG_FAN_EQUAL] = "equal", [HG_FAN_IN] = "in", [HG_FAN_OUT] = "out"};
    json_begin_object(w);
    if (named) {
        json_key(w, "encoder");
        json_string(w, plan->modules[b].name);
    }
    json_key(w, "fan");
    json_string(w, fans[hg_bridge_fan(plan, b)]);
    json_key(w, "edges");
    json_begin_array(w);
    for (int e = 0; e < hg_bridge_num_edges(plan, b); e++) {
        int enc, llm;
        hg_bridge_edge(plan, b, e, &enc, &llm);
        json_begin_array(w);
        json_int(w, enc);
        json_int(w, llm);
        json_end_array(w);
    }
    json_end_array(w);
    json_end_object(w);
}

void plan_write_json(const hg_plan *plan, json_writer *w)
{
    int *members = malloc(sizeof(int) * (size_t)plan->world_size);
    if (!members)
        abort(); // a plan's worth of ints; nothing sensible to print without it
    json_begin_object(w);
    json_key(w, "world_size");
    json_int(w, plan->world_size);
    json_key(w, "num_microbatches");
    json_int(w, plan->num_microbatches);
    json_key(w, "mimo_layout");
    json_string(w, plan->colocated ? "colocated" : "non-colocated");
    json_key(w, "padded_vocab_size");
    json_int(w, plan->padded_vocab_size);
    json_key(w, "modules");
    json_begin_array(w);
    for (int i = 0; i < plan->num_modules; i++)
        write_module(&plan->modules[i], w, members);
    json_end_array(w);
    json_key(w, "ranks");
    json_begin_array(w);
    for (int r = 0; r < plan->world_size; r++)
        write_rank(plan, r, w);
    json_end_array(w);
    if (hg_plan_has_bridge(plan)) {
        json_key(w, "bridge");
        write_bridge(plan, 0, false, w);
        json_key(w, "bridges");
        json_begin_array(w);
        for (int b = 0; b < hg_plan_num_bridges(plan); b++)
            write_bridge(plan, b, true, w);
        json_end_array(w);
    }
    json_end_object(w);
    free(members);
}
