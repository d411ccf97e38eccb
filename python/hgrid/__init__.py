"""hgrid for Python: join an hgrid job and read its assignment.

    import hgrid
    a = hgrid.join()            # HGRID_COORDINATOR, HGRID_JOB, HGRID_TOKEN, RANK/LOCAL_RANK
    a.rank, a.world_size, a.module, a.coords["tp"], a.groups["tp"], a.bridge
    ... train ...; a.heartbeat(step, loss=loss)
    a.done()

The join is assignment-only: gridd names the rank, the module, the
coordinates and every group's member ranks; no NCCL ids are minted (torch
creates its communicators; see hgrid.torch). Errors are exceptions carrying
gridd's one-line reason.
"""
from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional

from . import _lib

__all__ = ["join", "Assignment", "BridgePeer", "HgridError", "Refused", "Aborted", "Released",
           "JoinTimeout", "COORD_DIMS", "open_store", "Store"]

COORD_DIMS = ("tp", "cp", "dp", "pp", "ep", "expt_tp", "expt_dp")
HEARTBEAT_PERIOD_S = 0.5  # gridd's default heartbeat timeout is 3 s
_OUTCOMES = {1: "finished", 2: "failed", 3: "cancelled"}  # hgrid_outcome


class HgridError(RuntimeError):
    """A failure of libhgrid or a refusal by gridd; str() is the one-line reason."""

    def __init__(self, message: str, status: int = _lib.ERR_IO):
        super().__init__(message)
        self.status = status


class Refused(HgridError):
    """gridd refused the worker or the request (wrong token, unknown job, full, ...)."""


class JoinTimeout(HgridError):
    """No assignment (or store reply) within the timeout."""


class Aborted(HgridError):
    """gridd aborted this generation (a worker was lost): rejoin for the next one."""


class Released(HgridError):
    """The job was cancelled or finished: this worker should exit."""


def _error(status: int, message: str) -> HgridError:
    kind = {_lib.ERR_REFUSED: Refused, _lib.ERR_TIMEOUT: JoinTimeout, _lib.ABORTED: Aborted,
            _lib.RELEASED: Released}.get(status, HgridError)
    return kind(message, status)


def _b(s: Optional[str]) -> Optional[bytes]:
    return None if s is None else s.encode()


def _need(value: Optional[str], env: str, what: str) -> str:
    value = value if value is not None else os.environ.get(env)
    if not value:
        raise HgridError(f"hgrid.join: no {what}: pass it or set {env}", _lib.ERR_STATE)
    return value


@dataclass(frozen=True)
class BridgePeer:
    """An encoder->LLM bridge edge of this rank: the peer's global rank and its bridge rank."""
    rank: int
    rank_in_bridge: int
    send: bool  # True: this rank sends activations to the peer (it is an encoder leader)


