#!/usr/bin/env python3
"""A small MIMO model trained with hgrid's groups in plain PyTorch: a ViT encoder on its own
ranks (data parallel, optionally tensor parallel) feeds a GPT LLM (tensor parallel with
Megatron-style column/row-parallel linears, data parallel) over the bridge; activations go
encoder -> LLM, their gradients back.

    hgridctl submit --job mimo --token T --encoder-tp 1 --encoder-dp 2 --llm-tp 2 --llm-dp 1 \\
        --micro-batch-size 2
    HGRID_COORDINATOR=head:7420 HGRID_JOB=mimo HGRID_TOKEN=T torchrun --nproc-per-node 4 \\
        examples/torch_mimo.py --steps 100
    python examples/torch_mimo.py --reference      # the same model in one process

Every rank prints one JSON line per step ({"step", "loss"} on the LLM's rank 0) and reports
step and loss to gridd (hgridctl watch). CPUs: gloo; GPUs: NCCL (LOCAL_RANK's device).
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F

IMAGE, PATCH, CHANNELS = 16, 4, 3
COLORS = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 1.0, 0.0)]
SIZES = [4, 6, 8]
BOS, EOS = 0, 1
VOCAB = 32
CAPTION = 6  # BOS color size x y EOS


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8, help="global batch (samples per step)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--enc-hidden", type=int, default=32)
    p.add_argument("--enc-heads", type=int, default=4)
    p.add_argument("--enc-layers", type=int, default=1)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--backend", choices=["gloo", "nccl"], default=None,
                   help="default: nccl with CUDA, else gloo")
    p.add_argument("--device", type=int, default=None, help="local GPU (default LOCAL_RANK)")
    p.add_argument("--reference", action="store_true",
                   help="the whole model in this one process, without hgrid")
    p.add_argument("--wait-release", action="store_true",
                   help="after the last step keep reporting it until the job is cancelled")
    p.add_argument("--megatron", action="store_true",
                   help="take the tp and dp groups from megatron.core's ProcessGroupCollection")
    return p.parse_args(argv)


# ---- data: a coloured square at a position; the caption names colour, size and position


def batch(step, first, count, seed):
    """Samples [first, first + count) of step's global batch: images (N, 16*16*3/P^2 patches,
    P*P*3) and captions (N, CAPTION)."""
    images = torch.zeros(count, CHANNELS, IMAGE, IMAGE)
    captions = torch.zeros(count, CAPTION, dtype=torch.long)
    for i in range(count):
        g = torch.Generator().manual_seed(seed * 1_000_003 + step * 4099 + first + i)
        c = int(torch.randint(len(COLORS), (1,), generator=g))
        s = int(torch.randint(len(SIZES), (1,), generator=g))
        size = SIZES[s]
        x, y = (int(v) for v in torch.randint(IMAGE - size + 1, (2,), generator=g))
        images[i, :, y:y + size, x:x + size] = torch.tensor(COLORS[c]).view(3, 1, 1)
        captions[i] = torch.tensor([BOS, 2 + c, 6 + s, 10 + x // 2, 18 + y // 2, EOS])
    patches = images.unfold(2, PATCH, PATCH).unfold(3, PATCH, PATCH)  # (N, C, h, w, P, P)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(count, -1, CHANNELS * PATCH * PATCH)
    return patches, captions


# ---- tensor parallelism (Megatron's f and g): identity one way, all-reduce the other


class CopyToTP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return x

    @staticmethod
    def backward(ctx, grad):
        if ctx.group is not None:
            grad = grad.contiguous()
            dist.all_reduce(grad, group=ctx.group)
        return grad, None


class ReduceFromTP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group):
        if group is not None:
            x = x.contiguous()
            dist.all_reduce(x, group=group)
        return x

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class Shards:
    """Full weights from one seeded generator, sliced for this tp rank: every layout holds
    the same model."""

    def __init__(self, seed, tp, tp_rank, device):
        self.g = torch.Generator().manual_seed(seed)
        self.tp, self.tp_rank, self.device = tp, tp_rank, device
        self.params = []

    def full(self, *shape, scale=None, value=None):
        if value is not None:
            return torch.full(shape, value)
        scale = scale if scale is not None else 1.0 / math.sqrt(shape[-1])
        return torch.randn(*shape, generator=self.g) * scale

    def keep(self, t):
        p = torch.nn.Parameter(t.contiguous().to(self.device))
        self.params.append(p)
        return p

    def replicated(self, *shape, **kw):
        return self.keep(self.full(*shape, **kw))

    def rows(self, t, parts=1):
        """Output rows of a column-parallel weight; `parts` stacked blocks (q, k, v) sliced
        alike."""
        blocks = t.chunk(parts, dim=0)
        return self.keep(torch.cat([b.chunk(self.tp, dim=0)[self.tp_rank] for b in blocks]))

    def cols(self, t):
        """Input columns of a row-parallel weight."""
        return self.keep(t.chunk(self.tp, dim=1)[self.tp_rank])


class Block:
    """Pre-LN transformer block, heads and MLP split over tp."""

    def __init__(self, sh, hidden, heads, ffn):
        self.heads = heads // sh.tp
        self.ln1 = (sh.replicated(hidden, value=1.0), sh.replicated(hidden, value=0.0))
        self.qkv = sh.rows(sh.full(3 * hidden, hidden), parts=3)
        self.qkv_b = sh.rows(sh.full(3 * hidden, value=0.0), parts=3)
        self.proj = sh.cols(sh.full(hidden, hidden))
        self.proj_b = sh.replicated(hidden, value=0.0)
        self.ln2 = (sh.replicated(hidden, value=1.0), sh.replicated(hidden, value=0.0))
        self.fc1 = sh.rows(sh.full(ffn, hidden))
        self.fc1_b = sh.rows(sh.full(ffn, value=0.0))
        self.fc2 = sh.cols(sh.full(hidden, ffn))
        self.fc2_b = sh.replicated(hidden, value=0.0)

    def __call__(self, x, tp_group, causal):
        n, t, c = x.shape
        h = F.layer_norm(x, (c,), *self.ln1)
        qkv = F.linear(CopyToTP.apply(h, tp_group), self.qkv, self.qkv_b)
        q, k, v = (z.view(n, t, self.heads, -1).transpose(1, 2) for z in qkv.chunk(3, dim=-1))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        a = a.transpose(1, 2).reshape(n, t, -1)
        x = x + ReduceFromTP.apply(F.linear(a, self.proj), tp_group) + self.proj_b
        h = F.layer_norm(x, (c,), *self.ln2)
        h = F.gelu(F.linear(CopyToTP.apply(h, tp_group), self.fc1, self.fc1_b))
        return x + ReduceFromTP.apply(F.linear(h, self.fc2), tp_group) + self.fc2_b


class Encoder:
    """ViT: patch embedding, position embedding, blocks, LayerNorm, projection to the LLM."""

    def __init__(self, args, tp, tp_rank, device):
        sh = Shards(args.seed, tp, tp_rank, device)
        patches, dim = (IMAGE // PATCH) ** 2, CHANNELS * PATCH * PATCH
        self.patch = sh.replicated(args.enc_hidden, dim)
        self.pos = sh.replicated(patches, args.enc_hidden, scale=0.02)
        self.blocks = [Block(sh, args.enc_hidden, args.enc_heads, 4 * args.enc_hidden)
                       for _ in range(args.enc_layers)]
        self.ln = (sh.replicated(args.enc_hidden, value=1.0), sh.replicated(args.enc_hidden, value=0.0))
        self.out = sh.replicated(args.hidden, args.enc_hidden)
        self.params = sh.params

    def __call__(self, patches, tp_group):
        x = F.linear(patches, self.patch) + self.pos
        for b in self.blocks:
            x = b(x, tp_group, causal=False)
        return F.linear(F.layer_norm(x, (x.shape[-1],), *self.ln), self.out)


class GPT:
    """Token and position embeddings, causal blocks, LayerNorm, LM head; the image embeddings
    come first in the sequence, the caption after them."""

    def __init__(self, args, tp, tp_rank, device):
        sh = Shards(args.seed + 1, tp, tp_rank, device)
        seq = (IMAGE // PATCH) ** 2 + CAPTION
        self.tok = sh.replicated(VOCAB, args.hidden, scale=0.02)
        self.pos = sh.replicated(seq, args.hidden, scale=0.02)
        self.blocks = [Block(sh, args.hidden, args.heads, args.ffn) for _ in range(args.layers)]
        self.ln = (sh.replicated(args.hidden, value=1.0), sh.replicated(args.hidden, value=0.0))
        self.head = sh.replicated(VOCAB, args.hidden)
        self.params = sh.params

    def loss(self, image_emb, captions, tp_group):
        """Mean cross-entropy of the caption's next tokens."""
        x = torch.cat([image_emb, F.embedding(captions, self.tok)], dim=1) + self.pos
        for b in self.blocks:
            x = b(x, tp_group, causal=True)
        logits = F.linear(F.layer_norm(x, (x.shape[-1],), *self.ln), self.head)
        p = image_emb.shape[1]
        pred = logits[:, p:p + CAPTION - 1]  # at BOS .. the token before EOS
        return F.cross_entropy(pred.reshape(-1, VOCAB), captions[:, 1:].reshape(-1))


