// hgridctl's connection to gridd's control socket: connect, one request and
// its reply, each failure reported once through ctl_fail.
#ifndef HGRID_CTL_CONN_H
#define HGRID_CTL_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "ctl/hgridctl.h"
#include "proto/hgrid.pb-c.h"

// gridd.service's --control: hgridctl tries it first when neither --socket
// nor $HGRID_CONTROL names a socket.
#define CTL_SYSTEM_SOCKET "/run/hgrid/gridd.sock"
#define CTL_SERVICE_USER "hgrid" // gridd.service's User=: hgridctl trusts its socket

// Connects to the control socket (--socket, else $HGRID_CONTROL, else
// CTL_SYSTEM_SOCKET if it exists, else the user's default path), the path
// used into path. The peer must be root, this user, the hgrid service
// account or $HGRID_GRIDD_UID (SO_PEERCRED), else nothing is sent. The descriptor, or -1 after
// reporting why with what to do.
int ctl_connect(const ctl_options *opt, char *path, size_t pathlen);

// Sends req on a fresh connection and returns gridd's reply when it is of
// kind want; otherwise NULL after reporting why (a refusal with gridd's
// message, a lost connection, an unexpected reply).
Hgrid__Envelope *ctl_request(const ctl_options *opt, const Hgrid__Envelope *req,
                             Hgrid__Envelope__MsgCase want);

// The largest reply frame hgridctl reads when it waits for a want.
uint32_t ctl_reply_max(Hgrid__Envelope__MsgCase want);

// Reports a reply that is neither the wanted kind nor an Error; returns 1.
int ctl_fail_unexpected(const Hgrid__Envelope *reply);

#endif
