#!/usr/bin/env python3
"""The 2-GPU benchmark's logic without a GPU (tests/bench/bench_parallel.py):
in 2 processes over gloo, in fp32 on the tiny config, PyTorch's tp2 (its
shards gathered back) and dp2 (DDP, and one all-reduce) give the
single-process model's loss,
every gradient and the clipping norm; with the row-parallel all-reduce
dropped, or the column-parallel inputs' gradient all-reduce, tp2 does not
(so the comparison can fail). The FLOPs each rank
runs are its share of bench_model's count (dp2: half each; tp2: the split
layers' half, the replicated ones whole). The --device cpu run prints the
table whose tokens/s and MFU follow from its step times; fewer than 2 GPUs
skip with exit 77. hgrid's side with dry-run workers: both layouts'
jobs form on 2 workers with the groups the layout names (tp2: tp and
llm.tp of 2; dp2: dp and llm.dp of 2) and end with exit 0; the GPU
workers' flags parse; the step lines worker/run.c prints are read back."""
import contextlib
import io
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from checks import check, summary  # noqa: E402
from hgrid_py import torch_python  # noqa: E402

try:  # (tests/torch/ passes for a namespace package "torch" without the wheel)
    import torch
    import torch.distributed as dist
    from torch.utils.flop_counter import FlopCounterMode
except ImportError:
    py = torch_python()
    os.execv(py, [py, os.path.abspath(__file__)] + sys.argv[1:])

BIN = os.path.abspath(os.environ.get("HGRID_BIN", "bin"))
os.environ["HGRID_BIN"] = BIN
sys.path.insert(0, os.path.join(HERE, "bench"))
import bench_parallel as bp  # noqa: E402
from bench_model import flops_per_step, torch_params  # noqa: E402
from model import forward  # noqa: E402

CONFIG = "tiny"
BATCH = 4
GRAD_TOL = 2e-5  # relative L2 per tensor, fp32


def config():
    return dict(bp.bench_model.describe(CONFIG), batch=BATCH)


def gathered(t):
    parts = [torch.empty_like(t) for _ in range(bp.WORLD)]
    dist.all_gather(parts, t.contiguous())
    return parts


def tp_run(rank, c):
    """tp2's loss, full gradients (gathered) and FLOPs on this rank; the
    largest difference between the ranks' copies of a replicated gradient."""
    enc, llm = bp.tp_params(c, "cpu", rank, bp.WORLD)
    patches, tokens = bp.batch(c, "cpu")
    with FlopCounterMode(display=False) as counter:
        loss = bp.tp_forward(c, enc, llm, patches, tokens, rank, bp.WORLD)
        loss.backward()
    grads, spread = {}, 0.0
    for module, m in (("encoder", enc), ("llm", llm)):
        for name, t in m.items():
            parts = gathered(t.grad)
            if name in bp.TP_SPLIT:
                grads[f"{module}.{name}"] = bp.tp_unshard(parts, name)
            else:
                grads[f"{module}.{name}"] = parts[0]
                spread = max(spread, (parts[0] - parts[1]).abs().max().item())
    norm = bp.tp_clip_grad_norm(enc, llm, 1.0).item()
    return {"loss": loss.item(), "grads": grads, "flops": counter.get_total_flops(),
            "spread": spread, "norm": norm}


def dp_run(rank, c, ddp):
    """dp2's loss (the ranks' mean), averaged gradients and this rank's FLOPs,
    in DDP or with one all-reduce."""
    net = bp.dp_net(c, "cpu", ddp)
    patches, tokens = bp.batch(c, "cpu")
    half = c["batch"] // bp.WORLD
    with FlopCounterMode(display=False) as counter:
        loss, _ = net(patches[rank * half:(rank + 1) * half], tokens[rank * half:(rank + 1) * half])
        loss.backward()
    if not ddp:
        bp.all_reduce_flat(list(net.parameters()))
    enc, llm = (net.module if ddp else net).tables()
    grads = {f"{module}.{name}": t.grad.clone() for module, m in (("encoder", enc), ("llm", llm))
             for name, t in m.items()}
    mean = loss.detach().clone()
    dist.all_reduce(mean)
    return {"loss": mean.item() / bp.WORLD, "grads": grads, "flops": counter.get_total_flops()}


