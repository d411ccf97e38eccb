#!/usr/bin/env bash
# GPU test (make test-gpu): issue 4's and issue 17's layouts on local GPUs. Each job forms
# (gridd + one hgrid-worker per GPU), every worker self-tests its groups and
# bridge edges, hgridctl status shows every rank's checks, and a cancel ends
# every worker with exit 0. Then a worker dies during communicator init:
# killed, the others abort and a replacement re-forms the job; hung, the
# others give up at --comm-timeout with a clear error instead of hanging.
# --dry-run runs the same flow with dry-run workers (no GPU, no NCCL): a
# check of this script on any machine.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
bin=${HGRID_BIN:-bin}
dry=0
[ "${1:-}" = "--dry-run" ] && dry=1
export NCCL_NVLS_ENABLE=0 # never NVLink multicast on shared hosts
tmp=$(mktemp -d --suffix=.hgrid-comm)
# shellcheck source=tests/gpu/comm_lib.sh
. tests/gpu/comm_lib.sh
trap 'comm_cleanup; rm -rf "$tmp"' EXIT
trap 'exit 1' TERM INT

gpus=8 # dry run: as many workers as the largest layout
[ "$dry" -eq 0 ] && gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
mode=(--comm-timeout 20)
[ "$dry" -eq 1 ] && mode=(--dry-run)
failures=0 summary=()
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b - a}'; }

# ranks_tested JOB: ranks whose status lines carry self-test checks (dry
# run: ranks that are ready).
ranks_tested() {
  if [ "$dry" -eq 1 ]; then
    ctl status "$1" | grep -c '^  rank .* ready:'
  else
    ctl status "$1" | awk '/^  rank /{r=1; next} /^    self-test /{if (r) {n++; r=0}} END{print n+0}'
  fi
}
all_tested() { [ "$(ranks_tested "$1")" -eq "$2" ]; }

# layout NAME LAYOUT-FLAGS...: forms, self-tests and cancels one job.
layout() {
  local name=$1
  shift
  local world start took rank checks lines
  world=$(world_of "$@")
  if [ "$world" -gt "$gpus" ]; then
    echo "SKIP $name: needs $world GPUs, $gpus here"
    summary+=("$(printf '%-40s skipped (needs %d GPUs)' "$name" "$world")")
    return
  fi
  start_gridd 30 || { fail "$name: gridd"; return; }
  local token
  token=$(ctl submit --job "$name" "$@" 2>/dev/null) || { fail "$name: submit"; stop_gridd; return; }
  start=$(date +%s.%N)
  for rank in $(seq 0 $((world - 1))); do
    start_worker "$name" "$token" "$rank" "$tmp/$name.$rank.out" "${mode[@]}"
  done
  if ! wait_until 40 all_tested "$name" "$world"; then
    fail "$name: only $(ranks_tested "$name") of $world ranks self-tested within 40 s"
    tail -n 5 "$tmp/$name".*.out
  fi
  took=$(since "$start")
  ctl status "$name" >"$tmp/$name.status"
  sed 's/^/  /' "$tmp/$name.status"
  if grep -q FAILED "$tmp/$name.status" "$tmp/$name".*.out; then
    fail "$name: a self-test check failed"
  fi
  if [ "$dry" -eq 0 ]; then
    # what gridd shows for each rank is what the worker found
    for rank in $(seq 0 $((world - 1))); do
      checks=$(grep -c ": rank $rank self-test " "$tmp/$name.$rank.out")
      lines=$(awk -v r="$rank" '/^  rank /{on = ($2 == r)} on && /^    self-test /{n++} END{print n+0}' \
        "$tmp/$name.status")
      [ "$checks" -gt 0 ] && [ "$checks" -eq "$lines" ] && continue
      fail "$name: rank $rank printed $checks checks, hgridctl status shows $lines"
    done
    grep -q ' GB/s' "$tmp/$name.status" || fail "$name: no bus bandwidth reported"
  fi
  ctl cancel "$name" >/dev/null || fail "$name: cancel"
  wait_workers
  [ -z "$bad" ] || { fail "$name: workers (index:exit) $bad did not exit 0 after cancel"; tail -n 3 "$tmp/$name".*.out; }
  stop_gridd || fail "$name: gridd did not stop cleanly"
  summary+=("$(printf '%-40s %d ranks formed+self-tested in %.1f s, cancel -> exit 0' "$name" "$world" "$took")")
}

