#!/usr/bin/env python3
"""The gridd restart drill: gridd is killed with SIGKILL at random moments
(right after submits, while workers join and ranks are assigned, while 26
workers heartbeat) and restarted on the same --state-dir. No job may be
lost; running generations carry on with the same ranks and no new
assignment; workers (dry-run hgrid-worker and the libhgrid example program)
reconnect by themselves, keep heartbeating, and `hgridctl show --json`
agrees with them. Stdlib only; HGRID_TEST_SEED replays a run."""
import json
import os
import queue
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, failures, summary  # noqa: E402

BIN = os.environ.get("HGRID_BIN", "bin")
HB = 2.0  # gridd's --heartbeat-timeout; dry-run workers beat every HB/3
RESUME = 5.0  # gridd's --resume-timeout
SEED = int(os.environ.get("HGRID_TEST_SEED", str(time.time_ns() % 1000000)))
rng = random.Random(SEED)


class Gridd:
    """gridd on a fixed port and state directory, restartable."""

    def __init__(self, tmp):
        self.tmp, self.state = tmp, os.path.join(tmp, "state")
        self.sock, self.port, self.proc, self.starts = os.path.join(tmp, "ctl.sock"), 0, None, 0

    def start(self):
        self.starts += 1
        port_file = os.path.join(self.tmp, "port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        self.log = os.path.join(self.tmp, "gridd.%d.log" % self.starts)
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [f"{BIN}/gridd", "--listen", "127.0.0.1:%d" % self.port, "--port-file", port_file,
                 "--control", self.sock, "--state-dir", self.state, "--heartbeat-timeout", str(HB),
                 "--resume-timeout", str(RESUME)],
                stdout=log, stderr=log)
        end = time.time() + 20
        while time.time() < end:
            if os.path.exists(port_file) and open(port_file).read().endswith("\n"):
                self.port = int(open(port_file).read())
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError("gridd did not start; see " + self.log)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def ctl(self, *args):
        r = subprocess.run([f"{BIN}/hgridctl", "--socket", self.sock, *args], capture_output=True,
                           text=True, timeout=30)
        return r.returncode, r.stdout, r.stderr

    def show(self, job):
        code, out, err = self.ctl("show", job, "--json")
        return json.loads(out) if code == 0 else {"state": "missing: " + err.strip()}


class Worker:
    """A process whose assignments (one line each on stdout) and stderr lines
    are collected as they come."""

    def __init__(self, argv, env=None, parse=json.loads):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env)
        self.assignments, self.stderr, self.parse = queue.Queue(), [], parse
        self.all = []  # every assignment seen
        threading.Thread(target=self._out, daemon=True).start()
        threading.Thread(target=self._err, daemon=True).start()

    def _out(self):
        for line in self.proc.stdout:
            if line.strip():
                a = self.parse(line)
                if a:
                    self.all.append(a)
                    self.assignments.put(a)

    def _err(self):
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())

    def count(self, text):
        return sum(text in line for line in list(self.stderr))

    def drain(self):
        got = []
        while True:
            try:
                got.append(self.assignments.get_nowait())
            except queue.Empty:
                return got


def dry_worker(port, job, host, device, extra=()):
    w = Worker([f"{BIN}/hgrid-worker", "--coordinator", f"127.0.0.1:{port}", "--job", job, "--token",
                "tok-" + job, "--host", host, "--device", str(device), "--dry-run", "--json",
                "--heartbeat-timeout", str(HB), *extra])
    w.host, w.device = host, device
    return w


def parse_example(line):
    """'rank 1 of 2 (llm), generation 1, tp group of 2: 0 1' -> {rank, generation}."""
    if not line.startswith("rank "):
        return None
    words = line.replace(",", "").split()
    return {"rank": int(words[1]), "generation": int(words[6])}


def example_worker(port, job, host, device):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "SLURM_PROCID")}
    env.update(HGRID_HOSTNAME=host, LOCAL_RANK=str(device))
    w = Worker([f"{BIN}/hgrid-example-join", f"127.0.0.1:{port}", job, "tok-" + job], env=env,
               parse=parse_example)
    w.host, w.device = host, device
    return w


