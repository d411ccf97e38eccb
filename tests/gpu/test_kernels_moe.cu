// MoE CUDA kernels (router, aux loss, routing plan, permute / unpermute),
// forward and backward, in fp32 and bf16, against the CPU reference.
#include "kernels/reference.h"
#include "tests/gpu/gpu_util.h"

// Logits with gaps of 0.3 between experts, so both sides pick the same top-k.
static float *separated_logits(int N, int E)
{
    float *l = zeros((size_t)N * E);
    for (int n = 0; n < N; n++) {
        int shift = (int)rand_uniform(0, (float)E);
        for (int e = 0; e < E; e++) l[n * E + e] = 0.3f * ((e * 7 + shift) % E) + rand_uniform(0, 0.02f);
    }
    return l;
}

static void expect_same_ints(const char *name, const int *got, const int *want, size_t n)
{
    size_t wrong = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i] && wrong++ == 0) first = i;
    printf("  %s %-34s n=%-6zu #wrong %zu%s\n", dt_name(), name, n, wrong, wrong ? " (first shown below)" : "");
    CHECK(wrong == 0, "%s %s: [%zu] = %d, expected %d", dt_name(), name, first, got[first], want[first]);
}

static void test_router(int N, int E, int K)
{
    float *logits = separated_logits(N, E), *dgates = rand_array((size_t)N * K, -1, 1);
    void *d_logits = upload(logits, (size_t)N * E);
    float *d_probs = (float *)poisoned((size_t)N * E * 4), *d_gates = (float *)poisoned((size_t)N * K * 4);
    int *d_idx = (int *)poisoned((size_t)N * K * 4);
    float *d_aux = (float *)poisoned(4), *d_dgates = upload_f32(dgates, (size_t)N * K);
    void *d_dlogits = poisoned((size_t)N * E * kdtype_size(g_dt));
    moe_router_forward(d_probs, d_idx, d_gates, d_logits, N, E, K, g_dt, 0);
    moe_aux_loss_forward(d_aux, d_probs, d_idx, N, E, K, 0.01f, 0);
    moe_router_backward(d_dlogits, d_dgates, d_probs, d_idx, d_gates, 0.01f, N, E, K, g_dt, 0);
    cudaCheck(cudaDeviceSynchronize());

    float *probs = zeros((size_t)N * E), *gates = zeros((size_t)N * K), *dl = zeros((size_t)N * E), aux;
    int *idx = (int *)malloc(sizeof(int) * N * K), *g_idx = (int *)malloc(sizeof(int) * N * K);
    ref_moe_router_forward(probs, idx, gates, logits, N, E, K);
    ref_moe_aux_loss_forward(&aux, probs, idx, N, E, K, 0.01f);
    ref_moe_router_backward(dl, dgates, probs, idx, gates, 0.01f, N, E, K);
    float *g = zeros((size_t)N * E), g_aux;
    cudaCheck(cudaMemcpy(g_idx, d_idx, sizeof(int) * N * K, cudaMemcpyDeviceToHost));
    expect_same_ints("moe router top-k experts", g_idx, idx, (size_t)N * K);
    download_f32(g, d_probs, (size_t)N * E);
    expect_near("moe router probs", g, probs, (size_t)N * E, 1e-6f, 1e-5f);
    download_f32(g, d_gates, (size_t)N * K);
    expect_near("moe router gates", g, gates, (size_t)N * K, 1e-6f, 1e-5f);
    download_f32(&g_aux, d_aux, 1);
    expect_near("moe aux loss", &g_aux, &aux, 1, 0, 1e-5f);
    download(g, d_dlogits, (size_t)N * E);
    expect_near("moe router dlogits", g, dl, (size_t)N * E, tol_abs(), tol_rel());
    free(logits), free(dgates), free(probs), free(gates), free(dl), free(idx), free(g_idx), free(g);
    dev_free_all();
}

