"""Shared by the Python package's tests: where the package, its library and a Python with
torch are, the workers' environment, and their JSON lines."""
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The release build's core library: Python cannot load the sanitizer build's.
LIBRARY = os.path.join(ROOT, "bin", "libhgrid.so.1")


def skip(reason):
    print(f"SKIP: {reason}", flush=True)
    sys.exit(77)


def need_library():
    if not os.path.exists(LIBRARY):
        print(f"FAIL: {LIBRARY} is missing: run make (the release build) first", flush=True)
        sys.exit(1)


# finds MODULE...: exit 0 when every module is installed, found without importing it.
FINDS = """import importlib.util, os, sys
def found(name):
    parent, _, leaf = name.rpartition(".")
    if not parent:
        return importlib.util.find_spec(name) is not None
    spec = importlib.util.find_spec(parent)  # imports only parent's own parents
    return spec is not None and any(os.path.exists(os.path.join(d, leaf + ".py")) or
                                    os.path.isdir(os.path.join(d, leaf))
                                    for d in spec.submodule_search_locations or [])
sys.exit(0 if all(map(found, sys.argv[1:])) else 1)
"""


def finds(py, *modules):
    """Whether py has every module installed: found, not imported (an import of torch or
    megatron.core takes seconds of CPU; the tests' own imports fail loudly if one is broken)."""
    return subprocess.run([py, "-c", FINDS, *modules], capture_output=True).returncode == 0


def torch_python():
    """A Python with torch (HGRID_PYTHON, else build/venv's, else python3); else SKIP."""
    for py in (os.environ.get("HGRID_PYTHON"), os.path.join(ROOT, "build", "venv", "bin", "python"),
               "python3"):
        if not py or (os.path.sep in py and not os.path.exists(py)):
            continue
        if finds(py, "torch.distributed"):
            return py
    skip("torch is not installed (.ci/run installs it into build/venv; or set HGRID_PYTHON)")


def worker_env(port, job, token, device, **extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "SLURM_LOCALID", "WORLD_SIZE")}
    env.update(HGRID_COORDINATOR=f"127.0.0.1:{port}", HGRID_JOB=job, HGRID_TOKEN=token,
               LOCAL_RANK=str(device), HGRID_HOSTNAME="node-py", HGRID_LIBRARY=LIBRARY,
               PYTHONPATH=os.path.join(ROOT, "python"), GLOO_SOCKET_IFNAME="lo",
               OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    # ASan's options from tests/run.sh are for the C programs, not for Python.
    env.pop("ASAN_OPTIONS", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def json_lines(path):
    out = []
    try:
        for line in open(path, errors="replace"):
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    except FileNotFoundError:
        pass
    return out


def wait_for(pred, timeout, period=0.1):
    end = time.monotonic() + timeout
    while True:
        got = pred()
        if got or time.monotonic() > end:
            return got
        time.sleep(period)


def start_gridd(tmp, heartbeat_timeout=10):
    """gridd on 127.0.0.1 with its log in tmp; (proc, port, control socket). Python workers
    keep a heartbeat thread, but a process starved of CPU (many torch imports on two cores)
    can miss a short timeout."""
    bin_dir = os.environ.get("HGRID_BIN", "bin")
    port_file, sock = os.path.join(tmp, "port"), os.path.join(tmp, "gridd.sock")
    log = open(os.path.join(tmp, "gridd.log"), "w")
    proc = subprocess.Popen([f"{bin_dir}/gridd", "--listen", "127.0.0.1:0", "--port-file", port_file,
                             "--control", sock, "--heartbeat-timeout", str(heartbeat_timeout)],
                            stdout=log, stderr=log)
    for _ in range(400):
        if os.path.exists(port_file) and open(port_file).read().endswith("\n"):
            return proc, int(open(port_file).read()), sock
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError("gridd did not start; see " + log.name)
