// hgridctl subcommands. Each returns the process exit status:
// 0 success, 1 refused (invalid layout, gridd error), 2 usage error.
#ifndef HGRID_HGRIDCTL_H
#define HGRID_HGRIDCTL_H

typedef struct {
    const char *socket_path; // gridd's control socket
} ctl_options;

// gridd's replies: the largest (a JobInfo of a very large job), and how long one may take.
#define CTL_REPLY_MAX_FRAME (256u << 20)
#define CTL_REPLY_TIMEOUT_MS 10000

int ctl_plan(const ctl_options *opt, int argc, char **argv);
// Shows a job's training progress live (ctl/ctl_watch.c).
int ctl_watch(const ctl_options *opt, int argc, char **argv);
#endif
