// hgridctl submit / list / show / status / cancel over gridd's control socket.
#include "client/ctl_jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "client/json.h"
#include "client/layout_args.h"
#include "client/plan_print.h"
#include "client/selftest_calc.h"
#include "wire/wire.h"

int ctl_connect(const ctl_options *opt, char *path, size_t pathlen)
{
    char addr[4200], err[512];
    if (opt->socket_path)
        snprintf(path, pathlen, "%s", opt->socket_path);
    else
        wire_default_control_path(path, pathlen);
    // wire_connect takes a path containing '/' as a Unix socket.
    snprintf(addr, sizeof addr, "%s%s", strchr(path, '/') ? "" : "./", path);
    int fd = wire_connect(addr, err, sizeof err);
    if (fd < 0)
        fprintf(stderr, "hgridctl: %s\n", err);
    return fd;
}

// Sends one request and returns gridd's reply, or NULL after printing why.
static Hgrid__Envelope *request(const ctl_options *opt, const Hgrid__Envelope *req)
{
    char path[4096], err[512];
    int fd = ctl_connect(opt, path, sizeof path);
    if (fd < 0)
        return NULL;
    Hgrid__Envelope *reply = NULL;
    if (wire_send(fd, req))
        fprintf(stderr, "hgridctl: cannot send to gridd at %s (is gridd running? use --socket PATH)\n",
                path);
    else if (!(reply = wire_recv(fd, CTL_REPLY_MAX_FRAME, CTL_REPLY_TIMEOUT_MS, err, sizeof err)))
        fprintf(stderr, "hgridctl: no reply from gridd at %s: %s\n", path, err);
    close(fd);
    if (reply && reply->msg_case == HGRID__ENVELOPE__MSG_ERROR) {
        fprintf(stderr, "hgridctl: gridd refused: %s\n", reply->error->message);
        wire_free_envelope(reply);
        return NULL;
    }
    return reply;
}

// Checks the reply carries `want`; prints why not.
static bool expect(const Hgrid__Envelope *reply, Hgrid__Envelope__MsgCase want)
{
    if (reply->msg_case == want)
        return true;
    fprintf(stderr, "hgridctl: unexpected reply %d from gridd (mismatched hgrid builds?)\n",
            (int)reply->msg_case);
    return false;
}

static int usage_error(const char *cmd, const char *what)
{
    fprintf(stderr, "hgridctl %s: %s (try 'hgridctl %s --help')\n", cmd, what, cmd);
    return 2;
}

// ---- submit

static void submit_usage(FILE *out)
{
    fprintf(out,
            "usage: hgridctl submit --job NAME [--token T] [layout flags]\n"
            "Validates the layout and submits it to gridd as job NAME (1-64 characters of\n"
            "A-Z a-z 0-9 . _ -). Workers join with the job's token; without --token a random\n"
            "128-bit token is generated and printed alone on stdout.\n"
            "Exit status: 0 submitted, 1 invalid layout or refused by gridd, 2 usage error.\n\n%s",
            hg_layout_flags_help);
}

static int random_token(char *hex, size_t len)
{
    uint8_t bytes[16];
    if (getrandom(bytes, sizeof bytes, 0) != (ssize_t)sizeof bytes)
        return -1;
    for (size_t i = 0; i < sizeof bytes && 2 * i + 2 < len; i++)
        snprintf(hex + 2 * i, 3, "%02x", bytes[i]);
    return 0;
}

int ctl_submit(const ctl_options *opt, int argc, char **argv)
{
    const char *name = NULL, *token = NULL;
    hg_plan plan;
    layout_arg extras[] = {{"--job", LAYOUT_ARG_STRING, &name, NULL},
                           {"--token", LAYOUT_ARG_STRING, &token, NULL},
                           {NULL, 0, NULL, NULL}};
    int status = layout_args_parse(argc, argv, extras, &plan, submit_usage);
    if (status != LAYOUT_ARGS_OK)
        return status == LAYOUT_ARGS_HELP ? 0 : status;
    if (!name)
        return usage_error("submit", "--job NAME is required");
    char generated[33];
    if (!token) {
        if (random_token(generated, sizeof generated)) {
            fprintf(stderr, "hgridctl: cannot read random bytes for a token; pass --token\n");
            return 1;
        }
        token = generated;
    }
    if (strlen(token) < 1 || strlen(token) > 256)
        return usage_error("submit", "--token must be 1-256 bytes");
    Hgrid__Envelope env;
    Hgrid__SubmitJob submit;
    Hgrid__Layout layout;
    Hgrid__ModelConfig model;
    wire_envelope_init(&env);
    hgrid__submit_job__init(&submit);
    wire_layout_from_spec(&plan.spec, &layout, &model);
    submit.job = (char *)name;
    submit.token.data = (uint8_t *)token;
    submit.token.len = strlen(token);
    submit.layout = &layout;
    env.msg_case = HGRID__ENVELOPE__MSG_SUBMIT;
    env.submit = &submit;
    Hgrid__Envelope *reply = request(opt, &env);
    if (!reply)
        return 1;
    int rc = expect(reply, HGRID__ENVELOPE__MSG_OK) ? 0 : 1;
    if (rc == 0 && token == generated) {
        fprintf(stderr, "hgridctl: %s\n", reply->ok->message);
        printf("%s\n", generated);
    } else if (rc == 0) {
        printf("%s\n", reply->ok->message);
    }
    wire_free_envelope(reply);
    return rc;
}

