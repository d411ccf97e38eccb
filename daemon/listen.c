// The two listening sockets: TCP for workers, a Unix socket for hgridctl.
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/listen.h"

// The Unix socket's 0660 mode is the first gate; the peer's uid, from the
// kernel (SO_PEERCRED), is the second: root, gridd's own user, --allow-uid.
static bool control_peer_allowed(conn *c, uid_t *uid)
{
    uv_os_fd_t fd;
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (uv_fileno(&c->h.handle, &fd) || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len)) {
        *uid = (uid_t)-1;
        return false;
    }
    *uid = cred.uid;
    if (cred.uid == 0 || cred.uid == geteuid())
        return true;
    const gridd_options *o = &c->srv->opt;
    for (int i = 0; i < o->num_allow_uids; i++)
        if (o->allow_uids[i] == cred.uid)
            return true;
    return false;
}

// Keeps at most --max-pending worker connections waiting for their Hello:
// the one that has waited longest goes first, after one last look at its
// socket. Legitimate workers send their Hello right after connecting, so
// under a flood of silent or slow-dripping connections they are read at
// accept and never wait on this list.
static void make_room(server *srv)
{
    char message[160];
    snprintf(message, sizeof message,
             "gridd has %d connections waiting for a Hello; send Hello at once after "
             "connecting, or raise --max-pending",
             srv->opt.max_pending);
    conn *c;
    while (srv->pending > srv->opt.max_pending && (c = srv->lists[LIST_HELLO].head)) {
        conn_read_now(c);
        if (c->list == LIST_HELLO && !c->closing && !c->draining) {
            conn_refuse(c, HGRID__ERROR_CODE__ERROR_LIMIT, message);
            srv->refused_pending++;
            srv->metrics.refused[REFUSED_MAX_PENDING]++;
        }
    }
}

static void on_connection(uv_stream_t *listener, int status)
{
    server *srv = listener->data;
    if (status < 0) { // e.g. out of file descriptors: counted, logged once a second
        srv->accept_errors++;
        srv->metrics.refused[REFUSED_ACCEPT_ERROR]++;
        srv->last_accept_error = status;
        return;
    }
    conn_kind kind = listener == (uv_stream_t *)&srv->tcp ? CONN_WORKER : CONN_CONTROL;
    conn *c = conn_new(srv, kind);
    if (!c) {
        gridd_log_at(GRIDD_ERROR, NULL, -1, "out of memory accepting a connection");
        return;
    }
    int rc = kind == CONN_WORKER ? uv_tcp_init(srv->loop, &c->h.tcp)
                                 : uv_pipe_init(srv->loop, &c->h.pipe, 0);
    if (rc) {
        gridd_log_at(GRIDD_ERROR, NULL, -1, "cannot set up a connection: %s", uv_strerror(rc));
        if (kind == CONN_WORKER)
            srv->worker_connections--;
        else
            srv->control_connections--;
        free(c);
        return;
    }
    c->h.handle.data = c;
    if ((rc = uv_accept(listener, &c->h.stream))) {
        conn_close(c, uv_strerror(rc));
        return;
    }
    if (kind == CONN_WORKER)
        srv->metrics.accepted_workers++;
    else
        srv->metrics.accepted_control++;
    conn_start(c);
    uid_t uid;
    if (kind == CONN_CONTROL && !control_peer_allowed(c, &uid)) {
        conn_fail(c, HGRID__ERROR_CODE__ERROR_PERMISSION,
                  "uid %u may not control gridd (it runs as uid %u); restart gridd with "
                  "--allow-uid %u to allow it",
                  (unsigned)uid, (unsigned)geteuid(), (unsigned)uid);
        return;
    }
    if (kind == CONN_CONTROL) {
        c->authenticated = true;
        if (srv->control_connections > GRIDD_MAX_CONTROL)
            conn_fail(c, HGRID__ERROR_CODE__ERROR_LIMIT,
                      "gridd serves %d hgridctl connections at once; retry when one closes",
                      GRIDD_MAX_CONTROL);
        return;
    }
    // hgridctl stays usable however many workers connect.
    if (srv->worker_connections > srv->opt.max_connections) {
        char message[160];
        snprintf(message, sizeof message,
                 "gridd is at its limit of %d worker connections; retry later or raise "
                 "--max-connections",
                 srv->opt.max_connections);
        conn_refuse(c, HGRID__ERROR_CODE__ERROR_LIMIT, message);
        srv->refused_full++;
        srv->metrics.refused[REFUSED_MAX_CONNECTIONS]++;
        return;
    }
    conn_read_now(c);
    make_room(srv);
}

// Writes the bound port to path atomically (temp file + rename).
static int write_port_file(const char *path, int port)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    fprintf(f, "%d\n", port);
    if (fclose(f) || rename(tmp, path)) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

