#!/usr/bin/env python3
"""Real workers under a garbage flood (issue 18.5): gridd with its default
caps, two garbage_load.py processes of N connections each that send one
undecodable frame and reconnect as soon as gridd closes them, then
hgrid-swarm with W real workers joining a job. Prints the swarm's result,
how many garbage connections gridd held open at most, and gridd's refusal
counters. Usage: hostile_admission.py [--conns N] [--workers W]"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from daemon_reliability import Gridd  # noqa: E402

BIN = os.environ.get("HGRID_BIN", "bin")
HERE = os.path.dirname(os.path.abspath(__file__))


def metric(url, name):
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(%s\S*) ([0-9.e+]+)$" % name, text, re.M)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=8192)
    ap.add_argument("--workers", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=40)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="hgrid-hostile-")
    g = Gridd(tmp, "hostile", "--metrics", "127.0.0.1:0")
    url = "http://%s/metrics" % re.search(r"serving metrics addr=(\S+)", g.log_text()).group(1)
    code, _, err = g.ctl("submit", "--job", "real", "--token", "tok", "--llm-only", "--llm-tp", "1",
                         "--llm-dp", str(a.workers), "--micro-batch-size", "1", "--global-batch-size",
                         str(a.workers))
    if code:
        sys.exit("submit failed: " + err)
    loads = [subprocess.Popen([sys.executable, os.path.join(HERE, "garbage_load.py"), "--port", str(g.port),
                               "--conns", str(a.conns), "--seconds", str(a.seconds)], stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    peak = 0
    t_end = time.time() + 8
    while time.time() < t_end:
        conns = metric(url, "gridd_worker_connections").get("gridd_worker_connections", 0)
        peak = max(peak, conns)
        time.sleep(0.5)
    swarm = subprocess.run([os.path.join(BIN, "hgrid-swarm"), "--coordinator", "127.0.0.1:%d" % g.port, "--job",
                            "real", "--token", "tok", "--workers", str(a.workers), "--timeout", "60"],
                           capture_output=True, text=True)
    conns = metric(url, "gridd_worker_connections").get("gridd_worker_connections", 0)
    peak = max(peak, conns)
    refused = metric(url, "gridd_connections_refused_total")
    outs = [p.communicate()[0].strip().splitlines()[-1:] for p in loads]
    g.stop("hostile")
    print("swarm exit %d: %s" % (swarm.returncode, (swarm.stdout + swarm.stderr).strip().splitlines()[-4:]))
    print("garbage: %s" % outs)
    print("gridd worker connections at most %d; refusals %s" % (peak, refused))
    return swarm.returncode


if __name__ == "__main__":
    sys.exit(main())
