# util/: small helpers more than one program uses. The command-line parser
# (cli.c) and the version (version.c, from $(GEN)/hgrid_version.h, which is
# rewritten only when `git describe` changes).
UTIL_CLI_SRCS := util/cli.c util/version.c

HGRID_VERSION := $(shell v=$$(git describe --tags --dirty 2>/dev/null) || \
	v=$$(git describe --always --dirty 2>/dev/null | sed 's/^/$(VERSION)-g/'); echo $${v:-$(VERSION)})
$(GEN)/hgrid_version.h: FORCE
	@mkdir -p $(dir $@)
	@echo '#define HGRID_VERSION "$(HGRID_VERSION)"' >$@.tmp
	@cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@
$(BUILD)/util/version.o $(BUILD)/pic/util/version.o: $(GEN)/hgrid_version.h
.PHONY: FORCE
FORCE:
