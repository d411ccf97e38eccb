#!/usr/bin/env python3
"""hgridctl watch against gridd: six hand-made workers (encoder dp2 + llm tp2
pp2) send heartbeats with known step, loss, tokens/s and step time; watch
--once and --json show each rank's values and the per-module summaries
(loss averaged over the LLM's last stage only, a lost rank left out);
dry-run hgrid-workers' heartbeats show up live; the streaming modes end
with the job (cancel), on Ctrl-C and when gridd goes away; a terminal gets
in-place redraws cut to its height; errors are one line."""
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemon_gridd as d  # noqa: E402  (the raw gridd client and protobuf helpers)

WORKER = os.path.join(d.BIN, "hgrid-worker")
LAYOUT = ["--encoder-tp", "1", "--encoder-dp", "2", "--llm-tp", "2", "--llm-pp", "2",
          "--llm-dp", "1", "--micro-batch-size", "2"]
HOSTS = [("node-a", 0), ("node-a", 1), ("node-a", 2), ("node-b", 0), ("node-b", 1), ("node-b", 2)]


def f32(no, x):
    return d.varint(no << 3 | 5) + struct.pack("<f", x)


def heartbeat(generation, step, loss, tok_s, step_time):
    return d.frame("heartbeat", d.fv(1, generation) + d.fv(2, step) + f32(3, loss)
                   + f32(4, tok_s) + f32(5, step_time))


# What rank r reports: ranks 0-1 encoder, 2-3 llm stage 0, 4-5 llm stage 1
# (the loss); the other ranks' loss must not count.
def sent(r):
    return {"step": 40 + r, "loss": {4: 2.5, 5: 2.75}.get(r, 9.0), "tok": 1000.0 * (r + 1),
            "time": 0.125 * (r + 1)}


def sanitizer_quiet(err, what):
    d.check("AddressSanitizer" not in err and "runtime error" not in err,
            "%s: sanitizer report: %s" % (what, err[-2000:]))


def watch_json(g, job):
    code, out, err = g.ctl("watch", job, "--once", "--json")
    sanitizer_quiet(err, "watch --json")
    return json.loads(out) if code == 0 and out else None


def start_watch(g, *args, **kw):
    return subprocess.Popen([d.CTL, "--socket", g.sock, "watch"] + list(args), text=True,
                            stdout=kw.get("stdout", subprocess.PIPE), stderr=subprocess.PIPE)


def read_until(proc, pred, timeout=10):
    """Lines of proc's stdout until pred(lines) or EOF or the timeout."""
    lines, deadline = [], time.time() + timeout
    while not pred(lines) and time.time() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
    return lines


