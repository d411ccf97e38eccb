#!/usr/bin/env bash
# The main job (make demo): gridd on an ephemeral port with a private
# control socket, a job, one hgrid-worker per rank, `hgridctl watch`, then
# cancel and stop.
#
# With GPUs: a hetero training, encoder + LLM over every local GPU, its loss
# falling (hgridctl watch shows it live per module and rank; the LLM's last
# rank prints it per step). Layout by GPU count: 2 encoder | llm; 4 encoder
# tp1 dp2 + llm tp2; 8 encoder tp2 dp2 + llm tp2 pp2 (1F1B over 4
# micro-batches); other counts use the largest of these that fits. With 1
# GPU the hetero layout (encoder and LLM on disjoint GPUs) cannot run, so
# hgrid-worker --single-gpu trains both modules on it without gridd, saying so.
# Without GPUs: the coordination demo, saying so: dry-run workers on 2 fake
# hosts run the whole protocol (ranks, groups, ids minted by group
# leaders (random bytes: no communicator forms), heartbeats) on the default layout (encoder tp2 dp2 + llm tp2 dp2).
# Arguments are layout flags replacing the chosen layout (with GPUs, when
# the layout fits them).
#
# Environment: HGRID_DEMO_CONFIG (model, default tiny), HGRID_DEMO_STEPS
# (default 1000), HGRID_DEMO_GPUS (this GPU count instead of nvidia-smi's),
# HGRID_DEMO_DRY_RUN=1 (the GPU branch with --dry-run workers in place of
# the training flags: checks its layouts and command lines without GPUs).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${HGRID_BIN:-bin}
for p in gridd hgridctl hgrid-worker; do
  [ -x "$bin/$p" ] || { echo "demo: $bin/$p is missing; run 'make' first" >&2; exit 1; }
done
# shellcheck source=scripts/config_flags.sh
. scripts/config_flags.sh
config=${HGRID_DEMO_CONFIG:-tiny}
dry_check=${HGRID_DEMO_DRY_RUN:-0}
steps=${HGRID_DEMO_STEPS:-$([ "$dry_check" = 1 ] && echo 4 || echo 1000)}
export NCCL_NVLS_ENABLE=0 # no NVLink multicast on shared hosts
tmp=$(mktemp -d --suffix=.hgrid-demo)
gridd_pid="" watch_pid="" worker_pids=()
cleanup() {
  local p
  for p in "${worker_pids[@]}" $watch_pid; do kill "$p" 2>/dev/null || true; done
  [ -n "$gridd_pid" ] && kill "$gridd_pid" 2>/dev/null && wait "$gridd_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ctl() { "$bin/hgridctl" --socket "$tmp/gridd.sock" "$@"; }
world_of() {
  "$bin/hgridctl" plan --json "$@" | python3 -c 'import json,sys; print(json.load(sys.stdin)["world_size"])'
}

if [ -n "${HGRID_DEMO_GPUS:-}" ]; then
  gpus=$HGRID_DEMO_GPUS
else
  gpus=0
  command -v nvidia-smi >/dev/null 2>&1 && gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
fi

# ---- the layout and the workers' mode
layout=("$@")
if [ "$#" -eq 0 ]; then
  if [ "$gpus" -ge 8 ]; then
    layout=(--encoder-tp 2 --encoder-dp 2 --llm-tp 2 --llm-pp 2 --llm-dp 1 --micro-batch-size 4
            --global-batch-size 16)
  elif [ "$gpus" -ge 4 ]; then
    layout=(--encoder-tp 1 --encoder-dp 2 --llm-tp 2 --llm-dp 1 --micro-batch-size 16
            --global-batch-size 16)
  elif [ "$gpus" -ge 2 ]; then
    layout=(--encoder-tp 1 --encoder-dp 1 --llm-tp 1 --llm-dp 1 --micro-batch-size 16
            --global-batch-size 16)
  fi
fi
world=$(world_of "${layout[@]}")
if [ "$gpus" -eq 1 ] && [ "$#" -eq 0 ]; then
  mode=single
elif [ "$gpus" -ge 2 ] && [ "$world" -le "$gpus" ]; then
  mode=train
else
  mode=coordination
fi

# ---- 1 GPU: hgrid-worker --single-gpu, both modules on the one GPU
# every_tenth FILE: the step lines of steps 1, N/10, 2N/10, ..., N.
every_tenth() {
  awk -v n="$steps" '/step +[0-9]+ \| loss / {
      for (i = 1; i < NF; i++) if ($i == "step") s = $(i + 1)
      if (s == 1 || s == n || s % int((n + 9) / 10) == 0) print "   " $0 }' "$1"
}

