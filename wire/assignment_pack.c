// Assignments and HostAssignment frames packed by hand, byte for byte as
// protobuf-c packs them (gridd's hottest messages: one per worker each
// generation), without protobuf-c's descriptor walk at every level.
#include <string.h>

#include "wire/wire.h"

// ---- the protobuf encoding (proto3: zero values are not written)
enum { VARINT = 0, LEN = 2 };

static size_t varint_size(uint64_t v)
{
    size_t n = 1;
    for (; v >= 0x80; v >>= 7)
        n++;
    return n;
}

size_t wire_put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    for (; v >= 0x80; v >>= 7)
        p[n++] = (uint8_t)(v | 0x80);
    p[n++] = (uint8_t)v;
    return n;
}

static size_t tag_size(unsigned field)
{
    return varint_size((uint64_t)field << 3);
}

static uint8_t *put_tag(uint8_t *p, unsigned field, int type)
{
    return p + wire_put_varint(p, (uint64_t)field << 3 | (unsigned)type);
}

static size_t varint_field_size(unsigned field, uint64_t v)
{
    return v ? tag_size(field) + varint_size(v) : 0;
}

static uint8_t *put_varint_field(uint8_t *p, unsigned field, uint64_t v)
{
    if (!v)
        return p;
    p = put_tag(p, field, VARINT);
    return p + wire_put_varint(p, v);
}

// An enum is an int32: negative values take 10 bytes, sign-extended.
static uint64_t enum_value(int v)
{
    return (uint64_t)(int64_t)v;
}

// A bool is one byte, 0 or 1.
static uint64_t bool_value(protobuf_c_boolean b)
{
    return b ? 1 : 0;
}

static size_t len_field_size(unsigned field, size_t len)
{
    return tag_size(field) + varint_size(len) + len;
}

static uint8_t *put_len_prefix(uint8_t *p, unsigned field, size_t len)
{
    p = put_tag(p, field, LEN);
    return p + wire_put_varint(p, len);
}

static size_t bytes_field_size(unsigned field, size_t len)
{
    return len ? len_field_size(field, len) : 0;
}

static uint8_t *put_bytes_field(uint8_t *p, unsigned field, const void *data, size_t len)
{
    if (!len)
        return p;
    p = put_len_prefix(p, field, len);
    memcpy(p, data, len);
    return p + len;
}

// A length-delimited field whose body put() writes: the body goes one byte
// after the tag and moves on if its length takes more than that byte (so
// nothing is sized twice; never past where the field ends).
typedef uint8_t *(*put_fn)(uint8_t *p, const void *msg);

static uint8_t *put_nested(uint8_t *p, unsigned field, put_fn put, const void *msg)
{
    p = put_tag(p, field, LEN);
    uint8_t *body = p + 1;
    size_t len = (size_t)(put(body, msg) - body), extra = varint_size(len) - 1;
    if (extra)
        memmove(body + extra, body, len);
    return p + wire_put_varint(p, len) + len;
}

static size_t string_len(const char *s)
{
    return s ? strlen(s) : 0;
}

// ---- the messages of an Assignment: their sizes, and their bytes
static size_t coords_size(const Hgrid__Coordinates *c)
{
    return varint_field_size(1, c->tp) + varint_field_size(2, c->cp) +
           varint_field_size(3, c->dp) + varint_field_size(4, c->pp) +
           varint_field_size(5, c->ep) + varint_field_size(6, c->expt_tp) +
           varint_field_size(7, c->expt_dp);
}

static uint8_t *put_coords(uint8_t *p, const void *msg)
{
    const Hgrid__Coordinates *c = msg;
    p = put_varint_field(p, 1, c->tp);
    p = put_varint_field(p, 2, c->cp);
    p = put_varint_field(p, 3, c->dp);
    p = put_varint_field(p, 4, c->pp);
    p = put_varint_field(p, 5, c->ep);
    p = put_varint_field(p, 6, c->expt_tp);
    return put_varint_field(p, 7, c->expt_dp);
}

static size_t group_size(const Hgrid__Group *g)
{
    return bytes_field_size(1, string_len(g->name)) + varint_field_size(2, g->size) +
           varint_field_size(3, g->rank_in_group) + varint_field_size(4, g->index) +
           bytes_field_size(5, g->nccl_id.len) +
           varint_field_size(100, g->id_ref) + varint_field_size(101, bool_value(g->kept));
}

