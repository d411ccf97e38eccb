# libhgrid: the client library a training program links (see libhgrid/hgrid.h).
# libhgrid: static and shared, each holding the wire and layout code it uses,
# so a training program links -lhgrid -lprotobuf-c -lnccl -lcudart and nothing else.
LIBHGRID_SRCS := libhgrid/libhgrid.c libhgrid/libhgrid_assign.c libhgrid/libhgrid_env.c \
                 libhgrid/libhgrid_reconnect.c \
                 libhgrid/libhgrid_connect.c libhgrid/libhgrid_end.c \
                 libhgrid/assignment_check.c libhgrid/comms.c libhgrid/selftest.c libhgrid/selftest_calc.c
LIBHGRID_SRCS += util/version.c
LIBHGRID_DEPS := $(LIBHGRID_SRCS) $(WIRE_SRCS) $(LAYOUT_SRCS)
LIBHGRID_LIBS := -lprotobuf-c $(NCCL_LIBS) -lcudart

PROGS += $(BIN)/libhgrid.a $(BIN)/libhgrid.so
$(BIN)/libhgrid.a: $(call objs,$(LIBHGRID_DEPS)) $(BUILD)/proto/hgrid.pb-c.o
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^

PIC_OBJS := $(patsubst %.c,$(BUILD)/pic/%.o,$(LIBHGRID_DEPS)) $(BUILD)/pic/proto/hgrid.pb-c.o
$(BUILD)/pic/%.o: %.c | $(GEN)/proto/hgrid.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -fPIC -c $< -o $@
$(BUILD)/pic/proto/hgrid.pb-c.o: $(GEN)/proto/hgrid.pb-c.c $(GEN)/proto/hgrid.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -fPIC -c $< -o $@
$(BIN)/libhgrid.so: $(PIC_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -shared -Wl,-soname,libhgrid.so -Wl,--no-undefined -o $@ $^ $(LIBHGRID_LIBS)

CPU_TESTS += $(BUILD)/tests/test_selftest_calc tests/selftest_status.py
$(BUILD)/tests/test_selftest_calc: $(call objs,tests/test_selftest_calc.c libhgrid/selftest_calc.c) \
		$(LAYOUT_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lm

CPU_TESTS += $(BUILD)/tests/test_client_lib
$(BUILD)/tests/test_client_lib: $(call objs,tests/test_client_lib.c) $(BIN)/libhgrid.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBHGRID_LIBS)

# On GPUs: every layout of issue 4 forms, self-tests and shuts down; a worker
# killed during init makes the others fail within the deadline.
GPU_TESTS += tests/gpu/comm_layouts.sh tests/gpu/agent_train.sh
# Communicator init (both strategies) and busbw vs torch.distributed, 4 GPUs.
BENCHES += tests/bench/bench_comms.py
