"""The planner: a spec's models cut into Ray Tune trials, each trial one pack of models
(`TrialPlan`), in a stable order; and a stored sweep's plan, resumed or grown.

A trial's fragment name (`TrialPlan.fragment`) names its files in every table, so a plan, once a
sweep has started, is read back from its manifest (`plan_of`), never recomputed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sweep import axes
from sweep.bounds import MAX_TRIALS
from sweep.spec import (
    NAME_PATTERN,
    ConvergenceSpec,
    DifficultySpec,
    Spec,
    SpecError,
    SubsetSpec,
    input_groups,
    validate,
)


@dataclass(frozen=True)
class TrialPlan:
    """One Ray Tune trial: one pack of models trained together.

    fig1-difficulty: a cell (variant) and a contiguous pack of seed indices [seed_lo, seed_hi).
    Convergence grids: one architecture and one input group (`cell` = '<arch>-labels' for the
    true and random-label levels, which share the images, or '<arch>-<corruption>' for a corruption
    of the images), with `members` listing each model's (corruption, seed index)."""

    cell: str
    variant: str  # the corruption: 'real', 'randX', 'randY:0.3', ... (a convergence pack: its first)
    pack: int
    seed_lo: int  # first seed index, inclusive
    seed_hi: int  # last seed index, exclusive
    arch: str | None = None  # convergence grids: the model trained
    members: tuple[tuple[str, int], ...] = ()  # convergence grids: (corruption, seed index) per model
    # Sweeps with hyperparameter axes (sweep/axes.py): the points the trial trains, each as (its
    # index in spec.points(), the cell its models belong to); every point with seeds [seed_lo, seed_hi).
    points: tuple[tuple[int, str], ...] = ()

    def __post_init__(self):  # a plan read back from JSON or YAML has lists for tuples
        object.__setattr__(self, "members", tuple(tuple(m) for m in self.members))
        object.__setattr__(self, "points", tuple(tuple(p) for p in self.points))

    @classmethod
    def from_dict(cls, entry: Any) -> TrialPlan:
        """A plan entry read back from a manifest (`to_dict`'s shape), checked: ValueError unless it
        has these fields with these types, and a fragment name that is one safe path component."""
        types = {"cell": str, "variant": str, "pack": int, "seed_lo": int, "seed_hi": int}
        members = entry.get("members", []) if isinstance(entry, dict) else None
        points = entry.get("points", []) if isinstance(entry, dict) else None
        if not (
            isinstance(entry, dict)
            and set(types) <= set(entry) <= {*types, "arch", "members", "points"}
            and all(type(entry[k]) is t for k, t in types.items())
            and (entry.get("arch") is None or isinstance(entry["arch"], str))
            and isinstance(members, list)
            and all(
                isinstance(m, list) and len(m) == 2 and isinstance(m[0], str) and type(m[1]) is int for m in members
            )
            and isinstance(points, list)
            and all(isinstance(p, list) and len(p) == 2 and type(p[0]) is int and isinstance(p[1], str) for p in points)
        ):
            raise ValueError("not a trial of the shape memsweep writes")
        plan = cls(**entry)
        bad = [n for n in (plan.fragment, *(c for _, c in plan.points)) if not re.fullmatch(NAME_PATTERN, n)]
        if bad:
            raise ValueError(f"its fragment or cell name {bad[0]!r} is not a safe file name")
        return plan

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists for tuples), for the manifest's YAML and the trial's config."""
        return {
            **{f: getattr(self, f) for f in ("cell", "variant", "pack", "seed_lo", "seed_hi", "arch")},
            "members": [list(m) for m in self.members],
            **({"points": [list(p) for p in self.points]} if self.points else {}),
        }

    @property
    def fragment(self) -> str:
        """The name of this trial's fragment in every table: stable, so a retry replaces it."""
        return f"{self.cell}-pack{self.pack:03d}"

    def models(self) -> list[tuple[str, str, int]]:
        """(cell, variant, seed index) of each model the trial trains, in pack order."""
        if self.members:  # a convergence pack: with axes, of one point, whose name ends each cell
            suffix = f"-{self.points[0][1]}" if self.points else ""
            return [(f"{self.arch}-{v.replace(':', '')}{suffix}", v, s) for v, s in self.members]
        if self.points:
            return [(cell, self.variant, s) for _, cell in self.points for s in range(self.seed_lo, self.seed_hi)]
        return [(self.cell, self.variant, s) for s in range(self.seed_lo, self.seed_hi)]

    def member_points(self) -> list[int | None]:
        """The axis point (index in spec.points()) of each model of `models()`; None without axes."""
        if not self.points:
            return [None] * len(self.models())
        if self.members:
            return [self.points[0][0]] * len(self.members)
        return [i for i, _ in self.points for _ in range(self.seed_lo, self.seed_hi)]


