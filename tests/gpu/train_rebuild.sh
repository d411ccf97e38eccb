#!/usr/bin/env bash
# GPU test (make test-gpu, 4 GPUs): a rank killed during training rebuilds
# only what broke. encoder tp1 dp2 + llm tp2 (ranks 0-1, 2-3), fp32,
# checkpoints every 100 steps; kill -9 of rank 3 (the LLM's tp rank 1):
#   every survivor aborts at once only the communicators of the groups
#   holding rank 3 (its log says so) and reports its operation counts;
#   gridd's verdict names the groups a survivor left mid-operation ("group
#   broken: ... members=..."), whose members abort them too, so no survivor
#   stays stuck past the deadline (none reports CommsLost, "communicators
#   lost" in gridd's log, and gridd logs "groups settled" with silent=0);
#   the restarted rank 3 joins generation 2, whose Assignments keep the id
#   of every group holding no replaced rank and not broken, and each
#   survivor keeps exactly those communicators ("communicators rebuilt: N
#   kept", checked against the plan's groups);
#   training resumes from the latest checkpoint with the losses of the
#   uninterrupted steps (fp32: identical).
# Prints per survivor what it kept. Skips (exit 77) with fewer than 4 GPUs.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
bin=${HGRID_BIN:-bin}
export NCCL_NVLS_ENABLE=0
tmp=$(mktemp -d --suffix=.hgrid-rebuild)
# shellcheck source=tests/gpu/comm_lib.sh
. tests/gpu/comm_lib.sh
trap 'comm_cleanup; [ -n "${HGRID_KEEP_LOGS:-}" ] && cp -r "$tmp"/. "$HGRID_KEEP_LOGS"/; rm -rf "$tmp"' EXIT
trap 'exit 1' TERM INT

gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
if [ "$gpus" -lt 1 ]; then
  echo "train_rebuild: no GPU here"
  exit 1
elif [ "$gpus" -lt 4 ]; then
  echo "SKIP: train_rebuild needs 4 GPUs ($gpus here)"
  exit 77
fi
STEPS=2000 KILLED=3
TRAIN=(--comm-timeout 30 --bw-bytes 0 --config tiny --seed 1 --steps "$STEPS" --fp32
       --save "$tmp/ck" --save-interval 100)
LAYOUT=(--encoder-tp 1 --encoder-dp 2 --llm-tp 2 --llm-dp 1 --micro-batch-size 16
        --global-batch-size 16 $(config_flags tiny))
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
losses() { awk '/step +[0-9]+ \| loss / {print $4, $7}' "$1"; }

start_gridd 3 || exit 1
token=$(ctl submit --job rebuild "${LAYOUT[@]}" 2>/dev/null) || { echo "submit failed"; exit 1; }
for r in 0 1 2 3; do start_worker rebuild "$token" "$r" "$tmp/w$r.out" "${TRAIN[@]}"; done
out=$tmp/w2.out # the LLM's tp rank 0 prints the losses

wait_until 120 eval '[ "$(losses "$out" | wc -l)" -ge 300 ]' ||
  { fail "generation 1 did not train 300 steps"; tail -n 5 "$tmp"/w*.out; exit 1; }
kill -9 "${worker_pids[$KILLED]}"
wait "${worker_pids[$KILLED]}" 2>/dev/null
for r in 0 1 2; do
  wait_until 10 grep -q "generation 1 aborted" "$tmp/w$r.out" ||
    fail "rank $r did not abort generation 1 within 10 s"
  grep -q "aborting the communicators of the groups holding a lost rank" "$tmp/w$r.out" ||
    fail "rank $r did not abort only the lost rank's communicators first"
done
lines=$(wc -l <"$out")
RANK=$KILLED LOCAL_RANK=$KILLED "$bin/hgrid-worker" --coordinator "127.0.0.1:$port" --job rebuild \
  --token "$token" --use-launcher-rank "${TRAIN[@]}" >"$tmp/w$KILLED.2.out" 2>&1 &
worker_pids[KILLED]=$!
wait_until 90 eval "tail -n +$lines \"\$out\" | grep -q 'step .*| loss'" ||
  fail "generation 2 did not train within 90 s"

# Replaced: the killed rank and every rank that told gridd it lost its communicators.
reported=$(sed -n 's/.*gridd: notice job=rebuild rank=\([0-9]*\) gen=[0-9]* communicators lost.*/\1/p' \
           "$tmp/gridd.log" | sort -u | tr '\n' ' ')
kept_lines=$(for r in 0 1 2; do
  printf '%s %s\n' "$r" "$(sed -n 's/.*communicators rebuilt: \([0-9]*\) kept.*/\1/p' "$tmp/w$r.out" | tail -n 1)"
done)
# Expected per survivor: its distinct communicators (rank sets of size > 1,
# the bridge included) holding no replaced rank.
broken=$(sed -n 's/.*group broken: a member left it mid-operation id=[0-9]* members=\([0-9,]*\).*/\1/p' \
         "$tmp/gridd.log" | sort -u | tr '\n' ' ')
grep -q "groups settled generation=1 .* silent=0" "$tmp/gridd.log" ||
  fail "gridd did not settle generation 1's groups with every survivor's counts"
expected=$("$bin/hgridctl" plan --json "${LAYOUT[@]}" | python3 -c '
import json, sys
plan, replaced = json.load(sys.stdin), {int(r) for r in sys.argv[1].split()}
broken = {frozenset(int(r) for r in b.split(",")) for b in sys.argv[2].split()}
sets = {}
for m in plan["modules"]:
    for groups in m["groups"].values():
        for g in groups:
            if len(g) > 1:
                for r in g:
                    sets.setdefault(r, set()).add(frozenset(g))
bridge = frozenset(r for edge in plan["bridge"]["edges"] for r in edge)
for r in bridge:
    sets.setdefault(r, set()).add(bridge)
for r in (0, 1, 2):
    print(r, sum(1 for s in sets.get(r, ()) if not s & replaced and s not in broken))
' "$KILLED $reported" "$broken")
echo "  reported CommsLost: ${reported:-none}; broken by a peer that left them: ${broken:-none}"
[ -z "$reported" ] || fail "survivor(s) $reported stayed stuck past the deadline and lost every communicator"
while read -r r want; do
  got=$(awk -v r="$r" '$1 == r {print $2}' <<<"$kept_lines")
  case " $reported " in *" $r "*) got=${got:-0} ;; esac # it aborted them all: nothing to keep
  printf '  rank %s kept %s communicator(s) in generation 2 (expected %s)\n' "$r" "${got:--}" "$want"
  [ "$got" = "$want" ] || fail "rank $r kept ${got:-none} communicators, expected $want"
done <<<"$expected"

wait_until 180 grep -q "trained $STEPS steps" "$out" || fail "the job did not reach step $STEPS"
ctl cancel rebuild >/dev/null 2>&1
wait_workers
dups=$(losses "$out" | sort -n | uniq | awk '{print $1}' | uniq -d | wc -l)
resumed=$(losses "$out" | awk '{print $1}' | sort -n | uniq -d | wc -l)
[ "$resumed" -gt 0 ] || fail "no step was repeated: training did not resume from a checkpoint"
[ "$dups" -eq 0 ] || fail "$dups resumed steps have a loss unlike the uninterrupted run's"
echo "  resumed steps recomputed: $resumed, all with the uninterrupted losses"
[ "$failures" -eq 0 ] || { grep -h "hgrid-worker:" "$tmp"/*.out | tail -n 12; exit 1; }
echo "train_rebuild: all passed"