def adam(params, lr):
    return torch.optim.Adam(params, lr=lr)


def reference(args):
    """The model in one process: one encoder, one LLM, the whole batch."""
    torch.manual_seed(args.seed)
    enc, llm = Encoder(args, 1, 0, "cpu"), GPT(args, 1, 0, "cpu")
    opt = adam(enc.params + llm.params, args.lr)
    for step in range(1, args.steps + 1):
        patches, captions = batch(step, 0, args.batch_size, args.seed)
        loss = llm.loss(enc(patches, None), captions, None)
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(json.dumps({"step": step, "loss": loss.item()}), flush=True)
    return 0


# ---- under hgrid


def lane_slice(args, lanes, lane):
    per = args.batch_size // lanes
    return lane * per, per


def train(args):
    import hgrid
    import hgrid.torch

    a = hgrid.join(device=args.device)
    backend = args.backend or ("nccl" if torch.cuda.is_available() else "gloo")
    groups = hgrid.torch.init_process_groups(a, backend=backend)
    device = torch.device("cuda", a.device) if backend == "nccl" else torch.device("cpu")
    if a.coords["pp"] or len(a.groups.get("pp", [0])) > 1 or len(a.groups.get("cp", [0])) > 1:
        raise SystemExit("torch_mimo: pipeline and context parallelism are not in this example")
    tp_members, dp_members = a.groups["tp"], a.groups["dp"]
    tp, tp_rank, dp, dp_rank = len(tp_members), a.coords["tp"], len(dp_members), a.coords["dp"]
    if args.megatron:  # as a Megatron model would receive them
        import hgrid.megatron
        pgc = hgrid.megatron.process_group_collection(a, groups)
        groups = dict(groups, tp=pgc.tp, dp=pgc.dp)
        fields = {f: (dist.get_process_group_ranks(getattr(pgc, f)) if getattr(pgc, f) else None)
                  for f in hgrid.megatron.FIELDS if hasattr(pgc, f)}
        print(json.dumps({"rank": a.rank, "module": a.module, "groups": a.groups,
                          "pg_collection": fields}), flush=True)
    tp_group = groups["tp"] if tp > 1 else None
    dp_group = groups["dp"] if dp > 1 else None
    encoder = a.module == "encoder"
    leader = "bridge" in a.groups  # bridge edges: fan-in / fan-out by the dp ratio
    llm_only = not encoder and a.groups["module"][0] == 0  # the LLM grid starts at rank 0
    if args.batch_size % dp:
        raise SystemExit(f"torch_mimo: --batch-size {args.batch_size} is not divisible by dp {dp}")
    model = (Encoder if encoder else GPT)(args, tp, tp_rank, device)
    opt = adam(model.params, args.lr)
    first, count = lane_slice(args, dp, dp_rank)
    hidden, patches_n = args.hidden, (IMAGE // PATCH) ** 2
    for step in range(1, args.steps + 1):
        t0 = time.perf_counter()
        patches, captions = batch(step, first, count, args.seed)
        patches, captions = patches.to(device), captions.to(device)
        opt.zero_grad()
        if encoder:
            out = model(patches, tp_group)  # (count, patches, hidden)
            grad = torch.empty_like(out)
            if leader:  # my lane's samples go to one LLM lane (fan-in) or k of them (fan-out)
                peers = a.bridge
                pieces = out.detach().chunk(len(peers)) if len(peers) > 1 else [out.detach()]
                for peer, piece in zip(peers, pieces):
                    dist.send(piece.contiguous(), dst=peer.rank)
                got = [torch.empty_like(p) for p in pieces]
                for peer, g in zip(peers, got):
                    dist.recv(g, src=peer.rank)
                grad = torch.cat(got)
            if tp_group is not None:
                dist.broadcast(grad, src=tp_members[0], group=tp_group)
            out.backward(grad)
            loss_value = None
        else:
            peers = a.bridge
            if leader:
                k = len(peers)
                per = count // k
                got = [torch.empty(per, patches_n, hidden, device=device) for _ in peers]
                for peer, g in zip(peers, got):
                    dist.recv(g, src=peer.rank)
                image_emb = torch.cat(got)
            elif llm_only:  # no encoder in the job: the caption alone
                image_emb = torch.zeros(count, patches_n, hidden, device=device)
            else:
                image_emb = torch.empty(count, patches_n, hidden, device=device)
            if tp_group is not None and not llm_only:
                dist.broadcast(image_emb, src=tp_members[0], group=tp_group)
            image_emb.requires_grad_(True)
            loss = model.loss(image_emb, captions, tp_group)
            loss.backward()
            if leader:
                for peer, g in zip(peers, image_emb.grad.chunk(len(peers))):
                    dist.send((g / dp).contiguous(), dst=peer.rank)
            loss_value = loss.detach().clone()
            if dp_group is not None:
                dist.all_reduce(loss_value, group=dp_group)
            loss_value = loss_value.item() / dp
        # Gradients: the LLM averages over its dp lanes; the encoder's lanes hold disjoint
        # samples of the global loss (already scaled by 1/llm_dp on the LLM side): sum.
        for p in model.params:
            if dp_group is not None:
                dist.all_reduce(p.grad, group=dp_group)
                if not encoder:
                    p.grad /= dp
        opt.step()
        dt = time.perf_counter() - t0
        a.heartbeat(step, loss=loss_value, tokens_per_s=count * CAPTION / dt)
        if not encoder and a.rank == a.groups["module"][0]:
            print(json.dumps({"step": step, "loss": loss_value, "step_s": round(dt, 6)}), flush=True)
    dist.barrier()
    hgrid.torch.destroy()
    if args.wait_release:
        try:
            while True:
                a.heartbeat(args.steps, loss=loss_value)
                time.sleep(0.2)
        except hgrid.Released:
            return 0
    a.done()
    return 0


def main(argv=None):
    args = parse_args(argv)
    return reference(args) if args.reference else train(args)


if __name__ == "__main__":
    sys.exit(main())
