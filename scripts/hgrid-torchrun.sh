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

# The launchers' shared functions (find_worker, agent_on_demand): beside this
# script in a checkout's scripts/, in PREFIX/share/hgrid as installed.
here=$(dirname "$(readlink -f "$0")")
lib=$here/hgrid-launch-lib.sh
[ -f "$lib" ] || lib=$here/../share/hgrid/hgrid-launch-lib.sh
[ -f "$lib" ] ||
  die "hgrid-launch-lib.sh is neither beside $0 nor in $(readlink -f "$here/..")/share/hgrid: reinstall hgrid (make install)"
# shellcheck source=scripts/hgrid-launch-lib.sh
. "$lib"

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
