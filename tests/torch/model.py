"""PyTorch reference of hgrid's model (model/cpu_model.c), and the check of a
C dump (model/dump.h) against it: same weights and batch, loss and every
gradient by autograd in float64, then the same AdamW steps with gradient
clipping. Usage: python3 tests/torch/model.py DUMP... (exit 1 on a mismatch).
"""
import math
import struct
import sys

import torch
import torch.nn.functional as F

CFG_FIELDS = ("num_layers", "hidden_size", "num_attention_heads", "ffn_hidden_size",
              "vocab_size", "seq_length", "num_experts", "moe_router_topk",
              "encoder_num_layers", "encoder_hidden_size", "encoder_num_attention_heads",
              "image_size", "patch_size")
PAD = 0

# Tolerances per dump mode: |loss diff|, per-tensor relative L2 gradient
# error, |step loss diff| over the AdamW steps, share of MoE token choices
# that differ from float64's top-k (bf16 rounding reorders near-ties).
TOLERANCES = {"cpu": (1e-4, 1e-4, 1e-3, 0.005), "gpu-fp32": (1e-4, 1e-3, 2e-3, 0.005),
              "gpu-bf16": (3e-2, 8e-2, 8e-2, 0.05)}


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        vals = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return vals

    def array(self, n, dtype):
        t = torch.frombuffer(bytearray(self.data[self.pos:self.pos + 4 * n]), dtype=dtype)
        self.pos += 4 * n
        return t.clone()


