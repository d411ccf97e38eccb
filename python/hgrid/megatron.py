"""megatron.core's ProcessGroupCollection from hgrid's groups, filled as Megatron's MIMO
example fills it from a module's HyperCommGrid.

    groups = hgrid.torch.init_process_groups(a)
    pg_collection = hgrid.megatron.process_group_collection(a, groups)
"""
from __future__ import annotations

from typing import Dict

import torch.distributed as dist

from . import Assignment

__all__ = ["process_group_collection", "FIELDS"]

# ProcessGroupCollection field -> hgrid group kind. Without partial data
# parallelism intra_dp_cp is dp_cp; mp is tensor + pipeline (parallel_state's).
FIELDS = {
    "tp": "tp", "cp": "cp", "dp": "dp", "pp": "pp", "tp_cp": "tp_cp", "dp_cp": "dp_cp",
    "intra_dp_cp": "dp_cp", "tp_dp_cp": "tp_dp_cp", "mp": "mp", "embd": "embd",
    "pos_embd": "pos_embd", "ep": "ep", "expt_tp": "expt_tp", "expt_dp": "expt_dp",
    "tp_ep": "tp_ep", "tp_ep_pp": "tp_ep_pp",
}


def process_group_collection(a: Assignment, groups: Dict[str, dist.ProcessGroup]):
    """This rank's module's ProcessGroupCollection. embd and pos_embd are None on ranks
    outside them (middle pipeline stages), as in Megatron's MIMO code; the encoder has no
    embedding or expert groups. Needs megatron-core."""
    from megatron.core.process_groups_config import ProcessGroupCollection

    pgc = ProcessGroupCollection()
    for field, kind in FIELDS.items():
        if kind in groups:
            setattr(pgc, field, groups[kind])
        elif kind in ("embd", "pos_embd"):
            setattr(pgc, field, None)
    return pgc
