// GPU test (make test-gpu, 2+ GPUs): the NCCL backend of train/comm.h, one
// thread per local GPU: every collective against exactly known integer
// results, a float all-reduce equal on every rank, a subgroup split off the
// world, an uneven all-to-all-v and a two-way point-to-point ring batch.
#include "tests/check.h"
#include "train/comm_nccl.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define CUDA_OK(call)                                                                      \
    do {                                                                                   \
        cudaError_t e_ = (call);                                                           \
        if (e_ != cudaSuccess) {                                                           \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,                  \
                    cudaGetErrorString(e_));                                               \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)
#define NCCL_OK(call)                                                                      \
    do {                                                                                   \
        ncclResult_t r_ = (call);                                                          \
        if (r_ != ncclSuccess) {                                                           \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,                  \
                    ncclGetErrorString(r_));                                               \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

enum { MAX_GPUS = 8, N = 5 };

typedef struct {
    ncclComm_t comm;
    int rank, world;
    int wrong;
    float fsum[N];
} rank_ctx;

static void *dev(const void *host, size_t bytes)
{
    void *p;
    CUDA_OK(cudaMalloc(&p, bytes));
    if (host)
        CUDA_OK(cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice));
    return p;
}

static void host(void *dst, const void *d, size_t bytes, cudaStream_t s)
{
    CUDA_OK(cudaStreamSynchronize(s));
    CUDA_OK(cudaMemcpy(dst, d, bytes, cudaMemcpyDeviceToHost));
}

