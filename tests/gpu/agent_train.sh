#!/usr/bin/env bash
# GPU test (make test-gpu): workers through hgrid-agent.
#   1 GPU: a one-GPU job (config tiny, fp32) whose worker reaches gridd
#     through the host's agent (HGRID_AGENT_SOCKET) trains its steps, the
#     agent sends one HostHello, and a cancel ends the worker with exit 0.
#   4 GPUs (skipped with fewer): llm-only tp 2 x dp 2 workers (communicators
#     and self-test, no training) through the agent; rank 0 is killed: the
#     agent reports it, the others get Abort within 1 s; its replacement
#     joins and the new generation keeps every communicator without rank 0:
#     rank 3 keeps both of its (tp [2,3], dp [1,3]), rank 1 keeps dp [1,3],
#     rank 2 keeps tp [2,3]; every self-test passes again.
# Without a GPU it prints "SKIP: ..." and exits 77.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
bin=${HGRID_BIN:-bin}
export NCCL_NVLS_ENABLE=0 # never NVLink multicast on shared hosts
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
if [ "${gpus:-0}" -lt 1 ]; then
  echo "SKIP: agent_train needs a GPU (nvidia-smi lists none)"
  exit 77
fi
tmp=$(mktemp -d --suffix=.hgrid-agent)
# shellcheck source=tests/gpu/comm_lib.sh
. tests/gpu/comm_lib.sh
agent_pid=""
trap 'comm_cleanup; [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
trap 'exit 1' TERM INT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

export HGRID_AGENT_SOCKET=$tmp/agent/agent.sock
start_agent() { # GPUS
  "$bin/hgrid-agent" --socket "$HGRID_AGENT_SOCKET" --gpus "$1" -v 2>>"$tmp/agent.log" &
  agent_pid=$!
  wait_until 10 test -S "$HGRID_AGENT_SOCKET" || { fail "hgrid-agent did not start"; return 1; }
}
stop_agent() { kill "$agent_pid" && wait "$agent_pid"; local rc=$?; agent_pid=""; return $rc; }

# ---- one GPU: trains through the agent and ends
start_gridd 5 || exit 1
start_agent 1 || exit 1
# shellcheck disable=SC2046 # config_flags prints separate flags
token=$(ctl submit --job one --llm-only --llm-tp 1 --llm-dp 1 --micro-batch-size 16 \
  --global-batch-size 16 $(config_flags tiny) 2>/dev/null) || { fail "submit one"; exit 1; }
start_worker one "$token" 0 "$tmp/one.out" --comm-timeout 30 --bw-bytes 0 --config tiny --seed 1 \
  --steps 300 --fp32
if wait_until 120 grep -q 'step *300 | loss' "$tmp/one.out"; then
  first=$(awk '/step +[0-9]+ \| loss /{print $7; exit}' "$tmp/one.out")
  last=$(awk '/step +[0-9]+ \| loss /{l=$7} END{print l}' "$tmp/one.out")
  awk -v a="$first" -v b="$last" 'BEGIN{exit !(b < a)}' ||
    fail "one GPU: the loss did not fall ($first -> $last)"
  echo "  one GPU through the agent: 300 steps, loss $first -> $last"
else
  fail "one GPU: no step 300 within 120 s: $(tail -3 "$tmp/one.out")"
fi
ctl cancel one >/dev/null
wait "${worker_pids[0]}"; rc=$?
[ "$rc" -eq 0 ] || fail "one GPU: the worker exited $rc after the cancel"
worker_pids=()
[ "$(grep -c 'HostHello sent for job one: 1 workers' "$tmp/agent.log")" -eq 1 ] ||
  fail "one GPU: the agent did not send exactly one HostHello"
stop_agent || fail "hgrid-agent did not exit 0"
stop_gridd || fail "gridd did not exit 0"

# ---- four GPUs: a rank replaced rebuilds only its communicators
if [ "$gpus" -lt 4 ]; then
  echo "SKIP: the partial rebuild part needs 4 GPUs ($gpus here)"
else
  start_gridd 5 || exit 1
  start_agent 4 || exit 1
  token=$(ctl submit --job four --llm-only --llm-tp 2 --llm-dp 2 --micro-batch-size 2 \
    --global-batch-size 4 2>/dev/null) || { fail "submit four"; exit 1; }
  for r in 0 1 2 3; do start_worker four "$token" "$r" "$tmp/four.$r.out" --comm-timeout 30; done
  tested() { [ "$(ctl status four | grep -c '^    self-test ')" -ge 4 ]; }
  wait_until 60 tested || fail "four: the job did not form and self-test"
  t0=$(date +%s%N)
  kill -9 "${worker_pids[0]}"
  for r in 1 2 3; do
    wait_until 1 grep -q "generation 1 aborted" "$tmp/four.$r.out" ||
      fail "four: rank $r did not get the Abort within 1 s of rank 0's death"
  done
  echo "  four GPUs: rank 0 killed -> Abort at ranks 1-3 after $(ms_since "$t0") ms"
  RANK=0 LOCAL_RANK=0 "$bin/hgrid-worker" --coordinator "127.0.0.1:$port" --job four \
    --token "$token" --use-launcher-rank --comm-timeout 30 >"$tmp/four.0.b.out" 2>&1 &
  worker_pids[0]=$!
  declare -A want=([1]=1 [2]=1 [3]=2)
  for r in 1 2 3; do
    if wait_until 60 grep -q "communicators rebuilt" "$tmp/four.$r.out"; then
      got=$(sed -n 's/.*communicators rebuilt: \([0-9]*\) kept.*/\1/p' "$tmp/four.$r.out" | tail -1)
      [ "$got" = "${want[$r]}" ] || fail "four: rank $r kept $got communicators, not ${want[$r]}"
    else
      fail "four: rank $r did not rebuild: $(tail -2 "$tmp/four.$r.out")"
    fi
  done
  retested() { [ "$(grep -c 'generation 2' "$tmp"/four.[123].out | awk -F: '{s+=$2} END{print s}')" -ge 3 ]; }
  wait_until 60 retested || fail "four: generation 2 did not self-test at ranks 1-3"
  ctl cancel four >/dev/null
  for p in "${worker_pids[@]}"; do wait "$p" || fail "four: a worker exited non-zero after the cancel"; done
  worker_pids=()
  stop_agent || fail "hgrid-agent did not exit 0"
  stop_gridd || fail "gridd did not exit 0"
fi
[ "$failures" -eq 0 ] && echo "agent_train: passed" && exit 0
echo "agent_train: $failures failure(s); logs:"; tail -n 5 "$tmp"/*.out "$tmp/agent.log"
exit 1
