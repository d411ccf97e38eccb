#!/usr/bin/env python3
"""Two-GPU benchmark: hgrid's tp2 and dp2 training steps against PyTorch's
tp2 and dp2 of the same model, in one call on the same two GPUs.

hgrid: gridd and two hgrid-workers (tests/gpu/comm_lib.sh) training the
job's model in the colocated layouts a user runs on two GPUs (both modules
on both GPUs): tp2 = encoder tp2 / llm tp2, one micro-batch of the global
batch; dp2 = encoder dp2 / llm dp2, half the batch per rank, once as
submitted and once with --dp-overlap. Step time: per step the slowest rank's
`step ... | N ms |` line, median over the timed steps.

PyTorch (tests/torch/model.py's model, bench_model.py's set-up: bf16
autocast, fp32 master weights, fused AdamW, clipping at 1.0), two processes
over NCCL: dp2 = DistributedDataParallel (bucketed all-reduce overlapped with
the backward), and one all-reduce of the concatenated gradients after the
backward, half the batch per rank; tp2 = Megatron-style tensor
parallelism in plain torch: qkv and fc column-parallel (heads split), the
attention's and the MLP's projections row-parallel with the all-reduce in
forward (its conjugate, the identity, in backward) and the column-parallel
inputs' gradients all-reduced in backward; the tied embedding and LM head
vocab-parallel with Megatron's vocab-parallel cross-entropy; layernorms,
biases after a row-parallel layer, the patch embedding, position embeddings
and the encoder's projection replicated; gradient clipping by the norm over
both ranks' shards. Each eager and torch.compile'd (the forward, as
bench_model.py does; with functional collectives in the graph). The speed
column: the fastest PyTorch row of the layout's time over the row's.

Usage: bench_parallel.py [--configs small] [--layouts tp2,dp2] [--steps N]
[--impls hgrid,eager,compile] [--out FILE.md]; --device cpu runs the
PyTorch side alone on the CPU over gloo (a dry run of this script:
tests/bench_parallel_check.py). Skips (exit 77) with fewer than 2 GPUs;
exits 1 if any run fails. MFU: bench_model.py's matrix-product FLOPs of
the global batch over 2 x 989 TFLOP/s. Dense configs only (the PyTorch
tp2 has no experts).
"""
import argparse
import datetime
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
try:  # a Python with torch: this one, else HGRID_PYTHON or build/venv's (else SKIP)
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    import torch.nn.functional as F
except ImportError:
    sys.path.insert(0, os.path.dirname(HERE))
    from hgrid_py import torch_python
    py = torch_python()
    os.execv(py, [py, os.path.abspath(__file__)] + sys.argv[1:])

sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "torch"))
import bench_model  # noqa: E402
from bench_model import PEAK, WARMUP, flops_per_step, timed_steps, torch_params  # noqa: E402
from model import PAD, forward  # noqa: E402

WORLD = 2
# Layout -> (encoder tp, encoder dp, llm tp, llm dp) of the colocated job.
LAYOUTS = {"tp2": (2, 1, 2, 1), "dp2": (1, 2, 1, 2)}
# hgrid's rows per layout: (implementation, extra worker flags).
HGRID_VARIANTS = {"tp2": [("hgrid", [])],
                  "dp2": [("hgrid", []), ("hgrid --dp-overlap", ["--dp-overlap"])]}
# PyTorch's per layout: (variant, what the row calls it): tp = Megatron-style
# tp2; ddp = DistributedDataParallel; flat = one all-reduce of the
# concatenated gradients after the backward.
TORCH_VARIANTS = {"tp2": [("tp", "")], "dp2": [("ddp", ", DDP"), ("flat", ", one all-reduce")]}
IMPLS = ("hgrid", "eager", "compile")
HGRID_TIMEOUT = 300  # seconds for one job, start to release
# A worker's step line (worker/run.c): rank, step, milliseconds.
STEP_LINE = re.compile(r"^rank (\d+) step +(\d+) \| loss \S+ \| norm \S+ \| +([0-9.]+) ms \|", re.M)

