// A training program's view of libhgrid, as small as it gets: join a job as
// an assignment-only worker (no GPU, no NCCL), read the assignment, report
// progress until released; with STEPS, report done after that many steps
// and wait for the job's end.
// Linked against the shared libhgrid (bin/libhgrid.so).
//   usage: hgrid-example-join HOST:PORT JOB TOKEN [STEPS]
// The host comes from $HGRID_HOSTNAME (else gethostname()), the device from
// LOCAL_RANK (else SLURM_LOCALID, else 0).
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libhgrid/hgrid.h"

int main(int argc, char **argv)
{
    static const char usage[] =
        "usage: hgrid-example-join [--] HOST:PORT JOB TOKEN [STEPS]\n"
        "Joins JOB on gridd at HOST:PORT as a dry-run worker, prints its assignment and\n"
        "reports a step a second until gridd releases the job; with STEPS, reports done\n"
        "after that many steps.\n"
        "  -h, --help  print this help and exit\n"
        "  --version   print the program's name and version and exit\n"
        "Exit status: 0 released, 1 refused or lost, 2 usage error.\n";
    int first = 1;
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(usage, stdout);
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "--version")) {
        printf("hgrid-example-join (hgrid) %s\n", hgrid_version());
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "--"))
        first = 2;
    if (first == 1 && argc > 1 && argv[1][0] == '-') {
        fprintf(stderr, "hgrid-example-join: unknown option '%.64s' (it takes --help, --version "
                        "and --; try 'hgrid-example-join --help')\n", argv[1]);
        return 2;
    }
    if (argc - first != 3 && argc - first != 4) {
        fprintf(stderr, "%s", usage);
        return 2;
    }
    argv += first - 1;
    uint64_t steps = 0;
    if (argc - first == 4) {
        char *end;
        unsigned long long n = strtoull(argv[4], &end, 10);
        if (argv[4][0] < '0' || argv[4][0] > '9' || *end || n == 0 || n > 1000000000ULL) {
            fprintf(stderr, "hgrid-example-join: STEPS '%.64s' is not a whole number in [1, "
                            "1000000000] (try 'hgrid-example-join --help')\n", argv[4]);
            return 2;
        }
        steps = n;
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
            if (st == HGRID_OK && steps && step >= steps) { // trained: the others may be too
                st = hgrid_done(w, step);
                if (st == HGRID_OK)
                    st = hgrid_wait_end(w, 1000, -1);
            }
        }
        if (st == HGRID_ABORTED)
            st = HGRID_OK; // wait for the next generation
    }
    int rc = st == HGRID_RELEASED ? hgrid_job_outcome(w) == HGRID_OUTCOME_FAILED : 1;
    if (st != HGRID_RELEASED)
        fprintf(stderr, "hgrid-example-join: %s\n", hgrid_error(w));
    else
        printf("released: %s\n", hgrid_reason(w));
    hgrid_close(w);
    return rc;
}
