#!/usr/bin/env bash
# The main job (make demo): start gridd on an ephemeral port with a private
# control socket, submit a layout (default: encoder tp2 dp2 + llm tp2 dp2, 8
# ranks; extra arguments are layout flags), start one worker per rank (one per
# GPU when the machine has enough), show every worker's assignment and
# `hgridctl show`, then cancel the job and stop gridd. With fewer GPUs than
# ranks (e.g. none) the workers run --dry-run on 2 fake hosts, and the demo
# says so: the whole protocol (ranks, groups, real NCCL ids minted by group
# leaders, heartbeats) without GPU work.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${HGRID_BIN:-bin}
for p in gridd hgridctl hgrid-worker; do
  [ -x "$bin/$p" ] || { echo "demo: $bin/$p is missing; run 'make' first" >&2; exit 1; }
done
tmp=$(mktemp -d /tmp/hgrid-demo.XXXXXX)
gridd_pid="" worker_pids=()
cleanup() {
  for p in "${worker_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$gridd_pid" ] && kill "$gridd_pid" 2>/dev/null && wait "$gridd_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
ctl() { "$bin/hgridctl" --socket "$tmp/gridd.sock" "$@"; }

world=$("$bin/hgridctl" plan --json "$@" | python3 -c 'import json,sys; print(json.load(sys.stdin)["world_size"])')
echo "== gridd: listening on an ephemeral port, control socket $tmp/gridd.sock"
"$bin/gridd" --listen 127.0.0.1:0 --port-file "$tmp/port" --control "$tmp/gridd.sock" 2>"$tmp/gridd.log" &
gridd_pid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
[ -s "$tmp/port" ] || { echo "demo: gridd did not start:" >&2; cat "$tmp/gridd.log" >&2; exit 1; }
port=$(cat "$tmp/port")

echo "== hgridctl submit --job demo${*:+ $*} ($world ranks)"
token=$(ctl submit --job demo "$@" 2>/dev/null)

gpus=0
command -v nvidia-smi >/dev/null 2>&1 && gpus=$(nvidia-smi -L 2>/dev/null | grep -c GPU || true)
worker_flags=()
if [ "$gpus" -ge "$world" ]; then
  echo "== workers: one per GPU on GPUs 0-$((world - 1)) of this machine ($(hostname)): each forms its"
  echo "   NCCL communicators, self-tests them and heartbeats"
  hosts=1 per_host=$world
  host_of() { hostname; }
else
  echo "== workers: $gpus GPU(s) on this machine and the layout needs $world, so these are"
  echo "   $world DRY-RUN workers on 2 fake hosts, demo-0 and demo-1: the whole protocol"
  echo "   (ranks, groups, real NCCL ids minted by group leaders, heartbeats), no GPU work"
  hosts=2 per_host=$(( (world + 1) / 2 ))
  host_of() { echo "demo-$1"; }
  worker_flags=(--dry-run)
fi
for i in $(seq 0 $((world - 1))); do
  "$bin/hgrid-worker" --coordinator "127.0.0.1:$port" --job demo --token "$token" \
    --host "$(host_of $((i / per_host)))" --device $((i % per_host)) "${worker_flags[@]}" \
    >"$tmp/worker$i.out" 2>&1 &
  worker_pids+=($!)
done
# Until every worker is ready (GPU workers: communicators formed and self-tested).
for _ in $(seq 1200); do
  ctl status demo 2>/dev/null | grep -q "^job demo: running" && break
  sleep 0.05
done
echo
echo "== each worker's assignment (rank, module, coordinates)"
grep -h ': job demo generation' "$tmp"/worker*.out | sort -t' ' -k7,7n
if [ "${#worker_flags[@]}" -eq 0 ]; then
  echo
  echo "== each worker's self-test of its communicators"
  grep -h 'self-test' "$tmp"/worker*.out | sort -t' ' -k3,3n
fi
echo
echo "== rank 0 in full: its groups (members derived by the layout engine) and NCCL ids"
cat "$(grep -l ': rank 0 of' "$tmp"/worker*.out | head -1)"
echo
echo "== hgridctl show demo"
ctl show demo
echo
echo "== hgridctl cancel demo"
ctl cancel demo
status=0
for p in "${worker_pids[@]}"; do wait "$p" || status=1; done
worker_pids=()
[ "$status" -eq 0 ] && echo "   every worker was released and exited 0" || echo "   a worker exited non-zero"
kill "$gridd_pid" && wait "$gridd_pid" || status=1
gridd_pid=""
echo "== gridd stopped; its log:"
sed 's/^/   /' "$tmp/gridd.log"
exit "$status"
