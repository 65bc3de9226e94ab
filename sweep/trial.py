"""The trial entry point Ray Tune runs in a worker: one cell x one pack of seeds.

It depends only on its config (a dict made by `sweep.launcher.trial_config`):
it picks its device (CUDA when Ray gave it a GPU, else CPU) and thread count,
loads and corrupts the data, runs the packed engine, writes its fragment to the
store and reports a small summary to Tune.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import time
from typing import Any

import numpy as np
import pyarrow as pa

from sweep.spec import DifficultySpec, TrialPlan, derive_seed
from sweep.store import SCHEMA_VERSION, Store


def run(config: dict[str, Any]) -> None:
    """Ray Tune function trainable (see DESIGN.md, "The data flow")."""
    import ray
    import torch
    from ray import tune

    from trainables import corruption, data as datasets, packed

    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    spec = DifficultySpec.model_validate(config["spec"])
    plan = TrialPlan(**config["plan"])
    torch.set_num_threads(max(1, int(config["cpus"])))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    data = datasets.load(spec.dataset, config["data_root"], device)
    clean_labels = data.train.y
    corruption_seed = derive_seed(spec.seed, "corruption", plan.cell)
    p = 0.0 if plan.variant == "real" else spec.corruption.p
    data, mask = corruption.apply(data, plan.variant, p, corruption_seed)

    seeds = range(plan.seed_lo, plan.seed_hi)
    init_seeds = [derive_seed(spec.seed, "init", s) for s in seeds]
    order_seeds = [derive_seed(spec.seed, "order", s) for s in seeds]
    (c, h, w), classes = data.input_shape, data.num_classes
    budget = int(spec.memory_budget_gb * 2**30)
    records = packed.train_packed(
        data, hidden=spec.model.hidden, init_seeds=init_seeds, order_seeds=order_seeds,
        scored_epochs=spec.epochs, lr=spec.optimizer.lr, momentum=spec.optimizer.momentum,
        batch_size=spec.batch_size, splits=spec.splits,
        chunk=packed.score_chunk(budget, len(init_seeds), c * h * w, spec.model.hidden, classes,
                                 spec.batch_size),
        on_scored=lambda r: tune.report(_summary(r, done=False)),
    )
    finished = dt.datetime.now(dt.timezone.utc)

    labels = {"train": data.train.y.cpu().numpy(), "test": data.test.y.cpu().numpy()}
    true_labels = {"train": clean_labels.cpu().numpy(), "test": labels["test"]}
    corrupted = {"train": mask.cpu().numpy(), "test": np.zeros(len(labels["test"]), dtype=bool)}
    keys = {"cell": plan.cell, "variant": plan.variant}
    versions = dict(config["provenance"].get("versions", {}), torch=torch.__version__,
                    python=platform.python_version())
    resources = ray.get_runtime_context().get_assigned_resources()
    tables = {
        "examples": examples_table(records, list(seeds), labels, true_labels, corrupted, keys),
        "epochs": epochs_table(records, list(seeds), keys),
        "trials": trials_table(
            records, list(seeds), keys, spec=spec, plan=plan, trial_id=tune.get_context().get_trial_id(),
            init_seeds=init_seeds, order_seeds=order_seeds, corruption_seed=corruption_seed,
            n_corrupted=int(corrupted["train"].sum()), started=started, finished=finished,
            wall_seconds=time.perf_counter() - t0, device=str(device), resources=resources,
            versions=versions, git_rev=config["provenance"].get("git_rev")),
    }
    Store(config["results"], spec.name).write_fragment(plan.fragment, tables, {
        "sweep": spec.name, "fragment": plan.fragment, "spec": spec.model_dump(),
        "spec_hash": spec.hash(), "versions": versions, "git_rev": config["provenance"].get("git_rev"),
    })
    tune.report(_summary(records[-1], done=True))


def _summary(record, done: bool) -> dict[str, float]:
    out = {"epoch": record.epoch, "stored": done,
           "running_loss": float(record.running_loss.mean())}
    for split, scores in record.splits.items():
        out[f"{split}_acc"] = float(scores.correct.mean())
    return out


def _dict_column(value: str, n: int) -> pa.DictionaryArray:
    """A constant string column, dictionary-encoded (pandas reads it as a categorical)."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([value]))