def expand(spec: Spec, slots: int = 1) -> list[TrialPlan]:
    """Cells x seed packs, in a stable order; `slots`: trials the cluster runs at once (sizes the
    convergence packs). SpecError if the plan has more than MAX_TRIALS trials."""
    if isinstance(spec, ConvergenceSpec):
        k = spec.resolved_pack_size(slots)
        count = (
            len(spec.archs)
            * len(spec.points())
            * sum(math.ceil(len(g) * spec.seeds / k) for g in input_groups(spec.corruptions).values())
        )
    else:
        cells = len(spec.ratios) if isinstance(spec, SubsetSpec) else len(spec.variants)
        groups = axes.trial_groups(spec.points())
        count = cells * sum(math.ceil(spec.seeds / _seeds_per_trial(spec, slots, len(g))) for g in groups.values())
    if count > MAX_TRIALS:
        raise SpecError(
            f"the plan has {count:,} trials, more than the {MAX_TRIALS:,} allowed in one sweep: "
            "use fewer seeds or cells, or larger packs (pack_size)"
        )
    if isinstance(spec, ConvergenceSpec):
        k, plans = spec.resolved_pack_size(slots), []
        # With axes, every point is its own trials (a convergence pack shares one schedule).
        named = list(enumerate(axes.labels(spec.points()))) if spec.grid or spec.sample else [(None, "")]
        for arch in spec.archs:
            for point, name in named:
                for group, corruptions in input_groups(spec.corruptions).items():
                    members = [(c, s) for c in corruptions for s in range(spec.seeds)]
                    n = math.ceil(len(members) / k)
                    # Dealt round-robin: each pack gets easy and hard levels alike, so that no pack
                    # waits alone on all the slowest (highest-noise) models.
                    for i in range(n):
                        pack = tuple(members[i::n])
                        plans.append(
                            TrialPlan(
                                cell=f"{arch}-{group}" + (f"-{name}" if name else ""),
                                variant=pack[0][0],
                                pack=i,
                                seed_lo=min(s for _, s in pack),
                                seed_hi=max(s for _, s in pack) + 1,
                                arch=arch,
                                members=pack,
                                points=((point, name),) if name else (),
                            )
                        )
        return plans
    return _cell_packs(spec, slots, 0, spec.seeds, lambda cell: 0)


def _cell_packs(
    spec: DifficultySpec | SubsetSpec, slots: int, lo: int, hi: int, first: Callable[[str], int]
) -> list[TrialPlan]:
    """The trials of seed indices [lo, hi) of every cell and trial group, those of trial cell c
    numbered from first(c)."""
    subsets = isinstance(spec, SubsetSpec)
    cells = [spec.cell_of(r) for r in spec.ratios] if subsets else list(spec.variants)
    points, plans = spec.points(), []
    names = axes.labels(points)
    # Points that differ only in per-member hyperparameters share a trial (and its packs); each
    # other value of an axis (a width, a batch size) is a trial group of its own. A subset sweep's
    # variant follows the group's point (a corruption.p axis: the labels it trains on).
    groups = axes.trial_groups(points)
    trained = {g: spec.at(axes.trial_part(points[i[0]])).variant if subsets else None for g, i in groups.items()}
    k = {g: _seeds_per_trial(spec.model_copy(update={"seeds": hi - lo}), slots, len(i)) for g, i in groups.items()}
    for cell in cells:
        for group, indices in groups.items():
            members = tuple((i, f"{cell}-{names[i]}") for i in indices) if spec.grid or spec.sample else ()
            name = f"{cell}-{group}" if group else cell
            plans += _seed_packs(name, trained[group] or cell, lo, hi, k[group], first(name), points=members)
    return plans


