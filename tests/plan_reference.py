#!/usr/bin/env python3
"""Independent reference for `hgridctl plan --json`: DESIGN's rules and
Megatron's HyperCommGrid enumeration, written from their definitions, checked
against the C engine on random layouts (valid and invalid): non-colocated and
colocated (--mimo-layout), --llm-offset, several encoders (--encoder), and
Megatron's vocabulary padding.

usage: plan_reference.py HGRIDCTL [--trials N] [--seed S]
"""
import itertools
import json
import random
import subprocess
import sys

DEFAULTS = dict(encoder_tp=2, encoder_dp=2, llm_tp=2, llm_cp=1, llm_pp=1, llm_dp=2,
                llm_ep=1, llm_expt_tp=1, micro_batch_size=1, global_batch_size=None,
                world_size=None, llm_only=False, colocated=False, encoders=None,
                llm_offset=None, make_vocab_size_divisible_by=128, num_layers=12, hidden_size=768,
                num_attention_heads=12, ffn_hidden_size=None, vocab_size=32000,
                num_experts=0, moe_router_topk=2, encoder_hidden_size=384,
                encoder_num_attention_heads=6)


def masked_groups(offset, shape, mask):
    """Groups over the masked dims of `shape` (first dim fastest for both the
    group number over unmasked dims and the member index over masked dims)."""
    def rank(coord):
        r, stride = 0, 1
        for c, s in zip(coord, shape):
            r += c * stride
            stride *= s
        return offset + r

    def coords(dims):
        # itertools.product varies the last element fastest; reverse for first-fastest
        sizes = [shape[d] for d in dims]
        for combo in itertools.product(*[range(s) for s in reversed(sizes)]):
            yield dict(zip(dims, reversed(combo)))

    inside = [d for d in range(4) if mask[d]]
    outside = [d for d in range(4) if not mask[d]]
    groups = []
    for u in coords(outside):
        members = []
        for m in coords(inside):
            full = {**u, **m}
            members.append(rank([full[d] for d in range(4)]))
        groups.append(members)
    return groups


DENSE = {"tp": (1, 0, 0, 0), "cp": (0, 1, 0, 0), "dp": (0, 0, 1, 0), "pp": (0, 0, 0, 1),
         "tp_cp": (1, 1, 0, 0), "dp_cp": (0, 1, 1, 0), "tp_dp": (1, 0, 1, 0),
         "tp_dp_cp": (1, 1, 1, 0), "mp": (1, 0, 0, 1), "module": (1, 1, 1, 1)}
EXPERT = {"ep": (0, 1, 0, 0), "expt_tp": (1, 0, 0, 0), "expt_dp": (0, 0, 1, 0),
          "tp_ep": (1, 1, 0, 0), "tp_ep_pp": (1, 1, 0, 1)}


def encoders_of(a):
    """[(name, tp, dp)] in rank order: --encoder flags, or the one shorthand encoder."""
    if a.get("llm_only"):
        return []
    if a.get("encoders"):
        return list(a["encoders"])
    return [("encoder", a["encoder_tp"], a["encoder_dp"])]


def bridge_edges(e_mod, l_mod):
    e_lead = [e_mod["rank_offset"] + e_mod["tp"] * e_mod["cp"] * (d + e_mod["dp"] * (e_mod["pp"] - 1))
              for d in range(e_mod["dp"])]
    l_lead = [l_mod["rank_offset"] + l_mod["tp"] * l_mod["cp"] * d for d in range(l_mod["dp"])]
    edp, ldp = len(e_lead), len(l_lead)
    if edp == ldp:
        return "equal", [[e_lead[i], l_lead[i]] for i in range(edp)]
    if edp > ldp:
        k = edp // ldp
        return "in", [[e_lead[j], l_lead[i]] for i in range(ldp) for j in range(i * k, (i + 1) * k)]
    k = ldp // edp
    return "out", [[e_lead[i], l_lead[j]] for i in range(edp) for j in range(i * k, (i + 1) * k)]


