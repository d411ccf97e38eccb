// The monotonic clock in seconds, for timeouts and step times.
#ifndef HGRID_UTIL_CLOCK_H
#define HGRID_UTIL_CLOCK_H

#include <time.h>

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
