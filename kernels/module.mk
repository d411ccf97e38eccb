# Kernels: the plain C CPU reference of every op (a CPU library, tested in
# `make test`) and the CUDA kernels (built only for GPU tests, benches and
# the programs that train; CI has no CUDA toolkit).
KERNELS_REF_SRCS := $(wildcard kernels/ref/*.c)
KERNELS_REF_LIB  := $(BUILD)/libkernels_ref.a
KERNELS_SRCS     := $(wildcard kernels/*.cu)
KERNELS_LIB      := $(BUILD)/libkernels.a
KERNELS_LDLIBS   := -lcublasLt -lcublas -lcudart

$(KERNELS_REF_LIB): $(call objs,$(KERNELS_REF_SRCS))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(KERNELS_LIB): $(call objs,$(KERNELS_SRCS))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

CPU_TESTS += $(BUILD)/tests/test_kernels_ref $(BUILD)/tests/test_kernels_moe
$(BUILD)/tests/test_kernels_ref $(BUILD)/tests/test_kernels_moe: $(BUILD)/tests/%: $(BUILD)/tests/%.o $(KERNELS_REF_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lm

# GPU tests and the benchmark: CUDA programs linked with nvcc, never ASan.
KERNEL_GPU_TESTS := $(BUILD)/tests/gpu/test_kernels $(BUILD)/tests/gpu/test_kernels_moe
GPU_TESTS += $(KERNEL_GPU_TESTS)
$(KERNEL_GPU_TESTS): $(BUILD)/tests/gpu/%: $(BUILD)/tests/gpu/%.cu.o $(KERNELS_LIB) $(KERNELS_REF_LIB)
	@mkdir -p $(dir $@)
	$(NVCC) -arch=$(CUDA_ARCH) -o $@ $^ $(KERNELS_LDLIBS)

BENCHES += $(BUILD)/tests/bench/bench_kernels tests/bench/bench_kernels_torch.py
$(BUILD)/tests/bench/bench_kernels: $(BUILD)/tests/bench/bench_kernels.cu.o $(KERNELS_LIB)
	@mkdir -p $(dir $@)
	$(NVCC) -arch=$(CUDA_ARCH) -o $@ $^ $(KERNELS_LDLIBS)
