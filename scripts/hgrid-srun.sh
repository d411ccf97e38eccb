#!/usr/bin/env bash
# One hgrid-worker per Slurm task: run it as srun's command, one task per GPU.
#   srun --nodes 2 --ntasks-per-node 4 --gpus-per-node 4 \
#        scripts/hgrid-srun.sh --config small --steps 1000
# From the environment: the coordinator (HGRID_COORDINATOR=HOST:PORT), the
# job (HGRID_JOB) and its token (HGRID_TOKEN: never on the command line);
# from Slurm: the host (SLURMD_NODENAME) and the GPU (SLURM_LOCALID).
# gridd picks the ranks (host by host, tp groups inside a host); pass
# --use-launcher-rank to ask for SLURM_PROCID instead. Other arguments go to
# hgrid-worker. HGRID_WORKER names the program (default: hgrid-worker next
# to this script as installed, else in the checkout's bin/, else on PATH).
# HGRID_AGENT=PATH (hgrid-agent): the node's tasks reach gridd through one
# agent, started by the node's first task (local id 0) and gone 30 s
# (HGRID_AGENT_IDLE_S) after the node's last worker; HGRID_AGENT_SOCKET
# names an agent already running instead (e.g. systemd's).
set -euo pipefail
me=hgrid-srun
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

for v in SLURM_PROCID SLURM_LOCALID SLURMD_NODENAME; do
  [ -n "${!v:-}" ] || die "$v is not set: run me as srun's command (srun ... $0 ...)"
done
for v in HGRID_COORDINATOR HGRID_JOB HGRID_TOKEN; do
  [ -n "${!v:-}" ] || die "$v is not set: export it before srun (srun passes the environment on)"
done
# With per-task GPU binding each task sees one GPU, always device 0 to CUDA,
# and gridd would see every task of a node as the same GPU.
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ] && [[ "$CUDA_VISIBLE_DEVICES" != *,* ]] &&
   [ "$SLURM_LOCALID" -gt 0 ]; then
  die "task $SLURM_LOCALID sees one GPU (CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES): use" \
      "--gpus-per-node, not --gpus-per-task, or srun --gpu-bind=none"
fi

worker=${HGRID_WORKER:-$(find_worker)}
export HGRID_HOSTNAME=${HGRID_HOSTNAME:-$SLURMD_NODENAME}
# The node's task count (SLURM_STEP_TASKS_PER_NODE "4(x2)" or "4"; 0: unknown).
per_node=$(sed -n 's/^\([0-9][0-9]*\)\((x[0-9]*)\)\{0,1\}$/\1/p' <<<"${SLURM_STEP_TASKS_PER_NODE:-}")
agent_on_demand "$HGRID_JOB.${SLURM_JOB_ID:-0}.${SLURM_STEP_ID:-0}" "$SLURM_LOCALID" "${per_node:-0}"
exec "$worker" --device "$SLURM_LOCALID" "$@"
