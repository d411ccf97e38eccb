#!/usr/bin/env python3
"""One command-line style across gridd, hgridctl (and each command),
hgrid-worker, hgrid-swarm and the example program: --help and --version exit
0 (one version for all), `--flag=value` means `--flag value`, `--` ends the
options (a job named "-x" can be shown), a typo names the nearest flag, a
number out of range names the range, `--coordinator HOST` means port 7420.
Job names follow one rule, checked by hgridctl submit and by gridd's submit
handler (a raw SubmitJob), and a NUL byte in a name is refused, not cut."""
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, summary  # noqa: E402

BIN = os.environ.get("HGRID_BIN", "bin")
RULE = "job names are 1-64 bytes of letters, digits, '.', '_' and '-', not starting with '-'"
PROGRAMS = ["gridd", "hgridctl", "hgrid-worker", "hgrid-swarm", "hgrid-example-join", "hgrid-lines"]


def run(prog, *args, env=None):
    r = subprocess.run([os.path.join(BIN, prog)] + list(args), capture_output=True, text=True,
                       timeout=30, env=env)
    return r.returncode, r.stdout, r.stderr


def test_help_version():
    versions = set()
    for prog in PROGRAMS:
        rc, out, err = run(prog, "--help")
        check(rc == 0 and "usage:" in out and err == "",
              f"{prog} --help: exit {rc}, usage on stdout, nothing on stderr ({err!r})")
        rc, out, err = run(prog, "--version")
        m = re.fullmatch(re.escape(prog) + r" \(hgrid\) (\S+)\n", out)
        check(rc == 0 and m is not None, f"{prog} --version: exit {rc}, {out!r}")
        if m:
            versions.add(m.group(1))
    check(len(versions) == 1, f"one version for every program: {versions}")
    commands = re.findall(r"^  ([a-z]+) ", run("hgridctl", "--help")[1].split("commands:")[1],
                          flags=re.M)
    check(len(commands) >= 7, f"hgridctl --help lists its commands: {commands}")
    for cmd in commands:
        rc, out, _ = run("hgridctl", cmd, "--help")
        check(rc == 0 and out.startswith(f"usage: hgridctl {cmd}"), f"hgridctl {cmd} --help: {rc}")
        rc, out, _ = run("hgridctl", cmd, "--version")
        check(rc == 0 and out.startswith("hgridctl (hgrid) "), f"hgridctl {cmd} --version: {out!r}")


def usage_error(prog, args, want):
    rc, out, err = run(prog, *args)
    check(rc == 2 and want in err and err.count("\n") == 1,
          f"{prog} {' '.join(args)}: exit {rc} (want 2), stderr {err!r} (want {want!r})")
    return err


