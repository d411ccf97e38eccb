// CPU reference ops of the dense model: backward against finite differences,
// forward against known values.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/reference.h"
#include "tests/test_kernels_util.h"

#define H 1e-2f
#define ATOL 2e-3f
#define RTOL 1e-2f

// ---- matmul
struct mm { int M, K, N; float *inp, *w, *b, *out, *r; };
static double mm_loss(void *p)
{
    struct mm *c = p;
    ref_matmul_forward(c->out, c->inp, c->w, c->b, c->M, c->K, c->N);
    return dot_d(c->out, c->r, (size_t)c->M * c->N);
}

static void test_matmul(void)
{
    struct mm c = {5, 7, 3, 0, 0, 0, 0, 0};
    c.inp = rand_array(35, -1, 1), c.w = rand_array(21, -1, 1), c.b = rand_array(3, -1, 1);
    c.out = zeros(15), c.r = rand_array(15, -1, 1);
    float *dinp = zeros(35), *dw = rand_array(21, -1, 1), *db = rand_array(3, -1, 1);
    float *dw0 = malloc(sizeof(float) * 21), *db0 = malloc(sizeof(float) * 3);
    memcpy(dw0, dw, sizeof(float) * 21), memcpy(db0, db, sizeof(float) * 3);
    ref_matmul_backward(dinp, dw, db, c.r, c.inp, c.w, c.M, c.K, c.N);
    for (int i = 0; i < 21; i++) dw[i] -= dw0[i];  // accumulated: subtract what was there
    for (int i = 0; i < 3; i++) db[i] -= db0[i];
    float *fd = zeros(35);
    finite_diff(fd, c.inp, 35, mm_loss, &c, H);
    expect_close("matmul dinp vs fd", dinp, fd, 35, ATOL, RTOL);
    finite_diff(fd, c.w, 21, mm_loss, &c, H);
    expect_close("matmul dweight vs fd", dw, fd, 21, ATOL, RTOL);
    finite_diff(fd, c.b, 3, mm_loss, &c, H);
    expect_close("matmul dbias vs fd", db, fd, 3, ATOL, RTOL);
    // Known value: [1 2] @ [[3 4] [5 6]]^T + [1 -1] = [12 16].
    float x[2] = {1, 2}, w[4] = {3, 4, 5, 6}, b[2] = {1, -1}, o[2], want[2] = {12, 16};
    ref_matmul_forward(o, x, w, b, 1, 2, 2);
    expect_close("matmul known value", o, want, 2, 0, 0);
    free(c.inp), free(c.w), free(c.b), free(c.out), free(c.r);
    free(dinp), free(dw), free(db), free(dw0), free(db0), free(fd);
}

// ---- layernorm
struct ln { int N, C; float *inp, *w, *b, *out, *mean, *rstd, *r; };
static double ln_loss(void *p)
{
    struct ln *c = p;
    ref_layernorm_forward(c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->N, c->C);
    return dot_d(c->out, c->r, (size_t)c->N * c->C);
}

static void test_layernorm(void)
{
    struct ln c = {4, 6, 0, 0, 0, 0, 0, 0, 0};
    size_t n = 24;
    c.inp = rand_array(n, -2, 2), c.w = rand_array(6, 0.5f, 1.5f), c.b = rand_array(6, -1, 1);
    c.out = zeros(n), c.mean = zeros(4), c.rstd = zeros(4), c.r = rand_array(n, -1, 1);
    ln_loss(&c);
    float *dinp = zeros(n), *dw = zeros(6), *db = zeros(6), *fd = zeros(n);
    ref_layernorm_backward(dinp, dw, db, c.r, c.inp, c.w, c.mean, c.rstd, c.N, c.C);
    finite_diff(fd, c.inp, n, ln_loss, &c, H);
    expect_close("layernorm dinp vs fd", dinp, fd, n, ATOL, RTOL);
    finite_diff(fd, c.w, 6, ln_loss, &c, H);
    expect_close("layernorm dweight vs fd", dw, fd, 6, ATOL, RTOL);
    finite_diff(fd, c.b, 6, ln_loss, &c, H);
    expect_close("layernorm dbias vs fd", db, fd, 6, ATOL, RTOL);
    // Known value: x = [1 2 3 4]: mean 2.5, var 1.25, normalised +-1.3416, +-0.4472.
    float x[4] = {1, 2, 3, 4}, one[4] = {1, 1, 1, 1}, zero[4] = {0}, o[4], m, s;
    float want[4] = {-1.3416355f, -0.4472118f, 0.4472118f, 1.3416355f};
    ref_layernorm_forward(o, &m, &s, x, one, zero, 1, 4);
    expect_close("layernorm known value", o, want, 4, 1e-5f, 0);
    float want_m = 2.5f, want_s = 1.0f / sqrtf(1.25f + 1e-5f);
    expect_close("layernorm known mean", &m, &want_m, 1, 0, 0);
    expect_close("layernorm known rstd", &s, &want_s, 1, 0, 1e-6f);
    free(c.inp), free(c.w), free(c.b), free(c.out), free(c.mean), free(c.rstd), free(c.r);
    free(dinp), free(dw), free(db), free(fd);
}

