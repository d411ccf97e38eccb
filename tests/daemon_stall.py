#!/usr/bin/env python3
"""No request stalls the others (issue 18.2, docs/RELIABILITY.md): a healthy
2-worker job under --heartbeat-timeout 1 loses no worker while 1M-rank
submits arrive two at a time (built off the loop), nor when gridd's loop is
frozen for 2.5 s (SIGSTOP: a slow fsync or a swapped-out gridd), because
liveness is judged only after the heartbeats waiting in the sockets are
read. The longest loop iteration (gridd_loop_busy_max_seconds) must stay
under 1 s.
HGRID_STALL_ROUNDS sets the bursts (default 3)."""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, summary  # noqa: E402
from daemon_reliability import MILLION, Gridd  # noqa: E402

BIN = os.environ.get("HGRID_BIN", "bin")
ROUNDS = int(os.environ.get("HGRID_STALL_ROUNDS", "3"))


def worker(port, device):
    return subprocess.Popen([os.path.join(BIN, "hgrid-worker"), "--coordinator", "127.0.0.1:%d" % port,
                             "--job", "healthy", "--token", "h-tok", "--host", "node-a", "--device",
                             str(device), "--dry-run", "--heartbeat-timeout", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def busy_max(metrics_url):
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    m = re.search(r"^gridd_loop_busy_max_seconds ([0-9.]+)$", text, re.M)
    return float(m.group(1)) if m else None


def main():
    tmp = tempfile.mkdtemp(prefix="hgrid-stall-")
    g = Gridd(tmp, "stall", "--heartbeat-timeout", "1", "--state-dir", os.path.join(tmp, "state"),
              "--metrics", "127.0.0.1:0")
    addr = re.search(r"serving metrics addr=(\S+)", g.log_text())
    url = "http://%s/metrics" % addr.group(1) if addr else None
    check(url is not None, "metrics address in the log")
    check(g.ctl("submit", "--job", "healthy", "--token", "h-tok", "--llm-only", "--llm-tp", "1",
                "--llm-dp", "2")[0] == 0, "submit the healthy job")
    workers = [worker(g.port, d) for d in range(2)]
    deadline = time.time() + 60
    while time.time() < deadline and "generation running" not in g.log_text():
        time.sleep(0.1)
    check("generation running" in g.log_text(), "the healthy job runs")
    submitted = 0
    t0 = time.time()
    for r in range(ROUNDS):
        procs = [subprocess.Popen([os.path.join(BIN, "hgridctl"), "--socket", g.sock, "submit", "--job",
                                   "big%d-%d" % (r, i), "--token", "t", *MILLION],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(2)]
        for p in procs:
            out, err = p.communicate(timeout=300)
            check(p.returncode == 0, "1M-rank submit acknowledged: %s" % err.strip())
            submitted += p.returncode == 0
        for i in range(2):
            g.ctl("cancel", "big%d-%d" % (r, i))
    burst_s = time.time() - t0
    busy = busy_max(url) if url else None
    for _ in range(3):  # the loop frozen past the heartbeat timeout
        g.proc.send_signal(signal.SIGSTOP)
        time.sleep(2.5)
        g.proc.send_signal(signal.SIGCONT)
        time.sleep(0.5)
    time.sleep(1.5)
    text = g.log_text()
    check("worker lost" not in text and "generation aborted" not in text,
          "no worker lost:\n" + "\n".join(l for l in text.splitlines() if "lost" in l or "abort" in l)[:2000])
    check(all(w.poll() is None for w in workers), "both workers still running")
    code, out, _ = g.ctl("status", "healthy")
    check(code == 0 and "generation 1," in out and out.count(" ready:") == 2,
          "both ranks ready in generation 1:\n" + out)
    # The bound (docs/RELIABILITY.md): no loop iteration as long as the
    # healthy job's heartbeat timeout (before issue 18 one 1M-rank submit
    # held it ~0.7 s in the release build, seconds under ASan).
    check(busy is not None and busy < 1.0, "longest loop iteration %s s, under 1 s" % busy)
    print("daemon_stall: %d 1M-rank submits in %.1f s beside a job with a 1 s heartbeat timeout; "
          "longest loop iteration %s ms; 3 freezes of 2.5 s" %
          (submitted, burst_s, "?" if busy is None else "%.0f" % (busy * 1000)))
    for w in workers:
        w.kill()
        w.wait()
    g.stop("stall")
    return summary("daemon_stall")


if __name__ == "__main__":
    sys.exit(main())
