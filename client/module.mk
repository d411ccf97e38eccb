# hgridctl, hgrid-worker and libhgrid.
# CTL_CONTROL_SRCS (hgridctl's gridd commands) comes from daemon/module.mk.
CTL_SRCS := client/hgridctl.c client/ctl_plan.c client/layout_args.c client/plan_json.c \
            client/plan_text.c client/json.c $(CTL_CONTROL_SRCS)

PROGS += $(BIN)/hgridctl
LDLIBS_hgridctl := -lprotobuf-c
$(BIN)/hgridctl: $(call objs,$(CTL_SRCS)) $(WIRE_LIB) $(LAYOUT_LIB)
