"""The trial entry point Ray Tune runs in a worker: one cell x one pack of seeds.

It depends only on its config (a dict made by `sweep.launcher.trial_config`):
it picks its device (CUDA when Ray gave it a GPU, else CPU) and thread count,
loads and corrupts the data, runs the packed engine, writes its fragment to the
store and reports a small summary to Tune.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import time
from typing import Any

import numpy as np
import pyarrow as pa

from sweep.spec import ConvergenceSpec, DifficultySpec, Spec, TrialPlan, derive_seed, parse_corruption, validate
from sweep.store import SCHEMA_VERSION, Store


def run(config: dict[str, Any]) -> None:
    """Ray Tune function trainable (see DESIGN.md, "The data flow")."""
    import torch

    # Ray logs every persisted checkpoint at INFO in the worker, which floods the driver's
    # terminal with one line per checkpoint; the progress lines say what matters.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    spec = validate(config["spec"])
    plan = TrialPlan(**config["plan"])
    torch.set_num_threads(max(1, int(config["cpus"])))
    if isinstance(spec, ConvergenceSpec):
        _run_interpolate(config, spec, plan)
    else:
        _run_packed(config, spec, plan)


def _context(config: dict[str, Any]) -> dict[str, Any]:
    """What every trial records of where and how it ran."""
    import ray
    import torch
    from ray import tune

    return {"trial_id": tune.get_context().get_trial_id(), "node_id": ray.get_runtime_context().get_node_id(),
            "resources": ray.get_runtime_context().get_assigned_resources(),
            "device": torch.device("cuda" if torch.cuda.is_available() else "cpu"),
            "versions": dict(config["provenance"].get("versions", {}), torch=torch.__version__,
                             python=platform.python_version()),
            "git_rev": config["provenance"].get("git_rev")}


def _store(config: dict[str, Any], spec: Spec, plan: TrialPlan, tables: dict[str, pa.Table],
           ctx: dict[str, Any]) -> None:
    Store(config["results"], spec.name).write_fragment(plan.fragment, tables, {
        "sweep": spec.name, "fragment": plan.fragment, "spec": spec.model_dump(),
        "spec_hash": spec.hash(), "versions": ctx["versions"], "git_rev": ctx["git_rev"]})


def _rss_mb() -> float:
    """The process's resident memory now, MiB (Linux /proc; NaN elsewhere)."""
    try:
        pages = int(open("/proc/self/statm").read().split()[1])
    except OSError:
        return float("nan")
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_memory(k: int, device) -> dict[str, np.ndarray]:
    """The trial process's peak resident memory (MiB; the worker's lifetime peak, so with reused
    actors it covers earlier trials too) and, on CUDA, the peak of allocated tensors (MiB)."""
    import resource

    import torch

    cuda = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else np.nan
    return {"peak_rss_mb": np.full(k, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "peak_cuda_mb": np.full(k, cuda)}


def _labels(data, clean_train, mask) -> tuple[dict, dict, dict]:
    """(labels used, original labels, corrupted mask) per split, as numpy."""
    labels = {"train": data.train.y.cpu().numpy(), "test": data.test.y.cpu().numpy()}
    true_labels = {"train": clean_train.cpu().numpy(), "test": labels["test"]}
    corrupted = {"train": mask.cpu().numpy(), "test": np.zeros(len(labels["test"]), dtype=bool)}
    return labels, true_labels, corrupted


def _run_packed(config: dict[str, Any], spec: DifficultySpec, plan: TrialPlan) -> None:
    import torch
    from ray import tune

    from trainables import corruption, data as datasets, packed

    started, t0, ctx = dt.datetime.now(dt.timezone.utc), time.perf_counter(), _context(config)
    data = datasets.load(spec.dataset, config["data_root"], ctx["device"])
    if spec.train_size is not None:
        data = data.subset_train(spec.train_size)
    if spec.precision == "tf32":
        torch.backends.cuda.matmul.allow_tf32 = True  # CUDA only; a no-op on the CPU
    clean_labels = data.train.y
    corruption_seed = derive_seed(spec.seed, "corruption", plan.cell)
    p = 0.0 if plan.variant == "real" else spec.corruption.p
    rss_before = _rss_mb()
    data, mask = corruption.apply(data, plan.variant, p, corruption_seed)

    seeds = list(range(plan.seed_lo, plan.seed_hi))
    init_seeds = [derive_seed(spec.seed, "init", s) for s in seeds]
    order_seeds = [derive_seed(spec.seed, "order", s) for s in seeds]
    (c, h, w), classes = data.input_shape, data.num_classes
    budget = int(spec.memory_budget_gb * 2**30)
    init_norms: dict[str, np.ndarray] = {}

    def on_start(model) -> None:
        init_norms.update({name: v.cpu().numpy() for name, v in model.layer_norms().items()})

    records = packed.train_packed(
        data, hidden=spec.model.hidden, init_seeds=init_seeds, order_seeds=order_seeds,
        scored_epochs=spec.epochs, lr=spec.optimizer.lr, momentum=spec.optimizer.momentum,
        batch_size=spec.batch_size, splits=spec.splits,
        autocast=torch.bfloat16 if spec.precision == "bf16" else None,
        chunk=packed.score_chunk(budget, len(init_seeds), c * h * w, spec.model.hidden, classes,
                                 spec.batch_size),
        norms=spec.norms, on_start=on_start if spec.norms else None,
        on_scored=lambda r: tune.report(_summary(r, done=False)),
    )
    keys = {"cell": plan.cell, "variant": plan.variant}
    labels, true_labels, corrupted = _labels(data, clean_labels, mask)
    last = records[-1]
    tables = {
        "examples": examples_table(records, seeds, labels, true_labels, corrupted, keys, spec.record_dtype),
        "epochs": epochs_table(records, seeds, keys),
        "trials": trials_table(
            last, seeds, keys, spec=spec, plan=plan, ctx=ctx, arch="mlp-" + "x".join(map(str, spec.model.hidden)),
            started=started, wall_seconds=time.perf_counter() - t0, columns={
                "corruption_p": np.full(len(seeds), p),
                "n_corrupted": np.full(len(seeds), int(corrupted["train"].sum()), dtype=np.int64),
                "init_seed": np.asarray(init_seeds, dtype=np.uint64),
                "order_seed": np.asarray(order_seeds, dtype=np.uint64),
                "corruption_seed": np.full(len(seeds), corruption_seed, dtype=np.uint64),
                "rss_before_mb": np.full(len(seeds), rss_before),
                **_peak_memory(len(seeds), ctx["device"])}),
    }
    if spec.norms:
        tables["norms"] = norms_table(records, seeds, keys, init_norms)
    _store(config, spec, plan, tables, ctx)
    tune.report(_summary(last, done=True))


def _run_interpolate(config: dict[str, Any], spec: ConvergenceSpec, plan: TrialPlan) -> None:
    """One model of one arch on one corruption until it interpolates (or for the spec's epochs);
    optionally two-phase (catastrophic forgetting), with early stopping and probes. Checkpoints
    every `checkpoint_every` epochs with tune.Checkpoint and resumes from the latest one."""
    import tempfile

    import torch
    from ray import tune

    from sweep import checkpoint as checkpoint_file
    from trainables import corruption, data as datasets, models, probes
    from trainables.interpolate import Outcome, train_until_interpolation

    started, t0, ctx = dt.datetime.now(dt.timezone.utc), time.perf_counter(), _context(config)
    data = datasets.load(spec.dataset, config["data_root"], ctx["device"],
                         normalize=spec.preprocess.normalize, crop=spec.preprocess.crop)
    val_kind, val_p = parse_corruption(spec.validation.corruption)
    if spec.validation.size:
        # Carved before any corruption, with a fixed draw: every cell holds out the same images.
        data = data.carve_validation(spec.validation.size, seed=derive_seed(spec.seed, "validation", 0))
    clean_labels = data.train.y
    kind, p = parse_corruption(plan.variant)
    # One draw per corruption, shared by every arch and seed: they all fit the same data set.
    corruption_seed = derive_seed(spec.seed, "corruption", plan.variant)
    data, mask = corruption.apply(data, kind, p, corruption_seed)
    val_mask = None
    if data.val is not None:
        clean_val = data.val.y
        data, val_mask = corruption.apply_to_validation(data, val_kind, val_p,
                                                        derive_seed(spec.seed, "val-corruption", 0))

    seed = plan.seed_lo
    init_seed, order_seed = derive_seed(spec.seed, "init", seed), derive_seed(spec.seed, "order", seed)
    with torch.random.fork_rng(devices=[]):  # the init seed, without touching the caller's RNG
        torch.manual_seed(init_seed)
        model = models.build(plan.arch, data.input_shape, data.num_classes,
                             wrn_depth=spec.wrn.depth, wrn_widen=spec.wrn.widen)
    model = model.to(ctx["device"])

    # What the probes recorded so far; saved in every checkpoint with the training state.
    found: dict[str, Any] = {"phase": 1, "phase1": None, "probes": [], "filters": [], "init_norms": {}}
    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            resume = checkpoint_file.load(f"{folder}/state.pt", ctx["device"])
        found = resume.pop("found")
    elif spec.norms:
        found["init_norms"] = {k: np.asarray([v]) for k, v in models.layer_norms(model).items()}
    resumed_from = resume["epoch"] if resume is not None else None

    def csr(epoch: int) -> None:
        c = spec.probes.csr
        x = data.split(c.split).x[:c.n]
        gen = torch.Generator().manual_seed(derive_seed(spec.seed, "lass", f"{seed}:{epoch}"))
        out = probes.critical_sample_ratio(model, x, pixel_scale=data.pixel_scale, alpha=c.alpha, beta=c.beta,
                                           r=c.r, iters=c.iters, generator=gen)
        found["probes"].append({"probe": "csr", "epoch": epoch, "split": c.split, "sigma": np.nan, "draw": 0,
                                "value": out.ratio, "n": len(x)})

    def filters(epoch: int) -> None:
        found["filters"].append((epoch, probes.first_layer_filters(model)))

    if checkpoint is None and spec.probes.csr is not None:
        csr(0)  # at initialization
    if checkpoint is None and spec.probes.filters is not None:
        filters(0)  # at initialization: what training changed is measured against it

    def on_epoch(record, state) -> None:
        if spec.probes.csr is not None and record.epoch % spec.probes.csr.every == 0:
            csr(record.epoch)
        if spec.probes.filters is not None and record.epoch in spec.probes.filters.epochs:
            filters(record.epoch)
        metrics = _summary(record, done=False)
        if record.epoch % spec.checkpoint_every == 0:
            with tempfile.TemporaryDirectory() as folder:
                checkpoint_file.save({**state(), "found": found}, f"{folder}/state.pt")
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        else:
            tune.report(metrics)

    lr = spec.optimizer.lr_for(plan.arch)
    common = dict(order_seed=order_seed, lr=lr, momentum=spec.optimizer.momentum,
                  lr_decay=spec.optimizer.lr_decay, lr_step_every=spec.optimizer.lr_step_every,
                  lr_step_factor=spec.optimizer.lr_step_factor, batch_size=spec.batch_size,
                  keep_examples=spec.record_splits if spec.record_examples else (),
                  keep_every=spec.record_every, norms=spec.norms, on_epoch=on_epoch)
    two_phase = spec.phase2_epochs > 0
    if found["phase"] == 1:
        out = train_until_interpolation(
            model, data, threshold=spec.threshold, max_epochs=spec.max_epochs, time_budget_s=spec.time_budget_s,
            fit_splits=("train", "val") if two_phase else ("train",), patience=spec.early_stopping.patience,
            stop_early=spec.early_stopping.stop, resume=resume, **common)
        resume = out.state
        if two_phase:
            found["phase1"] = {k: getattr(out, k) for k in (
                "stop_reason", "reached_epoch", "reached_step", "reached_train_seconds", "reached_wall_seconds")}
            found["phase1"]["boundary"] = out.records[-1].epoch
            found["phase"] = 2
    if two_phase:  # phase 2: the training split alone, phase2_epochs more
        boundary = found["phase1"]["boundary"]
        final = train_until_interpolation(
            model, data, threshold=None, max_epochs=boundary + spec.phase2_epochs, time_budget_s=None,
            fit_splits=("train",), resume=resume, **common)
        phase1 = {k: v for k, v in found["phase1"].items() if k != "boundary"}
        out = Outcome(final.records, **phase1, best_epoch=final.best_epoch)
    if spec.probes.filters is not None and len(found["filters"]) < 2:
        filters(out.records[-1].epoch)  # stopped before the listed epochs: the final model's
    if spec.probes.weight_noise is not None:
        wn = spec.probes.weight_noise
        gen = torch.Generator().manual_seed(derive_seed(spec.seed, "weight-noise", seed))
        rows = probes.weight_noise_accuracy(model, {s: (data.split(s).x, data.split(s).y) for s in wn.splits},
                                            wn.sigmas, wn.draws, generator=gen)
        found["probes"] += [{"probe": "weight_noise", "epoch": out.records[-1].epoch, "split": r["split"],
                             "sigma": r["sigma"], "draw": r["draw"], "value": r["acc"],
                             "n": len(data.split(r["split"]))} for r in rows]

    keys = {"cell": plan.cell, "variant": plan.variant, "arch": plan.arch}
    labels, true_labels, corrupted = _labels(data, clean_labels, mask)
    if data.val is not None:
        labels["val"], true_labels["val"] = data.val.y.cpu().numpy(), clean_val.cpu().numpy()
        corrupted["val"] = val_mask.cpu().numpy()
    at = next((r for r in out.records if r.epoch == out.reached_epoch), None)
    nan = np.nan
    boundary = found["phase1"]["boundary"] if two_phase else None

    def one(value, dtype=None):
        return np.asarray([value], dtype=dtype)

    columns = {
        "corruption_kind": pa.array([kind]), "corruption_p": one(p),
        "n_corrupted": one(int(corrupted["train"].sum()), np.int64),
        "params": one(models.param_count(model), np.int64), "lr": one(lr),
        "init_seed": one(init_seed, np.uint64), "order_seed": one(order_seed, np.uint64),
        "corruption_seed": one(corruption_seed, np.uint64),
        "stop_reason": pa.array([out.stop_reason]), "interpolated": one(out.interpolated),
        "interp_epoch": pa.array([out.reached_epoch], pa.int32()),
        "interp_step": pa.array([out.reached_step], pa.int64()),
        "interp_train_seconds": one(out.reached_train_seconds if at else nan, np.float64),
        "interp_wall_seconds": one(out.reached_wall_seconds if at else nan, np.float64),
        "interp_train_acc": one(at.acc["train"][0] if at else nan, np.float32),
        "interp_test_acc": one(at.acc["test"][0] if at else nan, np.float32),
        "resumed_from_epoch": pa.array([resumed_from], pa.int32()),
    }
    if data.val is not None:
        best = next(r for r in out.records if r.epoch == out.best_epoch)
        columns.update({
            "val_size": one(len(data.val), np.int32), "val_corruption": pa.array([spec.validation.corruption]),
            "phase1_epochs": pa.array([boundary], pa.int32()),
            "best_epoch": pa.array([out.best_epoch], pa.int32()),
            "early_stop_epoch": pa.array([out.early_stop_epoch], pa.int32()),
            **{f"best_{s}_acc": one(best.acc[s][0], np.float32) for s in ("train", "val", "test")}})
    tables = {
        "epochs": epochs_table(out.records, [seed], keys, boundary),
        "trials": trials_table(
            out.records[-1], [seed], {"cell": plan.cell, "variant": plan.variant}, spec=spec, plan=plan,
            ctx=ctx, arch=plan.arch, started=started, wall_seconds=time.perf_counter() - t0, columns=columns),
    }
    if spec.record_examples:
        tables["examples"] = examples_table(out.records, [seed], labels, true_labels, corrupted, keys,
                                            spec.record_dtype)
    if spec.norms:
        tables["norms"] = norms_table(out.records, [seed], keys, found["init_norms"])
    if found["probes"]:
        tables["probes"] = probes_table(found["probes"], seed, keys)
    if found["filters"]:
        tables["filters"] = filters_table(found["filters"], seed, keys)
    _store(config, spec, plan, tables, ctx)
    tune.report(_summary(out.records[-1], done=True))


def _summary(record, done: bool) -> dict[str, float]:
    out = {"epoch": record.epoch, "stored": done, "running_loss": float(record.running_loss.mean())}
    for split, acc in record.acc.items():
        out[f"{split}_acc"] = float(acc.mean())
    return out


def _dict_column(value: str, n: int) -> pa.DictionaryArray:
    """A constant string column, dictionary-encoded (pandas reads it as a categorical)."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([value]))


def examples_table(records, seeds: list[int], labels: dict[str, np.ndarray],
                   true_labels: dict[str, np.ndarray], corrupted: dict[str, np.ndarray],
                   keys: dict[str, str], dtype: str = "float32") -> pa.Table:
    """One row per seed x scored epoch x split x example; rows ordered that way (example fastest).
    p_label, loss and el2n are stored as `dtype` (float32 or float16)."""
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
                "p_label": pa.array(s.p_label.astype(dtype).ravel()),
                "loss": pa.array(s.loss.astype(dtype).ravel()),
                "el2n": pa.array(s.el2n.astype(dtype).ravel()),
            }))
    # Kept as one chunk per (epoch, split) block: the store writes each as a row group.
    return pa.concat_tables(parts, promote_options="permissive")


def _split_metric(record, split: str, metric: str) -> np.ndarray:
    values = (record.acc if metric == "acc" else record.loss).get(split)
    if values is None:  # split not scored
        return np.full(len(record.running_loss), np.nan, dtype=np.float32)
    return np.asarray(values, dtype=np.float32)


def _total_norm(norms: dict[str, np.ndarray], k: int) -> np.ndarray:
    if not norms:
        return np.full(k, np.nan, dtype=np.float32)
    return np.sqrt(sum(np.square(np.asarray(v, dtype=np.float64)) for v in norms.values())).astype(np.float32)


def epochs_table(records, seeds: list[int], keys: dict[str, str], phase_boundary: int | None = None) -> pa.Table:
    """One row per seed x scored epoch: full-set loss and accuracy of each split with the model
    fixed (val only when a validation split was carved), the whole model's weight norm, and
    (two-phase runs) the phase of the epoch."""
    k = len(seeds)
    splits = ["train", "test"] + (["val"] if any("val" in r.acc for r in records) else [])
    parts = []
    for r in records:
        phase = {} if phase_boundary is None else {
            "phase": pa.array(np.full(k, 1 if r.epoch <= phase_boundary else 2, dtype=np.int8))}
        parts.append(pa.table({
            **{name: _dict_column(value, k) for name, value in keys.items()},
            "seed": pa.array(np.asarray(seeds, dtype=np.int32)),
            "epoch": pa.array(np.full(k, r.epoch, dtype=np.int16)),
            **phase,
            "step": pa.array(np.full(k, r.step, dtype=np.int64)),
            "wall_seconds": pa.array(np.full(k, r.wall_seconds)),
            "train_seconds": pa.array(np.full(k, r.train_seconds)),
            "lr": pa.array(np.full(k, r.lr)),
            "running_loss": pa.array(r.running_loss.astype(np.float32)),
            "running_acc": pa.array(r.running_acc.astype(np.float32)),
            **{f"{split}_{m}": pa.array(_split_metric(r, split, m)) for split in splits for m in ("loss", "acc")},
            "weight_norm": pa.array(_total_norm(r.norms, k)),
        }))
    return pa.concat_tables(parts, promote_options="permissive").combine_chunks()


def norms_table(records, seeds: list[int], keys: dict[str, str], init: dict[str, np.ndarray]) -> pa.Table:
    """One row per seed x evaluation point x layer (epoch 0: at initialization), plus a row
    per seed x evaluation point for the whole model (layer 'total')."""
    k = len(seeds)
    points = ([(0, init)] if init else []) + [(r.epoch, r.norms) for r in records if r.norms]
    parts = []
    for epoch, norms in points:
        names = [*norms, "total"]
        values = np.stack([*(np.asarray(v, dtype=np.float32) for v in norms.values()), _total_norm(norms, k)])
        rows = len(names) * k
        parts.append(pa.table({
            **{name: _dict_column(value, rows) for name, value in keys.items()},
            "seed": pa.array(np.tile(np.asarray(seeds, dtype=np.int32), len(names))),
            "epoch": pa.array(np.full(rows, epoch, dtype=np.int16)),
            "layer": pa.array(np.repeat(names, k)).dictionary_encode(),
            "layer_index": pa.array(np.repeat(np.arange(len(names), dtype=np.int16), k)),
            "norm": pa.array(values.ravel()),
        }))
    return pa.concat_tables(parts).combine_chunks()


def probes_table(rows: list[dict[str, Any]], seed: int, keys: dict[str, str]) -> pa.Table:
    """One row per probe measurement: csr (value = critical / searched, per epoch) and
    weight_noise (value = accuracy, per split x sigma x draw, after training)."""
    n = len(rows)

    def col(name, dtype):
        return pa.array(np.asarray([r[name] for r in rows], dtype=dtype))

    return pa.table({
        **{name: _dict_column(value, n) for name, value in keys.items()},
        "seed": pa.array(np.full(n, seed, dtype=np.int32)),
        "probe": pa.array([r["probe"] for r in rows]).dictionary_encode(),
        "epoch": col("epoch", np.int16),
        "split": pa.array([r["split"] for r in rows]).dictionary_encode(),
        "sigma": col("sigma", np.float32),
        "draw": col("draw", np.int16),
        "value": col("value", np.float32),
        "n": col("n", np.int32),
    })


def filters_table(found: list[tuple[int, np.ndarray]], seed: int, keys: dict[str, str]) -> pa.Table:
    """One row per recorded epoch x first-layer filter: its weights flattened (C x kH x kW,
    row-major) as a list<float32> column, with the shape to restore them."""
    parts = []
    for epoch, w in found:
        f, c, kh, kw = w.shape
        flat = w.reshape(f, -1).astype(np.float32)
        parts.append(pa.table({
            **{name: _dict_column(value, f) for name, value in keys.items()},
            "seed": pa.array(np.full(f, seed, dtype=np.int32)),
            "epoch": pa.array(np.full(f, epoch, dtype=np.int16)),
            "filter": pa.array(np.arange(f, dtype=np.int32)),
            "channels": pa.array(np.full(f, c, dtype=np.int16)),
            "height": pa.array(np.full(f, kh, dtype=np.int16)),
            "width": pa.array(np.full(f, kw, dtype=np.int16)),
            "weights": pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), c * kh * kw),
        }))
    return pa.concat_tables(parts).combine_chunks()


def trials_table(last, seeds: list[int], keys: dict[str, str], *, spec: Spec, plan: TrialPlan,
                 ctx: dict[str, Any], arch: str, started: dt.datetime, wall_seconds: float,
                 columns: dict[str, Any]) -> pa.Table:
    """One row per trained model (seed) of the trial: identity, provenance, the final record's
    full-set metrics, and the engine's own `columns` (arrays of one value per seed)."""
    k = len(seeds)
    finished = dt.datetime.now(dt.timezone.utc)
    const = {
        "sweep": spec.name, "fragment": plan.fragment, "trial_id": ctx["trial_id"], "status": "completed",
        "dataset": spec.dataset, "arch": arch, "device": str(ctx["device"]), "node_id": ctx["node_id"],
        "config": json.dumps(spec.model_dump(), sort_keys=True),
        "resources": json.dumps(ctx["resources"], sort_keys=True),
        "versions": json.dumps(ctx["versions"], sort_keys=True), "git_rev": ctx["git_rev"] or "",
    }
    return pa.table({
        **{name: _dict_column(value, k) for name, value in keys.items()},
        "seed": pa.array(np.asarray(seeds, dtype=np.int32)),
        **{name: pa.array([value] * k, pa.string()) for name, value in const.items()},
        "pack": pa.array(np.full(k, plan.pack, dtype=np.int32)),
        "pack_size": pa.array(np.full(k, k, dtype=np.int32)),
        **{name: value if isinstance(value, pa.Array) else pa.array(value) for name, value in columns.items()},
        "epochs_trained": pa.array(np.full(k, last.epoch, dtype=np.int32)),
        "steps": pa.array(np.full(k, last.step, dtype=np.int64)),
        "wall_seconds": pa.array(np.full(k, wall_seconds)),  # the whole trial's, shared by its seeds
        "train_seconds": pa.array(np.full(k, last.train_seconds)),
        "started_at": pa.array([started] * k, pa.timestamp("ms", tz="UTC")),
        "finished_at": pa.array([finished] * k, pa.timestamp("ms", tz="UTC")),
        **{f"final_{split}_{m}": pa.array(_split_metric(last, split, m))
           for split in ("train", "test") for m in ("loss", "acc")},
        "schema_version": pa.array(np.full(k, SCHEMA_VERSION, dtype=np.int16)),
    })
