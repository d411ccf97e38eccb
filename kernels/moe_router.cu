// MoE router: softmax over experts, top-k with renormalised gates, the
// Switch / Megatron load-balancing loss and the backward of both.
// Expert statistics are reduced in two deterministic passes through scratch.
#include <math.h>

#include "kernels/common.cuh"

#define MAX_EXPERTS 256
#define STAT_ROWS 256  // tokens per statistics block

// ---- kernels

// One thread per token.
template <typename T>
__global__ void router_forward_kernel(float *probs, int *topk_idx, float *gates, const T *logits,
                                      int N, int E, int K)
{
    int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= N) return;
    const T *l = logits + (size_t)n * E;
    float *p = probs + (size_t)n * E;
    float mx = -INFINITY, sum = 0.0f;
    for (int e = 0; e < E; e++) mx = fmaxf(mx, to_f(l[e]));
    for (int e = 0; e < E; e++) sum += expf(to_f(l[e]) - mx);
    for (int e = 0; e < E; e++) p[e] = expf(to_f(l[e]) - mx) / sum;
    // K passes: each takes the largest prob strictly below the previous pick
    // (or equal to it with a higher index): ties go to the lower expert.
    float prev = INFINITY, gsum = 0.0f;
    int prev_e = -1;
    for (int j = 0; j < K; j++) {
        int best = -1;
        float bp = -1.0f;
        for (int e = 0; e < E; e++) {
            float pe = p[e];
            bool after_prev = pe < prev || (pe == prev && e > prev_e);
            if (after_prev && pe > bp) best = e, bp = pe;
        }
        topk_idx[n * K + j] = best;
        gsum += bp;
        prev = bp, prev_e = best;
    }
    for (int j = 0; j < K; j++) gates[n * K + j] = p[topk_idx[n * K + j]] / gsum;
}

// Block y sums tokens [y*STAT_ROWS, ...): prob sums and assignment counts per
// expert -> partial (chunks, 2, E).
__global__ void expert_stats_partial_kernel(float *partial, const float *probs,
                                            const int *topk_idx, int N, int E, int K)
{
    __shared__ int count[MAX_EXPERTS];
    int n0 = blockIdx.x * STAT_ROWS, n1 = min(N, n0 + STAT_ROWS);
    for (int e = threadIdx.x; e < E; e += blockDim.x) count[e] = 0;
    __syncthreads();
    for (int i = n0 * K + threadIdx.x; i < n1 * K; i += blockDim.x) atomicAdd(&count[topk_idx[i]], 1);
    __syncthreads();  // integer counts: the order of the atomics does not matter
    float *out = partial + (size_t)blockIdx.x * 2 * E;
    for (int e = threadIdx.x; e < E; e += blockDim.x) {
        float acc = 0.0f;
        for (int n = n0; n < n1; n++) acc += probs[(size_t)n * E + e];
        out[e] = acc;
        out[E + e] = (float)count[e];
    }
}

// One block of E threads: f (E) and P (E) into stats, and aux if non-NULL.
__global__ void expert_stats_finish_kernel(float *stats, float *aux, const float *partial,
                                           int chunks, int N, int E, int K, float coeff)
{
    __shared__ float fp[MAX_EXPERTS];
    int e = threadIdx.x;
    float P = 0.0f, cnt = 0.0f;
    if (e < E) {
        for (int k = 0; k < chunks; k++) {
            P += partial[(size_t)k * 2 * E + e];
            cnt += partial[(size_t)k * 2 * E + E + e];
        }
        float f = cnt / ((float)N * K);
        P /= N;
        stats[e] = f, stats[E + e] = P;
        fp[e] = f * P;
    }
    __syncthreads();
    if (aux && e == 0) {
        float acc = 0.0f;
        for (int i = 0; i < E; i++) acc += fp[i];
        *aux = coeff * E * acc;
    }
}

