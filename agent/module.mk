# hgrid-agent: one per host; the host's workers reach gridd through it
# over one connection per job (docs/PROTOCOL.md, "Host links").
AGENT_SRCS := agent/main.c agent/local.c agent/link.c util/whole_lines.c
PROGS += $(BIN)/hgrid-agent
LDLIBS_hgrid-agent := -luv -lprotobuf-c
$(BIN)/hgrid-agent: $(call objs,$(AGENT_SRCS)) $(WIRE_LIB) $(LAYOUT_LIB)
CPU_TESTS += tests/agent_hosts.py
# The launch scripts start an agent per node on demand (HGRID_AGENT, --exit-idle).
CPU_TESTS += tests/agent_launch.py
# Local peers checked by uid (SO_PEERCRED) even in a directory opened up by mistake.
CPU_TESTS += tests/agent_peercred.py
$(BIN)/hgrid-agent: $(call objs,$(UTIL_CLI_SRCS))
