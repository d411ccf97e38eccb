// The GPU backend of train/ops.h: device memory, the CUDA launchers, one
// stream (the one the NCCL groups use too). One worker per process.
#ifndef HGRID_TRAIN_OPS_GPU_H
#define HGRID_TRAIN_OPS_GPU_H

#include <cuda_runtime.h>

#include "train/ops.h"

// The ops for activations in bf16 (bf16 = 1) or fp32, on `stream`. Call
// kernels_init() first. The table stays valid for the process.
const tr_ops *tr_gpu_ops(int bf16, cudaStream_t stream);

#endif
