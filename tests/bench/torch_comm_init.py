#!/usr/bin/env python3
"""PyTorch reference for the communicator benchmark: every process group of
an hgrid plan created with torch.distributed, verified and measured.

Launch one process per GPU (this script spawns them itself):
    python3 tests/bench/torch_comm_init.py --plan plan.json [--nprocs 4] [--bytes 67108864]
where plan.json is `bin/hgridctl plan --json <layout flags>`.

Each rank: init_process_group("nccl", device_id=...) (eager), then new_group
for every distinct rank set of size > 1 (all ranks call new_group for every
group, in plan order, as torch requires), then per group an all-reduce of
(rank, rank^2) checked against the expected sums, then an all-reduce of
--bytes timed for bus bandwidth (nccl-tests: busbw = algbw * 2(n-1)/n; the
median of 5 batches of 10, timed with CUDA events after 3 warm-ups, as
hgrid does).
Prints one JSON object: init_s (spawn to every group ready and verified, the
slowest rank) and busbw_gbps per group name.
"""
import argparse
import json
import os
import statistics
import sys
import time


def distinct_groups(plan):
    """(name, ranks) for every distinct rank set of size > 1, plan order."""
    seen, out = set(), []
    for module in plan["modules"]:
        for name, groups in module["groups"].items():
            for ranks in groups:
                key = tuple(ranks)
                if len(ranks) > 1 and key not in seen:
                    seen.add(key)
                    out.append(("%s.%s" % (module["name"], name), list(ranks)))
    if "bridge" in plan:
        leaders = []
        for enc, llm in plan["bridge"]["edges"]:
            leaders += [r for r in (enc, llm) if r not in leaders]
        enc_leaders = sorted({e for e, _ in plan["bridge"]["edges"]})
        llm_leaders = sorted({l for _, l in plan["bridge"]["edges"]})
        out.append(("bridge", enc_leaders + llm_leaders))
    return out


def worker(rank, world, plan, t0, nbytes, port, results):
    import torch
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    device = torch.device("cuda", rank)
    torch.cuda.set_device(device)
    dist.init_process_group("nccl", rank=rank, world_size=world, device_id=device)
    mine = []
    for name, ranks in distinct_groups(plan):
        # device_id: eager NCCL init (split from the default group), as hgrid's are eager
        try:
            pg = dist.new_group(ranks, device_id=device)
        except TypeError:  # a torch without new_group(device_id=): eager via the bound default
            pg = dist.new_group(ranks)
        if rank in ranks:
            mine.append((name, ranks, pg))
    wrong = 0
    for name, ranks, pg in mine:
        t = torch.tensor([float(rank), float(rank * rank)], device=device)
        dist.all_reduce(t, group=pg)
        want = [float(sum(ranks)), float(sum(r * r for r in ranks))]
        if t.tolist() != want:
            wrong += 1
            print("rank %d: group %s %s: got %s, want %s" % (rank, name, ranks, t.tolist(), want),
                  file=sys.stderr)
    torch.cuda.synchronize()
    ready = time.time() - t0
    bw = {}
    buf = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    # The same method as hgrid's self-test: 3 warm-ups, then 5 batches of 10
    # back-to-back all-reduces timed with CUDA events; the median batch's mean.
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for name, ranks, pg in mine:
        for _ in range(3):
            dist.all_reduce(buf, group=pg)
        torch.cuda.synchronize()
        ms = []
        for _ in range(5):
            start.record()
            for _ in range(10):
                dist.all_reduce(buf, group=pg)
            end.record()
            end.synchronize()
            ms.append(start.elapsed_time(end) / 10)
        sec = statistics.median(ms) / 1e3
        n = len(ranks)
        bw[name] = min(bw.get(name, 1e30), nbytes / sec * 2 * (n - 1) / n / 1e9)
    dist.barrier()
    dist.destroy_process_group()
    results.put((rank, ready, wrong, bw))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", required=True, help="hgridctl plan --json output")
    ap.add_argument("--nprocs", type=int, default=0, help="default: the plan's world size")
    ap.add_argument("--bytes", type=int, default=64 << 20)
    ap.add_argument("--port", type=int, default=29517)
    args = ap.parse_args()
    try:
        import torch.multiprocessing as mp
    except ImportError:
        sys.exit("torch_comm_init.py: PyTorch is missing; run it where torch is installed "
                 "(the GPU machine) or pip install torch")
    plan = json.load(open(args.plan))
    world = args.nprocs or plan["world_size"]
    if world != plan["world_size"]:
        sys.exit("torch_comm_init.py: --nprocs %d does not match the plan's world size %d"
                 % (world, plan["world_size"]))
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    t0 = time.time()
    procs = [ctx.Process(target=worker, args=(r, world, plan, t0, args.bytes, args.port, results))
             for r in range(world)]
    for p in procs:
        p.start()
    got = [results.get(timeout=300) for _ in range(world)]
    for p in procs:
        p.join()
    init_s = max(r[1] for r in got)
    wrong = sum(r[2] for r in got)
    busbw = {}
    for _, _, _, bw in got:
        for name, v in bw.items():
            busbw[name] = min(busbw.get(name, v), v)
    print(json.dumps({"impl": "torch", "world_size": world, "init_s": round(init_s, 3),
                      "wrong": wrong, "busbw_gbps": {k: round(v, 1) for k, v in busbw.items()}}))
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
