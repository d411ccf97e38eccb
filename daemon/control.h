// hgridctl's requests on the control socket: submit, list, show, cancel.
#ifndef HGRID_DAEMON_CONTROL_H
#define HGRID_DAEMON_CONTROL_H

#include "daemon/conn.h"

void control_handle(conn *c, const Hgrid__Envelope *env);

#endif
