#!/usr/bin/env bash
# GPU test (make test-gpu T=torch_mimo): examples/torch_mimo.py with NCCL under gridd
# (issue 16, item 7): one GPU: --llm-only tp1; with 2 or more GPUs also encoder + LLM on
# one GPU each (the bridge); with 4 or more also encoder dp2 + LLM tp2 on 4. Each run must
# exit 0 with the LLM's loss falling (scripts/torch_mimo_gpu.sh).
# Skips (77) without a GPU or without a Python whose torch sees CUDA.
# TORCH_MIMO_BACKEND=gloo runs the same on CPUs (a check of this test without a GPU).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
if [ "${TORCH_MIMO_BACKEND:-nccl}" = nccl ]; then
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
else
  gpus=1
fi
scripts/torch_mimo_gpu.sh 1 --llm-only --llm-tp 1 --llm-dp 1
rc=$?
[ $rc -eq 0 ] || exit $rc
if [ "$gpus" -ge 2 ]; then  # the bridge over NCCL: encoder and LLM on a GPU each
  scripts/torch_mimo_gpu.sh 2 --encoder-tp 1 --encoder-dp 1 --llm-tp 1 --llm-dp 1 \
    --micro-batch-size 2 || exit 1
fi
if [ "$gpus" -ge 4 ]; then
  scripts/torch_mimo_gpu.sh 4 --encoder-tp 1 --encoder-dp 2 --llm-tp 2 --llm-dp 1 \
    --micro-batch-size 2 || exit 1
else
  echo "torch_mimo: $gpus GPU(s): the 4-GPU layout (encoder dp2 + LLM tp2) needs 4"
fi
exit 0