JOBS = {  # name: (layout flags, hosts, GPUs per host)
    "a": ([], ["node-a", "node-b"], 4),
    "b": (["--encoder-tp", "2", "--encoder-dp", "2", "--llm-tp", "2", "--llm-dp", "2", "--llm-pp", "3",
           "--global-batch-size", "6"], ["node-c", "node-d"], 8),
    "c": (["--llm-only", "--llm-tp", "2", "--llm-dp", "1"], ["node-e"], 2),
}


def start_workers(port, workers, half):
    """Starts the first (half 0) or second (half 1) half of every job's workers."""
    for job, (_, hosts, per_host) in JOBS.items():
        slots = [(h, d) for h in hosts for d in range(per_host)]
        n = len(slots) // 2
        for h, d in slots[:n] if half == 0 else slots[n:]:
            # job c: one libhgrid program beside one dry-run worker
            make = example_worker if (job, d) == ("c", 1) else dry_worker
            workers.setdefault(job, []).append(make(port, job, h, d))


def wait_joined(g, counts, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        if all(len(g.show(job).get("workers", [])) >= n for job, n in counts.items()):
            return True
        time.sleep(0.05)
    return False


def settle(g, workers, timeout=30):
    """Waits until every job runs with each worker's latest assignment in the
    current generation and a heartbeat from every worker; returns {job: show}."""
    end = time.time() + timeout
    while True:
        shows = {job: g.show(job) for job in JOBS}
        ok = all(s["state"] == "running" and all(w.all and w.all[-1]["generation"] == s["generation"]
                                                 for w in workers[job])
                 and all(x["last_heartbeat_ms"] >= 0 for x in s["workers"])
                 for job, s in shows.items())
        if ok or time.time() > end:
            return shows
        time.sleep(0.1)


def check_consistent(label, shows, workers):
    """show --json agrees with the workers: every rank once, each at the host
    and device that was assigned it, ready and heartbeating."""
    for job, s in shows.items():
        check(s["state"] == "running", f"{label}: job {job} running (got {s['state']})")
        if s["state"] != "running":
            continue
        want = {w.all[-1]["rank"]: (w.host, w.device) for w in workers[job] if w.all}
        shown = {x["rank"]: (x["host"], x["device"]) for x in s["workers"]}
        check(shown == want and sorted(shown) == list(range(s["world_size"])),
              f"{label}: job {job} show --json ranks {shown} vs workers {want}")
        check(all(x["state"] == "ready" for x in s["workers"]), f"{label}: job {job} all ready")
        ages = [x["last_heartbeat_ms"] for x in s["workers"]]
        check(all(0 <= a < HB * 1000 for a in ages), f"{label}: job {job} heartbeat ages {ages}")
    for job, ws in workers.items():
        for w in ws:
            check(w.proc.poll() is None, f"{label}: {job} {w.host}/{w.device} still running "
                                         f"(exit {w.proc.poll()}): {w.stderr[-2:]}")
            ranks = {a["rank"] for a in w.all}
            check(len(ranks) == 1, f"{label}: {job} {w.host}/{w.device} kept its rank: {ranks}")


def restart_while_running(g, workers, n):
    """Kills gridd while every job heartbeats: after the restart each
    generation carries on, without a single new assignment."""
    before = {job: g.show(job) for job in JOBS}
    gens = {job: s["generation"] for job, s in before.items()}
    lost = {id(w): w.count("lost gridd") for ws in workers.values() for w in ws}
    back = {id(w): w.count("reconnected to gridd") for ws in workers.values() for w in ws}
    time.sleep(rng.uniform(0.1, 1.0))
    g.kill()
    down = rng.uniform(0.05, 1.5)
    time.sleep(down)
    t0 = time.time()
    g.start()
    label = f"restart {n} (down {down:.2f} s)"
    shows = settle(g, workers)
    resumed = time.time() - t0
    check(all(s.get("generation") == gens[job] for job, s in shows.items()),
          f"{label}: generations kept {gens} -> {[s.get('generation') for s in shows.values()]}")
    check_consistent(label, shows, workers)
    for job, ws in workers.items():
        for w in ws:
            check(not w.drain(), f"{label}: {job} {w.host}/{w.device} got no new assignment")
            check(w.count("lost gridd") == lost[id(w)] + 1 and
                  w.count("reconnected to gridd") == back[id(w)] + 1,
                  f"{label}: {job} {w.host}/{w.device} logs one loss and one reconnection")
    lines = [l for l in open(g.log).read().splitlines() if "generation resumed by all" in l]
    check(len(lines) == len(JOBS), f"{label}: every job resumed its generation: {lines}")
    # "... gridd: notice job=J gen=G generation resumed by all workers, ... after_start_ms=M"
    after = {re.search(r" job=(\S+) ", l).group(1): int(re.search(r" after_start_ms=(\d+)", l).group(1)) / 1000
             for l in lines}
    return down, after, resumed


def main():
    print(f"daemon_restart: seed {SEED} (HGRID_TEST_SEED={SEED} replays it)")
    tmp = tempfile.mkdtemp(prefix="hgrid-restart-")
    g = Gridd(tmp)
    workers = {}  # job: [Worker]
    t_start = time.time()
    try:
        g.start()
        # ---- killed right after the submits: the jobs survive
        for job, (flags, _, _) in JOBS.items():
            code, _, err = g.ctl("submit", "--job", job, "--token", "tok-" + job, *flags)
            check(code == 0, f"submit {job}: {err}")
        g.kill()
        g.start()
        code, out, _ = g.ctl("list")
        check(code == 0 and all(f"{job}:" in out or job in out for job in JOBS), f"jobs after restart 0: {out}")

        # ---- killed while half of the 26 workers have joined
        start_workers(g.port, workers, 0)
        check(wait_joined(g, {job: len(ws) for job, ws in workers.items()}), "half the workers joined")
        time.sleep(rng.uniform(0.0, 0.5))
        g.kill()
        time.sleep(rng.uniform(0.05, 1.0))
        g.start()
        start_workers(g.port, workers, 1)
        shows = settle(g, workers, timeout=40)
        check_consistent("killed while joining", shows, workers)
        for ws in workers.values():
            for w in ws:
                w.drain()

        # ---- killed while every worker heartbeats, several times
        # down: gridd dead; resumed: gridd start -> each job's generation
        # resumed (gridd's log; job c holds the libhgrid example, which polls
        # once a second); settled: gridd start -> every worker seen
        # heartbeating in show --json
        for down, resumed, settled in [restart_while_running(g, workers, n) for n in range(1, 5)]:
            each = ", ".join(f"{job} {t:.2f} s" for job, t in sorted(resumed.items()))
            print(f"daemon_restart: down {down:.2f} s; generations resumed after gridd started: {each}; "
                  f"every worker heartbeating after {settled:.2f} s", flush=True)

        # ---- a worker dies while gridd is down: the others resume, and when
        # it is not back within --resume-timeout they get Abort; its
        # replacement takes its rank in the next generation
        dead = next(w for w in workers["a"] if w.all[-1]["rank"] == 2)
        gen = g.show("a")["generation"]
        g.kill()
        dead.proc.kill()
        dead.proc.wait()
        time.sleep(rng.uniform(0.05, 0.5))
        t0 = time.time()
        g.start()
        others = [w for w in workers["a"] if w is not dead]
        end = time.time() + RESUME + 10
        while time.time() < end and not all(w.count("did not resume it within") for w in others):
            time.sleep(0.05)
        waited = time.time() - t0
        check(all(w.count(f"generation {gen} aborted: 1 of 8 workers did not resume it within") == 1
                  for w in others), f"the 7 others are aborted when rank 2 does not come back: "
                                    f"{others[0].stderr[-1:]}")
        check(RESUME - 0.5 <= waited <= RESUME + 3, f"after --resume-timeout ({waited:.2f} s)")
        workers["a"][workers["a"].index(dead)] = repl = dry_worker(g.port, "a", dead.host, dead.device)
        shows = settle(g, workers)
        check(shows["a"].get("generation") == gen + 1 and repl.all and repl.all[-1]["rank"] == 2,
              f"generation {gen + 1} with the restarted worker as rank 2")
        check(shows["b"].get("generation") == 1 and shows["c"].get("generation") == 1,
              "the other jobs resumed their generation")
        check_consistent("a worker lost while gridd was down", shows, workers)

        # ---- killed while a new generation forms: a worker is replaced while
        # the leader of its tp group (rank 4, which mints that group's new id:
        # only the groups holding rank 5 get new ones) is stopped, so minting stalls
        by_rank = {w.all[-1]["rank"]: i for i, w in enumerate(workers["a"])}
        victim, leader = workers["a"][by_rank[5]], workers["a"][by_rank[4]]
        gen = g.show("a")["generation"]
        victim.proc.kill()
        victim.proc.wait()
        leader.proc.send_signal(signal.SIGSTOP)
        repl = dry_worker(g.port, "a", victim.host, victim.device)
        workers["a"][by_rank[5]] = repl
        end = time.time() + 10
        while g.show("a")["state"] != "minting" and time.time() < end:
            time.sleep(0.02)
        check(g.show("a")["state"] == "minting", "job a is minting its next generation")
        time.sleep(rng.uniform(0.0, 0.5))
        g.kill()
        leader.proc.send_signal(signal.SIGCONT)
        time.sleep(rng.uniform(0.05, 0.5))
        g.start()
        shows = settle(g, workers)
        check(shows["a"].get("generation", 0) > gen, f"a new generation for job a after {gen}")
        check(repl.all and repl.all[-1]["rank"] == victim.all[-1]["rank"],
              "the replacement took the victim's rank")
        check_consistent("killed while a generation formed", shows, workers)

        # ---- every job is still there; cancel releases every worker
        for job in JOBS:
            check(g.ctl("cancel", job)[0] == 0, f"cancel {job}")
        for job, ws in workers.items():
            for w in ws:
                try:
                    rc = w.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    rc = None
                check(rc == 0, f"{job} {w.host}/{w.device} released, exit {rc}")
        # ---- gridd gone for good: workers give up after --reconnect-timeout
        check(g.ctl("submit", "--job", "d", "--token", "tok-d", "--llm-only", "--llm-tp", "1", "--llm-dp", "2")[0] == 0,
              "submit d")
        patient = dry_worker(g.port, "d", "node-f", 0, ["--reconnect-timeout", "1"])
        hasty = dry_worker(g.port, "d", "node-f", 1, ["--reconnect-timeout", "0"])
        workers["d"] = [patient, hasty]
        patient.assignments.get(timeout=20)
        hasty.assignments.get(timeout=20)
        g.proc.send_signal(signal.SIGTERM)
        check(g.proc.wait(timeout=20) == 0, "gridd exits 0 on SIGTERM")
        t0 = time.time()
        check(hasty.proc.wait(timeout=20) == 1 and hasty.count("lost the connection to gridd") == 1,
              f"--reconnect-timeout 0: exit 1 at once: {hasty.stderr[-1:]}")
        check(patient.proc.wait(timeout=20) == 1 and 0.8 < time.time() - t0 < 5 and
              patient.count("could not reconnect within 1 s") == 1,
              f"--reconnect-timeout 1: exit 1 after about 1 s: {patient.stderr[-1:]}")
        logs = "".join(open(os.path.join(tmp, "gridd.%d.log" % i)).read() for i in range(1, g.starts + 1))
        check("tok-" not in logs, "no token in any gridd log (restores included)")
    finally:
        for ws in workers.values():
            for w in ws:
                if w.proc.poll() is None:
                    w.proc.kill()
        if g.proc and g.proc.poll() is None:
            g.proc.kill()
    if failures:
        print("gridd logs: " + tmp)
    return summary("daemon_restart", f" in {time.time() - t_start:.1f} s (seed {SEED})")


if __name__ == "__main__":
    sys.exit(main())
