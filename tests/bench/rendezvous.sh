#!/usr/bin/env bash
# Rendezvous benchmark (make bench): gridd + hgrid-swarm for 1,024, 4,096 and
# 16,384 workers, then the same exchange through PyTorch's TCPStore, side by
# side in the same run. A fresh gridd per size; the last table is the result.
#   HGRID_BIN            binaries (default bin; use the release build)
#   HGRID_BENCH_SIZES    worker counts (default "1024 4096 16384")
#   HGRID_TORCH_PYTHON   a python with torch >= 2.4 (default: python3 if it has torch)
# Layout for N workers (tp groups divide the 8 GPUs of each fake host):
#   encoder tp 2 x dp N/8, llm tp 4 x pp 3 x dp N/16, micro-batch 2.
set -u
cd "$(dirname "$0")/../.."
bin=${HGRID_BIN:-bin}
sizes=${HGRID_BENCH_SIZES:-"1024 4096 16384"}
torch_py=${HGRID_TORCH_PYTHON:-python3}
tmp=$(mktemp -d /tmp/hgrid-bench.XXXXXX)
gridd_pid=""
cleanup() {
  [ -n "$gridd_pid" ] && kill "$gridd_pid" 2>/dev/null && wait "$gridd_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

have_torch=1
if ! "$torch_py" -c 'import torch.distributed' 2>/dev/null; then
  have_torch=0
  echo "rendezvous.sh: no torch in '$torch_py': TCPStore is skipped. To compare, install PyTorch outside"
  echo "  the repository: python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch"
  echo "  and run: HGRID_TORCH_PYTHON=/tmp/venv/bin/python make bench"
fi
# TCPStore formats each peer with a reverse DNS lookup; see numeric_getnameinfo.c.
cc -O2 -shared -fPIC -o "$tmp/numeric_getnameinfo.so" tests/bench/numeric_getnameinfo.c -ldl || exit 1

layout() { echo "--encoder-tp 2 --encoder-dp $(($1 / 8)) --llm-tp 4 --llm-pp 3 --llm-dp $(($1 / 16)) --micro-batch-size 2"; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }

start_gridd() {
  rm -f "$tmp/port"
  "$bin/gridd" --listen 127.0.0.1:0 --port-file "$tmp/port" --control "$tmp/ctl.sock" 2>"$tmp/gridd.log" &
  gridd_pid=$!
  for _ in $(seq 100); do [ -s "$tmp/port" ] && return 0; sleep 0.05; done
  echo "rendezvous.sh: gridd did not start:"; cat "$tmp/gridd.log"; exit 1
}

failed=0 rows=""
echo "machine: $(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1); $(date -u '+%Y-%m-%d %H:%M UTC')"
for n in $sizes; do
  start_gridd
  "$bin/hgridctl" --socket "$tmp/ctl.sock" submit --job "r$n" --token bench $(layout "$n") >/dev/null || exit 1
  ours=$("$bin/hgrid-swarm" --coordinator "127.0.0.1:$(cat "$tmp/port")" --job "r$n" --token bench \
         --workers "$n" --hosts $((n / 8)) --gridd-pid "$gridd_pid" --busy-poll | tail -1)
  [ "${PIPESTATUS[0]}" -eq 0 ] || failed=1
  echo "hgrid    $ours"
  grep -E "generation 1: [0-9]+ assignments sent" "$tmp/gridd.log" | sed 's/^/  /'
  kill "$gridd_pid"; wait "$gridd_pid"; gridd_pid=""
  ours_s=$(field rendezvous_s "$ours") rss=$(field gridd_rss_kib "$ours")
  theirs="" theirs_s="-" ratio="-"
  if [ "$have_torch" = 1 ]; then
    theirs=$(LD_PRELOAD="$tmp/numeric_getnameinfo.so" "$torch_py" tests/bench/tcpstore_rendezvous.py \
             --workers "$n" --hgridctl "$bin/hgridctl" -- $(layout "$n") 2>"$tmp/tcpstore.err" | tail -1)
    if [ -n "$theirs" ]; then
      echo "$theirs"
      theirs_s=$(field rendezvous_s "$theirs")
      ratio=$(echo "scale=1; $theirs_s / $ours_s" | bc)
    else
      failed=1; echo "tcpstore failed:"; grep -v -i numpy "$tmp/tcpstore.err" | tail -5
    fi
  fi
  rows="$rows$(printf '%6d  %8s  %8s  %8s  %10s  %6s' "$n" "$ours_s" "$(field p99_ms "$ours")" \
               "$(echo "scale=2; $rss / $n" | bc)" "$theirs_s" "$ratio")"$'\n'
done
echo
echo "workers  hgrid_s  p99_ms  gridd_KiB/worker  tcpstore_s  ratio"
printf '%s' "$rows"
[ "$failed" -eq 0 ] && [ "$have_torch" -eq 1 ]
