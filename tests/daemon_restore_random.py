#!/usr/bin/env python3
"""What gridd acknowledges, it restores (issue 18, docs/RELIABILITY.md): a
seeded random walk of submits (some in bursts cut by kill -9), cancels
(the job stays listed as cancelled; cancelling it again removes it; a
submit at --max-jobs drops the oldest ended one), joins, leaves,
replacements from new hosts, jobs that finish (every rank Ready, then Done)
or fail (a worker's Failure without retry; with retry: a new generation),
refusals at the limits (--max-jobs, a full job, a taken device), and
restarts by SIGTERM or kill -9 at random points: between steps, during
bursts of submits, while a cancel is in flight, while a generation forms
(after a random number of its MintRequests and Assignments), and right
after the workers heard a job end. After every restart gridd
must start, load, and show exactly the acknowledged jobs, tokens, world
sizes, generations, rank maps and, for ended jobs, their outcome and reason
as the workers' Release said. At the end a gridd with --keep-finished 1
drops every ended job, and a restart after that does not bring them back.
Workers are raw protocol peers that answer MintRequests.
HGRID_RESTORE_STEPS (default 1500) and HGRID_TEST_SEED replay or lengthen
a run."""
import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import struct
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, summary  # noqa: E402
from daemon_gridd import Peer, fb, frame, fv, one, parse  # noqa: E402
from daemon_reliability import Gridd, recv_ctl, send_ctl  # noqa: E402

STEPS = int(os.environ.get("HGRID_RESTORE_STEPS", "1500"))
SEED = int(os.environ.get("HGRID_TEST_SEED", str(int(time.time()) % 100000)))
MAX_JOBS = 6
OUTCOME = {60: "finished", 61: "failed", 62: "cancelled"}  # Release.outcome (proto Outcome)
MSG_DONE, MSG_FAILURE = 60, 61  # Envelope cases


class Job:
    def __init__(self, name, token, world):
        self.name, self.token, self.world = name, token, world
        self.generation = 0
        self.ranks = None   # after assignment: [(host, device)] by rank
        self.peers = {}     # (host, device) -> Peer, live
        self.lost = set()   # assigned ranks without a live peer
        self.outcome = None  # once ended: "finished", "failed" or "cancelled"
        self.reason = ""     # once ended: (part of) the reason its Release gave

    def submit_args(self):
        return ["--job", self.name, "--token", self.token, "--llm-only", "--llm-tp", "1",
                "--llm-dp", str(self.world), "--micro-batch-size", "1",
                "--global-batch-size", str(self.world)]


