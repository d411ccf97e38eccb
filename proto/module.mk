# Wire schema: protoc-c generates C at build time, into $(GEN).
$(GEN)/proto/hgrid.pb-c.h $(GEN)/proto/hgrid.pb-c.c: proto/hgrid.proto
	@mkdir -p $(GEN)
	protoc-c --c_out=$(GEN) $<

$(BUILD)/proto/hgrid.pb-c.o: $(GEN)/proto/hgrid.pb-c.c $(GEN)/proto/hgrid.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@
