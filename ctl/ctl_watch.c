// hgridctl watch: polls gridd's ShowJob on one control connection and shows
// the job's training progress per module and rank until the job ends.
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "ctl/ctl_conn.h"
#include "ctl/ctl_error.h"
#include "ctl/ctl_jobs.h"
#include "ctl/hgridctl.h"
#include "util/json.h"
#include "ctl/watch_view.h"
#include "wire/wire.h"

#define TTY_HOME "\033[H"
#define TTY_CLEAR "\033[2J"
#define TTY_CLEAR_LINE "\033[K"
#define TTY_CLEAR_BELOW "\033[J"

typedef struct {
    const char *job;
    double interval_s;
    bool once, json;
} watch_args;

static const job_command watch_cmd = {
    "watch", " [--interval SECONDS] [--once]",
    "Shows a job's training progress live, from the heartbeats gridd keeps. Per module\n"
    "(encoder, llm): the latest step, the loss (mean over the LLM's last pipeline\n"
    "stage, the ranks that compute it), tokens/s (the slowest rank's: every rank\n"
    "reports the global batch's tokens over its step time) and the longest step time.\n"
    "Per rank: module, host/device, state, step, loss, tokens/s, step time and the\n"
    "age of its last heartbeat. While workers join, a bar shows joined/world. On a\n"
    "terminal the view is redrawn in place every interval, with each module's recent\n"
    "losses as a sparkline (gridd keeps the last 64 reports); otherwise (a pipe, a\n"
    "file) one block is printed per interval, without escape codes. Watching ends\n"
    "when the job ends (its last view is shown) or gridd drops it; exit status 0\n"
    "then, after --once, or when interrupted (Ctrl-C); 1 no such job, or gridd not\n"
    "reachable or gone.\n",
    "one JSON object per line per poll (JSON lines):\n"
    "{\"job\", \"state\", \"generation\", \"world_size\",\n"
    "\"joined\", \"ended_unix_ms\", \"reason\",\n"
    "\"modules\": [{\"module\", \"first_rank\",\n"
    "\"num_ranks\", \"reporting\", \"step\", \"loss\",\n"
    "\"loss_ranks\", \"tokens_per_s\", \"step_time_s\"}],\n"
    "\"workers\": [{\"rank\", \"module\", \"host\", \"device\",\n"
    "\"state\", \"step\", \"loss\", \"tokens_per_s\",\n"
    "\"step_time_s\", \"last_heartbeat_ms\", \"self_test\"}]}\n"
    "(null: no value yet); the last line is the job's\n"
    "ended state (finished, failed, cancelled), or, if gridd\n"
    "dropped the job meanwhile, {\"job\", \"state\": \"ended\"}", NULL};

// Returns -1 to go on, else the exit status.
static int parse_args(int argc, char **argv, watch_args *a)
{
    *a = (watch_args){.interval_s = 2};
    const cli_opt opts[] = {
        CLI_OPT_NUM("interval", &a->interval_s, "2", 0.05, 86400, "SECONDS",
                    "time between polls of gridd"),
        CLI_OPT_SWITCH("once", &a->once, "print one block (or JSON line) and exit"),
        CLI_OPT_END,
    };
    return ctl_parse_job_args(&watch_cmd, argc, argv, opts, &a->job, &a->json);
}

// SIGINT and SIGTERM as a readable fd, so that every wait can end on them.
static int signals_fd(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &set, NULL))
        return -1;
    return signalfd(-1, &set, SFD_CLOEXEC);
}

typedef enum { WAIT_READY, WAIT_TIMEOUT, WAIT_SIGNAL, WAIT_ERROR } wait_result;

// Waits up to timeout_ms for fd (-1: none) to be readable or a signal.
static wait_result wait_for(int sig_fd, int fd, int timeout_ms)
{
    struct pollfd p[2] = {{.fd = sig_fd, .events = POLLIN}, {.fd = fd, .events = POLLIN}};
    int n;
    while ((n = poll(p, fd >= 0 ? 2 : 1, timeout_ms)) < 0 && errno == EINTR) {
    }
    if (n < 0)
        return WAIT_ERROR;
    if (p[0].revents)
        return WAIT_SIGNAL;
    return n == 0 ? WAIT_TIMEOUT : WAIT_READY;
}

// One ShowJob round trip. Returns the reply, or NULL with *signalled set
// or a one-line reason in err.
static Hgrid__Envelope *show_job(int fd, int sig_fd, const char *job, bool *signalled,
                                 char *err, size_t errlen)
{
    Hgrid__Envelope env;
    Hgrid__ShowJob show;
    ctl_show_request(&env, &show, job);
    if (wire_send(fd, &env)) {
        snprintf(err, errlen, "cannot send to gridd: %s", strerror(errno));
        return NULL;
    }
    wait_result w = wait_for(sig_fd, fd, CTL_REPLY_TIMEOUT_MS);
    *signalled = w == WAIT_SIGNAL;
    if (w == WAIT_TIMEOUT || w == WAIT_ERROR)
        snprintf(err, errlen, "no reply within %d s", CTL_REPLY_TIMEOUT_MS / 1000);
    if (w != WAIT_READY)
        return NULL;
    Hgrid__Envelope *reply = wire_recv(fd, CTL_REPLY_MAX_JOB_INFO, CTL_REPLY_TIMEOUT_MS, err, errlen);
    wire_printable_envelope(reply);
    return reply;
}

