// Open-addressing hash index from a 64-bit key to a slot number. Several
// entries may share a key (a hash of a longer key); callers confirm a match
// with their own data. Linear probing with backward-shift deletion.
#ifndef HGRID_DAEMON_TABLE_H
#define HGRID_DAEMON_TABLE_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    uint64_t *keys;
    int32_t *values; // -1: empty bucket
    uint32_t mask;   // capacity - 1 (a power of two)
    uint32_t count;
} table;

// Sized for up to `expected` entries at a load factor of at most 1/2.
int table_init(table *t, uint32_t expected);
void table_free(table *t);
// Doubles the capacity when needed; -1 if out of memory.
int table_insert(table *t, uint64_t key, int32_t value);
// The first value stored under key for which match(ctx, value) holds, or -1.
int32_t table_find(const table *t, uint64_t key, bool (*match)(void *ctx, int32_t value),
                   void *ctx);
// Removes the entry (key, value); false if absent.
bool table_remove(table *t, uint64_t key, int32_t value);
void table_clear(table *t);

uint64_t table_hash_bytes(const void *data, uint32_t len);

#endif
