#!/usr/bin/env bash
# Runs each libFuzzer harness for a short time over its committed corpus.
# Usage: tests/fuzz/run.sh BUILD_DIR [SECONDS]   (default 15 s each)
# Long runs: FUZZ_SECONDS=3600 tests/fuzz/run.sh build/fuzz
set -u
build=$1 secs=${2:-${FUZZ_SECONDS:-15}}
here=$(cd "$(dirname "$0")" && pwd)
fail=0 pass=0
for f in fuzz_frame fuzz_envelope fuzz_layout_flags fuzz_state; do
  bin="$build/$f"
  scratch=$(mktemp -d)
  # New inputs go to the scratch folder; the committed corpus is only read.
  out=$("$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        "$scratch" "$here/corpus/$f" 2>&1)
  rc=$?
  execs=$(printf '%s\n' "$out" | sed -n 's/^stat::number_of_executed_units: *//p')
  if [ $rc -eq 0 ]; then
    pass=$((pass + 1)); echo "$f: ${execs:-?} executions in ${secs}s, no crash"
  else
    fail=$((fail + 1)); printf '%s\n' "$out" | tail -40; echo "$f: CRASH (exit $rc)"
  fi
  rm -rf "$scratch"
done
echo "fuzz: $pass passed, $fail failed"
[ $fail -eq 0 ]
