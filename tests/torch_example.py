#!/usr/bin/env python3
"""examples/torch_mimo.py under gridd with gloo, started as users start it (the encoder's two
ranks by torchrun, the LLM's two by scripts/hgrid-srun.sh with Slurm's variables; gridd sees
their ranks, devices and hosts): encoder dp2 + LLM tp2 on 4 processes gives
the same losses as the same model in one process (fp32, <= 1e-4 relative over 20 steps), the
loss falls, heartbeats carry step and loss to gridd (hgridctl watch), and megatron.core's
ProcessGroupCollection built by hgrid.megatron holds the assignment's groups. And a process
killed while the others are inside init_process_groups (waiting in torch's rendezvous for
it) makes them raise hgrid.Aborted at once instead of hanging until torch's timeout."""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, summary  # noqa: E402
from hgrid_py import (ROOT, finds, json_lines, need_library, start_gridd, torch_python,  # noqa: E402
                      wait_for, worker_env)
from launch_util import ctl  # noqa: E402

EXAMPLE = os.path.join(ROOT, "examples", "torch_mimo.py")
STEPS = 20
LAYOUT = ["--encoder-tp", "1", "--encoder-dp", "2", "--llm-tp", "2", "--llm-dp", "1",
          "--micro-batch-size", "2"]