def reference(a):
    """Returns (valid, plan dict or None)."""
    g = a.get
    ffn = g("ffn_hidden_size") or 4 * g("hidden_size")
    colocated = bool(g("colocated"))
    names = ["llm_tp", "llm_cp", "llm_pp", "llm_dp", "llm_ep", "llm_expt_tp", "micro_batch_size",
             "make_vocab_size_divisible_by"]
    if any(g(n) <= 0 for n in names):
        return False, None
    encoders = encoders_of(a)
    if g("llm_only") and g("encoders"):
        return False, None
    if len(set(e[0] for e in encoders)) != len(encoders):
        return False, None
    if any(tp <= 0 or dp <= 0 for _, tp, dp in encoders):
        return False, None
    # the model's own rules
    if g("hidden_size") % g("num_attention_heads") or \
            g("encoder_hidden_size") % g("encoder_num_attention_heads"):
        return False, None
    if g("num_experts") > 256:
        return False, None
    if g("num_experts") > 0 and not 1 <= g("moe_router_topk") <= g("num_experts"):
        return False, None
    enc_sizes = [tp * dp for _, tp, dp in encoders]
    enc = sum(enc_sizes)
    llm = g("llm_tp") * g("llm_cp") * g("llm_pp") * g("llm_dp")
    if colocated and (g("llm_only") or len(encoders) != 1 or g("llm_pp") != 1 or g("llm_expt_tp") != 1):
        return False, None
    if colocated and enc != llm:
        return False, None
    world = llm if colocated else enc + llm
    if g("world_size") is not None and g("world_size") != world:
        return False, None
    if g("llm_cp") != 1:
        return False, None
    offset = 0 if g("llm_only") or colocated else enc
    if g("llm_offset") is not None and g("llm_offset") != offset:
        return False, None
    ne, ep = g("num_experts"), g("llm_ep")
    if ne > 0 and ne % ep:
        return False, None
    if ne == 0 and ep > 1:
        return False, None
    view = g("llm_expt_tp") * ep * g("llm_pp")
    if llm % view:
        return False, None
    per_step = g("micro_batch_size") * g("llm_dp")
    ldp = g("llm_dp")
    for _, _, edp in encoders:
        if per_step % edp or (edp % ldp and ldp % edp):
            return False, None
    gbs = g("global_batch_size") or per_step
    if gbs % per_step:
        return False, None
    tp = g("llm_tp")
    if g("num_attention_heads") % tp or g("hidden_size") % tp or ffn % tp:
        return False, None
    if g("num_layers") % g("llm_pp"):
        return False, None
    for _, etp, _ in encoders:
        if g("encoder_num_attention_heads") % etp or g("encoder_hidden_size") % etp:
            return False, None
    multiple = g("make_vocab_size_divisible_by") * tp
    padded = -(-g("vocab_size") // multiple) * multiple

    modules, ranks = [], {}
    specs, next_rank = [], 0
    for name, etp, edp in encoders:
        specs.append((name, 0 if colocated else next_rank, etp, 1, edp, 1, 1, 1))
        next_rank += etp * edp
    specs.append(("llm", offset, tp, g("llm_cp"), g("llm_dp"), g("llm_pp"), ep, g("llm_expt_tp")))
    for name, off, mtp, mcp, mdp, mpp, mep, metp in specs:
        size = mtp * mcp * mdp * mpp
        medp = size // (metp * mep * mpp)
        dense_shape, expert_shape = (mtp, mcp, mdp, mpp), (metp, mep, medp, mpp)
        groups = {k: masked_groups(off, dense_shape, m) for k, m in DENSE.items()}
        if name == "llm":
            pp_groups = groups["pp"]
            groups["embd"] = [[p[0], p[-1]] if len(p) > 1 else [p[0]] for p in pp_groups]
            groups["pos_embd"] = [[p[0]] for p in pp_groups]
            groups.update({k: masked_groups(off, expert_shape, m) for k, m in EXPERT.items()})
        modules.append(dict(name=name, rank_offset=off, num_ranks=size, tp=mtp, cp=mcp, dp=mdp,
                            pp=mpp, ep=mep, expt_tp=metp, expt_dp=medp, groups=groups))
        for r in range(off, off + size):
            i = r - off
            coords = dict(module=name, tp=i % mtp, cp=i // mtp % mcp, dp=i // (mtp * mcp) % mdp,
                          pp=i // (mtp * mcp * mdp), ep=i // metp % mep, expt_tp=i % metp,
                          expt_dp=i // (metp * mep) % medp)
            ranks.setdefault(r, []).append(coords)
    rank_list = []
    for r in range(world):
        entry = dict(rank=r, **ranks[r][0])
        if colocated:  # every module of the rank, in plan order
            entry["modules"] = ranks[r]
        rank_list.append(entry)
    plan = dict(world_size=world, num_microbatches=gbs // per_step,
                mimo_layout="colocated" if colocated else "non-colocated",
                padded_vocab_size=padded, modules=modules, ranks=rank_list)
    if encoders and not colocated:
        bridges = []
        for i in range(len(encoders)):
            fan, edges = bridge_edges(modules[i], modules[-1])
            bridges.append(dict(encoder=modules[i]["name"], fan=fan, edges=edges))
        plan["bridge"] = dict(fan=bridges[0]["fan"], edges=bridges[0]["edges"])
        plan["bridges"] = bridges
    return True, plan


def random_layout(rng):
    sizes = [1, 1, 1, 2, 2, 3, 4, 8]
    a = dict(DEFAULTS)
    for k in ["encoder_tp", "encoder_dp", "llm_tp", "llm_pp", "llm_dp", "llm_expt_tp"]:
        a[k] = rng.choice(sizes)
    a["llm_ep"] = rng.choice([1, 1, 2, 4])
    a["llm_cp"] = rng.choice([1] * 9 + [2])
    a["llm_only"] = rng.random() < 0.2
    a["micro_batch_size"] = rng.choice([1, 2, 4])
    a["num_experts"] = rng.choice([0, a["llm_ep"] * rng.choice([1, 2]), 6])
    a["num_layers"] = rng.choice([12, 24])
    a["num_attention_heads"] = rng.choice([12, 16, 24])
    a["hidden_size"] = a["num_attention_heads"] * 64
    a["encoder_num_attention_heads"] = rng.choice([6, 8, 12])
    a["encoder_hidden_size"] = a["encoder_num_attention_heads"] * 64
    mode = rng.random()
    if not a["llm_only"] and mode < 0.3:
        # colocated: make the grids cover the same world more often than not
        a["colocated"] = True
        a["llm_pp"] = rng.choice([1, 1, 1, 2])
        a["llm_expt_tp"] = rng.choice([1, 1, 1, 2])
        if rng.random() < 0.8:
            a["llm_dp"] = rng.choice([1, 2, 4])
            a["encoder_dp"] = rng.choice([1, 2, 4])
            world = rng.choice([4, 8])
            a["llm_tp"] = max(1, world // (a["llm_dp"] * a["llm_pp"] * a["llm_cp"]))
            a["encoder_tp"] = max(1, world // a["encoder_dp"])
    elif not a["llm_only"] and mode < 0.55:
        count = rng.choice([1, 2, 3])
        a["encoders"] = [("enc%d" % i if rng.random() < 0.95 else "enc0", rng.choice([1, 2, 3]),
                          rng.choice([1, 1, 2, 4])) for i in range(count)]
    if rng.random() < 0.3:
        enc = sum(tp * dp for _, tp, dp in encoders_of(a))
        right = 0 if a["llm_only"] or a.get("colocated") else enc
        a["llm_offset"] = rng.choice([right, right, right, right + 1, max(0, right - 1), 4])
    if rng.random() < 0.3:
        a["make_vocab_size_divisible_by"] = rng.choice([1, 64, 100, 128])
        a["vocab_size"] = rng.choice([32000, 50257, 32001])
    if rng.random() < 0.5:
        a["global_batch_size"] = a["micro_batch_size"] * a["llm_dp"] * rng.choice([1, 2, 3]) + rng.choice([0, 0, 0, 1])
    if rng.random() < 0.2:
        enc = sum(tp * dp for _, tp, dp in encoders_of(a))
        llm = a["llm_tp"] * a["llm_cp"] * a["llm_pp"] * a["llm_dp"]
        a["world_size"] = (llm if a.get("colocated") else enc + llm) + rng.choice([0, 1])
    return a


def flags(a):
    out = []
    for k, v in a.items():
        if v is None or k in ("llm_only", "colocated", "encoders") or \
                v == DEFAULTS.get(k) and k not in ("num_experts",):
            continue
        if k in ("encoder_tp", "encoder_dp") and a.get("encoders"):
            continue  # the encoder list replaces the shorthand
        out += ["--" + k.replace("_", "-"), str(v)]
    for name, tp, dp in a.get("encoders") or []:
        out += ["--encoder", "%s:tp=%d,dp=%d" % (name, tp, dp)]
    if a.get("colocated"):
        out += ["--mimo-layout", "colocated"]
    if a["llm_only"]:
        out.append("--llm-only")
    return out


def main():
    ctl = sys.argv[1]
    trials = int(sys.argv[sys.argv.index("--trials") + 1]) if "--trials" in sys.argv else 300
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 7
    rng = random.Random(seed)
    bad = valid_seen = 0
    kinds = dict(colocated=0, encoders=0, offset=0, padded=0)
    for _ in range(trials):
        a = random_layout(rng)
        args = flags(a)
        proc = subprocess.run([ctl, "plan", "--json"] + args, capture_output=True, text=True)
        ok, want = reference(a)
        if ok:
            valid_seen += 1
            kinds["colocated"] += bool(a.get("colocated"))
            kinds["encoders"] += len(a.get("encoders") or []) > 1
            kinds["offset"] += a.get("llm_offset") is not None
            kinds["padded"] += want["padded_vocab_size"] != a["vocab_size"]
            if proc.returncode != 0:
                print("MISMATCH: reference valid, hgridctl exit %d: %s\n  %s" % (proc.returncode, " ".join(args), proc.stderr.strip()))
                bad += 1
            elif json.loads(proc.stdout) != want:
                got = json.loads(proc.stdout)
                diff = [k for k in want if got.get(k) != want[k]] + [k for k in got if k not in want]
                print("MISMATCH in %s: %s" % (diff, " ".join(args)))
                bad += 1
        else:
            if proc.returncode != 1 or not proc.stderr.startswith("hgridctl: invalid layout: ") \
                    or proc.stderr.count("\n") != 1:
                print("MISMATCH: reference invalid, hgridctl exit %d: %s\n  %s" % (proc.returncode, " ".join(args), proc.stderr.strip()))
                bad += 1
    print("plan_reference: %d layouts (%d valid: %s), %d mismatches"
          % (trials, valid_seen, ", ".join("%d %s" % (v, k) for k, v in kinds.items()), bad))
    if not all(kinds.values()):
        print("plan_reference: some kind of layout was never valid; nothing checked it")
        return 1
    return 1 if bad or valid_seen < trials // 10 else 0


if __name__ == "__main__":
    sys.exit(main())
