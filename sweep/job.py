"""What a trial plan means for the pack engine: its data, its members, its schedule, its probes.

`prepare(spec, plan, data_root, device)` loads and corrupts the data and describes each member
of the pack (seeds by the documented rule in `sweep/seeding.py`; training labels from its own
corruption; identity keys for the store). `schedule(spec, plan)` is the engine's schedule.
`Probes` runs the probe plug-ins (`sweep/probes/`) a spec turns on, from the engine's epoch
callback and after training; they work for any K and return rows.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from catalog import SGD_HYPER, Corruption
from sweep import axes
from sweep import probes as probe_plugins
from sweep.planner import TrialPlan
from sweep.seeding import derive_seed
from sweep.spec import ConvergenceSpec, DifficultySpec, Spec, SubsetSpec
from trainables import corruption, engine, packs
from trainables import data as datasets


@dataclass
class Job:
    """A trial's inputs: data (corrupted, on the device), members, and what the store records of them."""

    data: datasets.Data
    members: engine.Members
    arch: str  # the packs.build name ('mlp' for fig1's MLP)
    arch_label: str  # as stored in the trials table
    keys: list[dict[str, str]]  # per member: cell, variant (and arch for convergence grids)
    seeds: list[int]  # per member: seed index
    labels: dict[str, np.ndarray]  # split -> labels used, (N,) shared or (K, N) per member
    true_labels: dict[str, np.ndarray]
    corrupted: dict[str, np.ndarray]
    columns: dict[str, np.ndarray]  # per-member trials columns known before training

    def select(self, rows: range) -> Job:
        """The job of members `rows` only (a trial trains its members in packs, one after another):
        per-member values ((K, ...) arrays, lists) cut to those rows, shared ones kept."""
        idx = list(rows)
        m = self.members
        members = engine.Members(
            init_seeds=[m.init_seeds[i] for i in idx],
            order_seeds=[m.order_seeds[i] for i in idx],
            labels=None if m.labels is None else m.labels[idx],
            subsets=None if m.subsets is None else m.subsets[idx],
            hyper={n: [v[i] for i in idx] for n, v in m.hyper.items()},
        )

        def per_member(splits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {s: (v[idx] if np.ndim(v) == 2 else v) for s, v in splits.items()}

        return Job(
            self.data,
            members,
            self.arch,
            self.arch_label,
            [self.keys[i] for i in idx],
            [self.seeds[i] for i in idx],
            per_member(self.labels),
            self.true_labels,
            per_member(self.corrupted),
            {c: np.asarray(v)[idx] for c, v in self.columns.items()},
        )


def _identity_columns(
    members: engine.Members, corruptions: list[Corruption], n_corrupted, corruption_seeds: list[int]
) -> dict[str, np.ndarray]:
    """The trials columns that say what each member is: its corruption, seeds and corrupted count."""
    return {
        "corruption_kind": np.asarray([c.kind for c in corruptions]),
        "corruption_p": np.asarray([c.p for c in corruptions], dtype=np.float64),
        "n_corrupted": np.asarray(n_corrupted, dtype=np.int64),
        "init_seed": np.asarray(members.init_seeds, dtype=np.uint64),
        "order_seed": np.asarray(members.order_seeds, dtype=np.uint64),
        "corruption_seed": np.asarray(corruption_seeds, dtype=np.uint64),
    }


def subset_of(spec: SubsetSpec, ratio: float, s: int, n: int) -> np.ndarray:
    """Training indices (sorted) that model `s` of `ratio` trains on: the rule in SubsetSpec's
    docstring. The store keeps them (members table); this only draws them."""
    rng = np.random.default_rng(derive_seed(spec.seed, "subset", f"{ratio:g}:{s}"))
    return np.sort(rng.permutation(n)[: round(ratio * n)])


def prepare_subsets(spec: SubsetSpec, plan: TrialPlan, data_root: str, device: torch.device) -> Job:
    """A subset trial: one ratio's models [seed_lo, seed_hi), each on its own subset of the
    (optionally label-corrupted) training split; one corruption draw shared by every ratio."""
    data = datasets.load(spec.dataset, data_root, device)
    if spec.train_size is not None:
        data = data.subset_train(spec.train_size)
    clean = {"train": data.train.y.cpu().numpy(), "test": data.test.y.cpu().numpy()}
    c = spec.corruption_of(plan.variant)
    corruption_seed = derive_seed(spec.seed, "corruption", "labels")
    data, mask = corruption.apply(data, c.kind, c.p, corruption_seed)
    ratio = next(r for r in spec.ratios if plan.cell == spec.cell_of(r) or plan.cell.startswith(spec.cell_of(r) + "-"))
    seeds = [s for _, _, s in plan.models()]
    n, k = len(data.train), len(seeds)
    subsets = np.stack([subset_of(spec, ratio, s, n) for s in seeds])
    members = engine.Members(
        init_seeds=[derive_seed(spec.seed, "init", f"{plan.cell}:{s}") for s in seeds],
        order_seeds=[derive_seed(spec.seed, "order", f"{plan.cell}:{s}") for s in seeds],
        subsets=torch.as_tensor(subsets, device=device),
    )
    mask = mask.cpu().numpy()
    columns = {
        **_identity_columns(members, [c] * k, [mask.sum()] * k, [corruption_seed] * k),
        "subset_ratio": np.full(k, ratio),
        "subset_size": np.full(k, subsets.shape[1], dtype=np.int32),
    }
    return Job(
        data,
        members,
        spec.arch,
        spec.arch_label,
        [{"cell": c, "variant": v} for c, v, _ in plan.models()],
        seeds,
        {"train": data.train.y.cpu().numpy(), "test": clean["test"]},
        clean,
        {"train": mask, "test": np.zeros(len(clean["test"]), dtype=bool)},
        columns,
    )


def prepare(spec: Spec, plan: TrialPlan, data_root: str, device: torch.device) -> Job:
    if isinstance(spec, SubsetSpec):
        return prepare_subsets(spec, plan, data_root, device)
    if isinstance(spec, DifficultySpec):
        data = datasets.load(spec.dataset, data_root, device)
        if spec.train_size is not None:
            data = data.subset_train(spec.train_size)
    else:
        data = datasets.load(
            spec.dataset, data_root, device, normalize=spec.preprocess.normalize, crop=spec.preprocess.crop
        )
        if spec.train_size is not None:
            data = data.subset_train(spec.train_size)
        if spec.validation.size:  # carved before any corruption, one fixed draw: every cell holds out the same
            data = data.carve_validation(spec.validation.size, seed=derive_seed(spec.seed, "validation", 0))
    models_ = plan.models()
    clean = {"train": data.train.y.cpu().numpy(), "test": data.test.y.cpu().numpy()}
    # One draw per corruption, shared by every seed (and architecture) that trains on it.
    drawn: dict[str, tuple[datasets.Data, torch.Tensor, int, Corruption]] = {}
    for _, variant, _ in models_:
        if variant not in drawn:
            c = spec.corruption_of(variant)
            seed = derive_seed(spec.seed, "corruption", variant)  # fig1: a cell is a variant (and its axes)
            corrupted, mask = corruption.apply(data, c.kind, c.p, seed)
            drawn[variant] = (corrupted, mask, seed, c)
    data = drawn[models_[0][1]][0]  # the pack's images (one input group: the same for every member)
    labels_k = torch.stack([drawn[v][0].train.y for _, v, _ in models_])
    masks = np.stack([drawn[v][1].cpu().numpy() for _, v, _ in models_])
    labels = {"train": labels_k.cpu().numpy(), "test": clean["test"]}
    true = dict(clean)
    corrupted = {"train": masks, "test": np.zeros(len(clean["test"]), dtype=bool)}
    if data.val is not None:
        clean_val = data.val.y.cpu().numpy()
        c = Corruption.parse(spec.validation.corruption)
        data, val_mask = corruption.apply_to_validation(data, c.kind, c.p, derive_seed(spec.seed, "val-corruption", 0))
        labels["val"], true["val"], corrupted["val"] = data.val.y.cpu().numpy(), clean_val, val_mask.cpu().numpy()
    seeds = [s for _, _, s in models_]
    members = engine.Members(
        init_seeds=[derive_seed(spec.seed, "init", s) for s in seeds],
        order_seeds=[derive_seed(spec.seed, "order", s) for s in seeds],
        labels=None if len(drawn) == 1 else labels_k,
    )
    if len(drawn) == 1:
        labels["train"] = labels["train"][0]
    keys = [{"cell": c, "variant": v, **({"arch": plan.arch} if plan.arch else {})} for c, v, _ in models_]
    k = len(seeds)
    columns = _identity_columns(
        members, [drawn[v][3] for _, v, _ in models_], masks.sum(axis=1), [drawn[v][2] for _, v, _ in models_]
    )
    if isinstance(spec, ConvergenceSpec):
        columns["lr"] = np.full(k, spec.optimizer.lr_for(plan.arch))
    arch = "mlp" if isinstance(spec, DifficultySpec) else plan.arch
    label = "mlp-" + "x".join(map(str, spec.model.hidden)) if isinstance(spec, DifficultySpec) else plan.arch
    return Job(data, members, arch, label, keys, seeds, labels, true, corrupted, columns)


def trial_spec(sweep: Spec, plan: TrialPlan) -> Spec:
    """The spec a trial trains with: the sweep's, with the trial's values of the axes that are not
    per member (a width, a batch size); per-member values go to `with_axes`. A convergence trial
    trains one point: all of its values."""
    if not plan.points:
        return sweep
    point = sweep.points()[plan.points[0][0]]
    return sweep.at(point if plan.members else axes.trial_part(point))  # a convergence pack: one point


def with_axes(sweep: Spec, plan: TrialPlan, job: Job) -> Job:
    """The job with each member's hyperparameter-axis values: its per-member SGD values
    (engine.Members.hyper) and a column per axis in its identity keys (every table's rows)."""
    if not plan.points:
        return job
    points = sweep.points()
    mine = [points[i] for i in plan.member_points()]
    hyper = {name: [p[key] for p in mine] for key, name in axes.MEMBER_KEYS.items() if key in mine[0]}
    job.members = dataclasses.replace(job.members, hyper=hyper)
    job.keys = [{**key, **axes.columns(points, p)} for key, p in zip(job.keys, mine)]
    return job


def build_pack(spec: Spec, job: Job, device: torch.device) -> torch.nn.Module:
    """The pack, initialized from the members' init seeds, on the device; for `torch.func` packs
    the faster of vmap and a per-member loop, timed on a first batch (`pack.mode`)."""
    hidden = spec.model.hidden if isinstance(spec, (DifficultySpec, SubsetSpec)) and job.arch == "mlp" else None
    wrn = spec.wrn if isinstance(spec, ConvergenceSpec) else None
    pack = packs.build(
        job.arch,
        job.data.input_shape,
        job.data.num_classes,
        job.members.init_seeds,
        hidden=hidden,
        wrn_depth=wrn.depth if wrn else 28,
        wrn_widen=wrn.widen if wrn else 1,
    ).to(device)
    batch = job.data.train.x[: spec.batch_size]
    packs.choose_mode(pack, batch.expand(job.members.k, *batch.shape))
    return pack


def schedule(spec: Spec, plan: TrialPlan, chunk: int) -> engine.Schedule:
    if isinstance(spec, SubsetSpec):  # to the threshold, checked every check_every epochs; scores kept once
        return engine.Schedule(
            **_common(spec, chunk),
            max_epochs=spec.max_epochs,
            threshold=spec.threshold,
            scored_epochs=spec.scored_epochs(),
            keep_splits=("train", "test"),
            keep_last=True,
        )
    if isinstance(spec, DifficultySpec):
        return engine.Schedule(
            **_common(spec, chunk),
            max_epochs=max(spec.epochs),
            scored_epochs=spec.scored_epochs(),
            score_splits=tuple(spec.splits),
            keep_splits=tuple(spec.splits),
            autocast=torch.bfloat16 if spec.precision == "bf16" else None,
        )
    opt = spec.optimizer
    return engine.Schedule(
        **dict(_common(spec, chunk), lr=opt.lr_for(plan.arch)),
        lr_decay=opt.lr_decay,
        lr_step_every=opt.lr_step_every,
        lr_step_factor=opt.lr_step_factor,
        max_epochs=spec.max_epochs,
        threshold=spec.threshold,
        time_budget_s=spec.time_budget_s,
        patience=spec.early_stopping.patience,
        stop_early=spec.early_stopping.stop,
        fit_splits=("train", "val") if spec.phase2_epochs else ("train",),
        keep_splits=tuple(spec.record_splits) if spec.record_examples else (),
        keep_every=spec.record_every,
    )


def _common(spec: Spec, chunk: int) -> dict[str, Any]:
    """What every family's schedule takes from the spec alike: the SGD values of catalog.SGD_HYPER
    (a new one needs no change here), the regularizers, the batch size, norms and the chunk."""
    return {
        **{name: getattr(spec.optimizer, name) for name in SGD_HYPER},
        "regularizers": spec.regularizers.model_dump(),
        "batch_size": spec.batch_size,
        "norms": spec.norms,
        "chunk": chunk,
    }


@dataclass
class Phase1:
    """Where phase 1 of a two-phase (forgetting) run ended: its outcome's stop reasons and
    reached_* values per member, each member's last phase-1 epoch, and the pack's."""

    outcome: dict[str, list]
    boundary: list[int]
    last: int


@dataclass
class Found:
    """What a trial's probes and phases found, saved in every checkpoint (`to_dict`: plain
    values, which `torch.load(weights_only=True)` reads back) and read by `sweep.tables`."""

    phase: int = 1
    phase1: Phase1 | None = None
    probes: list[dict[str, Any]] = field(default_factory=list)  # rows of the probes table, by member index
    filters: list[tuple[int, int, np.ndarray]] = field(default_factory=list)  # (member, epoch, weights)
    init_norms: dict[str, np.ndarray] = field(default_factory=dict)  # layer -> (K,) norm at initialization

    def to_dict(self) -> dict[str, Any]:
        phase1 = (
            None
            if self.phase1 is None
            else {**self.phase1.outcome, "boundary": self.phase1.boundary, "last": self.phase1.last}
        )
        return {
            "phase": self.phase,
            "phase1": phase1,
            "probes": self.probes,
            "filters": self.filters,
            "init_norms": self.init_norms,
        }

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> Found:
        p = saved.get("phase1")
        phase1 = (
            None
            if p is None
            else Phase1({k: v for k, v in p.items() if k not in ("boundary", "last")}, p["boundary"], p["last"])
        )
        return cls(saved["phase"], phase1, saved["probes"], saved["filters"], saved["init_norms"])


@dataclass
class Probes:
    """The probes a spec turns on (`sweep/probes/`), run on each member still training (a copy
    of it, as a module) after every epoch, and on every member after training. `found` holds
    what they measured, with the phases and initial norms, saved in every checkpoint."""

    spec: Spec
    job: Job
    found: Found = field(default_factory=Found)

    def __post_init__(self) -> None:
        configs = self.spec.probes
        self.on = {n: getattr(configs, n) for n in probe_plugins.REGISTRY if getattr(configs, n) is not None}

    def at_start(self, pack) -> None:
        if self.spec.norms:
            self.found.init_norms = {k: v.cpu().numpy() for k, v in pack.layer_norms().items()}
        self.on_epoch(pack, 0, np.ones(self.job.members.k, dtype=bool))

    def on_epoch(self, pack, epoch: int, active: np.ndarray) -> None:
        if self.on:
            for k in np.flatnonzero(active):
                self._run("on_epoch", pack, int(k), epoch)

    def at_end(self, pack, outcome: engine.Outcome) -> None:
        if self.on:
            for k in range(self.job.members.k):
                self._run("at_end", pack, k, outcome.last_record(k).epoch)

    def _run(self, hook: str, pack, k: int, epoch: int) -> None:
        """Each probe's `hook` on member k (its module made once, when a probe asks for it); its
        rows go to the table the probe names."""
        member = functools.cache(lambda: pack.member(k))
        for name, config in self.on.items():
            module = probe_plugins.REGISTRY[name]
            rows = getattr(self.found, module.TABLE)
            run = probe_plugins.Run(
                self.spec.seed, self.job.data, self.job.seeds, self._train_labels, self._train_rows, rows
            )
            try:
                rows.extend(getattr(module, hook)(run, config, member, k, epoch))
            except Exception as exc:  # the trial's error names the probe, not only its last frame
                raise RuntimeError(f"probe {name} failed in {hook} (member {k}, epoch {epoch}): {exc!r}") from exc

    def _train_labels(self, k: int) -> torch.Tensor:
        members = self.job.members
        return members.labels[k] if members.labels is not None else self.job.data.train.y

    def _train_rows(self, k: int) -> torch.Tensor | None:
        subsets = self.job.members.subsets
        return None if subsets is None else subsets[k]
