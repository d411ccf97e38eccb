#!/usr/bin/env python3
"""The hgrid Python package against a real gridd (no torch needed): N processes join and
their rank, module, coordinates, groups and bridge equal `hgridctl plan --json`; the join is
assignment-only (no NCCL loaded, no ids); a wrong token, a cancelled job (release) and a lost
worker (abort) raise with gridd's reason; a process killed mid-join does not hang the others;
join's arguments from HGRID_* and the launcher's variables (RANK/SLURM_PROCID,
LOCAL_RANK/SLURM_LOCALID, HGRID_HOSTNAME/SLURMD_NODENAME); done() returns the job's outcome;
the job's store (set/get/add/compare_set/wait/check/delete/num_keys, token-checked, bounded
in keys and bytes, gone with the job); the package finds the library of the checkout's build,
of an install prefix, or the one `pip install ./python` bundles."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, summary  # noqa: E402
from hgrid_py import LIBRARY, ROOT, json_lines, need_library, wait_for, worker_env  # noqa: E402
from launch_util import ctl, start_gridd  # noqa: E402

WORKER = os.path.join(ROOT, "tests", "hgrid_py_worker.py")
LAYOUT = ["--encoder-tp", "2", "--encoder-dp", "2", "--llm-tp", "2", "--llm-pp", "2",
          "--llm-dp", "1", "--micro-batch-size", "2"]


def start(tmp, port, job, token, device, *args):
    out = os.path.join(tmp, f"{job}.{device}.out")
    f = open(out, "w")
    p = subprocess.Popen([sys.executable, WORKER, *args], stdout=f, stderr=subprocess.STDOUT,
                         env=worker_env(port, job, token, device))
    p.out = out
    return p


def first(p, key):
    lines = [x for x in json_lines(p.out) if key in x]
    return lines[0] if lines else None


def expected_groups(plan, rank):
    """{kind: members} of rank's groups in the plan (bridge: the leaders, encoder first)."""
    out = {}
    for m in plan["modules"]:
        if not m["rank_offset"] <= rank < m["rank_offset"] + m["num_ranks"]:
            continue
        for kind, lists in m["groups"].items():
            for members in lists:
                if rank in members:
                    out[kind] = members
    edges = plan.get("bridge", {}).get("edges", [])
    leaders = sorted({e for e, _ in edges}) + sorted({l for _, l in edges})
    if rank in leaders:
        out["bridge"] = leaders
    return out


def test_join_matches_plan(tmp, port, sock):
    ctl(sock, "submit", "--job", "plan", "--token", "tok", *LAYOUT)
    plan = json.loads(subprocess.run([f"{os.environ.get('HGRID_BIN', 'bin')}/hgridctl", "plan",
                                      "--json", *LAYOUT], capture_output=True, text=True).stdout)
    n = plan["world_size"]
    procs = [start(tmp, port, "plan", "tok", d) for d in range(n)]
    got = wait_for(lambda: [first(p, "rank") for p in procs] if all(first(p, "rank") for p in procs)
                   else None, 60)
    check(got and len(got) == n, f"plan: {n} Python processes joined ({len(got or [])})")
    got = got or []
    check(sorted(a["rank"] for a in got) == list(range(n)), "plan: every rank once")
    ranks = {r["rank"]: r for r in plan["ranks"]}
    wrong = []
    for a in got:
        r = ranks[a["rank"]]
        want_coords = {d: r[d] for d in ("tp", "cp", "dp", "pp", "ep", "expt_tp", "expt_dp")}
        if a["module"] != r["module"] or a["coords"] != want_coords:
            wrong.append((a["rank"], "module/coords", a["module"], a["coords"]))
        if a["groups"] != expected_groups(plan, a["rank"]):
            wrong.append((a["rank"], "groups", a["groups"]))
        if a["world_size"] != n or a["generation"] != 1 or a["job"] != "plan":
            wrong.append((a["rank"], "world/generation/job"))
    check(got and not wrong, f"plan: each process's assignment equals hgridctl plan --json: {wrong[:3]}")
    kinds = {k for a in got for k in a["groups"]}
    check({"tp", "dp", "pp", "embd", "pos_embd", "tp_ep_pp", "bridge"} <= kinds,
          f"plan: the groups checked include embd, pos_embd, expert kinds and the bridge ({kinds})")
    edges = plan["bridge"]["edges"]
    bridges = {a["rank"]: sorted(tuple(b[:1] + b[2:]) for b in a["bridge"]) for a in got}
    want = {}
    for e, l in edges:
        want.setdefault(e, []).append((l, True))
        want.setdefault(l, []).append((e, False))
    check(all(bridges[r] == sorted(want.get(r, [])) for r in bridges),
          f"plan: bridge peers as the plan's edges ({bridges})")
    check(all(a["assignment_only"] for a in got), "plan: the assignments say assignment-only")
    maps = [open(f"/proc/{a['pid']}/maps").read() for a in got if os.path.exists(f"/proc/{a['pid']}/maps")]
    check(len(maps) == n and not any("nccl" in m or "cudart" in m for m in maps),
          "plan: no process loaded NCCL or the CUDA runtime")
    check(all(os.path.basename(LIBRARY) in m for m in maps), "plan: they loaded libhgrid.so.1")
    # release: hgridctl cancel -> Released with gridd's reason, exit 0
    ctl(sock, "cancel", "plan")
    codes = [p.wait(timeout=30) for p in procs]
    ends = [[x for x in json_lines(p.out) if "ended" in x] for p in procs]
    check(codes == [0] * n and all(e and e[-1]["ended"] == "Released" and "cancel" in e[-1]["message"]
                                   for e in ends),
          f"release: every process raised Released with gridd's reason ({codes}, {ends[0]})")


