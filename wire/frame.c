// Framing: length-prefixed Envelopes, length checked before allocating.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire/wire.h"

void wire_reader_init(wire_reader *r, uint32_t max_frame)
{
    memset(r, 0, sizeof *r);
    r->max_frame = max_frame;
}

void wire_reader_free(wire_reader *r)
{
    free(r->body);
    r->body = NULL;
    r->header_have = r->body_have = r->body_len = 0;
}

bool wire_reader_partial(const wire_reader *r)
{
    return r->header_have > 0 || r->body != NULL;
}

static uint32_t read_be32(const uint8_t *p)
{
    uint8_t b[4];
    memcpy(b, p, 4);
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static int oversized(const wire_reader *r, uint32_t len, char *err, size_t errlen)
{
    snprintf(err, errlen, "frame of %u bytes exceeds the %u-byte limit", len, r->max_frame);
    return -1;
}

int wire_reader_feed(wire_reader *r, const uint8_t *data, size_t len, wire_frame_fn on_frame,
                     void *ctx, char *err, size_t errlen)
{
    while (len > 0) {
        if (r->body) { // finishing a frame split across reads
            size_t take = r->body_len - r->body_have;
            if (take > len)
                take = len;
            memcpy(r->body + r->body_have, data, take);
            r->body_have += (uint32_t)take;
            data += take;
            len -= take;
            if (r->body_have < r->body_len)
                return 0;
            uint8_t *body = r->body;
            r->body = NULL;
            int stop = on_frame(ctx, body, r->body_len);
            free(body);
            if (stop)
                return 1;
            continue;
        }
        if (r->header_have < WIRE_HEADER_BYTES) {
            size_t take = WIRE_HEADER_BYTES - r->header_have;
            if (take > len)
                take = len;
            memcpy(r->header + r->header_have, data, take);
            r->header_have += (uint32_t)take;
            data += take;
            len -= take;
            if (r->header_have < WIRE_HEADER_BYTES)
                return 0;
        }
        uint32_t body_len = read_be32(r->header);
        if (body_len > r->max_frame)
            return oversized(r, body_len, err, errlen);
        r->header_have = 0;
        if (len >= body_len) { // whole body in hand: no copy
            const uint8_t *body = data;
            data += body_len;
            len -= body_len;
            if (on_frame(ctx, body, body_len))
                return 1;
            continue;
        }
        r->body = malloc(body_len);
        if (!r->body) {
            snprintf(err, errlen, "out of memory for a %u-byte frame", body_len);
            return -1;
        }
        r->body_len = body_len;
        r->body_have = 0;
    }
    return 0;
}

void wire_envelope_init(Hgrid__Envelope *env)
{
    hgrid__envelope__init(env);
    env->version = HGRID__VERSION__VERSION_CURRENT;
}

size_t wire_pack_into(const Hgrid__Envelope *env, uint8_t *buf, size_t cap)
{
    size_t body = hgrid__envelope__get_packed_size(env);
    if (body > UINT32_MAX || WIRE_HEADER_BYTES + body > cap)
        return 0;
    buf[0] = (uint8_t)(body >> 24);
    buf[1] = (uint8_t)(body >> 16);
    buf[2] = (uint8_t)(body >> 8);
    buf[3] = (uint8_t)body;
    if (hgrid__envelope__pack(env, buf + WIRE_HEADER_BYTES) != body)
        return 0;
    return WIRE_HEADER_BYTES + body;
}

size_t wire_pack(const Hgrid__Envelope *env, uint8_t **frame)
{
    size_t body = hgrid__envelope__get_packed_size(env);
    if (body > UINT32_MAX)
        return 0;
    uint8_t *buf = malloc(WIRE_HEADER_BYTES + body);
    if (!buf)
        return 0;
    size_t len = wire_pack_into(env, buf, WIRE_HEADER_BYTES + body);
    if (len == 0) {
        free(buf);
        return 0;
    }
    *frame = buf;
    return len;
}

static bool read_varint(const uint8_t *p, size_t len, size_t *i, uint64_t *out)
{
    *out = 0;
    for (int shift = 0; shift < 64 && *i < len; shift += 7) {
        uint8_t b = p[(*i)++];
        *out |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return true;
    }
    return false;
}

// Whether a string field of message d (at any depth) holds a NUL byte,
// where protobuf-c would silently cut the string. Malformed input is left
// to the unpacker.
static bool has_nul_string(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len,
                           int depth)
{
    size_t i = 0;
    uint64_t key, n;
    while (i < len && read_varint(p, len, &i, &key)) {
        switch (key & 7) {
        case 0:
            if (!read_varint(p, len, &i, &n))
                return false;
            break;
        case 1: i += 8; break;
        case 5: i += 4; break;
        case 2: {
            if (!read_varint(p, len, &i, &n) || n > len - i)
                return false;
            const ProtobufCFieldDescriptor *f =
                protobuf_c_message_descriptor_get_field(d, (unsigned)(key >> 3));
            if (f && f->type == PROTOBUF_C_TYPE_STRING && memchr(p + i, 0, n))
                return true;
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE && depth < 32 &&
                has_nul_string(f->descriptor, p + i, n, depth + 1))
                return true;
            i += n;
            break;
        }
        default:
            return false;
        }
    }
    return false;
}

