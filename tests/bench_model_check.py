#!/usr/bin/env python3
"""The model benchmark's PyTorch side without a GPU (tests/bench/bench_model.py):
torch_params names and shapes every tensor as hgrid's parameter tables do
(against the tables of a CPU dump of tiny and tiny-moe) and holds as many
parameters as `--describe` counts for every config; flops_per_step equals
the matrix-product FLOPs torch's FlopCounterMode counts in a forward +
backward of tests/torch/model.py's forward on tiny and tiny-moe (MoE: the
router and each token's top-k experts), whose loss is finite; the grouped
MoE reference gives the loop's loss and gradients."""
import functools
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from checks import check, summary  # noqa: E402
from hgrid_py import torch_python  # noqa: E402

try:  # (tests/torch/ passes for a namespace package "torch" without the wheel)
    import torch
    from torch.utils.flop_counter import FlopCounterMode
except ImportError:
    py = torch_python()
    os.execv(py, [py, os.path.abspath(__file__)] + sys.argv[1:])

sys.path.insert(0, os.path.join(HERE, "bench"))
sys.path.insert(0, os.path.join(HERE, "torch"))
import bench_model  # noqa: E402
from model import forward, read_dump  # noqa: E402

BIN = os.environ.get("HGRID_BIN", "bin")
bench_model.BIN = BIN
bench_model.describe = functools.lru_cache(bench_model.describe)


def dump_tables(name, tmp):
    """hgrid's (encoder, LLM) tables: [(name, shape)] of the non-empty tensors."""
    path = os.path.join(tmp, name + ".bin")
    subprocess.run([f"{BIN}/hgrid-worker", "--single-gpu", "--config", name, "--steps", "1",
                    "--batch", "2", "--cpu", "--dump", path], check=True, capture_output=True)
    d = read_dump(path)
    return [[(n, list(shape)) for n, shape, _, count, _ in table[0] if count]
            for table in d["tables"]], [table[1] for table in d["tables"]]


def check_tables(name, tmp):
    c = bench_model.describe(name)
    (enc_t, llm_t), totals = dump_tables(name, tmp)
    enc, llm = bench_model.torch_params(c, "meta")
    for module, table, params in (("encoder", enc_t, enc), ("llm", llm_t, llm)):
        ours = [(n, list(t.shape)) for n, t in params.items()]
        check(ours == table, f"{name} {module}: torch_params {ours} != hgrid's table {table}")
    check([c["encoder_params"], c["llm_params"]] == totals,
          f"{name}: --describe counts {c['encoder_params']} + {c['llm_params']}, "
          f"the dump's tables {totals}")


def check_counts(name):
    c = bench_model.describe(name)
    enc, llm = bench_model.torch_params(c, "meta")
    got = [sum(t.numel() for t in m.values()) for m in (enc, llm)]
    check(got == [c["encoder_params"], c["llm_params"]],
          f"{name}: torch_params holds {got}, --describe counts "
          f"{c['encoder_params']} + {c['llm_params']}")
    return c