def test_bad_token(tmp, port, sock):
    ctl(sock, "submit", "--job", "tok", "--token", "right", "--llm-only", "--llm-tp", "1", "--llm-dp", "1")
    p = start(tmp, port, "tok", "wrong", 0)
    p.wait(timeout=30)
    end = first(p, "ended")
    check(p.returncode == 3 and end and end["ended"] == "Refused" and
          "unknown job 'tok' or wrong token" in end["message"],
          f"bad token: Refused carrying gridd's line ({p.returncode}, {end})")
    p = start(tmp, port, "nosuch", "x", 0)
    p.wait(timeout=30)
    end = first(p, "ended")
    check(end and end["ended"] == "Refused" and "unknown job 'nosuch' or wrong token" in end["message"],
          f"unknown job: Refused ({end})")
    ctl(sock, "cancel", "tok")


def test_abort_and_killed_mid_join(tmp, port, sock):
    """A worker killed after its assignment aborts the generation: the others raise Aborted
    with the reason at once, and with a replacement they all reach generation 2."""
    ctl(sock, "submit", "--job", "ab", "--token", "t", "--llm-only", "--llm-tp", "2", "--llm-dp", "2")
    procs = [start(tmp, port, "ab", "t", d, "--rejoin") for d in range(3)]
    time.sleep(0.5)
    victim = start(tmp, port, "ab", "t", 3)
    ok = wait_for(lambda: all(first(p, "rank") for p in procs + [victim]), 60)
    check(ok, "abort: 4 workers assigned")
    t0 = time.monotonic()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    aborted = wait_for(lambda: all(any(x.get("ended") == "Aborted" for x in json_lines(p.out))
                                   for p in procs), 20)
    dt = time.monotonic() - t0
    msgs = [[x for x in json_lines(p.out) if x.get("ended") == "Aborted"] for p in procs]
    check(aborted and dt < 10 and all("lost" in m[0]["message"] for m in msgs if m),
          f"abort: the others raised Aborted with gridd's reason in {dt:.1f} s ({msgs[0][:1]})")
    # killed mid-join: a worker dies right after connecting; the job waits for a whole set,
    # and a replacement completes it: nobody hangs.
    dying = start(tmp, port, "ab", "t", 3)
    time.sleep(0.3)
    dying.send_signal(signal.SIGKILL)
    dying.wait()
    replacement = start(tmp, port, "ab", "t", 3)
    gen2 = wait_for(lambda: all(any(x.get("generation", 0) >= 2 for x in json_lines(p.out))
                                for p in procs + [replacement]), 60)
    check(gen2, "killed mid-join: with a replacement every worker reached a new generation")
    ranks = sorted(max((x for x in json_lines(p.out) if "rank" in x), key=lambda x: x["generation"])["rank"]
                   for p in procs + [replacement]) if gen2 else []
    check(ranks == [0, 1, 2, 3], f"killed mid-join: the new generation has every rank ({ranks})")
    ctl(sock, "cancel", "ab")
    for p in procs + [replacement]:
        p.wait(timeout=30)
    check(all(p.returncode == 0 for p in procs + [replacement]), "abort: all released, exit 0")


