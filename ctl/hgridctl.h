// hgridctl subcommands. Each returns the process exit status:
// 0 success, 1 refused (invalid layout, gridd error), 2 usage error.
#ifndef HGRID_HGRIDCTL_H
#define HGRID_HGRIDCTL_H

typedef struct {
    const char *socket_path; // gridd's control socket
} ctl_options;

// gridd's replies: the largest (a JobInfo of a very large job), and how long one may take.
// Largest reply accepted, by kind: a JobInfo lists every worker of a job
// of up to 2^20 ranks; a JobList every job without workers; the rest are
// one line.
#define CTL_REPLY_MAX_JOB_INFO (64u << 20)
#define CTL_REPLY_MAX_JOB_LIST (16u << 20)
#define CTL_REPLY_MAX_OTHER (64u << 10)
#define CTL_REPLY_MAX_FRAME CTL_REPLY_MAX_JOB_INFO
#define CTL_REPLY_TIMEOUT_MS 10000

int ctl_plan(const ctl_options *opt, int argc, char **argv);
// Shows a job's training progress live (ctl/ctl_watch.c).
int ctl_watch(const ctl_options *opt, int argc, char **argv);
#endif
