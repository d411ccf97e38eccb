#!/usr/bin/env python3
"""The processes of tests/torch_groups.py: for each job in the list whose world holds its
device index, one joins, builds torch groups with gloo and all-reduces its rank on every
group; one JSON line per job. --devices N OUTDIR: N such processes (devices 0..N-1), forked
after torch's import (sixteen imports cost over a minute of CPU), each writing OUTDIR/wD.out.
With --megatron: megatron-core's HyperCommGrid enumeration of every job's modules instead
(one process imports Megatron, not sixteen)."""
import json
import os
import sys

import torch
import torch.distributed as dist

if "--megatron" not in sys.argv:
    import hgrid
    import hgrid.torch

DENSE = {"tp": ["tp"], "cp": ["cp"], "dp": ["dp"], "pp": ["pp"], "tp_cp": ["tp", "cp"],
         "dp_cp": ["dp", "cp"], "tp_dp": ["tp", "dp"], "tp_dp_cp": ["tp", "dp", "cp"],
         "mp": ["tp", "pp"], "module": ["tp", "cp", "dp", "pp"]}
EXPERT = {"ep": ["ep"], "expt_tp": ["tp"], "expt_dp": ["dp"], "tp_ep": ["tp", "ep"],
          "tp_ep_pp": ["tp", "ep", "pp"]}


def megatron_enumeration(shape, offset, llm):
    """{kind: [[ranks]...]} from megatron-core's HyperCommGrid for one module's shapes."""
    from megatron.core.hyper_comm_grid import HyperCommGrid

    tp, cp, dp, pp, ep, expt_tp = shape
    dense = HyperCommGrid([tp, cp, dp, pp], ["tp", "cp", "dp", "pp"], rank_offset=offset)
    out = {kind: dense.get_rank_enum(dims) for kind, dims in DENSE.items()}
    if llm:
        expt_dp = tp * cp * dp // (expt_tp * ep)
        expert = HyperCommGrid([expt_tp, ep, expt_dp, pp], ["tp", "ep", "dp", "pp"],
                               rank_offset=offset)
        out.update({kind: expert.get_rank_enum(dims) for kind, dims in EXPERT.items()})
        # Megatron's MIMO code: first pp stage, and first + last, of each pp group.
        out["pos_embd"] = [[g[0]] for g in out["pp"]]
        out["embd"] = [[g[0]] if g[0] == g[-1] else [g[0], g[-1]] for g in out["pp"]]
    return out


def run_job(job):
    a = hgrid.join(job=job["job"], token=job["token"], timeout=300)
    groups = hgrid.torch.init_process_groups(a, backend="gloo")
    bad_sums = []
    for kind, g in groups.items():
        x = torch.tensor([float(a.rank)], dtype=torch.float64)
        dist.all_reduce(x, group=g)
        if x.item() != sum(a.groups[kind]) or dist.get_world_size(g) != len(a.groups[kind]):
            bad_sums.append([kind, x.item(), a.groups[kind]])
        if dist.get_process_group_ranks(g) != sorted(a.groups[kind]):
            bad_sums.append([kind, "ranks", dist.get_process_group_ranks(g)])
    # One group per distinct rank set: kinds share a group exactly when their members match.
    kinds = list(groups)
    unshared = [[k1, k2] for i, k1 in enumerate(kinds) for k2 in kinds[i + 1:]
                if (groups[k1] is groups[k2]) != (a.groups[k1] == a.groups[k2])]
    dist.barrier()
    hgrid.torch.destroy()
    a.done()
    return {"job": job["job"], "rank": a.rank, "module": a.module, "groups": a.groups,
            "distinct": len({id(g) for g in groups.values()}), "bad_sums": bad_sums,
            "unshared": unshared, "kinds": sorted(groups)}


def megatron(jobs):
    os.environ["WORLD_SIZE"] = str(max(j["world"] for j in jobs))
    for job in jobs:
        out = {name: megatron_enumeration(m["shape"], m["offset"], name == "llm")
               for name, m in job["modules"].items()}
        print(json.dumps({"job": job["job"], "megatron": out}), flush=True)
    return 0


def run_device(device, jobs):
    for job in jobs:
        if device >= job["world"]:
            continue
        try:
            out = run_job(job)
        except Exception as e:  # reported, then the next job: the harness counts it
            out = {"job": job["job"], "error": f"{type(e).__name__}: {e}"}
            if dist.is_initialized():
                dist.destroy_process_group()
        print(json.dumps(out), flush=True)
    return 0


def fork_devices(n, outdir, jobs):
    """Devices 0..n-1, each its own process (LOCAL_RANK d); 0 when every one exited 0."""
    pids = []
    for d in range(n):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                fd = os.open(os.path.join(outdir, f"w{d}.out"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.environ["LOCAL_RANK"] = str(d)
                code = run_device(d, jobs)
            finally:
                sys.stdout.flush()
                os._exit(code)
        pids.append(pid)
    return int(any(os.waitpid(pid, 0)[1] for pid in pids))


def main():
    jobs = json.load(open(sys.argv[-1]))
    if sys.argv[1] == "--megatron":
        return megatron(jobs)
    if sys.argv[1] == "--devices":
        return fork_devices(int(sys.argv[2]), sys.argv[3], jobs)
    return run_device(int(os.environ["LOCAL_RANK"]), jobs)


if __name__ == "__main__":
    sys.exit(main())
