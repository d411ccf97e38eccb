// hgridctl list / status / cancel, and what the commands naming a job share.
#include "ctl/ctl_jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl/ctl_conn.h"
#include "ctl/ctl_error.h"
#include "libhgrid/selftest_calc.h"
#include "ctl/watch_view.h"
#include "wire/wire.h"

#define JOB_MAX_OPTS 16

int ctl_parse_job_args(const job_command *cmd, int argc, char **argv, const cli_opt *opts,
                       const char **job, bool *json)
{
    *job = NULL;
    *json = false;
    cli_opt table[JOB_MAX_OPTS + 2];
    size_t n = 0;
    for (const cli_opt *o = opts; o && (o->name || o->help) && n < JOB_MAX_OPTS; o++)
        table[n++] = *o;
    table[n++] = (cli_opt)CLI_OPT_SWITCH("json", json, cmd->json);
    table[n] = (cli_opt)CLI_OPT_END;
    char program[64], usage[1024];
    snprintf(program, sizeof program, "hgridctl %s", cmd->name);
    snprintf(usage, sizeof usage, "usage: hgridctl %s [--json]%s [--] JOB\n%s", cmd->name,
             cmd->options, cmd->help);
    const cli_spec spec = {
        .program = program, .usage = usage, .opts = table, .max_operands = 1,
        .epilog = cmd->exit_status ? cmd->exit_status
                                   : "Exit status: 0 ok, 1 refused by gridd or gridd not "
                                     "reachable, 2 usage error.\n"};
    char err[256], *operand;
    int n_operands;
    switch (cli_parse(&spec, argc, argv, &operand, &n_operands, err, sizeof err)) {
    case CLI_EXIT:
        return CTL_OK;
    case CLI_USAGE:
        return ctl_usage_error(cmd->name, err);
    }
    if (n_operands == 0)
        return ctl_usage_error(cmd->name, "name the job (hgridctl list shows them)");
    *job = operand;
    return -1;
}

void ctl_show_request(Hgrid__Envelope *env, Hgrid__ShowJob *show, const char *job)
{
    wire_envelope_init(env);
    hgrid__show_job__init(show);
    show->job = (char *)job;
    env->msg_case = HGRID__ENVELOPE__MSG_SHOW;
    env->show = show;
}

void ctl_json_job_head(json_writer *w, const Hgrid__JobInfo *info)
{
    json_key(w, "job");
    json_string(w, info->job);
    json_key(w, "state");
    json_string(w, info->state);
    json_key(w, "generation");
    json_int(w, (long long)info->generation);
    json_key(w, "world_size");
    json_int(w, info->world_size);
}

void ctl_json_job_end(json_writer *w, const Hgrid__JobInfo *info)
{
    json_key(w, "ended_unix_ms");
    if (info->ended_unix_ms)
        json_int(w, info->ended_unix_ms);
    else
        json_null(w);
    json_key(w, "reason");
    json_string(w, info->end_reason);
}

void ctl_format_time(int64_t unix_ms, char *buf, size_t len)
{
    time_t t = (time_t)(unix_ms / 1000);
    struct tm tm;
    if (!unix_ms || !gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm))
        snprintf(buf, len, "-");
}

void ctl_format_end(const Hgrid__JobInfo *info, char *buf, size_t len)
{
    if (!info->ended_unix_ms) {
        snprintf(buf, len, "%s", info->state);
        return;
    }
    char when[64];
    ctl_format_time(info->ended_unix_ms, when, sizeof when);
    snprintf(buf, len, "%s at %s: %s", info->state, when, info->end_reason);
}

Hgrid__Envelope *ctl_fetch_job(const ctl_options *opt, const char *job)
{
    return ctl_fetch_page(opt, job, 0, 0);
}

Hgrid__Envelope *ctl_fetch_page(const ctl_options *opt, const char *job, uint32_t first_slot,
                                uint32_t max_workers)
{
    Hgrid__Envelope env;
    Hgrid__ShowJob show;
    ctl_show_request(&env, &show, job);
    show.first_slot = first_slot;
    show.max_workers = max_workers;
    return ctl_request(opt, &env, HGRID__ENVELOPE__MSG_JOB_INFO);
}

