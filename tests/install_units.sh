#!/usr/bin/env bash
# make install and the systemd units. 1) DESTDIR + PREFIX: the tree holds
# every program, launch script, unit, the sysusers file, the docs and the
# man pages, the units' ExecStart under PREFIX/bin, and nothing lands outside DESTDIR;
# libhgrid's headers, libraries and hgrid.pc are there, and a program of
# one's own (examples/example_join.c) builds against them alone and runs.
# 2) An install to a real PREFIX (a temporary folder, so ExecStart's
# programs exist): `systemd-analyze verify` passes on both units, and the
# same check fails on a unit with a typo and on one whose program is missing;
# systemd-analyze security scores the sandboxes no worse than now.
# Without systemd-analyze (or one too old for the exposure check) part 2 is
# skipped: after part 1 passed, the test exits 77 (skipped) saying why.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
tmp=$(mktemp -d --suffix=.hgrid-install)
trap 'rm -rf "$tmp"' EXIT
failures=0 passed=0 skip_reason=""
ok() { passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# make install for the binaries being tested ($HGRID_BIN: the sanitizer build under make test).
san=0
[[ "${HGRID_BIN:-bin}" == *build/san/bin ]] && san=1
install_to() {
  env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -s SAN=$san install "$@" >"$tmp/make.out" 2>&1 ||
    { fail "make install $*"; tail -n 20 "$tmp/make.out"; }
}

stage=$tmp/stage
install_to DESTDIR="$stage" PREFIX=/opt/hgrid
programs="gridd hgrid-worker hgridctl hgrid-swarm"
for f in $programs hgrid-srun hgrid-torchrun hgrid-ssh; do
  f=bin/$f
  [ -x "$stage/opt/hgrid/$f" ] && ok || fail "DESTDIR: $f missing or not executable"
done
for f in share/hgrid/hgrid-launch-lib.sh lib/systemd/system/gridd.service lib/systemd/system/hgrid-worker@.service \
         lib/sysusers.d/hgrid.conf share/doc/hgrid/README.md share/doc/hgrid/OPERATIONS.md \
         share/doc/hgrid/PROTOCOL.md share/man/man1/gridd.1 share/man/man1/hgridctl.1 \
         share/man/man1/hgrid-worker.1; do
  [ -f "$stage/opt/hgrid/$f" ] && ok || fail "DESTDIR: $f missing"
done
for f in lib/libhgrid.a lib/libhgrid.so lib/libhgrid.so.1 lib/libhgrid_nccl.a lib/libhgrid_nccl.so \
         lib/libhgrid_nccl.so.1 lib/pkgconfig/hgrid.pc lib/pkgconfig/hgrid-nccl.pc \
         include/hgrid/libhgrid/hgrid.h include/hgrid/libhgrid/hgrid_layout.h \
         include/hgrid/libhgrid/hgrid_comms.h include/hgrid/libhgrid/hgrid_selftest.h \
         include/hgrid/layout/layout.h; do
  [ -e "$stage/opt/hgrid/$f" ] && ok || fail "DESTDIR: $f missing"
done
[ "$(readlink "$stage/opt/hgrid/lib/libhgrid.so")" = libhgrid.so.1 ] && ok ||
  fail "DESTDIR: lib/libhgrid.so does not link to libhgrid.so.1"
grep -q '^prefix=/opt/hgrid$' "$stage/opt/hgrid/lib/pkgconfig/hgrid.pc" && ok ||
  fail "hgrid.pc: prefix is not PREFIX"
! grep -i '^Cflags\|^Libs' "$stage/opt/hgrid/lib/pkgconfig/hgrid.pc" | grep -qi 'cuda\|nccl' && ok ||
  fail "hgrid.pc's flags name CUDA or NCCL: $(grep -i '^Cflags\|^Libs' "$stage/opt/hgrid/lib/pkgconfig/hgrid.pc")"
grep -q '^Requires: hgrid$' "$stage/opt/hgrid/lib/pkgconfig/hgrid-nccl.pc" &&
  grep -q -- '-lnccl' "$stage/opt/hgrid/lib/pkgconfig/hgrid-nccl.pc" && ok ||
  fail "hgrid-nccl.pc does not require hgrid and link NCCL"
if command -v pkg-config >/dev/null; then
  flags=$(echo $(PKG_CONFIG_PATH=$stage/opt/hgrid/lib/pkgconfig pkg-config --cflags --libs hgrid))
  [ "$flags" = "-I/opt/hgrid/include/hgrid -L/opt/hgrid/lib -lhgrid" ] && ok ||
    fail "pkg-config hgrid says '$flags'"
fi
# The core header stands alone (no layout engine, no CUDA): the example builds with no
# CUDA path and links libhgrid.so alone.
lib=$stage/opt/hgrid/lib sanflags=()
[ "$san" = 1 ] && sanflags=(-fsanitize=address,undefined)
if cc "${sanflags[@]}" -I"$stage/opt/hgrid/include/hgrid" -o "$tmp/example" examples/example_join.c \
  -L"$lib" -lhgrid -Wl,-rpath,"$lib" 2>"$tmp/cc.out"; then
  ok
  "$tmp/example" 2>"$tmp/example.out"
  [ $? -eq 2 ] && grep -q '^usage: hgrid-example-join' "$tmp/example.out" && ok ||
    fail "the example linked against the installed libhgrid.so did not run: $(head -n 2 "$tmp/example.out")"
  "$tmp/example" --version | grep -q '^hgrid-example-join (hgrid) [^ ]*$' && ok ||
    fail "the installed libhgrid's example does not answer --version"
else
  fail "examples/example_join.c does not build against the installed headers and libhgrid:"
  head -n 5 "$tmp/cc.out"
fi
[ "$(ls "$stage")" = opt ] && ok || fail "DESTDIR: something outside PREFIX: $(ls "$stage")"
units=$stage/opt/hgrid/lib/systemd/system
grep -q '^ExecStart=/opt/hgrid/bin/gridd ' "$units/gridd.service" && ok ||
  fail "gridd.service: ExecStart not under PREFIX: $(grep ExecStart "$units/gridd.service")"
grep -q '^ExecStart=/opt/hgrid/bin/hgrid-worker ' "$units/hgrid-worker@.service" && ok ||
  fail "hgrid-worker@.service: ExecStart not under PREFIX"
! grep -q /usr/local "$units"/* && ok || fail "units still name /usr/local"
# Every `make TARGET` the units mention is a target of the Makefile.
for t in $(grep -ho 'make [a-z][a-z-]*' systemd/* | cut -d' ' -f2 | sort -u); do
  make -n "$t" >/dev/null 2>&1 && ok || fail "systemd/ names 'make $t', which is no target"
done
! grep -q 'HGRID_TOKEN}\|--token' "$units/hgrid-worker@.service" && ok ||
  fail "hgrid-worker@.service puts the token on the command line"

if ! command -v systemd-analyze >/dev/null; then
  skip_reason="systemd-analyze verify: systemd-analyze is not installed (apt-get install systemd)"
else
  prefix=$tmp/prefix
  install_to PREFIX="$prefix"
  units=$prefix/lib/systemd/system
  # verify_units UNIT...: 0 when systemd-analyze verify succeeds and says nothing about these files.
  verify_units() {
    local out rc u
    out=$(cd "$units" && systemd-analyze verify --man=no "$@" 2>&1); rc=$?
    echo "$out" >"$tmp/verify.out"
    [ "$rc" -eq 0 ] || return 1
    for u in "$@"; do # warnings (unknown keys, bad values) name the file; other units' do not count
      grep -qF "${u#./}" <<<"$out" && return 1
    done
    return 0
  }
  verify_units ./gridd.service && ok ||
    { fail "systemd-analyze verify gridd.service"; cat "$tmp/verify.out"; }
  verify_units ./hgrid-worker@.service ./hgrid-worker@0.service && ok ||
    { fail "systemd-analyze verify hgrid-worker@.service"; cat "$tmp/verify.out"; }
  # The check itself must catch a typo (systemd only warns) and a missing program.
  sed 's/^NoNewPrivileges=/NoNewPrivilege=/' "$units/gridd.service" >"$units/typo.service"
  verify_units ./typo.service && fail "verify passed a unit with a typo" || ok
  sed "s|^ExecStart=$prefix/bin/gridd|ExecStart=$prefix/bin/no-such-gridd|" \
    "$units/gridd.service" >"$units/missing.service"
  verify_units ./missing.service && fail "verify passed a unit whose program is missing" || ok
  # The sandbox must not weaken: systemd's exposure score (0 best, 10 worst; --threshold in
  # tenths) stays at most 2.0 for gridd (1.4 now) and 4.0 for a worker (3.2 now).
  if systemd-analyze security --offline=yes --threshold=100 "$units/gridd.service" >/dev/null 2>&1; then
    (cd "$units" && systemd-analyze security --offline=yes --threshold=20 ./gridd.service) \
      >"$tmp/security.out" 2>&1 && ok || { fail "gridd.service exposure above 2.0"; tail -n 3 "$tmp/security.out"; }
    (cd "$units" && systemd-analyze security --offline=yes --threshold=40 ./hgrid-worker@.service) \
      >"$tmp/security.out" 2>&1 && ok || { fail "hgrid-worker@.service exposure above 4.0"; tail -n 3 "$tmp/security.out"; }
  else
    skip_reason="the exposure check: systemd-analyze security --offline needs systemd 250 or later"
  fi
fi
echo "install_units: $passed passed, $failures failed"
[ "$failures" -eq 0 ] || exit 1
[ "$passed" -gt 0 ] || { echo "FAIL: nothing was checked"; exit 1; }
[ -z "$skip_reason" ] || { echo "SKIP: install_units: $skip_reason"; exit 77; }
