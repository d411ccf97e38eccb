// hgrid-swarm: a load generator for gridd. Simulates N workers on H fake
// hosts, one link per host as an hgrid-agent holds it (--direct: N real TCP
// connections), checks every assignment against the plan computed here,
// and prints one line of numbers.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "tools/swarm/swarm.h"
#include "util/cli.h"
#include "util/fd_table.h"

// Returns 0 to run, 1 after --help or --version, 2 on a usage error.
static int parse_args(int argc, char **argv, swarm_options *o)
{
    memset(o, 0, sizeof *o);
    o->replace_rank = -1;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    o->connect_threads = cpus < 1 ? 1 : cpus > SWARM_MAX_CONNECT_THREADS ? SWARM_MAX_CONNECT_THREADS
                                                                        : (int)cpus;
    const cli_opt opts[] = {
        CLI_OPT_STRING("coordinator", &o->coordinator, NULL, "HOST[:PORT]",
                       "gridd's worker address (port default " CLI_STR(WIRE_DEFAULT_PORT) ")"),
        CLI_OPT_STRING("job", &o->job, NULL, "NAME", "the job to join"),
        CLI_OPT_STRING("token", &o->token, NULL, "T", "its token"),
        CLI_OPT_INT("workers", &o->workers, NULL, 1, HG_MAX_WORLD, "N", "workers to simulate"),
        CLI_OPT_INT("hosts", &o->hosts, NULL, 1, HG_MAX_WORLD, "H",
                    "fake hosts swarm-0..H-1, N/H devices each, one link\nto gridd per host as "
                    "an hgrid-agent holds it\n(default: N/8 if 8 divides N, else 1)"),
        CLI_OPT_SWITCH("direct", &o->direct, "one TCP connection per worker instead of one\nlink per host"),
        CLI_OPT_INT("replace-rank", &o->replace_rank, NULL, 0, HG_MAX_WORLD - 1, "R",
                    "(not with --direct) after the checks every worker\nsends Ready, rank R's worker "
                    "dies under its agent\nand a new one joins in its place; prints 'replace:\n"
                    "rank=R abort_ms=.. reassign_ms=.. changed_ids=..\nkept_ids=..' (death to the "
                    "last Abort; the\nreplacement's Hello to the last new Assignment) and\nchecks "
                    "the new generation, and that exactly the\ngroups holding R got new ids"),
        CLI_OPT_INT("gridd-pid", &o->gridd_pid, NULL, 1, 1 << 30, "PID",
                    "report gridd's VmRSS after the rendezvous"),
        CLI_OPT_SWITCH("wait-release", &o->wait_release,
                       "after the checks wait for gridd's Release instead\nof leaving"),
        CLI_OPT_SWITCH("busy-poll", &o->busy_poll,
                       "spin on the event queue instead of sleeping\n(benchmarks: over loopback "
                       "each wakeup of the swarm\nis charged to gridd's sends)"),
        CLI_OPT_NUM("timeout", &o->timeout_s, "60", 1, HG_MAX_WORLD, "S",
                    "for the whole rendezvous, in seconds"),
        CLI_OPT_INT("connect-threads", &o->connect_threads, NULL, 1, SWARM_MAX_CONNECT_THREADS, "T",
                    "threads that connect and send the Hellos, as N real\nworkers do in parallel "
                    "(default: one per online CPU,\nat most " CLI_STR(SWARM_MAX_CONNECT_THREADS) ")"),
        CLI_OPT_END,
    };
    const cli_spec spec = {
        .program = "hgrid-swarm",
        .usage =
            "usage: hgrid-swarm --coordinator HOST[:PORT] --job NAME --token T --workers N [options]\n"
            "Simulates N workers from one thread (each fake host one link to gridd carrying\n"
            "its workers as an hgrid-agent does; --direct: one TCP connection per worker),\n"
            "mints random ids as a leader, and checks every assignment against the layout\n"
            "engine: ranks unique and complete, coordinates, groups, shared and distinct ids,\n"
            "bridge peers, host-local\n"
            "tp. Then it leaves, or with --wait-release waits for gridd's Release.\n"
            "The last line: workers=N groups=G rendezvous_s=S p50_ms=.. p99_ms=.. gridd_rss_kib=..\n"
            "  groups: distinct NCCL ids (communicators); rendezvous_s: first connect to last\n"
            "  assignment; p50/p99: per worker, connect to assignment; gridd_rss_kib: VmRSS of\n"
            "  --gridd-pid after the rendezvous (0 without it).\n",
        .opts = opts,
        .epilog = "Exit status: 0 every check passed, 1 a check failed, 2 usage error.\n"};
    char err[256];
    int n;
    int rc = cli_parse(&spec, argc, argv, NULL, &n, err, sizeof err);
    if (rc == CLI_USAGE)
        fprintf(stderr, "hgrid-swarm: %s (try 'hgrid-swarm --help')\n", err);
    if (rc)
        return rc;
    if (!o->coordinator || !o->job || !o->token || !o->workers) {
        fprintf(stderr, "hgrid-swarm: --coordinator, --job, --token and --workers are required "
                        "(try 'hgrid-swarm --help')\n");
        return 2;
    }
    static char addr[300];
    o->coordinator = cli_host_port(o->coordinator, WIRE_DEFAULT_PORT, addr, sizeof addr);
    if (!o->hosts)
        o->hosts = o->workers % 8 == 0 ? o->workers / 8 : 1;
    if (o->direct && o->replace_rank >= 0) {
        fprintf(stderr, "hgrid-swarm: --replace-rank needs host links; drop --direct\n");
        return 2;
    }
    if (o->replace_rank >= o->workers) {
        fprintf(stderr, "hgrid-swarm: --replace-rank %d is not a rank of %d workers\n",
                o->replace_rank, o->workers);
        return 2;
    }
    if (o->workers % o->hosts != 0) {
        fprintf(stderr, "hgrid-swarm: --hosts %d must divide --workers %d (N/H devices per host)\n",
                o->hosts, o->workers);
        return 2;
    }
    return 0;
}

