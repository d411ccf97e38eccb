// A training program's view of libhgrid, as small as it gets: join a job as
// an assignment-only worker (no GPU, no NCCL), read the assignment, report progress until released.
// Linked against the shared libhgrid (bin/libhgrid.so).
//   usage: hgrid-example-join HOST:PORT JOB TOKEN
// The host comes from $HGRID_HOSTNAME (else gethostname()), the device from
// LOCAL_RANK (else SLURM_LOCALID, else 0).
#include <poll.h>
#include <stdio.h>

#include "libhgrid/hgrid.h"

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: hgrid-example-join HOST:PORT JOB TOKEN\n");
        return 2;
    }
    char err[512];
    hgrid_worker *w = hgrid_connect(argv[1], err, sizeof err);
    if (!w) {
        fprintf(stderr, "hgrid-example-join: %s\n", err);
        return 1;
    }
    hgrid_hello_options hello = {.job = argv[2], .token = argv[3],
                                 .device = hgrid_default_device(),
                                 .requested_rank = hgrid_launcher_rank(), .dry_run = true};
    int st = hgrid_hello(w, &hello);
    uint64_t step = 0;
    while (st == HGRID_OK) {
        while ((st = hgrid_wait_assignment(w, -1)) == HGRID_ABORTED) {
        }
        if (st != HGRID_OK)
            break;
        const hgrid_group *tp = hgrid_group_find(w, "tp");
        printf("rank %d of %d (%s), generation %llu, tp group of %d:", hgrid_rank(w),
               hgrid_world_size(w), hgrid_module_name(w),
               (unsigned long long)hgrid_generation(w), tp->size);
        for (int i = 0; i < tp->size; i++)
            printf(" %d", tp->members[i]);
        printf("\n");
        fflush(stdout);
        st = hgrid_ready(w);
        while (st == HGRID_OK) { // a "training step" per second, then the report
            struct pollfd pfd = {.fd = hgrid_fd(w), .events = POLLIN};
            if (poll(&pfd, 1, 1000) > 0)
                st = hgrid_poll(w);
            step++;
            if (st == HGRID_OK)
                st = hgrid_heartbeat(w, step, 1.0f / (float)step, 1000.0f);
        }
        if (st == HGRID_ABORTED)
            st = HGRID_OK; // wait for the next generation
    }
    int rc = st == HGRID_RELEASED ? 0 : 1;
    if (rc)
        fprintf(stderr, "hgrid-example-join: %s\n", hgrid_error(w));
    else
        printf("released: %s\n", hgrid_reason(w));
    hgrid_close(w);
    return rc;
}
