// One worker's Assignment, built on the stack from the layout engine.
#ifndef HGRID_DAEMON_ASSIGNMENT_H
#define HGRID_DAEMON_ASSIGNMENT_H

#include "daemon/job.h"

// Sends rank's Assignment on c; 0, or -1 (c is closing).
int assignment_send(job *j, int rank, conn *c);

#endif
