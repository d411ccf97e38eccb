// hgridctl's requests on the control socket: submit, list, show, cancel.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/control.h"

#include "daemon/job.h"

static void reply_ok(conn *c, const char *message)
{
    Hgrid__Envelope env;
    Hgrid__Ok ok;
    wire_envelope_init(&env);
    hgrid__ok__init(&ok);
    ok.message = (char *)message;
    env.msg_case = HGRID__ENVELOPE__MSG_OK;
    env.ok = &ok;
    conn_send(c, &env);
}

// A refusal keeps the control connection open: hgridctl may ask again.
static void reply_error(conn *c, Hgrid__ErrorCode code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reply_error(conn *c, Hgrid__ErrorCode code, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    gridd_log_at(GRIDD_INFO, NULL, -1, "control request refused reason=\"%s\"", message);
    Hgrid__Envelope env;
    Hgrid__Error error;
    wire_envelope_init(&env);
    hgrid__error__init(&error);
    error.code = code;
    error.message = message;
    env.msg_case = HGRID__ENVELOPE__MSG_ERROR;
    env.error = &error;
    conn_send(c, &env);
}

// A submit's heavy part (the plan, the roster, the id plan: O(world size)
// and, for the id plan, more) runs on libuv's thread pool; the loop checks
// names and limits, links the job, saves the state and answers.
typedef struct {
    uv_work_t req;
    conn *c;
    job_record rec;
    hg_plan plan;
    job *j;
    bool invalid; // the layout: err says why; else !j is out of memory
    char err[HG_ERR_LEN];
} submit_work;

static void build_job(uv_work_t *req)
{
    submit_work *w = req->data;
    if (hg_plan_build(&w->rec.spec, &w->plan, w->err, sizeof w->err)) {
        w->invalid = true;
        return;
    }
    if (roster_init(&w->rec.roster, w->plan.world_size))
        return;
    if (!(w->j = job_build(&w->rec, &w->plan)))
        roster_free(&w->rec.roster);
}

// The ended job that ended first and is not leaving yet, or NULL.
static job *oldest_ended(server *srv)
{
    job *oldest = NULL;
    for (job *j = srv->jobs; j; j = j->next)
        if (job_ended(j) && !j->leaving &&
            (!oldest || j->rec.ended_unix_ms < oldest->rec.ended_unix_ms))
            oldest = j;
    return oldest;
}

static void stay_all(server *srv)
{
    for (job *j = srv->jobs; j; j = j->next)
        j->leaving = false;
}

// The checks that depend on the other jobs, made when the job is ready to
// be linked (other submits may have finished meanwhile). An ended job of
// its name gives way, and so, oldest first, do as many other ended jobs as
// --max-jobs and the total-rank limit need: they are marked leaving (ended
// jobs are saved, so they count until they go). 0, or -1 (answered, none
// marked).
static int submit_fits(conn *c, const job *j)
{
    server *srv = c->srv;
    const char *name = j->rec.name;
    job *old = job_find(srv, name);
    if (old && !job_ended(old)) {
        reply_error(c, HGRID__ERROR_CODE__ERROR_JOB_EXISTS,
                    "job %s exists (%s); cancel it first or pick another name", name,
                    job_state_name(old->state));
        return -1;
    }
    if (old) // an ended job's name is free again
        old->leaving = true;
    int jobs = 1;
    long long ranks = j->plan.world_size;
    for (const job *o = srv->jobs; o; o = o->next)
        if (!o->leaving) {
            jobs++;
            ranks += o->plan.world_size;
        }
    job *drop;
    while ((jobs > srv->opt.max_jobs || ranks > STATE_MAX_RANKS) && (drop = oldest_ended(srv))) {
        drop->leaving = true;
        jobs--;
        ranks -= drop->plan.world_size;
    }
    if (ranks > STATE_MAX_RANKS) { // what gridd restores at most: it loads what it acknowledges
        stay_all(srv);
        reply_error(c, HGRID__ERROR_CODE__ERROR_LIMIT,
                    "job %s: its %d ranks would bring gridd's jobs to %lld ranks, over the "
                    "limit of %d in all; cancel a job first", name, j->plan.world_size, ranks,
                    STATE_MAX_RANKS);
        return -1;
    }
    if (jobs > srv->opt.max_jobs) {
        stay_all(srv);
        reply_error(c, HGRID__ERROR_CODE__ERROR_LIMIT,
                    "job %s: gridd holds its limit of %d jobs (--max-jobs); cancel one, or "
                    "restart gridd with a larger --max-jobs", name, srv->opt.max_jobs);
        return -1;
    }
    return 0;
}

// Removes the jobs submit_fits marked leaving, now that the state without
// them is saved.
static void drop_leaving(server *srv, const char *new_name)
{
    for (job *o = srv->jobs, *next; o; o = next) {
        next = o->next;
        if (!o->leaving)
            continue;
        if (strcmp(o->rec.name, new_name) != 0)
            gridd_log_at(GRIDD_NOTICE, o, -1, "ended job dropped early to make room "
                         "(--max-jobs %d, at most %d ranks in all)", srv->opt.max_jobs,
                         STATE_MAX_RANKS);
        job_remove(srv, o);
    }
}

static void job_built(uv_work_t *req, int status)
{
    (void)status;
    submit_work *w = req->data;
    conn *c = w->c;
    server *srv = c->srv;
    job *j = w->j;
    c->busy = false;
    srv->submits_in_flight--;
    if (c->closed || srv->stopping) { // nobody to answer, or gridd is going away
        if (j && !srv->stopping)
            job_free_later(srv, j); // a huge job takes long to free: not on the loop
        else if (j)
            job_free(j);
        if (c->closed)
            free(c);
        free(w);
        return;
    }
    if (w->invalid)
        reply_error(c, HGRID__ERROR_CODE__ERROR_INVALID_LAYOUT, "job %s: invalid layout: %s",
                    w->rec.name, w->err);
    else if (!j)
        reply_error(c, HGRID__ERROR_CODE__ERROR_LIMIT, "job %s: out of memory", w->rec.name);
    if (!j || submit_fits(c, j)) {
        if (j)
            job_free_later(srv, j); // refused at a limit: a huge job is not freed on the loop
        free(w);
        return;
    }
    job_link(srv, j);
    if (jobs_save(srv)) { // acknowledged only once it would survive a restart
        job_remove(srv, j);
        stay_all(srv);
        reply_error(c, HGRID__ERROR_CODE__ERROR_LIMIT,
                    "job %s: gridd cannot save its state (see gridd's log); not submitted",
                    w->rec.name);
        free(w);
        return;
    }
    drop_leaving(srv, j->rec.name);
    gridd_log_at(GRIDD_NOTICE, j, -1, "job submitted workers=%d", j->plan.world_size);
    char message[160];
    snprintf(message, sizeof message, "job %s submitted: waiting for %d workers", j->rec.name,
             j->plan.world_size);
    reply_ok(c, message);
    free(w);
}

static void submit(conn *c, const Hgrid__SubmitJob *s)
{
    server *srv = c->srv;
    if (!wire_job_name_ok(s->job, strlen(s->job))) {
        reply_error(c, HGRID__ERROR_CODE__ERROR_BAD_REQUEST, "job name '%.64s' refused: %s",
                    s->job, WIRE_JOB_NAME_RULE);
        return;
    }
    if (s->token.len < 1 || s->token.len > JOB_TOKEN_MAX) {
        reply_error(c, HGRID__ERROR_CODE__ERROR_BAD_REQUEST,
                    "job %s: the token must be 1-%d bytes, not %zu", s->job, JOB_TOKEN_MAX,
                    s->token.len);
        return;
    }
    if (srv->submits_in_flight >= GRIDD_MAX_SUBMITS) {
        reply_error(c, HGRID__ERROR_CODE__ERROR_LIMIT,
                    "job %s: gridd is busy with %d submits; retry in a moment", s->job,
                    srv->submits_in_flight);
        return;
    }
    submit_work *w = calloc(1, sizeof *w);
    if (!w) {
        reply_error(c, HGRID__ERROR_CODE__ERROR_LIMIT, "job %s: out of memory", s->job);
        return;
    }
    hg_layout_spec_defaults(&w->rec.spec);
    if (wire_layout_to_spec(s->layout, &w->rec.spec, w->err, sizeof w->err)) {
        reply_error(c, HGRID__ERROR_CODE__ERROR_INVALID_LAYOUT, "job %s: invalid layout: %s",
                    s->job, w->err);
        free(w);
        return;
    }
    snprintf(w->rec.name, sizeof w->rec.name, "%s", s->job);
    memcpy(w->rec.token, s->token.data, s->token.len);
    w->rec.token_len = (uint32_t)s->token.len;
    w->c = c;
    w->req.data = w;
    if (uv_queue_work(srv->loop, &w->req, build_job, job_built)) {
        reply_error(c, HGRID__ERROR_CODE__ERROR_LIMIT, "job %s: cannot start building it",
                    s->job);
        free(w);
        return;
    }
    c->busy = true;
    srv->submits_in_flight++;
}

static void fill_info(const job *j, Hgrid__JobInfo *info)
{
    hgrid__job_info__init(info);
    info->job = (char *)j->rec.name;
    info->state = (char *)job_state_name(j->state);
    info->generation = j->rec.generation;
    info->world_size = (uint32_t)j->plan.world_size;
    info->joined = (uint32_t)j->rec.roster.live;
    info->layout = (Hgrid__Layout *)&j->wire.layout;
    info->ended_unix_ms = j->rec.ended_unix_ms;
    info->end_reason = (char *)j->rec.end_reason;
    info->done = (uint32_t)j->num_done;
    info->max_restarts = (uint32_t)j->srv->opt.max_restarts;
}

// Each module's progress and recent losses (oldest first) into mp, pointed
// to by info; losses holds the copies.
static void fill_progress(const job *j, Hgrid__JobInfo *info,
                          Hgrid__ModuleProgress mp[HG_MAX_MODULES],
                          Hgrid__ModuleProgress *ptrs[HG_MAX_MODULES],
                          float losses[HG_MAX_MODULES][JOB_LOSS_HISTORY])
{
    metrics_module m[HG_MAX_MODULES];
    int n;
    job_progress(j, m, &n);
    for (int i = 0; i < n; i++) {
        const job_loss_history *h = &j->history[i];
        hgrid__module_progress__init(&mp[i]);
        mp[i].module = j->plan.modules[i].id == HG_MODULE_LLM ? HGRID__MODULE__MODULE_LLM
                                                              : HGRID__MODULE__MODULE_ENCODER;
        mp[i].step = m[i].step;
        mp[i].has_loss = m[i].loss_ranks > 0;
        mp[i].loss = (float)m[i].loss;
        mp[i].tokens_per_s = (float)m[i].tokens_per_s;
        for (int k = 0; k < h->count; k++)
            losses[i][k] = h->loss[(h->next - h->count + k + JOB_LOSS_HISTORY) % JOB_LOSS_HISTORY];
        mp[i].n_recent_loss = (size_t)h->count;
        mp[i].recent_loss = losses[i];
        ptrs[i] = &mp[i];
    }
    info->n_modules = (size_t)n;
    info->modules = ptrs;
}

// A worker's state as hgridctl shows it: done once it reported Done; in an
// ended job the others were released.
static const char *worker_state(const job *j, int s)
{
    if (j->ranks[s].done && j->rec.roster.assigned)
        return "done";
    return job_ended(j) ? "released" : slot_state_name(j->rec.roster.slots[s].state);
}

static void list(conn *c)
{
    server *srv = c->srv;
    Hgrid__JobInfo *infos = calloc((size_t)srv->num_jobs + 1, sizeof *infos);
    Hgrid__JobInfo **ptrs = calloc((size_t)srv->num_jobs + 1, sizeof *ptrs);
    if (!infos || !ptrs) {
        reply_error(c, HGRID__ERROR_CODE__ERROR_LIMIT, "out of memory listing jobs");
    } else {
        int n = 0;
        for (job *j = srv->jobs; j; j = j->next, n++) {
            fill_info(j, &infos[n]);
            ptrs[n] = &infos[n];
        }
        Hgrid__Envelope env;
        Hgrid__JobList jl;
        wire_envelope_init(&env);
        hgrid__job_list__init(&jl);
        jl.n_jobs = (size_t)n;
        jl.jobs = ptrs;
        env.msg_case = HGRID__ENVELOPE__MSG_JOB_LIST;
        env.job_list = &jl;
        conn_send(c, &env);
    }
    free(infos);
    free(ptrs);
}

// The slot's self-test checks of the current generation into wi; *report
// keeps the unpacked report until the reply is sent.
static void attach_self_test(const job *j, const roster_slot *slot, Hgrid__WorkerInfo *wi,
                             Hgrid__SelfTestReport **report)
{
    if (!slot->self_test)
        return;
    *report = hgrid__self_test_report__unpack(NULL, slot->self_test_len, slot->self_test);
    if (*report && (*report)->generation == j->rec.generation) {
        wi->n_checks = (*report)->n_groups;
        wi->checks = (*report)->groups;
    }
}

// The self-test summary over every worker (this generation's reports) and
// how many workers a full listing has: O(world size), no allocation.
static void fill_summary(const job *j, Hgrid__JobInfo *info)
{
    const roster *r = &j->rec.roster;
    for (int s = 0; s < r->world_size; s++) {
        const roster_slot *slot = &r->slots[s];
        if (slot->state == SLOT_EMPTY)
            continue;
        info->num_workers++;
        if (slot->self_test_gen == j->rec.generation && slot->self_test_failed) {
            info->failed_checks += slot->self_test_failed;
            info->failed_workers++;
        }
    }
}

// A page of the job's workers: at most GRIDD_SHOW_PAGE (each with at most
// GRIDD_SELF_TEST_MAX bytes of self-test), so a reply stays under ~9 MiB
// and the loop's work under O(world size) however large the job; hgridctl
// asks for the next page (next_slot) when told to show them all.
static void show(conn *c, const Hgrid__ShowJob *req)
{
    const char *name = req->job;
    job *j = job_find(c->srv, name);
    if (!j) {
        reply_error(c, HGRID__ERROR_CODE__ERROR_UNKNOWN_JOB, "no job named '%.64s' (see hgridctl list)",
                    name);
        return;
    }
    const roster *r = &j->rec.roster;
    Hgrid__Envelope env;
    Hgrid__JobInfo info;
    wire_envelope_init(&env);
    fill_info(j, &info);
    env.msg_case = HGRID__ENVELOPE__MSG_JOB_INFO;
    env.job_info = &info;
    if (req->brief) {
        conn_send(c, &env);
        return;
    }
    fill_summary(j, &info);
    size_t page = req->max_workers && req->max_workers < GRIDD_SHOW_PAGE ? req->max_workers
                                                                          : GRIDD_SHOW_PAGE;
    static Hgrid__WorkerInfo w[GRIDD_SHOW_PAGE];
    static Hgrid__WorkerInfo *ptrs[GRIDD_SHOW_PAGE];
    static Hgrid__SelfTestReport *reports[GRIDD_SHOW_PAGE];
    int64_t now = gridd_now_ms();
    size_t n = 0;
    int s = req->first_slot < (uint32_t)r->world_size ? (int)req->first_slot : r->world_size;
    for (; s < r->world_size; s++) {
        const roster_slot *slot = &r->slots[s];
        if (slot->state == SLOT_EMPTY)
            continue;
        if (n == page) {
            info.next_slot = (uint32_t)s;
            break;
        }
        hgrid__worker_info__init(&w[n]);
        // Before ranks are assigned a worker has none: UINT32_MAX.
        w[n].rank = r->assigned ? (uint32_t)s : UINT32_MAX;
        w[n].host = (char *)roster_host_name(r, slot->host);
        w[n].device = (uint32_t)slot->device;
        w[n].state = (char *)worker_state(j, s);
        w[n].done = r->assigned && j->ranks[s].done;
        w[n].has_loss = r->assigned && j->ranks[s].has_loss && slot->last_heartbeat;
        w[n].last_heartbeat_ms = slot->last_heartbeat ? now - slot->last_heartbeat : -1;
        w[n].step = slot->step;
        w[n].loss = slot->loss;
        w[n].throughput = slot->throughput;
        w[n].step_time_s = slot->step_time_s;
        reports[n] = NULL;
        attach_self_test(j, slot, &w[n], &reports[n]);
        ptrs[n] = &w[n];
        n++;
    }
    Hgrid__ModuleProgress mp[HG_MAX_MODULES], *mp_ptrs[HG_MAX_MODULES];
    static float losses[HG_MAX_MODULES][JOB_LOSS_HISTORY];
    fill_progress(j, &info, mp, mp_ptrs, losses);
    info.n_workers = n;
    info.workers = ptrs;
    conn_send(c, &env);
    for (size_t k = 0; k < n; k++)
        if (reports[k])
            hgrid__self_test_report__free_unpacked(reports[k], NULL);
}

static void cancel(conn *c, const char *name)
{
    job *j = job_find(c->srv, name);
    if (!j) {
        reply_error(c, HGRID__ERROR_CODE__ERROR_UNKNOWN_JOB, "no job named '%.64s' (see hgridctl list)",
                    name);
        return;
    }
    char message[160];
    if (job_ended(j)) {
        snprintf(message, sizeof message, "job %s had ended (%s); removed", j->rec.name,
                 job_state_name(j->state));
        j->leaving = true;
        if (jobs_save(c->srv)) { // acknowledged only once saved
            j->leaving = false;
            reply_error(c, HGRID__ERROR_CODE__ERROR_LIMIT,
                        "job %s: gridd cannot save its state (see gridd's log); not removed",
                        j->rec.name);
            return;
        }
        gridd_log_at(GRIDD_NOTICE, j, -1, "ended job removed by hgridctl cancel");
        job_remove(c->srv, j);
    } else {
        snprintf(message, sizeof message, "job %s cancelled; its workers were released",
                 j->rec.name);
        if (job_cancel(j, "cancelled by hgridctl cancel")) {
            reply_error(c, HGRID__ERROR_CODE__ERROR_LIMIT,
                        "job %s: gridd cannot save its state (see gridd's log); not cancelled",
                        j->rec.name);
            return;
        }
    }
    reply_ok(c, message);
}

void control_handle(conn *c, const Hgrid__Envelope *env)
{
    if (c->busy) {
        conn_fail(c, HGRID__ERROR_CODE__ERROR_BAD_REQUEST,
                  "one request at a time: wait for the reply to the last one");
        return;
    }
    switch (env->msg_case) {
    case HGRID__ENVELOPE__MSG_SUBMIT:
        submit(c, env->submit);
        break;
    case HGRID__ENVELOPE__MSG_LIST:
        list(c);
        break;
    case HGRID__ENVELOPE__MSG_SHOW:
        show(c, env->show);
        break;
    case HGRID__ENVELOPE__MSG_CANCEL:
        cancel(c, env->cancel->job);
        break;
    default:
        conn_fail(c, HGRID__ERROR_CODE__ERROR_BAD_REQUEST,
                  "message %d is not a control request (submit, list, show, cancel)",
                  (int)env->msg_case);
    }
}
