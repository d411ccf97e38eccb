// Times every kernel at the `small` (hidden 768, 12 heads, seq 1024, batch 8)
// and `1b` (hidden 2048, 16 heads, seq 2048, batch 4) shapes in bf16, the
// encoders' layernorms (`small-enc`, `1b-enc`) and the loss at two other
// vocabularies (`loss`): median of repeats with CUDA events, as TFLOP/s or
// GB/s and % of the measured ceilings (a large d2d copy, a large cuBLASLt bf16 GEMM). Writes the table
// to build/bench_kernels.tsv for tests/bench/bench_kernels_torch.py. An
// argument times only the ops whose names contain it (`bench_kernels attention`).
#include <string.h>

#include <algorithm>
#include <vector>

#include "kernels/common.cuh"
#include "tests/bench/median_ms.cuh"

#define REPEATS 15

static double ceil_gbs, ceil_tflops;
static FILE *tsv;
static const char *op_filter;


// flops > 0: compute-bound op, else bytes moved.
static void report(const char *config, const char *op, double ms, double flops, double bytes)
{
    if (flops > 0) {
        double tf = flops / ms / 1e9;
        printf("  %-5s %-34s %9.3f ms %8.1f TFLOP/s %5.1f%% of gemm\n", config, op, ms, tf,
               100 * tf / ceil_tflops);
    } else {
        double gbs = bytes / ms / 1e6;
        printf("  %-5s %-34s %9.3f ms %8.1f GB/s    %5.1f%% of copy\n", config, op, ms, gbs,
               100 * gbs / ceil_gbs);
    }
    fprintf(tsv, "%s\t%s\t%.4f\t%.6g\t%.6g\n", config, op, ms, flops, bytes);
}

// Times and reports op, if its name contains the filter (argv[1]; all without one).
template <typename F> static void bench(const char *config, const char *op, F f, double flops, double bytes)
{
    if (op_filter && !strstr(op, op_filter)) return;
    report(config, op, median_ms(f, REPEATS, 2), flops, bytes);
}

__global__ void fill_kernel(__nv_bfloat16 *x, size_t n, unsigned seed, float scale)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned h = (unsigned)i * 2654435761u ^ seed;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
        x[i] = __float2bfloat16(scale * ((h & 0xffff) / 32768.0f - 1.0f));
    }
}

__global__ void fill_f32_kernel(float *x, size_t n, unsigned seed, float scale)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned h = (unsigned)i * 2654435761u ^ seed;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
        x[i] = scale * ((h & 0xffff) / 32768.0f - 1.0f);
    }
}

static unsigned seed_counter = 1;
static void *bf16_rand(size_t n, float scale = 1.0f)
{
    void *p;
    cudaCheck(cudaMalloc(&p, n * 2));
    fill_kernel<<<1024, 256>>>((__nv_bfloat16 *)p, n, seed_counter++ * 977u, scale);
    launchCheck();
    return p;
}
static float *f32_rand(size_t n, float scale = 1.0f)
{
    float *p;
    cudaCheck(cudaMalloc(&p, n * 4));
    fill_f32_kernel<<<1024, 256>>>(p, n, seed_counter++ * 977u, scale);
    launchCheck();
    return p;
}

static void measure_ceilings(void)
{
    size_t bytes = (size_t)1 << 30;
    void *a, *b;
    cudaCheck(cudaMalloc(&a, bytes));
    cudaCheck(cudaMalloc(&b, bytes));
    cudaCheck(cudaMemset(a, 1, bytes));
    double ms = median_ms([&] { cudaCheck(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice)); }, REPEATS, 2);
    ceil_gbs = 2.0 * bytes / ms / 1e6;
    cudaCheck(cudaFree(a));
    cudaCheck(cudaFree(b));
    int n = 8192;
    void *x = bf16_rand((size_t)n * n), *w = bf16_rand((size_t)n * n), *o = bf16_rand((size_t)n * n);
    ms = median_ms([&] { matmul_forward(o, x, w, NULL, n, n, n, KD_BF16, 0); }, REPEATS, 2);
    ceil_tflops = 2.0 * n * n * (double)n / ms / 1e9;
    printf("ceilings: d2d copy %.0f GB/s (1 GiB, read + write), cuBLASLt bf16 GEMM %.0f TFLOP/s (8192^3)\n",
           ceil_gbs, ceil_tflops);
    fprintf(tsv, "ceil\tcopy\t%.4f\t0\t%.6g\nceil\tgemm\t%.4f\t%.6g\t0\n", 2.0 * bytes / ceil_gbs / 1e6,
            2.0 * bytes, 2.0 * n * n * (double)n / ceil_tflops / 1e9, 2.0 * n * n * (double)n);
    cudaCheck(cudaFree(x));
    cudaCheck(cudaFree(w));
    cudaCheck(cudaFree(o));
}

