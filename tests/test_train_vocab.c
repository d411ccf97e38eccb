// The vocab-parallel pieces on the CPU: the embedding gradient's row lists
// (exact), and the references of kernels/vocab_parallel.h composed over a
// vocabulary split in two (collectives done by hand) against the unsplit
// reference ops: embedding, its gradient, and the cross-entropy's losses
// and dlogits.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/reference.h"
#include "kernels/reference_vp.h"
#include "tests/check.h"
#include "train/vocab.h"

enum { N = 12, C = 5, V = 10, TP = 2, VL = V / TP };

static float frand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xffff) / 65536.0f * 4.0f - 2.0f;
}

static double worst(const float *a, const float *b, size_t n)
{
    double w = 0;
    for (size_t i = 0; i < n; i++)
        w = fmax(w, fabs(a[i] - b[i]) / (1e-6 + fabs(b[i])));
    return w;
}

static void test_rows(void)
{
    int tokens[] = {5, 3, 5, 9, 3, 100, 4};
    int rows[8], starts[9], positions[8];
    int R = vp_rows_build(tokens, 7, 3, 4, rows, starts, positions);
    int want_rows[] = {0, 1, 2}, want_starts[] = {0, 2, 3, 5}, want_pos[] = {1, 4, 6, 0, 2};
    CHECK_EQ(R, 3);
    CHECK(!memcmp(rows, want_rows, sizeof want_rows), "rows %d %d %d", rows[0], rows[1], rows[2]);
    CHECK(!memcmp(starts, want_starts, sizeof want_starts), "starts %d %d %d %d", starts[0],
          starts[1], starts[2], starts[3]);
    CHECK(!memcmp(positions, want_pos, sizeof want_pos), "positions %d %d %d %d %d",
          positions[0], positions[1], positions[2], positions[3], positions[4]);
    CHECK_EQ(vp_rows_build(tokens, 7, 10, 4, rows, starts, positions), 0);
    CHECK_EQ(starts[0], 0);
}

static void test_embedding(const int *tokens, const float *wte, const float *dout)
{
    static float whole[N * C], sum[N * C], part[N * C], zero[N * C];
    static float dwte_ref[V * C], dwte[V * C];
    ref_embedding_forward(whole, tokens, wte, zero, 1, N, C, V);
    ref_embedding_backward(dwte_ref, NULL, dout, tokens, 1, N, C, V);
    memset(sum, 0, sizeof sum);
    memset(dwte, 0, sizeof dwte);
    for (int r = 0; r < TP; r++) {
        int rows[N], starts[N + 1], positions[N];
        ref_vp_embedding_forward(part, tokens, wte + r * VL * C, N, C, r * VL, VL);
        for (int i = 0; i < N * C; i++)
            sum[i] += part[i];
        int R = vp_rows_build(tokens, N, r * VL, VL, rows, starts, positions);
        ref_embedding_backward_rows(dwte + r * VL * C, dout, rows, starts, positions, R, C);
    }
    CHECK(worst(sum, whole, N * C) == 0, "split embedding differs");
    CHECK(worst(dwte, dwte_ref, V * C) < 1e-6, "split embedding gradient differs by %.3g",
          worst(dwte, dwte_ref, V * C));
}

static void test_crossentropy(const int *targets, const float *logits)
{
    static float whole[N * V], losses_ref[N], mask[N], split[TP][N * VL];
    static float mx[TP][N], gathered[TP * N], sums[TP][2 * N], total[2 * N], losses[TP][N];
    for (int i = 0; i < N; i++)
        mask[i] = i % 4 != 0; // some rows masked
    float dloss = 1.0f / 9.0f;
    memcpy(whole, logits, sizeof whole);
    ref_crossentropy_forward_backward(whole, losses_ref, targets, mask, dloss, N, V, V, 1);
    for (int r = 0; r < TP; r++)
        for (int i = 0; i < N; i++)
            memcpy(split[r] + i * VL, logits + i * V + r * VL, sizeof(float) * VL);
    for (int r = 0; r < TP; r++) {
        ref_vp_crossentropy_max(mx[r], split[r], N, VL);
        memcpy(gathered + r * N, mx[r], sizeof(float) * N); // all-gather
    }
    memset(total, 0, sizeof total);
    for (int r = 0; r < TP; r++) {
        ref_vp_crossentropy_sums(mx[r], sums[r], gathered, TP, split[r], targets, N, r * VL, VL);
        for (int i = 0; i < 2 * N; i++) // all-reduce
            total[i] += sums[r][i];
    }
    double wl = 0, wg = 0;
    for (int r = 0; r < TP; r++) {
        ref_vp_crossentropy_finish(split[r], losses[r], total, mx[r], targets, mask, dloss, N,
                                   r * VL, VL);
        wl = fmax(wl, worst(losses[r], losses_ref, N));
        for (int i = 0; i < N; i++)
            for (int v = 0; v < VL; v++) {
                float a = split[r][i * VL + v], b = whole[i * V + r * VL + v];
                wg = fmax(wg, fabs(a - b));
            }
    }
    CHECK(wl < 1e-5, "split cross-entropy losses differ by %.3g relative", wl);
    CHECK(wg < 1e-6, "split cross-entropy dlogits differ by %.3g", wg);
    CHECK(losses_ref[0] == 0 && losses_ref[1] > 0, "mask: losses %g %g", losses_ref[0],
          losses_ref[1]);
}

int main(void)
{
    unsigned seed = 7;
    int tokens[N];
    static float wte[V * C], dout[N * C], logits[N * V];
    for (int i = 0; i < N; i++)
        tokens[i] = (i * 7 + 3) % V;
    for (int i = 0; i < V * C; i++)
        wte[i] = frand(&seed);
    for (int i = 0; i < N * C; i++)
        dout[i] = frand(&seed);
    for (int i = 0; i < N * V; i++)
        logits[i] = frand(&seed) * 3;
    test_rows();
    test_embedding(tokens, wte, dout);
    test_crossentropy(tokens, logits);
    return check_summary("test_train_vocab");
}