def test_usage_errors():
    # (program, args with a typo, the nearest flag named)
    for prog, args, near in (("gridd", ["--lisen", "x"], "--listen"),
                             ("gridd", ["--max-job=3"], "--max-jobs"),
                             ("hgridctl", ["--sockt", "x", "list"], "--socket"),
                             ("hgridctl", ["plan", "--llm-tpp", "2"], "--llm-tp"),
                             ("hgridctl", ["show", "j", "--widht", "80"], "--width"),
                             ("hgridctl", ["watch", "j", "--intervall", "1"], "--interval"),
                             ("hgrid-worker", ["--coordinater", "h"], "--coordinator"),
                             ("hgrid-worker", ["--stepz", "3"], "--steps"),
                             ("hgrid-swarm", ["--worker", "3"], "--workers")):
        usage_error(prog, args, f"(did you mean {near}?)")
    usage_error("hgridctl", ["plna"], "unknown command 'plna' (did you mean plan?")
    # A number out of range names the range, whichever spelling.
    for prog, args, want in (
            ("gridd", ["--max-jobs", "99999999999"], "--max-jobs '99999999999' is out of range: "
             "a whole number from 1 to 1048576"),
            ("gridd", ["--max-jobs=0"], "--max-jobs '0' is out of range: a whole number from 1 to"),
            ("gridd", ["--heartbeat-timeout=0"], "a number from 0.001 to 86400"),
            ("hgridctl", ["plan", "--llm-tp", "99999999999"], "--llm-tp '99999999999' is out of "
             "range: a whole number from 1 to 2147483647"),
            ("hgridctl", ["plan", "--llm-tp=99999999999"], "--llm-tp '99999999999' is out of range"),
            ("hgridctl", ["show", "j", "--width=10"], "--width '10' is out of range: a whole "
             "number from 40 to 100000"),
            ("hgrid-worker", ["--device", "99999999999"], "--device '99999999999' is out of "
             "range: a whole number from 0 to 65536"),
            ("hgrid-worker", ["--comm-timeout=0"], "a number from 0.05 to"),
            ("hgrid-swarm", ["--workers=0"], "--workers '0' is out of range: a whole number from 1")):
        usage_error(prog, args, want)
    # Switches take no value; an unexpected operand is named.
    usage_error("gridd", ["--verbose=2"], "--verbose takes no value")
    usage_error("hgrid-worker", ["--dry-run=yes"], "--dry-run takes no value")
    usage_error("gridd", ["--", "extra"], "unexpected argument 'extra'")
    usage_error("hgrid-swarm", ["stray"], "unexpected argument 'stray'")
    # "--" ends the options: what follows is an operand, even "-x".
    usage_error("hgrid-worker", ["--", "--dry-run"], "unexpected argument '--dry-run'")
    usage_error("hgrid-swarm", ["--", "-x"], "unexpected argument '-x'")
    usage_error("hgridctl", ["list", "--", "--json"], "unexpected argument '--json'")
    rc, _, err = run("hgrid-example-join", "--", "-x")
    check(rc == 2 and err.startswith("usage: hgrid-example-join"), f"example -- -x: {rc} {err!r}")
    rc, _, err = run("hgrid-example-join", "--hepl")
    check(rc == 2 and err.strip() == "hgrid-example-join: unknown option '--hepl' (it takes --help, "
          "--version and --; try 'hgrid-example-join --help')", f"example --hepl: {rc} {err!r}")
    rc, _, err = run("hgrid-example-join", "127.0.0.1:1", "j", "t", "2.5")
    check(rc == 2 and "STEPS '2.5' is not a whole number in [1, 1000000000]" in err and
          len(err.strip().splitlines()) == 1, f"example STEPS 2.5: {rc} {err!r}")
    # --flag=value and --flag value are the same flag.
    for prog, flag, value in (("hgridctl", "--socket", "/nonexistent/s"),
                              ("hgrid-worker", "--coordinator", "127.0.0.1:1")):
        pre = ["list"] if prog == "hgridctl" else ["--job", "j", "--token", "t", "--dry-run",
                                                      "--connect-timeout", "0"]
        a = run(prog, flag, value, *pre)
        b = run(prog, f"{flag}={value}", *pre)
        check(a[0] == b[0] == 1 and a[2] == b[2] and value in a[2],
              f"{prog} {flag} V and {flag}=V: {a[0]} {b[0]} {a[2]!r} {b[2]!r}")
    # --coordinator HOST: port 7420 (nothing of ours listens on 127.0.0.2).
    rc, _, err = run("hgrid-worker", "--coordinator", "127.0.0.2", "--job", "j", "--token", "t",
                     "--dry-run", "--connect-timeout", "0")
    check(rc == 1 and "127.0.0.2:7420" in err, f"--coordinator HOST means HOST:7420: {rc} {err!r}")
    env = dict(os.environ, HGRID_COORDINATOR="127.0.0.2")
    rc, _, err = run("hgrid-worker", "--job", "j", "--token", "t", "--dry-run",
                     "--connect-timeout", "0", env=env)
    check(rc == 1 and "127.0.0.2:7420" in err, f"HGRID_COORDINATOR=HOST means HOST:7420: {rc} {err!r}")


