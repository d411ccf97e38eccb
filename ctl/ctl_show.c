// hgridctl show: a job's workers drawn as hosts x GPUs, or as JSON with its plan.
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "ctl/ctl_error.h"
#include "ctl/ctl_grid.h"
#include "ctl/ctl_jobs.h"
#include "util/json.h"
#include "ctl/plan_print.h"
#include "wire/wire.h"

#define WIDTH_DEFAULT 120 // when stdout is no terminal and $COLUMNS is not set
#define WIDTH_MIN 40

static const job_command show_cmd = {
    "show", " [--max-hosts N] [--width N] [--all]",
    "Shows a job: hosts down, GPUs across; each cell is the worker on that GPU, its\n"
    "rank and module (enc, llm) over its coordinates t=tp d=dp p=pp (c=cp, e=ep when\n"
    "the layout has them); a joined worker without a rank yet says so, '.' marks a\n"
    "GPU of that host with no worker. Hosts are drawn in rank order; GPU columns\n"
    "that do not fit the width continue in a further panel. Then the workers by\n"
    "state: those not joined yet, those lost (by rank and host). gridd sends the\n"
    "first 1024 workers; --all asks for every page of them.\n",
    "{\"job\", \"state\", \"generation\", \"world_size\",\n"
    "\"workers\": [{\"rank\", \"host\", \"device\", \"state\",\n"
    "\"last_heartbeat_ms\"}], \"num_workers\", \"plan\": the object 'hgridctl plan\n"
    "--json' prints}; rank and last_heartbeat_ms are -1 when there is none yet;\n"
    "workers holds the first 1024 of num_workers (all with --all)", NULL};

static int terminal_width(void)
{
    struct winsize ws;
    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    const char *cols = getenv("COLUMNS");
    int n = cols ? atoi(cols) : 0;
    return n > 0 ? n : WIDTH_DEFAULT;
}

static void write_json(const Hgrid__JobInfo *info, const hg_plan *plan)
{
    json_writer w;
    json_init(&w, stdout);
    json_begin_object(&w);
    ctl_json_job_head(&w, info);
    json_key(&w, "workers");
    json_begin_array(&w);
    for (size_t i = 0; i < info->n_workers; i++) {
        const Hgrid__WorkerInfo *wi = info->workers[i];
        json_begin_object(&w);
        json_key(&w, "rank");
        json_int(&w, wi->rank == UINT32_MAX ? -1 : (long long)wi->rank);
        json_key(&w, "host");
        json_string(&w, wi->host);
        json_key(&w, "device");
        json_int(&w, wi->device);
        json_key(&w, "state");
        json_string(&w, wi->state);
        json_key(&w, "last_heartbeat_ms");
        json_int(&w, wi->last_heartbeat_ms);
        json_end_object(&w);
    }
    json_end_array(&w);
    json_key(&w, "num_workers");
    json_int(&w, (long long)ctl_num_workers(info));
    json_key(&w, "plan");
    plan_write_json(plan, &w);
    json_end_object(&w);
    fputc('\n', stdout);
}

int ctl_show(const ctl_options *opt, int argc, char **argv)
{
    const char *name;
    bool json, all = false;
    grid_options g = {.width = 0, .max_hosts = GRID_DEFAULT_MAX_HOSTS};
    const cli_opt opts[] = {
        CLI_OPT_SWITCH("all", &all, "every worker, a page of 1024 at a time (default: the first\n"
                       "1024)"),
        CLI_OPT_INT("max-hosts", &g.max_hosts, NULL, 0, HG_MAX_WORLD, "N",
                    "draw at most N hosts and count the rest (0: all)"),
        CLI_OPT_INT("width", &g.width, NULL, WIDTH_MIN, 100000, "N",
                    "fit N columns (default: the terminal's, else\n$COLUMNS, else "
                    CLI_STR(WIDTH_DEFAULT) ")"),
        CLI_OPT_END,
    };
    int rc = ctl_parse_job_args(&show_cmd, argc, argv, opts, &name, &json);
    if (rc >= 0)
        return rc;
    if (!g.width)
        g.width = terminal_width();
    ctl_job_pages pages = {0};
    Hgrid__Envelope *reply = NULL;
    if (all ? ctl_fetch_all(opt, name, &pages) != 0 : !(reply = ctl_fetch_job(opt, name)))
        return CTL_FAILED;
    const Hgrid__JobInfo *info = all ? &pages.info : reply->job_info;
    hg_layout_spec spec;
    hg_plan plan;
    char err[512];
    rc = CTL_OK;
    hg_layout_spec_defaults(&spec);
    if (wire_layout_to_spec(info->layout, &spec, err, sizeof err) ||
        hg_plan_build(&spec, &plan, err, sizeof err))
        rc = ctl_fail(CTL_FAILED, CTL_ERR_BAD_REPLY,
                      "hgridctl: gridd sent a layout this hgridctl cannot plan: %s (mismatched "
                      "hgrid builds? use the hgridctl of gridd's build)", err);
    else if (json)
        write_json(info, &plan);
    else if (grid_write(info, &plan, &g, stdout, err, sizeof err))
        rc = ctl_fail(CTL_FAILED, CTL_ERR_SYSTEM, "hgridctl: %s", err);
    else if (info->n_workers < ctl_num_workers(info))
        printf("(the first %zu of %zu workers; hgridctl show %s --all for every one)\n",
               info->n_workers, ctl_num_workers(info), info->job);
    wire_free_envelope(reply);
    ctl_job_pages_free(&pages);
    return rc;
}
