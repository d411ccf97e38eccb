// Command-line layout flags plus a command's own options, into a valid plan.
#ifndef HGRID_LAYOUT_ARGS_H
#define HGRID_LAYOUT_ARGS_H

#include <stdbool.h>
#include <stdio.h>

#include "layout/layout.h"

typedef enum { LAYOUT_ARG_SWITCH, LAYOUT_ARG_STRING } layout_arg_type;

// A command's own option; the table ends with a NULL name.
typedef struct {
    const char *name; // e.g. "--json"
    layout_arg_type type;
    const char **string_value; // LAYOUT_ARG_STRING
    bool *switch_value;        // LAYOUT_ARG_SWITCH
} layout_arg;

enum { LAYOUT_ARGS_OK = 0, LAYOUT_ARGS_INVALID = 1, LAYOUT_ARGS_USAGE = 2, LAYOUT_ARGS_HELP = 3 };

// Parses argv[1..] (argv[0] is the command name) into a validated plan.
// Reports (ctl/ctl_error.h) "hgridctl: invalid layout: <reason>" and
// returns LAYOUT_ARGS_INVALID, or a usage error with a hint and returns
// LAYOUT_ARGS_USAGE; --help prints usage to stdout and returns
// LAYOUT_ARGS_HELP (the command exits 0).
int layout_args_parse(int argc, char **argv, const layout_arg *extras, hg_plan *plan,
                      void (*usage)(FILE *out));

#endif