// One thread per token: dlogits through the gates' renormalisation, the aux
// loss (d aux / d p_e = daux_coeff * E * f_e / N) and the softmax.
template <typename T>
__global__ void router_backward_kernel(T *dlogits, const float *dgates, const float *probs,
                                       const int *topk_idx, const float *gates, const float *f,
                                       float daux_coeff, int N, int E, int K)
{
    int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= N) return;
    const float *p = probs + (size_t)n * E;
    const int *idx = topk_idx + n * K;
    float S = 0.0f, dot = 0.0f;
    for (int j = 0; j < K; j++) {
        S += p[idx[j]];
        dot += dgates[n * K + j] * gates[n * K + j];
    }
    float aux_scale = daux_coeff * E / N;
    // dp_e = aux_scale f_e + [e in top-k] (dg_j - dot) / S
    float pdp = 0.0f;
    for (int e = 0; e < E; e++) pdp += p[e] * aux_scale * f[e];
    for (int j = 0; j < K; j++) pdp += p[idx[j]] * (dgates[n * K + j] - dot) / S;
    for (int e = 0; e < E; e++) {
        float dp = aux_scale * f[e];
        for (int j = 0; j < K; j++)
            if (idx[j] == e) dp += (dgates[n * K + j] - dot) / S;
        dlogits[(size_t)n * E + e] = from_f<T>(p[e] * (dp - pdp));
    }
}

// ---- launchers

// stats (2, E) = f, P in scratch after the call; aux written if non-NULL.
static float *expert_stats(float *aux, const float *probs, const int *topk_idx, int N, int E, int K,
                           float coeff, cudaStream_t stream)
{
    int chunks = (int)ceil_div(N, STAT_ROWS);
    float *stats = (float *)kernels_scratch(sizeof(float) * 2 * E * (size_t)(chunks + 1), "moe router");
    float *partial = stats + 2 * E;
    expert_stats_partial_kernel<<<chunks, 256, 0, stream>>>(partial, probs, topk_idx, N, E, K);
    launchCheck();
    expert_stats_finish_kernel<<<1, (E + 31) / 32 * 32, 0, stream>>>(stats, aux, partial, chunks, N, E,
                                                                      K, coeff);
    launchCheck();
    return stats;
}

static void check_shape(int N, int E, int K, const char *who)
{
    kassert(N > 0 && K > 0 && K <= E && E <= MAX_EXPERTS, who);
}

extern "C" void moe_router_forward(float *probs, int *topk_idx, float *gates, const void *logits,
                                   int N, int E, int K, kdtype dt, cudaStream_t stream)
{
    check_shape(N, E, K, "moe_router_forward shape");
    if (dt == KD_F32)
        router_forward_kernel<<<ceil_div(N, 128), 128, 0, stream>>>(probs, topk_idx, gates,
                                                                    (const float *)logits, N, E, K);
    else
        router_forward_kernel<<<ceil_div(N, 128), 128, 0, stream>>>(probs, topk_idx, gates,
                                                                    (const __nv_bfloat16 *)logits, N, E, K);
    launchCheck();
}

extern "C" void moe_aux_loss_forward(float *aux, const float *probs, const int *topk_idx, int N,
                                     int E, int K, float coeff, cudaStream_t stream)
{
    check_shape(N, E, K, "moe_aux_loss_forward shape");
    expert_stats(aux, probs, topk_idx, N, E, K, coeff, stream);
}

extern "C" void moe_router_backward(void *dlogits, const float *dgates, const float *probs,
                                    const int *topk_idx, const float *gates, float daux_coeff,
                                    int N, int E, int K, kdtype dt, cudaStream_t stream)
{
    check_shape(N, E, K, "moe_router_backward shape");
    const float *f = expert_stats(NULL, probs, topk_idx, N, E, K, 0.0f, stream);
    if (dt == KD_F32)
        router_backward_kernel<<<ceil_div(N, 128), 128, 0, stream>>>(
            (float *)dlogits, dgates, probs, topk_idx, gates, f, daux_coeff, N, E, K);
    else
        router_backward_kernel<<<ceil_div(N, 128), 128, 0, stream>>>(
            (__nv_bfloat16 *)dlogits, dgates, probs, topk_idx, gates, f, daux_coeff, N, E, K);
    launchCheck();
}