def test_launcher_env(tmp, port, sock):
    """Rank, device and host from the launcher's variables, as hgrid-worker reads them."""
    ctl(sock, "submit", "--job", "env", "--token", "te", "--llm-only", "--llm-tp", "2", "--llm-dp", "2")
    cases = [  # (variables, rank, device, host)
        (dict(RANK=3, LOCAL_RANK=1, HGRID_HOSTNAME="ha"), 3, 1, "ha"),
        (dict(SLURM_PROCID=2, SLURM_LOCALID=0, SLURMD_NODENAME="hb"), 2, 0, "hb"),
        (dict(RANK=1, SLURM_PROCID=0, LOCAL_RANK=0, SLURM_LOCALID=1, HGRID_HOSTNAME="ha",
              SLURMD_NODENAME="hb"), 1, 0, "ha"),  # torchrun's RANK/LOCAL_RANK win
        (dict(SLURM_LOCALID=1, SLURMD_NODENAME="hb"), 0, 1, "hb"),  # no rank: gridd's choice
    ]
    procs = []
    for i, (extra, _, _, _) in enumerate(cases):
        env = worker_env(port, "env", "te", 0)
        for k in ("LOCAL_RANK", "HGRID_HOSTNAME", "SLURMD_NODENAME"):
            env.pop(k, None)
        env.update({k: str(v) for k, v in extra.items()})
        out = os.path.join(tmp, f"env.{i}.out")
        p = subprocess.Popen([sys.executable, WORKER], stdout=open(out, "w"),
                             stderr=subprocess.STDOUT, env=env)
        p.out = out
        procs.append(p)
    got = wait_for(lambda: [first(p, "rank") for p in procs] if all(first(p, "rank") for p in procs)
                   else None, 60) or []
    check([(a["rank"], a["device"]) for a in got] == [(r, d) for _, r, d, _ in cases],
          f"launcher env: ranks and devices from RANK/SLURM_PROCID, LOCAL_RANK/SLURM_LOCALID "
          f"({[(a['rank'], a['device']) for a in got]})")
    show = json.loads(ctl(sock, "show", "env", "--json").stdout or "{}")
    seen = sorted((w["rank"], w["host"], w["device"]) for w in show.get("workers", []))
    check(seen == sorted((r, h, d) for _, r, d, h in cases),
          f"launcher env: gridd saw the hosts from HGRID_HOSTNAME/SLURMD_NODENAME ({seen})")
    ctl(sock, "cancel", "env")
    for p in procs:
        p.wait(timeout=30)
    env = {k: v for k, v in worker_env(port, "env", "te", 0).items() if k != "HGRID_JOB"}
    r = subprocess.run([sys.executable, WORKER], capture_output=True, text=True, env=env, timeout=30)
    check(r.returncode == 3 and "no job name: pass it or set HGRID_JOB" in r.stdout,
          f"launcher env: without HGRID_JOB join says which variable ({r.stdout.strip()})")


def test_done(tmp, port, sock):
    """Every rank's done(): gridd finishes the job and done() returns "finished"."""
    ctl(sock, "submit", "--job", "fin", "--token", "tf", "--llm-only", "--llm-tp", "1", "--llm-dp", "2")
    procs = [start(tmp, port, "fin", "tf", d, "--steps", str(3 + 2 * d)) for d in range(2)]
    codes = [p.wait(timeout=60) for p in procs]
    ends = [first(p, "ended") for p in procs]
    check(codes == [0, 0] and all(e and e["ended"] == "done" and e["outcome"] == "finished"
                                  for e in ends),
          f"done: both ranks' done() returned 'finished' ({codes}, {ends})")
    r = ctl(sock, "wait", "fin", "--timeout", "10")
    check(r.returncode == 0, f"done: hgridctl wait says the job finished ({r.returncode} {r.stdout})")