static void bench_config(const char *cfg, int B, int T, int C, int NH, int V, int E, int K)
{
    int N = B * T, HD = C / NH, Vp = (V + 127) / 128 * 128;
    size_t NC = (size_t)N * C;
    printf("%s: B %d T %d C %d NH %d HD %d V %d (padded %d); MoE E %d top-%d\n", cfg, B, T, C, NH, HD, V, Vp, E, K);
    std::vector<void *> bufs;
    auto bf = [&](size_t n, float s = 1.0f) { void *p = bf16_rand(n, s); bufs.push_back(p); return p; };
    auto f32 = [&](size_t n, float s = 1.0f) { float *p = f32_rand(n, s); bufs.push_back(p); return p; };

    // matmuls of one block: qkv (C -> 3C) and fc (C -> 4C), forward and backward.
    void *x = bf(NC), *wqkv = bf((size_t)3 * C * C, 0.05f), *bqkv = bf(3 * C), *qkv = bf(3 * NC);
    void *wfc = bf((size_t)4 * C * C, 0.05f), *bfc = bf(4 * C), *h = bf(4 * NC), *dh = bf(4 * NC), *dx = bf(NC);
    float *dwfc = f32((size_t)4 * C * C), *dbfc = f32(4 * C);
    double f = 2.0 * N * C * 3.0 * C;
    bench(cfg, "matmul fwd qkv (+bias)", [&] { matmul_forward(qkv, x, wqkv, bqkv, N, C, 3 * C, KD_BF16, 0); }, f, 0);
    f = 2.0 * N * C * 4.0 * C;
    bench(cfg, "matmul fwd fc (+bias)", [&] { matmul_forward(h, x, wfc, bfc, N, C, 4 * C, KD_BF16, 0); }, f, 0);
    bench(cfg, "matmul bwd fc (dinp+dW+dbias)",
          [&] { matmul_backward(dx, dwfc, dbfc, dh, x, wfc, N, C, 4 * C, KD_BF16, 0); }, 2 * f, 0);

    // attention: causal (the LLM) and bidirectional (the encoder); each
    // backward runs on its own forward's output and lse.
    void *att = bf(NC), *datt = bf(NC), *dqkv = bf(3 * NC);
    float *lse = f32((size_t)B * NH * T);
    double af = 4.0 * B * NH * (double)T * T * HD;  // bidirectional; causal computes half the scores
    for (int causal = 1; causal >= 0; causal--) {
        const char *mask = causal ? "causal" : "bidir";
        double ff = causal ? af / 2 : af;
        char op[64];
        snprintf(op, sizeof op, "attention fwd %s", mask);
        bench(cfg, op, [&] { attention_forward(att, lse, qkv, B, T, NH, HD, causal, KD_BF16, 0); }, ff, 0);
        attention_forward(att, lse, qkv, B, T, NH, HD, causal, KD_BF16, 0);
        snprintf(op, sizeof op, "attention bwd %s", mask);
        bench(cfg, op, [&] { attention_backward(dqkv, datt, qkv, att, lse, B, T, NH, HD, causal, KD_BF16, 0); },
              2.5 * ff, 0);
    }

    // layernorm, gelu, residual
    void *lnw = bf(C), *lnb = bf(C), *ln = bf(NC), *dln = bf(NC);
    float *mean = f32(N), *rstd = f32(N), *dlnw = f32(C), *dlnb = f32(C);
    bench(cfg, "layernorm fwd", [&] { layernorm_forward(ln, mean, rstd, x, lnw, lnb, N, C, KD_BF16, 0); }, 0, 2.0 * NC * 2);
    bench(cfg, "layernorm bwd",
          [&] { layernorm_backward(dx, dlnw, dlnb, NULL, dln, x, lnw, mean, rstd, N, C, KD_BF16, 0); }, 0, 4.0 * NC * 2);
    // with the next matmul's bias gradient summed in the same pass
    float *dsum = f32(C);
    bench(cfg, "layernorm bwd + dsum",
          [&] { layernorm_backward(dx, dlnw, dlnb, dsum, dln, x, lnw, mean, rstd, N, C, KD_BF16, 0); }, 0, 4.0 * NC * 2);
    void *g = bf(4 * NC);
    bench(cfg, "gelu fwd", [&] { gelu_forward(g, h, 4 * NC, KD_BF16, 0); }, 0, 2.0 * 4 * NC * 2);
    bench(cfg, "gelu bwd", [&] { gelu_backward(dh, h, g, 4 * NC, KD_BF16, 0); }, 0, 3.0 * 4 * NC * 2);
    // The same MLP steps with the GELU in the cuBLASLt epilogues: compare fc fwd
    // + gelu fwd, and fc_proj bwd + gelu bwd (fc_proj's weight: wfc's (C, 4C) view).
    bench(cfg, "matmul fwd fc (+bias) + gelu fused",
          [&] { matmul_forward_gelu(g, h, x, wfc, bfc, N, C, 4 * C, KD_BF16, 0); }, f, 0);
    bench(cfg, "matmul bwd fc_proj (dinp+dW+dbias)",
          [&] { matmul_backward(dh, dwfc, dbfc, dx, g, wfc, N, 4 * C, C, KD_BF16, 0); }, 2 * f, 0);
    bench(cfg, "matmul bwd fc_proj + dgelu fused",
          [&] { matmul_backward_dgelu(dh, dwfc, dbfc, dx, g, wfc, h, N, 4 * C, C, KD_BF16, 0); }, 2 * f, 0);
    bench(cfg, "residual add", [&] { add_forward(dx, x, ln, NC, KD_BF16, 0); }, 0, 3.0 * NC * 2);

    // embeddings
    std::vector<int> tok(N);
    for (int i = 0; i < N; i++) tok[i] = (int)((i * 2654435761u) % V);
    int *dtok;
    cudaCheck(cudaMalloc(&dtok, sizeof(int) * N));
    cudaCheck(cudaMemcpy(dtok, tok.data(), sizeof(int) * N, cudaMemcpyHostToDevice));
    void *wte = bf((size_t)V * C), *wpe = bf((size_t)T * C);
    float *dwte = f32((size_t)V * C), *dwpe = f32((size_t)T * C);
    bench(cfg, "embedding fwd", [&] { embedding_forward(ln, dtok, wte, wpe, B, T, C, V, KD_BF16, 0); }, 0, 3.0 * NC * 2);
    bench(cfg, "embedding bwd (sorted, deterministic)",
          [&] { embedding_backward(dwte, dwpe, dln, dtok, B, T, C, V, KD_BF16, 0); }, 0,
           NC * 2 + 2.0 * NC * 4);

    // LM head loss: logits (N, Vp) read, dlogits written in place
    void *logits = bf((size_t)N * Vp, 4.0f);
    float *losses = f32(N), *mask = f32(N);
    std::vector<float> hmask(N, 1.0f);
    cudaCheck(cudaMemcpy(mask, hmask.data(), sizeof(float) * N, cudaMemcpyHostToDevice));
    bench(cfg, "crossentropy fwd+bwd (in place)",
          [&] { crossentropy_forward_backward(logits, losses, dtok, mask, 1.0f / N, N, V, Vp, 1, KD_BF16, 0); },
           0, 2.0 * N * Vp * 2);
    // As the model's loss mask has it: a sequence's 196 image positions do not
    // count, so their logits need not be read (their dlogits are still written).
    int image_rows = 0;
    for (int i = 0; i < N; i++) image_rows += (hmask[i] = i % T < 196 ? 0.0f : 1.0f) == 0.0f;
    cudaCheck(cudaMemcpy(mask, hmask.data(), sizeof(float) * N, cudaMemcpyHostToDevice));
    bench(cfg, "crossentropy fwd+bwd, 196 image rows masked",
          [&] { crossentropy_forward_backward(logits, losses, dtok, mask, 1.0f / N, N, V, Vp, 1, KD_BF16, 0); },
           0, (2.0 * N - image_rows) * Vp * 2);

    // MoE routing and permutation at this width
    void *rl = bf((size_t)N * E);
    float *probs = f32((size_t)N * E), *gates = f32((size_t)N * K), *aux = f32(1), *dgates = f32((size_t)N * K);
    int *idx, *pos, *off;
    cudaCheck(cudaMalloc(&idx, sizeof(int) * N * K));
    cudaCheck(cudaMalloc(&pos, sizeof(int) * N * K));
    cudaCheck(cudaMalloc(&off, sizeof(int) * (E + 1)));
    bench(cfg, "moe router fwd (softmax+top-k)",
          [&] { moe_router_forward(probs, idx, gates, rl, N, E, K, KD_BF16, 0); }, 0, (double)N * E * 6 + N * K * 8);
    bench(cfg, "moe aux loss fwd", [&] { moe_aux_loss_forward(aux, probs, idx, N, E, K, 0.01f, 0); }, 0,
          (double)N * E * 4 + N * K * 4);
    bench(cfg, "moe router bwd", [&] { moe_router_backward(rl, dgates, probs, idx, gates, 0.01f, N, E, K, KD_BF16, 0); },
          0, (double)N * E * 6 + N * K * 12);
    bench(cfg, "moe permute plan", [&] { moe_permute_plan(pos, off, idx, N, E, K, 0); }, 0, (double)N * K * 8);
    void *xp = bf((size_t)K * NC), *y = bf(NC);
    bench(cfg, "moe permute fwd", [&] { moe_permute_forward(xp, x, pos, N, K, C, KD_BF16, 0); }, 0, 2.0 * K * NC * 2);
    bench(cfg, "moe unpermute fwd", [&] { moe_unpermute_forward(y, xp, gates, pos, N, K, C, KD_BF16, 0); }, 0,
          (K + 1.0) * NC * 2);
    void *dxp = bf((size_t)K * NC);  // yp: xp stands in for the experts' outputs (K N, C)
    bench(cfg, "moe unpermute bwd", [&] { moe_unpermute_backward(dxp, dgates, dx, xp, gates, pos, N, K, C, KD_BF16, 0); },
          0, (2.0 * K + 1) * NC * 2);
    cudaCheck(cudaFree(idx));
    cudaCheck(cudaFree(pos));
    cudaCheck(cudaFree(off));
    cudaCheck(cudaFree(dtok));
    for (void *p : bufs) cudaCheck(cudaFree(p));
}