layout enc1x1-llm1x1 --encoder-tp 1 --encoder-dp 1 --llm-tp 1 --llm-dp 1
layout enc-dp2-llm-tp2 --encoder-tp 1 --encoder-dp 2 --llm-tp 2 --llm-dp 1 --micro-batch-size 2
layout enc-tp2-llm-pp2 --encoder-tp 2 --encoder-dp 1 --llm-tp 1 --llm-pp 2 --llm-dp 1
layout llm-only-tp2-dp2-ep2 --llm-only --llm-tp 2 --llm-dp 2 --num-experts 4 --llm-ep 2
# Issue 17's layouts: every rank in both colocated modules (communicators
# and self-tests for both modules' groups), two encoders with a bridge each
# (the llm leaders in both), and upstream's 8-rank MoE recipe. GPU workers
# form and self-test them; they do not train them yet.
layout colocated-enc-dp4-llm-tp2 --mimo-layout colocated --encoder-tp 1 --encoder-dp 4 \
  --llm-tp 2 --llm-dp 2 --micro-batch-size 2
layout two-encoders --encoder vision:tp=1,dp=2 --encoder audio:tp=1,dp=1 --llm-tp 1 --llm-dp 1 \
  --micro-batch-size 2
layout moe-recipe-offset4 --encoder-tp 2 --encoder-dp 2 --llm-offset 4 --llm-tp 2 --llm-dp 2 \
  --llm-ep 4 --num-experts 128 --num-layers 20

# ---- a worker dies during init (4 GPUs): ranks 0-2 on GPUs, rank 3 a
# dry-run worker that takes its assignment but never joins a communicator.
KILL_LAYOUT=(--encoder-tp 1 --encoder-dp 2 --llm-tp 2 --llm-dp 1 --micro-batch-size 2)
victim="" t0="" token=""
# start_with_victim NAME COMM_TIMEOUT SIGNAL: sets victim, token and t0
# (when the signal went); 1 if the job did not get that far.
start_with_victim() {
  local name=$1 timeout=$2 sig=$3
  start_gridd 60 || return 1
  token=$(ctl submit --job "$name" "${KILL_LAYOUT[@]}" 2>/dev/null) || return 1
  for rank in 0 1 2; do
    start_worker "$name" "$token" "$rank" "$tmp/$name.$rank.out" --comm-timeout "$timeout"
  done
  RANK=3 LOCAL_RANK=3 "$bin/hgrid-worker" --coordinator "127.0.0.1:$port" --job "$name" \
    --token "$token" --use-launcher-rank --dry-run >"$tmp/$name.3.out" 2>&1 &
  victim=$!
  wait_until 30 grep -q 'generation 1: rank 3 ' "$tmp/$name.3.out" || return 1
  kill "-$sig" "$victim"
  t0=$(date +%s.%N)
}
aborted_all() { [ "$(grep -l 'generation 1 aborted' "$tmp/$1".[012].out | wc -l)" -eq 3 ]; }
none_left() { local p; for p in "${worker_pids[@]}"; do kill -0 "$p" 2>/dev/null && return 1; done; return 0; }

if [ "$gpus" -lt 4 ] || [ "$dry" -eq 1 ]; then
  echo "SKIP kill-during-init: needs 4 GPUs and NCCL"
  summary+=("kill-during-init                         skipped (needs 4 GPUs, not --dry-run)")