def check_flops(name):
    c = dict(bench_model.describe(name), batch=2)
    torch.manual_seed(0)
    enc, llm = bench_model.torch_params(c, "cpu")
    B, T, C, L = c["batch"], c["seq_length"], c["hidden_size"], c["num_layers"]
    P = (c["image_size"] // c["patch_size"]) ** 2
    D, Ce = c["patch_size"] ** 2 * 3, c["encoder_hidden_size"]
    patches = torch.rand(B, P, D) * 2 - 1
    tokens = torch.randint(3, 22, (B, T - P))
    counter = FlopCounterMode(display=False)
    with counter:
        loss, aux = forward(c, enc, llm, patches, tokens)
        (loss + aux).backward()
    counted = counter.get_total_flops()
    # The benchmark counts attention as 3 forwards, a causal one at half size.
    # The counter takes it at full size and its backward as 2.5 forwards (flash
    # attention recomputes the scores); autograd skips the patch embedding's
    # input gradient (the patches need none).
    attn_full = L * 4 * T * C * B * T + c["encoder_num_layers"] * 4 * P * Ce * B * P
    attn_bench = 3 * (attn_full - L * 4 * T * C * B * T / 2)
    want = bench_model.flops_per_step(c) - attn_bench + 3.5 * attn_full - 2 * B * P * D * Ce
    check(abs(counted - want) <= 1e-9 * want,
          f"{name}: flops_per_step (adjusted) {want:.6g}, FlopCounterMode {counted:.6g}")
    check(torch.isfinite(loss).item() and 0 < loss.item() < 20, f"{name}: loss {loss.item()}")
    if c["num_experts"]:
        check(torch.is_tensor(aux) and 0 < aux.item() < 1, f"{name}: load-balancing loss {aux}")
        grad = llm["blocks.router_w"].grad
        check(grad is not None and grad.abs().sum().item() > 0, f"{name}: router has no gradient")
    return counted


def check_grouped_moe(name):
    """The benchmark's grouped MoE reference (model.py's moe_grouped) equals
    the loop (moe()) that test_model_torch holds to hgrid: the same loss,
    load-balancing loss and gradients, in fp32 on the CPU."""
    if not hasattr(torch, "_grouped_mm"):
        check(False, f"torch {torch.__version__} has no torch._grouped_mm: the grouped MoE "
                     "reference needs torch >= 2.8")
        return
    c = dict(bench_model.describe(name), batch=2)
    B, P = c["batch"], (c["image_size"] // c["patch_size"]) ** 2
    torch.manual_seed(1)
    patches = torch.rand(B, P, c["patch_size"] ** 2 * 3) * 2 - 1
    tokens = torch.randint(3, 22, (B, c["seq_length"] - P))
    runs = []
    for impl in ("loop", "grouped"):
        torch.manual_seed(0)
        enc, llm = bench_model.torch_params(c, "cpu")
        with torch.no_grad():  # biases off zero, so a wrong per-row bias shows
            for k in ("blocks.fc_b", "blocks.fc_proj_b"):
                llm[k].uniform_(-0.05, 0.05)
        loss, aux = forward(dict(c, moe_impl=impl), enc, llm, patches, tokens)
        (loss + aux).backward()
        runs.append((loss.item(), aux.item(), {k: v.grad for k, v in llm.items()}))
    (l0, a0, g0), (l1, a1, g1) = runs
    check(abs(l0 - l1) <= 1e-5 * abs(l0) and abs(a0 - a1) <= 1e-5 * abs(a0),
          f"{name}: grouped MoE loss {l1}, aux {a1}; the loop's {l0}, {a0}")
    worst = max(((g1[k] - g0[k]).abs().max() / g0[k].abs().max().clamp_min(1e-30)).item()
                for k in g0 if g0[k] is not None)
    check(worst <= 1e-4, f"{name}: grouped MoE gradients differ from the loop's by {worst:.3g} "
                         "(relative to each tensor's largest)")
    # The check can fail: the experts' output biases handed one expert on
    # (what a wrong row-to-expert map would do) move the loss past the bound.
    torch.manual_seed(0)
    enc, llm = bench_model.torch_params(c, "cpu")
    with torch.no_grad():
        for k in ("blocks.fc_b", "blocks.fc_proj_b"):
            llm[k].uniform_(-0.05, 0.05)
        llm["blocks.fc_proj_b"].copy_(llm["blocks.fc_proj_b"].roll(1, dims=1))
    l2, _ = forward(dict(c, moe_impl="grouped"), enc, llm, patches, tokens)
    check(abs(l2.item() - l0) > 1e-5 * abs(l0),
          f"{name}: experts' biases shifted by one give the same loss ({l0})")


def main():
    if not os.path.exists(f"{BIN}/hgrid-worker"):
        print(f"FAIL: {BIN}/hgrid-worker is missing: run make first", flush=True)
        sys.exit(1)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("tiny", "tiny-moe"):
            check_tables(name, tmp)
    configs = {name: check_counts(name) for name in ("tiny", "tiny-moe", "small", "small-moe", "1b")}
    small, moe = configs["small"], configs["small-moe"]
    check(moe["num_experts"] == 8 and moe["moe_router_topk"] == 2 and
          all(moe[k] == small[k] for k in small if k not in ("num_experts", "moe_router_topk",
                                                             "llm_params")),
          "small-moe is small with 8 experts, top-2")
    dense, sparse = check_flops("tiny"), check_flops("tiny-moe")
    # tiny-moe's blocks: 2 experts' MLPs and a router of 8 per token where tiny
    # has one MLP: more FLOPs, by the second expert and the router exactly.
    c = dict(configs["tiny-moe"], batch=2)
    extra = 6 * c["num_layers"] * c["batch"] * c["seq_length"] * (
        2 * c["hidden_size"] * c["ffn_hidden_size"] + c["num_experts"] * c["hidden_size"])
    check(sparse - dense == extra, f"tiny-moe - tiny: {sparse - dense} FLOPs, want {extra}")
    check_grouped_moe("tiny-moe")
    sys.exit(summary("bench_model_check"))


if __name__ == "__main__":
    main()