// The encoder's layernorms: B images of P patches, hidden C (`small`'s 384
// takes the fast kernels' 8-byte loads).
static void bench_encoder(const char *cfg, int B, int P, int C)
{
    int N = B * P;
    size_t NC = (size_t)N * C;
    printf("%s: encoder B %d patches %d C %d\n", cfg, B, P, C);
    void *x = bf16_rand(NC), *ln = bf16_rand(NC), *dln = bf16_rand(NC), *dx = bf16_rand(NC);
    void *lnw = bf16_rand(C), *lnb = bf16_rand(C);
    float *mean = f32_rand(N), *rstd = f32_rand(N), *dlnw = f32_rand(C), *dlnb = f32_rand(C);
    bench(cfg, "layernorm fwd", [&] { layernorm_forward(ln, mean, rstd, x, lnw, lnb, N, C, KD_BF16, 0); }, 0, 2.0 * NC * 2);
    layernorm_forward(ln, mean, rstd, x, lnw, lnb, N, C, KD_BF16, 0);
    bench(cfg, "layernorm bwd",
          [&] { layernorm_backward(dx, dlnw, dlnb, NULL, dln, x, lnw, mean, rstd, N, C, KD_BF16, 0); }, 0, 4.0 * NC * 2);
    for (void *p : {x, ln, dln, dx, lnw, lnb, (void *)mean, (void *)rstd, (void *)dlnw, (void *)dlnb})
        cudaCheck(cudaFree(p));
}

