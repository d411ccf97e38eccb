# Unit tests (one binary each) and shell tests driving the programs.
CPU_TESTS += $(BUILD)/tests/test_layout tests/plan_cli.sh
# hgridctl against gridd and dry-run workers: every command's --json, show's
# grid, errors and exit codes (docs/OPERATIONS.md, "hgridctl").
CPU_TESTS += tests/ctl_cli.py

$(BUILD)/tests/test_layout: $(call objs,tests/test_layout.c) $(LAYOUT_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lm

CPU_TESTS += $(BUILD)/tests/test_wire
# Assignments and HostAssignment frames packed by hand: protobuf-c's bytes.
CPU_TESTS += $(BUILD)/tests/test_wire_pack
$(BUILD)/tests/test_wire_pack: $(call objs,tests/test_wire_pack.c) $(WIRE_LIB) $(LAYOUT_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lprotobuf-c
$(BUILD)/tests/test_wire: $(call objs,tests/test_wire.c) $(WIRE_LIB) $(LAYOUT_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lprotobuf-c

# gridd's metrics (issue 8): the exposition's formatting, and scraping a
# running gridd; its log levels.
CPU_TESTS += $(BUILD)/tests/test_daemon_metrics tests/daemon_metrics.py
$(BUILD)/tests/test_daemon_metrics: $(call objs,tests/test_daemon_metrics.c daemon/metrics.c) \
		$(WIRE_LIB) $(LAYOUT_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lprotobuf-c

# libFuzzer harnesses (clang), run briefly in `make test`; long runs:
# FUZZ_SECONDS=600 tests/fuzz/run.sh build/san/fuzz
FUZZ_CC    ?= clang
FUZZERS    := $(addprefix $(BUILD)/fuzz/,fuzz_frame fuzz_envelope fuzz_layout_flags fuzz_state)
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
              -I. -I$(GEN) -D_GNU_SOURCE -Wall -Wextra -Werror
TEST_DEPS  += $(FUZZERS)
CPU_TESTS  += tests/fuzz/check.sh

$(BUILD)/fuzz/fuzz_frame: tests/fuzz/fuzz_frame.c wire/frame.c $(GEN)/proto/hgrid.pb-c.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^ -lprotobuf-c
$(BUILD)/fuzz/fuzz_envelope: tests/fuzz/fuzz_envelope.c wire/frame.c wire/layout_pb.c \
                             $(GEN)/proto/hgrid.pb-c.c $(LAYOUT_SRCS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^ -lprotobuf-c
$(BUILD)/fuzz/fuzz_layout_flags: tests/fuzz/fuzz_layout_flags.c $(LAYOUT_SRCS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^
$(BUILD)/fuzz/fuzz_state: tests/fuzz/fuzz_state.c daemon/core/state.c daemon/core/roster.c daemon/core/table.c \
                          daemon/core/assign.c wire/layout_pb.c $(GEN)/proto/hgrid.pb-c.c $(LAYOUT_SRCS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^ -lprotobuf-c

# Operations (issue 8): sd_notify by hand (daemon/notify.c).
CPU_TESTS += $(BUILD)/tests/test_daemon_notify tests/daemon_notify.py
$(BUILD)/tests/test_daemon_notify: $(call objs,tests/test_daemon_notify.c daemon/notify.c)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -luv
# Launch recipes (docs/OPERATIONS.md): Slurm, torchrun-style and ssh against
# a real gridd; gridd and workers in separate network namespaces.
CPU_TESTS += tests/launch_env.py tests/launch_netns.py
# make install and the systemd units (systemd-analyze verify); every
# program's --help names its flags; docs/OPERATIONS.md lists every error message.
CPU_TESTS += tests/install_units.sh tests/help_flags.py tests/doc_errors.py tests/include_graph.py
# tests/run.sh itself: pass, skip (exit 77) and fail tally; one test by name.
CPU_TESTS += tests/run_tally.sh
# util/cli.h, every program's command-line parser; each program's
# conventions (--help, --version, --flag=value, --, typos, ranges, job names).
CPU_TESTS += $(BUILD)/tests/test_cli tests/cli_conventions.py
$(BUILD)/tests/test_cli: $(call objs,tests/test_cli.c $(UTIL_CLI_SRCS))
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^
# util/fd_table.h: the descriptor table grown at once (gridd, hgrid-swarm).
CPU_TESTS += $(BUILD)/tests/test_fd_table
$(BUILD)/tests/test_fd_table: $(call objs,tests/test_fd_table.c)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lpthread
# The man pages match the programs' --help (man/man_page.py makes them).
CPU_TESTS += tests/man_pages.py
# The launch scripts find hgrid-worker in a checkout and in an install.
CPU_TESTS += tests/launch_scripts.sh
# scripts/deps.sh: apt-get as root without sudo, through sudo as a user.
CPU_TESTS += tests/deps_script.sh

# Tests whose checks time how fast gridd, agents or workers react (tests/run.sh
# runs them alone, the others JOBS at a time): their names, as T=NAME takes them.
TIMED_TESTS := test_client_lib test_daemon_reliability test_daemon_state agent_hosts coord_workers \
               daemon_gridd daemon_load daemon_metrics daemon_notify daemon_reliability \
               daemon_restart daemon_stall jobs_lifecycle worker_failure worker_hostile
# util/whole_lines.h: writers sharing one pipe keep their lines whole
# (hgrid-ssh's hosts and a host's workers); hgrid-lines as hgrid-ssh runs it.
CPU_TESTS += $(BUILD)/tests/test_whole_lines tests/whole_lines.sh
$(BUILD)/tests/test_whole_lines: $(call objs,tests/test_whole_lines.c util/whole_lines.c)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lpthread
