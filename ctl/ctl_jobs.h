// hgridctl's gridd commands: submit, list, show, status, cancel. Each talks
// to gridd over its control socket and returns the exit status (0 ok,
// 1 refused by gridd or gridd not reachable, 2 usage error).
#ifndef HGRID_CTL_JOBS_H
#define HGRID_CTL_JOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctl/hgridctl.h"
#include "util/cli.h"
#include "util/json.h"
#include "proto/hgrid.pb-c.h"

int ctl_submit(const ctl_options *opt, int argc, char **argv);
int ctl_list(const ctl_options *opt, int argc, char **argv);
int ctl_show(const ctl_options *opt, int argc, char **argv);
int ctl_status(const ctl_options *opt, int argc, char **argv);
int ctl_cancel(const ctl_options *opt, int argc, char **argv);
// hgridctl wait (ctl/ctl_wait.c): 0 finished, 1 failed or cancelled,
// CTL_WAIT_TIMED_OUT when --timeout passed first.
#define CTL_WAIT_TIMED_OUT 3
int ctl_wait(const ctl_options *opt, int argc, char **argv);

// A command naming one job: "hgridctl NAME [options] JOB".
typedef struct {
    const char *name;
    const char *options; // its own options for the usage line, "" if none
    const char *help;    // what it does, for --help
    const char *json;    // what --json prints, for --help
    const char *exit_status; // its exit statuses, when not the usual ones (NULL)
} job_command;

// Parses "[--json] [opts...] [--] JOB" (opts: the command's own options, a
// util/cli.h table, or NULL). Returns -1 to go on, else the exit status
// (--help, --version, usage errors).
int ctl_parse_job_args(const job_command *cmd, int argc, char **argv, const cli_opt *opts,
                       const char **job, bool *json);
// gridd's JobInfo of the job (a JOB_INFO reply) with the first page of its
// workers (gridd's page, 1024 at most), or NULL after reporting why.
Hgrid__Envelope *ctl_fetch_job(const ctl_options *opt, const char *job);
// The page of at most max_workers workers (0: gridd's page) from slot
// first_slot on; JobInfo.next_slot says where the next starts (0: none).
Hgrid__Envelope *ctl_fetch_page(const ctl_options *opt, const char *job, uint32_t first_slot,
                                uint32_t max_workers);
// Every page of a job's workers, one request each (each reply bounded),
// merged: info is the first page's JobInfo with all the workers.
typedef struct {
    Hgrid__Envelope **pages;
    size_t num_pages;
    Hgrid__WorkerInfo **workers;
    Hgrid__JobInfo info;
} ctl_job_pages;
// 0, or -1 after reporting why.
int ctl_fetch_all(const ctl_options *opt, const char *job, ctl_job_pages *out);
void ctl_job_pages_free(ctl_job_pages *p);
// Workers of the job in all pages (gridd's count; older gridds: the page's).
size_t ctl_num_workers(const Hgrid__JobInfo *info);
// Shared with watch: env (with show) asks gridd for job's JobInfo; the
// JSON keys every job object starts with (job, state, generation,
// world_size).
void ctl_show_request(Hgrid__Envelope *env, Hgrid__ShowJob *show, const char *job);
void ctl_json_job_head(json_writer *w, const Hgrid__JobInfo *info);
// "ended_unix_ms" (null while the job runs) and "reason" ("" then).
void ctl_json_job_end(json_writer *w, const Hgrid__JobInfo *info);
// A wall-clock time in ms as "2026-12-07 04:12:33 UTC" ("-" for 0).
void ctl_format_time(int64_t unix_ms, char *buf, size_t len);
// An ended job's "STATE at TIME: REASON"; a live job's state alone.
void ctl_format_end(const Hgrid__JobInfo *info, char *buf, size_t len);

#endif
