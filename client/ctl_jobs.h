// hgridctl's gridd commands: submit, list, show, status, cancel. Each talks
// to gridd over its control socket and returns the exit status (0 ok,
// 1 refused by gridd or gridd not reachable, 2 usage error).
#ifndef HGRID_CTL_JOBS_H
#define HGRID_CTL_JOBS_H

#include "client/hgridctl.h"
#include "client/json.h"
#include "proto/hgrid.pb-c.h"

int ctl_submit(const ctl_options *opt, int argc, char **argv);
int ctl_list(const ctl_options *opt, int argc, char **argv);
int ctl_show(const ctl_options *opt, int argc, char **argv);
int ctl_status(const ctl_options *opt, int argc, char **argv);
int ctl_cancel(const ctl_options *opt, int argc, char **argv);

// Connects to gridd's control socket (--socket, else the default path,
// into path); the descriptor, or -1 after printing why.
int ctl_connect(const ctl_options *opt, char *path, size_t pathlen);
// Shared with watch: env (with show) asks gridd for job's JobInfo; the
// JSON keys every job object starts with (job, state, generation,
// world_size).
void ctl_show_request(Hgrid__Envelope *env, Hgrid__ShowJob *show, const char *job);
void ctl_json_job_head(json_writer *w, const Hgrid__JobInfo *info);

#endif
