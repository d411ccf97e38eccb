#!/usr/bin/env python3
"""hgrid.torch with gloo on random valid layouts up to 16 ranks: every process joins through
the hgrid package, init_process_groups builds its groups over gridd's store; on every group
an all_reduce of the ranks gives the members' sum, and every group kind's rank lists equal
megatron-core's own HyperCommGrid enumeration (Megatron's code runs in the workers) and
`hgridctl plan --json`. HGRID_TEST_SEED picks other layouts; HGRID_TORCH_LAYOUTS how many."""
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, summary  # noqa: E402
from hgrid_py import ROOT, finds, json_lines, need_library, torch_python, wait_for, worker_env  # noqa: E402
from hgrid_py import start_gridd  # noqa: E402
from launch_util import BIN, ctl  # noqa: E402

MAX_WORLD = 16


def plan(flags):
    r = subprocess.run([f"{BIN}/hgridctl", "plan", "--json", *flags], capture_output=True, text=True)
    return json.loads(r.stdout) if r.returncode == 0 else None


def random_layouts(rng, count):
    """count distinct valid layouts (hgridctl plan says so) of at most MAX_WORLD ranks, the
    first ones chosen to cover pipeline, experts, fan-in, fan-out and 16 ranks."""
    fixed = [
        ["--llm-only", "--llm-tp", "2", "--llm-pp", "2", "--llm-dp", "2"],
        ["--encoder-tp", "2", "--encoder-dp", "2", "--llm-tp", "2", "--llm-pp", "2", "--llm-dp", "2",
         "--micro-batch-size", "2"],
        ["--llm-only", "--llm-tp", "2", "--llm-dp", "4", "--llm-ep", "2", "--llm-expt-tp", "2",
         "--num-experts", "4"],
        ["--encoder-tp", "1", "--encoder-dp", "4", "--llm-tp", "2", "--llm-dp", "1",
         "--micro-batch-size", "4"],
        ["--encoder-tp", "2", "--encoder-dp", "1", "--llm-tp", "1", "--llm-pp", "2", "--llm-dp", "4"],
    ]
    out, seen = [], set()
    for flags in fixed:
        p = plan(flags)
        if p:
            out.append((flags, p))
            seen.add(tuple(flags))
    tries = 0
    while len(out) < count and tries < 5000:
        tries += 1
        llm = {"tp": rng.choice([1, 2, 4]), "pp": rng.choice([1, 2, 4]), "dp": rng.choice([1, 2, 4])}
        flags = ["--llm-tp", str(llm["tp"]), "--llm-pp", str(llm["pp"]), "--llm-dp", str(llm["dp"])]
        ep = rng.choice([1, 1, 2])
        if ep > 1:
            flags += ["--llm-ep", str(ep), "--num-experts", str(2 * ep)]
        flags += ["--llm-expt-tp", str(rng.choice([1, 2]))]
        if rng.random() < 0.3:
            flags.append("--llm-only")
        else:
            enc_dp = rng.choice([1, 2, 4])
            flags += ["--encoder-tp", str(rng.choice([1, 2])), "--encoder-dp", str(enc_dp),
                      "--micro-batch-size", str(enc_dp)]
        if tuple(flags) in seen:
            continue
        p = plan(flags)
        if p and p["world_size"] <= MAX_WORLD:
            seen.add(tuple(flags))
            out.append((flags, p))
    return out


def module_info(p):
    out = {}
    for m in p["modules"]:
        out[m["name"]] = {"shape": [m["tp"], m["cp"], m["dp"], m["pp"], m["ep"], m["expt_tp"]],
                          "offset": m["rank_offset"], "plan_groups": m["groups"]}
    return out


