#!/usr/bin/env python3
"""gridd --metrics, scraped: the exposition parsed strictly (every sample
line valid, HELP and TYPE before it, counters ending in _total, histogram
buckets cumulative and ending in +Inf == _count) and its values after
dry-run workers join, a bad frame, a wrong token, a swarm, a stopped worker
and its replacement; hostile HTTP clients (garbage, oversized and slow
requests, more connections than the cap) answered or dropped while scrapes
go on; and the log: its format and levels (quiet, -v, -vv, journald)."""
import http.client
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

from checks import check, summary

BIN = os.environ.get("HGRID_BIN", "bin")
HB = 1.0  # gridd's --heartbeat-timeout here
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z gridd: (error|warn|notice|info|debug) ")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(?:,|$)')


class Gridd:
    def __init__(self, tmp, name, *extra, env=None):
        self.sock = os.path.join(tmp, name + ".sock")
        self.log = os.path.join(tmp, name + ".log")
        port_file = os.path.join(tmp, name + ".port")
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [f"{BIN}/gridd", "--listen", "127.0.0.1:0", "--port-file", port_file, "--control",
                 self.sock, "--metrics", "127.0.0.1:0", "--heartbeat-timeout", str(HB), *extra],
                stderr=log, env=env)
        deadline = time.time() + 10
        while time.time() < deadline and not re.search(r"serving metrics addr=[0-9.]+:\d+ ", self.log_text()):
            time.sleep(0.02)
        self.metrics_port = int(re.search(r"serving metrics addr=[0-9.]+:(\d+) ", self.log_text()).group(1))
        while time.time() < deadline and not (os.path.exists(port_file) and os.path.exists(self.sock)):
            time.sleep(0.02)
        self.port = int(open(port_file).read())

    def log_text(self):
        return open(self.log).read()

    def ctl(self, *args):
        r = subprocess.run([f"{BIN}/hgridctl", "--socket", self.sock, *args], capture_output=True,
                           text=True, timeout=30)
        check(r.returncode == 0, f"hgridctl {' '.join(args)}: {r.stderr.strip()}")

    def worker(self, job, token, host, device):
        return subprocess.Popen([f"{BIN}/hgrid-worker", "--coordinator", f"127.0.0.1:{self.port}",
                                 "--job", job, "--token", token, "--host", host, "--device",
                                 str(device), "--dry-run", "--heartbeat-timeout", str(HB)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def stop(self, what):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=30)
        text = self.log_text()
        check(rc == 0 and "AddressSanitizer" not in text and "runtime error" not in text
              and "LeakSanitizer" not in text, f"{what}: clean exit {rc}:\n{text[-3000:]}")


# ---- the exposition

def parse_exposition(text, what):
    """{(name, ((label, value), ...)): value}, checking the format strictly."""
    check(text.endswith("\n"), f"{what}: ends in a newline")
    helps, types, samples, order = {}, {}, {}, []
    for line in text.rstrip("\n").split("\n"):
        if line.startswith("# HELP "):
            name, _, doc = line[7:].partition(" ")
            check(name not in helps and doc, f"{what}: one HELP with text: {line!r}")
            helps[name] = doc
        elif line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            check(typ in ("counter", "gauge", "histogram") and name in helps and name not in types,
                  f"{what}: TYPE after its HELP, once: {line!r}")
            check(typ != "counter" or name.endswith("_total"), f"{what}: counter named _total: {name}")
            types[name] = typ
        else:
            m = SAMPLE.match(line)
            check(m is not None, f"{what}: sample line: {line!r}")
            if not m:
                continue
            name, label_text, value = m.groups()
            labels, pos = [], 0
            while label_text and pos < len(label_text):
                lm = LABEL.match(label_text, pos)
                check(lm is not None, f"{what}: labels of {line!r}")
                if not lm:
                    break
                labels.append((lm.group(1), lm.group(2)))
                pos = lm.end()
            try:
                v = float(value)
            except ValueError:
                check(False, f"{what}: value of {line!r}")
                continue
            family = name if name in types else re.sub(r"_(bucket|sum|count)$", "", name)
            check(family in types and (family == name or types[family] == "histogram"),
                  f"{what}: {name} has a HELP and TYPE before it")
            check(types.get(family) == "gauge" or v >= 0, f"{what}: counter {line!r} >= 0")
            key = (name, tuple(sorted(labels)))
            check(key not in samples, f"{what}: series once: {line!r}")
            samples[key] = v
            order.append((name, dict(labels), v))
    for family, typ in types.items():
        if typ != "histogram":
            continue
        buckets = [(l["le"], v) for n, l, v in order if n == family + "_bucket"]
        bounds = [float(le) for le, _ in buckets]
        counts = [v for _, v in buckets]
        check(buckets and buckets[-1][0] == "+Inf" and bounds == sorted(set(bounds)),
              f"{what}: {family} buckets ascending to +Inf: {[le for le, _ in buckets]}")
        check(counts == sorted(counts), f"{what}: {family} buckets cumulative: {counts}")
        check(buckets and counts[-1] == samples.get((family + "_count", ())) and
              (family + "_sum", ()) in samples, f"{what}: {family} +Inf == _count, _sum present")
    return samples


def http_get(port, path="/metrics", method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path)
    r = c.getresponse()
    body = r.read().decode()
    headers = dict(r.getheaders())
    c.close()
    return r.status, headers, body


def scrape(g, what):
    status, headers, body = http_get(g.metrics_port)
    check(status == 200 and headers.get("Content-Type", "").startswith("text/plain; version=0.0.4")
          and headers.get("Connection") == "close", f"{what}: 200 text/plain 0.0.4: {status} {headers}")
    return parse_exposition(body, what)


def val(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def wait_metric(g, cond, what, timeout=30):
    deadline = time.time() + timeout
    s = scrape(g, what)
    while not cond(s) and time.time() < deadline:
        time.sleep(0.1)
        s = scrape(g, what)
    check(cond(s), f"{what} within {timeout} s")
    return s


# ---- the scenario

def test_values(g):
    s = scrape(g, "empty")
    check(all(val(s, "gridd_jobs", state=st) == 0 for st in ("waiting", "minting", "assigned", "running", "resuming"))
          and val(s, "gridd_workers_joined") == 0 and val(s, "gridd_join_latency_seconds_count") == 0,
          "empty gridd: no jobs, no workers, no joins")

    g.ctl("submit", "--job", "demo", "--token", "tok-demo", "--llm-only", "--llm-tp", "2", "--llm-dp", "2")
    workers = [g.worker("demo", "tok-demo", f"node-{i // 2}", i % 2) for i in range(4)]
    s = wait_metric(g, lambda s: val(s, "gridd_jobs", state="running") == 1, "demo running")
    check(val(s, "gridd_workers_joined") == 4 and val(s, "gridd_job_workers_joined", job="demo") == 4
          and val(s, "gridd_job_world_size", job="demo") == 4 and val(s, "gridd_job_generation", job="demo") == 1,
          "4 workers joined demo, generation 1")
    check(val(s, "gridd_join_latency_seconds_count") == 4 and 0 < val(s, "gridd_join_latency_seconds_sum") < 4 * 30,
          f"join latency observed 4 times: {val(s, 'gridd_join_latency_seconds_count')}")
    check(val(s, "gridd_frames_received_total", type="hello") == 4
          and val(s, "gridd_frames_received_total", type="ready") == 4
          and val(s, "gridd_frames_sent_total", type="assignment") == 4
          and val(s, "gridd_generations_started_total") == 1
          and val(s, "gridd_connections_accepted_total", kind="worker") == 4
          and val(s, "gridd_worker_connections") == 4, "frames, generations and connections counted")
    check(val(s, "gridd_received_bytes_total") > 0 and val(s, "gridd_sent_bytes_total") > 0, "bytes counted")
    check(all(v == 0 for (n, _), v in s.items() if n == "gridd_errors_total"), "no errors yet")

    bad = socket.create_connection(("127.0.0.1", g.port), timeout=10)
    bad.sendall(struct.pack(">I", 6) + b"\xff" * 6)
    while bad.recv(4096):
        pass
    bad.close()
    wrong = g.worker("demo", "wrong-token", "node-9", 0)
    check(wrong.wait(timeout=30) == 1, "a wrong token is refused")
    s = scrape(g, "after refusals")
    check(val(s, "gridd_errors_total", kind="bad_frame") == 1 and val(s, "gridd_errors_total", kind="bad_token") == 1
          and val(s, "gridd_errors_total", kind="bad_request") == 0,
          f"errors by kind: bad_frame {val(s, 'gridd_errors_total', kind='bad_frame')}, "
          f"bad_token {val(s, 'gridd_errors_total', kind='bad_token')}")
    check(val(s, "gridd_frames_sent_total", type="error") == 2
          and val(s, "gridd_connections_accepted_total", kind="worker") == 6, "the refusals' frames and connections")
    silent = socket.create_connection(("127.0.0.1", g.port), timeout=10)
    wait_metric(g, lambda s: val(s, "gridd_workers_pending") == 1, "a connection without a Hello is pending")
    while silent.recv(4096):  # gridd's Error after --hello-timeout, then EOF
        pass
    silent.close()
    s = scrape(g, "after a Hello timeout")
    check(val(s, "gridd_workers_pending") == 0 and val(s, "gridd_errors_total", kind="timeout") == 1
          and val(s, "gridd_connections_refused_total", reason="hello_timeout") == 1
          and val(s, "gridd_connections_refused_total", reason="max_connections") == 0,
          "a Hello timeout: counted as a refusal and an error")

    g.ctl("submit", "--job", "swarm", "--token", "tok-swarm", "--llm-only", "--llm-tp", "4", "--llm-dp", "4")
    swarm = subprocess.Popen([f"{BIN}/hgrid-swarm", "--coordinator", f"127.0.0.1:{g.port}", "--job", "swarm",
                              "--token", "tok-swarm", "--workers", "16", "--hosts", "4", "--wait-release"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    s = wait_metric(g, lambda s: val(s, "gridd_jobs", state="running") == 2, "swarm running", timeout=60)
    check(val(s, "gridd_workers_joined") == 20 and val(s, "gridd_job_workers_joined", job="swarm") == 16
          and val(s, "gridd_join_latency_seconds_count") == 20 and val(s, "gridd_generations_started_total") == 2,
          f"the swarm's 16 joined: {val(s, 'gridd_workers_joined')} workers, "
          f"{val(s, 'gridd_join_latency_seconds_count')} joins")
    g.ctl("cancel", "swarm")
    check(swarm.wait(timeout=60) == 0, "swarm released")
    s = wait_metric(g, lambda s: val(s, "gridd_workers_joined") == 4, "swarm gone")
    check(val(s, "gridd_jobs", state="running") == 1 and val(s, "gridd_jobs", state="cancelled") == 1
          and ("gridd_job_generation", (("job", "swarm"),)) in s
          and val(s, "gridd_jobs_ended_total", outcome="cancelled") == 1,
          "a cancelled job stays listed (--keep-finished) and is counted")

    # A frozen worker: heartbeat timeout, generation aborted; a replacement
    # starts generation 2 and is the one new join.
    workers[3].send_signal(signal.SIGSTOP)
    s = wait_metric(g, lambda s: val(s, "gridd_heartbeat_timeouts_total") == 1, "heartbeat timeout", timeout=15)
    check(val(s, "gridd_generation_aborts_total") == 1 and val(s, "gridd_jobs", state="waiting") == 1
          and val(s, "gridd_workers_joined") == 3, "the frozen worker's generation aborted, demo waits")
    workers[3].kill()
    workers[3].wait()
    workers[3] = g.worker("demo", "tok-demo", "node-1", 1)
    s = wait_metric(g, lambda s: val(s, "gridd_jobs", state="running") == 1, "demo running again")
    check(val(s, "gridd_job_generation", job="demo") == 2 and val(s, "gridd_generations_started_total") == 3
          and val(s, "gridd_join_latency_seconds_count") == 21,
          f"generation 2 with one new join: {val(s, 'gridd_join_latency_seconds_count')}")
    check(val(s, "gridd_frames_received_total", type="heartbeat") > 0, "heartbeats counted")
    g.ctl("cancel", "demo")
    check([w.wait(timeout=30) for w in workers] == [0] * 4, "demo's workers released")


def raw_http(port, data, shut=True, timeout=10):
    """Sends data, half-closes, returns everything gridd answered."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    out = b""
    try:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
    except OSError:  # reset: what arrived before counts
        return out
    finally:
        s.close()


def status_of(answer):
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", answer)
    return int(m.group(1)) if m else None


def test_http(g):
    status, _, body = http_get(g.metrics_port, "/nope")
    check(status == 404 and "/metrics" in body, f"other path: 404 ({status})")
    status, headers, _ = http_get(g.metrics_port, "/metrics", "POST")
    check(status == 405 and headers.get("Allow") == "GET", f"POST: 405 with Allow: GET ({status} {headers})")
    check(http_get(g.metrics_port, "/metrics?x=1")[0] == 200, "a query string is ignored")
    check(status_of(raw_http(g.metrics_port, b"GET /metrics HTTP/1.0\n\n")) == 200, "bare LF lines")
    check(status_of(raw_http(g.metrics_port, b"NONSENSE\r\n\r\n")) == 400, "no request line: 400")
    check(status_of(raw_http(g.metrics_port, b"GET /metrics SPDY/3\r\n\r\n")) == 400, "not HTTP/1.x: 400")
    check(status_of(raw_http(g.metrics_port, b"GET /metr\0ics HTTP/1.1\r\n\r\n")) == 400, "NUL byte: 400")
    big = b"GET /metrics HTTP/1.1\r\nX-Filler: " + b"a" * 8000 + b"\r\n\r\n"
    check(status_of(raw_http(g.metrics_port, big)) == 431, "over 4096 bytes: 431")
    check(raw_http(g.metrics_port, b"GET /metrics HT") == b"", "half a request then EOF: closed, no answer")

    rng = random.Random(8)
    for i in range(200):
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 600)))
        if i % 3 == 0:
            junk = junk.replace(b"\n", b"") + b"\r\n\r\n"
        answer = raw_http(g.metrics_port, junk)
        check(answer == b"" or status_of(answer) in (200, 400, 404, 405, 431), f"fuzz {i}: {answer[:60]!r}")

    # More idle connections than the cap: the oldest are dropped, scrapes
    # are answered; the rest time out.
    idle = [socket.create_connection(("127.0.0.1", g.metrics_port)) for _ in range(20)]
    for s in idle:
        s.sendall(b"GET /metr")
    t0 = time.time()
    status, _, _ = http_get(g.metrics_port)
    check(status == 200 and time.time() - t0 < 3, f"a scrape past 20 idle connections: {status}")
    closed_after = []
    for s in idle:
        s.settimeout(10)
        try:
            s.recv(1)
        except OSError:  # reset: evicted with its request unread
            pass
        closed_after.append(time.time() - t0)
        s.close()
    # The scrape made the 21st connection: 13 were evicted, oldest first.
    check(all(t < 3 for t in closed_after[:13]) and all(4 < t < 7 for t in closed_after[13:]),
          "the oldest dropped at the cap, the newest after 5 s: "
          + " ".join("%.1f" % t for t in closed_after))
    s = scrape(g, "after the hostile clients")
    check(val(s, "gridd_metrics_dropped_total") >= 20, f"dropped: {val(s, 'gridd_metrics_dropped_total')}")
    check(val(s, "gridd_metrics_responses_total", code="431") == 1
          and val(s, "gridd_metrics_responses_total", code="405") == 1
          and val(s, "gridd_metrics_responses_total", code="404") >= 1, "answers counted by status")


def test_bad_flag(tmp, busy_port):
    sock = os.path.join(tmp, "bad.sock")
    for addr, want in [("nonsense", "--metrics 'nonsense' is not HOST:PORT"),
                       (f"127.0.0.1:{busy_port}", "cannot serve --metrics on 127.0.0.1:")]:
        r = subprocess.run([f"{BIN}/gridd", "--metrics", addr, "--listen", "127.0.0.1:0", "--control", sock],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 1 and r.stderr.count("\n") == 1 and want in r.stderr and not os.path.exists(sock),
              f"--metrics {addr}: one line, exit 1, no control socket left: {r.returncode} {r.stderr!r}")


def test_quiet_log(g, tokens):
    text = g.log_text()
    lines = text.splitlines()
    check(all(LOG_LINE.match(l) for l in lines), "every line: time, gridd:, level: "
          + repr([l for l in lines if not LOG_LINE.match(l)][:3]))
    check(not any(" gridd: info " in l or " gridd: debug " in l for l in lines), "quiet by default: no info, no debug")
    for want in ["gridd: notice job=demo gen=0 job submitted workers=4",
                 "gridd: notice job=demo gen=0 ranks assigned hosts=2",
                 "gridd: notice job=demo gen=1 generation running ready=4",
                 "gridd: warn job=demo gen=1 generation aborted reason=",
                 "connections before an accepted Hello or control request (last: peer=127.0.0.1:",
                 "gridd: notice job=demo gen=2 job cancelled reason=\"cancelled by hgridctl cancel\" "
                 "generation=2 released=4",
                 "gridd: notice stopped"]:
        check(want in text, f"log has {want!r}")
    check(re.search(r'gridd: warn job=demo rank=\d gen=1 worker lost host=node-1 device=1 joined=3/4 '
                    r'reason="silent for more than 1 s"', text), "log has the frozen worker's loss")
    check(not any(t in text for t in tokens), "no token in the log")


def test_verbose_logs(tmp):
    """-v adds per-worker events; -vv frames; under journald a syslog
    priority replaces the time."""
    g = Gridd(tmp, "verbose", "-v")
    g.ctl("submit", "--job", "v", "--token", "tok-v", "--llm-only", "--llm-tp", "1", "--llm-dp", "2")
    ws = [g.worker("v", "tok-v", "host-v", d) for d in range(2)]
    wait_metric(g, lambda s: val(s, "gridd_jobs", state="running") == 1, "-v job running")
    g.ctl("cancel", "v")
    check([w.wait(timeout=30) for w in ws] == [0, 0], "-v workers released")
    errs = "".join(w.stderr.read() for w in ws)
    check(re.search(r"^hgrid-worker: notice job=v rank=[01] gen=1 host=host-v device=[01] released: job "
                    r"cancelled: cancelled by hgridctl cancel; exiting 0$",
                    errs, re.M), f"worker event line: {errs!r}")
    g.stop("-v gridd")
    text = g.log_text()
    check("gridd: info job=v gen=0 worker joined host=host-v device=1 joined=" in text
          and " gridd: debug " not in text, "-v: joins, no frames")

    # journald: JOURNAL_STREAM names the device and inode of gridd's stderr.
    path = os.path.join(tmp, "journal.log")
    open(path, "w").close()
    st = os.stat(path)
    env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
    stale = Gridd(tmp, "stale", env=env)  # its stderr is another file
    stale.stop("stale JOURNAL_STREAM gridd")
    lines = stale.log_text().splitlines()
    check(lines and all(LOG_LINE.match(l) for l in lines), "a JOURNAL_STREAM of another file: times kept")
    g = Gridd(tmp, "journal", "-vv", env=env)
    g.ctl("submit", "--job", "j", "--token", "tok-j", "--llm-only", "--llm-tp", "1", "--llm-dp", "1")
    w = g.worker("j", "tok-j", "host-j", 0)
    wait_metric(g, lambda s: val(s, "gridd_jobs", state="running") == 1, "-vv job running")
    g.ctl("cancel", "j")
    check(w.wait(timeout=30) == 0, "-vv worker released")
    g.stop("-vv gridd")
    text = g.log_text()
    lines = text.splitlines()
    check(lines and all(re.match(r"^<[3-7]>gridd: (error|warn|notice|info|debug) ", l) for l in lines),
          f"journald: a syslog priority leads every line: {lines[:2]}")
    check("<5>gridd: notice job=j gen=0 job submitted" in text
          and "<6>gridd: info job=j gen=0 worker joined host=host-j device=0" in text
          and re.search(r"<7>gridd: debug frame received peer=127\.0\.0\.1:\d+ type=hello bytes=\d+", text)
          and re.search(r"<7>gridd: debug job=j rank=0 gen=1 frame sent peer=127\.0\.0\.1:\d+ type=assignment", text),
          "-vv: frames in and out, by type")
    check("tok-j" not in text, "no token at -vv")


def main():
    tmp = tempfile.mkdtemp(prefix="hgrid-metrics.")
    g = Gridd(tmp, "main", "--hello-timeout", "0.5")
    try:
        test_values(g)
        test_http(g)
        test_bad_flag(tmp, g.metrics_port)
    finally:
        g.stop("main gridd")
    test_quiet_log(g, ["tok-demo", "tok-swarm", "wrong-token"])
    test_verbose_logs(tmp)
    rc = summary("daemon_metrics")
    if rc == 0:
        shutil.rmtree(tmp)
    else:
        print("logs in " + tmp)
    return rc


if __name__ == "__main__":
    sys.exit(main())
