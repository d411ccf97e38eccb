// LD_PRELOAD shim for the TCPStore benchmark: takes two artifacts of a
// one-machine benchmark out of TCPStore's time (both in its favour).
// 1. TCPStore formats every socket's peer with getnameinfo(), a reverse DNS
//    lookup; this machine's resolver drops a query now and then (5 s each).
//    Hosts are asked for numerically.
// 2. The kernel picks a source port by walking the ports already connected
//    to the same destination, O(N^2) for N connections from one address.
//    hgrid-swarm spreads its connections over 127.x source addresses; this
//    does the same for TCPStore's clients.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SOURCE_SPREAD 128 // connections per source address, as in hgrid-swarm

typedef int (*getnameinfo_fn)(const struct sockaddr *, socklen_t, char *, socklen_t, char *,
                              socklen_t, int);
typedef int (*connect_fn)(int, const struct sockaddr *, socklen_t);

int getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host, socklen_t hostlen,
                char *serv, socklen_t servlen, int flags)
{
    static getnameinfo_fn real;
    if (!real)
        real = (getnameinfo_fn)dlsym(RTLD_NEXT, "getnameinfo");
    return real(sa, salen, host, hostlen, serv, servlen, flags | NI_NUMERICHOST);
}

// The IPv4 loopback address addr connects to (TCPStore's clients use IPv6
// sockets with v4-mapped addresses), or 0.
static uint32_t loopback_v4(const struct sockaddr *addr)
{
    uint32_t a = 0;
    if (addr->sa_family == AF_INET)
        a = ntohl(((const struct sockaddr_in *)addr)->sin_addr.s_addr);
    else if (addr->sa_family == AF_INET6 &&
             IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)addr)->sin6_addr))
        memcpy(&a, ((const struct sockaddr_in6 *)addr)->sin6_addr.s6_addr + 12, 4), a = ntohl(a);
    return a >> 24 == 127 ? a : 0;
}

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    static connect_fn real;
    static unsigned count;
    if (!real)
        real = (connect_fn)dlsym(RTLD_NEXT, "connect");
    if (loopback_v4(addr)) {
        int one = 1;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        uint32_t slot = ((uint32_t)getpid() * 1024u + count++ / SOURCE_SPREAD) & 0xffffu;
        uint32_t src = htonl(127u << 24 | 17u << 16 | slot);
        if (addr->sa_family == AF_INET) {
            struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = src};
            bind(fd, (struct sockaddr *)&sa, sizeof sa);
        } else {
            struct sockaddr_in6 sa = {.sin6_family = AF_INET6};
            sa.sin6_addr.s6_addr[10] = sa.sin6_addr.s6_addr[11] = 0xff;
            memcpy(sa.sin6_addr.s6_addr + 12, &src, 4);
            bind(fd, (struct sockaddr *)&sa, sizeof sa);
        }
    }
    return real(fd, addr, len);
}
