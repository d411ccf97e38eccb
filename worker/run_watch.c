// train_watch: heartbeats and gridd's messages on a thread of their own.
#include "worker/run_watch.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/clock.h"

enum { TICK_MS = 50 };
#define MIN_GAP_S 0.25 // heartbeats at most this often while steps advance

struct train_watch {
    hgrid_worker *w;
    hgrid_comms *comms;
    tr_fence *fence;
    double beat_s;
    double deadline; // after an Abort: the kept communicators' (under lock)
    pthread_t thread;
    pthread_mutex_t lock;
    uint64_t step; // progress, under lock
    float loss, tok_s;
    int stop, done; // set by the training thread, under lock
    int status, aborted;
};

// gridd's messages that arrived within a tick: HGRID_OK, or what gridd
// said. While libhgrid reconnects (no descriptor) hgrid_poll makes its
// attempts when they are due.
static int read_gridd(train_watch *t)
{
    int fd = hgrid_fd(t->w), wake = hgrid_wake_ms(t->w);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int ready = poll(&pfd, fd >= 0, wake >= 0 && wake < TICK_MS ? wake : TICK_MS);
    if (ready < 0 && errno != EINTR) {
        fprintf(stderr, "hgrid-worker: poll on gridd's connection failed: %s\n", strerror(errno));
        return HGRID_ERR_IO;
    }
    return ready > 0 || fd < 0 ? hgrid_poll(t->w) : HGRID_OK;
}

// The training thread is still stepping: stop it. An Abort aborts the
// communicators holding a lost rank and waits (to the deadline and a
// little more: the training thread drains until then) for the training
// thread to leave its step with the others quiet; a Release, or a step
// that does not end, aborts them all.
static void interrupt(train_watch *t, int st)
{
    int kept = st == HGRID_ABORTED;
    fprintf(stderr, "hgrid-worker: rank %d: %s during training (%s); aborting the "
                    "communicators%s\n",
            hgrid_rank(t->w), kept ? "generation aborted" : "job released", hgrid_reason(t->w),
            kept ? " of the groups holding a lost rank" : "");
    pthread_mutex_lock(&t->lock);
    t->deadline = now_s() + TRAIN_QUIESCE_S;
    pthread_mutex_unlock(&t->lock);
    tr_fence_raise(t->fence);
    if (kept) {
        hgrid_comms_abort_lost(t->comms);
        // gridd's verdict on the others (AbortGroups: a peer left one of
        // them with an operation unmatched) frees a step waiting in one.
        int notices = 0, polling = 1;
        for (int stop = 0; !stop && now_s() < t->deadline + 0.5;) {
            nanosleep(&(struct timespec){0, 2000000}, NULL);
            int st2 = polling ? hgrid_poll_aborted(t->w) : HGRID_OK;
            polling = st2 == HGRID_OK || st2 == HGRID_ABORTED;
            if (st2 == HGRID_ABORTED || hgrid_broken_notices(t->w) != notices) {
                notices = hgrid_broken_notices(t->w);
                int n = hgrid_comms_abort_lost(t->comms);
                if (n)
                    fprintf(stderr, "hgrid-worker: rank %d: gridd named %d more communicator(s) "
                                    "broken (a peer left them mid-operation); aborted\n",
                            hgrid_rank(t->w), n);
            }
            pthread_mutex_lock(&t->lock);
            stop = t->stop;
            pthread_mutex_unlock(&t->lock);
            kept = stop;
        }
        if (!kept)
            fprintf(stderr, "hgrid-worker: rank %d: the step did not end within %.1f s of the "
                            "Abort (a peer left it); aborting every communicator\n",
                    hgrid_rank(t->w), TRAIN_QUIESCE_S);
    }
    if (!kept) {
        hgrid_comms_abort(t->comms);
        t->aborted = 1;
    }
}

static void *watch_main(void *arg)
{
    train_watch *t = arg;
    uint64_t sent_step = 0;
    double last = 0;
    int st = HGRID_OK, said_done = 0;
    for (;;) {
        pthread_mutex_lock(&t->lock);
        uint64_t step = t->step;
        float loss = t->loss, tok_s = t->tok_s;
        int stop = t->stop, done = t->done;
        pthread_mutex_unlock(&t->lock);
        if (stop && !done)
            break;
        if (done && !said_done) { // every step ran: gridd ends the job once all ranks say so
            // The last step's loss first: once every rank is done the job
            // ends, and a later heartbeat would not reach its metrics.
            st = hgrid_heartbeat(t->w, step, loss, tok_s);
            if (st == HGRID_OK)
                st = hgrid_done(t->w, step);
            sent_step = step, last = now_s();
            said_done = 1;
        }
        double now = now_s();
        if (st == HGRID_OK &&
            (now - last >= t->beat_s || (step != sent_step && now - last >= MIN_GAP_S))) {
            st = hgrid_heartbeat(t->w, step, loss, tok_s);
            sent_step = step, last = now;
        }
        if (st == HGRID_OK)
            st = read_gridd(t);
        if (st == HGRID_OK)
            continue;
        if ((st == HGRID_ABORTED || st == HGRID_RELEASED) && !done)
            interrupt(t, st);
        else if (st < 0 && !done) // gridd gone past the reconnect limit: NCCL carries on
            fprintf(stderr, "hgrid-worker: rank %d: gridd lost during training (%s); training "
                            "goes on without reports\n",
                    hgrid_rank(t->w), hgrid_error(t->w));
        break;
    }
    t->status = st;
    return NULL;
}

train_watch *train_watch_start(hgrid_worker *w, hgrid_comms *comms, double beat_s,
                               tr_fence *fence)
{
    train_watch *t = calloc(1, sizeof *t);
    if (!t) {
        fprintf(stderr, "hgrid-worker: out of memory for the heartbeat thread\n");
        return NULL;
    }
    *t = (train_watch){.w = w, .comms = comms, .fence = fence, .beat_s = beat_s,
                       .loss = HGRID_NO_LOSS};
    pthread_mutex_init(&t->lock, NULL);
    int e = pthread_create(&t->thread, NULL, watch_main, t);
    if (e) {
        fprintf(stderr, "hgrid-worker: cannot start the heartbeat thread: %s\n", strerror(e));
        pthread_mutex_destroy(&t->lock);
        free(t);
        return NULL;
    }
    return t;
}

// The fence may go up a moment before the deadline is set (libhgrid's
// counter raises it as the Abort arrives, then interrupt() runs).
double train_watch_deadline(train_watch *t)
{
    double until = now_s() + 1.0;
    for (;;) {
        pthread_mutex_lock(&t->lock);
        double d = t->deadline;
        pthread_mutex_unlock(&t->lock);
        if (d > 0)
            return d;
        if (now_s() > until)
            return now_s() + TRAIN_QUIESCE_S;
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
}

void train_watch_progress(train_watch *t, uint64_t step, float loss, float tokens_per_s)
{
    pthread_mutex_lock(&t->lock);
    t->step = step, t->loss = loss, t->tok_s = tokens_per_s;
    pthread_mutex_unlock(&t->lock);
}

int train_watch_finish(train_watch *t, int done, int *aborted)
{
    pthread_mutex_lock(&t->lock);
    t->stop = 1, t->done = done;
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->thread, NULL);
    int st = t->status;
    *aborted = t->aborted;
    pthread_mutex_destroy(&t->lock);
    free(t);
    return st;
}
