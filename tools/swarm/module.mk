# hgrid-swarm: a load generator for gridd.
SWARM_SRCS := tools/swarm/main.c tools/swarm/net.c tools/swarm/hosts.c tools/swarm/check.c libhgrid/assignment_check.c
PROGS += $(BIN)/hgrid-swarm
LDLIBS_hgrid-swarm := -lprotobuf-c -lpthread
$(BIN)/hgrid-swarm: $(call objs,$(SWARM_SRCS)) $(WIRE_LIB) $(LAYOUT_LIB)
CPU_TESTS += tests/coord_workers.py tests/swarm_hosts.py

# Rendezvous benchmark: gridd + hgrid-swarm vs TCPStore (tests/bench/rendezvous.sh).
BENCHES += tests/bench/rendezvous.sh
# A 1,024-worker rendezvous alone and next to 16K idle + slow-drip connections.
BENCHES += tests/bench/rendezvous_load.sh

$(BIN)/hgrid-swarm: $(call objs,$(UTIL_CLI_SRCS))
