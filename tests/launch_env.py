#!/usr/bin/env python3
"""The launch recipes of docs/OPERATIONS.md against a real gridd, with
dry-run workers on two simulated hosts of 4 GPUs: Slurm (scripts/
hgrid-srun.sh under a fake SLURM_* environment, ranks from SLURM_PROCID),
torchrun-style (scripts/hgrid-torchrun.sh: RANK, LOCAL_RANK, WORLD_SIZE,
MASTER_ADDR with HGRID_PORT; gridd's own ranks) and a plain ssh loop
(scripts/hgrid-ssh.sh with a stand-in for ssh running POSIX sh), and
hgrid-worker@.service's ExecStart with its EnvironmentFile's variables. Every
recipe must give each (host, GPU) its rank with tp groups inside a host,
keep the token off every command line, and end with every worker exiting 0.
Then the launchers' error messages for a wrong environment."""
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, summary  # noqa: E402
import launch_util as lu  # noqa: E402

WORKER = os.path.abspath(os.path.join(lu.BIN, "hgrid-worker"))
LAUNCHER_VARS = ("SLURM_", "SLURMD_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_", "HGRID_")


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(LAUNCHER_VARS)}
    env["HGRID_WORKER"] = WORKER
    env.update({k: str(v) for k, v in extra.items()})
    return env


