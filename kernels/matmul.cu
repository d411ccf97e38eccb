// Linear layers through cuBLASLt: out = inp @ weight^T + bias, and its
// backward. Row-major tensors are handed to cuBLASLt as their column-major
// transposes. fp32 accumulate; fp32 mode uses plain fp32 (no TF32).
#include <stdint.h>

#include "kernels/common.cuh"

// ---- kernels

// Column sums in two deterministic passes: each block sums a chunk of rows
// into scratch (partial, (chunks, cols)), then the chunks are added in a
// fixed order. With one chunk (add = 1) the first pass adds its sums to the
// output itself: the same values, without the second launch.
template <typename T>
__global__ void column_partial_kernel(float *partial, const T *__restrict__ in, int rows,
                                      int cols, int rows_per_chunk, int add)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    int r0 = blockIdx.y * rows_per_chunk, r1 = min(rows, r0 + rows_per_chunk);
    float acc = 0.0f;
#pragma unroll 8
    for (int r = r0; r < r1; r++) acc += to_f(in[(size_t)r * cols + c]);
    float *dst = partial + (size_t)blockIdx.y * cols + c;
    *dst = add ? *dst + acc : acc;
}

// bf16 with cols % 8 == 0 and 16-byte rows: 8 columns a thread, 16-byte loads.
__global__ void column_partial_bf8_kernel(float *partial, const uint4 *__restrict__ in,
                                          int rows, int cols, int rows_per_chunk, int add)
{
    int c8 = blockIdx.x * blockDim.x + threadIdx.x, packs = cols / 8;
    if (c8 >= packs) return;
    int r0 = blockIdx.y * rows_per_chunk, r1 = min(rows, r0 + rows_per_chunk);
    float acc[8] = {0};
#pragma unroll 4
    for (int r = r0; r < r1; r++) {
        uint4 v = in[(size_t)r * packs + c8];
        const __nv_bfloat162 *h = (const __nv_bfloat162 *)&v;
#pragma unroll
        for (int k = 0; k < 4; k++) acc[2 * k] += __low2float(h[k]), acc[2 * k + 1] += __high2float(h[k]);
    }
    float *dst = partial + (size_t)blockIdx.y * cols + 8 * c8;
    if (add) {  // the output: no alignment to count on
#pragma unroll
        for (int k = 0; k < 8; k++) dst[k] += acc[k];
        return;
    }
    float4 *out = (float4 *)dst;
    out[0] = make_float4(acc[0], acc[1], acc[2], acc[3]);
    out[1] = make_float4(acc[4], acc[5], acc[6], acc[7]);
}

// out += the chunks' sums: a block takes 32 columns, each of its 8 warps
// every 8th chunk, then the 8 sums are added in order.
__global__ void column_finish_kernel(float *out, const float *partial, int chunks, int cols)
{
    __shared__ float part[8][32];
    int lane = threadIdx.x % 32, grp = threadIdx.x / 32, c = blockIdx.x * 32 + lane;
    float acc = 0.0f;
    if (c < cols)
        for (int k = grp; k < chunks; k += 8) acc += partial[(size_t)k * cols + c];
    part[grp][lane] = acc;
    __syncthreads();
    if (grp || c >= cols) return;
    for (int g = 1; g < 8; g++) acc += part[g][lane];
    out[c] += acc;
}

// ---- launchers

void column_sum_accumulate(float *out, const void *in, int rows, int cols, kdtype dt,
                           cudaStream_t stream)
{
    kassert(rows >= 0 && cols > 0, "column_sum_accumulate shape");
    if (rows == 0) return;
    // Chunks of 64 rows, fewer (longer) ones where the partials would pass 16 MiB.
    size_t max_chunks = ((size_t)16 << 20) / (sizeof(float) * cols) + 1;
    int per_chunk = (int)ceil_div(rows, max_chunks);
    if (per_chunk < 64) per_chunk = 64;
    int chunks = (int)ceil_div(rows, per_chunk), direct = chunks == 1;
    float *partial = direct ? out : (float *)kernels_scratch(sizeof(float) * chunks * (size_t)cols, "column sum");
    if (dt == KD_BF16 && cols % 8 == 0 && (uintptr_t)in % 16 == 0)
        column_partial_bf8_kernel<<<dim3(ceil_div(cols / 8, 128), chunks), 128, 0, stream>>>(
            partial, (const uint4 *)in, rows, cols, per_chunk, direct);
    else if (dt == KD_F32)
        column_partial_kernel<<<dim3(ceil_div(cols, 128), chunks), 128, 0, stream>>>(
            partial, (const float *)in, rows, cols, per_chunk, direct);
    else
        column_partial_kernel<<<dim3(ceil_div(cols, 128), chunks), 128, 0, stream>>>(
            partial, (const __nv_bfloat16 *)in, rows, cols, per_chunk, direct);
    launchCheck();
    if (direct) return;
    column_finish_kernel<<<ceil_div(cols, 32), 256, 0, stream>>>(out, partial, chunks, cols);
    launchCheck();
}