static void *run_rank(void *arg)
{
    rank_ctx *c = arg;
    int r = c->rank, W = c->world, members[MAX_GPUS];
    CUDA_OK(cudaSetDevice(r));
    cudaStream_t s;
    CUDA_OK(cudaStreamCreate(&s));
    for (int j = 0; j < W; j++)
        members[j] = j;
    tr_group *g = tr_nccl_group(c->comm, s, members, W, r);

    int buf[N], *d = dev(NULL, sizeof buf);
    for (int i = 0; i < N; i++)
        buf[i] = 10 * r + i;
    CUDA_OK(cudaMemcpy(d, buf, sizeof buf, cudaMemcpyHostToDevice));
    tr_all_reduce(g, d, N, TR_I32);
    host(buf, d, sizeof buf, s);
    for (int i = 0; i < N; i++)
        c->wrong += buf[i] != 10 * W * (W - 1) / 2 + W * i;

    for (int i = 0; i < N; i++)
        c->fsum[i] = 1.0f / (float)(r + 1 + i) * (r % 2 ? 1e7f : 1.0f);
    float *df = dev(c->fsum, sizeof c->fsum);
    tr_all_reduce(g, df, N, TR_F32);
    host(c->fsum, df, sizeof c->fsum, s);

    int mine[2] = {r, -r}, gathered[2 * MAX_GPUS];
    int *dm = dev(mine, sizeof mine), *dg = dev(NULL, sizeof(int) * 2 * W);
    tr_all_gather(g, dm, dg, 2, TR_I32);
    host(gathered, dg, sizeof(int) * 2 * W, s);
    for (int j = 0; j < W; j++)
        c->wrong += gathered[2 * j] != j || gathered[2 * j + 1] != -j;

    int rows[2 * MAX_GPUS], piece[2];
    for (int j = 0; j < W; j++)
        rows[2 * j] = 100 * r + j, rows[2 * j + 1] = 1;
    int *drows = dev(rows, sizeof(int) * 2 * W), *dp = dev(NULL, sizeof piece);
    tr_reduce_scatter(g, drows, dp, 2, TR_I32);
    host(piece, dp, sizeof piece, s);
    c->wrong += piece[0] != 100 * W * (W - 1) / 2 + W * r || piece[1] != W;

    int b[3] = {r, r, r}, *db = dev(b, sizeof b);
    tr_broadcast(g, db, 3, TR_I32, W - 1);
    host(b, db, sizeof b, s);
    c->wrong += b[0] != W - 1 || b[2] != W - 1;

    // Uneven all-to-all-v: j + 1 copies of (100 r + j) to member j.
    size_t sc[MAX_GPUS], rc[MAX_GPUS];
    int send[MAX_GPUS * MAX_GPUS], recv[MAX_GPUS * MAX_GPUS], at = 0;
    for (int j = 0; j < W; j++) {
        sc[j] = (size_t)(j + 1), rc[j] = (size_t)(r + 1);
        for (int k = 0; k <= j; k++)
            send[at++] = 100 * r + j;
    }
    int *ds = dev(send, sizeof(int) * at), *dr = dev(NULL, sizeof(int) * W * (r + 1));
    tr_all_to_all_v(g, ds, sc, dr, rc, TR_I32);
    host(recv, dr, sizeof(int) * W * (r + 1), s);
    for (int j = 0, k = 0; j < W; j++)
        for (int q = 0; q <= r; q++)
            c->wrong += recv[k++] != 100 * j + r;

    // A subgroup of the odd ranks, split off the world communicator.
    ncclComm_t sub;
    NCCL_OK(ncclCommSplit(c->comm, r % 2 ? 1 : NCCL_SPLIT_NOCOLOR, r, &sub, NULL));
    if (r % 2) {
        int odd[MAX_GPUS], n_odd = 0, v = r, *dv = dev(&v, sizeof v);
        for (int j = 1; j < W; j += 2)
            odd[n_odd++] = j;
        tr_group *gs = tr_nccl_group(sub, s, odd, n_odd, r / 2);
        tr_all_reduce(gs, dv, 1, TR_I32);
        host(&v, dv, sizeof v, s);
        c->wrong += v != n_odd * n_odd; // 1 + 3 + 5 + ... = n_odd^2
        tr_group_free(gs);
        NCCL_OK(ncclCommDestroy(sub));
        CUDA_OK(cudaFree(dv));
    }

    // Ring: both neighbours, both ways, one batch.
    int vals[4] = {r, -r, 99, 99}, *dv4 = dev(vals, sizeof vals);
    tr_p2p_op ops[4] = {{g, (r + 1) % W, 1, dv4, 1}, {g, (r + W - 1) % W, 1, dv4 + 1, 1},
                        {g, (r + W - 1) % W, 0, dv4 + 2, 1}, {g, (r + 1) % W, 0, dv4 + 3, 1}};
    tr_p2p(ops, 4, TR_I32);
    host(vals, dv4, sizeof vals, s);
    c->wrong += vals[2] != (r + W - 1) % W || vals[3] != -((r + 1) % W);

    void *all[] = {d, df, dm, dg, drows, dp, db, ds, dr, dv4};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        CUDA_OK(cudaFree(all[i]));
    tr_group_free(g);
    CUDA_OK(cudaStreamDestroy(s));
    return NULL;
}

int main(void)
{
    int W = 0;
    CUDA_OK(cudaGetDeviceCount(&W));
    W = W > MAX_GPUS ? MAX_GPUS : W;
    if (W < 2) {
        printf("SKIP: test_train_comm_nccl needs 2 GPUs (found %d)\n", W);
        return 77;
    }
    ncclComm_t comms[MAX_GPUS];
    NCCL_OK(ncclCommInitAll(comms, W, NULL));
    rank_ctx ctx[MAX_GPUS];
    pthread_t th[MAX_GPUS];
    for (int r = 0; r < W; r++) {
        ctx[r] = (rank_ctx){.comm = comms[r], .rank = r, .world = W};
        pthread_create(&th[r], NULL, run_rank, &ctx[r]);
    }
    for (int r = 0; r < W; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < W; r++) {
        CHECK(ctx[r].wrong == 0, "rank %d: %d wrong elements", r, ctx[r].wrong);
        CHECK(memcmp(ctx[r].fsum, ctx[0].fsum, sizeof ctx[0].fsum) == 0,
              "rank %d's float sum differs from rank 0's", r);
        NCCL_OK(ncclCommDestroy(comms[r]));
    }
    return check_summary("test_train_comm_nccl");
}