# loss_fell FILE: says how the loss moved from the first step to the last; 1 if it did not fall.
loss_fell() {
  awk '/step +[0-9]+ \| loss / { for (i = 1; i < NF; i++) if ($i == "loss") l = $(i + 1)
                                 if (!n++) first = l; last = l }
       END { if (n < 2) { print "   no loss lines"; exit 1 }
             printf "   the loss fell from %s (first step) to %s (step %d)%s\n", first, last, n,
                    last < first ? "" : ": NOT falling"
             exit !(last < first) }' "$1"
}

if [ "$mode" = single ]; then
  echo "== 1 GPU: the hetero layout needs 2 (encoder and LLM on disjoint GPUs), so the"
  echo "   workers' training step runs both modules on GPU 0, without gridd:"
  echo "   hgrid-worker --single-gpu --config $config --steps $steps"
  if [ "$dry_check" = 1 ]; then
    echo "   (HGRID_DEMO_DRY_RUN: its flags checked with --describe, no training)"
    "$bin/hgrid-worker" --single-gpu --config "$config" --steps "$steps" --describe | sed 's/^/   /'
    exit 0
  fi
  CUDA_VISIBLE_DEVICES=0 "$bin/hgrid-worker" --single-gpu --config "$config" --steps "$steps" \
    >"$tmp/single.out" 2>&1 || { tail -n 5 "$tmp/single.out" >&2; exit 1; }
  head -n 1 "$tmp/single.out" | sed 's/^/   /'
  every_tenth "$tmp/single.out"
  loss_fell "$tmp/single.out"
  exit
fi

# ---- gridd and the job
# Training workers beat once per step; gridd allows 30 s of silence so a
# slow first step (memory, cuBLAS setup) is not taken for a lost worker.
hb_timeout=3
[ "$mode" = train ] && hb_timeout=30
[ "$mode" = train ] && [ "$dry_check" = 1 ] && hb_timeout=1.5
echo "== gridd: listening on an ephemeral port, control socket $tmp/gridd.sock"
"$bin/gridd" --listen 127.0.0.1:0 --port-file "$tmp/port" --control "$tmp/gridd.sock" \
  --heartbeat-timeout "$hb_timeout" 2>"$tmp/gridd.log" &
gridd_pid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
[ -s "$tmp/port" ] || { echo "demo: gridd did not start:" >&2; cat "$tmp/gridd.log" >&2; exit 1; }
port=$(cat "$tmp/port")

echo "== hgridctl submit --job demo ${layout[*]:-(the default layout)} ($world ranks)"
"$bin/hgridctl" plan "${layout[@]}" | sed -n '2,3p'
# shellcheck disable=SC2046 # config_flags prints separate flags
HGRID_TOKEN=$(ctl submit --job demo "${layout[@]}" $(config_flags "$config") 2>/dev/null)
export HGRID_TOKEN # the workers read it from the environment, out of ps's sight

worker_flags=()
if [ "$mode" = train ]; then
  train_flags=(--config "$config" --steps "$steps")
  echo "== workers: $world on GPUs 0-$((world - 1)) of this machine ($HOSTNAME; $gpus GPUs): each forms"
  echo "   its NCCL communicators, self-tests them, trains $steps steps of config $config and"
  echo "   reports every step to gridd:"
  echo "   RANK=i LOCAL_RANK=i hgrid-worker --coordinator 127.0.0.1:$port --job demo" \
       "--use-launcher-rank --heartbeat-timeout $hb_timeout ${train_flags[*]}"
  if [ "$dry_check" = 1 ]; then
    echo "   (HGRID_DEMO_DRY_RUN: --dry-run --steps $steps in place of ${train_flags[*]}: no GPU,"
    echo "   no training)"
    train_flags=(--dry-run --steps "$steps" --step-ms 250)
  fi
  for i in $(seq 0 $((world - 1))); do
    RANK=$i LOCAL_RANK=$i "$bin/hgrid-worker" --coordinator "127.0.0.1:$port" --job demo \
      --use-launcher-rank --heartbeat-timeout "$hb_timeout" "${train_flags[@]}" \
      >"$tmp/worker$i.out" 2>&1 &
    worker_pids+=($!)
  done
