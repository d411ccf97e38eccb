// gridd's state file: a round trip keeps jobs, tokens, layouts, generations,
// sticky rank maps and ended jobs' outcomes; damage, foreign versions and records gridd never
// writes are refused. Token checks take the same time wherever tokens differ.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/core/state.h"
#include "tests/check.h"
#include "tests/daemon_test_plan.h"
#include "wire/wire.h"

// A job whose 8 workers joined from 2 hosts and got their ranks.
static void assigned_job(job_record *j)
{
    memset(j, 0, sizeof *j);
    snprintf(j->name, sizeof j->name, "train-a");
    memcpy(j->token, "s3cr\0t", 6);
    j->token_len = 6;
    hg_plan plan;
    plan_of("--llm-pp 2 --global-batch-size 4 --encoder-dp 2", &plan);
    j->spec = plan.spec;
    j->generation = 7;
    roster_init(&j->roster, plan.world_size);
    char err[256];
    int slot;
    for (int i = 0; i < plan.world_size; i++)
        roster_join(&j->roster, i % 2 ? "node-b" : "node-a", i / 2, -1, &slot, err, sizeof err);
    roster_assign(&j->roster, &plan);
}

static void waiting_job(job_record *j)
{
    memset(j, 0, sizeof *j);
    snprintf(j->name, sizeof j->name, "b.2_x");
    memset(j->token, 0xab, JOB_TOKEN_MAX);
    j->token_len = JOB_TOKEN_MAX;
    hg_plan plan;
    plan_of("--llm-only --llm-tp 4 --llm-dp 2", &plan);
    j->spec = plan.spec;
    roster_init(&j->roster, plan.world_size);
}

static void check_same(const job_record *a, const job_record *b)
{
    CHECK(strcmp(a->name, b->name) == 0, "name %s != %s", a->name, b->name);
    CHECK(a->token_len == b->token_len && memcmp(a->token, b->token, a->token_len) == 0,
          "job %s: token differs", a->name);
    CHECK(memcmp(&a->spec, &b->spec, sizeof a->spec) == 0, "job %s: layout differs", a->name);
    CHECK_EQ(a->generation, b->generation);
    CHECK_EQ(a->roster.assigned, b->roster.assigned);
    CHECK_EQ(a->roster.world_size, b->roster.world_size);
    if (!a->roster.assigned)
        return;
    for (int i = 0; i < a->roster.world_size; i++) {
        const roster_slot *x = &a->roster.slots[i], *y = &b->roster.slots[i];
        CHECK(strcmp(roster_host_name(&a->roster, x->host), roster_host_name(&b->roster, y->host)) == 0 &&
                  x->device == y->device,
              "job %s: rank %d moved", a->name, i);
        CHECK_EQ(y->state, SLOT_LOST);
    }
}

static void free_all(job_record *jobs, int n)
{
    for (int i = 0; i < n; i++)
        roster_free(&jobs[i].roster);
    free(jobs);
}

static void test_round_trip(void)
{
    job_record a, b;
    assigned_job(&a);
    waiting_job(&b);
    const job_record *recs[] = {&a, &b};
    uint8_t *data;
    size_t len;
    CHECK_EQ(state_encode(recs, 2, &data, &len), 0);
    job_record *back;
    int n;
    char err[256] = "";
    CHECK(state_decode(data, len, &back, &n, err, sizeof err) == 0, "decode: %s", err);
    CHECK_EQ(n, 2);
    if (n == 2) {
        check_same(&a, &back[0]);
        check_same(&b, &back[1]);
        // A restored rank map is sticky: node-b/1 gets its rank back.
        int slot = -1, want = -1;
        for (int i = 0; i < a.roster.world_size; i++)
            if (strcmp(roster_host_name(&a.roster, a.roster.slots[i].host), "node-b") == 0 &&
                a.roster.slots[i].device == 1)
                want = i;
        CHECK_EQ(roster_join(&back[0].roster, "node-b", 1, -1, &slot, err, sizeof err), ROSTER_OK);
        CHECK_EQ(slot, want);
    }
    free_all(back, n);

    // Damage anywhere in the payload, a foreign version and truncation are refused.
    data[len - 3] ^= 0x40;
    CHECK(state_decode(data, len, &back, &n, err, sizeof err) != 0, "a flipped bit was accepted");
    CHECK(strstr(err, "checksum") != NULL, "damage reported as: %s", err);
    data[len - 3] ^= 0x40;
    data[11] = 9; // version 9
    CHECK(state_decode(data, len, &back, &n, err, sizeof err) != 0, "version 9 was accepted");
    CHECK(strstr(err, "version 9") != NULL, "version reported as: %s", err);
    data[11] = 1;
    CHECK(state_decode(data, len - 1, &back, &n, err, sizeof err) != 0, "a short file was accepted");
    CHECK(state_decode(data, 10, &back, &n, err, sizeof err) != 0, "a header stub was accepted");
    free(data);
    roster_free(&a.roster);
    roster_free(&b.roster);
}

