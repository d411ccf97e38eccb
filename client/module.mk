# hgridctl, libhgrid, hgrid-worker and hgrid-swarm.
# CTL_CONTROL_SRCS (hgridctl's gridd commands) comes from daemon/module.mk.
CTL_SRCS := client/hgridctl.c client/ctl_plan.c client/layout_args.c client/plan_json.c \
            client/plan_text.c client/json.c client/selftest_calc.c client/ctl_watch.c \
            client/watch_view.c client/ctl_error.c client/ctl_conn.c client/ctl_submit.c \
            client/ctl_show.c client/ctl_grid.c $(CTL_CONTROL_SRCS)

PROGS += $(BIN)/hgridctl
LDLIBS_hgridctl := -lprotobuf-c
$(BIN)/hgridctl: $(call objs,$(CTL_SRCS)) $(WIRE_LIB) $(LAYOUT_LIB)

# libhgrid: static and shared, each holding the wire and layout code it uses,
# so a training program links -lhgrid -lprotobuf-c -lnccl -lcudart and nothing else.
LIBHGRID_SRCS := client/libhgrid.c client/libhgrid_assign.c client/libhgrid_env.c \
                 client/libhgrid_reconnect.c \
                 client/assignment.c client/comms.c client/selftest.c client/selftest_calc.c
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

# hgrid-worker --single-gpu runs the trainer, which needs nvcc; the model's
# libraries are defined later (model/module.mk), hence the second expansion.
WORKER_SRCS := client/worker_main.c client/worker_args.c client/worker_print.c \
               client/worker_gpu.c client/json.c
PROGS += $(BIN)/hgrid-worker
.SECONDEXPANSION:
ifneq ($(wildcard $(NVCC)),)
LDLIBS_hgrid-worker = $(LIBHGRID_LIBS) $(MODEL_GPU_LDLIBS)
$(BIN)/hgrid-worker: $(call objs,$(WORKER_SRCS) client/worker_train.c) $$(TRAIN_RUN_LINK) \
                     $(BIN)/libhgrid.a $$(MODEL_GPU_LINK)
else
LDLIBS_hgrid-worker := $(LIBHGRID_LIBS)
$(BIN)/hgrid-worker: $(call objs,$(WORKER_SRCS) client/worker_notrain.c) $$(TRAIN_RUN_LINK) \
                     $(BIN)/libhgrid.a
endif

CPU_TESTS += $(BUILD)/tests/test_selftest_calc tests/selftest_status.py tests/worker_gpu_cli.sh \
             tests/comm_layouts_dry.sh tests/ctl_watch.py
# The README's demo (scripts/demo.sh): without GPUs, and its GPU branch's
# layouts and command lines with dry-run workers.
CPU_TESTS += tests/demo_check.sh
$(BUILD)/tests/test_selftest_calc: $(call objs,tests/test_selftest_calc.c client/selftest_calc.c) \
		$(LAYOUT_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lm

# On GPUs: every layout of issue 4 forms, self-tests and shuts down; a worker
# killed during init makes the others fail within the deadline.
GPU_TESTS += tests/gpu/comm_layouts.sh
# Communicator init (both strategies) and busbw vs torch.distributed, 4 GPUs.
BENCHES += tests/bench/bench_comms.py

CPU_TESTS += $(BUILD)/tests/test_client_lib
$(BUILD)/tests/test_client_lib: $(call objs,tests/test_client_lib.c) $(BIN)/libhgrid.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBHGRID_LIBS)

SWARM_SRCS := client/swarm_main.c client/swarm_net.c client/swarm_check.c client/assignment.c
PROGS += $(BIN)/hgrid-swarm
LDLIBS_hgrid-swarm := -lprotobuf-c -lpthread
$(BIN)/hgrid-swarm: $(call objs,$(SWARM_SRCS)) $(WIRE_LIB) $(LAYOUT_LIB)
CPU_TESTS += tests/coord_workers.py

# Rendezvous benchmark: gridd + hgrid-swarm vs TCPStore (tests/bench/rendezvous.sh).
BENCHES += tests/bench/rendezvous.sh
# A 1,024-worker rendezvous alone and next to 16K idle + slow-drip connections.
BENCHES += tests/bench/rendezvous_load.sh

# The smallest program built on libhgrid, linked against the shared library.
PROGS += $(BIN)/hgrid-example-join
$(BIN)/hgrid-example-join: $(call objs,client/example_join.c) $(BIN)/libhgrid.so
	$(CC) $(LDFLAGS) -o $@ $< -L$(BIN) -lhgrid -Wl,-rpath,'$$ORIGIN'