def _seeds_per_trial(spec: Spec, slots: int, points: int) -> int:
    """Seeds a trial takes of each of its `points`: about resolved_trial_size models a trial."""
    return max(1, math.ceil(spec.resolved_trial_size(slots) / points))


def _seed_packs(
    cell: str, variant: str, lo: int, hi: int, k: int, first: int = 0, points: tuple[tuple[int, str], ...] = ()
) -> list[TrialPlan]:
    """Trials of seeds [lo, hi) of one cell, k a trial, numbered from `first`."""
    return [
        TrialPlan(cell=cell, variant=variant, pack=first + i, seed_lo=s, seed_hi=min(hi, s + k), points=points)
        for i, s in enumerate(range(lo, hi, k))
    ]


def grow(stored: dict[str, Any], spec: Spec, slots: int = 1) -> list[TrialPlan] | None:
    """The plan of a subset sweep grown to `spec.seeds` models per ratio: the stored plan
    (manifest) unchanged, then trials for the new seed indices of every ratio, numbered after
    the stored ones. None unless `spec` is the stored spec with more seeds and nothing else
    changed; SpecError if it asks for fewer."""
    if not isinstance(spec, SubsetSpec) or stored.get("spec", {}).get("engine") != "subsets":
        return None
    old = stored["spec"]
    try:  # as this version reads it: keys added since then take their defaults (arch: mlp)
        then = validate(old).model_dump()
    except SpecError:
        return None
    now = spec.model_dump()
    if (
        any(then[k] != now[k] for k in now if k not in ("seeds", "description", *spec.EXECUTION_KEYS))
        or old.get("seeds") == spec.seeds
    ):
        return None
    if spec.seeds < old["seeds"]:
        raise SpecError(
            f"seeds={spec.seeds}: the stored sweep {spec.name!r} already has {old['seeds']} models "
            f"per ratio, and a sweep only grows (to resume it as it is: --set seeds={old['seeds']})"
        )
    plans = plan_of(stored)
    now_variant = {p.cell: p.variant for p in _cell_packs(spec, slots, 0, 1, lambda cell: 0)}
    if any(now_variant.get(p.cell, p.variant) != p.variant for p in plans):
        raise SpecError(
            f"the stored sweep {spec.name!r} was planned by an earlier memsweep that trained every point of its "
            "corruption.p axis on the sweep's own labels; growing it would mix two labelings in a cell: launch "
            "the larger sweep beside it with --name NAME"
        )
    # The new seed indices of every cell and axis point, each trial cell's packs numbered on.
    return plans + _cell_packs(
        spec, slots, old["seeds"], spec.seeds, lambda cell: 1 + max(p.pack for p in plans if p.cell == cell)
    )


def plan_of(manifest: dict[str, Any]) -> list[TrialPlan]:
    """A stored sweep's trial plan, as its manifest recorded it when the sweep started (so a
    later change of the pack-size rule can never rename its fragments); expanded from the
    manifest's spec for sweeps stored before the plan was recorded."""
    if manifest.get("plan"):
        return [TrialPlan.from_dict(p) for p in manifest["plan"]]
    return expand(validate(manifest["spec"]))


def resume_plan(manifest: dict[str, Any], spec: Spec, slots: int = 1, grow_ok: bool = False) -> list[TrialPlan]:
    """The plan a --resume runs: the stored one, grown when `grow_ok` (the user set `seeds`) and
    `spec` is the stored subset sweep with more models (`grow`)."""
    return (grow(manifest, spec, slots) if grow_ok else None) or plan_of(manifest)
