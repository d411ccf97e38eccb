#!/usr/bin/env bash
# hgrid-worker --single-gpu without a GPU: usage errors exit 2 with a
# one-line reason, training says it needs a GPU (exit 1), --help prints hgrid-worker's usage, --describe prints the
# config (with --encoders N, N encoders, checked as a job's: each one's
# patches in the sequence), and --cpu --dump trains the CPU model on one
# batch and writes the dump PyTorch reads.
set -u
bin=${HGRID_BIN:-bin}
train() { "$bin/hgrid-worker" --single-gpu "$@"; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
passed=0 failed=0
check() { # check NAME CONDITION...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $name"; fi
}

train --config nope --steps 1 >/dev/null 2>"$dir/err"; rc=$?
check "unknown config exits 2" test "$rc" -eq 2
check "unknown config lists the configs" grep -q "tiny tiny-moe small small-moe 1b" "$dir/err"
train --steps 1 >/dev/null 2>&1; rc=$?
check "missing --config exits 2" test "$rc" -eq 2
train --config tiny --steps 1 --cpu >/dev/null 2>&1; rc=$?
check "--cpu without --dump exits 2" test "$rc" -eq 2
train --config tiny --steps x >/dev/null 2>&1; rc=$?
check "non-numeric --steps exits 2" test "$rc" -eq 2
train --config tiny --steps 2.5 >/dev/null 2>&1; rc=$?
check "fractional --steps exits 2" test "$rc" -eq 2
train --config tiny --steps 1 --lr 0 >/dev/null 2>"$dir/err"; rc=$?
check "--lr 0 exits 2, as for the workers" test "$rc" -eq 2
check "--lr 0: the workers' one-line reason" grep -q "^hgrid-worker: --lr needs a number" "$dir/err"
# Training without a usable GPU: one line that says so (not cuBLAS's error).
CUDA_VISIBLE_DEVICES= train --config tiny --steps 1 >/dev/null 2>"$dir/err"; rc=$?
check "no GPU: training exits 1" test "$rc" -eq 1
check "no GPU: one line naming the need for a GPU and --cpu" \
  grep -qx "hgrid-worker: --single-gpu needs a CUDA GPU and finds none (CUDA: .*); run it on a GPU machine, or --dump PATH --cpu for the CPU reference" "$dir/err"
check "no GPU: nothing else on stderr" test "$(wc -l <"$dir/err")" -eq 1
train --help >"$dir/help"; rc=$?
check "--help exits 0" test "$rc" -eq 0
check "--help prints hgrid-worker's usage" grep -q "^usage: hgrid-worker" "$dir/help"
check "--help lists --dump" grep -q -- "--dump PATH" "$dir/help"

train --config small --describe >"$dir/small"; rc=$?
check "--describe exits 0" test "$rc" -eq 0
check "--describe prints small's hidden size" grep -qx "hidden_size 768" "$dir/small"
check "--describe prints small's batch" grep -qx "batch 16" "$dir/small"
train --config tiny --steps 1 --encoders 2 --describe >"$dir/enc2"; rc=$?
check "--encoders 2 --describe exits 0" test "$rc" -eq 0
check "--describe prints the 2 encoders" grep -qx "encoders 2" "$dir/enc2"
check "--describe prints one encoder by default" grep -qx "encoders 1" "$dir/small"
train --config tiny --steps 1 --encoders 4 --describe >/dev/null 2>"$dir/err"; rc=$?
check "--encoders 4 on tiny exits 2" test "$rc" -eq 2
check "--encoders 4 on tiny: no caption positions left, one line" grep -qx \
  "hgrid-worker: config tiny with --encoders: --seq-length 64 leaves 0 caption positions after 64 patches (--image-size 16 / --patch-size 4 for each of 4 encoders); need 8" \
  "$dir/err"
train --config tiny --steps 1 --encoders 9 >/dev/null 2>"$dir/err"; rc=$?
check "--encoders 9 exits 2" test "$rc" -eq 2
check "--encoders 9: the bound" grep -q "^hgrid-worker: --encoders needs a number in \[1, 8\]" "$dir/err"
train --config tiny --steps 1 --encoders 2 --cpu --dump "$dir/x.bin" >/dev/null 2>"$dir/err"; rc=$?
check "--dump with --encoders 2 exits 2" test "$rc" -eq 2
check "--dump with --encoders 2 says why" grep -q "drop --encoders" "$dir/err"
"$bin/hgrid-worker" --coordinator 127.0.0.1:1 --job j --token t --config tiny --steps 1 \
  --encoders 2 >/dev/null 2>"$dir/err"; rc=$?
check "a worker's --encoders exits 2" test "$rc" -eq 2
check "a worker's --encoders: the job's encoders" grep -q "worker trains the job's encoders" "$dir/err"
check "--describe prints small's experts (dense)" grep -qx "num_experts 0" "$dir/small"
train --config small-moe --describe >"$dir/small-moe"; rc=$?
check "--describe small-moe exits 0" test "$rc" -eq 0
check "--describe prints small-moe's experts" grep -qx "num_experts 8" "$dir/small-moe"
check "--describe prints small-moe's top-k" grep -qx "moe_router_topk 2" "$dir/small-moe"
check "--describe prints small-moe's batch" grep -qx "batch 16" "$dir/small-moe"
# small's LLM: 32000 x 768 + 1024 x 768 embeddings, 12 blocks of 7,087,872
# and the final LayerNorm's 2 x 768; small-moe's blocks hold 8 experts' MLPs (4,722,432 each) and a router of
# 8 x 768 instead of one MLP: 12 x (7,087,872 + 7 x 4,722,432 + 6,144).
check "--describe counts small's LLM parameters" grep -qx "llm_params 110418432" "$dir/small"
check "--describe counts small-moe's LLM parameters" \
  grep -qx "llm_params 507176448" "$dir/small-moe"
check "--describe counts small's encoder parameters" \
  grep -qx "encoder_params $(awk '/^encoder_params/ { print $2 }' "$dir/small-moe")" "$dir/small"

for config in tiny tiny-moe; do
  train --config "$config" --steps 3 --batch 2 --cpu --dump "$dir/$config.bin" >"$dir/out"; rc=$?
  check "$config dump exits 0" test "$rc" -eq 0
  check "$config dump written" test -s "$dir/$config.bin"
  check "$config dump starts with its magic" test "$(head -c 7 "$dir/$config.bin")" = HGDUMP1
  check "$config loss falls over 3 steps on one batch" \
    awk '/^dump step 0/ { a = $5 } /^dump step 2/ { b = $5 } END { exit !(b < a - 0.5) }' "$dir/out"
done
echo "test_model_cli: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