def examples_table(records, seeds: list[int], labels: dict[str, np.ndarray],
                   true_labels: dict[str, np.ndarray], corrupted: dict[str, np.ndarray],
                   keys: dict[str, str]) -> pa.Table:
    """One row per seed x scored epoch x split x example; rows ordered that way (example fastest)."""
    parts = []
    for r in records:
        for split, s in r.splits.items():
            k, n = s.correct.shape
            rows = k * n
            parts.append(pa.table({
                **{name: _dict_column(value, rows) for name, value in keys.items()},
                "seed": pa.array(np.repeat(np.asarray(seeds, dtype=np.int32), n)),
                "epoch": pa.array(np.full(rows, r.epoch, dtype=np.int16)),
                "split": _dict_column(split, rows),
                "index": pa.array(np.tile(np.arange(n, dtype=np.int32), k)),
                "label": pa.array(np.tile(labels[split].astype(np.int16), k)),
                "true_label": pa.array(np.tile(true_labels[split].astype(np.int16), k)),
                "corrupted": pa.array(np.tile(corrupted[split], k)),
                "pred": pa.array(s.pred.astype(np.int16).ravel()),
                "correct": pa.array(s.correct.ravel()),
                "p_label": pa.array(s.p_label.astype(np.float32).ravel()),
                "loss": pa.array(s.loss.astype(np.float32).ravel()),
            }))
    # Kept as one chunk per (epoch, split) block: the store writes each as a row group.
    return pa.concat_tables(parts, promote_options="permissive")


def _split_metric(record, split: str, metric: str) -> np.ndarray:
    s = record.splits.get(split)
    k = len(record.running_loss)
    if s is None:
        return np.full(k, np.nan, dtype=np.float32)
    values = s.correct if metric == "acc" else s.loss
    return values.mean(axis=1).astype(np.float32)


def epochs_table(records, seeds: list[int], keys: dict[str, str]) -> pa.Table:
    """One row per seed x scored epoch: full-set train/test loss and accuracy with the model fixed."""
    k = len(seeds)
    parts = []
    for r in records:
        parts.append(pa.table({
            **{name: _dict_column(value, k) for name, value in keys.items()},
            "seed": pa.array(np.asarray(seeds, dtype=np.int32)),
            "epoch": pa.array(np.full(k, r.epoch, dtype=np.int16)),
            "step": pa.array(np.full(k, r.step, dtype=np.int64)),
            "wall_seconds": pa.array(np.full(k, r.wall_seconds)),
            "lr": pa.array(np.full(k, r.lr)),
            "running_loss": pa.array(r.running_loss.astype(np.float32)),
            "running_acc": pa.array(r.running_acc.astype(np.float32)),
            **{f"{split}_{m}": pa.array(_split_metric(r, split, m))
               for split in ("train", "test") for m in ("loss", "acc")},
        }))
    return pa.concat_tables(parts, promote_options="permissive").combine_chunks()


def trials_table(records, seeds: list[int], keys: dict[str, str], *, spec: DifficultySpec,
                 plan: TrialPlan, trial_id: str, init_seeds: list[int], order_seeds: list[int],
                 corruption_seed: int, n_corrupted: int, started: dt.datetime,
                 finished: dt.datetime, wall_seconds: float, device: str,
                 resources: dict[str, float], versions: dict[str, str],
                 git_rev: str | None) -> pa.Table:
    """One row per trained model (seed) of the pack, with its final metrics and provenance."""
    k, last = len(seeds), records[-1]
    const = {
        "sweep": spec.name, "fragment": plan.fragment, "trial_id": trial_id, "status": "completed",
        "dataset": spec.dataset, "arch": "mlp-" + "x".join(map(str, spec.model.hidden)),
        "device": device, "config": json.dumps(spec.model_dump(), sort_keys=True),
        "resources": json.dumps(resources, sort_keys=True), "versions": json.dumps(versions, sort_keys=True),
        "git_rev": git_rev or "",
    }
    return pa.table({
        **{name: _dict_column(value, k) for name, value in keys.items()},
        "seed": pa.array(np.asarray(seeds, dtype=np.int32)),
        **{name: pa.array([value] * k, pa.string()) for name, value in const.items()},
        "pack": pa.array(np.full(k, plan.pack, dtype=np.int32)),
        "pack_size": pa.array(np.full(k, k, dtype=np.int32)),
        "corruption_p": pa.array(np.full(k, 0.0 if plan.variant == "real" else spec.corruption.p)),
        "n_corrupted": pa.array(np.full(k, n_corrupted, dtype=np.int64)),
        "init_seed": pa.array(np.asarray(init_seeds, dtype=np.uint64)),
        "order_seed": pa.array(np.asarray(order_seeds, dtype=np.uint64)),
        "corruption_seed": pa.array(np.full(k, corruption_seed, dtype=np.uint64)),
        "epochs_trained": pa.array(np.full(k, last.epoch, dtype=np.int32)),
        "steps": pa.array(np.full(k, last.step, dtype=np.int64)),
        "wall_seconds": pa.array(np.full(k, wall_seconds)),  # the whole pack's, shared by its seeds
        "started_at": pa.array([started] * k, pa.timestamp("ms", tz="UTC")),
        "finished_at": pa.array([finished] * k, pa.timestamp("ms", tz="UTC")),
        **{f"final_{split}_{m}": pa.array(_split_metric(last, split, m))
           for split in ("train", "test") for m in ("loss", "acc")},
        "schema_version": pa.array(np.full(k, SCHEMA_VERSION, dtype=np.int16)),
    })
