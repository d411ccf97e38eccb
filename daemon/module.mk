# gridd (the coordinator daemon): its pure core (daemon/core/: jobs table,
# rank assignment, id minting plan, roster, state file) and its libuv I/O.
DAEMON_CORE_SRCS := daemon/core/table.c daemon/core/assign.c daemon/core/mint.c daemon/core/roster.c daemon/core/state.c
GRIDD_SRCS := daemon/main.c daemon/listen.c daemon/conn.c daemon/control.c daemon/worker_msgs.c \
              daemon/job.c daemon/assignment.c daemon/log.c $(DAEMON_CORE_SRCS) \
              daemon/store.c
DAEMON_CORE_LIB := $(BUILD)/libgridd_core.a

$(DAEMON_CORE_LIB): $(call objs,$(DAEMON_CORE_SRCS))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

# systemd's readiness and watchdog messages (sd_notify without libsystemd).
GRIDD_SRCS += daemon/notify.c

PROGS += $(BIN)/gridd
LDLIBS_gridd := -luv -lprotobuf-c
GRIDD_SRCS += daemon/metrics.c daemon/metrics_http.c # Prometheus endpoint (docs/OPERATIONS.md)
$(BIN)/gridd: $(call objs,$(GRIDD_SRCS)) $(WIRE_LIB) $(LAYOUT_LIB)

DAEMON_UNIT_TESTS := test_daemon_assign test_daemon_mint test_daemon_state test_daemon_table
CPU_TESTS += $(addprefix $(BUILD)/tests/,$(DAEMON_UNIT_TESTS)) tests/daemon_gridd.py tests/daemon_soak.py \
             tests/daemon_peercred.py tests/daemon_load.py
# Reliability drills (docs/RELIABILITY.md): gridd killed and restarted under
# running workers; workers killed and frozen, timed; the job limit.
CPU_TESTS += tests/daemon_restart.py tests/worker_failure.py tests/daemon_limits.py

$(addprefix $(BUILD)/tests/,$(DAEMON_UNIT_TESTS)): $(BUILD)/tests/%: $(BUILD)/tests/%.o \
		$(DAEMON_CORE_LIB) $(WIRE_LIB) $(LAYOUT_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lprotobuf-c -lm