// ---- attention
struct at { int B, T, NH, HD, causal; float *qkv, *out, *lse, *r; };
static double at_loss(void *p)
{
    struct at *c = p;
    ref_attention_forward(c->out, c->lse, c->qkv, c->B, c->T, c->NH, c->HD, c->causal);
    return dot_d(c->out, c->r, (size_t)c->B * c->T * c->NH * c->HD);
}

static void test_attention(int causal)
{
    struct at c = {2, 5, 2, 4, causal, 0, 0, 0, 0};
    size_t nqkv = 2 * 5 * 3 * 2 * 4, nout = nqkv / 3;
    c.qkv = rand_array(nqkv, -1, 1), c.out = zeros(nout), c.lse = zeros(20);
    c.r = rand_array(nout, -1, 1);
    at_loss(&c);
    float *dqkv = rand_array(nqkv, -9, 9), *fd = zeros(nqkv);  // overwritten: start from junk
    ref_attention_backward(dqkv, c.r, c.qkv, c.out, c.lse, c.B, c.T, c.NH, c.HD, causal);
    finite_diff(fd, c.qkv, nqkv, at_loss, &c, H);
    expect_close(causal ? "attention causal dqkv vs fd" : "attention bidir dqkv vs fd", dqkv, fd,
                 nqkv, ATOL, RTOL);
    // Known value: T = 1 attends only to itself: out = v, lse = q.k / sqrt(HD).
    float one[12] = {1, 2, 3, 4, 0.5f, -1, 2, 0, 7, 8, 9, 10}, o[4], l;
    float want_l = (0.5f - 2 + 6) / 2.0f;
    ref_attention_forward(o, &l, one, 1, 1, 1, 4, causal);
    expect_close("attention T=1 out = v", o, one + 8, 4, 0, 0);
    expect_close("attention T=1 lse", &l, &want_l, 1, 1e-6f, 0);
    free(c.qkv), free(c.out), free(c.lse), free(c.r), free(dqkv), free(fd);
}

// ---- gelu
struct ge { size_t n; float *inp, *out, *r; };
static double ge_loss(void *p)
{
    struct ge *c = p;
    ref_gelu_forward(c->out, c->inp, c->n);
    return dot_d(c->out, c->r, c->n);
}

static void test_gelu(void)
{
    struct ge c = {64, rand_array(64, -4, 4), zeros(64), rand_array(64, -1, 1)};
    float *d = zeros(64), *fd = zeros(64);
    ref_gelu_backward(d, c.inp, c.r, c.n);
    finite_diff(fd, c.inp, c.n, ge_loss, &c, H);
    expect_close("gelu dinp vs fd", d, fd, c.n, ATOL, RTOL);
    // Known values: gelu(0) = 0, gelu(1) = 0.841192, gelu(-1) = -0.158808.
    float x[3] = {0, 1, -1}, o[3], want[3] = {0, 0.8411920f, -0.1588080f};
    ref_gelu_forward(o, x, 3);
    expect_close("gelu known values", o, want, 3, 1e-6f, 0);
    free(c.inp), free(c.out), free(c.r), free(d), free(fd);
}

static void test_elementwise(void)
{
    float a[3] = {1, 2, 3}, b[3] = {0.5f, -2, 4}, o[3], want[3] = {1.5f, 0, 7};
    ref_add_forward(o, a, b, 3);
    expect_close("add known values", o, want, 3, 0, 0);
    float want2[3] = {-2, -4, -6};
    ref_scale_inplace(a, -2, 3);
    expect_close("scale known values", a, want2, 3, 0, 0);
}

// ---- embeddings (linear: the fd is exact up to rounding)
struct em { int B, T, C, V; int *tok; float *wte, *wpe, *out, *r; };
static double em_loss(void *p)
{
    struct em *c = p;
    ref_embedding_forward(c->out, c->tok, c->wte, c->wpe, c->B, c->T, c->C, c->V);
    return dot_d(c->out, c->r, (size_t)c->B * c->T * c->C);
}

