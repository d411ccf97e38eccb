// libFuzzer: bytes as gridd's state file through state_decode. The first
// byte picks how: odd, the rest is a payload put behind a valid header (so
// that inputs reach the job records past the checksum); even, the rest is
// the whole file. A state that decodes must encode to bytes that decode
// and encode to the same bytes again.
#include <stdlib.h>
#include <string.h>

#include "daemon/core/state.h"

static void free_records(job_record *jobs, int n)
{
    for (int i = 0; i < n; i++)
        roster_free(&jobs[i].roster);
    free(jobs);
}

// The file's bytes for decoded records (malloc'd); aborts if encoding fails.
static uint8_t *encode(job_record *jobs, int n, size_t *len)
{
    const job_record **recs = malloc(sizeof *recs * (size_t)(n + 1));
    if (!recs)
        abort();
    for (int i = 0; i < n; i++)
        recs[i] = &jobs[i];
    uint8_t *out;
    if (state_encode(recs, n, &out, len))
        abort();
    free(recs);
    return out;
}

static uint8_t *with_header(const uint8_t *payload, size_t n, size_t *len)
{
    uint8_t *file = malloc(STATE_HEADER + n + 1);
    if (!file)
        abort();
    uint32_t crc = state_crc32(payload, n);
    memcpy(file, STATE_MAGIC, 8);
    for (int i = 0; i < 4; i++) {
        file[8 + i] = (uint8_t)(STATE_VERSION >> (24 - 8 * i));
        file[12 + i] = (uint8_t)(crc >> (24 - 8 * i));
    }
    for (int i = 0; i < 8; i++)
        file[16 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
    if (n)
        memcpy(file + STATE_HEADER, payload, n);
    *len = STATE_HEADER + n;
    return file;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t len = size - 1;
    uint8_t *file = data[0] & 1 ? with_header(data + 1, len, &len) : NULL;
    job_record *jobs;
    int n;
    char err[512];
    int rc = state_decode(file ? file : data + 1, len, &jobs, &n, err, sizeof err);
    free(file);
    if (rc)
        return 0;
    size_t len1, len2;
    uint8_t *once = encode(jobs, n, &len1);
    free_records(jobs, n);
    if (state_decode(once, len1, &jobs, &n, err, sizeof err))
        abort(); // gridd would not read back what it wrote
    uint8_t *twice = encode(jobs, n, &len2);
    free_records(jobs, n);
    if (len1 != len2 || memcmp(once, twice, len1))
        abort(); // a round trip changed the records
    free(once);
    free(twice);
    return 0;
}
