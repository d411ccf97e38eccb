// hgrid-worker's assignment printers: a summary for people, JSON for tools.
#include <stdio.h>
#include <stdlib.h>

#include "util/json.h"
#include "util/whole_lines.h"
#include "worker/worker.h"

// Full id as hex (JSON), so tools can compare ids across workers.
static void id_hex(const uint8_t *id, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < HGRID_ID_BYTES; i++) {
        out[2 * i] = digits[id[i] >> 4];
        out[2 * i + 1] = digits[id[i] & 15];
    }
    out[2 * HGRID_ID_BYTES] = '\0';
}

// A short fingerprint of an id for people (FNV-1a, 32 bits).
static unsigned id_print(const uint8_t *id)
{
    unsigned h = 2166136261u;
    for (int i = 0; i < HGRID_ID_BYTES; i++)
        h = (h ^ id[i]) * 16777619u;
    return h;
}

static void print_text(const hgrid_worker *w, const worker_options *opt, FILE *out)
{
    const hg_coords *c = hgrid_coords(w);
    fprintf(out, "%s/%d: job %s generation %llu: rank %d of %d, %s tp %d cp %d dp %d pp %d ep %d "
                 "expt_tp %d expt_dp %d\n",
            opt->host, opt->device, hgrid_job(w), (unsigned long long)hgrid_generation(w),
            hgrid_rank(w), hgrid_world_size(w), hgrid_plan(w)->modules[c->module_index].name, c->tp,
            c->cp, c->dp, c->pp, c->ep, c->expt_tp, c->expt_dp);
    const hg_coords *co = hgrid_coords_at(w, 1); // colocated: the llm too
    if (co)
        fprintf(out, "  also %s tp %d cp %d dp %d pp %d ep %d expt_tp %d expt_dp %d\n",
                hgrid_plan(w)->modules[co->module_index].name, co->tp, co->cp, co->dp, co->pp,
                co->ep, co->expt_tp, co->expt_dp);
    for (int i = 0; i < hgrid_num_groups(w); i++) {
        const hgrid_group *g = hgrid_group_at(w, i);
        fprintf(out, "  %-9s [", g->name);
        for (int j = 0; j < g->size && j < 8; j++)
            fprintf(out, "%s%d", j ? "," : "", g->members[j]);
        fprintf(out, "%s]", g->size > 8 ? ",..." : "");
        if (!g->nccl_id)
            fprintf(out, " (one rank: no communicator)\n");
        else if (g->shares_with != i)
            fprintf(out, " shares %s's communicator\n", hgrid_group_at(w, g->shares_with)->name);
        else
            fprintf(out, " id %08x%s\n", id_print(g->nccl_id), g->rank_in_group == 0 ? " (minted here)" : "");
    }
    for (int i = 0; i < hgrid_num_bridge_peers(w); i++) {
        const hgrid_bridge_peer *p = hgrid_bridge_peer_at(w, i);
        fprintf(out, "  peer      %s rank %d (bridge rank %d)\n", p->send ? "sends to" : "receives from",
                p->rank, p->rank_in_bridge);
    }
}

static void print_json(const hgrid_worker *w, const worker_options *opt, FILE *out)
{
    const hg_coords *c = hgrid_coords(w);
    json_writer j;
    json_init(&j, out);
    json_begin_object(&j);
    json_key(&j, "job");
    json_string(&j, hgrid_job(w));
    json_key(&j, "generation");
    json_int(&j, (long long)hgrid_generation(w));
    json_key(&j, "rank");
    json_int(&j, hgrid_rank(w));
    json_key(&j, "world_size");
    json_int(&j, hgrid_world_size(w));
    json_key(&j, "module");
    json_string(&j, hgrid_plan(w)->modules[c->module_index].name);
    json_key(&j, "host");
    json_string(&j, opt->host);
    json_key(&j, "device");
    json_int(&j, opt->device);
    json_key(&j, "coordinates");
    json_begin_object(&j);
    const char *keys[] = {"tp", "cp", "dp", "pp", "ep", "expt_tp", "expt_dp"};
    const int values[] = {c->tp, c->cp, c->dp, c->pp, c->ep, c->expt_tp, c->expt_dp};
    for (int i = 0; i < 7; i++) {
        json_key(&j, keys[i]);
        json_int(&j, values[i]);
    }
    json_end_object(&j);
    json_key(&j, "groups");
    json_begin_array(&j);
    char hex[2 * HGRID_ID_BYTES + 1];
    for (int i = 0; i < hgrid_num_groups(w); i++) {
        const hgrid_group *g = hgrid_group_at(w, i);
        json_begin_object(&j);
        json_key(&j, "name");
        json_string(&j, g->name);
        json_key(&j, "size");
        json_int(&j, g->size);
        json_key(&j, "rank_in_group");
        json_int(&j, g->rank_in_group);
        json_key(&j, "index");
        json_int(&j, g->index);
        json_key(&j, "members");
        json_begin_array(&j);
        for (int m = 0; m < g->size; m++)
            json_int(&j, g->members[m]);
        json_end_array(&j);
        json_key(&j, "id");
        if (g->nccl_id) {
            id_hex(g->nccl_id, hex);
            json_string(&j, hex);
        } else {
            json_null(&j);
        }
        json_key(&j, "kept");
        json_bool(&j, g->kept);
        json_end_object(&j);
    }
    json_end_array(&j);
    json_key(&j, "bridge_peers");
    json_begin_array(&j);
    for (int i = 0; i < hgrid_num_bridge_peers(w); i++) {
        const hgrid_bridge_peer *p = hgrid_bridge_peer_at(w, i);
        json_begin_object(&j);
        json_key(&j, "rank");
        json_int(&j, p->rank);
        json_key(&j, "rank_in_bridge");
        json_int(&j, p->rank_in_bridge);
        json_key(&j, "send");
        json_bool(&j, p->send);
        json_end_object(&j);
    }
    json_end_array(&j);
    json_end_object(&j);
    fputc('\n', out);
}

void worker_print_assignment(const hgrid_worker *w, const worker_options *opt, FILE *out)
{
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem) { // no memory for the text: print it through stdio after all
        (opt->json ? print_json : print_text)(w, opt, out);
        fflush(out);
        return;
    }
    (opt->json ? print_json : print_text)(w, opt, mem);
    fclose(mem);
    // Workers of one host may share one pipe (hgrid-ssh): the text goes out
    // whole under the pipe's lock, however long (util/whole_lines.h).
    whole_lines_put(out, text, len);
    free(text);
}