# ---- hgrid

# bash -c HGRID_JOB bench_parallel BIN TMP JOB CONFIG WORKER-FLAGS... -- LAYOUT-FLAGS...:
# one job on a private gridd, a worker per rank on GPU RANK writing TMP/JOB.RANK.out;
# prints "world N" once every worker ended (or was killed after $HGRID_TIMEOUT s).
HGRID_JOB = r"""
set -uo pipefail
bin=$1 tmp=$2 job=$3 config=$4
shift 4
wflags=()
while [ "$1" != "--" ]; do wflags+=("$1"); shift; done
shift
. tests/gpu/comm_lib.sh
trap comm_cleanup EXIT
export NCCL_NVLS_ENABLE=0
exited() {
  local p
  for p in "${worker_pids[@]}"; do kill -0 "$p" 2>/dev/null && return 1; done
  return 0
}
world=$(world_of "$@") || exit 1
start_gridd 30 || exit 1
# shellcheck disable=SC2046 # config_flags prints separate flags
token=$(ctl submit --job "$job" "$@" $(config_flags "$config")) || exit 1
for r in $(seq 0 $((world - 1))); do
  start_worker "$job" "$token" "$r" "$tmp/$job.$r.out" "${wflags[@]}"
done
# Trained workers report done; gridd then releases them (exit 0).
wait_until "$HGRID_TIMEOUT" exited ||
  echo "bench_parallel: workers still running after $HGRID_TIMEOUT s"
comm_cleanup
echo "world $world"
"""