PGC_DENSE = ["tp", "cp", "dp", "pp", "tp_cp", "dp_cp", "intra_dp_cp", "tp_dp_cp", "mp"]
PGC_KIND = {"intra_dp_cp": "dp_cp"}
PGC_LLM = ["embd", "pos_embd", "ep", "expt_tp", "expt_dp", "tp_ep", "tp_ep_pp"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def losses(path):
    return [x["loss"] for x in json_lines(path) if "step" in x]


STALL = """
import sys, time
import hgrid, hgrid.torch
a = hgrid.join()
print("rank", a.rank, flush=True)
if a.rank == 3:
    time.sleep(600)  # never reaches the rendezvous: killed by the test
try:
    hgrid.torch.init_process_groups(a, backend="gloo")
    print("ready", flush=True)
except hgrid.Aborted as e:
    print("aborted:", e, flush=True)
    sys.exit(3)
"""


def killed_during_init(py, tmp, port, sock):
    ctl(sock, "submit", "--job", "stall", "--token", "ts", "--llm-only", "--llm-tp", "2", "--llm-dp", "2")
    outs = [os.path.join(tmp, f"s{d}.out") for d in range(4)]
    procs = [subprocess.Popen([py, "-c", STALL], stdout=open(o, "w"), stderr=subprocess.STDOUT,
                              env=worker_env(port, "stall", "ts", d)) for d, o in enumerate(outs)]
    def ranks():
        got = {}
        for p, o in zip(procs, outs):
            for line in open(o, errors="replace"):
                if line.startswith("rank "):
                    got[int(line.split()[1])] = p
        return got if len(got) == 4 else None
    by_rank = wait_for(ranks, 600, period=0.5) or {}
    check(len(by_rank) == 4, "stall: 4 processes joined")
    if len(by_rank) != 4:
        for p in procs:
            p.kill()
        return
    time.sleep(3)  # the others are now in init_process_groups, waiting for rank 3's keys
    t0 = time.monotonic()
    by_rank[3].kill()
    codes = []
    for r in (0, 1, 2):
        try:
            codes.append(by_rank[r].wait(timeout=120))
        except subprocess.TimeoutExpired:
            by_rank[r].kill()
            codes.append("hung")
    dt = time.monotonic() - t0
    said = [open(o).read() for o in outs]
    check(codes == [3, 3, 3] and dt < 60 and sum("aborted:" in x and "lost" in x for x in said) == 3,
          f"stall: killing a rank during init_process_groups makes the others raise Aborted "
          f"({codes} after {dt:.1f} s)")
    by_rank[3].wait()
    ctl(sock, "cancel", "stall")


def main():
    need_library()
    py = torch_python()
    megatron = finds(py, "megatron.core.process_groups_config")
    with tempfile.TemporaryDirectory() as tmp:
        ref_out = os.path.join(tmp, "ref.out")
        ref = subprocess.Popen([py, EXAMPLE, "--reference", "--steps", str(STEPS)],
                               stdout=open(ref_out, "w"), stderr=subprocess.STDOUT,
                               env=worker_env(0, "", "", 0))
        gridd, port, sock = start_gridd(tmp)
        r = ctl(sock, "submit", "--job", "mimo", "--token", "tm", *LAYOUT)
        check(r.returncode == 0, f"submit: {r.stderr}")
        # As users start it: ranks 0-1 (the encoder) by torchrun on this host, ranks 2-3 (the
        # LLM) by scripts/hgrid-srun.sh as Slurm would run it on node "node-b"
        args = ["--steps", str(STEPS), "--backend", "gloo", "--wait-release"]
        if megatron:
            args.append("--megatron")
        outs, procs = [os.path.join(tmp, "torchrun.out")], []
        procs.append(subprocess.Popen(
            [py, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
             "--master-port", str(free_port()), EXAMPLE, *args],
            stdout=open(outs[-1], "w"), stderr=subprocess.STDOUT, env=worker_env(port, "mimo", "tm", 0)))
        wrapper = os.path.join(tmp, "train.sh")  # HGRID_WORKER: the script, run by torch's Python
        with open(wrapper, "w") as f:
            f.write(f'#!/bin/sh\nexec "{py}" "{EXAMPLE}" "$@"\n')
        os.chmod(wrapper, 0o755)
        for d in range(2):
            outs.append(os.path.join(tmp, f"srun{d}.out"))
            env = worker_env(port, "mimo", "tm", 0, HGRID_WORKER=wrapper, SLURM_PROCID=2 + d,
                             SLURM_LOCALID=d, SLURMD_NODENAME="node-b")
            for k in ("LOCAL_RANK", "HGRID_HOSTNAME"):
                env.pop(k)
            procs.append(subprocess.Popen([os.path.join(ROOT, "scripts", "hgrid-srun.sh"), *args],
                                          stdout=open(outs[-1], "w"), stderr=subprocess.STDOUT, env=env))
        # hgridctl watch shows the heartbeats' step and loss; then cancel
        def finished():
            info = json.loads(ctl(sock, "watch", "mimo", "--once", "--json").stdout or "{}")
            w = info.get("workers", [])
            if all(p.poll() is not None for p in procs):
                return info  # a worker failed: stop waiting
            return info if len(w) == 4 and all(x.get("step") == STEPS for x in w) else None
        info = wait_for(finished, 900, period=0.5) or {}
        workers = info.get("workers", [])
        show = json.loads(ctl(sock, "show", "mimo", "--json").stdout or "{}")
        placed = sorted((w["rank"], w["host"], w["device"]) for w in show.get("workers", []))
        check(placed == [(0, "node-py", 0), (1, "node-py", 1), (2, "node-b", 0), (3, "node-b", 1)],
              f"torchrun's RANK/LOCAL_RANK and hgrid-srun.sh's SLURM_PROCID/SLURM_LOCALID/"
              f"SLURMD_NODENAME reach gridd as ranks, devices and hosts ({placed})")
        check(len(workers) == 4 and all(x.get("step") == STEPS for x in workers) and
              all((x.get("loss") or 0) > 0 for x in workers if x["module"] == "llm") and
              info.get("state") == "running",
              f"hgridctl watch: the heartbeats report step {STEPS} and the LLM's loss "
              f"({[(x.get('rank'), x.get('step'), x.get('loss')) for x in workers]})")
        ctl(sock, "cancel", "mimo")
        codes = []
        for p in procs:
            try:
                codes.append(p.wait(timeout=600))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append("timeout")
        ref.wait(timeout=600)
        check(codes == [0, 0, 0] and ref.returncode == 0,
              f"torchrun (2 ranks), 2 x hgrid-srun.sh and the reference exit 0 ({codes}, "
              f"{ref.returncode})")
        want = losses(ref_out)
        got = [l for o in outs for l in [losses(o)] if l]
        check(len(got) == 1, f"one rank (the LLM's first) prints the losses ({len(got)})")
        got = got[0] if got else []
        check(len(want) == STEPS and len(got) == STEPS, f"{STEPS} steps each ({len(want)}, {len(got)})")
        worst = max((abs(a - b) / abs(b) for a, b in zip(got, want)), default=1.0)
        check(worst <= 1e-4, f"4 gloo processes = one process: worst relative loss difference {worst:.2e}")
        check(want and want[-1] < 0.8 * want[0], f"the loss falls: {want[:1]} -> {want[-1:]}")
        if megatron:
            lines = [x for o in outs for x in json_lines(o) if "pg_collection" in x]
            check(len(lines) == 4, f"every rank built a ProcessGroupCollection ({len(lines)})")
            wrong = []
            for x in lines:
                # Megatron's MIMO fields: the module's dense groups; on the LLM the embedding
                # and expert groups too; embd/pos_embd None where the rank is in none.
                want = {f: sorted(x["groups"][PGC_KIND.get(f, f)]) for f in PGC_DENSE}
                if x["module"] == "encoder":
                    want.update(embd=None, pos_embd=None)
                else:
                    want.update({f: sorted(x["groups"][f]) for f in PGC_LLM})
                if x["pg_collection"] != want:
                    wrong.append((x["rank"], x["pg_collection"], want))
            check(lines and not wrong, f"ProcessGroupCollection: the fields Megatron's MIMO code "
                  f"fills, holding the assignment's groups ({wrong[:1]})")
        else:
            print("note: megatron-core not installed: ProcessGroupCollection not checked", flush=True)
        if any(c != 0 for c in codes):
            for o in outs:
                print(open(o).read()[-1200:])
        killed_during_init(py, tmp, port, sock)
        gridd.send_signal(signal.SIGTERM)
        gridd.wait(timeout=30)
    return summary("torch_example", f" (worst relative difference {worst:.1e})")


if __name__ == "__main__":
    sys.exit(main())
