// Every dense-model CUDA kernel, forward and backward, in fp32 and bf16,
// against the CPU reference on seeded random inputs. Overwritten outputs are
// poisoned (NaN) first; accumulated ones start from the same random values.
#include "kernels/attention_cudnn.h"
#include "kernels/reference.h"
#include "tests/gpu/gpu_util.h"

static float *copy_of(const float *h, size_t n)
{
    float *c = (float *)malloc(sizeof(float) * n);
    memcpy(c, h, sizeof(float) * n);
    return c;
}

// out = inp @ w^T + bias + resid against the reference matmul and add.
static void test_matmul_residual(int M, int K, int N, int with_bias)
{
    size_t ni = (size_t)M * K, nw = (size_t)N * K, no = (size_t)M * N;
    float *inp = rand_array(ni, -1, 1), *w = rand_array(nw, -1, 1), *b = rand_array(N, -1, 1);
    float *resid = rand_array(no, -4, 4);
    void *d_inp = upload(inp, ni), *d_w = upload(w, nw), *d_b = upload(b, N), *d_res = upload(resid, no);
    void *d_out = poisoned(no * kdtype_size(g_dt));
    matmul_forward_residual(d_out, d_inp, d_w, with_bias ? d_b : NULL, d_res, M, K, N, g_dt, 0);
    matmul_forward_residual(d_res, d_inp, d_w, with_bias ? d_b : NULL, d_res, M, K, N, g_dt, 0);  // in place
    cudaCheck(cudaDeviceSynchronize());
    float *out = zeros(no), *g = zeros(no);
    ref_matmul_forward(out, inp, w, with_bias ? b : NULL, M, K, N);
    for (size_t i = 0; i < no; i++) out[i] += resid[i];
    char name[80];
    snprintf(name, sizeof name, "matmul %dx%dx%d + residual out", M, K, N);
    download(g, d_out, no);
    expect_near(name, g, out, no, tol_abs(), tol_rel());
    download(g, d_res, no);
    expect_near("matmul + residual, in place", g, out, no, tol_abs(), tol_rel());
    free(inp), free(w), free(b), free(resid), free(out), free(g);
    dev_free_all();
}

static void test_matmul(int M, int K, int N, int with_bias)
{
    size_t ni = (size_t)M * K, nw = (size_t)N * K, no = (size_t)M * N;
    float *inp = rand_array(ni, -1, 1), *w = rand_array(nw, -1, 1), *b = rand_array(N, -1, 1);
    float *dout = rand_array(no, -1, 1), *dw0 = rand_array(nw, -1, 1), *db0 = rand_array(N, -1, 1);
    void *d_inp = upload(inp, ni), *d_w = upload(w, nw), *d_b = upload(b, N), *d_dout = upload(dout, no);
    void *d_out = poisoned(no * kdtype_size(g_dt)), *d_dinp = poisoned(ni * kdtype_size(g_dt));
    float *d_dw = upload_f32(dw0, nw), *d_db = upload_f32(db0, N);
    float *d_dw2 = upload_f32(dw0, nw), *d_db2 = upload_f32(db0, N);
    matmul_forward(d_out, d_inp, d_w, with_bias ? d_b : NULL, M, K, N, g_dt, 0);
    matmul_backward(d_dinp, d_dw, with_bias ? d_db : NULL, d_dout, d_inp, d_w, M, K, N, g_dt, 0);
    matmul_backward(NULL, d_dw2, with_bias ? d_db2 : NULL, d_dout, d_inp, d_w, M, K, N, g_dt, 0);
    cudaCheck(cudaDeviceSynchronize());
    // Again into fresh copies: the weight and bias gradients must come out bit-identical.
    expect_same_bits("matmul dweight deterministic", d_dw, d_dw2, nw * 4);
    expect_same_bits("matmul dbias deterministic", d_db, d_db2, (size_t)N * 4);

    float *out = zeros(no), *dinp = zeros(ni), *dw = copy_of(dw0, nw), *db = copy_of(db0, N);
    float *g_out = zeros(no), *g_dinp = zeros(ni), *g_dw = zeros(nw), *g_db = zeros(N);
    ref_matmul_forward(out, inp, w, with_bias ? b : NULL, M, K, N);
    ref_matmul_backward(dinp, dw, with_bias ? db : NULL, dout, inp, w, M, K, N);
    download(g_out, d_out, no), download(g_dinp, d_dinp, ni);
    download_f32(g_dw, d_dw, nw), download_f32(g_db, d_db, N);
    char name[64];
    snprintf(name, sizeof name, "matmul %dx%dx%d out", M, K, N);
    expect_near(name, g_out, out, no, tol_abs(), tol_rel());
    expect_near("matmul dinp", g_dinp, dinp, ni, tol_abs(), tol_rel());
    expect_near("matmul dweight (fp32 +=)", g_dw, dw, nw, 2e-5f, 2e-4f);
    expect_near("matmul dbias (fp32 +=)", g_db, db, N, 2e-5f, 2e-4f);
    free(inp), free(w), free(b), free(dout), free(dw0), free(db0), free(out), free(dinp), free(dw);
    free(db), free(g_out), free(g_dinp), free(g_dw), free(g_db);
    dev_free_all();
}

