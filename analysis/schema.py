"""The results contract as code: one `pyarrow.schema` per table of the store (schema version 3).

Trials build their tables to these schemas (`sweep.tables`), the store checks every table
against them before it writes (`check`), and `analysis.load` reads with them. Columns that only
some sweeps have are marked optional in the field metadata (`optional: <when>`).
results/README.md documents each column; a test holds the two to the same list. Only pyarrow:
no torch, no Ray.
"""

from __future__ import annotations

import pyarrow as pa

VERSION = 3
KEY = pa.dictionary(pa.int32(), pa.string())  # string key columns: categoricals in pandas
UTC_MS = pa.timestamp("ms", tz="UTC")
# Per-example floats are float32, or float16 with `record_dtype: float16`.
RECORD_FLOATS = ("p_label", "loss", "el2n")


def _field(name: str, type_: pa.DataType, optional: str | None = None) -> pa.Field:
    return pa.field(name, type_, metadata={"optional": optional} if optional else None)


def _cols(type_: pa.DataType, *names: str, optional: str | None = None) -> list[pa.Field]:
    """One field of `type_` per name (a name may be several, space-separated), in order."""
    return [_field(n, type_, optional) for name in names for n in name.split()]


def _keys(arch: bool = True) -> list[pa.Field]:
    return [
        *_cols(KEY, "cell variant"),
        *([_field("arch", KEY, "convergence grids")] if arch else []),
        _field("seed", pa.int32()),
    ]


def _per_epoch(*fields: pa.Field) -> pa.Schema:
    """A table of per-epoch rows of each model: its key columns, the epoch, then `fields`."""
    return pa.schema([*_keys(), _field("epoch", pa.int16()), *fields])


CONV, VAL, FIG1, SUB = "convergence grids", "a validation split", "fig1-difficulty", "subset sweeps"
F1S = f"{FIG1} and {SUB}"

SCHEMAS: dict[str, pa.Schema] = {
    "trials": pa.schema(
        [
            *_keys(arch=False),
            *_cols(
                pa.string(),
                "sweep fragment trial_id status dataset arch device node_id config resources versions git_rev",
            ),
            *_cols(pa.int32(), "pack pack_size"),
            _field("pack_mode", pa.string()),
            _field("corruption_p", pa.float64()),
            _field("n_corrupted", pa.int64()),
            *_cols(pa.uint64(), "init_seed order_seed corruption_seed"),
            _field(
                "corruption_kind",
                pa.string(),
                "every sweep since schema 3 (2026-11-25); fig1 fragments stored before have none",
            ),
            _field("params", pa.int64(), CONV),
            _field("lr", pa.float64(), CONV),
            _field("stop_reason", pa.string(), f"{CONV} and {SUB}"),
            _field("interpolated", pa.bool_(), CONV),
            _field("interp_epoch", pa.int32(), CONV),
            _field("interp_step", pa.int64(), CONV),
            *_cols(pa.float64(), "interp_train_seconds interp_wall_seconds", optional=CONV),
            *_cols(pa.float32(), "interp_train_acc interp_test_acc", optional=CONV),
            _field("resumed_from_epoch", pa.int32(), CONV),
            *_cols(pa.float64(), "rss_before_mb peak_rss_mb peak_cuda_mb", optional=F1S),
            _field("subset_ratio", pa.float64(), SUB),
            _field("subset_size", pa.int32(), SUB),
            _field("fit_acc", pa.float32(), SUB),
            _field("epochs_trained", pa.int32()),
            _field("steps", pa.int64()),
            *_cols(pa.float64(), "wall_seconds train_seconds"),
            *_cols(UTC_MS, "started_at finished_at"),
            *[_field(f"final_{s}_{m}", pa.float32()) for s in ("train", "test") for m in ("loss", "acc")],
            _field("val_size", pa.int32(), VAL),
            _field("val_corruption", pa.string(), VAL),
            *_cols(pa.int32(), "phase1_epochs best_epoch early_stop_epoch", optional=VAL),
            *[_field(f"best_{s}_acc", pa.float32(), VAL) for s in ("train", "val", "test")],
            _field("schema_version", pa.int16()),
        ]
    ),
    "epochs": _per_epoch(
        _field("phase", pa.int8(), "two-phase runs"),
        _field("step", pa.int64()),
        *_cols(pa.float64(), "wall_seconds train_seconds lr"),
        *_cols(pa.float32(), "running_loss running_acc"),
        *[
            _field(f"{s}_{m}", pa.float32(), VAL if s == "val" else None)
            for s in ("train", "test", "val")
            for m in ("loss", "acc")
        ],
        _field("weight_norm", pa.float32()),
    ),
    "examples": _per_epoch(
        _field("split", KEY),
        _field("index", pa.int32()),
        *_cols(pa.int16(), "label true_label pred"),
        *_cols(pa.bool_(), "corrupted correct"),
        *_cols(pa.float32(), *RECORD_FLOATS),
    ),
    "members": pa.schema([*_keys(arch=False), _field("index", pa.int32())]),
    "norms": _per_epoch(_field("layer", KEY), _field("layer_index", pa.int16()), _field("norm", pa.float32())),
    "probes": _per_epoch(
        *_cols(KEY, "probe split"),
        *_cols(pa.float32(), "sigma value"),
        _field("draw", pa.int16()),
        _field("n", pa.int32()),
    ),
    "filters": _per_epoch(
        _field("filter", pa.int32()),
        *_cols(pa.int16(), "channels height width"),
        _field("weights", pa.list_(pa.float32())),  # fixed size C x kH x kW per table
    ),
}
TABLES = tuple(SCHEMAS)


