#!/usr/bin/env python3
"""The rendezvous hgrid-swarm measures, done through PyTorch's TCPStore
(libuv backend) the way torch.distributed does it: N clients connect (ranks
come from the launcher, as with torchrun), and for every communicator the
group's member 0 `set`s its 128-byte NCCL unique id under the group's key
while every other member `get`s it: one blocking get (TCPStore: WAIT until
the key exists, then GET) per communicator, as ProcessGroupNCCL's
broadcastUniqueNCCLID does. Groups come from `hgridctl plan --json` for the
same layout flags. Each client process runs its workers' sets first and then
their gets, the most favourable order for TCPStore (in torch a leader can sit
in an earlier group's get before it sets).

--mode multi_get is the earlier, not torch-like variant, kept as a labelled
extra: ranks from `add`, then one multi_get per worker for all its ids.

Usage: tcpstore_rendezvous.py --workers N [--procs P] [--threads T]
                              [--mode torch|multi_get] -- <layout flags>
Needs a Python with torch >= 2.4; run it with that interpreter (see
tests/bench/rendezvous.sh, which reads HGRID_TORCH_PYTHON). Prints the store
server's CPU time during the rendezvous, then as its last line:
tcpstore mode=M workers=N groups=G rendezvous_s=S p50_ms=.. p99_ms=..
"""
import argparse
import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import threading
import time

HELP_TORCH = ("tcpstore_rendezvous.py: PyTorch is not importable by {py}.\n"
              "  Install it into a virtual environment outside the repository, e.g.\n"
              "    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch\n"
              "  then run with HGRID_TORCH_PYTHON=/tmp/venv/bin/python.")


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def distinct_groups(plan):
    """Every rank set of size > 1 that needs a communicator (same sets once),
    the bridge included; as {members tuple: key}."""
    keys = {}
    for m in plan["modules"]:
        for kind, groups in m["groups"].items():
            for g in groups:
                if len(g) > 1:
                    keys.setdefault(tuple(g), f"pg{len(keys)}/0")
    edges = plan.get("bridge", {}).get("edges", [])
    bridge = tuple(sorted({e for e, _ in edges}) + sorted({l for _, l in edges}))
    if len(bridge) > 1:
        keys.setdefault(bridge, f"pg{len(keys)}/0")
    return keys


def per_rank(plan, keys):
    """For each rank: the keys it leads (sets) and the keys of every group it
    is in (in the order torch creates them)."""
    world = plan["world_size"]
    leads, needs = [[] for _ in range(world)], [[] for _ in range(world)]
    for members, key in keys.items():
        leads[members[0]].append(key)
        for r in members:
            needs[r].append(key)
    return leads, needs


