#!/usr/bin/env bash
# Starts GPUS hgrid-workers on each host over ssh and waits for them all.
#   HGRID_TOKEN=... scripts/hgrid-ssh.sh --coordinator head:7420 --job demo \
#       --gpus 4 node-a node-b -- --config small --steps 1000
# The token goes to each host on ssh's standard input, never on a command
# line (ps on either side would show it). Each host's workers use GPUs
# 0..GPUS-1 and that host's own name. Exit status: 0 when every worker
# exited 0, else 1 (each failing host is named).
# HGRID_SSH: the ssh command (default "ssh -o BatchMode=yes"); HGRID_WORKER:
# hgrid-worker's path on the hosts (default: the one beside this script or
# in its checkout's bin/ where the hosts have it, else their PATH's).
# HGRID_AGENT: hgrid-agent's path on the hosts: each host's workers then
# reach gridd through one agent started for them (one connection per host).
set -euo pipefail
me=hgrid-ssh
usage() {
  sed -n '2,13s/^# \{0,1\}//p' "$0"
  echo "usage: $me --coordinator HOST:PORT --job NAME --gpus N HOST... [-- worker flags]"
}
die() { echo "$me: $* (try '$me --help')" >&2; exit 2; }

# hgrid-worker's path on the hosts: HGRID_WORKER, else where this script
# finds it (beside it as installed, or in the checkout's bin/), which the
# hosts use if they have it there (a shared file system), else their PATH's.
here=$(dirname "$(readlink -f "$0")") local_worker=hgrid-worker
for w in "$here/hgrid-worker" "$here/../bin/hgrid-worker"; do
  [ -x "$w" ] && { local_worker=$(readlink -f "$w"); break; }
done
# hgrid-lines prefixes each host's lines with its name and writes every line
# whole: the hosts share this script's output, and their workers' --json
# lines are longer than a pipe keeps whole (sed -u would cut them).
lines=""
for l in "$here/hgrid-lines" "$here/../bin/hgrid-lines" "$(command -v hgrid-lines || true)"; do
  [ -n "$l" ] && [ -x "$l" ] && { lines=$(readlink -f "$l"); break; }
done
coordinator=${HGRID_COORDINATOR:-} job=${HGRID_JOB:-} gpus="" hosts=()
while [ $# -gt 0 ]; do
  case "$1" in
    --coordinator) [ $# -ge 2 ] || die "--coordinator needs HOST:PORT"; coordinator=$2; shift 2 ;;
    --job) [ $# -ge 2 ] || die "--job needs a name"; job=$2; shift 2 ;;
    --gpus) [ $# -ge 2 ] || die "--gpus needs a count"; gpus=$2; shift 2 ;;
    --help|-h) usage; exit 0 ;;
    --version) "${HGRID_WORKER:-$local_worker}" --version | sed "s/^hgrid-worker/$me/"; exit 0 ;;
    --) shift; break ;;
    -*) die "unknown option '$1'" ;;
    *) hosts+=("$1"); shift ;;
  esac
done
[ -n "$coordinator" ] && [ -n "$job" ] || die "--coordinator and --job are required"
[[ "$gpus" =~ ^[1-9][0-9]*$ ]] || die "--gpus needs a GPU count per host, got '$gpus'"
[ ${#hosts[@]} -gt 0 ] || die "name at least one host"
[ -n "${HGRID_TOKEN:-}" ] || die "HGRID_TOKEN is not set (the token hgridctl submit printed)"
[ -n "$lines" ] || echo "$me: warning: hgrid-lines is not beside this script nor on PATH;" \
  "lines longer than 4 KiB from different hosts may interleave (make install puts it here)" >&2

ssh_cmd=${HGRID_SSH:-ssh -o BatchMode=yes}
worker=${HGRID_WORKER:-}
q() { [ $# -eq 0 ] || printf '%q ' "$@"; }
# With HGRID_AGENT: an agent in a fresh 0700 directory, its socket given
# to the workers, stopped after them.
# HGRID_AGENT_HELLO_WAIT_MS: the agent's --hello-wait-ms (default 1000).
agent_start="" agent_stop="" hello_wait=""
if [ -n "${HGRID_AGENT:-}" ]; then
  if [ -n "${HGRID_AGENT_HELLO_WAIT_MS:-}" ]; then
    [[ "$HGRID_AGENT_HELLO_WAIT_MS" =~ ^[0-9]{1,6}$ ]] && [ "$((10#$HGRID_AGENT_HELLO_WAIT_MS))" -le 600000 ] ||
      die "HGRID_AGENT_HELLO_WAIT_MS must be milliseconds from 0 to 600000, got '$HGRID_AGENT_HELLO_WAIT_MS'"
    hello_wait="--hello-wait-ms $((10#$HGRID_AGENT_HELLO_WAIT_MS))"
  fi
  agent_start="adir=\$(mktemp -d) || exit 2; $(q "$HGRID_AGENT") --socket \$adir/agent.sock --gpus $gpus $hello_wait 2>&1 & apid=\$!
export HGRID_AGENT_SOCKET=\$adir/agent.sock; i=0; while [ ! -S \$HGRID_AGENT_SOCKET ] && [ \$i -lt 100 ]; do sleep 0.05; i=\$((i + 1)); done"
  agent_stop="kill \$apid; wait \$apid; rm -rf \$adir"
fi
# The remote side (any POSIX sh): read the token, start one worker per GPU,
# wait for all. Everything goes to ssh's one output pipe (2>&1), where the
# workers and the agent write each line whole under the pipe's lock.
pick_worker="w=$(q "$worker")"
[ -n "$worker" ] || pick_worker="w=$(q "$local_worker"); [ -x \"\$w\" ] || w=hgrid-worker"
remote="read -r HGRID_TOKEN || exit 2; export HGRID_TOKEN; $pick_worker; pids=
$agent_start
for d in \$(seq 0 $((gpus - 1))); do \"\$w\" $(q --coordinator "$coordinator" --job "$job") --device \$d $(q "$@") 2>&1 & pids=\"\$pids \$!\"; done
fail=0; for p in \$pids; do wait \$p || fail=1; done; $agent_stop
exit \$fail"

run_host() {
  set -o pipefail
  # shellcheck disable=SC2086 # HGRID_SSH is a command with its options
  if [ -n "$lines" ]; then
    $ssh_cmd "$1" "$remote" <<<"$HGRID_TOKEN" 2>&1 | "$lines" --prefix "$1: "
  else
    $ssh_cmd "$1" "$remote" <<<"$HGRID_TOKEN" 2>&1 | sed -u "s|^|$1: |"
  fi
}
pids=()
for h in "${hosts[@]}"; do
  run_host "$h" &
  pids+=($!)
done
status=0
for i in "${!hosts[@]}"; do
  wait "${pids[$i]}" || { echo "$me: a worker on ${hosts[$i]} failed" >&2; status=1; }
done
exit $status
