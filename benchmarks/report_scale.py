"""`sweep report` at real scale: time and peak memory on a fig1 store of 21 million example rows
and a memorization store of 100 million, each also at a tenth of its size (how they grow).

The stores are written by the trial's own code path without the training: per trial,
`sweep.job.prepare` (the real Fashion-MNIST, its corruption and the subsets), synthetic scores in
the engine's `EpochRecord`/`SplitScores` (each example right with its own probability; a subset
model right on what it trained on), `sweep.tables.all_tables` and `Store.write_fragment`: the files,
schema, row groups and checksums a real sweep leaves. Then `sweep report` runs in a fresh process
under GNU time.

    python benchmarks/report_scale.py              # about 15 minutes on 2 cores, 3 GB of disk
    python benchmarks/report_scale.py --scale 0.1  # the small stores only

Needs the Fashion-MNIST files (`apt-get install dataset-fashion-mnist`). Writes
benchmarks/report_scale.json and prints a table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import torch

from sweep import job as jobs
from sweep import planner, presets
from sweep import tables as T
from sweep.store import Store
from sweep.trial import _peak_memory
from trainables import engine

_spec = importlib.util.spec_from_file_location("benchmark_fashion", HERE / "fashion.py")
fashion = importlib.util.module_from_spec(_spec)  # its `report_timed` and the machine's name
_spec.loader.exec_module(fashion)
# (preset, models at full scale): fig1 at the preset's 100 seeds x 3 variants scores 70,000
# examples a model (21M rows); 1,430 memorization models x 70,000 = 100M rows.
STORES = {"fig1-difficulty": 300, "memorization": 1430}
CPU = torch.device("cpu")


def fake_outcome(job, rng: np.random.Generator, epoch: int) -> engine.Outcome:
    """One epoch record of the job's K models with synthetic per-example scores: example i right
    with its own probability (fixed per example), always where a subset model trained on it."""
    k = job.members.k
    record = engine.EpochRecord(
        epoch=epoch,
        step=epoch * 100,
        wall_seconds=1.0,
        train_seconds=1.0,
        lr=0.01,
        running_loss=np.ones(k),
        running_acc=np.full(k, 0.5),
        fit_acc=np.ones(k),
        norms={"0.weight": np.ones(k)},
    )
    subsets = job.members.subsets.numpy() if job.members.subsets is not None else None
    for split, labels in (("train", job.labels["train"]), ("test", job.labels["test"])):
        labels = np.broadcast_to(labels, (k, np.shape(labels)[-1]))
        n = labels.shape[1]
        easy = np.random.default_rng(n).beta(2, 1, n)  # the same per-example difficulty in every trial
        correct = rng.random((k, n), dtype=np.float32) < easy
        if subsets is not None and split == "train":
            np.put_along_axis(correct, subsets, True, axis=1)
        pred = np.where(correct, labels, (labels + 1) % 10)
        p = rng.random((k, n), dtype=np.float32)
        record.add_scores(
            split,
            engine.SplitScores(pred=pred, correct=correct, p_label=p, loss=-np.log(p + 1e-6), el2n=1 - p),
            keep=True,
        )
    none = [None] * k
    return engine.Outcome(
        records=[record],
        stop_reason=["interpolated"] * k,
        reached_epoch=[epoch] * k,
        reached_step=none,
        reached_train_seconds=none,
        reached_wall_seconds=none,
        best_epoch=none,
        early_stop_epoch=none,
        state=None,
    )


def write_store(results: str, preset: str, models: int) -> dict[str, float]:
    """The store a `preset` sweep of `models` models on Fashion-MNIST leaves; seconds and rows."""
    seeds = models // 3 if preset == "fig1-difficulty" else models
    spec = presets.resolve(preset, "fashion-mnist", [f"seeds={seeds}", "train_size=null"])  # all 60,000
    plans = planner.expand(spec, 1)
    store = Store(results, spec.name)
    store.write_manifest(
        spec.model_dump(), spec.hash(), {"preset": spec.name, "args": []}, plan=[p.to_dict() for p in plans]
    )
    ctx = {
        "trial_id": "bench",
        "device": CPU,
        "node_id": "local",
        "resources": {"CPU": 1},
        "versions": {},
        "git_rev": None,
    }
    rng, start, rows = np.random.default_rng(0), time.perf_counter(), 0
    for plan in plans:
        job = jobs.prepare(spec, plan, "data", CPU)
        out = fake_outcome(job, rng, epoch=1 if preset == "fig1-difficulty" else 40)
        k = job.members.k
        columns = dict(job.columns, pack_mode=np.full(k, "bmm"), rss_before_mb=np.zeros(k), **_peak_memory(k, CPU))
        if job.members.subsets is not None:
            columns.update(T.subset_columns(out))
        tables = T.all_tables(
            spec,
            plan,
            job,
            out,
            jobs.Found(init_norms={"0.weight": np.ones(k)}),
            columns,
            ctx,
            dt.datetime.now(dt.UTC),
            1.0,
        )
        rows += tables["examples"].num_rows
        store.write_fragment(plan.fragment, tables, {"sweep": spec.name, "fragment": plan.fragment})
    return {
        "write_s": round(time.perf_counter() - start, 1),
        "examples_rows": rows,
        "store_mb": round(sum(f.stat().st_size for f in Path(results, spec.name).rglob("*") if f.is_file()) / 2**20),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale",
        type=float,
        nargs="+",
        default=[0.1, 1.0],
        help="store sizes as fractions of the full ones (default 0.1 1)",
    )
    args = parser.parse_args()
    bad = [s for s in args.scale if not 0 < s <= 1]
    if bad:
        sys.exit(f"benchmarks/report_scale.py: --scale {bad[0]}: must be in (0, 1]")
    runs = []
    for preset, full in STORES.items():
        for scale in args.scale:
            models = max(3, round(full * scale))
            with tempfile.TemporaryDirectory() as results:
                row = {"preset": preset, "models": models, **write_store(results, preset, models)}
                timed = fashion.report_timed(results, preset)
                row.update(report_s=timed["seconds"], report_peak_mb=timed["peak_rss_mb"])
            print(json.dumps(row), flush=True)
            runs.append(row)
    out = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": fashion.run.machine(), "runs": runs}
    (HERE / "report_scale.json").write_text(json.dumps(out, indent=1))
    print("| store | models | examples rows | on disk | report | peak RSS |\n|---|---|---|---|---|---|")
    for r in runs:
        print(
            f"| {r['preset']} | {r['models']:,} | {r['examples_rows']:,} | {r['store_mb']:,} MB | "
            f"{r['report_s']} s | {r['report_peak_mb'] / 1024:.2f} GB |"
        )


if __name__ == "__main__":
    main()
