#!/usr/bin/env python3
"""Dry-run workers against a real gridd: assignments equal `hgridctl plan
--json`, tp groups host-local, `hgridctl show --json` matches the plan,
refusals, requested ranks, rejoin after a crash, heartbeat timeout and a new
generation with new ids for the groups holding the replaced rank (the others
kept), cancel, and a 256-worker swarm."""
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.environ.get("HGRID_BIN", "bin")
HB = 2.0  # gridd's --heartbeat-timeout for this test (workers beat every HB/3)
failures = []
passes = 0


def check(cond, what):
    global passes
    if cond:
        passes += 1
    else:
        failures.append(what)
        print("FAIL " + what, flush=True)


def ctl(sock, *args, ok=True):
    r = subprocess.run([f"{BIN}/hgridctl", "--socket", sock, *args], capture_output=True, text=True,
                       timeout=30)
    if ok and r.returncode != 0:
        raise RuntimeError(f"hgridctl {' '.join(args)} failed: {r.stderr.strip()}")
    return r


class Worker:
    """One hgrid-worker --dry-run --json; its output lines are collected."""

    def __init__(self, port, job, token, host, device, extra=(), env=None):
        self.host, self.device = host, device
        self.proc = subprocess.Popen(
            [f"{BIN}/hgrid-worker", "--coordinator", f"127.0.0.1:{port}", "--job", job, "--token", token,
             "--host", host, "--device", str(device), "--dry-run", "--json",
             "--heartbeat-timeout", str(HB), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.assignments = queue.Queue()
        self.stderr = []
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read_out(self):
        for line in self.proc.stdout:
            self.assignments.put(json.loads(line))

    def _read_err(self):
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())

    def next_assignment(self, timeout=20):
        return self.assignments.get(timeout=timeout)

    def wait(self, timeout=20):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None

    def err_text(self):
        time.sleep(0.1)  # let the reader thread catch the last line
        return "\n".join(self.stderr)


def start_gridd(tmp):
    port_file, sock = os.path.join(tmp, "port"), os.path.join(tmp, "ctl.sock")
    log = open(os.path.join(tmp, "gridd.log"), "w")
    proc = subprocess.Popen([f"{BIN}/gridd", "--listen", "127.0.0.1:0", "--port-file", port_file,
                             "--control", sock, "--heartbeat-timeout", str(HB)],
                            stdout=log, stderr=log)
    for _ in range(200):
        if os.path.exists(port_file) and open(port_file).read().endswith("\n"):
            return proc, int(open(port_file).read()), sock
        time.sleep(0.05)
    raise RuntimeError("gridd did not write its port file; see " + log.name)


def start_job(port, job, hosts, per_host):
    return [Worker(port, job, "tok-" + job, f"node-{h}", d) for h in hosts for d in range(per_host)]


def assignments_of(workers):
    return {w: w.next_assignment() for w in workers}


def check_against_plan(got, plan, label):
    """Every assignment equals the plan: rank, coordinates, group members, bridge."""
    ranks = sorted(a["rank"] for a in got.values())
    check(ranks == list(range(plan["world_size"])), f"{label}: ranks unique and complete: {ranks}")
    modules = {m["name"]: m for m in plan["modules"]}
    edges = plan.get("bridge", {}).get("edges", [])
    leaders = [e for e, _ in edges] + [l for _, l in edges]
    bridge_members = sorted(set(e for e, _ in edges)) + sorted(set(l for _, l in edges))
    for w, a in got.items():
        r = a["rank"]
        want = plan["ranks"][r]
        coords = {k: v for k, v in want.items() if k not in ("rank", "module")}
        check(a["module"] == want["module"] and a["coordinates"] == coords,
              f"{label}: rank {r} coordinates {a['coordinates']} vs plan {want}")
        check((a["host"], a["device"]) == (w.host, w.device), f"{label}: rank {r} host/device echo")
        for g in a["groups"]:
            if g["name"] == "bridge":
                check(g["members"] == bridge_members, f"{label}: rank {r} bridge {g['members']}")
                continue
            plan_groups = modules[a["module"]]["groups"][g["name"]]
            check(g["members"] == plan_groups[g["index"]] and g["members"][g["rank_in_group"]] == r,
                  f"{label}: rank {r} group {g['name']} {g['members']} vs plan {plan_groups[g['index']]}")
            check((g["id"] is None) == (g["size"] == 1), f"{label}: rank {r} {g['name']} id presence")
        names = [g["name"] for g in a["groups"]]
        check(("bridge" in names) == (r in leaders), f"{label}: rank {r} bridge membership")
        peers = sorted((p["rank"], p["send"]) for p in a["bridge_peers"])
        want_peers = sorted([(l, True) for e, l in edges if e == r] + [(e, False) for e, l in edges if l == r])
        check(peers == want_peers, f"{label}: rank {r} bridge peers {peers} vs {want_peers}")


def ids_by_group(got):
    """{(member tuple): id}; members of one group must agree, groups must differ."""
    ids = {}
    ok = True
    for a in got.values():
        for g in a["groups"]:
            if g["id"] is None:
                continue
            key = tuple(g["members"])
            if ids.setdefault(key, g["id"]) != g["id"]:
                ok = False
    return ids, ok


def check_ids(got, label):
    ids, ok = ids_by_group(got)
    check(ok, f"{label}: every member of a group received the same id")
    check(len(set(ids.values())) == len(ids), f"{label}: different groups received different ids")
    return ids


def check_rebuild(old, new, replaced, label):
    """Only groups holding a replaced rank get new ids; the others keep theirs (kept=true)."""
    before = {a["rank"]: {(g["name"], g["index"]): g["id"] for g in a["groups"] if g["id"]}
              for a in old.values()}
    kept = changed = 0
    for a in new.values():
        for g in a["groups"]:
            if not g["id"]:
                continue
            same = before[a["rank"]].get((g["name"], g["index"])) == g["id"]
            holds = bool(set(g["members"]) & replaced)
            check(same != holds and g["kept"] == same,
                  f"{label}: rank {a['rank']}'s {g['name']} {g['members']}: id {'kept' if same else 'new'}, "
                  f"kept={g['kept']}")
            kept, changed = kept + same, changed + (not same)
    check(kept > 0 and changed > 0, f"{label}: new ids only for the groups holding {sorted(replaced)} "
                                    f"({changed} new, {kept} kept)")


def check_tp_local(got, label):
    for a in got.values():
        tp = next(g for g in a["groups"] if g["name"] == "tp")
        hosts = {b["host"] for b in got.values() if b["rank"] in tp["members"]}
        check(len(hosts) == 1, f"{label}: tp group {tp['members']} spans {hosts}")


def wait_state(sock, job, state, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        info = json.loads(ctl(sock, "show", job, "--json").stdout)
        if info["state"] == state:
            return info
        time.sleep(0.1)
    return info


def main():
    tmp = tempfile.mkdtemp(prefix="hgrid-coord-")
    gridd, port, sock = start_gridd(tmp)
    workers = []
    try:
        run(port, sock, workers)
    finally:
        for w in workers:
            if w.proc.poll() is None:
                w.proc.kill()
        gridd.send_signal(signal.SIGTERM)
        rc = gridd.wait(timeout=20)
        check(rc == 0, f"gridd exits 0 on SIGTERM (got {rc})")
    print(f"coord_workers: {passes} passed, {len(failures)} failed")
    if failures:
        print("gridd log: " + os.path.join(tmp, "gridd.log"))
    return 1 if failures else 0


def run(port, sock, workers):
    # ---- 8 workers on 2 hosts, default layout
    plan = json.loads(subprocess.run([f"{BIN}/hgridctl", "plan", "--json"], capture_output=True,
                                     text=True, check=True).stdout)
    ctl(sock, "submit", "--job", "main", "--token", "tok-main")
    main_workers = start_job(port, "main", ["a", "b"], 4)
    workers += main_workers
    got = assignments_of(main_workers)
    check(all(a["generation"] == 1 and a["job"] == "main" for a in got.values()), "generation 1")
    check_against_plan(got, plan, "main")
    check_tp_local(got, "main")
    ids1 = check_ids(got, "main")
    info = wait_state(sock, "main", "running")
    check(info["state"] == "running", f"show: running (got {info['state']})")
    check(info["plan"] == plan, "show --json's plan equals plan --json")
    by_rank = {a["rank"]: (a["host"], a["device"]) for a in got.values()}
    shown = {w["rank"]: (w["host"], w["device"]) for w in info["workers"]}
    check(shown == by_rank, f"show --json workers {shown} vs assignments {by_rank}")

    # ---- refusals
    bad = Worker(port, "main", "wrong", "node-c", 0)
    workers.append(bad)
    rc = bad.wait()
    check(rc not in (0, None) and "token" in bad.err_text(), f"wrong token refused: {rc} {bad.err_text()}")
    bad = Worker(port, "main", "tok-main", "node-a", 0)
    workers.append(bad)
    rc = bad.wait()
    check(rc not in (0, None) and "node-a" in bad.err_text(), f"duplicate device refused: {rc} {bad.err_text()}")
    bad = Worker(port, "nosuchjob", "x", "node-a", 0)
    workers.append(bad)
    rc = bad.wait()
    check(rc not in (0, None) and "nosuchjob" in bad.err_text(), f"unknown job refused: {bad.err_text()}")
    r = subprocess.run([f"{BIN}/hgrid-worker", "--coordinator", "127.0.0.1:1", "--job", "j", "--token", "t",
                        "--dry-run", "--connect-timeout", "0"], capture_output=True, text=True, timeout=20)
    check(r.returncode == 1 and "127.0.0.1:1" in r.stderr and r.stderr.count("\n") == 1,
          f"unreachable gridd: one line naming the address: {r.stderr!r}")
    r = subprocess.run([f"{BIN}/hgrid-worker", "--coordinator", "127.0.0.1:1", "--job", "j", "--token", "t",
                        "--connect-timeout", "0"], capture_output=True, text=True, timeout=20)
    # without --dry-run the worker opens its GPU first: here (no GPU, or no
    # gridd at 127.0.0.1:1) that fails with one line and exit 1
    check(r.returncode == 1 and r.stderr.count("\n") == 1 and
          ("GPU 0" in r.stderr or "127.0.0.1:1" in r.stderr), f"without --dry-run: {r.stderr!r}")

    # ---- requested rank: the first worker to join asks for the last rank
    ctl(sock, "submit", "--job", "req", "--token", "tok-req", "--llm-only", "--llm-tp", "1", "--llm-dp", "2")
    env = dict(os.environ, RANK="1")
    asker = Worker(port, "req", "tok-req", "node-r", 0, ["--use-launcher-rank"], env)
    time.sleep(0.3)
    other = Worker(port, "req", "tok-req", "node-r", 1)
    workers += [asker, other]
    check(asker.next_assignment()["rank"] == 1 and other.next_assignment()["rank"] == 0,
          "requested rank honoured")
    taken = Worker(port, "req", "tok-req", "node-r", 2, ["--use-launcher-rank"], env)
    workers.append(taken)
    rc = taken.wait()
    check(rc not in (0, None) and "rank" in taken.err_text(), f"requested rank held: refused: {taken.err_text()}")

    # ---- a worker killed after assignment: others abort; its restart gets rank 5 back
    victim = next(w for w, a in got.items() if a["rank"] == 5)
    check(wait_state(sock, "main", "running")["state"] == "running", "generation 1 runs")
    victim.proc.kill()
    victim.wait()
    time.sleep(0.5)
    survivors = [w for w in main_workers if w is not victim]
    check(all(any("generation 1 aborted" in l for l in w.stderr) for w in survivors),
          "survivors are told generation 1 aborted")
    back = Worker(port, "main", "tok-main", victim.host, victim.device)
    workers.append(back)
    main_workers = survivors + [back]
    got2 = assignments_of(main_workers)
    check(got2[back]["rank"] == 5, f"the restarted worker gets rank 5 back (got {got2[back]['rank']})")
    check(all(a["generation"] == 2 for a in got2.values()), "generation 2 after the rejoin")
    check_against_plan(got2, plan, "rejoin")
    ids2 = check_ids(got2, "rejoin")
    check_rebuild(got, got2, {5}, "rejoin")
    check({(w.host, w.device): a["rank"] for w, a in got2.items()} ==
          {(w.host, w.device): a["rank"] for w, a in got.items() if w is not victim} |
          {(victim.host, victim.device): 5}, "every worker keeps its rank")

    # ---- heartbeat timeout: a stopped worker is lost after HB seconds
    frozen = next(w for w, a in got2.items() if a["rank"] == 2)
    check(wait_state(sock, "main", "running")["state"] == "running", "generation 2 runs")
    frozen.proc.send_signal(signal.SIGSTOP)
    t0 = time.time()
    others = [w for w in main_workers if w is not frozen]
    while time.time() - t0 < HB + 10 and not all(any("generation 2 aborted" in l for l in w.stderr) for w in others):
        time.sleep(0.1)
    waited = time.time() - t0
    check(all(any("generation 2 aborted" in l for l in w.stderr) for w in others),
          "a silent worker aborts the generation")
    check(HB * 0.8 <= waited <= HB + 5, f"abort after about the heartbeat timeout ({waited:.1f} s)")
    frozen.proc.kill()
    frozen.wait()
    back = Worker(port, "main", "tok-main", frozen.host, frozen.device)
    workers.append(back)
    main_workers = others + [back]
    got3 = assignments_of(main_workers)
    check(all(a["generation"] == 3 for a in got3.values()), "generation 3 once the set is whole again")
    check(got3[back]["rank"] == 2, "the replacement gets rank 2")
    ids3 = check_ids(got3, "heartbeat")
    check_rebuild(got2, got3, {2}, "heartbeat")
    check_against_plan(got3, plan, "heartbeat")

    # ---- cancel: every worker exits 0
    ctl(sock, "cancel", "main")
    ctl(sock, "cancel", "req")
    codes = [w.wait() for w in main_workers + [asker, other]]
    check(codes == [0] * len(codes), f"cancel: every worker exits 0 ({codes})")

    # ---- the example program, linked against the shared libhgrid, next to a worker
    ctl(sock, "submit", "--job", "lib", "--token", "tok-lib", "--llm-only", "--llm-tp", "2", "--llm-dp", "1")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "SLURM_PROCID")}
    env.update(HGRID_HOSTNAME="node-x", LOCAL_RANK="1")
    example = subprocess.Popen([f"{BIN}/hgrid-example-join", f"127.0.0.1:{port}", "lib", "tok-lib"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peer = Worker(port, "lib", "tok-lib", "node-x", 0)
    workers.append(peer)
    line = example.stdout.readline().strip()
    check(line == "rank 1 of 2 (llm), generation 1, tp group of 2: 0 1" and peer.next_assignment()["rank"] == 0,
          f"example program assigned: {line!r}")
    wait_state(sock, "lib", "running")
    ctl(sock, "cancel", "lib")
    out, err = example.communicate(timeout=30)
    check(example.returncode == 0 and out.startswith("released:") and peer.wait() == 0,
          f"example program released: {example.returncode} {out!r} {err!r}")

    # ---- 256 workers from one swarm: checked, ready, heartbeating until cancelled
    ctl(sock, "submit", "--job", "swarm", "--token", "tok-swarm", "--encoder-tp", "2", "--encoder-dp", "32",
        "--llm-tp", "4", "--llm-pp", "3", "--llm-dp", "16", "--micro-batch-size", "2")
    swarm = subprocess.Popen([f"{BIN}/hgrid-swarm", "--coordinator", f"127.0.0.1:{port}", "--job", "swarm",
                              "--token", "tok-swarm", "--workers", "256", "--hosts", "32", "--wait-release"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    info = wait_state(sock, "swarm", "running", timeout=60)
    check(info["state"] == "running" and len(info["workers"]) == 256, f"swarm job running: {info['state']}")
    ctl(sock, "cancel", "swarm")
    out, err = swarm.communicate(timeout=60)
    r = subprocess.run([f"{BIN}/hgrid-swarm", "--coordinator", f"127.0.0.1:{port}", "--job", "swarm",
                        "--token", "wrong", "--workers", "16"], capture_output=True, text=True, timeout=60)
    check(r.returncode == 1 and "refused by gridd" in r.stderr and "16 check(s) failed" in r.stderr,
          f"a refused swarm fails its checks: {r.returncode} {r.stderr[-300:]!r}")
    last = out.strip().splitlines()[-1] if out.strip() else ""
    check(swarm.returncode == 0 and last.startswith("workers=256 groups=244 rendezvous_s=")
          and last.endswith("gridd_rss_kib=0"), f"swarm of 256: exit {swarm.returncode}, {last!r}, {err.strip()[-500:]}")

    # ---- issue 17's layouts from one swarm each, every assignment checked:
    # colocated (each rank in both modules, ids for both) and two encoders
    # (a bridge each; the llm leaders in both).
    for job, workers, hosts, layout in (
            ("swarm-co", 64, 8, ["--mimo-layout", "colocated", "--encoder-tp", "2", "--encoder-dp", "32",
                                 "--llm-tp", "4", "--llm-dp", "16", "--micro-batch-size", "2"]),
            ("swarm-enc", 48, 6, ["--encoder", "vision:tp=2,dp=8", "--encoder", "audio:tp=1,dp=16",
                                  "--llm-offset", "32", "--llm-tp", "2", "--llm-dp", "8",
                                  "--micro-batch-size", "2"])):
        plan = json.loads(subprocess.run([f"{BIN}/hgridctl", "plan", "--json", *layout],
                                         capture_output=True, text=True).stdout)
        ctl(sock, "submit", "--job", job, "--token", "tok-" + job, *layout)
        swarm = subprocess.Popen([f"{BIN}/hgrid-swarm", "--coordinator", f"127.0.0.1:{port}", "--job", job,
                                  "--token", "tok-" + job, "--workers", str(workers), "--hosts", str(hosts),
                                  "--wait-release"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        info = wait_state(sock, job, "running", timeout=60)
        check(info["state"] == "running" and len(info["workers"]) == workers,
              f"{job} running: {info['state']}")
        ctl(sock, "cancel", job)
        out, err = swarm.communicate(timeout=60)
        last = out.strip().splitlines()[-1] if out.strip() else ""
        # every canonical group of size > 1 of every module, plus a bridge per encoder
        want = sum(len(groups) for m in plan["modules"] for kind, groups in m["groups"].items()
                   if len(groups[0]) > 1 and kind in distinct_kinds(m)) + len(plan.get("bridges", []))
        check(swarm.returncode == 0 and last.startswith(f"workers={workers} groups={want} "),
              f"{job}: exit {swarm.returncode}, {last!r} (want {want} groups), {err.strip()[-500:]}")


def distinct_kinds(module):
    """Kinds whose groups differ from every earlier kind's (one communicator each)."""
    seen, out = [], set()
    for kind, groups in module["groups"].items():
        if groups not in seen:
            seen.append(groups)
            out.add(kind)
    return out

if __name__ == "__main__":
    sys.exit(main())
