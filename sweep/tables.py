"""The rows a trial stores: the pack engine's records -> one Arrow table per store table.

A pack's members may belong to different cells (a convergence grid packs corruption levels
and seeds), so every builder takes the members' identities (`keys[k]`: cell, variant and
where relevant arch; `seeds[k]`) and gives each member its own rows. A member that stopped
(interpolated, early-stopped) has no rows after its last epoch: records carry an `active` mask.
Column meanings: results/README.md.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np
import pyarrow as pa

from sweep.planner import TrialPlan
from sweep.spec import ConvergenceSpec, Spec
from sweep.store import SCHEMA_VERSION


def _key_columns(keys: list[dict[str, Any]], member: np.ndarray) -> dict[str, pa.Array]:
    """The identity columns for rows of `member`: text keys dictionary-encoded (pandas reads them as
    categoricals), hyperparameter-axis values (sweep/axes.py: numbers, booleans) as they are."""
    out = {}
    for name in keys[0]:
        values = [k[name] for k in keys]
        if not isinstance(values[0], str):
            out[name] = pa.array(values).take(pa.array(member))
            continue
        uniq = sorted(set(values))
        codes = np.asarray([uniq.index(v) for v in values], dtype=np.int32)
        out[name] = pa.DictionaryArray.from_arrays(pa.array(codes[member]), pa.array(uniq))
    return out


def _per_member(values: np.ndarray, k: int) -> np.ndarray:
    """(K, N) from per-member (K, N) or shared (N,) values."""
    values = np.asarray(values)
    return np.broadcast_to(values, (k, values.shape[-1])) if values.ndim == 1 else values


def examples_table(
    records,
    keys: list[dict[str, str]],
    seeds: list[int],
    labels: dict[str, np.ndarray],
    true_labels: dict[str, np.ndarray],
    corrupted: dict[str, np.ndarray],
    dtype: str = "float32",
) -> pa.Table:
    """One row per member x kept epoch x split x example (example fastest); labels, true labels
    and the corrupted mask are per split, shared (N,) or per member (K, N)."""
    parts, k = [], len(seeds)
    for r in records:
        ks = np.flatnonzero(r.active if r.kept is None else r.kept)
        for split, s in r.splits.items():
            n = s.correct.shape[1]
            member = np.repeat(ks, n)
            pick = (ks, slice(None))
            mine = pick if r.kept is None else slice(None)  # scores of the kept members only: (K_kept, N)
            parts.append(
                pa.table(
                    {
                        **_key_columns(keys, member),
                        "seed": pa.array(np.asarray(seeds, dtype=np.int32)[member]),
                        "epoch": pa.array(np.full(len(member), r.epoch, dtype=np.int16)),
                        "split": pa.DictionaryArray.from_arrays(
                            pa.array(np.zeros(len(member), np.int32)), pa.array([split])
                        ),
                        "index": pa.array(np.tile(np.arange(n, dtype=np.int32), len(ks))),
                        "label": pa.array(_per_member(labels[split], k)[pick].astype(np.int16).ravel()),
                        "true_label": pa.array(_per_member(true_labels[split], k)[pick].astype(np.int16).ravel()),
                        "corrupted": pa.array(_per_member(corrupted[split], k)[pick].ravel()),
                        "pred": pa.array(s.pred[mine].astype(np.int16).ravel()),
                        "correct": pa.array(s.correct[mine].ravel()),
                        "p_label": pa.array(s.p_label[mine].astype(dtype).ravel()),
                        "loss": pa.array(s.loss[mine].astype(dtype).ravel()),
                        "el2n": pa.array(s.el2n[mine].astype(dtype).ravel()),
                    }
                )
            )
    # Kept as one chunk per (epoch, split) block: the store writes each as a row group.
    return pa.concat_tables(parts, promote_options="permissive")


def _split_metric(record, split: str, metric: str) -> np.ndarray:
    values = (record.acc if metric == "acc" else record.loss).get(split)
    if values is None:  # split not scored
        return np.full(len(record.running_loss), np.nan, dtype=np.float32)
    return np.asarray(values, dtype=np.float32)


def total_norm(norms: dict[str, np.ndarray], k: int) -> np.ndarray:
    """(K,) norm of all parameters from the per-layer norms (NaN without norms)."""
    if not norms:
        return np.full(k, np.nan, dtype=np.float32)
    return np.sqrt(sum(np.square(np.asarray(v, dtype=np.float64)) for v in norms.values())).astype(np.float32)


def epochs_table(records, keys: list[dict[str, str]], seeds: list[int], phase_boundary: int | None = None) -> pa.Table:
    """One row per member x scored epoch while it trained: full-set loss and accuracy of each split
    with the model fixed, the whole model's weight norm, and (two-phase runs) the phase."""
    k = len(seeds)
    splits = ["train", "test"] + (["val"] if any("val" in r.acc for r in records) else [])
    parts = []
    for r in records:
        ks = np.flatnonzero(r.active)
        phase = (
            {}
            if phase_boundary is None
            else {"phase": pa.array(np.full(len(ks), 1 if r.epoch <= phase_boundary else 2, dtype=np.int8))}
        )
        parts.append(
            pa.table(
                {
                    **_key_columns(keys, ks),
                    "seed": pa.array(np.asarray(seeds, dtype=np.int32)[ks]),
                    "epoch": pa.array(np.full(len(ks), r.epoch, dtype=np.int16)),
                    **phase,
                    "step": pa.array(np.full(len(ks), r.step, dtype=np.int64)),
                    "wall_seconds": pa.array(np.full(len(ks), r.wall_seconds)),
                    "train_seconds": pa.array(np.full(len(ks), r.train_seconds)),
                    "lr": pa.array(np.broadcast_to(np.asarray(r.lr, dtype=np.float64), (k,))[ks]),
                    "running_loss": pa.array(r.running_loss.astype(np.float32)[ks]),
                    "running_acc": pa.array(r.running_acc.astype(np.float32)[ks]),
                    **{
                        f"{split}_{m}": pa.array(_split_metric(r, split, m)[ks])
                        for split in splits
                        for m in ("loss", "acc")
                    },
                    "weight_norm": pa.array(total_norm(r.norms, k)[ks]),
                }
            )
        )
    return pa.concat_tables(parts, promote_options="permissive").combine_chunks()


