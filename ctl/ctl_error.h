// hgridctl's failures. Each is one line on stderr saying what went wrong and
// what to do; under --json the same line is also the "message" of the one
// object on stdout: {"error": {"code": CODE, "message": LINE}}.
#ifndef HGRID_CTL_ERROR_H
#define HGRID_CTL_ERROR_H

#include <stdbool.h>

#include "proto/hgrid.pb-c.h"

// Exit statuses of every command.
enum { CTL_OK = 0, CTL_FAILED = 1, CTL_USAGE = 2 };

// The codes hgridctl itself gives; gridd's refusals carry the name of its
// ErrorCode instead (unknown_job, job_exists, invalid_layout, bad_request,
// limit, permission, ...).
#define CTL_ERR_USAGE "usage"                 // bad command line (exit 2)
#define CTL_ERR_INVALID_LAYOUT "invalid_layout"
#define CTL_ERR_UNREACHABLE "unreachable"     // cannot connect to the control socket
#define CTL_ERR_DISCONNECTED "disconnected"   // gridd closed, or did not answer in time
#define CTL_ERR_BAD_REPLY "bad_reply"         // a reply this hgridctl does not expect
#define CTL_ERR_SYSTEM "system"               // memory, random bytes, signals

// Whether failures also print the JSON object (main: the command line holds --json).
void ctl_error_set_json(bool on);
bool ctl_error_json(void);

// Prints the line (without "\n") and returns status.
int ctl_fail(int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
// "hgridctl CMD: WHAT (try 'hgridctl CMD --help')", exit status 2.
int ctl_usage_error(const char *cmd, const char *what);
// gridd's Error reply as "hgridctl: gridd refused: MESSAGE"; returns 1.
int ctl_fail_refused(const Hgrid__Error *e);

#endif
