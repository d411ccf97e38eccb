// gridd's hash index: random inserts, lookups and removals (with colliding
// keys) against a plain array, across growth.
#include <stdlib.h>

#include "daemon/core/table.h"
#include "tests/check.h"

#define N 4096

static bool is_value(void *ctx, int32_t value)
{
    return value == *(int32_t *)ctx;
}

int main(void)
{
    table t;
    CHECK_EQ(table_init(&t, 4), 0);
    static uint64_t key_of[N]; // value -> key, while present
    static bool present[N];
    unsigned seed = 12345;
    int live = 0;
    for (int step = 0; step < 200000; step++) {
        seed = seed * 1103515245u + 12345u;
        int32_t v = (int32_t)((seed >> 8) % N);
        if (!present[v]) {
            // Few distinct keys: long probe runs and shared keys.
            key_of[v] = (seed >> 20) % 64;
            CHECK_EQ(table_insert(&t, key_of[v], v), 0);
            present[v] = true;
            live++;
        } else if (seed & 1) {
            CHECK(table_remove(&t, key_of[v], v), "value %d not removed", v);
            present[v] = false;
            live--;
        }
        if (step % 997 == 0)
            for (int32_t w = 0; w < N; w++) {
                int32_t found = table_find(&t, present[w] ? key_of[w] : 99, is_value, &w);
                CHECK(found == (present[w] ? w : -1), "step %d: value %d found as %d", step, w, found);
            }
    }
    CHECK_EQ((int)t.count, live);
    CHECK(!table_remove(&t, 1000, 1), "removed a value that was never there");
    table_clear(&t);
    CHECK_EQ(table_find(&t, key_of[0], NULL, NULL), -1);
    table_free(&t);
    return check_summary("test_daemon_table");
}
