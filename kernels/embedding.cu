// Token + learned position embeddings. The backward into the token table is
// deterministic: positions are stably sorted by token (CUB radix sort) and
// each token's rows are summed in position order by one block.
#include <cub/device/device_radix_sort.cuh>

#include "kernels/common.cuh"

// ---- kernels

template <typename T>
__global__ void embedding_forward_kernel(T *out, const int *tokens, const T *wte, const T *wpe,
                                         int T_, int C, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        size_t bt = i / C;
        int c = (int)(i % C), t = (int)(bt % T_);
        out[i] = from_f<T>(to_f(wte[(size_t)tokens[bt] * C + c]) + to_f(wpe[(size_t)t * C + c]));
    }
}

template <typename T>
__global__ void position_forward_kernel(T *out, const T *inp, const T *wpe, int T_, int C, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        size_t tc = i % ((size_t)T_ * C);
        out[i] = from_f<T>(to_f(inp[i]) + to_f(wpe[tc]));
    }
}

__global__ void iota_kernel(int *v, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) v[i] = i;
}

// Block i: if sorted entry i starts a run of one token, sums that run's rows
// in position order. Runs can be thousands of rows long (a small caption
// vocabulary), so the block finds the run's end a block-width of keys at a
// time, and each thread keeps 8 rows' loads in flight; the adds stay in
// order.
template <typename T>
__global__ void token_grad_kernel(float *dwte, const T *dout, const int *keys, const int *rows,
                                  int n, int C)
{
    __shared__ int run_end;
    int i = blockIdx.x, key = keys[i];
    if (i > 0 && key == keys[i - 1]) return;
    if (threadIdx.x == 0) run_end = n;
    __syncthreads();
    for (int base = i + 1; base < n; base += blockDim.x) {
        int j = base + threadIdx.x;
        bool past = j < n && keys[j] != key;
        if (past) atomicMin(&run_end, j);  // keys are sorted: the first differing key ends the run
        if (__syncthreads_or(past)) break;
    }
    __syncthreads();
    int end = run_end;
    float *dst = dwte + (size_t)key * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float acc = 0.0f;
#pragma unroll 8
        for (int j = i; j < end; j++) acc += to_f(dout[(size_t)rows[j] * C + c]);
        dst[c] += acc;
    }
}

// ---- launchers

static unsigned grid_for(size_t n) { return n < 256 * 132 * 8 ? ceil_div(n, 256) : 132 * 8; }

extern "C" void embedding_forward(void *out, const int *tokens, const void *wte, const void *wpe,
                                  int B, int T_, int C, int V, kdtype dt, cudaStream_t stream)
{
    kassert(B > 0 && T_ > 0 && C > 0 && V > 0, "embedding_forward shape");
    size_t n = (size_t)B * T_ * C;
    if (dt == KD_F32)
        embedding_forward_kernel<<<grid_for(n), 256, 0, stream>>>((float *)out, tokens, (const float *)wte,
                                                                  (const float *)wpe, T_, C, n);
    else
        embedding_forward_kernel<<<grid_for(n), 256, 0, stream>>>(
            (__nv_bfloat16 *)out, tokens, (const __nv_bfloat16 *)wte, (const __nv_bfloat16 *)wpe, T_, C, n);
    launchCheck();
}

extern "C" void embedding_backward(float *dwte, float *dwpe, const void *dout, const int *tokens,
                                   int B, int T_, int C, int V, kdtype dt, cudaStream_t stream)
{
    kassert(B > 0 && T_ > 0 && C > 0 && V > 0, "embedding_backward shape");
    int n = B * T_, bits = 1;
    while ((1 << bits) < V && bits < 31) bits++;
    size_t temp_bytes = 0;
    cudaCheck(cub::DeviceRadixSort::SortPairs(NULL, temp_bytes, (const int *)NULL, (int *)NULL,
                                              (const int *)NULL, (int *)NULL, n, 0, bits, stream));
    size_t ints = 3 * (size_t)n, head = (ints * sizeof(int) + 255) / 256 * 256;
    char *scratch = (char *)kernels_scratch(head + temp_bytes, "embedding_backward");
    int *rows_in = (int *)scratch, *keys_out = rows_in + n, *rows_out = keys_out + n;
    iota_kernel<<<ceil_div(n, 256), 256, 0, stream>>>(rows_in, n);
    launchCheck();
    cudaCheck(cub::DeviceRadixSort::SortPairs(scratch + head, temp_bytes, tokens, keys_out, rows_in,
                                              rows_out, n, 0, bits, stream));
    int threads = C < 1024 ? (C + 31) / 32 * 32 : 1024;
    if (dt == KD_F32)
        token_grad_kernel<<<n, threads, 0, stream>>>(dwte, (const float *)dout, keys_out, rows_out, n, C);
    else
        token_grad_kernel<<<n, threads, 0, stream>>>(dwte, (const __nv_bfloat16 *)dout, keys_out,
                                                     rows_out, n, C);
    launchCheck();
    if (dwpe) position_embedding_backward(dwpe, dout, B, T_, C, dt, stream);
}

extern "C" void position_embedding_forward(void *out, const void *inp, const void *wpe, int B,
                                           int T_, int C, kdtype dt, cudaStream_t stream)
{
    kassert(B > 0 && T_ > 0 && C > 0, "position_embedding_forward shape");
    size_t n = (size_t)B * T_ * C;
    if (dt == KD_F32)
        position_forward_kernel<<<grid_for(n), 256, 0, stream>>>((float *)out, (const float *)inp,
                                                                 (const float *)wpe, T_, C, n);
    else
        position_forward_kernel<<<grid_for(n), 256, 0, stream>>>(
            (__nv_bfloat16 *)out, (const __nv_bfloat16 *)inp, (const __nv_bfloat16 *)wpe, T_, C, n);
    launchCheck();
}

extern "C" void position_embedding_backward(float *dwpe, const void *dout, int B, int T_, int C,
                                            kdtype dt, cudaStream_t stream)
{
    kassert(B > 0 && T_ > 0 && C > 0 && (size_t)T_ * C < (1u << 31), "position_embedding_backward shape");
    column_sum_accumulate(dwpe, dout, B, T_ * C, dt, stream);
}