class Assignment:
    """This process's place in the job, as gridd assigned it for one generation.

    Attributes: rank, world_size, generation, job, module ("encoder" or "llm"),
    coords ({dim: index} for tp, cp, dp, pp, ep, expt_tp, expt_dp), groups
    ({kind: member ranks} for every group this rank is in, "bridge" for
    bridge leaders), group_index ({kind: which group of that kind}), bridge
    (BridgePeer edges), coordinator and token (for the job's store).
    """

    def __init__(self, worker: int, coordinator: str, token: str, device: int):
        self._w = ctypes.c_void_p(worker)
        self._lock = threading.RLock()
        self._pending: Optional[HgridError] = None  # an Abort/Release the beat thread saw
        self._step, self._loss, self._tokens_per_s = 0, 0.0, 0.0
        self._ready = False
        self._closed = False
        self._stop = threading.Event()
        self._beat: Optional[threading.Thread] = None
        self.coordinator, self.token, self.device = coordinator, token, device
        self._read()

    def _read(self) -> None:
        L, w = _lib.lib, self._w
        self.rank: int = L.hgrid_rank(w)
        self.world_size: int = L.hgrid_world_size(w)
        self.generation: int = L.hgrid_generation(w)
        self.job: str = L.hgrid_job(w).decode()
        self.module: str = L.hgrid_module_name(w).decode()
        self.assignment_only: bool = bool(L.hgrid_assignment_only(w))
        self.coords: Dict[str, int] = {d: L.hgrid_coord(w, d.encode()) for d in COORD_DIMS}
        self.groups: Dict[str, List[int]] = {}
        self.group_index: Dict[str, int] = {}
        for i in range(L.hgrid_num_groups(w)):
            g = L.hgrid_group_at(w, i).contents
            name = g.name.decode()
            self.groups[name] = [g.members[j] for j in range(g.size)]
            self.group_index[name] = g.index
        self.bridge: List[BridgePeer] = []
        for i in range(L.hgrid_num_bridge_peers(w)):
            p = L.hgrid_bridge_peer_at(w, i).contents
            self.bridge.append(BridgePeer(p.rank, p.rank_in_bridge, bool(p.send)))

    def __repr__(self) -> str:
        return (f"Assignment(job={self.job!r}, rank={self.rank}, world_size={self.world_size}, "
                f"module={self.module!r}, generation={self.generation}, coords={self.coords})")

    # ---- talking to gridd (one thread at a time: the worker is not thread-safe)

    def _check(self, status: int) -> None:
        """Raises for a status other than OK (Abort/Release carry gridd's reason)."""
        if status == _lib.OK:
            return
        L = _lib.lib
        if status in (_lib.ABORTED, _lib.RELEASED):
            what = "generation aborted" if status == _lib.ABORTED else "job released"
            raise _error(status, f"hgrid: {what}: {L.hgrid_reason(self._w).decode()}")
        raise _error(status, f"hgrid: {L.hgrid_error(self._w).decode()}")

    def _raise_pending(self) -> None:
        if self._closed:
            raise HgridError("hgrid: this assignment was closed (done, left or released)",
                             _lib.ERR_STATE)
        if self._pending is not None:
            raise self._pending

    def poll(self) -> None:
        """Reads what gridd sent; raises Aborted or Released if it ended this generation."""
        with self._lock:
            self._raise_pending()
            self._check(_lib.lib.hgrid_poll(self._w))

    def ready(self) -> None:
        """Tells gridd this rank is set up (hgrid.torch calls it once groups exist); starts the
        background heartbeat that keeps the rank alive between heartbeat() calls."""
        with self._lock:
            self._raise_pending()
            if self._ready:
                return
            self._check(_lib.lib.hgrid_ready(self._w))
            self._ready = True
        self._beat = threading.Thread(target=self._beat_loop, name="hgrid-heartbeat", daemon=True)
        self._beat.start()

    def heartbeat(self, step: int, loss: Optional[float] = None,
                  tokens_per_s: Optional[float] = None) -> None:
        """Reports training progress (hgridctl watch shows it); raises Aborted or Released if
        gridd ended this generation since the last call."""
        if not self._ready:
            self.ready()
        with self._lock:
            self._raise_pending()
            self._step = int(step)
            if loss is not None:
                self._loss = float(loss)
            if tokens_per_s is not None:
                self._tokens_per_s = float(tokens_per_s)
            self._check(_lib.lib.hgrid_poll(self._w))
            self._check(_lib.lib.hgrid_heartbeat(self._w, self._step, self._loss,
                                                 self._tokens_per_s))

    def _beat_loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_PERIOD_S):
            with self._lock:
                if self._closed or self._pending is not None:
                    return
                try:
                    self._check(_lib.lib.hgrid_poll(self._w))
                    self._check(_lib.lib.hgrid_heartbeat(self._w, self._step, self._loss,
                                                         self._tokens_per_s))
                except HgridError as e:
                    self._pending = e  # raised by the next call in the training thread
                    return

    def rejoin(self, timeout: Optional[float] = 300.0) -> "Assignment":
        """After Aborted: waits on the same connection for the next generation's assignment
        (gridd forms it once the worker set is whole again) and refreshes this object.
        torch's groups of the old generation must be destroyed first (hgrid.torch.destroy)."""
        self._stop.set()
        if self._beat is not None and self._beat is not threading.current_thread():
            self._beat.join()
        with self._lock:
            if self._closed or isinstance(self._pending, Released):
                self._raise_pending()
            L = _lib.lib
            ms = -1 if timeout is None else int(timeout * 1000)
            while True:
                st = L.hgrid_wait_assignment(self._w, ms)
                if st != _lib.ABORTED:
                    break
            self._check(st)
            self._pending, self._ready, self._beat = None, False, None
            self._stop = threading.Event()
            self._read()
        return self

    def done(self, step: Optional[int] = None, timeout: Optional[float] = None) -> str:
        """This rank finished training at step (default: the last heartbeat's): tells gridd,
        keeps beating until every rank is done and gridd releases the job, then closes.
        Returns the job's outcome ("finished", "failed" or "cancelled"); raises Aborted if a
        rank failed before the job finished (rejoin and train on), JoinTimeout past timeout."""
        L = _lib.lib
        self._stop.set()
        if self._beat is not None and self._beat is not threading.current_thread():
            self._beat.join()
        with self._lock:
            if self._closed:
                raise HgridError("hgrid: this assignment was closed (done, left or released)",
                                 _lib.ERR_STATE)
            if isinstance(self._pending, Released):
                self._close_locked()
                return _OUTCOMES.get(L.hgrid_job_outcome(self._w), "cancelled")
            self._raise_pending()
            if not self._ready:
                self._check(L.hgrid_ready(self._w))
                self._ready = True
            if step is not None:
                self._step = int(step)
            self._check(L.hgrid_done(self._w, self._step))
            ms = -1 if timeout is None else int(timeout * 1000)
            st = L.hgrid_wait_end(self._w, int(HEARTBEAT_PERIOD_S * 1000), ms)
            if st != _lib.RELEASED:
                self._check(st)  # Aborted: the connection stays for rejoin()
            outcome = _OUTCOMES.get(L.hgrid_job_outcome(self._w), "cancelled")
            self._close_locked()
            return outcome

    def leave(self, reason: str = "left") -> None:
        """Leaves the job (gridd aborts the generation for the others) and closes."""
        self._finish(lambda: _lib.lib.hgrid_leave(self._w, reason.encode()))

    def _finish(self, send) -> None:
        self._stop.set()
        with self._lock:
            self._raise_pending()
            try:
                self._check(send())
            finally:
                self._close_locked()

    def close(self) -> None:
        """Drops the connection without a word (gridd sees the worker lost)."""
        self._stop.set()
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if not self._closed:
            self._closed = True
            _lib.lib.hgrid_close(self._w)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def join(coordinator: Optional[str] = None, job: Optional[str] = None,
         token: Optional[str] = None, host: Optional[str] = None, device: Optional[int] = None,
         rank: Optional[int] = None, timeout: Optional[float] = 300.0) -> Assignment:
    """Joins job at gridd and waits for this process's assignment.

    Unset arguments come from HGRID_COORDINATOR, HGRID_JOB, HGRID_TOKEN, and the
    launcher as hgrid-worker reads it: the host from HGRID_HOSTNAME (else
    SLURMD_NODENAME, else the host name), the device from LOCAL_RANK (else
    SLURM_LOCALID, else 0), a requested rank from RANK (else SLURM_PROCID;
    none: gridd chooses).
    timeout: seconds to wait for every worker of the job (None: forever).
    Raises Refused (gridd's reason), JoinTimeout, or HgridError.
    """
    L = _lib.lib
    coordinator = _need(coordinator, "HGRID_COORDINATOR", "coordinator (HOST:PORT of gridd)")
    job = _need(job, "HGRID_JOB", "job name")
    token = _need(token, "HGRID_TOKEN", "job token")
    device = L.hgrid_default_device() if device is None else int(device)
    rank = L.hgrid_launcher_rank() if rank is None else int(rank)
    err = ctypes.create_string_buffer(512)
    w = L.hgrid_connect(coordinator.encode(), err, len(err))
    if not w:
        raise HgridError(f"hgrid.join: {err.value.decode()}; is gridd running at {coordinator}?")
    opt = _lib.HelloOptions(job=job.encode(), token=token.encode(), host=_b(host), device=device,
                            gpu_uuid=None, requested_rank=rank, dry_run=False, mint=None)
    wp = ctypes.c_void_p(w)
    try:
        st = L.hgrid_hello(wp, ctypes.byref(opt))
        timeout_ms = -1 if timeout is None else int(timeout * 1000)
        while st == _lib.OK:
            st = L.hgrid_wait_assignment(wp, timeout_ms)
            if st == _lib.ABORTED:  # the forming generation was aborted: wait for the next
                st = _lib.OK
                continue
            break
        if st == _lib.RELEASED:
            raise Released(f"hgrid.join: job {job} released: {L.hgrid_reason(wp).decode()}",
                           st)
        if st != _lib.OK:
            raise _error(st, f"hgrid.join: {L.hgrid_error(wp).decode()}")
    except BaseException:
        L.hgrid_close(wp)
        raise
    return Assignment(w, coordinator, token, device)


