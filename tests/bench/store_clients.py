#!/usr/bin/env python3
"""gridd's job store (hgrid.Store, what hgrid.torch's Store uses) against PyTorch's TCPStore
(libuv server) for 1,024 clients doing torch's set/get pattern, side by side in one run: one
client (connection) per rank; for every communicator of the layout (hgridctl plan --json,
the same layout as tests/bench/rendezvous.sh) member 0 sets a 128-byte id under the group's
key and every other member gets it (a blocking get, as ProcessGroupNCCL's id broadcast
does); then every rank adds 1 to a counter and waits for it to reach N (torch's store
barrier). Clients run in P processes x T threads. Prints, per store, the time to connect
all clients and the time from the start signal to the last client done (median of
HGRID_BENCH_REPEAT runs, default 3), the round trips per client (gridd: a get waits in gridd,
one round trip; TCPStore: a get is WAIT then GET, two) and one client's round trip alone
(1,000 check()s on one connection), hence the floor: every round trip at that speed, one per
CPU core at a time; and the CPU seconds the pattern cost the server and the clients (on a
machine shared with other jobs, a steadier comparison than the time).
Everything runs under tests/bench/tcpstore_shim.c (LD_PRELOAD): TCPStore's reverse DNS
lookups, which this machine's resolver drops now and then (5 s each), become numeric.

  HGRID_BIN (default bin), HGRID_BENCH_CLIENTS (default 1024), HGRID_PYTHON (a Python with
  torch; default build/venv/bin/python)
"""
import json
import multiprocessing as mp
import shutil
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("HGRID_BIN", os.path.join(ROOT, "bin"))
PROCS, THREADS = 4, 8


