// Linear layers through cuBLASLt: out = inp @ weight^T + bias, and its
// backward. Row-major tensors are handed to cuBLASLt as their column-major
// transposes. fp32 accumulate; fp32 mode uses plain fp32 (no TF32).
#include <stdint.h>

#include "kernels/common.cuh"

// ---- kernels

// Column sums in two deterministic passes: each block sums a chunk of rows
// into scratch (partial, (chunks, cols)), then the chunks are added in a
// fixed order.
template <typename T>
__global__ void column_partial_kernel(float *__restrict__ partial, const T *__restrict__ in, int rows,
                                      int cols, int rows_per_chunk)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    int r0 = blockIdx.y * rows_per_chunk, r1 = min(rows, r0 + rows_per_chunk);
    float acc = 0.0f;
#pragma unroll 8
    for (int r = r0; r < r1; r++) acc += to_f(in[(size_t)r * cols + c]);
    partial[(size_t)blockIdx.y * cols + c] = acc;
}

// bf16 with cols % 8 == 0 and 16-byte rows: 8 columns a thread, 16-byte loads.
__global__ void column_partial_bf8_kernel(float *__restrict__ partial, const uint4 *__restrict__ in,
                                          int rows, int cols, int rows_per_chunk)
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
    float4 *out = (float4 *)(partial + (size_t)blockIdx.y * cols + 8 * c8);
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
    int chunks = (int)ceil_div(rows, per_chunk);
    float *partial = (float *)kernels_scratch(sizeof(float) * chunks * (size_t)cols, "column sum");
    if (dt == KD_BF16 && cols % 8 == 0 && (uintptr_t)in % 16 == 0)
        column_partial_bf8_kernel<<<dim3(ceil_div(cols / 8, 128), chunks), 128, 0, stream>>>(
            partial, (const uint4 *)in, rows, cols, per_chunk);
    else if (dt == KD_F32)
        column_partial_kernel<<<dim3(ceil_div(cols, 128), chunks), 128, 0, stream>>>(
            partial, (const float *)in, rows, cols, per_chunk);
    else
        column_partial_kernel<<<dim3(ceil_div(cols, 128), chunks), 128, 0, stream>>>(
            partial, (const __nv_bfloat16 *)in, rows, cols, per_chunk);
    launchCheck();
    column_finish_kernel<<<ceil_div(cols, 32), 256, 0, stream>>>(out, partial, chunks, cols);
    launchCheck();
}

static cudaDataType_t cuda_type(kdtype dt) { return dt == KD_F32 ? CUDA_R_32F : CUDA_R_16BF; }

// Column-major D (m, n) = op(A) op(B) + beta D [+ bias (m)], fp32 compute.
static void lt_matmul(void *d, cudaDataType_t dtype, const void *a, const void *b,
                      cudaDataType_t abtype, int transa, int transb, int m, int n, int k,
                      float beta, const void *bias, cudaStream_t stream)
{
    cublasLtMatmulDesc_t desc;
    cublasCheck(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = transa ? CUBLAS_OP_T : CUBLAS_OP_N, tb = transb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    if (bias) {
        cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
        cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                   sizeof(bias)));
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
    cublasCheck(cublasLtMatmulAlgoGetHeuristic(kernels_lt(), desc, la, lb, ld, ld, pref, 1, &heur, &found));
    if (found == 0) {
        fprintf(stderr, "matmul: cuBLASLt has no algorithm for m=%d n=%d k=%d (bias %d): check the "
                "shapes and 16-byte alignment of the pointers\n", m, n, k, bias != NULL);
        exit(EXIT_FAILURE);
    }
    float alpha = 1.0f;
    cublasCheck(cublasLtMatmul(kernels_lt(), desc, &alpha, a, la, b, lb, &beta, d, ld, d, ld,
                               &heur.algo, ws, ws_bytes, stream));
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    cublasCheck(cublasLtMatrixLayoutDestroy(la));
    cublasCheck(cublasLtMatrixLayoutDestroy(lb));
    cublasCheck(cublasLtMatrixLayoutDestroy(ld));
    cublasCheck(cublasLtMatmulDescDestroy(desc));
}

extern "C" void matmul_forward(void *out, const void *inp, const void *weight, const void *bias,
                               int M, int K, int N, kdtype dt, cudaStream_t stream)
{
    kassert(M >= 0 && K > 0 && N > 0, "matmul_forward shape");
    if (M == 0) return;
    // Column-major: out^T (N, M) = op_T(weight stored as (K, N)) @ inp^T (K, M)
    lt_matmul(out, cuda_type(dt), weight, inp, cuda_type(dt), 1, 0, N, M, K, 0.0f, bias, stream);
}

extern "C" void matmul_backward(void *dinp, float *dweight, float *dbias, const void *dout,
                                const void *inp, const void *weight, int M, int K, int N,
                                kdtype dt, cudaStream_t stream)
{
    kassert(M >= 0 && K > 0 && N > 0 && dweight != NULL, "matmul_backward shape");
    if (M == 0) return;
    // dinp^T (K, M) = W^T-as-stored (K, N) @ dout^T (N, M)
    if (dinp) lt_matmul(dinp, cuda_type(dt), weight, dout, cuda_type(dt), 0, 0, K, M, N, 0.0f, NULL, stream);
    // dW^T (K, N) += inp^T (K, M) @ dout (M, N), accumulated in fp32
    lt_matmul(dweight, CUDA_R_32F, inp, dout, cuda_type(dt), 0, 1, K, N, M, 1.0f, NULL, stream);
    if (dbias) column_sum_accumulate(dbias, dout, M, N, dt, stream);
}
