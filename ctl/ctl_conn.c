// hgridctl's control connection: errors name the socket and what to do.
#include "ctl/ctl_conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl/ctl_error.h"
#include "wire/wire.h"

// What to try when the socket cannot be reached, by errno.
static const char *connect_hint(int err)
{
    switch (err) {
    case ENOENT:
        return "is gridd running? start it, or name its --control socket with --socket PATH "
               "or HGRID_CONTROL=PATH";
    case ECONNREFUSED:
        return "a socket left by a gridd that is gone: start gridd again, or name another "
               "socket with --socket PATH or HGRID_CONTROL=PATH";
    case EACCES:
    case EPERM:
        return "the socket is mode 0660: run as gridd's user or a member of its group";
    default:
        return "is gridd running? name its control socket with --socket PATH or "
               "HGRID_CONTROL=PATH";
    }
}

// Connects to the Unix socket at path; the descriptor, or -1 with errno set.
static int connect_unix(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
        return fd;
    int saved = errno;
    if (fd >= 0)
        close(fd);
    errno = saved;
    return -1;
}

int ctl_connect(const ctl_options *opt, char *path, size_t pathlen)
{
    const char *env = getenv("HGRID_CONTROL");
    const char *from = opt->socket_path ? "from --socket"
                       : env && *env    ? "from $HGRID_CONTROL"
                                        : "the default path";
    if (opt->socket_path)
        snprintf(path, pathlen, "%s", opt->socket_path);
    else
        wire_default_control_path(path, pathlen);
    int fd = connect_unix(path);
    int saved = errno;
    // Nothing named a socket and the user's own is absent: the system gridd's.
    bool named = opt->socket_path || (env && *env);
    bool try_system = fd < 0 && saved == ENOENT && !named && strcmp(path, CTL_SYSTEM_SOCKET) != 0;
    if (try_system) {
        fd = connect_unix(CTL_SYSTEM_SOCKET);
        if (fd >= 0 || errno != ENOENT) {
            saved = errno;
            snprintf(path, pathlen, "%s", CTL_SYSTEM_SOCKET);
            from = "the system gridd's";
            try_system = false;
        }
    }
    if (fd >= 0)
        return fd;
    if (saved == ENAMETOOLONG)
        return ctl_fail(-1, CTL_ERR_UNREACHABLE,
                        "hgridctl: control socket path %.200s... (%s) is too long for a Unix "
                        "socket; use a shorter --socket PATH", path, from);
    return ctl_fail(-1, CTL_ERR_UNREACHABLE,
                    "hgridctl: cannot connect to gridd at %s (%s%s): %s (%s)", path, from,
                    try_system ? "; " CTL_SYSTEM_SOCKET " is absent too" : "", strerror(saved),
                    connect_hint(saved));
}

int ctl_fail_unexpected(const Hgrid__Envelope *reply)
{
    return ctl_fail(CTL_FAILED, CTL_ERR_BAD_REPLY,
                    "hgridctl: unexpected reply %d from gridd (mismatched hgrid builds? use the "
                    "hgridctl of gridd's build)", (int)reply->msg_case);
}

Hgrid__Envelope *ctl_request(const ctl_options *opt, const Hgrid__Envelope *req,
                             Hgrid__Envelope__MsgCase want)
{
    char path[4096], err[512];
    int fd = ctl_connect(opt, path, sizeof path);
    if (fd < 0)
        return NULL;
    Hgrid__Envelope *reply = NULL;
    if (wire_send(fd, req))
        ctl_fail(CTL_FAILED, CTL_ERR_DISCONNECTED,
                 "hgridctl: cannot send to gridd at %s: %s (is it still running? see its log)",
                 path, strerror(errno));
    else if (!(reply = wire_recv(fd, CTL_REPLY_MAX_FRAME, CTL_REPLY_TIMEOUT_MS, err, sizeof err)))
        ctl_fail(CTL_FAILED, CTL_ERR_DISCONNECTED,
                 "hgridctl: no reply from gridd at %s: %s (is it still running? see its log)",
                 path, err);
    close(fd);
    if (!reply || reply->msg_case == want)
        return reply;
    if (reply->msg_case == HGRID__ENVELOPE__MSG_ERROR)
        ctl_fail_refused(reply->error);
    else
        ctl_fail_unexpected(reply);
    wire_free_envelope(reply);
    return NULL;
}
