"""`sweep status`: per cell, how many seeds are done, damaged, running, interrupted, failed or not
started.

Everything comes from the store's own files, never from unpickling: done and damaged
from the Parquet fragments (a trial's `trials` fragment is its completion mark; its
footer records the row counts its other files must have), running and failed from
the last launch's `_launch.json` (plain JSON the driver rewrites as trials start and
end, and at its end marks what an interrupt (Ctrl-C) left unfinished; a driver that was killed
leaves its trials listed as running). A trial queued behind others (Tune's PENDING) is not started.
"""

from __future__ import annotations

import os

import pandas as pd

from analysis.load import trial_state
from sweep.planner import plan_of
from sweep.store import Store

STATES = ("done", "damaged", "running", "interrupted", "failed", "not started")


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
        else:
            state = trial_state(state)
        rows += [{"cell": cell, "state": state, "seeds": 1} for cell, _, _ in plan.models()]
    frame = pd.DataFrame(rows)
    table = frame.pivot_table(
        index="cell", columns="state", values="seeds", aggfunc="sum", fill_value=0, sort=False
    ).reindex(columns=list(STATES), fill_value=0)
    table.insert(0, "seeds", table.sum(axis=1))
    return table.reset_index(), damaged


def list_sweeps(location: str) -> pd.DataFrame:
    """One row per sweep stored at `location` (a folder or a URI): sweep, preset, dataset, spec
    hash, trials done / planned, rows (all tables), size on disk (MB, everything in its folder,
    Tune's files included) and last write (UTC). Folders without a manifest are not sweeps."""
    import datetime as dt

    import pyarrow.fs as pafs

    from sweep.store import StoreError

    probe = Store(location, "probe")  # resolves the location as every other command does
    fs, base = probe.fs, probe.root.rsplit("/", 1)[0]
    if fs.get_file_info(base).type == pafs.FileType.File:
        raise StoreError(f"--results {location} is a file, not a results folder or URI")
    rows, refused = [], []
    for info in sorted(fs.get_file_info(pafs.FileSelector(base, allow_not_found=True)), key=lambda i: i.base_name):
        if info.type != pafs.FileType.Directory and not (probe.is_local and os.path.islink(info.path)):
            continue
        try:
            store = Store(location, info.base_name)
            manifest = store.read_manifest()
        except (StoreError, OSError, ValueError) as exc:
            refused.append((info.base_name, str(exc)))
            continue
        if not manifest:
            continue
        files = [
            f for f in fs.get_file_info(pafs.FileSelector(store.root, recursive=True)) if f.type == pafs.FileType.File
        ]
        last = max((f.mtime for f in files if f.mtime is not None), default=None)
        spec = manifest.get("spec", {})
        rows.append(
            {
                "sweep": info.base_name,
                "preset": manifest.get("provenance", {}).get("preset", "?"),
                "dataset": spec.get("dataset", "?"),
                "spec_hash": manifest.get("spec_hash", "?"),
                "trials": f"{len(store.intact(contents=False))}/{len(plan_of(manifest))}",  # footers only: fast
                "rows": _rows(store),
                "size_mb": round(sum(f.size or 0 for f in files) / 2**20, 1),
                "last_write": (last.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M") if last else "?"),
            }
        )
    frame = pd.DataFrame(
        rows, columns=["sweep", "preset", "dataset", "spec_hash", "trials", "rows", "size_mb", "last_write"]
    )
    frame.attrs["refused"] = refused  # (sweep, why): folders that are not a sweep memsweep can read
    return frame


def _rows(store: Store) -> int | str:
    """Rows in all tables, or '?' when a file's footer cannot be read (`sweep status` names it)."""
    import pyarrow as pa

    try:
        return sum(store.row_counts().values())
    except (OSError, pa.ArrowException):
        return "?"
