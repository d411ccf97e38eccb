#!/usr/bin/env bash
# Benchmark (make bench, 8 GPUs): Megatron-LM's hetero MIMO reference
# layout through gridd and 8 hgrid-workers: encoder tp2 dp2 on ranks 0-3,
# LLM tp2 dp2 with 128 experts over ep4 (20 layers) on ranks 4-7, the
# job's own model (--config job: layout defaults = config small's sizes).
#  1. every communicator forms and passes the worker's self-test;
#  2. STEPS (100) steps, a checkpoint every 50; every worker killed (-9) at
#     step KILL_AT (70), restarted with --load: training resumes at 51 and
#     steps 51..KILL_AT repeat the first run's losses;
#     (Checkpoints hold fp32 weights and both AdamW moments: with 128
#     experts that is ~36 GB per LLM rank, so saving and loading take a
#     while.)
#  3. tokens/s and step time (medians of the resumed run's steps after the
#     first 5), and each rank's communication share (a --profile-comm run).
# Skips (exit 77, saying so) with fewer GPUs than the layout's world. A
# rehearsal on fewer GPUs: HGRID_REF_LAYOUT="layout flags" (and
# HGRID_REF_STEPS / HGRID_REF_KILL_AT / HGRID_REF_SAVE_EVERY).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
bin=${HGRID_BIN:-bin}
export NCCL_NVLS_ENABLE=0
read -r -a LAYOUT <<<"${HGRID_REF_LAYOUT:---encoder-tp 2 --encoder-dp 2 --llm-tp 2 --llm-dp 2 --num-experts 128 --llm-ep 4 --num-layers 20 --micro-batch-size 2 --global-batch-size 16}"
STEPS=${HGRID_REF_STEPS:-100} SAVE_EVERY=${HGRID_REF_SAVE_EVERY:-50} KILL_AT=${HGRID_REF_KILL_AT:-70}
tmp=$(mktemp -d --suffix=.hgrid-reference)
# shellcheck source=tests/gpu/comm_lib.sh
. tests/gpu/comm_lib.sh
trap 'comm_cleanup; [ -n "${HGRID_KEEP_LOGS:-}" ] && cp -r "$tmp"/. "$HGRID_KEEP_LOGS"/; rm -rf "$tmp"' EXIT
trap 'exit 1' TERM INT

world=$(world_of "${LAYOUT[@]}") || { echo "hetero_reference: invalid layout"; exit 1; }
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
if [ "$gpus" -lt "$world" ]; then
  echo "SKIP: hetero_reference needs $world GPUs ($gpus here)"
  exit 77
fi
last=$((world - 1))
# losses FILE: "step loss" per step line.
losses() {
  awk '/step +[0-9]+ \| loss / { for (i = 1; i < NF; i++) if ($i == "step") s = $(i + 1)
                                 for (i = 1; i < NF; i++) if ($i == "loss") print s, $(i + 1) }' "$1"
}
last_step() { losses "$1" | awk 'END {print $1 + 0}'; }
# median FIELD FILE: the median of the field before "FIELD" over steps > first + 5.
median() {
  awk -v f="$1" '/step +[0-9]+ \| loss / { for (i = 1; i < NF; i++) if ($i == "step") s = $(i + 1)
                                           if (!first) first = s
                                           for (i = 2; i <= NF; i++) if ($i == f && s > first + 4) print $(i - 1) }' "$2" |
    sort -n | awk '{v[NR] = $1} END {if (NR) print v[int((NR + 1) / 2)]; else print 0}'
}
workers() { # JOB PREFIX FLAGS...: one worker per rank
  local job=$1 prefix=$2 r
  shift 2
  for r in $(seq 0 "$last"); do
    start_worker "$job" "$token" "$r" "$tmp/$prefix.$r.out" --comm-timeout 120 --bw-bytes 0 \
      --config job --seed 1 "$@"
  done
}
count() { grep -l "$1" "$tmp/$2".*.out 2>/dev/null | wc -l; }

