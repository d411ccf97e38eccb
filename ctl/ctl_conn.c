// hgridctl's control connection: errors name the socket and what to do.
#include "ctl/ctl_conn.h"

#include <errno.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

// Whether the process answering on fd may hear this user's requests (a
// submit carries the job's token): root, this user, the "hgrid" service
// account gridd.service runs as, or $HGRID_GRIDD_UID.
static bool peer_trusted(int fd, unsigned *peer_uid)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len)) {
        *peer_uid = (unsigned)-1;
        return false;
    }
    *peer_uid = (unsigned)cred.uid;
    if (cred.uid == 0 || cred.uid == getuid())
        return true;
    const struct passwd *service = getpwnam(CTL_SERVICE_USER);
    if (service && service->pw_uid == cred.uid)
        return true;
    const char *allowed = getenv("HGRID_GRIDD_UID");
    char *end;
    unsigned long uid = allowed && *allowed ? strtoul(allowed, &end, 10) : 0;
    return allowed && *allowed && *end == '\0' && uid == cred.uid;
}

int ctl_connect(const ctl_options *opt, char *path, size_t pathlen)
{
    const char *env = getenv("HGRID_CONTROL");
    bool named = opt->socket_path || (env && *env);
    const char *from = opt->socket_path ? "from --socket"
                       : env && *env    ? "from $HGRID_CONTROL"
                                        : "the default path";
    struct stat st;
    // Nothing named a socket: the system gridd's first, then the user's own.
    bool system_first = !named && stat(CTL_SYSTEM_SOCKET, &st) == 0;
    if (opt->socket_path)
        snprintf(path, pathlen, "%s", opt->socket_path);
    else if (system_first)
        snprintf(path, pathlen, "%s", CTL_SYSTEM_SOCKET);
    else
        wire_default_control_path(path, pathlen);
    if (system_first)
        from = "the system gridd's";
    int fd = connect_unix(path);
    int saved = errno;
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
    unsigned peer_uid;
    if (fd >= 0 && !peer_trusted(fd, &peer_uid)) {
        close(fd);
        return ctl_fail(-1, CTL_ERR_UNREACHABLE,
                        "hgridctl: the control socket %s (%s) is served by uid %u, neither root, "
                        "you (uid %u) nor the hgrid service account; not sending it anything "
                        "(set HGRID_GRIDD_UID=%u if that user runs your gridd)", path, from, peer_uid, (unsigned)getuid(),
                        peer_uid);
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

uint32_t ctl_reply_max(Hgrid__Envelope__MsgCase want)
{
    return want == HGRID__ENVELOPE__MSG_JOB_INFO   ? CTL_REPLY_MAX_JOB_INFO
           : want == HGRID__ENVELOPE__MSG_JOB_LIST ? CTL_REPLY_MAX_JOB_LIST
                                                   : CTL_REPLY_MAX_OTHER;
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
    else if (!(reply = wire_recv(fd, ctl_reply_max(want), CTL_REPLY_TIMEOUT_MS, err, sizeof err)))
        ctl_fail(CTL_FAILED, CTL_ERR_DISCONNECTED,
                 "hgridctl: no reply from gridd at %s: %s (is it still running? see its log)",
                 path, err);
    close(fd);
    wire_printable_envelope(reply); // gridd's strings reach the terminal
    if (!reply || reply->msg_case == want)
        return reply;
    if (reply->msg_case == HGRID__ENVELOPE__MSG_ERROR)
        ctl_fail_refused(reply->error);
    else
        ctl_fail_unexpected(reply);
    wire_free_envelope(reply);
    return NULL;
}
