// hgridctl plan: validate a layout and show its ranks, groups and bridge.
#include <stdio.h>
#include <string.h>

#include "ctl/hgridctl.h"
#include "util/json.h"
#include "ctl/layout_args.h"
#include "ctl/plan_print.h"

int ctl_plan(const ctl_options *opt, int argc, char **argv)
{
    (void)opt;
    bool json = false;
    hg_plan plan;
    const cli_opt opts[] = {
        CLI_OPT_SWITCH("json", &json,
                       "one object: {\"world_size\", \"num_microbatches\", \"modules\",\n"
                       "\"ranks\", \"bridge\"} (the \"plan\" of 'hgridctl show JOB --json')"),
        CLI_OPT_END,
    };
    const layout_command cmd = {
        "plan",
        "usage: hgridctl plan [--json] [layout flags]\n"
        "Validates a layout and prints its ranks, process groups and bridge edges.\n",
        opts, "Exit status: 0 valid, 1 invalid layout, 2 usage error.\n"};
    int status = layout_args_parse(&cmd, argc, argv, &plan);
    if (status != LAYOUT_ARGS_OK)
        return status == LAYOUT_ARGS_HELP ? 0 : status;
    if (json) {
        json_writer w;
        json_init(&w, stdout);
        plan_write_json(&plan, &w);
        fputc('\n', stdout);
    } else {
        plan_write_text(&plan, stdout);
    }
    return 0;
}
