// gridd's Prometheus endpoint: GET /metrics over a minimal HTTP/1.1 server
// on gridd's own loop.
#ifndef HGRID_DAEMON_METRICS_HTTP_H
#define HGRID_DAEMON_METRICS_HTTP_H

#include "daemon/gridd.h"

#define METRICS_HTTP_MAX_CONNS 8      // at the cap the oldest connection is dropped
#define METRICS_HTTP_MAX_REQUEST 4096 // request line and headers (bytes)
#define METRICS_HTTP_TIMEOUT_MS 5000  // from accept to the response written

// Listens on --metrics (if given; logs the bound address). Returns 0, or -1
// after printing why.
int metrics_listen(server *srv);

#endif
