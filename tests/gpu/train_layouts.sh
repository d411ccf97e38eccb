#!/usr/bin/env bash
# GPU test (make test-gpu): distributed training gives one GPU's losses
# (hgrid-worker --single-gpu). The same global batch and seed (config tiny, batch 16,
# seed 1, 20 steps) on 1 GPU (--single-gpu), on 2 GPUs (encoder | llm) and
# on the 4-GPU layouts encoder tp1 dp2 + llm tp2 and encoder tp2 + llm pp2:
# losses equal within 1e-4 relative in fp32 and 2e-2 in bf16, and falling.
# The 1F1B pipeline (4 micro-batches) on encoder tp2 + llm pp2 against
# encoder | llm with the same micro-batches. Checkpoints: 10 steps saved
# every 5, resumed to 20, give the uninterrupted run's losses exactly
# (fp32); loading them into another layout is refused with a clear error.
# Mixture of experts (tiny-moe: 8 experts, top-2) with the experts sharded
# over ep (all-to-all on the GPUs): encoder tp2 + llm dp2 ep2 and encoder
# dp2 + llm tp2 ep2 against encoder | llm over the same two micro-batches
# of 8 (the load-balancing loss is per micro-batch, so the reference must
# see the same token sets). In bf16 an MoE run may route a token to
# another expert than its reference when two router probabilities are
# within rounding, a discrete change the following steps carry on, so MoE
# layouts get 5e-2 in bf16 (fp32 stays at 1e-4). On two GPUs, LLM-only: dp2 ep2 and tp2 ep2
# against one LLM rank over the same two micro-batches.
# And the hetero layout learns: 1500 bf16 steps of encoder tp1 dp2 + llm
# tp2 end with a mean caption loss below the text-only floor, which only
# image information crossing the bridge allows.
# --dp-overlap (gradients of the weight matrices reduced during the last
# backward) on llm dp2 and encoder dp2 + llm tp2 gives the same losses.
# Colocated layouts (--mimo-layout colocated: both modules on every GPU,
# the hand-off a re-sharding between the encoder's dp and the LLM's): one
# GPU, encoder dp2 / llm tp2 and encoder tp2 dp2 / llm tp4 against
# --single-gpu; encoder tp2 / llm dp2
# and encoder tp2 dp2 / llm tp2 dp2 against encoder | llm over the same two
# micro-batches; a colocated checkpoint resumes exactly. Two encoders
# (--encoder vision:... --encoder audio:...): one GPU's
# --single-gpu --encoders 2 learns, and vision | audio | llm, vision +
# audio | llm tp2 and vision dp2 + audio tp2 | llm tp2 give its losses.
# Layouts that need more GPUs than the host has are skipped, saying so.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
bin=${HGRID_BIN:-bin}
export NCCL_NVLS_ENABLE=0 # never NVLink multicast on shared hosts
tmp=$(mktemp -d --suffix=.hgrid-layouts)
# shellcheck source=tests/gpu/comm_lib.sh
. tests/gpu/comm_lib.sh
# HGRID_KEEP_LOGS=DIR keeps every worker's and gridd's output there.
trap 'comm_cleanup; [ -n "${HGRID_KEEP_LOGS:-}" ] && cp -r "$tmp"/. "$HGRID_KEEP_LOGS"/; rm -rf "$tmp"' EXIT
trap 'exit 1' TERM INT

STEPS=20
MODEL=(--config tiny --seed 1)
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
failures=0 summary=()
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# losses FILE: "step loss" per step line (--single-gpu's and the workers').
losses() {
  awk '/step +[0-9]+ \| loss / {
         for (i = 1; i < NF; i++) if ($i == "step") s = $(i + 1)
         for (i = 1; i < NF; i++) if ($i == "loss") print s, $(i + 1) }' "$1"
}

# worst_rel GOT WANT: the largest relative loss difference over the steps
# both printed, or "missing" unless both have STEPS steps.
worst_rel() {
  paste -d' ' <(losses "$1") <(losses "$2") | awk -v n="$STEPS" '
    NF == 4 && $1 == $3 { k++; d = $2 - $4; if (d < 0) d = -d; m = $4 < 0 ? -$4 : $4;
                          if (d / m > w) w = d / m }
    END { if (k != n) print "missing"; else printf "%.3g\n", w }'
}

# falls FILE: the last step's loss is below the first's.
falls() { losses "$1" | awk 'NR == 1 {a = $2} {b = $2} END {exit !(NR > 1 && b < a)}'; }

