# Distributed training: collectives (threads backend for tests, NCCL for
# GPUs), the 1F1B schedule, the sharded parallel model over an ops table
# (the CPU reference ops, or the CUDA launchers), checkpoints, and the GPU
# workers' training loop (train_run). TRAIN_LIB is CPU only; TRAIN_NCCL_LIB
# (the NCCL backend and the GPU ops) needs CUDA + NCCL and the kernels.
TRAIN_SRCS := train/comm.c train/comm_threads.c train/schedule.c train/layout_groups.c \
              train/shard.c train/vocab.c train/ep_moe.c train/tp_stack.c train/trainer.c \
              train/llm_stage.c train/encoder_stage.c train/samples.c train/local.c train/colocated.c \
              train/checkpoint.c train/ops_cpu.c
TRAIN_LIB  := $(BUILD)/libtrain.a
TRAIN_NCCL_SRCS := train/comm_nccl.c train/ops_gpu.c
TRAIN_NCCL_LIB  := $(BUILD)/libtrain_nccl.a

$(TRAIN_LIB): $(call objs,$(TRAIN_SRCS))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(TRAIN_NCCL_LIB): $(call objs,$(TRAIN_NCCL_SRCS))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

TRAIN_TESTS := test_train_comm test_train_schedule test_train_shard test_train_parallel \
               test_train_checkpoint test_train_vocab test_train_run_args test_train_bf16 \
               test_train_local test_train_layouts test_train_rebuild
CPU_TESTS += $(addprefix $(BUILD)/tests/,$(TRAIN_TESTS)) tests/train_worker_cli.sh

$(addprefix $(BUILD)/tests/,$(filter-out test_train_rebuild,$(TRAIN_TESTS))): $(BUILD)/tests/%: \
                                             $(BUILD)/tests/%.o \
                                             $(call objs,worker/run_args.c) $(TRAIN_LIB) \
                                             $(MODEL_LIB) $(KERNELS_REF_LIB) $(LAYOUT_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lpthread -lm
# It judges the groups after the Abort with gridd's own verdict (daemon/core/settle.c).
$(BUILD)/tests/test_train_rebuild: $(BUILD)/tests/test_train_rebuild.o $(TRAIN_LIB) $(MODEL_LIB) \
                                   $(KERNELS_REF_LIB) $(BUILD)/libgridd_core.a $(LAYOUT_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lpthread -lm

# The NCCL backend and its GPU test compile wherever the CUDA toolkit is
# (not in CI).
ifneq ($(wildcard $(NVCC)),)
all: $(TRAIN_NCCL_LIB)
GPU_TESTS += $(BUILD)/tests/gpu/test_train_comm_nccl

$(BUILD)/tests/gpu/test_train_comm_nccl: $(call objs,tests/gpu/test_train_comm_nccl.c) \
                                         $(TRAIN_NCCL_LIB) $(TRAIN_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(NCCL_LIBS) -lcudart -lpthread
endif

# The vocab-parallel kernels against their CPU references (a CUDA program);
# the step on the GPU ops against the CPU ops (1 GPU); the layouts' losses
# against the single-GPU trainer, and checkpoints.
ifneq ($(wildcard $(NVCC)),)
GPU_TESTS += $(BUILD)/tests/gpu/test_vocab_parallel $(BUILD)/tests/gpu/test_train_gpu_step \
             tests/gpu/train_layouts.sh tests/gpu/train_kill.sh tests/gpu/train_rebuild.sh
BENCHES += tests/bench/train_scaling.sh tests/bench/hetero_reference.sh
# tp2 and dp2 on 2 GPUs against PyTorch's on the same GPUs (Megatron-style
# tp2 in plain torch, DDP); its PyTorch side against the single-process
# model and its hgrid jobs with dry-run workers, without a GPU.
BENCHES += tests/bench/bench_parallel.py
CPU_TESTS += tests/bench_parallel_check.py
$(BUILD)/tests/gpu/test_train_gpu_step: $(call objs,tests/gpu/test_train_gpu_step.c) \
                                        $(TRAIN_NCCL_LIB) $(TRAIN_LIB) $(MODEL_LIB) \
                                        $(KERNELS_LIB) $(KERNELS_REF_LIB) $(LAYOUT_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(NCCL_LIBS) $(KERNELS_LDLIBS) -lstdc++ -lpthread -lm

$(BUILD)/tests/gpu/test_vocab_parallel: $(BUILD)/tests/gpu/test_vocab_parallel.cu.o $(KERNELS_LIB) \
                                        $(KERNELS_REF_LIB)
	@mkdir -p $(dir $@)
	$(NVCC) -arch=$(CUDA_ARCH) -o $@ $^ $(KERNELS_LDLIBS)
endif
