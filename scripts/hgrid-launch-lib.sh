# shellcheck shell=bash
# What hgrid-srun and hgrid-torchrun share, sourced by both: finding
# hgrid-worker, and a host's hgrid-agent started on demand. The sourcing
# script defines die() (its one-line error, exit 2). Installed as
# PREFIX/share/hgrid/hgrid-launch-lib.sh; in a checkout it is in scripts/.

# HGRID_AGENT (hgrid-agent's path) without HGRID_AGENT_SOCKET: the host's
# workers reach gridd through one agent (one connection per host), which
# the host's first task starts for them in a fresh 0700 directory; it exits
# HGRID_AGENT_IDLE_S (default 30) seconds after the host's last worker.
# HGRID_AGENT_HELLO_WAIT_MS: how long its first HostHello waits for the
# host's other workers (the agent's --hello-wait-ms, default 1000).
agent_on_demand() { # KEY LOCAL_ID LOCAL_COUNT
  [ -n "${HGRID_AGENT:-}" ] && [ -z "${HGRID_AGENT_SOCKET:-}" ] || return 0
  local agent uid dir _ wait
  agent=$(command -v "$HGRID_AGENT") || die "HGRID_AGENT=$HGRID_AGENT is not a program"
  wait=$(agent_hello_wait) || exit 2
  uid=$(id -u)
  dir=${XDG_RUNTIME_DIR:-${TMPDIR:-/tmp}}/hgrid-agent.$uid.$1
  export HGRID_AGENT_SOCKET=$dir/agent.sock
  if [ "$2" = 0 ]; then
    # Its log goes beside its socket, not to this task's output (which the
    # launcher would wait on while the agent lives); to the output if the
    # directory is not ours (the agent then refuses it and says why).
    mkdir -m 0700 "$dir" 2>/dev/null || true
    if [ -O "$dir" ] && [ ! -L "$dir" ]; then
      # shellcheck disable=SC2086 # $wait: the flag and its value, or nothing
      setsid "$agent" --socket "$HGRID_AGENT_SOCKET" --gpus "$3" $wait \
        --exit-idle "${HGRID_AGENT_IDLE_S:-30}" </dev/null >/dev/null 2>>"$dir/agent.log" &
    else
      # shellcheck disable=SC2086
      setsid "$agent" --socket "$HGRID_AGENT_SOCKET" --gpus "$3" $wait \
        --exit-idle "${HGRID_AGENT_IDLE_S:-30}" </dev/null >/dev/null &
    fi
  fi
  for _ in $(seq 200); do
    [ -S "$HGRID_AGENT_SOCKET" ] && return 0
    sleep 0.05
  done
  die "no hgrid-agent at $HGRID_AGENT_SOCKET after 10 s (the node's first task starts it; its log: $dir/agent.log)"
}

# "--hello-wait-ms MS" from HGRID_AGENT_HELLO_WAIT_MS, or nothing; a value
# that is not 0..600000 is refused here, not in the agent's log.
agent_hello_wait() {
  local ms=${HGRID_AGENT_HELLO_WAIT_MS:-}
  [ -n "$ms" ] || return 0
  [[ "$ms" =~ ^[0-9]{1,6}$ ]] && [ "$((10#$ms))" -le 600000 ] ||
    die "HGRID_AGENT_HELLO_WAIT_MS must be milliseconds from 0 to 600000, got '$ms'"
  echo "--hello-wait-ms $((10#$ms))"
}

# hgrid-worker beside this script (an install's PREFIX/bin), in a checkout's
# bin/ (this script in scripts/), else on PATH.
find_worker() {
  local here w
  here=$(dirname "$(readlink -f "$0")")
  for w in "$here/hgrid-worker" "$here/../bin/hgrid-worker"; do
    [ -x "$w" ] && { readlink -f "$w"; return; }
  done
  command -v hgrid-worker ||
    die "hgrid-worker is not beside $0, in $(readlink -f "$here/..")/bin or on PATH: build it (make) or set HGRID_WORKER"
}
