// Locked whole-line output for pipes shared between processes.
#include "util/whole_lines.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define WHOLE_LINES_BUFFER (1 << 20)

typedef struct {
    int fd;
    FILE *stream; // the stream made for fd, or NULL
} shared_output;

static shared_output outputs[2] = {{.fd = STDOUT_FILENO}, {.fd = STDERR_FILENO}};
static pthread_mutex_t write_mutex = PTHREAD_MUTEX_INITIALIZER;

// Only pipes and sockets are shared a write at a time; a terminal or a file
// keeps plain stdio.
static bool is_shared_kind(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
}

static void set_lock(int fd, short type)
{
    struct flock lock = {.l_type = type, .l_whence = SEEK_SET};
    // No lock (ENOLCK, a kind that takes none): the write goes out unlocked.
    while (fcntl(fd, F_SETLKW, &lock) < 0 && errno == EINTR)
        ;
}

static int locked_write(int fd, const char *text, size_t len)
{
    int rc = 0;
    pthread_mutex_lock(&write_mutex);
    set_lock(fd, F_WRLCK);
    for (size_t at = 0; at < len;) {
        ssize_t n = write(fd, text + at, len - at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = -1;
            break;
        }
        at += (size_t)n;
    }
    int saved = errno;
    set_lock(fd, F_UNLCK);
    pthread_mutex_unlock(&write_mutex);
    errno = saved;
    return rc;
}

static ssize_t cookie_write(void *cookie, const char *buf, size_t size)
{
    const shared_output *o = cookie;
    return locked_write(o->fd, buf, size) == 0 ? (ssize_t)size : -1;
}

int whole_lines_install(void)
{
    int replaced = 0;
    for (int i = 0; i < 2; i++) {
        shared_output *o = &outputs[i];
        if (o->stream || !is_shared_kind(o->fd))
            continue;
        // glibc ignores setvbuf's size without a buffer (it would take 8 KiB):
        // the stream's buffer is given, and lives as long as the process.
        char *buffer = malloc(WHOLE_LINES_BUFFER);
        FILE *f = buffer ? fopencookie(o, "w", (cookie_io_functions_t){.write = cookie_write}) : NULL;
        if (!f || setvbuf(f, buffer, _IOLBF, WHOLE_LINES_BUFFER) != 0) {
            if (f)
                fclose(f);
            free(buffer);
            continue; // no memory: plain stdio, as before
        }
        FILE *old = i == 0 ? stdout : stderr;
        fflush(old);
        o->stream = f;
        if (i == 0)
            stdout = f;
        else
            stderr = f;
        replaced++;
    }
    return replaced;
}

int whole_lines_put(FILE *out, const char *text, size_t len)
{
    if (fflush(out) != 0)
        return -1;
    for (int i = 0; i < 2; i++)
        if (outputs[i].stream == out)
            return locked_write(outputs[i].fd, text, len);
    int fd = fileno(out);
    if (fd < 0) {
        errno = EBADF;
        return -1;
    }
    return locked_write(fd, text, len);
}
