// hgridctl wait: polls gridd until a job ends and exits with its outcome;
// through a restart of gridd it reconnects and waits on.
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl/ctl_conn.h"
#include "ctl/ctl_error.h"
#include "ctl/ctl_jobs.h"
#include "util/cli.h"
#include "util/clock.h"
#include "wire/wire.h"

#define POLL_S 0.5 // between polls of gridd

static const job_command wait_cmd = {
    "wait", " [--timeout SECONDS]",
    "Blocks until the job ends (finished, failed or cancelled) and exits with its\n"
    "outcome; an ended job, kept by gridd for its --keep-finished, answers at once.\n"
    "If gridd restarts meanwhile, wait reconnects and waits on.\n",
    "{\"job\", \"state\", \"generation\", \"world_size\",\n"
    "\"ended_unix_ms\", \"reason\", \"timed_out\"} (state: finished,\n"
    "failed, cancelled, or the live state when timed out;\n"
    "ended_unix_ms null then)",
    "Exit status: 0 finished; 1 failed or cancelled, no such job, or gridd not\n"
    "reachable; 2 usage error; " CLI_STR(CTL_WAIT_TIMED_OUT) " timed out (still running).\n"};

static void sleep_s(double s)
{
    if (s > 0)
        poll(NULL, 0, (int)(s * 1000) + 1);
}

static bool is_ended(const char *state)
{
    return !strcmp(state, "finished") || !strcmp(state, "failed") || !strcmp(state, "cancelled");
}

static void print_outcome(const Hgrid__JobInfo *info, bool json, bool timed_out)
{
    if (json) {
        json_writer w;
        json_init(&w, stdout);
        json_begin_object(&w);
        ctl_json_job_head(&w, info);
        ctl_json_job_end(&w, info);
        json_key(&w, "timed_out");
        json_bool(&w, timed_out);
        json_end_object(&w);
        fputc('\n', stdout);
    } else if (!timed_out) {
        char end[320];
        ctl_format_end(info, end, sizeof end);
        printf("job %s %s\n", info->job, end);
    }
    fflush(stdout);
}

// One brief ShowJob on fd: the reply, or NULL with why (the connection is
// then unusable).
static Hgrid__Envelope *ask(int fd, const char *job, char *err, size_t errlen)
{
    Hgrid__Envelope env;
    Hgrid__ShowJob show;
    ctl_show_request(&env, &show, job);
    show.brief = true;
    if (wire_send(fd, &env)) {
        snprintf(err, errlen, "cannot send: %s", strerror(errno));
        return NULL;
    }
    return wire_recv(fd, CTL_REPLY_MAX_FRAME, CTL_REPLY_TIMEOUT_MS, err, errlen);
}

int ctl_wait(const ctl_options *opt, int argc, char **argv)
{
    const char *job;
    bool json;
    double timeout_s = -1;
    const cli_opt opts[] = {
        CLI_OPT_NUM("timeout", &timeout_s, NULL, 0, 1e7, "SECONDS",
                    "give up after this long (default: wait as long as it takes)"),
        CLI_OPT_END,
    };
    int rc = ctl_parse_job_args(&wait_cmd, argc, argv, opts, &job, &json);
    if (rc >= 0)
        return rc;
    char path[4096], err[512];
    int fd = ctl_connect(opt, path, sizeof path);
    if (fd < 0)
        return CTL_FAILED;
    double start = now_s();
    bool seen = false, away = false;
    for (;;) {
        Hgrid__Envelope *reply = fd >= 0 ? ask(fd, job, err, sizeof err) : NULL;
        if (!reply) { // gridd went away (restarting?): try again until the timeout
            if (fd >= 0)
                close(fd);
            if (!away)
                fprintf(stderr, "hgridctl wait: lost gridd at %s (%s); waiting for it to come "
                                "back\n", path, fd >= 0 ? err : "not reachable");
            away = true;
            fd = -1;
        } else if (reply->msg_case == HGRID__ENVELOPE__MSG_ERROR) {
            int rc = reply->error->code == HGRID__ERROR_CODE__ERROR_UNKNOWN_JOB && seen
                         ? ctl_fail(CTL_FAILED, "unknown_job",
                                    "hgridctl wait: job %.64s is gone from gridd before its end "
                                    "was seen (removed, or dropped after --keep-finished)", job)
                         : ctl_fail_refused(reply->error);
            wire_free_envelope(reply);
            close(fd);
            return rc;
        } else if (reply->msg_case != HGRID__ENVELOPE__MSG_JOB_INFO) {
            int rc = ctl_fail_unexpected(reply);
            wire_free_envelope(reply);
            close(fd);
            return rc;
        } else {
            if (away)
                fprintf(stderr, "hgridctl wait: gridd is back; job %s is %s\n", job,
                        reply->job_info->state);
            seen = true;
            away = false;
            const Hgrid__JobInfo *info = reply->job_info;
            bool ended = is_ended(info->state);
            bool timed_out = !ended && timeout_s >= 0 && now_s() - start >= timeout_s;
            if (ended || timed_out) {
                print_outcome(info, json, timed_out);
                int rc = !strcmp(info->state, "finished") ? CTL_OK : CTL_FAILED;
                if (timed_out) {
                    fprintf(stderr, "hgridctl wait: job %s still %s after %.3g s (--timeout)\n",
                            job, info->state, timeout_s);
                    rc = CTL_WAIT_TIMED_OUT;
                }
                wire_free_envelope(reply);
                close(fd);
                return rc;
            }
            wire_free_envelope(reply);
        }
        if (timeout_s >= 0 && now_s() - start >= timeout_s && fd < 0) {
            fprintf(stderr, "hgridctl wait: gridd at %s did not come back within %.3g s "
                            "(--timeout)\n", path, timeout_s);
            return CTL_WAIT_TIMED_OUT;
        }
        double left = timeout_s >= 0 ? start + timeout_s - now_s() : POLL_S;
        sleep_s(left < POLL_S ? left : POLL_S);
        if (fd < 0)
            fd = wire_connect(path, err, sizeof err);
    }
}
