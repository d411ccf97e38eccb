# hgrid. `make` builds every program into bin/; `make test` runs every CPU
# test under ASan+UBSan; `make test-gpu` runs the GPU tests; `make bench`,
# `make demo`, `make deps` (the packages), `make clean`. Each folder adds its
# parts in its module.mk.

# The version --version prints when not built from a git checkout.
VERSION   := 1.0
CUDA      ?= /usr/local/cuda
NVCC      ?= $(CUDA)/bin/nvcc
CUDA_ARCH ?= sm_90
SAN       ?= 0

ifeq ($(SAN),1)
BUILD    := build/san
BIN      := build/san/bin
OPT      := -O1 -g
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
else
BUILD    := build/rel
BIN      := bin
OPT      := -O2 -g
SANFLAGS :=
endif
GEN := $(BUILD)/gen

CPPFLAGS := -I. -I$(GEN) -I$(CUDA)/include -D_GNU_SOURCE
CFLAGS   := -std=c11 $(OPT) -Wall -Wextra -Werror -MMD -MP $(SANFLAGS)
NVFLAGS  := -std=c++17 -O2 -g -arch=$(CUDA_ARCH) -I. -I$(GEN) -Xcompiler -Wall,-Wextra,-Werror -MMD -MP
LDFLAGS  := $(SANFLAGS) -L$(CUDA)/lib64 -Wl,-rpath,$(CUDA)/lib64
UV_LIBS  := -luv
PB_LIBS  := -lprotobuf-c
NCCL_LIBS := -lnccl

PROGS     :=
CPU_TESTS :=
GPU_TESTS :=
BENCHES   :=
TEST_DEPS :=
OBJS      :=

# CUDA and C++ objects have no sanitizer flags, so both builds link the release build's
# (compiled once by `make test`; the cuDNN frontend's C++ alone takes minutes).
CU_BUILD := build/rel
objs = $(patsubst %.c,$(BUILD)/%.o,$(patsubst %.cu,$(CU_BUILD)/%.cu.o,$(patsubst %.cpp,$(CU_BUILD)/%.cpp.o,$(1))))

.PHONY: all test check gpu-programs test-gpu print-gpu-tests bench demo deps clean install
all:

# Libraries first: later fragments name them as prerequisites.
MODULES := proto layout wire util daemon agent libhgrid ctl worker tools/swarm tools/lines examples kernels model train python tests
include $(wildcard $(addsuffix /module.mk,$(MODULES)))

all: $(PROGS)

$(BUILD)/%.o: %.c | $(GEN)/proto/hgrid.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/%.cu.o: %.cu | $(GEN)/proto/hgrid.pb-c.h
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@
ifneq ($(BUILD),$(CU_BUILD))
$(CU_BUILD)/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@
endif

$(BIN)/%:
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(LDLIBS_$(notdir $@)) -lm

# The README's test command: the release build (GPU test and benchmark
# programs included, so CUDA code is compiled even without a GPU) must be
# warning-free, then every CPU test runs under the sanitizers.
# `make test T=NAME` (or `make test-gpu T=NAME`, `make bench T=NAME`) builds and runs one test:
# NAME is its file name without folder and extension (test_layout, help_flags).
T ?=
only = $(if $(T),$(foreach t,$(1),$(if $(filter $(T),$(basename $(notdir $(t))) $(t)),$(t))),$(1))
ONLY_FLAG = $(if $(T),--only $(T))
# It builds with a job per core (JOBS=N for another count) unless given -j, and runs
# JOBS tests at once, those of TIMED_TESTS (tests/module.mk) one at a time.
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
JOBS_FLAG = $(if $(filter -j%,$(MAKEFLAGS)),,-j$(JOBS))
test:
	$(if $(T),,$(MAKE) $(JOBS_FLAG) all gpu-programs)
	$(MAKE) $(JOBS_FLAG) SAN=1 check

gpu-programs: $(filter $(BUILD)/%,$(GPU_TESTS) $(BENCHES))

check: $(PROGS) $(call only,$(CPU_TESTS)) $(TEST_DEPS)
	tests/run.sh --bin $(BIN) --cpu "$(CPU_TESTS)" --gpu-count $(words $(GPU_TESTS)) $(ONLY_FLAG) \
		--jobs $(JOBS) --alone "$(TIMED_TESTS)"

test-gpu: all $(call only,$(GPU_TESTS))
	tests/run.sh --bin $(BIN) --gpu "$(GPU_TESTS)" $(ONLY_FLAG)

# The GPU tests' names, as `make test-gpu T=NAME` takes them (scripts/device/gpu-verify.sh).
print-gpu-tests:
	@echo $(foreach t,$(GPU_TESTS),$(basename $(notdir $(t))))

bench: all $(call only,$(BENCHES))
	tests/run.sh --bin $(BIN) --bench "$(BENCHES)" $(ONLY_FLAG)

