#!/usr/bin/env python3
"""gridd's control socket checks its peer's uid (SO_PEERCRED): another user is
refused with a PERMISSION error naming the flag that allows it, even when the
socket's mode would let it in; --allow-uid lets it in; root always is."""
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, skip, summary  # noqa: E402

BIN = os.environ.get("HGRID_BIN", "bin")
NOBODY = 65534
LIST_JOBS = bytes([0x08, 0x02, 0xFA, 0x01, 0x00])  # Envelope{version 2, list {}}


def ask_as(uid, path):
    """Sends ListJobs from a child running as uid; returns gridd's reply bytes."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        reply = b""
        try:
            os.setgid(uid)
            os.setuid(uid)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(path)
            s.sendall(struct.pack(">I", len(LIST_JOBS)) + LIST_JOBS)
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
                if len(reply) >= 4 and len(reply) >= 4 + struct.unpack(">I", reply[:4])[0]:
                    break
        except OSError as e:
            reply = b"OSError " + str(e).encode()
        os.write(write_end, reply)
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


def run_gridd(tmp, extra):
    path = os.path.join(tmp, "gridd.sock")
    port_file = os.path.join(tmp, "port")
    log = open(os.path.join(tmp, "gridd.log"), "w")
    proc = subprocess.Popen([os.path.join(BIN, "gridd"), "--listen", "127.0.0.1:0", "--control", path,
                             "--port-file", port_file] + extra, stderr=log)
    for _ in range(200):
        if os.path.exists(port_file) and os.path.getsize(port_file) > 0:
            break
        time.sleep(0.025)
    os.chmod(path, 0o666)  # a misconfigured mode: the uid check must still hold
    return proc, path


def stop(proc):
    proc.terminate()
    check(proc.wait(timeout=10) == 0, "gridd exits 0 on SIGTERM")


def main():
    if os.geteuid() != 0:
        skip("daemon_peercred: needs root to connect as another user")
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        proc, path = run_gridd(tmp, [])
        refused = ask_as(NOBODY, path)
        check(b"uid 65534 may not control gridd" in refused and b"--allow-uid 65534" in refused,
              "another user is refused with the flag that allows it: %r" % refused[:200])
        root = ask_as(0, path)
        check(b"may not control" not in root and len(root) > 4, "root is served: %r" % root[:80])
        stop(proc)
        log = open(os.path.join(tmp, "gridd.log")).read()
        check("uid 65534 may not control gridd" in log, "the refusal is logged")
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        proc, path = run_gridd(tmp, ["--allow-uid", str(NOBODY)])
        allowed = ask_as(NOBODY, path)
        check(b"may not control" not in allowed and len(allowed) > 4,
              "--allow-uid lets the user in: %r" % allowed[:80])
        stop(proc)
    return summary("daemon_peercred")


if __name__ == "__main__":
    sys.exit(main())
