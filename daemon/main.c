// gridd: the hgrid coordinator. One libuv loop thread serves workers (TCP)
// and hgridctl (Unix socket); see docs/PROTOCOL.md.
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/conn.h"
#include "daemon/hostlink.h"
#include "daemon/metrics_http.h"
#include "daemon/job.h"
#include "daemon/listen.h"
#include "daemon/notify.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: gridd [options]\n"
            "The hgrid coordinator: validates layouts, assigns ranks, relays NCCL ids.\n\n"
            "  --listen HOST:PORT         worker address (default 0.0.0.0:%d; port 0: any)\n"
            "  --control PATH             hgridctl's Unix socket (default: $HGRID_CONTROL,\n"
            "                             /run/hgrid/gridd.sock for root, else\n"
            "                             $XDG_RUNTIME_DIR/hgrid/gridd.sock or /tmp/hgrid-UID/)\n"
            "  --state-dir DIR            keep jobs and rank maps in DIR across restarts\n"
            "  --heartbeat-timeout SEC    a worker silent this long is lost (default 3)\n"
            "  --ready-timeout SEC        a worker not Ready this long after its Assignment\n"
            "                             (creating communicators) is lost (default 120)\n"
            "  --hello-timeout SEC        drop connections without a Hello (default 5)\n"
            "  --resume-timeout SEC       after a restart, how long a running generation's\n"
            "                             workers have to come back with it (default 10)\n"
            "  --max-jobs N               jobs held at once; more are refused (default %d)\n"
            "  --max-frame BYTES          largest frame accepted (default %u)\n"
            "  --max-connections N        worker connection cap (default: open-file limit - 64)\n"
            "  --max-pending N            connections without a Hello yet; at the cap the\n"
            "                             oldest is dropped (default %d)\n"
            "  --port-file PATH           write the bound port there once listening\n"
            "  --allow-uid UID            also accept hgridctl from this user (repeatable;\n"
            "                             root and gridd's own user always are)\n"
            "  --metrics HOST:PORT        serve Prometheus metrics at http://HOST:PORT/metrics\n"
            "                             (port 0: any; the log names it; default: off)\n"
            "  -v, --verbose              log per-worker events too; -vv: every frame\n"
            "                             (default: errors, warnings, job lifecycle)\n"
            "  --help                     this text\n",
            WIRE_DEFAULT_PORT, GRIDD_DEFAULT_MAX_JOBS, WIRE_DEFAULT_MAX_FRAME, GRIDD_MAX_PENDING);
}

static int bad_value(const char *flag, const char *value, const char *want)
{
    fprintf(stderr, "gridd: %s '%s' must be %s (try 'gridd --help')\n", flag, value, want);
    return 2;
}

static int parse_seconds(const char *flag, const char *v, double *out)
{
    char *end;
    double d = strtod(v, &end);
    if (*v == '\0' || *end || !(d > 0 && d < 86400))
        return bad_value(flag, v, "a number of seconds > 0");
    *out = d;
    return 0;
}

static int parse_count(const char *flag, const char *v, long min, long max, long *out)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (*v == '\0' || *end || n < min || n > max) {
        char want[64];
        snprintf(want, sizeof want, "an integer in %ld..%ld", min, max);
        return bad_value(flag, v, want);
    }
    *out = n;
    return 0;
}

// Raises the open-file limit to its hard limit; returns the limit.
static long raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl))
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur > 1L << 24 ? 1L << 24 : (long)rl.rlim_cur;
}

