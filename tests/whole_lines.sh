#!/usr/bin/env bash
# hgrid-lines as hgrid-ssh runs it, one per host into one shared pipe: every
# line arrives whole and prefixed, however long (sed -u, the control, cuts
# them); its edge cases and usage; and hgrid-ssh end to end with 2 hosts of
# 4 writers that each write long lines whole (as workers do), whose lines
# must all come out whole with the right host's name.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
lines=$root/bin/hgrid-lines
tmp=$(mktemp -d --suffix=.hgrid-lines)
trap 'rm -rf "$tmp"' EXIT
failures=0 passed=0
ok() { passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# gen LETTER COUNT LENGTH: COUNT lines of LENGTH letters
gen() { awk -v c="$1" -v n="$2" -v len="$3" 'BEGIN { s = ""; for (i = 0; i < len; i++) s = s c; for (i = 0; i < n; i++) print s }'; }
# broken FILE PATTERN: how many lines do not match the whole-line pattern
broken() { awk -v re="$2" '$0 !~ re { bad++ } END { print bad + 0 }' "$1"; }

# Six relays into one pipe, 40 lines of 30,000 letters each.
relay_run() { # relay-kind output
  for i in 1 2 3 4 5 6; do
    c=$(printf '%s' abcdef | cut -c$i)
    if [ "$1" = sed ]; then gen "$c" 40 30000 | sed -u "s|^|h$i: |" &
    else gen "$c" 40 30000 | "$lines" --prefix "h$i: " & fi
  done | cat >"$2"
}
relay_run lines "$tmp/relay.out"
whole='^(h1: a+|h2: b+|h3: c+|h4: d+|h5: e+|h6: f+)$'
n=$(wc -l <"$tmp/relay.out") bad=$(broken "$tmp/relay.out" "$whole")
[ "$n" -eq 240 ] && [ "$bad" -eq 0 ] && ok || fail "six hgrid-lines into one pipe: $n lines (240), $bad cut"
n=$(awk 'length($0) != 30004' "$tmp/relay.out" | wc -l)
[ "$n" -eq 0 ] && ok || fail "six hgrid-lines: $n lines not 30,004 bytes long"
relay_run sed "$tmp/sed.out"
echo "control: six sed -u into one pipe cut $(broken "$tmp/sed.out" "$whole") of 240 lines"

# A last line without a newline gets one; an empty prefix; CR and NUL-free text kept.
out=$(printf 'one\ntwo' | "$lines" --prefix 'x: ' | od -c | tr -s ' ' | head -2 | tr '\n' ' ')
[ "$(printf 'one\ntwo' | "$lines" --prefix 'x: ')" = "$(printf 'x: one\nx: two')" ] &&
  [ "$(printf 'two' | "$lines" | wc -c)" -eq 4 ] && ok || fail "last line without a newline: $out"
[ "$(printf 'a\n\nb\n' | "$lines" --prefix '> ')" = "$(printf '> a\n> \n> b')" ] && ok ||
  fail "an empty line keeps its prefix"
"$lines" --help | grep -q -- '--prefix' && ok || fail "hgrid-lines --help names --prefix"
err=$("$lines" --prefx x 2>&1 </dev/null); rc=$?
[ "$rc" -eq 2 ] && [[ "$err" == *"unknown option"*"--prefix"*"try 'hgrid-lines --help'"* ]] && ok ||
  fail "hgrid-lines --prefx: exit $rc, '$err'"
# A closed output: exit 1 with the reason, not a hang.
rc=$( (gen a 1000 100 | "$lines" 2>"$tmp/epipe.err" | head -1 >/dev/null; echo "${PIPESTATUS[1]}") )
{ [ "$rc" -eq 1 ] && grep -q 'cannot write standard output' "$tmp/epipe.err"; } || [ "$rc" -eq 141 ] && ok ||
  fail "hgrid-lines into a closed pipe: exit $rc, '$(cat "$tmp/epipe.err")'"

# hgrid-ssh end to end: a fake ssh runs the host's side here, whose 4
# "workers" each write 20 lines of 20,000 letters through hgrid-lines (a
# locking writer, as hgrid-worker is) into the host's one ssh pipe.
mkdir -p "$tmp/checkout/scripts" "$tmp/checkout/bin"
cp "$root/scripts/hgrid-ssh.sh" "$tmp/checkout/scripts/"
cp "$lines" "$tmp/checkout/bin/"
cat >"$tmp/checkout/bin/hgrid-worker" <<EOW
#!/bin/bash
# --device D: letter a+D; lines through hgrid-lines, as a worker writes whole.
d=\$(sed -n 's/.*--device \([0-9]*\).*/\1/p' <<<"\$*")
c=\$(printf '%s' abcd | cut -c\$((d + 1)))
$(declare -f gen)
gen "\$c" 20 20000 | "$tmp/checkout/bin/hgrid-lines" --prefix "d\$d: "
EOW
chmod +x "$tmp/checkout/bin/hgrid-worker"
printf '#!/bin/sh\nshift\nexec sh -c "$1"\n' >"$tmp/ssh"
chmod +x "$tmp/ssh"
env -i PATH=/usr/bin:/bin HGRID_SSH="$tmp/ssh" HGRID_TOKEN=t "$tmp/checkout/scripts/hgrid-ssh.sh" \
  --coordinator h --job j --gpus 4 node-a node-b >"$tmp/ssh.out" 2>&1
rc=$?
n=$(wc -l <"$tmp/ssh.out")
bad=$(broken "$tmp/ssh.out" '^node-[ab]: (d0: a+|d1: b+|d2: c+|d3: d+)$')
short=$(awk 'length($0) != 20012' "$tmp/ssh.out" | wc -l)
[ "$rc" -eq 0 ] && [ "$n" -eq 160 ] && [ "$bad" -eq 0 ] && [ "$short" -eq 0 ] && ok ||
  fail "hgrid-ssh, 2 hosts x 4 writers: exit $rc, $n lines (160), $bad cut, $short of the wrong length"
for h in node-a node-b; do
  [ "$(grep -c "^$h: " "$tmp/ssh.out")" -eq 80 ] && ok || fail "hgrid-ssh: $h's 80 lines"
done
# Without hgrid-lines beside it or on PATH: sed, and a one-line warning.
rm "$tmp/checkout/bin/hgrid-lines"
cat >"$tmp/checkout/bin/hgrid-worker" <<'EOW'
#!/bin/sh
echo "worker $*"
EOW
out=$(env -i PATH=/usr/bin:/bin HGRID_SSH="$tmp/ssh" HGRID_TOKEN=t "$tmp/checkout/scripts/hgrid-ssh.sh" \
  --coordinator h --job j --gpus 1 node-a 2>&1); rc=$?
[ "$rc" -eq 0 ] && [ "$(grep -c 'warning: hgrid-lines is not beside this script' <<<"$out")" -eq 1 ] &&
  grep -q '^node-a: worker --coordinator h --job j --device 0$' <<<"$out" && ok ||
  fail "hgrid-ssh without hgrid-lines: exit $rc, '$out'"

echo "whole_lines: $passed passed, $failures failed"
[ "$failures" -eq 0 ] && [ "$passed" -gt 0 ]
