#!/usr/bin/env python3
"""hgridctl as docs/OPERATIONS.md describes it, against a real gridd: every
command's --json is one object with the documented keys (watch: one per
line); failures are one line on stderr, {"error": {"code", "message"}} on
stdout under --json, and exit 1 (2 for usage); `show` draws 8 dry-run workers
on 2 hosts (one named by HGRID_HOSTNAME, one by --host) with each cell's
rank, module and coordinates equal to the plan, wraps columns to --width,
caps hosts with --max-hosts, shows workers without a rank and lost ones;
`watch` shows joining progress and writes no escape codes into a pipe; a
colocated job and a two-encoder job show and watch every module."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemon_gridd as d  # noqa: E402  (gridd, the raw worker protocol, the tally)

WORKER = os.path.join(d.BIN, "hgrid-worker")
# 8 ranks: encoder tp2 dp2 (ranks 0-3), llm tp2 pp2 (ranks 4-7).
LAYOUT = ["--encoder-tp", "2", "--encoder-dp", "2", "--llm-tp", "2", "--llm-pp", "2",
          "--llm-dp", "1", "--micro-batch-size", "2"]
JOB_HEAD = ["job", "state", "generation", "world_size"]
WATCH_KEYS = JOB_HEAD + ["joined", "ended_unix_ms", "reason", "modules", "workers"]
WATCH_WORKER = ["rank", "module", "host", "device", "state", "step", "loss", "tokens_per_s",
                "step_time_s", "last_heartbeat_ms", "self_test"]


def run(*args, env=None):
    r = subprocess.run([d.CTL] + list(args), capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, **(env or {})))
    d.check(not any(s in r.stderr for s in ("AddressSanitizer", "LeakSanitizer", "runtime error")),
            "%s: sanitizer report: %s" % (args, r.stderr[-2000:]))
    return r.returncode, r.stdout, r.stderr


def one_object(out, what):
    """stdout's one JSON object (one line), or {}."""
    lines = out.splitlines()
    d.check(len(lines) == 1, "%s: one line of JSON, got %r" % (what, out[:300]))
    try:
        obj = json.loads(lines[0]) if lines else {}
    except ValueError:
        obj = {}
    d.check(isinstance(obj, dict) and obj, "%s: a JSON object: %r" % (what, out[:300]))
    return obj if isinstance(obj, dict) else {}


def expect_error(args, status, code, needles, env=None):
    """args fails with status; stderr is one line holding every needle; with
    --json added, stdout is the error object with that code and line."""
    rc, out, err = run(*args, env=env)
    d.check(rc == status and not out and len(err.splitlines()) == 1
            and all(n in err for n in needles),
            "%s: exit %d (want %d), stderr %r, stdout %r" % (args, rc, status, err, out))
    rc, out, err = run(*(list(args) + ["--json"]), env=env)
    obj = one_object(out, "%s --json" % (args,))
    d.check(rc == status and obj == {"error": {"code": code, "message": err.rstrip("\n")}}
            and len(err.splitlines()) == 1,
            "%s --json: exit %d, %r (want code %s and stderr's line %r)"
            % (args, rc, obj, code, err))


def parse_grid(text):
    """{(host, gpu): (top line, bottom line)} over every panel of show's grid."""
    cells, lines, i = {}, text.split("\n"), 0
    while i < len(lines):
        if not lines[i].startswith("host "):
            i += 1
            continue
        cols = [(m.start(), int(m.group(1))) for m in re.finditer(r"gpu (\d+)", lines[i])]
        i += 1
        while i + 1 < len(lines) and lines[i] and not lines[i].startswith((" ", "...")):
            host = lines[i][:cols[0][0]].strip()
            for k, (start, gpu) in enumerate(cols):
                end = cols[k + 1][0] if k + 1 < len(cols) else None
                cells[(host, gpu)] = (lines[i][start:end].strip(), lines[i + 1][start:end].strip())
            i += 2
    return cells


