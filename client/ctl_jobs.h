// hgridctl's gridd commands: submit, list, show, status, cancel. Each talks
// to gridd over its control socket and returns the exit status (0 ok,
// 1 refused by gridd or gridd not reachable, 2 usage error).
#ifndef HGRID_CTL_JOBS_H
#define HGRID_CTL_JOBS_H

#include "client/hgridctl.h"

int ctl_submit(const ctl_options *opt, int argc, char **argv);
int ctl_list(const ctl_options *opt, int argc, char **argv);
int ctl_show(const ctl_options *opt, int argc, char **argv);
int ctl_status(const ctl_options *opt, int argc, char **argv);
int ctl_cancel(const ctl_options *opt, int argc, char **argv);

#endif
