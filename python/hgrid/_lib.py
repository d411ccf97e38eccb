"""Finds and loads libhgrid.so.1 (the core client library, no CUDA) and declares its C API."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

# hgrid_status
OK, ABORTED, RELEASED = 0, 1, 2
ERR_IO, ERR_REFUSED, ERR_TIMEOUT, ERR_MISMATCH, ERR_STATE = -1, -2, -3, -4, -5

# hgrid_store_op
STORE_SET, STORE_GET, STORE_ADD, STORE_COMPARE_SET = 0, 1, 2, 3
STORE_WAIT, STORE_CHECK, STORE_DELETE, STORE_NUM_KEYS = 4, 5, 6, 7

SONAME = "libhgrid.so.1"


class HelloOptions(ctypes.Structure):
    _fields_ = [
        ("job", ctypes.c_char_p),
        ("token", ctypes.c_char_p),
        ("host", ctypes.c_char_p),
        ("device", ctypes.c_int),
        ("gpu_uuid", ctypes.c_char_p),
        ("requested_rank", ctypes.c_int),
        ("dry_run", ctypes.c_bool),
        ("mint", ctypes.c_void_p),  # NULL: an assignment-only join
    ]


class Group(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("size", ctypes.c_int),
        ("rank_in_group", ctypes.c_int),
        ("index", ctypes.c_int),
        ("members", ctypes.POINTER(ctypes.c_int)),
        ("nccl_id", ctypes.c_void_p),
        ("shares_with", ctypes.c_int),
    ]


class BridgePeer(ctypes.Structure):
    _fields_ = [("rank", ctypes.c_int), ("rank_in_bridge", ctypes.c_int), ("send", ctypes.c_bool)]


def _candidates() -> list[str]:
    """Where libhgrid.so.1 may be, in the order tried."""
    out = []
    if os.environ.get("HGRID_LIBRARY"):
        out.append(os.environ["HGRID_LIBRARY"])
    here = Path(__file__).resolve().parent
    out.append(str(here / "_lib" / SONAME))  # bundled in the wheel
    for parent in here.parents:  # the checkout's build: <checkout>/bin
        if (parent / "Makefile").exists() and (parent / "libhgrid").is_dir():
            out.append(str(parent / "bin" / SONAME))
            break
    for prefix in filter(None, [os.environ.get("HGRID_PREFIX"), "/usr/local", "/usr"]):
        out.append(str(Path(prefix) / "lib" / SONAME))
    out.append(SONAME)  # the loader's own search (LD_LIBRARY_PATH, ld.so.cache)
    return out


def _declare(lib: ctypes.CDLL) -> None:
    P, I, S, B = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_bool
    sigs = {
        "hgrid_connect": (P, [S, ctypes.c_char_p, ctypes.c_size_t]),
        "hgrid_hello": (I, [P, ctypes.POINTER(HelloOptions)]),
        "hgrid_wait_assignment": (I, [P, I]),
        "hgrid_set_reconnect": (None, [P, ctypes.c_double]),
        "hgrid_rank": (I, [P]),
        "hgrid_world_size": (I, [P]),
        "hgrid_generation": (ctypes.c_uint64, [P]),
        "hgrid_module_name": (S, [P]),
        "hgrid_job": (S, [P]),
        "hgrid_coord": (I, [P, S]),
        "hgrid_num_groups": (I, [P]),
        "hgrid_group_at": (ctypes.POINTER(Group), [P, I]),
        "hgrid_num_bridge_peers": (I, [P]),
        "hgrid_bridge_peer_at": (ctypes.POINTER(BridgePeer), [P, I]),
        "hgrid_assignment_only": (B, [P]),
        "hgrid_ready": (I, [P]),
        "hgrid_heartbeat": (I, [P, ctypes.c_uint64, ctypes.c_float, ctypes.c_float]),
        "hgrid_poll": (I, [P]),
        "hgrid_reason": (S, [P]),
        "hgrid_error": (S, [P]),
        "hgrid_leave": (I, [P, S]),
        "hgrid_done": (I, [P, ctypes.c_uint64]),
        "hgrid_wait_end": (I, [P, I, I]),
        "hgrid_job_outcome": (I, [P]),
        "hgrid_close": (None, [P]),
        "hgrid_default_device": (I, []),
        "hgrid_launcher_rank": (I, []),
        "hgrid_store_open": (P, [S, S, S, ctypes.c_char_p, ctypes.c_size_t]),
        "hgrid_store_request": (I, [P, I, ctypes.POINTER(ctypes.c_char_p),
                                    ctypes.POINTER(ctypes.c_size_t), I, ctypes.c_char_p,
                                    ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t, I,
                                    ctypes.POINTER(ctypes.c_int64)]),
        "hgrid_store_value": (ctypes.POINTER(ctypes.c_uint8), [P, ctypes.POINTER(ctypes.c_size_t)]),
        "hgrid_store_error": (S, [P]),
        "hgrid_store_close": (None, [P]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args


def load() -> ctypes.CDLL:
    """The first libhgrid.so.1 that loads; ImportError naming every place tried."""
    tried = []
    for path in _candidates():
        if os.path.sep in path and not os.path.exists(path):
            tried.append(f"{path} (absent)")
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path} ({e})")
            continue
        _declare(lib)
        lib.hgrid_path = path
        return lib
    raise ImportError("hgrid: cannot load libhgrid.so.1; build it (make) or install hgrid "
                      "(make install), or set HGRID_LIBRARY. Tried: " + "; ".join(tried))


lib = load()
