// hgrid-worker's command line.
#include <stdlib.h>
#include <string.h>

#include "util/cli.h"
#include "wire/wire.h"
#include "worker/worker.h"

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "hgrid-worker: %s%s%s (try 'hgrid-worker --help')\n", what, arg ? " " : "",
            arg ? arg : "");
    return 2;
}

static int set_host(void *dest, const char *value, char *err, size_t errlen)
{
    char *host = dest;
    if (!*value || strlen(value) >= sizeof ((worker_options *)0)->host) {
        snprintf(err, errlen, "needs a name of 1-255 characters");
        return -1;
    }
    strcpy(host, value);
    return 0;
}

static int set_comm_init(void *dest, const char *value, char *err, size_t errlen)
{
    if (strcmp(value, "init") && strcmp(value, "split")) {
        snprintf(err, errlen, "needs init or split");
        return -1;
    }
    *(hgrid_comms_strategy *)dest = strcmp(value, "split") ? HGRID_COMMS_INIT : HGRID_COMMS_SPLIT;
    return 0;
}

// The training flags (worker/run_args.c) as util/cli.h's hook.
static int parse_train_flag(void *ctx, int argc, char **argv, int *i, char *err, size_t errlen)
{
    int used = train_parse_flag(ctx, argc, argv, i, err, errlen);
    if (used > 0)
        (*i)++;
    return used;
}

// The k-th training flag's name, from TRAIN_FLAGS_USAGE (for suggestions).
static const char *train_flag_name(size_t k)
{
    static char names[32][32];
    static size_t n = SIZE_MAX;
    if (n == SIZE_MAX) {
        n = 0;
        for (const char *p = strstr(TRAIN_FLAGS_USAGE, "--"); p && n < 32; p = strstr(p, "--")) {
            p += 2;
            size_t len = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789-");
            snprintf(names[n++], sizeof names[0], "%.*s", (int)(len < 31 ? len : 31), p);
            p += len;
        }
    }
    return k < n ? names[k] : NULL;
}

