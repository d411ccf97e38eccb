#!/usr/bin/env python3
"""Jobs that end (issue 21), on CPUs with dry-run workers: a job finishes
when every rank reported done (workers exit 0, `hgridctl wait` 0), fails
when a rank fails for good (--fail-at-step: every worker exits 1, wait 1)
or past --max-restarts (workers killed), is cancelled (wait 1), and `wait
--timeout` gives up with exit 3. Ended jobs stay listed with their outcome
and end time for --keep-finished, then go, from the state file too. gridd
killed and restarted on its --state-dir in each state (waiting, running with
one rank done, finished, failed, cancelled) keeps each one; a `wait` running
through the restart still returns the outcome. A worker started 2 s before
gridd joins once gridd listens. /metrics exports per job and module the
latest step, loss and tokens/s and counts ended jobs; dry runs report no
loss; `hgridctl watch` on a terminal draws the loss sparkline. By hand on
the wire: Failure with retry starts the next generation, Done before Ready
is refused, a Hello for an ended job gets its Release. Stdlib only."""
import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, summary  # noqa: E402
import daemon_gridd as d  # noqa: E402  (the raw gridd client and protobuf helpers)

d.check = check  # its checks count here
d.MSG.update(done=60, failure=61)
d.MSG_NAME.update({60: "done", 61: "failure"})
OUTCOME_FAILED = 61

BIN = os.environ.get("HGRID_BIN", "bin")
HB = 3.0      # gridd's --heartbeat-timeout (the example program beats every second)
BEAT = 1.0    # dry-run workers' --heartbeat-timeout: they beat every BEAT/3
KEEP = 3      # gridd's --keep-finished for the retention check (120 before it), seconds
LAYOUT = ["--llm-only", "--llm-tp", "1", "--llm-dp", "2", "--global-batch-size", "2",
          "--micro-batch-size", "1"]
MIMO = ["--encoder-tp", "1", "--encoder-dp", "1", "--llm-tp", "1", "--llm-dp", "1",
        "--global-batch-size", "1", "--micro-batch-size", "1"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Gridd:
    """gridd on a fixed port and state directory, restartable."""

    def __init__(self, tmp, port, extra=()):
        self.tmp, self.port, self.extra, self.starts = tmp, port, list(extra), 0
        self.keep = 120
        self.sock, self.state = os.path.join(tmp, "ctl.sock"), os.path.join(tmp, "state")

    def start(self):
        self.starts += 1
        self.log = os.path.join(self.tmp, "gridd.%d.log" % self.starts)
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [f"{BIN}/gridd", "--listen", "127.0.0.1:%d" % self.port, "--control", self.sock,
                 "--state-dir", self.state, "--heartbeat-timeout", str(HB), "--keep-finished",
                 str(self.keep), "--resume-timeout", "5", "--metrics", "127.0.0.1:0", *self.extra],
                stdout=log, stderr=log)
        end = time.time() + 20
        while time.time() < end:
            m = re.search(r"serving metrics addr=[0-9.]+:(\d+) ", open(self.log).read())
            if m and os.path.exists(self.sock) and "ready:" in open(self.log).read():
                self.metrics_port = int(m.group(1))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError("gridd did not start; see " + open(self.log).read())

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=20)

    def ctl(self, *args, timeout=30):
        r = subprocess.run([f"{BIN}/hgridctl", "--socket", self.sock, *args], capture_output=True,
                           text=True, timeout=timeout)
        return r.returncode, r.stdout, r.stderr

    def jobs(self):
        code, out, _ = self.ctl("list", "--json")
        return {j["job"]: j for j in json.loads(out)["jobs"]} if code == 0 else {}

    def submit(self, job, layout=LAYOUT):
        code, out, err = self.ctl("submit", "--job", job, "--token", "tok", *layout)
        check(code == 0, f"submit {job}: {out}{err}")

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            return r.read().decode()


class Proc:
    """A program whose output is collected as it comes."""

    def __init__(self, argv, env=None):
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env)
        self.lines = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def wait(self, timeout=30):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "timeout"

    def text(self):
        return "\n".join(self.lines)


