// Whole lines on an output that several processes share (the workers of one
// host under hgrid-ssh write into one pipe): each line goes out in one write
// under a POSIX record lock on the pipe, so no other locking writer's bytes
// land inside it. A pipe keeps a write whole only up to PIPE_BUF (4 KiB);
// a worker's --json assignment is longer.
#ifndef HGRID_UTIL_WHOLE_LINES_H
#define HGRID_UTIL_WHOLE_LINES_H

#include <stddef.h>
#include <stdio.h>

// Where stdout or stderr is a pipe or socket, replaces it by a line-buffered
// stream whose every write of its buffer holds the lock (and a process-wide
// mutex: threads of one process share its POSIX locks). Lines up to 1 MiB
// go out whole. Call once, before any output. Returns how many it replaced.
int whole_lines_install(void);

// Writes text (whole lines) to out in one locked write after flushing what
// out holds: for lines of any length. Returns 0, or -1 with errno set.
int whole_lines_put(FILE *out, const char *text, size_t len);

#endif
