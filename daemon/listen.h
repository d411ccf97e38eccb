// gridd's listening sockets.
#ifndef HGRID_DAEMON_LISTEN_H
#define HGRID_DAEMON_LISTEN_H

#include "daemon/conn.h"

// tcp bound to addr, the value of gridd's option flag (HOST:PORT, an
// example in the error): 0, a libuv error code (< 0), or 1 after printing
// why addr is no address.
int listen_bind(uv_loop_t *loop, uv_tcp_t *tcp, const char *flag, const char *addr,
                const char *example);
// Writes tcp's bound address as HOST:PORT (IPv6 bracketed) to out; returns the port.
int listen_bound(uv_tcp_t *tcp, char *out, size_t len);
// Binds and listens on --listen (logs "listening on HOST:PORT", writes
// --port-file). Returns 0 or -1 after printing why.
int listen_tcp(server *srv);
// Creates the control socket (parent 0750, socket 0660), replacing a stale
// one nobody answers on. Returns 0 or -1 after printing why.
int listen_control(server *srv);

#endif
