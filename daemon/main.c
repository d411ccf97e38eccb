// gridd: the hgrid coordinator. One libuv loop thread serves workers (TCP)
// and hgridctl (Unix socket); see docs/PROTOCOL.md.
#include <errno.h>
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
#include "util/cli.h"
#include "util/fd_table.h"

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

static int set_control(void *dest, const char *value, char *err, size_t errlen)
{
    char *control = dest;
    if (strlen(value) >= sizeof ((gridd_options *)0)->control) {
        snprintf(err, errlen, "needs a path shorter than 108 bytes");
        return -1;
    }
    strcpy(control, value);
    return 0;
}

static int add_allow_uid(void *dest, const char *value, char *err, size_t errlen)
{
    gridd_options *o = dest;
    return cli_append_uid(o->allow_uids, &o->num_allow_uids, GRIDD_MAX_ALLOW_UIDS, value, err, errlen);
}


// Returns 0 to run, 1 after --help or --version, 2 on a usage error.
static int parse_options(int argc, char **argv, gridd_options *o)
{
    long nofile = raise_nofile();
    *o = (gridd_options){.max_connections = (int)(nofile > 128 ? nofile - 64 : 64)};
    double keep_finished = GRIDD_KEEP_FINISHED_S;
    wire_default_control_path(o->control, sizeof o->control);
    int max_frame = WIRE_DEFAULT_MAX_FRAME;
    const cli_opt opts[] = {
        CLI_OPT_STRING("listen", &o->listen, "0.0.0.0:" CLI_STR(WIRE_DEFAULT_PORT), "HOST:PORT",
                       "worker address (port 0: any)"),
        CLI_OPT_CALL("control", o->control, NULL, "PATH",
                     "hgridctl's Unix socket (default: $HGRID_CONTROL,\n/run/hgrid/gridd.sock "
                     "for root, else\n$XDG_RUNTIME_DIR/hgrid/gridd.sock or /tmp/hgrid-UID/)",
                     set_control),
        CLI_OPT_STRING("state-dir", &o->state_dir, NULL, "DIR",
                       "keep jobs and rank maps in DIR across restarts"),
        CLI_OPT_NUM("heartbeat-timeout", &o->heartbeat_timeout, "3", 0.001, 86400, "SEC",
                    "a worker silent this long is lost"),
        CLI_OPT_NUM("ready-timeout", &o->ready_timeout, "120", 0.001, 86400, "SEC",
                    "a worker not Ready this long after its Assignment\n(creating "
                    "communicators) is lost"),
        CLI_OPT_NUM("hello-timeout", &o->hello_timeout, "5", 0.001, 86400, "SEC",
                    "drop connections without a Hello"),
        CLI_OPT_NUM("resume-timeout", &o->resume_timeout, "10", 0.001, 86400, "SEC",
                    "after a restart, how long a running generation's\nworkers have to come "
                    "back with it"),
        CLI_OPT_NUM("keep-finished", &keep_finished, CLI_STR(GRIDD_KEEP_FINISHED_S), 0, 30 * 86400,
                    "SEC", "how long a finished, failed or cancelled job stays\nlisted with its "
                    "outcome (0: drop at once)"),
        CLI_OPT_INT("max-restarts", &o->max_restarts, CLI_STR(GRIDD_MAX_RESTARTS), 0, 1000000, "N",
                    "new generations a job may start after its first;\none more failure fails "
                    "the job"),
        CLI_OPT_INT("max-jobs", &o->max_jobs, CLI_STR(GRIDD_DEFAULT_MAX_JOBS), 1, 1 << 20, "N",
                    "jobs held at once; more are refused"),
        CLI_OPT_INT("max-frame", &max_frame, NULL, 1024, 1 << 30, "BYTES",
                    "largest frame accepted"),
        CLI_OPT_INT("max-connections", &o->max_connections, NULL, 1, (double)nofile, "N",
                    "worker connection cap (default: open-file limit - 64)"),
        CLI_OPT_INT("max-pending", &o->max_pending, CLI_STR(GRIDD_MAX_PENDING), 1, 1 << 24, "N",
                    "connections without a Hello yet; at the cap the\noldest is dropped"),
        CLI_OPT_NUM("control-idle-timeout", &o->control_idle_timeout,
                    CLI_STR(GRIDD_CONTROL_IDLE_S), 0.001, 86400, "SEC",
                    "close hgridctl connections idle this long\n(at most "
                    CLI_STR(GRIDD_MAX_CONTROL) " are served at once)"),
        CLI_OPT_STRING("port-file", &o->port_file, NULL, "PATH",
                       "write the bound port there once listening"),
        CLI_OPT_CALL("allow-uid", o, NULL, "UID",
                     "also accept hgridctl from this user (repeatable;\nroot and gridd's own "
                     "user always are)", add_allow_uid),
        CLI_OPT_STRING("metrics", &o->metrics, NULL, "HOST:PORT",
                       "serve Prometheus metrics at http://HOST:PORT/metrics\n(port 0: any; the "
                       "log names it; default: off)"),
        CLI_OPT_COUNT("verbose", 'v', &o->verbosity,
                      "log per-worker events too; -vv: every frame\n(default: errors, warnings, "
                      "job lifecycle)"),
        CLI_OPT_END,
    };
    const cli_spec spec = {
        .program = "gridd",
        .usage = "usage: gridd [options]\n"
                 "The hgrid coordinator: validates layouts, assigns ranks, relays NCCL ids.\n",
        .opts = opts,
        .epilog = "Exit status: 0 stopped by SIGTERM or SIGINT, 1 cannot start, 2 usage error.\n",
    };
    char err[256];
    int n;
    int rc = cli_parse(&spec, argc, argv, NULL, &n, err, sizeof err);
    if (rc == CLI_USAGE)
        fprintf(stderr, "gridd: %s (try 'gridd --help')\n", err);
    o->max_frame = (uint32_t)max_frame;
    o->keep_finished = keep_finished;
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
    char why_dir[512];
    if (state_dir_check(dir, why_dir, sizeof why_dir)) {
        fprintf(stderr, "gridd: --state-dir: %s\n", why_dir);
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
        if (job_ended(j))
            gridd_log_at(GRIDD_NOTICE, j, -1, "job restored, %s reason=\"%s\"",
                         job_state_name(j->state), j->rec.end_reason);
        else if (j->state == JOB_RESUMING)
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
    server *srv = p->data;
    // How long the loop worked since the last prepare: the time that passed
    // less the time it waited in poll.
    uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(srv->loop);
    if (srv->loop_prepared_ns) {
        int64_t busy = (int64_t)((now - srv->loop_prepared_ns) - (idle - srv->loop_idle_ns)) / 1000000;
        if (busy > srv->metrics.loop_busy_max_ms)
            srv->metrics.loop_busy_max_ms = busy;
        if (busy >= GRIDD_LOOP_BUSY_LOG_MS)
            gridd_log_at(GRIDD_WARN, NULL, -1, "event loop busy busy_ms=%lld", (long long)busy);
    }
    fflush(stderr);
    srv->loop_prepared_ns = now;
    srv->loop_idle_ns = idle;
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
    // Room for every connection now, while gridd has one thread: once the
    // thread pool runs, each doubling of the table as connections arrive
    // would stall the loop in accept() (util/fd_table.h). Capped: beyond,
    // the kernel grows it as before.
    fd_table_reserve(srv.opt.max_connections + 64 < GRIDD_FD_RESERVE_MAX
                         ? srv.opt.max_connections + 64
                         : GRIDD_FD_RESERVE_MAX);
    uv_loop_t loop;
    if (uv_loop_init(&loop) || uv_loop_configure(&loop, UV_METRICS_IDLE_TIME)) {
        fprintf(stderr, "gridd: cannot create the event loop\n");
        return 1;
    }
    srv.loop = &loop;
    loop.data = &srv;
    srv.lists[LIST_HELLO].timeout_ms = (int64_t)(srv.opt.hello_timeout * 1000);
    srv.lists[LIST_WATCH].timeout_ms = (int64_t)(srv.opt.heartbeat_timeout * 1000);
    srv.lists[LIST_READY].timeout_ms = (int64_t)(srv.opt.ready_timeout * 1000);
    srv.lists[LIST_LINGER].timeout_ms = GRIDD_LINGER_MS;
    srv.lists[LIST_CONTROL].timeout_ms = (int64_t)(srv.opt.control_idle_timeout * 1000);
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