// One descriptor per connection plus a few: raise the soft limit to the hard one.
static int raise_fd_limit(int workers)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)workers + 16 > rl.rlim_cur) {
        fprintf(stderr, "hgrid-swarm: %d workers need %d file descriptors but the hard limit is "
                        "%llu; raise it (ulimit -Hn, limits.conf) or use fewer --workers\n",
                workers, workers + 16, (unsigned long long)rl.rlim_max);
        return -1;
    }
    // Now, while one thread: the connect threads would each wait for the
    // kernel to grow the table (util/fd_table.h).
    fd_table_reserve(workers + 16);
    return 0;
}

static long gridd_rss_kib(int pid)
{
    if (pid <= 0)
        return 0;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "hgrid-swarm: cannot read %s: %s\n", path, strerror(errno));
        return 0;
    }
    long kib = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

// CPU seconds (user + system) pid has used, from /proc/<pid>/stat; -1 if unknown.
static double gridd_cpu_s(int pid)
{
    if (pid <= 0)
        return -1;
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    const char *p = strrchr(line, ')'); // the command name may hold spaces
    unsigned long long utime, stime;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
                     &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

// CPU seconds (user + system) this process has used, its threads included.
static double own_cpu_s(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru))
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// Nearest-rank percentile of the connect-to-assignment latencies, in ms.
static void latencies(const swarm *s, double *p50, double *p99)
{
    double *ms = malloc(sizeof(double) * (size_t)s->opt.workers);
    int n = 0;
    for (int i = 0; ms && i < s->opt.workers; i++)
        if (s->conns[i].assignment)
            ms[n++] = (s->conns[i].t_assigned - s->conns[i].t_connect) * 1e3;
    *p50 = *p99 = 0;
    if (n > 0) {
        qsort(ms, (size_t)n, sizeof *ms, cmp_double);
        *p50 = ms[(n - 1) / 2];
        *p99 = ms[(int)((n - 1) * 0.99)];
    }
    free(ms);
}

