"""The store with thousands of fragments: how long `sweep status`, `sweep verify` and `sweep ls` take.

A sweep of 5,000 trials (e.g. a memorization study of 2,000 models in packs, or a fine grid)
leaves 5,000 fragments in each table. This writes such a store with the real writer
(`sweep.store.Store.write_fragment`, the schema's tables, one small fragment a trial, as a
convergence trial of a few epochs writes them) and times the three commands in fresh processes.

    python benchmarks/store_scale.py --fragments 5000   # about 2 minutes on 2 cores

Writes benchmarks/store_scale.json and prints a table.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import flags

from analysis import schema
from sweep import planner, presets
from sweep.store import Store

SWEEP = [sys.executable, "-m", "sweep.cli"]


def tiny_table(name: str, rows: int, fragment: str) -> pa.Table:
    """`rows` rows of the table's schema: zeros, and the fragment's own names where it has them."""
    columns = {}
    for field in schema.SCHEMAS[name]:
        if pa.types.is_dictionary(field.type) or pa.types.is_string(field.type):
            value = fragment if field.name in ("fragment", "cell") else "real"
            columns[field.name] = pa.array([value] * rows).cast(field.type)
        elif pa.types.is_timestamp(field.type):
            columns[field.name] = pa.array([0] * rows, pa.int64()).cast(field.type)
        else:
            columns[field.name] = pa.array([0] * rows).cast(field.type)
    return pa.table(columns, schema=schema.SCHEMAS[name])


def write_store(results: str, fragments: int) -> float:
    """A finished sweep of `fragments` trials, each with a trials row and 4 epochs rows; seconds taken."""
    spec = presets.resolve("fig1-difficulty", "digits", [f"seeds={fragments}", "variants=[real]", "trial_size=1"])
    plans = planner.expand(spec, 1)
    store = Store(results, spec.name)
    store.write_manifest(
        spec.model_dump(), spec.hash(), {"preset": spec.name, "args": []}, plan=[p.to_dict() for p in plans]
    )
    start = time.perf_counter()
    for plan in plans:
        store.write_fragment(
            plan.fragment,
            {"epochs": tiny_table("epochs", 4, plan.fragment), "trials": tiny_table("trials", 1, plan.fragment)},
            {"sweep": spec.name, "fragment": plan.fragment},
        )
    return time.perf_counter() - start


def timed(*args: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run([*SWEEP, *args], capture_output=True, text=True)
    if proc.returncode != 0:  # a store the commands refuse is no measurement
        raise RuntimeError(proc.stderr[-2000:])
    return round(time.perf_counter() - start, 2)


def main() -> None:
    fragments = flags.one_count(
        "benchmarks/store_scale.py", __doc__, "--fragments", 5000, "trials in the store (default 5,000)"
    )
    with tempfile.TemporaryDirectory() as results:
        write_s = write_store(results, fragments)
        out = {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "fragments": fragments,
            "write_s": round(write_s, 1),
            "write_ms_per_fragment": round(write_s / fragments * 1e3, 1),
            "status_s": timed("status", "fig1-difficulty", "--results", results),
            "verify_s": timed("verify", "fig1-difficulty", "--results", results),
            "ls_s": timed("ls", "--results", results),
        }
    (HERE / "store_scale.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
