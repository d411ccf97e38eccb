#!/usr/bin/env python3
"""hgrid-swarm's host links against gridd: 256 workers on 32 simulated hosts
(one link each, as hgrid-agent holds it) with every assignment checked; then
one rank replaced: its death reported by its host aborts the generation at
every worker, the replacement joins, and the new generation is checked
whole, with new ids exactly for the groups holding that rank. The same job
size over direct connections (--direct) still passes. The replacement also
on a colocated layout (both modules on every rank) and on two encoders (two
bridges), whose assignments carry a second module or several bridges.
Stdlib only."""
import os
import re
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, summary  # noqa: E402
import launch_util as lu  # noqa: E402

LAYOUT = ["--encoder-tp", "2", "--encoder-dp", "32", "--llm-tp", "4", "--llm-pp", "3", "--llm-dp", "16",
          "--micro-batch-size", "2"]


def swarm(port, job, *extra):
    r = subprocess.run([f"{lu.BIN}/hgrid-swarm", "--coordinator", f"127.0.0.1:{port}", "--job", job,
                        "--token", "t", "--workers", "256", "--hosts", "32", *extra],
                       capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout, r.stderr


# Small layouts whose groups span several modules: (job, flags, workers).
MODULE_LAYOUTS = [
    ("colo", ["--mimo-layout", "colocated", "--encoder-tp", "2", "--encoder-dp", "4", "--llm-tp", "2",
              "--llm-dp", "4"], 8),
    ("enc2", ["--encoder", "vision:tp=2,dp=2", "--encoder", "audio:tp=1,dp=2", "--llm-tp", "2",
              "--llm-dp", "2"], 10),
]


def replace_in_modules(port, sock):
    for job, flags, workers in MODULE_LAYOUTS:
        r = lu.ctl(sock, "submit", "--job", job, "--token", "t", *flags)
        check(r.returncode == 0, f"submit {job}: {r.stderr}")
        r = subprocess.run([f"{lu.BIN}/hgrid-swarm", "--coordinator", f"127.0.0.1:{port}", "--job",
                            job, "--token", "t", "--workers", str(workers), "--hosts", "2",
                            "--replace-rank", "1"], capture_output=True, text=True, timeout=120)
        g = re.search(r"^workers=(\d+) groups=(\d+) ", r.stdout, re.M)
        m = re.search(r"^replace: rank=1 abort_ms=[0-9.]+ reassign_ms=[0-9.]+ changed_ids=(\d+) "
                      r"kept_ids=(\d+)$", r.stdout, re.M)
        check(r.returncode == 0 and g and m and int(g[1]) == workers,
              f"{job}: assignments and the replacement of rank 1 checked: exit {r.returncode}, "
              f"{r.stdout.strip()[-300:]!r} {r.stderr.strip()[-300:]!r}")
        if g and m:
            groups, changed, kept = int(g[2]), int(m[1]), int(m[2])
            check(0 < changed < groups and changed + kept == groups,
                  f"{job}: only the communicators holding rank 1 are re-created: {changed} of "
                  f"{groups} ({kept} kept)")


def main():
    tmp = tempfile.mkdtemp(prefix="hgrid-swarm-hosts-")
    gridd, port, sock = lu.start_gridd(tmp)
    try:
        for job, extra in (("hosts", ["--replace-rank", "77"]), ("direct", ["--direct"])):
            r = lu.ctl(sock, "submit", "--job", job, "--token", "t", *LAYOUT)
            check(r.returncode == 0, f"submit {job}: {r.stderr}")
            rc, out, err = swarm(port, job, *extra)
            last = out.strip().splitlines()[-1] if out.strip() else ""
            check(rc == 0 and last.startswith("workers=256 groups=244 rendezvous_s="),
                  f"{job}: every assignment checked: exit {rc}, {last!r}, {err.strip()[-400:]}")
            if job != "hosts":
                continue
            m = re.search(r"replace: rank=77 abort_ms=([0-9.]+) reassign_ms=([0-9.]+) "
                          r"changed_ids=(\d+) kept_ids=(\d+)$", out, re.M)
            check(m is not None, f"the replacement is reported: {out.strip()[-300:]!r}")
            if m:
                abort_ms, reassign_ms, changed, kept = float(m[1]), float(m[2]), int(m[3]), int(m[4])
                check(0 < changed < 244 and changed + kept == 244,
                      f"only the communicators holding rank 77 are re-created: {changed} of 244")
                check(abort_ms < 1000, f"death to the last Abort: {abort_ms} ms")
                print(f"swarm_hosts: 256 workers on 32 links: death -> last Abort {abort_ms:.1f} ms, "
                      f"replacement's Hello -> last Assignment {reassign_ms:.1f} ms, "
                      f"{changed} of 244 communicators re-created", flush=True)
        replace_in_modules(port, sock)
    finally:
        gridd.send_signal(signal.SIGTERM)
        check(gridd.wait(timeout=20) == 0, "gridd exits 0")
    return summary("swarm_hosts")


if __name__ == "__main__":
    sys.exit(main())
