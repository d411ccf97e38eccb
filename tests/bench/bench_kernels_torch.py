#!/usr/bin/env python3
"""Times PyTorch's version of each op that bench_kernels timed (same shapes,
bf16, median of repeats with CUDA events) and prints both side by side.
Reads build/bench_kernels.tsv; writes build/bench_kernels.md (a markdown table)."""
import statistics
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # cannot run here: skipped (tests/run.sh), not failed
    print("SKIP: bench_kernels_torch.py: PyTorch is not installed; pip install torch to compare")
    sys.exit(77)

REPEATS = 15
CONFIGS = {"small": (8, 1024, 768, 12), "1b": (4, 2048, 2048, 16)}
V, E, K = 32000, 8, 2


def median_ms(f):
    for _ in range(2):
        f()
    times = []
    for _ in range(REPEATS):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        f()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def rand(*shape, scale=1.0, grad=False):
    t = (torch.rand(*shape, device="cuda") * 2 - 1) * scale
    return t.to(torch.bfloat16).requires_grad_(grad)


def config_ops(B, T, C, NH):
    N, HD, Vp = B * T, C // NH, (V + 127) // 128 * 128
    ops = {}
    x, wqkv, bqkv = rand(N, C), rand(3 * C, C, scale=0.05), rand(3 * C)
    wfc, bfc, dh = rand(4 * C, C, scale=0.05), rand(4 * C), rand(N, 4 * C)
    ops["matmul fwd qkv (+bias)"] = lambda: F.linear(x, wqkv, bqkv)
    ops["matmul fwd fc (+bias)"] = lambda: F.linear(x, wfc, bfc)
    dwfc = torch.zeros(4 * C, C, device="cuda")

    def fc_bwd():
        dh @ wfc
        dwfc.add_(dh.t() @ x)
        dh.sum(0)
    ops["matmul bwd fc (dinp+dW+dbias)"] = fc_bwd

    q, k, v = (rand(B, NH, T, HD, grad=True) for _ in range(3))
    datt = rand(B, NH, T, HD)
    for causal, mask in ((True, "causal"), (False, "bidir")):
        ops[f"attention fwd {mask}"] = lambda c=causal: F.scaled_dot_product_attention(q, k, v, is_causal=c)
        att = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        ops[f"attention bwd {mask}"] = lambda a=att: torch.autograd.grad(a, (q, k, v), datt, retain_graph=True)

    xg, lnw, lnb = rand(N, C, grad=True), rand(C, grad=True), rand(C, grad=True)
    ops["layernorm fwd"] = lambda: F.layer_norm(xg, (C,), lnw, lnb)
    ln = F.layer_norm(xg, (C,), lnw, lnb)
    dln = rand(N, C)
    ops["layernorm bwd"] = lambda: torch.autograd.grad(ln, (xg, lnw, lnb), dln, retain_graph=True)
    hg = rand(N, 4 * C, grad=True)
    ops["gelu fwd"] = lambda: F.gelu(hg, approximate="tanh")
    gl = F.gelu(hg, approximate="tanh")
    ops["gelu bwd"] = lambda: torch.autograd.grad(gl, (hg,), dh, retain_graph=True)
    y = rand(N, C)
    ops["residual add"] = lambda: x + y
    # The fused rows: PyTorch eager runs the same steps as separate kernels.
    ops["matmul fwd fc (+bias) + gelu fused"] = lambda: F.gelu(F.linear(x, wfc, bfc), approximate="tanh")
    wproj, dy = rand(C, 4 * C, scale=0.05), rand(N, C)
    dwproj = torch.zeros(C, 4 * C, device="cuda")

    def proj_bwd():
        dinp = dy @ wproj
        dwproj.add_(dy.t() @ hg.detach())
        dy.sum(0)
        return dinp
    ops["matmul bwd fc_proj (dinp+dW+dbias)"] = proj_bwd
    ops["matmul bwd fc_proj + dgelu fused"] = lambda: torch.autograd.grad(gl, (hg,), proj_bwd(), retain_graph=True)

    tok = (torch.arange(N, device="cuda") * 2654435761 % V).view(B, T)
    wte, wpe = rand(V, C, grad=True), rand(T, C, grad=True)
    ops["embedding fwd"] = lambda: F.embedding(tok, wte) + wpe
    emb = F.embedding(tok, wte) + wpe
    demb = rand(B, T, C)
    ops["embedding bwd (sorted, deterministic)"] = lambda: torch.autograd.grad(emb, (wte, wpe), demb, retain_graph=True)

    logits = rand(N, Vp, scale=4.0, grad=True)
    tgt = tok.view(-1)

    def ce():
        loss = F.cross_entropy(logits[:, :V], tgt)
        loss.backward()
    ops["crossentropy fwd+bwd (in place)"] = ce
    tgt_masked = tgt.clone().view(B, T)
    tgt_masked[:, :196] = -100  # ignore_index: the image positions
    tgt_masked = tgt_masked.view(-1)
    ops["crossentropy fwd+bwd, 196 image rows masked"] = \
        lambda: torch.autograd.grad(F.cross_entropy(logits[:, :V], tgt_masked), (logits,))

    rl = rand(N, E, grad=True)

    def route():
        p = torch.softmax(rl.float(), -1)
        g, i = torch.topk(p, K, -1)
        return p, g / g.sum(-1, keepdim=True), i
    ops["moe router fwd (softmax+top-k)"] = route
    probs, gates, idx = route()

    def aux():
        f = torch.bincount(idx.view(-1), minlength=E).float() / (N * K)
        return E * (f * probs.mean(0)).sum() * 0.01
    ops["moe aux loss fwd"] = aux
    dg = torch.rand_like(gates)
    ops["moe router bwd"] = lambda: torch.autograd.grad(gates, (rl,), dg, retain_graph=True)

    def plan():
        order = torch.argsort(idx.view(-1), stable=True)
        return order, torch.bincount(idx.view(-1), minlength=E).cumsum(0)
    ops["moe permute plan"] = plan
    order, _ = plan()
    ops["moe permute fwd"] = lambda: x.index_select(0, order // K)
    pos = torch.empty_like(order)
    pos[order] = torch.arange(N * K, device="cuda")
    yp = rand(N * K, C, grad=True)
    gts = gates.detach().to(torch.bfloat16).requires_grad_(True)

    def unpermute():
        return (yp[pos].view(N, K, C) * gts.unsqueeze(-1)).sum(1)
    ops["moe unpermute fwd"] = unpermute
    un = unpermute()
    dy = rand(N, C)
    ops["moe unpermute bwd"] = lambda: torch.autograd.grad(un, (yp, gts), dy, retain_graph=True)
    return ops


def encoder_ops(B, P, C):
    N = B * P
    xg, lnw, lnb = rand(N, C, grad=True), rand(C, grad=True), rand(C, grad=True)
    ln = F.layer_norm(xg, (C,), lnw, lnb)
    dln = rand(N, C)
    return {"layernorm fwd": lambda: F.layer_norm(xg, (C,), lnw, lnb),
            "layernorm bwd": lambda: torch.autograd.grad(ln, (xg, lnw, lnb), dln, retain_graph=True)}


def vocab_ops(N):
    ops = {}
    for V, Vp in ((50257, 50304), (128256, 128256)):
        logits = rand(N, Vp, scale=4.0, grad=True)
        tgt = torch.arange(N, device="cuda") * 2654435761 % V
        ops[f"crossentropy N{N} V{V} Vp{Vp}"] = \
            lambda lg=logits, t=tgt, v=V: torch.autograd.grad(F.cross_entropy(lg[:, :v], t), (lg,))
    return ops


def optimizer_ops(n):
    p = torch.nn.Parameter(torch.rand(n, device="cuda"))
    p.grad = torch.rand(n, device="cuda")
    opt = torch.optim.AdamW([p], lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    m = n >> 20
    return {f"adamw step ({m}M params)": opt.step,
            f"global norm^2 ({m}M params)": lambda: torch.linalg.vector_norm(p.grad) ** 2}


def main():
    rows = [line.rstrip("\n").split("\t") for line in open("build/bench_kernels.tsv")]
    torch.backends.cuda.matmul.allow_tf32 = False
    ops = {}
    for cfg, shape in CONFIGS.items():
        ops[cfg] = config_ops(*shape)
    ops["small-enc"] = encoder_ops(16, 196, 384)
    ops["1b-enc"] = encoder_ops(4, 196, 768)
    ops["loss"] = vocab_ops(8192)
    ops["opt"] = optimizer_ops(128 << 20)
    ceil_copy = next(float(r[4]) / float(r[2]) / 1e6 for r in rows if r[:2] == ["ceil", "copy"])
    ceil_gemm = next(float(r[3]) / float(r[2]) / 1e9 for r in rows if r[:2] == ["ceil", "gemm"])
    lines = [f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}; "
             f"ceilings: copy {ceil_copy:.0f} GB/s, bf16 GEMM {ceil_gemm:.0f} TFLOP/s",
             "", "| shape | op | hgrid ms | rate | % of ceiling | PyTorch ms | PyTorch / hgrid |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for cfg, op, ms, flops, nbytes in rows:
        if cfg == "ceil":
            continue
        ms, flops, nbytes = float(ms), float(flops), float(nbytes)
        if flops > 0:
            rate, pct = f"{flops / ms / 1e9:.1f} TFLOP/s", 100 * flops / ms / 1e9 / ceil_gemm
        else:
            rate, pct = f"{nbytes / ms / 1e6:.0f} GB/s", 100 * nbytes / ms / 1e6 / ceil_copy
        tms = median_ms(ops[cfg][op])
        lines.append(f"| {cfg} | {op} | {ms:.3f} | {rate} | {pct:.0f}% | {tms:.3f} | {tms / ms:.2f} |")
    text = "\n".join(lines)
    print(text)
    with open("build/bench_kernels.md", "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
