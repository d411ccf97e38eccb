# shellcheck shell=bash disable=SC2154
# Shared by the communicator GPU tests and benchmark (sourced, not run):
# a private gridd, jobs submitted to it, hgrid-worker processes on local
# GPUs, and waits with deadlines. The caller sets `bin` and `tmp` and calls
# comm_cleanup on exit.
gridd_pid="" worker_pids=()

comm_cleanup() {
  local p
  for p in "${worker_pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ -n "$gridd_pid" ]; then kill "$gridd_pid" 2>/dev/null && wait "$gridd_pid" 2>/dev/null; fi
  gridd_pid="" worker_pids=()
}

# shellcheck source=scripts/config_flags.sh
. scripts/config_flags.sh
ctl() { "$bin/hgridctl" --socket "$tmp/gridd.sock" "$@"; }

# start_gridd HEARTBEAT_TIMEOUT [GRIDD-FLAGS...]: a gridd on an ephemeral
# port (or $GRIDD_LISTEN); sets $port.
start_gridd() {
  local timeout=$1
  shift
  rm -f "$tmp/port" "$tmp/gridd.sock"
  "$bin/gridd" --listen "${GRIDD_LISTEN:-127.0.0.1:0}" --port-file "$tmp/port" \
    --control "$tmp/gridd.sock" --heartbeat-timeout "$timeout" "$@" 2>>"$tmp/gridd.log" &
  gridd_pid=$!
  local i
  for i in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
  [ -s "$tmp/port" ] || { echo "gridd did not start:" >&2; cat "$tmp/gridd.log" >&2; return 1; }
  port=$(cat "$tmp/port")
}

stop_gridd() {
  kill "$gridd_pid" && wait "$gridd_pid"
  local rc=$?
  gridd_pid=""
  return $rc
}

# world_of LAYOUT...: the plan's world size.
world_of() {
  "$bin/hgridctl" plan --json "$@" | python3 -c 'import json,sys; print(json.load(sys.stdin)["world_size"])'
}

# start_worker JOB TOKEN RANK OUTFILE EXTRA...: one worker on GPU RANK,
# asking gridd for rank RANK (the launcher's way: RANK and LOCAL_RANK).
start_worker() {
  local job=$1 token=$2 rank=$3 out=$4
  shift 4
  RANK=$rank LOCAL_RANK=$rank "$bin/hgrid-worker" --coordinator "127.0.0.1:$port" --job "$job" \
    --token "$token" --use-launcher-rank "$@" >"$out" 2>&1 &
  worker_pids+=($!)
}

# wait_until SECONDS COMMAND...: polls COMMAND every 50 ms; 1 on timeout.
wait_until() {
  local deadline
  deadline=$(( $(date +%s%N) + ${1%.*} * 1000000000 ))
  shift
  until "$@"; do
    [ "$(date +%s%N)" -gt "$deadline" ] && return 1
    sleep 0.05
  done
}

# wait_workers: waits for every started worker; sets codes ("i:status ..."
# by start order) and bad (those not 0).
wait_workers() {
  local i rc
  codes="" bad=""
  for i in "${!worker_pids[@]}"; do
    wait "${worker_pids[$i]}"
    rc=$?
    codes="$codes$i:$rc "
    [ "$rc" -eq 0 ] || bad="$bad$i:$rc "
  done
  worker_pids=()
}