static void test_files(void)
{
    char dir[] = "/tmp/hgrid-state-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp failed");
    job_record *back;
    int n = -1;
    char err[512] = "";
    CHECK(state_load(dir, &back, &n, err, sizeof err) == 0 && n == 0, "empty dir: %s", err);
    free(back);
    job_record a;
    assigned_job(&a);
    const job_record *recs[] = {&a};
    CHECK(state_save(dir, recs, 1, err, sizeof err) == 0, "save: %s", err);
    a.generation = 8; // a second save replaces the first
    CHECK(state_save(dir, recs, 1, err, sizeof err) == 0, "save: %s", err);
    CHECK(state_load(dir, &back, &n, err, sizeof err) == 0, "load: %s", err);
    CHECK_EQ(n, 1);
    if (n == 1)
        check_same(&a, &back[0]);
    free_all(back, n);
    char path[256];
    snprintf(path, sizeof path, "%s/%s.tmp", dir, STATE_FILE);
    CHECK(access(path, F_OK) != 0, "the temp file was left behind");
    snprintf(path, sizeof path, "%s/%s", dir, STATE_FILE);
    unlink(path);
    rmdir(dir);
    roster_free(&a.roster);
}

// Encodes one job and expects state_decode to refuse it, saying why.
static void refused(const job_record *j, const char *why)
{
    const job_record *recs[] = {j};
    uint8_t *data;
    size_t len;
    CHECK_EQ(state_encode(recs, 1, &data, &len), 0);
    job_record *back;
    int n;
    char err[256] = "";
    CHECK(state_decode(data, len, &back, &n, err, sizeof err) != 0, "accepted: %s", why);
    CHECK(strstr(err, why) != NULL, "refused as '%s', not '%s'", err, why);
    free(data);
}

// Records gridd never writes are refused rather than restored.
static void test_invalid_records(void)
{
    job_record a;
    assigned_job(&a);
    roster_slot saved = a.roster.slots[1];
    a.roster.slots[1].host = a.roster.slots[0].host; // two ranks on one device
    a.roster.slots[1].device = a.roster.slots[0].device;
    refused(&a, "gives a device two ranks");
    a.roster.slots[1] = saved;
    snprintf(a.name, sizeof a.name, "bad\nname");
    refused(&a, "bad job name");
    snprintf(a.name, sizeof a.name, "train-a");
    a.token_len = 0;
    refused(&a, "bad job name or token");
    roster_free(&a.roster);
}

// The header's CRC and length for a payload changed after encoding.
static void reseal(uint8_t *data, size_t len)
{
    uint32_t crc = state_crc32(data + STATE_HEADER, len - STATE_HEADER);
    uint64_t payload = len - STATE_HEADER;
    for (int i = 0; i < 4; i++)
        data[12 + i] = (uint8_t)(crc >> (24 - 8 * i));
    for (int i = 0; i < 8; i++)
        data[16 + i] = (uint8_t)(payload >> (56 - 8 * i));
}

