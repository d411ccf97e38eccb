#!/usr/bin/env python3
"""Model benchmark: step time, tokens/s and MFU of hgrid's training step on one
GPU (`hgrid-worker --single-gpu`: the workers' step with every group of one
rank, bf16) for `small`, `1b` and `small-moe` (small with a top-2 MoE of 8
experts in every LLM block), against the same model in PyTorch eager and
torch.compile (tests/torch/model.py's forward; bf16 autocast, fp32 master
weights, fused AdamW, clipping; the MoE's load-balancing loss in the step),
in the same run on the same GPU. Usage: bench_model.py [--configs
small,1b,small-moe] [--steps N] [--impls hgrid,eager,compile]
[--moe-ref grouped|loop] [--out FILE.md]; the MoE reference is grouped
(model.py's moe_grouped: torch._grouped_mm over tokens sorted by expert, no
host sync) unless --moe-ref loop (moe(): a loop over the experts);
--device cpu times PyTorch
alone on the CPU (a dry run of this script: tests/bench_model_check.py).
Exits 1 if any run fails.

MFU counts the model's matrix-product FLOPs: 6 x (parameters in linear
layers) x the tokens that pass through them, for forward + backward: every
position through the blocks, the caption's next-token positions through the
LM head, every patch through the encoder; an MoE block counts its router and
top-k experts' MLPs per token, not all experts. Plus attention 4 x T x C per
token per layer forward (halved when causal), x3 with the backward; over
989 TFLOP/s, the H100 SXM's dense bf16 peak.
"""
import argparse
import math
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "torch"))
from model import forward  # noqa: E402

PEAK = 989e12
BIN = os.environ.get("HGRID_BIN", "bin")
STEPS = {"small": 30, "1b": 15, "small-moe": 30}
WARMUP = 5


def describe(name):
    out = subprocess.run([f"{BIN}/hgrid-worker", "--single-gpu", "--config", name, "--describe"],
                         check=True,
                         capture_output=True, text=True).stdout
    return {k: int(v) for k, v in (line.split() for line in out.splitlines())}