echo "hetero_reference: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1), $(date -u '+%F %H:%M UTC')"
"$bin/hgridctl" plan "${LAYOUT[@]}" | head -n 5 | sed 's/^/  /'
start_gridd 30 || exit 1
token=$(ctl submit --job ref "${LAYOUT[@]}") || { echo "hetero_reference: submit failed"; exit 1; }
status=0
ck=$tmp/ck
t0=$(date +%s)
workers ref first --steps "$STEPS" --save "$ck" --save-interval "$SAVE_EVERY"
if wait_until 300 eval '[ "$(count "self-test" first)" -eq "$world" ]'; then
  echo "1. communicators: all $world ranks formed their groups and self-tested in $(( $(date +%s) - t0 )) s;" \
    "$(grep -h 'self-test' "$tmp"/first.*.out | grep -c FAILED) failed checks"
  grep -q FAILED "$tmp"/first.*.out && status=1
else
  echo "1. communicators: only $(count self-test first) of $world ranks self-tested in 300 s"
  tail -n 3 "$tmp"/first.*.out
  exit 1
fi
if ! wait_until 900 eval '[ "$(last_step "$tmp/first.$last.out")" -ge "$KILL_AT" ] && grep -qx "step $SAVE_EVERY" "$ck/manifest" 2>/dev/null'; then
  echo "2. training did not reach step $KILL_AT with the step-$SAVE_EVERY checkpoint saved"
  tail -n 3 "$tmp"/first.*.out
  exit 1
fi
for p in "${worker_pids[@]}"; do kill -9 "$p" 2>/dev/null; done
wait_workers
killed_at=$(last_step "$tmp/first.$last.out")
workers ref resumed --steps "$STEPS" --load "$ck"
if ! wait_until 900 eval '[ "$(count "trained" resumed)" -eq "$world" ]'; then
  echo "2. the resumed run did not finish"; tail -n 3 "$tmp"/resumed.*.out; exit 1
fi
ctl cancel ref >/dev/null 2>&1
wait_workers
first_resumed=$(losses "$tmp/resumed.$last.out" | awk 'NR == 1 {print $1}')
worst=$(awk 'NR == FNR {a[$1] = $2; next}
             ($1 in a) {d = $2 - a[$1]; if (d < 0) d = -d; if (d > w) w = d; n++}
             END {printf "%d %.3g", n, w}' <(losses "$tmp/first.$last.out") <(losses "$tmp/resumed.$last.out"))
echo "2. killed every worker after step $killed_at; the restart resumed at step $first_resumed" \
  "from the step-$SAVE_EVERY checkpoint and trained to $STEPS"
echo "   loss before the kill: step $SAVE_EVERY $(losses "$tmp/first.$last.out" | awk -v s="$SAVE_EVERY" '$1 == s {print $2}')," \
  "step $killed_at $(losses "$tmp/first.$last.out" | awk -v s="$killed_at" '$1 == s {print $2}');" \
  "after the resume: step $first_resumed $(losses "$tmp/resumed.$last.out" | awk 'NR == 1 {print $2}')," \
  "step $STEPS $(losses "$tmp/resumed.$last.out" | awk 'END {print $2}')"
echo "   steps run twice (${worst% *}): largest loss difference ${worst#* }"
[ "$first_resumed" = $((SAVE_EVERY + 1)) ] || status=1
echo "3. throughput (resumed run, rank $last): $(median tok/s "$tmp/resumed.$last.out") tokens/s," \
  "step $(median ms "$tmp/resumed.$last.out") ms"
token=$(ctl submit --job ref-prof "${LAYOUT[@]}") || { echo "hetero_reference: submit failed"; exit 1; }
workers ref-prof prof --steps 15 --profile-comm
if wait_until 600 eval '[ "$(count "trained" prof)" -eq "$world" ]'; then
  echo "   communication per step (each operation timed alone; waits for the peer included):"
  for r in $(seq 0 "$last"); do
    printf '     %s\n' "$(grep -h -o 'rank [0-9]*: communication.*' "$tmp/prof.$r.out")"
  done
else
  echo "   the profiled run did not finish"; status=1
fi
ctl cancel ref-prof >/dev/null 2>&1
wait_workers
exit $status