def layout(n):
    return ["--encoder-tp", "2", "--encoder-dp", str(n // 8), "--llm-tp", "4", "--llm-pp", "3",
            "--llm-dp", str(n // 16), "--micro-batch-size", "2"]


def work(plan):
    """Per rank: the keys it sets and the keys it gets."""
    keys = {}
    for m in plan["modules"]:
        for groups in m["groups"].values():
            for g in groups:
                if len(g) > 1:
                    keys.setdefault(tuple(g), f"pg{len(keys)}")
    sets = {r: [] for r in range(plan["world_size"])}
    gets = {r: [] for r in range(plan["world_size"])}
    for members, key in keys.items():
        sets[members[0]].append(key)
        for r in members[1:]:
            gets[r].append(key)
    return sets, gets, len(keys)


class GriddClient:
    def __init__(self, port):
        import hgrid
        from hgrid import _lib
        self.L = _lib
        self.s = hgrid.Store(f"127.0.0.1:{port}", "bench", "tok")

    def set(self, k, v):
        self.s.request(self.L.STORE_SET, [k.encode()], v)

    def get(self, k):
        return self.s.request(self.L.STORE_GET, [k.encode()])[0]

    def add(self, k, n):
        return self.s.request(self.L.STORE_ADD, [k.encode()], str(n).encode())[1]

    def wait(self, k):
        self.s.request(self.L.STORE_WAIT, [k.encode()])


class TCPClient:
    def __init__(self, port):
        import torch.distributed as dist
        from datetime import timedelta
        self.s = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=timedelta(seconds=300),
                               wait_for_workers=False)

    def set(self, k, v):
        self.s.set(k, v)

    def get(self, k):
        return self.s.get(k)

    def add(self, k, n):
        return self.s.add(k, n)

    def wait(self, k):
        self.s.wait([k])


def client_proc(kind, port, ranks, sets, gets, n, start, out):
    import torch.distributed  # noqa: F401  (both kinds: the import is not the connect)
    import hgrid  # noqa: F401
    make = GriddClient if kind == "gridd" else TCPClient
    t0 = time.time()
    clients = {r: make(port) for r in ranks}
    connected = time.time() - t0
    out.put(connected)
    start.wait()
    cpu0 = time.process_time()
    value = bytes(128)
    barrier = threading.Barrier(THREADS)

    def run(mine):
        barrier.wait()
        for r in mine:
            for k in sets[r]:
                clients[r].set(k, value)
        for r in mine:
            for k in gets[r]:
                clients[r].get(k)
            if clients[r].add("done", 1) == n:
                clients[r].set("all", b"1")
        for r in mine:
            clients[r].wait("all")

    threads = [threading.Thread(target=run, args=(ranks[i::THREADS],)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((time.time(), time.process_time() - cpu0))


def round_trip_us(kind, port):
    """One client's round trip alone: the median of 1,000 check()s on one connection."""
    c = GriddClient(port) if kind == "gridd" else TCPClient(port)
    times = []
    for _ in range(1000):
        t0 = time.perf_counter()
        if kind == "gridd":
            c.s.request(c.L.STORE_CHECK, [b"nope"])
        else:
            c.s.check(["nope"])
        times.append(time.perf_counter() - t0)
    return 1e6 * statistics.median(times)


def with_shim():
    """Re-executes this benchmark under tcpstore_shim.so (compiled into a temporary folder)."""
    if os.environ.get("HGRID_SHIM_DIR"):
        return None
    tmp = tempfile.mkdtemp(prefix="hgrid-shim.")
    so = os.path.join(tmp, "tcpstore_shim.so")
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", so,
                    os.path.join(ROOT, "tests", "bench", "tcpstore_shim.c"), "-ldl"], check=True)
    env = dict(os.environ, HGRID_SHIM_DIR=tmp,
               LD_PRELOAD=(so + " " + os.environ.get("LD_PRELOAD", "")).strip())
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def cpu_of(pid):
    """CPU seconds (user + system) of process pid so far."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(kind, port, n, sets, gets, server_pid):
    """(connect s, set/get/barrier s, the server's CPU s meanwhile, the clients' CPU s)."""
    ctx = mp.get_context("spawn")  # fork after torch and a TCPStore server thread can hang
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=client_proc, args=(kind, port, list(range(p, n, PROCS)), sets, gets,
                                                   n, start, out)) for p in range(PROCS)]
    for p in procs:
        p.start()
    connected = max(out.get(timeout=600) for _ in procs)  # every client connected
    t0, cpu0 = time.time(), cpu_of(server_pid)
    start.set()
    ends = [out.get(timeout=600) for _ in procs]
    cpu = cpu_of(server_pid) - cpu0
    for p in procs:
        p.join()
    return connected, max(e for e, _ in ends) - t0, cpu, sum(c for _, c in ends)


def main():
    sys.path.insert(0, os.path.join(ROOT, "python"))
    os.environ.setdefault("HGRID_LIBRARY", os.path.join(ROOT, "bin", "libhgrid.so.1"))
    try:
        import torch.distributed  # noqa: F401
        import hgrid  # noqa: F401
    except ImportError as e:
        venv = os.environ.get("HGRID_PYTHON") or os.path.join(ROOT, "build", "venv", "bin", "python")
        if os.path.exists(venv) and not os.environ.get("HGRID_REEXEC"):
            os.environ["HGRID_REEXEC"] = "1"
            os.execv(venv, [venv, *sys.argv])
        print(f"SKIP: {e} (run with a Python that has torch: HGRID_PYTHON)")
        return 77
    with_shim()
    try:
        return measure()
    finally:
        shutil.rmtree(os.environ["HGRID_SHIM_DIR"], ignore_errors=True)


def measure():
    import torch.distributed as dist
    n = int(os.environ.get("HGRID_BENCH_CLIENTS", "1024"))
    repeat = int(os.environ.get("HGRID_BENCH_REPEAT", "3"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    daemon_env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # no shim: a SAN build runs
    plan = json.loads(subprocess.run([f"{BIN}/hgridctl", "plan", "--json", *layout(n)], env=daemon_env,
                                     capture_output=True, text=True, check=True).stdout)
    sets, gets, groups = work(plan)
    rows = {"gridd": [], "tcpstore": []}
    rtt = {"gridd": [], "tcpstore": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeat):
            # gridd: a fresh daemon and job per run
            port_file, sock = os.path.join(tmp, f"port{i}"), os.path.join(tmp, f"sock{i}")
            log = open(os.path.join(tmp, f"gridd{i}.log"), "w+")
            g = subprocess.Popen([f"{BIN}/gridd", "--listen", "127.0.0.1:0", "--port-file", port_file,
                                  "--control", sock], stderr=log, env=daemon_env)
            while not (os.path.exists(port_file) and open(port_file).read().endswith("\n")):
                time.sleep(0.05)
            subprocess.run([f"{BIN}/hgridctl", "--socket", sock, "submit", "--job", "bench", "--token",
                            "tok", *layout(n)], check=True, capture_output=True, env=daemon_env)
            rows["gridd"].append(one_run("gridd", int(open(port_file).read()), n, sets, gets, g.pid))
            rtt["gridd"].append(round_trip_us("gridd", int(open(port_file).read())))
            g.send_signal(signal.SIGTERM)
            if g.wait() != 0:  # a sanitizer report or a crash makes the numbers meaningless
                log.seek(0)
                print(f"store_clients: gridd exited {g.returncode}:\n{log.read()[-3000:]}")
                return 1
            log.close()
            from datetime import timedelta
            master = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False,
                                   timeout=timedelta(seconds=300))
            # TCPStore's server is a thread of this process, idle otherwise
            rows["tcpstore"].append(one_run("tcpstore", master.port, n, sets, gets, os.getpid()))
            rtt["tcpstore"].append(round_trip_us("tcpstore", master.port))
            del master
    print(f"store_clients: {n} clients, {groups} groups (one set, members-1 gets each), "
          f"{PROCS} processes x {THREADS} threads, median of {repeat}")
    med = {k: tuple(statistics.median(x[i] for x in v) for i in range(4)) for k, v in rows.items()}
    # Round trips: every set, get and the barrier's add and wait (and the one "all" set).
    n_sets, n_gets = sum(map(len, sets.values())), sum(map(len, gets.values()))
    trips = {"gridd": n_sets + n_gets + 2 * n + 1, "tcpstore": n_sets + 2 * n_gets + 2 * n + 1}
    for kind, (conn, span, cpu, client_cpu) in med.items():
        us = statistics.median(rtt[kind])
        floor = trips[kind] * us / 1e6 / os.cpu_count()
        print(f"  {kind:9s} connect_s={conn:.3f} set_get_barrier_s={span:.3f} "
              f"round_trips_per_client={trips[kind] / n:.2f} one_round_trip_us={us:.0f} "
              f"floor_s={floor:.3f} span/floor={span / floor:.2f} server_cpu_s={cpu:.3f} "
              f"client_cpu_s={client_cpu:.3f}")
    # CPU seconds, clients' and server's: what the pattern costs, less swayed than the span
    # by other jobs on a shared machine
    cost = {k: m[2] + m[3] for k, m in med.items()}
    print(f"store_clients gridd_s={med['gridd'][1]:.3f} tcpstore_s={med['tcpstore'][1]:.3f} "
          f"ratio={med['tcpstore'][1] / med['gridd'][1]:.2f} gridd_cpu_s={cost['gridd']:.3f} "
          f"tcpstore_cpu_s={cost['tcpstore']:.3f} cpu_ratio={cost['tcpstore'] / cost['gridd']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