def test_store(port, sock):
    sys.path.insert(0, os.path.join(ROOT, "python"))
    os.environ["HGRID_LIBRARY"] = LIBRARY
    import hgrid
    from hgrid import _lib as L
    ctl(sock, "submit", "--job", "st", "--token", "s3", "--llm-only", "--llm-tp", "1", "--llm-dp", "1")
    try:
        hgrid.Store(f"127.0.0.1:{port}", "st", "bad")
        check(False, "store: a wrong token is refused")
    except hgrid.Refused as e:
        check("unknown job 'st' or wrong token" in str(e), f"store: a wrong token is refused ({e})")
    s = hgrid.Store(f"127.0.0.1:{port}", "st", "s3")
    s.request(L.STORE_SET, [b"k"], b"v1")
    check(s.request(L.STORE_GET, [b"k"])[0] == b"v1", "store: get after set")
    check(s.request(L.STORE_ADD, [b"n"], b"5")[1] == 5 and s.request(L.STORE_ADD, [b"n"], b"-2")[1] == 3,
          "store: add counts (absent = 0)")
    check(s.request(L.STORE_COMPARE_SET, [b"k"], b"v2", b"nope")[0] == b"v1",
          "store: compare_set with the wrong expected value keeps it")
    check(s.request(L.STORE_COMPARE_SET, [b"k"], b"v2", b"v1")[0] == b"v2",
          "store: compare_set with the right expected value sets it")
    check(s.request(L.STORE_COMPARE_SET, [b"new"], b"x", b"")[0] == b"x",
          "store: compare_set of an absent key with empty expected sets it")
    check(s.request(L.STORE_CHECK, [b"k", b"n"])[1] == 1 and s.request(L.STORE_CHECK, [b"k", b"z"])[1] == 0,
          "store: check")
    check(s.request(L.STORE_NUM_KEYS, [])[1] == 3, "store: num_keys")
    check(s.request(L.STORE_DELETE, [b"new"])[1] == 1 and s.request(L.STORE_DELETE, [b"new"])[1] == 0,
          "store: delete_key says whether it existed")
    try:
        s.request(L.STORE_GET, [b"late"], timeout=0.3)
        check(False, "store: get of a missing key times out")
    except hgrid.JoinTimeout:
        check(True, "store: get of a missing key times out")
    # a get parked in gridd is answered by another connection's set
    got = {}
    def waiter():
        w = hgrid.Store(f"127.0.0.1:{port}", "st", "s3")
        got["v"] = w.request(L.STORE_GET, [b"later"], timeout=10)[0]
        w.request(L.STORE_WAIT, [b"a", b"b"], timeout=10)
        got["w"] = True
    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.3)
    s.request(L.STORE_SET, [b"later"], b"now")
    s.request(L.STORE_SET, [b"a"], b"1")
    time.sleep(0.2)
    check("w" not in got, "store: wait blocks while a key is missing")
    s.request(L.STORE_SET, [b"b"], b"2")
    t.join(timeout=15)
    check(got.get("v") == b"now" and got.get("w"), f"store: parked get and wait answered by a set ({got})")
    # many parked at once (more than gridd's first 64 wait buckets: the table grows): each
    # answered exactly when its last key is set, a key deleted meanwhile counted as missing again
    waits = {f"w{i}": [b"p%d" % (i % 3), b"q%d" % (i % 5)] for i in range(99)}
    waits["wx"] = [b"x1", b"x2"]
    done = {}

    def parked(name, keys):
        c = hgrid.Store(f"127.0.0.1:{port}", "st", "s3")
        c.request(L.STORE_ADD, [b"ready"], b"1")
        c.request(L.STORE_WAIT, keys, timeout=60)
        done[name] = time.monotonic()
    ts = [threading.Thread(target=parked, args=kv) for kv in waits.items()]
    for t in ts:
        t.start()
    wait_for(lambda: s.request(L.STORE_ADD, [b"ready"], b"0")[1] == len(waits), 60)
    time.sleep(0.5)  # each thread's WAIT follows its ADD at once
    s.request(L.STORE_SET, [b"x1"], b"1")
    s.request(L.STORE_DELETE, [b"x1"])
    s.request(L.STORE_SET, [b"x2"], b"1")
    for k in [b"p0", b"p1", b"p2", b"q0", b"q1", b"q2", b"q3"]:
        s.request(L.STORE_SET, [k], b"1")
    want_early = sorted(n for n, ks in waits.items() if n != "wx" and ks[1] != b"q4")
    wait_for(lambda: len(done) >= len(want_early), 30)
    time.sleep(0.3)  # any answered too early shows up too
    early = sorted(done)
    s.request(L.STORE_SET, [b"q4"], b"1")
    s.request(L.STORE_SET, [b"x1"], b"1")
    for t in ts:
        t.join(timeout=30)
    check(early == want_early and sorted(done) == sorted(waits),
          f"store: {len(waits)} parked waits, each answered once all its keys exist "
          f"({len(early)} of {len(want_early)} early, {len(done)} of {len(waits)} in all)")
    try:
        s.request(L.STORE_SET, [b"big"], b"x" * (2 << 20))
        check(False, "store: a value over the frame limit is refused")
    except hgrid.HgridError as e:
        check(True, f"store: a value over the frame limit is refused ({type(e).__name__})")
    # bounded: bytes (64 MiB of keys and values), then keys (65,536), per job
    s = hgrid.Store(f"127.0.0.1:{port}", "st", "s3")
    before = s.request(L.STORE_NUM_KEYS, [])[1]
    big, n, full = b"x" * 1000000, 0, None
    try:
        while n < 80:
            s.request(L.STORE_SET, [b"big%d" % n], big)
            n += 1
    except hgrid.HgridError as e:
        full = str(e)
    check(full and n == 67 and "store is full" in full and "67108864 bytes" in full,
          f"store: bounded in bytes: {n} values of 1 MB fit, then ({full})")
    check(s.request(L.STORE_DELETE, [b"big0"])[1] == 1, "store: delete frees room")
    s.request(L.STORE_SET, [b"big0"], big)
    check(s.request(L.STORE_NUM_KEYS, [])[1] == before + 67, "store: set again after a delete")
    for i in range(67):
        s.request(L.STORE_DELETE, [b"big%d" % i])
    n, full = s.request(L.STORE_NUM_KEYS, [])[1], None
    try:
        while n <= 65536:
            s.request(L.STORE_ADD, [b"k%d" % n], b"1")
            n += 1
    except hgrid.HgridError as e:
        full = str(e)
    check(full and n == 65536 and "65536 keys" in full,
          f"store: bounded in keys: {n} keys, then ({full})")
    s = hgrid.Store(f"127.0.0.1:{port}", "st", "s3")
    gone = {}

    def parked_at_end():  # parked in gridd when the job ends: answered by its end
        try:
            hgrid.Store(f"127.0.0.1:{port}", "st", "s3").request(L.STORE_GET, [b"never"], timeout=20)
            gone["e"] = "answered"
        except hgrid.HgridError as e:
            gone["e"] = str(e)
    t = threading.Thread(target=parked_at_end)
    t.start()
    time.sleep(0.5)
    ctl(sock, "cancel", "st")
    t.join(timeout=30)
    try:
        s.request(L.STORE_GET, [b"k"], timeout=5)
        check(False, "store: gone with the job")
    except hgrid.HgridError as e:
        check("ended" in str(e) or "closed" in str(e), f"store: gone with the job ({e})")
    check("ended" in gone.get("e", "") or "closed" in gone.get("e", ""),
          f"store: a get parked when the job ends fails at once ({gone})")
    ctl(sock, "submit", "--job", "st", "--token", "s3", "--llm-only", "--llm-tp", "1", "--llm-dp", "1")
    s = hgrid.Store(f"127.0.0.1:{port}", "st", "s3")
    check(s.request(L.STORE_NUM_KEYS, [])[1] == 0, "store: a resubmitted job starts empty")
    ctl(sock, "cancel", "st")