size_t ctl_num_workers(const Hgrid__JobInfo *info)
{
    return info->num_workers > info->n_workers ? info->num_workers : info->n_workers;
}

void ctl_job_pages_free(ctl_job_pages *p)
{
    for (size_t i = 0; i < p->num_pages; i++)
        wire_free_envelope(p->pages[i]);
    free(p->pages);
    free(p->workers);
    memset(p, 0, sizeof *p);
}

int ctl_fetch_all(const ctl_options *opt, const char *job, ctl_job_pages *out)
{
    memset(out, 0, sizeof *out);
    size_t cap = 0, num = 0;
    uint32_t first = 0;
    for (;;) {
        Hgrid__Envelope *page = ctl_fetch_page(opt, job, first, 0);
        if (!page) {
            ctl_job_pages_free(out);
            return -1;
        }
        const Hgrid__JobInfo *info = page->job_info;
        Hgrid__Envelope **pages = realloc(out->pages, (out->num_pages + 1) * sizeof *pages);
        if (pages)
            out->pages = pages;
        // Pages go forward and add up to at most a world's workers, whatever gridd says.
        bool bad = info->next_slot && (info->next_slot <= first ||
                                       info->next_slot >= info->world_size);
        if (!pages || bad || num + info->n_workers > HG_MAX_WORLD) {
            wire_free_envelope(page);
            ctl_job_pages_free(out);
            return pages ? ctl_fail(-1, CTL_ERR_BAD_REPLY, "hgridctl: gridd's pages of job %s's "
                                    "workers do not add up (next slot %u after %u)", job,
                                    info->next_slot, first)
                         : ctl_fail(-1, CTL_ERR_SYSTEM, "hgridctl: out of memory");
        }
        out->pages[out->num_pages++] = page;
        if (num + info->n_workers > cap) {
            size_t want = cap ? 2 * cap : 1024;
            while (want < num + info->n_workers)
                want *= 2;
            Hgrid__WorkerInfo **w = realloc(out->workers, want * sizeof *w);
            if (!w) {
                ctl_job_pages_free(out);
                return ctl_fail(-1, CTL_ERR_SYSTEM, "hgridctl: out of memory for %zu workers",
                                num + info->n_workers);
            }
            out->workers = w;
            cap = want;
        }
        for (size_t i = 0; i < info->n_workers; i++)
            out->workers[num++] = info->workers[i];
        if (!info->next_slot)
            break;
        first = info->next_slot;
    }
    out->info = *out->pages[0]->job_info;
    out->info.workers = out->workers;
    out->info.n_workers = num;
    out->info.next_slot = 0;
    return 0;
}

// ---- status

static const job_command status_cmd = {
    "status", " [--all | --rank R]",
    "Shows how far a job got: workers joined, generation, state, failed self-test\n"
    "checks, and per rank (the first 32) its heartbeat age, step, loss and\n"
    "throughput, and its self-test per group.\n",
    "the object one line of 'hgridctl watch JOB --json' holds", NULL};

#define STATUS_ROWS 32 // ranks listed without --all

static void write_worker_status(const Hgrid__WorkerInfo *w)
{
    char age[32];
    if (w->last_heartbeat_ms < 0)
        snprintf(age, sizeof age, "none yet");
    else
        snprintf(age, sizeof age, "%lld ms ago", (long long)w->last_heartbeat_ms);
    printf("  rank %lld %s/%u %s: heartbeat %s, step %llu, loss %.4g, %.4g tokens/s\n",
           w->rank == UINT32_MAX ? -1 : (long long)w->rank, w->host, w->device, w->state, age,
           (unsigned long long)w->step, (double)w->loss, (double)w->throughput);
    char line[400];
    for (size_t k = 0; k < w->n_checks; k++) { // the self-test, per group and edge
        const Hgrid__GroupCheck *ck = w->checks[k];
        selftest_format_check(line, sizeof line, ck->name, ck->ok, ck->busbw_gbps, ck->detail);
        printf("    self-test %s\n", line);
    }
}

