// The single-GPU trainer: both modules on one GPU, fresh synthetic samples
// every step, one line per step with loss, step time and tokens/s.
#ifndef HGRID_MODEL_SINGLE_GPU_H
#define HGRID_MODEL_SINGLE_GPU_H

// Flags: --config NAME --steps N [--seed S] [--fp32] [--lr X] [--batch B]
// [--dump PATH [--cpu]] [--describe]. A leading --single-gpu is skipped.
// --dump writes a model-state dump (model/dump.h) of N AdamW steps on one
// fixed batch instead of training; --cpu takes it from the CPU model.
// --describe prints the config as "name value" lines and exits.
// Returns the process exit status: 0, 1 on a failure, 2 on a usage error.
int single_gpu_main(int argc, char **argv);

#endif
