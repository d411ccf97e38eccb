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
set -euo pipefail
me=hgrid-srun
die() { echo "$me: $*" >&2; exit 2; }

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
exec "$worker" --device "$SLURM_LOCALID" "$@"