// Whether expect_near(got, want) with the tested type's tolerances would
// flag an element: the fused-GELU test uses it to show that a wrong epilogue
// (bias or GELU left out) cannot pass.
static int differs(const float *a, const float *want, size_t n)
{
    float mx = 0.0f;
    for (size_t i = 0; i < n; i++) mx = fmaxf(mx, fabsf(want[i]));
    for (size_t i = 0; i < n; i++)
        if (!(fabsf(a[i] - want[i]) <= tol_abs() * mx + tol_rel() * fabsf(want[i]))) return 1;
    return 0;
}

static void print_max_err(const char *name, const float *got, const float *want, size_t n)
{
    float err = 0.0f, mx = 0.0f;
    for (size_t i = 0; i < n; i++) err = fmaxf(err, fabsf(got[i] - want[i])), mx = fmaxf(mx, fabsf(want[i]));
    printf("  %s %-34s max |err| %.3g (max |want| %.3g)\n", dt_name(), name, err, mx);
}

// An MLP's fc + GELU (M, K) -> (M, F) forward, and the backward of fc_proj
// (M, F) -> (M, K) through the GELU, against ref_matmul_* + ref_gelu_*.
// F % 8 == 0 takes the fused cuBLASLt epilogues in bf16, other F the
// two-pass path. In fp32 the launchers run two passes; the epilogues are
// then run directly and held to bf16-level tolerances (their tanh is not
// documented to fp32 accuracy; the max error is printed).
static void test_matmul_gelu(int M, int K, int F, int with_bias)
{
    size_t ni = (size_t)M * K, nw = (size_t)F * K, nf = (size_t)M * F;
    float *inp = rand_array(ni, -1, 1), *w = rand_array(nw, -1, 1), *b = rand_array(F, -1, 1);
    float *wp = rand_array(nw, -1, 1), *dout = rand_array(ni, -1, 1);
    float *dw0 = rand_array(nw, -1, 1), *db0 = rand_array(K, -1, 1);
    const float *bias = with_bias ? b : NULL;
    void *d_inp = upload(inp, ni), *d_w = upload(w, nw), *d_b = upload(b, F), *d_wp = upload(wp, nw);
    void *d_dout = upload(dout, ni), *d_bias = with_bias ? d_b : NULL;
    size_t es = kdtype_size(g_dt);
    void *d_out = poisoned(nf * es), *d_pre = poisoned(nf * es), *d_out2 = poisoned(nf * es);
    matmul_forward_gelu(d_out, d_pre, d_inp, d_w, d_bias, M, K, F, g_dt, 0);
    gelu_forward(d_out2, d_pre, nf, g_dt, 0);

    // Reference forward; the backward starts from its pre rounded to the type.
    float *pre = zeros(nf), *out = zeros(nf), *g = zeros(nf), *alt = zeros(nf);
    ref_matmul_forward(pre, inp, w, bias, M, K, F);
    ref_gelu_forward(out, pre, nf);
    cudaCheck(cudaDeviceSynchronize());
    char name[80];
    snprintf(name, sizeof name, "matmul+gelu %dx%dx%d%s pre", M, K, F, with_bias ? " +bias" : "");
    download(g, d_pre, nf);
    expect_near(name, g, pre, nf, tol_abs(), tol_rel());
    download(g, d_out, nf);
    expect_near("matmul+gelu out", g, out, nf, tol_abs(), tol_rel());
    download(alt, d_out2, nf);
    expect_near("matmul+gelu out = gelu kernel(pre)", g, alt, nf, tol_abs(), tol_rel());
    ref_matmul_forward(alt, inp, w, NULL, M, K, F);
    if (with_bias) CHECK(differs(alt, pre, nf), "matmul+gelu test: leaving the bias out would pass");
    CHECK(differs(pre, out, nf), "matmul+gelu test: leaving the GELU out would pass");

    // Backward of fc_proj: its input is gelu(pre), its dinp goes through gelu'(pre).
    float *fp = copy_of(pre, nf), *fin = zeros(nf);
    void *d_fp = upload(fp, nf);
    ref_gelu_forward(fin, fp, nf);
    void *d_fin = upload(fin, nf), *d_dinp = poisoned(nf * es);
    float *d_dw = upload_f32(dw0, nw), *d_db = upload_f32(db0, K);
    matmul_backward_dgelu(d_dinp, d_dw, with_bias ? d_db : NULL, d_dout, d_fin, d_wp, d_fp, M, F,
                          K, g_dt, 0);
    float *dinp = zeros(nf), *dw = copy_of(dw0, nw), *db = copy_of(db0, K);
    ref_matmul_backward(dinp, dw, with_bias ? db : NULL, dout, fin, wp, M, F, K);
    memcpy(alt, dinp, nf * sizeof(float));  // dinp before the GELU's gradient
    ref_gelu_backward(dinp, fp, dinp, nf);
    cudaCheck(cudaDeviceSynchronize());
    download(g, d_dinp, nf);
    expect_near("matmul dgelu dinp", g, dinp, nf, tol_abs(), tol_rel());
    CHECK(differs(alt, dinp, nf), "matmul dgelu test: leaving gelu' out would pass");
    float *gw = zeros(nw), *gb = zeros(K);
    download_f32(gw, d_dw, nw), download_f32(gb, d_db, K);
    expect_near("matmul dgelu dweight (fp32 +=)", gw, dw, nw, 2e-5f, 2e-4f);
    expect_near("matmul dgelu dbias (fp32 +=)", gb, db, K, 2e-5f, 2e-4f);

    if (g_dt == KD_F32 && F % 8 == 0) {
        if (lt_matmul_forward_gelu(d_out, d_pre, d_inp, d_w, d_bias, M, K, F, g_dt, 0) == 0) {
            cudaCheck(cudaDeviceSynchronize());
            download(g, d_pre, nf);
            expect_near("epilogue pre (bf16 tol)", g, pre, nf, 1e-2f, 2e-2f);
            download(g, d_out, nf);
            print_max_err("epilogue gelu", g, out, nf);
            expect_near("epilogue gelu (bf16 tol)", g, out, nf, 1e-2f, 2e-2f);
        } else {
            printf("  fp32 cuBLASLt has no GELU_AUX epilogue algorithm here (fp32 runs two passes)\n");
        }
        if (lt_matmul_dgelu(d_dinp, d_dout, d_wp, d_fp, M, F, K, g_dt, 0) == 0) {
            cudaCheck(cudaDeviceSynchronize());
            download(g, d_dinp, nf);
            print_max_err("epilogue dgelu", g, dinp, nf);
            expect_near("epilogue dgelu (bf16 tol)", g, dinp, nf, 1e-2f, 2e-2f);
        } else {
            printf("  fp32 cuBLASLt has no DGELU epilogue algorithm here (fp32 runs two passes)\n");
        }
    }
    free(inp), free(w), free(b), free(wp), free(dout), free(dw0), free(db0), free(pre), free(out);
    free(g), free(alt), free(fp), free(fin), free(dinp), free(dw), free(db), free(gw), free(gb);
    dev_free_all();
}