def read_dump(path):
    with open(path, "rb") as f:
        r = Reader(f.read())
    magic, mode = r.take("8s16s")
    if magic != b"HGDUMP1\0":
        raise SystemExit(f"{path}: not an hgrid model dump (magic {magic!r})")
    d = {"mode": mode.rstrip(b"\0").decode()}
    vals = r.take("14i")
    d["cfg"] = dict(zip(CFG_FIELDS, vals[:13]))
    d["B"] = vals[13]
    d["opt"] = dict(zip(("lr", "beta1", "beta2", "eps", "weight_decay", "max_grad_norm",
                         "moe_aux_coeff"), r.take("7f")))
    (steps,) = r.take("i")
    tables = []
    for _ in range(2):
        (n,) = r.take("i")
        tensors = []
        for _ in range(n):
            name, ndim, s0, s1, s2, s3, offset, count, decay = r.take("48s5i2qi")
            tensors.append((name.rstrip(b"\0").decode(), [s0, s1, s2, s3][:ndim], offset, count,
                            decay))
        (total,) = r.take("q")
        tables.append((tensors, total))
    d["tables"] = tables
    c = d["cfg"]
    P = (c["image_size"] // c["patch_size"]) ** 2
    D = c["patch_size"] ** 2 * 3
    Tt = c["seq_length"] - P
    d["params"] = [r.array(tables[0][1], torch.float32), r.array(tables[1][1], torch.float32)]
    d["patches"] = r.array(d["B"] * P * D, torch.float32).view(d["B"], P, D)
    d["tokens"] = r.array(d["B"] * Tt, torch.int32).view(d["B"], Tt).long()
    d["loss"], d["aux"] = r.take("2f")
    d["grads"] = [r.array(tables[0][1], torch.float32), r.array(tables[1][1], torch.float32)]
    d["routing"] = None
    if c["num_experts"]:
        L, N, K = c["num_layers"], d["B"] * c["seq_length"], c["moe_router_topk"]
        d["routing"] = r.array(L * N * K, torch.int32).view(L, N, K).long()
    d["step_losses"] = list(r.take(f"{steps}f"))
    d["step_norms"] = list(r.take(f"{steps}f"))
    return d


def unflatten(table, flat, device, dtype):
    """Named leaf tensors from a module's flat buffer (empty ones left out)."""
    tensors, _ = table
    return {name: flat[off:off + n].view(shape).to(device, dtype).requires_grad_()
            for name, shape, off, n, _ in tensors if n}


def mlp(h, p, l):
    h = F.gelu(F.linear(h, p["blocks.fc_w"][l], p["blocks.fc_b"][l]), approximate="tanh")
    return F.linear(h, p["blocks.fc_proj_w"][l], p["blocks.fc_proj_b"][l])


def moe(h, p, l, E, K, coeff, route):
    """Top-k MoE MLP and its load-balancing loss coeff * E * sum_e f_e P_e,
    f_e (the share of assignments to expert e) taken as a constant. route:
    None, or a list [choices (N, K), flips] to take these experts instead of
    the top-k and count the choices that differ from the top-k."""
    B, T, C = h.shape
    x = h.reshape(-1, C)
    probs = torch.softmax(x @ p["blocks.router_w"][l].t(), -1)            # (N, E)
    top, idx = probs.topk(K, -1)                                          # (N, K)
    if route is not None:
        forced = route[0].to(idx.device)
        route[1] += (forced.sort(-1).values != idx.sort(-1).values).any(-1).sum().item()
        idx, top = forced, probs.gather(-1, forced)
    gates = top / top.sum(-1, keepdim=True)
    y = torch.zeros_like(x)
    for e in range(E):
        rows, slot = (idx == e).nonzero(as_tuple=True)
        if rows.numel():
            ye = mlp(x[rows], {k: v[:, e] for k, v in p.items() if k.startswith("blocks.fc")}, l)
            # Under autocast on the CPU the gates (and so ye) come out bf16.
            y = y.index_add(0, rows, (ye * gates[rows, slot].unsqueeze(-1)).to(y.dtype))
    f = F.one_hot(idx, E).sum((0, 1)).to(x.dtype) / idx.numel()
    return y.view(B, T, C), coeff * E * (f * probs.mean(0)).sum()


def moe_grouped(h, p, l, E, K, coeff):
    """moe() without its loop over the experts, as a fast PyTorch MoE is
    written: the token copies sorted by expert, each MLP matrix product one
    torch._grouped_mm over every expert's rows, no host sync (the
    benchmark's stronger reference; bench_model_check.py holds it to moe())."""
    B, T, C = h.shape
    x = h.reshape(-1, C)
    probs = torch.softmax(x @ p["blocks.router_w"][l].t(), -1)            # (N, E)
    top, idx = probs.topk(K, -1)                                          # (N, K)
    gates = top / top.sum(-1, keepdim=True)
    flat = idx.reshape(-1)
    order = flat.argsort(stable=True)                                     # expert by expert
    rows, expert = order // K, flat[order]
    offs = torch.bincount(flat, minlength=E).cumsum(0).to(torch.int32)
    # Under autocast the products run in bf16 (what F.linear gets there).
    dt = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
    w1, w2 = p["blocks.fc_w"][l].to(dt), p["blocks.fc_proj_w"][l].to(dt)   # (E, F, C), (E, C, F)
    a = torch._grouped_mm(x[rows].to(dt), w1.transpose(1, 2), offs=offs)
    a = F.gelu(a + p["blocks.fc_b"][l][expert].to(dt), approximate="tanh")
    ye = torch._grouped_mm(a, w2.transpose(1, 2), offs=offs) + p["blocks.fc_proj_b"][l][expert].to(dt)
    g = gates.reshape(-1)[order].unsqueeze(-1)
    y = torch.zeros_like(x).index_add(0, rows, (ye * g).to(x.dtype))
    f = F.one_hot(idx, E).sum((0, 1)).to(x.dtype) / idx.numel()
    return y.view(B, T, C), coeff * E * (f * probs.mean(0)).sum()


def block(x, p, l, heads, causal, experts, route=None):
    """A pre-LN block; experts = (E, K, coeff, grouped) for an MoE MLP, else None.
    Returns the output and the block's load-balancing loss."""
    B, T, C = x.shape
    h = F.layer_norm(x, (C,), p["blocks.ln1_w"][l], p["blocks.ln1_b"][l], 1e-5)
    qkv = F.linear(h, p["blocks.qkv_w"][l], p["blocks.qkv_b"][l])        # (B, T, 3C)
    q, k, v = qkv.view(B, T, 3, heads, C // heads).permute(2, 0, 3, 1, 4)  # (B, NH, T, HD)
    a = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    a = a.transpose(1, 2).reshape(B, T, C)
    x = x + F.linear(a, p["blocks.attn_proj_w"][l], p["blocks.attn_proj_b"][l])
    h = F.layer_norm(x, (C,), p["blocks.ln2_w"][l], p["blocks.ln2_b"][l], 1e-5)
    if experts:
        E, K, coeff, grouped = experts
        y, aux = moe_grouped(h, p, l, E, K, coeff) if grouped else moe(h, p, l, E, K, coeff, route)
        return x + y, aux
    return x + mlp(h, p, l), 0.0


def forward(cfg, enc, llm, patches, tokens, aux_coeff=0.01, routing=None, flips=None):
    """Mean cross-entropy over the caption's next tokens, and the MoE
    load-balancing loss (0 for a dense LLM); training minimises their sum.
    routing (L, N, K): expert choices to use instead of the top-k; flips (a
    one-element list) then counts the tokens where they differ."""
    x = F.linear(patches, enc["patch_w"], enc["patch_b"]) + enc["pos"]
    for l in range(cfg["encoder_num_layers"]):
        x, _ = block(x, enc, l, cfg["encoder_num_attention_heads"], False, None)
    x = F.layer_norm(x, (x.shape[-1],), enc["lnf_w"], enc["lnf_b"], 1e-5)
    img = F.linear(x, enc["proj_w"], enc["proj_b"])                      # (B, P, C)
    P = img.shape[1]
    h = torch.cat([img, llm["wte"][tokens]], 1)
    h = h + llm["wpe"][:h.shape[1]]
    E = cfg.get("num_experts", 0)
    # cfg "moe_impl": "grouped" for moe_grouped (forced routing needs the loop)
    grouped = cfg.get("moe_impl", "loop") == "grouped" and routing is None
    experts = (E, cfg["moe_router_topk"], aux_coeff, grouped) if E else None
    aux = 0.0
    for l in range(cfg["num_layers"]):
        route = None if routing is None else [routing[l], 0]
        h, block_aux = block(h, llm, l, cfg["num_attention_heads"], True, experts, route)
        aux = aux + block_aux
        if route is not None:
            flips[0] += route[1]
    h = F.layer_norm(h, (h.shape[-1],), llm["lnf_w"], llm["lnf_b"], 1e-5)
    logits = h[:, P:-1] @ llm["wte"].t()                               # (B, Tt-1, V)
    targets = tokens[:, 1:]
    losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                             reduction="none")
    mask = (targets.reshape(-1) != PAD).to(losses.dtype)
    return (losses * mask).sum() / mask.sum(), aux


def make_optimizer(d, enc, llm):
    decay, no_decay = [], []
    for table, p in zip(d["tables"], (enc, llm)):
        for name, _, _, n, dec in table[0]:
            if n:
                (decay if dec else no_decay).append(p[name])
    o = d["opt"]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": o["weight_decay"]},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"], foreach=False)