demo: all
	scripts/demo.sh

# make deps: the packages the build, the demo and the tests need
# (scripts/deps.sh: apt-get, through sudo only when not root).
deps:
	scripts/deps.sh

clean:
	rm -rf build bin

# make install [PREFIX=/usr/local] [DESTDIR=staging]: the programs and launch
# scripts in PREFIX/bin (their shared functions in PREFIX/share/hgrid), the systemd units (ExecStart in PREFIX/bin) and the
# sysusers file under PREFIX/lib, the docs in PREFIX/share/doc/hgrid, the man
# pages (man/, made from --help) in PREFIX/share/man/man1, and
# libhgrid for programs of one's own: PREFIX/lib/libhgrid.{a,so.1} (the core,
# no CUDA) and libhgrid_nccl.{a,so.1} (communicators), their headers under
# PREFIX/include/hgrid (as the sources include them: "libhgrid/hgrid.h") and
# pkg-config's hgrid.pc and hgrid-nccl.pc.
PREFIX  ?= /usr/local
UNITDIR ?= $(PREFIX)/lib/systemd/system
INSTALL_PROGRAMS = $(filter $(addprefix $(BIN)/,gridd hgrid-agent hgrid-worker hgridctl hgrid-swarm hgrid-lines),$(PROGS))
INSTALL_SCRIPTS  := hgrid-srun hgrid-torchrun hgrid-ssh
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(UNITDIR) $(DESTDIR)$(PREFIX)/lib/sysusers.d \
		$(DESTDIR)$(PREFIX)/share/doc/hgrid $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0755 $(INSTALL_PROGRAMS) $(DESTDIR)$(PREFIX)/bin
	install -m 0644 man/gridd.1 man/hgridctl.1 man/hgrid-worker.1 man/hgrid-agent.1 $(DESTDIR)$(PREFIX)/share/man/man1
	for s in $(INSTALL_SCRIPTS); do install -m 0755 scripts/$$s.sh $(DESTDIR)$(PREFIX)/bin/$$s; done
	install -d $(DESTDIR)$(PREFIX)/share/hgrid
	install -m 0644 scripts/hgrid-launch-lib.sh $(DESTDIR)$(PREFIX)/share/hgrid
	for u in gridd.service hgrid-agent.service hgrid-worker@.service; do \
		sed 's|/usr/local/|$(PREFIX)/|g' systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; done
	install -m 0644 systemd/hgrid.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/hgrid.conf
	install -m 0644 README.md docs/*.md $(DESTDIR)$(PREFIX)/share/doc/hgrid
	install -d $(DESTDIR)$(PREFIX)/include/hgrid/libhgrid $(DESTDIR)$(PREFIX)/include/hgrid/layout \
		$(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 0644 $(BIN)/libhgrid.a $(BIN)/libhgrid_nccl.a $(DESTDIR)$(PREFIX)/lib
	install -m 0755 $(BIN)/libhgrid.so.1 $(BIN)/libhgrid_nccl.so.1 $(DESTDIR)$(PREFIX)/lib
	ln -sf libhgrid.so.1 $(DESTDIR)$(PREFIX)/lib/libhgrid.so
	ln -sf libhgrid_nccl.so.1 $(DESTDIR)$(PREFIX)/lib/libhgrid_nccl.so
	install -m 0644 libhgrid/hgrid.h libhgrid/hgrid_layout.h libhgrid/hgrid_comms.h \
		libhgrid/hgrid_selftest.h $(DESTDIR)$(PREFIX)/include/hgrid/libhgrid
	install -m 0644 layout/layout.h $(DESTDIR)$(PREFIX)/include/hgrid/layout
	printf 'prefix=%s\nincludedir=$${prefix}/include/hgrid\nlibdir=$${prefix}/lib\n\nName: hgrid\nDescription: libhgrid, the core of an hgrid worker (join, assignment, heartbeats, the job store; no CUDA)\nVersion: 1\nCflags: -I$${includedir}\nLibs: -L$${libdir} -lhgrid\nLibs.private: -lprotobuf-c\n' \
		'$(PREFIX)' > $(DESTDIR)$(PREFIX)/lib/pkgconfig/hgrid.pc
	printf 'prefix=%s\nincludedir=$${prefix}/include/hgrid\nlibdir=$${prefix}/lib\n\nName: hgrid-nccl\nDescription: libhgrid_nccl, NCCL communicators and the self-test of an hgrid worker\nVersion: 1\nRequires: hgrid\nCflags: -I$${includedir} -I$(CUDA)/include\nLibs: -L$${libdir} -lhgrid_nccl\nLibs.private: -L$(CUDA)/lib64 -lnccl -lcudart\n' \
		'$(PREFIX)' > $(DESTDIR)$(PREFIX)/lib/pkgconfig/hgrid-nccl.pc

-include $(shell find build -name '*.d' 2>/dev/null)
