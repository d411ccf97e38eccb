#!/usr/bin/env python3
"""Assignment-only and id-minting workers in one job, generation after generation, against a
real gridd (docs/PROTOCOL.md, "Assignment-only joins"): a generation in which any live
worker joined assignment-only (the Python package) mints nothing; one whose workers all
mint gets an id for every group, all of them new after an assignment-only generation (no
communicator formed), while a generation after one with ids keeps the unchanged groups';
a C trainer (libhgrid_nccl's minter) in a generation without ids is refused by
hgrid_comms_create with one line saying why.

Job: --llm-only tp2 dp2 (4 ranks) on host node-py, devices 0-3 (ranks stay with devices).
  G1  P P P P  (Python)                    assignment-only, no MintRequest
  G2  W W W W  (hgrid-worker --dry-run)    every group minted, none kept
  G3  W W W W' (rank 3 replaced)           tp [0,1], dp [0,2] kept (same ids), the others new
  G4  W W W P                              assignment-only: the W get no ids, no MintRequest
  G5  W W T P  (T: C trainer, minter)      assignment-only; T's hgrid_comms_create refused
  G6  W W W W  (T, P replaced)             every group minted again, none kept
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, summary  # noqa: E402
from hgrid_py import LIBRARY, ROOT, json_lines, need_library, wait_for, worker_env  # noqa: E402

BIN = os.environ.get("HGRID_BIN", os.path.join(ROOT, "bin"))
# Loaded by Python next to the release build's libhgrid.so.1 (a sanitizer build cannot be).
NCCL_LIBRARY = os.path.join(ROOT, "bin", "libhgrid_nccl.so.1")
PY_WORKER = os.path.join(ROOT, "tests", "hgrid_py_worker.py")
JOB, TOKEN = "mix", "t0k"
LAYOUT = ["--llm-only", "--llm-tp", "2", "--llm-dp", "2"]


class Gridd:
    def __init__(self, tmp):
        self.tmp = tmp
        self.sock = os.path.join(tmp, "gridd.sock")
        port_file = os.path.join(tmp, "port")
        self.log_path = os.path.join(tmp, "gridd.log")
        self.proc = subprocess.Popen([f"{BIN}/gridd", "-v", "--listen", "127.0.0.1:0",
                                      "--port-file", port_file, "--control", self.sock,
                                      "--metrics", "127.0.0.1:0", "--heartbeat-timeout", "3"],
                                     stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT)
        ok = wait_for(lambda: os.path.exists(port_file) and open(port_file).read().endswith("\n")
                      and re.search(r"serving metrics addr=[0-9.]+:(\d+) ", self.log()), 20)
        if not ok:
            raise RuntimeError("gridd did not start: " + self.log()[-500:])
        self.port = int(open(port_file).read())
        self.metrics_port = int(re.search(r"serving metrics addr=[0-9.]+:(\d+) ", self.log()).group(1))

    def log(self):
        return open(self.log_path, errors="replace").read()

    def ctl(self, *args):
        return subprocess.run([f"{BIN}/hgridctl", "--socket", self.sock, *args],
                              capture_output=True, text=True, timeout=30)

    def frames(self, direction, kind):
        """gridd's count of frames of one message type sent or received."""
        body = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                      timeout=10).read().decode()
        m = re.search(rf'^gridd_frames_{direction}_total{{type="{kind}"}} (\d+)$', body, re.M)
        return int(m.group(1)) if m else 0

    def generation_line(self, gen):
        """gridd's "generation started" log line of the job's generation gen."""
        for line in self.log().splitlines():
            if "generation started" in line and re.search(rf"\bgen(eration)?={gen}\b", line):
                return line
        return None


