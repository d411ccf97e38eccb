#!/usr/bin/env python3
"""gridd and hgridctl against the attacks of issue 18 (docs/RELIABILITY.md,
"Reliability II"), stdlib only: state and control directories others could
write to are refused; a cancel that cannot be saved is refused, not
acknowledged; submits stop at the ranks the loader accepts; an unknown job
and a wrong token get the same answer; refused peers are closed at once
and summarised in the log; control connections are capped, bounded and
timed out; self-test reports are cut to a bound and made printable;
hgridctl talks only to root or its own user and bounds and sanitises
replies."""
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, summary  # noqa: E402
from daemon_gridd import ERR, Peer, fb, frame, fv, one, parse  # noqa: E402

BIN = os.environ.get("HGRID_BIN", "bin")
GRIDD, CTL = os.path.join(BIN, "gridd"), os.path.join(BIN, "hgridctl")
STARTED = []  # every gridd this test started: killed at exit, whatever happened


def kill_started():
    for p in STARTED:
        if p.poll() is None:
            p.kill()
            p.wait()
SMALL = ["--llm-only", "--llm-tp", "1", "--llm-dp", "2"]
MILLION = ["--llm-only", "--llm-tp", "1", "--llm-dp", "1048576", "--micro-batch-size", "1",
           "--global-batch-size", "1048576"]


class Gridd:
    def __init__(self, tmp, name, *extra):
        self.tmp = tmp
        self.sock = os.path.join(tmp, name + ".sock")
        self.log = os.path.join(tmp, name + ".log")
        port_file = os.path.join(tmp, name + ".port")
        for stale in (port_file, self.sock):  # a killed gridd's: wait for the new ones
            if os.path.exists(stale):
                os.unlink(stale)
        # stdout not inherited: a gridd left behind must not hold the test's
        # output pipe (tests/run.sh waits for its end).
        self.proc = subprocess.Popen([GRIDD, "--listen", "127.0.0.1:0", "--control", self.sock,
                                      "--port-file", port_file, *extra],
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "a"))
        STARTED.append(self.proc)
        # Restoring 4M ranks under ASan on a loaded 2-core machine took > 20 s.
        deadline = time.time() + 180
        while time.time() < deadline and not (os.path.exists(port_file) and os.path.exists(self.sock)):
            if self.proc.poll() is not None:
                raise RuntimeError("gridd exited: " + self.log_text()[-2000:])
            time.sleep(0.02)
        if not os.path.exists(port_file):
            self.kill()
            raise RuntimeError("gridd did not listen within 180 s: " + self.log_text()[-2000:])
        self.port = int(open(port_file).read())

    def ctl(self, *args, timeout=60):
        r = subprocess.run([CTL, "--socket", self.sock, *args], capture_output=True, text=True,
                           timeout=timeout)
        return r.returncode, r.stdout, r.stderr

    def log_text(self):
        return open(self.log, errors="replace").read()

    def stop(self, what):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=60)
        text = self.log_text()
        check(rc == 0, "%s: gridd exit %d on SIGTERM" % (what, rc))
        check("Sanitizer" not in text and "runtime error" not in text,
              "%s: sanitizer report:\n%s" % (what, text[-3000:]))

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def refuses_to_start(args, want, what):
    """gridd must exit non-zero at once with a line containing want."""
    p = subprocess.Popen([GRIDD, "--listen", "127.0.0.1:0", *args], stderr=subprocess.PIPE, text=True)
    try:
        _, err = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
        check(False, "%s: gridd started" % what)
        return
    check(p.returncode != 0 and want in err, "%s: exit %s, %r" % (what, p.returncode, err))


def test_directories(tmp):
    """Issue 18.3 and 18.4: directories others may write to are refused."""
    state = os.path.join(tmp, "open-state")
    os.mkdir(state)
    os.chmod(state, 0o777)
    refuses_to_start(["--control", os.path.join(tmp, "d1.sock"), "--state-dir", state], "0777",
                     "a 0777 --state-dir")
    if os.geteuid() == 0:
        os.chmod(state, 0o700)
        os.chown(state, 65534, 65534)
        refuses_to_start(["--control", os.path.join(tmp, "d2.sock"), "--state-dir", state],
                         "uid 65534", "a --state-dir of another user")
    if os.geteuid() == 0:  # a control directory another user owns (a squatted fallback)
        theirs = os.path.join(tmp, "their-ctl")
        os.mkdir(theirs, 0o755)
        os.chown(theirs, 65534, 65534)
        refuses_to_start(["--control", os.path.join(theirs, "gridd.sock")], "uid 65534",
                         "a control socket in a directory of uid 65534")
    ctl_dir = os.path.join(tmp, "open-ctl")
    os.mkdir(ctl_dir)
    os.chmod(ctl_dir, 0o777)
    refuses_to_start(["--control", os.path.join(ctl_dir, "gridd.sock")], "not safe",
                     "a control socket in a 0777 directory")


