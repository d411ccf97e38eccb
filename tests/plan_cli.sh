#!/usr/bin/env bash
# hgridctl plan as a user runs it: exit codes, one-line errors, text and JSON.
set -u
ctl="$HGRID_BIN/hgridctl"
pass=0 fail=0
expect() { # expect NAME WANT_EXIT STDERR_SUBSTRING -- ARGS...
  local name=$1 want=$2 needle=$3; shift 4
  local err rc
  err=$("$ctl" "$@" 2>&1 >/dev/null); rc=$?
  if [ "$rc" -eq "$want" ] && [[ "$err" == *"$needle"* ]]; then pass=$((pass + 1))
  else fail=$((fail + 1)); echo "FAIL $name: exit $rc (want $want), stderr: $err"; fi
}
expect valid 0 "" -- plan
expect invalid 1 "hgridctl: invalid layout: --llm-cp 2 is not supported" -- plan --llm-cp 2
expect world 1 "hgridctl: invalid layout: --world-size 5 does not match" -- plan --world-size 5
expect not-int 2 "'abc' is not an integer (try 'hgridctl plan --help')" -- plan --llm-tp abc
expect unknown-flag 2 "unknown option '--bogus'" -- plan --bogus 3
expect no-command 2 "usage" --
expect unknown-command 2 "unknown command 'frob'" -- frob
expect help 0 "" -- plan --help
# the model's rules and bounds: plan refuses what every worker would refuse
expect seq-length 1 "hgridctl: invalid layout: --seq-length 200 leaves 4 caption positions after 196 patches" -- plan --seq-length 200
expect vocab 1 "hgridctl: invalid layout: --vocab-size 10 is below the 22 caption tokens" -- plan --vocab-size 10
expect experts 1 "hgridctl: invalid layout: --num-experts 512 is above the limit of 256" -- plan --num-experts 512 --llm-ep 4
expect layers 1 "hgridctl: invalid layout: --num-layers 1000000000 is above the limit of 1024" -- plan --num-layers 1000000000
expect image 1 "hgridctl: invalid layout: --image-size 65536 is above the limit of 8192" -- plan --image-size 65536 --patch-size 1
expect image-odd 1 "hgridctl: invalid layout: --image-size 65537 is above the limit of 8192" -- plan --image-size 65537 --patch-size 1

out=$("$ctl" plan --encoder-tp 1 --encoder-dp 4 --llm-pp 2 --micro-batch-size 2)
for needle in "world 12 ranks = encoder 4 + llm 8" "bridge (fan-in, 4 edges" "E0*" "L4*" \
              "[4,8] [5,9] [6,10] [7,11]"; do
  if [[ "$out" == *"$needle"* ]]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL text lacks '$needle'"; fi
done
help=$("$ctl" plan --help)
[[ "$help" == *"--llm-expt-tp"* ]] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL help lacks flags"; }

# JSON: exact keys and DESIGN's worked example (tp2 dp2 pp2 at offset 4)
if "$ctl" plan --json --llm-pp 2 | python3 -c '
import json, sys
p = json.load(sys.stdin)
assert list(p) == ["world_size", "num_microbatches", "modules", "ranks", "bridge"], list(p)
llm = p["modules"][1]
assert list(llm)[:11] == ["name", "rank_offset", "num_ranks", "tp", "cp", "dp", "pp", "ep", "expt_tp", "expt_dp", "groups"]
g = llm["groups"]
assert g["tp"] == [[4,5],[6,7],[8,9],[10,11]], g["tp"]
assert g["dp"] == [[4,6],[5,7],[8,10],[9,11]], g["dp"]
assert g["pp"] == [[4,8],[5,9],[6,10],[7,11]], g["pp"]
assert g["tp_dp"] == [[4,5,6,7],[8,9,10,11]], g["tp_dp"]
assert g["mp"] == [[4,5,8,9],[6,7,10,11]], g["mp"]
assert p["ranks"][9] == {"rank": 9, "module": "llm", "tp": 1, "cp": 0, "dp": 0, "pp": 1, "ep": 0, "expt_tp": 0, "expt_dp": 1}, p["ranks"][9]
assert p["bridge"] == {"fan": "equal", "edges": [[0, 4], [2, 6]]}, p["bridge"]
'; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL json example"; fi
if "$ctl" plan --json --llm-only | python3 -c 'import json,sys; p=json.load(sys.stdin); assert "bridge" not in p and len(p["modules"]) == 1'; then
  pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL llm-only json"; fi
# a large world stays fast and parseable
if "$ctl" plan --json --encoder-tp 8 --encoder-dp 128 --llm-tp 8 --llm-pp 4 --llm-dp 256 --micro-batch-size 1 \
     --num-layers 32 --num-attention-heads 32 --hidden-size 4096 --encoder-num-attention-heads 16 --encoder-hidden-size 1024 \
   | python3 -c 'import json,sys; p=json.load(sys.stdin); assert p["world_size"] == 9216 and len(p["ranks"]) == 9216'; then
  pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL large json"; fi

if python3 "$(dirname "$0")/plan_reference.py" "$ctl" --trials 400 --seed 11; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
echo "plan_cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
