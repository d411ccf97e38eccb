// hgridctl subcommands. Each returns the process exit status:
// 0 success, 1 refused (invalid layout, gridd error), 2 usage error.
#ifndef HGRID_HGRIDCTL_H
#define HGRID_HGRIDCTL_H

typedef struct {
    const char *socket_path; // gridd's control socket
} ctl_options;

int ctl_plan(const ctl_options *opt, int argc, char **argv);
// Shows a job's training progress live (client/ctl_watch.c).
int ctl_watch(const ctl_options *opt, int argc, char **argv);
#endif
