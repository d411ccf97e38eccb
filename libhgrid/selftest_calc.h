// The self-test's arithmetic, free of CUDA and NCCL so CPU tests cover it:
// what a group's all-reduce must return, what a bridge payload must hold,
// nccl-tests' bus bandwidth, and the one-line verdicts people read.
#ifndef HGRID_SELFTEST_CALC_H
#define HGRID_SELFTEST_CALC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Each rank contributes (rank, rank^2); the all-reduce sum over a group's
// members proves who took part (two equal multisets are unlikely to match
// in both sums by accident, and a missing or extra rank never does).
void selftest_expected_sums(const int *members, int n, int64_t out[2]);

// Compares got with want for group `name`. Returns true when equal; else
// writes "group NAME [members]: expected sum S sumsq Q, got sum S' sumsq Q'"
// into line.
bool selftest_check_sums(const char *name, const int *members, int n, const int64_t want[2],
                         const int64_t got[2], char *line, size_t len);

// Element i of the bridge payload that rank `sender` sends to rank `receiver`.
int32_t selftest_payload(int sender, int receiver, size_t i);
// Index of the first element of buf (count elements) that differs from the
// payload sender -> receiver, or -1 when all match.
long selftest_payload_mismatch(const int32_t *buf, size_t count, int sender, int receiver);

// nccl-tests' all-reduce bus bandwidth in GB/s: algbw * 2(n-1)/n, with
// algbw = bytes / seconds. 0 for a one-rank group.
double selftest_allreduce_busbw(double bytes, double seconds, int n);
// Median of v[0..n) (sorts v); 0 for n == 0.
double selftest_median(double *v, int n);

// One check as people read it (hgridctl status, hgrid-worker):
// "tp ok 356.2 GB/s (members 0,1)" or "tp FAILED: <detail>".
void selftest_format_check(char *buf, size_t len, const char *name, bool ok, double busbw_gbps,
                           const char *detail);

#endif
