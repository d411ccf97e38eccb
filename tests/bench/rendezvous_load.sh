#!/usr/bin/env bash
# Load benchmark (make bench; issue 7, load): a 1,024-worker job's rendezvous
# (hgrid-swarm) on a fresh gridd alone, then next to 16,384 idle connections
# and slow-drip clients (tests/bench/idle_load.py), in two gridd setups:
#   capped  the defaults: at most --max-pending (1024) connections without a
#           Hello; beyond it the oldest is dropped
#   held    --max-pending 20000 --hello-timeout 60: gridd holds every idle
#           connection during the rendezvous
# Runs alternate; the table shows medians, the ratio to "alone" (target
# <= 1.2) and gridd's RSS after the rendezvous and its peak.
#   HGRID_BIN            binaries (default bin; use the release build)
#   HGRID_LOAD_REPEAT    runs per setup (default 5)
#   HGRID_LOAD_IDLE      idle connections (default 16384)
#   HGRID_LOAD_DRIP      slow-drip clients (default 256, one byte per 300 ms each)
set -u
cd "$(dirname "$0")/../.."
bin=${HGRID_BIN:-bin}
repeat=${HGRID_LOAD_REPEAT:-5}
idle=${HGRID_LOAD_IDLE:-16384}
drip=${HGRID_LOAD_DRIP:-256}
workers=1024
need=$((idle + drip + workers + 256))
if ! ulimit -n "$need" 2>/dev/null; then
  echo "SKIP: rendezvous_load.sh needs $need open files per process, but the hard limit is" \
       "$(ulimit -Hn); raise it (ulimit -Hn, limits.conf) or lower HGRID_LOAD_IDLE"
  exit 77
fi
tmp=$(mktemp -d --suffix=.hgrid-load)
gridd_pid="" load_pid=""
cleanup() {
  [ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null && wait "$load_pid" 2>/dev/null
  [ -n "$gridd_pid" ] && kill "$gridd_pid" 2>/dev/null && wait "$gridd_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
layout="--encoder-tp 2 --encoder-dp $((workers / 8)) --llm-tp 4 --llm-pp 3 --llm-dp $((workers / 16)) --micro-batch-size 2"
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }
median() { tr ' ' '\n' | grep . | sort -n | sed -n "$(( (repeat + 1) / 2 ))p"; }
status_kib() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$gridd_pid/status"; }

drain_time_wait() {
  for _ in $(seq 150); do
    [ "$(awk '/^TCP:/ { for (i = 1; i < NF; i++) if ($i == "tw") print $(i + 1) }' /proc/net/sockstat)" -lt 1000 ] &&
      return
    sleep 0.5
  done
}

# run SETUP: one rendezvous; writes "seconds rss_kib peak_kib" to $tmp/result.
run() {
  local setup=$1 flags=""
  [ "$setup" = held ] && flags="--max-pending 20000 --hello-timeout 60"
  drain_time_wait
  rm -f "$tmp/port"
  "$bin/gridd" --listen 127.0.0.1:0 --port-file "$tmp/port" --control "$tmp/ctl.sock" $flags \
    2>"$tmp/gridd.log" &
  gridd_pid=$!
  for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
  [ -s "$tmp/port" ] || { echo "rendezvous_load.sh: gridd did not start:" >&2; cat "$tmp/gridd.log" >&2; exit 1; }
  local port; port=$(cat "$tmp/port")
  "$bin/hgridctl" --socket "$tmp/ctl.sock" submit --job load --token bench $layout >/dev/null || exit 1
  if [ "$setup" != alone ]; then
    python3 tests/bench/idle_load.py --port "$port" --idle "$idle" --drip "$drip" >"$tmp/load.out" &
    load_pid=$!
    # Measured in the steady state: gridd has accepted them all and dropped
    # those over its caps (the flood itself is not what this measures).
    for _ in $(seq 600); do grep -q '^settled' "$tmp/load.out" 2>/dev/null && break; sleep 0.05; done
    grep -q '^settled' "$tmp/load.out" || { echo "rendezvous_load.sh: idle_load.py did not settle" >&2; exit 1; }
  fi
  local out
  out=$("$bin/hgrid-swarm" --coordinator "127.0.0.1:$port" --job load --token bench \
        --workers $workers --hosts $((workers / 8)) --gridd-pid "$gridd_pid") || { echo "$out"; exit 1; }
  local rss peak; rss=$(status_kib VmRSS); peak=$(status_kib VmHWM)
  if [ -n "$load_pid" ]; then
    kill "$load_pid"; wait "$load_pid"; load_pid=""
    echo "  $setup: $(grep '^settled' "$tmp/load.out"); $(tail -1 "$tmp/load.out"); gridd: $(grep -c 'gridd: warn refused connections' "$tmp/gridd.log") refusal summary lines"
  fi
  kill "$gridd_pid"; wait "$gridd_pid"; gridd_pid=""
  echo "$(field rendezvous_s "$(tail -1 <<<"$out")") $rss $peak" >"$tmp/result"
}

echo "machine: $(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "$workers-worker rendezvous: alone, and next to $idle idle + $drip slow-drip connections; $repeat runs each"
declare -A secs rss peak
for rep in $(seq "$repeat"); do
  for setup in alone capped held; do
    run $setup
    read -r s r p <"$tmp/result"
    echo "  run $rep $setup: rendezvous_s=$s gridd_rss_kib=$r gridd_peak_kib=$p"
    secs[$setup]="${secs[$setup]:-} $s" rss[$setup]="${rss[$setup]:-} $r" peak[$setup]="${peak[$setup]:-} $p"
  done
done
base=$(median <<<"${secs[alone]}")
echo
echo "setup    rendezvous_s  vs_alone  gridd_rss_kib  gridd_peak_kib"
ok=1
for setup in alone capped held; do
  s=$(median <<<"${secs[$setup]}")
  ratio=$(echo "scale=2; $s / $base" | bc)
  printf '%-7s  %12s  %8s  %13s  %14s\n' "$setup" "$s" "$ratio" "$(median <<<"${rss[$setup]}")" \
    "$(median <<<"${peak[$setup]}")"
  [ "$(echo "$ratio > 1.2" | bc)" = 1 ] && ok=0
done
[ "$ok" = 1 ] || echo "rendezvous_load.sh: a loaded rendezvous is more than 20% slower than alone"
[ "$ok" = 1 ]
