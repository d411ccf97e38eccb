// gridd's log: one line per event on stderr, with its level and the job,
// rank and generation it concerns.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/gridd.h"

#include "daemon/job.h"

gridd_level gridd_log_max = GRIDD_NOTICE;
static bool to_journal;

static const char *const level_names[] = {"error", "warn", "notice", "info", "debug"};
static const int syslog_priorities[] = {3, 4, 5, 6, 7};

// systemd sets JOURNAL_STREAM to "DEVICE:INODE" of the stream it connected;
// stderr is the journal only if it is still that stream (not redirected).
static bool stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    return js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
           (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void gridd_log_init(int verbosity)
{
    gridd_log_max = verbosity >= 2 ? GRIDD_DEBUG : verbosity == 1 ? GRIDD_INFO : GRIDD_NOTICE;
    to_journal = stderr_is_journal();
}

static void vlog(gridd_level level, const job *j, int rank, const char *fmt, va_list ap)
{
    char line[1024];
    size_t n = 0;
    if (to_journal) {
        n = (size_t)snprintf(line, sizeof line, "<%d>", syslog_priorities[level]);
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
        n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ ", ts.tv_nsec / 1000000);
    }
    n += (size_t)snprintf(line + n, sizeof line - n, "gridd: %s ", level_names[level]);
    if (j)
        n += (size_t)snprintf(line + n, sizeof line - n, "job=%s ", j->rec.name);
    if (rank >= 0)
        n += (size_t)snprintf(line + n, sizeof line - n, "rank=%d ", rank);
    if (j)
        n += (size_t)snprintf(line + n, sizeof line - n, "gen=%llu ",
                              (unsigned long long)j->rec.generation);
    size_t text = n;
    vsnprintf(line + n, sizeof line - n, fmt, ap);
    // Peers supply some of the text (a Leave's reason): one event stays one line.
    for (char *p = line + text; *p; p++)
        if ((unsigned char)*p < ' ' || (unsigned char)*p >= 0x7f) // C0, DEL, C1 and non-ASCII
            *p = '?';
    fprintf(stderr, "%s\n", line);
}

void gridd_log_at(gridd_level level, const job *j, int rank, const char *fmt, ...)
{
    if (!gridd_log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, j, rank, fmt, ap);
    va_end(ap);
}

void gridd_log(const char *fmt, ...)
{
    if (!gridd_log_enabled(GRIDD_NOTICE))
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(GRIDD_NOTICE, NULL, -1, fmt, ap);
    va_end(ap);
}

int64_t gridd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
