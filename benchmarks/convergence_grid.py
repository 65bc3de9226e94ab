"""The README's digits convergence grid, packed against one model per trial, end to end.

`sweep launch convergence-slowdown --dataset digits` over mlp1, mlp3 and alexnet x 6 label
corruption levels, once with the default packing (every level and seed of an architecture in
one pack: the engine trains them as one computation and freezes each model when it
interpolates) and once with `--set pack_size=1` (one model per Ray Tune trial: how memsweep ran
these grids before the one engine). Both run one after the other for each seed count, in one
benchmark run, on an embedded Ray, as a user runs them (process start, Ray start, Parquet writes included). Prints a table and writes
benchmarks/convergence_grid.json.

    python benchmarks/convergence_grid.py --seeds 1 3   # about 20 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
SWEEP = [sys.executable, "-m", "sweep.cli"]
GRID = [
    "--dataset",
    "digits",
    "--set",
    "archs=[mlp1,mlp3,alexnet]",
    "--set",
    "corruptions=[randY:0.0,randY:0.2,randY:0.4,randY:0.6,randY:0.8,randY:1.0]",
]


def launch(seeds: int, pack_size: int | None, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as results:
        args = [
            *SWEEP,
            "launch",
            "convergence-slowdown",
            *GRID,
            "--set",
            f"seeds={seeds}",
            *extra,
            "--results",
            results,
        ]
        if pack_size is not None:
            args += ["--set", f"pack_size={pack_size}"]
        start = time.perf_counter()
        proc = subprocess.run(args, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"launch failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        trials = pd.read_parquet(Path(results) / "convergence-slowdown" / "trials")
    return {
        "seconds": round(seconds, 1),
        "trials": int(trials.fragment.nunique()),
        "models": len(trials),
        "interpolated": int(trials.interpolated.sum()),
        "epochs": int(trials.epochs_trained.sum()),
        "pack_modes": sorted(set(trials.pack_mode)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 3])
    parser.add_argument(
        "--set",
        dest="extra",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="more --set overrides for both runs (e.g. max_epochs=100)",
    )
    args = parser.parse_args()
    extra = [a for kv in args.extra for a in ("--set", kv)]
    rows = []
    for seeds in args.seeds:
        packed = launch(seeds, None, extra)
        single = launch(seeds, 1, extra)
        rows.append(
            {
                "seeds": seeds,
                "packed": packed,
                "one_per_trial": single,
                "speedup": round(single["seconds"] / packed["seconds"], 2),
            }
        )
        print(
            f"seeds {seeds}: packed {packed['seconds']} s ({packed['trials']} trials, {packed['models']} models, "
            f"{packed['interpolated']} interpolated, modes {packed['pack_modes']}); one per trial "
            f"{single['seconds']} s ({single['trials']} trials, {single['interpolated']} interpolated); "
            f"one-per-trial / packed = {rows[-1]['speedup']}",
            flush=True,
        )
    out = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "grid": GRID,
        "extra": extra,
        "rows": rows,
    }
    (HERE / "convergence_grid.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
