#!/usr/bin/env python3
"""The launch scripts start hgrid-agent on demand (HGRID_AGENT): Slurm
(scripts/hgrid-srun.sh under a fake SLURM_* environment) and torchrun-style
(scripts/hgrid-torchrun.sh), each on two simulated nodes of 4 dry-run
workers (each node its own XDG_RUNTIME_DIR, as two machines would have).
The node's first task starts the agent; every worker of the node reaches
gridd through it: gridd sees one host link per node whose HostHello lists
its 4 workers (the launcher's count given as --gpus), and with every rank
assigned none of them connected directly. Each agent exits by itself (--exit-idle,
HGRID_AGENT_IDLE_S=1) once its workers are gone, removing its socket; its
log is in its directory, not in the tasks' output (which a launcher would
wait on).
Then: a second torchrun restart (TORCHELASTIC_RESTART_COUNT) gets agents of
its own; HGRID_AGENT_SOCKET given keeps the scripts from starting one; a
wrong HGRID_AGENT is refused. Stdlib only."""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, summary  # noqa: E402
import launch_util as lu  # noqa: E402

BIN = lu.BIN
WORKER = os.path.abspath(os.path.join(BIN, "hgrid-worker"))
AGENT = os.path.abspath(os.path.join(BIN, "hgrid-agent"))
LAUNCHER_VARS = ("SLURM_", "SLURMD_", "RANK", "LOCAL_", "WORLD_SIZE", "MASTER_", "HGRID_",
                 "TORCHELASTIC_", "XDG_RUNTIME_DIR", "TMPDIR")


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(LAUNCHER_VARS)}
    # A 10 s HostHello wait: one HostHello per node even when this machine is
    # loaded enough to start a node's 4 workers over a second apart.
    env.update(HGRID_WORKER=WORKER, HGRID_AGENT=AGENT, HGRID_AGENT_IDLE_S="1",
               HGRID_AGENT_HELLO_WAIT_MS="10000")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_gridd(tmp):
    """gridd at -v (its log names each host link); (proc, port, control socket, log path)."""
    port_file, sock = os.path.join(tmp, "port"), os.path.join(tmp, "gridd.sock")
    log_path = os.path.join(tmp, "gridd.log")
    log = open(log_path, "w")
    proc = subprocess.Popen([f"{BIN}/gridd", "--listen", "127.0.0.1:0", "--port-file", port_file,
                             "--control", sock, "--heartbeat-timeout", "2", "-v"],
                            stdout=log, stderr=log)
    for _ in range(400):
        if os.path.exists(port_file) and open(port_file).read().endswith("\n"):
            return proc, int(open(port_file).read()), sock, log_path
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError("gridd did not start; see " + log_path)


