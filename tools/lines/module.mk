# hgrid-lines: hgrid-ssh's per-host line prefixer; lines go out whole under a
# lock on the shared output (util/whole_lines.c).
PROGS += $(BIN)/hgrid-lines
$(BIN)/hgrid-lines: $(call objs,tools/lines/main.c util/whole_lines.c $(UTIL_CLI_SRCS))
LDLIBS_hgrid-lines := -lpthread
