# The model the workers train: configs, synthetic data, parameters, the CPU
# reference model and dumps (MODEL_LIB, CPU only). train/ trains it.
MODEL_SRCS := model/config.c model/data.c model/params.c model/optim.c model/cpu_model.c \
              model/cpu_moe.c \
              model/dump.c
MODEL_LIB  := $(BUILD)/libmodel.a

$(MODEL_LIB): $(call objs,$(MODEL_SRCS))
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