static cudaDataType_t cuda_type(kdtype dt) { return dt == KD_F32 ? CUDA_R_32F : CUDA_R_16BF; }

// What cuBLASLt does to the product before it stores D. aux has D's shape,
// leading dimension and type (cuBLASLt's default aux type is D's type; we
// leave it so): the GELU input that LT_GELU writes and LT_DGELU reads.
typedef enum {
    LT_PLAIN,  // D = AB [+ bias]
    LT_GELU,   // aux = AB [+ bias]; D = gelu(aux)
    LT_DGELU,  // D = AB * gelu'(aux)   (no bias)
    LT_BGRADB, // D = AB; bias = op(B) summed over k, written in D's type
} lt_act;

typedef struct {
    lt_act act;
    const void *bias; // (m) of D's type, or NULL; LT_BGRADB: (n), written
    void *aux;        // (m, n), ld m; LT_GELU and LT_DGELU only
    const void *add;  // (m, n) like D, added to the product (cuBLASLt's C), or NULL
} lt_epilogue;

static const char *lt_act_name(lt_act act)
{
    return act == LT_GELU ? "gelu" : act == LT_DGELU ? "dgelu" : act == LT_BGRADB ? "bgradb" : "plain";
}

static cublasLtEpilogue_t lt_epilogue_of(const lt_epilogue *e)
{
    switch (e->act) {
    case LT_GELU: return e->bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
    case LT_DGELU: return CUBLASLT_EPILOGUE_DGELU;
    case LT_BGRADB: return CUBLASLT_EPILOGUE_BGRADB;
    default: return e->bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    }
}

// Column-major D (m, n) = op(A) op(B) + beta D (or + add), then the epilogue; fp32 compute.
// Returns 0, or -1 when cuBLASLt has no algorithm for it (nothing launched).
static int lt_matmul_try(void *d, cudaDataType_t dtype, const void *a, const void *b,
                         cudaDataType_t abtype, int transa, int transb, int m, int n, int k,
                         float beta, lt_epilogue epi, cudaStream_t stream)
{
    int has_aux = epi.act == LT_GELU || epi.act == LT_DGELU;
    kassert(!has_aux || (epi.aux != NULL && m % 8 == 0), "cuBLASLt GELU epilogue aux");
    kassert(epi.act != LT_DGELU || epi.bias == NULL, "cuBLASLt DGELU epilogue takes no bias");
    cublasLtMatmulDesc_t desc;
    cublasCheck(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = transa ? CUBLAS_OP_T : CUBLAS_OP_N, tb = transb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    cublasLtEpilogue_t mode = lt_epilogue_of(&epi);
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &mode, sizeof(mode)));
    if (epi.bias)
        cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &epi.bias,
                                                   sizeof(epi.bias)));
    if (has_aux) {
        // The aux leading dimension counts elements and must be a multiple of 8.
        int64_t aux_ld = m;
        cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER,
                                                   &epi.aux, sizeof(epi.aux)));
        cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld,
                                                   sizeof(aux_ld)));
    }
    // Stored shapes (rows, cols) of A and B before op(), column-major.
    cublasLtMatrixLayout_t la, lb, ld;
    cublasCheck(cublasLtMatrixLayoutCreate(&la, abtype, transa ? k : m, transa ? m : k, transa ? k : m));
    cublasCheck(cublasLtMatrixLayoutCreate(&lb, abtype, transb ? n : k, transb ? k : n, transb ? n : k));
    cublasCheck(cublasLtMatrixLayoutCreate(&ld, dtype, m, n, m));

    size_t ws_bytes;
    void *ws = kernels_lt_workspace(&ws_bytes);
    cublasLtMatmulPreference_t pref;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &ws_bytes, sizeof(ws_bytes)));
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    // Some cuBLASLt versions answer NOT_SUPPORTED rather than found == 0.
    cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(kernels_lt(), desc, la, lb, ld, ld, pref, 1, &heur, &found);
    if (hs != CUBLAS_STATUS_NOT_SUPPORTED) cublasCheck(hs);
    float alpha = 1.0f;
    const void *c = epi.add ? epi.add : d;
    if (epi.add) {
        kassert(beta == 0.0f, "lt_matmul: add and beta are exclusive");
        beta = 1.0f;
    }
    if (found)
        cublasCheck(cublasLtMatmul(kernels_lt(), desc, &alpha, a, la, b, lb, &beta, c, ld, d, ld,
                                   &heur.algo, ws, ws_bytes, stream));
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    cublasCheck(cublasLtMatrixLayoutDestroy(la));
    cublasCheck(cublasLtMatrixLayoutDestroy(lb));
    cublasCheck(cublasLtMatrixLayoutDestroy(ld));
    cublasCheck(cublasLtMatmulDescDestroy(desc));
    return found ? 0 : -1;
}