// A non-empty environment variable, or NULL.
static const char *env_value(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

// --coordinator from the environment: HGRID_COORDINATOR, else torchrun's
// MASTER_ADDR with HGRID_PORT (MASTER_PORT is taken by torch's own store).
static int default_coordinator(worker_options *opt)
{
    static char addr[300];
    const char *c = env_value("HGRID_COORDINATOR"), *master = env_value("MASTER_ADDR");
    if (c || !master) {
        opt->coordinator = c;
        return 0;
    }
    const char *port = env_value("HGRID_PORT") ? env_value("HGRID_PORT") : "7420";
    bool v6 = strchr(master, ':') && master[0] != '[';
    if ((size_t)snprintf(addr, sizeof addr, v6 ? "[%s]:%s" : "%s:%s", master, port) >= sizeof addr)
        return usage_error("MASTER_ADDR is too long:", master);
    opt->coordinator = addr;
    return 0;
}

int worker_parse_args(int argc, char **argv, worker_options *opt, bool *exit_now)
{
    memset(opt, 0, sizeof *opt);
    opt->device = -1;
    opt->requested_rank = -1;
    opt->reconnect_timeout_s = -1; // the connect timeout
    opt->comm_init = HGRID_COMMS_DEFAULT;
    train_options_defaults(&opt->train);
    bool launcher_rank = false;
    *exit_now = false;
    const cli_opt opts[] = {
        CLI_OPT_STRING("coordinator", &opt->coordinator, NULL, "HOST[:PORT]",
                       "gridd's worker address (gridd --listen; port\n"
                       "default " CLI_STR(WIRE_DEFAULT_PORT) "); default: $HGRID_COORDINATOR, else\n"
                       "$MASTER_ADDR:$HGRID_PORT (HGRID_PORT default " CLI_STR(WIRE_DEFAULT_PORT)
                       ";\nMASTER_PORT is torch's)"),
        CLI_OPT_STRING("job", &opt->job, NULL, "NAME", "the job (default: $HGRID_JOB)"),
        CLI_OPT_STRING("token", &opt->token, NULL, "T",
                       "its token (hgridctl submit prints it); default:\n"
                       "$HGRID_TOKEN, which ps does not show: prefer it"),
        CLI_OPT_INT("device", &opt->device, NULL, 0, 1 << 16, "N",
                    "local GPU (default: LOCAL_RANK, SLURM_LOCALID, 0)"),
        CLI_OPT_CALL("host", opt->host, NULL, "NAME",
                     "host name (default: $HGRID_HOSTNAME, SLURMD_NODENAME,\ngethostname())",
                     set_host),
        CLI_OPT_SWITCH("use-launcher-rank", &launcher_rank,
                       "ask gridd for rank RANK (or SLURM_PROCID), which must\n"
                       "be below WORLD_SIZE (or SLURM_NTASKS) when set"),
        CLI_OPT_SWITCH("dry-run", &opt->dry_run,
                       "the whole protocol without a GPU; leaders mint\nrandom ids (no communicator forms); "
                       "reports no loss; with --steps N, reports done\nafter N steps (default: "
                       "run until gridd releases the job)"),
        CLI_OPT_SWITCH("self-test", &opt->self_test, "exit after the self-test (0: every check right)"),
        CLI_OPT_CALL("comm-init", &opt->comm_init, NULL, "init|split",
                     "one ncclCommInitRank per group, or split the module\n"
                     "communicator (default: the faster, split)", set_comm_init),
        CLI_OPT_NUM("comm-timeout", &opt->comm_timeout_s, "60", 0.05, 1e9, "S",
                    "communicators formed within S seconds, else all are\n"
                    "aborted and the worker exits 1"),
        CLI_OPT_NUM("bw-bytes", &opt->bw_bytes, "67108864", 0, 1e9, "N",
                    "self-test all-reduce size in bytes (0: none)"),
        CLI_OPT_SWITCH("json", &opt->json, "print each assignment as one JSON line"),
        CLI_OPT_NUM("heartbeat-timeout", &opt->heartbeat_timeout_s, "3", 0.05, 1e9, "S",
                    "gridd's --heartbeat-timeout; heartbeats go every S/3"),
        CLI_OPT_NUM("assign-timeout", &opt->assign_timeout_s, NULL, 0, 1e9, "S",
                    "give up if no assignment within S seconds (default:\n"
                    "wait as long as it takes)"),
        CLI_OPT_NUM("connect-timeout", &opt->connect_timeout_s, "300", 0, 1e9, "S",
                    "at start, wait up to S seconds for gridd (refused,\n"
                    "unreachable, unresolvable: tried again with backoff,\n"
                    "a line every 10 s), then exit 1"),
        CLI_OPT_NUM("reconnect-timeout", &opt->reconnect_timeout_s, NULL, 0, 1e9, "S",
                    "when gridd is lost (restarted), reconnect with backoff\n"
                    "and carry on; exit 1 after S seconds without it\n"
                    "(default: --connect-timeout; 0: exit at once)"),
        CLI_OPT_NUM("step-ms", &opt->step_ms, NULL, 0, 1e9, "MS",
                    "(dry run) one step every MS ms (default: one per\n"
                    "heartbeat, every --heartbeat-timeout/3)"),
        CLI_OPT_NUM("fail-at-step", &opt->fail_at_step, NULL, 0, 1e18, "K",
                    "(dry run) at step K report a failure no restart\n"
                    "cures and exit 1: rehearses a failing job"),
        CLI_OPT_END,
    };
    const cli_more train = {parse_train_flag, &opt->train, train_flag_name,
                            TRAIN_FLAGS_USAGE};
    const cli_spec spec = {
        .program = "hgrid-worker",
        .usage =
            "usage: hgrid-worker --coordinator HOST[:PORT] --job NAME --token T [options]\n"
            "       hgrid-worker --single-gpu --config NAME --steps N [trainer flags]\n"
            "Joins a job on gridd, creates this worker's NCCL communicators on its GPU,\n"
            "self-tests them (membership, bridge edges, bus bandwidth; the results go to\n"
            "gridd), reports ready and heartbeats until gridd releases the job; with\n"
            "--config and --steps it trains, reporting every step to gridd, then reports\n"
            "done: once every rank is done gridd ends the job and releases the workers.\n"
            "--single-gpu trains both modules on one GPU instead, without gridd.\n",
        .opts = opts,
        .more = &train,
        .epilog = TRAIN_FLAGS_HELP
                  "Exit status: 0 the job finished or was cancelled; 1 it failed, or this worker\n"
                  "was refused, lost gridd, failed its self-test or training; 2 usage error.\n"};
    char err[256];
    int n;
    switch (cli_parse(&spec, argc, argv, NULL, &n, err, sizeof err)) {
    case CLI_EXIT:
        *exit_now = true;
        return 0;
    case CLI_USAGE:
        return usage_error(err, NULL);
    }
    if (opt->bw_bytes != (double)(size_t)opt->bw_bytes || (opt->bw_bytes > 0 && opt->bw_bytes < 4))
        return usage_error("--bw-bytes needs a whole number of bytes, 0 or >= 4", NULL);
    if (opt->self_test && opt->dry_run)
        return usage_error("--self-test needs a GPU; drop --dry-run", NULL);
    if ((opt->step_ms > 0 || opt->fail_at_step > 0) && !opt->dry_run)
        return usage_error("--step-ms and --fail-at-step pace a dry run; add --dry-run", NULL);
    if (opt->fail_at_step != (double)(long)opt->fail_at_step)
        return usage_error("--fail-at-step needs a whole step number", NULL);
    if (opt->reconnect_timeout_s < 0)
        opt->reconnect_timeout_s = opt->connect_timeout_s;
    if (train_options_check(&opt->train, opt->dry_run, opt->self_test, err, sizeof err) != 0)
        return usage_error(err, NULL);
    if (opt->train.single_gpu) // trains without gridd
        return 0;
    // Launchers and units pass these in the environment; the token is kept
    // out of the command line, which ps shows.
    if (!opt->token)
        opt->token = env_value("HGRID_TOKEN");
    if (!opt->job)
        opt->job = env_value("HGRID_JOB");
    if (!opt->coordinator && default_coordinator(opt))
        return 2;
    if (opt->coordinator) { // HOST (flag or $HGRID_COORDINATOR): the default port
        static char addr[300];
        opt->coordinator = cli_host_port(opt->coordinator, WIRE_DEFAULT_PORT, addr, sizeof addr);
    }
    if (!opt->coordinator || !opt->job || !opt->token)
        return usage_error("--coordinator (or $HGRID_COORDINATOR or $MASTER_ADDR), --job (or "
                           "$HGRID_JOB) and --token (or $HGRID_TOKEN) are required",
                           NULL);
    if (!opt->host[0])
        hgrid_default_host(opt->host, sizeof opt->host);
    if (opt->device < 0)
        opt->device = hgrid_default_device();
    if (launcher_rank) {
        opt->requested_rank = hgrid_launcher_rank();
        if (opt->requested_rank < 0)
            return usage_error("--use-launcher-rank needs RANK or SLURM_PROCID set to a rank",
                               NULL);
        const char *world = env_value("WORLD_SIZE") ? "WORLD_SIZE" : "SLURM_NTASKS";
        const char *w = env_value(world);
        if (w && atol(w) > 0 && opt->requested_rank >= atol(w)) {
            fprintf(stderr, "hgrid-worker: launcher rank %d is not below %s=%s; check the "
                            "launcher's environment\n", opt->requested_rank, world, w);
            return 2;
        }
    }
    return 0;
}
