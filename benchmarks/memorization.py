"""The memorization preset on digits against a plain packed loop, and how its time splits.

  packed loop  what a researcher writes instead: the m MLPs' weights stacked, `torch.bmm`,
               autograd and `torch.optim.SGD` (momentum), each model gathering batches from its
               own random 70% subset, a fixed number of epochs (enough to fit every subset, as
               measured for the preset), then every train and test example scored; one process,
               PyTorch's default threads;
  memsweep     `sweep launch memorization --dataset digits --set seeds=M` as a user runs it: a
               fresh process, an embedded Ray, models trained until each fits its own subset,
               results stored as Parquet; for M = 200, 500, 1,000, 2,000 (how cost scales with m);
  split        where memsweep's time goes: one of its 500-model trials replayed in this process
               with one thread (data, training, scoring, tables, Parquet write), and the rest of
               the end-to-end time (Python, Ray, Tune, trials running two at a time);
  estimates    mem(i) of every example from the stored 2,000 models: the largest standard error,
               and the time `analysis.memorization` takes.

    python benchmarks/memorization.py   # about 4 minutes on 2 cores

Writes benchmarks/memorization.json and prints a table.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from analysis import load
from analysis import memorization as memo
from sweep import job as jobs
from sweep import planner, presets
from sweep import tables as T
from sweep.store import Store
from trainables import data as datasets
from trainables import engine

SWEEP = [sys.executable, "-m", "sweep.cli"]
DEFAULT_THREADS = torch.get_num_threads()
SPEC = presets.resolve("memorization", "digits")
LOOP_EPOCHS = 10  # the preset's models fit their subsets in 5-10 epochs (every one by 10, measured)


def packed_loop(m: int, epochs: int = LOOP_EPOCHS, seed: int = 0) -> dict:
    """m MLPs as stacked weights, autograd and torch.optim.SGD, each on its own random subset."""
    torch.set_num_threads(DEFAULT_THREADS)
    t0 = time.perf_counter()
    data = datasets.load("digits")
    x, y = data.train.x.flatten(1), data.train.y
    xt, yt = data.test.x.flatten(1), data.test.y
    n, d, h, c = len(x), x.shape[1], SPEC.model.hidden[0], data.num_classes
    size = SPEC.subset_size(SPEC.ratios[0])
    g = torch.Generator().manual_seed(seed)
    subsets = torch.stack([torch.randperm(n, generator=g)[:size] for _ in range(m)])
    w1 = (torch.randn(m, d, h, generator=g) * (2 / d) ** 0.5).requires_grad_()
    b1 = torch.zeros(m, 1, h, requires_grad=True)
    w2 = (torch.randn(m, h, c, generator=g) * (1 / h) ** 0.5).requires_grad_()
    b2 = torch.zeros(m, 1, c, requires_grad=True)
    opt = torch.optim.SGD([w1, b1, w2, b2], lr=SPEC.optimizer.lr, momentum=SPEC.optimizer.momentum)

    def forward(inputs):  # inputs (m, b, d) -> (m, b, c)
        return torch.baddbmm(b2, torch.relu(torch.baddbmm(b1, inputs, w1)), w2)

    for _ in range(epochs):
        order = torch.gather(subsets, 1, torch.argsort(torch.rand(m, size, generator=g), dim=1))
        for i in range(0, size, SPEC.batch_size):
            idx = order[:, i : i + SPEC.batch_size]
            loss = F.cross_entropy(forward(x[idx]).flatten(0, 1), y[idx].flatten()) * m
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        right_train = forward(x.expand(m, -1, -1)).argmax(-1) == y
        right_test = forward(xt.expand(m, -1, -1)).argmax(-1) == yt
    seconds = time.perf_counter() - t0
    fit = torch.gather(right_train, 1, subsets).float().mean(1)
    return {
        "models": m,
        "epochs": epochs,
        "seconds": seconds,
        "fit_min": float(fit.min()),
        "test_acc": float(right_test.float().mean()),
    }


def launch(m: int, results: str) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [*SWEEP, "launch", "memorization", "--dataset", "digits", "--set", f"seeds={m}", "--results", results],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    trials = load.load_table(results, "memorization", "trials")
    return {
        "models": m,
        "seconds": seconds,
        "trials": int(trials.fragment.nunique()),
        "trial_seconds": float(trials.groupby("fragment").wall_seconds.first().sum()),
        "fit_min": float(trials.fit_acc.min()),
        "epochs_mean": float(trials.epochs_trained.mean()),
    }


def split(m: int = 500) -> dict:
    """One trial of m models (seeds 0..m-1), replayed here with one thread, each step timed."""
    torch.set_num_threads(1)
    plan = planner.TrialPlan(cell="ratio0.7", variant="real", pack=0, seed_lo=0, seed_hi=m)
    times, t = {}, time.perf_counter()
    job = jobs.prepare(SPEC, plan, str(datasets.default_root()), torch.device("cpu"))
    times["data and subsets"] = time.perf_counter() - t
    from trainables import budget

    k = SPEC.resolved_pack_size(m, "cpu", cache_bytes=budget.cache_share_bytes(1.0))
    train = score = tables_s = 0.0
    parts = []
    for lo in range(0, m, k):
        sub = job.select(range(lo, min(lo + k, m)))
        pack = jobs.build_pack(SPEC, sub, torch.device("cpu"))
        out = engine.run(pack, sub.data, sub.members, jobs.schedule(SPEC, plan, 1024))
        train += out.records[-1].train_seconds
        score += out.records[-1].wall_seconds - out.records[-1].train_seconds
        t = time.perf_counter()
        found = jobs.Found()
        ctx = {
            "trial_id": "bench",
            "node_id": "",
            "resources": {},
            "device": torch.device("cpu"),
            "versions": {},
            "git_rev": None,
        }
        columns = dict(sub.columns, pack_mode=np.full(sub.members.k, "bmm"), **T.subset_columns(out))
        parts.append(T.all_tables(SPEC, plan, sub, out, found, columns, ctx, pd.Timestamp.now(tz="UTC"), 0.0))
        tables_s += time.perf_counter() - t
    import pyarrow as pa

    t = time.perf_counter()
    tables = {name: pa.concat_tables([p[name] for p in parts]) for name in parts[0]}
    with tempfile.TemporaryDirectory() as folder:
        Store(folder, "bench").write_fragment(plan.fragment, tables, {"sweep": "bench"})
    write = time.perf_counter() - t
    times.update({"training": train, "scoring": score, "tables": tables_s, "parquet write": write})
    return {"models": m, "pack_size": k, **times}


def main() -> None:
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "torch_threads": DEFAULT_THREADS,
    }
    result["packed_loop"] = packed_loop(200)
    result["packed_loop_2000"] = packed_loop(2000)
    result["packed_loop_5_epochs"] = packed_loop(200, epochs=5)
    for key in ("packed_loop", "packed_loop_2000", "packed_loop_5_epochs"):
        r = result[key]
        print(
            f"packed loop, {r['models']} models, {r['epochs']} epochs: {r['seconds']:.1f} s "
            f"(lowest fit on own subset {r['fit_min']:.3f})",
            flush=True,
        )
    result["memsweep"] = []
    with tempfile.TemporaryDirectory() as folder:
        for m in (200, 500, 1000, 2000):
            results = f"{folder}/m{m}"
            r = launch(m, results)
            result["memsweep"].append(r)
            print(
                f"memsweep, {m} models: {r['seconds']:.1f} s end to end ({r['trials']} trials, lowest fit "
                f"{r['fit_min']:.3f}, mean epochs {r['epochs_mean']:.1f})",
                flush=True,
            )
        t = time.perf_counter()
        ex = load.load_table(
            results,
            "memorization",
            "examples",
            columns=["cell", "variant", "seed", "split", "epoch", "index", "correct", "label", "true_label"],
        )
        members = load.load_table(results, "memorization", "members")
        loaded = time.perf_counter() - t
        mem = memo.memorization(ex, members)
        estimated = time.perf_counter() - t - loaded
        result["estimates"] = {
            "load_seconds": loaded,
            "memorization_seconds": estimated,
            "se_max": float(mem.se.max()),
            "se_median": float(mem.se.median()),
        }
    result["split"] = split(500)
    print(
        "one 500-model trial, one thread: "
        + ", ".join(f"{k} {v:.2f} s" for k, v in result["split"].items() if isinstance(v, float)),
        flush=True,
    )
    base = result["packed_loop"]["seconds"] / 200
    print("\n| models | memsweep end to end | per model | packed loop, 10 epochs | loop / memsweep |")
    print("|---|---|---|---|---|")
    for r in result["memsweep"]:
        loop = result["packed_loop_2000"]["seconds"] if r["models"] == 2000 else base * r["models"]
        how = "measured" if r["models"] in (200, 2000) else "scaled from 200"
        print(
            f"| {r['models']:,} | {r['seconds']:.1f} s | {r['seconds'] / r['models'] * 1000:.1f} ms | "
            f"{loop:.1f} s ({how}) | {loop / r['seconds']:.2f}x |"
        )
    e = result["estimates"]
    print(
        f"\nmem(i) from 2,000 models: largest SE {e['se_max']:.4f}, median {e['se_median']:.4f}; "
        f"load {e['load_seconds']:.1f} s, estimate {e['memorization_seconds']:.1f} s"
    )
    (HERE / "memorization.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