// The loss at other vocabularies, N rows: a padded one (the shared-memory
// kernel) and one whose rows (256 KB) do not fit shared memory (the
// streaming kernel, which reads them twice).
static void bench_vocab(int N)
{
    const int vocab[][2] = {{50257, 50304}, {128256, 128256}};  // V, Vp: GPT-2's padded to 128; Llama 3's
    float *losses = f32_rand(N), *mask;
    std::vector<float> ones(N, 1.0f);
    cudaCheck(cudaMalloc(&mask, sizeof(float) * N));
    cudaCheck(cudaMemcpy(mask, ones.data(), sizeof(float) * N, cudaMemcpyHostToDevice));
    int *dtok;
    cudaCheck(cudaMalloc(&dtok, sizeof(int) * N));
    for (auto &vv : vocab) {
        int V = vv[0], Vp = vv[1];
        std::vector<int> tok(N);
        for (int i = 0; i < N; i++) tok[i] = (int)((i * 2654435761u) % V);
        cudaCheck(cudaMemcpy(dtok, tok.data(), sizeof(int) * N, cudaMemcpyHostToDevice));
        void *logits = bf16_rand((size_t)N * Vp, 4.0f);
        char op[64];
        snprintf(op, sizeof op, "crossentropy N%d V%d Vp%d", N, V, Vp);
        bench("loss", op,
              [&] { crossentropy_forward_backward(logits, losses, dtok, mask, 1.0f / N, N, V, Vp, 1, KD_BF16, 0); },
              0, 2.0 * N * Vp * 2);
        cudaCheck(cudaFree(logits));
    }
    cudaCheck(cudaFree(dtok));
    cudaCheck(cudaFree(mask));
    cudaCheck(cudaFree(losses));
}

