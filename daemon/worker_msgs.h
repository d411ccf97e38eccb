// Worker messages: Hello validation, then the rest handed to the job.
#ifndef HGRID_DAEMON_WORKER_MSGS_H
#define HGRID_DAEMON_WORKER_MSGS_H

#include "daemon/conn.h"

void worker_handle(conn *c, const Hgrid__Envelope *env);

#endif