// Ended jobs keep their outcome, end time and reason; files without them
// (written before jobs could end) still load, and sections a later gridd
// adds are skipped.
static void test_outcomes(void)
{
    job_record a, b;
    assigned_job(&a);
    waiting_job(&b);
    a.outcome = HGRID__OUTCOME__OUTCOME_FAILED;
    a.ended_unix_ms = 1796615461730;
    snprintf(a.end_reason, sizeof a.end_reason, "rank 3 (node-b/1) failed: out of memory");
    const job_record *recs[] = {&a, &b};
    uint8_t *data;
    size_t len;
    CHECK_EQ(state_encode(recs, 2, &data, &len), 0);
    job_record *back;
    int n;
    char err[256] = "";
    CHECK(state_decode(data, len, &back, &n, err, sizeof err) == 0, "decode: %s", err);
    CHECK_EQ(n, 2);
    if (n == 2) {
        check_same(&a, &back[0]);
        CHECK_EQ(back[0].outcome, (uint32_t)HGRID__OUTCOME__OUTCOME_FAILED);
        CHECK_EQ(back[0].ended_unix_ms, (int64_t)1796615461730);
        CHECK(!strcmp(back[0].end_reason, a.end_reason), "reason '%s'", back[0].end_reason);
        CHECK_EQ(back[1].outcome, 0u);
        CHECK_EQ(back[1].ended_unix_ms, (int64_t)0);
    }
    free_all(back, n);
    free(data);

    // Without ended jobs the file has no section: the format of the gridds
    // before outcomes, byte for byte (the payload ends with the last job).
    const job_record *live[] = {&b};
    CHECK_EQ(state_encode(live, 1, &data, &len), 0);
    size_t plain = len;
    b.outcome = HGRID__OUTCOME__OUTCOME_CANCELLED;
    uint8_t *ended;
    size_t ended_len;
    CHECK_EQ(state_encode(live, 1, &ended, &ended_len), 0);
    CHECK(ended_len > plain && !memcmp(ended + STATE_HEADER, data + STATE_HEADER,
                                       plain - STATE_HEADER),
          "the outcome comes after the jobs, which are written as before");
    free(ended);
    uint8_t *more = malloc(len + 11);
    memcpy(more, data, len);
    memcpy(more + len, "\0\0\0\x63\0\0\0\x03xyz", 11); // tag 99, 3 bytes
    reseal(more, len + 11);
    CHECK(state_decode(more, len + 11, &back, &n, err, sizeof err) == 0 && n == 1,
          "an unknown section is skipped: %s", err);
    free_all(back, n);
    more[len + 7] = 9; // its length now runs past the end
    reseal(more, len + 11);
    CHECK(state_decode(more, len + 11, &back, &n, err, sizeof err) != 0, "a truncated section");
    free(more);
    free(data);
    roster_free(&a.roster);
    roster_free(&b.roster);
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// The time of 20000 comparisons of offered against j's token.
static double compare_batch(const job_record *j, const uint8_t *offered, size_t len)
{
    volatile int matches = 0;
    double t0 = seconds();
    for (int i = 0; i < 20000; i++)
        matches += state_token_matches(j, offered, len);
    return seconds() - t0;
}

// The fastest of 7 batches for each of two offers, their batches
// interleaved so that a burst of load on a shared machine hits both.
static void compare_times(const job_record *j, const uint8_t *a, const uint8_t *b, size_t len,
                          double *ta, double *tb)
{
    *ta = *tb = 1e9;
    for (int batch = 0; batch < 7; batch++) {
        double x = compare_batch(j, a, len), y = compare_batch(j, b, len);
        *ta = x < *ta ? x : *ta;
        *tb = y < *tb ? y : *tb;
    }
}

// Token checks: only the exact token matches, and a wrong first byte takes
// as long as a wrong last byte (no early exit).
static void test_token(void)
{
    job_record j;
    memset(&j, 0, sizeof j);
    j.token_len = JOB_TOKEN_MAX;
    for (int i = 0; i < JOB_TOKEN_MAX; i++)
        j.token[i] = (uint8_t)(i * 7 + 1);
    uint8_t offered[JOB_TOKEN_MAX + 1];
    memcpy(offered, j.token, JOB_TOKEN_MAX);
    offered[JOB_TOKEN_MAX] = 9;
    CHECK(state_token_matches(&j, offered, JOB_TOKEN_MAX), "the token matches");
    CHECK(!state_token_matches(&j, offered, JOB_TOKEN_MAX - 1), "a prefix does not");
    CHECK(!state_token_matches(&j, offered, JOB_TOKEN_MAX + 1), "a longer token does not");
    CHECK(!state_token_matches(&j, offered, 0), "an empty token does not");
    uint8_t wrong_last[JOB_TOKEN_MAX], wrong_first[JOB_TOKEN_MAX];
    memcpy(wrong_last, j.token, JOB_TOKEN_MAX);
    memcpy(wrong_first, j.token, JOB_TOKEN_MAX);
    wrong_last[JOB_TOKEN_MAX - 1] ^= 1;
    wrong_first[0] ^= 1;
    CHECK(!state_token_matches(&j, wrong_last, JOB_TOKEN_MAX), "a wrong last byte does not");
    CHECK(!state_token_matches(&j, wrong_first, JOB_TOKEN_MAX), "a wrong first byte does not");
    // An early exit makes a wrong first byte many times faster than a wrong
    // last one, in every attempt; the other CPU tests running beside this
    // one can skew one attempt, so it gets up to 5.
    double first = 0, last = 0, ratio = 0;
    for (int attempt = 0; attempt < 5; attempt++) {
        compare_times(&j, wrong_first, wrong_last, JOB_TOKEN_MAX, &first, &last);
        ratio = first > last ? first / last : last / first;
        if (ratio < 1.5)
            break;
    }
    printf("token compare: wrong first byte %.1f ns, wrong last byte %.1f ns (256-byte token)\n",
           first / 20000 * 1e9, last / 20000 * 1e9);
    CHECK(ratio < 1.5, "the time does not depend on where tokens differ: %.2fx", ratio);
}

int main(void)
{
    test_token();
    test_round_trip();
    test_files();
    test_invalid_records();
    test_outcomes();
    return check_summary("test_daemon_state");
}
