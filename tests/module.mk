# Unit tests (one binary each) and shell tests driving the programs.
CPU_TESTS += $(BUILD)/tests/test_layout tests/plan_cli.sh

$(BUILD)/tests/test_layout: $(call objs,tests/test_layout.c) $(LAYOUT_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lm

CPU_TESTS += $(BUILD)/tests/test_wire
$(BUILD)/tests/test_wire: $(call objs,tests/test_wire.c) $(WIRE_LIB) $(LAYOUT_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lprotobuf-c