def main():
    need_library()
    py = torch_python()
    if not finds(py, "megatron.core.hyper_comm_grid", "einops"):
        print("SKIP: megatron-core (with einops) is not installed for " + py, flush=True)
        return 77
    seed = int(os.environ.get("HGRID_TEST_SEED", "16"))
    count = int(os.environ.get("HGRID_TORCH_LAYOUTS", "20"))
    layouts = random_layouts(random.Random(seed), count)
    check(len(layouts) >= count, f"{len(layouts)} valid layouts (seed {seed})")
    world = max(p["world_size"] for _, p in layouts)
    print(f"torch_groups: {len(layouts)} layouts (seed {seed}), worlds "
          f"{sorted(p['world_size'] for _, p in layouts)}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        gridd, port, sock = start_gridd(tmp)
        jobs = []
        for i, (flags, p) in enumerate(layouts):
            name = f"t{i}"
            r = ctl(sock, "submit", "--job", name, "--token", f"tok{i}", *flags)
            check(r.returncode == 0, f"submit {name}: {r.stderr}")
            jobs.append({"job": name, "token": f"tok{i}", "world": p["world_size"],
                         "modules": module_info(p), "flags": flags})
        jobs_file = os.path.join(tmp, "jobs.json")
        json.dump(jobs, open(jobs_file, "w"))
        t0 = time.monotonic()
        # One process per device, forked from one that imported torch (tmp/wD.out).
        workers = subprocess.Popen([py, os.path.join(ROOT, "tests", "torch_groups_worker.py"),
                                    "--devices", str(world), tmp, jobs_file],
                                   env=worker_env(port, "", "", 0, HGRID_HEARTBEAT="1"),
                                   start_new_session=True)
        try:
            workers.wait(timeout=900)
        except subprocess.TimeoutExpired:
            os.killpg(workers.pid, signal.SIGKILL)
            check(False, "the workers finished within 900 s")
        dt = time.monotonic() - t0
        r = subprocess.run([py, os.path.join(ROOT, "tests", "torch_groups_worker.py"), "--megatron",
                            jobs_file], capture_output=True, text=True, timeout=600,
                           env=worker_env(port, "", "", 0))
        enum = {x["job"]: x["megatron"] for x in map(json.loads, filter(None, r.stdout.splitlines()))
                if "megatron" in x}
        check(len(enum) == len(jobs), f"megatron-core enumerated every layout: {r.stderr[-400:]}")
        results = {}
        for d in range(world):
            for x in json_lines(os.path.join(tmp, f"w{d}.out")):
                if "job" in x:
                    results.setdefault(x["job"], []).append(x)
        for job in jobs:
            got = results.get(job["job"], [])
            errors = [x["error"] for x in got if "error" in x]
            ok = [x for x in got if "error" not in x]
            label = f"{job['job']} ({' '.join(job['flags'])})"
            check(not errors and len(ok) == job["world"] and
                  sorted(x["rank"] for x in ok) == list(range(job["world"])),
                  f"{label}: every rank built its groups ({len(ok)}/{job['world']}, {errors[:2]})")
            check(ok and all(not x["bad_sums"] for x in ok),
                  f"{label}: all_reduce on every group gives the members' sum "
                  f"({[x['bad_sums'] for x in ok if x['bad_sums']][:2]})")
            check(ok and all(not x["unshared"] and x["kinds"] == sorted(x["groups"]) and
                             x["distinct"] == len({tuple(m) for m in x["groups"].values()})
                             for x in ok),
                  f"{label}: one torch group per distinct rank set, shared by the kinds with "
                  f"those members ({[x['unshared'] for x in ok if x['unshared']][:1]})")
            meg = enum.get(job["job"], {})
            # Every kind's full rank lists: Megatron's enumeration = the plan's = the union of
            # what the ranks were given (embd/pos_embd: Megatron's MIMO rule over its pp groups).
            wrong = []
            for name, m in job["modules"].items():
                for kind, lists in m["plan_groups"].items():
                    given = sorted({tuple(x["groups"][kind]) for x in ok
                                    if x["module"] == name and kind in x["groups"]})
                    if meg.get(name, {}).get(kind) != lists or given != sorted(map(tuple, lists)):
                        wrong.append([name, kind, meg.get(name, {}).get(kind), lists, given])
            kinds = sum(len(m["plan_groups"]) for m in job["modules"].values())
            check(ok and meg and not wrong,
                  f"{label}: all {kinds} group kinds equal megatron-core's HyperCommGrid "
                  f"enumeration and the plan ({wrong[:1]})")
        for d in range(world):
            if any("error" in x or "Traceback" in str(x) for x in json_lines(os.path.join(tmp, f"w{d}.out"))):
                print(open(os.path.join(tmp, f"w{d}.out")).read()[-1500:])
                break
        gridd.send_signal(signal.SIGTERM)
        gridd.wait(timeout=30)
        if summary.__module__ and __import__("checks").failures:
            lines = open(os.path.join(tmp, "gridd.log")).read().splitlines()
            print("gridd's warnings:\n" + "\n".join([x for x in lines if " warn " in x][:20]))
    return summary("torch_groups", f" ({len(layouts)} layouts, {dt:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
