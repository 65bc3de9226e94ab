"""Hyperparameter axes: any spec key swept over a grid of values or sampled at random, crossed
with the study's own axes (fig1's variants, a subset sweep's ratios) and its seeds.

    grid: {optimizer.lr: [0.001, 0.01, 0.1], model.hidden: [[256], [512, 512]]}
    sample: {samples: 8, space: {optimizer.lr: {loguniform: [0.001, 0.1]}, weight_decay: {choice: [0, 0.0005]}}}

A *point* is one value for every axis (the grid's cross product, each grid point crossed with
each sample). Samples are drawn from the sweep's seed (`derive_seed(seed, "sample", i)`), so a
sweep draws the same points wherever it is planned. Every point is validated as the spec it
makes, so each key's own bounds and type apply.

Axes of MEMBER_KEYS (the SGD hyperparameters the engine takes per member) pack together: models
that differ only in them train as one pack, each with its own values. Any other axis (a width,
the batch size, epochs) makes models of other shapes or schedules, which train in other trials;
their values name the trial's fragments. Each model's values of every axis are columns of
every table it writes (named by the key, e.g. `optimizer.lr`) and name its cell.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from catalog import REGULARIZERS, SGD_HYPER
from sweep.seeding import derive_seed

MAX_POINTS = 1_000  # points (grid x samples) in one sweep
# The SGD hyperparameters a member of a pack can have on its own: spec key -> engine.HYPER name.
MEMBER_KEYS = {**{f"optimizer.{n}": n for n in SGD_HYPER}, **{f"regularizers.{n}": n for n in REGULARIZERS}}
# The study's own axes and the keys that say what and where the sweep is: never a grid axis.
STUDY_KEYS = (
    "name",
    "description",
    "engine",
    "dataset",
    "seed",
    "seeds",
    "variants",
    "ratios",
    "archs",
    "arch",  # a subset sweep's model: its trials table names it (sweep it with --name, one sweep an arch)
    "corruptions",
    "grid",
    "sample",
    "pack_size",
    "trial_size",
    "memory_budget_gb",
)


class Distribution(BaseModel):
    """One of: loguniform [low, high] (0 < low < high), uniform [low, high] (low < high), choice [values]."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    loguniform: tuple[float, float] | None = None
    uniform: tuple[float, float] | None = None
    choice: Annotated[list[Any], Field(min_length=1, max_length=MAX_POINTS)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _known(cls, given: Any) -> Any:
        unknown = [k for k in given if k not in ("loguniform", "uniform", "choice")] if isinstance(given, dict) else []
        if unknown:
            raise ValueError(f"unknown distribution {unknown[0]!r} (allowed: loguniform, uniform, choice)")
        return given

    @model_validator(mode="after")
    def _one(self) -> Distribution:
        given = [n for n in ("loguniform", "uniform", "choice") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of loguniform, uniform or choice (got {', '.join(given) or 'none'})")
        low, high = self.loguniform or self.uniform or (0.0, 1.0)
        if not low < high:
            raise ValueError(f"bounds [{low}, {high}]: the low one must be below the high one")
        if self.loguniform and low <= 0:
            raise ValueError(f"loguniform bounds [{low}, {high}] must be above 0")
        return self

    def values(self) -> list[Any]:
        """The values the key must accept: the choices, or the two bounds."""
        return list(self.choice if self.choice is not None else (self.loguniform or self.uniform))

    def draw(self, rng: np.random.Generator) -> Any:
        if self.choice is not None:
            return self.choice[int(rng.integers(len(self.choice)))]
        if self.loguniform:
            low, high = self.loguniform
            return float(np.exp(rng.uniform(math.log(low), math.log(high))))
        return float(rng.uniform(*self.uniform))


class Sample(BaseModel):
    """`samples` points drawn at random from `space` (key -> distribution)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    samples: Annotated[int, Field(ge=1, le=MAX_POINTS)]
    space: Annotated[dict[str, Distribution], Field(min_length=1)]


def points(grid: dict[str, list[Any]], sample: Sample | None, seed: int) -> list[dict[str, Any]]:
    """Every point of the sweep, in a stable order: the grid's cross product (keys sorted, the last
    fastest), each crossed with each sample; [{}] without axes."""
    # Keys in sorted order, as the spec's hash has them: the same axes written in another order are
    # the same sweep, with the same points (a stored plan names its points by their index).
    keys = sorted(grid)
    grid_points = [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))] if grid else [{}]
    if sample is None:
        return grid_points
    drawn = []
    for i in range(sample.samples):
        rng = np.random.default_rng(derive_seed(seed, "sample", i))
        drawn.append({key: sample.space[key].draw(rng) for key in sorted(sample.space)})
    return [{**g, **s} for g in grid_points for s in drawn]


def keys_of(grid: dict[str, list[Any]], sample: Sample | None) -> list[str]:
    """The axes' keys, grid first."""
    return [*grid, *(sample.space if sample else {})]


def check(grid: dict[str, list[Any]], sample: Sample | None, fields: set[str]) -> None:
    """ValueError (one line) for an axis the planner cannot sweep: a study key of the spec (its
    `fields`), an empty list, a key both in the grid and sampled, or more points than MAX_POINTS.
    (Each point's values are checked as the spec they make, by the spec.)"""
    for key in keys_of(grid, sample):
        if key.split(".")[0] in STUDY_KEYS and key.split(".")[0] in fields:
            raise ValueError(
                f"{key!r} is the study's own axis or identity, not a hyperparameter (not "
                f"allowed as an axis: {', '.join(STUDY_KEYS)}; change it with --set {key}=...)"
            )
    empty = [k for k, v in grid.items() if not isinstance(v, list) or not v]
    if empty:
        raise ValueError(f"grid axis {empty[0]!r} needs a non-empty list of values, got {grid[empty[0]]!r}")
    values = {**grid, **{k: d.choice for k, d in (sample.space if sample else {}).items() if d.choice}}
    for key, given in values.items():
        if any(isinstance(v, dict) for v in given):
            raise ValueError(f"axis {key!r} names a group of keys: sweep one of them (e.g. {key}.KEY), not the group")
        repeated = [v for i, v in enumerate(given) if v in given[:i]]
        if repeated:
            raise ValueError(f"axis {key!r} lists {repeated[0]!r} twice: each value once")
    both = sorted(set(grid) & set(sample.space if sample else {}))
    if both:
        raise ValueError(f"{both[0]!r} is both a grid axis and sampled: give it once")
    count = math.prod(len(v) for v in grid.values()) * (sample.samples if sample else 1)
    if count > MAX_POINTS:
        raise ValueError(
            f"the axes make {count:,} points, more than the {MAX_POINTS:,} allowed in one sweep "
            "(fewer values, or random samples instead of a grid)"
        )


def trial_part(point: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in point.items() if k not in MEMBER_KEYS}


def trial_groups(points: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Point indices by their exact values that are not per-member, in order, each group named by
    those values ('' for none; made unique where sampled values print alike)."""
    exact: dict[str, list[int]] = {}
    for i, point in enumerate(points):
        exact.setdefault(json.dumps(trial_part(point), sort_keys=True), []).append(i)
    names = labels([trial_part(points[indices[0]]) for indices in exact.values()])
    return dict(zip(names, exact.values()))


def labels(points: list[dict[str, Any]]) -> list[str]:
    """Each point's `label`, made unique (sampled values can print alike) and at most 60 characters."""
    names = [label(p) if len(label(p)) <= 60 else f"p{i:03d}" for i, p in enumerate(points)]
    seen = {n for n in names if names.count(n) > 1}
    return [f"{n}-p{i:03d}" if n in seen else n for i, n in enumerate(names)]  # '' (no values) stays ''


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def label(point: dict[str, Any]) -> str:
    """A point as a name part: 'lr0.01-hidden512x512' (each key by its last part)."""
    return _UNSAFE.sub(
        "_", "-".join(f"{key.split('.')[-1].replace('_', '')}{_text(value)}" for key, value in point.items())
    )


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return "x".join(_text(v) for v in value) or "none"
    if isinstance(value, float):
        return f"{value:.4g}".replace("+", "")
    return "none" if value is None else str(value)


def columns(points: list[dict[str, Any]], point: dict[str, Any]) -> dict[str, Any]:
    """`point`'s values as the tables' axis columns hold them: numbers and booleans as they are (an
    axis with any non-integer number as floats, so every fragment types it alike), anything else
    (a list such as model.hidden) as JSON text."""
    out = {}
    for key, value in point.items():
        others = [p[key] for p in points]
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) or v is None for v in others)
        if isinstance(value, bool) and all(isinstance(v, bool) for v in others):
            out[key] = value
        elif numbers and any(v is not None for v in others):  # a null (e.g. train_size: all) as NaN
            floats = any(isinstance(v, float) or v is None for v in others)
            out[key] = (float("nan") if value is None else float(value)) if floats else value
        else:
            out[key] = json.dumps(value)
    return out