// ---- commands naming one job

typedef struct {
    const char *name;    // the command
    const char *summary; // what it does, for --help
    bool has_json;
} job_command;

// Parses "[--json] JOB"; returns -1 to go on, else an exit status.
static int parse_job_args(const job_command *cmd, int argc, char **argv, const char **job,
                          bool *json)
{
    *job = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: hgridctl %s%s JOB\n%s\n"
                   "Exit status: 0 ok, 1 refused by gridd or gridd not reachable, 2 usage "
                   "error.\n",
                   cmd->name, cmd->has_json ? " [--json]" : "", cmd->summary);
            return 0;
        }
        if (cmd->has_json && strcmp(argv[i], "--json") == 0) {
            *json = true;
        } else if (argv[i][0] == '-' || *job) {
            char what[128];
            snprintf(what, sizeof what, "unexpected argument '%.64s'", argv[i]);
            return usage_error(cmd->name, what);
        } else {
            *job = argv[i];
        }
    }
    return *job ? -1 : usage_error(cmd->name, "name the job");
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

static Hgrid__Envelope *fetch_job(const ctl_options *opt, const char *name)
{
    Hgrid__Envelope env;
    Hgrid__ShowJob show;
    ctl_show_request(&env, &show, name);
    Hgrid__Envelope *reply = request(opt, &env);
    if (reply && !expect(reply, HGRID__ENVELOPE__MSG_JOB_INFO)) {
        wire_free_envelope(reply);
        return NULL;
    }
    return reply;
}

static long long rank_of(const Hgrid__WorkerInfo *w)
{
    return w->rank == UINT32_MAX ? -1 : (long long)w->rank;
}

static int write_json(const Hgrid__JobInfo *info)
{
    hg_layout_spec spec;
    hg_plan plan;
    char err[HG_ERR_LEN];
    hg_layout_spec_defaults(&spec);
    if (wire_layout_to_spec(info->layout, &spec, err, sizeof err) ||
        hg_plan_build(&spec, &plan, err, sizeof err)) {
        fprintf(stderr, "hgridctl: gridd sent a layout this hgridctl cannot plan: %s\n", err);
        return 1;
    }
    json_writer w;
    json_init(&w, stdout);
    json_begin_object(&w);
    ctl_json_job_head(&w, info);
    json_key(&w, "workers");
    json_begin_array(&w);
    for (size_t i = 0; i < info->n_workers; i++) {
        const Hgrid__WorkerInfo *wi = info->workers[i];
        json_begin_object(&w);
        json_key(&w, "rank");
        json_int(&w, rank_of(wi));
        json_key(&w, "host");
        json_string(&w, wi->host);
        json_key(&w, "device");
        json_int(&w, wi->device);
        json_key(&w, "state");
        json_string(&w, wi->state);
        json_key(&w, "last_heartbeat_ms");
        json_int(&w, wi->last_heartbeat_ms);
        json_end_object(&w);
    }
    json_end_array(&w);
    json_key(&w, "plan");
    plan_write_json(&plan, &w);
    json_end_object(&w);
    fputc('\n', stdout);
    return 0;
}

// Parses a JOB command's arguments and fetches the job's JobInfo into
// *reply. Returns -1 to go on, else the exit status.
static int job_info_command(const job_command *cmd, const ctl_options *opt, int argc, char **argv,
                            bool *json, Hgrid__Envelope **reply)
{
    const char *name;
    int rc = parse_job_args(cmd, argc, argv, &name, json);
    if (rc >= 0)
        return rc;
    *reply = fetch_job(opt, name);
    return *reply ? -1 : 1;
}

static void write_heading(const Hgrid__JobInfo *info)
{
    printf("job %s: %s, generation %llu, joined %u/%u\n", info->job, info->state,
           (unsigned long long)info->generation, info->joined, info->world_size);
}

static const job_command show_cmd = {
    "show", "Shows a job: its state, its workers and (with --json) its full plan.", true};

