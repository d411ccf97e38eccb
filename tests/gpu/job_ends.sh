#!/usr/bin/env bash
# GPU test (make test-gpu): a real training job ends by itself (issue 21).
# hgrid-worker --config tiny --steps 30 on the local GPUs (encoder | llm on
# two GPUs, one LLM rank on one) with nobody cancelling: every worker
# trains 30 steps, reports done, and gridd finishes the job and releases
# them (exit 0); `hgridctl wait` started beside them returns 0 with the
# outcome; list shows the job finished with its end time; /metrics has the
# LLM's step 30 and its loss (the last stage's), and watch shows the loss.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
bin=${HGRID_BIN:-bin}
export NCCL_NVLS_ENABLE=0 # never NVLink multicast on shared hosts
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
if [ "$gpus" -lt 1 ]; then
  echo "SKIP: no GPU (nvidia-smi -L lists none)"
  exit 77
fi
tmp=$(mktemp -d --suffix=.hgrid-ends)
# shellcheck source=tests/gpu/comm_lib.sh
. tests/gpu/comm_lib.sh
trap 'comm_cleanup; [ -n "${HGRID_KEEP_LOGS:-}" ] && cp -r "$tmp"/. "$HGRID_KEEP_LOGS"/; rm -rf "$tmp"' EXIT
trap 'exit 1' TERM INT

STEPS=30
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
if [ "$gpus" -ge 2 ]; then
  layout=(--encoder-tp 1 --encoder-dp 1 --llm-tp 1 --llm-dp 1)
else
  layout=(--llm-only --llm-tp 1 --llm-dp 1)
fi
layout+=(--micro-batch-size 16 --global-batch-size 16)
world=$(world_of "${layout[@]}")
echo "== job ends: $world worker(s), config tiny, $STEPS steps, ${layout[*]}"

start_gridd 30 --metrics 127.0.0.1:0 || exit 1
# shellcheck disable=SC2046 # config_flags prints separate flags
token=$(ctl submit --job ends "${layout[@]}" $(config_flags tiny) 2>/dev/null) || { echo "FAIL: submit"; exit 1; }
ctl wait ends --json --timeout 240 >"$tmp/wait.json" 2>"$tmp/wait.err" &
wait_pid=$!
t0=$(date +%s%N)
for rank in $(seq 0 $((world - 1))); do
  start_worker ends "$token" "$rank" "$tmp/w$rank.out" --comm-timeout 30 --bw-bytes 0 \
    --config tiny --seed 1 --steps "$STEPS"
done
# The loss and step while the workers wait for the job's end or right after.
metrics_port=$(sed -n 's/.*serving metrics addr=[0-9.]*:\([0-9]*\) .*/\1/p' "$tmp/gridd.log" | head -1)
scrape() { curl -s "http://127.0.0.1:$metrics_port/metrics" 2>/dev/null || python3 -c "
import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())" \
  "http://127.0.0.1:$metrics_port/metrics"; }
rcs=()
for p in "${worker_pids[@]}"; do
  wait "$p"
  rcs+=($?)
done
worker_pids=()
secs=$(( ($(date +%s%N) - t0) / 1000000 ))
wait "$wait_pid"
wait_rc=$?
[ "${rcs[*]}" = "$(printf '0 %.0s' $(seq "$world") | sed 's/ $//')" ] ||
  fail "workers exit 0 when the job ends by itself: ${rcs[*]}"
for rank in $(seq 0 $((world - 1))); do
  grep -q "trained $STEPS steps" "$tmp/w$rank.out" || fail "rank $rank: no 'trained $STEPS steps'"
  grep -q "released: job finished: every rank finished its training" "$tmp/w$rank.out" ||
    fail "rank $rank: not released as finished: $(tail -n 2 "$tmp/w$rank.out")"
done
[ "$wait_rc" -eq 0 ] || fail "hgridctl wait exits $wait_rc, want 0: $(cat "$tmp/wait.err")"
python3 -c '
import json, sys
o = json.load(open(sys.argv[1]))
sys.exit(0 if o["state"] == "finished" and o["ended_unix_ms"] and not o["timed_out"] else 1)' \
  "$tmp/wait.json" || fail "wait --json: $(cat "$tmp/wait.json")"
ctl list | grep -qE '^ends +finished +1 +0/'"$world"' +20[0-9-]+ [0-9:]+ UTC$' ||
  fail "list: $(ctl list)"
text=$(scrape)
echo "$text" | grep -qE "^gridd_job_step\{job=\"ends\",module=\"llm\"\} $STEPS$" ||
  fail "metrics: llm step $STEPS: $(echo "$text" | grep gridd_job_step)"
echo "$text" | grep -qE '^gridd_job_loss\{job="ends",module="llm"\} [0-9.]+(e[-+][0-9]+)?$' ||
  fail "metrics: the llm's loss: $(echo "$text" | grep gridd_job_loss)"
ctl watch ends --once | grep -qE '^llm +[0-9-]+ +[0-9]/[0-9] +'"$STEPS"' +[0-9]+\.[0-9]{4} ' ||
  fail "watch: the llm's loss at step $STEPS: $(ctl watch ends --once | sed -n 5,7p)"
stop_gridd || fail "gridd did not stop cleanly"
echo "job ends: $world worker(s) trained $STEPS steps and exited 0 by themselves in $((secs / 1000)).$(( secs % 1000 / 100 )) s"
[ "$failures" -eq 0 ] && echo "job_ends: all passed" || echo "job_ends: $failures failed"
[ "$failures" -eq 0 ]
