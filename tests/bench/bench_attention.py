#!/usr/bin/env python3
"""Attention forward and backward per shape (bf16): hgrid's backends
(build/rel/tests/bench/bench_attention) against every backend torch's
scaled_dot_product_attention offers on this GPU (flash, cuDNN, efficient),
in the same run. Ratio = torch's fastest / ours (> 1: ours is faster).
Skips (77) without a GPU or without torch."""
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
PROG = os.path.join(ROOT, "build/rel/tests/bench/bench_attention")

try:
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
except ImportError as e:
    print(f"SKIP: torch is not importable ({e})")
    sys.exit(77)
if not torch.cuda.is_available():
    print("SKIP: no GPU (torch.cuda.is_available() is false)")
    sys.exit(77)

BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION}


def median_ms(fn, repeats=20):
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def torch_times(B, T, NH, HD, causal):
    """{backend: (fwd_ms, bwd_ms)} for the backends that run this shape."""
    out = {}
    q, k, v = (torch.randn(B, NH, T, HD, device="cuda", dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))
    dout = torch.randn(B, NH, T, HD, device="cuda", dtype=torch.bfloat16)
    for name, backend in BACKENDS.items():
        try:
            with sdpa_kernel([backend]):
                fwd = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
                o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                bwd = median_ms(lambda: torch.autograd.grad(o, (q, k, v), dout, retain_graph=True))
            out[name] = (fwd, bwd)
        except RuntimeError:
            pass  # this backend does not take this shape on this GPU
    return out


def main():
    if not os.path.exists(PROG):
        print(f"bench_attention.py: {PROG} is missing: run 'make gpu-programs' first")
        return 1
    gpu = torch.cuda.get_device_name()
    print(f"attention, bf16, {gpu}, torch {torch.__version__}; ms, median of 20; "
          "ratio = torch's fastest / hgrid's default (cuDNN's fast backward when it loads; "
          "cudnn-det: HGRID_DETERMINISTIC=1)")
    ours = subprocess.run([PROG], capture_output=True, text=True, check=True).stdout.split("\n")
    rows = {}
    for line in ours:
        f = line.split()
        if len(f) == 9 and f[0] == "attn":
            rows.setdefault(tuple(map(int, f[1:6])), {})[f[6]] = (float(f[7]), float(f[8]))
    print(f"{'shape':<32} {'pass':<4} {'hgrid':>7} {'cudnn-det':>9} {'cudnn-fast':>10} "
          f"{'t.flash':>8} {'t.cudnn':>8} {'t.eff':>8} {'ratio':>6}")
    for (B, T, NH, HD, causal), mine in rows.items():
        theirs = torch_times(B, T, NH, HD, bool(causal))
        label = f"B{B} T{T} NH{NH} HD{HD} {'causal' if causal else 'bidir'}"
        default = "cudnn-fast" if "cudnn-fast" in mine else "hgrid"  # what training runs
        for i, pas in enumerate(("fwd", "bwd")):
            best = min((t[i] for t in theirs.values()), default=float("nan"))
            cell = lambda d, k: f"{d[k][i]:.3f}" if k in d else "-"
            print(f"{label:<32} {pas:<4} {cell(mine, 'hgrid'):>7} {cell(mine, 'cudnn-det'):>9} "
                  f"{cell(mine, 'cudnn-fast'):>10} {cell(theirs, 'flash'):>8} {cell(theirs, 'cudnn'):>8} "
                  f"{cell(theirs, 'efficient'):>8} {best / mine[default][i]:>5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