def _ranks(rank, device, c, out):
    torch.set_num_threads(1)
    res = {"tp": tp_run(rank, c), "ddp": dp_run(rank, c, True), "flat": dp_run(rank, c, False)}
    # Broken on purpose: the row-parallel layers' all-reduce dropped; the
    # column-parallel inputs' gradient all-reduce dropped.
    for name in ("reduce_from_tp", "copy_to_tp"):
        keep = getattr(bp, name)
        setattr(bp, name, lambda x: x)
        try:
            res[f"tp without {name}"] = tp_run(rank, c)
        finally:
            setattr(bp, name, keep)
    torch.save(res, f"{out}.{rank}")


def reference(c):
    """The single-process model (tests/torch/model.py) on the same weights and batch."""
    torch.manual_seed(0)
    enc, llm = torch_params(c, "cpu")
    patches, tokens = bp.batch(c, "cpu")
    with FlopCounterMode(display=False) as counter:
        loss, _ = forward(c, enc, llm, patches, tokens)
        loss.backward()
    grads = {f"{module}.{name}": t.grad.clone() for module, m in (("encoder", enc), ("llm", llm))
             for name, t in m.items()}
    norm = torch.nn.utils.clip_grad_norm_(list(enc.values()) + list(llm.values()), 1.0).item()
    return {"loss": loss.item(), "grads": grads, "flops": counter.get_total_flops(), "norm": norm}


def worst_grad(got, want):
    """(largest relative L2 error, its tensor, names missing from got)."""
    worst, where = 0.0, ""
    for name, g in want.items():
        if name not in got or got[name].shape != g.shape:
            return float("inf"), name
        err = ((got[name] - g).norm() / g.norm().clamp_min(1e-30)).item()
        if err > worst:
            worst, where = err, name
    return worst, where


def check_numbers(c):
    ref = reference(c)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ranks")
        bp.spawn(_ranks, "cpu", c, out)
        ranks = [torch.load(f"{out}.{r}") for r in range(bp.WORLD)]
    check(len(ref["grads"]) == 35, f"the reference has {len(ref['grads'])} gradients, want 35")
    for layout in ("tp", "ddp", "flat"):
        for r, res in enumerate(ranks):
            got = res[layout]
            dloss = abs(got["loss"] - ref["loss"])
            check(dloss <= 1e-5 * abs(ref["loss"]),
                  f"{layout} rank {r}: loss {got['loss']:.7f}, single process {ref['loss']:.7f}")
            worst, where = worst_grad(got["grads"], ref["grads"])
            check(set(got["grads"]) == set(ref["grads"]) and worst <= GRAD_TOL,
                  f"{layout} rank {r}: gradient {where} off by {worst:.2e} relative "
                  f"(tol {GRAD_TOL})")
        print(f"  {layout}: loss {ranks[0][layout]['loss']:.6f} (single process "
              f"{ref['loss']:.6f}); worst gradient error {worst:.2e} ({where})")
    for r, res in enumerate(ranks):
        check(res["tp"]["spread"] == 0.0,
              f"tp2 rank {r}: replicated gradients differ between ranks by {res['tp']['spread']}")
        check(abs(res["tp"]["norm"] - ref["norm"]) <= 1e-5 * ref["norm"],
              f"tp2 rank {r}: clipping norm {res['tp']['norm']}, single process {ref['norm']}")
    for name, what in (("reduce_from_tp", "the row-parallel forward all-reduce"),
                       ("copy_to_tp", "the column-parallel backward all-reduce")):
        broken = ranks[0][f"tp without {name}"]
        worst, where = worst_grad(broken["grads"], ref["grads"])
        check(worst > 1e-2, f"tp2 without {what} still matches (gradient error {worst:.2e}): "
                            f"the comparison cannot fail")
        print(f"  tp2 without {what}: loss {broken['loss']:.6f}, worst gradient error "
              f"{worst:.2e} ({where}): caught")
    check(abs(ranks[0]["tp without reduce_from_tp"]["loss"] - ref["loss"]) > 1e-3,
          "tp2 without the row-parallel all-reduce has the right loss")
    check_flops(c, ref["flops"], [r["tp"]["flops"] for r in ranks],
                [r["ddp"]["flops"] for r in ranks])
    check([r["flat"]["flops"] for r in ranks] == [r["ddp"]["flops"] for r in ranks],
          "dp2's FLOPs with one all-reduce differ from DDP's")


