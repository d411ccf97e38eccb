#!/usr/bin/env python3
"""Model benchmark: step time, tokens/s and MFU of hgrid's training step on one
GPU (`hgrid-worker --single-gpu`: the workers' step with every group of one
rank, bf16) for `small` and `1b`, against the same model in PyTorch eager and
torch.compile (bf16 autocast, fp32 master weights, fused AdamW, clipping),
in the same run on the same GPU. Usage: bench_model.py [--configs small,1b]
[--out FILE.md]. Exits 1 if any run fails.

MFU counts the model's matrix-product FLOPs: 6 x (parameters in linear
layers, LM head included) x tokens for forward + backward, plus attention
4 x T x C per token per layer forward (halved when causal), x3 with the
backward; over 989 TFLOP/s, the H100 SXM's dense bf16 peak.
"""
import argparse
import os
import statistics
import subprocess
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "torch"))
from model import forward  # noqa: E402

PEAK = 989e12
BIN = os.environ.get("HGRID_BIN", "bin")
STEPS = {"small": 30, "1b": 15}
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
    llm_linear = L * (4 * C * C + 2 * C * c["ffn_hidden_size"]) + c["vocab_size"] * C
    enc_linear = Le * 12 * Ce * Ce + D * Ce + Ce * C
    dense = 6 * (llm_linear * B * T + enc_linear * B * P)
    attn = 3 * (L * 4 * T * C * B * T / 2 + Le * 4 * P * Ce * B * P)
    return dense + attn


def torch_params(c, device):
    """Weights with the shapes of model/params.c, GPT-2 init."""
    def n(*shape, std=0.02):
        return (torch.randn(*shape, device=device) * std).requires_grad_()

    def blocks(L, C, Fd):
        z = lambda *s: torch.zeros(*s, device=device, requires_grad=True)  # noqa: E731
        o = lambda *s: torch.ones(*s, device=device, requires_grad=True)  # noqa: E731
        return {"blocks.ln1_w": o(L, C), "blocks.ln1_b": z(L, C),
                "blocks.qkv_w": n(L, 3 * C, C), "blocks.qkv_b": z(L, 3 * C),
                "blocks.attn_proj_w": n(L, C, C), "blocks.attn_proj_b": z(L, C),
                "blocks.ln2_w": o(L, C), "blocks.ln2_b": z(L, C),
                "blocks.fc_w": n(L, Fd, C), "blocks.fc_b": z(L, Fd),
                "blocks.fc_proj_w": n(L, C, Fd), "blocks.fc_proj_b": z(L, C)}

    P = (c["image_size"] // c["patch_size"]) ** 2
    Ce, C = c["encoder_hidden_size"], c["hidden_size"]
    enc = {"patch_w": n(Ce, c["patch_size"] ** 2 * 3),
           "patch_b": torch.zeros(Ce, device=device, requires_grad=True), "pos": n(P, Ce),
           **blocks(c["encoder_num_layers"], Ce, 4 * Ce),
           "lnf_w": torch.ones(Ce, device=device, requires_grad=True),
           "lnf_b": torch.zeros(Ce, device=device, requires_grad=True),
           "proj_w": n(C, Ce), "proj_b": torch.zeros(C, device=device, requires_grad=True)}
    llm = {"wte": n(c["vocab_size"], C), "wpe": n(c["seq_length"], C),
           **blocks(c["num_layers"], C, c["ffn_hidden_size"]),
           "lnf_w": torch.ones(C, device=device, requires_grad=True),
           "lnf_b": torch.zeros(C, device=device, requires_grad=True)}
    return enc, llm


def time_torch(c, compiled, steps):
    device = "cuda"
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

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, aux = fwd(c, enc, llm, patches, tokens)
        (loss + aux).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    times = []
    for i in range(WARMUP + steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
        if i >= WARMUP:
            times.append(start.elapsed_time(end) / 1e3)
    del enc, llm, params, opt
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
    ap.add_argument("--configs", default="small,1b")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    gpu = torch.cuda.get_device_name()
    rows = []
    for name in args.configs.split(","):
        c = describe(name)
        flops, tokens = flops_per_step(c), c["batch"] * c["seq_length"]
        results = [("hgrid", time_hgrid(name, STEPS[name])),
                   ("torch eager", time_torch(c, False, STEPS[name])),
                   ("torch.compile", time_torch(c, True, STEPS[name]))]
        compiled = results[2][1]
        for impl, t in results:
            rows.append(f"| {name} | {impl} | {c['batch']}x{c['seq_length']} | {t * 1e3:.1f} | "
                        f"{tokens / t:,.0f} | {100 * flops / t / PEAK:.1f}% | "
                        f"{compiled / t:.2f} |")
            print(rows[-1], flush=True)
    table = ["| config | implementation | batch x seq | step ms | tokens/s | MFU | "
             "speed vs torch.compile |", "| --- | --- | --- | --- | --- | --- | --- |"] + rows
    text = f"{gpu}, torch {torch.__version__}, median of {STEPS} steps after {WARMUP} warm-up\n\n"
    text += "\n".join(table) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
