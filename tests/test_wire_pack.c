// The hand packing of Assignments and HostAssignment frames
// (wire/assignment_pack.c) against protobuf-c: the same bytes for messages
// filled at random from the schema's descriptors (every field, so a field
// added to the schema and not to the packing fails here), and a gridd-like
// HostAssignment that the agent's expansion turns back into each worker's
// Assignment.
#include <stdlib.h>
#include <string.h>

#include "tests/check.h"
#include "wire/wire.h"

// ---- messages filled at random from their descriptors
// Every allocation of one message tree, freed together.
static void **allocs;
static size_t num_allocs, cap_allocs;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void *alloc(size_t n)
{
    if (num_allocs == cap_allocs) {
        cap_allocs = cap_allocs ? cap_allocs * 2 : 256;
        allocs = realloc(allocs, sizeof *allocs * cap_allocs);
        if (!allocs)
            abort();
    }
    void *p = calloc(1, n ? n : 1);
    if (!p)
        abort();
    return allocs[num_allocs++] = p;
}

static void free_all(void)
{
    for (size_t i = 0; i < num_allocs; i++)
        free(allocs[i]);
    num_allocs = 0;
}

// Values at the varint length boundaries, and a few plain ones.
static uint64_t random_uint(void)
{
    static const uint64_t edges[] = {0, 1, 127, 128, 300, 16383, 16384, 2097152, 0x7fffffff,
                                     0x80000000u, 0xffffffffu};
    uint64_t r = next_random();
    return r % 3 ? edges[r / 3 % (sizeof edges / sizeof edges[0])] : (uint32_t)(r >> 17);
}

static size_t element_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    default:
        return 4;
    }
}

static void fill_message(ProtobufCMessage *m, const ProtobufCMessageDescriptor *d, int depth);

static void fill_value(const ProtobufCFieldDescriptor *f, void *at, int depth)
{
    uint64_t r = next_random();
    switch (f->type) {
    case PROTOBUF_C_TYPE_BOOL:
        *(protobuf_c_boolean *)at = (protobuf_c_boolean)(r & 1);
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *e = f->descriptor;
        *(int *)at = e->values[r % e->n_values].value;
        break;
    }
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        *(int32_t *)at = (int32_t)(uint32_t)random_uint() * (r & 1 ? -1 : 1);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        *(uint32_t *)at = (uint32_t)random_uint();
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        *(float *)at = (float)(r % 1000) / 8;
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        *(double *)at = (double)(r % 100000) / 16;
        break;
    case PROTOBUF_C_TYPE_STRING: {
        size_t len = r % 4 ? r / 4 % 24 : 0;
        char *s = alloc(len + 1);
        for (size_t i = 0; i < len; i++)
            s[i] = (char)('a' + (next_random() % 26));
        *(char **)at = s;
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        static const size_t lens[] = {0, 1, 127, 128, 129, 200};
        size_t len = lens[r % (sizeof lens / sizeof lens[0])];
        uint8_t *b = alloc(len);
        for (size_t i = 0; i < len; i++)
            b[i] = (uint8_t)next_random();
        *(ProtobufCBinaryData *)at = (ProtobufCBinaryData){len, b};
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessageDescriptor *d = f->descriptor;
        ProtobufCMessage *sub = NULL;
        if (depth < 4) {
            sub = alloc(d->sizeof_message);
            fill_message(sub, d, depth + 1);
        }
        *(ProtobufCMessage **)at = sub;
        break;
    }
    default: // 64-bit integers
        *(uint64_t *)at = r % 3 ? random_uint() : r;
        break;
    }
}

// Sets most fields of m (each with some chance of being left at zero),
// repeated ones 0-3 times, one field of each oneof.
static void fill_message(ProtobufCMessage *m, const ProtobufCMessageDescriptor *d, int depth)
{
    protobuf_c_message_init(d, m);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        char *member = (char *)m + f->offset;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t *which = (uint32_t *)((char *)m + f->quantifier_offset);
            if (*which == 0 && next_random() % 2) {
                *which = f->id;
                fill_value(f, member, depth);
            }
        } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = next_random() % 4, size = element_size(f);
            char *elements = alloc(n * size);
            for (size_t k = 0; k < n; k++) {
                fill_value(f, elements + k * size, depth);
                if (f->type == PROTOBUF_C_TYPE_MESSAGE && !*(void **)(elements + k * size))
                    n = k; // too deep for elements: fewer of them
            }
            *(size_t *)((char *)m + f->quantifier_offset) = n;
            *(void **)member = elements;
        } else if (next_random() % 4) {
            if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset)
                *(protobuf_c_boolean *)((char *)m + f->quantifier_offset) = 1;
            fill_value(f, member, depth);
        }
    }
}

// ---- the same bytes as protobuf-c
static int compared;

static size_t first_difference(const uint8_t *a, const uint8_t *b, size_t n)
{
    size_t k = 0;
    while (k < n && a[k] == b[k])
        k++;
    return k;
}

