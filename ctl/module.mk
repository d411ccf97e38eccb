# hgridctl: plans layouts and drives gridd over its control socket.
CTL_SRCS := ctl/hgridctl.c ctl/ctl_plan.c ctl/layout_args.c ctl/plan_json.c \
            ctl/plan_text.c ctl/ctl_watch.c ctl/watch_view.c ctl/ctl_error.c ctl/ctl_conn.c \
            ctl/ctl_submit.c ctl/ctl_show.c ctl/ctl_grid.c ctl/ctl_jobs.c ctl/ctl_wait.c \
            util/json.c libhgrid/selftest_calc.c

PROGS += $(BIN)/hgridctl
LDLIBS_hgridctl := -lprotobuf-c
$(BIN)/hgridctl: $(call objs,$(CTL_SRCS)) $(WIRE_LIB) $(LAYOUT_LIB)

CPU_TESTS += tests/ctl_watch.py
$(BIN)/hgridctl: $(call objs,$(UTIL_CLI_SRCS))