def token_shown(token):
    """True if any process's command line (what ps shows) holds the token."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if token.encode() in open(f"/proc/{pid}/cmdline", "rb").read():
                return True
        except OSError:
            pass
    return False


def run_tasks(tmp, label, tasks, argv):
    """tasks: [(env, out name)]; starts each; returns (procs, output paths)."""
    procs, paths = [], []
    for env, name in tasks:
        path = os.path.join(tmp, f"{label}-{name}.out")
        procs.append(subprocess.Popen(argv, env=env, stdout=open(path, "w"),
                                      stderr=subprocess.STDOUT))
        paths.append(path)
    return procs, paths


def slurm(tmp, port, sock):
    token = lu.submit(sock, "slurm")
    tasks, ranks = [], {}
    for node in range(2):
        for local in range(4):
            rank = node * 4 + local
            env = clean_env(SLURM_PROCID=rank, SLURM_LOCALID=local, SLURMD_NODENAME=f"sn{node}",
                            SLURM_NODEID=node, SLURM_NTASKS=8, SLURM_JOB_ID=42,
                            HGRID_COORDINATOR=f"127.0.0.1:{port}", HGRID_JOB="slurm",
                            HGRID_TOKEN=token)
            tasks.append((env, f"{node}-{local}"))
            ranks[(f"sn{node}", local)] = rank
    procs, paths = run_tasks(tmp, "slurm", tasks, ["scripts/hgrid-srun.sh", "--dry-run", "--json",
                                                   "--use-launcher-rank"])
    got = lu.assignments(paths, 8)
    check(not token_shown(token), "slurm: no token on any command line")
    lu.check_recipe("slurm", got, sorted(ranks), ranks)
    lu.finish("slurm", sock, "slurm", procs)


def torchrun(tmp, port, sock):
    token = lu.submit(sock, "torch")
    tasks = []
    for node in range(2):
        for local in range(4):
            env = clean_env(RANK=node * 4 + local, LOCAL_RANK=local, WORLD_SIZE=8,
                            LOCAL_WORLD_SIZE=4, GROUP_RANK=node, MASTER_ADDR="127.0.0.1",
                            MASTER_PORT=29500, HGRID_PORT=port, HGRID_HOSTNAME=f"tr{node}",
                            HGRID_JOB="torch", HGRID_TOKEN=token)
            tasks.append((env, f"{node}-{local}"))
    procs, paths = run_tasks(tmp, "torch", tasks, ["scripts/hgrid-torchrun.sh", "--dry-run",
                                                   "--json"])
    got = lu.assignments(paths, 8)
    check(not token_shown(token), "torchrun: no token on any command line")
    lu.check_recipe("torchrun", got, [(f"tr{n}", d) for n in range(2) for d in range(4)])
    lu.finish("torchrun", sock, "torch", procs)


def ssh(tmp, port, sock, agent=False):
    """With agent: HGRID_AGENT starts one hgrid-agent per host for its workers."""
    job = "ssh-agent" if agent else "ssh"
    token = lu.submit(sock, job)
    fake = os.path.join(tmp, "fake-ssh")
    # ssh HOST COMMAND: COMMAND under POSIX sh "on" HOST (its own host name).
    with open(fake, "w") as f:
        f.write('#!/bin/sh\nhost=$1; shift\nHGRID_HOSTNAME=$host exec /bin/sh -c "$*"\n')
    os.chmod(fake, 0o755)
    out = os.path.join(tmp, job + ".out")
    env = clean_env(HGRID_TOKEN=token, HGRID_SSH=fake)
    if agent:
        env["HGRID_AGENT"] = os.path.abspath(os.path.join(lu.BIN, "hgrid-agent"))
        env["HGRID_AGENT_HELLO_WAIT_MS"] = "10000"
    proc = subprocess.Popen(["scripts/hgrid-ssh.sh", "--coordinator", f"127.0.0.1:{port}",
                             "--job", job, "--gpus", "4", "node-a", "node-b", "--", "--dry-run",
                             "--json"], env=env, stdout=open(out, "w"), stderr=subprocess.STDOUT)
    got = []
    for _ in range(600):
        got = [json.loads(line.split(": ", 1)[1]) for line in lu.complete_lines(out)
               if ": {" in line and '"rank"' in line]
        if len(got) == 8:
            break
        time.sleep(0.1)
    workers = subprocess.run(["pgrep", "-f", f"^{WORKER} --coordinator 127.0.0.1:{port} --job {job} "],
                             capture_output=True, text=True).stdout.split()
    check(len(workers) == 8, f"{job}: 8 workers running ({len(workers)} found)")
    if agent:
        agents = subprocess.run(["pgrep", "-a", "-f", f"^{env['HGRID_AGENT']} --socket "],
                                capture_output=True, text=True).stdout.splitlines()
        check(len(agents) == 2 and all(" --gpus 4 --hello-wait-ms 10000" in a for a in agents),
              f"{job}: two agents, each given HGRID_AGENT_HELLO_WAIT_MS: {agents}")
    check(not token_shown(token), f"{job}: no token on any command line")
    lu.check_recipe(job, got, [(h, d) for h in ("node-a", "node-b") for d in range(4)])
    lu.finish(job, sock, job, [proc])
    check(sum(" released: job cancelled" in line for line in open(out)) == 8,
          f"{job}: every host's workers say they were released")
    if agent:
        stopped = sorted(line.split(":")[0] for line in open(out) if "hgrid-agent: stopped" in line)
        check(stopped == ["node-a", "node-b"], f"{job}: one agent per host, stopped after its workers: "
                                               f"{stopped}")


def unit_command(device, env):
    """hgrid-worker@DEVICE.service's ExecStart as systemd runs it: %i is the instance,
    an unquoted $VAR becomes the words of its value from the EnvironmentFile."""
    unit = open("systemd/hgrid-worker@.service").read()
    line = re.search(r"^ExecStart=(.*)$", unit, flags=re.M).group(1)
    words = []
    for w in shlex.split(line.replace("%i", str(device))):
        if w.startswith("$"):
            words += env.get(w[1:].strip("{}"), "").split()
        else:
            words.append(w)
    return [WORKER if w == "/usr/local/bin/hgrid-worker" else w for w in words]


def systemd_units(tmp, port, sock):
    """The worker unit's recipe: /etc/hgrid/worker.env's variables and the unit's ExecStart."""
    token = lu.submit(sock, "units")
    tasks, argvs = [], []
    for node in range(2):
        for device in range(4):
            env_file = (f"HGRID_COORDINATOR=127.0.0.1:{port}\nHGRID_JOB=units\n"
                        f"HGRID_TOKEN={token}\nHGRID_WORKER_ARGS=--dry-run --json\n"
                        f"HGRID_HOSTNAME=unit{node}\n")
            env = dict(line.split("=", 1) for line in env_file.splitlines())
            tasks.append((clean_env(**env), f"{node}-{device}"))
            argvs.append(unit_command(device, env))
    check(argvs[0][1:] == ["--device", "0", "--dry-run", "--json"],
          f"units: the unit's command line: {argvs[0]}")
    procs, paths = [], []
    for (env, name), argv in zip(tasks, argvs):
        path = os.path.join(tmp, f"units-{name}.out")
        procs.append(subprocess.Popen(argv, env=env, stdout=open(path, "w"),
                                      stderr=subprocess.STDOUT))
        paths.append(path)
    got = lu.assignments(paths, 8)
    check(not token_shown(token), "units: no token on any command line")
    lu.check_recipe("units", got, [(f"unit{n}", d) for n in range(2) for d in range(4)])
    lu.finish("units", sock, "units", procs)


