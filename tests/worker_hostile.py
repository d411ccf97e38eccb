#!/usr/bin/env python3
"""hgrid-worker (dry-run, so libhgrid) against a fake coordinator (issue 18,
docs/RELIABILITY.md "A coordinator is trusted only as far as it must be"):
MintRequests are obeyed once per generation and for a bounded number of
generations that never form; an Assignment for another job is refused;
gridd's texts reach stderr without control bytes; an address that accepts
and then drops is given up on by --reconnect-timeout. Stdlib only."""
import os
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, summary  # noqa: E402
from daemon_gridd import fb, frame, fv, one, parse  # noqa: E402

BIN = os.environ.get("HGRID_BIN", "bin")
WORKER = os.path.join(BIN, "hgrid-worker")
HOSTILE = "\x1b]0;owned\x07\x1b[2J\nhgrid-worker: notice forged\xc2\x9b"


class Fake:
    """A listening socket standing in for gridd; handler(conn, index) runs per connection."""

    def __init__(self, handler):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(64)
        self.port = self.srv.getsockname()[1]
        self.accepted = 0
        self.handler = handler
        self.done = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.done:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            self.accepted += 1
            try:
                self.handler(c, self.accepted - 1)
            except OSError:
                pass

    def close(self):
        self.done = True
        self.srv.close()


def read_frame(c, timeout=5):
    c.settimeout(timeout)
    head = b""
    while len(head) < 4:
        chunk = c.recv(4 - len(head))
        if not chunk:
            return None, None
        head += chunk
    n = struct.unpack(">I", head)[0]
    body = b""
    while len(body) < n:
        chunk = c.recv(n - len(body))
        if not chunk:
            return None, None
        body += chunk
    for no, vals in parse(body).items():
        if no != 1:
            return no, parse(vals[0])
    return 0, {}


def worker(port, *extra):
    return subprocess.Popen([WORKER, "--coordinator", "127.0.0.1:%d" % port, "--job", "j",
                             "--token", "t", "--host", "node-a", "--dry-run", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc, timeout):
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out + err
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return None, out + err


def usage(proc):
    """(threads, open descriptors) of a running process, or None."""
    try:
        status = open("/proc/%d/status" % proc.pid).read()
        threads = int(status.split("Threads:")[1].split()[0])
        return threads, len(os.listdir("/proc/%d/fd" % proc.pid))
    except (AttributeError, OSError, IndexError, ValueError):
        return None


def test_mint_bounded():
    """Mints once per generation, for at most 8 generations without an Assignment."""
    got = {"replies": [], "ids": [], "use": []}
    holder = {}

    def handler(c, _):
        read_frame(c)  # Hello
        for g in [1, 1] + list(range(2, 40)):
            c.sendall(frame("mint_request", fv(1, g) + fv(2, 2)))
            kind, f = read_frame(c, timeout=3)
            if kind != 12:
                break
            got["replies"].append(one(f, 1))
            got["ids"].append(f.get(2, []))
            got["use"].append(usage(holder.get("proc")))
        time.sleep(0.5)
        c.close()
    fake = Fake(handler)
    holder["proc"] = worker(fake.port, "--reconnect-timeout", "0")
    rc, text = finish(holder["proc"], 30)
    fake.close()
    use = [u for u in got["use"] if u]
    print("worker (threads, fds) after each MintReply: %s" % use)
    check(len(use) >= 8 and max(u[0] for u in use) <= use[0][0] and max(u[1] for u in use) <= use[0][1],
          "threads and descriptors do not grow with mints: (threads, fds) after each reply %s" % use)
    check(rc not in (None, 0), "the worker stopped (exit %s)" % rc)
    check(b"8 generations" in text, "it says why: %r" % text[-400:])
    check(len(got["replies"]) == 9, "replies: %s (gen 1 twice, then 2..8)" % got["replies"])
    check(len(got["ids"]) >= 2 and got["ids"][0] == got["ids"][1] and len(got["ids"][0]) == 2,
          "asked twice for generation 1, the same ids go back")
    check(len(set(x for ids in got["ids"][1:] for x in ids)) == 2 * (len(got["ids"]) - 1),
          "fresh ids for each generation")


def test_other_job():
    """An Assignment for another job than --job is refused."""
    def handler(c, _):
        read_frame(c)
        c.sendall(frame("assignment", fv(1, 1) + fb(9, "other")))
        time.sleep(1)
        c.close()
    fake = Fake(handler)
    rc, text = finish(worker(fake.port, "--reconnect-timeout", "0"), 30)
    fake.close()
    check(rc not in (None, 0) and b"for job 'other'" in text,
          "an Assignment for another job refused: %s %r" % (rc, text[-300:]))


def test_texts_sanitised():
    """Abort and Release reasons reach stderr without control bytes."""
    def handler(c, _):
        read_frame(c)
        c.sendall(frame("abort", fv(1, 1) + fb(2, HOSTILE)))
        time.sleep(0.2)
        c.sendall(frame("release", fb(1, HOSTILE)))
        time.sleep(1)
        c.close()
    fake = Fake(handler)
    rc, text = finish(worker(fake.port, "--reconnect-timeout", "0"), 30)
    fake.close()
    check(rc == 0 and b"released" in text, "released: %s %r" % (rc, text[-300:]))
    check(b"\x1b" not in text and b"\x07" not in text and b"\xc2\x9b" not in text
          and b"\nhgrid-worker: notice forged" not in text, "no control bytes printed: %r" % text)


def test_error_sanitised():
    """An Error from the coordinator reaches stderr without control bytes."""
    def handler(c, _):
        read_frame(c)
        c.sendall(frame("error", fv(1, 3) + fb(2, HOSTILE)))
        time.sleep(0.5)
        c.close()
    fake = Fake(handler)
    rc, text = finish(worker(fake.port, "--reconnect-timeout", "0"), 30)
    fake.close()
    check(rc not in (None, 0) and b"notice forged" in text, "the Error reported: %s %r" % (rc, text[-300:]))
    check(b"\x1b" not in text and b"\x07" not in text and b"\xc2\x9b" not in text
          and b"\nhgrid-worker: notice forged" not in text, "no control bytes printed: %r" % text)


def test_reconnect_gives_up():
    """An address that accepts and drops: the worker gives up by its deadline."""
    def handler(c, index):
        if index == 0:
            read_frame(c)
            time.sleep(0.3)
        c.close()
    fake = Fake(handler)
    t0 = time.time()
    rc, text = finish(worker(fake.port, "--reconnect-timeout", "2"), 15)
    took = time.time() - t0
    fake.close()
    check(rc not in (None, 0) and took < 6, "gave up after %.1f s (exit %s): %r" % (took, rc, text[-300:]))
    check(fake.accepted < 20, "%d connections in %.1f s (backoff kept growing)" % (fake.accepted, took))


def main():
    test_mint_bounded()
    test_other_job()
    test_texts_sanitised()
    test_error_sanitised()
    test_reconnect_gives_up()
    return summary("worker_hostile")


if __name__ == "__main__":
    sys.exit(main())
