#!/usr/bin/env bash
# GPU test (make test-gpu, 2 GPUs): a worker lost while training. An
# encoder | llm job (config tiny, fp32, checkpoints every 200 steps) on
# gridd with a 3 s heartbeat timeout:
#   kill -9 of the encoder: gridd sees the connection close, aborts the
#     generation, the LLM worker aborts its communicators mid-step;
#   SIGSTOP of the encoder (a hung host: the connection stays open, no
#     heartbeats): gridd notices within the timeout, the same follows.
# Each time the worker is restarted with its rank, generation N+1 forms
# with fresh ids and training resumes from the latest checkpoint with the
# losses of the uninterrupted steps (identical in fp32). Then kill -9 of
# gridd (--state-dir): the workers train on while it is away (NCCL
# carries the data), reconnect to the restarted gridd and carry on in the
# same generation. Prints the detection, resume and reconnect times.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
bin=${HGRID_BIN:-bin}
export NCCL_NVLS_ENABLE=0
tmp=$(mktemp -d --suffix=.hgrid-kill)
# shellcheck source=tests/gpu/comm_lib.sh
. tests/gpu/comm_lib.sh
trap 'comm_cleanup; [ -n "${HGRID_KEEP_LOGS:-}" ] && cp -r "$tmp"/. "$HGRID_KEEP_LOGS"/; rm -rf "$tmp"' EXIT
trap 'exit 1' TERM INT

gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
if [ "$gpus" -lt 1 ]; then
  echo "train_kill: no GPU here"
  exit 1
elif [ "$gpus" -lt 2 ]; then
  echo "SKIP: train_kill needs 2 GPUs ($gpus here)"
  exit 77
fi
STEPS=4000
TRAIN=(--comm-timeout 30 --bw-bytes 0 --config tiny --seed 1 --steps "$STEPS" --fp32
       --save "$tmp/ck" --save-interval 200)
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
# losses FILE: "step loss" for every step line.
losses() { awk '/step +[0-9]+ \| loss / {print $4, $7}' "$1"; }

start_gridd 3 --state-dir "$tmp/state" || exit 1
token=$(ctl submit --job kill --encoder-tp 1 --encoder-dp 1 --llm-tp 1 --llm-dp 1 \
  --micro-batch-size 16 --global-batch-size 16 $(config_flags tiny) 2>/dev/null) || exit 1
start_worker kill "$token" 0 "$tmp/enc.0.out" "${TRAIN[@]}"
start_worker kill "$token" 1 "$tmp/llm.out" "${TRAIN[@]}"

# drill GEN HOW: waits for some progress in generation GEN, fails the
# encoder (kill -9 or SIGSTOP), measures until the LLM worker aborted,
# restarts the encoder and measures until generation GEN+1 trains.
drill() {
  local gen=$1 how=$2 t0 steps_before
  steps_before=$(losses "$tmp/llm.out" | wc -l)
  wait_until 60 eval '[ "$(losses "$tmp/llm.out" | wc -l)" -ge $((steps_before + 500)) ]' ||
    { fail "generation $gen did not train 500 steps"; return; }
  t0=$(date +%s%N)
  if [ "$how" = stop ]; then kill -STOP "${worker_pids[0]}"; else kill -9 "${worker_pids[0]}"; fi
  if ! wait_until 10 grep -q "generation $gen aborted" "$tmp/llm.out"; then
    fail "$how: the LLM worker did not abort generation $gen within 10 s"; return
  fi
  local detect
  detect=$(ms_since "$t0")
  kill -9 "${worker_pids[0]}" 2>/dev/null
  wait "${worker_pids[0]}" 2>/dev/null
  RANK=0 LOCAL_RANK=0 "$bin/hgrid-worker" --coordinator "127.0.0.1:$port" --job kill \
    --token "$token" --use-launcher-rank "${TRAIN[@]}" >"$tmp/enc.$gen.out" 2>&1 &
  worker_pids[0]=$!
  local lines
  lines=$(wc -l <"$tmp/llm.out")
  if ! wait_until 60 eval "tail -n +$lines \"\$tmp/llm.out\" | grep -q 'step .*| loss'"; then
    fail "$how: generation $((gen + 1)) did not train within 60 s"; return
  fi
  printf '  %-8s gridd and the survivor aborted after %5d ms; generation %d trained %5d ms after the failure\n' \
    "$how" "$detect" $((gen + 1)) "$(ms_since "$t0")"
}
# gridd_drill: kill -9 of gridd for 2 s during generation 3.
gridd_drill() {
  local before during t0
  before=$(losses "$tmp/llm.out" | wc -l)
  t0=$(date +%s%N)
  kill -9 "$gridd_pid"
  wait "$gridd_pid" 2>/dev/null
  sleep 2
  during=$(( $(losses "$tmp/llm.out" | wc -l) - before ))
  [ "$during" -gt 100 ] || fail "gridd away: only $during steps trained in 2 s"
  GRIDD_LISTEN=127.0.0.1:$port start_gridd 3 --state-dir "$tmp/state" || { fail "gridd did not restart"; return; }
  if ! wait_until 30 eval 'ctl status kill 2>/dev/null | grep -q "running, generation 3"'; then
    fail "the restarted gridd did not carry generation 3 on"; ctl status kill; return
  fi
  grep -q "generation 3 aborted" "$tmp/llm.out" && fail "generation 3 was aborted"
  printf '  %-8s %d steps trained while gridd was away 2 s; generation 3 carried on %5d ms after the kill\n' \
    gridd "$during" "$(ms_since "$t0")"
}
echo "== a worker lost during training (2 GPUs, heartbeat timeout 3 s)"
drill 1 kill
drill 2 stop
gridd_drill
wait_until 120 grep -q "trained $STEPS steps" "$tmp/llm.out" || fail "the job did not reach step $STEPS"
ctl cancel kill >/dev/null 2>&1
wait_workers

# Every step number printed more than once (the resumed ones) has one loss.
dups=$(losses "$tmp/llm.out" | sort -n | uniq | awk '{print $1}' | uniq -d | wc -l)
resumed=$(losses "$tmp/llm.out" | awk '{print $1}' | sort -n | uniq -d | wc -l)
[ "$resumed" -gt 0 ] || fail "no step was repeated: training did not resume from a checkpoint"
[ "$dups" -eq 0 ] || fail "$dups resumed steps have a loss unlike the uninterrupted run's"
last=$(losses "$tmp/llm.out" | tail -n 1)
echo "  resumed steps recomputed: $resumed, all with the uninterrupted losses; last: step ${last% *}"
[ "$(grep -c "gridd: warn job=.* generation aborted" "$tmp/gridd.log")" -eq 2 ] ||
  fail "gridd did not abort exactly 2 generations"
[ "$failures" -eq 0 ] || { grep -h "hgrid-worker:" "$tmp"/*.out | tail -n 8; exit 1; }
echo "train_kill: all passed"
