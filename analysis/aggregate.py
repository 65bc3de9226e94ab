"""Aggregates of a stored table, computed out of core.

A store's `examples` table reaches tens of millions of rows (fig1 at 100 seeds x 3 variants on
Fashion-MNIST: 21 million per scored epoch). Read into pandas it takes ~190 bytes a row, so these
functions never hold it whole: they scan its fragments in record batches (only the columns they
need; row groups a filter rules out are skipped by their statistics), group and sum each batch
with pyarrow, and combine the partial sums. Memory holds one batch and the groups' sums. pyarrow
only: it reads every file system the store writes to (local, s3://, gs://).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from analysis import dynamics
from analysis import memorization as memo
from analysis.load import sweep_path

BATCH_ROWS = 1 << 20
SPLITS = ("train", "test", "val")  # the order trials write them


def _dataset(results: str, sweep: str, table: str) -> ds.Dataset:
    fs, root = sweep_path(results, sweep)
    folder = f"{root}/{table}"
    if fs.get_file_info(folder).type != pafs.FileType.Directory:
        raise FileNotFoundError(f"no {table!r} table at {results}/{sweep} (has the sweep run?)")
    return ds.dataset(folder, format="parquet", filesystem=fs)


def _where(filters: dict[str, Sequence] | None) -> ds.Expression | None:
    # Equalities, not `isin`: pyarrow 26's isin on a float64 column whose row groups hold only 0.0
    # prunes them all (a hyperparameter axis at 0: measured, 0 rows where == finds 7,188).
    clauses = [
        functools.reduce(operator.or_, [ds.field(k) == value for value in v]) for k, v in (filters or {}).items()
    ]
    return functools.reduce(operator.and_, clauses) if clauses else None


def grouped_means(
    results: str,
    sweep: str,
    table: str,
    keys: Sequence[str],
    means: Sequence[str],
    constants: Sequence[str] = (),
    filters: dict[str, Sequence] | None = None,
) -> pd.DataFrame:
    """One row per distinct `keys` of the stored table (rows kept by `filters`, column -> allowed
    values): `n`, its row count; `mean_<c>` for each column of `means` (a boolean's mean is its
    share of true); and each column of `constants` as it is in the group (columns constant
    within a group, such as an example's label: their minimum). Sorted by `keys`."""
    keys, means, constants = list(keys), list(means), list(constants)
    # Little read-ahead (pyarrow's default holds 16 batches of 4 fragments): memory, not speed, binds here.
    # Means summed as float64 (a float16 column, `record_dtype: float16`, has no hash sum), each
    # divided by its own count of non-null values, as pandas does.
    columns = {
        **{k: ds.field(k) for k in keys},
        **{c: ds.field(c).cast(pa.float64()) for c in means},
        **{c: ds.field(c) for c in constants},
    }
    scan = _dataset(results, sweep, table).scanner(
        columns=columns, filter=_where(filters), batch_size=BATCH_ROWS, batch_readahead=2, fragment_readahead=1
    )
    sums = [(c, how) for c in means for how in ("sum", "count")] + [([], "count_all")] + [(c, "min") for c in constants]
    again = (
        [(f"{c}_{how}", "sum") for c in means for how in ("sum", "count")]
        + [("count_all", "sum")]
        + [(f"{c}_min", "min") for c in constants]
    )

    def fold(parts: list[pa.Table]) -> list[pa.Table]:  # partial sums into one table of the groups
        if len(parts) < 2:
            return parts
        merged = pa.concat_tables(parts).group_by(keys, use_threads=False).aggregate(again)
        return [merged.rename_columns({f"{name}_{how}": name for name, how in again})]

    parts: list[pa.Table] = []
    for rows in _chunks(scan.to_batches()):  # ~BATCH_ROWS rows: a group-by has a fixed cost each call
        parts.append(_plain_keys(rows, keys).group_by(keys, use_threads=False).aggregate(sums))
        if sum(len(p) for p in parts) > 2 * max(BATCH_ROWS, len(parts[0])):
            parts = fold(parts)  # memory: a few chunks' partial sums and the groups
    parts = fold(parts)
    pa.default_memory_pool().release_unused()  # the scan's buffers back to the system, not kept pooled
    total = parts[0] if parts else None
    if total is None:
        return pd.DataFrame(columns=[*keys, "n", *(f"mean_{c}" for c in means), *constants])
    frame = total.to_pandas()
    out = frame[keys].copy()
    out["n"] = frame["count_all"].astype(np.int64)
    for c in means:
        out[f"mean_{c}"] = frame[f"{c}_sum"] / frame[f"{c}_count"].where(frame[f"{c}_count"] > 0)
    for c in constants:
        out[c] = frame[f"{c}_min"]
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


def _chunks(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.Table]:
    """The scan's record batches (one a row group) gathered into tables of about BATCH_ROWS rows."""
    buffer, rows = [], 0
    for batch in batches:
        buffer.append(batch)
        rows += batch.num_rows
        if rows >= BATCH_ROWS:
            yield pa.Table.from_batches(buffer)
            buffer, rows = [], 0
    if rows:
        yield pa.Table.from_batches(buffer)


def _plain_keys(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    """Dictionary-encoded key columns decoded (each fragment has its own dictionary; groups from
    two fragments meet only by value)."""
    for key in keys:
        column = table[key]
        if pa.types.is_dictionary(column.type):
            table = table.set_column(table.schema.get_field_index(key), key, column.cast(column.type.value_type))
    return table


def p_correct(
    results: str, sweep: str, epochs: Sequence[int] | None = None, filters: dict[str, Sequence] | None = None
) -> pd.DataFrame:
    """`analysis.difficulty.p_correct` of the stored `examples` table, out of core: one row per
    variant x split x epoch x example with p_correct, n_seeds, label, true_label, corrupted,
    mean_p_label and mean_loss; of the rows kept by `filters` (column -> values, e.g. one value
    of each hyperparameter axis)."""
    where = {**(filters or {}), **({"epoch": epochs} if epochs is not None else {})}
    frame = grouped_means(
        results,
        sweep,
        "examples",
        ["variant", "split", "epoch", "index"],
        ["correct", "p_label", "loss"],
        ["label", "true_label", "corrupted"],
        filters=where or None,
    )
    frame = frame.rename(columns={"mean_correct": "p_correct", "n": "n_seeds"})
    frame["variant"] = frame["variant"].astype(str)
    frame["split"] = pd.Categorical(frame["split"].astype(str), categories=SPLITS)  # train first, as written
    frame = frame.sort_values(["variant", "split", "epoch", "index"], kind="stable").reset_index(drop=True)
    frame["split"] = frame["split"].astype(str)
    return frame[
        [
            "variant",
            "split",
            "epoch",
            "index",
            "p_correct",
            "n_seeds",
            "label",
            "true_label",
            "corrupted",
            "mean_p_label",
            "mean_loss",
        ]
    ]


def correct_matrices(
    results: str, sweep: str, curves: Sequence[tuple[str, str, int]], filters: dict[str, Sequence] | None = None
) -> Iterator[tuple[tuple[str, str, int], np.ndarray]]:
    """For each (variant, split, epoch) of `curves`: its (seeds, examples) float32 matrix of
    `correct` (rows by seed, columns by example index, both ascending) of the rows kept by
    `filters`, read one curve at a time."""
    dataset = _dataset(results, sweep, "examples")
    for variant, split, epoch in curves:
        where = _where({**(filters or {}), "variant": [variant], "split": [split], "epoch": [int(epoch)]})
        t = dataset.to_table(columns=["seed", "index", "correct"], filter=where)
        seeds, seed_at = np.unique(t["seed"].to_numpy(), return_inverse=True)
        index, index_at = np.unique(t["index"].to_numpy(), return_inverse=True)
        hits = np.zeros((len(seeds), len(index)), dtype=np.float32)
        hits[seed_at, index_at] = pc.cast(t["correct"], pa.float32()).to_numpy(zero_copy_only=False)
        del t
        pa.default_memory_pool().release_unused()
        yield (variant, split, epoch), hits


class StoredExamples:
    """A subset sweep's stored `examples` table for `analysis.memorization`'s estimators, out of
    core: each (split, cell) correctness matrix (models x examples, one bit a byte) is filled from
    record batches in two scans (each model's last scored epoch, then its rows), never from the
    whole table in pandas. Pass it where the estimators take an examples DataFrame."""

    def __init__(self, results: str, sweep: str):
        self.dataset = _dataset(results, sweep, "examples")

    def cells(self, split: str) -> list[str]:
        keys = self._groups(["cell"], _where({"split": [split]}), [])
        return sorted(keys["cell"].astype(str).unique())

    def outcomes(self, split: str, cell: str | None = None) -> memo.Outcomes:
        cell = memo.pick_cell(self.cells(split), cell, split)
        where = _where({"split": [split], "cell": [cell]})
        last = self._groups(["variant", "seed"], where, [("epoch", "max")])
        index = np.sort(self._groups(["index"], where, [])["index"].to_numpy())
        models = last[["variant", "seed"]].assign(cell=cell)[["cell", "variant", "seed"]]
        columns = ["seed", "epoch", "index", "correct", "label", "true_label"]
        batches = ({c: t[c].to_numpy() for c in columns} for t in _chunks(self._scan(columns, where)))
        return memo.fill_outcomes(models, last["epoch_max"].to_numpy(), index, batches, split)

    def _scan(self, columns: list[str], where: ds.Expression) -> Iterator[pa.RecordBatch]:
        return self.dataset.scanner(
            columns=columns, filter=where, batch_size=BATCH_ROWS, batch_readahead=2, fragment_readahead=1
        ).to_batches()

    def _groups(self, keys: list[str], where: ds.Expression, aggs: list[tuple[str, str]]) -> pd.DataFrame:
        """`aggs` (pyarrow's, re-aggregated the same way: max, min, sum) per distinct `keys`, folded
        over the scan's chunks."""
        columns = list(dict.fromkeys(keys + [c for c, _ in aggs]))
        parts = [
            _plain_keys(t, keys).group_by(keys, use_threads=False).aggregate(aggs)
            for t in _chunks(self._scan(columns, where))
        ]
        if not parts:
            return pd.DataFrame(columns=keys + [f"{c}_{how}" for c, how in aggs])
        frame = pa.concat_tables(parts).to_pandas()
        again = {f"{c}_{how}": how for c, how in aggs}
        out = frame.groupby(keys, observed=True).agg(again).reset_index() if again else frame.drop_duplicates(keys)
        return out.sort_values(keys, kind="stable").reset_index(drop=True)


class StoredMembers:
    """A subset sweep's stored `members` table for `analysis.memorization.inclusion`, read in
    record batches of the asked cell only."""

    def __init__(self, results: str, sweep: str):
        try:
            self.dataset = _dataset(results, sweep, "members")
        except FileNotFoundError:
            self.dataset = None

    def inclusion(self, out: memo.Outcomes, n_train: int) -> np.ndarray:
        if self.dataset is None:
            raise memo.MembersMismatch(memo.MISSING_MEMBERS)
        where = _where({"cell": [str(out.models.cell.iloc[0])]})
        scan = self.dataset.scanner(
            columns=["seed", "index"], filter=where, batch_size=BATCH_ROWS, batch_readahead=2, fragment_readahead=1
        ).to_batches()
        return memo.fill_inclusion(out, n_train, ((b["seed"].to_numpy(), b["index"].to_numpy()) for b in scan))


def model_rows(
    results: str, sweep: str, split: str, columns: Sequence[str], filters: dict[str, Sequence] | None = None
) -> Iterator[pd.DataFrame]:
    """Each model's rows of `split` in the stored `examples` table (`columns` of them), one model
    at a time in pandas: a model is a distinct (arch, cell, variant, seed), of the key columns
    asked for (a cell names a hyperparameter point). Each fragment (a trial: all of its models'
    rows) is read once, as Arrow, and cut into its models; memory holds one fragment in Arrow and
    one model in pandas. ValueError if a model's rows lie in two fragments."""
    dataset = _dataset(results, sweep, "examples")
    where = _where({"split": [split], **(filters or {})})
    keys = [k for k in ("arch", "cell", "variant", "seed") if k in columns]
    seen: set[tuple] = set()
    for fragment in dataset.get_fragments(filter=where):
        table = _plain_keys(fragment.to_table(columns=list(columns), filter=where), keys)
        ids = sorted(table.select(keys).group_by(keys).aggregate([]).to_pylist(), key=lambda m: [m[k] for k in keys])
        for model in ids:
            key = tuple(model[k] for k in keys)
            if key in seen:
                raise ValueError(
                    f"examples table: model {dict(model)} has rows in two fragments "
                    "(a damaged or hand-merged store: `sweep verify`)"
                )
            seen.add(key)
            mask = functools.reduce(pc.and_, [pc.equal(table[k], v) for k, v in model.items()])
            yield table.filter(mask).to_pandas()
        del table


def accuracy_by_axes(results: str, sweep: str, axes: Sequence[str]) -> pd.DataFrame:
    """Per variant x point of the hyperparameter `axes` (one row each, at each model's last scored
    epoch: the sweep's last), out of core: `models`; training accuracy on the clean examples
    (`train_clean`) and on the corrupted ones (`train_corrupted`, NaN without any); and test accuracy
    (`test`). The accuracies are means over models and examples."""
    keys = ["variant", *axes]
    last = int(grouped_means(results, sweep, "examples", ["epoch"], []).epoch.max())
    parts = grouped_means(
        results, sweep, "examples", [*keys, "split", "corrupted"], ["correct"], filters={"epoch": [last]}
    )
    models = grouped_means(results, sweep, "trials", keys, [])
    wide = parts.assign(part=parts.split.astype(str) + np.where(parts.corrupted, "_corrupted", "_clean"))
    wide = wide.pivot_table(index=keys, columns="part", values="mean_correct", observed=True).reset_index()
    out = models.rename(columns={"n": "models"}).merge(wide, on=keys, how="left")
    out["test"] = out.get("test_clean")
    for column in ("train_clean", "train_corrupted"):
        if column not in out:
            out[column] = np.nan
    out["epoch"] = last
    return out[[*keys, "models", "epoch", "train_clean", "train_corrupted", "test"]]


def real_p_correct(results: str, sweep: str) -> tuple[int, pd.DataFrame] | None:
    """A fig1 sweep's P(correct) per training example of its `real` variant after its last
    scored epoch: (that epoch, frame of index, p_correct, n); None if none is stored."""
    real = {"variant": ["real"], "split": ["train"]}
    epochs = grouped_means(results, sweep, "examples", ["epoch"], [], filters=real)
    if epochs.empty:
        return None
    last = int(epochs.epoch.max())
    pc = grouped_means(results, sweep, "examples", ["index"], ["correct"], filters={**real, "epoch": [last]})
    return last, pc.rename(columns={"mean_correct": "p_correct"})


def real_dynamics(results: str, sweep: str, columns: list[str], has_arch: bool):
    """Per architecture of an interpolate sweep's `real` models recorded at two or more epochs:
    (arch or None, the first recorded epoch, `dynamics.measures` of its training split, EL2N at
    that epoch), read one model at a time."""
    archs = (
        grouped_means(results, sweep, "examples", ["arch"], [], filters={"variant": ["real"]}).arch.astype(str).tolist()
        if has_arch
        else [None]
    )
    wanted = [*columns, "el2n", *(["arch"] if has_arch else [])]
    for arch in archs:
        picked = {"variant": ["real"], **({"arch": [arch]} if arch else {})}
        epochs = grouped_means(results, sweep, "examples", ["epoch"], [], filters={**picked, "split": ["train"]})
        if len(epochs) < 2:
            continue
        models = (
            one.drop(columns=[c for c in ("arch",) if c in one.columns]).assign(variant="real")
            for one in model_rows(results, sweep, "train", wanted, picked)
        )
        yield arch, int(epochs.epoch.min()), dynamics.measures(models)


def stored_dynamics(results: str, sweep: str, columns: list[str], by_cell: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`dynamics.measures` and `dynamics.oscillation` of a sweep's training split, read one model
    at a time (an interpolate sweep's record is models x epochs x examples). Architectures are
    kept apart where there are several; by_cell: each cell (a hyperparameter point) is a variant."""
    multi_arch = "arch" in columns and len(grouped_means(results, sweep, "examples", ["arch"], [])) > 1
    osc_parts = []

    def models():
        for one in model_rows(results, sweep, "train", columns):
            if "arch" in one.columns and not multi_arch:
                one = one.drop(columns="arch")
            one["variant"] = (one.pop("cell") if by_cell else one.variant).astype(str)
            osc_parts.append(dynamics.oscillation(one))
            yield one

    per = dynamics.measures(models())
    return per, pd.concat(osc_parts, ignore_index=True)


def seeds_by_variant(trials: pd.DataFrame, variants: list[str]) -> pd.Series:
    """How many seeds of each of `variants` (in that order) a trials table holds; 0 for one it lacks."""
    return trials.groupby("variant", observed=True).seed.nunique().reindex(variants, fill_value=0)
