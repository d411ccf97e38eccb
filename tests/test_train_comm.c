// The threads backend of train/comm.h: every collective on 4 ranks (and on
// a 2-rank subgroup running at the same time) against exactly known
// results, bitwise equality of float sums across members, and a
// point-to-point ring exchanging both ways in one batch; each member's
// operation counts (collectives, sends and receives per peer), and a
// raised fence: the next operation escapes, uncounted.
#include "tests/check.h"
#include "train/comm.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

enum { W = 4, N = 5 };

typedef struct {
    tr_threads_world *world;
    int rank;
    int wrong;                 // elements that differ from the expected value
    int bad_counts;            // operation counts unlike the calls made
    float fsum[N];             // float all-reduce result, compared across ranks
} rank_ctx;

static void *run_rank(void *arg)
{
    rank_ctx *c = arg;
    int r = c->rank, all[W] = {0, 1, 2, 3}, odd[2] = {1, 3};
    tr_group *g = tr_threads_group(c->world, all, W, r);
    tr_group *sub = r % 2 ? tr_threads_group(c->world, odd, 2, r) : NULL;

    int buf[N];
    for (int i = 0; i < N; i++)
        buf[i] = 10 * r + i;
    tr_all_reduce(g, buf, N, TR_I32);
    for (int i = 0; i < N; i++)
        c->wrong += buf[i] != 10 * (0 + 1 + 2 + 3) + W * i;

    for (int i = 0; i < N; i++) // sums whose rounding depends on the order
        c->fsum[i] = 1.0f / (float)(r + 1 + i) * (r % 2 ? 1e7f : 1.0f);
    tr_all_reduce(g, c->fsum, N, TR_F32);

    // bf16 (as bits): 1.5 from every rank sums to 6.0, 0.25 from rank 0
    // alone stays 0.25; both exact in bf16.
    uint16_t h[2] = {(uint16_t)0x3fc0, (uint16_t)(r == 0 ? 0x3e80 : 0x0000)}; // 1.5, 0.25 | 0
    tr_all_reduce(g, h, 2, TR_BF16);
    c->wrong += h[0] != 0x40c0 || h[1] != 0x3e80; // 6.0, 0.25

    int mine[2] = {r, -r}, gathered[2 * W];
    tr_all_gather(g, mine, gathered, 2, TR_I32);
    for (int j = 0; j < W; j++)
        c->wrong += gathered[2 * j] != j || gathered[2 * j + 1] != -j;

    int rows[W * 2], piece[2];
    for (int j = 0; j < W; j++)
        rows[2 * j] = r * 100 + j, rows[2 * j + 1] = 1;
    tr_reduce_scatter(g, rows, piece, 2, TR_I32);
    c->wrong += piece[0] != 600 + W * r || piece[1] != W;

    int b[3] = {r, r, r};
    tr_broadcast(g, b, 3, TR_I32, 2);
    c->wrong += b[0] != 2 || b[1] != 2 || b[2] != 2;

    // Uneven all-to-all-v: every member sends j + 1 copies of (100 r + j) to member j.
    size_t sc[W], rc[W];
    int send[W * W], recv[W * W], at = 0;
    for (int j = 0; j < W; j++) {
        sc[j] = (size_t)(j + 1);
        rc[j] = (size_t)(r + 1);
        for (int k = 0; k <= j; k++)
            send[at++] = 100 * r + j;
    }
    tr_all_to_all_v(g, send, sc, recv, rc, TR_I32);
    for (int j = 0, k = 0; j < W; j++)
        for (int q = 0; q <= r; q++)
            c->wrong += recv[k++] != 100 * j + r;

    if (sub) { // the subgroup: sum of 1 and 3
        int s = r;
        tr_all_reduce(sub, &s, 1, TR_I32);
        c->wrong += s != 4;
    }

    // Ring: send to both neighbours and receive from both in one batch.
    int to_next = r, to_prev = -r, from_prev = 99, from_next = 99;
    tr_p2p_op ops[4] = {
        {g, (r + 1) % W, 1, &to_next, 1}, {g, (r + W - 1) % W, 1, &to_prev, 1},
        {g, (r + W - 1) % W, 0, &from_prev, 1}, {g, (r + 1) % W, 0, &from_next, 1}};
    tr_p2p(ops, 4, TR_I32);
    c->wrong += from_prev != (r + W - 1) % W || from_next != -((r + 1) % W);

    uint64_t sent[W], received[W];
    c->bad_counts += tr_group_counts(g, sent, received) != 7; // 3 + gather, scatter, bcast, a2a
    for (int j = 0; j < W; j++) {
        uint64_t want = j == (r + 1) % W || j == (r + W - 1) % W;
        c->bad_counts += sent[j] != want || received[j] != want;
    }
    c->bad_counts += sub && tr_group_counts(sub, NULL, NULL) != 1;
    tr_group_free(sub);
    tr_group_free(g);
    return NULL;
}

// A raised fence: the next operation escapes and is not counted.
static void fence_escapes(void)
{
    tr_threads_world *w = tr_threads_world_create(2);
    int both[2] = {0, 1};
    tr_group *g = tr_threads_group(w, both, 2, 0);
    jmp_buf escape;
    tr_fence fence = {.escape = &escape};
    g->fence = &fence;
    volatile int escaped = 0;
    tr_fence_raise(&fence);
    if (setjmp(escape) == 0) {
        int x = 1;
        tr_all_reduce(g, &x, 1, TR_I32); // would wait for rank 1 forever
    } else {
        escaped = 1;
    }
    CHECK(escaped, "an operation after the fence escapes");
    CHECK_EQ(tr_group_counts(g, NULL, NULL), 0);
    tr_group_free(g);
    tr_threads_world_free(w);
}

int main(void)
{
    tr_threads_world *w = tr_threads_world_create(W);
    rank_ctx ctx[W];
    pthread_t th[W];
    for (int r = 0; r < W; r++) {
        ctx[r] = (rank_ctx){.world = w, .rank = r};
        pthread_create(&th[r], NULL, run_rank, &ctx[r]);
    }
    for (int r = 0; r < W; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < W; r++) {
        CHECK(ctx[r].wrong == 0, "rank %d: %d wrong elements", r, ctx[r].wrong);
        CHECK(ctx[r].bad_counts == 0, "rank %d: %d operation counts wrong", r, ctx[r].bad_counts);
        CHECK(memcmp(ctx[r].fsum, ctx[0].fsum, sizeof ctx[0].fsum) == 0,
              "rank %d's float sum differs from rank 0's", r);
    }
    // Member order: ((v0 + v1) + v2) + v3 exactly.
    float expect = 1.0f / 1.0f + 1.0f / 2.0f * 1e7f;
    expect += 1.0f / 3.0f;
    expect += 1.0f / 4.0f * 1e7f;
    CHECK(ctx[0].fsum[0] == expect, "sum %.9g, expected %.9g", ctx[0].fsum[0], expect);
    tr_threads_world_free(w);
    fence_escapes();
    return check_summary("test_train_comm");
}
