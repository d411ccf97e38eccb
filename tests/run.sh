#!/usr/bin/env bash
# Runs test programs (compiled binaries or scripts) and prints one closing
# line. A test passes with exit 0, is skipped with exit 77 (its last line
# "SKIP: reason" says why) and fails with anything else. Usage:
#   tests/run.sh --bin DIR --cpu "T..." [--gpu-count N]   CPU tests; GPU ones counted as skipped
#   tests/run.sh --bin DIR --gpu "T..."                   GPU tests (fail without a GPU)
#   tests/run.sh --bin DIR --bench "B..."                 benchmark programs
#   --only NAME: run only the tests whose file name (without folder or
#   extension) is NAME, e.g. test_layout or help_flags (`make test T=NAME`).
#   --jobs N: run up to N CPU tests at once (default 1); each one's output then
#   comes in one piece when it ends. --alone "NAME...": CPU tests whose checks
#   time gridd's or the workers' reactions: with --jobs they run first, one at a time.
# Exit status: 0 when nothing failed (skips do not fail), 1 otherwise.
set -u
bin=bin cpu="" gpu="" bench="" gpu_count=0 only="" jobs=1 alone=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --cpu) cpu=$2; shift 2 ;;
    --gpu) gpu=$2; shift 2 ;;
    --bench) bench=$2; shift 2 ;;
    --gpu-count) gpu_count=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --alone) alone=$2; shift 2 ;;
    *) echo "tests/run.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
export HGRID_BIN=$(cd "$bin" && pwd)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
SKIP_STATUS=77

have_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; }
# test_name PATH: the name `--only` matches (file name without folder and extension).
test_name() { local n=${1##*/}; echo "${n%.*}"; }
# pick "T...": the tests --only selects (all without --only).
pick() {
  local t out=""
  for t in $1; do
    [ -z "$only" ] || [ "$(test_name "$t")" = "$only" ] || [ "$t" = "$only" ] && out="$out $t"
  done
  echo "$out"
}

passed=0 failed=0 skipped=0 tests=() failed_at=() skip_reason_at=()
# finish I RC DS LOG: the result line of test I (exit RC after DS tenths of a second).
finish() {
  local i=$1 rc=$2 ds=$3 log=$4 t=${tests[$1]} reason
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1)); printf 'PASS %s (%d.%ds)\n' "$t" $((ds / 10)) $((ds % 10))
  elif [ "$rc" -eq "$SKIP_STATUS" ]; then
    reason=$(grep '^SKIP: ' "$log" | tail -n 1 | cut -c7-)
    skipped=$((skipped + 1)); skip_reason_at[i]="$(test_name "$t"): ${reason:-no reason given}"
    printf 'SKIP %s: %s\n' "$t" "${reason:-no reason given}"
  else
    failed=$((failed + 1)); failed_at[i]=$t; printf 'FAIL %s (exit %d)\n' "$t" "$rc"
  fi
}
# run_one I: runs test I alone, its output shown as it comes.
run_one() {
  local t=${tests[$1]} start end rc log
  log=$(mktemp)
  start=$(date +%s%N)
  # Through a file, not a pipe: a process the test leaves behind (a daemon
  # after a failed check) must not keep this loop waiting for the pipe's end.
  "./$t" >"$log" 2>&1 &
  local pid=$!
  tail -s 0.2 -n +1 -f --pid="$pid" "$log" | sed "s|^|  |"
  wait "$pid"
  rc=$?
  end=$(date +%s%N)
  finish "$1" "$rc" $(( (end - start) / 100000000 )) "$log" # tenths of a second (no bc on every machine)
  rm -f "$log"
}
# run_pool I...: runs the tests I..., $jobs at a time; each one's output when it ends.
run_pool() {
  local dir i rc ds queue=("$@")
  local -A running=() # test index -> pid
  dir=$(mktemp -d)
  while [ ${#queue[@]} -gt 0 ] || [ ${#running[@]} -gt 0 ]; do
    while [ ${#queue[@]} -gt 0 ] && [ ${#running[@]} -lt "$jobs" ]; do
      i=${queue[0]} queue=("${queue[@]:1}")
      (
        start=$(date +%s%N)
        "./${tests[$i]}" >"$dir/$i.log" 2>&1 </dev/null
        rc=$?
        end=$(date +%s%N)
        echo "$rc $(( (end - start) / 100000000 ))" >"$dir/$i.tmp" && mv "$dir/$i.tmp" "$dir/$i.end"
      ) &
      running[$i]=$!
    done
    sleep 0.2
    for i in "${!running[@]}"; do
      [ -f "$dir/$i.end" ] || continue
      wait "${running[$i]}"
      unset "running[$i]"
      read -r rc ds <"$dir/$i.end"
      sed "s|^|  |" "$dir/$i.log"
      finish "$i" "$rc" "$ds" "$dir/$i.log"
    done
  done
  rm -rf "$dir"
}
# run_cpu "T...": the CPU tests; with --jobs N the --alone ones first, one at a time.
run_cpu() {
  local t i solo=() pool=()
  for t in $1; do
    tests+=("$t")
    i=$((${#tests[@]} - 1))
    if [ "$jobs" -gt 1 ] && [[ " $alone " != *" $(test_name "$t") "* ]]; then pool+=("$i"); else solo+=("$i"); fi
  done
  for i in "${solo[@]}"; do run_one "$i"; done
  [ ${#pool[@]} -eq 0 ] || run_pool "${pool[@]}"
}
# run_each "T...": one test after another.
run_each() {
  local t
  for t in $1; do tests+=("$t"); run_one $((${#tests[@]} - 1)); done
}

cpu=$(pick "$cpu") bench=$(pick "$bench") gpu=$(pick "$gpu")
if [ -n "$only" ] && [ -z "$cpu$bench$gpu" ]; then
  echo "tests/run.sh: no test named '$only' here (the name of a test's file without its" \
       "folder and extension, e.g. test_layout or help_flags; 'make test-gpu T=NAME' for GPU tests)" >&2
  exit 2
fi
run_cpu "$cpu"
run_each "$bench"
if [ -n "$gpu" ]; then
  if ! have_gpu; then
    echo "tests/run.sh: no GPU found (nvidia-smi -L lists none); run 'make test-gpu' on a GPU machine" >&2
    exit 1
  fi
  run_each "$gpu"
fi

# The closing line: the tally, each skip's reason (in the tests' order), and the GPU
# tests a CPU run leaves out.
summary="$passed passed, $failed failed, $skipped skipped"
if [ "$skipped" -gt 0 ]; then
  summary="$summary ($(IFS=';'; echo "${skip_reason_at[*]}" | sed 's/;/; /g'))"
fi
if [ -z "$only" ] && [ -n "$cpu" ] && [ "$gpu_count" -gt 0 ]; then
  summary="$summary; $gpu_count GPU tests skipped: no GPU (run 'make test-gpu' on a GPU machine)"
fi
[ "$failed" -gt 0 ] && echo "failed: ${failed_at[*]}"
echo "tests: $summary"
[ "$failed" -eq 0 ]
