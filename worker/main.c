// hgrid-worker: joins a job on gridd and follows it. With --dry-run it runs
// the whole protocol without a GPU: assignment, Ready, heartbeats, aborts
// and new generations, until gridd releases the job. Without it the worker
// drives a GPU (worker_gpu.c); --single-gpu runs the single-GPU trainer.
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "libhgrid/hgrid_comms.h"
#include "worker/worker.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

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

// Heartbeats until gridd sends something to act on. Returns HGRID_ABORTED,
// HGRID_RELEASED or a negative status. While gridd is away (restarting)
// libhgrid reconnects; the generation goes on.
int worker_run_generation(hgrid_worker *w, const worker_options *opt)
{
    double interval = opt->heartbeat_timeout_s / 3, next_beat = now_s() + interval;
    uint64_t step = 0;
    for (;;) {
        double left = next_beat - now_s();
        if (left <= 0) {
            int st = hgrid_heartbeat(w, ++step, 0.0f, 0.0f);
            if (st != HGRID_OK)
                return st;
            next_beat += interval;
            continue;
        }
        int wait = (int)(left * 1000) + 1, wake = hgrid_wake_ms(w);
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

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--single-gpu"))
        return worker_train(argc, argv);
    worker_options opt;
    bool exit_now;
    int rc = worker_parse_args(argc, argv, &opt, &exit_now);
    if (rc || exit_now)
        return rc;
    if (!opt.dry_run)
        return worker_run_gpu(&opt);
    char err[512];
    hgrid_worker *w = hgrid_connect(opt.coordinator, err, sizeof err);
    if (!w) {
        fprintf(stderr, "hgrid-worker: %s; start gridd or pass its address with --coordinator\n",
                err);
        return 1;
    }
    hgrid_set_reconnect(w, opt.reconnect_timeout_s);
    hgrid_hello_options hello = {.job = opt.job, .token = opt.token, .host = opt.host,
                                 .device = opt.device, .requested_rank = opt.requested_rank,
                                 .dry_run = true, .mint = hgrid_nccl_mint};
    int st = hgrid_hello(w, &hello);
    while (st == HGRID_OK) {
        st = worker_await_assignment(w, &opt);
        if (st != HGRID_OK)
            break;
        worker_print_assignment(w, &opt, stdout);
        st = hgrid_ready(w);
        if (st == HGRID_OK)
            st = worker_run_generation(w, &opt);
        if (st == HGRID_ABORTED) {
            worker_log(&opt, "warn", hgrid_rank(w), hgrid_generation(w),
                       "generation %llu aborted: %s; waiting for the next assignment",
                       (unsigned long long)hgrid_generation(w), hgrid_reason(w));
            st = HGRID_OK;
        }
    }
    if (st == HGRID_RELEASED) {
        worker_log(&opt, "notice", hgrid_rank(w), hgrid_generation(w), "released: %s",
                   hgrid_reason(w));
        hgrid_close(w);
        return 0;
    }
    rc = worker_failed(w, st);
    hgrid_close(w);
    return rc;
}
