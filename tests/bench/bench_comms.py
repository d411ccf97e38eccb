#!/usr/bin/env python3
"""Communicator benchmark (make bench, 4 GPUs): time from process start to
every communicator of a layout ready and verified, hgrid (both init
strategies) vs PyTorch (tests/bench/torch_comm_init.py) in the same run, and
the all-reduce bus bandwidth per group against torch.distributed.

For each layout: a private gridd and a submitted job (not timed), then 4
`hgrid-worker --self-test --json` processes; the time is the slowest rank's
verified_unix_us minus the moment the first worker was started. Repeated
--repeats times per strategy (median). Prints a table and, last, one JSON
line. Exit 1 if anything failed; targets are reported, not enforced.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

LAYOUTS = {
    "enc-dp2-llm-tp2": ["--encoder-tp", "1", "--encoder-dp", "2", "--llm-tp", "2",
                        "--llm-dp", "1", "--micro-batch-size", "2"],
    "llm-only-tp2-dp2-ep2": ["--llm-only", "--llm-tp", "2", "--llm-dp", "2",
                             "--num-experts", "4", "--llm-ep", "2"],
}


def gpu_count():
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
    except OSError:
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU"))


class Gridd:
    def __init__(self, bin_dir, tmp):
        self.bin, self.tmp = bin_dir, tmp
        self.sock = os.path.join(tmp, "gridd.sock")
        port_file = os.path.join(tmp, "port")
        self.log = open(os.path.join(tmp, "gridd.log"), "a")
        self.proc = subprocess.Popen(
            [os.path.join(bin_dir, "gridd"), "--listen", "127.0.0.1:0", "--port-file", port_file,
             "--control", self.sock, "--heartbeat-timeout", "30"], stderr=self.log)
        for _ in range(200):
            if os.path.exists(port_file) and open(port_file).read().strip():
                break
            time.sleep(0.02)
        self.port = open(port_file).read().strip()

    def ctl(self, *args):
        return subprocess.run([os.path.join(self.bin, "hgridctl"), "--socket", self.sock, *args],
                              capture_output=True, text=True, check=True).stdout.strip()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()


def run_hgrid(bin_dir, gridd, job, layout, world, strategy, nbytes):
    """One formation: (seconds to all verified, {rank: report})."""
    token = gridd.ctl("submit", "--job", job, *layout)
    procs = []
    t0 = time.time()
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank))
        procs.append(subprocess.Popen(
            [os.path.join(bin_dir, "hgrid-worker"), "--coordinator", "127.0.0.1:" + gridd.port,
             "--job", job, "--token", token, "--use-launcher-rank", "--self-test", "--json",
             "--comm-init", strategy, "--bw-bytes", str(nbytes), "--comm-timeout", "20"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    reports, errors = {}, []
    for rank, p in enumerate(procs):
        out, err = p.communicate(timeout=180)
        lines = [l for l in out.splitlines() if l.startswith("{")]
        if p.returncode != 0 or not lines:
            errors.append("rank %d exit %d: %s" % (rank, p.returncode, err.strip()[-300:]))
            continue
        reports[rank] = json.loads(lines[-1])
    try:
        gridd.ctl("cancel", job)
    except subprocess.CalledProcessError:
        pass
    if errors:
        raise RuntimeError("; ".join(errors))
    bad = [c for r in reports.values() for c in r["checks"] if not c["ok"]]
    if bad:
        raise RuntimeError("self-test failed: %s" % bad[0]["detail"])
    return max(r["verified_unix_us"] for r in reports.values()) / 1e6 - t0, reports


def hgrid_busbw(plan, reports):
    """{module.group: min busbw over ranks} with torch's names."""
    module_of = {}
    for m in plan["modules"]:
        for r in range(m["rank_offset"], m["rank_offset"] + m["num_ranks"]):
            module_of[r] = m["name"]
    bw = {}
    for rank, rep in reports.items():
        for c in rep["checks"]:
            if c["busbw_gbps"] <= 0:
                continue
            key = "bridge" if c["name"] == "bridge" else "%s.%s" % (module_of[rank], c["name"])
            bw[key] = min(bw.get(key, c["busbw_gbps"]), c["busbw_gbps"])
    return bw