class Workers:
    """The job's workers by device: start, kill, read their assignments."""

    def __init__(self, gridd, tmp):
        self.g, self.tmp, self.procs, self.n = gridd, tmp, {}, 0

    def start(self, device, kind):
        self.n += 1
        out = os.path.join(self.tmp, f"w{self.n}.{kind}.{device}.out")
        env = worker_env(self.g.port, JOB, TOKEN, device)
        if kind == "python":
            cmd = [sys.executable, PY_WORKER, "--rejoin"]
        elif kind == "c-trainer":
            cmd = [sys.executable, PY_WORKER, "--c-trainer", NCCL_LIBRARY]
        else:
            cmd = [f"{BIN}/hgrid-worker", "--dry-run", "--json", "--coordinator",
                   f"127.0.0.1:{self.g.port}", "--job", JOB, "--token", TOKEN, "--host", "node-py",
                   "--device", str(device)]
            env.pop("ASAN_OPTIONS", None)
            env.update({k: v for k, v in os.environ.items() if k.endswith("SAN_OPTIONS")})
        p = subprocess.Popen(cmd, stdout=open(out, "w"), stderr=subprocess.STDOUT, env=env)
        p.out, p.kind = out, kind
        self.procs[device] = p
        return p

    def kill(self, device):
        p = self.procs.pop(device)
        p.send_signal(signal.SIGKILL)
        p.wait()

    def assignment(self, device, gen):
        """The worker's JSON assignment line of generation gen, or None."""
        for x in json_lines(self.procs[device].out):
            if x.get("generation") == gen and "rank" in x:
                return x
        return None

    def all_at(self, gen, timeout=60):
        got = wait_for(lambda: all(self.assignment(d, gen) for d in self.procs), timeout)
        return {d: self.assignment(d, gen) for d in self.procs} if got else None


def worker_groups(a):
    """{member tuple: id or None} of an hgrid-worker's JSON assignment (size > 1 groups)."""
    return {tuple(g["members"]): g["id"] for g in a["groups"] if g["size"] > 1}


def check_minted(label, got, earlier=None, kept_expected=()):
    """Every group of size > 1 carries one id, the same at every member and different across
    rank sets; groups in kept_expected carry earlier's id (and kept), the others new ids."""
    ids, wrong = {}, []
    for a in got.values():
        for g in a["groups"]:
            key = tuple(g["members"])
            if g["size"] == 1:
                if g["id"] is not None:
                    wrong.append(("one-rank group with an id", g["name"]))
                continue
            if g["id"] is None:
                wrong.append(("no id", a["rank"], g["name"]))
            if ids.setdefault(key, g["id"]) != g["id"]:
                wrong.append(("members disagree", key))
            if g["kept"] != (key in kept_expected):
                wrong.append(("kept", a["rank"], g["name"], g["kept"]))
    check(ids and not wrong, f"{label}: every group minted once, same id at every member "
          f"({len(ids)} rank sets; {wrong[:3]})")
    check(len(set(ids.values())) == len(ids), f"{label}: distinct rank sets, distinct ids")
    if earlier is not None:
        same = {k for k in ids if earlier.get(k) == ids[k]}
        check(same == set(kept_expected),
              f"{label}: the same id as before exactly for {sorted(kept_expected)} ({sorted(same)})")
    return ids


def main():
    need_library()
    if not os.path.exists(f"{BIN}/hgrid-worker"):
        print(f"FAIL: {BIN}/hgrid-worker is missing: build it (make)", flush=True)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        g = Gridd(tmp)
        w = Workers(g, tmp)
        try:
            run(g, w)
        finally:
            for d in list(w.procs):
                w.kill(d)
            g.proc.send_signal(signal.SIGTERM)
            rc = g.proc.wait(timeout=30)
        check(rc == 0, f"gridd exits 0 on SIGTERM ({rc}); log: {g.log()[-600:]}")
    return summary("python_ids_mix")