def loaded_library(env, cwd):
    r = subprocess.run([sys.executable, "-c", "import hgrid._lib as L; print(L.lib.hgrid_path)"],
                       capture_output=True, text=True, env=env, cwd=cwd)
    return r.stdout.strip() or r.stderr.strip().splitlines()[-1]


def test_finds_library(tmp):
    """Without HGRID_LIBRARY: the checkout's build, else HGRID_PREFIX/lib, else says where it looked."""
    env = {k: v for k, v in os.environ.items() if k not in ("HGRID_LIBRARY", "PYTHONPATH",
                                                            "HGRID_PREFIX", "LD_LIBRARY_PATH")}
    got = loaded_library(dict(env, PYTHONPATH=os.path.join(ROOT, "python")), tmp)
    check(got == LIBRARY, f"library: the package in a checkout loads its build's ({got})")
    pkg = os.path.join(tmp, "pkg")  # the package alone, outside any checkout
    shutil.copytree(os.path.join(ROOT, "python", "hgrid"), os.path.join(pkg, "hgrid"),
                    ignore=shutil.ignore_patterns("__pycache__", "_lib"))
    prefix = os.path.join(tmp, "prefix")
    os.makedirs(os.path.join(prefix, "lib"))
    shutil.copy2(LIBRARY, os.path.join(prefix, "lib", "libhgrid.so.1"))
    got = loaded_library(dict(env, PYTHONPATH=pkg, HGRID_PREFIX=prefix), tmp)
    check(got == os.path.join(prefix, "lib", "libhgrid.so.1"),
          f"library: an installed package loads HGRID_PREFIX/lib's ({got})")
    if any(os.path.exists(f"{p}/lib/libhgrid.so.1") for p in ("/usr/local", "/usr")):
        print("note: libhgrid.so.1 is installed on this machine: 'not found' not checked", flush=True)
        return
    got = loaded_library(dict(env, PYTHONPATH=pkg, HGRID_PREFIX=os.path.join(tmp, "none")), tmp)
    check("cannot load libhgrid.so.1" in got and "HGRID_LIBRARY" in got and "/none/lib" in got,
          f"library: none found: ImportError naming where it looked ({got[:200]})")