def check(path, device):
    d = read_dump(path)
    tol_loss, tol_grad, tol_step, tol_flips = TOLERANCES[d["mode"]]
    dt = torch.float64
    enc = unflatten(d["tables"][0], d["params"][0], device, dt)
    llm = unflatten(d["tables"][1], d["params"][1], device, dt)
    patches, tokens = d["patches"].to(device, dt), d["tokens"].to(device)
    # Gradients under the C side's expert choices: where bf16 rounding moved
    # a near-tie token to another expert the two functions differ there.
    coeff, flips = d["opt"]["moe_aux_coeff"], [0]
    loss, aux = forward(d["cfg"], enc, llm, patches, tokens, coeff, d["routing"], flips)
    (loss + aux).backward()
    aux = aux.item() if torch.is_tensor(aux) else aux
    ok = True
    dloss, daux = abs(loss.item() - d["loss"]), abs(aux - d["aux"])
    print(f"{path} [{d['mode']}]: loss C {d['loss']:.6f} torch {loss.item():.6f} "
          f"|diff| {dloss:.2e}; aux C {d['aux']:.6f} torch {aux:.6f} (tol {tol_loss:g})")
    ok &= dloss <= tol_loss and daux <= tol_loss
    if d["routing"] is not None:
        tokens_routed = d["routing"].shape[0] * d["routing"].shape[1]
        print(f"  routing: {flips[0]} of {tokens_routed} token choices differ from torch's top-k "
              f"(tol {100 * tol_flips:g}%)")
        ok &= flips[0] <= tol_flips * tokens_routed
    worst = (0.0, "")
    for m, (table, p) in enumerate(zip(d["tables"], (enc, llm))):
        for name, shape, off, n, _ in table[0]:
            if not n:
                continue
            gc = d["grads"][m][off:off + n].view(shape).to(device, dt)
            gt = p[name].grad
            err = ((gc - gt).norm() / gt.norm().clamp_min(1e-30)).item()
            if err > worst[0]:
                worst = (err, f"{('encoder', 'llm')[m]}.{name}")
            if err > tol_grad:
                ok = False
                print(f"  {('encoder', 'llm')[m]}.{name}: relative grad error {err:.2e}")
    print(f"  gradients: worst relative L2 error {worst[0]:.2e} ({worst[1]}), tol {tol_grad:g}")

    # The same AdamW steps with clipping on the same batch.
    params = list(enc.values()) + list(llm.values())
    opt = make_optimizer(d, enc, llm)
    worst_step = 0.0
    for s, (lc, nc) in enumerate(zip(d["step_losses"], d["step_norms"])):
        opt.zero_grad()
        l, a = forward(d["cfg"], enc, llm, patches, tokens, coeff)
        (l + a).backward()
        norm = torch.nn.utils.clip_grad_norm_(params, d["opt"]["max_grad_norm"]).item()
        opt.step()
        diff = abs(l.item() - lc)
        worst_step = max(worst_step, diff)
        print(f"  step {s}: loss C {lc:.5f} torch {l.item():.5f}  norm C {nc:.4f} "
              f"torch {norm:.4f}")
        ok &= diff <= tol_step and math.isfinite(lc)
    print(f"  steps: worst |loss diff| {worst_step:.2e} (tol {tol_step:g}) -> "
          f"{'ok' if ok else 'MISMATCH'}")
    return ok


def main():
    torch.backends.cuda.matmul.allow_tf32 = False
    device = "cuda" if torch.cuda.is_available() else "cpu"
    results = [check(p, device) for p in sys.argv[1:]]
    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    sys.exit(0 if results and all(results) else 1)


if __name__ == "__main__":
    main()
