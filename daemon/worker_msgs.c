// Worker messages: Hello validation and dispatch of the rest to the job.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/worker_msgs.h"

#include "daemon/hostlink.h"
#include "daemon/job.h"
#include "daemon/store.h"

static bool valid_host(const char *host)
{
    size_t n = strlen(host);
    if (n < 1 || n > ROSTER_MAX_HOST)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)host[i] <= ' ' || host[i] == '/' || (unsigned char)host[i] >= 0x7f)
            return false;
    return true;
}

static void hello(conn *c, const Hgrid__Hello *h)
{
    if (c->job || c->store) {
        conn_fail(c, HGRID__ERROR_CODE__ERROR_BAD_REQUEST, "Hello sent twice, or after StoreOpen");
        return;
    }
    // An unknown job and a wrong token get the same answer, after the same
    // comparison: a peer without the token learns nothing about job names.
    static job_record nobody = {.token_len = JOB_TOKEN_MAX};
    job *j = job_find(c->srv, h->job);
    bool token_ok = state_token_matches(j ? &j->rec : &nobody, h->token.data, h->token.len);
    if (!j || !token_ok) {
        conn_fail(c, HGRID__ERROR_CODE__ERROR_BAD_TOKEN,
                  "unknown job '%.64s' or wrong token; use the job name and token hgridctl "
                  "submit printed", h->job);
        return;
    }
    if (job_ended(j)) { // e.g. back after gridd's restart, or started late
        job_release_late(j, c);
        return;
    }
    if (!valid_host(h->host)) {
        conn_fail(c, HGRID__ERROR_CODE__ERROR_BAD_REQUEST,
                  "host name must be 1-%d printable ASCII characters without '/' or spaces",
                  ROSTER_MAX_HOST);
        return;
    }
    if (h->local_device > HG_MAX_WORLD) {
        conn_fail(c, HGRID__ERROR_CODE__ERROR_BAD_REQUEST, "local device %u is out of range",
                  h->local_device);
        return;
    }
    int requested = -1;
    if (h->requested_rank)
        requested = h->requested_rank->rank > (uint32_t)HG_MAX_WORLD
                        ? HG_MAX_WORLD
                        : (int)h->requested_rank->rank;
    char err[256];
    int slot;
    roster_status st = roster_join(&j->rec.roster, h->host, (int)h->local_device, requested, &slot,
                                   err, sizeof err);
    static const Hgrid__ErrorCode codes[] = {
        [ROSTER_DUPLICATE] = HGRID__ERROR_CODE__ERROR_DUPLICATE_DEVICE,
        [ROSTER_RANK_REFUSED] = HGRID__ERROR_CODE__ERROR_RANK_REFUSED,
        [ROSTER_FULL] = HGRID__ERROR_CODE__ERROR_JOB_FULL,
        [ROSTER_NOMEM] = HGRID__ERROR_CODE__ERROR_LIMIT,
    };
    if (st != ROSTER_OK) {
        if (st == ROSTER_NOMEM)
            snprintf(err, sizeof err, "out of memory");
        conn_fail(c, codes[st], "job %s: %s", j->rec.name, err);
        return;
    }
    conn_list_remove(c); // the Hello deadline
    c->authenticated = true;
    c->reader.max_frame = c->srv->opt.max_frame;
    c->job = j;
    c->slot = slot;
    c->assignment_only = h->assignment_only;
    c->counts_ops = h->counts_ops;
    c->hello_ns = uv_hrtime();
    j->rec.roster.slots[slot].conn = c;
    job_joined(j, c, h->resume);
}

// A peer's text as gridd keeps it: at most max bytes, printable ASCII
// (anything else becomes '?'), so no terminal that shows it obeys it.
static void keep_text(char *out, size_t size, const char *in)
{
    size_t n = 0;
    for (; in && in[n] && n + 1 < size; n++)
        out[n] = (unsigned char)in[n] < ' ' || (unsigned char)in[n] >= 0x7f ? '?' : in[n];
    out[n] = '\0';
}

