# The smallest program built on libhgrid, linked against the shared library.
PROGS += $(BIN)/hgrid-example-join
$(BIN)/hgrid-example-join: $(call objs,examples/example_join.c) $(BIN)/libhgrid.so
	$(CC) $(LDFLAGS) -o $@ $< -L$(BIN) -lhgrid -Wl,-rpath,'$$ORIGIN'
