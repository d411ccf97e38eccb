// Layout flags plus a command's own options, parsed and validated.
#include "ctl/layout_args.h"

#include <stdio.h>
#include <string.h>

#include "ctl/ctl_error.h"

typedef struct {
    hg_layout_spec spec;
    bool invalid; // the last refusal is the layout's (exit 1), not a usage error
} layout_ctx;

// util/cli.h's hook for the layout flags (layout/flags.c).
static int parse_layout_flag(void *ctx, int argc, char **argv, int *i, char *err, size_t errlen)
{
    layout_ctx *l = ctx;
    switch (hg_layout_parse_flag(&l->spec, argc, argv, i, err, errlen)) {
    case HG_FLAG_OK:
        return 1;
    case HG_FLAG_UNKNOWN:
        return 0;
    case HG_FLAG_INVALID:
        l->invalid = true;
        return -1;
    case HG_FLAG_USAGE:
        break;
    }
    return -1;
}

int layout_args_parse(const layout_command *cmd, int argc, char **argv, hg_plan *plan)
{
    layout_ctx l = {.invalid = false};
    hg_layout_spec_defaults(&l.spec);
    const cli_more layout = {parse_layout_flag, &l, hg_layout_flag_name, hg_layout_flags_help};
    char program[64];
    snprintf(program, sizeof program, "hgridctl %s", cmd->name);
    const cli_spec spec = {.program = program, .usage = cmd->usage, .opts = cmd->opts,
                           .more = &layout, .epilog = cmd->epilog};
    char err[HG_ERR_LEN];
    int n;
    switch (cli_parse(&spec, argc, argv, NULL, &n, err, sizeof err)) {
    case CLI_EXIT:
        return LAYOUT_ARGS_HELP;
    case CLI_USAGE:
        if (l.invalid)
            return ctl_fail(LAYOUT_ARGS_INVALID, CTL_ERR_INVALID_LAYOUT,
                            "hgridctl: invalid layout: %s", err);
        ctl_usage_error(cmd->name, err);
        return LAYOUT_ARGS_USAGE;
    }
    if (hg_plan_build(&l.spec, plan, err, sizeof err) != 0)
        return ctl_fail(LAYOUT_ARGS_INVALID, CTL_ERR_INVALID_LAYOUT, "hgridctl: invalid layout: %s",
                        err);
    return LAYOUT_ARGS_OK;
}