def norms_table(records, keys: list[dict[str, str]], seeds: list[int], init: dict[str, np.ndarray]) -> pa.Table:
    """One row per member x evaluation point x layer (epoch 0: at initialization), plus a row per
    member x evaluation point for the whole model (layer 'total')."""
    k = len(seeds)
    points = ([(0, init, np.ones(k, dtype=bool))] if init else []) + [
        (r.epoch, r.norms, r.active) for r in records if r.norms
    ]
    parts = []
    for epoch, norms, active in points:
        ks = np.flatnonzero(active)
        names = [*norms, "total"]
        values = np.stack([*(np.asarray(v, dtype=np.float32) for v in norms.values()), total_norm(norms, k)])[:, ks]
        member = np.tile(ks, len(names))
        parts.append(
            pa.table(
                {
                    **_key_columns(keys, member),
                    "seed": pa.array(np.asarray(seeds, dtype=np.int32)[member]),
                    "epoch": pa.array(np.full(len(member), epoch, dtype=np.int16)),
                    "layer": pa.array(np.repeat(names, len(ks))).dictionary_encode(),
                    "layer_index": pa.array(np.repeat(np.arange(len(names), dtype=np.int16), len(ks))),
                    "norm": pa.array(values.ravel()),
                }
            )
        )
    return pa.concat_tables(parts).combine_chunks()


def probes_table(rows: list[dict[str, Any]], keys: list[dict[str, str]], seeds: list[int]) -> pa.Table:
    """One row per probe measurement of a member (`row["member"]`, as `sweep.probes.row` makes
    it): what each probe plug-in measured, e.g. csr (critical / searched, per epoch) or
    weight_noise (accuracy, per split x sigma x draw)."""
    member = np.asarray([r["member"] for r in rows], dtype=np.int64)

    def col(name, dtype):
        return pa.array(np.asarray([r[name] for r in rows], dtype=dtype))

    return pa.table(
        {
            **_key_columns(keys, member),
            "seed": pa.array(np.asarray(seeds, dtype=np.int32)[member]),
            "probe": pa.array([r["probe"] for r in rows]).dictionary_encode(),
            "epoch": col("epoch", np.int16),
            "split": pa.array([r["split"] for r in rows]).dictionary_encode(),
            "sigma": col("sigma", np.float32),
            "draw": col("draw", np.int16),
            "value": col("value", np.float32),
            "n": col("n", np.int32),
        }
    )