static void lt_check_found(int rc, int m, int n, int k, lt_epilogue epi)
{
    if (rc != 0) {
        fprintf(stderr, "matmul: cuBLASLt has no algorithm for m=%d n=%d k=%d (bias %d, epilogue %s): "
                "check the shapes and 16-byte alignment of the pointers\n", m, n, k, epi.bias != NULL,
                lt_act_name(epi.act));
        exit(EXIT_FAILURE);
    }
}

static void lt_matmul(void *d, cudaDataType_t dtype, const void *a, const void *b,
                      cudaDataType_t abtype, int transa, int transb, int m, int n, int k,
                      float beta, lt_epilogue epi, cudaStream_t stream)
{
    lt_check_found(lt_matmul_try(d, dtype, a, b, abtype, transa, transb, m, n, k, beta, epi, stream),
                   m, n, k, epi);
}

static lt_epilogue lt_plain(const void *bias) { return lt_epilogue{LT_PLAIN, bias, NULL, NULL}; }

extern "C" void matmul_forward(void *out, const void *inp, const void *weight, const void *bias,
                               int M, int K, int N, kdtype dt, cudaStream_t stream)
{
    kassert(M >= 0 && K > 0 && N > 0, "matmul_forward shape");
    if (M == 0) return;
    // Column-major: out^T (N, M) = op_T(weight stored as (K, N)) @ inp^T (K, M)
    lt_matmul(out, cuda_type(dt), weight, inp, cuda_type(dt), 1, 0, N, M, K, 0.0f, lt_plain(bias), stream);
}

// The residual add of a transformer block in the matmul's epilogue (cuBLASLt
// reads C = resid once; the separate add kernel read two tensors and wrote one).
extern "C" void matmul_forward_residual(void *out, const void *inp, const void *weight, const void *bias,
                                        const void *resid, int M, int K, int N, kdtype dt,
                                        cudaStream_t stream)
{
    kassert(M >= 0 && K > 0 && N > 0 && resid != NULL, "matmul_forward_residual shape");
    if (M == 0) return;
    lt_matmul(out, cuda_type(dt), weight, inp, cuda_type(dt), 1, 0, N, M, K, 0.0f,
              lt_epilogue{LT_PLAIN, bias, NULL, resid}, stream);
}

// dinp^T (K, M) = W^T-as-stored (K, N) @ dout^T (N, M), then the epilogue.
static void dinp_matmul(void *dinp, const void *dout, const void *weight, int M, int K, int N,
                        kdtype dt, lt_epilogue epi, cudaStream_t stream)
{
    lt_matmul(dinp, cuda_type(dt), weight, dout, cuda_type(dt), 0, 0, K, M, N, 0.0f, epi, stream);
}

__global__ void accumulate_kernel(float *out, const float *in, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] += in[i];
}

// dW^T (K, N) += inp^T (K, M) @ dout (M, N), accumulated in fp32; dbias +=
// dout's column sums. Where cuBLASLt has it, the BGRADB epilogue sums dout
// (in fp32: D's type); it overwrites, so the sums land in scratch and one
// small launch adds them. On H100 (cuBLASLt 13) the epilogue runs as a
// separate reduction kernel that reads dout again: 4.5 ms of the 1b step,
// as our column sums took (docs/PERFORMANCE.md, 2026-12-07 22:50).
static void weight_grads(float *dweight, float *dbias, const void *dout, const void *inp, int M,
                         int K, int N, kdtype dt, cudaStream_t stream)
{
    if (dbias) {
        float *sums = (float *)kernels_scratch(sizeof(float) * (size_t)N, "bias gradient");
        if (lt_matmul_try(dweight, CUDA_R_32F, inp, dout, cuda_type(dt), 0, 1, K, N, M, 1.0f,
                          lt_epilogue{LT_BGRADB, sums, NULL, NULL}, stream) == 0) {
            accumulate_kernel<<<ceil_div(N, 256), 256, 0, stream>>>(dbias, sums, N);
            launchCheck();
            return;
        }
    }
    lt_matmul(dweight, CUDA_R_32F, inp, dout, cuda_type(dt), 0, 1, K, N, M, 1.0f, lt_plain(NULL), stream);
    if (dbias) column_sum_accumulate(dbias, dout, M, N, dt, stream);
}

