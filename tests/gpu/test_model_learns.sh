#!/usr/bin/env bash
# Image information crosses the bridge: training `tiny` in bf16 on fresh
# samples, the mean caption loss of the last 50 steps ends below the
# text-only floor (the best loss without looking at the image).
set -euo pipefail
bin=${HGRID_BIN:-bin}
steps=${STEPS:-1500}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$bin/hgrid-worker" --single-gpu --config tiny --steps "$steps" --seed 11 >"$log"
awk -v steps="$steps" '
  /text-only floor/ { floor = $NF }
  /^step/ { loss[$2] = $5; if (!first && $5 < floor) first = $2 }
  END {
    for (s = steps - 49; s <= steps; s++) sum += loss[s]
    mean = sum / 50
    printf "tiny: first step below the floor %s; mean loss of the last 50 steps %.4f, floor %.4f\n",
           first ? first : "none", mean, floor
    exit !(floor > 0 && mean < floor)
  }' "$log"
