# Wire format: generated protobuf-c code, framing, client socket helpers.
WIRE_SRCS := wire/frame.c wire/io.c wire/layout_pb.c wire/host.c
WIRE_SRCS += wire/job_name.c wire/relay.c wire/assignment_pack.c
WIRE_LIB  := $(BUILD)/libwire.a

$(WIRE_LIB): $(BUILD)/proto/hgrid.pb-c.o $(call objs,$(WIRE_SRCS))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^