def hgrid_layout(layout, batch):
    """hgridctl submit's layout flags for LAYOUT at global batch BATCH."""
    etp, edp, ltp, ldp = LAYOUTS[layout]
    return ["--mimo-layout", "colocated", "--encoder-tp", str(etp), "--encoder-dp", str(edp),
            "--llm-tp", str(ltp), "--llm-dp", str(ldp), "--micro-batch-size", str(batch // ldp),
            "--global-batch-size", str(batch)]


def worker_flags(config, steps, extra=()):
    """A GPU worker's flags after the coordination ones: train CONFIG for STEPS steps."""
    return ["--comm-timeout", "60", "--bw-bytes", "0", "--config", config, "--seed", "1",
            "--steps", str(steps), *extra]


def run_hgrid(config, layout, batch, wflags, tmp):
    """One job of LAYOUT through gridd; every worker's output, by rank. Raises
    RuntimeError when a worker failed (its output's end in the message)."""
    job = f"par-{config}-{layout}"
    env = dict(os.environ, HGRID_TIMEOUT=str(HGRID_TIMEOUT))
    run = subprocess.run(["bash", "-c", HGRID_JOB, "bench_parallel", BIN, tmp, job, config,
                          *wflags, "--", *hgrid_layout(layout, batch)],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    m = re.search(r"^world (\d+)$", run.stdout, re.M)
    if run.returncode or not m:
        raise RuntimeError(f"{job}: gridd or the submit failed: {run.stdout}{run.stderr}")
    outs = []
    for r in range(int(m[1])):
        with open(os.path.join(tmp, f"{job}.{r}.out")) as f:
            outs.append(f.read())
    failed = [r for r, o in enumerate(outs) if "released: job finished" not in o]
    if failed:
        tails = "; ".join(f"rank {r}: " + " / ".join(outs[r].strip().splitlines()[-3:])
                          for r in failed)
        raise RuntimeError(f"{job}: workers {failed} did not finish: {tails}")
    return outs


def hgrid_step_ms(outs):
    """Per step (in order), the slowest rank's step time in ms."""
    by_step = {}
    for text in outs:
        for m in STEP_LINE.finditer(text):
            by_step[int(m[2])] = max(by_step.get(int(m[2]), 0.0), float(m[3]))
    return [by_step[s] for s in sorted(by_step)]


def time_hgrid(config, layout, batch, steps, extra):
    with tempfile.TemporaryDirectory(suffix=".bench-parallel") as tmp:
        outs = run_hgrid(config, layout, batch, worker_flags(config, WARMUP + steps, extra), tmp)
    ms = hgrid_step_ms(outs)
    if len(ms) != WARMUP + steps:
        raise RuntimeError(f"{config} {layout}: {len(ms)} step lines, want {WARMUP + steps}")
    return statistics.median(ms[WARMUP:]) / 1e3


# ---- PyTorch: tensor parallelism over the process group

_TP_GROUP = ""  # the tensor-parallel group's name (c10d's functional collectives)


def _all_reduce(x, op="sum"):
    c10d = torch.ops._c10d_functional
    return c10d.wait_tensor(c10d.all_reduce(x.contiguous(), op, _TP_GROUP))


class _CopyToTP(torch.autograd.Function):
    """Megatron's f: identity forward, the gradient all-reduced backward."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return _all_reduce(g)


class _ReduceFromTP(torch.autograd.Function):
    """Megatron's g: all-reduce forward, identity backward."""

    @staticmethod
    def forward(ctx, x):
        return _all_reduce(x)

    @staticmethod
    def backward(ctx, g):
        return g


def copy_to_tp(x):
    return _CopyToTP.apply(x)


def reduce_from_tp(x):
    return _ReduceFromTP.apply(x)


class _VocabParallelCE(torch.autograd.Function):
    """Cross-entropy of logits split by vocabulary rows over the tp ranks
    (Megatron's vocab_parallel_cross_entropy), in fp32: per-row losses."""

    @staticmethod
    def forward(ctx, logits, target, vocab_start):                       # (N, V/tp), (N,)
        z = logits.float()
        z = z - _all_reduce(z.max(-1).values, "max").unsqueeze(-1)
        local = target - vocab_start
        outside = (local < 0) | (local >= z.shape[-1])
        local = local.masked_fill(outside, 0)
        picked = _all_reduce(z.gather(-1, local.unsqueeze(-1)).squeeze(-1).masked_fill(outside, 0))
        e = z.exp()
        total = _all_reduce(e.sum(-1))
        ctx.save_for_backward(e / total.unsqueeze(-1), local, outside)
        ctx.dtype = logits.dtype
        return total.log() - picked

    @staticmethod
    def backward(ctx, g):
        probs, local, outside = ctx.saved_tensors
        hit = (~outside).to(probs.dtype).unsqueeze(-1)
        grad = probs.scatter_add(-1, local.unsqueeze(-1), -hit) * g.unsqueeze(-1)
        return grad.to(ctx.dtype), None, None


def tp_embed(wte, tokens, vocab_start):
    """Vocab-parallel embedding: this rank's rows looked up, the rest zero, summed over tp."""
    local = tokens - vocab_start
    outside = (local < 0) | (local >= wte.shape[0])
    e = F.embedding(local.masked_fill(outside, 0), wte)
    return reduce_from_tp(e.masked_fill(outside.unsqueeze(-1), 0))


def tp_block(x, p, l, heads, causal):
    """model.block split over the tp ranks: qkv and fc column-parallel,
    the projections row-parallel; heads: this rank's."""
    B, T, C = x.shape
    h = copy_to_tp(F.layer_norm(x, (C,), p["blocks.ln1_w"][l], p["blocks.ln1_b"][l], 1e-5))
    qkv = F.linear(h, p["blocks.qkv_w"][l], p["blocks.qkv_b"][l])        # (B, T, 3C/tp)
    hd = qkv.shape[-1] // (3 * heads)
    q, k, v = qkv.view(B, T, 3, heads, hd).permute(2, 0, 3, 1, 4)        # (B, NH/tp, T, HD)
    a = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    a = a.transpose(1, 2).reshape(B, T, heads * hd)
    x = x + reduce_from_tp(F.linear(a, p["blocks.attn_proj_w"][l])) + p["blocks.attn_proj_b"][l]
    h = copy_to_tp(F.layer_norm(x, (C,), p["blocks.ln2_w"][l], p["blocks.ln2_b"][l], 1e-5))
    h = F.gelu(F.linear(h, p["blocks.fc_w"][l], p["blocks.fc_b"][l]), approximate="tanh")
    return x + reduce_from_tp(F.linear(h, p["blocks.fc_proj_w"][l])) + p["blocks.fc_proj_b"][l]


def tp_forward(cfg, enc, llm, patches, tokens, rank, tp):
    """model.forward's loss (dense) on rank's shards of tp (tp_shard)."""
    x = F.linear(patches, enc["patch_w"], enc["patch_b"]) + enc["pos"]
    for l in range(cfg["encoder_num_layers"]):
        x = tp_block(x, enc, l, cfg["encoder_num_attention_heads"] // tp, False)
    x = F.layer_norm(x, (x.shape[-1],), enc["lnf_w"], enc["lnf_b"], 1e-5)
    img = F.linear(x, enc["proj_w"], enc["proj_b"])                      # (B, P, C)
    P, Vl = img.shape[1], llm["wte"].shape[0]
    h = torch.cat([img, tp_embed(llm["wte"], tokens, rank * Vl)], 1)
    h = h + llm["wpe"][:h.shape[1]]
    for l in range(cfg["num_layers"]):
        h = tp_block(h, llm, l, cfg["num_attention_heads"] // tp, True)
    h = F.layer_norm(h, (h.shape[-1],), llm["lnf_w"], llm["lnf_b"], 1e-5)
    logits = copy_to_tp(h[:, P:-1]) @ llm["wte"].t()                    # (B, Tt-1, V/tp)
    targets = tokens[:, 1:].reshape(-1)
    losses = _VocabParallelCE.apply(logits.reshape(-1, Vl), targets, rank * Vl)
    mask = (targets != PAD).to(losses.dtype)
    return (losses * mask).sum() / mask.sum()


# Tensors split over tp: name -> (dim, groups): dim viewed as (groups, tp,
# rest), rank r keeping [:, r]; qkv's rows are q, k and v, each split by heads.
TP_SPLIT = {"blocks.qkv_w": (1, 3), "blocks.qkv_b": (1, 3), "blocks.attn_proj_w": (2, 1),
            "blocks.fc_w": (1, 1), "blocks.fc_b": (1, 1), "blocks.fc_proj_w": (2, 1),
            "wte": (0, 1)}


def tp_shard(t, name, rank, tp):
    """Rank's part of the full tensor `name` (the whole tensor if replicated)."""
    if name not in TP_SPLIT:
        return t
    d, g = TP_SPLIT[name]
    return t.unflatten(d, (g, tp, -1)).select(d + 1, rank).flatten(d, d + 1)


def tp_unshard(parts, name):
    """The full tensor `name` from every rank's part, in rank order."""
    d, g = TP_SPLIT[name]
    return torch.stack([p.unflatten(d, (g, -1)) for p in parts], d + 1).flatten(d, d + 2)


def tp_params(c, device, rank, tp):
    """torch_params' weights (seed 0), rank's shards, as leaf tensors."""
    torch.manual_seed(0)
    return [{k: tp_shard(v.detach(), k, rank, tp).clone().requires_grad_() for k, v in m.items()}
            for m in torch_params(c, device)]


def tp_clip_grad_norm(enc, llm, max_norm):
    """clip_grad_norm_ over the whole model: the split tensors' squares
    summed over the tp ranks, the replicated ones' counted once."""
    named = [(k, t) for m in (enc, llm) for k, t in m.items()]

    def squares(ts):
        return torch.stack(torch._foreach_norm(ts)).square().sum() if ts else 0.0
    split = squares([t.grad for k, t in named if k in TP_SPLIT])
    dist.all_reduce(split)
    norm = (split + squares([t.grad for k, t in named if k not in TP_SPLIT])).sqrt()
    torch._foreach_mul_([t.grad for _, t in named], (max_norm / (norm + 1e-6)).clamp(max=1.0))
    return norm


class DenseNet(torch.nn.Module):
    """The weights as parameters (for DistributedDataParallel); forward is model.forward."""

    def __init__(self, cfg, enc, llm):
        super().__init__()
        self.cfg = cfg
        self.enc = torch.nn.ParameterDict({k.replace(".", "__"): torch.nn.Parameter(v.detach())
                                           for k, v in enc.items()})
        self.llm = torch.nn.ParameterDict({k.replace(".", "__"): torch.nn.Parameter(v.detach())
                                           for k, v in llm.items()})

    def tables(self):
        return [{k.replace("__", "."): v for k, v in m.items()} for m in (self.enc, self.llm)]

    def forward(self, patches, tokens):
        enc, llm = self.tables()
        return forward(self.cfg, enc, llm, patches, tokens)


def dp_net(c, device, ddp):
    """The whole model (torch_params' weights, seed 0), in DDP if ddp."""
    torch.manual_seed(0)
    net = DenseNet(c, *torch_params(c, device))
    if not ddp:
        return net
    ids = [torch.cuda.current_device()] if device == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(net, device_ids=ids,
                                                     gradient_as_bucket_view=True)


def all_reduce_flat(params):
    """The gradients' mean over the ranks, in one all-reduce of their concatenation."""
    grads = [p.grad for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= WORLD
    torch._foreach_copy_(grads, [f.view_as(g) for f, g in
                                 zip(flat.split([g.numel() for g in grads]), grads)])


def batch(c, device):
    """bench_model.time_torch's batch (after the weights at seed 0): (patches, tokens)."""
    B, P = c["batch"], (c["image_size"] // c["patch_size"]) ** 2
    patches = torch.rand(B, P, c["patch_size"] ** 2 * 3, device=device) * 2 - 1
    tokens = torch.randint(3, 22, (B, c["seq_length"] - P), device=device)
    return patches, tokens


def time_torch(c, variant, compiled, steps, device, rank):
    """Median step seconds of PyTorch's VARIANT (TORCH_VARIANTS) on this rank
    (rank 0's is reported)."""
    if variant == "tp":
        enc, llm = tp_params(c, device, rank, WORLD)
        params = list(enc.values()) + list(llm.values())
        patches, tokens = batch(c, device)
        fwd = tp_forward
    else:
        net = dp_net(c, device, variant == "ddp")
        params = list(net.parameters())
        patches, tokens = batch(c, device)
        half = c["batch"] // WORLD
        patches, tokens = (t[rank * half:(rank + 1) * half] for t in (patches, tokens))
        fwd = net
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    if compiled:
        torch._dynamo.reset()
        torch._inductor.config.triton.coalesce_tiling_analysis = False  # as bench_model.py
        fwd = torch.compile(fwd)
    losses = []

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16):
            if variant == "tp":
                loss = fwd(c, enc, llm, patches, tokens, rank, WORLD)
            else:
                loss, _ = fwd(patches, tokens)
        loss.backward()
        if variant == "tp":
            tp_clip_grad_norm(enc, llm, 1.0)
        else:
            if variant == "flat":
                all_reduce_flat(params)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.detach())

    times = timed_steps(step, steps, device)
    last = losses[-1].item()
    if not math.isfinite(last):
        raise RuntimeError(f"PyTorch {variant}: loss {last} after {len(losses)} steps")
    return statistics.median(times)


# ---- processes

def _entry(rank, fn, device, init, args):
    if device == "cuda":
        torch.cuda.set_device(rank)
    dist.init_process_group("nccl" if device == "cuda" else "gloo", init_method=init, rank=rank,
                            world_size=WORLD, timeout=datetime.timedelta(seconds=300))
    global _TP_GROUP
    _TP_GROUP = dist.group.WORLD.group_name
    try:
        fn(rank, device, *args)
    finally:
        dist.destroy_process_group()


def spawn(fn, device, *args):
    """fn(rank, device, *args) in WORLD processes joined over NCCL (cuda) or
    gloo (cpu), rank r on GPU r; raises if any process failed. On the CPU
    they are forks (no second import of torch); CUDA needs fresh processes."""
    with tempfile.TemporaryDirectory(suffix=".bench-parallel") as tmp:
        mp.start_processes(_entry, (fn, device, "file://" + os.path.join(tmp, "rendezvous"), args),
                           nprocs=WORLD, join=True,
                           start_method="spawn" if device == "cuda" else "fork")


def _torch_runs(rank, device, c, runs, steps, out):
    """Times each (variant, compiled) of runs; rank 0 writes the results to out
    (JSON: per run its seconds or torch.compile's error)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    results = []
    for variant, compiled in runs:
        try:
            results.append({"s": time_torch(c, variant, compiled, steps, device, rank)})
        except Exception as e:  # noqa: BLE001 (compile's errors are many; reported)
            if not compiled:
                raise
            results.append({"error": f"{type(e).__name__}: {str(e).strip().splitlines()[0]}"})
        if rank == 0:  # progress, should the call end before the table
            print(f"bench_parallel: PyTorch {variant}{' compiled' if compiled else ''}: "
                  f"{results[-1]}", flush=True)
        if device == "cuda":
            torch.cuda.empty_cache()
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"results": results}, f)


# ---- the table

def rates(c, seconds):
    """(tokens/s, MFU) of one step of the global batch in SECONDS on WORLD GPUs."""
    return c["batch"] * c["seq_length"] / seconds, flops_per_step(c) / seconds / (WORLD * PEAK)


def table_row(config, impl, layout, c, seconds, ref):
    tok_s, mfu = rates(c, seconds)
    return (f"| {config} | {impl} | {layout} | {seconds * 1e3:.1f} | {tok_s:,.0f} | "
            f"{100 * mfu:.1f}% | {ref / seconds:.2f} |")


LEGEND = {"tp2": "tp2: hgrid colocated encoder tp2 / llm tp2 (one micro-batch); PyTorch "
                  "Megatron-style tp2 (vocab-parallel embedding, LM head and loss)",
          "dp2": "dp2: hgrid colocated encoder dp2 / llm dp2 (half the batch per rank; "
                 "--dp-overlap: gradients reduced during the backward); PyTorch DDP (bucketed "
                 "all-reduce overlapped with the backward), or one all-reduce of the concatenated "
                 "gradients after it"}
TABLE_HEAD = ["| config | implementation | layout | step ms | tokens/s | MFU | "
              "speed vs torch |", "| --- | --- | --- | --- | --- | --- | --- |"]


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="hgrid's tp2 and dp2 training steps against PyTorch's on the same 2 GPUs.",
        epilog="Layouts: tp2 = colocated encoder tp2 / llm tp2; dp2 = colocated encoder dp2 / "
               "llm dp2 (hgrid), DDP and one all-reduce (PyTorch). Skips (exit 77) with fewer "
               "than 2 GPUs.")
    ap.add_argument("--configs", default="small",
                    help="dense configs, comma-separated (default small)")
    ap.add_argument("--layouts", default="tp2,dp2", help="of tp2,dp2 (default both)")
    ap.add_argument("--steps", type=int, default=0, metavar="N",
                    help=f"timed steps after {WARMUP} warm-up (default: bench_model.py's per "
                         "config)")
    ap.add_argument("--batch", type=int, default=0, metavar="B",
                    help="global batch, even (default: the config's, as bench_model.py)")
    ap.add_argument("--impls", default=",".join(IMPLS),
                    help="of hgrid,eager,compile (default all)")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                    help="cpu: PyTorch alone over gloo, a dry run of this script")
    ap.add_argument("--out", default="", metavar="FILE",
                    help="also write the table (markdown) to FILE")
    args = ap.parse_args(argv)
    for flag, value, allowed in (("--layouts", args.layouts, LAYOUTS),
                                 ("--impls", args.impls, IMPLS)):
        unknown = sorted(set(value.split(",")) - set(allowed))
        if unknown:
            ap.error(f"{flag}: unknown {unknown}; use {', '.join(allowed)}")
    if args.device == "cpu" and args.impls == "hgrid":
        ap.error("--device cpu times PyTorch alone: --impls needs eager or compile")
    if args.steps < 0 or args.batch < 0 or args.batch % WORLD:
        ap.error(f"--steps must be positive, --batch positive and divisible by {WORLD}")
    return args


def main(argv=None):
    args = parse_args(argv)
    layouts, impls = args.layouts.split(","), args.impls.split(",")
    os.environ["NCCL_NVLS_ENABLE"] = "0"  # never NVLink multicast on shared hosts
    if args.device == "cuda":
        gpus = torch.cuda.device_count()
        if gpus < WORLD:
            print(f"SKIP: bench_parallel needs {WORLD} GPUs ({gpus} here)", flush=True)
            sys.exit(77)
    failed, rows, notes, counts = False, [], [], {}
    for name in args.configs.split(","):
        c = bench_model.describe(name)
        bench_model.check_param_counts(name, c)
        c["batch"] = args.batch or c["batch"]
        if c["num_experts"]:
            raise SystemExit(f"bench_parallel: config {name} has experts; the PyTorch tp2 is "
                             "dense only")
        steps = counts[name] = args.steps or bench_model.STEPS.get(name, 10)
        timed = {}  # (layout, implementation) -> seconds
        for layout in layouts:
            if "hgrid" not in impls or args.device != "cuda":
                continue
            for impl, extra in HGRID_VARIANTS[layout]:
                try:
                    timed[layout, impl] = time_hgrid(name, layout, c["batch"], steps, extra)
                except RuntimeError as e:
                    failed = True
                    notes.append(f"{name} {layout} {impl} failed: {e}")
                    print(notes[-1], flush=True)
        runs = [(layout, variant, label, impl == "compile") for layout in layouts
                for variant, label in TORCH_VARIANTS[layout] for impl in impls if impl != "hgrid"]
        if runs:
            with tempfile.TemporaryDirectory(suffix=".bench-parallel") as tmp:
                out = os.path.join(tmp, "results.json")
                try:
                    spawn(_torch_runs, args.device, c, [(r[1], r[3]) for r in runs], steps, out)
                    with open(out) as f:
                        got = json.load(f)
                except Exception as e:  # noqa: BLE001 (a failed rank's error is reported)
                    failed = True
                    print(f"{name}: PyTorch failed: {e}", flush=True)
                    got = {"results": [{"error": "failed"} for _ in runs]}
            for (layout, _, label, compiled), res in zip(runs, got["results"]):
                impl = ("torch.compile" if compiled else "torch eager") + label
                if "s" in res:
                    timed[layout, impl] = res["s"]
                else:
                    notes.append(f"{name} {layout} {impl}: {res['error']} (not timed)")
        for layout in layouts:
            ref = min((s for (lay, impl), s in timed.items() if lay == layout and
                       impl.startswith("torch")), default=math.nan)
            for (lay, impl), s in timed.items():
                if lay == layout:
                    rows.append(table_row(name, impl, layout, c, s, ref))
                    print(rows[-1], flush=True)
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU (PyTorch only, gloo)"
    text = (f"{device}, torch {torch.__version__}, {WORLD} ranks, median of {counts} steps after "
            f"{WARMUP} warm-up; speed vs torch: the fastest PyTorch time of the same layout over "
            f"the row's\n\n" + "\n".join(TABLE_HEAD + rows) + "\n")
    text += "\n" + "\n".join(f"- {n}" for n in [LEGEND[lay] for lay in layouts] + notes) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    sys.exit(1 if failed else 0)


BIN = os.path.abspath(os.environ.get("HGRID_BIN", "bin"))
bench_model.BIN = BIN

if __name__ == "__main__":
    main()
