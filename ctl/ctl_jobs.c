// hgridctl list / status / cancel, and what the commands naming a job share.
#include "ctl/ctl_jobs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl_conn.h"
#include "ctl/ctl_error.h"
#include "libhgrid/selftest_calc.h"
#include "ctl/watch_view.h"
#include "wire/wire.h"

static bool is_help(const char *s) { return strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0; }

static int unexpected(const char *cmd, const char *arg)
{
    char what[128];
    snprintf(what, sizeof what, "unexpected argument '%.64s'", arg);
    return ctl_usage_error(cmd, what);
}

// Consumes "--flag N" at argv[*i] if it is one of ints; -1 to go on, else an exit status.
static int parse_int_option(const job_command *cmd, int argc, char **argv, int *i,
                            const job_int_option *ints, bool *matched)
{
    *matched = false;
    for (const job_int_option *o = ints; o && o->flag; o++) {
        if (strcmp(argv[*i], o->flag) != 0)
            continue;
        *matched = true;
        char what[160];
        if (*i + 1 >= argc) {
            snprintf(what, sizeof what, "%s needs a number", o->flag);
            return ctl_usage_error(cmd->name, what);
        }
        const char *s = argv[++*i];
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || *end || errno || v < o->min || v > o->max) {
            snprintf(what, sizeof what, "%s needs a whole number from %d to %d, got '%.32s'",
                     o->flag, o->min, o->max, s);
            return ctl_usage_error(cmd->name, what);
        }
        *o->value = (int)v;
        return -1;
    }
    return -1;
}

int ctl_parse_job_args(const job_command *cmd, int argc, char **argv,
                       const job_int_option *ints, const char **job, bool *json)
{
    *job = NULL;
    *json = false;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            printf("usage: hgridctl %s JOB [--json]%s\n%s"
                   "Exit status: 0 ok, 1 refused by gridd or gridd not reachable, 2 usage "
                   "error.\n",
                   cmd->name, cmd->options, cmd->help);
            return CTL_OK;
        }
        bool matched;
        int rc = parse_int_option(cmd, argc, argv, &i, ints, &matched);
        if (rc >= 0)
            return rc;
        if (matched)
            continue;
        if (strcmp(argv[i], "--json") == 0)
            *json = true;
        else if (argv[i][0] == '-' || *job)
            return unexpected(cmd->name, argv[i]);
        else
            *job = argv[i];
    }
    return *job ? -1 : ctl_usage_error(cmd->name, "name the job (hgridctl list shows them)");
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

Hgrid__Envelope *ctl_fetch_job(const ctl_options *opt, const char *job)
{
    Hgrid__Envelope env;
    Hgrid__ShowJob show;
    ctl_show_request(&env, &show, job);
    return ctl_request(opt, &env, HGRID__ENVELOPE__MSG_JOB_INFO);
}

// ---- status

static const job_command status_cmd = {
    "status", "",
    "Shows how far a job got: workers joined, generation, state, failed self-test\n"
    "checks, and per rank (the first 32) its heartbeat age, step, loss and\n"
    "throughput, and its self-test per group.\n"
    "  --all     every rank\n"
    "  --rank R  rank R only\n"
    "  --json  the object one line of 'hgridctl watch JOB --json' holds\n"};

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
static int write_status_text(const Hgrid__JobInfo *info, long rank, bool all)
{
    printf("job %s: %s, generation %llu, joined %u/%u\n", info->job, info->state,
           (unsigned long long)info->generation, info->joined, info->world_size);
    size_t failed_checks = 0, failed_ranks = 0;
    for (size_t i = 0; i < info->n_workers; i++) {
        size_t bad = 0;
        for (size_t k = 0; k < info->workers[i]->n_checks; k++)
            bad += !info->workers[i]->checks[k]->ok;
        failed_checks += bad;
        failed_ranks += bad > 0;
    }
    if (failed_checks)
        printf("self-test: %zu checks failed on %zu workers\n", failed_checks, failed_ranks);
    size_t shown = 0;
    for (size_t i = 0; i < info->n_workers; i++) {
        const Hgrid__WorkerInfo *w = info->workers[i];
        if (rank >= 0 ? w->rank != (uint32_t)rank : !all && shown == STATUS_ROWS)
            continue;
        write_worker_status(w);
        shown++;
    }
    if (rank >= 0 && shown == 0)
        return ctl_fail(CTL_FAILED, CTL_ERR_USAGE, "hgridctl: job %s has no worker at rank %ld",
                        info->job, rank);
    if (rank < 0 && shown < info->n_workers)
        printf("... %zu more workers (hgridctl status %s --all, or --rank R)\n",
               info->n_workers - shown, info->job);
    return CTL_OK;
}