def run_torch(plan_path, world, nbytes):
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, os.path.join(here, "torch_comm_init.py"), "--plan",
                          plan_path, "--nprocs", str(world), "--bytes", str(nbytes)],
                         capture_output=True, text=True, timeout=300)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError("torch_comm_init.py exit %d: %s" % (out.returncode,
                                                                out.stderr.strip()[-500:]))
    return json.loads(lines[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.environ.get("HGRID_BIN", "bin"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bytes", type=int, default=64 << 20)
    ap.add_argument("--layouts", default=",".join(LAYOUTS), help="comma-separated names")
    args = ap.parse_args()
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")  # no NVLink multicast on shared hosts
    if gpu_count() < 4:
        print("SKIP: bench_comms needs 4 GPUs, %d here (run 'make bench' on a 4-GPU machine)"
              % gpu_count())
        return 77
    tmp = tempfile.mkdtemp(prefix="hgrid-bench-comms.")
    results, failed = [], False
    try:
        gridd = Gridd(args.bin, tmp)
        for name in args.layouts.split(","):
            layout = LAYOUTS[name]
            plan_path = os.path.join(tmp, name + ".json")
            plan_json = subprocess.run([os.path.join(args.bin, "hgridctl"), "plan", "--json",
                                        *layout], capture_output=True, text=True,
                                       check=True).stdout
            open(plan_path, "w").write(plan_json)
            plan = json.loads(plan_json)
            world = plan["world_size"]
            row = {"layout": name, "world": world}
            for strategy in ("init", "split", "torch"):
                try:
                    if strategy == "torch":
                        row["torch"] = run_torch(plan_path, world, args.bytes)
                        continue
                    times, reps = [], None
                    for i in range(args.repeats):
                        t, reps = run_hgrid(args.bin, gridd, "%s-%s-%d" % (name, strategy, i),
                                            layout, world, strategy, args.bytes)
                        times.append(t)
                    row[strategy + "_s"] = statistics.median(times)
                    row[strategy + "_all_s"] = [round(t, 3) for t in times]
                    row[strategy + "_busbw"] = hgrid_busbw(plan, reps)
                except (RuntimeError, subprocess.SubprocessError) as e:
                    print("bench_comms: %s %s: %s" % (name, strategy, e), file=sys.stderr)
                    row.setdefault("errors", {})[strategy] = str(e)
                    failed = True
            results.append(row)
        gridd.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def fmt(v):
        return "%9.3f" % v if v is not None else "%9s" % "failed"

    print("%-22s %9s %9s %9s %7s" % ("layout", "init s", "split s", "torch s", "ratio"))
    for r in results:
        ours = [r[k] for k in ("init_s", "split_s") if k in r]
        torch_s = r["torch"]["init_s"] if "torch" in r else None
        if ours and torch_s:
            r["ratio"] = min(ours) / torch_s
        print("%-22s %s %s %s %7s" % (r["layout"], fmt(r.get("init_s")), fmt(r.get("split_s")),
                                      fmt(torch_s), "%.2f" % r["ratio"] if "ratio" in r else "-"))
    print("%-22s %-16s %10s %10s %10s %7s" % ("layout", "group", "init GB/s", "split GB/s",
                                              "torch GB/s", "ours/t"))
    for r in results:
        if "torch" not in r:
            continue
        for g, tbw in sorted(r["torch"]["busbw_gbps"].items()):
            ours = r.get("init_busbw", {}).get(g, 0.0)
            split = r.get("split_busbw", {}).get(g, 0.0)
            print("%-22s %-16s %10.1f %10.1f %10.1f %7.3f" % (r["layout"], g, ours, split, tbw,
                                                          max(ours, split) / tbw if tbw else 0))
    print(json.dumps({"bench": "comms", "bytes": args.bytes, "results": results}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
