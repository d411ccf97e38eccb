// hgrid-agent: command line, the socket's 0700 directory, the loop.
#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "util/cli.h"
#include "util/whole_lines.h"

// --exit-idle: how long the agent waits for its first worker, at least.
#define AGENT_FIRST_WORKER_S 60

void agent_log(const char *fmt, ...)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ldZ hgrid-agent: ", when, ts.tv_nsec / 1000000);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

// --allow-uid: one more peer uid (repeatable).
static int add_allow_uid(void *dest, const char *value, char *err, size_t errlen)
{
    agent_options *o = dest;
    return cli_append_uid(o->allow_uids, &o->num_allow_uids, AGENT_MAX_ALLOW_UIDS, value, err, errlen);
}

// Returns 0 to run, 1 after --help or --version, 2 on a usage error.
static int parse_args(int argc, char **argv, agent_options *o)
{
    memset(o, 0, sizeof *o);
    const char *env = getenv("HGRID_AGENT_SOCKET");
    o->socket = env && *env ? env : WIRE_DEFAULT_AGENT_SOCKET;
    o->hello_wait_ms = -1;
    const cli_opt opts[] = {
        CLI_OPT_STRING("socket", &o->socket, NULL, "PATH",
                       "the Unix socket workers connect to (default\n$HGRID_AGENT_SOCKET, else "
                       WIRE_DEFAULT_AGENT_SOCKET ");\nits directory is made 0700, an existing one "
                       "must be\n0700 and the agent's"),
        CLI_OPT_STRING("host", &o->host, NULL, "NAME",
                       "the host name gridd sees (default: the one each\nworker says)"),
        CLI_OPT_INT("gpus", &o->gpus, "0", 0, 65536, "N",
                    "workers per job on this host: the HostHello goes\nonce that many joined "
                    "(0: unknown)"),
        CLI_OPT_INT("hello-wait-ms", &o->hello_wait_ms, NULL, 0, 600000, "MS",
                    "how long the first Hello waits for the host's\nothers (default 1000 with "
                    "--gpus, else 20)"),
        CLI_OPT_CALL("allow-uid", o, NULL, "UID",
                     "a peer uid allowed besides root and the agent's\nown (repeatable, at most "
                     CLI_STR(AGENT_MAX_ALLOW_UIDS) ")", add_allow_uid),
        CLI_OPT_INT("exit-idle", &o->exit_idle_s, "0", 0, 86400, "S",
                    "exit (status 0) once no worker has been connected\nfor S seconds (before the "
                    "first one: for\nmax(S, " CLI_STR(AGENT_FIRST_WORKER_S) ") s): for an agent started with its host's\n"
                    "workers (0: never)"),
        CLI_OPT_COUNT("verbose", 'v', &o->verbose, "log each HostHello and each worker's exit"),
        CLI_OPT_END,
    };
    const cli_spec spec = {
        .program = "hgrid-agent",
        .usage =
            "usage: hgrid-agent [options]\n"
            "One per host: the host's workers connect to its socket and the agent carries\n"
            "them to gridd over one connection per job: their Hellos in one HostHello, their\n"
            "Assignments in one message, and a worker's exit reported the moment its socket\n"
            "closes. Peers must be root, the agent's user or an --allow-uid (SO_PEERCRED).\n"
            "Workers use the agent when HGRID_AGENT_SOCKET names it or the default exists.\n",
        .opts = opts,
        .epilog = "Exit status: 0 stopped by SIGTERM or SIGINT (or --exit-idle), 1 cannot start,\n"
                  "2 usage error.\n",
    };
    char err[256];
    int n;
    int rc = cli_parse(&spec, argc, argv, NULL, &n, err, sizeof err);
    if (rc == CLI_USAGE)
        fprintf(stderr, "hgrid-agent: %s (try 'hgrid-agent --help')\n", err);
    if (rc)
        return rc;
    if (!*o->socket) {
        fprintf(stderr, "hgrid-agent: --socket needs a path (try 'hgrid-agent --help')\n");
        return CLI_USAGE;
    }
    if (o->hello_wait_ms < 0)
        o->hello_wait_ms = o->gpus ? 1000 : 20;
    return 0;
}

// The socket's directory: made 0700, or an existing one that is a
// directory of ours that only we can enter.
static int check_directory(const char *socket_path)
{
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", socket_path);
    const char *dir = dirname(copy);
    if (mkdir(dir, 0700) && errno != EEXIST) {
        fprintf(stderr, "hgrid-agent: cannot create %s: %s\n", dir, strerror(errno));
        return -1;
    }
    struct stat st;
    if (stat(dir, &st)) {
        fprintf(stderr, "hgrid-agent: cannot stat %s: %s\n", dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077)) {
        fprintf(stderr, "hgrid-agent: %s must be a directory of uid %u with mode 0700 (it is "
                        "uid %u, mode %03o): only its owner's workers may reach the agent\n",
                dir, (unsigned)geteuid(), (unsigned)st.st_uid, (unsigned)(st.st_mode & 0777));
        return -1;
    }
    return 0;
}

