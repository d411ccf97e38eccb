#!/usr/bin/env bash
# Runs test programs (compiled binaries or shell scripts) and prints one
# closing line. Usage:
#   tests/run.sh --bin DIR --cpu "T..." [--gpu-count N]   CPU tests; GPU ones counted as skipped
#   tests/run.sh --bin DIR --gpu "T..."                   GPU tests (fail without a GPU)
#   tests/run.sh --bin DIR --bench "B..."                 benchmark programs
set -u
bin=bin cpu="" gpu="" bench="" gpu_count=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --cpu) cpu=$2; shift 2 ;;
    --gpu) gpu=$2; shift 2 ;;
    --bench) bench=$2; shift 2 ;;
    --gpu-count) gpu_count=$2; shift 2 ;;
    *) echo "tests/run.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
export HGRID_BIN=$(cd "$bin" && pwd)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

have_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; }

passed=0 failed=0 failed_names=""
run_one() {
  local t=$1 start end rc
  start=$(date +%s.%N)
  "./$t" 2>&1 | sed "s|^|  |"
  rc=${PIPESTATUS[0]}
  end=$(date +%s.%N)
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1)); printf 'PASS %s (%.1fs)\n' "$t" "$(echo "$end - $start" | bc)"
  else
    failed=$((failed + 1)); failed_names="$failed_names $t"; printf 'FAIL %s (exit %d)\n' "$t" "$rc"
  fi
}

for t in $cpu $bench; do run_one "$t"; done
if [ -n "$gpu" ]; then
  if ! have_gpu; then
    echo "tests/run.sh: no GPU found (nvidia-smi -L lists none); run 'make test-gpu' on a GPU machine" >&2
    exit 1
  fi
  for t in $gpu; do run_one "$t"; done
fi

summary="$passed passed, $failed failed"
if [ -n "$cpu" ] && [ "$gpu_count" -gt 0 ]; then
  summary="$summary, $gpu_count skipped: no GPU (run 'make test-gpu' on a GPU machine)"
fi
echo "tests: $summary"
[ -n "$failed_names" ] && echo "failed:$failed_names"
[ "$failed" -eq 0 ]