static void test_embedding(void)
{
    int tok[6] = {3, 1, 3, 0, 3, 1};  // repeated tokens must add up
    struct em c = {2, 3, 4, 5, tok, rand_array(20, -1, 1), rand_array(16, -1, 1), zeros(24),
                   rand_array(24, -1, 1)};
    float *dwte = zeros(20), *dwpe = zeros(16), *fd = zeros(20);
    ref_embedding_backward(dwte, dwpe, c.r, tok, c.B, c.T, c.C, c.V);
    finite_diff(fd, c.wte, 20, em_loss, &c, H);
    expect_close("embedding dwte vs fd", dwte, fd, 20, ATOL, RTOL);
    finite_diff(fd, c.wpe, 16, em_loss, &c, H);
    expect_close("embedding dwpe vs fd", dwpe, fd, 16, ATOL, RTOL);
    float *o2 = zeros(24);
    ref_position_embedding_forward(o2, c.out, c.wpe, c.B, c.T, c.C);
    float want = c.out[(1 * 3 + 1) * 4 + 2] + c.wpe[1 * 4 + 2];  // b 1, t 1, c 2
    expect_close("position embedding known value", &o2[(1 * 3 + 1) * 4 + 2], &want, 1, 0, 0);
    free(c.wte), free(c.wpe), free(c.out), free(c.r), free(dwte), free(dwpe), free(fd), free(o2);
}

// ---- cross-entropy
struct ce { int N, V, Vp; int *tgt; float *mask, *logits, *work, *losses; };
static double ce_loss(void *p)
{
    struct ce *c = p;
    memcpy(c->work, c->logits, sizeof(float) * c->N * c->Vp);
    ref_crossentropy_forward_backward(c->work, c->losses, c->tgt, c->mask, 0, c->N, c->V, c->Vp, 0);
    double acc = 0;
    for (int i = 0; i < c->N; i++) acc += c->losses[i];
    return acc / 2.0;  // two counted tokens: the mean
}

static void test_crossentropy(void)
{
    int tgt[3] = {2, 0, 4};
    float mask[3] = {1, 0, 1};
    struct ce c = {3, 5, 8, tgt, mask, rand_array(24, -3, 3), zeros(24), zeros(3)};
    for (int i = 0; i < 3; i++)
        for (int v = 5; v < 8; v++) c.logits[i * 8 + v] = 100.0f;  // padding must not count
    float *d = zeros(24), *fd = zeros(24);
    memcpy(d, c.logits, sizeof(float) * 24);
    ref_crossentropy_forward_backward(d, c.losses, tgt, mask, 0.5f, 3, 5, 8, 1);
    finite_diff(fd, c.logits, 24, ce_loss, &c, H);
    expect_close("crossentropy dlogits vs fd", d, fd, 24, ATOL, RTOL);
    // Known value: uniform logits give log V; masked rows give 0 loss and 0 grad.
    float u[8] = {0.25f, 0.25f, 0.25f, 0.25f, 0.25f, 9, 9, 9}, l, want = logf(5.0f);
    float one = 1, zero = 0;
    ref_crossentropy_forward_backward(u, &l, tgt, &one, 1, 1, 5, 8, 0);
    expect_close("crossentropy uniform = log V", &l, &want, 1, 1e-6f, 0);
    ref_crossentropy_forward_backward(u, &l, tgt, &zero, 1, 1, 5, 8, 1);
    float z[8] = {0};
    expect_close("crossentropy masked row", &l, z, 1, 0, 0);
    expect_close("crossentropy masked dlogits", u, z, 8, 0, 0);
    free(c.logits), free(c.work), free(c.losses), free(d), free(fd);
}

// ---- AdamW: step 1 moves each weight by lr * g / (|g| + eps) after decay.
static void test_adamw(void)
{
    float master[3] = {1, -2, 0.5f}, params[3], g[3] = {0.1f, -4, 2}, m[3] = {0}, v[3] = {0};
    float lr = 0.01f, wd = 0.1f, want[3];
    for (int i = 0; i < 3; i++) {
        double gs = g[i] * 0.5;
        want[i] = (float)(master[i] * (1.0 - lr * wd) - lr * gs / (fabs(gs) + 1e-8));
    }
    ref_adamw_step(master, params, g, m, v, 3, lr, 0.9f, 0.95f, 1e-8f, wd, 0.5f, 1);
    expect_close("adamw step 1 master", master, want, 3, 1e-6f, 1e-5f);
    expect_close("adamw params = master", params, master, 3, 0, 0);
    float want_m[3] = {0.1f * 0.5f * 0.1f, -4 * 0.5f * 0.1f, 2 * 0.5f * 0.1f};  // (1-b1) g
    expect_close("adamw first moment", m, want_m, 3, 1e-7f, 1e-6f);
    float norm = 1.0f, want_n = 1.0f + 0.01f + 16 + 4;
    ref_global_norm_squared(&norm, g, 3);
    expect_close("global norm squared (accumulated)", &norm, &want_n, 1, 0, 1e-6f);
}

int main(void)
{
    test_matmul();
    test_layernorm();
    test_attention(1);
    test_attention(0);
    test_gelu();
    test_elementwise();
    test_embedding();
    test_crossentropy();
    test_adamw();
    return check_summary("test_kernels_ref");
}