// Logs the report and keeps a bounded, printable copy of it, packed, for
// hgridctl status: at most GRIDD_SELF_TEST_GROUPS checks, names and details
// cut short, GRIDD_SELF_TEST_MAX bytes in all.
static void self_test(conn *c, const Hgrid__SelfTestReport *report)
{
    size_t ok = 0;
    for (size_t i = 0; i < report->n_groups; i++)
        ok += report->groups[i]->ok;
    gridd_log_at(GRIDD_INFO, c->job, c->slot, "self-test report report_gen=%llu ok=%zu/%zu",
                 (unsigned long long)report->generation, ok, report->n_groups);
    roster_slot *slot = &c->job->rec.roster.slots[c->slot];
    slot->self_test_gen = report->generation; // the summary counts every report, kept or not
    slot->self_test_failed = (uint32_t)(report->n_groups - ok);
    size_t n = report->n_groups < GRIDD_SELF_TEST_GROUPS ? report->n_groups : GRIDD_SELF_TEST_GROUPS;
    static Hgrid__GroupCheck checks[GRIDD_SELF_TEST_GROUPS];
    static Hgrid__GroupCheck *ptrs[GRIDD_SELF_TEST_GROUPS];
    static char names[GRIDD_SELF_TEST_GROUPS][64], details[GRIDD_SELF_TEST_GROUPS][96];
    for (size_t i = 0; i < n; i++) {
        checks[i] = *report->groups[i];
        keep_text(names[i], sizeof names[i], report->groups[i]->name);
        keep_text(details[i], sizeof details[i], report->groups[i]->detail);
        checks[i].name = names[i];
        checks[i].detail = details[i];
        ptrs[i] = &checks[i];
    }
    Hgrid__SelfTestReport kept = *report;
    kept.n_groups = n;
    kept.groups = ptrs;
    size_t len = hgrid__self_test_report__get_packed_size(&kept);
    if (len > GRIDD_SELF_TEST_MAX) { // keeps gridd's memory per worker bounded
        gridd_log_at(GRIDD_WARN, c->job, c->slot, "self-test report not kept bytes=%zu limit=%d",
                     len, GRIDD_SELF_TEST_MAX);
        return;
    }
    uint8_t *packed = malloc(len ? len : 1);
    if (!packed || hgrid__self_test_report__pack(&kept, packed) != len) {
        free(packed);
        gridd_log_at(GRIDD_ERROR, c->job, c->slot, "self-test report not kept: out of memory");
        return;
    }
    free(slot->self_test);
    slot->self_test = packed;
    slot->self_test_len = len;
}

void worker_handle(conn *c, const Hgrid__Envelope *env)
{
    if (hostlink_handle(c, env))
        return;
    if (env->msg_case == HGRID__ENVELOPE__MSG_HELLO) {
        hello(c, env->hello);
        return;
    }
    if (env->msg_case == HGRID__ENVELOPE__MSG_STORE_OPEN ||
        env->msg_case == HGRID__ENVELOPE__MSG_STORE_REQUEST) {
        store_handle(c, env);
        return;
    }
    if (!c->job) {
        conn_fail(c, HGRID__ERROR_CODE__ERROR_BAD_REQUEST,
                  "message %d before an accepted Hello; send Hello first", (int)env->msg_case);
        return;
    }
    switch (env->msg_case) {
    case HGRID__ENVELOPE__MSG_MINT_REPLY:
        job_mint_reply(c, env->mint_reply);
        break;
    case HGRID__ENVELOPE__MSG_READY:
        job_ready(c, env->ready->generation);
        break;
    case HGRID__ENVELOPE__MSG_COMMS_LOST:
        job_comms_lost(c, env->comms_lost);
        break;
    case HGRID__ENVELOPE__MSG_OP_COUNTS:
        job_op_counts(c, env->op_counts);
        break;
    case HGRID__ENVELOPE__MSG_HEARTBEAT:
        job_heartbeat(c, env->heartbeat);
        break;
    case HGRID__ENVELOPE__MSG_SELF_TEST:
        self_test(c, env->self_test);
        break;
    case HGRID__ENVELOPE__MSG_DONE:
        job_done(c, env->done);
        break;
    case HGRID__ENVELOPE__MSG_FAILURE:
        job_failure(c, env->failure);
        break;
    case HGRID__ENVELOPE__MSG_LEAVE: {
        char why[256], text[201];
        keep_text(text, sizeof text, env->leave->reason); // it reaches the others' Abort
        snprintf(why, sizeof why, "left: %s", text);
        job_worker_gone(c, why);
        conn_finish(c);
        break;
    }
    default:
        conn_fail(c, HGRID__ERROR_CODE__ERROR_BAD_REQUEST,
                  "message %d is not a worker message", (int)env->msg_case);
    }
}
