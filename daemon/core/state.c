// The state file: magic, format version, CRC-32 and length of the payload,
// then the payload (big-endian integers, length-prefixed strings, layouts
// as packed hgrid.Layout messages): the jobs, then optional sections (tag 4,
// length 4, body; files written before sections existed have none, and
// unknown tags are skipped).
#include "daemon/core/state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wire/wire.h"

// The jobs that ended: count 4, then per job its index 4, outcome 4,
// ended_unix_ms 8 and reason.
#define SECTION_ENDS 1u

// Slicing by 8 (the same CRC-32 as zlib's): a save of millions of ranks
// checksums tens of MB on gridd's loop.
uint32_t state_crc32(const uint8_t *p, size_t n)
{
    static uint32_t table[8][256];
    if (!table[0][1]) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
            table[0][i] = c;
        }
        for (uint32_t i = 0; i < 256; i++)
            for (int t = 1; t < 8; t++)
                table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
    }
    uint32_t c = 0xffffffffu;
    for (; n >= 8; p += 8, n -= 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                           (uint32_t)p[3] << 24);
        c = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^
            table[4][lo >> 24] ^ table[3][p[4]] ^ table[2][p[5]] ^ table[1][p[6]] ^
            table[0][p[7]];
    }
    for (; n > 0; p++, n--)
        c = table[0][(c ^ *p) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

bool state_valid_job_name(const char *name)
{
    size_t n = strlen(name);
    if (n < 1 || n > JOB_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", name[i]))
            return false;
    return true;
}

bool state_token_matches(const job_record *j, const uint8_t *token, size_t len)
{
    uint8_t diff = len != j->token_len;
    for (size_t i = 0; i < j->token_len; i++)
        diff |= (uint8_t)(j->token[i] ^ (i < len ? token[i] : 0));
    return diff == 0;
}

// ---- writing

typedef struct {
    uint8_t *data;
    size_t len, cap;
    bool failed;
} buffer;

static uint8_t *reserve(buffer *b, size_t n)
{
    if (b->failed)
        return NULL;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *data = realloc(b->data, cap);
        if (!data) {
            b->failed = true;
            return NULL;
        }
        b->data = data;
        b->cap = cap;
    }
    uint8_t *p = b->data + b->len;
    b->len += n;
    return p;
}

static void put_uint(buffer *b, uint64_t v, int bytes)
{
    uint8_t *p = reserve(b, (size_t)bytes);
    for (int i = 0; p && i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
}

static void put_bytes(buffer *b, const void *data, uint32_t len)
{
    put_uint(b, len, 4);
    uint8_t *p = reserve(b, len);
    if (p && len)
        memcpy(p, data, len);
}

static void put_layout(buffer *b, const hg_layout_spec *spec)
{
    wire_layout wl;
    wire_layout_from_spec(spec, &wl);
    size_t n = hgrid__layout__get_packed_size(&wl.layout);
    put_uint(b, n, 4);
    uint8_t *p = reserve(b, n);
    if (p && hgrid__layout__pack(&wl.layout, p) != n)
        b->failed = true;
}

static void put_job(buffer *b, const job_record *j)
{
    const roster *r = &j->roster;
    put_bytes(b, j->name, (uint32_t)strlen(j->name));
    put_bytes(b, j->token, j->token_len);
    put_layout(b, &j->spec);
    put_uint(b, j->generation, 8);
    put_uint(b, r->assigned, 1);
    put_uint(b, (uint32_t)r->world_size, 4);
    if (!r->assigned)
        return;
    // Only the hosts some rank is on: hosts that workers left from stay
    // in memory a while but never reach the file (the loader's bound).
    int *renumber = malloc(sizeof *renumber * (size_t)(r->num_hosts ? r->num_hosts : 1));
    if (!renumber) {
        b->failed = true;
        return;
    }
    for (int h = 0; h < r->num_hosts; h++)
        renumber[h] = -1;
    for (int i = 0; i < r->world_size; i++)
        renumber[r->slots[i].host] = 0;
    uint32_t used = 0;
    for (int h = 0; h < r->num_hosts; h++)
        if (renumber[h] == 0)
            renumber[h] = (int)used++;
    put_uint(b, used, 4);
    for (int h = 0; h < r->num_hosts; h++)
        if (renumber[h] >= 0)
            put_bytes(b, r->hosts[h], (uint32_t)strlen(r->hosts[h]));
    uint8_t *p = reserve(b, 8 * (size_t)r->world_size); // the rank map, written in one pass
    for (int i = 0; p && i < r->world_size; i++, p += 8) {
        uint32_t h = (uint32_t)renumber[r->slots[i].host], d = (uint32_t)r->slots[i].device;
        p[0] = (uint8_t)(h >> 24), p[1] = (uint8_t)(h >> 16), p[2] = (uint8_t)(h >> 8);
        p[3] = (uint8_t)h, p[4] = (uint8_t)(d >> 24), p[5] = (uint8_t)(d >> 16);
        p[6] = (uint8_t)(d >> 8), p[7] = (uint8_t)d;
    }
    free(renumber);
}

static void put_ends(buffer *b, const job_record *const *jobs, int num_jobs)
{
    uint32_t ended = 0;
    for (int i = 0; i < num_jobs; i++)
        ended += jobs[i]->outcome != 0;
    if (ended == 0)
        return;
    put_uint(b, SECTION_ENDS, 4);
    size_t at = b->len;
    put_uint(b, 0, 4); // the length, filled in below
    put_uint(b, ended, 4);
    for (int i = 0; i < num_jobs; i++) {
        const job_record *j = jobs[i];
        if (j->outcome == 0)
            continue;
        put_uint(b, (uint32_t)i, 4);
        put_uint(b, j->outcome, 4);
        put_uint(b, (uint64_t)j->ended_unix_ms, 8);
        put_bytes(b, j->end_reason, (uint32_t)strlen(j->end_reason));
    }
    if (b->failed)
        return;
    buffer len = {b->data + at, 0, 4, false};
    put_uint(&len, b->len - at - 4, 4);
}

// At least the bytes state_encode writes, so that it allocates once (a
// doubling buffer copies and faults in a large state several times).
static size_t encoded_bound(const job_record *const *jobs, int num_jobs)
{
    size_t n = STATE_HEADER + 16;
    for (int i = 0; i < num_jobs; i++) {
        const roster *r = &jobs[i]->roster;
        n += 64 + JOB_NAME_MAX + JOB_TOKEN_MAX + 4096 + 32 + STATE_REASON_MAX; // layout: < 4 KiB
        if (!r->assigned)
            continue;
        n += 8 * (size_t)r->world_size;
        for (int h = 0; h < r->num_hosts; h++)
            n += 4 + (r->hosts[h] ? strlen(r->hosts[h]) : 0);
    }
    return n;
}

int state_encode(const job_record *const *jobs, int num_jobs, uint8_t **out, size_t *len)
{
    buffer b = {0};
    b.data = malloc(b.cap = encoded_bound(jobs, num_jobs));
    b.failed = !b.data;
    reserve(&b, STATE_HEADER);
    put_uint(&b, (uint32_t)num_jobs, 4);
    for (int i = 0; i < num_jobs; i++)
        put_job(&b, jobs[i]);
    put_ends(&b, jobs, num_jobs);
    if (b.failed) {
        free(b.data);
        return -1;
    }
    size_t payload = b.len - STATE_HEADER;
    memcpy(b.data, STATE_MAGIC, 8);
    buffer head = {b.data + 8, 0, STATE_HEADER - 8, false};
    put_uint(&head, STATE_VERSION, 4);
    put_uint(&head, state_crc32(b.data + STATE_HEADER, payload), 4);
    put_uint(&head, payload, 8);
    *out = b.data;
    *len = b.len;
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int state_save(const char *dir, const job_record *const *jobs, int num_jobs, char *err,
               size_t errlen)
{
    uint8_t *data;
    size_t len;
    if (state_encode(jobs, num_jobs, &data, &len)) {
        snprintf(err, errlen, "out of memory encoding the state of %d jobs", num_jobs);
        return -1;
    }
    char path[4096], tmp[4096];
    snprintf(path, sizeof path, "%s/%s", dir, STATE_FILE);
    snprintf(tmp, sizeof tmp, "%s/%s", dir, STATE_TEMP_TEMPLATE);
    // A fresh name, created exclusively (never through a planted link), 0600.
    int fd = mkostemp(tmp, O_CLOEXEC);
    int rc = -1;
    if (fd < 0) {
        snprintf(err, errlen, "cannot create a temporary file in %s: %s", dir, strerror(errno));
        goto out;
    }
    if (fchmod(fd, 0600) || write_all(fd, data, len) || fsync(fd)) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        goto out;
    }
    close(fd);
    if (rename(tmp, path)) {
        snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        goto out;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd)) {
        snprintf(err, errlen, "cannot sync directory %s: %s", dir, strerror(errno));
        if (dfd >= 0)
            close(dfd);
        goto out;
    }
    close(dfd);
    rc = 0;
out:
    free(data);
    return rc;
}

int state_dir_check(const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (stat(dir, &st)) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s is not a directory", dir);
        return -1;
    }
    if (st.st_uid != geteuid()) {
        snprintf(err, errlen, "%s belongs to uid %u, not to gridd's uid %u (whoever owns it "
                 "can plant its state); chown it", dir, (unsigned)st.st_uid, (unsigned)geteuid());
        return -1;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        snprintf(err, errlen, "%s has mode %04o: others can write there and plant its state; "
                 "chmod 0700 it", dir, (unsigned)(st.st_mode & 07777));
        return -1;
    }
    // Temporary files of a save that a crash interrupted.
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t prefix = strlen(STATE_TEMP_TEMPLATE) - 6;
    while (d && (e = readdir(d)))
        if (strncmp(e->d_name, STATE_TEMP_TEMPLATE, prefix) == 0 &&
            strlen(e->d_name) == prefix + 6)
            unlinkat(dirfd(d), e->d_name, 0);
    if (d)
        closedir(d);
    return 0;
}

