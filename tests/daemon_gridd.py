#!/usr/bin/env python3
"""gridd against hostile and normal clients, stdlib only: framing errors,
timeouts, the connection cap, hgridctl's control commands, the worker
protocol by hand (mint, assignment, abort, rejoin, release), restart from
--state-dir, and a clean SIGTERM exit with sanitizers silent."""
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

BIN = os.environ.get("HGRID_BIN", "bin")
GRIDD, CTL = os.path.join(BIN, "gridd"), os.path.join(BIN, "hgridctl")
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL " + what, flush=True)


# ---- protobuf by hand (field numbers from proto/hgrid.proto)
MSG = {"hello": 10, "mint_request": 11, "mint_reply": 12, "assignment": 13, "ready": 14,
       "heartbeat": 15, "abort": 17, "release": 18, "leave": 19, "error": 20}
MSG_NAME = {v: k for k, v in MSG.items()}
ERR = {1: "BAD_FRAME", 2: "BAD_VERSION", 3: "BAD_REQUEST", 4: "UNKNOWN_JOB", 5: "BAD_TOKEN",
       6: "DUPLICATE_DEVICE", 7: "RANK_REFUSED", 8: "JOB_FULL", 11: "LIMIT", 12: "TIMEOUT"}


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def fv(no, v):
    return varint(no << 3) + varint(v)


def fb(no, b):
    if isinstance(b, str):
        b = b.encode()
    return varint(no << 3 | 2) + varint(len(b)) + b


def parse(buf):
    """Fields of a message: {number: [int or bytes, ...]}."""
    out, i = {}, 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        no, wt = key >> 3, key & 7
        if wt == 0:
            v, i = read_varint(buf, i)
        elif wt == 2:
            n, i = read_varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        else:
            raise ValueError("wire type %d" % wt)
        out.setdefault(no, []).append(v)
    return out


def read_varint(buf, i):
    n = shift = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def one(fields, no, default=0):
    return fields.get(no, [default])[0]


def frame(msg, body, version=2):
    env = fv(1, version) + fb(MSG[msg], body)
    return struct.pack(">I", len(env)) + env


