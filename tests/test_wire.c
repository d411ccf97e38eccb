// Framing: frames split at every byte, several per read, oversized refused
// before allocation; pack/unpack round trip; version check; layout round trip.
#include <stdlib.h>
#include <string.h>

#include "tests/check.h"
#include "wire/wire.h"

typedef struct {
    int frames;
    char jobs[8][32];
    int stop_after;
} sink;

static int collect(void *ctx, const uint8_t *body, uint32_t len)
{
    sink *s = ctx;
    Hgrid__Envelope *env = wire_unpack(body, len);
    CHECK(env && env->msg_case == HGRID__ENVELOPE__MSG_HELLO, "frame %d undecodable", s->frames);
    if (env && env->msg_case == HGRID__ENVELOPE__MSG_HELLO && s->frames < 8)
        snprintf(s->jobs[s->frames], 32, "%s", env->hello->job);
    wire_free_envelope(env);
    s->frames++;
    return s->stop_after && s->frames >= s->stop_after;
}

static size_t hello_frame(const char *job, uint8_t **frame)
{
    Hgrid__Envelope env;
    Hgrid__Hello hello;
    wire_envelope_init(&env);
    hgrid__hello__init(&hello);
    hello.job = (char *)job;
    hello.host = "node-a";
    hello.local_device = 3;
    env.msg_case = HGRID__ENVELOPE__MSG_HELLO;
    env.hello = &hello;
    return wire_pack(&env, frame);
}

static void test_split_everywhere(void)
{
    uint8_t *a, *b;
    size_t na = hello_frame("alpha", &a), nb = hello_frame("beta", &b);
    uint8_t stream[256];
    memcpy(stream, a, na);
    memcpy(stream + na, b, nb);
    size_t n = na + nb;
    for (size_t cut1 = 0; cut1 <= n; cut1++) {
        for (size_t cut2 = cut1; cut2 <= n; cut2 += 3) {
            wire_reader r;
            wire_reader_init(&r, WIRE_DEFAULT_MAX_FRAME);
            sink s = {0};
            char err[128];
            int rc = wire_reader_feed(&r, stream, cut1, collect, &s, err, sizeof err) |
                     wire_reader_feed(&r, stream + cut1, cut2 - cut1, collect, &s, err, sizeof err) |
                     wire_reader_feed(&r, stream + cut2, n - cut2, collect, &s, err, sizeof err);
            CHECK(rc == 0 && s.frames == 2 && strcmp(s.jobs[0], "alpha") == 0 &&
                      strcmp(s.jobs[1], "beta") == 0,
                  "cuts %zu/%zu: rc %d, %d frames", cut1, cut2, rc, s.frames);
            CHECK(!wire_reader_partial(&r), "reader left partial at cuts %zu/%zu", cut1, cut2);
            wire_reader_free(&r);
        }
    }
    // stop requested by the callback: the second frame is not delivered
    wire_reader r;
    wire_reader_init(&r, WIRE_DEFAULT_MAX_FRAME);
    sink s = {.stop_after = 1};
    char err[128];
    CHECK_EQ(wire_reader_feed(&r, stream, n, collect, &s, err, sizeof err), 1);
    CHECK_EQ(s.frames, 1);
    wire_reader_free(&r);
    // truncated: half a frame leaves the reader partial
    wire_reader_init(&r, WIRE_DEFAULT_MAX_FRAME);
    s = (sink){0};
    CHECK_EQ(wire_reader_feed(&r, stream, na - 2, collect, &s, err, sizeof err), 0);
    CHECK(wire_reader_partial(&r) && s.frames == 0, "truncated frame not pending");
    wire_reader_free(&r);
    free(a);
    free(b);
}

