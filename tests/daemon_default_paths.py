#!/usr/bin/env python3
"""The default control socket paths cannot be squatted (issue 18.4,
docs/RELIABILITY.md "Security"): with neither --socket/--control nor
$HGRID_CONTROL nor $XDG_RUNTIME_DIR (cron, Slurm batch, sudo), gridd of a
user creates /tmp/hgrid-UID/ 0700 and refuses one another user made first;
hgridctl prefers the system gridd's /run/hgrid/gridd.sock over the user's
path, and sends nothing (not a submit's token) to a socket at its default
path that another user serves.

Runs as root in a private mount namespace (unshare -m) with fresh tmpfs
/tmp and /run, so the machine's /tmp/hgrid-UID and /run/hgrid are never
touched; gridd and hgridctl run as uids 65534 and 65533. Skips (exit 77)
where it cannot: not root, or no mount namespace. Stdlib only."""
import os
import shutil
import socket
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, summary  # noqa: E402

USER, OTHER = 65534, 65533
SMALL = ["--llm-only", "--llm-tp", "1", "--llm-dp", "2"]


def skip(why):
    print("SKIP: " + why)
    sys.exit(77)


def as_uid(uid):
    def drop():
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    return drop


def plain_env():
    """The environment of a cron job or a Slurm batch script: no socket named."""
    return {k: v for k, v in os.environ.items()
            if k not in ("HGRID_CONTROL", "XDG_RUNTIME_DIR", "HGRID_GRIDD_UID")}


class Gridd:
    """gridd as uid with its default control path (or *extra)."""

    def __init__(self, bindir, uid, name, *extra):
        self.dir = "/tmp/%s-files" % name
        os.mkdir(self.dir, 0o700)
        os.chown(self.dir, uid, uid)
        self.log = os.path.join(self.dir, "gridd.log")
        port = os.path.join(self.dir, "port")
        self.proc = subprocess.Popen([os.path.join(bindir, "gridd"), "--listen", "127.0.0.1:0",
                                      "--port-file", port, *extra],
                                     stderr=open(self.log, "w"), env=plain_env(),
                                     preexec_fn=as_uid(uid))
        deadline = time.time() + 20
        while time.time() < deadline and not os.path.exists(port):
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        time.sleep(0.1)  # the control socket is bound before the port file is written

    def started(self):
        return self.proc.poll() is None

    def log_text(self):
        return open(self.log, errors="replace").read()

    def stop(self, what):
        self.proc.terminate()
        rc = self.proc.wait(timeout=60)
        text = self.log_text()
        check(rc == 0 and "Sanitizer" not in text and "runtime error" not in text,
              "%s: gridd exit %d on SIGTERM: %s" % (what, rc, text[-2000:]))


def ctl(bindir, uid, *args):
    r = subprocess.run([os.path.join(bindir, "hgridctl"), *args], capture_output=True, text=True,
                       timeout=60, env=plain_env(), preexec_fn=as_uid(uid))
    return r.returncode, r.stdout, r.stderr


def test_fallback_and_preference(bindir):
    # A user's gridd, nothing named: /tmp/hgrid-UID/ created 0700, its own.
    user = Gridd(bindir, USER, "user")
    fallback = "/tmp/hgrid-%d" % USER
    st = os.lstat(fallback) if os.path.lexists(fallback) else None
    check(user.started() and st is not None and stat.S_ISDIR(st.st_mode)
          and stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == USER,
          "the fallback control directory: %s (gridd %s)" %
          (st and (oct(st.st_mode), st.st_uid), "running" if user.started() else user.log_text()))
    code, out, err = ctl(bindir, USER, "submit", "--job", "user-job", "--token", "u", *SMALL)
    check(code == 0, "submit to the user's gridd at its default path: %r" % err)
    # The system gridd (root) at /run/hgrid/gridd.sock, reachable by the user.
    system = Gridd(bindir, 0, "system", "--allow-uid", str(USER))
    check(system.started() and os.path.exists("/run/hgrid/gridd.sock"),
          "root's gridd at /run/hgrid/gridd.sock: %s" % system.log_text()[-500:])
    os.chmod("/run/hgrid", 0o755)
    os.chmod("/run/hgrid/gridd.sock", 0o666)
    code, out, err = ctl(bindir, 0, "submit", "--job", "system-job", "--token", "s", *SMALL)
    check(code == 0, "submit to the system gridd: %r" % err)
    # Nothing named: hgridctl asks the system gridd first.
    code, out, err = ctl(bindir, USER, "list")
    check(code == 0 and "system-job" in out and "user-job" not in out,
          "hgridctl of uid %d prefers /run/hgrid/gridd.sock: %d %r %r" % (USER, code, out, err))
    system.stop("system gridd")
    # Without the system gridd, the user's own path.
    code, out, err = ctl(bindir, USER, "list")
    check(code == 0 and "user-job" in out, "without /run/hgrid, the user's gridd: %r %r" % (out, err))
    user.stop("user gridd")


