#!/usr/bin/env python3
"""Hosts behind hgrid-agent, with dry-run workers: one job of 8 on two hosts,
node-a's 4 workers through an agent (one HostHello for the 4), node-b's 4
connected directly. Then, timed: a worker killed under the agent (the agent
reports its closed socket; every survivor gets Abort within 1 s, naming the
rank); its replacement joins and the new generation keeps the id of every
group without that rank (kept=true) and gives new ids to the groups with it.
The agent killed: its host's workers are lost (Abort at node-b within 1 s);
a new agent comes up, the workers reconnect through it and a generation
forms again, re-creating only groups holding a node-a rank. gridd killed
and restarted (--state-dir) under an agent: the workers come back through
it and resume their generation with no new ids. Also: an agent
refuses a socket directory others can enter, and a worker whose token
differs from its link's. Stdlib only."""
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, failures, summary  # noqa: E402
import launch_util as lu  # noqa: E402

BIN = lu.BIN


class Worker:
    """hgrid-worker --dry-run --json; assignments and abort lines time-stamped."""

    def __init__(self, port, host, device, agent=None, token="tok"):
        self.host, self.device = host, device
        env = dict(os.environ, HGRID_AGENT_SOCKET=agent or "none")
        self.proc = subprocess.Popen(
            [f"{BIN}/hgrid-worker", "--coordinator", f"127.0.0.1:{port}", "--job", "mix", "--token",
             token, "--host", host, "--device", str(device), "--dry-run", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.assignments, self.aborts, self.errors = queue.Queue(), queue.Queue(), []
        threading.Thread(target=self._out, daemon=True).start()
        threading.Thread(target=self._err, daemon=True).start()

    def _out(self):
        for line in self.proc.stdout:
            self.assignments.put((time.monotonic(), json.loads(line)))

    def _err(self):
        for line in self.proc.stderr:
            self.errors.append(line.strip())
            if " aborted: " in line:
                self.aborts.put((time.monotonic(), line.strip()))

    def assignment(self, timeout=30):
        return self.assignments.get(timeout=timeout)[1]

    def abort(self, timeout):
        try:
            return self.aborts.get(timeout=timeout)
        except queue.Empty:
            return None, None


def start_agent(path, log):
    p = subprocess.Popen([f"{BIN}/hgrid-agent", "--socket", path, "--host", "node-a", "--gpus", "4",
                          "-v"], stdout=log, stderr=log)
    for _ in range(200):
        if os.path.exists(path) or p.poll() is not None:
            break
        time.sleep(0.02)
    return p


def ids_by_group(a):
    return {(g["name"], g["index"]): (g["id"], g["kept"], g["members"]) for g in a["groups"] if g["id"]}


def check_rebuild(label, old, new, replaced):
    """Every group's id changed exactly when it holds a replaced rank; kept says so."""
    kept = changed = 0
    for w, a in new.items():
        before = ids_by_group(old[w])
        for key, (gid, k, members) in ids_by_group(a).items():
            holds = bool(set(members) & replaced)
            same = before.get(key, (None,))[0] == gid
            check(same != holds and k == same,
                  f"{label}: rank {a['rank']}'s {key} holds {sorted(set(members) & replaced)}: id "
                  f"{'kept' if same else 'new'}, kept={k}")
            kept, changed = kept + same, changed + (not same)
    check(kept > 0 and changed > 0, f"{label}: some communicators kept ({kept}), some re-created ({changed})")


def wait_running(sock, label):
    """Until every worker sent Ready: only then does gridd keep untouched groups' ids."""
    end = time.monotonic() + 30
    while time.monotonic() < end:
        r = lu.ctl(sock, "show", "mix", "--json")
        if r.returncode == 0 and json.loads(r.stdout)["state"] == "running":
            return
        time.sleep(0.05)
    check(False, f"{label}: the job runs")


def wait_gen(workers, gen, label):
    got = {}
    for w in workers:
        try:
            got[w] = w.assignment()
        except queue.Empty:
            check(False, f"{label}: {w.host}/{w.device} got no assignment; stderr {w.errors[-3:]}")
            return None
    check(all(a["generation"] == gen for a in got.values()),
          f"{label}: generation {gen}: {sorted(a['generation'] for a in got.values())}")
    return got


def aborts_within(workers, label, limit, t0):
    got = [w.abort(timeout=10) for w in workers]
    ok = all(t for t, _ in got)
    worst = max(t for t, _ in got) - t0 if ok else float("inf")
    check(ok and worst < limit, f"{label}: Abort at all {len(workers)} survivors within {limit} s "
                                f"({worst * 1000:.0f} ms)")
    return worst, [line for _, line in got]


def gridd_restart(tmp, agent_path):
    """gridd (with --state-dir) killed and restarted under an agent: the workers
    come back through the agent and carry their generation on, no new ids."""
    state, log_path = os.path.join(tmp, "state"), os.path.join(tmp, "gridd2.log")
    sock, port_file = os.path.join(tmp, "gridd2.sock"), os.path.join(tmp, "port2")

    def start(listen):
        p = subprocess.Popen([f"{BIN}/gridd", "--listen", listen, "--port-file", port_file, "--control",
                              sock, "--state-dir", state, "--heartbeat-timeout", "2"],
                             stdout=open(log_path, "a"), stderr=subprocess.STDOUT)
        for _ in range(400):
            if os.path.exists(port_file) and open(port_file).read().endswith("\n"):
                return p, int(open(port_file).read())
            time.sleep(0.05)
        raise RuntimeError("gridd did not start; see " + log_path)

    os.makedirs(state)
    gridd, port = start("127.0.0.1:0")
    workers = []
    try:
        r = lu.ctl(sock, "submit", "--job", "mix", "--token", "tok", "--llm-only", "--llm-tp", "1",
                   "--llm-dp", "2")
        check(r.returncode == 0, "restart: submit " + r.stderr)
        workers = [Worker(port, "node-a", d, agent_path) for d in range(2)]
        got = wait_gen(workers, 1, "restart: before")
        end = time.monotonic() + 30
        while time.monotonic() < end and json.loads(lu.ctl(sock, "show", "mix", "--json").stdout)["state"] != "running":
            time.sleep(0.05)
        gridd.kill()
        gridd.wait()
        os.unlink(port_file)
        gridd, _ = start(f"127.0.0.1:{port}")
        end = time.monotonic() + 20
        while time.monotonic() < end and "generation resumed by all workers" not in open(log_path).read():
            time.sleep(0.1)
        check("generation resumed by all workers, no new ids" in open(log_path).read(),
              "restart: the workers come back through the agent and resume generation 1")
        check(got is not None and all(w.assignments.empty() for w in workers),
              "restart: no new assignment")
        lu.ctl(sock, "cancel", "mix")
        codes = [w.proc.wait(timeout=30) for w in workers]
        check(codes == [0, 0], f"restart: cancel releases both workers: {codes}")
    finally:
        for w in workers:
            if w.proc.poll() is None:
                w.proc.kill()
        gridd.send_signal(signal.SIGTERM)
        check(gridd.wait(timeout=20) == 0, "restart: gridd exits 0")


def main():
    tmp = tempfile.mkdtemp(prefix="hgrid-agent-")
    gridd, port, sock = lu.start_gridd(tmp)
    agent_dir = os.path.join(tmp, "agent-a")
    agent_path = os.path.join(agent_dir, "agent.sock")
    agent_log = open(os.path.join(tmp, "agent.log"), "w")
    agent = start_agent(agent_path, agent_log)
    workers = []
    try:
        # A directory others may enter is refused.
        open_dir = os.path.join(tmp, "open")
        os.mkdir(open_dir, 0o755)
        os.chmod(open_dir, 0o755)
        r = subprocess.run([f"{BIN}/hgrid-agent", "--socket", os.path.join(open_dir, "a.sock")],
                           capture_output=True, text=True, timeout=10)
        check(r.returncode == 1 and "mode 0700" in r.stderr, f"agent refuses a 0755 directory: "
                                                             f"{r.returncode} {r.stderr.strip()}")
        check(os.stat(agent_dir).st_mode & 0o777 == 0o700, "the agent made its directory 0700")
        r = lu.ctl(sock, "submit", "--job", "mix", "--token", "tok", *lu.LAYOUT)
        check(r.returncode == 0, "submit: " + r.stderr)
        workers = [Worker(port, "node-a", d, agent_path) for d in range(4)] + \
                  [Worker(port, "node-b", d) for d in range(4)]
        gen1 = wait_gen(workers, 1, "mixed hosts")
        if gen1 is None:
            return summary("agent_hosts")
        lu.check_recipe("mixed hosts", list(gen1.values()),
                        [(h, d) for h in ("node-a", "node-b") for d in range(4)])
        agent_log.flush()
        hellos = open(agent_log.name).read().count("HostHello sent for job mix: 4 workers")
        check(hellos == 1, f"node-a's 4 workers reach gridd in one HostHello ({hellos})")
        bad = Worker(port, "node-a", 7, agent_path, token="wrong")
        check(bad.proc.wait(timeout=30) != 0 and any("wrong token" in e for e in bad.errors),
              f"a worker with another token is refused by the agent: {bad.errors[-1:]}")

        # A worker dies under the agent.
        wait_running(sock, "before the worker's death")
        victim = next(w for w in workers if w.host == "node-a" and gen1[w]["rank"] % 2 == 1)
        rank = gen1[victim]["rank"]
        survivors = [w for w in workers if w is not victim]
        t0 = time.monotonic()
        victim.proc.kill()
        worst, lines = aborts_within(survivors, "worker killed under the agent", 1.0, t0)
        check(all("its agent saw it go" in line for line in lines),
              f"the Abort says the agent saw it: {lines[0] if lines else None}")
        victim.proc.wait()
        back = Worker(port, "node-a", victim.device, agent_path)
        workers = survivors + [back]
        gen2 = wait_gen(workers, 2, "replacement")
        if gen2 is None:
            return summary("agent_hosts")
        check(gen2[back]["rank"] == rank, f"the replacement gets rank {rank}")
        check_rebuild("one rank replaced", gen1, {w: a for w, a in gen2.items() if w is not back}, {rank})
        print(f"agent_hosts: worker SIGKILL under the agent -> Abort at 7 survivors: "
              f"{worst * 1000:.0f} ms", flush=True)

        # The agent dies: node-a's workers are lost; they come back through a new agent.
        node_a = [w for w in workers if w.host == "node-a"]
        node_b = [w for w in workers if w.host == "node-b"]
        wait_running(sock, "before the agent's death")
        t0 = time.monotonic()
        agent.kill()
        agent.wait()
        worst, lines = aborts_within(node_b, "agent killed", 1.0, t0)
        check(all("agent's link closed" in line for line in lines),
              f"the Abort names the lost link: {lines[0] if lines else None}")
        agent = start_agent(agent_path, agent_log)
        gen3 = {}
        deadline = time.monotonic() + 60
        for w in workers: # node-a workers may see one more Abort on their way back
            while w not in gen3 and time.monotonic() < deadline:
                try:
                    a = w.assignment(timeout=deadline - time.monotonic())
                except queue.Empty:
                    break
                if a["generation"] >= 3:
                    gen3[w] = a
        check(len(gen3) == 8, f"after the agent's restart every worker is assigned again ({len(gen3)})")
        if len(gen3) == 8:
            gen = gen3[workers[0]]["generation"]
            check(all(a["generation"] == gen for a in gen3.values()), "one generation for all 8")
            replaced = {gen2[w]["rank"] for w in node_a}
            check_rebuild("a host replaced", gen2, gen3, replaced)
        print(f"agent_hosts: agent SIGKILL -> Abort at node-b's 4 workers: {worst * 1000:.0f} ms",
              flush=True)
        r = lu.ctl(sock, "cancel", "mix")
        codes = [w.proc.wait(timeout=30) for w in workers]
        check(r.returncode == 0 and codes == [0] * 8, f"cancel releases every worker: {codes}")
        gridd_restart(tmp, agent_path)
    finally:
        for w in workers:
            if w.proc.poll() is None:
                w.proc.kill()
        agent.send_signal(signal.SIGTERM)
        check(agent.wait(timeout=20) == 0, "hgrid-agent exits 0 on SIGTERM")
        gridd.send_signal(signal.SIGTERM)
        check(gridd.wait(timeout=20) == 0, "gridd exits 0")
    if failures:
        print("logs in " + tmp)
    return summary("agent_hosts")


if __name__ == "__main__":
    sys.exit(main())
