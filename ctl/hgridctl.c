// hgridctl: plan layouts and drive gridd over its control socket.
#include <stdio.h>
#include <string.h>

#include "ctl/ctl_error.h"
#include "ctl/ctl_jobs.h"
#include "ctl/hgridctl.h"
#include "util/cli.h"

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

static const char options_help[] =
    "--json (every command, before or after it): stdout holds one JSON object per\n"
    "line: one in all, or for watch one per refresh. A failure prints one line on\n"
    "stderr saying what to do and, under --json, on stdout:\n"
    "  {\"error\": {\"code\": CODE, \"message\": LINE}}\n"
    "CODE: usage, invalid_layout, unreachable, disconnected, bad_reply, system, or\n"
    "gridd's refusal (unknown_job, job_exists, bad_request, limit, permission, ...).\n"
    "Exit status: 0 ok, 1 failed (refused, gridd not reachable), 2 usage error.\n"
    "\n'hgridctl COMMAND --help' describes each command and its JSON.\n";

int main(int argc, char **argv)
{
    ctl_options opt = {.socket_path = NULL};
    bool json_first = false; // "hgridctl --json COMMAND": handed on to the command
    for (int k = 1; k < argc && strcmp(argv[k], "--"); k++)
        if (strcmp(argv[k], "--json") == 0)
            ctl_error_set_json(true);
    char usage[2048];
    int len = snprintf(usage, sizeof usage,
                       "usage: hgridctl [--socket PATH] [--json] COMMAND [options]\n\ncommands:\n");
    for (size_t c = 0; c < sizeof commands / sizeof commands[0]; c++)
        len += snprintf(usage + len, sizeof usage - (size_t)len, "  %-8s %s\n", commands[c].name,
                        commands[c].summary);
    const cli_opt opts[] = {
        CLI_OPT_STRING("socket", &opt.socket_path, NULL, "PATH",
                       "gridd's control socket (default: $HGRID_CONTROL, else\n"
                       "/run/hgrid/gridd.sock for root, else\n"
                       "$XDG_RUNTIME_DIR/hgrid/gridd.sock, else /tmp/hgrid-$UID/gridd.sock;\n"
                       "that one absent: /run/hgrid/gridd.sock, gridd.service's)"),
        CLI_OPT_SWITCH("json", &json_first, "print JSON (below)"),
        CLI_OPT_END,
    };
    const cli_spec spec = {.program = "hgridctl", .usage = usage, .opts = opts,
                           .epilog = options_help, .max_operands = argc,
                           .stop_at_operand = true};
    char err[256], *rest[argc + 2];
    int n;
    switch (cli_parse(&spec, argc, argv, rest, &n, err, sizeof err)) {
    case CLI_EXIT:
        return CTL_OK;
    case CLI_USAGE:
        return ctl_fail(CTL_USAGE, CTL_ERR_USAGE, "hgridctl: %s (try 'hgridctl --help')", err);
    }
    if (n == 0) {
        if (ctl_error_json())
            return ctl_fail(CTL_USAGE, CTL_ERR_USAGE,
                            "hgridctl: name a command (try 'hgridctl --help')");
        cli_help(&spec, stderr);
        return CTL_USAGE;
    }
    if (json_first) { // right after the command: before any "--"
        memmove(rest + 2, rest + 1, (size_t)(n - 1) * sizeof *rest);
        rest[1] = "--json";
        n++;
    }
    rest[n] = NULL;
    for (size_t c = 0; c < sizeof commands / sizeof commands[0]; c++)
        if (strcmp(rest[0], commands[c].name) == 0)
            return commands[c].run(&opt, n, rest);
    const char *names[sizeof commands / sizeof commands[0] + 1];
    for (size_t c = 0; c < sizeof commands / sizeof commands[0]; c++)
        names[c] = commands[c].name;
    names[sizeof commands / sizeof commands[0]] = NULL;
    const char *near = cli_nearest(rest[0], names);
    if (near)
        return ctl_fail(CTL_USAGE, CTL_ERR_USAGE,
                        "hgridctl: unknown command '%.64s' (did you mean %s? try 'hgridctl --help')",
                        rest[0], near);
    return ctl_fail(CTL_USAGE, CTL_ERR_USAGE,
                    "hgridctl: unknown command '%.64s' (try 'hgridctl --help')", rest[0]);
}