def filters_table(found: list[tuple[int, int, np.ndarray]], keys: list[dict[str, str]], seeds: list[int]) -> pa.Table:
    """One row per (member, recorded epoch, first-layer filter): its weights flattened (C x kH x kW,
    row-major) as a fixed-size list<float32> column, with the shape to restore them."""
    parts = []
    for k, epoch, w in found:
        f, c, kh, kw = w.shape
        member = np.full(f, k)
        parts.append(
            pa.table(
                {
                    **_key_columns(keys, member),
                    "seed": pa.array(np.full(f, seeds[k], dtype=np.int32)),
                    "epoch": pa.array(np.full(f, epoch, dtype=np.int16)),
                    "filter": pa.array(np.arange(f, dtype=np.int32)),
                    "channels": pa.array(np.full(f, c, dtype=np.int16)),
                    "height": pa.array(np.full(f, kh, dtype=np.int16)),
                    "width": pa.array(np.full(f, kw, dtype=np.int16)),
                    "weights": pa.FixedSizeListArray.from_arrays(
                        pa.array(w.reshape(f, -1).astype(np.float32).ravel()), c * kh * kw
                    ),
                }
            )
        )
    return pa.concat_tables(parts).combine_chunks()


def trials_table(
    lasts: list,
    keys: list[dict[str, str]],
    seeds: list[int],
    *,
    spec: Spec,
    plan: TrialPlan,
    ctx: dict[str, Any],
    arch: str,
    started: dt.datetime,
    wall_seconds: float,
    columns: dict[str, Any],
) -> pa.Table:
    """One row per member of the trial: identity, provenance, the metrics of its last record
    (`lasts[k]`), and the engine's own `columns` (arrays of one value per member)."""
    k = len(seeds)
    finished = dt.datetime.now(dt.UTC)
    const = {
        "sweep": spec.name,
        "fragment": plan.fragment,
        "trial_id": ctx["trial_id"],
        "status": "completed",
        "dataset": spec.dataset,
        "arch": arch,
        "device": str(ctx["device"]),
        "node_id": ctx["node_id"],
        "config": json.dumps(spec.model_dump(), sort_keys=True),
        "resources": json.dumps(ctx["resources"], sort_keys=True),
        "versions": json.dumps(ctx["versions"], sort_keys=True),
        "git_rev": ctx["git_rev"] or "",
    }

    def last(metric):
        return np.asarray([metric(r, i) for i, r in enumerate(lasts)])

    return pa.table(
        {
            **_key_columns(keys, np.arange(k)),
            "seed": pa.array(np.asarray(seeds, dtype=np.int32)),
            **{name: pa.array([value] * k, pa.string()) for name, value in const.items()},
            "pack": pa.array(np.full(k, plan.pack, dtype=np.int32)),
            "pack_size": pa.array(np.full(k, k, dtype=np.int32)),
            **{name: value if isinstance(value, pa.Array) else pa.array(value) for name, value in columns.items()},
            "epochs_trained": pa.array(last(lambda r, i: r.epoch).astype(np.int32)),
            "steps": pa.array(last(lambda r, i: r.step).astype(np.int64)),
            "wall_seconds": pa.array(np.full(k, wall_seconds)),  # the whole trial's, shared by its members
            "train_seconds": pa.array(last(lambda r, i: r.train_seconds).astype(np.float64)),
            "started_at": pa.array([started] * k, pa.timestamp("ms", tz="UTC")),
            "finished_at": pa.array([finished] * k, pa.timestamp("ms", tz="UTC")),
            **{
                f"final_{split}_{m}": pa.array(
                    last(lambda r, i, s=split, m=m: _split_metric(r, s, m)[i]).astype(np.float32)
                )
                for split in ("train", "test")
                for m in ("loss", "acc")
            },
            "schema_version": pa.array(np.full(k, SCHEMA_VERSION, dtype=np.int16)),
        }
    )


