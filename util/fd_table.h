// The process's descriptor table grown ahead of a burst of connections.
#ifndef HGRID_UTIL_FD_TABLE_H
#define HGRID_UTIL_FD_TABLE_H

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

// Makes the descriptor table hold descriptors 0..n-1 now. The kernel
// grows it by doubling as descriptors are opened, and in a process with
// more than one thread each growth waits for an RCU grace period
// (synchronize_rcu in expand_fdtable; 10-20 ms on a 2-core VM), stalling
// the accept() or socket() that needed the room: opening 2,048 sockets
// waited 4 times. Called while the process has one thread, growing costs
// no wait. n is capped at RLIMIT_NOFILE. Returns 0, or -1 (errno set) if
// no descriptor could be opened.
static inline int fd_table_reserve(int n)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)n > rl.rlim_cur)
        n = (int)rl.rlim_cur;
    if (n <= 64) // the table a process starts with
        return 0;
    int base = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (base < 0)
        return -1;
    int high = fcntl(base, F_DUPFD_CLOEXEC, n - 1);
    close(base);
    if (high < 0)
        return -1;
    close(high);
    return 0;
}

#endif
