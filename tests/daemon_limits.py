#!/usr/bin/env python3
"""gridd's job limit (--max-jobs): submits past it are refused with one line
naming the limit and the flag, nothing refused is saved, a state file over
the limit stops gridd at start-up with one line, and a submit whose state
cannot be saved is refused rather than acknowledged. The state (it holds
tokens) is readable by gridd's user only; tokens never reach the log.
Stdlib only."""
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, failures, summary  # noqa: E402

BIN = os.environ.get("HGRID_BIN", "bin")
GRIDD = os.path.join(BIN, "gridd")


class Gridd:
    def __init__(self, tmp, *args):
        self.sock = os.path.join(tmp, "ctl.sock")
        port_file = os.path.join(tmp, "port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        self.log = open(os.path.join(tmp, "gridd.log"), "a")
        self.proc = subprocess.Popen([GRIDD, "--listen", "127.0.0.1:0", "--port-file", port_file,
                                      "--control", self.sock, *args], stdout=self.log, stderr=self.log)
        for _ in range(400):
            if os.path.exists(port_file) and open(port_file).read().endswith("\n"):
                return
            time.sleep(0.05)
        raise RuntimeError("gridd did not start")

    def ctl(self, *args):
        r = subprocess.run([f"{BIN}/hgridctl", "--socket", self.sock, *args], capture_output=True,
                           text=True, timeout=30)
        return r.returncode, r.stdout, r.stderr

    def submit(self, job):
        return self.ctl("submit", "--job", job, "--token", "secret-token", "--llm-only", "--llm-tp", "1",
                        "--llm-dp", "1")

    def jobs(self):
        code, out, _ = self.ctl("list")
        return sorted(line.split()[0] for line in out.splitlines()[1:] if line.strip())  # after the header

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        check(self.proc.wait(timeout=20) == 0, "gridd exits 0 on SIGTERM")


def main():
    tmp = tempfile.mkdtemp(prefix="hgrid-limits-")
    state = os.path.join(tmp, "state")
    r = subprocess.run([GRIDD, "--help"], capture_output=True, text=True)
    check("--max-jobs N" in r.stdout and "(default 256)" in r.stdout, "--help names --max-jobs and its default")
    for bad in ("0", "abc", "-3"):
        r = subprocess.run([GRIDD, "--max-jobs", bad], capture_output=True, text=True, timeout=10)
        check(r.returncode == 2 and r.stderr.count("\n") == 1 and f"--max-jobs '{bad}'" in r.stderr,
              f"--max-jobs {bad}: usage error: {r.stderr!r}")

    g = Gridd(tmp, "--state-dir", state, "--max-jobs", "3")
    for job in ("j1", "j2", "j3"):
        check(g.submit(job)[0] == 0, "submit " + job)
    code, out, err = g.submit("j4")
    check(code == 1 and err.count("\n") == 1 and "limit of 3 jobs" in err and "--max-jobs" in err
          and "j4" in err, f"the 4th job is refused naming the limit and the flag: {code} {err!r}")
    check(g.jobs() == ["j1", "j2", "j3"], f"jobs after the refusal: {g.jobs()}")
    check(g.ctl("cancel", "j2")[0] == 0, "cancel j2")
    check(g.submit("j4")[0] == 0, "a cancel makes room for j4")
    check(g.submit("j5")[0] == 1, "and the limit holds again")
    # A submit or cancel gridd cannot save is refused, not acknowledged (the
    # state file's place is taken by a non-empty directory: no rename replaces it).
    check(g.ctl("cancel", "j1")[0] == 0, "cancel j1")
    path = os.path.join(state, "gridd.state")
    os.rename(path, path + ".aside")
    os.mkdir(path)
    open(os.path.join(path, "x"), "w").close()
    code, _, err = g.ctl("cancel", "j3")
    check(code == 1 and "not cancelled" in err, f"an unsaved cancel is refused: {err!r}")
    code, _, err = g.submit("j6")
    check(code == 1 and "cannot save its state" in err and "not submitted" in err and err.count("\n") == 1,
          f"an unsaved submit is refused: {err!r}")
    code, _, err = g.ctl("cancel", "j1")
    check(code == 1 and "not removed" in err and err.count("\n") == 1,
          f"an unsaved removal of the ended j1 is refused: {err!r}")
    # j1, cancelled, stays listed: the refused submit dropped no ended job either.
    check(g.jobs() == ["j1", "j3", "j4"], f"the refused changes are not held: {g.jobs()}")
    os.unlink(os.path.join(path, "x"))
    os.rmdir(path)
    os.rename(path + ".aside", path)
    check(g.submit("j6")[0] == 0, "submit j6 once the state can be saved")
    check(g.jobs() == ["j3", "j4", "j6"], f"j6 took the place of the ended j1: {g.jobs()}")
    g.stop()
    log = open(os.path.join(tmp, "gridd.log")).read()
    check("cannot save state:" in log and "a restart would lose this change" in log,
          "a failed save is logged with what it means")

    g = Gridd(tmp, "--state-dir", state, "--max-jobs", "3")
    check(g.jobs() == ["j3", "j4", "j6"], f"exactly the acknowledged jobs survive a restart: {g.jobs()}")
    g.stop()
    # The state holds tokens: only gridd's user may read it; the log never shows them.
    mode = lambda p: os.stat(p).st_mode & 0o777
    check(mode(state) == 0o700 and mode(os.path.join(state, "gridd.state")) == 0o600,
          f"state directory {mode(state):o}, file {mode(os.path.join(state, 'gridd.state')):o}")
    check(b"secret-token" in open(os.path.join(state, "gridd.state"), "rb").read(), "the token is saved")
    check("secret-token" not in open(os.path.join(tmp, "gridd.log")).read(), "no token in gridd's log")
    r = subprocess.run([GRIDD, "--listen", "127.0.0.1:0", "--control", os.path.join(tmp, "c2.sock"),
                        "--state-dir", state, "--max-jobs", "2"], capture_output=True, text=True, timeout=30)
    check(r.returncode == 1 and r.stderr.count("\n") == 1 and "holds 3 jobs, more than --max-jobs 2" in r.stderr,
          f"a state file over the limit stops gridd with one line: {r.returncode} {r.stderr!r}")
    return summary("daemon_limits")


if __name__ == "__main__":
    sys.exit(main())