static void test_layernorm(int N, int C)
{
    size_t n = (size_t)N * C;
    float *inp = rand_array(n, -3, 3), *w = rand_array(C, 0.5f, 1.5f), *b = rand_array(C, -1, 1);
    float *dout = rand_array(n, -1, 1), *dinp0 = rand_array(n, -1, 1);
    float *dw0 = rand_array(C, -1, 1), *db0 = rand_array(C, -1, 1);
    void *d_inp = upload(inp, n), *d_w = upload(w, C), *d_b = upload(b, C), *d_dout = upload(dout, n);
    void *d_dinp = upload(dinp0, n), *d_out = poisoned(n * kdtype_size(g_dt));
    float *d_mean = (float *)poisoned(N * 4), *d_rstd = (float *)poisoned(N * 4);
    float *d_dw = upload_f32(dw0, C), *d_db = upload_f32(db0, C);
    layernorm_forward(d_out, d_mean, d_rstd, d_inp, d_w, d_b, N, C, g_dt, 0);
    layernorm_backward(d_dinp, d_dw, d_db, NULL, d_dout, d_inp, d_w, d_mean, d_rstd, N, C, g_dt, 0);
    // Again into fresh copies: dweight and dbias must come out bit-identical.
    void *d_dinp2 = upload(dinp0, n);
    float *d_dw2 = upload_f32(dw0, C), *d_db2 = upload_f32(db0, C);
    layernorm_backward(d_dinp2, d_dw2, d_db2, NULL, d_dout, d_inp, d_w, d_mean, d_rstd, N, C, g_dt, 0);
    // And with dsum: the column sums of dinp as left, added to dsum.
    float *ds0 = rand_array(C, -1, 1);
    void *d_dinp3 = upload(dinp0, n);
    float *d_dw3 = upload_f32(dw0, C), *d_db3 = upload_f32(db0, C), *d_ds = upload_f32(ds0, C);
    layernorm_backward(d_dinp3, d_dw3, d_db3, d_ds, d_dout, d_inp, d_w, d_mean, d_rstd, N, C, g_dt, 0);
    cudaCheck(cudaDeviceSynchronize());
    printf("  %s layernorm N%d C%d\n", dt_name(), N, C);
    expect_same_bits("layernorm dweight deterministic", d_dw, d_dw2, (size_t)C * 4);
    expect_same_bits("layernorm dbias deterministic", d_db, d_db2, (size_t)C * 4);
    expect_same_bits("layernorm dinp, with dsum = without", d_dinp, d_dinp3, n * kdtype_size(g_dt));
    {
        float *left = zeros(n), *want = zeros(C), *got = zeros(C);
        download(left, d_dinp3, n);
        for (int c = 0; c < C; c++) {
            double acc = ds0[c];
            for (int r = 0; r < N; r++) acc += left[(size_t)r * C + c];
            want[c] = (float)acc;
        }
        download_f32(got, d_ds, C);
        expect_near("layernorm dsum (column sums of dinp, +=)", got, want, C, 1e-5f, 1e-4f);
        CHECK(differs(ds0, want, C), "layernorm dsum test: leaving dsum untouched would pass");
        download_f32(got, d_dw3, C);
        float *dw_ref = copy_of(dw0, C), *db_ref = copy_of(db0, C), *dsc = zeros(n), *mn = zeros(N), *rs = zeros(N);
        float *o2 = zeros(n);
        ref_layernorm_forward(o2, mn, rs, inp, w, b, N, C);
        memcpy(dsc, dinp0, n * sizeof(float));
        ref_layernorm_backward(dsc, dw_ref, db_ref, dout, inp, w, mn, rs, N, C);
        expect_near("layernorm dweight with dsum (fp32 +=)", got, dw_ref, C, 2e-5f, 2e-4f);
        download_f32(got, d_db3, C);
        expect_near("layernorm dbias with dsum (fp32 +=)", got, db_ref, C, 2e-5f, 2e-4f);
        free(left), free(want), free(got), free(dw_ref), free(db_ref), free(dsc), free(mn), free(rs), free(o2);
    }
    free(ds0);

    float *out = zeros(n), *mean = zeros(N), *rstd = zeros(N);
    float *dinp = copy_of(dinp0, n), *dw = copy_of(dw0, C), *db = copy_of(db0, C);
    ref_layernorm_forward(out, mean, rstd, inp, w, b, N, C);
    ref_layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
    float *g = zeros(n);
    download(g, d_out, n);
    expect_near("layernorm out", g, out, n, tol_abs(), tol_rel());
    download_f32(g, d_mean, N);
    expect_near("layernorm mean", g, mean, N, 1e-5f, 1e-5f);
    download_f32(g, d_rstd, N);
    expect_near("layernorm rstd", g, rstd, N, 1e-5f, 1e-5f);
    download(g, d_dinp, n);
    expect_near("layernorm dinp (+=)", g, dinp, n, tol_abs(), tol_rel());
    download_f32(g, d_dw, C);
    expect_near("layernorm dweight (fp32 +=)", g, dw, C, 2e-5f, 2e-4f);
    download_f32(g, d_db, C);
    expect_near("layernorm dbias (fp32 +=)", g, db, C, 2e-5f, 2e-4f);
    free(inp), free(w), free(b), free(dout), free(dinp0), free(dw0), free(db0), free(out), free(mean);
    free(rstd), free(dinp), free(dw), free(db), free(g);
    dev_free_all();
}

