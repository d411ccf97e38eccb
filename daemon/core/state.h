// gridd's saved state: every job's name, token, layout, generation, sticky
// rank map and, once it ended, its outcome, in one versioned, checksummed file written atomically
// (temp file, fsync, rename, fsync of the directory) on every change.
#ifndef HGRID_DAEMON_STATE_H
#define HGRID_DAEMON_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/roster.h"
#include "layout/layout.h"

#define JOB_NAME_MAX 64
#define JOB_TOKEN_MAX 256
#define STATE_FILE "gridd.state"
#define STATE_TEMP_TEMPLATE ".gridd.state.XXXXXX" // mkostemp's, in the same directory
#define STATE_MAGIC "hgridst\n"
#define STATE_VERSION 1u
// Ranks over all jobs at most, restored and submitted alike: each costs
// ~100 bytes of rosters, so neither a damaged file nor submits can make
// gridd exhaust memory, and what gridd acknowledges it can load.
#define STATE_MAX_RANKS (1 << 22)
#define STATE_HEADER 24 // magic 8, version 4, CRC-32 of the payload 4, its length 8
#define STATE_REASON_MAX 255 // bytes of an ended job's reason

// The part of a job that outlives gridd.
typedef struct {
    char name[JOB_NAME_MAX + 1];
    uint8_t token[JOB_TOKEN_MAX];
    uint32_t token_len;
    hg_layout_spec spec;
    uint64_t generation;
    roster roster; // only an assigned roster's hosts and rank map are saved
    uint32_t outcome;      // Hgrid__Outcome; 0 (UNSPECIFIED) while the job runs
    int64_t ended_unix_ms; // when it ended (wall clock), once it did
    char end_reason[STATE_REASON_MAX + 1];
} job_record;

// 1-64 characters of [A-Za-z0-9._-].
bool state_valid_job_name(const char *name);
// Whether token is j's, in time that depends on j's token length only, not
// on the offered bytes or where they differ.
bool state_token_matches(const job_record *j, const uint8_t *token, size_t len);

// Writes every record to DIR/gridd.state. Returns 0 or -1 with a reason.
int state_save(const char *dir, const job_record *const *jobs, int num_jobs, char *err,
               size_t errlen);
// Whether gridd may keep its state in DIR: a directory of gridd's user that
// no one else can write to. Removes temporary files a crash left there.
// Returns 0 or -1 with a reason.
int state_dir_check(const char *dir, char *err, size_t errlen);
// Reads DIR/gridd.state into a new array of records (rosters initialised:
// restored if they were assigned, else empty). A missing file is no jobs.
// Returns 0 or -1 with a reason (corrupt, wrong version, unreadable).
int state_load(const char *dir, job_record **jobs, int *num_jobs, char *err, size_t errlen);

// The state file's bytes for jobs (malloc'd) and the reverse, and the
// checksum; exposed for tests. state_decode returns 0 or -1 with a reason.
uint32_t state_crc32(const uint8_t *p, size_t n);
int state_encode(const job_record *const *jobs, int num_jobs, uint8_t **out, size_t *len);
int state_decode(const uint8_t *data, size_t len, job_record **jobs, int *num_jobs, char *err,
                 size_t errlen);

#endif
