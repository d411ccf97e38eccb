// Internal: the bf16 tensor-core attention kernels (attention_mma.cu) that
// attention.cu's launchers call for KD_BF16. Shapes as in kernels.h; HD is
// one of 32, 64, 96, 128 (checked by the caller). D (B, NH, T) = rowsum(dout * out).
#ifndef HGRID_KERNELS_ATTENTION_MMA_CUH
#define HGRID_KERNELS_ATTENTION_MMA_CUH

#include <cuda_runtime.h>

void attention_forward_mma(void *out, float *lse, const void *qkv, int B, int T, int NH, int HD,
                           int causal, cudaStream_t stream);
void attention_backward_mma(void *dqkv, const void *dout, const void *qkv, const float *lse,
                            const float *D, int B, int T, int NH, int HD, int causal,
                            cudaStream_t stream);

#endif
