#!/usr/bin/env bash
# hgrid-worker's training flags on any machine: each bad combination is a
# usage error (exit 2) with one line saying what was wrong, and --help
# describes the flags.
set -u
cd "$(dirname "$0")/.." || exit 1
w=${HGRID_BIN:-bin}/hgrid-worker
passed=0 failed=0
expect() { # PATTERN ARGS...: exit 2 and one line matching PATTERN
  local pat=$1 out rc
  shift
  out=$("$w" --coordinator 127.0.0.1:1 --job j --token t "$@" 2>&1)
  rc=$?
  if [ "$rc" -eq 2 ] && grep -q -- "$pat" <<<"$out" && [ "$(wc -l <<<"$out")" -eq 1 ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL: hgrid-worker $* -> exit $rc, want 2 and /$pat/: $out"
  fi
}
expect "training needs both --config NAME and --steps N" --steps 5
expect "training needs both --config NAME and --steps N" --config tiny --fp32
expect "no config 'huge'; use one of: job tiny" --config huge --steps 5
expect "--steps needs a whole number" --config tiny --steps 1.5
expect "--save-interval needs --save DIR" --config tiny --steps 5 --save-interval 2
expect "training needs a GPU; drop --dry-run" --config tiny --steps 5 --dry-run
expect "--self-test exits before training" --config tiny --steps 5 --self-test
expect "--load needs a value" --config tiny --steps 5 --load
if "$w" --help | grep -q -- "--save DIR \[--save-interval K\]"; then
  passed=$((passed + 1))
else
  failed=$((failed + 1)) && echo "FAIL: --help does not describe the training flags"
fi
echo "train_worker_cli: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