// Rank rows that fit the terminal under the heading and module lines.
static int terminal_rows(const watch_view *v)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) || ws.ws_row == 0)
        return -1;
    bool joining = v->info->joined < v->info->world_size && !v->info->ended_unix_ms;
    int head = v->plan.num_modules + 5 + joining + (v->info->ended_unix_ms != 0) +
               watch_view_sparkline_lines(v);
    int rows = (int)ws.ws_row - head - 2; // the "more" line and the cursor's
    return rows > 1 ? rows : 1;
}

static void draw(const watch_view *v, const watch_args *a, bool tty, bool first)
{
    if (a->json) {
        watch_view_json(v, stdout);
    } else if (tty) {
        fputs(first ? TTY_HOME TTY_CLEAR : TTY_HOME, stdout);
        watch_view_text(v, stdout, terminal_rows(v), TTY_CLEAR_LINE "\n");
        fputs(TTY_CLEAR_BELOW, stdout);
    } else {
        if (!first)
            fputc('\n', stdout);
        watch_view_text(v, stdout, -1, "\n");
    }
    fflush(stdout);
}

static void say_ended(const watch_args *a)
{
    if (a->json) {
        json_writer w;
        json_init(&w, stdout);
        json_begin_object(&w);
        json_key(&w, "job");
        json_string(&w, a->job);
        json_key(&w, "state");
        json_string(&w, "ended");
        json_end_object(&w);
        fputc('\n', stdout);
    } else {
        printf("job %s ended: gridd no longer holds it (cancelled or finished; its workers were "
               "released)\n", a->job);
    }
    fflush(stdout);
}

// Polls until the job ends, an error, or a signal; returns the exit status.
static int watch_loop(int fd, int sig_fd, const char *path, const watch_args *a)
{
    bool tty = !a->json && !a->once && isatty(STDOUT_FILENO), seen = false, signalled = false;
    char err[512];
    for (;;) {
        Hgrid__Envelope *reply = show_job(fd, sig_fd, a->job, &signalled, err, sizeof err);
        if (signalled)
            return 0;
        if (!reply)
            return ctl_fail(CTL_FAILED, CTL_ERR_DISCONNECTED,
                            "hgridctl: lost gridd at %s: %s (is it still running? watch again "
                            "once it is)", path, err);
        int rc = -1;
        watch_view v;
        if (reply->msg_case == HGRID__ENVELOPE__MSG_ERROR) {
            bool gone = seen && reply->error->code == HGRID__ERROR_CODE__ERROR_UNKNOWN_JOB;
            if (gone)
                say_ended(a);
            rc = gone ? CTL_OK : ctl_fail_refused(reply->error);
        } else if (reply->msg_case != HGRID__ENVELOPE__MSG_JOB_INFO) {
            rc = ctl_fail_unexpected(reply);
        } else if (watch_view_build(reply->job_info, &v, err, sizeof err)) {
            rc = ctl_fail(CTL_FAILED, CTL_ERR_BAD_REPLY, "hgridctl: %s", err);
        } else {
            v.sparklines = tty;
            draw(&v, a, tty, !seen);
            watch_view_free(&v);
            seen = true;
            if (a->once || reply->job_info->ended_unix_ms)
                rc = 0; // the job ended: its last view is drawn
        }
        wire_free_envelope(reply);
        if (rc >= 0)
            return rc;
        wait_result w = wait_for(sig_fd, -1, (int)lround(a->interval_s * 1000));
        if (w == WAIT_SIGNAL)
            return 0;
        if (w == WAIT_ERROR)
            return ctl_fail(CTL_FAILED, CTL_ERR_SYSTEM, "hgridctl: waiting failed: %s",
                            strerror(errno));
    }
}

int ctl_watch(const ctl_options *opt, int argc, char **argv)
{
    watch_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0)
        return rc;
    char path[4096];
    int sig_fd = signals_fd();
    if (sig_fd < 0)
        return ctl_fail(CTL_FAILED, CTL_ERR_SYSTEM, "hgridctl: cannot watch for Ctrl-C: %s",
                        strerror(errno));
    int fd = ctl_connect(opt, path, sizeof path);
    if (fd < 0) {
        rc = 1;
    } else {
        rc = watch_loop(fd, sig_fd, path, &a);
        close(fd);
    }
    close(sig_fd);
    return rc;
}