def ssh_arguments(tmp):
    """hgrid-ssh passes the worker flags through the remote shell intact, and none when
    there are none (a stand-in worker, echo, prints what it got)."""
    fake = os.path.join(tmp, "fake-ssh")
    for extra, want in (([], "--coordinator h:1 --job j --device 1"),
                        (["--", "--save", "/tmp/a b", "--lr", "1e-4"],
                         "--coordinator h:1 --job j --device 1 --save /tmp/a b --lr 1e-4")):
        r = subprocess.run(["scripts/hgrid-ssh.sh", "--coordinator", "h:1", "--job", "j", "--gpus",
                            "2", "x", *extra], env=clean_env(HGRID_TOKEN="t", HGRID_SSH=fake,
                                                             HGRID_WORKER="/bin/echo"),
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 0 and f"x: {want}" in r.stdout.splitlines(),
              f"ssh: worker flags {extra} arrive as '{want}': {r.returncode} {r.stdout!r}")


def errors():
    """Each launcher refuses a wrong environment with one line saying what to set."""
    def run(argv, env, what, want):
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
        check(r.returncode == 2 and want in r.stderr,
              f"{what}: exit 2 saying '{want}': got {r.returncode}: {r.stderr.strip()}")
    job = dict(HGRID_COORDINATOR="127.0.0.1:1", HGRID_JOB="j", HGRID_TOKEN="t")
    run(["scripts/hgrid-srun.sh", "--dry-run"], clean_env(**job), "srun: no Slurm",
        "SLURM_PROCID is not set: run me as srun's command")
    slurm_env = dict(SLURM_PROCID=1, SLURM_LOCALID=1, SLURMD_NODENAME="n")
    run(["scripts/hgrid-srun.sh", "--dry-run"], clean_env(**slurm_env), "srun: no job",
        "HGRID_COORDINATOR is not set")
    run(["scripts/hgrid-srun.sh", "--dry-run"],
        clean_env(**slurm_env, **job, CUDA_VISIBLE_DEVICES="3"), "srun: one GPU per task",
        "task 1 sees one GPU (CUDA_VISIBLE_DEVICES=3)")
    run(["scripts/hgrid-torchrun.sh", "--dry-run"],
        clean_env(RANK=8, LOCAL_RANK=0, WORLD_SIZE=8, **job), "torchrun: RANK too big",
        "RANK 8 is not below WORLD_SIZE 8")
    run(["scripts/hgrid-torchrun.sh", "--dry-run"],
        clean_env(RANK=0, LOCAL_RANK=0, WORLD_SIZE=8, HGRID_JOB="j", HGRID_TOKEN="t"),
        "torchrun: nowhere to connect", "neither HGRID_COORDINATOR nor MASTER_ADDR is set")
    run([WORKER, "--dry-run", "--use-launcher-rank"],
        clean_env(RANK=9, WORLD_SIZE=8, **job), "worker: rank beyond WORLD_SIZE",
        "launcher rank 9 is not below WORLD_SIZE=8")
    run([WORKER, "--dry-run"], clean_env(HGRID_TOKEN="t"), "worker: no coordinator",
        "--job (or $HGRID_JOB) and --token (or $HGRID_TOKEN) are required")
    run(["scripts/hgrid-ssh.sh", "--coordinator", "h:1", "--job", "j", "--gpus", "4", "a"],
        clean_env(), "ssh: no token", "HGRID_TOKEN is not set")
    run(["scripts/hgrid-ssh.sh", "--coordinator", "h:1", "--job", "j", "--gpus", "4", "a"],
        clean_env(HGRID_TOKEN="t", HGRID_AGENT="hgrid-agent", HGRID_AGENT_HELLO_WAIT_MS="2s"),
        "ssh: a HostHello wait that is not milliseconds",
        "HGRID_AGENT_HELLO_WAIT_MS must be milliseconds from 0 to 600000, got '2s'")


def main():
    tmp = tempfile.mkdtemp(suffix=".hgrid-launch")
    gridd, port, sock = lu.start_gridd(tmp)
    try:
        slurm(tmp, port, sock)
        torchrun(tmp, port, sock)
        ssh(tmp, port, sock)
        ssh(tmp, port, sock, agent=True)
        ssh_arguments(tmp)
        systemd_units(tmp, port, sock)
        errors()
    finally:
        gridd.terminate()
        check(gridd.wait(timeout=30) == 0, "gridd exits 0")
    log = open(os.path.join(tmp, "gridd.log")).read()
    if summary("launch_env"):
        print(log[-2000:])
        for name in sorted(os.listdir(tmp)):
            if name.endswith(".out"):
                print(f"--- {name}\n" + open(os.path.join(tmp, name)).read()[-600:])
        return 1
    subprocess.run(["rm", "-rf", tmp])
    return 0


if __name__ == "__main__":
    sys.exit(main())
