# gridd (the coordinator daemon): its pure core (daemon/core/: jobs table,
# rank assignment, id minting plan, roster, state file) and its libuv I/O.
DAEMON_CORE_SRCS := daemon/core/table.c daemon/core/assign.c daemon/core/mint.c daemon/core/roster.c daemon/core/state.c \
                    daemon/core/rebuild.c daemon/core/settle.c
GRIDD_SRCS := daemon/main.c daemon/listen.c daemon/conn.c daemon/control.c daemon/worker_msgs.c \
              daemon/job.c daemon/assignment.c daemon/log.c $(DAEMON_CORE_SRCS) \
              daemon/store.c
GRIDD_SRCS += daemon/hostlink.c # host links from hgrid-agent (docs/PROTOCOL.md, "Host links")
DAEMON_CORE_LIB := $(BUILD)/libgridd_core.a

$(DAEMON_CORE_LIB): $(call objs,$(DAEMON_CORE_SRCS))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

# systemd's readiness and watchdog messages (sd_notify without libsystemd).
GRIDD_SRCS += daemon/notify.c

PROGS += $(BIN)/gridd
LDLIBS_gridd := -luv -lprotobuf-c
GRIDD_SRCS += daemon/metrics.c daemon/metrics_http.c # Prometheus endpoint (docs/OPERATIONS.md)
# Jobs that end (issue 21): Done, Failure, outcomes kept for --keep-finished;
# per-module progress for /metrics and hgridctl watch.
GRIDD_SRCS += daemon/job_end.c daemon/job_progress.c
# After an Abort: the workers' OpCounts and the verdict on the groups kept.
GRIDD_SRCS += daemon/job_settle.c
$(BIN)/gridd: $(call objs,$(GRIDD_SRCS)) $(WIRE_LIB) $(LAYOUT_LIB)

DAEMON_UNIT_TESTS := test_daemon_assign test_daemon_mint test_daemon_state test_daemon_table \
                     test_daemon_rebuild test_daemon_settle
# Issue 18 (docs/RELIABILITY.md): saved state loads, bounded host tables,
# no planted files, bounded decoding, printable peer strings.
DAEMON_UNIT_TESTS += test_daemon_reliability
CPU_TESTS += $(addprefix $(BUILD)/tests/,$(DAEMON_UNIT_TESTS)) tests/daemon_gridd.py tests/daemon_soak.py \
             tests/daemon_peercred.py tests/daemon_load.py
# Reliability drills (docs/RELIABILITY.md): gridd killed and restarted under
# running workers; workers killed and frozen, timed; the job limit.
# A state file from before issue 17 restores with its layouts (tests/data/).
CPU_TESTS += tests/daemon_state_compat.py
# Issue 17's layout rules on gridd's side: a hand-made SubmitJob past
# hgridctl's check is refused with plan's line; users' layouts accepted.
CPU_TESTS += tests/layout_rules_gridd.py
CPU_TESTS += tests/daemon_restart.py tests/worker_failure.py tests/daemon_limits.py
# Issue 19.3: the verdict after an Abort (OpCounts, AbortGroups) over direct
# and agent links, and a survivor silent past the deadline.
CPU_TESTS += tests/daemon_settle.py
# Jobs that end (issue 21): finish, fail, --max-restarts, cancel, hgridctl wait,
# --keep-finished, gridd restarted in each state, a worker started before
# gridd, an srun-style launch, per-module progress in /metrics and watch.
CPU_TESTS += tests/jobs_lifecycle.py
# Issue 18: hostile peers and unlucky operators (gridd, hgridctl, workers),
# no stall loses a worker, and a random walk of restarts loses nothing
# acknowledged (HGRID_RESTORE_STEPS for a long run).
CPU_TESTS += tests/daemon_reliability.py tests/daemon_stall.py tests/daemon_restore_random.py \
             tests/daemon_show_bounded.py \
             tests/worker_hostile.py
# Issue 18.4: the default control paths (/tmp/hgrid-UID 0700 and its owner,
# /run/hgrid preferred, no token to a squatter), as root in a mount namespace.
CPU_TESTS += tests/daemon_default_paths.py

$(addprefix $(BUILD)/tests/,$(DAEMON_UNIT_TESTS)): $(BUILD)/tests/%: $(BUILD)/tests/%.o \
		$(DAEMON_CORE_LIB) $(WIRE_LIB) $(LAYOUT_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lprotobuf-c -lm
$(BIN)/gridd: $(call objs,$(UTIL_CLI_SRCS))
