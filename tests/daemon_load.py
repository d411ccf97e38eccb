#!/usr/bin/env python3
"""gridd under idle and slow-drip connections (issue 7, load), small enough
for make test: at most --max-pending of them are held (the oldest dropped
first, with a one-line summary in the log, not one line per connection),
every one is dropped within --hello-timeout, gridd's memory comes back to
the same level after each wave, and a job's workers still all get their
assignments while such connections fill the cap. The 16K version is
tests/bench/rendezvous_load.sh."""
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "bench"))
import daemon_gridd as dg  # noqa: E402
from idle_load import Load  # noqa: E402

MAX_PENDING = 64
HELLO_TIMEOUT = 1.0
SWARM = os.path.join(dg.BIN, "hgrid-swarm")


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def status_field(pid, name):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return -1


def fd_table_reserved(g):
    """gridd grows its descriptor table for --max-connections at start (at most
    65,536): a burst of connections never waits for the kernel to grow it."""
    deadline = time.monotonic() + 5
    m = None
    while not m and time.monotonic() < deadline:
        m = re.search(r"max (\d+) worker connections", g.log_text())
        time.sleep(0.05)
    with open("/proc/%d/limits" % g.proc.pid) as f:
        soft = [l.split()[3] for l in f if l.startswith("Max open files")][0]
    limit = 1 << 30 if soft == "unlimited" else int(soft)
    want = min(int(m[1]) + 64, 65536, limit) if m else None
    size = status_field(g.proc.pid, "FDSize")
    dg.check(want is not None and size >= want,
             "descriptor table of %d slots at start for %s connections" %
             (size, m[1] if m else "?"))


def settle(load, quiet=0.5, timeout=10.0):
    """Polls until every connect completed and gridd closed nothing for `quiet` s."""
    deadline = time.monotonic() + timeout
    last = (load.idle_dropped, load.drip_dropped)
    calm_since = time.monotonic()
    while time.monotonic() < deadline:
        load.poll(0.05)
        now = (load.idle_dropped, load.drip_dropped)
        if now != last or load.connecting:
            last, calm_since = now, time.monotonic()
        elif time.monotonic() - calm_since > quiet:
            return True
    return False


def drip_for(load, seconds, interval=0.1):
    end = time.monotonic() + seconds
    next_drip = 0.0
    while time.monotonic() < end:
        if time.monotonic() >= next_drip:
            load.drip()
            next_drip = time.monotonic() + interval
        load.poll(0.02)


def wave(g, what, idle=300, drip=50):
    """Opens idle + drip connections, checks the cap and the timeout, and
    returns once gridd has dropped them all."""
    load = Load(g.port, base=21)
    load.open(idle, drip)
    dg.check(settle(load), "%s: connections settle" % what)
    held = len(load.socks)
    dg.check(held <= MAX_PENDING, "%s: %d connections without a Hello held, cap %d" %
             (what, held, MAX_PENDING))
    dg.check(load.idle_dropped >= idle + drip - MAX_PENDING,
             "%s: %d idle dropped at the cap" % (what, load.idle_dropped))
    # The drip clients send a byte every 100 ms and reconnect when dropped;
    # no connection may outlive --hello-timeout (plus the 100 ms sweep and
    # this loop noticing the close on a busy machine).
    drip_for(load, 2.5 * HELLO_TIMEOUT)
    load.drip_wanted = 0
    load.drips.clear()
    dg.check(dg.wait_for(lambda: (load.poll(0.02), not load.socks)[1], 3 * HELLO_TIMEOUT),
             "%s: every connection dropped (%d left)" % (what, len(load.socks)))
    dg.check(load.drip_dropped > drip, "%s: drip clients dropped and back (%d)" %
             (what, load.drip_dropped))
    dg.check(load.longest < HELLO_TIMEOUT + 1.0, "%s: longest connection %.2f s with "
             "--hello-timeout %.1f" % (what, load.longest, HELLO_TIMEOUT))
    load.close()


def test_job_under_load(g):
    """64 workers join while silent connections keep the pending list full."""
    n = 64
    code, _, err = g.ctl("submit", "--job", "busy", "--token", "tok", "--encoder-tp", "2",
                         "--encoder-dp", str(n // 8), "--llm-tp", "4", "--llm-pp", "3",
                         "--llm-dp", str(n // 16), "--micro-batch-size", "2")
    dg.check(code == 0, "submit under load: %s" % err)
    load = Load(g.port, base=22)
    load.open(2 * MAX_PENDING, 16)
    settle(load)
    swarm = subprocess.Popen([SWARM, "--coordinator", "127.0.0.1:%d" % g.port, "--job", "busy",
                              "--token", "tok", "--workers", str(n), "--hosts", str(n // 8),
                              "--timeout", "60"], stdout=subprocess.PIPE, text=True)
    while swarm.poll() is None:  # keep dripping while the job forms
        drip_for(load, 0.1)
    out = swarm.stdout.read()
    last = out.strip().splitlines()[-1] if out.strip() else ""
    dg.check(swarm.returncode == 0 and ("workers=%d " % n) in last,
             "every worker assigned under load: rc %d, %s" % (swarm.returncode, last))
    load.close()
    code, _, err = g.ctl("cancel", "busy")
    dg.check(code == 0, "cancel busy: %s" % err.strip())


def main():
    import tempfile
    with tempfile.TemporaryDirectory(prefix="gridd-load-") as tmp:
        g = dg.Gridd(tmp, "load", "--max-pending", str(MAX_PENDING), "--hello-timeout",
                     str(HELLO_TIMEOUT))
        try:
            fd_table_reserved(g)
            before = rss_kib(g.proc.pid)
            wave(g, "wave 1")
            after1 = rss_kib(g.proc.pid)
            wave(g, "wave 2")
            after2 = rss_kib(g.proc.pid)
            # 1 MiB of slack: under ASan freed memory sits in its quarantine.
            dg.check(after2 <= after1 + 1024, "memory back after a wave: %d KiB, then %d KiB" %
                     (after1, after2))
            dg.check(after1 <= before + 8192, "memory bounded: %d KiB before, %d KiB after" %
                     (before, after1))
            log = g.log_text()
            summaries = [l for l in log.splitlines() if "refused connections:" in l]
            dg.check(summaries and "--max-pending %d" % MAX_PENDING in summaries[0],
                     "one summary line for refusals: %s" % summaries[:1])
            dg.check(len(summaries) <= 10 and "refused peer=" not in log,
                     "no line per refused connection (%d summaries)" % len(summaries))
            test_job_under_load(g)
        finally:
            g.stop("load gridd")
    print("daemon_load: %d passed, %d failed" % (dg.passed, dg.failed))
    return 1 if dg.failed else 0


if __name__ == "__main__":
    sys.exit(main())