def expected_cells(plan, workers):
    """{(host, gpu): cell} from plan --json's coordinates (e when the module's ep > 1)."""
    want, ep = {}, {m["name"]: m["ep"] for m in plan["modules"]}
    for w in workers:
        r = plan["ranks"][w["rank"]]
        coords = "t%d d%d p%d" % (r["tp"], r["dp"], r["pp"])
        if ep[r["module"]] > 1:
            coords += " e%d" % r["ep"]
        want[(w["host"], w["device"])] = ("r%d %s" % (w["rank"], r["module"][:3]), coords)
    return want


def start_worker(g, job, token, device, tmp, host=None, env=None):
    args = [WORKER, "--coordinator", "127.0.0.1:%d" % g.port, "--job", job, "--token", token,
            "--dry-run", "--device", str(device)]
    if host:
        args += ["--host", host]
    out = open(os.path.join(tmp, "%s-%s-%d.out" % (job, host or "env", device)), "w")
    return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                            env=dict(os.environ, **(env or {})))


def ctl(g, *args):
    return run("--socket", g.sock, *args)


def test_json_and_grid(g, tmp, procs):
    rc, out, err = ctl(g, "submit", "--job", "grid", "--json", *LAYOUT)
    sub = one_object(out, "submit --json")
    d.check(rc == 0 and list(sub) == ["job", "token", "token_generated", "world_size", "message"]
            and sub["job"] == "grid" and re.fullmatch(r"[0-9a-f]{32}", sub["token"])
            and sub["token_generated"] is True and sub["world_size"] == 8
            and sub["message"] == "job grid submitted: waiting for 8 workers",
            "submit --json, generated token: %r %r" % (sub, err))
    rc, out, _ = ctl(g, "submit", "--job", "given", "--token", "s3", "--json", "--llm-only")
    world = json.loads(run("plan", "--json", "--llm-only")[1])["world_size"]
    got = one_object(out, "submit --token --json")
    d.check(rc == 0 and got == {
        "job": "given", "token": "s3", "token_generated": False, "world_size": world,
        "message": "job given submitted: waiting for %d workers" % world},
        "submit --json with --token: %r" % got)

    rc, out, _ = ctl(g, "list", "--json")
    lst = one_object(out, "list --json")
    d.check(ctl(g, "--json", "list") == (0, out, ""), "--json before the command")
    live = [j for j in lst["jobs"] if j["ended_unix_ms"] is None]  # ended ones stay listed a while
    d.check(rc == 0 and list(lst) == ["jobs"] and sorted(j["job"] for j in live)
            == ["given", "grid"] and all(list(j) == JOB_HEAD + ["joined", "ended_unix_ms", "reason"]
                                         for j in lst["jobs"])
            and all(j["joined"] == 0 and j["state"] == "waiting" and j["reason"] == ""
                    for j in live), "list --json: %r" % lst)

    # The job's token from submit --json lets the workers in: 4 on a host
    # named by HGRID_HOSTNAME, 4 on one named by --host.
    for dev in range(4):
        procs.append(start_worker(g, "grid", sub["token"], dev, tmp,
                                  env={"HGRID_HOSTNAME": "node-a"}))
        procs.append(start_worker(g, "grid", sub["token"], dev, tmp, host="node-b"))

    def shown():
        return json.loads(ctl(g, "show", "grid", "--json")[1] or "{}")
    d.check(d.wait_for(lambda: shown().get("state") == "running", timeout=20), "8 workers run")
    show = shown()
    plan = json.loads(run("plan", "--json", *LAYOUT)[1])
    d.check(list(show) == JOB_HEAD + ["workers", "num_workers", "plan"] and show["plan"] == plan
            and [list(w) for w in show["workers"]] == [["rank", "host", "device", "state",
                                                        "last_heartbeat_ms"]] * 8,
            "show --json keys, plan equal to plan --json: %s" % list(show))
    hosts = sorted({w["host"] for w in show["workers"]})
    d.check(hosts == ["node-a", "node-b"], "hosts from HGRID_HOSTNAME and --host: %s" % hosts)
    by_host = {h: sorted(w["rank"] for w in show["workers"] if w["host"] == h) for h in hosts}
    d.check(sorted(by_host.values()) == [[0, 1, 2, 3], [4, 5, 6, 7]],
            "ranks host by host: %s" % by_host)

    want = expected_cells(plan, show["workers"])
    rc, out, _ = ctl(g, "show", "grid", "--width", "120")
    lines = out.splitlines()
    d.check(rc == 0 and lines[:4] == [
        "job grid: running, generation 1, joined 8/8",
        "encoder  ranks 0-3: tp 2, dp 2, pp 1",
        "llm      ranks 4-7: tp 2, dp 1, pp 2",
        "cells: rank and module, then coordinates t=tp d=dp p=pp; '.' no worker"],
        "show heading:\n" + out)
    d.check(parse_grid(out) == want and out.count("\nhost ") == 1,
            "show's one panel: every cell's rank, module, coordinates:\n%s\nwant %s" % (out, want))
    d.check(lines[-1] == "workers: 8 ready" and all(l == l.rstrip() for l in lines),
            "show's states line, no trailing blanks:\n" + out)
    first = [l for l in lines if l.startswith(("node-a", "node-b"))][0]
    d.check(first.startswith(show["workers"][0]["host"]) and "r0 enc" in first,
            "hosts in rank order: %r" % first)
    # 40 columns hold 3 GPU columns: a second panel holds gpu 3.
    rc, out, _ = ctl(g, "show", "grid", "--width", "40")
    heads = [l for l in out.splitlines() if l.startswith("host ")]
    d.check(rc == 0 and parse_grid(out) == want and len(heads) == 2 and "gpu 3" in heads[1]
            and "gpu 3" not in heads[0]
            and max(len(l) for l in out.splitlines() if l.startswith(("host", "node", " "))) <= 40,
            "show --width 40 wraps into 2 panels:\n" + out)
    rc, out, _ = ctl(g, "show", "grid", "--max-hosts", "1")
    cells = parse_grid(out)
    d.check(rc == 0 and len(cells) == 4 and all(want[k] == v for k, v in cells.items())
            and {h for h, _ in cells} == {show["workers"][0]["host"]}
            and "... 1 more host with 4 workers not drawn (--max-hosts 0 draws every host; "
                "--json lists every worker)" in out, "show --max-hosts 1:\n" + out)

    rc, out, _ = ctl(g, "status", "grid", "--json")
    st = one_object(out, "status --json")
    rc2, out2, _ = ctl(g, "watch", "grid", "--once", "--json")
    wt = one_object(out2, "watch --once --json")
    for what, obj, code in (("status", st, rc), ("watch --once", wt, rc2)):
        d.check(code == 0 and list(obj) == WATCH_KEYS and obj["joined"] == 8
                and all(list(w) == WATCH_WORKER for w in obj["workers"])
                and all(w["self_test"] == [] for w in obj["workers"]),
                "%s --json keys: %s" % (what, list(obj)))

    # watch --json streams one object per line and ends with the job's last view.
    proc = subprocess.Popen([d.CTL, "--socket", g.sock, "watch", "grid", "--json", "--interval",
                             "0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_lines = [proc.stdout.readline() for _ in range(3)]
    rc, out, _ = ctl(g, "cancel", "grid", "--json")
    d.check(rc == 0 and one_object(out, "cancel --json") == {
        "job": "grid", "state": "cancelled",
        "message": "job grid cancelled; its workers were released"}, "cancel --json")
    rest = proc.stdout.read().splitlines()
    rc = proc.wait(timeout=10)
    objs = [json.loads(l) for l in first_lines + rest]
    d.check(rc == 0 and all(list(o) == WATCH_KEYS for o in objs) and len(objs) >= 4
            and objs[-1]["state"] == "cancelled",
            "watch --json: %d lines, keys %s, last %s" % (len(objs), list(objs[0]), objs[-1]))
    d.check(ctl(g, "cancel", "given")[0] == 0, "cancel given")


def test_joining_and_lost(g, tmp, procs):
    layout = ["--llm-only", "--llm-tp", "2", "--llm-dp", "2"]
    d.check(ctl(g, "submit", "--job", "half", "--token", "h", *layout)[0] == 0, "submit half")
    for dev in range(2):
        procs.append(start_worker(g, "half", "h", dev, tmp, host="early"))
    d.check(d.wait_for(lambda: "joined 2/4" in ctl(g, "status", "half")[1], timeout=15),
            "2 of 4 joined")
    rc, out, _ = ctl(g, "show", "half")
    d.check(rc == 0 and parse_grid(out) == {("early", 0): ("joined", "no rank yet"),
                                            ("early", 1): ("joined", "no rank yet")}
            and out.splitlines()[-1] == "workers: 2 joined, 2 not joined yet",
            "workers without a rank yet:\n" + out)
    # A pipe gets plain text: the joining bar, no escape codes.
    proc = subprocess.Popen([d.CTL, "--socket", g.sock, "watch", "half", "--interval", "0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=10)
    text = out.decode()
    bar = "joining [" + "#" * 16 + "." * 16 + "] 2/4, waiting for 2 more workers"
    d.check(proc.returncode == 0 and b"\x1b" not in out and text.count("job half:") >= 2
            and text.splitlines()[1] == bar, "watch into a pipe:\n" + text[:800])
    d.check(ctl(g, "cancel", "half")[0] == 0, "cancel half")

    # MoE: cells carry the ep coordinate. A lost worker: its cell says so
    # and the states line names it.
    moe = layout + ["--num-experts", "4", "--llm-ep", "2"]
    hosts = [("h1", 0), ("h1", 1), ("h2", 0), ("h2", 1)]
    d.check(ctl(g, "submit", "--job", "lost", "--token", "l", *moe)[0] == 0, "submit lost")
    peers = d.join_all(g, "lost", "l", hosts)
    assignments, _ = d.rendezvous(peers, 1)
    d.check(len(assignments) == 4, "4 assignments")
    rank_of = {i: d.one(a, 3) for i, a in assignments.items()}
    plan = json.loads(run("plan", "--json", *moe)[1])
    want = expected_cells(plan, [{"rank": rank_of[i], "host": h, "device": dev}
                                 for i, (h, dev) in enumerate(hosts)])
    rc, out, _ = ctl(g, "show", "lost")
    d.check(rc == 0 and parse_grid(out) == want and "llm      ranks 0-3: tp 2, dp 2, pp 1, ep 2"
            in out and "t=tp d=dp p=pp c=cp e=ep;" in out
            and {c[1][-2:] for c in want.values()} == {"e0", "e1"},
            "MoE cells with ep:\n%s\nwant %s" % (out, want))
    victim = [i for i, r in rank_of.items() if r == 3][0]
    peers[victim].close()
    d.check(d.wait_for(lambda: "lost" in ctl(g, "status", "lost")[1]), "rank 3 lost")
    rc, out, _ = ctl(g, "show", "lost")
    cells = parse_grid(out)
    host, dev = hosts[victim]
    d.check(cells.get((host, dev), ("",))[0] == "r3 llm LOST" == want[(host, dev)][0] + " LOST"
            and sum("LOST" in c[0] for c in cells.values()) == 1, "lost cell:\n" + out)
    # The generation is aborted: the others are joined again, keeping their ranks.
    d.check("workers: 3 joined, 1 lost" in out and "lost: rank 3 on %s/%d (they rejoin by "
            "restarting hgrid-worker with the same --host and --device)" % (host, dev) in out,
            "lost worker named:\n" + out)
    d.check(ctl(g, "cancel", "lost")[0] == 0, "cancel lost")
    for p in peers:
        p.close()


def test_errors(g, tmp):
    sock = ["--socket", g.sock]
    for cmd in (["show", "nope"], ["status", "nope"], ["cancel", "nope"],
                ["watch", "nope", "--once"]):
        expect_error(sock + cmd, 1, "unknown_job",
                     ["hgridctl: gridd refused: no job named 'nope'", "hgridctl list"])
    missing = os.path.join(tmp, "missing.sock")
    for cmd in (["list"], ["show", "x"], ["submit", "--job", "x"], ["watch", "x"]):
        expect_error(["--socket", missing] + cmd, 1, "unreachable",
                     ["hgridctl: cannot connect to gridd at %s (from --socket): " % missing,
                      "is gridd running?", "--socket PATH", "HGRID_CONTROL=PATH"])
    expect_error(["list"], 1, "unreachable", ["at %s (from $HGRID_CONTROL)" % missing],
                 env={"HGRID_CONTROL": missing})
    # Nothing names a socket: the default path, then (not root) the system gridd's.
    env = {k: v for k, v in os.environ.items() if k != "HGRID_CONTROL"}
    env["XDG_RUNTIME_DIR"] = tmp
    if not os.path.exists("/run/hgrid/gridd.sock"):
        r = subprocess.run([d.CTL, "list"], capture_output=True, text=True, timeout=30, env=env)
        want = ("at /run/hgrid/gridd.sock (the default path): " if os.geteuid() == 0 else
                "at %s/hgrid/gridd.sock (the default path; /run/hgrid/gridd.sock is absent too): "
                % tmp)
        d.check(r.returncode == 1 and want in r.stderr and len(r.stderr.splitlines()) == 1,
                "no socket named: %r, want %r" % (r.stderr, want))
    stale = os.path.join(tmp, "stale.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(stale)
    s.close()  # the file stays, nothing listens: a gridd that is gone
    expect_error(["--socket", stale, "list"], 1, "unreachable",
                 ["Connection refused", "a gridd that is gone: start gridd again"])
    expect_error(sock + ["submit", "--job", "bad", "--llm-cp", "2"], 1, "invalid_layout",
                 ["hgridctl: invalid layout: --llm-cp 2"])
    expect_error(["plan", "--world-size", "5"], 1, "invalid_layout",
                 ["hgridctl: invalid layout: --world-size 5 does not match"])
    d.check(ctl(g, "submit", "--job", "dup", "--token", "t")[0] == 0, "submit dup")
    expect_error(sock + ["submit", "--job", "dup", "--token", "t"], 1, "job_exists",
                 ["job dup exists (waiting); cancel it first or pick another name"])
    d.check(ctl(g, "cancel", "dup")[0] == 0, "cancel dup")
    expect_error(sock + ["submit", "--job", "bad name!", "--token", "t"], 2, "usage",
                 ["--job 'bad name!': job names are 1-64 bytes of letters, digits, '.', '_' and "
                  "'-', not starting with '-'"])
    for args, needle in ((["show"], "hgridctl show: name the job (hgridctl list shows them)"),
                         (["show", "a", "b"], "unexpected argument 'b'"),
                         (["show", "a", "--max-hosts", "x"], "--max-hosts 'x' is not a whole number"),
                         (["show", "a", "--width", "10"],
                          "--width '10' is out of range: a whole number from 40 to 100000"),
                         (["show", "a", "--width"], "--width needs a value (N)"),
                         (["status", "a", "--bogus"], "unknown option '--bogus'"),
                         (["status", "a", "--jsn"], "unknown option '--jsn' (did you mean --json?)"),
                         (["list", "extra"], "hgridctl list: unexpected argument 'extra'"),
                         (["submit", "--token", "t"], "--job NAME is required"),
                         (["plan", "--llm-tp", "abc"], "'abc' is not an integer"),
                         (["watch", "a", "--interval", "0"],
                          "--interval '0' is out of range: a number from 0.05 to 86400"),
                         (["frob"], "hgridctl: unknown command 'frob' (try 'hgridctl --help')"),
                         (["--bogus", "list"], "hgridctl: unknown option '--bogus'")):
        expect_error(sock + args, 2, "usage", [needle, "--help"] if args[0] != "--bogus"
                     else [needle])
    rc, out, err = run("--json")
    d.check(rc == 2 and one_object(out, "--json alone") == {"error": {
        "code": "usage", "message": "hgridctl: name a command (try 'hgridctl --help')"}},
        "--json without a command: %d %r" % (rc, out))
    rc, out, err = run("--socket")
    d.check(rc == 2 and err == "hgridctl: --socket needs a value (PATH) (try 'hgridctl --help')\n",
            "--socket without a path: %d %r" % (rc, err))


def test_help():
    rc, out, _ = run("--help")
    d.check(rc == 0 and all(n in out for n in (
        "--json (every command, before or after it)", '{"error": {"code": CODE, "message": LINE}}',
        "usage, invalid_layout, unreachable", "Exit status: 0 ok, 1 failed", "$HGRID_CONTROL",
        "\n  show ", "\n  watch ")), "hgridctl --help:\n" + out)
    for cmd, needles in (("plan", ['"world_size", "num_microbatches"']),
                         ("submit", ['"token_generated"']),
                         ("list", ['{"jobs": [{"job"']),
                         ("show", ["--max-hosts N", "--width N", '"last_heartbeat_ms"}]']),
                         ("status", ["hgridctl watch JOB --json"]),
                         ("cancel", ['"state": "cancelled"']),
                         ("watch", ['"self_test"', '"state": "ended"', "without escape codes"])):
        rc, out, _ = run(cmd, "--help")
        d.check(rc == 0 and out.startswith("usage: hgridctl " + cmd) and "--json" in out
                and all(n in out for n in needles), "%s --help:\n%s" % (cmd, out))


def test_colocated(g, tmp, procs):
    """A colocated job: show and watch put every rank in both modules."""
    layout = ["--mimo-layout", "colocated", "--llm-tp", "1", "--llm-dp", "4"]
    d.check(ctl(g, "submit", "--job", "co", "--token", "co", *layout)[0] == 0, "submit co")
    for dev in range(4):
        procs.append(start_worker(g, "co", "co", dev, tmp, host="co-h"))
    end, shown = time.time() + 20, {}
    while time.time() < end:
        rc, out, _ = ctl(g, "show", "co", "--json")
        shown = json.loads(out) if rc == 0 else {}
        if shown.get("state") == "running":
            break
        time.sleep(0.1)
    d.check(shown.get("state") == "running", "colocated job runs: %s" % shown.get("state"))
    plan = shown.get("plan", {})
    d.check(plan.get("mimo_layout") == "colocated" and
            [m["rank_offset"] for m in plan.get("modules", [])] == [0, 0] and
            all([m["module"] for m in r["modules"]] == ["encoder", "llm"] for r in plan.get("ranks", [])),
            "show --json: every rank in the encoder and the llm")
    rc, out, _ = ctl(g, "show", "co")
    d.check(rc == 0 and "e+l" in out and "t1 d0 / t0 d1 p0" in out,
            "show's grid: rank 1 is encoder tp1 dp0 and llm tp0 dp1: %r" % out[-300:])
    end, got = time.time() + 20, {}
    while time.time() < end:  # until every rank has beaten once
        rc, out, _ = ctl(g, "watch", "co", "--once", "--json")
        got = one_object(out, "watch --once --json") if rc == 0 else {}
        if all(m["reporting"] == 4 for m in got.get("modules", [{"reporting": 0}])):
            break
        time.sleep(0.2)
    d.check([(m["module"], m["first_rank"], m["num_ranks"], m["reporting"]) for m in got.get("modules", [])]
            == [("encoder", 0, 4, 4), ("llm", 0, 4, 4)], "watch: both modules over ranks 0-3: %s"
            % got.get("modules"))
    d.check(all(w["module"] == "encoder" and w["modules"] == ["encoder", "llm"]
                for w in got.get("workers", [])) and len(got.get("workers", [])) == 4,
            "watch: every worker in both modules")
    d.check(ctl(g, "cancel", "co")[0] == 0, "cancel co")


def test_two_encoders(g, tmp, procs):
    """Two encoders (--encoder, repeated): show, show --json and watch name
    each encoder's module over its own ranks, the LLM after them, and each
    encoder's own bridge into the LLM."""
    layout = ["--encoder", "vision:tp=1,dp=2", "--encoder", "audio:tp=1,dp=1", "--llm-tp", "1",
              "--llm-dp", "2", "--micro-batch-size", "2"]
    d.check(ctl(g, "submit", "--job", "enc2", "--token", "enc2", *layout)[0] == 0, "submit enc2")
    for dev in range(5):
        procs.append(start_worker(g, "enc2", "enc2", dev, tmp, host="enc2-h"))
    end, shown = time.time() + 20, {}
    while time.time() < end:
        rc, out, _ = ctl(g, "show", "enc2", "--json")
        shown = json.loads(out) if rc == 0 else {}
        if shown.get("state") == "running":
            break
        time.sleep(0.1)
    d.check(shown.get("state") == "running", "two-encoder job runs: %s" % shown.get("state"))
    plan = shown.get("plan", {})
    d.check([(m["name"], m["rank_offset"], m["num_ranks"]) for m in plan.get("modules", [])]
            == [("vision", 0, 2), ("audio", 2, 1), ("llm", 3, 2)],
            "show --json: vision 0-1, audio 2, llm 3-4: %s" % plan.get("modules"))
    d.check([r["module"] for r in plan.get("ranks", [])] == ["vision"] * 2 + ["audio"] + ["llm"] * 2,
            "show --json: each rank's module")
    d.check(plan.get("bridges") == [{"encoder": "vision", "fan": "equal", "edges": [[0, 3], [1, 4]]},
                                    {"encoder": "audio", "fan": "out", "edges": [[2, 3], [2, 4]]}],
            "show --json: one bridge per encoder: %s" % plan.get("bridges"))
    rc, out, _ = ctl(g, "show", "enc2")
    d.check(rc == 0 and "vision   ranks 0-1: tp 1, dp 2, pp 1" in out
            and "audio    rank 2: tp 1, dp 1, pp 1" in out and "r2 audio" in out,
            "show: each encoder's line and cells: %r" % out[-400:])
    end, got = time.time() + 20, {}
    while time.time() < end:  # until every rank has beaten once
        rc, out, _ = ctl(g, "watch", "enc2", "--once", "--json")
        got = one_object(out, "watch --once --json") if rc == 0 else {}
        if got.get("modules") and all(m["reporting"] == m["num_ranks"] for m in got["modules"]):
            break
        time.sleep(0.2)
    d.check([(m["module"], m["first_rank"], m["num_ranks"], m["reporting"])
             for m in got.get("modules", [])]
            == [("vision", 0, 2, 2), ("audio", 2, 1, 1), ("llm", 3, 2, 2)],
            "watch: vision, audio and llm: %s" % got.get("modules"))
    d.check([(w["rank"], w["module"]) for w in got.get("workers", [])]
            == [(0, "vision"), (1, "vision"), (2, "audio"), (3, "llm"), (4, "llm")],
            "watch: each worker's module")
    d.check(ctl(g, "cancel", "enc2")[0] == 0, "cancel enc2")


def main():
    tmp = tempfile.mkdtemp(prefix="hgrid-ctl.")
    g = d.Gridd(tmp, "c", "--heartbeat-timeout", "30")
    procs = []
    try:
        test_help()
        test_errors(g, tmp)
        test_json_and_grid(g, tmp, procs)
        test_joining_and_lost(g, tmp, procs)
        test_colocated(g, tmp, procs)
        test_two_encoders(g, tmp, procs)
        for p in procs:
            d.check(p.wait(timeout=15) == 0, "dry-run worker %s exits 0 once released" % p.args)
        g.stop("ctl_cli")
    finally:  # nothing left running when a test raises
        for p in procs + [g.proc]:
            if p.poll() is None:
                p.kill()
                p.wait()
    print("ctl_cli: %d passed, %d failed" % (d.passed, d.failed))
    sys.exit(1 if d.failed else 0)


if __name__ == "__main__":
    main()
