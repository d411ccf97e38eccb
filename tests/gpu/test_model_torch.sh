#!/usr/bin/env bash
# The whole model against PyTorch autograd (float64) on the same weights and
# batch: the CPU model and the GPU model in fp32 (tight) and bf16 (loose),
# loss, every gradient, and the losses of 10 AdamW steps with clipping.
set -euo pipefail
bin=${HGRID_BIN:-bin}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
args=(--config tiny --steps 10 --batch 4 --seed 3)
"$bin/hgrid-train" "${args[@]}" --cpu --dump "$dir/cpu.bin" >/dev/null
"$bin/hgrid-train" "${args[@]}" --fp32 --dump "$dir/gpu-fp32.bin" >/dev/null
"$bin/hgrid-train" "${args[@]}" --dump "$dir/gpu-bf16.bin" >/dev/null
python3 tests/torch/model.py "$dir/cpu.bin" "$dir/gpu-fp32.bin" "$dir/gpu-bf16.bin"