def test_exact(g):
    d.check(g.ctl("submit", "--job", "hb", "--token", "tk", *LAYOUT)[0] == 0, "submit hb")
    peers = d.join_all(g, "hb", "tk", HOSTS)
    assignments, _ = d.rendezvous(peers, 1)
    d.check(len(assignments) == 6, "6 assignments")
    rank_of = {i: d.one(a, 3) for i, a in assignments.items()}
    peer_of = {r: i for i, r in rank_of.items()}
    v = watch_json(g, "hb")
    d.check(v is not None and [w["step"] for w in v["workers"]] == [None] * 6
            and [m["reporting"] for m in v["modules"]] == [0, 0],
            "before any heartbeat: no values: %s" % v)
    for i, p in enumerate(peers):
        s = sent(rank_of[i])
        p.send(d.frame("ready", d.fv(1, 1)))
        p.send(heartbeat(1, s["step"], s["loss"], s["tok"], s["time"]))
    d.check(d.wait_for(lambda: (watch_json(g, "hb") or {}).get("state") == "running"
                       and all(w["step"] is not None for w in watch_json(g, "hb")["workers"])),
            "every heartbeat arrived")
    v = watch_json(g, "hb")
    d.check(list(v.keys()) == ["job", "state", "generation", "world_size", "joined",
                               "ended_unix_ms", "reason", "modules", "workers"]
            and v["ended_unix_ms"] is None and v["reason"] == "", "json keys: %s" % list(v.keys()))
    enc, llm = v["modules"]
    d.check(enc == {"module": "encoder", "first_rank": 0, "num_ranks": 2, "reporting": 2,
                    "step": 41, "loss": None, "loss_ranks": 0, "tokens_per_s": 1000,
                    "step_time_s": 0.25}, "encoder summary: %s" % enc)
    d.check(llm == {"module": "llm", "first_rank": 2, "num_ranks": 4, "reporting": 4, "step": 45,
                    "loss": 2.625, "loss_ranks": 2, "tokens_per_s": 3000, "step_time_s": 0.75},
            "llm summary (loss: mean of ranks 4 and 5): %s" % llm)
    by_rank = {w["rank"]: w for w in v["workers"]}
    d.check(sorted(by_rank) == list(range(6)), "ranks 0-5: %s" % sorted(by_rank))
    for r, w in sorted(by_rank.items()):
        s, (host, dev) = sent(r), HOSTS[peer_of[r]]
        want = {"rank": r, "module": "encoder" if r < 2 else "llm", "host": host, "device": dev,
                "state": "ready", "step": s["step"], "loss": s["loss"] if r >= 4 else None,
                "tokens_per_s": s["tok"], "step_time_s": s["time"]}
        got = {k: w[k] for k in want}
        d.check(got == want, "rank %d: %s, want %s" % (r, got, want))
        d.check(0 <= w["last_heartbeat_ms"] < 30000, "rank %d heartbeat age %s" % (r, w))

    code, out, err = g.ctl("watch", "hb", "--once")
    lines = out.splitlines()
    d.check(code == 0 and lines[0] == "job hb: running, generation 1, joined 6/6",
            "text heading: %r" % lines[:1])
    d.check([l.split() for l in lines if l.startswith(("encoder ", "llm "))] == [
        ["encoder", "0-1", "2/2", "41", "-", "1000", "250.0", "ms"],
        ["llm", "2-5", "4/4", "45", "2.6250", "3000", "750.0", "ms"]], "text summaries:\n" + out)
    rows = {int(l.split()[0]): l.split() for l in lines if l.split() and l.split()[0].isdigit()}
    for r in range(6):
        s, (host, dev) = sent(r), HOSTS[peer_of[r]]
        want = [str(r), "encoder" if r < 2 else "llm", "%s/%d" % (host, dev), "ready",
                str(s["step"]), "%.4f" % s["loss"] if r >= 4 else "-", "%.0f" % s["tok"],
                "%.1f" % (s["time"] * 1e3), "ms"]
        d.check(rows.get(r, [])[:9] == want and rows[r][10] == "s",
                "text row of rank %d: %s, want %s" % (r, rows.get(r), want))

    # A terminal: redrawn in place, rows cut to its height.
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 11, 120, 0, 0))
    proc = start_watch(g, "hb", "--interval", "0.2", stdout=slave)
    os.close(slave)
    screen, deadline = b"", time.time() + 10
    while screen.count(b"\x1b[H") < 3 and time.time() < deadline:
        if select.select([master], [], [], 0.2)[0]:
            screen += os.read(master, 65536)
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=10)
    os.close(master)
    text = screen.decode(errors="replace")
    d.check(rc == 0, "terminal watch: Ctrl-C exits 0, got %d" % rc)
    d.check(text.startswith("\x1b[H\x1b[2J") and text.count("\x1b[H") >= 3
            and text.count("\x1b[2J") == 1, "terminal: clear once, then home each interval")
    last = text.split("\x1b[H")[-2]  # the last complete frame
    d.check("... 5 more ranks (all of them: hgridctl watch hb --once)" in last
            and len([l for l in last.split("\n") if l.strip("\x1b[KJ\r ")]) <= 10,
            "terminal: 11 rows show the sparkline, 1 rank and a 'more' line:\n" + last)
    # gridd kept one loss per step heard (2.5 at 44 from rank 4; rank 5's 45 came later).
    d.check(re.search(r"^llm +loss [\u2581-\u2588]+ \d\.\d{4} \.\. \d\.\d{4} \(last \d+ reports\)",
                      last, re.M), "terminal: the llm's loss sparkline:\n" + last)
    sanitizer_quiet(proc.stderr.read(), "terminal watch")

    # A lost rank no longer counts: rank 5 drops, the loss is rank 4's alone.
    peers[peer_of[5]].close()
    d.check(d.wait_for(lambda: [w["state"] for w in watch_json(g, "hb")["workers"]
                                if w["rank"] == 5] == ["lost"]), "rank 5 lost")
    llm = watch_json(g, "hb")["modules"][1]
    d.check(llm["reporting"] == 3 and llm["loss"] == 2.5 and llm["loss_ranks"] == 1
            and llm["step"] == 44, "without rank 5: %s" % llm)

    # Streaming JSON ends with the job: its last view, cancelled.
    proc = start_watch(g, "hb", "--interval", "0.2", "--json")
    first = read_until(proc, lambda ls: len(ls) >= 2)
    d.check(g.ctl("cancel", "hb")[0] == 0, "cancel hb")
    rest = read_until(proc, lambda ls: False)
    rc = proc.wait(timeout=10)
    objs = [json.loads(l) for l in first + rest]
    d.check(rc == 0 and len(objs) >= 3 and all(o["job"] == "hb" for o in objs)
            and all("workers" in o for o in objs) and objs[-1]["state"] == "cancelled"
            and all(o["state"] != "cancelled" for o in objs[:-1]),
            "json stream ends with the job: rc %d, %d lines, last %s" % (rc, len(objs), objs[-1:]))
    sanitizer_quiet(proc.stderr.read(), "json stream")
    for p in peers:
        p.close()


