#!/usr/bin/env python3
"""gridd keeps each worker's SelfTestReport and hgridctl status shows it per
rank and group: two hand-made workers report (one check failing), status
prints every check as the worker sent it, a report of an older generation is
not shown, and gridd exits clean under the sanitizers."""
import os
import struct
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemon_gridd as d  # noqa: E402  (the raw gridd client and protobuf helpers)

d.MSG["self_test"] = 16


def check_msg(name, ok, busbw, detail):
    """GroupCheck{name, ok, busbw_gbps (double), detail}."""
    return (d.fb(1, name) + d.fv(2, 1 if ok else 0) + d.varint(3 << 3 | 1)
            + struct.pack("<d", busbw) + d.fb(4, detail))


def report(generation, checks):
    return d.fv(1, generation) + b"".join(d.fb(2, check_msg(*c)) for c in checks)


def main():
    tmp = tempfile.mkdtemp(prefix="hgrid-selftest-status.")
    g = d.Gridd(tmp, "st", "--heartbeat-timeout", "30")
    token = "st-token"
    d.check(g.ctl("submit", "--job", "st", "--token", token, "--encoder-tp", "1",
                  "--encoder-dp", "1", "--llm-tp", "1", "--llm-dp", "1")[0] == 0, "submit st")
    peers = d.join_all(g, "st", token, [("node-a", 0), ("node-a", 1)])
    assignments, _ = d.rendezvous(peers, 1)
    d.check(len(assignments) == 2, "2 assignments")
    peers[0].send(d.frame("self_test", report(1, [
        ("tp", True, 0.0, "one rank, no communicator"),
        ("bridge", True, 123.45, "2 ranks, sums 1 1"),
        ("bridge->1", True, 0.0, "1024 KiB sent to rank 1")])))
    peers[1].send(d.frame("self_test", report(1, [
        ("bridge<-0", False, 0.0, "bridge edge 0 -> 1: element 7 is 3, expected 9")])))
    d.check(d.wait_for(lambda: g.log_text().count("self-test report report_gen=1 ") == 2),
            "gridd logged both reports")
    code, out, _ = g.ctl("status", "st")
    d.check(code == 0, "status st")
    lines = out.splitlines()
    want = ["    self-test tp ok (one rank, no communicator)",
            "    self-test bridge ok 123.5 GB/s (2 ranks, sums 1 1)",
            "    self-test bridge->1 ok (1024 KiB sent to rank 1)",
            "    self-test bridge<-0 FAILED: bridge edge 0 -> 1: element 7 is 3, expected 9"]
    d.check([l for l in lines if l.startswith("    self-test")] == want, "status shows:\n" + out)
    r1 = [i for i, l in enumerate(lines) if l.startswith("  rank 1 ")]
    d.check(len(r1) == 1 and lines[r1[0] + 1] == want[3], "rank 1's check under rank 1:\n" + out)
    # A later report of an older generation replaces the kept one but is not shown.
    peers[1].send(d.frame("self_test", report(0, [("tp", True, 1.0, "old")])))
    d.check(d.wait_for(lambda: "self-test report report_gen=0 " in g.log_text()), "old report logged")
    code, out, _ = g.ctl("status", "st")
    d.check("old" not in out and "bridge<-0" not in out and "bridge->1" in out,
            "old generation not shown:\n" + out)
    d.check(g.ctl("cancel", "st")[0] == 0, "cancel st")
    for p in peers:
        p.close()
    g.stop("selftest_status")
    print("selftest_status: %d passed, %d failed" % (d.passed, d.failed))
    return 1 if d.failed else 0


if __name__ == "__main__":
    sys.exit(main())
