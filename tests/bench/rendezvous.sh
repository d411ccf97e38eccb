#!/usr/bin/env bash
# Rendezvous benchmark (make bench): gridd + hgrid-swarm with 8 workers per
# host link (as hgrid-agent carries them) at 16,384 and 131,072 workers,
# next to the same job over one connection per worker (--direct), the
# kernel's floor for that many connections (tcp_floor.c), the floor for the
# host links (one connection per 8 workers carrying their bytes), and PyTorch's
# TCPStore used as torch.distributed uses it (one blocking get per
# communicator), side by side in the same run at the sizes where one
# connection per worker fits (<= HGRID_BENCH_DIRECT_MAX). Each hgrid run
# then replaces one rank (hgrid-swarm --replace-rank): death -> last Abort,
# the replacement's Hello -> last new Assignment, communicators re-created.
# A fresh gridd per run; the last table is the result.
#   HGRID_BIN              binaries (default bin; use the release build)
#   HGRID_BENCH_SIZES      worker counts (default "16384 131072")
#   HGRID_BENCH_REPEAT     runs per size; the table shows medians (default 3)
#   HGRID_BENCH_DIRECT_MAX largest size for --direct, the floor and TCPStore (default 16384)
#   HGRID_TORCH_PYTHON     a python with torch >= 2.4 (default: python3 if it has torch)
#   HGRID_TCPSTORE_ARGS    client processes and threads (default "--procs 4 --threads 4",
#                          the fastest of 2/4/8 processes x 1/4/8 threads on 2 cores)
#   HGRID_BENCH_NICE       the niceness every timed program runs at: gridd, hgrid-swarm,
#                          tcp_floor and TCPStore's server and clients alike (default -10
#                          where allowed; "" or not allowed: unchanged), so that other jobs
#                          on a shared machine take less from the runs
# Layout for N workers (tp groups divide the 8 GPUs of each fake host):
#   encoder tp 2 x dp N/8, llm tp 4 x pp 3 x dp N/16, micro-batch 2.
# gridd runs with --heartbeat-timeout 30: on a shared 2-core machine the
# swarm answering 65K MintRequests for 131K workers can take longer than the
# default 3 s, and the timeout is not what is measured.
set -u
cd "$(dirname "$0")/../.."
bin=${HGRID_BIN:-bin}
sizes=${HGRID_BENCH_SIZES:-"16384 131072"}
repeat=${HGRID_BENCH_REPEAT:-3}
direct_max=${HGRID_BENCH_DIRECT_MAX:-16384}
torch_py=${HGRID_TORCH_PYTHON:-python3}
tcps_args=${HGRID_TCPSTORE_ARGS:-"--procs 4 --threads 4"}
prio=${HGRID_BENCH_NICE--10}
if [ -n "$prio" ] && [ "$(nice -n "$prio" nice 2>/dev/null)" != "$(($(nice) + prio))" ]; then prio=""; fi
timed=() # the prefix of every timed command (nice execs it: $! stays the program's pid)
[ -n "$prio" ] && timed=(nice -n "$prio")
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
field() { sed -n "s/.*[ :]$1=\([0-9.]*\).*/\1/p" <<<"$2" | head -1; }
per_worker_us() { sed -n 's/.* \([0-9.]*\) us per worker.*/\1/p' <<<"$1"; }

start_gridd() {
  rm -f "$tmp/port"
  "${timed[@]}" "$bin/gridd" --listen 127.0.0.1:0 --port-file "$tmp/port" --control "$tmp/ctl.sock" \
    --heartbeat-timeout 30 2>"$tmp/gridd.log" &
  gridd_pid=$!
  for _ in $(seq 100); do [ -s "$tmp/port" ] && return 0; sleep 0.05; done
  echo "rendezvous.sh: gridd did not start:"; cat "$tmp/gridd.log"; exit 1
}
stop_gridd() { kill "$gridd_pid"; wait "$gridd_pid"; gridd_pid=""; }

# Sockets in TIME_WAIT from a previous run slow every connect of the next.
drain_time_wait() {
  for _ in $(seq 150); do
    [ "$(awk '/^TCP:/ { for (i = 1; i < NF; i++) if ($i == "tw") print $(i + 1) }' /proc/net/sockstat)" -lt 1000 ] && return
    sleep 0.5
  done
}

median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "-" }'; }

# One swarm run against a fresh gridd; prints the swarm's output.
swarm_run() { # n mode-flags...
  local n=$1; shift
  start_gridd
  "$bin/hgridctl" --socket "$tmp/ctl.sock" submit --job "r$n" --token bench $(layout "$n") >/dev/null || exit 1
  idle=$(awk '/^VmRSS/ { print $2 }' "/proc/$gridd_pid/status")
  out=$("${timed[@]}" "$bin/hgrid-swarm" --coordinator "127.0.0.1:$(cat "$tmp/port")" --job "r$n" --token bench \
        --workers "$n" --hosts $((n / 8)) --gridd-pid "$gridd_pid" --busy-poll "$@") || failed=1
  stop_gridd
}