static void check_assignment(const Hgrid__Assignment *a, int trial)
{
    size_t want = hgrid__assignment__get_packed_size(a);
    uint8_t *ref = malloc(want + 1), *ours = malloc(want + 64);
    hgrid__assignment__pack(a, ref);
    size_t size = wire_assignment_size(a);
    memset(ours, 0xee, want + 64);
    size_t len = wire_assignment_pack(a, ours);
    CHECK(size == want && len == want && !memcmp(ref, ours, want),
          "trial %d: Assignment packed by hand: size %zu, %zu bytes, protobuf-c %zu (first "
          "difference at %zu)", trial, size, len, want,
          first_difference(ref, ours, len < want ? len : want));
    CHECK(ours[len] == 0xee, "trial %d: wrote past the size it gave", trial);
    free(ref);
    free(ours);
    compared++;
}

static void test_random_assignments(void)
{
    CHECK(wire_assignment_hand_packed(),
          "the schema has Assignment fields wire/assignment_pack.c does not pack");
    for (int trial = 0; trial < 3000; trial++) {
        Hgrid__Assignment *a = alloc(sizeof *a);
        fill_message(&a->base, &hgrid__assignment__descriptor, 0);
        if (trial % 2)
            a->layout = NULL; // as in a HostAssignment
        check_assignment(a, trial);
        free_all();
    }
}

// A HostAssignment's parts packed by hand against the whole Envelope
// packed by protobuf-c.
static void check_host_frame(const Hgrid__HostAssignment *ha, int trial)
{
    Hgrid__Envelope env;
    wire_envelope_init(&env);
    env.msg_case = HGRID__ENVELOPE__MSG_HOST_ASSIGNMENT;
    env.host_assignment = (Hgrid__HostAssignment *)ha;
    uint8_t *ref;
    size_t want = wire_pack(&env, &ref);
    size_t total = 0, layout_len = ha->layout ? hgrid__layout__get_packed_size(ha->layout) : 0;
    for (size_t i = 0; i < ha->n_assignments; i++)
        total += wire_assignment_size(ha->assignments[i]);
    uint8_t *packed = malloc(total + 1), *layout = malloc(layout_len + 1);
    size_t *lens = malloc(sizeof *lens * (ha->n_assignments + 1));
    for (size_t i = 0, at = 0; i < ha->n_assignments; i++) {
        lens[i] = wire_assignment_pack(ha->assignments[i], packed + at);
        at += lens[i];
    }
    if (ha->layout)
        hgrid__layout__pack(ha->layout, layout);
    wire_host_parts parts = {
        .generation = ha->generation, .layout = ha->layout ? layout : NULL,
        .layout_len = layout_len, .devices = ha->devices, .assignments = packed,
        .assignment_lens = lens, .n = ha->n_assignments, .ids = ha->ids, .n_ids = ha->n_ids};
    size_t size = wire_host_frame_size(&parts);
    uint8_t *frame = malloc(size + 16);
    memset(frame, 0xee, size + 16);
    size_t len = wire_host_frame_pack(&parts, frame);
    CHECK(want && size == want && len == want && !memcmp(ref, frame, want),
          "trial %d: HostAssignment frame by hand: size %zu, %zu bytes, protobuf-c %zu", trial,
          size, len, want);
    CHECK(frame[len] == 0xee, "trial %d: wrote past the size it gave", trial);
    free(ref);
    free(packed);
    free(layout);
    free(lens);
    free(frame);
    compared++;
}

static void test_random_host_frames(void)
{
    for (int trial = 0; trial < 1000; trial++) {
        Hgrid__HostAssignment *ha = alloc(sizeof *ha);
        fill_message(&ha->base, &hgrid__host_assignment__descriptor, 0);
        // One device per assignment, as the parts carry them.
        ha->n_devices = ha->n_assignments;
        ha->devices = alloc(sizeof *ha->devices * (ha->n_devices + 1));
        for (size_t i = 0; i < ha->n_devices; i++)
            ha->devices[i] = (uint32_t)random_uint();
        check_host_frame(ha, trial);
        free_all();
    }
}