// A summary line, then the workers: rank only (>= 0), all, or the first
// STATUS_ROWS, so that a huge job prints a bounded page.
static int write_status_text(const Hgrid__JobInfo *info, int rank, bool all)
{
    printf("job %s: %s, generation %llu, joined %u/%u\n", info->job, info->state,
           (unsigned long long)info->generation, info->joined, info->world_size);
    if (info->ended_unix_ms) {
        char end[320];
        ctl_format_end(info, end, sizeof end);
        printf("%s\n", end);
    }
    // gridd's summary covers every worker, whichever page came.
    if (info->failed_checks)
        printf("self-test: %u checks failed on %u workers\n", info->failed_checks,
               info->failed_workers);
    size_t shown = 0;
    for (size_t i = 0; i < info->n_workers; i++) {
        const Hgrid__WorkerInfo *w = info->workers[i];
        if (rank >= 0 ? w->rank != (uint32_t)rank : !all && shown == STATUS_ROWS)
            continue;
        write_worker_status(w);
        shown++;
    }
    if (rank >= 0 && shown == 0)
        return ctl_fail(CTL_FAILED, CTL_ERR_USAGE, "hgridctl: job %s has no worker at rank %d",
                        info->job, rank);
    size_t total = ctl_num_workers(info);
    if (rank < 0 && shown < total)
        printf("... %zu more workers (hgridctl status %s --all, or --rank R)\n", total - shown,
               info->job);
    return CTL_OK;
}

int ctl_status(const ctl_options *opt, int argc, char **argv)
{
    const char *name;
    bool json, all = false;
    int rank = -1;
    const cli_opt opts[] = {
        CLI_OPT_SWITCH("all", &all, "every rank"),
        CLI_OPT_INT("rank", &rank, NULL, 0, HG_MAX_WORLD - 1, "R",
                    "rank R only (default: the first " CLI_STR(STATUS_ROWS) " ranks)"),
        CLI_OPT_END,
    };
    int rc = ctl_parse_job_args(&status_cmd, argc, argv, opts, &name, &json);
    if (rc >= 0)
        return rc;
    if (all && rank >= 0)
        return ctl_fail(CTL_USAGE, CTL_ERR_USAGE, "hgridctl status: --all or --rank, not both");
    // gridd answers a page at a time: without --all only what is printed
    // (the first 32 workers, rank R's page, or --json's page of 1024).
    ctl_job_pages pages = {0};
    Hgrid__Envelope *reply = NULL;
    if (all && ctl_fetch_all(opt, name, &pages))
        return CTL_FAILED;
    if (!all && !(reply = ctl_fetch_page(opt, name, rank >= 0 ? (uint32_t)rank : 0,
                                          json ? 0 : rank >= 0 ? 1 : STATUS_ROWS)))
        return CTL_FAILED;
    const Hgrid__JobInfo *info = all ? &pages.info : reply->job_info;
    rc = CTL_OK;
    if (json) {
        watch_view v;
        char err[512];
        if (watch_view_build(info, &v, err, sizeof err)) {
            rc = ctl_fail(CTL_FAILED, CTL_ERR_BAD_REPLY, "hgridctl: %s", err);
        } else {
            watch_view_json(&v, stdout);
            watch_view_free(&v);
        }
    } else {
        rc = write_status_text(info, rank, all);
    }
    wire_free_envelope(reply);
    ctl_job_pages_free(&pages);
    return rc;
}

// ---- cancel

static const job_command cancel_cmd = {
    "cancel", "",
    "Cancels a job: gridd releases its workers (they exit 0) and keeps it listed as\n"
    "cancelled for its --keep-finished. Cancelling a job that already ended removes it.\n",
    "{\"job\", \"state\": \"cancelled\", \"message\"}", NULL};

