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

// Makes room for a new job at --max-jobs: the ended job that ended first
// goes before its --keep-finished is up.
static void drop_oldest_ended(server *srv)
{
    job *oldest = NULL;
    for (job *j = srv->jobs; j; j = j->next)
        if (job_ended(j) && (!oldest || j->rec.ended_unix_ms < oldest->rec.ended_unix_ms))
            oldest = j;
    if (!oldest)
        return;
    gridd_log_at(GRIDD_NOTICE, oldest, -1, "ended job dropped early to make room (--max-jobs %d)",
                 srv->opt.max_jobs);
    job_remove(srv, oldest);
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
    job_record rec;
    memset(&rec, 0, sizeof rec);
    hg_plan plan;
    char err[HG_ERR_LEN];
    hg_layout_spec_defaults(&rec.spec);
    if (wire_layout_to_spec(s->layout, &rec.spec, err, sizeof err) ||
        hg_plan_build(&rec.spec, &plan, err, sizeof err)) {
        reply_error(c, HGRID__ERROR_CODE__ERROR_INVALID_LAYOUT, "job %s: invalid layout: %s",
                    s->job, err);
        return;
    }
    job *old = job_find(srv, s->job);
    if (old && !job_ended(old)) {
        reply_error(c, HGRID__ERROR_CODE__ERROR_JOB_EXISTS,
                    "job %s exists (%s); cancel it first or pick another name", s->job,
                    job_state_name(old->state));
        return;
    }
    if (old) // an ended job's name is free again
        job_remove(srv, old);
    if (srv->num_jobs >= srv->opt.max_jobs)
        drop_oldest_ended(srv);
    if (srv->num_jobs >= srv->opt.max_jobs) {
        reply_error(c, HGRID__ERROR_CODE__ERROR_LIMIT,
                    "job %s: gridd holds its limit of %d jobs (--max-jobs); cancel one, or "
                    "restart gridd with a larger --max-jobs", s->job, srv->opt.max_jobs);
        return;
    }
    snprintf(rec.name, sizeof rec.name, "%s", s->job);
    memcpy(rec.token, s->token.data, s->token.len);
    rec.token_len = (uint32_t)s->token.len;
    job *j = NULL;
    if (roster_init(&rec.roster, plan.world_size) || !(j = job_create(srv, &rec, &plan))) {
        roster_free(&rec.roster);
        reply_error(c, HGRID__ERROR_CODE__ERROR_LIMIT, "job %s: out of memory", s->job);
        return;
    }
    if (jobs_save(srv)) { // acknowledged only once it would survive a restart
        job_remove(srv, j);
        reply_error(c, HGRID__ERROR_CODE__ERROR_LIMIT,
                    "job %s: gridd cannot save its state (see gridd's log); not submitted",
                    s->job);
        return;
    }
    gridd_log_at(GRIDD_NOTICE, j, -1, "job submitted workers=%d", plan.world_size);
    char message[160];
    snprintf(message, sizeof message, "job %s submitted: waiting for %d workers", s->job,
             plan.world_size);
    reply_ok(c, message);
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
    if (req->brief) {
        Hgrid__Envelope env;
        Hgrid__JobInfo info;
        wire_envelope_init(&env);
        fill_info(j, &info);
        env.msg_case = HGRID__ENVELOPE__MSG_JOB_INFO;
        env.job_info = &info;
        conn_send(c, &env);
        return;
    }
    Hgrid__WorkerInfo *w = calloc((size_t)r->world_size, sizeof *w);
    Hgrid__WorkerInfo **ptrs = calloc((size_t)r->world_size, sizeof *ptrs);
    Hgrid__SelfTestReport **reports = calloc((size_t)r->world_size, sizeof *reports);
    if (!w || !ptrs || !reports) {
        reply_error(c, HGRID__ERROR_CODE__ERROR_LIMIT, "out of memory showing job %s", name);
    } else {
        int64_t now = gridd_now_ms();
        size_t n = 0;
        for (int s = 0; s < r->world_size; s++) {
            const roster_slot *slot = &r->slots[s];
            if (slot->state == SLOT_EMPTY)
                continue;
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
            attach_self_test(j, slot, &w[n], &reports[n]);
            ptrs[n] = &w[n];
            n++;
        }
        Hgrid__Envelope env;
        Hgrid__JobInfo info;
        Hgrid__ModuleProgress mp[HG_MAX_MODULES], *mp_ptrs[HG_MAX_MODULES];
        static float losses[HG_MAX_MODULES][JOB_LOSS_HISTORY];
        wire_envelope_init(&env);
        fill_info(j, &info);
        fill_progress(j, &info, mp, mp_ptrs, losses);
        info.n_workers = n;
        info.workers = ptrs;
        env.msg_case = HGRID__ENVELOPE__MSG_JOB_INFO;
        env.job_info = &info;
        conn_send(c, &env);
    }
    for (int s = 0; reports && s < r->world_size; s++)
        if (reports[s])
            hgrid__self_test_report__free_unpacked(reports[s], NULL);
    free(reports);
    free(w);
    free(ptrs);
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
        gridd_log_at(GRIDD_NOTICE, j, -1, "ended job removed by hgridctl cancel");
        job_remove(c->srv, j);
        jobs_save(c->srv);
    } else {
        snprintf(message, sizeof message, "job %s cancelled; its workers were released",
                 j->rec.name);
        job_end(j, HGRID__OUTCOME__OUTCOME_CANCELLED, "cancelled by hgridctl cancel");
    }
    reply_ok(c, message);
}

void control_handle(conn *c, const Hgrid__Envelope *env)
{
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
