# hgridctl, hgrid-worker and libhgrid.
CTL_SRCS := client/hgridctl.c client/ctl_plan.c client/layout_args.c client/plan_json.c \
            client/plan_text.c client/json.c

PROGS += $(BIN)/hgridctl
$(BIN)/hgridctl: $(call objs,$(CTL_SRCS)) $(LAYOUT_LIB)