# compare LABEL GOT WANT TOL
compare() {
  local w
  w=$(worst_rel "$2" "$3")
  if [ "$w" = missing ] || ! awk -v w="$w" -v t="$4" 'BEGIN {exit !(w <= t)}'; then
    fail "$1: losses differ from the reference by $w relative (limit $4)"
    paste <(losses "$2") <(losses "$3") | head -n 5 | sed 's/^/    got | want: /'
  elif ! falls "$2"; then
    fail "$1: the loss did not fall over $STEPS steps"
  else
    summary+=("$(printf '%-44s max rel diff %-9s (limit %s)' "$1" "$w" "$4")")
  fi
}

all_done() { # WORLD NAME: every worker trained, or one exited
  local p
  # shellcheck disable=SC2154 # worker_pids: comm_lib.sh
  [ "$(grep -l 'trained [0-9]* steps' "$tmp/$2".*.out 2>/dev/null | wc -l)" -eq "$1" ] && return 0
  for p in "${worker_pids[@]}"; do kill -0 "$p" 2>/dev/null || return 0; done
  return 1
}

# train NAME WORKER-FLAGS... -- LAYOUT-FLAGS...: one job on local GPUs,
# cancelled once every worker trained. Sets out (the LLM's last rank's
# output, which prints the losses). 0 when every worker trained and
# exited 0, 1 on a failure, 2 when the host has too few GPUs.
train() {
  local name=$1 wflags=() world token rank config=job
  shift
  while [ "$1" != "--" ]; do
    [ "$1" = --config ] && config=$2
    wflags+=("$1"); shift
  done
  shift
  world=$(world_of "$@")
  out=$tmp/$name.$((world - 1)).out
  if [ "$world" -gt "$gpus" ]; then
    echo "SKIP $name: needs $world GPUs, $gpus here"
    summary+=("$(printf '%-44s skipped (needs %d GPUs)' "$name" "$world")")
    return 2
  fi
  echo "== $name ($world workers)"
  start_gridd 30 || return 1
  # No padding beyond --single-gpu's 128 (tiny's 256 rows on every tp here):
  # the layouts train the reference's model (llm tp 4 would pad to 512).
  # shellcheck disable=SC2046 # config_flags prints separate flags
  token=$(ctl submit --job "$name" "$@" $(config_flags "$config") \
            --make-vocab-size-divisible-by 1 2>/dev/null) ||
    { stop_gridd; return 1; }
  for rank in $(seq 0 $((world - 1))); do
    start_worker "$name" "$token" "$rank" "$tmp/$name.$rank.out" --comm-timeout 30 \
      --bw-bytes 0 "${wflags[@]}"
  done
  wait_until 300 all_done "$world" "$name"
  ctl cancel "$name" >/dev/null 2>&1
  wait_workers
  stop_gridd
  [ -z "$bad" ] && [ "$(grep -l 'trained [0-9]* steps' "$tmp/$name".*.out | wc -l)" -eq "$world" ]
}

# run_layout JOB LABEL MODE REFERENCE -- LAYOUT-FLAGS...: trains job
# JOB-MODE and compares its losses with the reference's.
run_layout() {
  local job=$1-$3 label="$2 ($3)" mode=$3 ref=$4 tol=${BF16_TOL:-2e-2} flags=()
  shift 5
  [ "$mode" = fp32 ] && tol=1e-4 flags=(--fp32)
  train "$job" "${MODEL[@]}" --steps "$STEPS" "${flags[@]}" "${WFLAGS[@]}" -- "$@"
  case $? in
    0) compare "$label" "$out" "$ref" "$tol" ;;
    1) fail "$label: training failed"; tail -n 3 "$tmp/$job".*.out ;;
  esac
}

# train_ref LABEL JOB ARGS... -- LAYOUT-FLAGS...: trains the reference of
# the runs after it; 0 when it trained, 2 when it needs more GPUs than
# here (train says so), 1 when it failed (recorded here).
train_ref() {
  local label=$1 job=$2 rc
  shift 2
  train "$job" "$@"
  rc=$?
  [ $rc -eq 1 ] && { fail "$label: training failed"; tail -n 3 "$tmp/$job".*.out; }
  return $rc
}

ENC_LLM=(--encoder-tp 1 --encoder-dp 1 --llm-tp 1 --llm-dp 1)
ENC_DP2_LLM_TP2=(--encoder-tp 1 --encoder-dp 2 --llm-tp 2 --llm-dp 1)
ENC_TP2_LLM_PP2=(--encoder-tp 2 --encoder-dp 1 --llm-tp 1 --llm-pp 2 --llm-dp 1)
ONE_MB=(--micro-batch-size 16 --global-batch-size 16)
WFLAGS=() # extra worker flags for run_layout
FOUR_MB=(--micro-batch-size 4 --global-batch-size 16)
TWO_MB=(--micro-batch-size 8 --global-batch-size 16)
COLO=(--mimo-layout colocated)
TWO_ENC=(--encoder vision:tp=1,dp=1 --encoder audio:tp=1,dp=1)

