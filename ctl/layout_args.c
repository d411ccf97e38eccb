// Layout flags plus a command's own options, parsed and validated.
#include "ctl/layout_args.h"

#include <string.h>

#include "ctl/ctl_error.h"

static int usage_error(const char *cmd, const char *what)
{
    ctl_usage_error(cmd, what);
    return LAYOUT_ARGS_USAGE;
}

static int invalid(const char *why)
{
    return ctl_fail(LAYOUT_ARGS_INVALID, CTL_ERR_INVALID_LAYOUT, "hgridctl: invalid layout: %s",
                    why);
}

// Consumes argv[*i] if it is one of the command's own options.
static int parse_extra(int argc, char **argv, int *i, const layout_arg *extras)
{
    for (const layout_arg *x = extras; x && x->name; x++) {
        if (strcmp(argv[*i], x->name) != 0)
            continue;
        if (x->type == LAYOUT_ARG_SWITCH) {
            *x->switch_value = true;
            *i += 1;
            return 1;
        }
        if (*i + 1 >= argc)
            return -1;
        *x->string_value = argv[*i + 1];
        *i += 2;
        return 1;
    }
    return 0;
}

int layout_args_parse(int argc, char **argv, const layout_arg *extras, hg_plan *plan,
                      void (*usage)(FILE *out))
{
    const char *cmd = argv[0];
    hg_layout_spec spec;
    hg_layout_spec_defaults(&spec);
    char err[HG_ERR_LEN];
    for (int i = 1; i < argc;) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return LAYOUT_ARGS_HELP;
        }
        int extra = parse_extra(argc, argv, &i, extras);
        if (extra < 0) {
            snprintf(err, sizeof err, "%s needs a value", argv[i]);
            return usage_error(cmd, err);
        }
        if (extra > 0)
            continue;
        switch (hg_layout_parse_flag(&spec, argc, argv, &i, err, sizeof err)) {
        case HG_FLAG_OK:
            continue;
        case HG_FLAG_USAGE:
            return usage_error(cmd, err);
        case HG_FLAG_INVALID:
            return invalid(err);
        case HG_FLAG_UNKNOWN:
            snprintf(err, sizeof err, "unknown option '%.64s'", argv[i]);
            return usage_error(cmd, err);
        }
    }
    if (hg_plan_build(&spec, plan, err, sizeof err) != 0) {
        return invalid(err);
    }
    return LAYOUT_ARGS_OK;
}