int ctl_cancel(const ctl_options *opt, int argc, char **argv)
{
    const char *name;
    bool json;
    int rc = ctl_parse_job_args(&cancel_cmd, argc, argv, NULL, &name, &json);
    if (rc >= 0)
        return rc;
    Hgrid__Envelope env;
    Hgrid__CancelJob cancel;
    wire_envelope_init(&env);
    hgrid__cancel_job__init(&cancel);
    cancel.job = (char *)name;
    env.msg_case = HGRID__ENVELOPE__MSG_CANCEL;
    env.cancel = &cancel;
    Hgrid__Envelope *reply = ctl_request(opt, &env, HGRID__ENVELOPE__MSG_OK);
    if (!reply)
        return CTL_FAILED;
    if (json) {
        json_writer w;
        json_init(&w, stdout);
        json_begin_object(&w);
        json_key(&w, "job");
        json_string(&w, name);
        json_key(&w, "state");
        json_string(&w, "cancelled");
        json_key(&w, "message");
        json_string(&w, reply->ok->message);
        json_end_object(&w);
        fputc('\n', stdout);
    } else {
        printf("%s\n", reply->ok->message);
    }
    wire_free_envelope(reply);
    return CTL_OK;
}

// ---- list

static void write_list_json(const Hgrid__JobList *jl)
{
    json_writer w;
    json_init(&w, stdout);
    json_begin_object(&w);
    json_key(&w, "jobs");
    json_begin_array(&w);
    for (size_t i = 0; i < jl->n_jobs; i++) {
        json_begin_object(&w);
        ctl_json_job_head(&w, jl->jobs[i]);
        json_key(&w, "joined");
        json_int(&w, jl->jobs[i]->joined);
        ctl_json_job_end(&w, jl->jobs[i]);
        json_end_object(&w);
    }
    json_end_array(&w);
    json_end_object(&w);
    fputc('\n', stdout);
}

int ctl_list(const ctl_options *opt, int argc, char **argv)
{
    bool json = false;
    const cli_opt opts[] = {
        CLI_OPT_SWITCH("json", &json,
                       "{\"jobs\": [{\"job\", \"state\", \"generation\", \"world_size\",\n"
                       "\"joined\", \"ended_unix_ms\", \"reason\"}]} (ended_unix_ms null\n"
                       "while it runs)"),
        CLI_OPT_END,
    };
    const cli_spec spec = {
        .program = "hgridctl list",
        .usage = "usage: hgridctl list [--json]\n"
                 "Lists gridd's jobs: state (waiting, minting, assigned, running, resuming;\n"
                 "ended: finished, failed, cancelled), generation, workers joined, and when\n"
                 "an ended job ended (gridd keeps it for its --keep-finished).\n",
        .opts = opts,
        .epilog = "Exit status: 0 ok, 1 gridd not reachable, 2 usage error.\n"};
    char err[256];
    int n;
    switch (cli_parse(&spec, argc, argv, NULL, &n, err, sizeof err)) {
    case CLI_EXIT:
        return CTL_OK;
    case CLI_USAGE:
        return ctl_usage_error("list", err);
    }
    Hgrid__Envelope env;
    Hgrid__ListJobs list;
    wire_envelope_init(&env);
    hgrid__list_jobs__init(&list);
    env.msg_case = HGRID__ENVELOPE__MSG_LIST;
    env.list = &list;
    Hgrid__Envelope *reply = ctl_request(opt, &env, HGRID__ENVELOPE__MSG_JOB_LIST);
    if (!reply)
        return CTL_FAILED;
    const Hgrid__JobList *jl = reply->job_list;
    if (json) {
        write_list_json(jl);
    } else {
        printf("%-24s %-9s %10s %13s  %s\n", "job", "state", "generation", "joined/world",
               "ended");
        for (size_t i = 0; i < jl->n_jobs; i++) {
            char joined[32], ended[64];
            snprintf(joined, sizeof joined, "%u/%u", jl->jobs[i]->joined,
                     jl->jobs[i]->world_size);
            ctl_format_time(jl->jobs[i]->ended_unix_ms, ended, sizeof ended);
            printf("%-24s %-9s %10llu %13s  %s\n", jl->jobs[i]->job, jl->jobs[i]->state,
                   (unsigned long long)jl->jobs[i]->generation, joined, ended);
        }
        if (jl->n_jobs == 0)
            printf("(no jobs: hgridctl submit --job NAME [layout flags] adds one)\n");
    }
    wire_free_envelope(reply);
    return CTL_OK;
}
