#!/usr/bin/env python3
"""gridd's verdict after an Abort, by hand over both kinds of link (stdlib
only): a job of 4 (llm tp2 dp2), ranks 0-1 behind an hgrid-agent (node-a),
ranks 2-3 connected directly (node-b), every worker counting its
operations (Hello.counts_ops). Rank 0 dies; each survivor answers the
Abort with OpCounts; rank 3 reports one collective more than rank 1 on
their dp group {1, 3} (rank 1 left it mid-operation), while ranks 2 and 3
agree on tp {2, 3}. gridd names dp {1, 3} broken to ranks 1 (through the
agent) and 3 (AbortGroups), never tp {2, 3}; the replacement of rank 0
joins and generation 2 keeps tp {2, 3}'s id (kept) and re-creates dp
{1, 3} and every group holding rank 0. Then a survivor that does not
answer: past gridd's deadline (about 1 s) it counts as replaced, the
members of its groups are told, and its groups get new ids."""
import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, summary  # noqa: E402
import daemon_gridd as dg  # noqa: E402
import launch_util as lu  # noqa: E402

BIN = lu.BIN
dg.MSG.update({"op_counts": 180, "abort_groups": 181})
dg.MSG_NAME.update({180: "op_counts", 181: "abort_groups"})
LAYOUT = ["--llm-only", "--llm-tp", "2", "--llm-dp", "2", "--micro-batch-size", "2",
          "--global-batch-size", "4"]


class UnixPeer(dg.Peer):
    """A worker on the agent's Unix socket (the same frames)."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(10)
        self.s.connect(path)


def hello(peer, host, device, rank, port, counts=True):
    body = (dg.fb(1, "job") + dg.fb(2, "tok") + dg.fb(3, host) + dg.fv(4, device) + dg.fv(7, 1)
            + dg.fb(6, dg.fv(1, rank)) + dg.fb(100, "127.0.0.1:%d" % port))
    if counts:
        body += dg.fv(180, 1)
    peer.send(dg.frame("hello", body))


def packed(raw):
    out, i = [], 0
    if isinstance(raw, int):
        return [raw]
    while i < len(raw):
        v, i = dg.read_varint(raw, i)
        out.append(v)
    return out


def groups_of(a):
    """[(name, id bytes, kept)] in Assignment order (positions)."""
    out = []
    for raw in a.get(7, []):
        g = dg.parse(raw)
        out.append((dg.one(g, 1, b"").decode(), dg.one(g, 5, b""), bool(dg.one(g, 101))))
    return out


def rendezvous(peers, generation, skip=()):
    """Mints and collects every peer's Assignment: {rank: fields}."""
    got, pending = {}, {r for r in peers if r not in skip}
    deadline = time.time() + 15
    while pending and time.time() < deadline:
        ready, _, _ = select.select([peers[r].s for r in pending], [], [], 0.5)
        for r in [r for r in sorted(pending) if peers[r].s in ready]:
            kind, f = peers[r].recv()
            if kind == "mint_request":
                ids = [bytes([generation, r, k]) + bytes(125) for k in range(dg.one(f, 2))]
                peers[r].send(dg.frame("mint_reply", dg.fv(1, generation)
                                       + b"".join(dg.fb(2, x) for x in ids)))
            elif kind == "assignment":
                got[r] = f
                pending.discard(r)
            elif kind != "abort_groups":
                check(False, "rank %d got %s while waiting for its assignment" % (r, kind))
                pending.discard(r)
    check(not pending, "generation %d: assignments for every rank (missing %s)"
          % (generation, sorted(pending)))
    return got


def op_counts(generation, groups):
    """OpCounts: groups = [(position, collectives)]."""
    body = dg.fv(180, generation)
    for pos, coll in groups:
        body += dg.fb(181, dg.fv(180, pos) + dg.fv(181, coll))
    return dg.frame("op_counts", body)


def expect(peer, kind, timeout=5.0):
    k, f = peer.recv(timeout=timeout)
    return f if k == kind else (check(False, "expected %s, got %s %s" % (kind, k, f)) or None)


def position(groups, name):
    return [n for n, _, _ in groups].index(name)


