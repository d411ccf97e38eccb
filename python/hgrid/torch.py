"""torch.distributed from an hgrid Assignment: gridd's store as the rendezvous, one group per
distinct rank set.

    a = hgrid.join()
    groups = hgrid.torch.init_process_groups(a)      # {"tp": ProcessGroup, "dp": ..., ...}
"""
from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Dict, List, Optional, Sequence

import torch
import torch.distributed as dist

from . import Assignment, HgridError, JoinTimeout, Store, _lib

__all__ = ["GriddStore", "init_process_groups"]

DEFAULT_TIMEOUT = timedelta(minutes=10)
_live_stores: List["GriddStore"] = []
POLL_SLICE_S = 0.5  # a blocking get/wait looks at gridd's Abort this often


def _bytes(v) -> bytes:
    return v.encode() if isinstance(v, str) else bytes(v)


class GriddStore(dist.Store):
    """A torch.distributed.Store served by gridd for the job (token-checked, bounded in keys
    and bytes, gone with the job). One connection per thread that uses it.

    With an assignment, blocking gets and waits also watch gridd: a lost worker
    aborts the generation and they raise hgrid.Aborted instead of hanging.
    """

    def __init__(self, coordinator: str, job: str, token: str,
                 timeout: timedelta = DEFAULT_TIMEOUT, assignment: Optional[Assignment] = None):
        super().__init__()
        self._where = (coordinator, job, token)
        self._assignment = assignment
        self._local = threading.local()
        self._timeout = timeout
        self._conn()  # a wrong token or job fails here, not at the first key

    @classmethod
    def for_assignment(cls, a: Assignment, timeout: timedelta = DEFAULT_TIMEOUT) -> "GriddStore":
        return cls(a.coordinator, a.job, a.token, timeout, a)

    def _conn(self) -> Store:
        s = getattr(self._local, "store", None)
        if s is None:
            s = self._local.store = Store(*self._where)
        return s

    def _request(self, op: int, keys: List[bytes], value: bytes = b"", expected: bytes = b"",
                 blocking: bool = False):
        if not blocking:
            return self._conn().request(op, keys, value, expected)
        limit = self._timeout.total_seconds()
        deadline = time.monotonic() + limit
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                names = ", ".join(k.decode(errors="replace") for k in keys)
                raise JoinTimeout(f"hgrid store: keys {names} not set within {limit:g} s "
                                  "(a rank did not reach this point)", _lib.ERR_TIMEOUT)
            if self._assignment is not None:
                self._assignment.poll()  # raises Aborted when gridd ended the generation
            try:
                return self._conn().request(op, keys, value, expected,
                                            timeout=min(left, POLL_SLICE_S))
            except JoinTimeout:
                continue

    # ---- torch.distributed.Store
    def set(self, key, value) -> None:
        self._request(_lib.STORE_SET, [_bytes(key)], _bytes(value))

    def get(self, key) -> bytes:
        return self._request(_lib.STORE_GET, [_bytes(key)], blocking=True)[0]

    def add(self, key, value: int) -> int:
        return self._request(_lib.STORE_ADD, [_bytes(key)], str(int(value)).encode())[1]

    def compare_set(self, key, expected_value, desired_value) -> bytes:
        return self._request(_lib.STORE_COMPARE_SET, [_bytes(key)], _bytes(desired_value),
                             _bytes(expected_value))[0]

    def wait(self, keys: Sequence, timeout: Optional[timedelta] = None) -> None:
        saved = self._timeout
        if timeout is not None:
            self._timeout = timeout
        try:
            self._request(_lib.STORE_WAIT, [_bytes(k) for k in keys], blocking=True)
        finally:
            self._timeout = saved

    def check(self, keys: Sequence) -> bool:
        return bool(self._request(_lib.STORE_CHECK, [_bytes(k) for k in keys])[1])

    def delete_key(self, key) -> bool:
        return bool(self._request(_lib.STORE_DELETE, [_bytes(key)])[1])

    def num_keys(self) -> int:
        return self._request(_lib.STORE_NUM_KEYS, [])[1]

    def set_timeout(self, timeout: timedelta) -> None:
        self._timeout = timeout

    @property
    def timeout(self) -> timedelta:
        return self._timeout

    def clone(self) -> "GriddStore":
        return GriddStore(*self._where, timeout=self._timeout, assignment=self._assignment)


