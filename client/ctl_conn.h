// hgridctl's connection to gridd's control socket: connect, one request and
// its reply, each failure reported once through ctl_fail.
#ifndef HGRID_CTL_CONN_H
#define HGRID_CTL_CONN_H

#include <stddef.h>

#include "client/hgridctl.h"
#include "proto/hgrid.pb-c.h"

// Connects to the control socket (--socket, else $HGRID_CONTROL, else the
// default path), the path used into path. The descriptor, or -1 after
// reporting why with what to do.
int ctl_connect(const ctl_options *opt, char *path, size_t pathlen);

// Sends req on a fresh connection and returns gridd's reply when it is of
// kind want; otherwise NULL after reporting why (a refusal with gridd's
// message, a lost connection, an unexpected reply).
Hgrid__Envelope *ctl_request(const ctl_options *opt, const Hgrid__Envelope *req,
                             Hgrid__Envelope__MsgCase want);

// Reports a reply that is neither the wanted kind nor an Error; returns 1.
int ctl_fail_unexpected(const Hgrid__Envelope *reply);

#endif
