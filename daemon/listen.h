// gridd's listening sockets.
#ifndef HGRID_DAEMON_LISTEN_H
#define HGRID_DAEMON_LISTEN_H

#include "daemon/conn.h"

// Binds and listens on --listen (logs "listening on HOST:PORT", writes
// --port-file). Returns 0 or -1 after printing why.
int listen_tcp(server *srv);
// Creates the control socket (parent 0750, socket 0660), replacing a stale
// one nobody answers on. Returns 0 or -1 after printing why.
int listen_control(server *srv);

#endif