static void test_oversized(void)
{
    wire_reader r;
    wire_reader_init(&r, 1024);
    const uint8_t huge[4] = {0x7f, 0xff, 0xff, 0xff}; // 2 GiB announced
    sink s = {0};
    char err[128] = "";
    CHECK_EQ(wire_reader_feed(&r, huge, 4, collect, &s, err, sizeof err), -1);
    CHECK(strstr(err, "2147483647 bytes exceeds the 1024-byte limit") != NULL, "err: %s", err);
    CHECK(r.body == NULL, "allocated for an oversized frame");
    wire_reader_free(&r);
    // exactly at the limit is fine
    wire_reader_init(&r, 4);
    const uint8_t ok[8] = {0, 0, 0, 4, 0x08, 0x01, 0x52, 0x00}; // version 1, empty Hello
    CHECK_EQ(wire_reader_feed(&r, ok, 8, collect, &s, err, sizeof err), 0);
    CHECK_EQ(s.frames, 1);
    wire_reader_free(&r);
}

static void test_version_and_garbage(void)
{
    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0xff};
    CHECK(wire_unpack(garbage, sizeof garbage) == NULL, "garbage decoded");
    Hgrid__Envelope env;
    hgrid__envelope__init(&env);
    env.version = 7;
    Hgrid__Ok ok;
    hgrid__ok__init(&ok);
    env.msg_case = HGRID__ENVELOPE__MSG_OK;
    env.ok = &ok;
    uint8_t *frame;
    size_t n = wire_pack(&env, &frame);
    Hgrid__Envelope *back = wire_unpack(frame + 4, n - 4);
    char buf[160];
    const char *why = back ? wire_check_version(back, buf, sizeof buf) : NULL;
    CHECK(why && strstr(why, "protocol version 7 is not supported") && strstr(why, "version 2"),
          "version reason: %s", why ? why : "(none)");
    wire_free_envelope(back);
    free(frame);
    hgrid__envelope__init(&env);
    env.version = HGRID__VERSION__VERSION_CURRENT;
    n = wire_pack(&env, &frame);
    back = wire_unpack(frame + 4, n - 4);
    CHECK(back && wire_check_version(back, buf, sizeof buf) != NULL, "empty envelope accepted");
    wire_free_envelope(back);
    free(frame);
}

static void test_layout_round_trip(void)
{
    hg_layout_spec spec, back;
    hg_layout_spec_defaults(&spec);
    spec.llm_pp = 2;
    spec.model.num_experts = 4;
    spec.global_batch_size = 16;
    wire_layout wl;
    wire_layout_from_spec(&spec, &wl);
    Hgrid__Layout l = wl.layout;
    char err[128];
    memset(&back, 0, sizeof back);
    CHECK_EQ(wire_layout_to_spec(&l, &back, err, sizeof err), 0);
    CHECK(memcmp(&spec, &back, sizeof spec) == 0, "layout changed on the round trip");
    // Issue 17's fields: an offset, colocated, padding, several encoders.
    hg_layout_spec more = spec;
    more.llm_offset_given = true;
    more.llm_offset = 6;
    more.colocated = true;
    more.make_vocab_size_divisible_by = 64;
    more.num_encoders = 2;
    more.encoders[0] = (hg_encoder_spec){"vision", 2, 2};
    more.encoders[1] = (hg_encoder_spec){"audio", 1, 2};
    wire_layout wm;
    wire_layout_from_spec(&more, &wm);
    uint8_t packed[1024];
    size_t n = hgrid__layout__pack(&wm.layout, packed);
    Hgrid__Layout *un = hgrid__layout__unpack(NULL, n, packed);
    hg_layout_spec back_more;
    memset(&back_more, 0, sizeof back_more);
    CHECK(un && wire_layout_to_spec(un, &back_more, err, sizeof err) == 0, "unpack: %s", err);
    more.encoder_tp = more.encoder_dp = 0; // an encoder list replaces the shorthand on the wire
    CHECK(memcmp(&more, &back_more, sizeof more) == 0, "issue 17 fields changed on the round trip");
    hgrid__layout__free_unpacked(un, NULL);
    // A layout from before them: no offset, non-colocated, padding to llm_tp.
    l.llm_offset = NULL;
    l.colocated = false;
    l.make_vocab_size_divisible_by = 0;
    l.n_encoders = 0;
    CHECK_EQ(wire_layout_to_spec(&l, &back, err, sizeof err), 0);
    CHECK(!back.llm_offset_given && !back.colocated && back.make_vocab_size_divisible_by == 0 &&
              back.num_encoders == 0,
          "an older layout: offset %d, divisor %d", back.llm_offset,
          back.make_vocab_size_divisible_by);
    l.llm_tp = 0x80000000u;
    CHECK_EQ(wire_layout_to_spec(&l, &back, err, sizeof err), -1);
    l.model = NULL;
    CHECK_EQ(wire_layout_to_spec(&l, &back, err, sizeof err), -1);
}

