"""memsweep's fig1 study against a notebook loop, one Tune trial per seed, and the hardware limit.

One command, one process tree, the same data and work for every contender:

  (a) notebook: per seed a fresh torch.nn MLP, a DataLoader over a per-sample Dataset, one epoch,
      then every example scored through a DataLoader; seeds one after another, in this process;
  (b) one Ray Tune trial per seed (a fresh trial process each, Tune's default), running (a)'s code;
  (c) memsweep: `sweep launch fig1-difficulty` as a user runs it (process start, Ray start included);
  (d) the limit: the work's floating-point operations / the matmul rate measured here, now.

Workloads: `digits` (the preset: 100 seeds x {real, randX, randY}, 2 x 512 MLP, batch 16) and
`compute` (the paper's 2 x 4096 MLP, batch 256, on CIFAR-shaped synthetic data, first
--compute-train examples, train split scored). Plus (c)'s scaling with seeds and pack size.
Writes benchmarks/results.json and prints a table.

    python benchmarks/run.py            # about 15 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from trainables import corruption, data as datasets
from trainables.models import MLP

HERE = Path(__file__).resolve().parent
SWEEP = [sys.executable, "-m", "sweep.cli"]


# --- (a) the notebook way ---------------------------------------------------------------------

class PerSample(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def notebook_seed(data, seed: int, hidden, lr: float, momentum: float, batch_size: int,
                  splits=("train", "test")) -> float:
    """Train one MLP for one epoch and score every example; returns train accuracy."""
    torch.manual_seed(seed)
    model = MLP(int(np.prod(data.input_shape)), hidden, data.num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    loader = DataLoader(PerSample(data.train.x, data.train.y), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    acc = {}
    with torch.no_grad():
        for split in splits:
            s = data.split(split)
            hits = [(model(x).argmax(1) == y) for x, y in DataLoader(PerSample(s.x, s.y), batch_size=256)]
            acc[split] = torch.cat(hits).float().mean().item()
    return acc["train"]


def corrupted(dataset: str, variant: str, train_size: int | None = None):
    from sweep.spec import derive_seed

    d = datasets.load(dataset)
    if train_size:
        d = d.subset_train(train_size)
    return corruption.apply(d, variant, 0.0 if variant == "real" else 1.0,
                            derive_seed(0, "corruption", variant))[0]


def run_notebook(dataset, variants, seeds, hidden, lr, momentum, batch_size, train_size=None,
                 splits=("train", "test")) -> float:
    start = time.perf_counter()
    for variant in variants:
        d = corrupted(dataset, variant, train_size)
        for seed in range(seeds):
            notebook_seed(d, seed, hidden, lr, momentum, batch_size, splits)
    return time.perf_counter() - start


# --- (b) one Ray Tune trial per seed ----------------------------------------------------------

def _trial(config):
    from ray import tune

    torch.set_num_threads(1)
    d = corrupted(config["dataset"], config["variant"])
    acc = notebook_seed(d, config["seed"], config["hidden"], config["lr"], config["momentum"],
                        config["batch_size"])
    tune.report({"train_acc": acc})


def run_tune_per_seed(dataset, variants, seeds, hidden, lr, momentum, batch_size, storage) -> float:
    import ray
    from ray import tune

    start = time.perf_counter()
    ray.init(include_dashboard=False, logging_level="ERROR")
    tuner = tune.Tuner(
        tune.with_resources(_trial, {"cpu": 1}),
        param_space={"dataset": dataset, "variant": tune.grid_search(list(variants)),
                     "seed": tune.grid_search(list(range(seeds))), "hidden": hidden, "lr": lr,
                     "momentum": momentum, "batch_size": batch_size},
        run_config=tune.RunConfig(storage_path=storage, verbose=0))
    grid = tuner.fit()
    assert grid.num_errors == 0
    ray.shutdown()
    return time.perf_counter() - start


# --- (c) memsweep through its CLI -------------------------------------------------------------

def run_memsweep(dataset: str, sets: list[str]) -> tuple[float, pd.DataFrame]:
    with tempfile.TemporaryDirectory() as results:
        args = [*SWEEP, "launch", "fig1-difficulty", "--dataset", dataset, "--results", results]
        args += [a for s in sets for a in ("--set", s)]
        start = time.perf_counter()
        proc = subprocess.run(args, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        return seconds, pd.read_parquet(Path(results) / "fig1-difficulty" / "trials")


# --- (d) the limit ----------------------------------------------------------------------------

def matmul_peak(threads: int, n: int = 4096, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of an n x n matmul with `threads` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def mlp_flops(sizes: list[int], n_train: int, n_scored: int) -> tuple[float, float]:
    """(training, scoring) FLOPs of one seed-epoch: forward 2, weight gradients 2, input
    gradients 2 (none for the first layer) per multiply-add of each layer, per example."""
    macs = [i * o for i, o in zip(sizes[:-1], sizes[1:])]
    train = n_train * (6 * sum(macs) - 2 * macs[0])
    return float(train), float(2 * sum(macs) * n_scored)


# --- the run ----------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune-seeds", type=int, default=10, help="seeds per variant for (b)")
    parser.add_argument("--compute-seeds", type=int, default=10)
    parser.add_argument("--compute-train", type=int, default=5000)
    parser.add_argument("--notebook-compute-seeds", type=int, default=2)
    args = parser.parse_args()
    cores = os.cpu_count()
    out: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "cores": cores,
                 "torch": torch.__version__, "command": "python benchmarks/run.py"}
    peak_all, peak_one = matmul_peak(cores), matmul_peak(1)
    out["matmul_gflops"] = {"all_cores": round(peak_all, 1), "one_thread": round(peak_one, 1)}
    print(f"matmul peak: {peak_all:.1f} GFLOP/s ({cores} threads), {peak_one:.1f} (1 thread)", flush=True)
    torch.set_num_threads(cores)

    # digits: the preset's workload
    from sweep import spec as specs

    spec = specs.resolve("fig1-difficulty", "digits")
    kw = dict(hidden=spec.model.hidden, lr=spec.optimizer.lr, momentum=spec.optimizer.momentum,
              batch_size=spec.batch_size)
    variants, seeds = spec.variants, spec.seeds
    work = seeds * len(variants)  # seed-epochs
    t_a = run_notebook("digits", variants, seeds, **kw)
    print(f"digits (a) notebook: {t_a:.1f} s", flush=True)
    with tempfile.TemporaryDirectory() as storage:
        t_b_part = run_tune_per_seed("digits", variants, args.tune_seeds, storage=storage, **kw)
    t_b = t_b_part * seeds / args.tune_seeds  # same rate, all seeds
    print(f"digits (b) one trial per seed: {t_b_part:.1f} s for {args.tune_seeds * len(variants)} "
          f"seeds -> {t_b:.1f} s for {work}", flush=True)
    t_c, trials = run_memsweep("digits", [])
    print(f"digits (c) memsweep: {t_c:.1f} s", flush=True)
    train_f, score_f = mlp_flops([64, *spec.model.hidden, 10], 1437, 1797)
    t_d = work * (train_f + score_f) / (peak_all * 1e9)
    out["digits"] = {
        "seed_epochs": work,
        "seconds": {"a_notebook": round(t_a, 1), "b_trial_per_seed": round(t_b, 1),
                    "b_measured_on_seeds": args.tune_seeds * len(variants), "c_memsweep": round(t_c, 1),
                    "d_limit": round(t_d, 2)},
        "seed_epochs_per_s": {k: round(work / v, 2) for k, v in
                              (("a", t_a), ("b", t_b), ("c", t_c), ("d", t_d))},
        "ratios": {"a/c": round(t_a / t_c, 2), "b/c": round(t_b / t_c, 2), "c/d": round(t_c / t_d, 1)},
        "c_trial_peak_rss_mb": round(float(trials.peak_rss_mb.max()), 0),
        "c_trial_rss_growth_mb": round(float((trials.peak_rss_mb - trials.rss_before_mb).max()), 0),
        "notebook_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0),
    }
    print(json.dumps(out["digits"]["ratios"]), flush=True)

    # (c) scaling with seeds and with pack size
    scaling = {}
    for n in (50, 100, 200):
        t = t_c if n == 100 else run_memsweep("digits", [f"seeds={n}"])[0]
        scaling[f"seeds={n}"] = round(t, 1)
        print(f"digits (c) seeds={n}: {t:.1f} s", flush=True)
    for k in (5, 50, 100):
        t = run_memsweep("digits", [f"pack_size={k}"])[0]
        scaling[f"pack_size={k}"] = round(t, 1)
        print(f"digits (c) pack_size={k}: {t:.1f} s", flush=True)
    scaling["pack_size=20"] = round(t_c, 1)
    scaling["t200/t100"] = round(scaling["seeds=200"] / scaling["seeds=100"], 2)
    out["digits_scaling"] = scaling

    # compute-bound: 2 x 4096 on CIFAR-shaped synthetic data
    n, s = args.compute_train, args.compute_seeds
    ckw = dict(hidden=[4096, 4096], lr=0.01, momentum=0.0, batch_size=256)
    t_a = run_notebook("synthetic", ["real"], args.notebook_compute_seeds, train_size=n, splits=("train",),
                       **ckw) * s / args.notebook_compute_seeds
    print(f"compute (a) notebook: {t_a:.1f} s for {s} seeds (measured on {args.notebook_compute_seeds})",
          flush=True)
    t_c, trials = run_memsweep("synthetic", [f"seeds={s}", "variants=[real]", f"train_size={n}",
                                             "splits=[train]"])
    print(f"compute (c) memsweep: {t_c:.1f} s", flush=True)
    train_f, score_f = mlp_flops([3072, 4096, 4096, 10], n, n)
    t_d = s * (train_f + score_f) / (peak_all * 1e9)
    packs = trials.groupby("fragment").agg(k=("seed", "size"), train_seconds=("train_seconds", "first"))
    achieved = (packs.k * train_f / packs.train_seconds).mean() / 1e9  # per trial (1 thread each)
    out["compute"] = {
        "seed_epochs": s, "train_examples": n, "pack_size": int(packs.k.max()),
        "seconds": {"a_notebook": round(t_a, 1), "c_memsweep": round(t_c, 1), "d_limit": round(t_d, 1)},
        "ratios": {"a/c": round(t_a / t_c, 2), "c/d": round(t_c / t_d, 2)},
        "training_gflops_per_trial": round(achieved, 1),
        "training_fraction_of_one_thread_peak": round(achieved / peak_one, 3),
        "c_trial_peak_rss_mb": round(float(trials.peak_rss_mb.max()), 0),
        "c_trial_rss_growth_mb": round(float((trials.peak_rss_mb - trials.rss_before_mb).max()), 0),
        "memory_budget_mb": 2 * 1024,
    }
    print(json.dumps(out["compute"]), flush=True)
    (HERE / "results.json").write_text(json.dumps(out, indent=1))
    print(f"wrote {HERE / 'results.json'}")


def machine() -> str:
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor()
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"


if __name__ == "__main__":
    main()