if [ "$gpus" -lt 1 ]; then
  echo "train_layouts: no GPU here"
  exit 1
fi
for mode in fp32 bf16; do
  single=$tmp/single-$mode.out
  flags=()
  [ "$mode" = fp32 ] && flags=(--fp32)
  if ! CUDA_VISIBLE_DEVICES=0 "$bin/hgrid-worker" --single-gpu "${MODEL[@]}" --steps "$STEPS" --batch 16 \
    "${flags[@]}" >"$single" 2>&1; then
    fail "single GPU ($mode): hgrid-worker --single-gpu failed"; tail -n 3 "$single"
    continue
  fi
  run_layout enc-llm "encoder | llm" "$mode" "$single" -- "${ENC_LLM[@]}" "${ONE_MB[@]}"
  run_layout enc-dp2-llm-tp2 "encoder tp1 dp2 + llm tp2" "$mode" "$single" -- \
    "${ENC_DP2_LLM_TP2[@]}" "${ONE_MB[@]}"
  run_layout enc-tp2-llm-pp2 "encoder tp2 + llm pp2" "$mode" "$single" -- \
    "${ENC_TP2_LLM_PP2[@]}" "${ONE_MB[@]}"
  # 1F1B over 4 micro-batches: the reference is the same micro-batches unpipelined.
  if train_ref "encoder | llm, 4 micro-batches ($mode)" "enc-llm-mb4-$mode" "${MODEL[@]}" \
    --steps "$STEPS" "${flags[@]}" -- "${ENC_LLM[@]}" "${FOUR_MB[@]}"; then
    run_layout enc-tp2-llm-pp2-mb4 "encoder tp2 + llm pp2, 4 micro-batches" "$mode" "$out" -- \
      "${ENC_TP2_LLM_PP2[@]}" "${FOUR_MB[@]}"
  fi
  MODEL=(--config tiny-moe --seed 1) BF16_TOL=5e-2
  if train_ref "moe: encoder | llm ($mode)" "moe-enc-llm-$mode" "${MODEL[@]}" --steps "$STEPS" \
    "${flags[@]}" -- "${ENC_LLM[@]}" "${TWO_MB[@]}"; then
    moe_ref=$out
    run_layout moe-enc-tp2-llm-dp2-ep2 "moe: encoder tp2 + llm dp2 ep2" "$mode" "$moe_ref" -- \
      --encoder-tp 2 --encoder-dp 1 --llm-tp 1 --llm-dp 2 --llm-ep 2 --num-experts 8 "${TWO_MB[@]}"
    run_layout moe-enc-dp2-llm-tp2-ep2 "moe: encoder dp2 + llm tp2 ep2" "$mode" "$moe_ref" -- \
      --encoder-tp 1 --encoder-dp 2 --llm-tp 2 --llm-dp 1 --llm-ep 2 --num-experts 8 "${TWO_MB[@]}"
  fi
  if train_ref "moe: llm only ($mode)" "moe-llm-$mode" "${MODEL[@]}" --steps "$STEPS" \
    "${flags[@]}" -- --llm-only --llm-tp 1 --llm-dp 1 --num-experts 8 "${TWO_MB[@]}"; then
    moe_ref=$out
    run_layout moe-llm-dp2-ep2 "moe: llm only dp2 ep2" "$mode" "$moe_ref" -- --llm-only \
      --llm-tp 1 --llm-dp 2 --llm-ep 2 --num-experts 8 "${TWO_MB[@]}"
    run_layout moe-llm-tp2-ep2 "moe: llm only tp2 ep2" "$mode" "$moe_ref" -- --llm-only \
      --llm-tp 2 --llm-dp 1 --llm-ep 2 --num-experts 8 "${TWO_MB[@]}"
  fi
  MODEL=(--config tiny --seed 1) BF16_TOL=2e-2
  # --dp-overlap: the weight matrices' gradients reduced during the last
  # backward give the same losses (llm dp2; the encoder's dp2 below).
  if train_ref "llm only ($mode)" "llm-$mode" "${MODEL[@]}" --steps "$STEPS" "${flags[@]}" -- \
    --llm-only --llm-tp 1 --llm-dp 1 "${TWO_MB[@]}"; then
    WFLAGS=(--dp-overlap)
    run_layout llm-dp2-overlap "llm only dp2, --dp-overlap" "$mode" "$out" -- --llm-only \
      --llm-tp 1 --llm-dp 2 "${TWO_MB[@]}"
    run_layout enc-dp2-llm-tp2-overlap "encoder dp2 + llm tp2, --dp-overlap" "$mode" "$single" -- \
      "${ENC_DP2_LLM_TP2[@]}" "${ONE_MB[@]}"
    WFLAGS=()
  fi
  run_layout colo-1 "colocated, 1 GPU" "$mode" "$single" -- "${COLO[@]}" "${ENC_LLM[@]}" \
    "${ONE_MB[@]}"
  run_layout colo-enc-dp2-llm-tp2 "colocated encoder dp2 / llm tp2" "$mode" "$single" -- \
    "${COLO[@]}" "${ENC_DP2_LLM_TP2[@]}" "${ONE_MB[@]}"
  # The hand-off gathered over the LLM's tp group from encoder lanes of tp 2.
  run_layout colo-enc-tp2-dp2-llm-tp4 "colocated encoder tp2 dp2 / llm tp4" "$mode" "$single" -- \
    "${COLO[@]}" --encoder-tp 2 --encoder-dp 2 --llm-tp 4 --llm-dp 1 "${ONE_MB[@]}"
  if train_ref "encoder | llm, 2 micro-batches ($mode)" "enc-llm-mb2-$mode" "${MODEL[@]}" \
    --steps "$STEPS" "${flags[@]}" -- "${ENC_LLM[@]}" "${TWO_MB[@]}"; then
    mb2=$out
    run_layout colo-enc-tp2-llm-dp2 "colocated encoder tp2 / llm dp2" "$mode" "$mb2" -- \
      "${COLO[@]}" --encoder-tp 2 --encoder-dp 1 --llm-tp 1 --llm-dp 2 "${TWO_MB[@]}"
    run_layout colo-enc-tp2-dp2-llm-tp2-dp2 "colocated encoder tp2 dp2 / llm tp2 dp2" "$mode" \
      "$mb2" -- "${COLO[@]}" --encoder-tp 2 --encoder-dp 2 --llm-tp 2 --llm-dp 2 "${TWO_MB[@]}"
  fi
  # Two encoders on one GPU (--single-gpu --encoders 2), the reference of
  # the two-encoder jobs.
  enc2=$tmp/single-enc2-$mode.out
  if ! CUDA_VISIBLE_DEVICES=0 "$bin/hgrid-worker" --single-gpu "${MODEL[@]}" --steps "$STEPS" \
    --batch 16 --encoders 2 "${flags[@]}" >"$enc2" 2>&1; then
    fail "one GPU, --encoders 2 ($mode): hgrid-worker --single-gpu failed"; tail -n 3 "$enc2"
  elif [ "$(losses "$enc2" | wc -l)" -ne "$STEPS" ] || ! falls "$enc2"; then
    fail "one GPU, --encoders 2 ($mode): the loss did not fall over $STEPS steps"
  else
    summary+=("$(printf '%-44s %s' "one GPU, --encoders 2 ($mode)" "trains, the loss falls")")
    run_layout enc2-llm "vision | audio | llm" "$mode" "$enc2" -- "${TWO_ENC[@]}" \
      --llm-tp 1 --llm-dp 1 "${ONE_MB[@]}"
    run_layout enc2-llm-tp2 "vision + audio | llm tp2" "$mode" "$enc2" -- "${TWO_ENC[@]}" \
      --llm-tp 2 --llm-dp 1 "${ONE_MB[@]}"
    run_layout enc2-dp2-tp2-llm-tp2 "vision dp2 + audio tp2 | llm tp2" "$mode" "$enc2" -- \
      --encoder vision:tp=1,dp=2 --encoder audio:tp=2,dp=1 --llm-tp 2 --llm-dp 1 \
      "${ONE_MB[@]}"
  fi