def run(g, w):
    r = g.ctl("submit", "--job", JOB, "--token", TOKEN, *LAYOUT)
    check(r.returncode == 0, f"submit: {r.stderr}")

    # G1: Python only
    for d in range(4):
        w.start(d, "python")
    got = w.all_at(1)
    check(got is not None, "G1: 4 Python workers assigned")
    if got is None:
        return
    check(all(a["assignment_only"] for a in got.values()), "G1: every assignment is assignment-only")
    check(g.frames("sent", "mint_request") == 0 and g.frames("received", "mint_reply") == 0,
          "G1: gridd sent no MintRequest and got no MintReply")
    line = g.generation_line(1) or ""
    check("leaders=0 ids=0" in line and "assignment_only=1" in line, f"G1: gridd's log: {line}")

    # G2: every Python worker replaced by a minting hgrid-worker
    for d in range(4):
        w.kill(d)
    for d in range(4):
        w.start(d, "hgrid-worker")
    got = w.all_at(2)
    check(got is not None, "G2: 4 hgrid-workers assigned")
    if got is None:
        return
    check(sorted(a["rank"] for a in got.values()) == [0, 1, 2, 3], "G2: every rank")
    g2 = check_minted("G2 after an assignment-only generation", got)
    mints = g.frames("sent", "mint_request")
    check(mints > 0 and g.frames("received", "mint_reply") == mints,
          f"G2: leaders minted on gridd's MintRequest ({mints})")
    line = g.generation_line(2) or ""
    check(f"ids={len(g2)} " in line and "assignment_only=0" in line,
          f"G2: gridd's log says {len(g2)} ids, not assignment-only: {line}")

    # G3: rank 3 replaced by another hgrid-worker: a partial rebuild keeps [0,1] and [0,2]
    w.kill(3)
    w.start(3, "hgrid-worker")
    got = w.all_at(3)
    check(got is not None, "G3: assigned")
    if got is None:
        return
    check_minted("G3 after a generation with ids", got, g2, kept_expected=[(0, 1), (0, 2)])
    mints = g.frames("sent", "mint_request")

    # G4: rank 3 replaced by a Python worker: no ids for anyone
    w.kill(3)
    w.start(3, "python")
    got = w.all_at(4)
    check(got is not None, "G4: assigned")
    if got is None:
        return
    check(got[3]["assignment_only"], "G4: the Python worker's assignment is assignment-only")
    idless = all(gr["id"] is None for d in (0, 1, 2) for gr in got[d]["groups"])
    check(idless, "G4: the hgrid-workers' assignments carry no id")
    check(g.frames("sent", "mint_request") == mints, "G4: no MintRequest")
    line = g.generation_line(4) or ""
    check("leaders=0 ids=0" in line and "assignment_only=1" in line, f"G4: gridd's log: {line}")

    # G5: a C trainer with a minter beside the Python worker: refused, one line, no CUDA
    w.kill(2)
    t = w.start(2, "c-trainer")
    got = w.all_at(5)
    check(got is not None, "G5: assigned")
    if got is None:
        return
    check(got[2]["assignment_only"], "G5: the C trainer's assignment says no ids")
    res = wait_for(lambda: [x for x in json_lines(t.out) if "comms" in x], 30)
    res = res[0] if res else {}
    check(res.get("comms") == -5 and "runs without NCCL ids" in res.get("error", "")
          and "assignment-only" in res["error"] and "\n" not in res["error"],
          f"G5: hgrid_comms_create refused with one line saying why ({res})")
    check(g.frames("sent", "mint_request") == mints, "G5: no MintRequest to the C trainer")
    t.wait(timeout=30)
    w.procs.pop(2)

    # G6: the C trainer gone and the Python worker replaced: every id minted anew
    w.kill(3)
    for d in (2, 3):
        w.start(d, "hgrid-worker")
    gen = 6
    got = w.all_at(gen)
    check(got is not None, "G6: assigned")
    if got is None:
        return
    g6 = check_minted("G6 after assignment-only generations", got, g2)
    check(g.frames("sent", "mint_request") > mints, "G6: MintRequests again")
    check(g6.keys() == g2.keys(), "G6: the same rank sets as G2")

    r = g.ctl("cancel", JOB)
    check(r.returncode == 0, f"cancel: {r.stderr}")
    codes = [p.wait(timeout=30) for p in w.procs.values()]
    check(codes == [0] * 4, f"cancel: every worker released, exit 0 ({codes})")
    w.procs.clear()


if __name__ == "__main__":
    sys.exit(main())
