// train_run in a build without nvcc: GPU training needs the CUDA kernels.
#include <stdio.h>

#include "worker/run.h"

int train_run(hgrid_worker *w, hgrid_comms **comms, const train_options *o, double beat_s)
{
    (void)w, (void)comms, (void)o, (void)beat_s;
    fprintf(stderr, "hgrid-worker: training needs the CUDA kernels; this build had no nvcc "
                    "(rebuild where $(NVCC) exists)\n");
    return HGRID_ERR_STATE;
}