def flops_per_step(c):
    B, T, C, L = c["batch"], c["seq_length"], c["hidden_size"], c["num_layers"]
    P = (c["image_size"] // c["patch_size"]) ** 2
    Ce, Le = c["encoder_hidden_size"], c["encoder_num_layers"]
    D = c["patch_size"] ** 2 * 3
    E, K = c.get("num_experts", 0), c.get("moe_router_topk", 0)
    mlp = 2 * C * c["ffn_hidden_size"]
    block = 4 * C * C + (K * mlp + E * C if E else mlp)
    llm = L * block * B * T + c["vocab_size"] * C * B * (T - P - 1)
    enc = (Le * 12 * Ce * Ce + D * Ce + Ce * C) * B * P
    attn = 3 * (L * 4 * T * C * B * T / 2 + Le * 4 * P * Ce * B * P)
    return 6 * (llm + enc) + attn


def torch_params(c, device):
    """Weights named and shaped as model/params.c's tables, GPT-2 init as
    there; an MoE LLM's blocks hold (L, E, ...) expert MLPs and a router."""
    def n(*shape, std=0.02):
        return (torch.randn(*shape, device=device) * std).requires_grad_()

    def z(*shape):
        return torch.zeros(*shape, device=device, requires_grad=True)

    def o(*shape):
        return torch.ones(*shape, device=device, requires_grad=True)

    def blocks(L, C, Fd, E):
        proj = 0.02 / math.sqrt(2 * L)
        x = (L, E) if E else (L,)
        b = {"blocks.ln1_w": o(L, C), "blocks.ln1_b": z(L, C),
             "blocks.qkv_w": n(L, 3 * C, C), "blocks.qkv_b": z(L, 3 * C),
             "blocks.attn_proj_w": n(L, C, C, std=proj), "blocks.attn_proj_b": z(L, C),
             "blocks.ln2_w": o(L, C), "blocks.ln2_b": z(L, C),
             "blocks.fc_w": n(*x, Fd, C), "blocks.fc_b": z(*x, Fd),
             "blocks.fc_proj_w": n(*x, C, Fd, std=proj), "blocks.fc_proj_b": z(*x, C)}
        if E:
            b["blocks.router_w"] = n(L, E, C)
        return b

    P = (c["image_size"] // c["patch_size"]) ** 2
    Ce, C = c["encoder_hidden_size"], c["hidden_size"]
    enc = {"patch_w": n(Ce, c["patch_size"] ** 2 * 3), "patch_b": z(Ce), "pos": n(P, Ce),
           **blocks(c["encoder_num_layers"], Ce, 4 * Ce, 0),
           "lnf_w": o(Ce), "lnf_b": z(Ce), "proj_w": n(C, Ce), "proj_b": z(C)}
    llm = {"wte": n(c["vocab_size"], C), "wpe": n(c["seq_length"], C),
           **blocks(c["num_layers"], C, c["ffn_hidden_size"], c.get("num_experts", 0)),
           "lnf_w": o(C), "lnf_b": z(C)}
    return enc, llm


def check_param_counts(name, c):
    """torch_params holds as many parameters per module as hgrid's tables."""
    enc, llm = torch_params(c, "meta")
    got = (sum(t.numel() for t in enc.values()), sum(t.numel() for t in llm.values()))
    want = (c["encoder_params"], c["llm_params"])
    if got != want:
        raise SystemExit(f"{name}: PyTorch's model has {got[0]} + {got[1]} parameters, "
                         f"hgrid's {want[0]} + {want[1]} (encoder + LLM)")


def timed_steps(step, steps, device):
    """Runs step() WARMUP + steps times; the timed steps' seconds (CUDA
    events on a GPU, the wall clock on the CPU)."""
    times = []
    for i in range(WARMUP + steps):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            torch.cuda.synchronize()
            dt = start.elapsed_time(end) / 1e3
        else:
            t0 = time.perf_counter()
            step()
            dt = time.perf_counter() - t0
        if i >= WARMUP:
            times.append(dt)
    return times


def time_torch(c, compiled, steps, device="cuda"):
    torch.manual_seed(0)
    enc, llm = torch_params(c, device)
    params = list(enc.values()) + list(llm.values())
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    B, P = c["batch"], (c["image_size"] // c["patch_size"]) ** 2
    patches = torch.rand(B, P, c["patch_size"] ** 2 * 3, device=device) * 2 - 1
    tokens = torch.randint(3, 22, (B, c["seq_length"] - P), device=device)
    if compiled:
        # A fresh compile per config: reusing the cache across shapes would
        # recompile with dynamic shapes and time slower kernels.
        torch._dynamo.reset()
        # Inductor 2.11's coalescing analysis asserts on this graph; it is only
        # a tiling heuristic, so switch it off.
        torch._inductor.config.triton.coalesce_tiling_analysis = False
    fwd = torch.compile(forward) if compiled else forward
    losses = []

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16):
            loss, aux = fwd(c, enc, llm, patches, tokens)
        (loss + aux).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.detach())

    times = timed_steps(step, steps, device)
    last = losses[-1].item()
    if not math.isfinite(last):
        raise SystemExit(f"PyTorch's loss is {last} after {len(losses)} steps")
    del enc, llm, params, opt
    if device == "cuda":
        torch.cuda.empty_cache()
    return statistics.median(times)


def time_hgrid(name, steps):
    out = subprocess.run([f"{BIN}/hgrid-worker", "--single-gpu", "--config", name, "--steps",
                          str(WARMUP + steps)], check=True, capture_output=True, text=True).stdout
    ms = [float(line.split("|")[3].split()[0]) for line in out.splitlines()
          if line.startswith("step")]
    return statistics.median(ms[WARMUP:]) / 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="small,1b,small-moe")
    ap.add_argument("--steps", type=int, default=0, help="timed steps (default: per config)")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                    help="cpu: PyTorch alone, a dry run of this script")
    ap.add_argument("--impls", default="hgrid,eager,compile",
                    help="which to time, of hgrid,eager,compile (the ratio column needs compile)")
    ap.add_argument("--moe-ref", default="grouped", choices=("grouped", "loop"),
                    help="PyTorch's MoE: grouped matrix products (default) or a loop over experts")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    if args.moe_ref == "grouped" and not hasattr(torch, "_grouped_mm"):
        raise SystemExit(f"--moe-ref grouped needs torch._grouped_mm (torch >= 2.8; this is "
                         f"{torch.__version__}): upgrade torch or pass --moe-ref loop")
    torch.backends.cuda.matmul.allow_tf32 = True
    gpu = torch.cuda.get_device_name() if args.device == "cuda" else "CPU (PyTorch only)"
    rows = []
    for name in args.configs.split(","):
        c = dict(describe(name), moe_impl=args.moe_ref)
        check_param_counts(name, c)
        ref = f" ({args.moe_ref} MoE)" if c.get("num_experts") else ""
        steps = args.steps or STEPS.get(name, 10)
        flops, tokens = flops_per_step(c), c["batch"] * c["seq_length"]
        impls = args.impls.split(",")
        unknown = set(impls) - {"hgrid", "eager", "compile"}
        if unknown:
            raise SystemExit(f"--impls: unknown {sorted(unknown)}; use hgrid, eager, compile")
        results = []
        if "hgrid" in impls and args.device == "cuda":
            results.append(("hgrid", time_hgrid(name, steps)))
        if "eager" in impls:
            results.append(("torch eager" + ref, time_torch(c, False, steps, args.device)))
        if "compile" in impls:
            results.append(("torch.compile" + ref, time_torch(c, True, steps, args.device)))
        compiled = results[-1][1] if "compile" in impls else float("nan")
        for impl, t in results:
            rows.append(f"| {name} | {impl} | {c['batch']}x{c['seq_length']} | {t * 1e3:.1f} | "
                        f"{tokens / t:,.0f} | {100 * flops / t / PEAK:.1f}% | "
                        f"{compiled / t:.2f} |")
            print(rows[-1], flush=True)
    table = ["| config | implementation | batch x seq | step ms | tokens/s | MFU | "
             "speed vs torch.compile |", "| --- | --- | --- | --- | --- | --- | --- |"] + rows
    counts = args.steps or {k: STEPS[k] for k in args.configs.split(",") if k in STEPS}
    text = f"{gpu}, torch {torch.__version__}, median of {counts} steps after {WARMUP} warm-up\n\n"
    text += "\n".join(table) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