def _default_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_process_groups(a: Assignment, backend: Optional[str] = None,
                        timeout: Optional[timedelta] = None) -> Dict[str, dist.ProcessGroup]:
    """Initialises torch.distributed for a (gridd's store, a's rank and world size) and creates
    one group per distinct rank set of a's groups (kinds with the same members share it).

    backend: "nccl" when CUDA is available, else "gloo" (default). With NCCL the
    current CUDA device becomes a.device. Returns {kind: ProcessGroup} for every
    group kind this rank is in ("bridge" for bridge leaders). Then tells gridd
    this rank is ready (heartbeats keep it alive from here on).
    Raises hgrid.Aborted if gridd aborts the generation meanwhile.
    """
    if dist.is_initialized():
        raise HgridError("hgrid.torch.init_process_groups: torch.distributed is already "
                         "initialised (hgrid.torch.destroy() first)", _lib.ERR_STATE)
    backend = backend or _default_backend()
    timeout = timeout or DEFAULT_TIMEOUT
    if backend == "nccl":
        torch.cuda.set_device(a.device)
    store = GriddStore.for_assignment(a, timeout)
    # torch keeps only the C++ half of a Python Store: the Python object must outlive every
    # group that may still call it (groups Megatron creates later included).
    _live_stores.append(store)
    # Keys of an earlier generation (before an abort) stay in the job's store.
    prefixed = dist.PrefixStore(f"hgrid/gen{a.generation}", store)
    # No device_id: an eagerly initialised NCCL world would split every new group from
    # itself, a collective over all ranks, while only members create a group here.
    dist.init_process_group(backend=backend, store=prefixed, rank=a.rank,
                            world_size=a.world_size, timeout=timeout)
    by_members: Dict[tuple, dist.ProcessGroup] = {}
    groups: Dict[str, dist.ProcessGroup] = {}
    # Only members create a group (use_local_synchronization). Every rank walks the kinds
    # in the same order and the groups of one kind are disjoint, so members meet in the
    # same order: no deadlock. The first kind with a rank set is the same on all its
    # members, and so is the name salt set from it below.
    for kind, members in a.groups.items():
        key = tuple(members)
        if key not in by_members:
            _salt_group_name(_KIND_ORDER.get(kind, len(_KIND_ORDER)))
            by_members[key] = dist.new_group(list(members), timeout=timeout, backend=backend,
                                             use_local_synchronization=True)
        groups[kind] = by_members[key]
    _salt_group_name(len(_KIND_ORDER) + 1)  # groups created later by every rank stay aligned
    a.ready()
    return groups


# The group kinds in libhgrid's order (the bridge last): a group's name salt.
_KIND_ORDER = {k: i for i, k in enumerate(
    ["tp", "cp", "dp", "pp", "tp_cp", "dp_cp", "tp_dp", "tp_dp_cp", "mp", "module", "embd",
     "pos_embd", "ep", "expt_tp", "expt_dp", "tp_ep", "tp_ep_pp", "bridge"])}
_SALT_BASE = 1 << 20


def _salt_group_name(n: int) -> None:
    """torch (2.15) names a group hash(ranks, group_count), where group_count counts
    new_group calls in this process; with member-only creation the counts differ across
    ranks, so set it from the group's kind, the same on every member."""
    world = dist.distributed_c10d._world
    if hasattr(type(world), "group_count"):
        world.group_count = _SALT_BASE + n


def destroy() -> None:
    """Tears torch.distributed down (every group)."""
    if dist.is_initialized():
        dist.destroy_process_group()
    _live_stores.clear()