// protobuf-c's allocations for one unpack, counted against a budget: a
// frame of many empty repeated entries would otherwise inflate ~77x.
typedef struct {
    size_t left;
} unpack_budget;

static void *budget_alloc(void *data, size_t size)
{
    unpack_budget *b = data;
    if (size > b->left)
        return NULL;
    b->left -= size;
    return malloc(size);
}

static void budget_free(void *data, void *p)
{
    (void)data;
    free(p); // the same free as protobuf-c's default: wire_free_envelope needs no budget
}

Hgrid__Envelope *wire_unpack(const uint8_t *body, size_t len)
{
    if (has_nul_string(&hgrid__envelope__descriptor, body, len, 0))
        return NULL;
    unpack_budget budget = {WIRE_UNPACK_FACTOR * len + WIRE_UNPACK_BASE};
    ProtobufCAllocator allocator = {budget_alloc, budget_free, &budget};
    return hgrid__envelope__unpack(&allocator, len, body);
}

void wire_free_envelope(Hgrid__Envelope *env)
{
    if (env)
        hgrid__envelope__free_unpacked(env, NULL);
}

const char *wire_check_version(const Hgrid__Envelope *env, char *buf, size_t buflen)
{
    if (env->version != HGRID__VERSION__VERSION_CURRENT) {
        snprintf(buf, buflen,
                 "protocol version %d is not supported: this side speaks version %d; use "
                 "matching hgrid builds",
                 (int)env->version, (int)HGRID__VERSION__VERSION_CURRENT);
        return buf;
    }
    if (env->msg_case == HGRID__ENVELOPE__MSG__NOT_SET) {
        snprintf(buf, buflen, "envelope carries no message");
        return buf;
    }
    return NULL;
}

// Replaces what a terminal could obey in s: C0 controls, DEL and every
// byte >= 0x80 (C1 controls, raw or UTF-8 encoded) become '?'.
void wire_printable(char *s)
{
    for (; s && *s; s++)
        if ((unsigned char)*s < ' ' || (unsigned char)*s >= 0x7f)
            *s = '?';
}

static void printable_message(ProtobufCMessage *m, int depth)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields && depth < 16; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        char *base = (char *)m;
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(uint32_t *)(base + f->quantifier_offset) != f->id)
            continue;
        void **values = (void **)(base + f->offset);
        size_t n = 1;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            n = *(size_t *)(base + f->quantifier_offset);
            values = *(void ***)values;
        }
        for (size_t k = 0; values && k < n; k++) {
            if (!values[k])
                continue;
            if (f->type == PROTOBUF_C_TYPE_STRING)
                wire_printable(values[k]);
            else
                printable_message(values[k], depth + 1);
        }
    }
}

void wire_printable_envelope(Hgrid__Envelope *env)
{
    if (env)
        printable_message(&env->base, 0);
}
