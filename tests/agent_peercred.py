#!/usr/bin/env python3
"""hgrid-agent checks each local peer's uid (SO_PEERCRED), not only its
0700 directory: with the directory and socket opened up by mistake (0711,
0666), another user is still refused with a PERMISSION error naming the
flag that allows it, and the refusal is logged; root is served; with
--allow-uid that user gets past the check (the agent then reads its Hello).
Needs root (to connect as another user): else skipped. Stdlib only."""
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, skip, summary  # noqa: E402

BIN = os.environ.get("HGRID_BIN", "bin")
NOBODY = 65534


def connect_as(uid, path, wait_s=1.0):
    """Connects as uid from a child; returns what the agent sent within wait_s
    (b"" if nothing) or b"OSError ..."; b"open" appended if the socket stayed open."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        got = b""
        try:
            os.setgid(uid)
            os.setuid(uid)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.settimeout(wait_s)
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
            except socket.timeout:
                got += b"open"
        except OSError as e:
            got = b"OSError " + str(e).encode()
        os.write(write_end, got)
        os._exit(0)
    os.close(write_end)
    data = b""
    while True:
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        data += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    return data


def start_agent(tmp, extra):
    path = os.path.join(tmp, "agent", "agent.sock")
    log = open(os.path.join(tmp, "agent.log"), "a")
    proc = subprocess.Popen([os.path.join(BIN, "hgrid-agent"), "--socket", path, "-v"] + extra,
                            stderr=log)
    for _ in range(200):
        if os.path.exists(path):
            break
        time.sleep(0.025)
    check(os.path.exists(path), "the agent listens")
    check(os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o700, "its directory is 0700")
    check(os.stat(path).st_mode & 0o777 == 0o600, "its socket is 0600")
    os.chmod(os.path.dirname(path), 0o711)  # misconfigured: the uid check must still hold
    os.chmod(path, 0o666)
    return proc, path


def stop(proc):
    proc.terminate()
    check(proc.wait(timeout=10) == 0, "hgrid-agent exits 0 on SIGTERM")


def main():
    if os.geteuid() != 0:
        skip("agent_peercred: needs root to connect as another user")
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        proc, path = start_agent(tmp, [])
        refused = connect_as(NOBODY, path)
        check(b"uid 65534 may not use this agent" in refused and b"--allow-uid 65534" in refused,
              "another user is refused with the flag that allows it: %r" % refused[:200])
        root = connect_as(0, path)
        check(root == b"open", "root's connection is kept, waiting for its Hello: %r" % root[:80])
        stop(proc)
        log = open(os.path.join(tmp, "agent.log")).read()
        check("uid 65534 may not use this agent" in log, "the refusal is logged")
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        proc, path = start_agent(tmp, ["--allow-uid", str(NOBODY)])
        allowed = connect_as(NOBODY, path)
        check(allowed == b"open", "--allow-uid lets the user in: %r" % allowed[:80])
        stop(proc)
    return summary("agent_peercred")


if __name__ == "__main__":
    sys.exit(main())
