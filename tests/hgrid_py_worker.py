#!/usr/bin/env python3
"""A worker for the Python API tests (tests/python_api.py): joins with the hgrid package,
prints its assignment as one JSON line, heartbeats until gridd ends the generation or the
job, prints what ended it as one JSON line ({"ended": class, "message"}), and with
--rejoin waits for the next generation. Exit 0 after Released (or done), 3 otherwise.

--c-trainer LIBHGRID_NCCL: joins instead as a C trainer does (tests/python_ids_mix.py):
through libhgrid with libhgrid_nccl's minter (not assignment-only, not a dry run), then
calls hgrid_comms_create and prints {"comms": status, "error": hgrid_error} (a generation
without ids must refuse it before touching CUDA, so no GPU is needed), then leaves."""
import argparse
import ctypes
import json
import os
import sys
import time

import hgrid
from hgrid import _lib


def show(a):
    return {"rank": a.rank, "world_size": a.world_size, "module": a.module, "coords": a.coords,
            "groups": a.groups, "generation": a.generation, "job": a.job,
            "assignment_only": a.assignment_only, "pid": os.getpid(), "device": a.device,
            "bridge": [[p.rank, p.rank_in_bridge, p.send] for p in a.bridge]}


def c_trainer(nccl_path, timeout):
    """Joins with hgrid_nccl_mint as the minter and tries to create the communicators."""
    L = _lib.lib
    nccl = ctypes.CDLL(nccl_path)  # needs libhgrid.so.1: the one already loaded (its SONAME)
    create = nccl.hgrid_comms_create
    create.restype, create.argtypes = ctypes.c_int, [ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                                     ctypes.POINTER(ctypes.c_void_p)]
    mint = ctypes.cast(nccl.hgrid_nccl_mint, ctypes.c_void_p)
    err = ctypes.create_string_buffer(512)
    w = ctypes.c_void_p(L.hgrid_connect(os.environ["HGRID_COORDINATOR"].encode(), err, len(err)))
    opt = _lib.HelloOptions(job=os.environ["HGRID_JOB"].encode(),
                            token=os.environ["HGRID_TOKEN"].encode(),
                            host=os.environ["HGRID_HOSTNAME"].encode(),
                            device=int(os.environ["LOCAL_RANK"]), gpu_uuid=None,
                            requested_rank=-1, dry_run=False, mint=mint)
    st = L.hgrid_hello(w, ctypes.byref(opt))
    while st in (_lib.OK, _lib.ABORTED):
        st = L.hgrid_wait_assignment(w, int(timeout * 1000))
        if st == _lib.OK:
            break
    if st != _lib.OK:
        print(json.dumps({"ended": "join", "message": L.hgrid_error(w).decode()}), flush=True)
        return 3
    print(json.dumps({"rank": L.hgrid_rank(w), "generation": L.hgrid_generation(w),
                      "assignment_only": bool(L.hgrid_assignment_only(w)), "pid": os.getpid()}),
          flush=True)
    comms = ctypes.c_void_p()
    st = create(w, int(os.environ["LOCAL_RANK"]), 5000, ctypes.byref(comms))
    print(json.dumps({"comms": st, "error": L.hgrid_error(w).decode()}), flush=True)
    L.hgrid_leave(w, b"cannot create its communicators")
    L.hgrid_close(w)
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rejoin", action="store_true")
    p.add_argument("--steps", type=int, default=0, help="heartbeat this many steps, then done")
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--c-trainer", metavar="LIBHGRID_NCCL")
    args = p.parse_args()
    if args.c_trainer:
        return c_trainer(args.c_trainer, args.timeout)
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
                outcome = a.done()
                print(json.dumps({"ended": "done", "outcome": outcome}), flush=True)
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