static int g_deterministic = 1; // off only for cuDNN's fast (atomic) backward

static void test_attention(int B, int T, int NH, int HD, int causal)
{
    size_t nqkv = (size_t)B * T * 3 * NH * HD, no = nqkv / 3, nl = (size_t)B * NH * T;
    float *qkv = rand_array(nqkv, -2, 2), *dout = rand_array(no, -1, 1);
    void *d_qkv = upload(qkv, nqkv), *d_dout = upload(dout, no);
    void *d_out = poisoned(no * kdtype_size(g_dt)), *d_dqkv = poisoned(nqkv * kdtype_size(g_dt));
    void *d_dqkv2 = poisoned(nqkv * kdtype_size(g_dt));
    float *d_lse = (float *)poisoned(nl * 4);
    attention_forward(d_out, d_lse, d_qkv, B, T, NH, HD, causal, g_dt, 0);
    attention_backward(d_dqkv, d_dout, d_qkv, d_out, d_lse, B, T, NH, HD, causal, g_dt, 0);
    attention_backward(d_dqkv2, d_dout, d_qkv, d_out, d_lse, B, T, NH, HD, causal, g_dt, 0);
    cudaCheck(cudaDeviceSynchronize());

    // The reference backward starts from the GPU's own (rounded) out, as the GPU does.
    float *out = zeros(no), *lse = zeros(nl), *dqkv = zeros(nqkv), *g = zeros(nqkv), *g_out = zeros(no);
    ref_attention_forward(out, lse, qkv, B, T, NH, HD, causal);
    download(g_out, d_out, no);
    ref_attention_backward(dqkv, dout, qkv, g_out, lse, B, T, NH, HD, causal);
    char name[80];
    snprintf(name, sizeof name, "attention B%d T%d NH%d HD%d %s out", B, T, NH, HD,
             causal ? "causal" : "bidir");
    expect_near(name, g_out, out, no, tol_abs(), tol_rel());
    download_f32(g, d_lse, nl);
    expect_near("attention lse", g, lse, nl, 1e-5f, 1e-5f);
    download(g, d_dqkv, nqkv);
    expect_near("attention dqkv", g, dqkv, nqkv, tol_abs(), tol_rel());
    if (g_deterministic)
        expect_same_bits("attention dqkv deterministic", d_dqkv, d_dqkv2, nqkv * kdtype_size(g_dt));
    free(qkv), free(dout), free(out), free(lse), free(dqkv), free(g), free(g_out);
    dev_free_all();
}

