#!/usr/bin/env bash
# tests/run.sh's tally: fake tests that pass (exit 0), skip (exit 77 with a
# "SKIP: reason" line), skip without a reason and fail give the right
# counts, reasons and exit status; --only runs one test by name; a skip is
# never counted as a pass.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d --suffix=.hgrid-run)
trap 'rm -rf "$tmp"' EXIT
failures=0 passed=0
ok() { passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
mkdir -p "$tmp/t" "$tmp/bin"
printf '#!/bin/sh\necho fine\nexit 0\n' >"$tmp/t/good.sh"
printf '#!/bin/sh\necho "SKIP: no widget here"\nexit 77\n' >"$tmp/t/absent.sh"
printf '#!/bin/sh\nexit 77\n' >"$tmp/t/mute.sh"
printf '#!/bin/sh\necho broken\nexit 3\n' >"$tmp/t/bad.sh"
chmod +x "$tmp"/t/*.sh
# run ARGS...: tests/run.sh from $tmp; its output in $out, its status in $rc.
run() { out=$(cd "$tmp" && "$root/tests/run.sh" --bin bin "$@" 2>&1); rc=$?; }
last() { tail -n 1 <<<"$out"; }

run --cpu "t/good.sh t/absent.sh t/mute.sh t/bad.sh" --gpu-count 2
[ "$rc" -eq 1 ] && ok || fail "a failing test: exit $rc, want 1"
want="tests: 1 passed, 1 failed, 2 skipped (absent: no widget here; mute: no reason given); 2 GPU tests skipped: no GPU (run 'make test-gpu' on a GPU machine)"
[ "$(last)" = "$want" ] && ok || fail "closing line: '$(last)', want '$want'"
grep -qx 'failed: t/bad.sh' <<<"$out" && ok || fail "the failed test is named: $out"
grep -qx 'SKIP t/absent.sh: no widget here' <<<"$out" && ok || fail "the skip line names its reason"
grep -q '^PASS t/absent.sh' <<<"$out" && fail "a skip printed as PASS" || ok

run --cpu "t/good.sh t/absent.sh"
[ "$rc" -eq 0 ] && ok || fail "passes and skips only: exit $rc, want 0"
[ "$(last)" = "tests: 1 passed, 0 failed, 1 skipped (absent: no widget here)" ] && ok ||
  fail "closing line without failures: '$(last)'"

run --cpu "t/good.sh t/absent.sh t/bad.sh" --only good
[ "$rc" -eq 0 ] && [ "$(last)" = "tests: 1 passed, 0 failed, 0 skipped" ] && ok ||
  fail "--only good: exit $rc, '$(last)'"
run --cpu "t/good.sh t/bad.sh" --only bad
[ "$rc" -eq 1 ] && [ "$(last)" = "tests: 0 passed, 1 failed, 0 skipped" ] && ok ||
  fail "--only bad: exit $rc, '$(last)'"
run --cpu "t/good.sh t/bad.sh" --only nosuch
[ "$rc" -eq 2 ] && grep -q "no test named 'nosuch'" <<<"$out" && ok ||
  fail "--only of an unknown name: exit $rc, '$out'"

# --jobs 2: the same tally and closing line; two tests run at once (each waits
# for the other's mark), an --alone one with no other test beside it.
run --cpu "t/good.sh t/absent.sh t/mute.sh t/bad.sh" --gpu-count 2 --jobs 2 --alone "mute"
[ "$rc" -eq 1 ] && [ "$(last)" = "$want" ] && ok || fail "--jobs 2: exit $rc, closing line '$(last)'"
mkdir -p "$tmp/m"
for n in 1 2; do
  printf '#!/bin/sh
[ -e m/solo ] && exit 1
touch m/%s
for i in $(seq 50); do [ -e m/%s ] && exit 0; sleep 0.1; done
exit 1
' \
    "$n" "$((3 - n))" >"$tmp/t/pair$n.sh"
done
printf '#!/bin/sh
touch m/solo
sleep 0.5
[ -e m/1 ] || [ -e m/2 ] && exit 1
rm m/solo
' >"$tmp/t/solo.sh"
chmod +x "$tmp"/t/*.sh
run --cpu "t/pair1.sh t/solo.sh t/pair2.sh" --jobs 2 --alone "solo"
[ "$rc" -eq 0 ] && [ "$(last)" = "tests: 3 passed, 0 failed, 0 skipped" ] && ok ||
  fail "--jobs 2: two at once, the --alone one by itself: exit $rc, $out"

echo "run_tally: $passed passed, $failures failed"
[ "$failures" -eq 0 ] && [ "$passed" -gt 0 ]
