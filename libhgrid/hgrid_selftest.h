// libhgrid's self-test: proves every communicator of an assignment joins
// exactly the ranks the layout engine names, exercises every bridge edge,
// measures each communicator's all-reduce bus bandwidth, and reports it all
// to gridd (hgridctl status shows it per rank and group).
//
//   hgrid_selftest t;
//   st = hgrid_self_test_verify(w, comms, 30000, &t); // sums and bridge payloads
//   if (st == HGRID_OK) st = hgrid_self_test_bandwidth(w, comms, &opt, &t);
//   hgrid_self_test_send(w, &t); ... hgrid_self_test_free(&t);
#ifndef HGRID_SELFTEST_H
#define HGRID_SELFTEST_H

#include "libhgrid/hgrid_comms.h"

#define HGRID_SELFTEST_DEFAULT_BYTES (64u << 20)

typedef struct {
    size_t bytes;     // all-reduce size for the bandwidth (float32 elements)
    int warmups;      // untimed all-reduces first
    int repeats;      // timed batches of 10; the median batch's mean is reported
    int timeout_ms;   // per collective: a peer that never joins aborts the test
} hgrid_selftest_options;

typedef struct {
    hgrid_check *checks;
    int count;
    bool all_ok;
} hgrid_selftest;

// Defaults: 64 MiB, 3 warm-ups, 5 batches, 30 s per collective.
void hgrid_self_test_defaults(hgrid_selftest_options *opt);
// Runs every group's (rank, rank^2) all-reduce and every bridge edge's
// send/recv, filling t. HGRID_OK when all results are right; on a wrong
// one HGRID_ERR_MISMATCH with hgrid_error(w) naming the group, the
// expected and the got values. Negative (or HGRID_ABORTED/RELEASED) when a
// call failed or a collective was not done within timeout_ms.
int hgrid_self_test_verify(hgrid_worker *w, const hgrid_comms *c, int timeout_ms,
                           hgrid_selftest *t);
// Adds the bus bandwidth of every distinct communicator to t's checks.
int hgrid_self_test_bandwidth(hgrid_worker *w, const hgrid_comms *c,
                              const hgrid_selftest_options *opt, hgrid_selftest *t);
// Sends t to gridd as SelfTestReport for the current generation.
int hgrid_self_test_send(hgrid_worker *w, const hgrid_selftest *t);
void hgrid_self_test_free(hgrid_selftest *t);

#endif