failed=0 rows=""
echo "machine: $(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "load average at the start: $(cut -d" " -f1-3 /proc/loadavg) (other jobs on this machine slow every number)"
echo "timed programs run at niceness ${prio:-(unchanged)}"
echo "each size runs $repeat times, hgrid and TCPStore alternating; the table shows medians"
for n in $sizes; do
  hfloor_all="" hosts_all="" p99_all="" rss_all="" cpu_all="" abort_all="" reassign_all="" changed_all=""
  direct_all="" floor_all="" theirs_all="" theirs_cpu_all=""
  small=$([ "$n" -le "$direct_max" ] && echo 1 || echo 0)
  for rep in $(seq "$repeat"); do
    drain_time_wait
    swarm_run "$n" --replace-rank $((n / 2 + 3))
    echo "hosts    $(tail -1 <<<"$out")"
    grep -E "^(wire|phases|gridd cpu|swarm cpu|replace)" <<<"$out" | sed 's/^/  /'
    hosts_all="$hosts_all $(field rendezvous_s "$(tail -1 <<<"$out")")"
    p99_all="$p99_all $(field p99_ms "$(tail -1 <<<"$out")")"
    rss_all="$rss_all $(echo "scale=3; ($(field gridd_rss_kib "$(tail -1 <<<"$out")") - $idle) / $n" | bc | sed "s/^\./0./")"
    cpu_all="$cpu_all $(per_worker_us "$(grep '^gridd cpu' <<<"$out")")"
    rep_line=$(grep '^replace:' <<<"$out")
    abort_all="$abort_all $(field abort_ms "$rep_line")"
    reassign_all="$reassign_all $(field reassign_ms "$rep_line")"
    changed_all="$changed_all $(field changed_ids "$rep_line")/$(( $(field changed_ids "$rep_line") + $(field kept_ids "$rep_line") ))"
    # The host links' floor: n/8 connections, each moving its 8 workers' bytes.
    wire=$(grep '^wire per worker' <<<"$out")
    sent=$(sed -n 's/.*: \([0-9]*\) bytes sent.*/\1/p' <<<"$wire")
    recvd=$(sed -n 's/.* \([0-9]*\) bytes received.*/\1/p' <<<"$wire")
    if [ -n "$sent" ] && [ -n "$recvd" ]; then
      drain_time_wait
      hfloor=$("${timed[@]}" "$tmp/tcp_floor" $((n / 8)) "$(nproc)" $((sent * 8)) $((recvd * 8)))
      echo "host-link $hfloor (in $((sent * 8)), out $((recvd * 8)) bytes per connection)"
      hfloor_all="$hfloor_all $(field rendezvous_s "$hfloor")"
    fi
    [ "$small" = 1 ] || continue
    drain_time_wait
    swarm_run "$n" --direct
    echo "direct   $(tail -1 <<<"$out")"
    direct_all="$direct_all $(field rendezvous_s "$(tail -1 <<<"$out")")"
    drain_time_wait
    floor=$("${timed[@]}" "$tmp/tcp_floor" "$n")
    echo "$floor"
    floor_all="$floor_all $(field rendezvous_s "$floor")"
    if [ "$have_torch" = 1 ]; then
      drain_time_wait
      tout=$(LD_PRELOAD="$tmp/tcpstore_shim.so" "${timed[@]}" "$torch_py" tests/bench/tcpstore_rendezvous.py \
             --workers "$n" --mode torch $tcps_args --hgridctl "$bin/hgridctl" -- $(layout "$n") \
             2>"$tmp/tcpstore.err")
      theirs=$(tail -1 <<<"$tout")
      if [ -z "$theirs" ]; then
        failed=1; echo "tcpstore failed:"; grep -v -i numpy "$tmp/tcpstore.err" | tail -5
        continue
      fi
      echo "$theirs"
      grep "server cpu" <<<"$tout" | sed 's/^/  /'
      theirs_cpu_all="$theirs_cpu_all $(per_worker_us "$(grep 'server cpu' <<<"$tout")")"
      theirs_all="$theirs_all $(field rendezvous_s "$theirs")"
    fi
  done
  hosts_s=$(median <<<"$hosts_all")
  theirs_s=$(median <<<"$theirs_all")
  ratio="-"
  [ "$theirs_s" != "-" ] && ratio="$(echo "scale=1; $theirs_s / $hosts_s" | bc)x"
  rows="$rows$(printf '%7d  %7s  %8s  %8s  %7s  %7s  %7s  %9s  %10s  %6s  %8s  %11s  %9s' "$n" \
               "$(median <<<"$floor_all")" "$(median <<<"$direct_all")" "$(median <<<"$hfloor_all")" "$hosts_s" \
               "$(median <<<"$p99_all")" "$(median <<<"$rss_all")" "$(median <<<"$cpu_all")" \
               "$theirs_s" "$ratio" "$(median <<<"$abort_all")" "$(median <<<"$reassign_all")" \
               "$(tr ' ' '\n' <<<"$changed_all" | grep . | head -1)")"$'\n'
done
echo
echo "hosts_s: 8 workers per host link (as hgrid-agent); direct_s: one connection per worker;"
echo "floor_s: tcp_floor.c, one connection per worker and the same bytes without any protocol"
echo "hfloor_s: tcp_floor.c, one connection per 8 workers carrying the host links' bytes, no protocol"
echo "KiB/wkr, cpu_us: gridd's VmRSS growth and CPU per worker during the host-link rendezvous"
echo "tcpstore_s: as torch.distributed (a get per communicator); ratio: tcpstore_s / hosts_s"
echo "replace: one rank replaced: abort_ms (death -> last Abort), reassign_ms (replacement's"
echo "  Hello -> last new Assignment), changed (communicators re-created / all)"
echo "workers  floor_s  direct_s  hfloor_s  hosts_s   p99_ms  KiB/wkr  cpu_us/wkr  tcpstore_s   ratio  abort_ms  reassign_ms    changed"
printf '%s' "$rows"
echo "load average at the end: $(cut -d" " -f1-3 /proc/loadavg)"
[ "$failed" -eq 0 ] && [ "$have_torch" -eq 1 ]
