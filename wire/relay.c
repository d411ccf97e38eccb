// Relays: the frames a host link gathers for one message, both ways
// (hgrid-agent to gridd, gridd to the agent), and a received Relay's frames.
#include <stdlib.h>
#include <string.h>

#include "wire/wire.h"

// Doubles *cap until it holds need elements of size bytes; -1 out of memory.
static int grow(void *p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : 8;
    while (n < need)
        n *= 2;
    void *q = realloc(*(void **)p, n * size);
    if (!q)
        return -1;
    *(void **)p = q;
    *cap = n;
    return 0;
}

uint8_t *wire_relay_add(wire_relay_batch *b, uint32_t device, size_t len)
{
    size_t n = (size_t)b->num, cap = b->cap, lens_cap = b->cap, offsets_cap = b->cap;
    if (grow(&b->bytes, &b->bytes_cap, b->used + len, 1) ||
        grow(&b->devices, &cap, n + 1, sizeof *b->devices) ||
        grow(&b->offsets, &offsets_cap, n + 1, sizeof *b->offsets) ||
        grow(&b->lens, &lens_cap, n + 1, sizeof *b->lens))
        return NULL;
    b->cap = cap; // the three grow together: the same capacities
    uint8_t *at = b->bytes + b->used;
    b->devices[n] = device;
    b->offsets[n] = b->used;
    b->lens[n] = len;
    b->used += len;
    b->num++;
    return at;
}

ProtobufCBinaryData *wire_relay_message(const wire_relay_batch *b, Hgrid__Relay *relay)
{
    int n = b->num;
    bool shared = true;
    for (int i = 1; i < n && shared; i++)
        shared = b->lens[i] == b->lens[0] &&
                 !memcmp(b->bytes + b->offsets[i], b->bytes + b->offsets[0], b->lens[0]);
    int num_frames = shared ? 1 : n;
    ProtobufCBinaryData *frames = malloc(sizeof *frames * (size_t)(num_frames ? num_frames : 1));
    if (!frames)
        return NULL;
    for (int i = 0; i < num_frames; i++)
        frames[i] = (ProtobufCBinaryData){b->lens[i], b->bytes + b->offsets[i]};
    hgrid__relay__init(relay);
    relay->n_devices = (size_t)n;
    relay->devices = b->devices;
    relay->n_frames = (size_t)num_frames;
    relay->frames = frames;
    return frames;
}

void wire_relay_clear(wire_relay_batch *b)
{
    b->num = 0;
    b->used = 0;
}

void wire_relay_free(wire_relay_batch *b)
{
    free(b->devices);
    free(b->offsets);
    free(b->lens);
    free(b->bytes);
    *b = (wire_relay_batch){0};
}

const ProtobufCBinaryData *wire_relay_frame(const Hgrid__Relay *r, size_t i)
{
    if (i >= r->n_devices || (r->n_frames != 1 && r->n_frames != r->n_devices))
        return NULL;
    return &r->frames[r->n_frames == 1 ? 0 : i];
}
