// hgrid-worker --single-gpu: the single-GPU trainer (model/single_gpu.h).
#include "worker/worker.h"
#include "model/single_gpu.h"

int worker_train(int argc, char **argv) { return single_gpu_main(argc, argv); }