else
  # Killed: gridd sees the connection go and aborts the generation; the
  # others abort their forming communicators at once, and a replacement on
  # the same GPU re-forms the job.
  if ! start_with_victim killed 30 KILL; then
    fail "killed: the job did not form"
  elif ! wait_until 20 aborted_all killed; then
    fail "killed: ranks 0-2 did not abort within 20 s"; tail -n 3 "$tmp"/killed.[012].out
  else
    took=$(since "$t0")
    wait "$victim" 2>/dev/null
    grep -h 'aborted' "$tmp"/killed.[012].out | head -n 3 | sed 's/^/  /'
    start_worker killed "$token" 3 "$tmp/killed.3.out"
    if wait_until 40 all_tested killed 4; then
      ctl cancel killed >/dev/null
      wait_workers
      [ -z "$bad" ] || fail "killed: workers $bad did not exit 0 after cancel"
      summary+=("$(printf '%-40s others aborted in %.1f s; replacement re-formed, cancel -> exit 0' killed-during-init "$took")")
    else
      fail "killed: the replacement generation did not self-test"; tail -n 3 "$tmp"/killed.*.out
    fi
  fi
  comm_cleanup

  # Hung: the victim keeps its connection but never joins. Rank 2, which
  # shares the llm communicators with it, gives up at --comm-timeout 6,
  # aborts them and exits 1. Ranks 0-1 formed theirs and wait on rank 2
  # in the self-test's bridge exchange: gridd's Abort (rank 2 gone) or
  # their own 6 s deadline ends that wait, whichever comes first.
  settled() { # rank: gone, or told its generation was aborted
    ! kill -0 "${worker_pids[$1]}" 2>/dev/null || grep -q 'generation 1 aborted' "$tmp/hung.$1.out"
  }
  all_settled() { ! kill -0 "${worker_pids[2]}" 2>/dev/null && settled 0 && settled 1; }
  if ! start_with_victim hung 6 STOP; then
    fail "hung: the job did not form"
  elif ! wait_until 30 all_settled; then
    fail "hung: 30 s after the victim stopped (comm-timeout 6) ranks 0-2 had not all given up"
    tail -n 3 "$tmp"/hung.[012].out
  else
    took=$(since "$t0")
    grep -h 'hgrid-worker: ' "$tmp"/hung.[012].out | sed 's/^/  /'
    grep -q 'not formed within the deadline' "$tmp/hung.2.out" ||
      fail "hung: rank 2 did not say its communicators missed the deadline"
    ctl cancel hung >/dev/null
    wait_workers
    for r in 0 1; do
      case " $codes" in
        *" $r:0 "*) grep -q 'generation 1 aborted' "$tmp/hung.$r.out" || fail "hung: rank $r exited 0 unaborted" ;;
        *" $r:1 "*) grep -q 'not done within' "$tmp/hung.$r.out" || fail "hung: rank $r exited 1 without the deadline error" ;;
        *) fail "hung: rank $r exit codes $codes" ;;
      esac
    done
    case " $codes" in *" 2:1 "*) ;; *) fail "hung: rank 2 exit codes $codes, want 1" ;; esac
    summary+=("$(printf '%-40s all gave up %.1f s after the hang (deadline 6 s): %s' hung-during-init "$took" "$codes")")
  fi
  kill -9 "$victim" 2>/dev/null
  comm_cleanup
fi

echo
echo "== communicator tests$([ "$dry" -eq 1 ] && echo ' (--dry-run: no GPU, no NCCL)')"
printf '  %s\n' "${summary[@]}"
[ "$failures" -eq 0 ] && echo "comm_layouts: all passed" || echo "comm_layouts: $failures failure(s)"
# Every case skipped (too few GPUs): the test did not run.
ran=$(printf '%s\n' "${summary[@]}" | grep -vc ' skipped (')
if [ "$failures" -eq 0 ] && [ "$ran" -eq 0 ]; then
  echo "SKIP: comm_layouts: every case needs more GPUs than the $gpus here"
  exit 77
fi
[ "$failures" -eq 0 ]