def start_gridd(tmp):
    port_file, sock = os.path.join(tmp, "port"), os.path.join(tmp, "ctl.sock")
    log = open(os.path.join(tmp, "gridd.log"), "w")
    proc = subprocess.Popen([os.path.join(BIN, "gridd"), "--listen=127.0.0.1:0",
                             "--control=" + sock, "--port-file", port_file], stderr=log)
    deadline = time.time() + 10
    while not (os.path.exists(port_file) and os.path.exists(sock)) and time.time() < deadline:
        time.sleep(0.02)
    return proc, sock


def raw_submit(sock_path, name):
    """gridd's reply to a SubmitJob{job: name} sent as raw protobuf bytes."""
    job = b"\x0a" + bytes([len(name)]) + name
    env = b"\x08\x02" + b"\xf2\x01" + bytes([len(job)]) + job  # version 2, submit (field 30)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(sock_path)
    s.sendall(struct.pack(">I", len(env)) + env)
    reply = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        reply += chunk
        if len(reply) >= 4 and len(reply) >= 4 + struct.unpack(">I", reply[:4])[0]:
            break
    s.close()
    return reply


def test_job_names(tmp):
    proc, sock = start_gridd(tmp)
    try:
        ctl = ["--socket", sock]
        for bad in ("-x", "a b", "a/b", "x" * 65, "", "é"):
            err = usage_error("hgridctl", ctl + ["submit", "--job", bad, "--token", "t"], RULE)
            check(f"--job '{bad[:64]}'" in err, f"the refusal names the job: {err!r}")
        rc, out, err = run("hgridctl", *ctl, "submit", "--job", "ok.Name_1-2" + "y" * 53,
                           "--token", "t")
        check(rc == 0, f"a 64-byte name of the allowed characters is taken: {rc} {err!r}")
        rc, out, err = run("hgridctl", *ctl, "submit", "--job=eq-form", "--token=t")
        check(rc == 0 and "eq-form" in out, f"submit --job=NAME --token=T: {rc} {out!r} {err!r}")
        # "--" ends the options: a name starting with '-' reaches gridd as a name.
        rc, out, err = run("hgridctl", *ctl, "show", "--", "-x")
        check(rc == 1 and "no job named '-x'" in err, f"show -- -x: {rc} {err!r}")
        rc, out, err = run("hgridctl", *ctl, "cancel", "--", "-x")
        check(rc == 1 and "no job named '-x'" in err, f"cancel -- -x: {rc} {err!r}")
        rc, out, err = run("hgridctl", *ctl, "--json", "show", "--", "-x")
        check(rc == 1 and "unknown_job" in out, f"--json show -- -x: {rc} {out!r}")
        # gridd's own handler, whatever the client: the rule, and no cut at a NUL.
        for bad in (b"-x", b"-", b"--help", b"a b", b"x" * 65):
            reply = raw_submit(sock, bad)
            check(RULE.encode() in reply, f"gridd refuses {bad!r} with the rule: {reply!r}")
        reply = raw_submit(sock, b"ok\x00evil")
        check(b"NUL byte" in reply, f"gridd refuses a name holding a NUL byte: {reply!r}")
        rc, out, _ = run("hgridctl", *ctl, "list")
        check(rc == 0 and re.search(r"^ok\s", out, re.M) is None,
              f"no job 'ok' was made from 'ok\\0evil': {out!r}")
        rc, out, err = run("hgridctl", *ctl, "show", "eq-form")
        check(rc == 0, f"gridd still serves after the refusals: {rc} {err!r}")
    finally:
        proc.terminate()
        check(proc.wait(timeout=10) == 0, "gridd exits 0 on SIGTERM")


def main():
    test_help_version()
    test_usage_errors()
    with tempfile.TemporaryDirectory() as tmp:
        test_job_names(tmp)
    return summary("cli_conventions")


if __name__ == "__main__":
    sys.exit(main())
