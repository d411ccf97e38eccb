// hgridctl's control connection: errors name the socket and what to do.
#include "client/ctl_conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "client/ctl_error.h"
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

int ctl_connect(const ctl_options *opt, char *path, size_t pathlen)
{
    const char *from = "from --socket";
    const char *env = getenv("HGRID_CONTROL");
    if (opt->socket_path)
        snprintf(path, pathlen, "%s", opt->socket_path);
    else
        wire_default_control_path(path, pathlen);
    if (!opt->socket_path)
        from = env && *env ? "from $HGRID_CONTROL" : "the default path";
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return ctl_fail(-1, CTL_ERR_UNREACHABLE,
                        "hgridctl: control socket path %.200s... (%s) is longer than %zu bytes; "
                        "use a shorter --socket PATH", path, from, sizeof sa.sun_path - 1);
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
        return fd;
    int saved = errno;
    if (fd >= 0)
        close(fd);
    return ctl_fail(-1, CTL_ERR_UNREACHABLE, "hgridctl: cannot connect to gridd at %s (%s): %s (%s)",
                    path, from, strerror(saved), connect_hint(saved));
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
