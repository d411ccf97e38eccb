// LD_PRELOAD shim for the TCPStore benchmark: TCPStore formats every
// socket's peer with getnameinfo(), a reverse DNS lookup; this machine's
// resolver drops a query now and then, which costs 5 s. Asking for numeric
// hosts only takes our resolver out of TCPStore's time (in its favour).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <sys/socket.h>

typedef int (*getnameinfo_fn)(const struct sockaddr *, socklen_t, char *, socklen_t, char *,
                              socklen_t, int);

int getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host, socklen_t hostlen,
                char *serv, socklen_t servlen, int flags)
{
    static getnameinfo_fn real;
    if (!real)
        real = (getnameinfo_fn)dlsym(RTLD_NEXT, "getnameinfo");
    return real(sa, salen, host, hostlen, serv, servlen, flags | NI_NUMERICHOST);
}