static uint8_t *put_group(uint8_t *p, const void *msg)
{
    const Hgrid__Group *g = msg;
    p = put_bytes_field(p, 1, g->name, string_len(g->name));
    p = put_varint_field(p, 2, g->size);
    p = put_varint_field(p, 3, g->rank_in_group);
    p = put_varint_field(p, 4, g->index);
    p = put_bytes_field(p, 5, g->nccl_id.data, g->nccl_id.len);
    p = put_varint_field(p, 100, g->id_ref);
    return put_varint_field(p, 101, bool_value(g->kept));
}

static size_t peer_size(const Hgrid__BridgePeer *b)
{
    return varint_field_size(1, b->rank) + varint_field_size(2, b->rank_in_bridge) +
           varint_field_size(3, bool_value(b->send)) + varint_field_size(20, b->bridge);
}

static uint8_t *put_peer(uint8_t *p, const void *msg)
{
    const Hgrid__BridgePeer *b = msg;
    p = put_varint_field(p, 1, b->rank);
    p = put_varint_field(p, 2, b->rank_in_bridge);
    p = put_varint_field(p, 3, bool_value(b->send));
    return put_varint_field(p, 20, b->bridge);
}

static size_t groups_size(unsigned field, Hgrid__Group *const *groups, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += len_field_size(field, group_size(groups[i]));
    return total;
}

static uint8_t *put_groups(uint8_t *p, unsigned field, Hgrid__Group *const *groups, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p = put_nested(p, field, put_group, groups[i]);
    return p;
}

static size_t coords_field_size(unsigned field, const Hgrid__Coordinates *c)
{
    return c ? len_field_size(field, coords_size(c)) : 0;
}

static uint8_t *put_coords_field(uint8_t *p, unsigned field, const Hgrid__Coordinates *c)
{
    return c ? put_nested(p, field, put_coords, c) : p;
}

static size_t module_size(const Hgrid__ModuleAssignment *m)
{
    return varint_field_size(20, m->module_index) + varint_field_size(21, enum_value(m->module)) +
           coords_field_size(22, m->coordinates) + groups_size(23, m->groups, m->n_groups);
}

static uint8_t *put_module(uint8_t *p, const void *msg)
{
    const Hgrid__ModuleAssignment *m = msg;
    p = put_varint_field(p, 20, m->module_index);
    p = put_varint_field(p, 21, enum_value(m->module));
    p = put_coords_field(p, 22, m->coordinates);
    return put_groups(p, 23, m->groups, m->n_groups);
}

// The fields each message has when this file was written: a schema that
// grew since is packed by protobuf-c instead (and test_wire fails).
static bool schema_known(void)
{
    static int known = -1;
    if (known < 0)
        known = hgrid__assignment__descriptor.n_fields == 12 &&
                hgrid__group__descriptor.n_fields == 7 &&
                hgrid__coordinates__descriptor.n_fields == 7 &&
                hgrid__bridge_peer__descriptor.n_fields == 4 &&
                hgrid__module_assignment__descriptor.n_fields == 4;
    return known;
}

bool wire_assignment_hand_packed(void)
{
    return schema_known();
}

size_t wire_assignment_size(const Hgrid__Assignment *a)
{
    if (!schema_known())
        return hgrid__assignment__get_packed_size(a);
    size_t n = varint_field_size(1, a->generation);
    if (a->layout)
        n += len_field_size(2, hgrid__layout__get_packed_size(a->layout));
    n += varint_field_size(3, a->rank) + varint_field_size(4, a->world_size) +
         varint_field_size(5, enum_value(a->module)) + coords_field_size(6, a->coordinates) +
         groups_size(7, a->groups, a->n_groups);
    for (size_t i = 0; i < a->n_bridge_peers; i++)
        n += len_field_size(8, peer_size(a->bridge_peers[i]));
    n += bytes_field_size(9, string_len(a->job)) + varint_field_size(20, a->module_index);
    for (size_t i = 0; i < a->n_colocated_modules; i++)
        n += len_field_size(21, module_size(a->colocated_modules[i]));
    return n + varint_field_size(80, bool_value(a->assignment_only));
}