def optional(table: str) -> set[str]:
    """Names of the columns of `table` that only some sweeps have."""
    return {f.name for f in SCHEMAS[table] if f.metadata and b"optional" in f.metadata}


def _same_type(field: pa.Field, got: pa.DataType) -> bool:
    want = field.type
    if field.name in RECORD_FLOATS:
        return got in (pa.float32(), pa.float16())
    if pa.types.is_list(want):
        return (pa.types.is_list(got) or pa.types.is_fixed_size_list(got)) and got.value_type == want.value_type
    return got == want


# A sweep's hyperparameter axes (its spec's `grid` and `sample` keys, e.g. `optimizer.lr`) are
# columns of every table, one per axis, named by the key: numbers as float64 or int64, booleans as
# bool, anything else (a list such as model.hidden) as JSON text.
AXIS_TYPES = (pa.float64(), pa.int64(), pa.bool_(), KEY)


def check(table: str, schema: pa.Schema, axes: tuple[str, ...] = ()) -> None:
    """ValueError naming the column unless `schema` (of a table about to be stored) has every
    required column of `table`, no column the contract does not name (besides the sweep's `axes`,
    typed as AXIS_TYPES), and the contract's types."""
    if table not in SCHEMAS:
        raise ValueError(f"unknown table {table!r} (allowed: {', '.join(TABLES)})")
    contract = SCHEMAS[table]
    names = set(contract.names)
    for axis in axes:
        if axis in schema.names and schema.field(axis).type not in AXIS_TYPES:
            raise ValueError(f"{table}.{axis} is {schema.field(axis).type}: an axis column is one of {AXIS_TYPES}")
    names |= set(axes)
    extra = [n for n in schema.names if n not in names]
    missing = sorted(names - optional(table) - set(schema.names))
    if extra or missing:
        raise ValueError(
            f"{table} table breaks the results contract: columns {extra} not in it, "
            f"{missing} missing (analysis/schema.py, results/README.md)"
        )
    for name in schema.names:
        if name in axes:
            continue
        field = contract.field(name)
        if not _same_type(field, schema.field(name).type):
            raise ValueError(f"{table}.{name} is {schema.field(name).type}, the contract says {field.type}")
