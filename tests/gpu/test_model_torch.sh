#!/usr/bin/env bash
# The whole model, dense (tiny) and MoE (tiny-moe), against PyTorch autograd
# (float64) on the same weights and batch: the CPU reference model, and
# hgrid-worker --single-gpu's step (train/'s, every group of one rank) on the
# GPU in fp32 (tight) and bf16 (loose): loss, every gradient, and the losses
# of 10 AdamW steps with clipping.
set -euo pipefail
bin=${HGRID_BIN:-bin}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for config in tiny tiny-moe; do
  args=(--config "$config" --steps 10 --batch 4 --seed 3)
  "$bin/hgrid-worker" --single-gpu "${args[@]}" --cpu --dump "$dir/$config-cpu.bin" >/dev/null
  "$bin/hgrid-worker" --single-gpu "${args[@]}" --fp32 --dump "$dir/$config-gpu-fp32.bin" >/dev/null
  "$bin/hgrid-worker" --single-gpu "${args[@]}" --dump "$dir/$config-gpu-bf16.bin" >/dev/null
done
python3 tests/torch/model.py "$dir"/*.bin