size_t wire_assignment_pack(const Hgrid__Assignment *a, uint8_t *out)
{
    if (!schema_known())
        return hgrid__assignment__pack(a, out);
    uint8_t *p = put_varint_field(out, 1, a->generation);
    if (a->layout) {
        p = put_len_prefix(p, 2, hgrid__layout__get_packed_size(a->layout));
        p += hgrid__layout__pack(a->layout, p);
    }
    p = put_varint_field(p, 3, a->rank);
    p = put_varint_field(p, 4, a->world_size);
    p = put_varint_field(p, 5, enum_value(a->module));
    p = put_coords_field(p, 6, a->coordinates);
    p = put_groups(p, 7, a->groups, a->n_groups);
    for (size_t i = 0; i < a->n_bridge_peers; i++)
        p = put_nested(p, 8, put_peer, a->bridge_peers[i]);
    p = put_bytes_field(p, 9, a->job, string_len(a->job));
    p = put_varint_field(p, 20, a->module_index);
    for (size_t i = 0; i < a->n_colocated_modules; i++)
        p = put_nested(p, 21, put_module, a->colocated_modules[i]);
    p = put_varint_field(p, 80, bool_value(a->assignment_only));
    return (size_t)(p - out);
}

// ---- a HostAssignment frame from its packed parts
// HostAssignment's fields, as in proto/hgrid.proto.
enum { HA_GENERATION = 100, HA_LAYOUT = 101, HA_DEVICES = 102, HA_ASSIGNMENTS = 103, HA_IDS = 104 };

static size_t devices_len(const wire_host_parts *h)
{
    size_t n = 0;
    for (size_t i = 0; i < h->n; i++)
        n += varint_size(h->devices[i]);
    return n;
}

static size_t host_body_size(const wire_host_parts *h)
{
    size_t n = varint_field_size(HA_GENERATION, h->generation);
    if (h->layout)
        n += len_field_size(HA_LAYOUT, h->layout_len);
    if (h->n)
        n += len_field_size(HA_DEVICES, devices_len(h));
    for (size_t i = 0; i < h->n; i++)
        n += len_field_size(HA_ASSIGNMENTS, h->assignment_lens[i]);
    for (size_t i = 0; i < h->n_ids; i++) // repeated: written even when empty
        n += len_field_size(HA_IDS, h->ids[i].len);
    return n;
}

// Envelope{version: current, host_assignment: body} around a body of len bytes.
static size_t envelope_size(size_t body)
{
    return varint_field_size(1, HGRID__VERSION__VERSION_CURRENT) +
           len_field_size(HGRID__ENVELOPE__MSG_HOST_ASSIGNMENT, body);
}

size_t wire_host_frame_size(const wire_host_parts *h)
{
    return WIRE_HEADER_BYTES + envelope_size(host_body_size(h));
}

size_t wire_host_frame_pack(const wire_host_parts *h, uint8_t *frame)
{
    size_t body = host_body_size(h), len = envelope_size(body);
    if (len > UINT32_MAX)
        return 0;
    for (int b = 0; b < WIRE_HEADER_BYTES; b++)
        frame[b] = (uint8_t)(len >> (8 * (WIRE_HEADER_BYTES - 1 - b)));
    uint8_t *p = frame + WIRE_HEADER_BYTES;
    p = put_varint_field(p, 1, HGRID__VERSION__VERSION_CURRENT);
    p = put_len_prefix(p, HGRID__ENVELOPE__MSG_HOST_ASSIGNMENT, body);
    p = put_varint_field(p, HA_GENERATION, h->generation);
    if (h->layout) {
        p = put_len_prefix(p, HA_LAYOUT, h->layout_len);
        memcpy(p, h->layout, h->layout_len);
        p += h->layout_len;
    }
    if (h->n) {
        p = put_len_prefix(p, HA_DEVICES, devices_len(h));
        for (size_t i = 0; i < h->n; i++)
            p += wire_put_varint(p, h->devices[i]);
    }
    const uint8_t *a = h->assignments;
    for (size_t i = 0; i < h->n; i++) {
        p = put_len_prefix(p, HA_ASSIGNMENTS, h->assignment_lens[i]);
        memcpy(p, a, h->assignment_lens[i]);
        p += h->assignment_lens[i];
        a += h->assignment_lens[i];
    }
    for (size_t i = 0; i < h->n_ids; i++) {
        p = put_len_prefix(p, HA_IDS, h->ids[i].len);
        memcpy(p, h->ids[i].data, h->ids[i].len);
        p += h->ids[i].len;
    }
    return (size_t)(p - frame);
}