// At twice the 1b batch the bf16 backward's fp32 dq sums do not all fit the
// scratch at once and run as several launches; each batch alone runs as one. Both
// must give the same bits (and the same as a second run).
static void test_attention_split(int B, int T, int NH, int HD, int causal)
{
    size_t nqkv = (size_t)B * T * 3 * NH * HD, no = nqkv / 3, nl = (size_t)B * NH * T;
    size_t es = kdtype_size(g_dt);
    float *qkv = rand_array(nqkv, -2, 2), *dout = rand_array(no, -1, 1);
    void *d_qkv = upload(qkv, nqkv), *d_dout = upload(dout, no);
    void *d_out = poisoned(no * es), *d_dqkv = poisoned(nqkv * es), *d_dqkv2 = poisoned(nqkv * es);
    void *d_out1 = poisoned(no * es), *d_dqkv1 = poisoned(nqkv * es);
    float *d_lse = (float *)poisoned(nl * 4), *d_lse1 = (float *)poisoned(nl * 4);
    attention_forward(d_out, d_lse, d_qkv, B, T, NH, HD, causal, g_dt, 0);
    attention_backward(d_dqkv, d_dout, d_qkv, d_out, d_lse, B, T, NH, HD, causal, g_dt, 0);
    attention_backward(d_dqkv2, d_dout, d_qkv, d_out, d_lse, B, T, NH, HD, causal, g_dt, 0);
    for (int b = 0; b < B; b++) {
        size_t oq = nqkv / B * es * b, oo = no / B * es * b, ol = nl / B * b;
        attention_forward((char *)d_out1 + oo, d_lse1 + ol, (char *)d_qkv + oq, 1, T, NH, HD, causal, g_dt, 0);
        attention_backward((char *)d_dqkv1 + oq, (char *)d_dout + oo, (char *)d_qkv + oq, (char *)d_out1 + oo,
                           d_lse1 + ol, 1, T, NH, HD, causal, g_dt, 0);
    }
    cudaCheck(cudaDeviceSynchronize());
    char name[80];
    snprintf(name, sizeof name, "attention B%d T%d NH%d HD%d %s: per batch", B, T, NH, HD,
             causal ? "causal" : "bidir");
    printf("  %s %s\n", dt_name(), name);
    expect_same_bits("attention out, per batch", d_out, d_out1, no * es);
    expect_same_bits("attention lse, per batch", d_lse, d_lse1, nl * 4);
    expect_same_bits("attention dqkv, per batch", d_dqkv, d_dqkv1, nqkv * es);
    expect_same_bits("attention dqkv deterministic", d_dqkv, d_dqkv2, nqkv * es);
    free(qkv), free(dout);
    dev_free_all();
}

static void test_elementwise(size_t n)
{
    float *x = rand_array(n, -5, 5), *y = rand_array(n, -1, 1), *dout = rand_array(n, -1, 1);
    void *d_x = upload(x, n), *d_y = upload(y, n), *d_dout = upload(dout, n);
    size_t bytes = n * kdtype_size(g_dt);
    void *d_gelu = poisoned(bytes), *d_dgelu = poisoned(bytes), *d_sum = poisoned(bytes);
    gelu_forward(d_gelu, d_x, n, g_dt, 0);
    gelu_backward(d_dgelu, d_x, d_dout, n, g_dt, 0);
    add_forward(d_sum, d_x, d_y, n, g_dt, 0);
    scale_inplace(d_y, -0.75f, n, g_dt, 0);
    float *d_f32 = (float *)poisoned(n * 4);
    convert(d_f32, KD_F32, d_x, g_dt, n, 0);
    cudaCheck(cudaDeviceSynchronize());

    float *want = zeros(n), *g = zeros(n);
    ref_gelu_forward(want, x, n);
    download(g, d_gelu, n);
    expect_near("gelu out", g, want, n, tol_abs(), tol_rel());
    ref_gelu_backward(want, x, dout, n);
    download(g, d_dgelu, n);
    expect_near("gelu dinp", g, want, n, tol_abs(), tol_rel());
    // One element in: pointers no longer 16-byte aligned, the scalar path.
    char *x1 = (char *)d_x + kdtype_size(g_dt), *d1 = (char *)d_dout + kdtype_size(g_dt);
    gelu_forward(d_gelu, x1, n - 1, g_dt, 0);
    gelu_backward(d_dgelu, x1, d1, n - 1, g_dt, 0);
    ref_gelu_forward(want, x + 1, n - 1);
    download(g, d_gelu, n - 1);
    expect_near("gelu out (unaligned)", g, want, n - 1, tol_abs(), tol_rel());
    ref_gelu_backward(want, x + 1, dout + 1, n - 1);
    download(g, d_dgelu, n - 1);
    expect_near("gelu dinp (unaligned)", g, want, n - 1, tol_abs(), tol_rel());
    ref_add_forward(want, x, y, n);
    download(g, d_sum, n);
    expect_near("add out", g, want, n, tol_abs(), tol_rel());
    ref_scale_inplace(y, -0.75f, n);
    download(g, d_y, n);
    expect_near("scale in place", g, y, n, tol_abs(), tol_rel());
    download_f32(g, d_f32, n);
    expect_near("convert to fp32", g, x, n, 0, 0);
    free(x), free(y), free(dout), free(want), free(g);
    dev_free_all();
}