static void bench_optimizer(size_t n)
{
    float *master = f32_rand(n), *grads = f32_rand(n), *m = f32_rand(n, 0.01f), *v = f32_rand(n, 0.0f);
    void *params = bf16_rand(n), *norm;
    cudaCheck(cudaMalloc(&norm, 4));
    char op[64];
    snprintf(op, sizeof op, "adamw step (%zuM params)", n >> 20);
    int t = 1;
    bench("opt", op, [&] { adamw_step(master, params, grads, m, v, n, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, t++, KD_BF16, 0); },
          0, 30.0 * n);
    snprintf(op, sizeof op, "global norm^2 (%zuM params)", n >> 20);
    bench("opt", op, [&] { global_norm_squared((float *)norm, grads, n, 0); }, 0, 4.0 * n);
    cudaCheck(cudaFree(master));
    cudaCheck(cudaFree(grads));
    cudaCheck(cudaFree(m));
    cudaCheck(cudaFree(v));
    cudaCheck(cudaFree(params));
    cudaCheck(cudaFree(norm));
}

int main(int argc, char **argv)
{
    op_filter = argc > 1 ? argv[1] : NULL;
    kernels_init();
    tsv = fopen("build/bench_kernels.tsv", "w");
    if (!tsv) {
        fprintf(stderr, "bench_kernels: cannot write build/bench_kernels.tsv: run from the repository root\n");
        return 1;
    }
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s\n", prop.name);
    measure_ceilings();
    bench_config("small", 8, 1024, 768, 12, 32000, 8, 2);
    bench_config("1b", 4, 2048, 2048, 16, 32000, 8, 2);
    bench_encoder("small-enc", 16, 196, 384);  // the model's batch of 16 images
    bench_encoder("1b-enc", 4, 196, 768);
    bench_vocab(8192);
    bench_optimizer((size_t)128 << 20);
    fclose(tsv);
    kernels_free();
    return 0;
}
