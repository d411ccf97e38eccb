#!/usr/bin/env python3
"""Process start to all process groups ready, for the same 8-rank MIMO layout (encoder tp2 dp2
+ LLM tp2 dp2), side by side in one run:

  hgrid     8 processes as a launcher starts them (srun-like): hgrid.join() +
            hgrid.torch.init_process_groups() (gridd's store; one group per distinct rank
            set, created by its members)
  torchrun  torchrun --nproc-per-node 8: init_process_group(env://, TCPStore on rank 0) +
            megatron-core's HyperCommGrid per module creating the same group kinds
            (new_subgroups_by_enumeration on every rank), the embedding groups and the bridge

Both import torch and megatron.core first (a Megatron script does), with gloo. Printed per
variant (median of HGRID_BENCH_REPEAT runs, default 3): from the launch to the last rank's
groups ready; the launch to the last rank's Python running (torchrun's own start included),
the slowest rank's imports, and the slowest rank's time from its imports done to its groups
ready. Both run under tests/bench/tcpstore_shim.c (LD_PRELOAD): TCPStore's reverse DNS
lookups, which this machine's resolver drops now and then (5 s each), become numeric.
  HGRID_BIN (default bin), HGRID_PYTHON (a Python with torch and megatron-core)
"""
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

STARTED = time.time()  # this process's Python is running (a rank: before its imports)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("HGRID_BIN", os.path.join(ROOT, "bin"))
LAYOUT = ["--encoder-tp", "2", "--encoder-dp", "2", "--llm-tp", "2", "--llm-dp", "2"]
DENSE = [["tp"], ["cp"], ["dp"], ["pp"], ["tp", "cp"], ["dp", "cp"], ["tp", "dp"],
         ["tp", "dp", "cp"], ["tp", "pp"], ["tp", "cp", "dp", "pp"]]
EXPERT = [["ep"], ["tp"], ["dp"], ["tp", "ep"], ["tp", "ep", "pp"]]


def rank_main(variant, plan_file):
    """One rank: imports, then the variant's rendezvous and groups; one JSON line."""
    import torch  # noqa: F401
    import torch.distributed as dist
    from megatron.core.hyper_comm_grid import HyperCommGrid
    imported = time.time()
    if variant == "hgrid":
        import hgrid
        import hgrid.torch
        a = hgrid.join()
        groups = hgrid.torch.init_process_groups(a, backend="gloo")
        rank, count = a.rank, len({id(g) for g in groups.values()})
    else:
        plan = json.load(open(plan_file))
        dist.init_process_group("gloo", init_method="env://")
        rank, count = dist.get_rank(), 0
        for m in plan["modules"]:
            dense = HyperCommGrid([m["tp"], m["cp"], m["dp"], m["pp"]], ["tp", "cp", "dp", "pp"],
                                  rank_offset=m["rank_offset"], backend="gloo")
            for dims in DENSE:
                dense.create_pg(dims)
                count += 1
            if m["name"] == "llm":
                expert = HyperCommGrid([m["expt_tp"], m["ep"], m["expt_dp"], m["pp"]],
                                       ["tp", "ep", "dp", "pp"], rank_offset=m["rank_offset"],
                                       backend="gloo")
                for dims in EXPERT:
                    expert.create_pg(dims)
                    count += 1
                for pp in dense.get_rank_enum("pp"):  # Megatron's MIMO embedding groups
                    dist.new_group([pp[0]])
                    dist.new_group([pp[0], pp[-1]] if pp[0] != pp[-1] else [pp[0]])
                    count += 2
        edges = plan["bridge"]["edges"]
        dist.new_group(sorted({e for e, _ in edges}) + sorted({l for _, l in edges}))
        count += 1
    ready = time.time()
    print(json.dumps({"rank": rank, "started": STARTED, "imported": imported, "ready": ready,
                      "groups": count}), flush=True)
    dist.barrier()
    if variant == "hgrid":
        hgrid.torch.destroy()
        a.done()
    else:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def results(paths, t0):
    rows = []
    for p in paths:
        for line in open(p, errors="replace"):
            if line.startswith('{"rank"'):
                rows.append(json.loads(line))
    if len(rows) != 8:
        raise RuntimeError(f"{len(rows)} of 8 ranks reported: " + open(paths[0]).read()[-800:])
    return {"total": max(r["ready"] for r in rows) - t0,
            "after_imports": max(r["ready"] - r["imported"] for r in rows),
            "launch": max(r["started"] for r in rows) - t0,
            "imports": max(r["imported"] - r["started"] for r in rows), "groups": rows[0]["groups"]}


def shim(tmp):
    """tcpstore_shim.so compiled into tmp; the environment that preloads it."""
    so = os.path.join(tmp, "tcpstore_shim.so")
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", so,
                    os.path.join(ROOT, "tests", "bench", "tcpstore_shim.c"), "-ldl"], check=True)
    return {"LD_PRELOAD": so}


