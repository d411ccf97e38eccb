#!/usr/bin/env bash
# Benchmark (make bench, 4 GPUs): scaling of the hetero training step.
# Tokens/s of config small (bf16) on 4 GPUs through gridd, against 4 x
# the single-GPU trainer's tokens/s for the same model and global batch
# in the same run (scaling efficiency), for two layouts: encoder tp1 dp2
# + llm tp2 (the issue's) and encoder on 1 GPU + llm dp3 (balanced to
# the modules' work); then each rank's time in communication per step,
# every operation timed alone (--profile-comm). Medians over steps
# 6..STEPS. Skips (exit 77, saying so) with fewer than 4 GPUs. Cases 3-5
# give the layouts micro-batches of 8 and 16: one GPU's throughput grows
# with the batch (small on an H200: 177K tokens/s at 2 sequences, 260K
# at 4, 342K at 8, 399K at 16, 410K at 24), so small micro-batches cost
# each rank more than its communication does. HGRID_SCALING_CASES picks
# some (default "1 2 3 4 5"); HGRID_SCALING_FLAGS adds worker flags (e.g.
# --dp-overlap).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
bin=${HGRID_BIN:-bin}
export NCCL_NVLS_ENABLE=0
CONFIG=${HGRID_SCALING_CONFIG:-small} STEPS=${HGRID_SCALING_STEPS:-30}
CASES=${HGRID_SCALING_CASES:-1 2 3 4 5}
read -r -a EXTRA <<<"${HGRID_SCALING_FLAGS:-}"
tmp=$(mktemp -d --suffix=.hgrid-scaling)
# shellcheck source=tests/gpu/comm_lib.sh
. tests/gpu/comm_lib.sh
trap 'comm_cleanup; rm -rf "$tmp"' EXIT
trap 'exit 1' TERM INT

gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
if [ "$gpus" -lt 4 ]; then
  echo "SKIP: train_scaling needs 4 GPUs ($gpus here)"
  exit 77
fi
# median_tok FILE: the median tokens/s over steps 6..STEPS.
median_tok() {
  awk '/step +[0-9]+ \| loss / && $0 ~ /tok\/s/ {
         for (i = 1; i < NF; i++) if ($i == "step") s = $(i + 1)
         if (s > 5) print $(NF - 1) }' "$1" | sort -n |
    awk '{v[NR] = $1} END {if (NR) print v[int((NR + 1) / 2)]; else print 0}'
}
# hetero PREFIX EXTRA...: one 4-GPU job of the layout in
# ${LAYOUT[@]}; 0 when every worker trained.
hetero() {
  local prefix=$1 token r
  shift
  start_gridd 30 || return 1
  # shellcheck disable=SC2046 # config_flags prints separate flags
  token=$(ctl submit --job scaling "${LAYOUT[@]}" $(config_flags "$CONFIG") 2>/dev/null) || return 1
  for r in 0 1 2 3; do
    start_worker scaling "$token" "$r" "$tmp/$prefix.$r.out" --comm-timeout 60 --bw-bytes 0 \
      --config "$CONFIG" --seed 1 "${EXTRA[@]}" "$@"
  done
  wait_until 600 eval '[ "$(grep -l "trained" "$tmp/$prefix".*.out | wc -l)" -eq 4 ]'
  ctl cancel scaling >/dev/null 2>&1
  wait_workers
  stop_gridd
  [ "$(grep -l 'trained' "$tmp/$prefix".*.out | wc -l)" -eq 4 ]
}

# measure NAME GLOBAL-BATCH LAYOUT-FLAGS...: the single GPU at that batch,
# the 4-GPU job, and the profiled 4-GPU job; prints the results.
measure() {
  local name=$1 batch=$2 r one four
  shift 2
  LAYOUT=("$@" --global-batch-size "$batch")
  CUDA_VISIBLE_DEVICES=0 "$bin/hgrid-worker" --single-gpu --config "$CONFIG" --steps "$STEPS" --batch "$batch" \
    >"$tmp/single.out" 2>&1 || { echo "train_scaling: hgrid-worker --single-gpu failed"; tail -n 3 "$tmp/single.out"; return 1; }
  hetero step --steps "$STEPS" ||
    { echo "train_scaling: the 4-GPU job failed"; tail -n 3 "$tmp"/step.*.out; return 1; }
  hetero prof --steps 15 --profile-comm ||
    { echo "train_scaling: the profiled job failed"; tail -n 3 "$tmp"/prof.*.out; return 1; }
  one=$(median_tok "$tmp/single.out") four=$(median_tok "$tmp/step.3.out")
  echo "== $name: config $CONFIG, bf16, global batch $batch${EXTRA[*]:+, worker flags ${EXTRA[*]}}"
  awk -v one="$one" -v four="$four" 'BEGIN {
    printf "  1 GPU (--single-gpu, batch %s):      %10.0f tokens/s\n", "'"$batch"'", one
    printf "  4 GPUs:                              %10.0f tokens/s\n", four
    printf "  scaling efficiency (4 GPUs / (4 x 1 GPU)): %.1f%%\n", 100 * four / (4 * one) }'
  echo "  communication per step (each operation timed alone; waits for the peer included):"
  for r in 0 1 2 3; do
    printf '    %s\n' "$(grep -h -o 'rank [0-9]*: communication.*' "$tmp/prof.$r.out")"
  done
}

echo "train_scaling: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1), $(date -u +%F)"
status=0
for c in $CASES; do
  case $c in
    1) measure "encoder tp1 dp2 + llm tp2, 4 micro-batches" 16 --encoder-tp 1 --encoder-dp 2 \
         --llm-tp 2 --llm-dp 1 --micro-batch-size 4 || status=1 ;;
    2) measure "encoder 1 GPU + llm dp3, 2 micro-batches per llm rank" 24 --encoder-tp 1 \
         --encoder-dp 1 --llm-tp 1 --llm-dp 3 --micro-batch-size 4 || status=1 ;;
    3) measure "encoder 1 GPU + llm dp3, 2 micro-batches of 8 per llm rank" 48 --encoder-tp 1 \
         --encoder-dp 1 --llm-tp 1 --llm-dp 3 --micro-batch-size 8 || status=1 ;;
    4) measure "encoder 1 GPU + llm dp3, 2 micro-batches of 16 per llm rank" 96 --encoder-tp 1 \
         --encoder-dp 1 --llm-tp 1 --llm-dp 3 --micro-batch-size 16 || status=1 ;;
    5) measure "encoder tp1 dp2 + llm tp2, 4 micro-batches of 8" 32 --encoder-tp 1 \
         --encoder-dp 2 --llm-tp 2 --llm-dp 1 --micro-batch-size 8 || status=1 ;;
    *) echo "train_scaling: unknown case '$c' in HGRID_SCALING_CASES (use 1 to 5)"; exit 2 ;;
  esac
done
exit $status