def test_cancel_unsaved(tmp):
    """Issue 18.8: a cancel that cannot be saved is refused; the job stays."""
    state = os.path.join(tmp, "state")
    g = Gridd(tmp, "cancel", "--state-dir", state)
    check(g.ctl("submit", "--job", "keep", "--token", "keep-tok", *SMALL)[0] == 0, "submit keep")
    path = os.path.join(state, "gridd.state")
    os.rename(path, path + ".aside")
    os.mkdir(path)  # the next save's rename fails, even for root
    open(os.path.join(path, "x"), "w").close()
    code, out, err = g.ctl("cancel", "keep")
    check(code != 0 and "not cancelled" in err, "unsaved cancel refused: %d %r %r" % (code, out, err))
    code, out, _ = g.ctl("list")
    check(" keep " in " " + out.replace("\n", " "), "job listed after the refused cancel: %r" % out)
    os.unlink(os.path.join(path, "x"))
    os.rmdir(path)
    os.rename(path + ".aside", path)
    g.kill()
    g = Gridd(tmp, "cancel", "--state-dir", state)
    p = Peer(g.port)
    p.hello("keep", "keep-tok", "node-a", 0)
    p.s.settimeout(0.5)
    try:
        data = p.s.recv(4096)
        kind = "closed" if not data else "frame"
    except socket.timeout:
        kind = "joined"
    check(kind == "joined", "the token still works after the restart: %s" % kind)
    p.close()
    check(g.ctl("cancel", "keep")[0] == 0, "cancel once saving works")
    g.stop("cancel")


def test_rank_limit(tmp):
    """Issue 18.1: submits stop at the ranks the loader restores (4,194,304)."""
    state = os.path.join(tmp, "ranks")
    g = Gridd(tmp, "ranks", "--state-dir", state)
    for i in range(4):
        code, _, err = g.ctl("submit", "--job", "m%d" % i, "--token", "t", *MILLION)
        check(code == 0, "1M-rank submit %d: %s" % (i, err))
    code, _, err = g.ctl("submit", "--job", "m4", "--token", "t", *MILLION)
    check(code != 0 and "4194304" in err and "5242880" in err and err.count("\n") <= 1,
          "the fifth 1M-rank submit refused in one line: %r" % err)
    check(g.ctl("submit", "--job", "tiny", "--token", "t", *SMALL)[0] != 0,
          "no room left for 2 more ranks")
    g.kill()
    g = Gridd(tmp, "ranks", "--state-dir", state)
    code, out, _ = g.ctl("list")
    check(code == 0 and all(" m%d " % i in " " + out.replace("\n", " ") for i in range(4)),
          "every acknowledged 1M-rank job restored: %r" % out[:400])
    g.stop("ranks")


