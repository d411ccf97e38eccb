#!/usr/bin/env python3
"""hgrid-swarm's host links against gridd: 256 workers on 32 simulated hosts
(one link each, as hgrid-agent holds it) with every assignment checked; then
one rank replaced: its death reported by its host aborts the generation at
every worker, the replacement joins, and the new generation is checked
whole, with new ids exactly for the groups holding that rank. The same job
size over direct connections (--direct) still passes. Stdlib only."""
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
    finally:
        gridd.send_signal(signal.SIGTERM)
        check(gridd.wait(timeout=20) == 0, "gridd exits 0")
    return summary("swarm_hosts")


if __name__ == "__main__":
    sys.exit(main())
