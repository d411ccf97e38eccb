# hgrid-worker: joins a job, creates its communicators and trains.
# hgrid-worker --single-gpu runs the trainer, which needs nvcc; the model's
# libraries are defined later (model/module.mk), hence the second expansion.
WORKER_SRCS := worker/main.c worker/args.c worker/print.c worker/gpu.c worker/run_args.c util/json.c
# What hgrid-worker links for train_run (client/module.mk), before libhgrid:
# the GPU training loop where nvcc is, else one that says it is missing.
ifneq ($(wildcard $(NVCC)),)
TRAIN_RUN_LINK = $(call objs,worker/run.c worker/run_watch.c) $(TRAIN_NCCL_LIB) $(TRAIN_LIB)
else
TRAIN_RUN_LINK = $(call objs,worker/run_nokernels.c) $(TRAIN_LIB) $(MODEL_LIB) $(LAYOUT_LIB)
endif

PROGS += $(BIN)/hgrid-worker
.SECONDEXPANSION:
ifneq ($(wildcard $(NVCC)),)
LDLIBS_hgrid-worker = $(LIBHGRID_LIBS) $(MODEL_GPU_LDLIBS)
$(BIN)/hgrid-worker: $(call objs,$(WORKER_SRCS) worker/single_gpu_entry.c) $$(TRAIN_RUN_LINK) \
                     $(BIN)/libhgrid_nccl.a $(BIN)/libhgrid.a $$(MODEL_GPU_LINK)
else
LDLIBS_hgrid-worker := $(LIBHGRID_LIBS)
$(BIN)/hgrid-worker: $(call objs,$(WORKER_SRCS) worker/single_gpu_missing.c) $$(TRAIN_RUN_LINK) \
                     $(BIN)/libhgrid_nccl.a $(BIN)/libhgrid.a
endif

CPU_TESTS += tests/worker_gpu_cli.sh tests/comm_layouts_dry.sh
# The README's demo (scripts/demo.sh): without GPUs, and its GPU branch's
# layouts and command lines with dry-run workers.
CPU_TESTS += tests/demo_check.sh
