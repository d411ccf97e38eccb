#!/usr/bin/env python3
"""gridd under a stand-in for systemd (Type=notify): this test binds the
NOTIFY_SOCKET datagram socket (an abstract '@' name, as systemd uses) and
starts gridd with WATCHDOG_USEC. READY=1 must come only once both sockets
accept (the test connects to each the moment it arrives), with a STATUS
line; STATUS follows a submitted job and a worker connection; WATCHDOG=1
pings at half the interval; SIGTERM gives STOPPING=1.
A gridd that cannot listen never says READY=1, and a WATCHDOG_PID naming
another process gets no pings."""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, summary  # noqa: E402

BIN = os.environ.get("HGRID_BIN", "bin")


def notify_socket():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"@hgrid-notify-test-{os.getpid()}-{time.monotonic_ns()}"
    s.bind("\0" + name[1:])
    return s, name


def messages(sock, until, stop_at=None):
    """(time, message) pairs received before `until` (monotonic), or until one equals stop_at."""
    got = []
    while time.monotonic() < until:
        sock.settimeout(max(0.01, until - time.monotonic()))
        try:
            m = sock.recv(4096).decode()
        except socket.timeout:
            break
        got.append((time.monotonic(), m))
        if stop_at is not None and stop_at in m.split("\n"):
            break
    return got


def start(tmp, name, env_extra, listen="127.0.0.1:0"):
    env = dict(os.environ, NOTIFY_SOCKET=name, **env_extra)
    for k in ("WATCHDOG_USEC", "WATCHDOG_PID"):
        if k not in env_extra:
            env.pop(k, None)
    log = open(os.path.join(tmp, "gridd.log"), "a")
    return subprocess.Popen([f"{BIN}/gridd", "--listen", listen, "--port-file",
                             os.path.join(tmp, "port"), "--control", os.path.join(tmp, "ctl.sock")],
                            env=env, stdout=log, stderr=log)


def main():
    tmp = tempfile.mkdtemp(suffix=".hgrid-notify")
    sock, name = notify_socket()

    # The normal life: READY once listening, pings, STOPPING on SIGTERM.
    gridd = start(tmp, name, {"WATCHDOG_USEC": "400000"})
    got = messages(sock, time.monotonic() + 10, stop_at="READY=1")
    ready = [m for _, m in got if "READY=1" in m.split("\n")]
    check(len(ready) == 1, f"READY=1 arrives once gridd listens: {got}")
    if ready:
        port = int(open(os.path.join(tmp, "port")).read())
        ok_tcp = ok_ctl = True
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except OSError:
            ok_tcp = False
        try:
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(os.path.join(tmp, "ctl.sock"))
            c.close()
        except OSError:
            ok_ctl = False
        check(ok_tcp, "the worker port accepts when READY=1 arrives")
        check(ok_ctl, "the control socket accepts when READY=1 arrives")
        check(any(line.startswith("STATUS=serving workers on 127.0.0.1:0, hgridctl on ") and
                  line.endswith(": 0 jobs, 0 worker connections")
                  for line in ready[0].split("\n")), f"READY=1 carries a STATUS line: {ready[0]!r}")
    # A job and a worker connection: the status follows within a second.
    sub = subprocess.run([f"{BIN}/hgridctl", "--socket", os.path.join(tmp, "ctl.sock"), "submit",
                          "--job", "j"], capture_output=True, text=True, timeout=30)
    check(sub.returncode == 0, f"hgridctl submit: {sub.stderr}")
    worker = socket.create_connection(("127.0.0.1", port), timeout=2) if ready else None
    t0 = time.monotonic()
    got = messages(sock, t0 + 2.0)
    if worker:
        worker.close()
    pings = [t for t, m in got if m == "WATCHDOG=1"]
    statuses = [m for _, m in got if m.startswith("STATUS=")]
    check(any(m.endswith(": 1 job, 1 worker connection") for m in statuses),
          f"the status follows the job and the connection: {statuses}")
    # 400 ms watchdog: a ping every 200 ms, so about 10 in 2 s.
    check(6 <= len(pings) <= 12, f"WATCHDOG=1 every 200 ms: {len(pings)} in 2 s")
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    check(gaps and max(gaps) < 0.4, f"no gap between pings reaches the 400 ms watchdog: {gaps}")
    gridd.send_signal(signal.SIGTERM)
    got = messages(sock, time.monotonic() + 10, stop_at="STOPPING=1")
    stopping = [m for _, m in got if "STOPPING=1" in m.split("\n")]
    check(len(stopping) == 1 and "STATUS=Terminated: shutting down" in stopping[0].split("\n"),
          f"SIGTERM: STOPPING=1 and a STATUS line: {got}")
    check(gridd.wait(timeout=20) == 0, "gridd exits 0 after SIGTERM")

    # A WATCHDOG_PID naming another process (our own): not gridd's watchdog.
    gridd = start(tmp, name, {"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())})
    got = messages(sock, time.monotonic() + 10, stop_at="READY=1")
    got += messages(sock, time.monotonic() + 0.6)
    check(any("READY=1" in m for _, m in got), "READY=1 with another process's watchdog")
    check(not any(m == "WATCHDOG=1" for _, m in got), f"no pings for another's watchdog: {got}")
    gridd.terminate()
    gridd.wait(timeout=20)
    messages(sock, time.monotonic() + 0.2)

    # A gridd that cannot listen (the port is taken) says no READY=1.
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    gridd = start(tmp, name, {}, listen=f"127.0.0.1:{busy.getsockname()[1]}")
    rc = gridd.wait(timeout=20)
    got = messages(sock, time.monotonic() + 0.3)
    check(rc == 1 and not any("READY=1" in m for _, m in got),
          f"a gridd that cannot listen exits 1 without READY=1: rc {rc}, {got}")
    busy.close()
    log = open(os.path.join(tmp, "gridd.log")).read()
    check("ERROR: AddressSanitizer" not in log and "runtime error" not in log,
          "sanitizers silent")
    if summary("daemon_notify"):
        print(log[-3000:])
        return 1
    subprocess.run(["rm", "-rf", tmp])
    return 0


if __name__ == "__main__":
    sys.exit(main())
