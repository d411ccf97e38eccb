// The job as a grid of hosts and GPUs, for hgridctl show.
#include "ctl/ctl_grid.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl_jobs.h"
#include "ctl/plan_print.h"

#define CELL_LEN 48
#define HOST_WIDTH_MAX 24 // longer host names are cut, ending in '~'
#define LOST_LISTED 8     // lost workers named one by one

typedef struct {
    const char *name;
    size_t first, count; // a run of the workers sorted by (host, device)
    long long min_rank;  // LLONG_MAX while unassigned
} grid_host;

static long long rank_of(const Hgrid__WorkerInfo *w)
{
    return w->rank == UINT32_MAX ? -1 : (long long)w->rank;
}

static int by_host_device(const void *a, const void *b)
{
    const Hgrid__WorkerInfo *x = *(Hgrid__WorkerInfo *const *)a;
    const Hgrid__WorkerInfo *y = *(Hgrid__WorkerInfo *const *)b;
    int c = strcmp(x->host, y->host);
    return c ? c : (x->device > y->device) - (x->device < y->device);
}

static int by_rank_name(const void *a, const void *b)
{
    const grid_host *x = a, *y = b;
    if (x->min_rank != y->min_rank)
        return x->min_rank < y->min_rank ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int by_value(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

// The two lines of a worker's cell.
static void cell_text(const hg_plan *plan, const Hgrid__WorkerInfo *w, char *top, char *bottom)
{
    long long rank = rank_of(w);
    if (rank < 0 || rank >= plan->world_size) {
        snprintf(top, CELL_LEN, "%s", w->state);
        snprintf(bottom, CELL_LEN, "no rank yet");
        return;
    }
    const hg_module_grid *mods[2];
    int nm = hg_plan_modules_of_rank(plan, (int)rank, mods);
    const hg_module_grid *m = mods[nm - 1];
    hg_coords c;
    hg_module_coords(m, (int)rank, &c);
    bool lost = strcmp(w->state, "lost") == 0;
    const char *tag = nm == 2 ? "e+l" : m->id == HG_MODULE_LLM ? "llm"
                                    : plan->num_encoders > 1 ? m->name : "enc";
    snprintf(top, CELL_LEN, "r%lld %.8s%s", rank, tag, lost ? " LOST" : "");
    int n = 0;
    if (nm == 2) { // colocated: the encoder's coordinates, then the llm's
        hg_coords e;
        hg_module_coords(mods[0], (int)rank, &e);
        n = snprintf(bottom, CELL_LEN, "t%d d%d / ", e.tp, e.dp);
    }
    n += snprintf(bottom + n, (size_t)(CELL_LEN - n), "t%d d%d p%d", c.tp, c.dp, c.pp);
    if (m->dense[HG_DIM_CP] > 1)
        n += snprintf(bottom + n, (size_t)(CELL_LEN - n), " c%d", c.cp);
    if (m->id == HG_MODULE_LLM && m->expert[HG_XDIM_EP] > 1)
        snprintf(bottom + n, (size_t)(CELL_LEN - n), " e%d", c.ep);
}

typedef struct {
    const hg_plan *plan;
    Hgrid__WorkerInfo **sorted;
    grid_host *hosts;
    size_t num_hosts, drawn;
    uint32_t *devices; // the GPU columns: every device index seen on a drawn host
    size_t num_devices;
    int host_width, cell_width;
} grid;

// The worker on device dev of host h, or NULL (a binary search of its run).
static const Hgrid__WorkerInfo *at(const grid *g, const grid_host *h, uint32_t dev)
{
    size_t lo = h->first, hi = h->first + h->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (g->sorted[mid]->device < dev)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < h->first + h->count && g->sorted[lo]->device == dev ? g->sorted[lo] : NULL;
}

static void measure(grid *g)
{
    char top[CELL_LEN], bottom[CELL_LEN];
    g->host_width = 4;
    g->cell_width = 5;
    for (size_t k = 0; k < g->drawn; k++) {
        const grid_host *h = &g->hosts[k];
        int n = (int)strlen(h->name);
        if (n > g->host_width)
            g->host_width = n < HOST_WIDTH_MAX ? n : HOST_WIDTH_MAX;
        for (size_t i = h->first; i < h->first + h->count; i++) {
            cell_text(g->plan, g->sorted[i], top, bottom);
            int w = (int)(strlen(top) > strlen(bottom) ? strlen(top) : strlen(bottom));
            if (w > g->cell_width)
                g->cell_width = w;
        }
    }
    for (size_t d = 0; d < g->num_devices; d++) {
        int w = snprintf(NULL, 0, "gpu %u", g->devices[d]);
        if (w > g->cell_width)
            g->cell_width = w;
    }
}

static void host_label(const char *name, int width, char *buf, size_t len)
{
    if ((int)strlen(name) <= width)
        snprintf(buf, len, "%s", name);
    else
        snprintf(buf, len, "%.*s~", width - 1, name);
}

// GPU columns [from, to) for every drawn host.
static void write_panel(const grid *g, size_t from, size_t to, FILE *out)
{
    fprintf(out, "%-*s", g->host_width, "host");
    int pending = 0; // spaces owed: no trailing blanks
    for (size_t d = from; d < to; d++) {
        char head[24];
        int n = snprintf(head, sizeof head, "gpu %u", g->devices[d]);
        fprintf(out, "%*s%s", pending + 2, "", head);
        pending = g->cell_width - n;
    }
    fputc('\n', out);
    char label[HOST_WIDTH_MAX + 1], top[CELL_LEN], bottom[CELL_LEN];
    for (size_t k = 0; k < g->drawn; k++) {
        const grid_host *h = &g->hosts[k];
        for (int line = 0; line < 2; line++) {
            host_label(line ? "" : h->name, g->host_width, label, sizeof label);
            fprintf(out, "%-*s", g->host_width, label);
            pending = 0;
            for (size_t d = from; d < to; d++) {
                const Hgrid__WorkerInfo *w = at(g, h, g->devices[d]);
                if (w)
                    cell_text(g->plan, w, top, bottom);
                const char *text = w ? (line ? bottom : top) : (line ? "" : ".");
                if (*text) {
                    fprintf(out, "%*s%s", pending + 2, "", text);
                    pending = g->cell_width - (int)strlen(text);
                } else {
                    pending += g->cell_width + 2;
                }
            }
            fputc('\n', out);
        }
    }
}

static void write_heading(const Hgrid__JobInfo *info, const hg_plan *plan, FILE *out)
{
    fprintf(out, "job %s: %s, generation %llu, joined %u/%u\n", info->job, info->state,
            (unsigned long long)info->generation, info->joined, info->world_size);
    if (info->ended_unix_ms) {
        char end[320];
        ctl_format_end(info, end, sizeof end);
        fprintf(out, "%s\n", end);
    }
    for (int i = 0; i < plan->num_modules; i++) {
        const hg_module_grid *m = &plan->modules[i];
        char ranks[40];
        plan_module_ranks(m, ranks, sizeof ranks);
        fprintf(out, "%-8s %s: tp %d, dp %d, pp %d", m->name, ranks, m->dense[HG_DIM_TP],
                m->dense[HG_DIM_DP], m->dense[HG_DIM_PP]);
        if (m->dense[HG_DIM_CP] > 1)
            fprintf(out, ", cp %d", m->dense[HG_DIM_CP]);
        if (m->id == HG_MODULE_LLM && m->expert[HG_XDIM_EP] > 1)
            fprintf(out, ", ep %d", m->expert[HG_XDIM_EP]);
        fputc('\n', out);
    }
}

// Worker counts by state, the lost ones named, and those not joined yet.
static void write_states(const Hgrid__JobInfo *info, FILE *out)
{
    static const char *states[] = {"joined", "assigned", "ready", "done", "released", "lost"};
    enum { NUM_STATES = sizeof states / sizeof states[0], LOST = NUM_STATES - 1 };
    size_t counts[NUM_STATES] = {0}, other = 0;
    for (size_t i = 0; i < info->n_workers; i++) {
        size_t s = 0;
        while (s < NUM_STATES && strcmp(info->workers[i]->state, states[s]) != 0)
            s++;
        if (s < NUM_STATES)
            counts[s]++;
        else
            other++;
    }
    fprintf(out, "workers:");
    const char *sep = " ";
    for (size_t s = 0; s < NUM_STATES; s++) {
        if (counts[s]) {
            fprintf(out, "%s%zu %s", sep, counts[s], states[s]);
            sep = ", ";
        }
    }
    if (other)
        fprintf(out, "%s%zu other", sep, other);
    size_t missing = info->world_size > info->n_workers ? info->world_size - info->n_workers : 0;
    if (missing)
        fprintf(out, "%s%zu not joined yet", sep, missing);
    else if (!info->n_workers)
        fprintf(out, " none");
    fputc('\n', out);
    size_t listed = 0;
    for (size_t i = 0; i < info->n_workers && counts[LOST]; i++) {
        const Hgrid__WorkerInfo *w = info->workers[i];
        if (strcmp(w->state, "lost") != 0)
            continue;
        if (listed++ == LOST_LISTED) {
            fprintf(out, " ... (%zu lost in all)", counts[LOST]);
            break;
        }
        fprintf(out, "%s rank %lld on %s/%u", listed == 1 ? "lost:" : ",", rank_of(w), w->host,
                w->device);
    }
    if (listed)
        fprintf(out, " (they rejoin by restarting hgrid-worker with the same --host "
                     "and --device)\n");
}

// Hosts in rank order, each holding a run of the sorted workers.
static int collect(grid *g, const Hgrid__JobInfo *info)
{
    size_t n = info->n_workers;
    g->sorted = malloc((n + 1) * sizeof *g->sorted);
    g->hosts = malloc((n + 1) * sizeof *g->hosts);
    g->devices = malloc((n + 1) * sizeof *g->devices);
    if (!g->sorted || !g->hosts || !g->devices)
        return -1;
    if (n)
        memcpy(g->sorted, info->workers, n * sizeof *g->sorted);
    qsort(g->sorted, n, sizeof *g->sorted, by_host_device);
    for (size_t i = 0; i < n; i++) {
        grid_host *h = &g->hosts[g->num_hosts];
        if (i == 0 || strcmp(g->sorted[i]->host, g->sorted[i - 1]->host) != 0) {
            h = &g->hosts[g->num_hosts++];
            *h = (grid_host){.name = g->sorted[i]->host, .first = i, .min_rank = LLONG_MAX};
        } else {
            h = &g->hosts[g->num_hosts - 1];
        }
        h->count++;
        long long r = rank_of(g->sorted[i]);
        if (r >= 0 && r < h->min_rank)
            h->min_rank = r;
    }
    qsort(g->hosts, g->num_hosts, sizeof *g->hosts, by_rank_name);
    return 0;
}

static void choose_columns(grid *g)
{
    size_t n = 0;
    for (size_t k = 0; k < g->drawn; k++)
        for (size_t i = g->hosts[k].first; i < g->hosts[k].first + g->hosts[k].count; i++)
            g->devices[n++] = g->sorted[i]->device;
    qsort(g->devices, n, sizeof *g->devices, by_value);
    g->num_devices = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || g->devices[i] != g->devices[i - 1])
            g->devices[g->num_devices++] = g->devices[i];
}

int grid_write(const Hgrid__JobInfo *info, const hg_plan *plan, const grid_options *o, FILE *out,
               char *err, size_t errlen)
{
    grid g = {.plan = plan};
    int rc = collect(&g, info);
    if (rc) {
        snprintf(err, errlen, "out of memory drawing %zu workers (hgridctl show --json lists them)",
                 info->n_workers);
    } else {
        g.drawn = o->max_hosts > 0 && g.num_hosts > (size_t)o->max_hosts ? (size_t)o->max_hosts
                                                                         : g.num_hosts;
        choose_columns(&g);
        measure(&g);
        write_heading(info, plan, out);
        fprintf(out, "cells: rank and module, then coordinates t=tp d=dp p=pp%s%s; '.' no worker\n",
                plan->spec.llm_cp > 1 || plan->spec.llm_ep > 1 ? " c=cp e=ep" : "",
                plan->colocated ? " (e+l colocated: the encoder's t d / the llm's)" : "");
        int per_panel = (o->width - g.host_width) / (g.cell_width + 2);
        size_t step = per_panel > 0 ? (size_t)per_panel : 1;
        for (size_t d = 0; d < g.num_devices; d += step) {
            fputc('\n', out);
            write_panel(&g, d, d + step < g.num_devices ? d + step : g.num_devices, out);
        }
        if (g.drawn < g.num_hosts) {
            size_t workers = 0;
            for (size_t k = g.drawn; k < g.num_hosts; k++)
                workers += g.hosts[k].count;
            size_t hosts = g.num_hosts - g.drawn;
            fprintf(out, "... %zu more host%s with %zu worker%s not drawn (--max-hosts 0 draws "
                         "every host; --json lists every worker)\n",
                    hosts, hosts == 1 ? "" : "s", workers, workers == 1 ? "" : "s");
        }
        fputc('\n', out);
        write_states(info, out);
    }
    free(g.sorted);
    free(g.hosts);
    free(g.devices);
    return rc;
}