static void test_embedding(int B, int T, int C, int V)
{
    size_t n = (size_t)B * T * C;
    int *tok = (int *)malloc(sizeof(int) * B * T);
    for (int i = 0; i < B * T; i++) tok[i] = (int)rand_uniform(0, (float)V) % V;
    tok[0] = tok[1] = tok[B * T - 1] = V - 1;  // repeated tokens, and the last row of the table
    float *wte = rand_array((size_t)V * C, -1, 1), *wpe = rand_array((size_t)T * C, -1, 1);
    float *dout = rand_array(n, -1, 1), *dwte0 = rand_array((size_t)V * C, -1, 1);
    float *dwpe0 = rand_array((size_t)T * C, -1, 1), *inp = rand_array(n, -1, 1);
    int *d_tok = upload_i32(tok, B * T);
    void *d_wte = upload(wte, (size_t)V * C), *d_wpe = upload(wpe, (size_t)T * C);
    void *d_dout = upload(dout, n), *d_inp = upload(inp, n);
    void *d_out = poisoned(n * kdtype_size(g_dt)), *d_pos = poisoned(n * kdtype_size(g_dt));
    float *d_dwte = upload_f32(dwte0, (size_t)V * C), *d_dwpe = upload_f32(dwpe0, (size_t)T * C);
    float *d_dwte2 = upload_f32(dwte0, (size_t)V * C);
    embedding_forward(d_out, d_tok, d_wte, d_wpe, B, T, C, V, g_dt, 0);
    embedding_backward(d_dwte, d_dwpe, d_dout, d_tok, B, T, C, V, g_dt, 0);
    embedding_backward(d_dwte2, NULL, d_dout, d_tok, B, T, C, V, g_dt, 0);
    position_embedding_forward(d_pos, d_inp, d_wpe, B, T, C, g_dt, 0);
    cudaCheck(cudaDeviceSynchronize());

    float *out = zeros(n), *g = zeros((size_t)V * C + n);
    ref_embedding_forward(out, tok, wte, wpe, B, T, C, V);
    download(g, d_out, n);
    expect_near("embedding out", g, out, n, tol_abs(), tol_rel());
    ref_embedding_backward(dwte0, dwpe0, dout, tok, B, T, C, V);
    download_f32(g, d_dwte, (size_t)V * C);
    expect_near("embedding dwte (fp32 +=)", g, dwte0, (size_t)V * C, 2e-5f, 2e-4f);
    download_f32(g, d_dwpe, (size_t)T * C);
    expect_near("embedding dwpe (fp32 +=)", g, dwpe0, (size_t)T * C, 2e-5f, 2e-4f);
    expect_same_bits("embedding dwte deterministic", d_dwte, d_dwte2, (size_t)V * C * 4);
    ref_position_embedding_forward(out, inp, wpe, B, T, C);
    download(g, d_pos, n);
    expect_near("position embedding out", g, out, n, tol_abs(), tol_rel());
    free(tok), free(wte), free(wpe), free(dout), free(dwte0), free(dwpe0), free(inp), free(out), free(g);
    dev_free_all();
}

