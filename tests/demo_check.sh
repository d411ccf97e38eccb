#!/usr/bin/env bash
# The README's demo (scripts/demo.sh) without GPUs: the coordination demo
# with dry-run workers, then its GPU branch for 1, 2, 4 and 8 GPUs
# (HGRID_DEMO_GPUS) with --dry-run workers in place of the training flags:
# the layout chosen for each count, the workers' command line, every rank
# assigned and reporting to gridd, hgridctl watch ending with the job, and
# every worker released.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
tmp=$(mktemp -d --suffix=.hgrid-demo-check)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# has FILE TEXT WHAT: FILE holds the line TEXT (fixed string).
has() { grep -qF -- "$2" "$1" || { fail "$3: no line with '$2'"; sed 's/^/    /' "$1" | tail -n 30; }; }

out=$tmp/none.out
if HGRID_DEMO_GPUS=0 scripts/demo.sh >"$out" 2>&1; then
  has "$out" "no GPU on this machine, so these are 8 DRY-RUN workers" "no GPU"
  has "$out" "job demo: running, generation 1, joined 8/8" "no GPU: watch --once"
  [ "$(grep -cE '^ +[0-9]+  (encoder|llm) +demo-[01]/[0-3] +ready +[0-9]+ ' "$out")" -eq 8 ] ||
    fail "no GPU: watch --once does not list 8 ready ranks on demo-0 and demo-1"
  has "$out" "every worker was released and exited 0" "no GPU"
else
  fail "no GPU: the demo failed"; tail -n 20 "$out"
fi

out=$tmp/one.out
if HGRID_DEMO_GPUS=1 HGRID_DEMO_DRY_RUN=1 scripts/demo.sh >"$out" 2>&1; then
  has "$out" "1 GPU: the hetero layout needs 2" "1 GPU"
  has "$out" "   hgrid-worker --single-gpu --config tiny --steps 4" "1 GPU: the trainer's command"
  has "$out" "   num_layers 2" "1 GPU: the trainer accepted its flags (--describe)"
else
  fail "1 GPU: the demo failed"; tail -n 20 "$out"
fi

# check GPUS LAYOUT ENCODER-RANKS LLM-RANKS
check() {
  local gpus=$1 layout=$2 enc=$3 llm=$4 world=$(($3 + $4)) out=$tmp/gpus$1.out
  if ! HGRID_DEMO_GPUS=$gpus HGRID_DEMO_DRY_RUN=1 scripts/demo.sh >"$out" 2>&1; then
    fail "$gpus GPUs: the demo failed"; tail -n 20 "$out"
    return
  fi
  has "$out" "== hgridctl submit --job demo $layout ($world ranks)" "$gpus GPUs: layout"
  has "$out" "== workers: $world on GPUs 0-$((world - 1)) of this machine" "$gpus GPUs"
  grep -qE -- "^   RANK=i LOCAL_RANK=i hgrid-worker --coordinator 127\.0\.0\.1:[0-9]+ --job demo --use-launcher-rank --heartbeat-timeout 1\.5 --config tiny --steps 4$" "$out" ||
    fail "$gpus GPUs: the workers' training command line is not shown"
  [ "$(grep -c ': job demo generation 1: rank .*, encoder ' "$out")" -eq "$enc" ] &&
    [ "$(grep -c ': job demo generation 1: rank .*, llm ' "$out")" -eq "$llm" ] ||
    fail "$gpus GPUs: not $enc encoder and $llm llm assignments"
  # watch's last view: the job finished by itself, every rank done at step 4.
  awk '/^job demo: / {n = 0; ended = /^job demo: finished/}
       /^ +[0-9]+  (encoder|llm) .* done +[0-9]+ / && $5 == 4 {n++}
       END {exit !(ended && n == w)}' w="$world" "$out" ||
    fail "$gpus GPUs: watch's last view does not show the job finished, $world ranks done at step 4"
  has "$out" "finished at " "$gpus GPUs: watch ends with the job's outcome"
  has "$out" "every worker was released and exited 0" "$gpus GPUs"
}
check 2 "--encoder-tp 1 --encoder-dp 1 --llm-tp 1 --llm-dp 1 --micro-batch-size 16 --global-batch-size 16" 1 1
check 4 "--encoder-tp 1 --encoder-dp 2 --llm-tp 2 --llm-dp 1 --micro-batch-size 16 --global-batch-size 16" 2 2
check 8 "--encoder-tp 2 --encoder-dp 2 --llm-tp 2 --llm-pp 2 --llm-dp 1 --micro-batch-size 4 --global-batch-size 16" 4 4
[ "$failures" -eq 0 ] && echo "demo_check: all passed"
[ "$failures" -eq 0 ]
