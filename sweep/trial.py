"""The trial entry point Ray Tune runs in a worker: one pack of models.

A short composition. It depends only on its config (a dict made by
`sweep.launcher.trial_config`): it picks its device (CUDA when Ray gave it a GPU, else CPU)
and thread count, loads and corrupts the data (`sweep.job`), trains the pack on the one
engine (`trainables.engine`), saving a `tune.Checkpoint` every `checkpoint_every` epochs of a
convergence run and resuming from the latest one, writes its fragment to the store
(`sweep.tables`) and reports a small summary to Tune.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import platform
import tempfile
import time
from typing import Any

import numpy as np
import pyarrow as pa

from sweep import tables as T
from sweep.planner import TrialPlan
from sweep.spec import ConvergenceSpec, validate
from sweep.store import Store


def run(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: the composition the module docstring describes."""
    import torch
    from ray import tune

    from sweep import job as jobs

    # Ray logs every persisted checkpoint at INFO in the worker, which floods the driver's
    # terminal with one line per checkpoint; the progress lines say what matters.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    sweep, plan = validate(config["spec"]), TrialPlan(**config["plan"])
    spec = jobs.trial_spec(sweep, plan)  # with the trial's values of the axes (sweep/axes.py)
    torch.set_num_threads(max(1, int(config["cpus"])))
    started, t0, ctx = dt.datetime.now(dt.UTC), time.perf_counter(), _context(config)
    if getattr(spec, "precision", "fp32") == "tf32":
        torch.backends.cuda.matmul.allow_tf32 = True  # CUDA only; a no-op on the CPU
    job = jobs.with_axes(sweep, plan, jobs.prepare(spec, plan, config["data_root"], ctx["device"]))
    rss_before = _rss_mb()
    if isinstance(spec, ConvergenceSpec):  # the plan's pack, with checkpoints and probes
        tables, extra = _converge_trial(spec, plan, job, ctx, started, t0)
    else:  # fig1 and subset sweeps: the trial's seeds in packs sized to the worker
        tables, extra = _fig1_trial(spec, plan, job, ctx, started, t0, rss_before, float(config["cpus"])), {}
    Store(config["results"], spec.name, check_links=False).write_fragment(
        plan.fragment,
        tables,
        {
            "sweep": spec.name,
            "fragment": plan.fragment,
            "spec": sweep.model_dump(),
            "spec_hash": sweep.hash(),
            "versions": ctx["versions"],
            "git_rev": ctx["git_rev"],
        },
    )
    # A fig1 or subset trial's cells are its hyperparameter points (a convergence pack's, its corruptions).
    by_point = len(plan.points) > 1 and not plan.members
    tune.report({**_final_summary(tables["trials"], by_point), **extra})