def convergence_columns(spec: ConvergenceSpec, job, pack, out, found, resumed_from) -> dict[str, Any]:
    """The trials columns of a convergence run, per member (the pack engine's Outcome -> columns)."""
    from trainables import models

    k = job.members.k
    at = [next((r for r in out.records if r.epoch == e), None) if e is not None else None for e in out.reached_epoch]
    nan = np.nan

    def per(values, dtype):
        return pa.array(list(values), dtype)

    columns = {
        "params": np.full(k, models.param_count(pack.member(0)), dtype=np.int64),
        "stop_reason": pa.array(out.stop_reason),
        "interpolated": np.asarray([e is not None for e in out.reached_epoch]),
        "interp_epoch": per(out.reached_epoch, pa.int32()),
        "interp_step": per(out.reached_step, pa.int64()),
        "interp_train_seconds": np.asarray([v if v is not None else nan for v in out.reached_train_seconds]),
        "interp_wall_seconds": np.asarray([v if v is not None else nan for v in out.reached_wall_seconds]),
        "interp_train_acc": np.asarray([a.acc["train"][i] if a else nan for i, a in enumerate(at)], dtype=np.float32),
        "interp_test_acc": np.asarray([a.acc["test"][i] if a else nan for i, a in enumerate(at)], dtype=np.float32),
        "resumed_from_epoch": per([resumed_from] * k, pa.int32()),
    }
    if job.data.val is not None:
        best = [next(r for r in out.records if r.epoch == e) if e else None for e in out.best_epoch]
        columns.update(
            {
                "val_size": np.full(k, len(job.data.val), dtype=np.int32),
                "val_corruption": pa.array([spec.validation.corruption] * k),
                "phase1_epochs": per(found.phase1.boundary if found.phase1 else [None] * k, pa.int32()),
                "best_epoch": per(out.best_epoch, pa.int32()),
                "early_stop_epoch": per(out.early_stop_epoch, pa.int32()),
                **{
                    f"best_{s}_acc": np.asarray(
                        [b.acc[s][i] if b else nan for i, b in enumerate(best)], dtype=np.float32
                    )
                    for s in ("train", "val", "test")
                },
            }
        )
    return columns


def subset_columns(out) -> dict[str, Any]:
    """The trials columns of a subset sweep's pack: how each model ended, and its accuracy on its
    own subset then (the engine's Outcome -> columns)."""
    k = len(out.stop_reason)
    return {
        "stop_reason": pa.array(out.stop_reason),
        "fit_acc": np.asarray([out.last_record(i).fit_acc[i] for i in range(k)], dtype=np.float32),
    }


def members_table(keys: list[dict[str, str]], seeds: list[int], subsets: np.ndarray) -> pa.Table:
    """One row per member x training example in its subset (`subsets`: (K, n) indices): which
    examples each model of a subset sweep trained on."""
    k, n = subsets.shape
    member = np.repeat(np.arange(k), n)
    return pa.table(
        {
            **_key_columns(keys, member),
            "seed": pa.array(np.asarray(seeds, dtype=np.int32)[member]),
            "index": pa.array(subsets.astype(np.int32).ravel()),
        }
    )


def all_tables(
    spec: Spec, plan: TrialPlan, job, out, found, columns, ctx, started, wall_seconds
) -> dict[str, pa.Table]:
    """Every table of a trial's fragment: those its spec and what its probes found call for."""
    k = job.members.k
    boundary = found.phase1.last if found.phase1 else None
    tables = {
        "epochs": epochs_table(out.records, job.keys, job.seeds, boundary),
        "trials": trials_table(
            [out.last_record(i) for i in range(k)],
            job.keys,
            job.seeds,
            spec=spec,
            plan=plan,
            ctx=ctx,
            arch=job.arch_label,
            started=started,
            wall_seconds=wall_seconds,
            columns=columns,
        ),
    }
    if any(r.splits for r in out.records):
        tables["examples"] = examples_table(
            out.records, job.keys, job.seeds, job.labels, job.true_labels, job.corrupted, spec.record_dtype
        )
    if job.members.subsets is not None:
        tables["members"] = members_table(job.keys, job.seeds, job.members.subsets.cpu().numpy())
    if spec.norms:
        tables["norms"] = norms_table(out.records, job.keys, job.seeds, found.init_norms)
    if found.probes:
        tables["probes"] = probes_table(found.probes, job.keys, job.seeds)
    if found.filters:
        tables["filters"] = filters_table(found.filters, job.keys, job.seeds)
    return tables
