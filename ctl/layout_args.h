// Command-line layout flags plus a command's own options, into a valid plan.
#ifndef HGRID_LAYOUT_ARGS_H
#define HGRID_LAYOUT_ARGS_H

#include "layout/layout.h"
#include "util/cli.h"

enum { LAYOUT_ARGS_OK = 0, LAYOUT_ARGS_INVALID = 1, LAYOUT_ARGS_USAGE = 2, LAYOUT_ARGS_HELP = 3 };

// A command taking layout flags: its own options (a util/cli.h table) and
// its --help text around them.
typedef struct {
    const char *name;   // "plan", "submit"
    const char *usage;  // usage line and what it does
    const cli_opt *opts;
    const char *epilog; // exit status
} layout_command;

// Parses argv[1..] (argv[0] is the command name) into a validated plan.
// Reports (ctl/ctl_error.h) "hgridctl: invalid layout: <reason>" and
// returns LAYOUT_ARGS_INVALID, or a usage error with a hint and returns
// LAYOUT_ARGS_USAGE; --help and --version print to stdout and return
// LAYOUT_ARGS_HELP (the command exits 0).
int layout_args_parse(const layout_command *cmd, int argc, char **argv, hg_plan *plan);

#endif