done

# ---- a colocated checkpoint (fp32: resuming is exact)
colo_full=$tmp/colo-enc-dp2-llm-tp2-fp32.1.out
if [ "$gpus" -lt 2 ]; then
  summary+=("$(printf '%-44s skipped (needs 2 GPUs)' 'colocated save and resume')")
elif train ck-colo-first "${MODEL[@]}" --fp32 --steps 10 --save "$tmp/ckc" -- "${COLO[@]}" \
  "${ENC_DP2_LLM_TP2[@]}" "${ONE_MB[@]}" &&
  train ck-colo-resume "${MODEL[@]}" --fp32 --steps "$STEPS" --load "$tmp/ckc" -- "${COLO[@]}" \
    "${ENC_DP2_LLM_TP2[@]}" "${ONE_MB[@]}"; then
  if [ "$(losses "$out" | wc -l)" -eq 10 ] &&
    diff <(losses "$out") <(losses "$colo_full" | tail -n 10) >/dev/null; then
    summary+=("$(printf '%-44s steps 11-20 identical to the uninterrupted run' \
      'colocated: save at 10, resume')")
  else
    fail "colocated resume: steps 11-20 differ from the uninterrupted run"
    paste <(losses "$out") <(losses "$colo_full" | tail -n 10) | head -n 5
  fi
