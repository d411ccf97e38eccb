// util/fd_table.h: fd_table_reserve grows the descriptor table at once
// (FDSize in /proc/self/status), capped at RLIMIT_NOFILE, leaves no
// descriptor open, and after it a process with a second thread opens that
// many descriptors without the table growing again (each growth of a
// shared table waits for an RCU grace period).
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "tests/check.h"
#include "util/fd_table.h"

// The process's descriptor table slots, or -1.
static long fd_size(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long n = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "FDSize: %ld", &n) == 1)
            break;
    if (f)
        fclose(f);
    return n;
}

static void *idle_thread(void *arg)
{
    (void)arg;
    pause();
    return NULL;
}

int main(void)
{
    long start = fd_size();
    if (start < 0) {
        printf("SKIP: no FDSize in /proc/self/status\n");
        return 77;
    }
    struct rlimit rl, small;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0, "getrlimit: %s", strerror(errno));
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < 8192) {
        printf("SKIP: the hard open-file limit %llu is below this test's 8192\n",
               (unsigned long long)rl.rlim_max);
        return 77;
    }
    CHECK(start < 512, "a fresh process's table already holds %ld", start);

    // Capped at the soft limit: asking for more reserves what the limit allows.
    small = rl;
    small.rlim_cur = 512;
    CHECK(setrlimit(RLIMIT_NOFILE, &small) == 0, "setrlimit: %s", strerror(errno));
    CHECK_EQ(fd_table_reserve(1 << 20), 0);
    long capped = fd_size();
    CHECK(capped >= 512 && capped < 4096, "capped at 512: FDSize %ld", capped);
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 8192 ? 8192 : rl.rlim_max;
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0, "setrlimit: %s", strerror(errno));

    // Small requests change nothing.
    CHECK_EQ(fd_table_reserve(10), 0);
    CHECK_EQ(fd_size(), capped);

    // 4,000: the table holds them now, and no descriptor stays open.
    enum { N = 4000 };
    CHECK_EQ(fd_table_reserve(N), 0);
    long reserved = fd_size();
    CHECK(reserved >= N, "FDSize %ld after reserving %d", reserved, N);
    errno = 0;
    CHECK(fcntl(N - 1, F_GETFD) == -1 && errno == EBADF, "descriptor %d left open", N - 1);
    int low = open("/dev/null", O_RDONLY);
    CHECK(low >= 0 && low < 64, "the next descriptor is %d, not a low one", low);
    if (low >= 0)
        close(low);

    // With a second thread (a shared table), opening them needs no growth.
    pthread_t t;
    CHECK(pthread_create(&t, NULL, idle_thread, NULL) == 0, "pthread_create");
    static int fds[N];
    int opened = 0;
    for (; opened < N - 64; opened++)
        if ((fds[opened] = open("/dev/null", O_RDONLY)) < 0)
            break;
    CHECK_EQ(opened, N - 64);
    CHECK_EQ(fd_size(), reserved);
    for (int i = 0; i < opened; i++)
        close(fds[i]);
    return check_summary("test_fd_table");
}