def check_flops(c, single, tp, dp):
    """Each rank's FLOPs against the split, and the table's count against what ran."""
    B, T, C, L, Fd = (c[k] for k in ("batch", "seq_length", "hidden_size", "num_layers",
                                     "ffn_hidden_size"))
    P = (c["image_size"] // c["patch_size"]) ** 2
    Ce, Le, V = c["encoder_hidden_size"], c["encoder_num_layers"], c["vocab_size"]
    D = c["patch_size"] ** 2 * 3
    # What tp splits: the blocks' matrices, attention (FlopCounterMode: 3.5
    # full-size forwards), the LM head; the rest runs whole on each rank.
    attn_counted = 3.5 * (L * 4 * T * C * B * T + Le * 4 * P * Ce * B * P)
    split = (6 * (L * B * T * (4 * C * C + 2 * C * Fd) + Le * B * P * 12 * Ce * Ce) + attn_counted
             + 6 * V * C * B * (T - P - 1))
    check(tp == [single - split / 2] * 2, f"tp2 FLOPs per rank {tp}, want {single - split / 2} "
          f"(single {single}, split {split})")
    check(dp == [single / 2] * 2, f"dp2 FLOPs per rank {dp}, want {single / 2}")
    # bench_model's count (the MFU's) is what ran, up to its conventions
    # (bench_model_check.py): attention as 3 forwards, causal halved; no
    # patch-embedding input gradient.
    attn_bench = 3 * (L * 4 * T * C * B * T / 2 + Le * 4 * P * Ce * B * P)
    want = flops_per_step(c) - attn_bench + attn_counted - 2 * B * P * D * Ce
    check(abs(sum(dp) - want) <= 1e-9 * want,
          f"flops_per_step (adjusted) {want}, dp2 ran {sum(dp)}")
    tok_s, mfu = bp.rates(c, 0.5)
    check(tok_s == B * T / 0.5 and mfu == flops_per_step(c) / 0.5 / (2 * bp.PEAK),
          f"rates: {tok_s} tokens/s, MFU {mfu}")


def run_main(*argv):
    """bench_parallel's main in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            bp.main(list(argv))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def check_cpu_run():
    """--device cpu: the table, its rates from its step times, --out."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "table.md")
        code, stdout, stderr = run_main("--device", "cpu", "--configs", CONFIG, "--batch",
                                        str(BATCH), "--steps", "1", "--impls", "eager",
                                        "--out", out)
        check(code == 0, f"--device cpu exited {code}: {stdout[-500:]} {stderr[-500:]}")
        text = open(out).read() if os.path.exists(out) else ""
    check(text.startswith("CPU (PyTorch only, gloo), torch ") and text in stdout,
          f"--out's table is not the printed one: {text[:200]!r}")
    c = config()
    rows = re.findall(r"^\| tiny \| (torch eager[^|]*) \| (tp2|dp2) \| ([0-9.]+) \| ([0-9,]+) \| "
                      r"([0-9.]+)% \| ([0-9.]+) \|$", text, re.M)
    check([r[:2] for r in rows] == [("torch eager", "tp2"), ("torch eager, DDP", "dp2"),
                                    ("torch eager, one all-reduce", "dp2")],
          f"--device cpu's rows: {rows}")
    for impl, layout, ms, tok, mfu, ratio in rows:
        s = float(ms) / 1e3
        want_tok, want_mfu = bp.rates(c, s)
        fastest = min(float(r[2]) for r in rows if r[1] == layout)
        check(float(ms) > 0 and abs(int(tok.replace(",", "")) - want_tok) <= 1e-3 * want_tok + 1
              and abs(float(mfu) - 100 * want_mfu) <= 0.05 + 1e-3 * 100 * want_mfu
              and abs(float(ratio) - fastest / float(ms)) <= 0.006,
              f"{impl} {layout}: {ms} ms gives {want_tok:.0f} tokens/s, {100 * want_mfu:.2f}% MFU "
              f"and {fastest / float(ms):.2f} of the fastest; the row says {tok}, {mfu}%, {ratio}")


def check_cli():
    count = torch.cuda.device_count
    torch.cuda.device_count = lambda: 1
    try:
        code, stdout, _ = run_main("--configs", CONFIG)
    finally:
        torch.cuda.device_count = count
    check(code == 77 and
          stdout.strip().splitlines() == ["SKIP: bench_parallel needs 2 GPUs (1 here)"],
          f"with 1 GPU: exit {code}, {stdout!r}")
    code, stdout, _ = run_main("--help")
    check(code == 0 and all(f in stdout for f in (
        "--configs", "--layouts", "--steps", "--batch", "--impls", "--device", "--out")),
        f"--help: exit {code}: {stdout}")
    code, _, stderr = run_main("--layouts", "tp4")
    check(code == 2 and "--layouts: unknown ['tp4']" in stderr,
          f"--layouts tp4: exit {code}, {stderr!r}")


def check_hgrid():
    """The hgrid side with dry-run workers; the GPU workers' flags; the step lines."""
    dry = ["--comm-timeout", "60", "--bw-bytes", "0", "--dry-run", "--steps", "3",
           "--step-ms", "20"]
    groups = {"tp2": ("tp", "llm.tp"), "dp2": ("dp", "llm.dp")}
    for layout in bp.LAYOUTS:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                outs = bp.run_hgrid("small", layout, 16, dry, tmp)
            except RuntimeError as e:
                check(False, f"{layout} with dry-run workers: {e}")
                continue
        check(len(outs) == 2, f"{layout}: {len(outs)} workers, want 2")
        for r, out in enumerate(outs):
            ok = f": rank {r} of 2, encoder " in out and "\n  also llm " in out
            for g in groups[layout]:
                ok &= re.search(rf"^  {re.escape(g)} +\[0,1\] ", out, re.M) is not None
            check(ok and "every rank finished its training (2 ranks); exiting 0" in out,
                  f"{layout} rank {r}: not a colocated rank in {groups[layout]} of [0,1] that "
                  f"finished: {out[-600:]}")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            bp.run_hgrid("small", "tp2", 16, dry + ["--no-such-flag"], tmp)
            check(False, "run_hgrid: workers that failed were not reported")
        except RuntimeError as e:
            check("did not finish" in str(e) and "--no-such-flag" in str(e),
                  f"run_hgrid's error names the workers' failure: {e}")
    # Workers that never finish (dry-run workers without --steps) are killed
    # after HGRID_TIMEOUT and reported.
    timeout, bp.HGRID_TIMEOUT = bp.HGRID_TIMEOUT, 2
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            bp.run_hgrid("small", "dp2", 16, ["--dry-run"], tmp)
            check(False, "run_hgrid: workers still running at the timeout were not reported")
        except RuntimeError as e:
            took = time.monotonic() - t0
            check("did not finish" in str(e) and took < 15,
                  f"run_hgrid's timeout: after {took:.1f} s: {e}")
    bp.HGRID_TIMEOUT = timeout
    for layout, variants in bp.HGRID_VARIANTS.items():
        for impl, extra in variants:
            run = subprocess.run([f"{BIN}/hgrid-worker", "--coordinator", "127.0.0.1:1", "--job",
                                  "j", "--token", "t", *bp.worker_flags("small", 35, extra),
                                  "--dry-run"], capture_output=True, text=True, timeout=30)
            check(run.returncode == 2 and "training needs a GPU; drop --dry-run" in run.stderr,
                  f"{layout} {impl}: the worker's flags do not parse: {run.stderr}")
    with open(os.path.join(bp.ROOT, "worker", "run.c")) as f:
        fmt = re.search(r'printf\("(rank %d step [^"]*)\\n"', f.read())
    check(fmt is not None, "worker/run.c's step line not found")
    if fmt:
        lines = [fmt[1] % (r, s, 3.5, 1.25, 100 + s + 10 * r, 1e5) for s in range(1, 8)
                 for r in (0, 1)]
        got = bp.hgrid_step_ms(["hgrid-worker: notice\n" + "\n".join(lines[0::2]),
                                "\n".join(lines[1::2]) + "\nrank 1: trained 7 steps\n"])
        check(got == [110.0 + s for s in range(1, 8)], f"step times read back: {got}")


def main():
    if not os.path.exists(f"{BIN}/hgrid-worker"):
        print(f"FAIL: {BIN}/hgrid-worker is missing: run make first", flush=True)
        sys.exit(1)
    torch.set_num_threads(1)
    for part in (lambda: check_numbers(config()), check_hgrid, check_cli, check_cpu_run):
        t0 = time.perf_counter()
        part()
        print(f"  ({time.perf_counter() - t0:.1f} s)", flush=True)
    sys.exit(summary("bench_parallel_check"))


if __name__ == "__main__":
    main()