static void test_permute(int N, int E, int K, int C)
{
    int *idx = (int *)malloc(sizeof(int) * N * K);
    for (int n = 0; n < N; n++) {
        int first = (int)rand_uniform(0, (float)E) % E;
        for (int j = 0; j < K; j++) idx[n * K + j] = (first + j * 3) % E;  // distinct when E % 3 != 0
    }
    size_t NK = (size_t)N * K, bytes = kdtype_size(g_dt);
    int *d_idx = upload_i32(idx, NK), *d_pos = (int *)poisoned(NK * 4), *d_off = (int *)poisoned((E + 1) * 4);
    float *x = rand_array((size_t)N * C, -1, 1), *yp = rand_array(NK * C, -1, 1);
    float *gates = rand_array(NK, 0, 1), *dxp = rand_array(NK * C, -1, 1), *dy = rand_array((size_t)N * C, -1, 1);
    void *d_x = upload(x, (size_t)N * C), *d_yp = upload(yp, NK * C), *d_dxp = upload(dxp, NK * C);
    void *d_dy = upload(dy, (size_t)N * C);
    float *d_gates = upload_f32(gates, NK), *d_dgates = (float *)poisoned(NK * 4);
    void *d_xp = poisoned(NK * C * bytes), *d_dx = poisoned((size_t)N * C * bytes);
    void *d_y = poisoned((size_t)N * C * bytes), *d_dyp = poisoned(NK * C * bytes);
    moe_permute_plan(d_pos, d_off, d_idx, N, E, K, 0);
    moe_permute_forward(d_xp, d_x, d_pos, N, K, C, g_dt, 0);
    moe_permute_backward(d_dx, d_dxp, d_pos, N, K, C, g_dt, 0);
    moe_unpermute_forward(d_y, d_yp, d_gates, d_pos, N, K, C, g_dt, 0);
    moe_unpermute_backward(d_dyp, d_dgates, d_dy, d_yp, d_gates, d_pos, N, K, C, g_dt, 0);
    cudaCheck(cudaDeviceSynchronize());

    int *pos = (int *)malloc(sizeof(int) * NK), *off = (int *)malloc(sizeof(int) * (E + 1));
    int *g_i = (int *)malloc(sizeof(int) * NK);
    ref_moe_permute_plan(pos, off, idx, N, E, K);
    cudaCheck(cudaMemcpy(g_i, d_pos, sizeof(int) * NK, cudaMemcpyDeviceToHost));
    expect_same_ints("moe plan positions", g_i, pos, NK);
    cudaCheck(cudaMemcpy(g_i, d_off, sizeof(int) * (E + 1), cudaMemcpyDeviceToHost));
    expect_same_ints("moe plan expert offsets", g_i, off, E + 1);
    float *want = zeros(NK * C), *g = zeros(NK * C), *dg = zeros(NK);
    ref_moe_permute_forward(want, x, pos, N, K, C);
    download(g, d_xp, NK * C);
    expect_near("moe permute xp", g, want, NK * C, 0, 0);
    ref_moe_permute_backward(want, dxp, pos, N, K, C);
    download(g, d_dx, (size_t)N * C);
    expect_near("moe permute dx", g, want, (size_t)N * C, tol_abs(), tol_rel());
    ref_moe_unpermute_forward(want, yp, gates, pos, N, K, C);
    download(g, d_y, (size_t)N * C);
    expect_near("moe unpermute y", g, want, (size_t)N * C, tol_abs(), tol_rel());
    ref_moe_unpermute_backward(want, dg, dy, yp, gates, pos, N, K, C);
    download(g, d_dyp, NK * C);
    expect_near("moe unpermute dyp", g, want, NK * C, tol_abs(), tol_rel());
    download_f32(g, d_dgates, NK);
    expect_near("moe unpermute dgates", g, dg, NK, 1e-5f, 1e-4f);
    free(idx), free(x), free(yp), free(gates), free(dxp), free(dy), free(pos), free(off), free(g_i);
    free(want), free(g), free(dg);
    dev_free_all();
}

int main(void)
{
    kernels_init();
    for (int d = 0; d < 2; d++) {
        g_dt = d == 0 ? KD_F32 : KD_BF16;
        printf("== %s\n", dt_name());
        test_router(300, 8, 2);
        test_router(1000, 64, 6);
        test_permute(300, 8, 2, 96);
        test_permute(2500, 16, 4, 200);
    }
    kernels_free();
    return check_summary("test_kernels_moe (gpu)");
}
