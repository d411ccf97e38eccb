#!/usr/bin/env bash
# Rendezvous benchmark (make bench): gridd + hgrid-swarm for 1,024, 4,096 and
# 16,384 workers, then the same exchange through PyTorch's TCPStore, side by
# side in the same run, next to the kernel's floor (tcp_floor.c). A fresh
# gridd per run; the last table is the result. TCPStore runs as
# torch.distributed uses it (one blocking get per communicator; the ratio
# column), and in the earlier multi_get form (an extra column).
#   HGRID_BIN            binaries (default bin; use the release build)
#   HGRID_BENCH_SIZES    worker counts (default "1024 4096 16384")
#   HGRID_BENCH_REPEAT   runs per size; the table shows medians (default 3)
#   HGRID_TORCH_PYTHON   a python with torch >= 2.4 (default: python3 if it has torch)
#   HGRID_TCPSTORE_ARGS  client processes and threads (default "--procs 4 --threads 4",
#                        the fastest of 2/4/8 processes x 1/4/8 threads on 2 cores)
# Layout for N workers (tp groups divide the 8 GPUs of each fake host):
#   encoder tp 2 x dp N/8, llm tp 4 x pp 3 x dp N/16, micro-batch 2.
set -u
cd "$(dirname "$0")/../.."
bin=${HGRID_BIN:-bin}
sizes=${HGRID_BENCH_SIZES:-"1024 4096 16384"}
repeat=${HGRID_BENCH_REPEAT:-3}
torch_py=${HGRID_TORCH_PYTHON:-python3}
tcps_args=${HGRID_TCPSTORE_ARGS:-"--procs 4 --threads 4"}
tmp=$(mktemp -d --suffix=.hgrid-bench)
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
# Two one-machine artifacts taken out of TCPStore's time; see tcpstore_shim.c.
cc -O2 -shared -fPIC -o "$tmp/tcpstore_shim.so" tests/bench/tcpstore_shim.c -ldl || exit 1
# The kernel's floor: the same connections and bytes with no protocol at all.
cc -O2 -pthread -I. -o "$tmp/tcp_floor" tests/bench/tcp_floor.c || exit 1

layout() { echo "--encoder-tp 2 --encoder-dp $(($1 / 8)) --llm-tp 4 --llm-pp 3 --llm-dp $(($1 / 16)) --micro-batch-size 2"; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }
per_worker_us() { sed -n 's/.* \([0-9.]*\) us per worker.*/\1/p' <<<"$1"; }

start_gridd() {
  rm -f "$tmp/port"
  "$bin/gridd" --listen 127.0.0.1:0 --port-file "$tmp/port" --control "$tmp/ctl.sock" 2>"$tmp/gridd.log" &
  gridd_pid=$!
  for _ in $(seq 100); do [ -s "$tmp/port" ] && return 0; sleep 0.05; done
  echo "rendezvous.sh: gridd did not start:"; cat "$tmp/gridd.log"; exit 1
}

# Sockets in TIME_WAIT from a previous run slow every connect of the next.
drain_time_wait() {
  for _ in $(seq 150); do
    [ "$(awk '/^TCP:/ { for (i = 1; i < NF; i++) if ($i == "tw") print $(i + 1) }' /proc/net/sockstat)" -lt 1000 ] && return
    sleep 0.5
  done
}

median() { sort -n | sed -n "$(( ($1 + 1) / 2 ))p"; }

