#!/usr/bin/env python3
"""gridd under a seeded storm of random connections and frames (garbage,
wrong versions, messages out of place, random Hellos, MintReplies and
control requests, abrupt closes), then a normal job: gridd must stay up,
keep serving, still rendezvous workers, and exit 0 on SIGTERM with the
sanitizers silent."""
import os
import random
import socket
import struct
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemon_gridd as d  # noqa: E402  (the protocol helpers)

CONTROL = {"submit": 30, "list": 31, "show": 32, "cancel": 33}
JOB = ("--llm-only", "--llm-tp", "2", "--llm-dp", "2")


def random_frame(rng):
    kind = rng.choice(list(d.MSG) + list(CONTROL))
    body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40)))
    if kind == "hello" and rng.random() < 0.7:
        body = d.fb(1, "s") + d.fb(2, rng.choice(["t", "x"])) + d.fb(3, rng.choice("ab")) + \
            d.fv(4, rng.randint(0, 3))
        if rng.random() < 0.3:
            body += d.fb(6, d.fv(1, rng.randint(0, 5)))
    elif kind == "mint_reply" and rng.random() < 0.5:
        body = d.fv(1, rng.randint(0, 3)) + \
            b"".join(d.fb(2, bytes(rng.choice([128, 128, 7]))) for _ in range(rng.randint(0, 4)))
    env = d.fv(1, rng.choice([1, 1, 1, 0, 2])) + d.fb(d.MSG.get(kind) or CONTROL[kind], body)
    return struct.pack(">I", len(env)) + env


def drain(peers):
    for p in peers:
        p.setblocking(False)
        try:
            while p.recv(65536):
                pass
        except OSError:
            pass
        p.setblocking(True)


def storm(g, rng, steps):
    peers = []
    for i in range(steps):
        r = rng.random()
        try:
            if r < 0.2 or not peers:
                peers.append(socket.create_connection(("127.0.0.1", g.port)))
            elif r < 0.3:
                peers.pop(rng.randrange(len(peers))).close()
            elif r < 0.35:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(g.sock)
                s.sendall(random_frame(rng))
                peers.append(s)
            elif r < 0.4:
                rng.choice(peers).sendall(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 20))))
            else:
                rng.choice(peers).sendall(random_frame(rng))
        except OSError:
            pass  # gridd closed that peer: expected
        if i % 400 == 0:
            d.check(g.proc.poll() is None, "gridd alive after %d steps" % i)
            drain(peers)
        if i % 700 == 0:
            g.ctl("cancel", "s")
            g.ctl("submit", "--job", "s", "--token", "t", *JOB)
    for p in peers:
        p.close()


def main():
    rng = random.Random(20261126)
    with tempfile.TemporaryDirectory(prefix="gridd-soak-") as tmp:
        g = d.Gridd(tmp, "soak", "--hello-timeout", "0.3", "--heartbeat-timeout", "0.5",
                    "--state-dir", tmp)
        try:
            d.check(g.ctl("submit", "--job", "s", "--token", "t", *JOB)[0] == 0, "submit s")
            storm(g, rng, 2500)
            d.check(g.proc.poll() is None, "gridd survives the storm")
            # Still serving: a fresh job rendezvous as usual.
            d.check(g.ctl("submit", "--job", "after", "--token", "ok", *JOB)[0] == 0, "submit after")
            peers = d.join_all(g, "after", "ok", [("h", 0), ("h", 1), ("h", 2), ("h", 3)])
            got, _ = d.rendezvous(peers, 1)
            d.check(sorted(d.one(a, 3) for a in got.values()) == [0, 1, 2, 3],
                    "rendezvous after the storm")
            d.check(g.ctl("cancel", "after")[0] == 0, "cancel after")
            for p in peers:
                p.close()
        finally:
            g.stop("soaked gridd")
    print("daemon_soak: %d passed, %d failed" % (d.passed, d.failed))
    return 1 if d.failed else 0


if __name__ == "__main__":
    sys.exit(main())