def agents_of(runtime_dir):
    """Pids of hgrid-agent processes whose socket is under runtime_dir."""
    out = subprocess.run(["pgrep", "-f", f"^{AGENT} --socket {runtime_dir}/"],
                         capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def sockets_under(runtime_dir):
    found = []
    for root, _, files in os.walk(runtime_dir):
        found += [os.path.join(root, f) for f in files if f == "agent.sock"]
    return found


def launch(tmp, label, node_envs, argv):
    """node_envs: [[env per local task]] per node; starts every task; (procs, paths)."""
    procs, paths = [], []
    for n, envs in enumerate(node_envs):
        for local, env in enumerate(envs):
            path = os.path.join(tmp, f"{label}-{n}-{local}.out")
            procs.append(subprocess.Popen(argv, env=env, stdout=open(path, "w"),
                                          stderr=subprocess.STDOUT))
            paths.append(path)
    return procs, paths


def run_recipe(tmp, port, sock, log_path, label, node_envs, argv, hosts):
    """Runs one launch of 2 nodes x 4, checks it went through one agent per node."""
    runtimes = [envs[0]["XDG_RUNTIME_DIR"] for envs in node_envs]
    for r in runtimes:
        os.makedirs(r, mode=0o700, exist_ok=True)
    log_start = os.path.getsize(log_path)
    procs, paths = launch(tmp, label, node_envs, argv)
    got = lu.assignments(paths, 8)
    lu.check_recipe(label, got, [(h, d) for h in hosts for d in range(4)])
    running = [agents_of(r) for r in runtimes]
    check([len(a) for a in running] == [1, 1], f"{label}: one agent per node running: {running}")
    argvs = [open(f"/proc/{a[0]}/cmdline").read().split("\0") if a else [] for a in running]
    check(all(" --gpus 4 --hello-wait-ms 10000 " in " ".join(a) for a in argvs),
          f"{label}: each agent got --gpus 4 and HGRID_AGENT_HELLO_WAIT_MS as --hello-wait-ms: {argvs}")
    check([len(sockets_under(r)) for r in runtimes] == [1, 1],
          f"{label}: one agent socket per node: {[sockets_under(r) for r in runtimes]}")
    with open(log_path, errors="replace") as f:
        f.seek(log_start)
        log = f.read()
    for h in hosts:
        links = log.count(f"host link opened host={h} workers=")
        whole = log.count(f"host link opened host={h} workers=4")
        check(links == 1 and whole == 1, f"{label}: node {h}'s 4 workers reach gridd over one host "
                                         f"link, in one HostHello ({links} links, {whole} of 4)")
    lu.finish(label, sock, label, procs)
    t0 = time.monotonic()
    while any(agents_of(r) for r in runtimes) and time.monotonic() - t0 < 15:
        time.sleep(0.1)
    left = [agents_of(r) for r in runtimes]
    check(left == [[], []], f"{label}: each agent exits by itself after its workers "
                            f"({time.monotonic() - t0:.1f} s): {left}")
    check(not any(sockets_under(r) for r in runtimes),
          f"{label}: the agents removed their sockets: {[sockets_under(r) for r in runtimes]}")
    for r in runtimes:  # the agent's log beside its socket, not in the task's output
        logs = [os.path.join(d, "agent.log") for d, _, files in os.walk(r) if "agent.log" in files
                and f".{label}." in d]
        text = open(logs[0]).read() if len(logs) == 1 else ""
        check("hgrid-agent: listening on" in text and "(--exit-idle): shutting down" in text and
              text.rstrip().endswith("hgrid-agent: stopped"),
              f"{label}: the agent's log in its directory says it started and went idle: {logs} "
              f"{text[-300:]!r}")
    outs = "".join(open(p).read() for p in paths)
    check("hgrid-agent:" not in outs, f"{label}: nothing of the agent in the tasks' output")
    return log


def slurm(tmp, port, sock, log_path):
    token = lu.submit(sock, "slurm")
    node_envs = [[clean_env(SLURM_PROCID=n * 4 + local, SLURM_LOCALID=local,
                            SLURMD_NODENAME=f"sn{n}", SLURM_NODEID=n, SLURM_NTASKS=8,
                            SLURM_JOB_ID=42, SLURM_STEP_ID=0, SLURM_STEP_TASKS_PER_NODE="4(x2)",
                            XDG_RUNTIME_DIR=os.path.join(tmp, f"slurm-run{n}"),
                            HGRID_COORDINATOR=f"127.0.0.1:{port}", HGRID_JOB="slurm",
                            HGRID_TOKEN=token) for local in range(4)] for n in range(2)]
    run_recipe(tmp, port, sock, log_path, "slurm", node_envs,
               ["scripts/hgrid-srun.sh", "--dry-run", "--json"], ["sn0", "sn1"])


def torch_envs(tmp, port, token, job, restart):
    return [[clean_env(RANK=n * 4 + local, LOCAL_RANK=local, WORLD_SIZE=8, LOCAL_WORLD_SIZE=4,
                       GROUP_RANK=n, MASTER_ADDR="127.0.0.1", MASTER_PORT=29500, HGRID_PORT=port,
                       HGRID_HOSTNAME=f"tr{n}", TORCHELASTIC_RUN_ID="none",
                       TORCHELASTIC_RESTART_COUNT=restart,
                       XDG_RUNTIME_DIR=os.path.join(tmp, f"torch-run{n}"),
                       HGRID_JOB=job, HGRID_TOKEN=token) for local in range(4)] for n in range(2)]


def torchrun(tmp, port, sock, log_path):
    for restart, job in ((0, "torch"), (1, "torch2")):
        token = lu.submit(sock, job)
        run_recipe(tmp, port, sock, log_path, job, torch_envs(tmp, port, token, job, restart),
                   ["scripts/hgrid-torchrun.sh", "--dry-run", "--json"], ["tr0", "tr1"])
    dirs = sorted(d for d in os.listdir(os.path.join(tmp, "torch-run0")) if d.startswith("hgrid-agent."))
    check(len(dirs) == 2, f"torchrun: each restart had an agent (directory) of its own: {dirs}")


def given_socket(tmp):
    """HGRID_AGENT_SOCKET set: the script starts no agent and the worker uses that socket."""
    env = clean_env(RANK=0, LOCAL_RANK=0, WORLD_SIZE=1, MASTER_ADDR="127.0.0.1", HGRID_JOB="j",
                    HGRID_TOKEN="t", XDG_RUNTIME_DIR=os.path.join(tmp, "given"),
                    HGRID_AGENT_SOCKET=os.path.join(tmp, "nobody.sock"))
    os.makedirs(env["XDG_RUNTIME_DIR"], mode=0o700, exist_ok=True)
    r = subprocess.run(["scripts/hgrid-torchrun.sh", "--dry-run"], env=env, capture_output=True,
                       text=True, timeout=30)
    check(r.returncode != 0 and "cannot reach this host's hgrid-agent at " +
          os.path.join(tmp, "nobody.sock") in r.stderr,
          f"given HGRID_AGENT_SOCKET: the worker goes there: {r.returncode} {r.stderr.strip()}")
    check(not agents_of(env["XDG_RUNTIME_DIR"]) and not sockets_under(env["XDG_RUNTIME_DIR"]),
          "given HGRID_AGENT_SOCKET: no agent started")
    env = clean_env(SLURM_PROCID=0, SLURM_LOCALID=0, SLURMD_NODENAME="n", HGRID_JOB="j",
                    HGRID_TOKEN="t", HGRID_COORDINATOR="127.0.0.1:1",
                    HGRID_AGENT=os.path.join(tmp, "no-such-agent"))
    r = subprocess.run(["scripts/hgrid-srun.sh", "--dry-run"], env=env, capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 2 and "is not a program" in r.stderr,
          f"a wrong HGRID_AGENT is refused: {r.returncode} {r.stderr.strip()}")
    for bad in ("1s", "600001", "-5"):
        env = clean_env(SLURM_PROCID=0, SLURM_LOCALID=0, SLURMD_NODENAME="n", HGRID_JOB="j",
                        HGRID_TOKEN="t", HGRID_COORDINATOR="127.0.0.1:1",
                        XDG_RUNTIME_DIR=os.path.join(tmp, "badwait"), HGRID_AGENT_HELLO_WAIT_MS=bad)
        os.makedirs(env["XDG_RUNTIME_DIR"], mode=0o700, exist_ok=True)
        r = subprocess.run(["scripts/hgrid-srun.sh", "--dry-run"], env=env, capture_output=True,
                           text=True, timeout=30)
        check(r.returncode == 2 and r.stderr.strip() == "hgrid-srun: HGRID_AGENT_HELLO_WAIT_MS must "
              f"be milliseconds from 0 to 600000, got '{bad}'" and not agents_of(env["XDG_RUNTIME_DIR"]),
              f"HGRID_AGENT_HELLO_WAIT_MS={bad} is refused before any agent starts: {r.returncode} "
              f"{r.stderr.strip()}")


def main():
    tmp = tempfile.mkdtemp(suffix=".hgrid-agent-launch")
    gridd, port, sock, log_path = start_gridd(tmp)
    try:
        slurm(tmp, port, sock, log_path)
        torchrun(tmp, port, sock, log_path)
        given_socket(tmp)
    finally:
        for r in ("slurm-run0", "slurm-run1", "torch-run0", "torch-run1"):
            for pid in agents_of(os.path.join(tmp, r)):
                os.kill(pid, 15)
        gridd.terminate()
        check(gridd.wait(timeout=30) == 0, "gridd exits 0")
    if summary("agent_launch"):
        print(open(log_path).read()[-3000:])
        for name in sorted(os.listdir(tmp)):
            if name.endswith(".out"):
                print(f"--- {name}\n" + open(os.path.join(tmp, name)).read()[-600:])
        return 1
    subprocess.run(["rm", "-rf", tmp])
    return 0


if __name__ == "__main__":
    sys.exit(main())
