// cuda_check: every CUDA runtime call of the model goes through it; a
// failure prints file, line, the call and CUDA's reason, and exits.
#ifndef HGRID_MODEL_CUDA_CHECK_H
#define HGRID_MODEL_CUDA_CHECK_H

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#define cuda_check(call)                                                                  \
    do {                                                                                  \
        cudaError_t err_ = (call);                                                        \
        if (err_ != cudaSuccess) {                                                        \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,                 \
                    cudaGetErrorString(err_));                                            \
            exit(EXIT_FAILURE);                                                           \
        }                                                                                 \
    } while (0)

#endif