static void test_crossentropy(int N, int V, int Vp)
{
    size_t n = (size_t)N * Vp;
    float *logits = rand_array(n, -4, 4), *mask = zeros(N);
    int *tgt = (int *)malloc(sizeof(int) * N), count = 0;
    for (int i = 0; i < N; i++) {
        tgt[i] = (int)rand_uniform(0, (float)V) % V;
        mask[i] = rand_uniform(0, 1) < 0.7f ? 1.0f : 0.0f;
        for (int v = V; v < Vp; v++) logits[(size_t)i * Vp + v] = 50.0f;  // padding: must not count
    }
    tgt[0] = V - 1, tgt[1] = 0, mask[0] = mask[1] = 1.0f;  // the first and last real columns
    tgt[N - 1] = -1, mask[N - 1] = 0.0f;                    // a masked row's target is never read
    for (int i = 0; i < N; i++) count += mask[i] != 0.0f;
    printf("  %s crossentropy N%d V%d Vp%d\n", dt_name(), N, V, Vp);
    void *d_logits = upload(logits, n), *d_logits2 = upload(logits, n), *d_logits3 = upload(logits, n);
    float *d_loss = (float *)poisoned(N * 4), *d_loss2 = (float *)poisoned(N * 4);
    float *d_loss3 = (float *)poisoned(N * 4);
    float *d_mask = upload_f32(mask, N);
    int *d_tgt = upload_i32(tgt, N);
    float dloss = 1.0f / (count ? count : 1);
    crossentropy_forward_backward(d_logits, d_loss, d_tgt, d_mask, dloss, N, V, Vp, 1, g_dt, 0);
    crossentropy_forward_backward(d_logits2, d_loss2, d_tgt, d_mask, dloss, N, V, Vp, 0, g_dt, 0);
    crossentropy_forward_backward(d_logits3, d_loss3, d_tgt, d_mask, dloss, N, V, Vp, 1, g_dt, 0);
    cudaCheck(cudaDeviceSynchronize());
    expect_same_bits("crossentropy losses deterministic", d_loss, d_loss3, (size_t)N * 4);
    expect_same_bits("crossentropy dlogits deterministic", d_logits, d_logits3, n * kdtype_size(g_dt));

    float *loss = zeros(N), *g = zeros(n), *untouched = copy_of(logits, n);
    ref_crossentropy_forward_backward(logits, loss, tgt, mask, dloss, N, V, Vp, 1);
    download_f32(g, d_loss, N);
    expect_near("crossentropy losses", g, loss, N, 1e-5f, 1e-5f);
    download_f32(g, d_loss2, N);
    expect_near("crossentropy losses (no dlogits)", g, loss, N, 1e-5f, 1e-5f);
    download(g, d_logits, n);
    expect_near("crossentropy dlogits in place", g, logits, n, tol_abs(), tol_rel());
    download(g, d_logits2, n);
    expect_near("crossentropy logits kept without dlogits", g, untouched, n, 0, 0);
    free(logits), free(mask), free(tgt), free(loss), free(g), free(untouched);
    dev_free_all();
}

// AdamW on elements [off, off + n) of buffers of n + off: a tensor run that
// starts off the 16-byte grid (off = 1..3) takes the one-a-thread head and
// tail around the four-a-thread middle; elements before off stay untouched.
static void test_adamw(size_t n, size_t off)
{
    size_t all = n + off, es = kdtype_size(g_dt);
    float *master = rand_array(all, -1, 1), *m = zeros(all), *v = zeros(all);
    float *d_master = upload_f32(master, all), *d_m = upload_f32(m, all), *d_v = upload_f32(v, all);
    void *d_params = poisoned(all * es);
    float *params = zeros(all), *g = zeros(all);
    for (int t = 1; t <= 3; t++) {
        float *grads = rand_array(all, -1, 1);
        float *d_grads = upload_f32(grads, all);
        adamw_step(d_master + off, (char *)d_params + off * es, d_grads + off, d_m + off, d_v + off, n,
                   1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.8f, t, g_dt, 0);
        ref_adamw_step(master + off, params + off, grads + off, m + off, v + off, n, 1e-2f, 0.9f, 0.95f,
                       1e-8f, 0.1f, 0.8f, t);
        free(grads);
    }
    cudaCheck(cudaDeviceSynchronize());
    char name[64];
    snprintf(name, sizeof name, "adamw n %zu at %zu: master after 3 steps", n, off);
    download_f32(g, d_master, all);
    expect_near(name, g, master, all, 1e-6f, 1e-5f);
    download_f32(g, d_m, all);
    expect_near("adamw m", g, m, all, 1e-6f, 1e-5f);
    download_f32(g, d_v, all);
    expect_near("adamw v", g, v, all, 1e-6f, 1e-5f);
    round_to_dt(master, all);
    download(g, d_params, all);
    expect_near("adamw working copy = master", g + off, master + off, n, 1e-6f, g_dt == KD_F32 ? 1e-5f : 8e-3f);
    free(master), free(m), free(v), free(params), free(g);
    dev_free_all();
}

// Squared norm of vals[off, off + n), accumulated onto 0.5; twice for determinism.
static void test_norm_squared(size_t n, size_t off)
{
    float *vals = rand_array(n + off, -1, 1), init = 0.5f, want = 0.5f, got;
    float *d_vals = upload_f32(vals, n + off), *d_norm = upload_f32(&init, 1), *d_norm2 = upload_f32(&init, 1);
    global_norm_squared(d_norm, d_vals + off, n, 0);
    global_norm_squared(d_norm2, d_vals + off, n, 0);
    ref_global_norm_squared(&want, vals + off, n);
    download_f32(&got, d_norm, 1);
    char name[64];
    snprintf(name, sizeof name, "global norm squared (+=) n %zu at %zu", n, off);
    expect_near(name, &got, &want, 1, 0, 1e-5f);
    expect_same_bits("global norm deterministic", d_norm, d_norm2, 4);
    free(vals);
    dev_free_all();
}


