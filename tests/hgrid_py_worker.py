#!/usr/bin/env python3
"""A worker for the Python API tests (tests/python_api.py): joins with the hgrid package,
prints its assignment as one JSON line, heartbeats until gridd ends the generation or the
job, prints what ended it as one JSON line ({"ended": class, "message"}), and with
--rejoin waits for the next generation. Exit 0 after Released (or done), 3 otherwise."""
import argparse
import json
import os
import sys
import time

import hgrid


def show(a):
    return {"rank": a.rank, "world_size": a.world_size, "module": a.module, "coords": a.coords,
            "groups": a.groups, "generation": a.generation, "job": a.job,
            "assignment_only": a.assignment_only, "pid": os.getpid(),
            "bridge": [[p.rank, p.rank_in_bridge, p.send] for p in a.bridge]}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rejoin", action="store_true")
    p.add_argument("--steps", type=int, default=0, help="heartbeat this many steps, then done")
    p.add_argument("--timeout", type=float, default=60)
    args = p.parse_args()
    try:
        a = hgrid.join(timeout=args.timeout)
    except hgrid.HgridError as e:
        print(json.dumps({"ended": type(e).__name__, "message": str(e)}), flush=True)
        return 3
    print(json.dumps(show(a)), flush=True)
    step = 0
    while True:
        try:
            step += 1
            a.heartbeat(step, loss=1.0 / step)
            if args.steps and step >= args.steps:
                a.done()
                print(json.dumps({"ended": "done"}), flush=True)
                return 0
            time.sleep(0.05)
        except hgrid.HgridError as e:
            print(json.dumps({"ended": type(e).__name__, "message": str(e)}), flush=True)
            if isinstance(e, hgrid.Aborted) and args.rejoin:
                try:
                    a.rejoin(timeout=args.timeout)
                except hgrid.HgridError as e2:
                    print(json.dumps({"ended": type(e2).__name__, "message": str(e2)}), flush=True)
                    return 3
                print(json.dumps(show(a)), flush=True)
                continue
            return 0 if isinstance(e, hgrid.Released) else 3


if __name__ == "__main__":
    sys.exit(main())