failed=0 rows=""
echo "machine: $(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "load average at the start: $(cut -d" " -f1-3 /proc/loadavg) (other jobs on this machine slow every number)"
echo "each size runs $repeat times, hgrid and TCPStore alternating; the table shows medians"
for n in $sizes; do
  ours_all="" p99_all="" rss_all="" theirs_all="" floor_all="" cpu_all="" theirs_cpu_all="" mget_all=""
  for rep in $(seq "$repeat"); do
    drain_time_wait
    floor=$("$tmp/tcp_floor" "$n")
    echo "$floor"
    floor_all="$floor_all $(field rendezvous_s "$floor")"
    drain_time_wait
    start_gridd
    "$bin/hgridctl" --socket "$tmp/ctl.sock" submit --job "r$n" --token bench $(layout "$n") >/dev/null || exit 1
    idle=$(awk '/^VmRSS/ { print $2 }' "/proc/$gridd_pid/status")
    out=$("$bin/hgrid-swarm" --coordinator "127.0.0.1:$(cat "$tmp/port")" --job "r$n" --token bench \
          --workers "$n" --hosts $((n / 8)) --gridd-pid "$gridd_pid" --busy-poll) || failed=1
    ours=$(tail -1 <<<"$out")
    echo "hgrid    $ours"
    grep -E "^(wire|phases|gridd cpu)" <<<"$out" | sed 's/^/  /'
    cpu_all="$cpu_all $(per_worker_us "$(grep '^gridd cpu' <<<"$out")")"
    grep -E "gen=1 assignments sent assigned=[0-9]+" "$tmp/gridd.log" | sed 's/^/  /'
    kill "$gridd_pid"; wait "$gridd_pid"; gridd_pid=""
    ours_all="$ours_all $(field rendezvous_s "$ours")" p99_all="$p99_all $(field p99_ms "$ours")"
    rss_all="$rss_all $(( $(field gridd_rss_kib "$ours") - idle ))"
    if [ "$have_torch" = 1 ]; then
      for mode in torch multi_get; do
        drain_time_wait
        tout=$(LD_PRELOAD="$tmp/tcpstore_shim.so" "$torch_py" tests/bench/tcpstore_rendezvous.py \
               --workers "$n" --mode $mode $tcps_args --hgridctl "$bin/hgridctl" -- $(layout "$n") \
               2>"$tmp/tcpstore.err")
        theirs=$(tail -1 <<<"$tout")
        if [ -z "$theirs" ]; then
          failed=1; echo "tcpstore failed:"; grep -v -i numpy "$tmp/tcpstore.err" | tail -5
          continue
        fi
        echo "$theirs"
        if [ $mode = torch ]; then
          grep "server cpu" <<<"$tout" | sed 's/^/  /'
          theirs_cpu_all="$theirs_cpu_all $(per_worker_us "$(grep 'server cpu' <<<"$tout")")"
          theirs_all="$theirs_all $(field rendezvous_s "$theirs")"
        else
          mget_all="$mget_all $(field rendezvous_s "$theirs")"
        fi
      done
    fi
  done
  floor_s=$(tr ' ' '\n' <<<"$floor_all" | grep . | median "$repeat")
  ours_s=$(tr ' ' '\n' <<<"$ours_all" | grep . | median "$repeat")
  p99=$(tr ' ' '\n' <<<"$p99_all" | grep . | median "$repeat")
  rss=$(tr ' ' '\n' <<<"$rss_all" | grep . | median "$repeat")
  cpu=$(tr ' ' '\n' <<<"$cpu_all" | grep . | median "$repeat")
  theirs_s="-" ratio="-" theirs_cpu="-" cpu_ratio="-" mget_s="-"
  if [ -n "$theirs_all" ]; then
    theirs_s=$(tr ' ' '\n' <<<"$theirs_all" | grep . | median "$(wc -w <<<"$theirs_all")")
    ratio=$(echo "scale=1; $theirs_s / $ours_s" | bc)
    theirs_cpu=$(tr ' ' '\n' <<<"$theirs_cpu_all" | grep . | median "$(wc -w <<<"$theirs_cpu_all")")
    cpu_ratio=$(echo "scale=1; $theirs_cpu / $cpu" | bc)
  fi
  [ -n "$mget_all" ] && mget_s=$(tr ' ' '\n' <<<"$mget_all" | grep . | median "$(wc -w <<<"$mget_all")")
  rows="$rows$(printf '%7d  %7s  %7s  %7s  %7s  %8s  %10s  %6s  %9s  %9s  %6s  %10s' "$n" \
               "$floor_s" "$ours_s" "$(echo "scale=2; $ours_s / $floor_s" | bc)" "$p99" \
               "$(echo "scale=2; $rss / $n" | bc)" "$theirs_s" "$ratio" "$cpu" "$theirs_cpu" \
               "$cpu_ratio" "$mget_s")"$'\n'
done
echo
echo "gridd_KiB/worker: gridd's VmRSS after the rendezvous minus before it, per worker"
echo "floor_s: tcp_floor.c, the same connections and bytes without any protocol"
echo "cpu_us: the coordinator's CPU per worker during the rendezvous (gridd; TCPStore's server)"
echo "tcpstore_s: as torch.distributed (a get per communicator); mget_s: one multi_get per worker"
echo "workers  floor_s  hgrid_s  x_floor   p99_ms  KiB/wkr  tcpstore_s   ratio  gridd_cpu  tcps_cpu  ratio      mget_s"
echo "                                              (gridd)                         _us/wkr   _us/wkr"
printf '%s' "$rows"
echo "load average at the end: $(cut -d" " -f1-3 /proc/loadavg)"
[ "$failed" -eq 0 ] && [ "$have_torch" -eq 1 ]