extern "C" void matmul_backward(void *dinp, float *dweight, float *dbias, const void *dout,
                                const void *inp, const void *weight, int M, int K, int N,
                                kdtype dt, cudaStream_t stream)
{
    kassert(M >= 0 && K > 0 && N > 0 && dweight != NULL, "matmul_backward shape");
    if (M == 0) return;
    if (dinp) dinp_matmul(dinp, dout, weight, M, K, N, dt, lt_plain(NULL), stream);
    weight_grads(dweight, dbias, dout, inp, M, K, N, dt, stream);
}

// ---- GELU fused into the epilogue
//
// The fused paths run in bf16 only. fp32 mode is the one that must match the
// CPU reference to 2e-4, and cuBLASLt does not document how exactly its
// epilogue evaluates tanh; so fp32 keeps our tanhf kernels (exact to the
// reference), and the GPU test measures the epilogue in fp32 against the
// reference through the lt_ entry points below. The aux leading dimension
// (N forward, K backward) must be a multiple of 8: other shapes take the
// two-pass path in either type.

extern "C" int lt_matmul_forward_gelu(void *out, void *pre, const void *inp, const void *weight,
                                      const void *bias, int M, int K, int N, kdtype dt,
                                      cudaStream_t stream)
{
    kassert(M >= 0 && K > 0 && N > 0 && N % 8 == 0, "lt_matmul_forward_gelu shape");
    if (M == 0) return 0;
    return lt_matmul_try(out, cuda_type(dt), weight, inp, cuda_type(dt), 1, 0, N, M, K, 0.0f,
                         lt_epilogue{LT_GELU, bias, pre, NULL}, stream);
}

extern "C" int lt_matmul_dgelu(void *dinp, const void *dout, const void *weight, const void *pre,
                               int M, int K, int N, kdtype dt, cudaStream_t stream)
{
    kassert(M >= 0 && K > 0 && N > 0 && K % 8 == 0, "lt_matmul_dgelu shape");
    if (M == 0) return 0;
    // dinp^T (K, M) = W^T-as-stored (K, N) @ dout^T (N, M), times gelu'(pre^T (K, M))
    return lt_matmul_try(dinp, cuda_type(dt), weight, dout, cuda_type(dt), 0, 0, K, M, N, 0.0f,
                         lt_epilogue{LT_DGELU, NULL, (void *)pre, NULL}, stream);
}

extern "C" void matmul_forward_gelu(void *out, void *pre, const void *inp, const void *weight,
                                    const void *bias, int M, int K, int N, kdtype dt,
                                    cudaStream_t stream)
{
    kassert(M >= 0 && K > 0 && N > 0 && out != pre, "matmul_forward_gelu shape");
    if (dt == KD_BF16 && N % 8 == 0) {
        lt_check_found(lt_matmul_forward_gelu(out, pre, inp, weight, bias, M, K, N, dt, stream), N, M,
                       K, lt_epilogue{LT_GELU, bias, pre, NULL});
        return;
    }
    matmul_forward(pre, inp, weight, bias, M, K, N, dt, stream);
    gelu_forward(out, pre, (size_t)M * N, dt, stream);
}

// fc_b's gradient stays a separate deterministic column sum of dinp (the
// next matmul_backward's dbias) rather than CUBLASLT_EPILOGUE_DGELU_BGRAD:
// cuBLASLt writes that bias gradient in D's type (bf16, cublasLt.h on
// CUBLASLT_MATMUL_DESC_BIAS_POINTER), i.e. a sum over all N rows rounded to 8
// bits of mantissa before it joins the fp32 gradient, and it overwrites, so
// accumulating would need scratch and one more launch anyway. What it would
// save is one read of dinp: (N, F) bf16 = 128 MiB at the 1b shape, ~45 us
// per layer at ~3 TB/s, ~1 ms of the ~166 ms step; not worth the precision.
extern "C" void matmul_backward_dgelu(void *dinp, float *dweight, float *dbias, const void *dout,
                                      const void *inp, const void *weight, const void *pre_gelu,
                                      int M, int K, int N, kdtype dt, cudaStream_t stream)
{
    kassert(M >= 0 && K > 0 && N > 0 && dweight != NULL && dinp != NULL && pre_gelu != NULL,
            "matmul_backward_dgelu shape");
    if (M == 0) return;
    if (dt == KD_BF16 && K % 8 == 0) {
        lt_check_found(lt_matmul_dgelu(dinp, dout, weight, pre_gelu, M, K, N, dt, stream), K, M, N,
                       lt_epilogue{LT_DGELU, NULL, (void *)pre_gelu, NULL});
    } else {
        dinp_matmul(dinp, dout, weight, M, K, N, dt, lt_plain(NULL), stream);
        gelu_backward(dinp, pre_gelu, dinp, (size_t)M * K, dt, stream);
    }
    weight_grads(dweight, dbias, dout, inp, M, K, N, dt, stream);
}