class Peer:
    """A raw TCP client of gridd."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)

    def send(self, data):
        self.s.sendall(data)

    def recv(self, timeout=5.0):
        """(message name, fields), or ("eof", None)."""
        self.s.settimeout(timeout)
        head = self._exact(4)
        if head is None:
            return "eof", None
        body = self._exact(struct.unpack(">I", head)[0])
        self.last_size = len(body)
        env = parse(body)
        for no, vals in env.items():
            if no != 1:
                return MSG_NAME.get(no, str(no)), parse(vals[0])
        return "empty", None

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.s.recv(n - len(buf))
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            buf += chunk
        return buf

    def error(self):
        """The Error gridd sent, then whether it closed: (code, message, closed)."""
        kind, f = self.recv()
        if kind != "error":
            return None, kind, False
        closed = self.recv()[0] == "eof"
        return ERR.get(one(f, 1), one(f, 1)), one(f, 2, b"").decode(), closed

    def hello(self, job, token, host, device, rank=None):
        body = fb(1, job) + fb(2, token) + fb(3, host) + fv(4, device) + fv(7, 1)
        if rank is not None:
            body += fb(6, fv(1, rank))
        self.send(frame("hello", body))

    def close(self):
        self.s.close()


class Gridd:
    def __init__(self, tmp, name, *extra, sock=None):
        self.sock = sock or os.path.join(tmp, name + ".sock")
        self.log = os.path.join(tmp, name + ".log")
        port_file = os.path.join(tmp, name + ".port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        self.proc = subprocess.Popen(
            [GRIDD, "-v", "--listen", "127.0.0.1:0", "--control", self.sock, "--port-file",
             port_file] + list(extra), stderr=open(self.log, "w"))
        deadline = time.time() + 10
        while not os.path.exists(port_file) and time.time() < deadline:
            time.sleep(0.02)
        self.port = int(open(port_file).read())
        while not os.path.exists(self.sock) and time.time() < deadline:
            time.sleep(0.02)

    def ctl(self, *args):
        r = subprocess.run([CTL, "--socket", self.sock] + list(args), capture_output=True,
                           text=True, timeout=30)
        return r.returncode, r.stdout, r.stderr

    def log_text(self):
        return open(self.log).read()

    def stop(self, what):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=30)
        text = self.log_text()
        check(rc == 0, "%s: SIGTERM exit %d" % (what, rc))
        check("AddressSanitizer" not in text and "runtime error" not in text
              and "LeakSanitizer" not in text, "%s: sanitizer report:\n%s" % (what, text[-3000:]))
        check(not os.path.exists(self.sock), "%s: control socket left behind" % what)


def wait_for(cond, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


# ---- hostile input

def test_frames(g):
    code, out, err = g.ctl("submit", "--job", "frames", "--token", "tok")
    check(code == 0, "submit for the frame tests: %s" % err)
    bystander = Peer(g.port)
    a = Peer(g.port)
    a.send(struct.pack(">I", 0x7FFFFFFF) + b"x" * 100)
    code, msg, closed = a.error()
    check(code == "BAD_FRAME" and "exceeds" in msg and closed, "oversized: %s %s %s" % (code, msg, closed))
    bystander.hello("frames", "tok", "host-x", 0)
    check(wait_for(lambda: "worker joined host=host-x device=0 " in g.log_text()), "bystander Hello after an oversized frame")
    _, show, _ = g.ctl("show", "frames", "--json")
    workers = json.loads(show)["workers"] if show else []
    check([w["host"] for w in workers] == ["host-x"] and workers[0]["rank"] == -1,
          "show lists the bystander: %s" % workers)

    b = Peer(g.port)
    b.send(struct.pack(">I", 6) + b"\xff" * 6)
    code, msg, closed = b.error()
    check(code == "BAD_FRAME" and "undecodable" in msg and closed, "garbage: %s %s" % (code, msg))

    c = Peer(g.port)
    c.send(struct.pack(">I", 100) + b"\x08\x01" * 5)
    c.s.shutdown(socket.SHUT_WR)
    check(c.recv()[0] == "eof", "truncated frame: gridd closes")
    check(wait_for(lambda: "truncated frame at EOF" in g.log_text()), "truncated frame logged")

    d = Peer(g.port)
    d.send(frame("hello", fb(1, "frames"), version=7))
    code, msg, closed = d.error()
    check(code == "BAD_VERSION" and "version 7" in msg and "version 2" in msg and closed,
          "wrong version: %s %s" % (code, msg))

    h = Peer(g.port)
    h.send(struct.pack(">I", 8192) + b"\0" * 100)
    code, msg, closed = h.error()
    check(code == "BAD_FRAME" and "4096-byte limit" in msg and closed,
          "large frame before Hello: %s %s" % (code, msg))
    h.close()

    e = Peer(g.port)
    e.send(frame("ready", fv(1, 1)))
    code, msg, closed = e.error()
    check(code == "BAD_REQUEST" and "Hello" in msg and closed, "message before Hello: %s %s" % (code, msg))

    t0 = time.time()
    f = Peer(g.port)
    code, msg, closed = f.error()
    took = time.time() - t0
    check(code == "TIMEOUT" and closed and 0.3 < took < 3, "hello timeout: %s %s after %.2fs" % (code, msg, took))

    # After its Hello a worker may send frames up to --max-frame only.
    bystander2 = Peer(g.port)
    bystander2.hello("frames", "tok", "host-x", 1)
    check(wait_for(lambda: "worker joined host=host-x device=1 " in g.log_text()), "second bystander joins")
    bystander2.send(struct.pack(">I", (1 << 20) + 1))
    code, msg, closed = bystander2.error()
    check(code == "BAD_FRAME" and "1048576-byte limit" in msg and closed,
          "frame over --max-frame after Hello: %s %s" % (code, msg))
    bystander2.close()

    # The bystander is still joined and gridd still answers.
    _, show, _ = g.ctl("show", "frames", "--json")
    check(show and json.loads(show)["workers"][0]["state"] == "joined", "bystander survives")
    for p in (bystander, a, b, c, d, e, f):
        p.close()
    check(g.ctl("cancel", "frames")[0] == 0, "cancel frames")


def test_connection_cap(tmp):
    g = Gridd(tmp, "cap", "--max-connections", "2")
    keep = [Peer(g.port), Peer(g.port)]
    time.sleep(0.1)
    third = Peer(g.port)
    code, msg, closed = third.error()
    check(code == "LIMIT" and "--max-connections" in msg and closed, "cap: %s %s" % (code, msg))
    check(g.ctl("list")[0] == 0, "hgridctl works while workers fill the cap")
    for p in keep + [third]:
        p.close()
    g.stop("cap gridd")


# ---- control commands through hgridctl

def test_control(g):
    code, out, err = g.ctl("submit", "--job", "ctl-a", "--llm-pp", "2", "--global-batch-size", "4")
    check(code == 0 and len(out.strip()) == 32 and int(out, 16) >= 0,
          "submit prints a 128-bit hex token: %r %r" % (out, err))
    code, out, err = g.ctl("submit", "--job", "ctl-a", "--token", "x")
    check(code == 1 and "exists" in err, "duplicate job: %d %r" % (code, err))
    code, out, err = g.ctl("submit", "--job", "ctl-b", "--llm-cp", "2")
    check(code == 1 and "invalid layout" in err and "--llm-cp" in err, "invalid layout: %d %r" % (code, err))
    code, out, err = g.ctl("submit", "--job", "bad name!", "--token", "t")
    check(code == 2 and "job names are 1-64 bytes" in err, "bad job name: %d %r" % (code, err))
    code, out, err = g.ctl("submit", "--token", "t")
    check(code == 2 and "--job" in err, "submit without --job: %d %r" % (code, err))
    check(g.ctl("submit", "--job", "ctl-b", "--token", "t", "--llm-only", "--llm-dp", "4")[0] == 0,
          "second job")
    code, out, err = g.ctl("list")
    check(code == 0 and "ctl-a" in out and "ctl-b" in out and "0/12" in out and "0/8" in out,
          "list: %r" % out)
    code, out, err = g.ctl("show", "ctl-a", "--json")
    shown = json.loads(out)
    plan = json.loads(subprocess.run([CTL, "plan", "--json", "--llm-pp", "2", "--global-batch-size", "4"],
                                     capture_output=True, text=True).stdout)
    check(list(shown.keys()) == ["job", "state", "generation", "world_size", "workers", "num_workers", "plan"],
          "show --json keys: %s" % list(shown.keys()))
    check(shown["plan"] == plan, "show --json plan equals plan --json")
    check(shown["state"] == "waiting" and shown["generation"] == 0 and shown["world_size"] == 12
          and shown["num_workers"] == 0,
          "show --json fields: %s" % {k: shown[k] for k in ("state", "generation", "world_size", "num_workers")})
    code, out, err = g.ctl("status", "ctl-a")
    check(code == 0 and "joined 0/12" in out and "waiting" in out, "status: %r" % out)
    code, out, err = g.ctl("show", "nope")
    check(code == 1 and "no job named 'nope'" in err, "show unknown: %d %r" % (code, err))
    code, out, err = g.ctl("cancel", "ctl-a")
    check(code == 0 and "cancelled" in out, "cancel: %d %r" % (code, err))
    code, out, err = g.ctl("cancel", "ctl-a")  # kept as cancelled: a second cancel removes it
    check(code == 0 and "had ended (cancelled); removed" in out, "cancel twice: %d %r" % (code, out))
    code, out, err = g.ctl("cancel", "ctl-a")
    check(code == 1, "cancel thrice: %d" % code)
    check(g.ctl("cancel", "ctl-b")[0] == 0, "cancel ctl-b")
    for cmd in ("submit", "list", "show", "status", "cancel"):
        code, out, _ = g.ctl(cmd, "--help")
        check(code == 0 and "usage: hgridctl " + cmd in out, "%s --help" % cmd)
    # gridd refuses at submit, with the engine's own line, every shape its
    # workers would refuse (a submit that bypasses hgridctl's check).
    for flags, fields in ((["--seq-length", "200"], {6: 200}), (["--vocab-size", "10"], {5: 10}),
                          (["--num-layers", "1000000000"], {1: 10 ** 9}),
                          (["--image-size", "65537", "--patch-size", "1"], {12: 65537, 13: 1})):
        model = {1: 12, 2: 768, 3: 12, 5: 32000, 6: 1024, 8: 2, 9: 12, 10: 384, 11: 6, 12: 224,
                 13: 16}
        model.update(fields)
        layout = b"".join(fv(k, v) for k, v in ((1, 2), (2, 2), (3, 2), (4, 1), (5, 1), (6, 2),
                                                (7, 1), (8, 1), (11, 1)))
        layout += fb(13, b"".join(fv(k, v) for k, v in sorted(model.items())))
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.connect(g.sock)
        body = fv(1, 2) + fb(30, fb(1, "raw-shape") + fb(2, "t") + fb(3, layout))
        raw.sendall(struct.pack(">I", len(body)) + body)
        raw.settimeout(5)
        reply = b""
        while len(reply) < 4 or len(reply) < 4 + struct.unpack(">I", reply[:4])[0]:
            chunk = raw.recv(65536)
            if not chunk:
                break
            reply += chunk
        raw.close()
        env = parse(reply[4:])
        err = parse(one(env, 20, b""))
        why = subprocess.run([CTL, "plan", *flags], capture_output=True, text=True).stderr.strip()
        why = why.replace("hgridctl: invalid layout: ", "")
        check(one(err, 1) == 10 and why and one(err, 2, b"").decode().endswith(why),
              "raw submit %s: gridd says %r, plan says %r" % (flags, one(err, 2, b""), why))
    # A control client that never reads its replies is dropped, not buffered forever.
    greedy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    greedy.connect(g.sock)
    body = fv(1, 2) + fb(31, b"")
    request = struct.pack(">I", len(body)) + body
    try:
        for _ in range(5000):
            greedy.sendall(request * 1000)
    except OSError:
        pass
    check(wait_for(lambda: "dropped: not reading" in g.log_text()), "slow consumer dropped")
    greedy.close()
    check(g.ctl("list")[0] == 0, "gridd answers after dropping a slow consumer")
    r = subprocess.run([CTL, "--socket", "/nonexistent/gridd.sock", "list"], capture_output=True, text=True)
    check(r.returncode == 1 and "/nonexistent/gridd.sock" in r.stderr and "gridd running" in r.stderr,
          "unreachable gridd: %d %r" % (r.returncode, r.stderr))


# ---- workers by hand

def join_all(g, job, token, workers):
    """Connects (host, device) pairs in order; returns the peers."""
    peers = []
    for host, dev in workers:
        p = Peer(g.port)
        p.hello(job, token, host, dev)
        peers.append(p)
    return peers


def rendezvous(peers, generation):
    """Answers MintRequests with distinct ids; returns {peer index: assignment fields}."""
    assignments, ids_sent = {}, {}
    pending = set(range(len(peers)))
    deadline = time.time() + 10
    while pending and time.time() < deadline:
        ready, _, _ = select.select([peers[i].s for i in pending], [], [], 0.5)
        for i in [i for i in sorted(pending) if peers[i].s in ready]:
            kind, f = peers[i].recv()
            if kind == "mint_request":
                check(one(f, 1) == generation, "mint generation %d" % one(f, 1))
                ids = [bytes([generation, i, k]) + bytes(125) for k in range(one(f, 2))]
                ids_sent[i] = ids
                peers[i].send(frame("mint_reply", fv(1, generation) + b"".join(fb(2, x) for x in ids)))
            elif kind == "assignment":
                check(peers[i].last_size < 2048, "assignment of %d bytes" % peers[i].last_size)
                assignments[i] = f
                pending.discard(i)
            else:
                check(False, "worker %d got %s, not an assignment" % (i, kind))
                pending.discard(i)
    return assignments, ids_sent


def groups_of(a):
    out = {}
    for raw in a.get(7, []):
        g = parse(raw)
        out[one(g, 1, b"").decode()] = (one(g, 2), one(g, 3), one(g, 4), one(g, 5, b""))
    return out


def test_workers(g, tmp):
    token = "w-token"
    check(g.ctl("submit", "--job", "wf", "--token", token, "--encoder-tp", "2", "--encoder-dp", "2",
                "--llm-tp", "4", "--llm-dp", "1", "--micro-batch-size", "2")[0] == 0, "submit wf")
    # Refusals: wrong token, bad rank request, unknown job.
    p = Peer(g.port)
    p.hello("wf", "wrong", "node-a", 0)
    code, msg, closed = p.error()
    check(code == "BAD_TOKEN" and closed and "wrong" not in msg.replace("wrong token", ""),
          "wrong token: %s %s" % (code, msg))
    check(token not in g.log_text() and "w-token" not in g.log_text(), "token never logged")
    p = Peer(g.port)
    p.hello("wf", token, "node-a", 0, rank=8)
    code, msg, closed = p.error()
    check(code == "RANK_REFUSED" and "rank 8" in msg, "out-of-range rank: %s %s" % (code, msg))
    p = Peer(g.port)
    p.hello("nojob", token, "node-a", 0)
    code, msg, _ = p.error()
    check(code == "BAD_TOKEN" and "unknown job 'nojob' or wrong token" in msg,
          "an unknown job gets a wrong token's answer: %s %s" % (code, msg))

    # 8 workers, 2 hosts, joining interleaved: tp groups stay on their host.
    order = [("node-a", 3), ("node-b", 0), ("node-a", 0), ("node-b", 3), ("node-a", 1),
             ("node-b", 1), ("node-a", 2), ("node-b", 2)]
    peers = join_all(g, "wf", token, order[:7])
    dup = Peer(g.port)
    dup.hello("wf", token, "node-a", 1)
    code, msg, _ = dup.error()
    check(code == "DUPLICATE_DEVICE" and "node-a/1" in msg, "duplicate device: %s %s" % (code, msg))
    # A worker leaving before assignment frees its slot.
    peers[6].close()
    check(wait_for(lambda: "worker left before ranks were assigned host=node-a device=2 " in g.log_text()), "early leave frees the slot")
    peers[6] = Peer(g.port)
    peers[6].hello("wf", token, "node-a", 2)
    peers.append(Peer(g.port))
    peers[7].hello("wf", token, "node-b", 2)
    assignments, ids_sent = rendezvous(peers, 1)
    check(len(assignments) == 8, "8 assignments, got %d" % len(assignments))
    rank_of = {i: one(a, 3) for i, a in assignments.items()}
    for i, (host, dev) in enumerate(order):
        want = (0 if host == "node-a" else 4) + dev
        check(rank_of.get(i) == want, "%s/%d got rank %s, want %d" % (host, dev, rank_of.get(i), want))
    for i, a in assignments.items():
        check(one(a, 1) == 1 and one(a, 4) == 8 and one(a, 9, b"") == b"wf", "assignment header")
        check(len(a[7]) >= 8, "rank %d has %d groups" % (rank_of[i], len(a[7])))
    # tp ids: encoder tp groups {0,1},{2,3} and llm tp {4..7}; members share the same id.
    by_rank = {rank_of[i]: groups_of(a) for i, a in assignments.items()}
    for grp in ([0, 1], [2, 3], [4, 5, 6, 7]):
        ids = {by_rank[r]["tp"][3] for r in grp}
        check(len(ids) == 1 and len(next(iter(ids))) == 128, "tp group %s shares one 128-byte id" % grp)
    check(by_rank[0]["tp_cp"][3] == b"" and by_rank[0]["tp"][3], "tp_cp shares tp's id: sent once, with tp")
    check(by_rank[0]["cp"][3] == b"", "one-rank group has no id")
    check("bridge" in by_rank[0] and "bridge" in by_rank[4] and "bridge" not in by_rank[1],
          "bridge leaders only")
    for p in peers:
        p.send(frame("ready", fv(1, 1)))
    check(wait_for(lambda: "gen=1 generation running" in g.log_text()), "job runs after 8 Ready")
    code, out, _ = g.ctl("show", "wf", "--json")
    shown = json.loads(out)
    check(shown["state"] == "running" and [w["rank"] for w in shown["workers"]] == list(range(8))
          and all(w["state"] == "ready" for w in shown["workers"]), "show after Ready")

    # Heartbeats from everyone but node-b/3 (rank 7): it times out, the rest get Abort.
    silent = order.index(("node-b", 3))
    deadline = time.time() + 1.6
    while time.time() < deadline:
        for i, p in enumerate(peers):
            if i != silent:
                p.send(frame("heartbeat", fv(1, 1) + fv(2, 5)))
        time.sleep(0.2)
    for i, p in enumerate(peers):
        kind, f = p.recv()
        if i == silent:
            check(kind == "eof", "silent worker dropped, got %s" % kind)
        else:
            check(kind == "abort" and one(f, 1) == 1 and b"rank 7" in one(f, 2, b""),
                  "abort to rank %d: %s %s" % (rank_of[i], kind, f))
    code, out, _ = g.ctl("status", "wf")
    check("waiting" in out and "joined 7/8" in out and "rank 7 node-b/3 lost" in out, "status after loss: %r" % out)
    # It rejoins: same rank, generation 2.
    peers[silent] = Peer(g.port)
    peers[silent].hello("wf", token, "node-b", 3)
    assignments2, ids2 = rendezvous(peers, 2)
    check(len(assignments2) == 8 and one(assignments2[silent], 3) == 7 and one(assignments2[silent], 1) == 2,
          "rejoin keeps rank 7 in generation 2")
    # Only the groups holding rank 7 get new ids (every communicator had formed).
    a0 = order.index(("node-a", 0))
    check(groups_of(assignments2[a0])["tp"][3] == groups_of(assignments[a0])["tp"][3],
          "rank 0's tp group (without rank 7) keeps its id in generation 2")
    check(groups_of(assignments2[silent])["tp"][3] != groups_of(assignments[silent])["tp"][3],
          "rank 7's tp group gets a new id in generation 2")
    # A MintReply of an old generation is ignored.
    peers[0].send(frame("mint_reply", fv(1, 1)))
    code, out, _ = g.ctl("cancel", "wf")
    check(code == 0, "cancel wf")
    for i, p in enumerate(peers):
        kind, f = p.recv()
        check(kind == "release", "release to worker %d: %s" % (i, kind))
        p.close()


def test_two_jobs(g):
    for job in ("j1", "j2"):
        check(g.ctl("submit", "--job", job, "--token", job + "-t", "--llm-only", "--llm-tp", "2",
                    "--llm-dp", "1")[0] == 0, "submit " + job)
    # Interleaved joins from the same host and devices: jobs do not mix.
    peers = {job: [] for job in ("j1", "j2")}
    for dev in (0, 1):
        for job in ("j1", "j2"):
            p = Peer(g.port)
            p.hello(job, job + "-t", "shared", dev)
            peers[job].append(p)
    for job in ("j1", "j2"):
        got, _ = rendezvous(peers[job], 1)
        check(sorted(one(a, 3) for a in got.values()) == [0, 1]
              and all(one(a, 9, b"") == job.encode() for a in got.values()),
              "job %s gets its own assignments" % job)
    for job in ("j1", "j2"):
        check(g.ctl("cancel", job)[0] == 0, "cancel " + job)
        for p in peers[job]:
            check(p.recv()[0] == "release", "release in " + job)
            p.close()


def test_restart(tmp):
    state = os.path.join(tmp, "state")
    os.mkdir(state)
    g = Gridd(tmp, "st", "--state-dir", state, "--hello-timeout", "0.5")
    check(g.ctl("submit", "--job", "keep", "--token", "k", "--llm-only", "--llm-tp", "2", "--llm-dp", "1")[0] == 0,
          "submit keep")
    peers = join_all(g, "keep", "k", [("h", 1), ("h", 0)])
    got, _ = rendezvous(peers, 1)
    ranks = {i: one(a, 3) for i, a in got.items()}
    check(ranks == {0: 1, 1: 0}, "ranks before the restart: %s" % ranks)
    for p in peers:
        p.close()
    g.stop("state gridd")
    g = Gridd(tmp, "st", "--state-dir", state, "--ready-timeout", "0.5")
    code, out, _ = g.ctl("list")
    check(code == 0 and "keep" in out and "0/2" in out, "restarted gridd knows the job: %r" % out)
    check("job=keep gen=1 job restored, ranks assigned" in g.log_text(), "restore logged")
    peers = join_all(g, "keep", "k", [("h", 0), ("h", 1)])
    got, _ = rendezvous(peers, 2)
    ranks = {i: one(a, 3) for i, a in got.items()}
    check(ranks == {0: 0, 1: 1}, "sticky ranks after the restart, generation 2: %s" % ranks)
    # Rank 1 never reports Ready: after --ready-timeout it is lost and rank 0 aborts,
    # though rank 0's heartbeats keep it alive.
    peers[0].send(frame("ready", fv(1, 2)))
    for _ in range(5):
        peers[0].send(frame("heartbeat", fv(1, 2)))
        time.sleep(0.2)
    kind, f = peers[0].recv()
    check(kind == "abort" and b"not Ready" in one(f, 2, b""), "ready timeout: %s %s" % (kind, f))
    check(peers[1].recv()[0] == "eof", "the worker that never got Ready is dropped")
    for p in peers:
        p.close()
    g.stop("restarted gridd")


def test_startup(tmp):
    r = subprocess.run([GRIDD, "--help"], capture_output=True, text=True)
    check(r.returncode == 0 and "--heartbeat-timeout" in r.stdout, "gridd --help")
    r = subprocess.run([GRIDD, "--max-frame", "abc"], capture_output=True, text=True)
    check(r.returncode == 2 and "--max-frame 'abc'" in r.stderr, "bad option value: %r" % r.stderr)
    # The socket's directory is created 0750; a live gridd's socket is not
    # taken over; a dead one's stale socket is.
    sub = os.path.join(tmp, "run", "hgrid")
    a = Gridd(tmp, "a", sock=os.path.join(sub, "gridd.sock"))
    check(os.stat(sub).st_mode & 0o777 == 0o750, "control directory mode %o" % (os.stat(sub).st_mode & 0o777))
    check(os.stat(a.sock).st_mode & 0o777 == 0o660, "control socket mode %o" % (os.stat(a.sock).st_mode & 0o777))
    r = subprocess.run([GRIDD, "--listen", "127.0.0.1:0", "--control", a.sock], capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 1 and "another gridd answers" in r.stderr, "second gridd on a live socket: %r" % r.stderr)
    a.proc.kill()
    a.proc.wait()
    check(os.path.exists(a.sock), "a killed gridd leaves its socket")
    b = Gridd(tmp, "b", sock=a.sock)
    check(b.ctl("list")[0] == 0, "gridd replaces a stale socket")
    b.stop("gridd on a stale socket")


def main():
    with tempfile.TemporaryDirectory(prefix="gridd-test-") as tmp:
        g = Gridd(tmp, "main", "--hello-timeout", "0.5", "--heartbeat-timeout", "1")
        try:
            test_frames(g)
            test_control(g)
            test_workers(g, tmp)
            test_two_jobs(g)
        finally:
            g.stop("main gridd")
        test_connection_cap(tmp)
        test_startup(tmp)
        test_restart(tmp)
    print("daemon_gridd: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
