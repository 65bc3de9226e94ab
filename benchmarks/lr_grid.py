"""A 5-value learning-rate grid: one sweep that packs the five rates together, against one sweep
per rate (how a user compared rates before sweeps had axes), end to end.

`sweep launch fig1-difficulty --dataset digits` at `--seeds` seeds x 3 variants, once with
`--set grid={optimizer.lr: [five rates]}` (the models of the five rates share each trial and
pack, each member with its own rate) and once as five launches, one rate each. The contenders
alternate for `--rounds` rounds, on an embedded Ray, as a user runs them (process start, Ray
start, Parquet writes included). Prints one table and writes benchmarks/lr_grid.json.

    python benchmarks/lr_grid.py --seeds 100 --rounds 2   # about 6 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from flags import add_from_json
from run import machine, read_results

SWEEP = [sys.executable, "-m", "sweep.cli"]
RATES = [0.003, 0.01, 0.03, 0.05, 0.1]


def launch(seeds: int, sets: list[str]) -> tuple[float, int]:
    """Seconds of one `sweep launch`, and the models it stored."""
    with tempfile.TemporaryDirectory() as results:
        args = [*SWEEP, "launch", "fig1-difficulty", "--dataset", "digits", "--set", f"seeds={seeds}", *sets]
        start = time.perf_counter()
        proc = subprocess.run([*args, "--results", results], capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"launch failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        models = len(pd.read_parquet(Path(results) / "fig1-difficulty" / "trials"))
    return seconds, models


def one_round(seeds: int) -> dict[str, float]:
    grid = f"grid={{optimizer.lr: [{', '.join(map(str, RATES))}]}}"
    packed, models = launch(seeds, ["--set", grid])
    apart = [launch(seeds, ["--set", f"optimizer.lr={lr}"]) for lr in RATES]
    assert models == sum(m for _, m in apart), (models, apart)
    return {"packed_s": packed, "per_rate_s": sum(s for s, _ in apart), "models": models}


def table(out: dict) -> str:
    rows = out["rounds"]
    packed = statistics.median(r["packed_s"] for r in rows)
    apart = statistics.median(r["per_rate_s"] for r in rows)
    return "\n".join(
        [
            "| measure | result |",
            "|---|---|",
            f"| models ({len(RATES)} rates x 3 variants x {out['seeds_per_variant']} seeds) | {rows[0]['models']:,} |",
            f"| one sweep, rates packed together (median of {len(rows)}) | {packed:.1f} s |",
            f"| one sweep per rate, {len(RATES)} launches (median of {len(rows)}) | {apart:.1f} s |",
            f"| speed-up (per-rate time / packed time) | {apart / packed:.2f}x |",
            f"| machine | {out['machine']} |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    add_from_json(parser)
    args = parser.parse_args()
    if args.from_json:
        print(table(read_results(args.from_json, "benchmarks/lr_grid.py", table)))
        return
    if args.seeds < 1 or args.rounds < 1:
        sys.exit(f"benchmarks/lr_grid.py: --seeds {args.seeds} --rounds {args.rounds}: both must be 1 or more")
    out = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "seeds_per_variant": args.seeds,
        "rates": RATES,
        "rounds": [one_round(args.seeds) for _ in range(args.rounds)],
    }
    (HERE / "lr_grid.json").write_text(json.dumps(out, indent=1) + "\n")
    print(table(out))


if __name__ == "__main__":
    main()