// A HostAssignment expands into each worker's Assignment: layout and job
// filled in, each id_ref resolved to its id; a bad id_ref is refused.
static void test_host_assignment(void)
{
    uint8_t id0[128], id1[128];
    memset(id0, 0xa0, sizeof id0);
    memset(id1, 0xb1, sizeof id1);
    ProtobufCBinaryData ids[2] = {{128, id0}, {128, id1}};
    Hgrid__Group tp = HGRID__GROUP__INIT, dp = HGRID__GROUP__INIT, one = HGRID__GROUP__INIT;
    tp.name = "tp", tp.size = 2, tp.id_ref = 2;
    dp.name = "dp", dp.size = 2, dp.id_ref = 1, dp.kept = true;
    one.name = "pp", one.size = 1;
    Hgrid__Group *groups[] = {&tp, &dp, &one};
    Hgrid__Assignment a = HGRID__ASSIGNMENT__INIT;
    a.generation = 3, a.rank = 5, a.n_groups = 3, a.groups = groups;
    Hgrid__Assignment *as[] = {&a};
    Hgrid__Layout layout = HGRID__LAYOUT__INIT;
    layout.llm_tp = 2;
    uint32_t devices[] = {7};
    Hgrid__HostAssignment ha = HGRID__HOST_ASSIGNMENT__INIT;
    ha.generation = 3, ha.layout = &layout, ha.n_devices = 1, ha.devices = devices;
    ha.n_assignments = 1, ha.assignments = as, ha.n_ids = 2, ha.ids = ids;
    uint8_t *frame;
    char err[256];
    size_t len = wire_host_assignment_frame(&ha, 0, "job-x", &frame, err, sizeof err);
    CHECK(len > WIRE_HEADER_BYTES, "expanded: %s", len ? "" : err);
    if (len) {
        Hgrid__Envelope *env = wire_unpack(frame + WIRE_HEADER_BYTES, len - WIRE_HEADER_BYTES);
        free(frame);
        CHECK(env && env->msg_case == HGRID__ENVELOPE__MSG_ASSIGNMENT, "an Assignment");
        const Hgrid__Assignment *b = env ? env->assignment : NULL;
        CHECK(b && b->rank == 5 && !strcmp(b->job, "job-x") && b->layout && b->layout->llm_tp == 2,
              "rank, job and layout filled in");
        CHECK(b && b->n_groups == 3 && b->groups[0]->nccl_id.len == 128 &&
              !memcmp(b->groups[0]->nccl_id.data, id1, 128) && !memcmp(b->groups[1]->nccl_id.data, id0, 128) &&
              b->groups[1]->kept && !b->groups[2]->nccl_id.len && !b->groups[0]->id_ref,
              "ids resolved once each, kept carried, one-rank group without id");
        wire_free_envelope(env);
    }
    CHECK(tp.id_ref == 2 && !tp.nccl_id.len, "the HostAssignment is left as it was");
    tp.id_ref = 3;
    CHECK(wire_host_assignment_frame(&ha, 0, "job-x", &frame, err, sizeof err) == 0 &&
          strstr(err, "refers to id 3 of 2"), "an id_ref past the ids is refused: %s", err);
    CHECK(wire_host_assignment_frame(&ha, 1, "job-x", &frame, err, sizeof err) == 0,
          "no assignment 1");
}

int main(void)
{
    test_split_everywhere();
    test_oversized();
    test_version_and_garbage();
    test_layout_round_trip();
    test_host_assignment();
    return check_summary("test_wire");
}
