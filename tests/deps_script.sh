#!/usr/bin/env bash
# scripts/deps.sh (the README's first command): as root it calls apt-get
# itself (no sudo needed: a fresh container has none); as a user through
# sudo; as a user without sudo it says so in one line. apt-get, sudo and id
# are stand-ins that record what they were asked.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d --suffix=.hgrid-deps)
trap 'rm -rf "$tmp"' EXIT
failures=0 passed=0
ok() { passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# setup UID WITH_SUDO: a PATH holding only stand-ins (and env).
setup() {
  rm -rf "$tmp/bin" "$tmp/log"; mkdir -p "$tmp/bin"
  printf '#!/bin/sh\necho %s\n' "$1" >"$tmp/bin/id"
  printf '#!/bin/sh\necho "apt-get $*" >>%s/log\n' "$tmp" >"$tmp/bin/apt-get"
  [ "$2" = yes ] && printf '#!/bin/sh\necho "sudo $1" >>%s/log\nexec "$@"\n' "$tmp" >"$tmp/bin/sudo"
  ln -s "$(command -v env)" "$tmp/bin/env"
  chmod +x "$tmp"/bin/*
}
run() { out=$(env -i PATH="$tmp/bin" /bin/sh "$root/scripts/deps.sh" 2>&1); rc=$?; log=$(cat "$tmp/log" 2>/dev/null); }

setup 0 no
run
[ "$rc" -eq 0 ] && [ "$(grep -c '^apt-get ' <<<"$log")" -eq 2 ] && grep -q '^apt-get update$' <<<"$log" &&
  grep -q '^apt-get install -y build-essential .*libuv1-dev' <<<"$log" && ! grep -q sudo <<<"$log" && ok ||
  fail "as root without sudo: exit $rc, log '$log', out '$out'"
setup 1000 yes
run
[ "$rc" -eq 0 ] && [ "$(grep -c '^sudo ' <<<"$log")" -eq 2 ] && grep -q '^apt-get install -y ' <<<"$log" && ok ||
  fail "as a user with sudo: exit $rc, log '$log'"
setup 1000 no
run
[ "$rc" -eq 1 ] && [ -z "$log" ] && [ "$out" = "deps.sh: not root and no sudo: run it as root" ] && ok ||
  fail "as a user without sudo: exit $rc, log '$log', out '$out'"
echo "deps_script: $passed passed, $failures failed"
[ "$failures" -eq 0 ] && [ "$passed" -gt 0 ]