def test_dry_run_workers(g, tmp, workers):
    d.check(g.ctl("submit", "--job", "dry", "--token", "dt", "--encoder-tp", "1", "--encoder-dp",
                  "1", "--llm-tp", "1", "--llm-dp", "1")[0] == 0, "submit dry")
    workers += [subprocess.Popen([WORKER, "--coordinator", "127.0.0.1:%d" % g.port, "--job", "dry",
                                 "--token", "dt", "--dry-run", "--host", "dry-h", "--device",
                                 str(i), "--heartbeat-timeout", "0.6"],
                                stdout=open(os.path.join(tmp, "dry%d.out" % i), "w"),
                                stderr=subprocess.STDOUT) for i in range(2)]
    def steps():
        return [w["step"] or 0 for w in (watch_json(g, "dry") or {"workers": []})["workers"]]
    d.check(d.wait_for(lambda: len(steps()) == 2 and min(steps()) >= 3, timeout=15),
            "dry-run workers reach step 3")
    v = watch_json(g, "dry")
    ws = sorted(v["workers"], key=lambda w: w["rank"])
    d.check([(w["rank"], w["module"], w["host"], w["device"], w["state"]) for w in ws]
            == [(0, "encoder", "dry-h", 0, "ready"), (1, "llm", "dry-h", 1, "ready")],
            "dry-run ranks: %s" % ws)
    # A dry run beats every 0.2 s with step + 1, no loss and no throughput (a
    # late beat is followed by an early one: the step time is only bounded).
    d.check(all(0 < w["step_time_s"] < 2.0 and w["tokens_per_s"] == 0 for w in ws)
            and ws[0]["loss"] is None and ws[1]["loss"] is None
            and v["modules"][1]["loss"] is None, "dry-run values: %s" % ws)
    d.check([m["step"] for m in v["modules"]] == [ws[0]["step"], ws[1]["step"]],
            "module steps: %s" % v["modules"])
    d.check(d.wait_for(lambda: watch_json(g, "dry")["modules"][1]["step"]
                       > v["modules"][1]["step"]), "the step advances live")

    # Ctrl-C ends a text stream cleanly.
    proc = start_watch(g, "dry", "--interval", "0.2")
    lines = read_until(proc, lambda ls: sum(l.startswith("job dry:") for l in ls) >= 2)
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=10)
    d.check(rc == 0 and lines[0] == "job dry: running, generation 1, joined 2/2",
            "Ctrl-C: exit %d after %r" % (rc, lines[:1]))
    sanitizer_quiet(proc.stderr.read(), "Ctrl-C")

    # gridd going away ends it with one line and status 1.
    proc = start_watch(g, "dry", "--interval", "0.2")
    read_until(proc, lambda ls: any(l.startswith("job dry:") for l in ls))
    g.stop("gridd under watch")
    rc = proc.wait(timeout=15)
    err = proc.stderr.read()
    d.check(rc == 1 and len(err.splitlines()) == 1 and "lost gridd at " + g.sock in err,
            "gridd gone: exit %d, %r" % (rc, err))
    for w in workers:
        try:
            w.wait(timeout=15)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


def test_errors(g, tmp):
    code, out, err = g.ctl("watch", "nope", "--once")
    d.check(code == 1 and err == "hgridctl: gridd refused: no job named 'nope' (see hgridctl list)\n",
            "unknown job: %d %r" % (code, err))
    code, out, err = g.ctl("watch", "nope")
    d.check(code == 1 and "no job named 'nope'" in err and not out,
            "unknown job, streaming: %d %r" % (code, err))
    r = subprocess.run([d.CTL, "--socket", os.path.join(tmp, "none.sock"), "watch", "x"],
                       capture_output=True, text=True, timeout=30)
    d.check(r.returncode == 1 and len(r.stderr.splitlines()) == 1
            and "cannot connect to gridd" in r.stderr and "--socket" in r.stderr,
            "no gridd: %d %r" % (r.returncode, r.stderr))
    for args, what in ((["watch"], "name the job"), (["watch", "a", "b"], "unexpected argument 'b'"),
                       (["watch", "a", "--interval", "0"],
                        "--interval '0' is out of range: a number from 0.05 to 86400"),
                       (["watch", "a", "--interval", "x"], "--interval 'x' is not a number"),
                       (["watch", "a", "--interval"], "--interval needs a value (SECONDS)"),
                       (["watch", "a", "--bogus"], "unknown option '--bogus'")):
        code, out, err = g.ctl(*args)
        d.check(code == 2 and len(err.splitlines()) == 1 and what in err
                and "hgridctl watch --help" in err, "%s: %d %r" % (args, code, err))
    code, out, err = g.ctl("watch", "--help")
    d.check(code == 0 and out.startswith("usage: hgridctl watch [--json] [--interval SECONDS] [--once] [--] JOB") and "--once" in out
            and "--json" in out and "--interval" in out, "watch --help")
    code, out, err = g.ctl("--help")
    d.check(code == 0 and "\n  watch " in out, "hgridctl --help lists watch")


def main():
    tmp = tempfile.mkdtemp(prefix="hgrid-watch.")
    g = d.Gridd(tmp, "w", "--heartbeat-timeout", "30")
    workers = []
    try:
        test_errors(g, tmp)
        test_exact(g)
        test_dry_run_workers(g, tmp, workers)
    finally:  # nothing left running when a test raises
        for p in workers + [g.proc]:
            if p.poll() is None:
                p.kill()
                p.wait()
    print("%d passed, %d failed" % (d.passed, d.failed))
    sys.exit(1 if d.failed else 0)


if __name__ == "__main__":
    main()
