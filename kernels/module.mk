# Kernels: the plain C CPU reference of every op (a CPU library, tested in
# `make test`) and the CUDA kernels (built only for GPU tests, benches and
# the programs that train; CI has no CUDA toolkit).
KERNELS_REF_SRCS := $(wildcard kernels/ref/*.c)
KERNELS_REF_LIB  := $(BUILD)/libkernels_ref.a
KERNELS_SRCS     := $(wildcard kernels/*.cu) kernels/attention_cudnn.cpp
KERNELS_LIB      := $(BUILD)/libkernels.a
KERNELS_LDLIBS   := -lcublasLt -lcublas -lcudart

# cuDNN's fused attention (kernels/attention_cudnn.cu) compiles when the cuDNN
# frontend's headers (scripts/fetch-cudnn-frontend.sh puts them in
# build/cudnn-frontend) and cudnn.h are found; libcudnn.so.9 is loaded at run
# time, so nothing links it. Without them the file builds its fallback and
# attention runs on hgrid's kernels. It holds no kernels: the host compiler
# builds it (much faster than nvcc on the frontend's templates).
CUDNN_FRONTEND ?= $(firstword $(wildcard build/cudnn-frontend/include .devdeps/cudnn-frontend/include))
CUDNN_INCLUDE  ?= $(firstword $(patsubst %/cudnn.h,%,$(wildcard $(CUDA)/include/cudnn.h \
                  .devdeps/cudnn/include/cudnn.h)))
ifneq ($(and $(CUDNN_FRONTEND),$(CUDNN_INCLUDE)),)
CUDNN_FLAGS := -DHGRID_HAVE_CUDNN_FRONTEND -isystem $(CUDNN_FRONTEND) -isystem $(CUDNN_INCLUDE)
KERNELS_LDLIBS += -ldl -lstdc++
endif

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
# Attention per shape: hgrid's kernels and cuDNN against torch's SDPA backends.
BENCHES += tests/bench/bench_attention.py
gpu-programs bench: $(BUILD)/tests/bench/bench_attention
$(BUILD)/tests/bench/bench_attention: $(BUILD)/tests/bench/bench_attention.cu.o $(KERNELS_LIB)
	@mkdir -p $(dir $@)
	$(NVCC) -arch=$(CUDA_ARCH) -o $@ $^ $(KERNELS_LDLIBS)
$(BUILD)/tests/bench/bench_kernels: $(BUILD)/tests/bench/bench_kernels.cu.o $(KERNELS_LIB)
	@mkdir -p $(dir $@)
	$(NVCC) -arch=$(CUDA_ARCH) -o $@ $^ $(KERNELS_LDLIBS)

$(CU_BUILD)/kernels/attention_cudnn.cpp.o: kernels/attention_cudnn.cpp
	@mkdir -p $(dir $@)
	$(CXX) -std=c++17 -O2 -Wall -Wextra -Werror -MMD -MP -I. -I$(CUDA)/include $(CUDNN_FLAGS) -c $< -o $@
