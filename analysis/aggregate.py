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
    clauses = [ds.field(k).isin(list(v)) for k, v in (filters or {}).items()]
    return functools.reduce(operator.and_, clauses) if clauses else None


def grouped_means(results: str, sweep: str, table: str, keys: Sequence[str], means: Sequence[str],
                  constants: Sequence[str] = (), filters: dict[str, Sequence] | None = None) -> pd.DataFrame:
    """One row per distinct `keys` of the stored table (rows kept by `filters`, column -> allowed
    values): `n`, its row count; `mean_<c>` for each column of `means` (a boolean's mean is its
    share of true); and each column of `constants` as it is in the group (columns constant
    within a group, such as an example's label: their minimum). Sorted by `keys`."""
    keys, means, constants = list(keys), list(means), list(constants)
    # Little read-ahead (pyarrow's default holds 16 batches of 4 fragments): memory, not speed, binds here.
    # Means summed as float64 (a float16 column, `record_dtype: float16`, has no hash sum), each
    # divided by its own count of non-null values, as pandas does.
    columns = {**{k: ds.field(k) for k in keys}, **{c: ds.field(c).cast(pa.float64()) for c in means},
               **{c: ds.field(c) for c in constants}}
    scan = _dataset(results, sweep, table).scanner(columns=columns, filter=_where(filters), batch_size=BATCH_ROWS,
                                                   batch_readahead=2, fragment_readahead=1)
    sums = ([(c, how) for c in means for how in ("sum", "count")] + [([], "count_all")]
            + [(c, "min") for c in constants])
    again = ([(f"{c}_{how}", "sum") for c in means for how in ("sum", "count")] + [("count_all", "sum")]
             + [(f"{c}_min", "min") for c in constants])
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


def p_correct(results: str, sweep: str, epochs: Sequence[int] | None = None) -> pd.DataFrame:
    """`analysis.difficulty.p_correct` of the stored `examples` table, out of core: one row per
    variant x split x epoch x example with p_correct, n_seeds, label, true_label, corrupted,
    mean_p_label and mean_loss."""
    frame = grouped_means(results, sweep, "examples", ["variant", "split", "epoch", "index"],
                          ["correct", "p_label", "loss"], ["label", "true_label", "corrupted"],
                          filters={"epoch": epochs} if epochs is not None else None)
    frame = frame.rename(columns={"mean_correct": "p_correct", "n": "n_seeds"})
    frame["variant"] = frame["variant"].astype(str)
    frame["split"] = pd.Categorical(frame["split"].astype(str), categories=SPLITS)  # train first, as written
    frame = frame.sort_values(["variant", "split", "epoch", "index"], kind="stable").reset_index(drop=True)
    frame["split"] = frame["split"].astype(str)
    return frame[["variant", "split", "epoch", "index", "p_correct", "n_seeds", "label", "true_label",
                  "corrupted", "mean_p_label", "mean_loss"]]


def correct_matrices(results: str, sweep: str, curves: Sequence[tuple[str, str, int]]
                     ) -> Iterator[tuple[tuple[str, str, int], np.ndarray]]:
    """For each (variant, split, epoch) of `curves`: its (seeds, examples) float32 matrix of
    `correct` (rows by seed, columns by example index, both ascending), read one curve at a time."""
    dataset = _dataset(results, sweep, "examples")
    for variant, split, epoch in curves:
        where = _where({"variant": [variant], "split": [split], "epoch": [int(epoch)]})
        t = dataset.to_table(columns=["seed", "index", "correct"], filter=where)
        seeds, seed_at = np.unique(t["seed"].to_numpy(), return_inverse=True)
        index, index_at = np.unique(t["index"].to_numpy(), return_inverse=True)
        hits = np.zeros((len(seeds), len(index)), dtype=np.float32)
        hits[seed_at, index_at] = pc.cast(t["correct"], pa.float32()).to_numpy(zero_copy_only=False)
        del t
        pa.default_memory_pool().release_unused()
        yield (variant, split, epoch), hits
