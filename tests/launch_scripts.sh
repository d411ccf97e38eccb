#!/usr/bin/env bash
# The launch scripts find hgrid-worker without HGRID_WORKER: beside them as
# installed (PREFIX/bin/hgrid-srun next to PREFIX/bin/hgrid-worker), in a
# checkout's bin/ (scripts/hgrid-srun.sh next to ../bin/hgrid-worker), also
# when called through a symlink; and say so in one line when there is none.
# hgrid-ssh's hosts use the same path where they have it, else their PATH's.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d --suffix=.hgrid-scripts)
trap 'rm -rf "$tmp"' EXIT
failures=0 passed=0
ok() { passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# A stand-in worker that says where it is and what it got.
fake_worker() { mkdir -p "$(dirname "$1")"; printf '#!/bin/sh\necho "worker %s: $*"\n' "$1" >"$1"; chmod +x "$1"; }
slurm=(SLURM_PROCID=1 SLURM_LOCALID=1 SLURMD_NODENAME=n1 HGRID_COORDINATOR=h HGRID_JOB=j HGRID_TOKEN=t)
torch=(RANK=1 LOCAL_RANK=1 WORLD_SIZE=2 MASTER_ADDR=h HGRID_JOB=j HGRID_TOKEN=t)
# run SCRIPT: the script under a clean environment without hgrid-worker on PATH.
run() { out=$(env -i PATH=/usr/bin:/bin "${env_vars[@]}" "$@" --dry-run 2>&1); rc=$?; }

for s in srun torchrun; do
  [ "$s" = srun ] && env_vars=("${slurm[@]}") || env_vars=("${torch[@]}")
  # A checkout: scripts/ beside bin/.
  mkdir -p "$tmp/$s/checkout/scripts"
  cp "$root/scripts/hgrid-$s.sh" "$root/scripts/hgrid-launch-lib.sh" "$tmp/$s/checkout/scripts/"
  fake_worker "$tmp/$s/checkout/bin/hgrid-worker"
  run "$tmp/$s/checkout/scripts/hgrid-$s.sh"
  [ "$rc" -eq 0 ] && [ "$out" = "worker $tmp/$s/checkout/bin/hgrid-worker: --device 1 --dry-run" ] && ok ||
    fail "hgrid-$s in a checkout: exit $rc, '$out'"
  # An install: both in PREFIX/bin, the script without its .sh; and through a symlink.
  mkdir -p "$tmp/$s/prefix/bin" "$tmp/$s/prefix/share/hgrid" "$tmp/$s/elsewhere"
  cp "$root/scripts/hgrid-$s.sh" "$tmp/$s/prefix/bin/hgrid-$s"
  cp "$root/scripts/hgrid-launch-lib.sh" "$tmp/$s/prefix/share/hgrid/"
  fake_worker "$tmp/$s/prefix/bin/hgrid-worker"
  ln -s "$tmp/$s/prefix/bin/hgrid-$s" "$tmp/$s/elsewhere/hgrid-$s"
  for script in "$tmp/$s/prefix/bin/hgrid-$s" "$tmp/$s/elsewhere/hgrid-$s"; do
    run "$script"
    [ "$rc" -eq 0 ] && [ "$out" = "worker $tmp/$s/prefix/bin/hgrid-worker: --device 1 --dry-run" ] && ok ||
      fail "hgrid-$s installed ($script): exit $rc, '$out'"
  done
  # Nowhere: one line, exit 2.
  mkdir -p "$tmp/$s/lonely"
  cp "$root/scripts/hgrid-$s.sh" "$root/scripts/hgrid-launch-lib.sh" "$tmp/$s/lonely/"
  run "$tmp/$s/lonely/hgrid-$s.sh"
  [ "$rc" -eq 2 ] && [ "$(wc -l <<<"$out")" -eq 1 ] && grep -q "hgrid-worker is not beside" <<<"$out" && ok ||
    fail "hgrid-$s without a worker: exit $rc, '$out'"
  # Without its shared functions (a partial install): one line naming them, exit 2.
  mkdir -p "$tmp/$s/partial/bin"
  cp "$root/scripts/hgrid-$s.sh" "$tmp/$s/partial/bin/hgrid-$s"
  run "$tmp/$s/partial/bin/hgrid-$s"
  [ "$rc" -eq 2 ] && [ "$(wc -l <<<"$out")" -eq 1 ] &&
    grep -q "hgrid-launch-lib.sh is neither beside" <<<"$out" && ok ||
    fail "hgrid-$s without hgrid-launch-lib.sh: exit $rc, '$out'"
done

# --help and --version answer without a launcher's environment (exit 0).
for s in srun torchrun; do
  out=$(env -i PATH=/usr/bin:/bin "$tmp/$s/checkout/scripts/hgrid-$s.sh" --help); rc=$?
  [ "$rc" -eq 0 ] && grep -q "hgrid-worker" <<<"$out" && ! grep -q '^#' <<<"$out" && ok ||
    fail "hgrid-$s --help: exit $rc, '$out'"
  printf '#!/bin/sh\necho "hgrid-worker (hgrid) 9.9"\n' >"$tmp/$s/checkout/bin/hgrid-worker"
  out=$(env -i PATH=/usr/bin:/bin "$tmp/$s/checkout/scripts/hgrid-$s.sh" --version); rc=$?
  [ "$rc" -eq 0 ] && [ "$out" = "hgrid-$s (hgrid) 9.9" ] && ok || fail "hgrid-$s --version: exit $rc, '$out'"
done

# hgrid-ssh: a fake ssh runs the remote command here.
printf '#!/bin/sh\nshift\nexec sh -c "$1"\n' >"$tmp/ssh"
chmod +x "$tmp/ssh"
mkdir -p "$tmp/ssh-checkout/scripts" "$tmp/ssh-checkout/bin"
cp "$root/scripts/hgrid-ssh.sh" "$tmp/ssh-checkout/scripts/"
printf '#!/bin/sh\necho "hgrid-worker (hgrid) 9.9"\n' >"$tmp/ssh-checkout/bin/hgrid-worker"
chmod +x "$tmp/ssh-checkout/bin/hgrid-worker"
cp "$root/bin/hgrid-lines" "$tmp/ssh-checkout/bin/" # else hgrid-ssh warns it is missing
out=$(env -i PATH=/usr/bin:/bin "$tmp/ssh-checkout/scripts/hgrid-ssh.sh" --version); rc=$?
[ "$rc" -eq 0 ] && [ "$out" = "hgrid-ssh (hgrid) 9.9" ] && ok || fail "hgrid-ssh --version: exit $rc, '$out'"
fake_worker "$tmp/ssh-checkout/bin/hgrid-worker"
out=$(env -i PATH=/usr/bin:/bin HGRID_SSH="$tmp/ssh" HGRID_TOKEN=t \
  "$tmp/ssh-checkout/scripts/hgrid-ssh.sh" --coordinator h --job j --gpus 1 node-a -- --dry-run 2>&1)
rc=$?
[ "$rc" -eq 0 ] && [ "$out" = "node-a: worker $tmp/ssh-checkout/bin/hgrid-worker: --coordinator h --job j --device 0 --dry-run" ] &&
  ok || fail "hgrid-ssh from a checkout: exit $rc, '$out'"
# A host without that path falls back to its PATH.
mkdir -p "$tmp/hostpath"
fake_worker "$tmp/hostpath/hgrid-worker"
printf '#!/bin/sh\nshift\nrm -f %s/ssh-checkout/bin/hgrid-worker\nPATH=%s/hostpath:$PATH exec sh -c "$1"\n' "$tmp" "$tmp" >"$tmp/ssh2"
chmod +x "$tmp/ssh2"
out=$(env -i PATH=/usr/bin:/bin HGRID_SSH="$tmp/ssh2" HGRID_TOKEN=t \
  "$tmp/ssh-checkout/scripts/hgrid-ssh.sh" --coordinator h --job j --gpus 1 node-b -- --dry-run 2>&1)
rc=$?
[ "$rc" -eq 0 ] && [ "$out" = "node-b: worker $tmp/hostpath/hgrid-worker: --coordinator h --job j --device 0 --dry-run" ] &&
  ok || fail "hgrid-ssh on a host without that path: exit $rc, '$out'"

echo "launch_scripts: $passed passed, $failures failed"
[ "$failures" -eq 0 ] && [ "$passed" -gt 0 ]
