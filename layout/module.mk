# Layout engine: pure code, linked into every program that reads layouts.
LAYOUT_SRCS := layout/validate.c layout/model_check.c layout/groups.c layout/bridge.c layout/flags.c
LAYOUT_LIB  := $(BUILD)/liblayout.a

$(LAYOUT_LIB): $(call objs,$(LAYOUT_SRCS))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^
