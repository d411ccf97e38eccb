#!/usr/bin/env bash
# Fetches the cuDNN frontend's C++ headers (header-only, MIT) from PyPI's
# nvidia-cudnn-frontend wheel into DEST/include, for kernels/attention_cudnn.cu.
# Usage: scripts/fetch-cudnn-frontend.sh [DEST]   (default build/cudnn-frontend)
set -euo pipefail
dest=${1:-build/cudnn-frontend}
[ -f "$dest/include/cudnn_frontend.h" ] && { echo "cuDNN frontend: $dest/include (present)"; exit 0; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! python3 -m pip download --quiet --no-deps --dest "$tmp" nvidia-cudnn-frontend >"$tmp/log" 2>&1; then
  echo "fetch-cudnn-frontend: 'pip download nvidia-cudnn-frontend' failed (no PyPI access?); the build uses hgrid's attention kernels" >&2
  tail -3 "$tmp/log" >&2
  exit 1
fi
mkdir -p "$dest"
python3 - "$tmp" "$dest" <<'PY'
import glob, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(tmp + "/*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith("include/"):
            z.extract(name, dest)
PY
echo "cuDNN frontend: $dest/include ($(basename "$(ls "$tmp"/*.whl)"))"
