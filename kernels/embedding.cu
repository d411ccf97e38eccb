// Token + learned position embeddings. The backward into the token table is
// deterministic: positions are stably sorted by token (CUB radix sort) and
// each token's rows are summed in position order (in pieces, then the
// pieces in order).
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

// The sorted rows are cut into pieces of PIECE rows. Pass 1, a block per
// (piece, 256 columns): sums each run of equal keys inside its piece, in
// position order. A run wholly inside the piece goes straight into dwte (no
// other block holds any of its rows). A run that reaches past the piece's
// end leaves its sum in out_sum[piece]; the tail of a run that began in an
// earlier piece and ends in this one leaves it in in_sum[piece]. Pass 2, a
// block per piece where such a run begins: adds its pieces' sums in piece
// order into dwte. Long runs (a frequent token; the synthetic captions' few
// words) so spread over every SM instead of one block; the order of the adds
// is fixed by the sort, so the result is deterministic.
enum { PIECE = 64, PIECE_COLS = 256 };

__device__ static bool same_key(const int *keys, int a, int b, int n)
{
    return a >= 0 && b < n && keys[a] == keys[b];
}

template <typename T>
__global__ void token_grad_pieces_kernel(float *dwte, float *in_sum, float *out_sum, const T *dout,
                                         const int *keys, const int *rows, int n, int C)
{
    int p = blockIdx.x, c = blockIdx.y * PIECE_COLS + threadIdx.x;
    if (c >= C) return;
    int s = p * PIECE, e = min(n, s + PIECE);
    for (int a = s; a < e;) {
        int key = keys[a], b = a + 1;
        float acc = to_f(dout[(size_t)rows[a] * C + c]);
        for (; b < e && keys[b] == key; b++) acc += to_f(dout[(size_t)rows[b] * C + c]);
        bool from_before = a == s && same_key(keys, s - 1, s, n);
        bool goes_on = b == e && same_key(keys, e - 1, e, n);
        if (goes_on)
            out_sum[(size_t)p * C + c] = acc;
        else if (from_before)
            in_sum[(size_t)p * C + c] = acc;
        else
            dwte[(size_t)key * C + c] += acc;
        a = b;
    }
}

__global__ void token_grad_join_kernel(float *dwte, const float *in_sum, const float *out_sum,
                                       const int *keys, int n, int C)
{
    int p = blockIdx.x, c = blockIdx.y * PIECE_COLS + threadIdx.x;
    int e = min(n, (p + 1) * PIECE);
    if (c >= C || !same_key(keys, e - 1, e, n)) return; // no run leaves this piece
    int key = keys[e - 1], last_start = e - 1;
    while (last_start > p * PIECE && keys[last_start - 1] == key) last_start--;
    if (same_key(keys, last_start - 1, last_start, n)) return; // the run began in an earlier piece
    float acc = out_sum[(size_t)p * C + c];
    int q = p + 1;
    for (; same_key(keys, min(n, (q + 1) * PIECE) - 1, min(n, (q + 1) * PIECE), n) &&
           keys[q * PIECE] == key && keys[min(n, (q + 1) * PIECE) - 1] == key;
         q++)
        acc += out_sum[(size_t)q * C + c]; // a middle piece: all of it this key
    acc += in_sum[(size_t)q * C + c];      // the piece where the run ends
    dwte[(size_t)key * C + c] += acc;
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
    temp_bytes = (temp_bytes + 255) / 256 * 256;
    size_t sums = 2 * sizeof(float) * ceil_div(n, PIECE) * (size_t)C;
    char *scratch = (char *)kernels_scratch(head + temp_bytes + sums, "embedding_backward");
    int *rows_in = (int *)scratch, *keys_out = rows_in + n, *rows_out = keys_out + n;
    iota_kernel<<<ceil_div(n, 256), 256, 0, stream>>>(rows_in, n);
    launchCheck();
    cudaCheck(cub::DeviceRadixSort::SortPairs(scratch + head, temp_bytes, tokens, keys_out, rows_in,
                                              rows_out, n, 0, bits, stream));
    int pieces = (int)ceil_div(n, PIECE);
    float *in_sum = (float *)(scratch + head + temp_bytes), *out_sum = in_sum + (size_t)pieces * C;
    dim3 grid(pieces, ceil_div(C, PIECE_COLS));
    if (dt == KD_F32)
        token_grad_pieces_kernel<<<grid, PIECE_COLS, 0, stream>>>(dwte, in_sum, out_sum, (const float *)dout,
                                                                  keys_out, rows_out, n, C);
    else
        token_grad_pieces_kernel<<<grid, PIECE_COLS, 0, stream>>>(
            dwte, in_sum, out_sum, (const __nv_bfloat16 *)dout, keys_out, rows_out, n, C);
    launchCheck();
    token_grad_join_kernel<<<grid, PIECE_COLS, 0, stream>>>(dwte, in_sum, out_sum, keys_out, n, C);
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