int main(int argc, char **argv)
{
    swarm s = {0};
    int rc = parse_args(argc, argv, &s.opt);
    if (rc)
        return rc == CLI_EXIT ? 0 : rc;
    if (raise_fd_limit(s.opt.direct ? s.opt.workers : s.opt.hosts))
        return 1;
    s.conns = calloc((size_t)s.opt.workers, sizeof *s.conns);
    s.hosts = s.opt.direct ? NULL : calloc((size_t)s.opt.hosts, sizeof *s.hosts);
    if (!s.conns || (!s.opt.direct && !s.hosts)) {
        fprintf(stderr, "hgrid-swarm: out of memory for %d workers\n", s.opt.workers);
        return 1;
    }
    int per_host = s.opt.workers / s.opt.hosts;
    for (int i = 0; i < s.opt.workers; i++) {
        s.conns[i].fd = -1;
        s.conns[i].host = i / per_host;
        s.conns[i].device = i % per_host;
        wire_reader_init(&s.conns[i].reader, WIRE_DEFAULT_MAX_FRAME);
    }
    for (int h = 0; !s.opt.direct && h < s.opt.hosts; h++) {
        s.hosts[h].fd = -1;
        s.hosts[h].first = h * per_host;
        s.hosts[h].count = per_host;
        wire_reader_init(&s.hosts[h].reader, WIRE_DEFAULT_MAX_FRAME);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s.rng = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid() ^ 1;
    double cpu0 = gridd_cpu_s(s.opt.gridd_pid), own0 = own_cpu_s();
    int setup = swarm_rendezvous(&s);
    double cpu1 = gridd_cpu_s(s.opt.gridd_pid), own1 = own_cpu_s();
    swarm_decode(&s);
    double per = 1.0 / s.opt.workers;
    uint64_t sent = s.bytes_sent, received = s.bytes_received, frames = s.frames_sent;
    long rss = gridd_rss_kib(s.opt.gridd_pid);
    int groups = 0, failed = swarm_check(&s, &groups);
    double p50, p99;
    latencies(&s, &p50, &p99);
    double rendezvous = s.num_assigned ? s.t_last_assigned - s.t_first_connect : 0;
    swarm_phases ph = s.phases; // of the rendezvous, not the replacement
    swarm_replacement rep;
    int replace_failed = 0;
    if (s.opt.replace_rank >= 0 && !failed && !setup)
        replace_failed = swarm_replace(&s, &rep);
    swarm_finish(&s);
    for (int i = 0; i < s.opt.workers; i++) {
        wire_reader_free(&s.conns[i].reader);
        wire_free_envelope(s.conns[i].assignment);
        free(s.conns[i].assignment_bytes);
        free(s.conns[i].minted);
        free(s.conns[i].error);
    }
    free(s.conns);
    free(s.hosts);
    printf("wire per worker: %.0f bytes sent in %.2f frames, %.0f bytes received (frame headers "
           "included, TCP/IP not)\n", sent * per, frames * per, received * per);
    printf("phases (s from first connect): last hello %.3f, first mint request %.3f, last mint "
           "reply %.3f, first assignment %.3f, last %.3f\n",
           ph.last_hello - s.t_first_connect, ph.first_request - s.t_first_connect,
           ph.last_reply - s.t_first_connect, ph.first_assigned - s.t_first_connect,
           rendezvous);
    if (cpu0 >= 0 && cpu1 >= 0)
        printf("gridd cpu: %.0f ms during the rendezvous, %.1f us per worker\n",
               (cpu1 - cpu0) * 1e3, (cpu1 - cpu0) * 1e6 * per);
    // Both share the machine's CPUs: the swarm's share counts too (its
    // checks run after the clock stops and are not in it).
    printf("swarm cpu: %.0f ms during the rendezvous, %.1f us per worker\n", (own1 - own0) * 1e3,
           (own1 - own0) * 1e6 * per);
    if (s.opt.replace_rank >= 0 && !failed && !setup)
        printf("replace: rank=%d abort_ms=%.1f reassign_ms=%.1f changed_ids=%d kept_ids=%d%s\n",
               rep.rank, rep.abort_s * 1e3, rep.reassign_s * 1e3, rep.changed_ids, rep.kept_ids,
               replace_failed ? " (checks failed)" : "");
    failed += replace_failed;
    if (failed || setup)
        fprintf(stderr, "hgrid-swarm: %d check(s) failed\n", failed + (setup != 0));
    printf("workers=%d groups=%d rendezvous_s=%.3f p50_ms=%.1f p99_ms=%.1f gridd_rss_kib=%ld\n",
           s.opt.workers, groups, rendezvous, p50, p99, rss);
    return failed || setup ? 1 : 0;
}
