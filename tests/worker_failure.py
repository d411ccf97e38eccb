#!/usr/bin/env python3
"""The worker-failure drill without GPUs, timed: 8 dry-run workers on 2
hosts under gridd's default heartbeat timeout (3 s). A worker killed with
SIGKILL (its connection drops) and a worker frozen with SIGSTOP (silent:
found by the heartbeat timeout) each make gridd abort the generation; every
survivor gets Abort; the restarted worker rejoins with its rank and a new
generation forms with new NCCL ids for the groups holding it. Prints the detection time (kill ->
Abort received by the last survivor) and the time from the restart to the
last new Assignment. Stdlib only."""
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, failures, summary  # noqa: E402

BIN = os.environ.get("HGRID_BIN", "bin")
HB = 3.0  # gridd's default --heartbeat-timeout
KILLS = 5


class Worker:
    """hgrid-worker --dry-run --json; assignments and abort lines are
    time-stamped as they arrive."""

    def __init__(self, port, host, device):
        self.host, self.device = host, device
        self.proc = subprocess.Popen(
            [f"{BIN}/hgrid-worker", "--coordinator", f"127.0.0.1:{port}", "--job", "drill", "--token",
             "tok", "--host", host, "--device", str(device), "--dry-run", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.assignments, self.aborts = queue.Queue(), queue.Queue()
        threading.Thread(target=self._out, daemon=True).start()
        threading.Thread(target=self._err, daemon=True).start()

    def _out(self):
        for line in self.proc.stdout:
            self.assignments.put((time.monotonic(), json.loads(line)))

    def _err(self):
        for line in self.proc.stderr:
            if " aborted: " in line:
                self.aborts.put((time.monotonic(), line.strip()))

    def assignment(self, timeout=30):
        return self.assignments.get(timeout=timeout)

    def abort(self, timeout):
        try:
            return self.aborts.get(timeout=timeout)
        except queue.Empty:
            return None, None


def wait_running(sock):
    """Until every worker sent Ready (only then does gridd keep ids of untouched groups)."""
    end = time.monotonic() + 30
    while time.monotonic() < end:
        r = subprocess.run([f"{BIN}/hgridctl", "--socket", sock, "show", "drill", "--json"],
                           capture_output=True, text=True, timeout=30)
        if r.returncode == 0 and json.loads(r.stdout)["state"] == "running":
            return
        time.sleep(0.05)
    check(False, "the job runs before the drill")


def drill(port, workers, victim, freeze):
    """Fails victim (SIGSTOP if freeze, else SIGKILL), restarts it; returns
    (detection s, restart-to-last-assignment s, new workers list)."""
    gen = victim.last["generation"]
    survivors = [w for w in workers if w is not victim]
    t0 = time.monotonic()
    victim.proc.send_signal(signal.SIGSTOP if freeze else signal.SIGKILL)
    got = [w.abort(timeout=HB + 10) for w in survivors]
    detect = max(t for t, _ in got) - t0 if all(t for t, _ in got) else float("inf")
    what = "frozen" if freeze else "killed"
    check(all(line and f"generation {gen} aborted" in line for _, line in got),
          f"{what} rank {victim.last['rank']}: every survivor gets Abort({gen}): {[l for _, l in got][:2]}")
    victim.proc.kill()
    victim.proc.wait()
    t1 = time.monotonic()
    back = Worker(port, victim.host, victim.device)
    workers = survivors + [back]
    new = {}
    for w in workers:
        try:
            new[w] = w.assignment()
        except queue.Empty:
            check(False, f"{what}: {w.host}/{w.device} got no new assignment")
            return detect, float("inf"), workers
    formed = max(t for t, _ in new.values()) - t1
    check(all(a["generation"] == gen + 1 for _, a in new.values()), f"{what}: generation {gen + 1}")
    check(new[back][1]["rank"] == victim.last["rank"], f"{what}: the restarted worker keeps rank "
                                                       f"{victim.last['rank']} (got {new[back][1]['rank']})")
    check(all(a["rank"] == w.last["rank"] for w, (_, a) in new.items() if w is not back),
          f"{what}: every survivor keeps its rank")
    # New ids exactly for the groups holding the failed rank; the others keep theirs.
    rank = victim.last["rank"]
    old_ids = {(w.last["rank"], g["name"], g["index"]): g["id"] for w in survivors
               for g in w.last["groups"] if g["id"]}
    moved = [(a["rank"], g["name"]) for w, (_, a) in new.items() if w is not back for g in a["groups"]
             if g["id"] and (old_ids.get((a["rank"], g["name"], g["index"])) == g["id"]) ==
             (rank in g["members"])]
    check(old_ids and not moved, f"{what}: generation {gen + 1} has new ids exactly for the groups "
                                 f"holding rank {rank} (wrong: {moved[:4]})")
    for w, (_, a) in new.items():
        w.last = a
    return detect, formed, workers


def main():
    tmp = tempfile.mkdtemp(prefix="hgrid-failure-")
    port_file, sock = os.path.join(tmp, "port"), os.path.join(tmp, "ctl.sock")
    log = open(os.path.join(tmp, "gridd.log"), "w")
    gridd = subprocess.Popen([f"{BIN}/gridd", "--listen", "127.0.0.1:0", "--port-file", port_file,
                              "--control", sock], stdout=log, stderr=log)
    workers = []
    try:
        for _ in range(400):
            if os.path.exists(port_file) and open(port_file).read().endswith("\n"):
                break
            time.sleep(0.05)
        port = int(open(port_file).read())
        r = subprocess.run([f"{BIN}/hgridctl", "--socket", sock, "submit", "--job", "drill", "--token", "tok"],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 0, "submit: " + r.stderr)
        workers = [Worker(port, h, d) for h in ("node-a", "node-b") for d in range(4)]
        for w in workers:
            w.last = w.assignment()[1]
        check(all(w.last["generation"] == 1 for w in workers), "generation 1 formed")
        detects, forms = [], []
        for i in range(KILLS):
            victim = next(w for w in workers if w.last["rank"] == (3 * i + 1) % 8)
            wait_running(sock)
            d, f, workers = drill(port, workers, victim, freeze=False)
            detects.append(d)
            forms.append(f)
        check(max(detects) < 1.0, f"a killed worker is noticed at once (max {max(detects):.3f} s)")
        check(max(forms) < 5.0, f"the next generation forms quickly (max {max(forms):.3f} s)")
        victim = next(w for w in workers if w.last["rank"] == 6)
        wait_running(sock)
        hang, hang_form, workers = drill(port, workers, victim, freeze=True)
        # gridd checks deadlines every 100 ms; any frame restarts one, and
        # workers beat every HB/3, so silence is noticed within (2/3 HB, HB].
        check(HB * 2 / 3 - 0.1 <= hang <= HB + 0.5, f"a frozen worker is noticed within the "
                                                    f"heartbeat timeout ({hang:.3f} s)")
        ms = lambda xs: "median %.0f ms, max %.0f ms" % (statistics.median(xs) * 1000, max(xs) * 1000)
        print(f"worker_failure: SIGKILL -> Abort at all 7 survivors: {ms(detects)} ({KILLS} drills); "
              f"restart -> all 8 assigned generation N+1: {ms(forms)}", flush=True)
        print(f"worker_failure: SIGSTOP -> Abort at all 7 survivors: {hang * 1000:.0f} ms (heartbeat timeout "
              f"{HB:.0f} s); restart -> all 8 assigned: {hang_form * 1000:.0f} ms", flush=True)
        r = subprocess.run([f"{BIN}/hgridctl", "--socket", sock, "cancel", "drill"], capture_output=True,
                           text=True, timeout=30)
        codes = [w.proc.wait(timeout=20) for w in workers]
        check(r.returncode == 0 and codes == [0] * 8, f"cancel releases every worker: {codes}")
    finally:
        for w in workers:
            if w.proc.poll() is None:
                w.proc.kill()
        gridd.send_signal(signal.SIGTERM)
        check(gridd.wait(timeout=20) == 0, "gridd exits 0")
    if failures:
        print("gridd log: " + log.name)
    return summary("worker_failure")


if __name__ == "__main__":
    sys.exit(main())
