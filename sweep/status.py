"""`sweep status`: per cell, how many seeds are done, damaged, running, failed or not started.

Everything comes from the store's own files, never from unpickling: done and damaged
from the Parquet fragments (a trial's `trials` fragment is its completion mark; its
footer records the row counts its other files must have), running and failed from
the last launch's `_launch.json` (plain JSON the driver rewrites as trials start and
end; a driver that died leaves its trials listed as running).
"""

from __future__ import annotations

import pandas as pd

from sweep.spec import plan_of
from sweep.store import Store

STATES = ("done", "damaged", "running", "failed", "not started")


def status(store: Store) -> tuple[pd.DataFrame, dict[str, str]]:
    """(one row per cell: seeds planned, then seeds in each of STATES; damaged fragment -> why)."""
    manifest = store.read_manifest()
    if manifest is None:
        raise FileNotFoundError(f"no sweep at {store.uri}")
    done, damaged = store.completed(), store.damaged()
    launch = store.read_launch_state().get("trials", {})
    rows = []
    for plan in plan_of(manifest):
        state = launch.get(plan.fragment) if isinstance(launch, dict) else None
        if plan.fragment in damaged:
            state = "damaged"
        elif plan.fragment in done:
            state = "done"
        elif state in ("RUNNING", "PENDING"):
            state = "running"
        elif state in ("ERROR", "TERMINATED"):
            state = "failed"  # ended without a fragment: it did not finish its write
        else:
            state = "not started"
        rows += [{"cell": cell, "state": state, "seeds": 1} for cell, _, _ in plan.models()]
    frame = pd.DataFrame(rows)
    table = frame.pivot_table(index="cell", columns="state", values="seeds", aggfunc="sum", fill_value=0,
                              sort=False).reindex(columns=list(STATES), fill_value=0)
    table.insert(0, "seeds", table.sum(axis=1))
    return table.reset_index(), damaged