def test_unauthenticated(tmp):
    """Issue 18.5 and 18.6: one answer, closed at once, summarised."""
    g = Gridd(tmp, "unauth", "--max-pending", "16")
    check(g.ctl("submit", "--job", "real", "--token", "real-tok", *SMALL)[0] == 0, "submit real")
    p = Peer(g.port)
    p.hello("real", "wrong", "node-a", 0)
    bad_token = p.error()
    p = Peer(g.port)
    p.hello("nojob", "wrong", "node-a", 0)
    no_job = p.error()
    check(bad_token[0] == no_job[0] == "BAD_TOKEN" and bad_token[2] and no_job[2],
          "the same code for a wrong token and an unknown job: %s / %s" % (bad_token, no_job))
    check(bad_token[1].replace("'real'", "'nojob'") == no_job[1],
          "the same message: %r / %r" % (bad_token[1], no_job[1]))
    # The same on the other doors a token opens: a store client, an agent's host link.
    for what, msg_no, body in (("StoreOpen", 80, lambda job, tok: fb(1, job) + fb(2, tok)),
                               ("HostHello", 100, lambda job, tok: fb(100, job) + fb(101, tok)
                                + fb(102, "node-a"))):
        answers = []
        for job in ("real", "nojob"):
            p = Peer(g.port)
            env = fv(1, 2) + fb(msg_no, body(job, "wrong"))
            p.send(struct.pack(">I", len(env)) + env)
            answers.append(p.error())
            p.close()
        (c1, m1, _), (c2, m2, _) = answers
        check(c1 == c2 == "BAD_TOKEN" and m1.replace("'real'", "'nojob'") == m2,
              "%s: the same answer for a wrong token and an unknown job: %s" % (what, answers))
    # A refused frame closes at once: no 2 s linger outside --max-pending.
    p = Peer(g.port)
    p.send(struct.pack(">I", 5) + b"\xff\xff\xff\xff\xff")
    t0 = time.time()
    kind, _ = p.recv()
    eof = p.recv(timeout=3)[0]
    check(kind == "error" and eof == "eof" and time.time() - t0 < 1.0,
          "closed %.2f s after the refusal (%s, %s)" % (time.time() - t0, kind, eof))
    # 400 garbage frames and wrong tokens: a few summary lines, no line each.
    before = g.log_text().count("\n")
    peers = []
    for i in range(400):
        p = Peer(g.port)
        if i % 2:
            p.send(struct.pack(">I", 3) + b"\x1b[2J")
        else:
            p.hello("x\x1b]0;owned\x07", "bad", "h", 0)
        peers.append(p)
    for p in peers:
        p.recv(timeout=5)
        p.close()
    time.sleep(1.5)
    text = g.log_text()
    lines = text.split("\n")[before:]
    check(len(lines) <= 8, "%d log lines for 400 refusals:\n%s" % (len(lines), "\n".join(lines[:20])))
    summed = sum(int(l.split("refused ")[1].split()[0]) for l in lines
                 if "connections before an accepted Hello" in l)
    check(summed >= 400, "summary lines count the refusals: %d" % summed)
    check("\x1b" not in text and "\x07" not in text, "no control bytes in the log")
    # A healthy worker still joins.
    p = Peer(g.port)
    p.hello("real", "real-tok", "node-a", 0)
    p.s.settimeout(0.5)
    try:
        joined = p.s.recv(1) != b""
    except socket.timeout:
        joined = True
    check(joined, "a real worker joins after the flood")
    p.close()
    g.stop("unauth")


