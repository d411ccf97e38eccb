#!/usr/bin/env bash
# The GPU checks of a development session, one device call per step:
#   scripts/device/gpu-verify.sh build     # build from the repository root, cuDNN included
#   scripts/device/gpu-verify.sh tests     # every GPU test with cuDNN required, each bounded
#     (GPU_TEST_LIMIT=240 s a test; GPU_TESTS_FIRST="train_layouts ..." runs those first)
#   scripts/device/gpu-verify.sh bench     # the kernel, attention, model and 2-GPU benchmarks
#   scripts/device/gpu-verify.sh all       # the three, if the call's time allows
# Run from the repository root on the device machine, carrying .devdeps, staged here once:
#   ../shared/device/stage-deps.sh && echo /.devdeps/ >> .git/info/exclude
#   mkdir -p .devdeps/cudnn/include .devdeps/cudnn-frontend
#   cp /usr/local/cuda/include/cudnn*.h .devdeps/cudnn/include/
#   scripts/fetch-cudnn-frontend.sh && cp -r build/cudnn-frontend/include .devdeps/cudnn-frontend/
# Logs go to $OUT (else build/gpu-verify); each step prints its summary lines.
set -uo pipefail
cd "$(dirname "$0")/../.."
what=${1:-all}
case $what in build|tests|bench|all) ;; *)
  echo "usage: $0 build|tests|bench|all (got '$what')" >&2; exit 2 ;;
esac
out=${OUT:-build/gpu-verify}
mkdir -p "$out"
[ -f .devdeps/env.sh ] || { echo "gpu-verify: .devdeps/env.sh missing; stage it with ../shared/device/stage-deps.sh and carry .devdeps" >&2; exit 2; }
source .devdeps/env.sh
# libcudnn.so.9 from torch's nvidia-cudnn wheel: attention loads it at run time.
cudnn_lib=$(python3 -c 'import nvidia.cudnn as c, os; print(os.path.join(list(c.__path__)[0], "lib"))' 2>/dev/null)
[ -n "$cudnn_lib" ] && export LD_LIBRARY_PATH=$cudnn_lib:${LD_LIBRARY_PATH:-}
export HGRID_PYTHON=${HGRID_PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
git log -1 --format='commit %h %s' 2>/dev/null | tee "$out/commit.txt"

build() {
  local t0=$SECONDS
  if ! make -j"$(nproc)" all gpu-programs >"$out/build.log" 2>&1; then
    tail -40 "$out/build.log"; echo "gpu-verify: build failed (log: $out/build.log)"; return 1
  fi
  # The object, not the log: an incremental build may not have recompiled it.
  if [ -f build/rel/kernels/attention_cudnn.cpp.o ] &&
     nm -C build/rel/kernels/attention_cudnn.cpp.o | grep -q cudnn_frontend; then
    echo "gpu-verify: built with cuDNN attention in $((SECONDS - t0)) s"
  else
    echo "gpu-verify: WARNING built WITHOUT cuDNN attention (no frontend headers found) in $((SECONDS - t0)) s"
  fi
}

# Every GPU test on its own, each bounded (GPU_TEST_LIMIT s, default 240), so
# one that hangs costs its limit, not the call; the names that ran first are
# the ones not yet verified this session (GPU_TESTS_FIRST, space-separated).
tests() {
  local names t rc=0 r
  names=$(make -s -f Makefile print-gpu-tests 2>/dev/null)
  [ -n "$names" ] || { echo "gpu-verify: make print-gpu-tests listed nothing"; return 1; }
  for t in ${GPU_TESTS_FIRST:-} $names; do
    case " ${done_tests:-} " in *" $t "*) continue ;; esac
    done_tests="${done_tests:-} $t"
    HGRID_REQUIRE_CUDNN=1 timeout -k 5 "${GPU_TEST_LIMIT:-240}" make test-gpu T="$t" >"$out/test-$t.log" 2>&1
    r=$?
    [ $r -eq 124 ] && echo "TIMEOUT $t (${GPU_TEST_LIMIT:-240} s)"
    grep -E '^(PASS|FAIL|SKIP)' "$out/test-$t.log"
    [ $r -eq 0 ] || rc=1
  done
  echo "gpu-verify: GPU tests exit $rc"
  return $rc
}

bench() {
  local rc=0 b
  for b in bench_kernels bench_attention bench_model; do
    make bench T="$b" >"$out/$b.log" 2>&1 || rc=1
    tail -40 "$out/$b.log"
  done
  # tp2 / dp2 against PyTorch on the same two GPUs (skips, exit 77, on one)
  make bench T=bench_parallel >"$out/bench_parallel.log" 2>&1
  b=$?
  [ $b -eq 0 ] || [ $b -eq 77 ] || grep -q '^SKIP' "$out/bench_parallel.log" || rc=1
  tail -20 "$out/bench_parallel.log"
  return $rc
}

case $what in
  build) build ;;
  tests) build && tests ;;
  bench) build && bench ;;
  all) build && { tests; t=$?; bench; b=$?; [ $t -eq 0 ] && [ $b -eq 0 ]; } ;;
esac
