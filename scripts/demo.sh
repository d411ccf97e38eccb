#!/usr/bin/env bash
# The main job (make demo): start gridd on an ephemeral port with a private
# control socket, submit a layout (default: encoder tp2 dp2 + llm tp2 dp2, 8
# ranks; extra arguments are layout flags), start one worker per rank, show
# every worker's assignment and `hgridctl show`, then cancel the job and stop
# gridd. Workers run --dry-run: the whole protocol (ranks, groups, real NCCL
# ids minted by group leaders, heartbeats) without training on a GPU.
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
hosts=2
echo "== workers: this build has no GPU training yet, so every worker runs --dry-run"
if [ "$gpus" -eq 0 ]; then
  echo "   (no GPU on this machine: $world dry-run workers on $hosts fake hosts, demo-0 and demo-1;"
else
  echo "   ($gpus GPU(s) here, not used: $world dry-run workers on $hosts fake hosts, demo-0 and demo-1;"
fi
echo "    group leaders mint real NCCL ids with ncclGetUniqueId, which needs no GPU)"
per_host=$(( (world + hosts - 1) / hosts ))
for i in $(seq 0 $((world - 1))); do
  "$bin/hgrid-worker" --coordinator "127.0.0.1:$port" --job demo --token "$token" \
    --host "demo-$((i / per_host))" --device $((i % per_host)) --dry-run >"$tmp/worker$i.out" 2>&1 &
  worker_pids+=($!)
done
for _ in $(seq 200); do
  [ "$(cat "$tmp"/worker*.out | grep -c ': job demo generation')" -eq "$world" ] && break
  sleep 0.05
done

echo
echo "== each worker's assignment (rank, module, coordinates)"
grep -h ': job demo generation' "$tmp"/worker*.out | sort -t' ' -k6,6n
echo
echo "== one worker in full: its groups (members derived by the layout engine) and NCCL ids"
cat "$tmp/worker0.out"
echo
sleep 0.3 # let every Ready reach gridd
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