def control_peer(sock_path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    return s


def send_ctl(s, msg_no, body):
    env = fv(1, 2) + fb(msg_no, body)
    s.sendall(struct.pack(">I", len(env)) + env)


def recv_ctl(s, timeout=5):
    s.settimeout(timeout)
    head = b""
    try:
        while len(head) < 4:
            c = s.recv(4 - len(head))
            if not c:
                return "eof", None
            head += c
        n = struct.unpack(">I", head)[0]
        body = b""
        while len(body) < n:
            c = s.recv(n - len(body))
            if not c:
                return "eof", None
            body += c
    except (socket.timeout, ConnectionResetError):
        return "timeout", None
    env = parse(body)
    for no, vals in env.items():
        if no != 1:
            return no, parse(vals[0])
    return "empty", None


def test_control_connections(tmp):
    """Issue 18.10: control connections capped, bounded and timed out when idle."""
    g = Gridd(tmp, "control", "--control-idle-timeout", "1")
    held = [control_peer(g.sock) for _ in range(64)]
    for s in held:
        send_ctl(s, 31, b"")  # ListJobs
        check(recv_ctl(s)[0] == 35, "a listed control connection is served")
    extra = control_peer(g.sock)
    kind, f = recv_ctl(extra)
    check(kind == 20 and ERR.get(one(f, 1)) == "LIMIT", "the 65th control connection refused: %s" % kind)
    extra.close()
    for s in held:
        s.close()
    time.sleep(0.3)
    s = control_peer(g.sock)
    s.sendall(struct.pack(">I", 1 << 20))  # a 1 MiB request announced
    kind, f = recv_ctl(s)
    check(kind == 20 and ERR.get(one(f, 1)) == "BAD_FRAME", "a 1 MiB control frame refused: %s" % kind)
    s.close()
    s = control_peer(g.sock)
    t0 = time.time()
    kind, _ = recv_ctl(s, timeout=5)
    if kind == 20:
        kind = recv_ctl(s, timeout=5)[0]
    check(kind == "eof" and 0.8 < time.time() - t0 < 3, "an idle control connection closed after "
          "%.2f s (%s)" % (time.time() - t0, kind))
    s.close()
    g.stop("control")


def test_self_test_bounded(tmp):
    """Issue 18.10 and 18.15: reports cut to a bound, printable."""
    g = Gridd(tmp, "selftest")
    check(g.ctl("submit", "--job", "st", "--token", "st-tok", "--llm-only", "--llm-tp", "1",
                "--llm-dp", "1")[0] == 0, "submit st")
    p = Peer(g.port)
    p.hello("st", "st-tok", "node-a", 0)
    kind, f = p.recv()
    check(kind == "assignment", "assigned: %s" % kind)
    p.send(frame("ready", fv(1, 1)))
    groups = b"".join(fb(2, fb(1, "g%d\x1b[2J" % i) + fv(2, 1) + fb(4, "\x1b]0;pwn\x07" + "x" * 400))
                      for i in range(200))
    env = fv(1, 2) + fb(16, fv(1, 1) + groups)
    p.send(struct.pack(">I", len(env)) + env)
    time.sleep(0.3)
    code, out, err = g.ctl("status", "st", "--json")
    check(code == 0, "status st --json: %s" % err)
    info = json.loads(out) if code == 0 else {}
    checks = [c for w in info.get("workers", []) for c in w.get("self_test", [])]
    check(0 < len(checks) <= 32, "%d checks kept of 200" % len(checks))
    check(all(len(c.get("detail", "")) < 200 for c in checks), "details cut short")
    check(all("\x1b" not in c.get("detail", "") + c.get("name", "") for c in checks),
          "no ESC kept")
    code, out, _ = g.ctl("status", "st")
    check("\x1b" not in out and "\x07" not in out, "status prints no control bytes")
    p.close()
    g.stop("selftest")


def fake_gridd(tmp, name, replies):
    """A control socket served by this process: answers each connection's
    request with the next of replies (raw frames); returns (path, thread)."""
    import threading
    path = os.path.join(tmp, name + ".sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(8)

    def serve():
        for reply in replies:
            c, _ = srv.accept()
            try:
                recv_ctl(c, timeout=5)
                c.sendall(reply)
            except OSError:
                pass
            time.sleep(0.2)
            c.close()
        srv.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return path, t


def env_frame(msg_no, body):
    env = fv(1, 2) + fb(msg_no, body)
    return struct.pack(">I", len(env)) + env


def test_ctl_replies(tmp):
    """Issue 18.14 and 18.15: hgridctl bounds and sanitises gridd's replies."""
    hostile = "\x1b]0;owned\x07\x1b[2Jrank 0 ready\n\xc2\x9b31m"
    empty_workers = fb(7, b"") * 200000
    path, t = fake_gridd(tmp, "fake", [
        env_frame(20, fv(1, 3) + fb(2, hostile)),
        env_frame(36, fb(1, "x" * (1 << 20))),
        env_frame(34, fb(1, "j") + empty_workers),
    ])
    r = subprocess.run([CTL, "--socket", path, "cancel", "j"], capture_output=True, timeout=30)
    check(r.returncode != 0 and b"\x1b" not in r.stderr + r.stdout and b"\xc2\x9b" not in r.stderr
          and b"\x07" not in r.stderr, "a hostile Error printed safely: %r" % r.stderr)
    r = subprocess.run([CTL, "--socket", path, "cancel", "j"], capture_output=True, timeout=30)
    check(r.returncode != 0 and b"limit" in r.stderr, "a 1 MiB Ok refused: %r" % r.stderr[:300])
    r = subprocess.run([CTL, "--socket", path, "show", "j"], capture_output=True, timeout=30)
    check(r.returncode != 0 and b"undecodable" in r.stderr,
          "a JobInfo of 200,000 empty workers refused: %r" % r.stderr[:300])
    t.join(10)


def test_ctl_text_modes(tmp):
    """Issue 18.15: every text mode of hgridctl (list, show, status, watch)
    prints a hostile gridd's strings (state, end reason, host, worker
    state, self-test names and details) without control bytes."""
    g = Gridd(tmp, "layout")
    check(g.ctl("submit", "--job", "j", "--token", "t", *SMALL)[0] == 0, "submit j")
    s = control_peer(g.sock)
    send_ctl(s, 32, fb(1, "j"))  # ShowJob: a real layout to draw
    kind, f = recv_ctl(s)
    s.close()
    g.stop("layout")
    check(kind == 34 and 6 in f, "a JobInfo with its layout: %s" % kind)
    layout = one(f or {}, 6, b"")
    hostile = b"x\x1b]0;owned\x07\x1b[2J\nrank 1 ready\xc2\x9b31m\x9d\x7f"
    checks = fb(1, hostile) + fv(2, 1) + fb(4, hostile)
    workers = b"".join(fb(7, fv(1, r) + fb(2, hostile) + fv(3, r) + fb(4, hostile) + fb(10, checks))
                       for r in range(2))
    info = (fb(1, "j") + fb(2, hostile) + fv(3, 1) + fv(4, 2) + fv(5, 2) + fb(6, layout) + workers
            + fv(60, 1) + fb(61, hostile) + fv(121, 2))
    modes = (["list"], ["--json", "list"], ["show", "j"], ["status", "j"], ["status", "j", "--all"],
             ["watch", "j", "--once"])
    for args in modes:
        reply = env_frame(35, fb(1, info)) if "list" in args else env_frame(34, info)
        path, t = fake_gridd(tmp, "text-" + "-".join(a.strip("-") for a in args), [reply])
        r = subprocess.run([CTL, "--socket", path, *args], capture_output=True, timeout=30)
        t.join(5)
        out = r.stdout + r.stderr
        check(r.returncode == 0 and b"owned" in out, "hgridctl %s: exit %d, %r" %
              (" ".join(args), r.returncode, out[:300]))
        check(not any(c in out for c in (b"\x1b", b"\x07", b"\x9b", b"\x9d", b"\x7f"))
              and b"\nrank 1 ready" not in out,
              "hgridctl %s prints no control bytes: %r" % (" ".join(args), out[:600]))


def test_host_names(tmp):
    """Issue 18.15: gridd refuses host names a terminal would obey (C0,
    DEL, C1 raw or UTF-8), so status/show/watch never receive them."""
    g = Gridd(tmp, "hosts")
    check(g.ctl("submit", "--job", "h", "--token", "h-tok", *SMALL)[0] == 0, "submit h")
    for host in (b"node\x9b31m", b"node\xc2\x9b", b"node\xc2\x9d0;x", b"node\x1b[2J", b"node\x7f"):
        p = Peer(g.port)
        p.hello("h", "h-tok", host, 0)
        code, msg, closed = p.error()
        check(code == "BAD_REQUEST" and "printable ASCII" in msg and closed,
              "host name %r refused: %s %r" % (host, code, msg))
        p.close()
    code, out, _ = g.ctl("status", "h", "--json")
    check(code == 0 and json.loads(out).get("joined", 0) == 0, "no worker joined: %r" % out[:200])
    raw = open(g.log, "rb").read()
    check(not any(c in raw for c in (b"\x1b", b"\x7f", b"\x9b", b"\x9d")),
          "gridd's log holds no control bytes")
    g.stop("hosts")


def form(peers):
    """Answers MintRequests until every raw peer has its Assignment; returns
    the generation."""
    got = {}
    deadline = time.time() + 20
    while len(got) < len(peers) and time.time() < deadline:
        for i, p in enumerate(peers):
            if i in got:
                continue
            if p.s and not select.select([p.s], [], [], 0.2)[0]:
                continue  # nothing yet (a recv timeout would cut a frame in two)
            kind, f = p.recv() if p.s else ("eof", None)
            if kind == "mint_request":
                ids = b"".join(fb(2, os.urandom(128)) for _ in range(one(f, 2)))
                p.send(frame("mint_reply", fv(1, one(f, 1)) + ids))
            elif kind == "assignment":
                got[i] = one(f, 1)
    check(len(got) == len(peers), "%d of %d workers assigned" % (len(got), len(peers)))
    return max(got.values()) if got else 0


def test_reasons_printable(tmp):
    """Issue 18.15: a token holder's Leave reason and Failure text reach the
    other workers (Abort, Release), the state file and hgridctl without
    control bytes: gridd keeps them printable as it takes them in."""
    hostile = "\x1b]0;owned\x07\x1b[2J\nhgrid-worker: notice forged\xc2\x9b\x7f"
    g = Gridd(tmp, "reasons", "--state-dir", os.path.join(tmp, "reasons-state"))
    check(g.ctl("submit", "--job", "lv", "--token", "lv-tok", *SMALL)[0] == 0, "submit lv")
    peers = [Peer(g.port) for _ in range(2)]
    for i, p in enumerate(peers):
        p.hello("lv", "lv-tok", "node-%d" % i, 0)
    form(peers)
    peers[0].send(frame("leave", fb(1, hostile)))
    peers[0].close()
    kind, f = peers[1].recv()
    reason = one(f or {}, 2, b"")
    check(kind == "abort" and b"notice forged" in reason, "the other worker's Abort: %s %r" % (kind, reason))
    check(not any(c in reason for c in (b"\x1b", b"\x07", b"\n", b"\x9b", b"\x7f")),
          "the Abort carries a Leave reason without control bytes: %r" % reason)
    peers[1].close()
    check(g.ctl("submit", "--job", "fl", "--token", "fl-tok", "--llm-only", "--llm-tp", "1",
                "--llm-dp", "1")[0] == 0, "submit fl")
    p = Peer(g.port)
    p.hello("fl", "fl-tok", "node-a", 0)
    gen = form([p])
    env = fv(1, 2) + fb(61, fv(1, gen) + fb(2, hostile) + fv(3, 0))  # Failure, no retry
    p.send(struct.pack(">I", len(env)) + env)
    kind, f = p.recv()
    while kind == "abort":
        kind, f = p.recv()
    reason = one(f or {}, 1, b"")
    check(kind == "release" and b"notice forged" in reason, "the Release: %s %r" % (kind, reason))
    check(not any(c in reason for c in (b"\x1b", b"\x07", b"\n", b"\x9b", b"\x7f")),
          "the Release carries a Failure text without control bytes: %r" % reason)
    p.close()
    g.kill()
    state = open(os.path.join(tmp, "reasons-state", "gridd.state"), "rb").read()
    check(b"notice forged" in state and b"\x1b" not in state and b"\x9b" not in state,
          "the state file keeps the ended job's reason printable")
    g = Gridd(tmp, "reasons", "--state-dir", os.path.join(tmp, "reasons-state"))
    code, out, _ = g.ctl("list", "--json")
    why = {j["job"]: j.get("reason", "") for j in json.loads(out)["jobs"]}.get("fl", "") if code == 0 else ""
    check("notice forged" in why and not any(c in why for c in "\x1b\x07\n\x9b\x7f"),
          "the restored job's reason: %r" % why)
    g.stop("reasons")


def test_ctl_peer(tmp):
    """Issue 18.4: hgridctl sends nothing to a socket served by another user."""
    if os.geteuid() != 0:
        print("note: not root: the SO_PEERCRED check of hgridctl is not exercised here")
        return
    d = os.path.join(tmp, "squat")
    os.mkdir(d)
    os.chmod(d, 0o777)
    os.chmod(tmp, 0o755)
    path = os.path.join(d, "gridd.sock")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            os.setgid(65534)
            os.setuid(65534)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            s.listen(1)
            os.write(w, b"L")
            c, _ = s.accept()
            c.settimeout(3)
            got = b""
            try:
                while True:
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    got += chunk
            except socket.timeout:
                pass
            os.write(w, b"%d" % len(got))
        finally:
            os._exit(0)
    os.close(w)
    os.read(r, 1)
    res = subprocess.run([CTL, "--socket", path, "submit", "--job", "j", "--token", "SECRET-TOKEN",
                          *SMALL], capture_output=True, text=True, timeout=30)
    got = os.read(r, 32)
    os.waitpid(pid, 0)
    check(res.returncode != 0 and "uid 65534" in res.stderr,
          "hgridctl refuses a socket served by uid 65534: %r" % res.stderr)
    check(got == b"0", "bytes the squatter received: %s" % got.decode())


def main():
    tmp = tempfile.mkdtemp(prefix="hgrid-rel-")
    test_directories(tmp)
    test_cancel_unsaved(tmp)
    test_unauthenticated(tmp)
    test_control_connections(tmp)
    test_self_test_bounded(tmp)
    test_ctl_replies(tmp)
    test_ctl_text_modes(tmp)
    test_host_names(tmp)
    test_reasons_printable(tmp)
    test_ctl_peer(tmp)
    test_rank_limit(tmp)
    return summary("daemon_reliability")


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        kill_started()
