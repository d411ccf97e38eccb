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

static void usage(FILE *out)
{
    fprintf(out,
            "usage: hgrid-agent [--socket PATH] [--host NAME] [--gpus N] [--hello-wait-ms MS]\n"
            "                   [--allow-uid UID]... [-v]\n"
            "One per host: the host's workers connect to PATH (default $HGRID_AGENT_SOCKET,\n"
            "else %s) and the agent carries them to gridd over one connection\n"
            "per job: their Hellos in one HostHello, their Assignments in one message, and a\n"
            "worker's exit reported the moment its socket closes. PATH's directory is created\n"
            "0700 (an existing one must be 0700 and the agent's); peers must be root, the\n"
            "agent's user or an --allow-uid (checked with SO_PEERCRED).\n"
            "--host: the host name gridd sees (default: the one each worker says).\n"
            "--gpus: workers per job on this host; the HostHello goes once that many joined.\n"
            "--hello-wait-ms: how long the first Hello waits for the others (default 1000\n"
            "  with --gpus, else 20).\n"
            "Workers use the agent when HGRID_AGENT_SOCKET names it or the default exists.\n",
            WIRE_DEFAULT_AGENT_SOCKET);
}

static int parse_args(int argc, char **argv, agent_options *o)
{
    memset(o, 0, sizeof *o);
    const char *env = getenv("HGRID_AGENT_SOCKET");
    o->socket = env && *env ? env : WIRE_DEFAULT_AGENT_SOCKET;
    o->hello_wait_ms = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(a, "-v")) {
            o->verbose = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "hgrid-agent: missing value after '%s' (try 'hgrid-agent --help')\n", a);
            return 2;
        }
        const char *v = argv[++i];
        char *end;
        long x = strtol(v, &end, 10);
        bool number = *v && !*end && x >= 0 && x <= 1000000;
        if (!strcmp(a, "--socket"))
            o->socket = v;
        else if (!strcmp(a, "--host"))
            o->host = v;
        else if (!strcmp(a, "--gpus") && number)
            o->gpus = (int)x;
        else if (!strcmp(a, "--hello-wait-ms") && number)
            o->hello_wait_ms = (int)x;
        else if (!strcmp(a, "--allow-uid") && number && o->num_allow_uids < AGENT_MAX_ALLOW_UIDS)
            o->allow_uids[o->num_allow_uids++] = (uid_t)x;
        else {
            fprintf(stderr, "hgrid-agent: bad option or value '%s %s' (try 'hgrid-agent --help')\n",
                    a, v);
            return 2;
        }
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

static void on_signal(uv_signal_t *sig, int signum)
{
    agent *a = sig->data;
    if (a->stopping)
        return;
    a->stopping = true;
    agent_log("%s: shutting down", strsignal(signum));
    links_close_all(a);
    uv_close((uv_handle_t *)&a->listener, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->flush, NULL);
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
    uv_signal_init(&loop, &a.sigterm);
    uv_signal_init(&loop, &a.sigint);
    a.sigterm.data = a.sigint.data = &a;
    uv_signal_start(&a.sigterm, on_signal, SIGTERM);
    uv_signal_start(&a.sigint, on_signal, SIGINT);
    uv_prepare_init(&loop, &a.flush);
    a.flush.data = &a;
    uv_prepare_start(&a.flush, on_prepare);
    agent_log("listening on %s%s%s", a.opt.socket, a.opt.host ? " as host " : "",
              a.opt.host ? a.opt.host : "");
    fflush(stderr);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_walk(&loop, on_walk_close, NULL); // workers still connected
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    unlink(a.opt.socket);
    agent_log("stopped");
    return 0;
}
