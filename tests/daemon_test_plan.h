// Shared by gridd's unit tests: a plan from a flag string.
#ifndef HGRID_TESTS_DAEMON_TEST_PLAN_H
#define HGRID_TESTS_DAEMON_TEST_PLAN_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layout/layout.h"

// Builds the plan of space-separated layout flags; exits if they are invalid
// (a broken test, not a failed check).
static inline void plan_of(const char *flags, hg_plan *plan)
{
    char buf[1024], *argv[64], err[HG_ERR_LEN];
    int argc = 0;
    snprintf(buf, sizeof buf, "%s", flags);
    for (char *tok = strtok(buf, " "); tok && argc < 64; tok = strtok(NULL, " "))
        argv[argc++] = tok;
    hg_layout_spec spec;
    hg_layout_spec_defaults(&spec);
    for (int i = 0; i < argc;)
        if (hg_layout_parse_flag(&spec, argc, argv, &i, err, sizeof err) != HG_FLAG_OK) {
            fprintf(stderr, "test layout '%s': %s\n", flags, err);
            exit(2);
        }
    if (hg_plan_build(&spec, plan, err, sizeof err)) {
        fprintf(stderr, "test layout '%s': %s\n", flags, err);
        exit(2);
    }
}

#endif