def _pack(spec, plan: TrialPlan, job, device):
    """The job's pack on the device, and its engine schedule."""
    from sweep import job as jobs
    from trainables import budget
    from trainables.models import PackedMLP

    pack = jobs.build_pack(spec, job, device)
    (c, h, w), classes = job.data.input_shape, job.data.num_classes
    if isinstance(pack, PackedMLP):  # the MLP's memory model sizes the scoring chunk from the budget
        chunk = budget.score_chunk(
            int(getattr(spec, "memory_budget_gb", 2.0) * 2**30),
            job.members.k,
            c * h * w,
            pack.hidden,
            classes,
            spec.batch_size,
            cpu=device.type == "cpu",
        )
    else:  # a CNN scores K x chunk images at once: 1,024 images in all, as one model did alone
        chunk = max(16, 1024 // job.members.k)
    return pack, jobs.schedule(spec, plan, chunk)


def _fig1_pack(spec, plan: TrialPlan, job, ctx, started, t0: float, rss_before: float, progress: dict[str, int]):
    """Train one pack of a fig1 or subset trial's seeds, with its probes; its tables. `progress` (the trial's
    model count, and the pack's first model in it) goes into each epoch's report, for the
    launch's progress line."""
    from ray import tune

    from sweep import job as jobs
    from trainables import engine

    pack, schedule = _pack(spec, plan, job, ctx["device"])
    probes = jobs.Probes(spec, job)
    probes.at_start(pack)

    def on_epoch(record, _) -> None:
        probes.on_epoch(pack, record.epoch, record.active)
        tune.report({**_summary(record), **progress})

    outcome = engine.run(pack, job.data, job.members, schedule, on_epoch=on_epoch)
    probes.at_end(pack, outcome)
    found = probes.found
    k = job.members.k
    columns = dict(
        job.columns,
        pack_mode=np.full(k, getattr(pack, "mode", "bmm")),
        rss_before_mb=np.full(k, rss_before),
        **_peak_memory(k, ctx["device"]),
    )
    if job.members.subsets is not None:
        columns.update(T.subset_columns(outcome))
    return T.all_tables(spec, plan, job, outcome, found, columns, ctx, started, time.perf_counter() - t0)


def _converge(spec: ConvergenceSpec, job, pack, schedule):
    """Train until interpolation (two-phase when phase2_epochs > 0), with probes and checkpoints;
    (outcome, what the probes found, the epoch resumed from or None)."""
    from ray import tune

    from sweep import checkpoint as checkpoints
    from sweep import job as jobs
    from trainables import engine

    probes = jobs.Probes(spec, job)
    state, checkpoint = None, tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            saved = checkpoints.load(f"{folder}/state.pt")  # on the CPU; the engine moves it
        state, probes.found = saved["pack"], jobs.Found.from_dict(saved["found"])
    else:
        probes.at_start(pack)
    resumed_from = state.epoch if state is not None else None

    def on_epoch(record, snapshot) -> None:
        probes.on_epoch(pack, record.epoch, record.active)
        metrics = _summary(record)
        if record.epoch % spec.checkpoint_every == 0:
            with tempfile.TemporaryDirectory() as folder:
                checkpoints.save({"pack": snapshot(), "found": probes.found.to_dict()}, f"{folder}/state.pt")
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        else:
            tune.report(metrics)

    found = probes.found
    if found.phase == 1:
        out = engine.run(pack, job.data, job.members, schedule, state=state, on_epoch=on_epoch)
        state = out.state
        if spec.phase2_epochs:
            reached = {
                f.name: getattr(out, f.name)
                for f in dataclasses.fields(out)
                if f.name.startswith(("stop_reason", "reached_"))
            }
            boundary = [out.last_record(k).epoch for k in range(job.members.k)]
            found.phase1, found.phase = jobs.Phase1(reached, boundary, out.records[-1].epoch), 2
            state.restart()
    if spec.phase2_epochs:  # phase 2: the training split alone, phase2_epochs more
        phase2 = dataclasses.replace(
            schedule,
            threshold=None,
            time_budget_s=None,
            fit_splits=("train",),
            patience=None,
            max_epochs=found.phase1.last + spec.phase2_epochs,
        )
        final = engine.run(pack, job.data, job.members, phase2, state=state, on_epoch=on_epoch)
        out = dataclasses.replace(final, **found.phase1.outcome)
    probes.at_end(pack, out)
    return out, found, resumed_from


def _converge_trial(spec, plan: TrialPlan, job, ctx: dict, started, t0: float) -> tuple[dict, dict]:
    """A convergence trial: its pack trained to interpolation (with checkpoints and probes);
    its tables, and what it tells Tune besides the means."""
    pack, schedule = _pack(spec, plan, job, ctx["device"])
    outcome, found, resumed_from = _converge(spec, job, pack, schedule)
    columns = dict(
        job.columns,
        pack_mode=np.full(job.members.k, getattr(pack, "mode", "bmm")),
        **T.convergence_columns(spec, job, pack, outcome, found, resumed_from),
    )
    tables = T.all_tables(spec, plan, job, outcome, found, columns, ctx, started, time.perf_counter() - t0)
    reached = [e for e in outcome.reached_epoch if e is not None]
    extra = {"interpolated": len(reached), "interp_epoch_mean": float(np.mean(reached)) if reached else np.nan}
    return tables, extra


def _fig1_trial(spec, plan: TrialPlan, job, ctx: dict, started, t0: float, rss_before: float, cpus: float) -> dict:
    """A fig1 or subset trial: its seeds in packs sized to the worker (its share of the cache,
    or the GPU budget), one after another; its tables."""
    from trainables import budget

    k = spec.resolved_pack_size(job.members.k, ctx["device"].type, cache_bytes=budget.cache_share_bytes(cpus))
    parts = [
        _fig1_pack(
            spec,
            plan,
            job.select(range(i, min(i + k, job.members.k))),
            ctx,
            started,
            t0,
            rss_before,
            progress={"trial_models": job.members.k, "models_from": i},
        )
        for i in range(0, job.members.k, k)
    ]
    names = dict.fromkeys(name for part in parts for name in part)  # a probe may leave rows in some packs only
    tables = {name: pa.concat_tables([part[name] for part in parts if name in part]) for name in names}
    trials = tables["trials"]  # every member's row gets the whole trial's wall time
    at = trials.schema.get_field_index("wall_seconds")
    tables["trials"] = trials.set_column(at, "wall_seconds", pa.array([time.perf_counter() - t0] * len(trials)))
    return tables


def _final_summary(trials: pa.Table, by_point: bool = False) -> dict[str, float]:
    """What the trial tells Tune at the end: means over all its models, each at its own last
    epoch (a model that stopped early counts with its final accuracy), from its trials rows;
    by_point: also each hyperparameter point's (cell's) test accuracy apart."""

    def mean(column: str) -> float:
        return float(np.nanmean(trials.column(column).to_numpy(zero_copy_only=False).astype(float)))

    out = {
        "epoch": int(max(trials.column("epochs_trained").to_pylist())),
        "stored": True,
        "members": trials.num_rows,
        "members_training": 0,
        "train_acc": mean("final_train_acc"),
        "test_acc": mean("final_test_acc"),
    }
    if "fit_acc" in trials.column_names:
        out["fit_acc"] = mean("fit_acc")
    if by_point:
        cells = trials.column("cell").to_pylist()
        acc = trials.column("final_test_acc").to_numpy(zero_copy_only=False).astype(float)
        out["test_acc_by_cell"] = {c: float(np.nanmean(acc[np.array(cells) == c])) for c in dict.fromkeys(cells)}
    return out


def _summary(record) -> dict[str, float]:
    """What the trial tells Tune after an epoch: means over the members that trained in it."""
    active = record.active
    out = {
        "epoch": record.epoch,
        "stored": False,
        "running_loss": float(record.running_loss[active].mean()),
        "members": int(len(active)),
        "members_training": int(active.sum()),
    }
    for split, acc in record.acc.items():
        out[f"{split}_acc"] = float(np.asarray(acc)[active].mean())
    if record.fit_acc is not None:  # accuracy on each model's own training examples
        out["fit_acc"] = float(record.fit_acc[active].mean())
    return out


def _context(config: dict[str, Any]) -> dict[str, Any]:
    """What every trial records of where and how it ran."""
    import ray
    import torch
    from ray import tune

    return {
        "trial_id": tune.get_context().get_trial_id(),
        "node_id": ray.get_runtime_context().get_node_id(),
        "resources": ray.get_runtime_context().get_assigned_resources(),
        "device": torch.device("cuda" if torch.cuda.is_available() else "cpu"),
        "versions": dict(
            config["provenance"].get("versions", {}), torch=torch.__version__, python=platform.python_version()
        ),
        "git_rev": config["provenance"].get("git_rev"),
    }


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
    return {
        "peak_rss_mb": np.full(k, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "peak_cuda_mb": np.full(k, cuda),
    }
