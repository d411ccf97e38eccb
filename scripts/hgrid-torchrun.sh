#!/usr/bin/env bash
# One hgrid-worker per process of a torchrun-style launcher (torchrun,
# a PyTorchJob, any tool that sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR):
#   torchrun --nnodes 2 --nproc-per-node 4 --node-rank R --master-addr node0 \
#            --master-port 29500 --no-python scripts/hgrid-torchrun.sh --config small --steps 1000
# gridd runs on MASTER_ADDR at HGRID_PORT (default 7420; MASTER_PORT is the
# launcher's own store); HGRID_COORDINATOR=HOST:PORT overrides both (needed
# with an elastic rendezvous, where MASTER_ADDR is whichever node won). The job
# and token come from HGRID_JOB and HGRID_TOKEN. The GPU is LOCAL_RANK; with
# --use-launcher-rank the worker asks gridd for rank RANK (below WORLD_SIZE).
# HGRID_WORKER names the program (default: hgrid-worker next to this
# script as installed, else in the checkout's bin/, else on PATH).
# HGRID_AGENT=PATH (hgrid-agent): the node's workers reach gridd through one
# agent, started by LOCAL_RANK 0 and gone 30 s (HGRID_AGENT_IDLE_S) after
# the node's last worker, one per restart of the launcher's workers;
# HGRID_AGENT_SOCKET names an agent already running instead (e.g. systemd's).
set -euo pipefail
me=hgrid-torchrun
die() { echo "$me: $*" >&2; exit 2; }

# HGRID_AGENT (hgrid-agent's path) without HGRID_AGENT_SOCKET: the host's
# workers reach gridd through one agent (one connection per host), which
# the host's first task starts for them in a fresh 0700 directory; it exits
# HGRID_AGENT_IDLE_S (default 30) seconds after the host's last worker.
agent_on_demand() { # KEY LOCAL_ID LOCAL_COUNT
  [ -n "${HGRID_AGENT:-}" ] && [ -z "${HGRID_AGENT_SOCKET:-}" ] || return 0
  local agent uid dir _
  agent=$(command -v "$HGRID_AGENT") || die "HGRID_AGENT=$HGRID_AGENT is not a program"
  uid=$(id -u)
  dir=${XDG_RUNTIME_DIR:-${TMPDIR:-/tmp}}/hgrid-agent.$uid.$1
  export HGRID_AGENT_SOCKET=$dir/agent.sock
  if [ "$2" = 0 ]; then
    # Its log goes beside its socket, not to this task's output (which the
    # launcher would wait on while the agent lives); to the output if the
    # directory is not ours (the agent then refuses it and says why).
    mkdir -m 0700 "$dir" 2>/dev/null || true
    if [ -O "$dir" ] && [ ! -L "$dir" ]; then
      setsid "$agent" --socket "$HGRID_AGENT_SOCKET" --gpus "$3" \
        --exit-idle "${HGRID_AGENT_IDLE_S:-30}" </dev/null >/dev/null 2>>"$dir/agent.log" &
    else
      setsid "$agent" --socket "$HGRID_AGENT_SOCKET" --gpus "$3" \
        --exit-idle "${HGRID_AGENT_IDLE_S:-30}" </dev/null >/dev/null &
    fi
  fi
  for _ in $(seq 200); do
    [ -S "$HGRID_AGENT_SOCKET" ] && return 0
    sleep 0.05
  done
  die "no hgrid-agent at $HGRID_AGENT_SOCKET after 10 s (the node's first task starts it; its log: $dir/agent.log)"
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
# --help: the comment above; --version: hgrid-worker's, under this name.
case "${1:-}" in
  -h|--help) sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
  --version) "${HGRID_WORKER:-$(find_worker)}" --version | sed "s/^hgrid-worker/$me/"; exit 0 ;;
esac

for v in RANK LOCAL_RANK WORLD_SIZE; do
  [ -n "${!v:-}" ] || die "$v is not set: run me under torchrun (--no-python) or set it"
done
[ -n "${HGRID_COORDINATOR:-}${MASTER_ADDR:-}" ] ||
  die "neither HGRID_COORDINATOR nor MASTER_ADDR is set: say where gridd listens"
for v in HGRID_JOB HGRID_TOKEN; do
  [ -n "${!v:-}" ] || die "$v is not set: export it before starting the launcher"
done
[ "$RANK" -lt "$WORLD_SIZE" ] || die "RANK $RANK is not below WORLD_SIZE $WORLD_SIZE"

worker=${HGRID_WORKER:-$(find_worker)}
agent_on_demand "$HGRID_JOB.${TORCHELASTIC_RUN_ID:-0}.${TORCHELASTIC_RESTART_COUNT:-0}" "$LOCAL_RANK" \
  "${LOCAL_WORLD_SIZE:-0}"
exec "$worker" --device "$LOCAL_RANK" "$@"
