#!/usr/bin/env bash
# examples/torch_mimo.py on this machine's GPUs with NCCL, under a gridd of its own:
#   scripts/torch_mimo_gpu.sh                 # one GPU: --llm-only --llm-tp 1
#   scripts/torch_mimo_gpu.sh 4 --encoder-tp 1 --encoder-dp 2 --llm-tp 2 --llm-dp 1 --micro-batch-size 2
# The first argument is the number of GPUs (processes), the rest the layout.
# HGRID_PYTHON: a Python with torch (default build/venv/bin/python, else python3);
# STEPS (default 200). Prints the LLM's first and last losses and the time per step.
set -euo pipefail
cd "$(dirname "$0")/.."
gpus=${1:-1}; shift || true
layout=("$@")
[ ${#layout[@]} -gt 0 ] || layout=(--llm-only --llm-tp 1 --llm-dp 1)
py=${HGRID_PYTHON:-build/venv/bin/python}; [ -x "$py" ] || py=python3
bin=${HGRID_BIN:-bin}
tmp=$(mktemp -d); trap 'kill $gridd 2>/dev/null; rm -rf "$tmp"' EXIT
"$bin/gridd" --listen 127.0.0.1:0 --port-file "$tmp/port" --control "$tmp/sock" \
  --heartbeat-timeout 30 2>"$tmp/gridd.log" & gridd=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
"$bin/hgridctl" --socket "$tmp/sock" submit --job gpu --token t "${layout[@]}" >/dev/null
export HGRID_COORDINATOR=127.0.0.1:$(cat "$tmp/port") HGRID_JOB=gpu HGRID_TOKEN=t
export HGRID_LIBRARY=$PWD/$bin/libhgrid.so.1 PYTHONPATH=$PWD/python
pids=()
for d in $(seq 0 $((gpus - 1))); do
  LOCAL_RANK=$d "$py" examples/torch_mimo.py --backend nccl --steps "${STEPS:-200}" \
    --batch-size 32 >"$tmp/w$d.out" 2>&1 & pids+=($!)
done
rc=0; for p in "${pids[@]}"; do wait "$p" || rc=1; done
for d in $(seq 0 $((gpus - 1))); do
  if grep -q '"step"' "$tmp/w$d.out"; then
    "$py" - "$tmp/w$d.out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{"step"')]
late = sorted(r["step_s"] for r in rows[len(rows) // 2:])
print(f"torch_mimo on GPU(s): {len(rows)} steps, loss {rows[0]['loss']:.4f} -> "
      f"{rows[-1]['loss']:.4f}, median step {1e3 * late[len(late) // 2]:.2f} ms")
PY
  fi
done
[ $rc -eq 0 ] || { echo "torch_mimo_gpu: a worker failed:"; tail -n 20 "$tmp"/w*.out; }
exit $rc
