// hgrid-worker --single-gpu in a build without nvcc: no step to run.
#include "worker/worker.h"

int worker_single_gpu(const train_options *o)
{
    (void)o;
    fprintf(stderr, "hgrid-worker: --single-gpu needs the CUDA kernels; this build had no nvcc "
                    "(rebuild where $(NVCC) exists)\n");
    return 2;
}
