// hgrid-worker's command line.
#include <stdlib.h>
#include <string.h>

#include "worker/worker.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: hgrid-worker --coordinator HOST:PORT --job NAME --token T [--dry-run]\n"
            "                    [--device N] [--host NAME] [--use-launcher-rank] [--json]\n"
            "                    [--self-test] [--comm-init init|split] [--comm-timeout S]\n"
            "                    [--bw-bytes N] [--heartbeat-timeout S] [--assign-timeout S]\n"
            "                    [--reconnect-timeout S]\n"
            TRAIN_FLAGS_USAGE
            "       hgrid-worker --single-gpu --config NAME --steps N [trainer flags]\n"
            "Joins a job on gridd, creates this worker's NCCL communicators on its GPU,\n"
            "self-tests them (membership, bridge edges, bus bandwidth; the results go to\n"
            "gridd), reports ready and heartbeats until gridd releases the job (exit 0);\n"
            "with --config and --steps it trains first, reporting every step to gridd.\n"
            "--single-gpu trains both modules on one GPU instead (hgrid-train's flags).\n\n"
            "  --coordinator HOST:PORT  gridd's worker address (gridd --listen); default:\n"
            "                           $HGRID_COORDINATOR, else $MASTER_ADDR:$HGRID_PORT\n"
            "                           (HGRID_PORT default 7420; MASTER_PORT is torch's)\n"
            "  --job NAME               the job (default: $HGRID_JOB)\n"
            "  --token T                its token (hgridctl submit prints it); default:\n"
            "                           $HGRID_TOKEN, which ps does not show: prefer it\n"
            "  --device N               local GPU (default: LOCAL_RANK, SLURM_LOCALID, 0)\n"
            "  --host NAME              host name (default: $HGRID_HOSTNAME, SLURMD_NODENAME,\n"
            "                           gethostname())\n"
            "  --use-launcher-rank      ask gridd for rank RANK (or SLURM_PROCID), which must\n"
            "                           be below WORLD_SIZE (or SLURM_NTASKS) when set\n"
            "  --dry-run                the whole protocol without a GPU; leaders mint\n"
            "                           random ids (no communicator forms)\n"
            "  --self-test              exit after the self-test (0: every check right)\n"
            "  --comm-init init|split   one ncclCommInitRank per group, or split the module\n"
            "                           communicator (default: the faster, split)\n"
            "  --comm-timeout S         communicators formed within S seconds, else all are\n"
            "                           aborted and the worker exits 1 (default 60)\n"
            "  --bw-bytes N             self-test all-reduce size (default 64 MiB; 0: none)\n"
            "  --json                   print each assignment as one JSON line\n"
            "  --heartbeat-timeout S    gridd's --heartbeat-timeout (default 3); heartbeats\n"
            "                           go every S/3\n"
            "  --assign-timeout S       give up if no assignment within S seconds (default:\n"
            "                           wait as long as it takes)\n"
            "  --reconnect-timeout S    when gridd is lost (restarted), reconnect with backoff\n"
            "                           and carry on; exit 1 after S seconds without it\n"
            "                           (default 60; 0: exit at once)\n"
            "  -h, --help               this text\n"
            "Exit status: 0 released, 1 refused, lost or a failed self-test, 2 usage error.\n");
}

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "hgrid-worker: %s%s%s (try 'hgrid-worker --help')\n", what, arg ? " " : "",
            arg ? arg : "");
    return 2;
}

