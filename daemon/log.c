// gridd's log: one line per event on stderr.
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "daemon/gridd.h"

void gridd_log(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "gridd: %s\n", line);
}

int64_t gridd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