int ctl_show(const ctl_options *opt, int argc, char **argv)
{
    bool json = false;
    Hgrid__Envelope *reply;
    int rc = job_info_command(&show_cmd, opt, argc, argv, &json, &reply);
    if (rc >= 0)
        return rc;
    const Hgrid__JobInfo *info = reply->job_info;
    rc = 0;
    if (json) {
        rc = write_json(info);
    } else {
        write_heading(info);
        printf("%6s  %-24s %6s  %-8s\n", "rank", "host", "device", "state");
        for (size_t i = 0; i < info->n_workers; i++) {
            const Hgrid__WorkerInfo *w = info->workers[i];
            printf("%6lld  %-24s %6u  %-8s\n", rank_of(w), w->host, w->device, w->state);
        }
    }
    wire_free_envelope(reply);
    return rc;
}

static const job_command status_cmd = {
    "status", "Shows how far a job got: workers joined, generation, state, and per rank its\n"
              "heartbeat age, step, loss and throughput, and its self-test per group.", false};

int ctl_status(const ctl_options *opt, int argc, char **argv)
{
    bool json = false;
    Hgrid__Envelope *reply;
    int rc = job_info_command(&status_cmd, opt, argc, argv, &json, &reply);
    if (rc >= 0)
        return rc;
    const Hgrid__JobInfo *info = reply->job_info;
    write_heading(info);
    for (size_t i = 0; i < info->n_workers; i++) {
        const Hgrid__WorkerInfo *w = info->workers[i];
        char age[32];
        if (w->last_heartbeat_ms < 0)
            snprintf(age, sizeof age, "none yet");
        else
            snprintf(age, sizeof age, "%lld ms ago", (long long)w->last_heartbeat_ms);
        printf("  rank %lld %s/%u %s: heartbeat %s, step %llu, loss %.4g, %.4g tokens/s\n",
               rank_of(w), w->host, w->device, w->state, age, (unsigned long long)w->step,
               (double)w->loss, (double)w->throughput);
        char line[400];
        for (size_t k = 0; k < w->n_checks; k++) { // the self-test, per group and edge
            const Hgrid__GroupCheck *ck = w->checks[k];
            selftest_format_check(line, sizeof line, ck->name, ck->ok, ck->busbw_gbps, ck->detail);
            printf("    self-test %s\n", line);
        }
    }
    wire_free_envelope(reply);
    return 0;
}

static const job_command cancel_cmd = {
    "cancel", "Cancels a job: gridd releases its workers (they exit 0) and forgets it.", false};

int ctl_cancel(const ctl_options *opt, int argc, char **argv)
{
    const char *name;
    bool json = false;
    int rc = parse_job_args(&cancel_cmd, argc, argv, &name, &json);
    if (rc >= 0)
        return rc;
    Hgrid__Envelope env;
    Hgrid__CancelJob cancel;
    wire_envelope_init(&env);
    hgrid__cancel_job__init(&cancel);
    cancel.job = (char *)name;
    env.msg_case = HGRID__ENVELOPE__MSG_CANCEL;
    env.cancel = &cancel;
    Hgrid__Envelope *reply = request(opt, &env);
    if (!reply)
        return 1;
    rc = expect(reply, HGRID__ENVELOPE__MSG_OK) ? 0 : 1;
    if (rc == 0)
        printf("%s\n", reply->ok->message);
    wire_free_envelope(reply);
    return rc;
}

// ---- list

int ctl_list(const ctl_options *opt, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: hgridctl list\nLists gridd's jobs: state, generation, workers "
                   "joined.\nExit status: 0 ok, 1 gridd not reachable, 2 usage error.\n");
            return 0;
        }
        char what[128];
        snprintf(what, sizeof what, "unexpected argument '%.64s'", argv[i]);
        return usage_error("list", what);
    }
    Hgrid__Envelope env;
    Hgrid__ListJobs list;
    wire_envelope_init(&env);
    hgrid__list_jobs__init(&list);
    env.msg_case = HGRID__ENVELOPE__MSG_LIST;
    env.list = &list;
    Hgrid__Envelope *reply = request(opt, &env);
    if (!reply)
        return 1;
    if (!expect(reply, HGRID__ENVELOPE__MSG_JOB_LIST)) {
        wire_free_envelope(reply);
        return 1;
    }
    const Hgrid__JobList *jl = reply->job_list;
    printf("%-24s %-9s %10s %13s\n", "job", "state", "generation", "joined/world");
    for (size_t i = 0; i < jl->n_jobs; i++) {
        char joined[32];
        snprintf(joined, sizeof joined, "%u/%u", jl->jobs[i]->joined, jl->jobs[i]->world_size);
        printf("%-24s %-9s %10llu %13s\n", jl->jobs[i]->job, jl->jobs[i]->state,
               (unsigned long long)jl->jobs[i]->generation, joined);
    }
    wire_free_envelope(reply);
    return 0;
}
