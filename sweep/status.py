"""`sweep status`: per cell, how many seeds are done, running, failed or not started.

Done comes from the store (a trial's `trials` fragment is its completion mark);
running and failed come from the latest Tune experiment state under `_tune/`,
as Tune last saved it (a driver that died leaves its trials listed as running).
"""

from __future__ import annotations

import logging

import pandas as pd
import pyarrow.fs as pafs

from sweep.spec import expand, validate
from sweep.store import Store

STATES = ("done", "running", "failed", "not started")


def tune_states(store: Store) -> dict[str, str]:
    """fragment -> Tune status (PENDING, RUNNING, TERMINATED, ERROR) from the latest launch."""
    from ray.tune import ExperimentAnalysis

    selector = pafs.FileSelector(store.path("_tune"), allow_not_found=True)
    launches = sorted(i.path for i in store.fs.get_file_info(selector)
                      if i.type == pafs.FileType.Directory and i.base_name.startswith("launch-"))
    if not launches:
        return {}
    # It warns once per trial without result files (trials that never reported): noise here.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    try:
        analysis = ExperimentAnalysis(launches[-1], storage_filesystem=store.fs)
    except Exception:  # no experiment state saved yet (the driver is just starting)
        return {}
    out = {}
    for trial in analysis.trials:
        plan = trial.config["trial"]["plan"]
        out[f"{plan['cell']}-pack{plan['pack']:03d}"] = trial.status
    return out


def status(store: Store) -> pd.DataFrame:
    """One row per cell: seeds planned, then seeds in each of STATES."""
    manifest = store.read_manifest()
    if manifest is None:
        raise FileNotFoundError(f"no sweep at {store.uri}")
    done, tune = store.completed(), tune_states(store)
    rows = []
    for plan in expand(validate(manifest["spec"])):
        seeds = plan.seed_hi - plan.seed_lo
        if plan.fragment in done:
            state = "done"
        elif tune.get(plan.fragment) in ("RUNNING", "PENDING"):
            state = "running"
        elif tune.get(plan.fragment) in ("ERROR", "TERMINATED"):
            state = "failed"  # terminated without a fragment: it did not finish its write
        else:
            state = "not started"
        rows.append({"cell": plan.cell, "state": state, "seeds": seeds})
    frame = pd.DataFrame(rows)
    table = frame.pivot_table(index="cell", columns="state", values="seeds", aggfunc="sum", fill_value=0,
                              sort=False).reindex(columns=list(STATES), fill_value=0)
    table.insert(0, "seeds", table.sum(axis=1))
    return table.reset_index()
