"""Shared by the launcher tests (tests/launch_*.py): gridd and a job, dry-run
workers' JSON assignments, and the checks every launch recipe must pass:
each (host, device) as the launcher said, every rank once, every tp group
inside one host."""
import json
import os
import subprocess
import time

from checks import check

BIN = os.environ.get("HGRID_BIN", "bin")
# The default layout: encoder tp2 dp2 + llm tp2 dp2, 8 ranks.
LAYOUT = ["--encoder-tp", "2", "--encoder-dp", "2", "--llm-tp", "2", "--llm-dp", "2"]


def start_gridd(tmp, listen="127.0.0.1:0", prefix=()):
    """gridd (under `prefix`, e.g. ip netns exec) on `listen`; (proc, port, control socket)."""
    port_file, sock = os.path.join(tmp, "port"), os.path.join(tmp, "gridd.sock")
    log = open(os.path.join(tmp, "gridd.log"), "w")
    proc = subprocess.Popen([*prefix, f"{BIN}/gridd", "--listen", listen, "--port-file", port_file,
                             "--control", sock, "--heartbeat-timeout", "2"],
                            stdout=log, stderr=log)
    for _ in range(400):
        if os.path.exists(port_file) and open(port_file).read().endswith("\n"):
            return proc, int(open(port_file).read()), sock
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError("gridd did not start; see " + log.name)


def ctl(sock, *args):
    return subprocess.run([f"{BIN}/hgridctl", "--socket", sock, *args], capture_output=True,
                          text=True, timeout=30)


def submit(sock, job):
    r = ctl(sock, "submit", "--job", job, *LAYOUT)
    if r.returncode:
        raise RuntimeError(f"hgridctl submit failed: {r.stderr}")
    return r.stdout.strip()


def complete_lines(path):
    """The lines of a file another process is still writing, without the last one
    if it is not finished yet: a long line can reach the file in several writes."""
    with open(path, errors="replace") as f:
        return f.read().split("\n")[:-1]


def assignments(paths, want, timeout=60):
    """The first JSON assignment line of each output file once `want` of them have one."""
    end = time.monotonic() + timeout
    while True:
        got = []
        for p in paths:
            for line in complete_lines(p):
                i = line.find("{")
                if i >= 0 and '"rank"' in line:
                    got.append(json.loads(line[i:]))
                    break
        if len(got) >= want or time.monotonic() > end:
            return got
        time.sleep(0.1)


def check_recipe(label, got, expect, ranks=None):
    """got: assignments; expect: sorted [(host, device)]; ranks: {(host, device): rank} asked for."""
    check(len(got) == len(expect), f"{label}: {len(got)} of {len(expect)} workers assigned")
    check(sorted((a["host"], a["device"]) for a in got) == sorted(expect),
          f"{label}: hosts and devices as the launcher said: "
          f"{sorted((a['host'], a['device']) for a in got)}")
    check(sorted(a["rank"] for a in got) == list(range(len(expect))),
          f"{label}: every rank once: {sorted(a['rank'] for a in got)}")
    host_of = {a["rank"]: a["host"] for a in got}
    split = [g["members"] for a in got for g in a["groups"]
             if g["name"] == "tp" and len({host_of.get(m) for m in g["members"]}) != 1]
    check(not split, f"{label}: every tp group inside one host (split: {split})")
    if ranks is not None:
        wrong = [(a["host"], a["device"], a["rank"]) for a in got
                 if ranks.get((a["host"], a["device"])) != a["rank"]]
        check(not wrong, f"{label}: the launcher's ranks granted (wrong: {wrong})")


def finish(label, sock, job, procs):
    """Cancels the job; every launcher process must exit 0."""
    ctl(sock, "cancel", job)
    rcs = []
    for p in procs:
        try:
            rcs.append(p.wait(timeout=30))
        except subprocess.TimeoutExpired:
            p.kill()
            rcs.append("hung")
    check(all(rc == 0 for rc in rcs), f"{label}: every worker released and exited 0: {rcs}")