def test_pip_install(tmp):
    pip = os.path.join(ROOT, "build", "venv", "bin", "pip")
    if not os.path.exists(pip):
        print("note: build/venv has no pip; pip install ./python not checked", flush=True)
        return
    target = os.path.join(tmp, "site")
    # setup.py bundles ../bin/libhgrid.so.1 (the checkout's build) by default
    r = subprocess.run([pip, "install", "--quiet", "--no-deps", "--no-build-isolation", "--target",
                        target, os.path.join(ROOT, "python")], capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if k != "HGRID_BIN"})
    check(r.returncode == 0, f"pip install ./python: {r.stderr[-300:]}")
    env = {k: v for k, v in os.environ.items() if k not in ("HGRID_LIBRARY", "PYTHONPATH")}
    env["PYTHONPATH"] = target
    r = subprocess.run([sys.executable, "-c", "import hgrid._lib as L; print(L.lib.hgrid_path)"],
                       capture_output=True, text=True, env=env, cwd=tmp)
    check(r.returncode == 0 and r.stdout.strip() == os.path.join(target, "hgrid", "_lib", "libhgrid.so.1"),
          f"pip install ./python: the installed package loads its bundled library ({r.stdout.strip()} {r.stderr[-200:]})")


def main():
    need_library()
    with tempfile.TemporaryDirectory() as tmp:
        gridd, port, sock = start_gridd(tmp)
        try:
            test_join_matches_plan(tmp, port, sock)
            test_bad_token(tmp, port, sock)
            test_abort_and_killed_mid_join(tmp, port, sock)
            test_launcher_env(tmp, port, sock)
            test_done(tmp, port, sock)
            test_store(port, sock)
            test_finds_library(tmp)
            test_pip_install(tmp)
        finally:
            gridd.send_signal(signal.SIGTERM)
            rc = gridd.wait(timeout=30)
        check(rc == 0, f"gridd exits 0 on SIGTERM ({rc}); log: {open(os.path.join(tmp, 'gridd.log')).read()[-600:]}")
    return summary("python_api")


if __name__ == "__main__":
    sys.exit(main())
