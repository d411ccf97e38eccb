# libhgrid: the client library a training program links (see libhgrid/hgrid.h).
# The core (join, assignment, heartbeats; no CUDA, no NCCL) is libhgrid.a and
# libhgrid.so.1, each holding the wire and layout code it uses and exporting
# only hgrid_* (libhgrid.map): a program links -lhgrid (-lprotobuf-c when
# static). The NCCL part for C trainers (communicators, self-test) is
# libhgrid_nccl.a / libhgrid_nccl.so.1 over it: -lhgrid_nccl -lhgrid -lnccl -lcudart.
LIBHGRID_SRCS := libhgrid/libhgrid.c libhgrid/libhgrid_assign.c libhgrid/libhgrid_env.c \
                 libhgrid/libhgrid_reconnect.c \
                 libhgrid/libhgrid_connect.c libhgrid/libhgrid_end.c \
                 libhgrid/assignment_check.c libhgrid/store_client.c
LIBHGRID_SRCS += util/version.c
LIBHGRID_NCCL_SRCS := libhgrid/comms.c libhgrid/selftest.c libhgrid/selftest_calc.c
LIBHGRID_DEPS := $(LIBHGRID_SRCS) $(WIRE_SRCS) $(LAYOUT_SRCS)
LIBHGRID_CORE_LIBS := -lprotobuf-c
# What a program linking both static archives needs besides them.
LIBHGRID_LIBS := -lprotobuf-c $(NCCL_LIBS) -lcudart

PROGS += $(BIN)/libhgrid.a $(BIN)/libhgrid.so.1 $(BIN)/libhgrid.so
PROGS += $(BIN)/libhgrid_nccl.a $(BIN)/libhgrid_nccl.so.1 $(BIN)/libhgrid_nccl.so
$(BIN)/libhgrid.a: $(call objs,$(LIBHGRID_DEPS)) $(BUILD)/proto/hgrid.pb-c.o
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^
$(BIN)/libhgrid_nccl.a: $(call objs,$(LIBHGRID_NCCL_SRCS))
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^

PIC_OBJS := $(patsubst %.c,$(BUILD)/pic/%.o,$(LIBHGRID_DEPS)) $(BUILD)/pic/proto/hgrid.pb-c.o
PIC_NCCL_OBJS := $(patsubst %.c,$(BUILD)/pic/%.o,$(LIBHGRID_NCCL_SRCS) $(LAYOUT_SRCS))
$(BUILD)/pic/%.o: %.c | $(GEN)/proto/hgrid.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -fPIC -c $< -o $@
$(BUILD)/pic/proto/hgrid.pb-c.o: $(GEN)/proto/hgrid.pb-c.c $(GEN)/proto/hgrid.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -fPIC -c $< -o $@
$(BIN)/libhgrid.so.1: $(PIC_OBJS) libhgrid/libhgrid.map
	@mkdir -p $(dir $@)
	$(CC) $(SANFLAGS) -shared -Wl,-soname,libhgrid.so.1 -Wl,--version-script=libhgrid/libhgrid.map \
		-Wl,--no-undefined -o $@ $(PIC_OBJS) $(LIBHGRID_CORE_LIBS)
$(BIN)/libhgrid_nccl.so.1: $(PIC_NCCL_OBJS) $(BIN)/libhgrid.so libhgrid/libhgrid_nccl.map
	$(CC) $(LDFLAGS) -shared -Wl,-soname,libhgrid_nccl.so.1 \
		-Wl,--version-script=libhgrid/libhgrid_nccl.map -Wl,--no-undefined -o $@ $(PIC_NCCL_OBJS) \
		-L$(BIN) -lhgrid $(NCCL_LIBS) -lcudart -lm
$(BIN)/libhgrid.so $(BIN)/libhgrid_nccl.so: $(BIN)/%.so: $(BIN)/%.so.1
	ln -sf $(notdir $<) $@

# The core library's ABI: its SONAME, no CUDA or NCCL, only hgrid_* exported.
CPU_TESTS += tests/libhgrid_abi.sh

CPU_TESTS += $(BUILD)/tests/test_selftest_calc tests/selftest_status.py
$(BUILD)/tests/test_selftest_calc: $(call objs,tests/test_selftest_calc.c libhgrid/selftest_calc.c) \
		$(LAYOUT_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lm

CPU_TESTS += $(BUILD)/tests/test_client_lib
$(BUILD)/tests/test_client_lib: $(call objs,tests/test_client_lib.c) $(BIN)/libhgrid_nccl.a \
		$(BIN)/libhgrid.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBHGRID_LIBS)

# On GPUs: every layout of issue 4 forms, self-tests and shuts down; a worker
# killed during init makes the others fail within the deadline.
GPU_TESTS += tests/gpu/comm_layouts.sh tests/gpu/agent_train.sh
# Communicator init (both strategies) and busbw vs torch.distributed, 4 GPUs.
BENCHES += tests/bench/bench_comms.py
