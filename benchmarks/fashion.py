"""fig1 on Fashion-MNIST at real scale, side by side in one run: memsweep against the notebook loop
and against the job's FLOP floor; then `sweep report` on the stores it wrote.

  notebook   benchmarks/run.py's loop on Fashion-MNIST with the preset's hyperparameters (2 x 512
             MLP, SGD lr 0.01 momentum 0.9, batch 128, one epoch, then every train and test example
             scored): per seed a fresh torch.nn MLP, a DataLoader over a TensorDataset, PyTorch's
             default threads (all cores), seeds one after another;
  memsweep   `sweep launch fig1-difficulty --dataset fashion-mnist --set seeds=N` as a user runs
             it: a fresh process, an embedded Ray, results stored as Parquet;
  floor      the job's FLOPs (training, and scoring all 70,000 examples) at the matmul peak of
             every core together, measured here (a 2048 x 2048 fp32 GEMM);
  report     `sweep report` on the store memsweep wrote (rows, seconds, peak RSS).

    python benchmarks/fashion.py --seeds 10    # about 7 minutes on 2 cores

Needs the Fashion-MNIST files (`apt-get install dataset-fashion-mnist`, or online). Writes
benchmarks/fashion.json and prints a table.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("benchmark_run", HERE / "run.py")
run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run)

presets, torch = run.presets, run.torch
import flags  # noqa: E402 (run.py put benchmarks/ on sys.path)


def report_timed(results: str, sweep: str) -> dict[str, float]:
    """`sweep report` in a fresh process: seconds, and its peak resident memory (MB, GNU time's %M)."""
    start = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "peak_kb %M", *run.SWEEP, "report", sweep, "--results", results],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    peak_kb = int(proc.stderr.strip().splitlines()[-1].split()[1])
    return {"seconds": round(time.perf_counter() - start, 1), "peak_rss_mb": round(peak_kb / 1024)}


def main() -> None:
    seeds = flags.one_count(
        "benchmarks/fashion.py", __doc__, "--seeds", 10, "seeds a variant for both contenders (default 10)"
    )
    spec = presets.resolve("fig1-difficulty", "fashion-mnist", [f"seeds={seeds}"])
    # This VM's speed drifts: the contenders alternate (notebook, memsweep, memsweep, notebook) and
    # the matmul peak is measured before, between and after; the floor takes the best peak seen.
    peaks, t_nb, t_ms = [run.matmul_peak(run.DEFAULT_THREADS)], [], []
    with tempfile.TemporaryDirectory() as results:
        for order in (("notebook", "memsweep"), ("memsweep", "notebook")):
            for who in order:
                if who == "notebook":
                    t_nb.append(run.run_notebook(seeds, spec))
                else:
                    t_ms.append(_memsweep(results, seeds))
                run.say(f"{who}: {(t_nb if who == 'notebook' else t_ms)[-1]:.1f} s for {seeds} seeds x 3 variants")
            peaks.append(run.matmul_peak(run.DEFAULT_THREADS))
        rows = _row_counts(results)["examples"]
        rep = report_timed(results, "fig1-difficulty")
    peak, t_nb, t_ms = max(peaks), min(t_nb), min(t_ms)
    run.say(f"matmul peak, {run.DEFAULT_THREADS} threads: {', '.join(f'{p:.0f}' for p in peaks)} GFLOP/s")
    flops = run.fig1_flops(spec)
    floor = flops / (peak * 1e9)
    out = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": run.machine(),
        "torch": torch.__version__,
        "seeds_per_variant": seeds,
        "notebook_s": round(t_nb, 1),
        "memsweep_s": round(t_ms, 1),
        "notebook/memsweep": round(t_nb / t_ms, 2),
        "gflop": round(flops / 1e9),
        "peak_gflops": round(peak, 1),
        "peaks_gflops": [round(p, 1) for p in peaks],
        "floor_s": round(floor, 1),
        "memsweep_share_of_floor": round(floor / t_ms, 3),
        "notebook_share_of_floor": round(floor / t_nb, 3),
        "examples_rows": rows,
        "report": rep,
    }
    (HERE / "fashion.json").write_text(json.dumps(out, indent=1))
    run.say(
        f"best of 2 each, alternating:\n| | seconds | share of the floor |\n|---|---|---|\n"
        f"| notebook | {t_nb:.1f} | {floor / t_nb:.0%} |\n| memsweep | {t_ms:.1f} | {floor / t_ms:.0%} |\n"
        f"| floor ({flops / 1e9:,.0f} GFLOP at {peak:.0f} GFLOP/s) | {floor:.1f} | |\n"
        f"notebook / memsweep: {t_nb / t_ms:.2f}x; report of {rows:,} example rows: {rep['seconds']} s, "
        f"peak {rep['peak_rss_mb']} MB"
    )


def _memsweep(results: str, seeds: int) -> float:
    """`sweep launch` end to end, into `results` afresh (--overwrite after the first)."""
    again = ["--overwrite"] if (Path(results) / "fig1-difficulty").exists() else []
    start = time.perf_counter()
    proc = subprocess.run(
        [
            *run.SWEEP,
            "launch",
            "fig1-difficulty",
            "--dataset",
            "fashion-mnist",
            "--set",
            f"seeds={seeds}",
            "--results",
            results,
            *again,
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return time.perf_counter() - start


def _row_counts(results: str) -> dict[str, int]:
    import pyarrow.dataset as ds

    folder = Path(results) / "fig1-difficulty"
    return {t: ds.dataset(folder / t, format="parquet").count_rows() for t in ("examples", "trials")}


if __name__ == "__main__":
    main()
