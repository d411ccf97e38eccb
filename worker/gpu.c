// hgrid-worker on a GPU: the device first (before any NCCL call), then per
// generation the communicators, the self-test (reported to gridd), Ready
// and heartbeats; an Abort tears the communicators down for the next one.
#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "libhgrid/hgrid_selftest.h"
#include "util/json.h"
#include "libhgrid/selftest_calc.h"
#include "worker/worker.h"
#include "worker/run.h"

// Seconds an ncclCommAbort/Destroy may take before the process gives up
// on it: tearing down must never hang a worker.
#define TEARDOWN_LIMIT_S 30

static long long unix_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000000 + tv.tv_usec;
}

// Selects the device and creates its context; writes the GPU's UUID into
// uuid as nvidia-smi prints it ("GPU-" then the dashed hex digits).
// Returns 0, or 1 after one line saying why.
static int open_device(int device, char *uuid, size_t len)
{
    cudaError_t e = cudaSetDevice(device);
    if (e == cudaSuccess)
        e = cudaFree(NULL); // the context now, not inside the first NCCL call
    struct cudaDeviceProp prop;
    if (e == cudaSuccess)
        e = cudaGetDeviceProperties(&prop, device);
    if (e != cudaSuccess) {
        fprintf(stderr, "hgrid-worker: GPU %d unusable at %s:%d: %s (check --device, LOCAL_RANK "
                        "and nvidia-smi)\n",
                device, __FILE__, __LINE__, cudaGetErrorString(e));
        return 1;
    }
    const unsigned char *b = (const unsigned char *)prop.uuid.bytes;
    snprintf(uuid, len,
             "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
    return 0;
}

static void print_text(const hgrid_worker *w, const worker_options *opt, const hgrid_selftest *t)
{
    char line[320];
    for (int i = 0; i < t->count; i++) {
        const hgrid_check *c = &t->checks[i];
        selftest_format_check(line, sizeof line, c->name, c->ok, c->busbw_gbps, c->detail);
        printf("%s/%d: rank %d self-test %s\n", opt->host, opt->device, hgrid_rank(w), line);
    }
}

static void print_json(const hgrid_worker *w, const worker_options *opt, const hgrid_selftest *t,
                       long long formed, long long verified)
{
    json_writer j;
    json_init(&j, stdout);
    json_begin_object(&j);
    json_key(&j, "rank");
    json_int(&j, hgrid_rank(w));
    json_key(&j, "generation");
    json_int(&j, (long long)hgrid_generation(w));
    json_key(&j, "comm_init");
    json_string(&j, opt->comm_init == HGRID_COMMS_SPLIT ? "split" : "init");
    json_key(&j, "formed_unix_us");
    json_int(&j, formed);
    json_key(&j, "verified_unix_us");
    json_int(&j, verified);
    json_key(&j, "ok");
    json_bool(&j, t->all_ok);
    json_key(&j, "checks");
    json_begin_array(&j);
    for (int i = 0; i < t->count; i++) {
        json_begin_object(&j);
        json_key(&j, "name");
        json_string(&j, t->checks[i].name);
        json_key(&j, "ok");
        json_bool(&j, t->checks[i].ok);
        json_key(&j, "busbw_gbps");
        json_double(&j, t->checks[i].busbw_gbps);
        json_key(&j, "detail");
        json_string(&j, t->checks[i].detail);
        json_end_object(&j);
    }
    json_end_array(&j);
    json_end_object(&j);
    fputc('\n', stdout);
}

// Communicators and the self-test for the current assignment; *comms
// holds the last generation's when they were idle at its Abort: those of
// groups that kept their id are kept (hgrid_comms_rebuild). HGRID_OK with
// *comms set, or a status (the communicators already aborted).
static int form_and_test(hgrid_worker *w, const worker_options *opt, hgrid_comms **comms)
{
    int timeout_ms = (int)(opt->comm_timeout_s * 1000), kept = -1;
    int st = *comms ? hgrid_comms_rebuild(w, opt->device, timeout_ms, comms, &kept)
                    : hgrid_comms_create_with(w, opt->device, timeout_ms, opt->comm_init, comms);
    if (st == HGRID_ABORTED) // every communicator aborted, the kept ones too
        hgrid_report_comms_lost(w, "communicators were forming at the Abort; all aborted");
    if (st != HGRID_OK)
        return st;
    if (kept >= 0)
        worker_log(opt, "notice", hgrid_rank(w), hgrid_generation(w),
                   "communicators rebuilt: %d kept from the last generation", kept);
    long long formed = unix_us();
    hgrid_selftest t;
    st = hgrid_self_test_verify(w, *comms, (int)(opt->comm_timeout_s * 1000), &t);
    long long verified = unix_us();
    if (st == HGRID_OK && opt->bw_bytes > 0) {
        hgrid_selftest_options so;
        hgrid_self_test_defaults(&so);
        so.bytes = (size_t)opt->bw_bytes;
        so.timeout_ms = (int)(opt->comm_timeout_s * 1000);
        st = hgrid_self_test_bandwidth(w, *comms, &so, &t);
    }
    if (st == HGRID_OK || st == HGRID_ERR_MISMATCH) { // gridd shows what was found
        if (opt->json)
            print_json(w, opt, &t, formed, verified);
        else
            print_text(w, opt, &t);
        fflush(stdout);
        int sent = hgrid_self_test_send(w, &t);
        if (st == HGRID_OK)
            st = sent;
    }
    hgrid_self_test_free(&t);
    if (st != HGRID_OK) {
        alarm(TEARDOWN_LIMIT_S);
        hgrid_comms_abort(*comms);
        alarm(0);
        *comms = NULL;
        // Aborted mid-test: gridd would keep ids whose communicators this
        // worker no longer holds (its peers' kept ones would wait for it).
        if (st == HGRID_ABORTED)
            hgrid_report_comms_lost(w, "the self-test was interrupted by the Abort; every "
                                       "communicator aborted");
    }
    return st;
}

// One generation: HGRID_ABORTED (go on), HGRID_RELEASED, a negative
// status, or HGRID_OK after a successful --self-test. *kept: the last
// generation's communicators in, this one's out after an Abort (those of
// the groups holding a lost rank aborted, the others quiet: train_run
// aborts them all and tells gridd when one was not).
static int run_one(hgrid_worker *w, const worker_options *opt, hgrid_comms **kept)
{
    hgrid_comms *comms = *kept;
    *kept = NULL;
    int st = form_and_test(w, opt, &comms);
    if (st == HGRID_OK && opt->self_test) {
        alarm(TEARDOWN_LIMIT_S);
        hgrid_comms_destroy(comms);
        alarm(0);
        hgrid_leave(w, "self-test passed");
        return HGRID_OK;
    }
    if (st == HGRID_OK)
        st = hgrid_ready(w);
    if (st == HGRID_OK && opt->train.config) { // returns once gridd ends the job
        st = train_run(w, &comms, &opt->train, opt->heartbeat_timeout_s / 3);
        if (st == HGRID_ERR_STATE) { // it said why; a restart would fail the same way
            hgrid_report_failure(w, "training failed (see this worker's log)", false);
            st = WORKER_FAILED;
        }
    }
    uint64_t step = 0;
    if (st == HGRID_OK)
        st = worker_run_generation(w, opt, &step);
    if (st == HGRID_ABORTED && comms) {
        *kept = comms; // quiet: the next generation keeps what did not change
        return st;
    }
    alarm(TEARDOWN_LIMIT_S);
    if (st == HGRID_RELEASED)
        hgrid_comms_destroy(comms);
    else
        hgrid_comms_abort(comms);
    alarm(0);
    return st;
}

int worker_run_gpu(const worker_options *opt)
{
    char uuid[64];
    if (open_device(opt->device, uuid, sizeof uuid))
        return 1;
    hgrid_worker *w = worker_connect(opt);
    if (!w)
        return 1;
    hgrid_hello_options hello = {.job = opt->job, .token = opt->token, .host = opt->host,
                                 .device = opt->device, .gpu_uuid = uuid,
                                 .requested_rank = opt->requested_rank,
                                 .mint = hgrid_nccl_mint};
    hgrid_count_ops(w, opt->train.config != NULL); // training answers an Abort with its counts
    int st = hgrid_hello(w, &hello);
    hgrid_comms *kept = NULL; // across an Abort
    while (st == HGRID_OK) {
        st = worker_await_assignment(w, opt);
        if (st != HGRID_OK)
            break;
        if (!opt->json)
            worker_print_assignment(w, opt, stdout);
        char why[HG_ERR_LEN + 128];
        if (train_check_job(&opt->train, hgrid_plan(w), hgrid_rank(w), why, sizeof why) != 0) {
            fprintf(stderr, "hgrid-worker: job %s: %s\n", opt->job, why);
            hgrid_leave(w, "this worker cannot train the job as submitted");
            alarm(TEARDOWN_LIMIT_S);
            hgrid_comms_abort(kept);
            alarm(0);
            hgrid_close(w);
            return 1;
        }
        st = run_one(w, opt, &kept);
        if (st == HGRID_OK && opt->self_test)
            break;
        if (st == HGRID_ABORTED) {
            worker_log(opt, "warn", hgrid_rank(w), hgrid_generation(w),
                       "generation %llu aborted: %s; waiting for the next assignment",
                       (unsigned long long)hgrid_generation(w), hgrid_reason(w));
            st = HGRID_OK;
        }
    }
    alarm(TEARDOWN_LIMIT_S);
    hgrid_comms_abort(kept); // an Abort, then no next assignment
    alarm(0);
    if (st == HGRID_OK) { // --self-test passed
        hgrid_close(w);
        return 0;
    }
    return worker_exit(w, opt, st);
}
