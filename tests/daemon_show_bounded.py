#!/usr/bin/env python3
"""Control replies are bounded however large the job (issue 18.10,
docs/RELIABILITY.md): a 1,048,576-rank job with 1,100 joined workers, each
with a self-test report of 32 failed checks. gridd answers ShowJob with a
page of at most 1,024 workers (next_slot, num_workers and the self-test
summary over every worker), so one reply stays under ~9 MiB whatever the
world size; hgridctl status prints a summary and 32 workers (--rank R one,
--all every page), show draws the first page (--all every page), watch
polls one page, list carries no workers. Before, a ShowJob reply held every
joined worker with its report (a 1M-worker job: gigabytes)."""
import json
import os
import resource
import socket
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, summary  # noqa: E402
from daemon_gridd import Peer, fb, fv, one, parse  # noqa: E402
from daemon_reliability import MILLION, Gridd, recv_ctl, send_ctl  # noqa: E402

WORKERS = 1100
PAGE = 1024
CHECKS = 32


def show_raw(g, first=None, most=None):
    """One ShowJob of job huge on the control socket: (JobInfo fields, frame bytes)."""
    body = fb(1, "huge")
    if first is not None:
        body += fv(120, first)
    if most is not None:
        body += fv(121, most)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(g.sock)
    send_ctl(s, 32, body)
    s.settimeout(60)
    head = b""
    while len(head) < 4:
        head += s.recv(4 - len(head))
    n = struct.unpack(">I", head)[0]
    data = b""
    while len(data) < n:
        chunk = s.recv(min(1 << 20, n - len(data)))
        if not chunk:
            break
        data += chunk
    s.close()
    env = parse(data)
    return parse(env.get(34, [b""])[0]), n + 4