static int parse_number(const char *flag, const char *v, double lo, double *out)
{
    char *end;
    double x = strtod(v, &end);
    if (*end || end == v || !(x >= lo) || x > 1e9) {
        fprintf(stderr, "hgrid-worker: %s needs a number >= %g, got '%s' (try 'hgrid-worker --help')\n",
                flag, lo, v);
        return 2;
    }
    *out = x;
    return 0;
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
    opt->heartbeat_timeout_s = 3;
    opt->reconnect_timeout_s = 60;
    opt->comm_init = HGRID_COMMS_DEFAULT;
    opt->comm_timeout_s = 60;
    opt->bw_bytes = 64 << 20;
    train_options_defaults(&opt->train);
    bool launcher_rank = false;
    char err[256];
    *exit_now = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **str = NULL;
        double *num = NULL, lo = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            *exit_now = true;
            return 0;
        } else if (!strcmp(a, "--dry-run")) {
            opt->dry_run = true;
        } else if (!strcmp(a, "--json")) {
            opt->json = true;
        } else if (!strcmp(a, "--use-launcher-rank")) {
            launcher_rank = true;
        } else if (!strcmp(a, "--self-test")) {
            opt->self_test = true;
        } else if (!strcmp(a, "--comm-init")) {
            if (i + 1 >= argc)
                return usage_error(a, "needs a value");
            const char *v = argv[++i];
            if (strcmp(v, "init") && strcmp(v, "split"))
                return usage_error("--comm-init needs init or split, got", v);
            opt->comm_init = strcmp(v, "split") ? HGRID_COMMS_INIT : HGRID_COMMS_SPLIT;
        } else if (!strcmp(a, "--coordinator")) {
            str = &opt->coordinator;
        } else if (!strcmp(a, "--job")) {
            str = &opt->job;
        } else if (!strcmp(a, "--token")) {
            str = &opt->token;
        } else if (!strcmp(a, "--host") || !strcmp(a, "--device") ||
                   !strcmp(a, "--heartbeat-timeout") || !strcmp(a, "--assign-timeout") ||
                   !strcmp(a, "--reconnect-timeout") ||
                   !strcmp(a, "--comm-timeout") || !strcmp(a, "--bw-bytes")) {
            if (i + 1 >= argc)
                return usage_error(a, "needs a value");
            const char *v = argv[++i];
            double x;
            if (!strcmp(a, "--host")) {
                if (!*v || strlen(v) >= sizeof opt->host)
                    return usage_error("--host needs a name of 1-255 characters, got", v);
                strcpy(opt->host, v);
                continue;
            }
            num = !strcmp(a, "--device")              ? &x
                  : !strcmp(a, "--heartbeat-timeout") ? &opt->heartbeat_timeout_s
                  : !strcmp(a, "--comm-timeout")      ? &opt->comm_timeout_s
                  : !strcmp(a, "--bw-bytes")          ? &opt->bw_bytes
                  : !strcmp(a, "--reconnect-timeout") ? &opt->reconnect_timeout_s
                                                      : &opt->assign_timeout_s;
            lo = !strcmp(a, "--heartbeat-timeout") || !strcmp(a, "--comm-timeout") ? 0.05 : 0;
            if (parse_number(a, v, lo, num))
                return 2;
            if (num == &x) {
                if (x != (int)x || x > 1 << 16)
                    return usage_error("--device needs a GPU index, got", v);
                opt->device = (int)x;
            }
            continue;
        } else {
            int used = train_parse_flag(&opt->train, argc, argv, &i, err, sizeof err);
            if (used < 0)
                return usage_error(err, NULL);
            if (!used)
                return usage_error("unknown option", a);
            continue;
        }
        if (str) {
            if (i + 1 >= argc)
                return usage_error(a, "needs a value");
            *str = argv[++i];
        }
    }
    if (opt->bw_bytes != (double)(size_t)opt->bw_bytes || (opt->bw_bytes > 0 && opt->bw_bytes < 4))
        return usage_error("--bw-bytes needs a whole number of bytes, 0 or >= 4", NULL);
    if (opt->self_test && opt->dry_run)
        return usage_error("--self-test needs a GPU; drop --dry-run", NULL);
    if (train_options_check(&opt->train, opt->dry_run, opt->self_test, err, sizeof err) != 0)
        return usage_error(err, NULL);
    // Launchers and units pass these in the environment; the token is kept
    // out of the command line, which ps shows.
    if (!opt->token)
        opt->token = env_value("HGRID_TOKEN");
    if (!opt->job)
        opt->job = env_value("HGRID_JOB");
    if (!opt->coordinator && default_coordinator(opt))
        return 2;
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