def run(tmp):
    agent_dir = os.path.join(tmp, "agent")
    os.mkdir(agent_dir, 0o700)
    agent_sock = os.path.join(agent_dir, "agent.sock")
    proc, port, sock = lu.start_gridd(tmp)
    agent_log = open(os.path.join(tmp, "agent.log"), "w")
    agent = subprocess.Popen([f"{BIN}/hgrid-agent", "--socket", agent_sock, "--host", "node-a",
                              "--gpus", "2", "-v"], stdout=agent_log, stderr=agent_log)
    try:
        for _ in range(200):
            if os.path.exists(agent_sock):
                break
            time.sleep(0.02)
        r = lu.ctl(sock, "submit", "--job", "job", "--token", "tok", *LAYOUT)
        check(r.returncode == 0, "submit: " + r.stderr)
        peers = {}
        for rank in (0, 1):
            peers[rank] = UnixPeer(agent_sock)
            hello(peers[rank], "node-a", rank, rank, port)
        for rank in (2, 3):
            peers[rank] = dg.Peer(port)
            hello(peers[rank], "node-b", rank - 2, rank, port)
        gen1 = rendezvous(peers, 1)
        for r in peers:
            peers[r].send(dg.frame("ready", dg.fv(1, 1)))
        log = os.path.join(tmp, "gridd.log")
        check(dg.wait_for(lambda: "gen=1 generation running" in open(log).read(), 10),
              "generation 1 runs")
        g1 = {r: groups_of(a) for r, a in gen1.items()}

        # Rank 0 dies (its socket to the agent closes).
        peers[0].close()
        for r in (1, 2, 3):
            f = expect(peers[r], "abort")
            check(f is not None and dg.one(f, 1) == 1 and packed(dg.one(f, 100, b"")) == [0],
                  "rank %d: Abort of generation 1 naming rank 0" % r)
        dp, tp = "dp", "tp"
        peers[1].send(op_counts(1, [(position(g1[1], dp), 10), (position(g1[1], tp), 3)]))
        peers[2].send(op_counts(1, [(position(g1[2], tp), 6), (position(g1[2], dp), 2)]))
        peers[3].send(op_counts(1, [(position(g1[3], tp), 6), (position(g1[3], dp), 11)]))
        named = {}
        for r in (1, 2, 3):
            f = expect(peers[r], "abort_groups")
            named[r] = {g1[r][p][0] for p in packed(dg.one(f or {}, 181, b""))} if f else set()
            check(f is not None and dg.one(f, 180) == 1, "rank %d: AbortGroups of generation 1" % r)
        check(dp in named[1] and dp in named[3], "dp {1, 3} named broken to ranks 1 and 3: %s" % named)
        check(tp not in named[2] and tp not in named[3], "tp {2, 3} not named: %s" % named)
        check(dg.wait_for(lambda: "group broken: a member left it mid-operation" in open(log).read()
                          and "members=1,3" in open(log).read(), 5), "gridd logs dp {1, 3} broken")

        # The replacement joins through the agent: generation 2.
        peers[0] = UnixPeer(agent_sock)
        hello(peers[0], "node-a", 0, 0, port)
        gen2 = rendezvous(peers, 2)
        g2 = {r: groups_of(a) for r, a in gen2.items()}
        for r in (1, 2, 3):
            for (name, old_id, _), (name2, new_id, kept) in zip(g1[r], g2.get(r, [])):
                if not new_id:
                    continue
                members = {"tp": {r - r % 2, r - r % 2 + 1}, "dp": {r % 2, r % 2 + 2}}.get(name)
                if members is None:
                    continue
                want = 0 not in members and not (name == "dp" and members == {1, 3})
                check(kept == want and (old_id == new_id) == want,
                      "generation 2: rank %d's %s %s kept=%s, id %s" %
                      (r, name, sorted(members), kept, "same" if old_id == new_id else "new"))
        for r in peers:
            peers[r].send(dg.frame("ready", dg.fv(1, 2)))
        check(dg.wait_for(lambda: "gen=2 generation running" in open(log).read(), 10),
              "generation 2 runs")

        # Rank 3 dies; rank 1 does not answer: past the deadline it counts
        # as replaced, and its groups get new ids.
        t0 = time.time()
        peers[3].close()
        for r in (0, 1, 2):
            expect(peers[r], "abort")
        g2_0, g2_2 = g2[0], g2[2]
        peers[0].send(op_counts(2, [(position(g2_0, tp), 4)]))
        peers[2].send(op_counts(2, []))
        check(dg.wait_for(lambda: "no OpCounts within" in open(log).read(), 8),
              "rank 1, silent, is given up on")
        waited = time.time() - t0
        check(0.9 < waited < 5.0, "given up about 1 s after the Abort (%.2f s)" % waited)
        for r in (0, 2):
            k, f = peers[r].recv(timeout=1)
            check(k == "abort_groups", "rank %d: AbortGroups after the deadline (%s)" % (r, k))
            if k == "abort_groups":
                names = {g2[r][p][0] for p in packed(dg.one(f, 181, b""))}
                check(("tp" if r == 0 else "module") in names and "dp" not in names,
                      "rank %d: its groups with rank 1 are named broken, dp {0, 2} not: %s"
                      % (r, names))
        peers[3] = dg.Peer(port)
        hello(peers[3], "node-b", 1, 3, port)
        gen3 = rendezvous(peers, 3)
        for r in (0, 2):
            for (name, old_id, _), (_, new_id, kept) in zip(g2[r], groups_of(gen3.get(r, {}))):
                members = {"tp": {r - r % 2, r - r % 2 + 1}, "dp": {r % 2, r % 2 + 2}}.get(name)
                if not new_id or members is None:
                    continue
                want = not members & {1, 3}
                check(kept == want and (old_id == new_id) == want,
                      "generation 3: rank %d's %s %s kept=%s, id %s" %
                      (r, name, sorted(members), kept, "same" if old_id == new_id else "new"))
        text = open(log).read()
        check("groups settled generation=1 reported=3 silent=0" in text,
              "generation 1 settled with 3 reports")
        check("groups settled generation=2 reported=2 silent=1" in text,
              "generation 2 settled with 2 reports and 1 silent")
        for p in peers.values():
            p.close()
    finally:
        agent.terminate()
        proc.terminate()
        agent.wait(timeout=10)
        proc.wait(timeout=10)
        text = open(os.path.join(tmp, "gridd.log")).read()
        check("AddressSanitizer" not in text and "runtime error" not in text,
              "gridd's sanitizers are silent: " + text[-2000:])


def main():
    with tempfile.TemporaryDirectory(prefix="hgrid-settle-") as tmp:
        run(tmp)
    return summary("daemon_settle")


if __name__ == "__main__":
    sys.exit(main())