def join_all(g, job, token):
    """WORKERS raw workers join job, each sending a self-test report of
    CHECKS failed checks; returns them once gridd counts them all."""
    peers = []
    groups = b"".join(fb(2, fb(1, "group-%02d" % i) + fv(2, 0) + fb(4, "x" * 90)) for i in range(CHECKS))
    report = fv(1, 2) + fb(16, fv(1, 0) + groups)  # generation 0: the job is not assigned
    for i in range(WORKERS):
        p = Peer(g.port)
        p.hello(job, token, "node-%04d" % (i // 8), i % 8)
        p.send(struct.pack(">I", len(report)) + report)
        peers.append(p)
    deadline = time.time() + 60
    joined = 0
    while time.time() < deadline:
        code, out, _ = g.ctl("list", "--json")
        joined = {j["job"]: j["joined"] for j in json.loads(out)["jobs"]}.get(job) if code == 0 else 0
        if joined == WORKERS:
            break
        time.sleep(0.2)
    check(joined == WORKERS, "job %s: %d of %d workers joined" % (job, joined, WORKERS))
    time.sleep(0.5)  # the last reports
    return peers


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = WORKERS + 200
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            print("SKIP: %d workers need %d open files, the hard limit is %d" % (WORKERS, want, hard))
            return 77
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    tmp = tempfile.mkdtemp(prefix="hgrid-show-")
    g = Gridd(tmp, "show")
    code, _, err = g.ctl("submit", "--job", "huge", "--token", "h-tok", *MILLION, timeout=120)
    check(code == 0, "submit a 1M-rank job: %s" % err)
    peers = join_all(g, "huge", "h-tok")

    # gridd's page: bounded, with where to go on and the summary of all.
    t0 = time.time()
    info, size = show_raw(g)
    took = time.time() - t0
    n = len(info.get(7, []))
    print("ShowJob of a 1,048,576-rank job with %d workers: %d workers, %d bytes, %.0f ms" %
          (WORKERS, n, size, took * 1000))
    check(n == PAGE, "one reply holds %d workers, gridd's page %d" % (n, PAGE))
    check(size < 9.5 * (1 << 20), "one reply is %d bytes, under 9.5 MiB" % size)
    check(one(info, 121) == WORKERS, "num_workers %d" % one(info, 121))
    check(one(info, 122) == WORKERS * CHECKS and one(info, 123) == WORKERS,
          "self-test summary over every worker: %d checks on %d workers" % (one(info, 122), one(info, 123)))
    nxt = one(info, 120)
    check(nxt > 0, "next_slot %d" % nxt)
    info2, _ = show_raw(g, first=nxt, most=100000)
    check(len(info2.get(7, [])) == WORKERS - PAGE and one(info2, 120) == 0,
          "the second page: %d workers, next_slot %d" % (len(info2.get(7, [])), one(info2, 120)))
    info3, _ = show_raw(g, most=5)
    check(len(info3.get(7, [])) == 5, "max_workers 5: %d" % len(info3.get(7, [])))
    hosts = [one(parse(w), 2) for w in info.get(7, []) + info2.get(7, [])]
    check(len(set((h, one(parse(w), 3)) for h, w in zip(hosts, info.get(7, []) + info2.get(7, [])))) == WORKERS,
          "the two pages hold every worker once")

    code, out, err = g.ctl("status", "huge")
    check(code == 0 and out.count("  rank ") == 32 and "... %d more workers" % (WORKERS - 32) in out,
          "status of the 1M-rank job: 32 workers:\n%s%s" % (out[:600], err))
    code, out, err = g.ctl("list", "--json")
    check(code == 0 and len(out) < 2000, "list: %d bytes" % len(out))
    for p in peers:
        p.close()

    # hgridctl: bounded by default, everything on request. (A 2,048-rank
    # job: hgridctl plans the layout, which for 1M ranks takes seconds under ASan.)
    check(g.ctl("submit", "--job", "wide", "--token", "w-tok", "--llm-only", "--llm-tp", "1",
                "--llm-dp", "2048", "--micro-batch-size", "1", "--global-batch-size", "2048")[0] == 0,
          "submit a 2048-rank job")
    peers = join_all(g, "wide", "w-tok")
    code, out, err = g.ctl("status", "wide")
    check(code == 0 and out.count("  rank ") == 32 and "... %d more workers" % (WORKERS - 32) in out
          and "self-test: %d checks failed on %d workers" % (WORKERS * CHECKS, WORKERS) in out,
          "status: summary and 32 workers:\n%s%s" % (out[:600], err))
    code, out, err = g.ctl("status", "wide", "--all")
    check(code == 0 and out.count("  rank ") == WORKERS, "status --all: %d workers %s" % (out.count("  rank "), err))
    code, out, err = g.ctl("status", "wide", "--rank", "5")
    check(code != 0 and "no worker at rank 5" in err, "status --rank 5 before assignment: %r" % err)
    code, out, err = g.ctl("show", "wide")
    check(code == 0 and "the first %d of %d workers" % (PAGE, WORKERS) in out,
          "show: the first page, says so: %s" % (out[-300:] + err))
    code, out, err = g.ctl("show", "wide", "--json")
    shown = json.loads(out) if code == 0 else {}
    check(len(shown.get("workers", [])) == PAGE and shown.get("num_workers") == WORKERS,
          "show --json: %d of %s workers" % (len(shown.get("workers", [])), shown.get("num_workers")))
    code, out, err = g.ctl("show", "wide", "--json", "--all")
    shown = json.loads(out) if code == 0 else {}
    check(len(shown.get("workers", [])) == WORKERS, "show --all --json: %d workers" % len(shown.get("workers", [])))
    code, out, err = g.ctl("watch", "wide", "--once", "--json")
    view = json.loads(out.splitlines()[0]) if code == 0 and out else {}
    check(len(view.get("workers", [])) == PAGE, "watch: one page, %d workers %s" % (len(view.get("workers", [])), err))
    for p in peers:
        p.close()
    g.stop("show")
    return summary("daemon_show_bounded")


if __name__ == "__main__":
    sys.exit(main())