else
  fail "colocated checkpoint: training failed"; tail -n 3 "$tmp"/ck-colo-*.*.out
fi

# ---- checkpoints (fp32: resuming is exact)
uninterrupted=$tmp/enc-dp2-llm-tp2-fp32.3.out
ck=$tmp/ck
if [ "$gpus" -lt 4 ]; then
  summary+=("$(printf '%-44s skipped (needs 4 GPUs)' 'save and resume')")
elif train ck-first "${MODEL[@]}" --fp32 --steps 10 --save "$ck" --save-interval 5 -- \
  "${ENC_DP2_LLM_TP2[@]}" "${ONE_MB[@]}"; then
  grep -q '^step 10$' "$ck/manifest" || fail "checkpoint: the manifest does not say step 10"
  if train ck-resume "${MODEL[@]}" --fp32 --steps "$STEPS" --load "$ck" -- "${ENC_DP2_LLM_TP2[@]}" \
    "${ONE_MB[@]}"; then
    if [ "$(losses "$out" | wc -l)" -eq 10 ] &&
      diff <(losses "$out") <(losses "$uninterrupted" | tail -n 10) >/dev/null; then
      summary+=("$(printf '%-44s steps 11-20 identical to the uninterrupted run' \
        'save at 10, resume')")
    else
      fail "resume: steps 11-20 differ from the uninterrupted run"
      paste <(losses "$out") <(losses "$uninterrupted" | tail -n 10) | head -n 5
    fi
  else
    fail "resume: training from the checkpoint failed"; tail -n 3 "$tmp"/ck-resume.*.out
  fi
  if train ck-other "${MODEL[@]}" --fp32 --steps "$STEPS" --load "$ck" -- "${ENC_LLM[@]}" \
    "${ONE_MB[@]}" || ! grep -q "resume with the checkpoint's layout" "$tmp"/ck-other.*.out; then
    fail "a checkpoint of another layout was not refused with the layout error"
  else
    summary+=("$(printf '%-44s refused: %s' 'load into another layout' \
      "$(grep -h -m1 -o "has layout .*" "$tmp"/ck-other.0.out | cut -c1-50)...")")
  fi
else
  fail "checkpoint: the first 10 steps failed"; tail -n 3 "$tmp"/ck-first.*.out
fi

# ---- the caption loss beats the text-only floor on a hetero layout
LEARN_STEPS=${LEARN_STEPS:-1500}
floor=$(awk '/text-only floor/ {print $NF}' "$tmp/single-bf16.out" 2>/dev/null)
if [ "$gpus" -lt 4 ] || [ -z "$floor" ]; then
  summary+=("$(printf '%-44s skipped (needs 4 GPUs and the floor)' 'learns (bf16)')")
elif train learns --config tiny --seed 11 --steps "$LEARN_STEPS" -- "${ENC_DP2_LLM_TP2[@]}" \
  "${ONE_MB[@]}"; then
  mean=$(losses "$out" | tail -n 50 | awk '{s += $2} END {printf "%.4f", s / NR}')
  if awk -v m="$mean" -v f="$floor" 'BEGIN {exit !(m < f)}'; then
    summary+=("$(printf '%-44s mean of the last 50 steps %s < floor %s' 'learns (bf16)' "$mean" \
      "$floor")")
  else
    fail "learns: mean loss of the last 50 of $LEARN_STEPS steps $mean, not below the floor $floor"
  fi
else
  fail "learns: training failed"; tail -n 3 "$tmp"/learns.*.out
fi

echo
echo "== distributed training ($gpus GPUs)"
printf '  %s\n' "${summary[@]}"
if [ "$failures" -eq 0 ]; then
  echo "train_layouts: all passed"
else
  echo "train_layouts: $failures failure(s)"
fi
# Every case skipped (too few GPUs): the test did not run.
ran=$(printf '%s\n' "${summary[@]}" | grep -vc ' skipped (')
if [ "$failures" -eq 0 ] && [ "$ran" -eq 0 ]; then
  echo "SKIP: train_layouts: every case needs more GPUs than the $gpus here"
  exit 77
fi
[ "$failures" -eq 0 ]
