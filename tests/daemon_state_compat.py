#!/usr/bin/env python3
"""A state file written by gridd before issue 17 (tests/data/
gridd_before_issue17.state: jobs old-tp3 and old-moe, submitted with that
build's hgridctl) restores in today's gridd with the same layouts: the llm
right after the one encoder, non-colocated, the vocabulary padded to a
multiple of llm_tp as then (not Megatron's 128 x tp); dry-run workers join
the restored job and get their ranks. Stdlib only."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, summary  # noqa: E402

BIN = os.environ.get("HGRID_BIN", "bin")
FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                       "gridd_before_issue17.state")


def main():
    tmp = tempfile.mkdtemp(prefix="hgrid-state-compat.")
    os.chmod(tmp, 0o700)
    state = os.path.join(tmp, "state")
    os.mkdir(state, 0o700)
    shutil.copyfile(FIXTURE, os.path.join(state, "gridd.state"))
    os.chmod(os.path.join(state, "gridd.state"), 0o600)
    sock, port_file = os.path.join(tmp, "ctl.sock"), os.path.join(tmp, "port")
    log = open(os.path.join(tmp, "gridd.log"), "w")
    gridd = subprocess.Popen([f"{BIN}/gridd", "--listen", "127.0.0.1:0", "--port-file", port_file,
                              "--control", sock, "--state-dir", state], stderr=log)
    workers = []
    try:
        end = time.time() + 10
        while not os.path.exists(port_file) or not open(port_file).read().strip():
            check(time.time() < end and gridd.poll() is None, "gridd starts on the old state")
            if time.time() >= end or gridd.poll() is not None:
                return summary("daemon_state_compat")
            time.sleep(0.05)
        port = open(port_file).read().strip()

        def show(job):
            r = subprocess.run([f"{BIN}/hgridctl", "--socket", sock, "show", job, "--json"],
                               capture_output=True, text=True)
            return json.loads(r.stdout) if r.returncode == 0 else {"error": r.stderr.strip()}

        tp3 = show("old-tp3")
        check("plan" in tp3, "old-tp3 restored: %r" % tp3.get("error"))
        if "plan" in tp3:
            p = tp3["plan"]
            check(tp3["state"] == "waiting" and tp3["world_size"] == 4, "old-tp3 waits for 4")
            check(p["mimo_layout"] == "non-colocated", "old-tp3 is non-colocated")
            check([(m["name"], m["rank_offset"], m["num_ranks"]) for m in p["modules"]] ==
                  [("encoder", 0, 1), ("llm", 1, 3)], "old-tp3: the llm right after the encoder: %r"
                  % [(m["name"], m["rank_offset"]) for m in p["modules"]])
            check(p["padded_vocab_size"] == 32001,
                  "old-tp3: vocab 32000 padded as before, to a multiple of tp 3: %d"
                  % p["padded_vocab_size"])
            check(p["bridge"] == {"fan": "equal", "edges": [[0, 1]]}, "old-tp3 bridge %r" % p["bridge"])
        moe = show("old-moe")
        check("plan" in moe, "old-moe restored: %r" % moe.get("error"))
        if "plan" in moe:
            p = moe["plan"]
            check(moe["world_size"] == 12 and p["num_microbatches"] == 4, "old-moe world 12, 4 micro-batches")
            check(p["padded_vocab_size"] == 50258, "old-moe: vocab 50257 padded to 50258 as before: %d"
                  % p["padded_vocab_size"])
            check(p["modules"][1]["ep"] == 2 and p["modules"][1]["pp"] == 2, "old-moe llm pp 2, ep 2")
        # The restored job forms: its workers join with the old token.
        for device in range(4):
            workers.append(subprocess.Popen(
                [f"{BIN}/hgrid-worker", "--coordinator", f"127.0.0.1:{port}", "--job", "old-tp3",
                 "--token", "old-token-1", "--host", "compat", "--device", str(device),
                 "--dry-run"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        end = time.time() + 20
        while time.time() < end:
            s = show("old-tp3")
            if s.get("workers") and all(w["state"] == "ready" for w in s["workers"]) \
                    and len(s["workers"]) == 4:
                break
            time.sleep(0.1)
        s = show("old-tp3")
        check(len(s.get("workers", [])) == 4 and all(w["state"] == "ready" for w in s["workers"]),
              "old-tp3's 4 dry-run workers are ready: %r" % [w.get("state") for w in s.get("workers", [])])
        r = subprocess.run([f"{BIN}/hgridctl", "--socket", sock, "cancel", "old-tp3"],
                           capture_output=True, text=True)
        check(r.returncode == 0, "cancel the restored job: %s" % r.stderr.strip())
        for w in workers:
            try:
                w.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            check(w.returncode == 0, "a worker of the restored job exits 0 after cancel (%r)"
                  % w.returncode)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
        gridd.terminate()
        gridd.wait(timeout=10)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return summary("daemon_state_compat")


if __name__ == "__main__":
    sys.exit(main())