class Walk:
    def __init__(self, tmp, rng):
        self.tmp, self.rng = tmp, rng
        self.state = os.path.join(tmp, "state")
        self.jobs = {}         # acknowledged, running
        self.ended = []        # acknowledged ends (cancel, finish, failure) still listed, oldest first
        self.maybe = {}        # submitted, not acknowledged (a kill cut the reply)
        self.maybe_cancel = {}  # running jobs whose cancel a kill cut
        self.counter = 0
        self.hosts = 0
        self.restarts = {"SIGTERM": 0, "SIGKILL": 0}
        self.checked = 0
        self.checked_ended = 0
        self.killed_forming = 0
        self.cut_cancels = [0, 0]  # cancels in flight at a kill -9: acknowledged, all
        self.outcomes = {"finished": 0, "failed": 0, "cancelled": 0}
        self.start()

    def start(self, *extra):
        # --max-restarts: the walk's leaves abort generations without end;
        # a job that failed would be an ended job the walk never asked for.
        self.g = Gridd(self.tmp, "gridd", "--state-dir", self.state, "--max-jobs", str(MAX_JOBS),
                       "--ready-timeout", "3600", "--heartbeat-timeout", "3600",
                       "--max-restarts", "1000000", *extra)

    # ---- workers

    def rendezvous(self, job):
        """Answers MintRequests of the job's live peers until each got its
        Assignment; records ranks and generation."""
        peers = dict(job.peers)
        got = {}
        deadline = time.time() + 20
        while len(got) < len(peers) and time.time() < deadline:
            socks = {p.s: k for k, p in peers.items() if k not in got}
            ready, _, _ = select.select(list(socks), [], [], 0.5)
            for s in ready:
                key = socks[s]
                kind, f = peers[key].recv()
                if kind == "mint_request":
                    gen, n = one(f, 1), one(f, 2)
                    ids = [os.urandom(128) for _ in range(n)]
                    peers[key].send(frame("mint_reply", fv(1, gen) + b"".join(fb(2, x) for x in ids)))
                elif kind == "assignment":
                    got[key] = (one(f, 3), one(f, 1))
                elif kind in ("eof", "error"):
                    check(False, "seed %d: worker %s/%d dropped during a rendezvous (%s)" % (SEED, key[0], key[1], kind))
                    return False
        check(len(got) == len(peers), "seed %d: job %s: %d of %d assignments" % (SEED, job.name, len(got), len(peers)))
        if len(got) < len(peers):
            return False
        gens = {g for _, g in got.values()}
        check(len(gens) == 1 and gens.pop() == job.generation + 1, "seed %d: job %s: one new generation" % (SEED, job.name))
        job.generation += 1
        ranks = [None] * job.world
        for key, (rank, _) in got.items():
            ranks[rank] = key
        if job.ranks is not None:  # sticky: only the lost ranks moved
            for r in range(job.world):
                if r not in job.lost:
                    check(ranks[r] == job.ranks[r], "seed %d: job %s: rank %d moved" % (SEED, job.name, r))
        job.ranks, job.lost = ranks, set()
        return True

    def joined(self):
        """{job: joined workers} as gridd counts them (ListJobs on the control socket)."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.g.sock)
        send_ctl(s, 31, b"")
        kind, f = recv_ctl(s)
        s.close()
        out = {}
        for raw in (f or {}).get(1, []):
            info = parse(raw)
            out[one(info, 1, b"").decode()] = one(info, 5)
        return out

    def settle(self, job):
        """Waits until gridd has taken in every join and leave of job."""
        deadline = time.time() + 10
        while self.joined().get(job.name) != len(job.peers) and time.time() < deadline:
            time.sleep(0.005)
        check(self.joined().get(job.name) == len(job.peers),
              "seed %d: job %s: gridd counts %s workers, %d live" % (SEED, job.name, self.joined().get(job.name), len(job.peers)))

    def join(self, job, host, device, may_kill=False):
        p = Peer(self.g.port)
        p.hello(job.name, job.token, host, device)
        job.peers[(host, device)] = p
        full = len(job.peers) == job.world
        if job.ranks is not None:
            job.prev_ranks = list(job.ranks)  # the map before this join
            if (host, device) in job.ranks:
                job.lost.discard(job.ranks.index((host, device)))
            else:  # a replacement takes the lowest lost rank
                r = min(job.lost)
                job.ranks[r] = (host, device)
                job.lost.discard(r)
        if full and may_kill and self.rng.random() < 0.2:
            self.rendezvous_killed(job)
        elif full:
            self.rendezvous(job)
        else:
            self.settle(job)

    def rendezvous_killed(self, job):
        """gridd killed (kill -9) while job's next generation forms, after a
        random number of its MintRequests and Assignments reached the
        workers. A generation is saved, with the rank map it assigns (a
        replacement's new place), before its first MintRequest, so once a
        worker has seen one the restart must show it; before that the job
        may show either generation with its map (a replacement that no
        Assignment answered was never acknowledged). A first assignment's
        map, once saved, is the one gridd shows from then on."""
        peers = dict(job.peers)
        budget = self.rng.randrange(0, 2 * len(peers) + 1)  # frames the workers get
        seen, got = False, {}
        deadline = time.time() + 20
        while budget > 0 and len(got) < len(peers) and time.time() < deadline:
            socks = {p.s: k for k, p in peers.items() if k not in got}
            ready, _, _ = select.select(list(socks), [], [], 0.5)
            for s in ready[:budget]:
                key = socks[s]
                kind, f = peers[key].recv()
                budget -= 1
                if kind == "mint_request":
                    seen = True
                    ids = [os.urandom(128) for _ in range(one(f, 2))]
                    peers[key].send(frame("mint_reply", fv(1, one(f, 1)) + b"".join(fb(2, x) for x in ids)))
                elif kind == "assignment":
                    seen = True
                    got[key] = one(f, 3)
                    check(one(f, 1) == job.generation + 1, "seed %d: job %s: Assignment of generation %d" %
                          (SEED, job.name, one(f, 1)))
        self.g.proc.kill()
        self.g.proc.wait()
        self.restarts["SIGKILL"] += 1
        self.killed_forming += 1
        self.drop_all_peers()
        self.start()
        code, out, err = self.g.ctl("show", job.name, "--json")
        check(code == 0, "seed %d: show %s after a kill while it formed: %r" % (SEED, job.name, err))
        info = json.loads(out) if code == 0 else {"generation": -1, "workers": []}
        gen = info["generation"]
        check(gen == job.generation + 1 or (not seen and gen == job.generation),
              "seed %d: job %s killed while generation %d formed (%s a worker saw it): restored "
              "generation %s" % (SEED, job.name, job.generation + 1, "after" if seen else "before", gen))
        if gen == job.generation + 1:
            job.generation = gen
            shown = {w["rank"]: (w["host"], w["device"]) for w in info["workers"]}
            if job.ranks is None:  # the map gridd saved: every joined worker once, as assigned
                ranks = [shown.get(r) for r in range(job.world)]
                check(sorted(k for k in ranks if k) == sorted(peers)
                      and all(ranks[r] == k for k, r in got.items()),
                      "seed %d: job %s: saved rank map %s of workers %s, assigned %s" %
                      (SEED, job.name, shown, sorted(peers), got))
                job.ranks = ranks if sorted(k for k in ranks if k) == sorted(peers) else None
            job.lost = set(range(job.world)) if job.ranks is not None else set()
        elif job.ranks is not None:  # the generation before: its map, with or without the replacement
            shown = [tuple(w) for w in sorted((w["rank"], w["host"], w["device"]) for w in info["workers"])]
            prev = [(r, *k) for r, k in enumerate(job.prev_ranks)]
            new = [(r, *k) for r, k in enumerate(job.ranks)]
            check(shown in (prev, new), "seed %d: job %s restored in generation %d with rank map %s; "
                  "before the join %s, after %s" % (SEED, job.name, gen, shown, prev, new))
            if shown == prev:
                job.ranks = list(job.prev_ranks)
        self.verify()

    def leave(self, job, key):
        p = job.peers.pop(key)
        if self.rng.random() < 0.5:
            p.send(frame("leave", fb(1, "walk")))
        p.close()
        if job.ranks is not None:
            job.lost.add(job.ranks.index(key))
        self.settle(job)

    def drop_all_peers(self):
        for job in self.jobs.values():
            for p in job.peers.values():
                p.close()
            job.peers = {}
            if job.ranks is not None:
                job.lost = set(range(job.world))

    # ---- steps

    def new_host(self):
        self.hosts += 1
        return "h%d" % self.hosts

    def step_submit(self):
        self.counter += 1
        job = Job("j%d" % self.counter, "tok-%d-%d" % (self.counter, self.rng.randrange(10 ** 6)),
                  self.rng.randint(1, 4))
        code, _, err = self.g.ctl("submit", *job.submit_args())
        if len(self.jobs) >= MAX_JOBS:
            check(code != 0 and "--max-jobs" in err, "seed %d: submit past --max-jobs refused: %r" % (SEED, err))
            return
        check(code == 0, "seed %d: submit %s: %r" % (SEED, job.name, err))
        if code == 0:
            self.acknowledged(job)

    def acknowledged(self, job):
        """A submit gridd acknowledged: at --max-jobs the oldest ended job made room."""
        if len(self.jobs) + len(self.ended) >= MAX_JOBS:
            self.ended.pop(0)
        self.jobs[job.name] = job

    def step_burst_killed(self):
        """Submits in flight when gridd is killed: acknowledged ones stay."""
        room = MAX_JOBS - len(self.jobs)
        procs = []
        for _ in range(min(room, 3)):
            self.counter += 1
            job = Job("j%d" % self.counter, "tok-b%d" % self.counter, self.rng.randint(1, 4))
            procs.append((job, subprocess.Popen([self.ctl_path(), "--socket", self.g.sock, "submit",
                                                 *job.submit_args()],
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
        time.sleep(self.rng.uniform(0, 0.05))
        self.g.proc.kill()
        self.g.proc.wait()
        for job, p in procs:
            p.wait()
            if p.returncode == 0:
                self.acknowledged(job)
            else:
                self.maybe[job.name] = job
        self.restarts["SIGKILL"] += 1
        self.drop_all_peers()
        self.start()
        self.verify()

    def ctl_path(self):
        return os.path.join(os.environ.get("HGRID_BIN", "bin"), "hgridctl")

    def step_cancel(self):
        names = sorted(self.jobs) + [j.name for j in self.ended]
        if not names:
            return
        name = self.rng.choice(names)
        code, out, err = self.g.ctl("cancel", name)
        check(code == 0, "seed %d: cancel %s: %r" % (SEED, name, err))
        if code != 0:
            return
        if name in self.jobs:  # it ends, listed as cancelled
            job = self.jobs.pop(name)
            for p in job.peers.values():
                p.close()
            job.peers = {}
            job.outcome, job.reason = "cancelled", "cancelled by hgridctl cancel"
            self.outcomes["cancelled"] += 1
            self.ended.append(job)
        else:  # an ended job's cancel removes it
            check("removed" in out, "seed %d: cancel of the ended %s removes it: %r" % (SEED, name, out))
            self.ended = [j for j in self.ended if j.name != name]

    def step_cancel_killed(self):
        """A cancel in flight when gridd is killed: acknowledged, the job is
        restored cancelled; not acknowledged, running or cancelled."""
        if not self.jobs:
            return
        name = self.rng.choice(sorted(self.jobs))
        job = self.jobs.pop(name)
        for p in job.peers.values():
            p.close()
        job.peers = {}
        if job.ranks is not None:
            job.lost = set(range(job.world))
        proc = subprocess.Popen([self.ctl_path(), "--socket", self.g.sock, "cancel", name],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(self.rng.uniform(0, 0.03))
        self.g.proc.kill()
        self.g.proc.wait()
        proc.communicate()
        job.outcome, job.reason = "cancelled", "cancelled by hgridctl cancel"
        self.cut_cancels[1] += 1
        if proc.returncode == 0:
            self.cut_cancels[0] += 1
            self.outcomes["cancelled"] += 1
            self.ended.append(job)
        else:
            self.maybe_cancel[name] = job
        self.restarts["SIGKILL"] += 1
        self.drop_all_peers()
        self.start()
        self.verify()

    def step_join(self):
        open_jobs = [j for j in self.jobs.values() if len(j.peers) < j.world]
        if not open_jobs:
            full = [j for j in self.jobs.values() if j.peers]
            if full:  # a limit: the job is full
                job = self.rng.choice(full)
                p = Peer(self.g.port)
                p.hello(job.name, job.token, self.new_host(), 0)
                code, _, _ = p.error()
                check(code == "JOB_FULL", "seed %d: join of a full job refused: %s" % (SEED, code))
            return
        job = self.rng.choice(open_jobs)
        if job.ranks is not None:
            lost = sorted(job.lost)
            if self.rng.random() < 0.5:  # back from its own device
                self.join(job, *job.ranks[self.rng.choice(lost)], may_kill=True)
            else:  # a replacement on a new machine
                self.join(job, self.new_host(), 0, may_kill=True)
            return
        if job.peers and self.rng.random() < 0.2:  # a device that is already joined
            key = self.rng.choice(sorted(job.peers))
            p = Peer(self.g.port)
            p.hello(job.name, job.token, *key)
            check(p.error()[0] == "DUPLICATE_DEVICE", "seed %d: a taken device refused" % SEED)
            return
        self.join(job, self.new_host(), self.rng.randrange(2), may_kill=True)

    def step_leave(self):
        busy = [j for j in self.jobs.values() if j.peers]
        if not busy:
            return
        job = self.rng.choice(busy)
        self.leave(job, self.rng.choice(sorted(job.peers)))

    def released(self, job, outcome, reason):
        """Every live peer of job gets a Release with outcome; then the job
        is an acknowledged end."""
        for key, p in sorted(job.peers.items()):
            kind, f = p.recv(timeout=20)
            while kind in ("abort", "mint_request"):  # a generation that was forming
                kind, f = p.recv(timeout=20)
            check(kind == "release" and OUTCOME.get(one(f, 60)) == outcome,
                  "seed %d: job %s: %s/%d got %s %s, not a %s Release" %
                  (SEED, job.name, key[0], key[1], kind, f and one(f, 60), outcome))
            if kind == "release":
                check(reason in one(f, 1, b"").decode(), "seed %d: job %s: Release reason %r" %
                      (SEED, job.name, one(f, 1, b"")))
            p.close()
        job.peers = {}
        job.outcome, job.reason = outcome, reason
        self.outcomes[outcome] += 1
        del self.jobs[job.name]
        self.ended.append(job)
        if self.rng.random() < 0.25:  # killed the moment the workers heard: the end was saved first
            self.g.proc.kill()
            self.g.proc.wait()
            self.restarts["SIGKILL"] += 1
            self.drop_all_peers()
            self.start()
            self.verify()

    def step_finish(self):
        """Every rank of an assigned job sends Ready, then Done: it finishes."""
        whole = [j for j in self.jobs.values()
                 if j.ranks is not None and len(j.peers) == j.world and not j.lost]
        if not whole:
            return
        job = self.rng.choice(sorted(whole, key=lambda j: j.name))
        for key in job.ranks:
            job.peers[key].send(frame("ready", fv(1, job.generation)))
        for rank, key in enumerate(job.ranks):
            env = fv(1, 2) + fb(MSG_DONE, fv(1, job.generation) + fv(2, 100 + rank))
            job.peers[key].send(struct.pack(">I", len(env)) + env)
        self.released(job, "finished", "every rank finished its training (%d ranks)" % job.world)

    def step_fail(self):
        """A worker reports a Failure: without retry the job fails (before or
        after assignment); with retry its generation is aborted and, the
        worker set being whole, a new one forms with the same ranks."""
        busy = [j for j in self.jobs.values() if j.peers]
        if not busy:
            return
        job = self.rng.choice(sorted(busy, key=lambda j: j.name))
        key = self.rng.choice(sorted(job.peers))
        retry = job.ranks is not None and len(job.peers) == job.world and not job.lost \
            and self.rng.random() < 0.3
        text = "walk failure %d" % self.rng.randrange(10 ** 6)
        env = fv(1, 2) + fb(MSG_FAILURE, fv(1, job.generation) + fb(2, text) + fv(3, int(retry)))
        job.peers[key].send(struct.pack(">I", len(env)) + env)
        if retry:
            self.rendezvous(job)
            return
        self.released(job, "failed", "failed: " + text)

    def retention(self):
        """A gridd with --keep-finished 1 drops every ended job, saves that,
        and a restart does not bring them back. Returns how many it dropped."""
        if not self.ended:  # one to drop: a running job cancelled, or a new one
            if not self.jobs:
                self.step_submit()
            name = sorted(self.jobs)[0]
            code, _, err = self.g.ctl("cancel", name)
            check(code == 0, "seed %d: cancel %s: %r" % (SEED, name, err))
            job = self.jobs.pop(name)
            for p in job.peers.values():
                p.close()
            job.peers = {}
            job.outcome, job.reason = "cancelled", "cancelled by hgridctl cancel"
            self.ended.append(job)
        ended = [j.name for j in self.ended]
        self.g.stop("restore")
        self.drop_all_peers()
        self.start("--keep-finished", "1")
        deadline = time.time() + 15
        while time.time() < deadline:
            code, out, _ = self.g.ctl("list", "--json")
            listed = [j["job"] for j in json.loads(out)["jobs"]] if code == 0 else []
            if not any(n in listed for n in ended):
                break
            time.sleep(0.1)
        check(not any(n in listed for n in ended),
              "seed %d: --keep-finished 1 dropped the ended jobs: %s listed" % (SEED, listed))
        self.ended = []
        self.step_restart()  # verifies: exactly the running jobs, no ended one back
        return len(ended)

    def step_restart(self):
        sig = self.rng.choice(["SIGTERM", "SIGKILL"])
        if sig == "SIGTERM":
            self.g.proc.send_signal(signal.SIGTERM)
            check(self.g.proc.wait(timeout=60) == 0, "seed %d: gridd exits 0 on SIGTERM" % SEED)
        else:
            self.g.proc.kill()
            self.g.proc.wait()
        self.restarts[sig] += 1
        self.drop_all_peers()
        self.start()
        self.verify()

    # ---- the property

    def verify(self):
        code, out, err = self.g.ctl("list", "--json")
        check(code == 0, "seed %d: list after a restart: %r" % (SEED, err))
        listed = {j["job"]: j for j in json.loads(out)["jobs"]} if code == 0 else {}
        cut = bool(self.maybe)
        for name in list(self.maybe_cancel):  # an unacknowledged cancel: done or not, never half
            job = self.maybe_cancel.pop(name)
            state = listed.get(name, {}).get("state")
            check(state is not None, "seed %d: job %s gone after a cancel cut by kill -9" % (SEED, name))
            if state == "cancelled":
                self.outcomes["cancelled"] += 1
                self.ended.append(job)
            elif state is not None:
                job.outcome, job.reason = None, ""
                self.jobs[name] = job
        for name in list(self.maybe):  # an unacknowledged submit: there or not, never half
            job = self.maybe.pop(name)
            if name in listed:
                self.acknowledged(job)
        running = sorted(n for n, j in listed.items() if j["state"] not in OUTCOME.values())
        ended = [j.name for j in self.ended]
        check(running == sorted(self.jobs),
              "seed %d: running jobs after a restart: %s, acknowledged %s" % (SEED, running, sorted(self.jobs)))
        # An unacknowledged submit may have dropped an ended job: only the oldest.
        kept = [n for n in ended if n in listed]
        check(kept == ended or (cut and kept == ended[len(ended) - len(kept):]),
              "seed %d: ended jobs after a restart: %s, acknowledged %s" % (SEED, kept, ended))
        self.ended = [j for j in self.ended if j.name in kept]
        for job in self.ended:  # the outcome and reason its workers were told
            info = listed[job.name]
            # Its token still works: a worker that comes late gets the Release.
            p = Peer(self.g.port)
            p.hello(job.name, job.token, "late", 0)
            kind, f = p.recv()
            p.close()
            check(kind == "release" and OUTCOME.get(one(f, 60)) == job.outcome,
                  "seed %d: ended job %s: a late worker got %s" % (SEED, job.name, kind))
            self.checked_ended += 1
            check(info["state"] == job.outcome and job.reason in info["reason"]
                  and info["ended_unix_ms"] and info["generation"] == job.generation
                  and info["world_size"] == job.world,
                  "seed %d: ended job %s restored as %s (%r, gen %s), acknowledged %s (%r, gen %d)" %
                  (SEED, job.name, info["state"], info["reason"], info["generation"], job.outcome,
                   job.reason, job.generation))
        for name, job in self.jobs.items():
            info = listed.get(name)
            if not info:
                continue
            self.checked += 1
            check(info["world_size"] == job.world and info["generation"] == job.generation,
                  "seed %d: job %s restored as world %s gen %s, acknowledged %d gen %d" %
                  (SEED, name, info["world_size"], info["generation"], job.world, job.generation))
            if job.ranks is not None:
                code, out, _ = self.g.ctl("show", name, "--json")
                workers = json.loads(out)["workers"] if code == 0 else []
                got = {w["rank"]: (w["host"], w["device"]) for w in workers}
                check(got == dict(enumerate(job.ranks)),
                      "seed %d: job %s rank map %s, acknowledged %s" % (SEED, name, got, job.ranks))
            # The token: a wrong one is refused, the right one is taken.
            p = Peer(self.g.port)
            p.hello(name, job.token + "x", "probe", 0)
            check(p.error()[0] == "BAD_TOKEN", "seed %d: job %s: a wrong token refused" % (SEED, name))
            key = job.ranks[0] if job.ranks is not None else (self.new_host(), 0)
            self.join(job, *key)  # settles: the token was taken
            self.leave(job, key)


def main():
    rng = random.Random(SEED)
    print("daemon_restore_random: seed %d, %d steps (HGRID_TEST_SEED, HGRID_RESTORE_STEPS)" % (SEED, STEPS),
          flush=True)
    tmp = tempfile.mkdtemp(prefix="hgrid-restore-")
    walk = Walk(tmp, rng)
    steps = [(walk.step_submit, 14), (walk.step_cancel, 4), (walk.step_join, 40), (walk.step_leave, 16),
             (walk.step_finish, 3), (walk.step_fail, 3), (walk.step_restart, 3),
             (walk.step_burst_killed, 1), (walk.step_cancel_killed, 1)]
    table = [f for f, w in steps for _ in range(w)]
    t0 = time.time()
    done = 0
    for done in range(1, STEPS + 1):
        rng.choice(table)()
        if os.environ.get("HGRID_RESTORE_VERBOSE") and done % 100 == 0:
            print("step %d jobs %d restarts %s" % (done, len(walk.jobs), walk.restarts), flush=True)
    walk.step_restart()
    text = walk.g.log_text()
    check("Sanitizer" not in text and "runtime error" not in text, "seed %d: sanitizer report" % SEED)
    check(walk.checked > 0, "jobs were checked after restarts")
    check(walk.checked_ended > 0 and all(walk.outcomes.values()),
          "ended jobs of every outcome were checked after restarts: %d, %s" % (walk.checked_ended, walk.outcomes))
    dropped = walk.retention()
    check(dropped > 0, "--keep-finished dropped ended jobs (%d)" % dropped)
    walk.g.stop("restore")
    check(walk.killed_forming > 0 or STEPS < 200, "gridd was killed while generations formed (%d)" %
          walk.killed_forming)
    print("daemon_restore_random: %d steps, %d restarts (%d SIGTERM, %d kill -9, %d of them while a "
          "generation formed, %d while a cancel was in flight (%d acknowledged)), %d job restorations "
          "checked (%d of ended jobs; ended: %d finished, %d failed, %d cancelled), %d dropped after "
          "--keep-finished, 0 acknowledged operations lost unless a FAIL says so, %.0f s" %
          (done, sum(walk.restarts.values()), walk.restarts["SIGTERM"], walk.restarts["SIGKILL"],
           walk.killed_forming, walk.cut_cancels[1], walk.cut_cancels[0],
           walk.checked + walk.checked_ended, walk.checked_ended, walk.outcomes["finished"],
           walk.outcomes["failed"], walk.outcomes["cancelled"], dropped, time.time() - t0))
    return summary("daemon_restore_random", " (seed %d)" % SEED)


if __name__ == "__main__":
    sys.exit(main())
