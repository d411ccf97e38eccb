// libhgrid: the end of a job. A rank reports Done when its training
// finished, or Failure; gridd's Release says how the job ended.
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "libhgrid/libhgrid_impl.h"
#include "util/clock.h"

void hgrid_take_release(hgrid_worker *w, const Hgrid__Release *release)
{
    switch (release->outcome) {
    case HGRID__OUTCOME__OUTCOME_FINISHED: w->end.outcome = HGRID_OUTCOME_FINISHED; break;
    case HGRID__OUTCOME__OUTCOME_FAILED: w->end.outcome = HGRID_OUTCOME_FAILED; break;
    default: w->end.outcome = HGRID_OUTCOME_CANCELLED; break; // older gridds: cancel only
    }
}

hgrid_outcome hgrid_job_outcome(const hgrid_worker *w)
{
    return w->end.outcome;
}

int hgrid_done(hgrid_worker *w, uint64_t step)
{
    if (!w->assigned || !w->ready_sent)
        return hgrid_fail(w, HGRID_ERR_STATE, "hgrid_done needs an assignment and Ready first");
    Hgrid__Done done = HGRID__DONE__INIT;
    done.generation = w->generation;
    done.step = step;
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_DONE;
    env.done = &done;
    w->end.done_sent = true; // said again in a Hello after a reconnection
    w->end.done_step = step;
    return hgrid_send(w, &env);
}

int hgrid_report_failure(hgrid_worker *w, const char *reason, bool retry)
{
    if (!w->hello.sent)
        return hgrid_fail(w, HGRID_ERR_STATE, "hgrid_report_failure needs hgrid_hello first");
    Hgrid__Failure failure = HGRID__FAILURE__INIT;
    failure.generation = w->assigned ? w->generation : 0;
    failure.reason = (char *)(reason && *reason ? reason : "no reason given");
    failure.retry = retry;
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_FAILURE;
    env.failure = &failure;
    return hgrid_send(w, &env);
}

int hgrid_wait_end(hgrid_worker *w, int heartbeat_ms, int timeout_ms)
{
    if (!w->end.done_sent)
        return hgrid_fail(w, HGRID_ERR_STATE, "hgrid_wait_end needs hgrid_done first");
    double start = now_s(), next_beat = start;
    for (;;) {
        double now = now_s();
        if (timeout_ms >= 0 && now - start >= timeout_ms / 1000.0)
            return hgrid_fail(w, HGRID_ERR_TIMEOUT, "gridd did not end the job within %d ms",
                              timeout_ms);
        if (now >= next_beat) {
            int st = hgrid_heartbeat(w, w->end.done_step, w->end.loss, w->end.throughput);
            if (st != HGRID_OK)
                return st;
            next_beat = now + heartbeat_ms / 1000.0;
        }
        int wait = (int)((next_beat - now) * 1000) + 1, wake = hgrid_wake_ms(w);
        if (wake >= 0 && wake < wait)
            wait = wake;
        struct pollfd pfd = {.fd = hgrid_fd(w), .events = POLLIN};
        int ready = poll(&pfd, 1, wait);
        if (ready < 0 && errno != EINTR)
            return hgrid_fail(w, HGRID_ERR_IO, "poll failed: %s", strerror(errno));
        if (ready > 0 || wake >= 0) {
            int st = hgrid_poll(w);
            if (st != HGRID_OK)
                return st;
        }
    }
}
