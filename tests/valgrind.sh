#!/usr/bin/env bash
# Every CPU test of the release build under valgrind's memcheck (errors and
# definite/indirect leaks make a process exit 99): test binaries directly,
# script tests with $HGRID_BIN pointing at wrappers that run bin/'s programs
# under valgrind. Not part of `make test` (about an hour on 2 cores; tests
# with tight timeouts may time out under valgrind's slowdown, so judge by
# the logs); docs/RELIABILITY.md records the last result.
#   usage: tests/valgrind.sh [TEST...]     default: every CPU test but the fuzzers
#   after: make all $(CPU_TESTS of the release build)
# Logs go to $VG_DIR (default /tmp/hgrid-valgrind)/logs/NAME.PID.log.
set -u
cd "$(dirname "$0")/.." || exit 1
dir=${VG_DIR:-/tmp/hgrid-valgrind}
rm -rf "$dir" && mkdir -p "$dir/bin" "$dir/logs" "$dir/out"
vg=(valgrind -q --error-exitcode=99 --suppressions="$PWD/tests/valgrind.supp" --leak-check=full
    --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect)
for p in bin/*; do
  [ -x "$p" ] && [ -f "$p" ] || continue
  name=$(basename "$p")
  printf '#!/bin/sh\nexec %s --log-file=%s/logs/%s.%%p.log %s "$@"\n' \
    "${vg[*]}" "$dir" "$name" "$PWD/$p" > "$dir/bin/$name"
  chmod +x "$dir/bin/$name"
done
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  read -r -a tests <<<"$(make -pn 2>/dev/null | sed -n 's/^CPU_TESTS := //p' | head -1)"
fi
for t in "${tests[@]}"; do
  case $t in tests/fuzz/*) continue ;; esac
  name=$(basename "$t") start=$(date +%s)
  if [ "${t#build/}" != "$t" ]; then
    "${vg[@]}" --log-file="$dir/logs/$name.%p.log" "./$t" > "$dir/out/$name" 2>&1
  else
    HGRID_BIN=$dir/bin "./$t" > "$dir/out/$name" 2>&1
  fi
  echo "$t: exit $? in $(( $(date +%s) - start )) s: $(tail -1 "$dir/out/$name")"
done
logs=$(find "$dir/logs" -type f | wc -l)
bad=$(find "$dir/logs" -type f -size +0 | sort)
echo "valgrind: $logs processes, $(printf '%s' "$bad" | grep -c .) with a report"
for f in $bad; do echo "  $f: $(grep -m1 -E '== [A-Z0-9]' "$f")"; done
[ -z "$bad" ]