static int parse_options(int argc, char **argv, gridd_options *o)
{
    static const struct option longs[] = {
        {"listen", required_argument, 0, 'l'},    {"control", required_argument, 0, 'c'},
        {"state-dir", required_argument, 0, 's'}, {"heartbeat-timeout", required_argument, 0, 'b'},
        {"ready-timeout", required_argument, 0, 'r'},
        {"hello-timeout", required_argument, 0, 'o'}, {"max-frame", required_argument, 0, 'f'},
        {"max-connections", required_argument, 0, 'm'}, {"port-file", required_argument, 0, 'p'},
        {"allow-uid", required_argument, 0, 'u'}, {"max-pending", required_argument, 0, 'n'},
        {"resume-timeout", required_argument, 0, 'R'}, {"max-jobs", required_argument, 0, 'J'},
        {"metrics", required_argument, 0, 'M'},   {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0},
    };
    long nofile = raise_nofile();
    *o = (gridd_options){.listen = "0.0.0.0:7420", .heartbeat_timeout = 3, .ready_timeout = 120,
                         .hello_timeout = 5, .resume_timeout = 10,
                         .max_jobs = GRIDD_DEFAULT_MAX_JOBS,
                         .max_frame = WIRE_DEFAULT_MAX_FRAME,
                         .max_connections = (int)(nofile > 128 ? nofile - 64 : 64),
                         .max_pending = GRIDD_MAX_PENDING};
    wire_default_control_path(o->control, sizeof o->control);
    int opt, rc = 0;
    long n;
    opterr = 0;
    while (rc == 0 && (opt = getopt_long(argc, argv, "hv", longs, NULL)) != -1) {
        switch (opt) {
        case 'l': o->listen = optarg; break;
        case 'c':
            if (strlen(optarg) >= sizeof o->control)
                return bad_value("--control", optarg, "a path shorter than 108 bytes");
            snprintf(o->control, sizeof o->control, "%s", optarg);
            break;
        case 's': o->state_dir = optarg; break;
        case 'b': rc = parse_seconds("--heartbeat-timeout", optarg, &o->heartbeat_timeout); break;
        case 'r': rc = parse_seconds("--ready-timeout", optarg, &o->ready_timeout); break;
        case 'o': rc = parse_seconds("--hello-timeout", optarg, &o->hello_timeout); break;
        case 'R': rc = parse_seconds("--resume-timeout", optarg, &o->resume_timeout); break;
        case 'J':
            if (!(rc = parse_count("--max-jobs", optarg, 1, 1L << 20, &n)))
                o->max_jobs = (int)n;
            break;
        case 'f':
            if (!(rc = parse_count("--max-frame", optarg, 1024, 1L << 30, &n)))
                o->max_frame = (uint32_t)n;
            break;
        case 'm':
            if (!(rc = parse_count("--max-connections", optarg, 1, nofile, &n)))
                o->max_connections = (int)n;
            break;
        case 'n':
            if (!(rc = parse_count("--max-pending", optarg, 1, 1L << 24, &n)))
                o->max_pending = (int)n;
            break;
        case 'p': o->port_file = optarg; break;
        case 'M': o->metrics = optarg; break;
        case 'v': o->verbosity++; break;
        case 'u':
            if (o->num_allow_uids == GRIDD_MAX_ALLOW_UIDS)
                return bad_value("--allow-uid", optarg, "given at most 16 times");
            if (!(rc = parse_count("--allow-uid", optarg, 0, 0x7fffffffL, &n)))
                o->allow_uids[o->num_allow_uids++] = (uid_t)n;
            break;
        case 'h': usage(stdout); return 1;
        default:
            fprintf(stderr, "gridd: unknown or incomplete option '%s' (try 'gridd --help')\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (rc == 0 && optind < argc) {
        fprintf(stderr, "gridd: unexpected argument '%s' (try 'gridd --help')\n", argv[optind]);
        return 2;
    }
    return rc;
}

// Restores the jobs saved in --state-dir (created 0700 if missing).
static int load_state(server *srv)
{
    const char *dir = srv->opt.state_dir;
    if ((mkdir(dir, 0700) && errno != EEXIST) || access(dir, R_OK | W_OK | X_OK)) {
        fprintf(stderr, "gridd: --state-dir %s is not a writable directory: %s\n", dir,
                strerror(errno));
        return -1;
    }
    job_record *recs;
    int n;
    char err[512];
    if (state_load(srv->opt.state_dir, &recs, &n, err, sizeof err)) {
        fprintf(stderr, "gridd: cannot load state: %s (move the file away to start empty)\n", err);
        return -1;
    }
    int rc = 0;
    if (n > srv->opt.max_jobs) {
        fprintf(stderr, "gridd: the state file holds %d jobs, more than --max-jobs %d; raise "
                        "--max-jobs\n", n, srv->opt.max_jobs);
        rc = -1;
    }
    for (int i = 0; i < n; i++) {
        hg_plan plan;
        char why[HG_ERR_LEN];
        job *j = NULL;
        if (rc || job_find(srv, recs[i].name) ||
            hg_plan_build(&recs[i].spec, &plan, why, sizeof why) ||
            !(j = job_create(srv, &recs[i], &plan))) {
            if (rc == 0)
                fprintf(stderr, "gridd: cannot restore job %s (listed twice or out of memory)\n",
                        recs[i].name);
            roster_free(&recs[i].roster);
            rc = -1;
            continue;
        }
        job_restored(j);
        if (j->state == JOB_RESUMING)
            gridd_log_at(GRIDD_NOTICE, j, -1, "job restored, ranks assigned; its workers have "
                         "until resume_timeout to resume the generation workers=%d "
                         "resume_timeout=%.3gs", j->plan.world_size, srv->opt.resume_timeout);
        else
            gridd_log_at(GRIDD_NOTICE, j, -1, "job restored, %s",
                         j->rec.roster.assigned ? "ranks assigned" : "waiting for workers");
    }
    free(recs);
    return rc;
}

static void on_walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (uv_is_closing(h))
        return;
    if (h->data != h->loop->data) // a connection; the server's own handles point at it
        conn_close(h->data, NULL);
    else
        uv_close(h, NULL);
}

static void on_signal(uv_signal_t *sig, int signum)
{
    server *srv = sig->data;
    if (srv->stopping)
        return;
    srv->stopping = true;
    gridd_log("%s: shutting down", strsignal(signum));
    notify_send("STOPPING=1\nSTATUS=%s: shutting down", strsignal(signum));
    // Connections are closed without disturbing their jobs' saved state.
    for (job *j = srv->jobs; j; j = j->next)
        for (int s = 0; s < j->rec.roster.world_size; s++) {
            conn *c = j->rec.roster.slots[s].conn;
            if (c)
                c->job = NULL;
        }
    uv_walk(srv->loop, on_walk_close, NULL);
}

static void on_sweep(uv_timer_t *t)
{
    conn_sweep(t->data);
    jobs_sweep(t->data);
}

// The log is written once per loop iteration, before the loop waits: at -v
// a rendezvous of 16K workers logs ~50K lines.
static void on_prepare(uv_prepare_t *p)
{
    (void)p;
    fflush(stderr);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    server srv;
    memset(&srv, 0, sizeof srv);
    int rc = parse_options(argc, argv, &srv.opt);
    if (rc)
        return rc == 1 ? 0 : rc;
    gridd_log_init(srv.opt.verbosity);
    uv_loop_t loop;
    if (uv_loop_init(&loop)) {
        fprintf(stderr, "gridd: cannot create the event loop\n");
        return 1;
    }
    srv.loop = &loop;
    loop.data = &srv;
    srv.lists[LIST_HELLO].timeout_ms = (int64_t)(srv.opt.hello_timeout * 1000);
    srv.lists[LIST_WATCH].timeout_ms = (int64_t)(srv.opt.heartbeat_timeout * 1000);
    srv.lists[LIST_READY].timeout_ms = (int64_t)(srv.opt.ready_timeout * 1000);
    srv.lists[LIST_LINGER].timeout_ms = GRIDD_LINGER_MS;
    int status = 1;
    srv.started_ms = gridd_now_ms();
    if (srv.opt.state_dir && load_state(&srv))
        goto out;
    // Metrics first: a bad --metrics then leaves no control socket behind.
    if (metrics_listen(&srv) || listen_tcp(&srv) || listen_control(&srv))
        goto out;
    uv_signal_init(&loop, &srv.sigterm);
    uv_signal_init(&loop, &srv.sigint);
    srv.sigterm.data = srv.sigint.data = &srv;
    uv_signal_start(&srv.sigterm, on_signal, SIGTERM);
    uv_signal_start(&srv.sigint, on_signal, SIGINT);
    uv_timer_init(&loop, &srv.sweep);
    srv.sweep.data = &srv;
    uv_timer_start(&srv.sweep, on_sweep, GRIDD_SWEEP_MS, GRIDD_SWEEP_MS);
    static char log_buffer[1 << 16];
    setvbuf(stderr, log_buffer, _IOFBF, sizeof log_buffer);
    uv_prepare_init(&loop, &srv.flush_log);
    srv.flush_log.data = &srv;
    uv_prepare_start(&srv.flush_log, on_prepare);
    gridd_log("ready: heartbeat timeout %.3g s, max frame %u bytes, max %d worker connections, "
              "%d of them without a Hello",
              srv.opt.heartbeat_timeout, srv.opt.max_frame, srv.opt.max_connections,
              srv.opt.max_pending);
    notify_ready(&loop); // systemd (Type=notify): both sockets accept connections from here on
    uv_run(&loop, UV_RUN_DEFAULT);
    status = 0;
out:
    uv_walk(&loop, on_walk_close, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    hostlink_shutdown();
    if (uv_loop_close(&loop))
        gridd_log_at(GRIDD_WARN, NULL, -1, "event loop still busy at exit");
    if (status == 0)
        unlink(srv.opt.control);
    while (srv.jobs) {
        job *j = srv.jobs;
        srv.jobs = j->next;
        job_free(j);
    }
    if (status == 0)
        gridd_log("stopped");
    fflush(stderr);
    return status;
}