_VALUE_OPS = frozenset((_lib.STORE_GET, _lib.STORE_COMPARE_SET))


class Store:
    """The job's key-value store in gridd over one connection (one request at a time).

    hgrid.torch wraps it as a torch.distributed.Store; it also works alone.
    Keys and values are bytes; get and wait block until their keys exist.
    """

    def __init__(self, coordinator: str, job: str, token: str):
        err = ctypes.create_string_buffer(512)
        s = _lib.lib.hgrid_store_open(coordinator.encode(), job.encode(), token.encode(), err,
                                      len(err))
        if not s:
            msg = err.value.decode()
            raise (Refused if "token" in msg or "no job" in msg else HgridError)(
                f"hgrid store: {msg}")
        self._s = ctypes.c_void_p(s)

    def request(self, op: int, keys: List[bytes], value: bytes = b"", expected: bytes = b"",
                timeout: Optional[float] = None) -> tuple[bytes, int]:
        """Sends one request; returns (value, number). Raises JoinTimeout or Refused."""
        # Per request as little Python as it takes: this runs holding the GIL, once per
        # torch store call, in every thread of a process.
        L = _lib.lib
        n = len(keys)
        karr = (ctypes.c_char_p * n)(*keys) if n else None
        larr = (ctypes.c_size_t * n)(*map(len, keys)) if n else None
        number = ctypes.c_int64()
        ms = -1 if timeout is None else max(0, int(timeout * 1000))
        st = L.hgrid_store_request(self._s, op, karr, larr, n, value, len(value), expected,
                                   len(expected), ms, ctypes.byref(number))
        if st != _lib.OK:
            raise _error(st, L.hgrid_store_error(self._s).decode())
        if op not in _VALUE_OPS:  # the others' replies carry no value
            return b"", number.value
        size = ctypes.c_size_t()
        ptr = L.hgrid_store_value(self._s, ctypes.byref(size))
        return ctypes.string_at(ptr, size.value), number.value

    def close(self) -> None:
        if self._s:
            _lib.lib.hgrid_store_close(self._s)
            self._s = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def open_store(a: Assignment) -> Store:
    """A new connection to the job's store, with the assignment's coordinator and token."""
    return Store(a.coordinator, a.job, a.token)

