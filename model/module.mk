# The model the workers train: configs, synthetic data, parameters, the CPU
# reference model and dumps (MODEL_LIB, CPU only), and the GPU model with the
# single-GPU trainer (MODEL_GPU_LIB, needs the CUDA kernels library).
MODEL_SRCS := model/config.c model/data.c model/params.c model/optim.c model/cpu_model.c \
              model/cpu_moe.c \
              model/dump.c
MODEL_LIB  := $(BUILD)/libmodel.a
MODEL_GPU_SRCS := model/gpu_model.c model/gpu_moe.c model/single_gpu.c
MODEL_GPU_LIB  := $(BUILD)/libmodel_gpu.a
# What a program calling single_gpu_main() links, after its own objects.
MODEL_GPU_LINK := $(MODEL_GPU_LIB) $(MODEL_LIB) $(KERNELS_LIB) $(KERNELS_REF_LIB) $(LAYOUT_LIB)
MODEL_GPU_LDLIBS := $(KERNELS_LDLIBS) -lstdc++ -lm

$(MODEL_LIB): $(call objs,$(MODEL_SRCS))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(MODEL_GPU_LIB): $(call objs,$(MODEL_GPU_SRCS))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

CPU_TESTS += $(BUILD)/tests/test_model_data $(BUILD)/tests/test_model_cpu

$(BUILD)/tests/test_model_data: $(call objs,tests/test_model_data.c) $(MODEL_LIB) $(LAYOUT_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lm

$(BUILD)/tests/test_model_cpu: $(call objs,tests/test_model_cpu.c) $(MODEL_LIB) $(KERNELS_REF_LIB) \
                               $(LAYOUT_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lm

# hgrid-train needs nvcc for the kernels; without a CUDA toolkit it is skipped.
ifneq ($(wildcard $(NVCC)),)
PROGS += $(BIN)/hgrid-train
CPU_TESTS += tests/test_model_cli.sh
GPU_TESTS += tests/gpu/test_model_torch.sh tests/gpu/test_model_learns.sh
BENCHES += tests/bench/bench_model.py

$(BIN)/hgrid-train: $(call objs,model/train_main.c) $(MODEL_GPU_LINK)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(MODEL_GPU_LDLIBS)
endif
