// hgridctl: plan layouts and drive gridd over its control socket.
#include <stdio.h>
#include <string.h>

#include "ctl/ctl_error.h"
#include "ctl/ctl_jobs.h"
#include "ctl/hgridctl.h"

typedef struct {
    const char *name;
    int (*run)(const ctl_options *opt, int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"plan", ctl_plan, "validate a layout; print its ranks, groups and bridge (no gridd needed)"},
    {"submit", ctl_submit, "submit a layout to gridd as a job (prints a generated token)"},
    {"list", ctl_list, "list gridd's jobs: state, generation, workers joined, end time"},
    {"show", ctl_show, "draw a job's grid: hosts x GPUs, each worker's rank, module, coordinates"},
    {"status", ctl_status, "show a job's progress: joined workers, heartbeats, self-tests"},
    {"watch", ctl_watch, "follow a job live per module and rank: step, loss, tokens/s"},
    {"cancel", ctl_cancel, "cancel a job; gridd releases its workers"},
    {"wait", ctl_wait, "block until a job ends; exit 0 finished, 1 failed or cancelled"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: hgridctl [--socket PATH] [--json] COMMAND [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(out,
            "\n"
            "  --socket PATH  gridd's control socket (default: $HGRID_CONTROL, else\n"
            "                 /run/hgrid/gridd.sock for root, else\n"
            "                 $XDG_RUNTIME_DIR/hgrid/gridd.sock, else /tmp/hgrid-$UID/gridd.sock;\n"
            "                 that one absent: /run/hgrid/gridd.sock, gridd.service's)\n"
            "\n"
            "--json (every command, before or after it): stdout holds one JSON object per\n"
            "line: one in all, or for watch one per refresh. A failure prints one line on\n"
            "stderr saying what to do and, under --json, on stdout:\n"
            "  {\"error\": {\"code\": CODE, \"message\": LINE}}\n"
            "CODE: usage, invalid_layout, unreachable, disconnected, bad_reply, system, or\n"
            "gridd's refusal (unknown_job, job_exists, bad_request, limit, permission, ...).\n"
            "Exit status: 0 ok, 1 failed (refused, gridd not reachable), 2 usage error.\n"
            "\n'hgridctl COMMAND --help' describes each command and its JSON.\n");
}

int main(int argc, char **argv)
{
    ctl_options opt = {.socket_path = NULL};
    bool json_first = false; // "hgridctl --json COMMAND": handed on after the command's arguments
    for (int k = 1; k < argc; k++)
        if (strcmp(argv[k], "--json") == 0)
            ctl_error_set_json(true);
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return CTL_OK;
        }
        if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
            opt.socket_path = argv[++i];
            continue;
        }
        if (strcmp(argv[i], "--json") == 0) {
            json_first = true;
            continue;
        }
        if (strcmp(argv[i], "--socket") == 0)
            return ctl_fail(CTL_USAGE, CTL_ERR_USAGE,
                            "hgridctl: --socket needs the path of gridd's control socket");
        return ctl_fail(CTL_USAGE, CTL_ERR_USAGE,
                        "hgridctl: unknown option '%.64s' (try 'hgridctl --help')", argv[i]);
    }
    if (i >= argc) {
        if (ctl_error_json())
            return ctl_fail(CTL_USAGE, CTL_ERR_USAGE,
                            "hgridctl: name a command (try 'hgridctl --help')");
        usage(stderr);
        return CTL_USAGE;
    }
    char *args[argc - i + 2];
    memcpy(args, argv + i, (size_t)(argc - i) * sizeof *args);
    int n = argc - i;
    if (json_first)
        args[n++] = "--json";
    args[n] = NULL;
    for (size_t c = 0; c < sizeof commands / sizeof commands[0]; c++)
        if (strcmp(argv[i], commands[c].name) == 0)
            return commands[c].run(&opt, n, args);
    return ctl_fail(CTL_USAGE, CTL_ERR_USAGE,
                    "hgridctl: unknown command '%.64s' (try 'hgridctl --help')", argv[i]);
}
