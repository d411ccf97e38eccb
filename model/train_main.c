// hgrid-train: the single-GPU trainer on its own, until hgrid-worker
// dispatches --single-gpu to it.
#include "model/single_gpu.h"

int main(int argc, char **argv) { return single_gpu_main(argc, argv); }
