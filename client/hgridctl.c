// hgridctl: plan layouts and drive gridd over its control socket.
#include <stdio.h>
#include <string.h>

#include "client/ctl_jobs.h"
#include "client/hgridctl.h"

typedef struct {
    const char *name;
    int (*run)(const ctl_options *opt, int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"plan", ctl_plan, "validate a layout; print its ranks, groups and bridge (no gridd needed)"},
    {"submit", ctl_submit, "submit a layout to gridd as a job (prints a generated token)"},
    {"list", ctl_list, "list gridd's jobs"},
    {"show", ctl_show, "show a job's workers (--json: with its full plan)"},
    {"status", ctl_status, "show a job's progress: joined workers, generation, heartbeats"},
    {"watch", ctl_watch, "show a job's training live per module and rank: step, loss, tokens/s"},
    {"cancel", ctl_cancel, "cancel a job; gridd releases its workers"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: hgridctl [--socket PATH] COMMAND [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'hgridctl COMMAND --help' describes each command.\n");
}

int main(int argc, char **argv)
{
    ctl_options opt = {.socket_path = NULL};
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
            opt.socket_path = argv[++i];
            continue;
        }
        fprintf(stderr, "hgridctl: unknown option '%s' (try 'hgridctl --help')\n", argv[i]);
        return 2;
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    for (size_t c = 0; c < sizeof commands / sizeof commands[0]; c++)
        if (strcmp(argv[i], commands[c].name) == 0)
            return commands[c].run(&opt, argc - i, argv + i);
    fprintf(stderr, "hgridctl: unknown command '%s' (try 'hgridctl --help')\n", argv[i]);
    return 2;
}