// ---- what the agent makes of it
// Eight workers' Assignments as gridd builds them (ids as id_refs, no
// layout, no job), packed by hand into one frame, expand into each
// worker's Assignment with its ids, layout and job.
static void test_expanded_by_the_agent(void)
{
    enum { WORKERS = 8, IDS = 3, GROUPS = 4 };
    uint8_t idbytes[IDS][128];
    ProtobufCBinaryData ids[IDS];
    for (int i = 0; i < IDS; i++) {
        memset(idbytes[i], 0x10 + i, sizeof idbytes[i]);
        ids[i] = (ProtobufCBinaryData){128, idbytes[i]};
    }
    static const char *names[GROUPS] = {"tp", "dp", "pp", "tp_dp"};
    Hgrid__Group groups[WORKERS][GROUPS], *group_ptrs[WORKERS][GROUPS];
    Hgrid__Coordinates coords[WORKERS];
    Hgrid__Assignment as[WORKERS];
    uint8_t packed[WORKERS * 256];
    size_t lens[WORKERS], at = 0;
    uint32_t devices[WORKERS];
    for (int w = 0; w < WORKERS; w++) {
        hgrid__assignment__init(&as[w]);
        hgrid__coordinates__init(&coords[w]);
        coords[w].tp = (uint32_t)w % 2;
        coords[w].dp = (uint32_t)w / 2;
        as[w].generation = 4, as[w].rank = 800 + (uint32_t)w, as[w].world_size = 4096;
        as[w].module = HGRID__MODULE__MODULE_LLM, as[w].coordinates = &coords[w];
        as[w].job = (char *)protobuf_c_empty_string;
        for (int g = 0; g < GROUPS; g++) {
            hgrid__group__init(&groups[w][g]);
            groups[w][g].name = (char *)names[g];
            groups[w][g].size = g == 2 ? 1 : 2;
            groups[w][g].rank_in_group = (uint32_t)w % 2;
            groups[w][g].index = (uint32_t)(w / 2 + g);
            groups[w][g].id_ref = g == 2 ? 0 : (uint32_t)((w + g) % IDS) + 1; // pp: one rank, no id
            groups[w][g].kept = g == 1;
            group_ptrs[w][g] = &groups[w][g];
        }
        as[w].n_groups = GROUPS, as[w].groups = group_ptrs[w];
        devices[w] = (uint32_t)(WORKERS - 1 - w);
        lens[w] = wire_assignment_pack(&as[w], packed + at);
        at += lens[w];
    }
    hg_layout_spec spec;
    hg_layout_spec_defaults(&spec);
    wire_layout wl;
    wire_layout_from_spec(&spec, &wl);
    uint8_t layout[1024];
    size_t layout_len = hgrid__layout__pack(&wl.layout, layout);
    wire_host_parts parts = {.generation = 4, .layout = layout, .layout_len = layout_len,
                             .devices = devices, .assignments = packed, .assignment_lens = lens,
                             .n = WORKERS, .ids = ids, .n_ids = IDS};
    uint8_t frame[8192];
    size_t len = wire_host_frame_pack(&parts, frame);
    CHECK_EQ(len, wire_host_frame_size(&parts));
    CHECK_EQ((size_t)frame[0] << 24 | (size_t)frame[1] << 16 | (size_t)frame[2] << 8 | frame[3],
             len - WIRE_HEADER_BYTES);
    Hgrid__Envelope *env = wire_unpack(frame + WIRE_HEADER_BYTES, len - WIRE_HEADER_BYTES);
    char why[128];
    CHECK(env && env->msg_case == HGRID__ENVELOPE__MSG_HOST_ASSIGNMENT &&
              !wire_check_version(env, why, sizeof why),
          "the frame is a HostAssignment of the current version");
    if (!env || env->msg_case != HGRID__ENVELOPE__MSG_HOST_ASSIGNMENT)
        return;
    const Hgrid__HostAssignment *ha = env->host_assignment;
    CHECK(ha->generation == 4 && ha->n_devices == WORKERS && ha->n_assignments == WORKERS &&
          ha->n_ids == IDS && ha->layout, "generation, devices, assignments, ids, layout");
    for (size_t i = 0; i < ha->n_assignments && i < WORKERS; i++) {
        CHECK_EQ(ha->devices[i], devices[i]);
        uint8_t *one;
        char err[256];
        size_t n = wire_host_assignment_frame(ha, i, "job-pack", &one, err, sizeof err);
        Hgrid__Envelope *e = n ? wire_unpack(one + WIRE_HEADER_BYTES, n - WIRE_HEADER_BYTES) : NULL;
        if (n)
            free(one);
        const Hgrid__Assignment *a = e && e->msg_case == HGRID__ENVELOPE__MSG_ASSIGNMENT
                                         ? e->assignment : NULL;
        CHECK(a, "worker %zu's Assignment: %s", i, n ? "undecodable" : err);
        if (!a) {
            wire_free_envelope(e);
            continue;
        }
        CHECK(a->rank == 800 + i && a->generation == 4 && a->world_size == 4096 &&
                  !strcmp(a->job, "job-pack") && a->layout &&
                  a->layout->llm_tp == (uint32_t)spec.llm_tp && a->coordinates &&
                  a->coordinates->dp == i / 2 && a->n_groups == GROUPS,
              "worker %zu: rank, generation, job, layout, coordinates", i);
        for (size_t g = 0; g < a->n_groups && g < GROUPS; g++) {
            const Hgrid__Group *got = a->groups[g], *sent = &groups[i][g];
            const uint8_t *id = sent->id_ref ? idbytes[sent->id_ref - 1] : NULL;
            CHECK(!strcmp(got->name, sent->name) && got->size == sent->size &&
                      got->index == sent->index && got->kept == sent->kept && !got->id_ref &&
                      got->nccl_id.len == (id ? 128u : 0u) &&
                      (!id || !memcmp(got->nccl_id.data, id, 128)),
                  "worker %zu group %s: fields and its id", i, sent->name);
        }
        wire_free_envelope(e);
        compared++;
    }
    wire_free_envelope(env);
}

int main(void)
{
    test_random_assignments();
    test_random_host_frames();
    test_expanded_by_the_agent();
    CHECK(compared == 3000 + 1000 + 8, "%d messages compared", compared);
    free(allocs);
    return check_summary("test_wire_pack");
}
