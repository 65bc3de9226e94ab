"""Read a sweep's tables from a results location into pandas (the store's contract: results/README.md).

Only pandas and pyarrow: an analyst does not need torch or Ray.
"""

from __future__ import annotations

import functools
import json
import operator
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from analysis.safe_yaml import read_yaml
from analysis.schema import SCHEMAS, TABLES


def sweep_path(results: str, sweep: str) -> tuple[pafs.FileSystem, str]:
    """(file system, path of <results>/<sweep>) for a local folder or a URI (s3://, gs://, file://)."""
    if "://" in results:
        fs, base = pafs.FileSystem.from_uri(results)
    else:
        try:
            fs, base = pafs.LocalFileSystem(), str(Path(results).expanduser().resolve())
        except RuntimeError as exc:  # Python < 3.13 raises it for a symbolic link loop
            raise OSError(f"{results} is a symbolic link loop ({exc})") from None
    return fs, f"{base.rstrip('/')}/{sweep}"


def load_table(
    results: str,
    sweep: str,
    table: str,
    *,
    variants: Sequence[str] | None = None,
    splits: Sequence[str] | None = None,
    epochs: Sequence[int] | None = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One table of a sweep as a DataFrame, keeping only rows of the given variants, splits
    and epochs. The filter is pushed down to Parquet: fragments and row groups (one per
    trial x epoch x split in `examples`) that cannot match are skipped, not read."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r} (allowed: {', '.join(TABLES)})")
    fs, root = sweep_path(results, sweep)
    folder = f"{root}/{table}"
    if fs.get_file_info(folder).type != pafs.FileType.Directory:
        raise FileNotFoundError(f"no {table!r} table at {results}/{sweep} (has the sweep run?)")
    dataset = ds.dataset(folder, format="parquet", filesystem=fs)
    # The contract's columns, and the sweep's own hyperparameter-axis columns (e.g. optimizer.lr).
    unknown = [c for c in columns or () if c not in SCHEMAS[table].names and c not in dataset.schema.names]
    if unknown:
        raise ValueError(f"unknown column(s) {unknown} of {table!r} (the contract: analysis/schema.py)")
    clauses = [
        ds.field(name).isin(list(values))
        for name, values in (("variant", variants), ("split", splits), ("epoch", epochs))
        if values is not None and name in dataset.schema.names
    ]
    where = functools.reduce(operator.and_, clauses) if clauses else None
    return dataset.to_table(filter=where, columns=list(columns) if columns else None).to_pandas()


def table_columns(results: str, sweep: str, table: str) -> list[str]:
    """The column names of a stored table ([] if the sweep has no such table)."""
    fs, root = sweep_path(results, sweep)
    folder = f"{root}/{table}"
    if fs.get_file_info(folder).type != pafs.FileType.Directory:
        return []
    return ds.dataset(folder, format="parquet", filesystem=fs).schema.names


def load_manifest(results: str, sweep: str) -> dict[str, Any]:
    """The sweep's sweep.yaml: resolved spec, spec hash, schema version, provenance."""
    fs, root = sweep_path(results, sweep)
    try:
        with fs.open_input_stream(f"{root}/sweep.yaml") as f:
            return read_yaml(f.read().decode())
    except FileNotFoundError:
        raise FileNotFoundError(f"no sweep {sweep!r} at {results} (no sweep.yaml)") from None


def load_launch_state(results: str, sweep: str) -> dict[str, Any]:
    """The last launch's _launch.json ({} if none or unreadable): when it started and, once it
    is over, ended; each trial's state (PENDING, RUNNING, TERMINATED, ERROR, INTERRUPTED)."""
    fs, root = sweep_path(results, sweep)
    try:
        with fs.open_input_stream(f"{root}/_launch.json") as f:
            state = json.loads(f.read().decode())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def trial_state(launch_state: str | None) -> str:
    """A trial without a stored fragment, as `sweep status` and the report name it, from its state
    in _launch.json: running; interrupted (a Ctrl-C cut it short); failed (it ended, or Tune
    ended it, without finishing its write); else not started."""
    return {"RUNNING": "running", "INTERRUPTED": "interrupted", "ERROR": "failed", "TERMINATED": "failed"}.get(
        launch_state or "", "not started"
    )


def launch_args(manifest: dict[str, Any]) -> str:
    """'PRESET [--name SWEEP] [--dataset D] [--set K=V ...]': what `sweep launch` takes to give
    the stored sweep's spec again (its manifest names the preset and the command line's --dataset
    and --set arguments; older ones lack them: see `launch_args_known`)."""
    name = manifest["spec"]["name"]
    prov = manifest.get("provenance") or {}
    preset = prov.get("preset") or name
    text = shlex.quote(str(preset)) + ("" if preset == name else f" --name {shlex.quote(str(name))}")
    return f"{text} {shlex.join(map(str, prov['args']))}" if prov.get("args") else text


def launch_args_known(manifest: dict[str, Any]) -> bool:
    """Whether the manifest recorded its launch's --dataset and --set arguments (stores written
    before they were kept do not)."""
    return "args" in (manifest.get("provenance") or {})


def sweeps(results: str) -> list[str]:
    """Names of the sweeps stored at `results` (folders with a sweep.yaml), sorted."""
    fs, base = sweep_path(results, "")
    base = base.rstrip("/")
    found = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    names = [i.base_name for i in found if i.type == pafs.FileType.Directory]
    return sorted(n for n in names if fs.get_file_info(f"{base}/{n}/sweep.yaml").type == pafs.FileType.File)


def companions(results: str, sweep: str, spec: dict[str, Any]) -> list[tuple[str, dict[str, Any], set[str]]]:
    """(name, spec, examples columns) of every other sweep in `results` that trained on the same
    training examples as `spec`: the same data set, neither with a train_size cut nor a
    validation carve-out, and with an examples table. A sweep whose manifest cannot be read is
    passed over."""
    out = []
    for other in sweeps(results):
        if other == sweep or spec.get("train_size"):
            continue
        try:
            o = load_manifest(results, other).get("spec", {})
        except (FileNotFoundError, OSError, ValueError):
            continue
        if o.get("dataset") != spec["dataset"] or o.get("train_size") or (o.get("validation") or {}).get("size"):
            continue
        have = table_columns(results, other, "examples")
        if have:
            out.append((other, o, set(have)))
    return out
