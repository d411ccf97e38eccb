// cudaCheck: the one check of a CUDA runtime call, for C and CUDA sources
// alike; a failure prints file, line, the call and CUDA's reason, and exits.
// (libhgrid, a library, returns its CUDA errors to the caller instead.)
#ifndef HGRID_KERNELS_CUDA_CHECK_H
#define HGRID_KERNELS_CUDA_CHECK_H

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#define cudaCheck(call)                                                                   \
    do {                                                                                  \
        cudaError_t err_ = (call);                                                        \
        if (err_ != cudaSuccess) {                                                        \
            fprintf(stderr, "%s:%d: %s: CUDA error: %s\n", __FILE__, __LINE__, #call,     \
                    cudaGetErrorString(err_));                                            \
            exit(EXIT_FAILURE);                                                           \
        }                                                                                 \
    } while (0)

#endif