def worker(g, job, device, *extra, host="h"):
    return Proc([f"{BIN}/hgrid-worker", "--coordinator", f"127.0.0.1:{g.port}", "--job", job,
                 "--token", "tok", "--host", host, "--device", str(device), "--dry-run",
                 "--heartbeat-timeout", str(BEAT), *extra])


def waiter(g, job, *extra):
    return Proc([f"{BIN}/hgridctl", "--socket", g.sock, "wait", job, "--json", *extra])


def outcome(w):
    """The last JSON line of a finished `hgridctl wait --json`."""
    for line in reversed(w.lines):
        if line.startswith("{"):
            return json.loads(line)
    return {}


def until(cond, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def sample(text, name, **labels):
    """The value of metric name{labels} in an exposition, or None."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(r"^%s\{%s\} (\S+)$" % (re.escape(name), re.escape(want)), text, re.M)
    return float(m.group(1)) if m else None


def finish(g):
    """Every rank done: finished; workers exit 0, wait 0, kept with its end time."""
    g.submit("fin")
    w = waiter(g, "fin")
    ws = [worker(g, "fin", d, "--steps", "4", "--step-ms", "100") for d in (0, 1)]
    rcs = [p.wait() for p in ws]
    check(rcs == [0, 0], f"finish: workers exit 0: {rcs} {ws[0].text()[-300:]}")
    check(all("released: job finished" in p.text() for p in ws),
          "finish: workers say the job finished")
    check(w.wait() == 0, f"finish: wait exits 0: {w.text()}")
    o = outcome(w) or {"ended_unix_ms": 0}
    check(o.get("state") == "finished" and o.get("timed_out") is False and
          "every rank finished" in o.get("reason", "") and o.get("ended_unix_ms", 0) > 0,
          f"finish: wait --json: {o}")
    job = g.jobs().get("fin", {})
    check(job.get("state") == "finished" and job.get("ended_unix_ms") == o.get("ended_unix_ms"),
          f"finish: list keeps it with its end time: {job}")
    code, out, _ = g.ctl("list")
    check(code == 0 and re.search(r"^fin +finished +1 +0/2 +20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC$",
                                  out, re.M), f"finish: list's text shows the end time: {out}")
    code, out, _ = g.ctl("show", "fin", "--json")
    show = json.loads(out) if code == 0 else {}
    check([x["state"] for x in show.get("workers", [])] == ["done", "done"],
          f"finish: show's workers are done: {show.get('workers')}")
    code, out, _ = g.ctl("watch", "fin", "--json", "--interval", "0.1")
    lines = [json.loads(line) for line in out.splitlines()]
    check(code == 0 and len(lines) == 1 and lines[0]["state"] == "finished" and
          lines[0]["modules"][0]["step"] == 4 and lines[0]["workers"][0]["loss"] is None,
          f"finish: watch shows the ended job once (step 4, dry run: no loss) and exits: {out[:300]}")
    code, out, _ = g.ctl("wait", "fin")
    check(code == 0 and out.startswith("job fin finished at "), f"finish: wait again: {code} {out}")
    return o["ended_unix_ms"]


def fail(g):
    """A rank fails for good: failed; every worker exits 1, wait 1."""
    g.submit("bad")
    w = waiter(g, "bad")
    ws = [worker(g, "bad", 0, "--steps", "50", "--step-ms", "50"),
          worker(g, "bad", 1, "--steps", "50", "--step-ms", "50", "--fail-at-step", "3")]
    rcs = [p.wait() for p in ws]
    check(rcs == [1, 1], f"fail: both workers exit 1: {rcs}")
    check("released: job failed" in ws[0].text() and "--fail-at-step" in ws[0].text(),
          f"fail: the other worker says why: {ws[0].text()[-300:]}")
    check(w.wait() == 1, "fail: wait exits 1")
    o = outcome(w)
    check(o.get("state") == "failed" and re.search(r"rank \d \(h/1\) failed: dry run: failure at "
                                                   r"step 3", o.get("reason", "")),
          f"fail: the reason names the rank: {o}")


def restarts(g):
    """Workers killed past --max-restarts 1: failed, the survivor exits 1."""
    g.submit("crash")
    w = waiter(g, "crash")
    a, b = worker(g, "crash", 0), worker(g, "crash", 1)
    check(until(lambda: g.jobs().get("crash", {}).get("state") == "running"), "restarts: running")
    b.proc.kill()
    b.wait()
    check(until(lambda: g.jobs().get("crash", {}).get("state") == "waiting"),
          "restarts: generation 1 aborted, waiting for the worker")
    b = worker(g, "crash", 1)
    check(until(lambda: g.jobs().get("crash", {}).get("generation") == 2 and
                g.jobs()["crash"]["state"] == "running"), "restarts: generation 2 runs")
    b.proc.kill()
    b.wait()
    check(a.wait() == 1, f"restarts: the survivor exits 1: {a.text()[-200:]}")
    check(w.wait() == 1, "restarts: wait exits 1")
    o = outcome(w)
    check(o.get("state") == "failed" and "--max-restarts" in o.get("reason", ""),
          f"restarts: failed, saying --max-restarts: {o}")


def cancel(g):
    """hgridctl cancel: cancelled; workers exit 0, wait 1; timeout: exit 3."""
    g.submit("can")
    code, out, err = g.ctl("wait", "can", "--timeout", "0.5", "--json")
    o = json.loads(out) if out.startswith("{") else {}
    check(code == 3 and o.get("timed_out") is True and o.get("state") == "waiting" and
          o.get("ended_unix_ms") is None and "still waiting after 0.5 s" in err,
          f"wait --timeout: exit 3: {code} {out} {err}")
    w = waiter(g, "can")
    ws = [worker(g, "can", d) for d in (0, 1)]
    check(until(lambda: g.jobs().get("can", {}).get("state") == "running"), "cancel: running")
    code, out, _ = g.ctl("cancel", "can")
    check(code == 0, f"cancel: {out}")
    check([p.wait() for p in ws] == [0, 0], "cancel: workers exit 0")
    check(w.wait() == 1 and outcome(w).get("state") == "cancelled", f"cancel: wait exits 1: {w.text()}")
    check(g.jobs().get("can", {}).get("state") == "cancelled", "cancel: listed as cancelled")


def restart_in_each_state(g, fin_ended):
    """gridd killed and restarted: every job keeps its state; a running job with
    one rank done finishes after the restart; a wait survives the restart."""
    g.submit("idle")
    g.submit("half")
    w = waiter(g, "half")
    fast = worker(g, "half", 0, "--steps", "2", "--step-ms", "100", "--reconnect-timeout", "20")
    slow = worker(g, "half", 1, "--steps", "40", "--step-ms", "100", "--reconnect-timeout", "20")
    check(until(lambda: any("trained 2 steps" in line for line in fast.lines)),
          "restart: one rank done before the restart")
    before = g.jobs()
    g.kill()
    g.start()
    after = g.jobs()
    for name in ("idle", "fin", "bad", "crash", "can"):
        check(after.get(name, {}).get("state") == before.get(name, {}).get("state") and
              after.get(name, {}).get("ended_unix_ms") == before.get(name, {}).get("ended_unix_ms"),
              f"restart: {name} kept: {before.get(name)} -> {after.get(name)}")
    check(after.get("fin", {}).get("ended_unix_ms") == fin_ended, "restart: fin's end time kept")
    check(after.get("half", {}).get("state") in ("resuming", "running"),
          f"restart: half resumes: {after.get('half')}")
    check([fast.wait(), slow.wait()] == [0, 0], f"restart: half finishes, workers exit 0: "
          f"{fast.text()[-300:]} {slow.text()[-300:]}")
    check(w.wait() == 0 and outcome(w).get("state") == "finished",
          f"restart: a wait through the restart returns finished: {w.text()}")
    check("lost gridd" in w.text() and "gridd is back" in w.text(),
          f"restart: wait said gridd was away and back: {w.text()}")
    g.ctl("cancel", "idle")


def retention(g):
    """Past --keep-finished ended jobs go, from the state file too."""
    g.kill()
    g.keep = KEEP
    g.start()
    check(until(lambda: not g.jobs().get("fin"), 2), f"retention: fin, ended long ago, dropped at "
          f"a restart with --keep-finished {KEEP}: {g.jobs()}")
    code, _, err = g.ctl("show", "fin")
    check(code == 1 and "no job named 'fin'" in err, f"retention: show fin: {err}")
    g.submit("short")
    ws = [worker(g, "short", d, "--steps", "1", "--step-ms", "50") for d in (0, 1)]
    check([p.wait() for p in ws] == [0, 0], "retention: short finished")
    short = g.jobs().get("short", {})
    check(short.get("state") == "finished", f"retention: short listed: {short}")
    gone = until(lambda: not g.jobs(), KEEP + 5)
    after = time.time() * 1000 - short.get("ended_unix_ms", 0)
    check(gone and KEEP * 1000 - 100 <= after <= KEEP * 1000 + 5000,
          f"retention: dropped {KEEP} s after it ended ({after:.0f} ms): {g.jobs()}")
    g.kill()
    g.start()
    check(g.jobs() == {}, "retention: none comes back after a restart")


def early_worker(g):
    """A worker started 2 s before gridd joins once it listens."""
    g.submit("early")
    g.stop()
    p = worker(g, "early", 0, "--steps", "2", "--step-ms", "100")
    q = worker(g, "early", 1, "--steps", "2", "--step-ms", "100")
    time.sleep(2)
    check(p.proc.poll() is None, f"early: the worker waits for gridd: {p.text()}")
    g.start()
    check([p.wait(), q.wait()] == [0, 0], f"early: both finish: {p.text()}")
    check(re.search(r"connected to gridd at 127\.0\.0\.1:\d+ after (?:[1-9]|\d\d+)\.\d s \([2-9]\d* attempts\)", p.text()),
          f"early: it says how long it waited: {p.text()}")
    code, _, _ = g.ctl("wait", "early")
    check(code == 0, "early: the job finished")
    w = Proc([f"{BIN}/hgrid-worker", "--coordinator", f"127.0.0.1:{free_port()}", "--job", "x",
              "--token", "t", "--dry-run", "--connect-timeout", "1.5"])
    check(w.wait() == 1 and "no gridd at 127.0.0.1:" in w.text() and "within 1.5 s" in w.text(),
          f"early: --connect-timeout gives up: {w.text()}")


def srun(g, tmp):
    """srun-style launch through scripts/hgrid-srun.sh returns when the job ends."""
    g.submit("slurm")
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    tasks = []
    for rank in (0, 1):
        env = dict(os.environ, PATH=os.path.abspath(BIN) + os.pathsep + os.environ["PATH"],
                   SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank), SLURMD_NODENAME="node1",
                   HGRID_COORDINATOR=f"127.0.0.1:{g.port}", HGRID_JOB="slurm", HGRID_TOKEN="tok")
        env.pop("HGRID_WORKER", None)
        env.pop("CUDA_VISIBLE_DEVICES", None)
        tasks.append(Proc([os.path.join(root, "scripts/hgrid-srun.sh"), "--dry-run", "--steps", "3",
                           "--step-ms", "100", "--use-launcher-rank"], env=env))
    t0 = time.time()
    rcs = [t.wait(timeout=30) for t in tasks]
    check(rcs == [0, 0] and time.time() - t0 < 20,
          f"srun: both tasks return 0 when the job ends: {rcs} {tasks[0].text()[-300:]}")


def metrics_and_watch(g):
    """/metrics: step, loss, tokens/s per job and module; ended jobs counted;
    watch's sparkline on a terminal."""
    g.submit("mimo", MIMO)
    env = dict(os.environ, HGRID_HOSTNAME="m")
    ex = [Proc([f"{BIN}/hgrid-example-join", f"127.0.0.1:{g.port}", "mimo", "tok", "4"],
               env=dict(env, LOCAL_RANK=str(d))) for d in (0, 1)]
    check(until(lambda: (sample(g.metrics(), "gridd_job_step", job="mimo", module="llm") or 0) >= 3),
          "metrics: the llm's step")
    text = g.metrics()
    step = sample(text, "gridd_job_step", job="mimo", module="llm")
    loss = sample(text, "gridd_job_loss", job="mimo", module="llm")
    tok = sample(text, "gridd_job_tokens_per_second", job="mimo", module="encoder")
    check(loss is not None and abs(loss - 1 / step) < 1e-6 and tok == 1000,
          f"metrics: llm loss 1/step ({loss} at {step}), encoder 1000 tokens/s ({tok})")
    # A terminal: the loss sparkline per module.
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(f"{BIN}/hgridctl", [f"{BIN}/hgridctl", "--socket", g.sock, "watch", "mimo",
                                     "--interval", "0.2"])
    seen = b""
    end = time.time() + 15
    while time.time() < end and b"(last " not in seen:
        try:
            seen += os.read(fd, 65536)
        except OSError:
            break
    os.kill(pid, signal.SIGINT)
    os.waitpid(pid, 0)
    os.close(fd)
    screen = seen.decode(errors="replace")
    check(re.search(r"llm +loss [\u2581-\u2588]{2,} 1\.0000 \.\. 0\.[0-9]{4} \(last \d+ reports\)",
                    screen), f"watch: a loss sparkline on a terminal: {screen[-600:]}")
    check([p.wait() for p in ex] == [0, 0], f"metrics: example workers finish: {ex[0].text()}")
    text = g.metrics()
    check(sample(text, "gridd_jobs_ended_total", outcome="finished") >= 1 and
          sample(text, "gridd_jobs", state="finished") >= 1,
          "metrics: finished jobs counted")
    # A dry run exports steps and no loss.
    g.submit("dry")
    ws = [worker(g, "dry", d, "--step-ms", "100") for d in (0, 1)]
    check(until(lambda: (sample(g.metrics(), "gridd_job_step", job="dry", module="llm") or 0) >= 2),
          "metrics: a dry run's step")
    check(sample(g.metrics(), "gridd_job_loss", job="dry", module="llm") is None,
          "metrics: a dry run has no loss sample")
    g.ctl("cancel", "dry")
    check([p.wait() for p in ws] == [0, 0], "metrics: dry workers released")
    text = g.metrics()
    check(sample(text, "gridd_jobs_ended_total", outcome="cancelled") == 1, "metrics: cancelled counted")


def raw_protocol(g):
    """By hand: a Failure that a restart may cure starts the next generation at
    once; Done before Ready is refused; past --max-restarts the job fails and
    a Hello for it gets its Release with the outcome."""
    g.submit("raw")
    peers = d.join_all(g, "raw", "tok", [("r", 0), ("r", 1)])
    got, _ = d.rendezvous(peers, 1)
    check(len(got) == 2, "raw: generation 1 assigned")
    for p in peers:
        p.send(d.frame("ready", d.fv(1, 1)))
    peers[1].send(d.frame("failure", d.fv(1, 1) + d.fb(2, b"nccl timeout") + d.fv(3, 1)))
    aborts = [p.recv() for p in peers]
    check(all(k == "abort" and b"rank 1 (r/1) failed: nccl timeout" in d.one(f, 2, b"")
              for k, f in aborts), f"raw: Failure(retry) aborts the generation: {aborts}")
    got, _ = d.rendezvous(peers, 2)
    check(len(got) == 2, "raw: generation 2 forms at once (nobody left)")
    peers[0].send(d.frame("done", d.fv(1, 2) + d.fv(2, 7)))
    code, msg, closed = peers[0].error()
    check(code == "BAD_REQUEST" and "Done from rank" in msg and "before its Ready" in msg and closed,
          f"raw: Done before Ready is refused: {code} {msg} {closed}")
    kind, f = peers[1].recv()
    check(kind == "release" and d.one(f, 60) == OUTCOME_FAILED and
          b"--max-restarts 1 reached" in d.one(f, 1, b""),
          f"raw: rank 0 lost in generation 2 fails the job (--max-restarts 1): {kind} {f}")
    late = d.Peer(g.port)
    late.hello("raw", "tok", "r", 5)
    kind, f = late.recv()
    check(kind == "release" and d.one(f, 60) == OUTCOME_FAILED and late.recv()[0] == "eof",
          f"raw: a Hello for the failed job gets its Release: {kind} {f}")
    for p in peers + [late]:
        p.close()


def main():
    with tempfile.TemporaryDirectory(prefix="hgrid-jobs-") as tmp:
        g = Gridd(tmp, free_port(), ["--max-restarts", "1"])
        g.start()
        try:
            fin_ended = finish(g)
            fail(g)
            restarts(g)
            cancel(g)
            raw_protocol(g)
            restart_in_each_state(g, fin_ended)
            retention(g)
            early_worker(g)
            srun(g, tmp)
            metrics_and_watch(g)
        finally:
            g.kill()
    return summary("jobs_lifecycle")


if __name__ == "__main__":
    sys.exit(main())