// ---- reading

typedef struct {
    const uint8_t *p;
    size_t left;
    bool bad;
} reader;

static uint64_t get_uint(reader *r, int bytes)
{
    if (r->bad || r->left < (size_t)bytes) {
        r->bad = true;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v = v << 8 | r->p[i];
    r->p += bytes;
    r->left -= (size_t)bytes;
    return v;
}

// A length-prefixed field of at most max bytes; NULL if it does not fit.
static const uint8_t *get_bytes(reader *r, uint32_t max, uint32_t *len)
{
    *len = (uint32_t)get_uint(r, 4);
    if (r->bad || *len > max || *len > r->left) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += *len;
    r->left -= *len;
    return p;
}

static int get_string(reader *r, char *out, uint32_t max)
{
    uint32_t len;
    const uint8_t *p = get_bytes(r, max, &len);
    if (!p)
        return -1;
    memcpy(out, p, len);
    out[len] = '\0';
    return memchr(out, '\0', len) ? -1 : 0;
}

static int get_layout(reader *r, hg_layout_spec *spec, hg_plan *plan, char *err, size_t errlen)
{
    uint32_t len;
    const uint8_t *p = get_bytes(r, 1u << 16, &len);
    if (!p)
        return -1;
    Hgrid__Layout *layout = hgrid__layout__unpack(NULL, len, p);
    if (!layout) {
        snprintf(err, errlen, "undecodable layout");
        return -1;
    }
    hg_layout_spec_defaults(spec);
    int rc = wire_layout_to_spec(layout, spec, err, errlen);
    hgrid__layout__free_unpacked(layout, NULL);
    if (rc == 0)
        rc = hg_plan_build(spec, plan, err, errlen);
    return rc;
}

// The saved rank map: hosts, then (host, device) per rank.
static int get_rank_map(reader *r, roster *ro, int world, char *err, size_t errlen)
{
    uint32_t num_hosts = (uint32_t)get_uint(r, 4);
    if (r->bad || num_hosts > (uint32_t)ROSTER_MAX_HOSTS(world)) {
        snprintf(err, errlen, "rank map has %u hosts for %d ranks", num_hosts, world);
        return -1;
    }
    char **hosts = calloc(num_hosts ? num_hosts : 1, sizeof *hosts);
    int *host = malloc(sizeof *host * (size_t)world), *device = malloc(sizeof *device * (size_t)world);
    int rc = -1;
    if (!hosts || !host || !device) {
        snprintf(err, errlen, "out of memory for a %d-rank map", world);
        goto out;
    }
    for (uint32_t h = 0; h < num_hosts; h++) {
        hosts[h] = malloc(ROSTER_MAX_HOST + 1);
        if (!hosts[h] || get_string(r, hosts[h], ROSTER_MAX_HOST)) {
            snprintf(err, errlen, "bad host name %u in the rank map", h);
            goto out;
        }
    }
    for (int i = 0; i < world; i++) {
        uint32_t h = (uint32_t)get_uint(r, 4), d = (uint32_t)get_uint(r, 4);
        if (r->bad || h >= num_hosts || d > (uint32_t)HG_MAX_WORLD) {
            snprintf(err, errlen, "bad rank map entry for rank %d", i);
            goto out;
        }
        host[i] = (int)h;
        device[i] = (int)d;
    }
    rc = roster_restore(ro, world, hosts, (int)num_hosts, host, device);
    if (rc == ROSTER_RESTORE_TWICE)
        snprintf(err, errlen, "the rank map names a host twice or gives a device two ranks");
    else if (rc)
        snprintf(err, errlen, "out of memory restoring a %d-rank map", world);
out:
    for (uint32_t h = 0; hosts && h < num_hosts; h++)
        free(hosts[h]);
    free(hosts);
    free(host);
    free(device);
    return rc;
}

// One job; *ranks counts the ranks restored so far (STATE_MAX_RANKS).
static int get_job(reader *r, job_record *j, uint64_t *ranks, char *err, size_t errlen)
{
    memset(j, 0, sizeof *j);
    const uint8_t *token;
    hg_plan plan;
    if (get_string(r, j->name, JOB_NAME_MAX) || !state_valid_job_name(j->name) ||
        !(token = get_bytes(r, JOB_TOKEN_MAX, &j->token_len)) || j->token_len == 0) {
        snprintf(err, errlen, "bad job name or token");
        return -1;
    }
    memcpy(j->token, token, j->token_len);
    if (get_layout(r, &j->spec, &plan, err, errlen))
        return -1;
    j->generation = get_uint(r, 8);
    uint64_t assigned = get_uint(r, 1);
    uint32_t world = (uint32_t)get_uint(r, 4);
    if (assigned > 1) {
        snprintf(err, errlen, "job %s: bad assigned flag %llu", j->name,
                 (unsigned long long)assigned);
        return -1;
    }
    if (r->bad || world != (uint32_t)plan.world_size) {
        snprintf(err, errlen, "job %s: saved world size %u does not match its layout's %d",
                 j->name, world, plan.world_size);
        return -1;
    }
    if ((*ranks += world) > STATE_MAX_RANKS) {
        snprintf(err, errlen, "more than %d ranks in all jobs", STATE_MAX_RANKS);
        return -1;
    }
    if (assigned)
        return get_rank_map(r, &j->roster, (int)world, err, errlen);
    if (roster_init(&j->roster, (int)world)) {
        snprintf(err, errlen, "out of memory for job %s", j->name);
        return -1;
    }
    return 0;
}

static int get_ends(reader *r, job_record *jobs, uint32_t num_jobs, char *err, size_t errlen)
{
    uint32_t n = (uint32_t)get_uint(r, 4);
    if (r->bad || n > num_jobs) {
        snprintf(err, errlen, "bad count of ended jobs");
        return -1;
    }
    for (uint32_t k = 0; k < n; k++) {
        uint32_t i = (uint32_t)get_uint(r, 4), outcome = (uint32_t)get_uint(r, 4);
        int64_t ended = (int64_t)get_uint(r, 8);
        if (r->bad || i >= num_jobs || jobs[i].outcome || !protobuf_c_enum_descriptor_get_value(
                                           &hgrid__outcome__descriptor, (int)outcome) ||
            outcome == 0 || get_string(r, jobs[i].end_reason, STATE_REASON_MAX)) {
            snprintf(err, errlen, "bad ended job entry %u", k);
            return -1;
        }
        jobs[i].outcome = outcome;
        jobs[i].ended_unix_ms = ended;
    }
    if (r->left > 0) {
        snprintf(err, errlen, "%zu bytes after the ended jobs", r->left);
        return -1;
    }
    return 0;
}

// The sections after the jobs.
static int get_sections(reader *r, job_record *jobs, uint32_t num_jobs, char *err, size_t errlen)
{
    while (r->left > 0) {
        uint32_t tag = (uint32_t)get_uint(r, 4), len;
        const uint8_t *body = get_bytes(r, UINT32_MAX, &len);
        if (!body) {
            snprintf(err, errlen, "truncated section after the last job");
            return -1;
        }
        reader sr = {body, len, false};
        if (tag == SECTION_ENDS && get_ends(&sr, jobs, num_jobs, err, errlen))
            return -1;
    }
    return 0;
}

int state_decode(const uint8_t *data, size_t len, job_record **jobs, int *num_jobs, char *err,
                 size_t errlen)
{
    *jobs = NULL;
    *num_jobs = 0;
    if (len < STATE_HEADER || memcmp(data, STATE_MAGIC, 8)) {
        snprintf(err, errlen, "not a gridd state file");
        return -1;
    }
    reader head = {data + 8, STATE_HEADER - 8, false};
    uint32_t version = (uint32_t)get_uint(&head, 4), crc = (uint32_t)get_uint(&head, 4);
    uint64_t payload = get_uint(&head, 8);
    if (version != STATE_VERSION) {
        snprintf(err, errlen, "state format version %u; this gridd reads version %u", version,
                 STATE_VERSION);
        return -1;
    }
    if (payload != len - STATE_HEADER || state_crc32(data + STATE_HEADER, payload) != crc) {
        snprintf(err, errlen, "checksum or length mismatch (the file is damaged)");
        return -1;
    }
    reader r = {data + STATE_HEADER, payload, false};
    uint32_t n = (uint32_t)get_uint(&r, 4);
    uint64_t ranks = 0;
    if (r.bad || n > payload) {
        snprintf(err, errlen, "bad job count");
        return -1;
    }
    job_record *out = calloc(n ? n : 1, sizeof *out);
    if (!out) {
        snprintf(err, errlen, "out of memory for %u jobs", n);
        return -1;
    }
    uint32_t got = 0;
    while (got < n && get_job(&r, &out[got], &ranks, err, errlen) == 0)
        got++;
    if (got < n || get_sections(&r, out, n, err, errlen)) {
        for (uint32_t k = 0; k < got; k++)
            roster_free(&out[k].roster);
        free(out);
        return -1;
    }
    *jobs = out;
    *num_jobs = (int)n;
    return 0;
}

int state_load(const char *dir, job_record **jobs, int *num_jobs, char *err, size_t errlen)
{
    *jobs = NULL;
    *num_jobs = 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, STATE_FILE);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 && errno == ENOENT)
        return 0;
    if (fd < 0 || fstat(fd, &st)) {
        snprintf(err, errlen, "cannot open %s: %s%s", path, strerror(errno),
                 errno == ELOOP ? " (a symbolic link: gridd writes a regular file there)" : "");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
        snprintf(err, errlen, "%s is not a regular file of gridd's user", path);
        close(fd);
        return -1;
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    uint8_t *data = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? 2 * cap : 65536;
            uint8_t *grown = realloc(data, cap);
            if (!grown) {
                snprintf(err, errlen, "out of memory reading %s", path);
                free(data);
                fclose(f);
                return -1;
            }
            data = grown;
        }
        size_t got = fread(data + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    bool read_error = ferror(f);
    fclose(f);
    int rc = -1;
    char why[HG_ERR_LEN];
    if (read_error)
        snprintf(err, errlen, "cannot read %s", path);
    else if (state_decode(data, len, jobs, num_jobs, why, sizeof why) == 0)
        rc = 0;
    else
        snprintf(err, errlen, "%s: %s", path, why);
    free(data);
    return rc;
}
