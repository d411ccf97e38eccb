#!/usr/bin/env python3
"""Hosts that are really apart: gridd and two "hosts" of 4 dry-run workers
each live in their own network namespaces, joined by veth pairs on a bridge
(in a fourth namespace), each with its own address and host name; loopback
is down everywhere. Workers reach gridd only at its bridge address, get
every rank once with tp groups inside a host, and a worker aiming at
127.0.0.1 finds nothing. Then the same through an hgrid-agent per host:
each host's 4 workers reach gridd over the agent's one link (one HostHello
of 4 per host in the agents' logs). Needs root or CAP_NET_ADMIN (ip netns): without it
the test is skipped (exit 77, saying why); as another user with password-less sudo
it runs itself under sudo. Namespaces (and whatever still runs in them) are
removed however it ends."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, skip, summary  # noqa: E402
import launch_util as lu  # noqa: E402

TAG = f"hg{os.getpid() % 100000}"
GRIDD_NS, BRIDGE_NS = TAG + "g", TAG + "br"
HOSTS = [(TAG + "a", "10.211.0.2", "host-a"), (TAG + "b", "10.211.0.3", "host-b")]
GRIDD_ADDR = "10.211.0.1"
WORKER = os.path.abspath(os.path.join(lu.BIN, "hgrid-worker"))
AGENT = os.path.abspath(os.path.join(lu.BIN, "hgrid-agent"))
made, procs = [], []


def ip(*args):
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if r.returncode:
        raise OSError(f"ip {' '.join(args)}: {r.stderr.strip()}")


def cleanup():
    for ns in made: # first every process left in a namespace (ip netns exec's children)
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
        for pid in pids.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    for ns in reversed(made):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    made.clear()


def setup():
    """The namespaces, veth pairs and bridge; raises OSError if not allowed."""
    for ns in (BRIDGE_NS, GRIDD_NS, *(h[0] for h in HOSTS)):
        ip("netns", "add", ns)
        made.append(ns)
    ip("-n", BRIDGE_NS, "link", "add", "br0", "type", "bridge")
    ip("-n", BRIDGE_NS, "link", "set", "br0", "up")
    for i, (ns, addr) in enumerate([(GRIDD_NS, GRIDD_ADDR), *((h[0], h[1]) for h in HOSTS)]):
        inner, outer = f"{TAG}v{i}", f"{TAG}p{i}"
        ip("link", "add", inner, "type", "veth", "peer", "name", outer)
        ip("link", "set", inner, "netns", ns)
        ip("link", "set", outer, "netns", BRIDGE_NS)
        ip("-n", ns, "link", "set", inner, "name", "eth0")
        ip("-n", ns, "addr", "add", addr + "/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", BRIDGE_NS, "link", "set", outer, "master", "br0")
        ip("-n", BRIDGE_NS, "link", "set", outer, "up")


def run(tmp):
    gridd, port, sock = lu.start_gridd(tmp, f"{GRIDD_ADDR}:0", ("ip", "netns", "exec", GRIDD_NS))
    procs.append(gridd)
    token = lu.submit(sock, "apart")
    paths = []
    for ns, _, host in HOSTS:
        for d in range(4):
            path = os.path.join(tmp, f"{host}-{d}.out")
            env = dict(os.environ, HGRID_HOSTNAME=host, HGRID_TOKEN=token)
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", ns, WORKER, "--coordinator", f"{GRIDD_ADDR}:{port}",
                 "--job", "apart", "--device", str(d), "--dry-run", "--json"],
                env=env, stdout=open(path, "w"), stderr=subprocess.STDOUT))
            paths.append(path)
    got = lu.assignments(paths, 8)
    lu.check_recipe("namespaces", got, [(h[2], d) for h in HOSTS for d in range(4)])
    lu.finish("namespaces", sock, "apart", procs[1:])
    # From a worker's namespace gridd is only at its bridge address.
    r = subprocess.run(["ip", "netns", "exec", HOSTS[0][0], WORKER, "--coordinator",
                        f"127.0.0.1:{port}", "--job", "apart", "--token", token, "--dry-run",
                        "--connect-timeout", "0", "--assign-timeout", "2"],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode != 0, f"no gridd on loopback from a worker's namespace: {r.returncode}")
    run_agents(tmp, port, sock)
    gridd.send_signal(signal.SIGTERM)
    check(gridd.wait(timeout=30) == 0, "gridd exits 0")


def run_agents(tmp, port, sock):
    """Each host's workers through its own hgrid-agent (in its namespace)."""
    token = lu.submit(sock, "agents")
    paths, agents, logs = [], [], []
    for ns, _, host in HOSTS:
        path = os.path.join(tmp, host, "agent.sock")
        log = os.path.join(tmp, f"{host}-agent.log")
        agents.append(subprocess.Popen(["ip", "netns", "exec", ns, AGENT, "--socket", path, "--host",
                                        host, "--gpus", "4", "-v"],
                                       stdout=open(log, "w"), stderr=subprocess.STDOUT))
        logs.append(log)
        for _ in range(100):
            if os.path.exists(path):
                break
            time.sleep(0.05)
        for d in range(4):
            out = os.path.join(tmp, f"{host}-agent-{d}.out")
            env = dict(os.environ, HGRID_HOSTNAME=host, HGRID_TOKEN=token, HGRID_AGENT_SOCKET=path)
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", ns, WORKER, "--coordinator", f"{GRIDD_ADDR}:{port}",
                 "--job", "agents", "--device", str(d), "--dry-run", "--json"],
                env=env, stdout=open(out, "w"), stderr=subprocess.STDOUT))
            paths.append(out)
    got = lu.assignments(paths, 8)
    lu.check_recipe("agents", got, [(h[2], d) for h in HOSTS for d in range(4)])
    workers = procs[-8:]
    lu.finish("agents", sock, "agents", workers)
    for a in agents:
        a.send_signal(signal.SIGTERM)
        check(a.wait(timeout=30) == 0, "hgrid-agent exits 0 on SIGTERM")
    hellos = [open(log).read().count("HostHello sent for job agents: 4 workers") for log in logs]
    check(hellos == [1, 1], f"agents: one HostHello of 4 workers per host: {hellos}")


def main():
    if os.geteuid() != 0:
        if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"],
                                                   capture_output=True).returncode == 0:
            keep = [f"{k}={v}" for k, v in os.environ.items()
                    if k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "PATH")]
            os.execvp("sudo", ["sudo", "-n", "env", f"HGRID_BIN={os.path.abspath(lu.BIN)}", *keep,
                               sys.executable, os.path.abspath(__file__)])
        skip("launch_netns: no permission for network namespaces (not root, and no "
             "password-less sudo)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(1))
    tmp = tempfile.mkdtemp(suffix=".hgrid-netns")
    try:
        try:
            setup()
        except (OSError, FileNotFoundError) as e:
            skip(f"launch_netns: no permission for network namespaces ({e})")
        run(tmp)
    finally:
        cleanup()
    if summary("launch_netns"):
        print(open(os.path.join(tmp, "gridd.log")).read()[-2000:])
        return 1
    subprocess.run(["rm", "-rf", tmp])
    return 0


if __name__ == "__main__":
    sys.exit(main())