int listen_bind(uv_loop_t *loop, uv_tcp_t *tcp, const char *flag, const char *addr,
                const char *example)
{
    char host[256];
    const char *service;
    if (wire_split_host_port(addr, host, sizeof host, &service)) {
        fprintf(stderr, "gridd: %s '%s' is not HOST:PORT (e.g. %s)\n", flag, addr, example);
        return 1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    int gai = getaddrinfo(host, service, &hints, &res);
    if (gai) {
        fprintf(stderr, "gridd: %s '%s': %s\n", flag, addr, gai_strerror(gai));
        return 1;
    }
    uv_tcp_init(loop, tcp);
    int rc = uv_tcp_bind(tcp, res->ai_addr, 0);
    freeaddrinfo(res);
    return rc;
}

int listen_bound(uv_tcp_t *tcp, char *out, size_t len)
{
    struct sockaddr_storage sa;
    int salen = sizeof sa;
    char bound[INET6_ADDRSTRLEN] = "?", port[8] = "0";
    uv_tcp_getsockname(tcp, (struct sockaddr *)&sa, &salen);
    getnameinfo((struct sockaddr *)&sa, (socklen_t)salen, bound, sizeof bound, port, sizeof port,
                NI_NUMERICHOST | NI_NUMERICSERV);
    bool v6 = strchr(bound, ':') != NULL;
    snprintf(out, len, "%s%s%s:%s", v6 ? "[" : "", bound, v6 ? "]" : "", port);
    return atoi(port);
}

int listen_tcp(server *srv)
{
    const char *addr = srv->opt.listen;
    int rc = listen_bind(srv->loop, &srv->tcp, "--listen", addr, "0.0.0.0:7420");
    if (rc > 0)
        return -1;
    srv->tcp.data = srv;
    // Accepted sockets inherit TCP_NODELAY from the listener: one call, not one per worker.
    if (rc == 0)
        rc = uv_tcp_nodelay(&srv->tcp, 1);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&srv->tcp, 65535, on_connection);
    if (rc) {
        fprintf(stderr, "gridd: cannot listen on %s: %s (is another gridd running there?)\n",
                addr, uv_strerror(rc));
        return -1;
    }
    char bound[INET6_ADDRSTRLEN + 10];
    int port = listen_bound(&srv->tcp, bound, sizeof bound);
    gridd_log("listening for workers addr=%s", bound);
    if (srv->opt.port_file && write_port_file(srv->opt.port_file, port)) {
        fprintf(stderr, "gridd: cannot write --port-file %s: %s\n", srv->opt.port_file,
                strerror(errno));
        return -1;
    }
    return 0;
}

// Whether the directory dir holding the control socket is safe: a real
// directory of gridd's user or root that no one else may write to (else
// another user could swap the socket and collect tokens). 0, or -1 and why.
static int check_parent(const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(dir, &st)) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s is not a directory (a symbolic link?)", dir);
        return -1;
    }
    if (st.st_uid != geteuid() && st.st_uid != 0) {
        snprintf(err, errlen, "%s belongs to uid %u, not to gridd's uid %u or root", dir,
                 (unsigned)st.st_uid, (unsigned)geteuid());
        return -1;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        snprintf(err, errlen, "%s has mode %04o: others may write there", dir,
                 (unsigned)(st.st_mode & 07777));
        return -1;
    }
    return 0;
}

// Creates the socket's parent directory and its parents: 0750, or 0700 for
// the per-user fallback under /tmp.
static int make_parent(const char *path)
{
    char dir[sizeof ((struct sockaddr_un *)0)->sun_path];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0750) && errno != EEXIST)
            return -1;
        *p = '/';
    }
    mode_t mode = strncmp(dir, "/tmp/hgrid-", 11) == 0 ? 0700 : 0750;
    return mkdir(dir, mode) && errno != EEXIST ? -1 : 0;
}

// True if a process answers on the Unix socket at path.
static bool socket_answers(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    bool answers = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return answers;
}

int listen_control(server *srv)
{
    const char *path = srv->opt.control;
    if (make_parent(path)) {
        fprintf(stderr, "gridd: cannot create the directory of --control %s: %s\n", path,
                strerror(errno));
        return -1;
    }
    char dir[sizeof ((struct sockaddr_un *)0)->sun_path], why[256];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    if (check_parent(slash ? dir : ".", why, sizeof why)) {
        fprintf(stderr, "gridd: the directory of --control %s is not safe: %s; pick another "
                        "path or fix its owner and mode\n", path, why);
        return -1;
    }
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            fprintf(stderr, "gridd: --control %s exists and is not a socket; remove it or pick "
                            "another path\n", path);
            return -1;
        }
        if (socket_answers(path)) {
            fprintf(stderr, "gridd: another gridd answers on %s; stop it or use --control\n",
                    path);
            return -1;
        }
        unlink(path); // stale: left by a gridd that died
    }
    uv_pipe_init(srv->loop, &srv->control, 0);
    srv->control.data = srv;
    int rc = uv_pipe_bind(&srv->control, path);
    if (rc == 0 && chmod(path, 0660))
        rc = uv_translate_sys_error(errno);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&srv->control, 128, on_connection);
    if (rc) {
        fprintf(stderr, "gridd: cannot listen on --control %s: %s\n", path, uv_strerror(rc));
        return -1;
    }
    gridd_log("listening for hgridctl control=%s", path);
    return 0;
}