def serve(conn):
    """The store's server, in its own process as in torchrun."""
    import datetime
    import torch.distributed as dist
    raise_fd_limit()
    store = dist.TCPStore("127.0.0.1", 0, None, True, datetime.timedelta(seconds=600),
                          wait_for_workers=False, use_libuv=True)
    conn.send(store.port)
    before = resource.getrusage(resource.RUSAGE_SELF)  # all threads: the libuv loop too
    conn.recv()  # until the parent is done
    after = resource.getrusage(resource.RUSAGE_SELF)
    conn.send(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    del store


def run_workers(port, indices, leads, needs, mode, results):
    """One thread's workers: connect all, set (leaders), then get."""
    import datetime
    import torch.distributed as dist
    timeout = datetime.timedelta(seconds=600)
    stores, t_connect = [], []
    for _ in indices:
        t_connect.append(time.monotonic())
        stores.append(dist.TCPStore("127.0.0.1", port, None, False, timeout, use_libuv=True))
    if mode == "multi_get":
        ranks = [s.add("rank", 1) - 1 for s in stores]
    else:
        ranks = list(indices)
    for s, r in zip(stores, ranks):
        for key in leads[r]:
            s.set(key, os.urandom(128))
    t_done, bad = [], 0
    for s, r in zip(stores, ranks):
        if mode == "multi_get":
            if needs[r]:
                bad += sum(len(v) != 128 for v in s.multi_get(needs[r]))
        else:
            mine = set(leads[r])
            for key in needs[r]:
                if key not in mine:
                    bad += len(s.get(key)) != 128
        t_done.append(time.monotonic())
    results.append((t_connect, t_done, bad))


def work(port, indices, leads, needs, mode, threads, out):
    """A client process: its workers split over `threads` threads (the
    store calls release the GIL while they wait)."""
    raise_fd_limit()
    results = []
    parts = [indices[t::threads] for t in range(threads)]
    ts = [threading.Thread(target=run_workers, args=(port, p, leads, needs, mode, results))
          for p in parts if p]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    t_connect = [x for r in results for x in r[0]]
    t_done = [x for r in results for x in r[1]]
    out.send((t_connect, t_done, sum(r[2] for r in results)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, required=True)
    ap.add_argument("--procs", type=int, default=2 * (os.cpu_count() or 1),
                    help="client processes (default: 2 per core)")
    ap.add_argument("--threads", type=int, default=1, help="threads per client process")
    ap.add_argument("--mode", choices=["torch", "multi_get"], default="torch",
                    help="torch: one blocking get per communicator (default); "
                         "multi_get: ranks from add, one multi_get per worker")
    ap.add_argument("--hgridctl", default=os.path.join(os.environ.get("HGRID_BIN", "bin"), "hgridctl"))
    ap.add_argument("layout", nargs="*", help="layout flags after --")
    args = ap.parse_args()
    try:
        import torch  # noqa: F401
        import torch.distributed  # noqa: F401
    except ImportError:
        print(HELP_TORCH.format(py=sys.executable), file=sys.stderr)
        return 2
    plan = json.loads(subprocess.run([args.hgridctl, "plan", "--json", *args.layout], check=True,
                                     capture_output=True, text=True).stdout)
    if plan["world_size"] != args.workers:
        print(f"tcpstore_rendezvous.py: the layout has {plan['world_size']} ranks, not {args.workers}",
              file=sys.stderr)
        return 2
    keys = distinct_groups(plan)
    leads, needs = per_rank(plan, keys)
    ctx = mp.get_context("fork")
    parent_end, server_end = ctx.Pipe()
    server = ctx.Process(target=serve, args=(server_end,))
    server.start()
    port = parent_end.recv()
    pipes, procs = [], []
    for p in range(args.procs):
        recv_end, send_end = ctx.Pipe(duplex=False)
        indices = list(range(p, args.workers, args.procs))
        procs.append(ctx.Process(target=work, args=(port, indices, leads, needs, args.mode,
                                                   args.threads, send_end)))
        pipes.append(recv_end)
    for proc in procs:
        proc.start()
    t_connect, t_done, bad = [], [], 0
    for pipe in pipes:
        c, d, b = pipe.recv()
        t_connect += c
        t_done += d
        bad += b
    for proc in procs:
        proc.join()
    parent_end.send("done")
    server_cpu = parent_end.recv()
    server.join()
    lat = sorted((d - c) * 1e3 for c, d in zip(t_connect, t_done))
    n = len(lat)
    if bad or n != args.workers:
        print(f"tcpstore_rendezvous.py: {bad} wrong ids, {n} of {args.workers} workers done", file=sys.stderr)
        return 1
    print(f"tcpstore server cpu: {server_cpu * 1e3:.0f} ms during the rendezvous, "
          f"{server_cpu * 1e6 / n:.1f} us per worker")
    print(f"tcpstore mode={args.mode} workers={n} groups={len(keys)} rendezvous_s={max(t_done) - min(t_connect):.3f} "
          f"p50_ms={lat[(n - 1) // 2]:.1f} p99_ms={lat[int((n - 1) * 0.99)]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
