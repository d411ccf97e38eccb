// Host links: an hgrid-agent's one connection for a host's workers of one
// job (docs/PROTOCOL.md, "Host links"). Each of those workers is a
// CONN_REMOTE conn that the job handles like any worker; what gridd sends
// them is batched per host: one Relay per loop iteration, and one
// HostAssignment once every worker of the host has its Assignment.
#ifndef HGRID_DAEMON_HOSTLINK_H
#define HGRID_DAEMON_HOSTLINK_H

#include <stdbool.h>

#include "daemon/conn.h"

// Host link messages on a worker connection (HostHello makes it a host
// link). Returns false when env is for worker_handle.
bool hostlink_handle(conn *c, const Hgrid__Envelope *env);
// j is being freed: its links close once what they hold is sent.
void hostlink_forget_job(const job *j);
// c, a host link, closes: each of its workers is lost.
void hostlink_closed(conn *c, const char *reason);
// conn_send for a CONN_REMOTE: into its host's next Relay.
int hostlink_send(conn *remote, const Hgrid__Envelope *env);
// remote's Assignment joins its host's HostAssignment, which goes out once
// every worker of the host has one. 0, or -1 (remote is closing).
int hostlink_assign(conn *remote, int rank);
// remote is closed or finished: the agent closes its socket after what
// was sent before; remote is freed after this loop iteration.
void hostlink_drop(conn *remote);
// The host and device of a remote worker, for the log.
void hostlink_peer(const conn *remote, char *buf, size_t len);
// Frees what closing left (after the loop stopped).
void hostlink_shutdown(void);

#endif
