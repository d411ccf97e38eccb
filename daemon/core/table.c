// Open-addressing hash index: linear probing, backward-shift deletion.
#include "daemon/core/table.h"

#include <stdlib.h>
#include <string.h>

// Mixes a key so that consecutive keys spread over the buckets.
static uint32_t bucket_of(const table *t, uint64_t key)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (uint32_t)key & t->mask;
}

static int alloc_buckets(table *t, uint32_t capacity)
{
    t->keys = malloc(sizeof *t->keys * capacity);
    t->values = malloc(sizeof *t->values * capacity);
    if (!t->keys || !t->values) {
        free(t->keys);
        free(t->values);
        t->keys = NULL;
        t->values = NULL;
        return -1;
    }
    memset(t->values, 0xff, sizeof *t->values * capacity);
    t->mask = capacity - 1;
    t->count = 0;
    return 0;
}

int table_init(table *t, uint32_t expected)
{
    uint32_t capacity = 16;
    while (capacity < 2 * expected && capacity < (1u << 30))
        capacity *= 2;
    return alloc_buckets(t, capacity);
}

void table_free(table *t)
{
    free(t->keys);
    free(t->values);
    memset(t, 0, sizeof *t);
}

void table_clear(table *t)
{
    memset(t->values, 0xff, sizeof *t->values * (t->mask + 1));
    t->count = 0;
}

static void put(table *t, uint64_t key, int32_t value)
{
    uint32_t b = bucket_of(t, key);
    while (t->values[b] >= 0)
        b = (b + 1) & t->mask;
    t->keys[b] = key;
    t->values[b] = value;
    t->count++;
}

static int grow(table *t)
{
    table old = *t;
    if (alloc_buckets(t, (old.mask + 1) * 2)) {
        *t = old;
        return -1;
    }
    for (uint32_t b = 0; b <= old.mask; b++)
        if (old.values[b] >= 0)
            put(t, old.keys[b], old.values[b]);
    free(old.keys);
    free(old.values);
    return 0;
}

int table_insert(table *t, uint64_t key, int32_t value)
{
    if (2 * (t->count + 1) > t->mask + 1 && grow(t))
        return -1;
    put(t, key, value);
    return 0;
}

int32_t table_find(const table *t, uint64_t key, bool (*match)(void *ctx, int32_t value),
                   void *ctx)
{
    for (uint32_t b = bucket_of(t, key); t->values[b] >= 0; b = (b + 1) & t->mask)
        if (t->keys[b] == key && (!match || match(ctx, t->values[b])))
            return t->values[b];
    return -1;
}

bool table_remove(table *t, uint64_t key, int32_t value)
{
    uint32_t b = bucket_of(t, key);
    while (t->values[b] >= 0 && !(t->keys[b] == key && t->values[b] == value))
        b = (b + 1) & t->mask;
    if (t->values[b] < 0)
        return false;
    // Shift later entries of the probe run back so lookups never stop early.
    uint32_t hole = b;
    for (uint32_t next = (b + 1) & t->mask; t->values[next] >= 0; next = (next + 1) & t->mask) {
        uint32_t home = bucket_of(t, t->keys[next]);
        // Move next into the hole unless its home lies cyclically in (hole, next].
        bool stays = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next);
        if (stays)
            continue;
        t->keys[hole] = t->keys[next];
        t->values[hole] = t->values[next];
        hole = next;
    }
    t->values[hole] = -1;
    t->count--;
    return true;
}

uint64_t table_hash_bytes(const void *data, uint32_t len)
{
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ULL; // FNV-1a
    for (uint32_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
