#!/usr/bin/env bash
# examples/torch_mimo.py on this machine's GPUs with NCCL, under a gridd of its own; checks
# that every process exits 0 and the LLM's loss falls, and ends with one PASS/FAIL line.
#   scripts/torch_mimo_gpu.sh                 # one GPU: --llm-only --llm-tp 1
#   scripts/torch_mimo_gpu.sh 4 --encoder-tp 1 --encoder-dp 2 --llm-tp 2 --llm-dp 1 --micro-batch-size 2
# The first argument is the number of GPUs (processes), the rest the layout.
# Exit 0 pass, 1 fail, 77 skipped (no GPU, or no Python whose torch sees CUDA).
#   HGRID_PYTHON  a Python with torch (default build/venv/bin/python, else python3)
#   HGRID_BIN     gridd, hgridctl, libhgrid.so.1 (default bin; built here if missing)
#   STEPS         training steps (default 200)
#   TORCH_MIMO_BACKEND=gloo  the same run on CPUs with gloo (checks this script without a GPU)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
gpus=${1:-1}; shift || true
layout=("$@")
[ ${#layout[@]} -gt 0 ] || layout=(--llm-only --llm-tp 1 --llm-dp 1)
backend=${TORCH_MIMO_BACKEND:-nccl}
steps=${STEPS:-200}
bin=${HGRID_BIN:-bin}
export NCCL_NVLS_ENABLE=0 # never NVLink multicast on shared hosts
py=${HGRID_PYTHON:-build/venv/bin/python}; [ -x "$py" ] || py=python3
skip() { echo "SKIP: $*"; exit 77; }
if [ "$backend" = nccl ]; then
  have=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  [ "$have" -ge 1 ] || skip "no GPU (nvidia-smi -L lists none); TORCH_MIMO_BACKEND=gloo runs it on CPUs"
  [ "$have" -ge "$gpus" ] || skip "$gpus GPUs asked for, $have here"
  "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null ||
    skip "$py has no torch with CUDA (set HGRID_PYTHON)"
else
  "$py" -c 'import torch' 2>/dev/null || skip "$py has no torch (set HGRID_PYTHON)"
fi
for f in gridd hgridctl libhgrid.so.1; do
  [ -e "$bin/$f" ] || [ "$bin" != bin ] || make -s -j2 "bin/$f" >/dev/null || { echo "FAIL: make bin/$f"; exit 1; }
  [ -e "$bin/$f" ] || { echo "FAIL: $bin/$f is missing (run make)"; exit 1; }
done
tmp=$(mktemp -d --suffix=.torch-mimo)
gridd=""
trap '[ -n "$gridd" ] && kill "$gridd" 2>/dev/null; [ -n "${HGRID_KEEP_LOGS:-}" ] && cp -r "$tmp"/. "$HGRID_KEEP_LOGS"/; rm -rf "$tmp"' EXIT
"$bin/gridd" --listen 127.0.0.1:0 --port-file "$tmp/port" --control "$tmp/sock" \
  --heartbeat-timeout 30 2>"$tmp/gridd.log" & gridd=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
[ -s "$tmp/port" ] || { echo "FAIL: gridd did not start"; cat "$tmp/gridd.log"; exit 1; }
"$bin/hgridctl" --socket "$tmp/sock" submit --job gpu --token t "${layout[@]}" >/dev/null ||
  { echo "FAIL: hgridctl submit ${layout[*]}"; exit 1; }
export HGRID_COORDINATOR=127.0.0.1:$(cat "$tmp/port") HGRID_JOB=gpu HGRID_TOKEN=t
export HGRID_LIBRARY=$PWD/$bin/libhgrid.so.1 PYTHONPATH=$PWD/python HGRID_HOSTNAME=local
export GLOO_SOCKET_IFNAME=lo OMP_NUM_THREADS=1
echo "== torch_mimo: $gpus process(es), $backend, $steps steps, ${layout[*]}"
pids=()
for d in $(seq 0 $((gpus - 1))); do
  LOCAL_RANK=$d timeout 900 "$py" examples/torch_mimo.py --backend "$backend" --steps "$steps" \
    --batch-size 32 >"$tmp/w$d.out" 2>&1 & pids+=($!)
done
rc=0; for p in "${pids[@]}"; do wait "$p" || rc=1; done
[ $rc -eq 0 ] || { echo "torch_mimo: a process failed:"; tail -n 20 "$tmp"/w*.out; }
# The LLM's first rank prints {"step", "loss", "step_s"} per step: the loss must fall.
"$py" - "$steps" "$tmp"/w*.out <<'PY' || rc=1
import json, sys
steps = int(sys.argv[1])
rows = [json.loads(l) for f in sys.argv[2:] for l in open(f) if l.startswith('{"step"')]
if len(rows) != steps:
    sys.exit(f"torch_mimo: {len(rows)} step lines, {steps} expected")
first = sum(r["loss"] for r in rows[:5]) / 5
last = sum(r["loss"] for r in rows[-5:]) / 5
late = sorted(r["step_s"] for r in rows[len(rows) // 2:])
print(f"torch_mimo: {len(rows)} steps, loss {first:.4f} -> {last:.4f} (mean of 5), "
      f"median step {1e3 * late[len(late) // 2]:.2f} ms")
if not last < 0.7 * first:
    sys.exit(f"torch_mimo: the loss did not fall by 30% ({first:.4f} -> {last:.4f})")
PY
# Every rank called a.done(): gridd finished the job.
"$bin/hgridctl" --socket "$tmp/sock" wait gpu --timeout 30 >/dev/null ||
  { echo "torch_mimo: the job did not finish: $("$bin/hgridctl" --socket "$tmp/sock" list | tail -n 1)"; rc=1; }
if [ $rc -eq 0 ]; then echo "PASS: torch_mimo ($backend, $gpus process(es))"; else echo "FAIL: torch_mimo ($backend)"; fi
exit $rc