def run_hgrid(py, tmp, i, preload):
    port_file, sock = os.path.join(tmp, f"port{i}"), os.path.join(tmp, f"sock{i}")
    g = subprocess.Popen([f"{BIN}/gridd", "--listen", "127.0.0.1:0", "--port-file", port_file,
                          "--control", sock, "--heartbeat-timeout", "30"], stderr=subprocess.DEVNULL)
    while not (os.path.exists(port_file) and open(port_file).read().endswith("\n")):
        time.sleep(0.05)
    subprocess.run([f"{BIN}/hgridctl", "--socket", sock, "submit", "--job", "b", "--token", "t",
                    *LAYOUT], check=True, capture_output=True)
    env = dict(os.environ, HGRID_COORDINATOR="127.0.0.1:" + open(port_file).read().strip(),
               HGRID_JOB="b", HGRID_TOKEN="t", HGRID_HOSTNAME="bench", GLOO_SOCKET_IFNAME="lo",
               PYTHONPATH=os.path.join(ROOT, "python"), OMP_NUM_THREADS="1",
               HGRID_LIBRARY=os.path.join(ROOT, "bin", "libhgrid.so.1"), **preload)
    paths, procs = [], []
    t0 = time.time()
    for d in range(8):
        paths.append(os.path.join(tmp, f"h{i}.{d}.out"))
        procs.append(subprocess.Popen([py, __file__, "--rank", "hgrid", "-"],
                                      stdout=open(paths[-1], "w"), stderr=subprocess.STDOUT,
                                      env=dict(env, LOCAL_RANK=str(d))))
    for p in procs:
        p.wait(timeout=900)
    g.send_signal(signal.SIGTERM)
    g.wait()
    return results(paths, t0)


def run_torchrun(py, tmp, i, plan_file, preload):
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1", **preload)
    out = os.path.join(tmp, f"t{i}.out")
    t0 = time.time()
    subprocess.run([py, "-m", "torch.distributed.run", "--nproc-per-node", "8", "--master-addr",
                    "127.0.0.1", "--master-port", str(free_port()), __file__, "--rank", "torchrun",
                    plan_file], stdout=open(out, "w"), stderr=subprocess.STDOUT, env=env,
                   timeout=900, check=True)
    return results([out], t0)


def main():
    if sys.argv[1:2] == ["--rank"]:
        return rank_main(sys.argv[2], sys.argv[3])
    py = os.environ.get("HGRID_PYTHON") or os.path.join(ROOT, "build", "venv", "bin", "python")
    if subprocess.run([py, "-c", "import torch, megatron.core.hyper_comm_grid"],
                      capture_output=True).returncode:
        print(f"SKIP: {py} cannot import torch and megatron-core (set HGRID_PYTHON)")
        return 77
    repeat = int(os.environ.get("HGRID_BENCH_REPEAT", "3"))
    rows = {"hgrid": [], "torchrun": []}
    with tempfile.TemporaryDirectory() as tmp:
        preload = shim(tmp)
        plan_file = os.path.join(tmp, "plan.json")
        with open(plan_file, "w") as f:
            f.write(subprocess.run([f"{BIN}/hgridctl", "plan", "--json", *LAYOUT],
                                   capture_output=True, text=True, check=True).stdout)
        for i in range(repeat):  # alternating which goes first (a warm page cache helps the second)
            order = ["hgrid", "torchrun"] if i % 2 == 0 else ["torchrun", "hgrid"]
            for kind in order:
                rows[kind].append(run_hgrid(py, tmp, i, preload) if kind == "hgrid"
                                  else run_torchrun(py, tmp, i, plan_file, preload))
                print(f"  run {i} {kind}: " + " ".join(f"{k}={v:.3f}" for k, v in rows[kind][-1].items()),
                      flush=True)
    print(f"torch_rendezvous: 8 ranks ({' '.join(LAYOUT)}), gloo, median of {repeat}")
    med = {kind: {k: statistics.median(x[k] for x in v) for k in v[0]} for kind, v in rows.items()}
    for kind, m in med.items():
        print(f"  {kind:9s} start_to_groups_s={m['total']:.2f} launch_s={m['launch']:.2f} "
              f"imports_s={m['imports']:.2f} after_imports_s={m['after_imports']:.3f} "
              f"groups_per_rank={m['groups']:.0f}")
    print(f"torch_rendezvous hgrid_s={med['hgrid']['total']:.2f} torchrun_s={med['torchrun']['total']:.2f} "
          f"hgrid_after_imports_s={med['hgrid']['after_imports']:.3f} "
          f"torchrun_after_imports_s={med['torchrun']['after_imports']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