def test_squatted_fallback(bindir):
    # Another user (USER) made OTHER's fallback directory first and serves a socket there.
    squat = "/tmp/hgrid-%d" % OTHER
    os.mkdir(squat)
    os.chmod(squat, 0o777)
    os.chown(squat, USER, USER)
    path = os.path.join(squat, "gridd.sock")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            as_uid(USER)()
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            os.chmod(path, 0o777)  # anyone may connect: the squatter wants them to
            s.listen(4)
            os.write(w, b"L")
            got = 0
            s.settimeout(15)
            for _ in range(1):  # hgridctl's connect
                try:
                    c, _ = s.accept()
                except socket.timeout:
                    break
                c.settimeout(2)
                try:
                    while True:
                        chunk = c.recv(65536)
                        if not chunk:
                            break
                        got += len(chunk)
                except socket.timeout:
                    pass
                c.close()
                os.write(w, b"%d\n" % got)
        finally:
            os._exit(0)
    os.close(w)
    os.read(r, 1)
    code, out, err = ctl(bindir, OTHER, "submit", "--job", "j", "--token", "SECRET-TOKEN", *SMALL)
    check(code != 0 and "uid %d" % USER in err and path in err,
          "hgridctl of uid %d refuses its default socket served by uid %d: %d %r" %
          (OTHER, USER, code, err))
    got = os.read(r, 64).split(b"\n")[0]
    check(got == b"0", "bytes the squatter received: %s" % got.decode())
    # gridd of OTHER refuses to start in the squatted directory.
    g = Gridd(bindir, OTHER, "other")
    check(not g.started() and g.proc.wait() != 0 and "not safe" in g.log_text()
          and "uid %d" % USER in g.log_text(),
          "gridd of uid %d refuses %s (owner uid %d, 0777): %r" % (OTHER, squat, USER, g.log_text()))
    if g.started():
        g.stop("squatted gridd")
    os.close(r)
    os.kill(pid, 9)
    os.waitpid(pid, 0)


def inside(bindir):
    # Fresh /run first (it keeps the programs: /tmp may hold the checkout), then /tmp.
    for point in ("/run", "/tmp"):
        if point == "/tmp":
            copy = "/run/hgrid-test-bin"
            os.mkdir(copy, 0o755)
            for prog in ("gridd", "hgridctl"):
                shutil.copy2(os.path.join(bindir, prog), copy)
            bindir = copy
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777", "hgrid-test", point], check=True)
    os.chmod("/run", 0o755)
    test_fallback_and_preference(bindir)
    test_squatted_fallback(bindir)
    return summary("daemon_default_paths")


def main():
    bindir = os.path.abspath(os.environ.get("HGRID_BIN", "bin"))
    if len(sys.argv) > 1 and sys.argv[1] == "--inside":
        return inside(bindir)
    for prog in ("gridd", "hgridctl"):  # copied into the namespace: programs, not wrappers
        with open(os.path.join(bindir, prog), "rb") as f:
            if f.read(4) != b"\x7fELF":
                skip("%s/%s is not a program (a wrapper, e.g. tests/valgrind.sh's); this test "
                     "copies the programs into a private /run" % (bindir, prog))
    if os.geteuid() != 0:
        skip("needs root (gridd and hgridctl run as other users, in a private mount namespace)")
    if not shutil.which("unshare") or subprocess.run(
            ["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs", "t", "/tmp"],
            capture_output=True).returncode != 0:
        skip("no private mount namespace here (unshare -m with a tmpfs mount failed)")
    r = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable,
                        os.path.abspath(__file__), "--inside"], env=dict(os.environ, HGRID_BIN=bindir))
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