static void on_connection(uv_stream_t *listener, int status)
{
    agent *a = listener->data;
    if (status < 0) {
        agent_log("accept failed: %s", uv_strerror(status));
        return;
    }
    local_accept(a);
}

static void on_walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (uv_is_closing(h))
        return;
    if (h->type == UV_NAMED_PIPE) // the listener is closed by now: a worker
        local_close((lworker *)h);
    else
        uv_close(h, NULL);
}

static void stop(agent *a, const char *why)
{
    if (a->stopping)
        return;
    a->stopping = true;
    agent_log("%s: shutting down", why);
    links_close_all(a);
    uv_close((uv_handle_t *)&a->listener, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->flush, NULL);
    uv_close((uv_handle_t *)&a->idle, NULL);
}

static void on_signal(uv_signal_t *sig, int signum)
{
    stop(sig->data, strsignal(signum));
}

static void on_idle(uv_timer_t *t)
{
    agent *a = t->data;
    char why[64];
    snprintf(why, sizeof why, "no worker for %d s (--exit-idle)", a->opt.exit_idle_s);
    stop(a, why);
}

void agent_local_count(agent *a, int delta)
{
    a->num_local += delta;
    if (a->stopping || !a->opt.exit_idle_s)
        return;
    if (a->num_local > 0)
        uv_timer_stop(&a->idle);
    else if (delta < 0)
        uv_timer_start(&a->idle, on_idle, (uint64_t)a->opt.exit_idle_s * 1000, 0);
}

// Before the loop waits: what this iteration's callbacks (timers too) queued.
static void on_prepare(uv_prepare_t *h)
{
    links_flush(h->data);
    fflush(stderr);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    whole_lines_install(); // the host's workers' pipe, under hgrid-ssh
    agent a;
    memset(&a, 0, sizeof a);
    int rc = parse_args(argc, argv, &a.opt);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (check_directory(a.opt.socket))
        return 1;
    uv_loop_t loop;
    if (uv_loop_init(&loop)) {
        fprintf(stderr, "hgrid-agent: cannot create the event loop\n");
        return 1;
    }
    a.loop = &loop;
    uv_pipe_init(&loop, &a.listener, 0);
    a.listener.data = &a;
    unlink(a.opt.socket); // a stale socket of an earlier agent
    mode_t old = umask(0177);
    rc = uv_pipe_bind(&a.listener, a.opt.socket);
    umask(old);
    if (rc || (rc = uv_listen((uv_stream_t *)&a.listener, 1024, on_connection))) {
        fprintf(stderr, "hgrid-agent: cannot listen on %s: %s\n", a.opt.socket, uv_strerror(rc));
        uv_close((uv_handle_t *)&a.listener, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        return 1;
    }
    struct stat bound; // at exit the path is removed only if it is still this socket
    bool have_bound = stat(a.opt.socket, &bound) == 0;
    uv_signal_init(&loop, &a.sigterm);
    uv_signal_init(&loop, &a.sigint);
    a.sigterm.data = a.sigint.data = &a;
    uv_signal_start(&a.sigterm, on_signal, SIGTERM);
    uv_signal_start(&a.sigint, on_signal, SIGINT);
    uv_prepare_init(&loop, &a.flush);
    a.flush.data = &a;
    uv_prepare_start(&a.flush, on_prepare);
    uv_timer_init(&loop, &a.idle);
    a.idle.data = &a;
    if (a.opt.exit_idle_s) { // the first worker may be slow to start: at least a minute
        int first = a.opt.exit_idle_s > AGENT_FIRST_WORKER_S ? a.opt.exit_idle_s : AGENT_FIRST_WORKER_S;
        uv_timer_start(&a.idle, on_idle, (uint64_t)first * 1000, 0);
    }
    agent_log("listening on %s%s%s", a.opt.socket, a.opt.host ? " as host " : "",
              a.opt.host ? a.opt.host : "");
    fflush(stderr);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_walk(&loop, on_walk_close, NULL); // workers still connected
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    struct stat now; // a later agent may have bound the path since
    if (have_bound && stat(a.opt.socket, &now) == 0 && now.st_dev == bound.st_dev &&
        now.st_ino == bound.st_ino)
        unlink(a.opt.socket);
    agent_log("stopped");
    return 0;
}
