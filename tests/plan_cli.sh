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
assert list(p) == ["world_size", "num_microbatches", "mimo_layout", "padded_vocab_size", "modules", "ranks", "bridge", "bridges"], list(p)
assert p["mimo_layout"] == "non-colocated" and p["padded_vocab_size"] == 32000
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
assert p["bridges"] == [{"encoder": "encoder", "fan": "equal", "edges": [[0, 4], [2, 6]]}], p["bridges"]
'; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL json example"; fi
if "$ctl" plan --json --llm-only | python3 -c 'import json,sys; p=json.load(sys.stdin); assert "bridge" not in p and "bridges" not in p and len(p["modules"]) == 1'; then
  pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL llm-only json"; fi
# Issue 17: the upstream 8-rank MoE recipe, colocated, several encoders, padding
out=$("$ctl" plan --encoder-tp 2 --encoder-dp 2 --llm-offset 4 --llm-tp 2 --llm-dp 2 --llm-ep 4 --num-experts 128 --num-layers 20)
for needle in "world 8 ranks = encoder 4 + llm 4" "llm      ranks 4-7" "ep 4 x expt_dp 1" "128 experts top-2" \
              "bridge (equal, 2 edges, encoder -> llm): 0->4 2->6"; do
  if [[ "$out" == *"$needle"* ]]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL recipe text lacks '$needle'"; fi
done
expect offset 1 "hgridctl: invalid layout: --llm-offset 3 overlaps the encoders, which take ranks 0-3: use --llm-offset 4" -- plan --llm-offset 3
expect colocated-pp 1 "hgridctl: invalid layout: --mimo-layout colocated needs --llm-pp 1, not 2" -- plan --mimo-layout colocated --llm-pp 2 --llm-dp 1
expect mimo-value 2 "--mimo-layout 'side' must be colocated or non-colocated" -- plan --mimo-layout side
expect encoder-form 2 "'pp=2' is not tp=N or dp=N" -- plan --encoder vision:pp=2
out=$("$ctl" plan --llm-tp 3 --llm-dp 1 --encoder-dp 1 --num-attention-heads 12)
[[ "$out" == *"vocab 32000 (padded to 32256: a multiple of --make-vocab-size-divisible-by 128 x --llm-tp 3)"* ]] &&
  pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL padded vocabulary not said"; }
out=$("$ctl" plan --encoder vision:tp=2,dp=2 --encoder audio:tp=1,dp=1 --micro-batch-size 2)
for needle in "world 9 ranks = vision 4 + audio 1 + llm 4" "bridge (equal, 2 edges, vision -> llm): 0->5 2->7" \
              "bridge (fan-out, 2 edges, audio -> llm): 4->5 4->7" "2 sample(s) per vision rank, 4 sample(s) per audio rank"; do
  if [[ "$out" == *"$needle"* ]]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL encoders text lacks '$needle'"; fi
done
if "$ctl" plan --json --mimo-layout colocated --encoder-tp 1 --encoder-dp 4 --llm-tp 2 --llm-dp 2 --micro-batch-size 2 | python3 -c '
import json, sys
p = json.load(sys.stdin)
assert p["mimo_layout"] == "colocated" and "bridge" not in p and p["world_size"] == 4
assert [(m["name"], m["rank_offset"], m["num_ranks"]) for m in p["modules"]] == [("encoder", 0, 4), ("llm", 0, 4)]
assert p["modules"][0]["groups"]["dp"] == [[0, 1, 2, 3]] and p["modules"][1]["groups"]["tp"] == [[0, 1], [2, 3]]
r = p["ranks"][3]
assert r["module"] == "encoder" and [m["module"] for m in r["modules"]] == ["encoder", "llm"], r
assert r["modules"][0]["dp"] == 3 and r["modules"][1]["tp"] == 1 and r["modules"][1]["dp"] == 1, r
'; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL colocated json"; fi

# a large world stays fast and parseable
if "$ctl" plan --json --encoder-tp 8 --encoder-dp 128 --llm-tp 8 --llm-pp 4 --llm-dp 256 --micro-batch-size 1 \
     --num-layers 32 --num-attention-heads 32 --hidden-size 4096 --encoder-num-attention-heads 16 --encoder-hidden-size 1024 \
   | python3 -c 'import json,sys; p=json.load(sys.stdin); assert p["world_size"] == 9216 and len(p["ranks"]) == 9216'; then
  pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL large json"; fi

if python3 "$(dirname "$0")/plan_reference.py" "$ctl" --trials 400 --seed 11; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
echo "plan_cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