else
  if [ "$gpus" -eq 0 ]; then
    echo "== workers: no GPU on this machine, so these are $world DRY-RUN workers"
  else
    echo "== workers: $gpus GPU(s) here and the layout needs $world, so these are $world DRY-RUN workers"
  fi
  echo "   on 2 fake hosts, demo-0 and demo-1: the whole protocol (ranks, groups, ids (random"
  echo "   bytes) minted by group leaders, heartbeats), no GPU work and no training"
  per_host=$(( (world + 1) / 2 ))
  for i in $(seq 0 $((world - 1))); do
    "$bin/hgrid-worker" --coordinator "127.0.0.1:$port" --job demo --host "demo-$((i / per_host))" \
      --device $((i % per_host)) --dry-run >"$tmp/worker$i.out" 2>&1 &
    worker_pids+=($!)
  done
fi

# min_step: the lowest step any rank reported (0 until every rank has one).
min_step() {
  ctl watch demo --once --json 2>/dev/null | python3 -c '
import json, sys
ws = json.load(sys.stdin)["workers"]
print(min(w["step"] or 0 for w in ws) if len(ws) == int(sys.argv[1]) else 0)' "$world" || echo 0
}
# a_worker_exited: true once any worker process is gone (it failed: they run until released).
a_worker_exited() {
  local p
  for p in "${worker_pids[@]}"; do kill -0 "$p" 2>/dev/null || return 0; done
  return 1
}
# wait_steps N: until every rank reported step N; 1 (saying why) if a worker
# exited first or no rank moved on for 300 s (forming communicators included).
wait_steps() {
  local now last=-1 since=$SECONDS
  while now=$(min_step) && [ "$now" -lt "$1" ]; do
    if a_worker_exited; then
      [ "$(min_step)" -ge "$1" ] && return 0 # the job finished and released them
      echo "demo: a worker exited before every rank reached step $1" >&2
      return 1
    fi
    [ "$now" -ne "$last" ] && last=$now since=$SECONDS
    if [ $((SECONDS - since)) -gt 300 ]; then
      echo "demo: no progress for 300 s (every rank at step $now or later)" >&2
      return 1
    fi
    sleep 0.2
  done
}

status=0
if [ "$mode" = train ]; then
  echo
  echo "== hgridctl watch demo (every second until the job ends: every rank reports done"
  echo "   after its last step, then gridd finishes the job and releases the workers)"
  ctl watch demo --interval 1 &
  watch_pid=$!
  wait_steps "$steps" || status=1
  [ "$status" -eq 0 ] && { ctl wait demo --timeout 60 >/dev/null || status=1; }
  [ "$status" -eq 0 ] || ctl cancel demo >/dev/null
  wait "$watch_pid" || status=1
  watch_pid=""
  if [ "$status" -ne 0 ]; then
    echo "demo: training did not finish; the end of each worker's output:" >&2
    for i in $(seq 0 $((world - 1))); do tail -n 3 "$tmp/worker$i.out" | sed "s/^/   rank $i: /" >&2; done
  fi
  echo
  if [ "$dry_check" = 1 ]; then
    echo "== each worker's assignment (rank, module, coordinates)"
    grep -h ': job demo generation' "$tmp"/worker*.out | sort -t' ' -k7,7n
  elif [ "$status" -eq 0 ]; then
    echo "== the loss, printed by rank $((world - 1)) (the LLM's last stage, where it is computed)"
    every_tenth "$tmp/worker$((world - 1)).out"
    loss_fell "$tmp/worker$((world - 1)).out" || status=1
  fi
else
  wait_steps 2 || status=1
  echo
  echo "== each worker's assignment (rank, module, coordinates)"
  grep -h ': job demo generation' "$tmp"/worker*.out | sort -t' ' -k7,7n
  echo
  echo "== rank 0 in full: its groups (members derived by the layout engine) and NCCL ids"
  cat "$(grep -l ': rank 0 of' "$tmp"/worker*.out | head -1)"
  echo
  echo "== hgridctl watch demo --once (dry-run workers: steps are heartbeats, no loss)"
  ctl watch demo --once
  echo
  echo "== hgridctl cancel demo"
  ctl cancel demo
fi

for p in "${worker_pids[@]}"; do wait "$p" || status=1; done
worker_pids=()
[ "$status" -eq 0 ] && echo "   every worker was released and exited 0"
kill "$gridd_pid" && wait "$gridd_pid" || status=1
gridd_pid=""
echo "== gridd stopped; its log:"
sed 's/^/   /' "$tmp/gridd.log"
exit "$status"
