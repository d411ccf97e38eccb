// hgrid-worker: joins a job on gridd and follows it. With --dry-run it runs
// the whole protocol without a GPU: assignment, Ready, heartbeats, aborts
// and new generations, --steps steps and Done, until gridd releases the job. Without it the worker
// drives a GPU (worker/gpu.c); --single-gpu trains both modules on one GPU
// (worker/single_gpu.c).
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "libhgrid/hgrid_comms.h"
#include "util/clock.h"
#include "util/whole_lines.h"
#include "worker/worker.h"

#define MIN_BEAT_GAP_S 0.1 // a dry run's steps are reported at most this often

void worker_log(const worker_options *opt, const char *level, int rank, uint64_t gen,
                const char *fmt, ...)
{
    char text[768], ids[64] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (rank >= 0)
        snprintf(ids, sizeof ids, "rank=%d ", rank);
    if (gen > 0)
        snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "gen=%llu ", (unsigned long long)gen);
    fprintf(stderr, "hgrid-worker: %s job=%s %shost=%s device=%d %s\n", level, opt->job, ids,
            opt->host, opt->device, text);
}

int worker_failed(const hgrid_worker *w, int status)
{
    if (status == HGRID_ERR_REFUSED)
        fprintf(stderr, "hgrid-worker: refused by gridd: %s\n", hgrid_error(w));
    else
        fprintf(stderr, "hgrid-worker: %s\n", hgrid_error(w));
    return 1;
}

// Waits for the next assignment, printing aborts of forming generations.
int worker_await_assignment(hgrid_worker *w, const worker_options *opt)
{
    int timeout_ms = opt->assign_timeout_s > 0 ? (int)(opt->assign_timeout_s * 1000) : -1;
    int st;
    while ((st = hgrid_wait_assignment(w, timeout_ms)) == HGRID_ABORTED)
        worker_log(opt, "warn", -1, 0, "generation aborted while forming: %s", hgrid_reason(w));
    return st;
}

// A step of the dry run passed: report it (and Done at --steps).
// HGRID_OK or a status.
static int dry_step(hgrid_worker *w, const worker_options *opt, uint64_t step, bool *done)
{
    if (opt->fail_at_step > 0 && step == (uint64_t)opt->fail_at_step) {
        char reason[96];
        snprintf(reason, sizeof reason, "dry run: failure at step %llu (--fail-at-step)",
                 (unsigned long long)step);
        worker_log(opt, "error", hgrid_rank(w), hgrid_generation(w), "%s; exiting 1", reason);
        hgrid_report_failure(w, reason, false);
        return WORKER_FAILED;
    }
    if (!opt->train.config && opt->train.steps > 0 && step >= (uint64_t)opt->train.steps) {
        *done = true;
        worker_log(opt, "notice", hgrid_rank(w), hgrid_generation(w),
                   "trained %llu steps; done, waiting for the other ranks",
                   (unsigned long long)step);
        return hgrid_done(w, step);
    }
    return HGRID_OK;
}

