# Wire schema: protoc-c generates C at build time, into $(GEN). A pattern rule: one
# protoc-c run makes both files (two explicit targets would run it twice under -j).
$(GEN)/%.pb-c.h $(GEN)/%.pb-c.c: %.proto
	@mkdir -p $(GEN)
	protoc-c --c_out=$(GEN) $<

$(BUILD)/proto/hgrid.pb-c.o: $(GEN)/proto/hgrid.pb-c.c $(GEN)/proto/hgrid.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@
