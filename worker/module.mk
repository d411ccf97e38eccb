# hgrid-worker: joins a job, creates its communicators and trains; with
# --single-gpu it trains both modules on one GPU through the same step. The
# training needs nvcc; the model's and kernels' libraries are defined later
# (their module.mk), hence the second expansion.
WORKER_SRCS := worker/main.c worker/args.c worker/print.c worker/gpu.c worker/run_args.c util/json.c \
               util/whole_lines.c
# What hgrid-worker links for train_run and --single-gpu, before libhgrid:
# the GPU training where nvcc is, else entries that say it is missing.
ifneq ($(wildcard $(NVCC)),)
TRAIN_RUN_LINK = $(call objs,worker/run.c worker/run_watch.c worker/single_gpu.c) \
                 $(TRAIN_NCCL_LIB) $(TRAIN_LIB)
else
TRAIN_RUN_LINK = $(call objs,worker/run_nokernels.c worker/single_gpu_missing.c) $(TRAIN_LIB) \
                 $(MODEL_LIB) $(LAYOUT_LIB)
endif

PROGS += $(BIN)/hgrid-worker
.SECONDEXPANSION:
ifneq ($(wildcard $(NVCC)),)
LDLIBS_hgrid-worker = $(LIBHGRID_LIBS) $(KERNELS_LDLIBS) -lstdc++ -lm
$(BIN)/hgrid-worker: $(call objs,$(WORKER_SRCS)) $$(TRAIN_RUN_LINK) $(BIN)/libhgrid_nccl.a $(BIN)/libhgrid.a \
                     $$(MODEL_LIB) $$(KERNELS_LIB) $$(KERNELS_REF_LIB) $$(LAYOUT_LIB)
# --single-gpu: its command line and the CPU dump without a GPU; on a GPU
# the whole model against PyTorch, and learning past the text-only floor;
# its step time against PyTorch's (the model benchmark), whose PyTorch model
# and FLOP count are checked without a GPU.
CPU_TESTS += tests/test_model_cli.sh tests/bench_model_check.py
GPU_TESTS += tests/gpu/test_model_torch.sh tests/gpu/test_model_learns.sh
BENCHES += tests/bench/bench_model.py
else
LDLIBS_hgrid-worker := $(LIBHGRID_LIBS)
$(BIN)/hgrid-worker: $(call objs,$(WORKER_SRCS)) $$(TRAIN_RUN_LINK) $(BIN)/libhgrid_nccl.a $(BIN)/libhgrid.a
endif

CPU_TESTS += tests/worker_gpu_cli.sh tests/comm_layouts_dry.sh
# On GPUs: a training job ends by itself (workers report done, exit 0;
# hgridctl wait returns 0).
GPU_TESTS += tests/gpu/job_ends.sh
# The README's demo (scripts/demo.sh): without GPUs, and its GPU branch's
# layouts and command lines with dry-run workers.
CPU_TESTS += tests/demo_check.sh
# (util/version.o comes with libhgrid.a)
$(BIN)/hgrid-worker: $(call objs,util/cli.c)
