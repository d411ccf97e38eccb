// The vocab-parallel kernels (kernels/vocab_parallel.h), fp32 and bf16,
// against their CPU references on seeded random inputs: the masked row
// gather, the embedding gradient by row lists, and the three cross-entropy
// passes of one rank's shard (rank 1 of 3, so targets fall inside and
// outside it; the other ranks' maxima are made up).
#include "kernels/reference_vp.h"
#include "kernels/vocab_parallel.h"
#include "tests/gpu/gpu_util.h"

static void test_embedding(int N, int C, int v0, int Vl, int V)
{
    int *tokens = (int *)malloc(sizeof(int) * N);
    for (int i = 0; i < N; i++) tokens[i] = (i * 37 + 11) % V;
    size_t nw = (size_t)Vl * C, no = (size_t)N * C;
    float *wte = rand_array(nw, -1, 1), *dout = rand_array(no, -1, 1), *dw0 = rand_array(nw, -1, 1);
    void *d_wte = upload(wte, nw), *d_dout = upload(dout, no);
    void *d_out = poisoned(no * kdtype_size(g_dt));
    int *d_tokens = upload_i32(tokens, N);
    float *d_dw = upload_f32(dw0, nw);
    // Row lists: local rows ascending, positions ascending inside a row.
    int *rows = (int *)malloc(sizeof(int) * (N + 1)), *starts = (int *)malloc(sizeof(int) * (N + 2));
    int *positions = (int *)malloc(sizeof(int) * (N + 1)), R = 0, at = 0;
    for (int r = 0; r < Vl; r++) {
        int first = at;
        for (int i = 0; i < N; i++)
            if (tokens[i] - v0 == r) positions[at++] = i;
        if (at > first) rows[R] = r, starts[R++] = first;
    }
    starts[R] = at;
    int *d_rows = upload_i32(rows, R + 1), *d_starts = upload_i32(starts, R + 1);
    int *d_pos = upload_i32(positions, at + 1);
    vp_embedding_forward(d_out, d_tokens, d_wte, N, C, v0, Vl, g_dt, 0);
    embedding_backward_rows(d_dw, d_dout, d_rows, d_starts, d_pos, R, C, g_dt, 0);
    cudaCheck(cudaDeviceSynchronize());
    float *out = zeros(no), *g = zeros(no), *dw = zeros(nw), *gdw = zeros(nw);
    memcpy(dw, dw0, sizeof(float) * nw);
    ref_vp_embedding_forward(out, tokens, wte, N, C, v0, Vl);
    ref_embedding_backward_rows(dw, dout, rows, starts, positions, R, C);
    download(g, d_out, no);
    expect_near("vp_embedding_forward (=, zero rows elsewhere)", g, out, no, 0, 0);
    download_f32(gdw, d_dw, nw);
    expect_near("embedding_backward_rows (fp32 +=)", gdw, dw, nw, 2e-5f, 2e-4f);
    free(tokens), free(wte), free(dout), free(dw0), free(rows), free(starts), free(positions);
    free(out), free(g), free(dw), free(gdw);
    dev_free_all();
}

static void test_crossentropy(int N, int Vl, int tp)
{
    int v0 = Vl, V = Vl * tp;
    size_t n = (size_t)N * Vl;
    int *targets = (int *)malloc(sizeof(int) * N);
    float *mask = (float *)malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++) targets[i] = (i * 7919) % V, mask[i] = i % 5 != 0;
    float *logits = rand_array(n, -4, 4), *others = rand_array((size_t)tp * N, -1, 5);
    void *d_logits = upload(logits, n);
    int *d_targets = upload_i32(targets, N);
    float *d_mask = upload_f32(mask, N);
    float *d_mx = (float *)poisoned(N * 4), *d_sums = (float *)poisoned(2 * N * 4);
    float *d_losses = (float *)poisoned(N * 4);
    vp_crossentropy_max(d_mx, d_logits, N, Vl, g_dt, 0);
    float *mx = zeros(N), *g = zeros(n > 2 * (size_t)N ? n : 2 * N);
    ref_vp_crossentropy_max(mx, logits, N, Vl);
    download_f32(g, d_mx, N);
    expect_near("vp_crossentropy_max", g, mx, N, 0, 0);
    memcpy(others + (size_t)1 * N, mx, sizeof(float) * N); // this rank's row of the gather
    float *d_gathered = upload_f32(others, (size_t)tp * N);
    vp_crossentropy_sums(d_mx, d_sums, d_gathered, tp, d_logits, d_targets, N, v0, Vl, g_dt, 0);
    float *sums = zeros(2 * N);
    ref_vp_crossentropy_sums(mx, sums, others, tp, logits, targets, N, v0, Vl);
    download_f32(g, d_sums, 2 * N);
    expect_near("vp_crossentropy_sums", g, sums, 2 * N, 1e-6f, 1e-5f);
    for (int i = 0; i < N; i++) sums[i] *= 2.5f; // as if other ranks added theirs
    cudaCheck(cudaMemcpy(d_sums, sums, sizeof(float) * 2 * N, cudaMemcpyHostToDevice));
    vp_crossentropy_finish(d_logits, d_losses, d_sums, d_mx, d_targets, d_mask, 0.01f, N, v0, Vl,
                           g_dt, 0);
    cudaCheck(cudaDeviceSynchronize());
    float *losses = zeros(N);
    ref_vp_crossentropy_finish(logits, losses, sums, mx, targets, mask, 0.01f, N, v0, Vl);
    download_f32(g, d_losses, N);
    expect_near("vp_crossentropy_finish losses", g, losses, N, 1e-6f, 1e-5f);
    download(g, d_logits, n);
    expect_near("vp_crossentropy_finish dlogits", g, logits, n, tol_abs(), tol_rel());
    free(targets), free(mask), free(logits), free(others), free(mx), free(g), free(sums);
    free(losses);
    dev_free_all();
}

int main(void)
{
    kernels_init();
    for (int d = 0; d < 2; d++) {
        g_dt = d == 0 ? KD_F32 : KD_BF16;
        printf("== %s\n", dt_name());
        test_embedding(300, 128, 128, 128, 256);
        test_embedding(1000, 768, 16000, 16000, 32000);
        test_crossentropy(33, 500, 3);
        test_crossentropy(64, 16000, 2);
    }
    kernels_free();
    return check_summary("test_vocab_parallel (gpu)");
}
