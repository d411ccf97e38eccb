#!/usr/bin/env bash
# hgrid-worker's GPU options on any machine: usage errors (exit 2) and a GPU
# worker that cannot start (exit 1), each one line saying what was wrong.
set -u
cd "$(dirname "$0")/.." || exit 1
w=${HGRID_BIN:-bin}/hgrid-worker
passed=0 failed=0
expect() { # CODE PATTERN ARGS...: exit CODE and one line matching PATTERN
  local code=$1 pat=$2 out rc
  shift 2
  out=$("$w" "$@" 2>&1)
  rc=$?
  if [ "$rc" -eq "$code" ] && grep -q -- "$pat" <<<"$out" && [ "$(wc -l <<<"$out")" -eq 1 ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL: hgrid-worker $* -> exit $rc, want $code and /$pat/: $out"
  fi
}
base=(--coordinator 127.0.0.1:1 --job j --token t --connect-timeout 0)
expect 2 "--comm-init 'bogus': needs init or split" "${base[@]}" --comm-init bogus
expect 2 "--comm-init needs a value" "${base[@]}" --comm-init
expect 2 "--self-test needs a GPU; drop --dry-run" "${base[@]}" --self-test --dry-run
expect 2 "--bw-bytes needs a whole number of bytes" "${base[@]}" --bw-bytes 2
expect 2 "--bw-bytes needs a whole number of bytes" "${base[@]}" --bw-bytes 4.5
expect 2 "--comm-timeout '0' is out of range: a number from 0.05 to" "${base[@]}" --comm-timeout 0
# No GPU 7 here (or, on an 8-GPU host, no gridd at 127.0.0.1:1): one line, exit 1.
expect 1 "GPU 7 unusable\|127.0.0.1:1" "${base[@]}" --device 7 --self-test --comm-init split
# The token may come from the environment instead of the command line.
expect 2 "--token (or \$HGRID_TOKEN) are required" --coordinator 127.0.0.1:1 --job j --dry-run
HGRID_TOKEN=t expect 1 "cannot connect to gridd at 127.0.0.1:1" --coordinator 127.0.0.1:1 --job j --dry-run \
  --connect-timeout 0
# --connect-timeout: tried again until it passes, then one line.
HGRID_TOKEN=t expect 1 "no gridd at 127.0.0.1:1 within 0.3 s" --coordinator 127.0.0.1:1 --job j \
  --dry-run --connect-timeout 0.3
if "$w" --help | grep -q -- "--comm-init init|split"; then
  passed=$((passed + 1))
else
  failed=$((failed + 1)) && echo "FAIL: --help does not describe --comm-init"
fi
echo "worker_gpu_cli: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