// Takes status's own --all and --rank R out of argv; -1 if fine, else the
// exit status of a usage error.
static int status_view_args(int *argc, char **argv, long *rank, bool *all)
{
    int out = 0;
    for (int i = 0; i < *argc; i++) {
        if (!strcmp(argv[i], "--all")) {
            *all = true;
        } else if (!strcmp(argv[i], "--rank")) {
            char *end;
            if (i + 1 >= *argc || (*rank = strtol(argv[i + 1], &end, 10)) < 0 || *end ||
                !*argv[i + 1] || *rank > HG_MAX_WORLD)
                return ctl_fail(CTL_USAGE, CTL_ERR_USAGE,
                                "hgridctl status: --rank needs a rank number");
            i++;
        } else {
            argv[out++] = argv[i];
        }
    }
    *argc = out;
    return -1;
}

int ctl_status(const ctl_options *opt, int argc, char **argv)
{
    const char *name;
    bool json, all = false;
    long rank = -1;
    int rc = status_view_args(&argc, argv, &rank, &all);
    if (rc >= 0)
        return rc;
    rc = ctl_parse_job_args(&status_cmd, argc, argv, NULL, &name, &json);
    if (rc >= 0)
        return rc;
    Hgrid__Envelope *reply = ctl_fetch_job(opt, name);
    if (!reply)
        return CTL_FAILED;
    rc = CTL_OK;
    if (json) {
        watch_view v;
        char err[512];
        if (watch_view_build(reply->job_info, &v, err, sizeof err)) {
            rc = ctl_fail(CTL_FAILED, CTL_ERR_BAD_REPLY, "hgridctl: %s", err);
        } else {
            watch_view_json(&v, stdout);
            watch_view_free(&v);
        }
    } else {
        rc = write_status_text(reply->job_info, rank, all);
    }
    wire_free_envelope(reply);
    return rc;
}

// ---- cancel

static const job_command cancel_cmd = {
    "cancel", "",
    "Cancels a job: gridd releases its workers (they exit 0) and forgets it.\n"
    "  --json  {\"job\", \"state\": \"cancelled\", \"message\"}\n"};

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
        json_end_object(&w);
    }
    json_end_array(&w);
    json_end_object(&w);
    fputc('\n', stdout);
}

int ctl_list(const ctl_options *opt, int argc, char **argv)
{
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            printf("usage: hgridctl list [--json]\n"
                   "Lists gridd's jobs: state, generation, workers joined.\n"
                   "  --json  {\"jobs\": [{\"job\", \"state\", \"generation\", \"world_size\", "
                   "\"joined\"}]}\n"
                   "Exit status: 0 ok, 1 gridd not reachable, 2 usage error.\n");
            return CTL_OK;
        }
        if (strcmp(argv[i], "--json") != 0)
            return unexpected("list", argv[i]);
        json = true;
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
        printf("%-24s %-9s %10s %13s\n", "job", "state", "generation", "joined/world");
        for (size_t i = 0; i < jl->n_jobs; i++) {
            char joined[32];
            snprintf(joined, sizeof joined, "%u/%u", jl->jobs[i]->joined,
                     jl->jobs[i]->world_size);
            printf("%-24s %-9s %10llu %13s\n", jl->jobs[i]->job, jl->jobs[i]->state,
                   (unsigned long long)jl->jobs[i]->generation, joined);
        }
        if (jl->n_jobs == 0)
            printf("(no jobs: hgridctl submit --job NAME [layout flags] adds one)\n");
    }
    wire_free_envelope(reply);
    return CTL_OK;
}