// Whether cuDNN's attention runs here (its library loads and plans a shape).
// HGRID_REQUIRE_CUDNN=1 makes its absence a failure.
static int cudnn_attention_runs(void)
{
    void *qkv = poisoned(3 * 64 * 64 * 2), *out = poisoned(64 * 64 * 2);
    float *lse = (float *)poisoned(64 * 4);
    int runs = attention_cudnn_built() &&
               attention_cudnn_forward(out, lse, qkv, 1, 64, 1, 64, 1, 0) == 0;
    cudaCheck(cudaDeviceSynchronize());
    dev_free_all();
    if (!runs) {
        printf("-- attention: cuDNN not available here (%s): its cases not run\n",
               attention_cudnn_built() ? "libcudnn.so.9 did not load or plan" : "built without the cuDNN frontend");
        const char *req = getenv("HGRID_REQUIRE_CUDNN");
        CHECK(!(req && strcmp(req, "1") == 0), "cuDNN attention does not run, and HGRID_REQUIRE_CUDNN=1 requires it");
    }
    return runs;
}

int main(void)
{
    kernels_init();
    for (int d = 0; d < 2; d++) {
        g_dt = d == 0 ? KD_F32 : KD_BF16;
        printf("== %s\n", dt_name());
        test_matmul(100, 64, 72, 1);
        test_matmul(256, 128, 96, 0);
        test_matmul_residual(100, 64, 72, 1);
        test_matmul_residual(37, 128, 96, 0);
        test_matmul(100, 64, 36, 1);     // bias columns % 8 != 0: the scalar column sums
        test_matmul(3000, 64, 1024, 1);  // 47 row chunks of bias-gradient partials
        test_matmul_gelu(100, 64, 256, 1);
        test_matmul_gelu(37, 96, 128, 0);   // odd M
        test_matmul_gelu(129, 128, 512, 1);
        test_matmul_gelu(33, 64, 100, 1);   // F % 8 != 0: the two-pass path
        test_layernorm(37, 200);
        test_layernorm(64, 768);
        test_layernorm(45, 256);    // bf16: the fast kernels from here on (C = 256 k)
        test_layernorm(300, 2048);  // 1b's hidden size
        test_layernorm(9000, 768);  // several rows a warp in the backward
        test_layernorm(33, 1280);
        // bf16 C = 128 k, k odd: the fast kernels' 8-byte loads (4 columns a lane).
        test_layernorm(3136, 384);  // the small encoder's: 16 images of 196 patches
        test_layernorm(37, 384);    // a partial block of warps
        test_layernorm(50, 640);
        test_layernorm(21, 128);    // tiny's hidden size
        test_layernorm(9, 1920);    // the largest: 15 packs a lane
        // bf16 attention on every backend: hgrid's kernels, cuDNN deterministic, cuDNN fast.
        for (int backend = 0; backend < (g_dt == KD_BF16 ? 3 : 1); backend++) {
            if (g_dt == KD_BF16) {
                setenv("HGRID_ATTENTION", backend == 0 ? "hgrid" : "cudnn", 1);
                setenv("HGRID_DETERMINISTIC", backend == 2 ? "0" : "1", 1);
                g_deterministic = backend != 2;
                if (backend > 0 && !cudnn_attention_runs())
                    break;
                printf("-- attention: %s\n", backend == 0 ? "hgrid kernels"
                                             : backend == 1 ? "cuDNN, deterministic" : "cuDNN, fast");
            }
            test_attention(2, 200, 2, 64, 1);
            test_attention(2, 200, 2, 64, 0);
            test_attention(1, 130, 3, 128, 1);
            test_attention(1, 64, 2, 32, 1);
            test_attention(2, 77, 2, 96, 0);
            test_attention(1, 512, 2, 128, 1);
            test_attention(2, 300, 2, 128, 0);
            test_attention(1, 700, 2, 64, 1);
            test_attention(1, 257, 1, 96, 1);
            test_attention(2, 1, 2, 64, 1);
            if (g_dt == KD_BF16 && g_deterministic) {
                test_attention_split(8, 2048, 16, 128, 1);
                test_attention_split(8, 2048, 16, 128, 0);
            }
        }
        unsetenv("HGRID_ATTENTION"), unsetenv("HGRID_DETERMINISTIC");
        test_elementwise(10007);
        test_elementwise(65536);  // whole 16-byte packs
        test_embedding(3, 50, 96, 40);
        test_embedding(4, 1000, 256, 3);  // runs of ~1300 rows: across many pieces of 64 rows
        test_embedding(3, 64, 40, 1);     // one run, exactly three pieces
        test_embedding(1, 129, 300, 2);   // runs that end on and just past a piece's end
        test_crossentropy(33, 1000, 1024);
        test_crossentropy(64, 32000, 32000);   // the configs' vocabulary (padded: itself)
        test_crossentropy(40, 31999, 32000);   // V % 8 != 0: padding inside the last 16-byte pack
        test_crossentropy(17, 50257, 50304);   // GPT-2's, padded to 128
        test_crossentropy(21, 1003, 1003);     // rows not in 16-byte packs: the scalar kernel
        test_crossentropy(9, 128253, 128256);  // rows beyond shared memory: read twice
        for (size_t off = 0; off < 4; off++) {
            test_adamw(10001, off);
            test_norm_squared(3000017, off);
            test_norm_squared(2, off); // shorter than the head
        }
    }
    kernels_free();
    return check_summary("test_kernels (gpu)");
}
