// cuDNN's fused attention for bf16 (attention_cudnn.cu), behind attention.cu's
// launchers: same tensors and results as kernels.h's attention_forward and
// attention_backward. Internal to kernels/.
#ifndef HGRID_ATTENTION_CUDNN_H
#define HGRID_ATTENTION_CUDNN_H

#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

// 1 when this build has the cuDNN frontend (libcudnn itself loads at run time).
int attention_cudnn_built(void);
// HGRID_ATTENTION unset, "auto" or "cudnn": try cuDNN first; "hgrid": never.
int attention_cudnn_wanted(void);
// HGRID_DETERMINISTIC=1: cuDNN's deterministic backward (bit-identical runs,
// as kernels.h's other kernels always are); unset or 0: its faster backward,
// which sums dQ with atomics (as torch's SDPA backends do).
int attention_cudnn_deterministic(void);
// 0 when cuDNN ran; -1 when it is unavailable for this call (the caller runs
// its own kernels; stderr says why once: once for a library that does not
// load, once per shape cuDNN does not plan).
int attention_cudnn_forward(void *out, float *lse, const void *qkv, int B, int T, int NH, int HD,
                            int causal, cudaStream_t stream);
int attention_cudnn_backward(void *dqkv, const void *dout, const void *qkv, const void *out,
                             const float *lse, int B, int T, int NH, int HD, int causal,
                             cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
