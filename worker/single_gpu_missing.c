// hgrid-worker --single-gpu in a build without nvcc: no trainer to run.
#include "worker/worker.h"

int worker_train(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "hgrid-worker: --single-gpu needs the CUDA kernels; this build had no nvcc "
                    "(rebuild where $(NVCC) exists)\n");
    return 2;
}