int worker_run_generation(hgrid_worker *w, const worker_options *opt, uint64_t *step)
{
    double beat_s = opt->heartbeat_timeout_s / 3, now = now_s();
    double step_s = opt->step_ms > 0 ? opt->step_ms / 1000 : beat_s;
    double next_beat = now + beat_s, next_step = now + step_s, last_beat = 0;
    bool done = false;
    if (!opt->train.config && opt->train.steps > 0 && *step >= (uint64_t)opt->train.steps) {
        int st = dry_step(w, opt, *step, &done); // done before this generation
        if (st != HGRID_OK)
            return st;
    }
    for (;;) {
        now = now_s();
        bool beat = now >= next_beat;
        if (!done && now >= next_step) {
            next_step += step_s;
            int st = dry_step(w, opt, ++*step, &done);
            if (st != HGRID_OK)
                return st;
            beat |= now - last_beat >= MIN_BEAT_GAP_S; // progress shows promptly
        }
        if (beat) {
            int st = hgrid_heartbeat(w, *step, HGRID_NO_LOSS, 0.0f);
            if (st != HGRID_OK)
                return st;
            last_beat = now;
            next_beat = now + beat_s;
        }
        double until = done || next_beat < next_step ? next_beat : next_step;
        int wait = (int)((until - now_s()) * 1000) + 1, wake = hgrid_wake_ms(w);
        if (wait < 0)
            wait = 0;
        if (wake >= 0 && wake < wait)
            wait = wake;
        struct pollfd pfd = {.fd = hgrid_fd(w), .events = POLLIN};
        int ready = poll(&pfd, 1, wait);
        if (ready < 0 && errno != EINTR) {
            fprintf(stderr, "hgrid-worker: poll failed: %s\n", strerror(errno));
            return HGRID_ERR_IO;
        }
        if (ready > 0 || wake >= 0) {
            int st = hgrid_poll(w);
            if (st != HGRID_OK)
                return st;
        }
    }
}

hgrid_worker *worker_connect(const worker_options *opt)
{
    char err[512];
    hgrid_worker *w = hgrid_connect_wait(opt->coordinator, opt->connect_timeout_s, err, sizeof err);
    if (!w) {
        fprintf(stderr, "hgrid-worker: %s; start gridd or pass its address with --coordinator\n",
                err);
        return NULL;
    }
    hgrid_set_reconnect(w, opt->reconnect_timeout_s);
    return w;
}

int worker_exit(hgrid_worker *w, const worker_options *opt, int status)
{
    int rc = 1;
    if (status == HGRID_RELEASED) {
        hgrid_outcome outcome = hgrid_job_outcome(w);
        const char *how = outcome == HGRID_OUTCOME_FINISHED ? "finished"
                          : outcome == HGRID_OUTCOME_FAILED ? "failed"
                                                            : "cancelled";
        rc = outcome == HGRID_OUTCOME_FAILED;
        worker_log(opt, rc ? "error" : "notice", hgrid_rank(w), hgrid_generation(w),
                   "released: job %s: %s; exiting %d", how, hgrid_reason(w), rc);
    } else if (status != WORKER_FAILED) {
        rc = worker_failed(w, status);
    }
    hgrid_close(w);
    return rc;
}

int main(int argc, char **argv)
{
    whole_lines_install(); // a host's workers may share one pipe (hgrid-ssh)
    worker_options opt;
    bool exit_now;
    int rc = worker_parse_args(argc, argv, &opt, &exit_now);
    if (rc || exit_now)
        return rc;
    if (opt.train.single_gpu)
        return worker_single_gpu(&opt.train);
    if (!opt.dry_run)
        return worker_run_gpu(&opt);
    hgrid_worker *w = worker_connect(&opt);
    if (!w)
        return 1;
    hgrid_hello_options hello = {.job = opt.job, .token = opt.token, .host = opt.host,
                                 .device = opt.device, .requested_rank = opt.requested_rank,
                                 .dry_run = true, .mint = hgrid_nccl_mint};
    int st = hgrid_hello(w, &hello);
    uint64_t step = 0;
    while (st == HGRID_OK) {
        st = worker_await_assignment(w, &opt);
        if (st != HGRID_OK)
            break;
        worker_print_assignment(w, &opt, stdout);
        st = hgrid_ready(w);
        if (st == HGRID_OK)
            st = worker_run_generation(w, &opt, &step);
        if (st == HGRID_ABORTED) {
            worker_log(&opt, "warn", hgrid_rank(w), hgrid_generation(w),
                       "generation %llu aborted: %s; waiting for the next assignment",
                       (unsigned long long)hgrid_generation(w), hgrid_reason(w));
            st = HGRID_OK;
        }
    }
    return worker_exit(w, &opt, st);
}
