// The self-test's arithmetic (see selftest_calc.h).
#include <stdio.h>
#include <stdlib.h>

#include "libhgrid/selftest_calc.h"

void selftest_expected_sums(const int *members, int n, int64_t out[2])
{
    out[0] = out[1] = 0;
    for (int i = 0; i < n; i++) {
        out[0] += members[i];
        out[1] += (int64_t)members[i] * members[i];
    }
}

// "0,1,2,3" or "0,1,2,...,63" for long groups, so the line stays one line.
static void format_members(const int *members, int n, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && at < len; i++) {
        if (i == 6 && n > 8) {
            at += (size_t)snprintf(buf + at, len - at, ",...,%d", members[n - 1]);
            break;
        }
        at += (size_t)snprintf(buf + at, len - at, "%s%d", i ? "," : "", members[i]);
    }
}

bool selftest_check_sums(const char *name, const int *members, int n, const int64_t want[2],
                         const int64_t got[2], char *line, size_t len)
{
    if (want[0] == got[0] && want[1] == got[1])
        return true;
    char list[96];
    format_members(members, n, list, sizeof list);
    snprintf(line, len, "group %s [%s]: expected sum %lld sumsq %lld, got sum %lld sumsq %lld", name,
             list, (long long)want[0], (long long)want[1], (long long)got[0], (long long)got[1]);
    return false;
}

int32_t selftest_payload(int sender, int receiver, size_t i)
{
    // Distinct per edge and per element, so a swapped peer or a shifted
    // buffer shows; fits int32 for any world size hgrid plans.
    return (int32_t)(((uint32_t)sender * 2654435761u) ^ ((uint32_t)receiver * 40503u) ^
                     (uint32_t)(i * 2246822519u)) & 0x7fffffff;
}

long selftest_payload_mismatch(const int32_t *buf, size_t count, int sender, int receiver)
{
    for (size_t i = 0; i < count; i++)
        if (buf[i] != selftest_payload(sender, receiver, i))
            return (long)i;
    return -1;
}

double selftest_allreduce_busbw(double bytes, double seconds, int n)
{
    if (n < 2 || seconds <= 0)
        return 0;
    return bytes / seconds * 2.0 * (n - 1) / n / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double selftest_median(double *v, int n)
{
    if (n <= 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void selftest_format_check(char *buf, size_t len, const char *name, bool ok, double busbw_gbps,
                           const char *detail)
{
    const char *d = detail && *detail ? detail : "";
    if (!ok)
        snprintf(buf, len, "%s FAILED: %s", name, *d ? d : "no detail");
    else if (busbw_gbps > 0)
        snprintf(buf, len, "%s ok %.1f GB/s%s%s%s", name, busbw_gbps, *d ? " (" : "", d,
                 *d ? ")" : "");
    else
        snprintf(buf, len, "%s ok%s%s%s", name, *d ? " (" : "", d, *d ? ")" : "");
}
