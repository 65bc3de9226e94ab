"""Sweep specs: the typed, strict description of a sweep, one class per study family.

Unknown keys, values of the wrong type and out-of-range values are errors that name the key,
the value and what is allowed (`SpecError`, one line). Presets and `--set` overrides become a
spec in `sweep.presets`; a spec becomes trials in `sweep.planner`; its seeds follow the rule in
`sweep.seeding`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import typing
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model, field_validator, model_validator

from analysis import plugins
from catalog import ARCHITECTURES, ARCHS, DATASET_TABLE, DATASETS, DEFAULT_LR, NORMALIZATIONS, Corruption
from sweep import axes, probes
from sweep.bounds import MAX_BATCH, MAX_EPOCHS, MAX_LIST, MAX_SEEDS, MAX_WIDTH, Strict

# Input shape (C, H, W) and class count of each data set, known without loading it.
DATASET_SHAPES = {d.name: (d.shape, d.classes) for d in DATASET_TABLE.values()}
TRAIN_SIZES = {d.name: d.train_size for d in DATASET_TABLE.values()}
TEST_SIZES = {d.name: d.test_size for d in DATASET_TABLE.values()}


class SpecError(ValueError):
    """A preset, override or value that is not allowed; the message is one line for the user."""


MAX_AUTO_PACK = 64  # models per convergence pack when pack_size is not set
CONV_PACK = 16  # convolutional models per pack of a subset sweep when pack_size is not set
# Trials per slot (trials the cluster runs at once) when the plan sizes them: at least two, so
# that no core idles behind the last, slowest trial.
TRIALS_PER_SLOT = 2

MAX_LR = 100.0  # a finite lr of 1e308 would train to NaN as surely as an infinite one

# A sweep name is one path component of the results location, and a key on S3: letters,
# digits, '.', '_' and '-', starting with a letter or digit (so never '.', '..' or hidden).
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"


def check_name(name: str) -> str:
    """`name` if it is a safe sweep name, else SpecError naming it and the rule."""
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise SpecError(
            f"bad sweep name {name!r}: use 1-100 letters, digits, '.', '_' or '-', starting "
            "with a letter or digit; it names a folder under the results location"
        )
    return name


def _no_repeats(v: list, what: str) -> list:
    if len(set(v)) != len(v):
        raise ValueError(f"must not repeat {what}, got {v}")
    return v


# One field per probe plug-in (sweep/probes/), each off (None) unless its block is given.
ProbesSpec = create_model(
    "ProbesSpec", __base__=Strict, **{name: (module.Config | None, None) for name, module in probes.REGISTRY.items()}
)
NO_VALIDATION = "which only convergence sweeps (engine: interpolate) have: use train or test"


def check_probes(spec: ProbesSpec, archs: list[str], no_val: str | None, scored: tuple[int, ...] | None = None) -> None:
    """ValueError naming the probe unless each probe that is on can run on `archs`, finds the
    splits it reads (`no_val`: why the sweep has no validation split; None: it has one) and, where
    the sweep scores only some epochs (`scored`; its probes run after those), is due at one of them."""
    for name, module in probes.REGISTRY.items():
        config = getattr(spec, name)
        if config is None:
            continue
        if "val" in getattr(module, "splits", lambda c: set())(config) and no_val:
            raise ValueError(f"probes.{name} reads the val split, {no_val}")
        if hasattr(module, "check"):
            module.check(config, archs)
        if scored is not None and hasattr(module, "check_epochs"):
            module.check_epochs(config, scored)


class ModelSpec(Strict):
    hidden: Annotated[list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]], Field(min_length=1, max_length=64)] = [
        4096,
        4096,
    ]


MAX_WEIGHT_DECAY = 1.0  # L2 coefficient


class OptimizerSpec(Strict):
    lr: Annotated[float, Field(gt=0, le=MAX_LR)] = 0.01
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0
    weight_decay: Annotated[float, Field(ge=0, le=MAX_WEIGHT_DECAY)] = 0.0  # L2, coupled as torch.optim.SGD does


class RegularizersSpec(Strict):
    """Explicit regularizers (trainables/regularize.py), each 0 (off) by default."""

    input_noise: Annotated[float, Field(ge=0, le=100)] = 0.0  # std of Gaussian noise on the (standardized) inputs
    crop: Annotated[int, Field(ge=0, le=64)] = 0  # random crop: pixels of padding (Zhang et al.: 4 on CIFAR-10)
    flip: bool = False  # random horizontal flip
    fgsm_eps: Annotated[float, Field(ge=0, le=100)] = 0.0  # adversarial training: FGSM step on the inputs
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0  # drop probability of each hidden unit (MLPs)


class CorruptionSpec(Strict):
    p: Annotated[float, Field(ge=0, le=1)] = 1.0  # fraction of training examples corrupted


class _SpecBase(Strict):
    @field_validator("name", check_fields=False)
    @classmethod
    def _safe_name(cls, v: str) -> str:
        try:
            return check_name(v)
        except SpecError as exc:
            raise ValueError(str(exc).split(": ", 1)[1]) from None

    # Hyperparameter axes (sweep/axes.py): a grid over any key, or random samples.
    grid: dict[str, Annotated[list[Any], Field(max_length=axes.MAX_POINTS)]] = {}
    sample: axes.Sample | None = None

    @model_validator(mode="after")
    def _axes_fit(self):
        axes.check(self.grid, self.sample, set(type(self).model_fields))
        # Every point drawn, and each distribution's bounds and choices, whether drawn or not.
        ends = [{k: v} for k, d in (self.sample.space if self.sample else {}).items() for v in d.values()]
        for point in [*ends, *(self.points() if (self.grid or self.sample) else [])]:
            try:
                self.at(point)
            except (SpecError, ValidationError) as exc:
                text = _one_line(exc) if isinstance(exc, ValidationError) else str(exc)
                raise ValueError(f"on an axis, {text.removeprefix('bad spec: ')}") from None
        return self

    def points(self) -> list[dict[str, Any]]:
        """Every point of the sweep's axes (sweep/axes.py); [{}] without axes."""
        return axes.points(self.grid, self.sample, self.seed)

    def at(self, point: dict[str, Any]) -> Spec:
        """This spec with `point`'s values set and no axes: what one model trains with."""
        tree = {**self.model_dump(), "grid": {}, "sample": None}
        for key, value in point.items():
            set_path(tree, key, value, type(self))
        return type(self).model_validate(tree)

    # Keys left out of the spec's identity (they change no stored number beyond float rounding);
    # none by default: in a convergence grid pack_size decides which models share a pack's clock
    # (time budgets, seconds to interpolation).
    EXECUTION_KEYS: typing.ClassVar[tuple[str, ...]] = ()
    HASHED_PROBES: typing.ClassVar[tuple[str, ...]] = ()  # probes hashed when off too

    def hash(self) -> str:
        """Identity of what the sweep computes, 16 hex digits: every key but the description and
        the keys that only say how the work is cut up (EXECUTION_KEYS), which change no number beyond
        float rounding."""
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:16]

    def identity(self) -> dict[str, Any]:
        """What `hash` digests: the spec's values but the description and EXECUTION_KEYS, with the
        probes that are off left out (but HASHED_PROBES, which stores made before hashed)."""
        body = self.model_dump(exclude={"description", *self.EXECUTION_KEYS})
        if "probes" in body:
            body["probes"] = {k: v for k, v in body["probes"].items() if v is not None or k in self.HASHED_PROBES}
            if not body["probes"]:
                del body["probes"]
        return body


class DifficultySpec(_SpecBase):
    """Per-example difficulty (Arpit et al. 2017, Fig. 1): seeds x variants of one MLP."""

    # How the seeds are cut into trials and packs changes no stored number beyond float rounding (a
    # batched GEMM may sum in another order: a loss can differ in its last bit): its members are
    # independent and one epoch long (tests/test_engine.py holds packs to members trained alone).
    EXECUTION_KEYS: typing.ClassVar[tuple[str, ...]] = ("pack_size", "trial_size", "memory_budget_gb")

    name: str
    description: str = ""
    engine: Literal["packed"] = "packed"
    dataset: Literal[DATASETS] = "cifar10"
    seeds: Annotated[int, Field(ge=1, le=MAX_SEEDS)] = 100
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    epochs: Annotated[list[Annotated[int, Field(ge=1, le=MAX_EPOCHS)]], Field(min_length=1, max_length=MAX_LIST)] = [1]
    variants: Annotated[list[Literal["real", "randX", "randY"]], Field(min_length=1)] = ["real", "randX", "randY"]
    corruption: CorruptionSpec = CorruptionSpec()
    model: ModelSpec = ModelSpec()
    optimizer: OptimizerSpec = OptimizerSpec()
    regularizers: RegularizersSpec = RegularizersSpec()
    batch_size: Annotated[int, Field(ge=1, le=MAX_BATCH)] = 256
    # Seeds a trial trains (one fragment each); None: `pack_size` if it is set, else cut so that
    # every slot (trials the cluster runs at once) gets at least TRIALS_PER_SLOT trials.
    trial_size: Annotated[int, Field(ge=1, le=MAX_SEEDS)] | None = None
    # Seeds trained at once as one pack inside a trial (a trial trains its packs one after
    # another); None: sized on the worker, to its last-level cache on a CPU
    # (trainables.budget.cache_pack_size, at most 20 MiB a pack) and to memory_budget_gb on a GPU.
    pack_size: Annotated[int, Field(ge=1, le=MAX_SEEDS)] | None = None
    memory_budget_gb: Annotated[float, Field(gt=0, le=4096)] = 2.0
    splits: Annotated[list[Literal["train", "test"]], Field(min_length=1)] = ["train", "test"]
    train_size: Annotated[int, Field(ge=1, le=100_000_000)] | None = None  # the first N training examples only
    # fp32; tf32 (CUDA matmuls in TF32); bf16 (autocast to bfloat16, parameters and
    # optimizer state stay fp32). Effect on results: benchmarks/README.md.
    precision: Literal["fp32", "tf32", "bf16"] = "fp32"
    # Per-example probabilities, losses and EL2N in the examples table as float32 or float16
    # (bytes per row: results/README.md).
    record_dtype: Literal["float32", "float16"] = "float32"
    norms: bool = True  # each layer's Frobenius norm per seed at every scored epoch (norms table)
    probes: ProbesSpec = ProbesSpec()

    @field_validator("epochs")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        if any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError(f"must be strictly increasing, got {v}")
        return v

    @field_validator("variants", "splits")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        return _no_repeats(v, "a name")

    @model_validator(mode="after")
    def _train_size_fits(self) -> DifficultySpec:
        _check_train_size(self.train_size, self.dataset)
        check_probes(self.probes, ["mlp"], NO_VALIDATION, self.scored_epochs())
        return self

    def corruption_of(self, variant: str) -> Corruption:
        """The corruption a model of this sweep trains on: its variant's kind at `corruption.p`."""
        return Corruption.of(variant, self.corruption.p)

    def scored_epochs(self) -> tuple[int, ...]:
        """The epochs after which its models are scored (and probed)."""
        return tuple(self.epochs)

    def resolved_trial_size(self, slots: int = 1) -> int:
        """Seeds per trial (see `trial_size`)."""
        return _trial_size(self, len(self.variants), slots)

    def resolved_pack_size(
        self, seeds: int, device: str = "cpu", sharers: int = 1, cache_bytes: int | None = None
    ) -> int:
        """Seeds per pack for a trial of `seeds` on `device`: on a CPU, sized to `cache_bytes` (the
        trial's share of the last-level cache; default: the whole cache over `sharers`) and at most
        `budget.CPU_PACK_BYTES` (20 MiB) of parameters and momentum; on a GPU, to `memory_budget_gb`."""
        from trainables import budget  # plain arithmetic: the driver plans without torch

        (c, h, w), classes = DATASET_SHAPES[self.dataset]
        if self.pack_size is not None:
            return min(self.pack_size, seeds)
        if device == "cuda":
            return budget.auto_pack_size(
                int(self.memory_budget_gb * 2**30), seeds, c * h * w, self.model.hidden, classes, self.batch_size
            )
        return budget.cache_pack_size(
            seeds, c * h * w, self.model.hidden, classes, sharers=sharers, cache_bytes=cache_bytes
        )


def _check_train_size(train_size: int | None, dataset: str) -> None:
    """`train_size` takes the first N training examples: N past the data set's own size would
    silently be all of them under another spec hash."""
    if train_size is not None and train_size > TRAIN_SIZES[dataset]:
        raise ValueError(
            f"train_size {train_size:,} is more than the {TRAIN_SIZES[dataset]:,} training examples of "
            f"{dataset} (allowed: 1 to {TRAIN_SIZES[dataset]:,}, or leave it unset for all)"
        )


def _trial_size(spec, cells: int, slots: int) -> int:
    """Models per trial of a fig1 or subset sweep: `trial_size`, else `pack_size`, else cut so
    that every slot gets at least TRIALS_PER_SLOT trials."""
    if spec.trial_size is not None:
        return min(spec.trial_size, spec.seeds)
    if spec.pack_size is not None:
        return min(spec.pack_size, spec.seeds)
    trials_per_cell = max(1, math.ceil(TRIALS_PER_SLOT * slots / cells))
    return math.ceil(spec.seeds / min(trials_per_cell, spec.seeds))


class PreprocessSpec(Strict):
    crop: Annotated[int, Field(ge=1, le=4096)] | None = 28  # centre crop (Zhang et al.: 28x28); None keeps the size
    normalize: Literal[NORMALIZATIONS] = "per_image"


# Zhang et al.: 0.01 for the MLPs and small AlexNet, 0.1 for Inception (and WideResNet); one field
# per architecture of the catalog, so every architecture has a default learning rate.
LrByArch = create_model(
    "LrByArch",
    __base__=Strict,
    **{arch: (Annotated[float, Field(gt=0, le=MAX_LR)], lr) for arch, lr in DEFAULT_LR.items()},
)


class InterpolationOptimizer(Strict):
    lr: Annotated[float, Field(gt=0, le=MAX_LR)] | None = None  # None: lr_by_arch
    lr_by_arch: LrByArch = LrByArch()
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0, le=MAX_WEIGHT_DECAY)] = 0.0  # L2, coupled as torch.optim.SGD does
    lr_decay: Annotated[float, Field(gt=0, le=1)] = 0.95  # per epoch
    lr_step_every: Annotated[int, Field(ge=1)] | None = None  # also multiply by lr_step_factor every N epochs
    lr_step_factor: Annotated[float, Field(gt=0, le=1)] = 0.5

    def lr_for(self, arch: str) -> float:
        return self.lr if self.lr is not None else getattr(self.lr_by_arch, arch)


class WrnSpec(Strict):
    depth: Annotated[int, Field(ge=10, le=1_000)] = 28
    widen: Annotated[int, Field(ge=1, le=64)] = 1

    @field_validator("depth")
    @classmethod
    def _six_n_plus_4(cls, v: int) -> int:
        if (v - 4) % 6:
            raise ValueError(f"must be 6n + 4 (16, 22, 28, 40, ...), got {v}")
        return v


class ValidationSpec(Strict):
    """A validation split carved out of the training images before any corruption, with its
    own corruption (e.g. true labels while the training split has random ones)."""

    size: Annotated[int, Field(ge=0)] = 0  # examples moved from train to val; 0: no validation split
    corruption: str = "real"  # real, randY:p, randX:p or gaussian

    @field_validator("corruption")
    @classmethod
    def _kind(cls, v: str) -> str:
        parsed = Corruption.parse(v)
        v, kind = str(parsed), parsed.kind
        if kind not in ("real", "randX", "randY", "gaussian"):
            raise ValueError(f"{v!r}: a validation split allows real, randX, randY or gaussian")
        return v


class EarlyStoppingSpec(Strict):
    patience: Annotated[int, Field(ge=1, le=MAX_EPOCHS)] | None = None  # None: off
    stop: bool = True  # False: only record the epoch it would stop at, and train on


class ConvergenceSpec(_SpecBase):
    """Train until interpolation (Zhang et al. 2017): archs x corruptions x seeds, in packs of models."""

    # The probes a convergence spec hashed before probes were plug-ins, set or not. Any other probe
    # is in a spec's hash only when it is on, so adding a probe changes no stored sweep's identity.
    HASHED_PROBES: typing.ClassVar[tuple[str, ...]] = ("csr", "filters", "weight_noise")

    name: str
    description: str = ""
    engine: Literal["interpolate"]
    dataset: Literal[DATASETS] = "cifar10"
    seeds: Annotated[int, Field(ge=1, le=MAX_SEEDS)] = 1
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    archs: Annotated[list[Literal[ARCHS]], Field(min_length=1)]
    corruptions: Annotated[list[str], Field(min_length=1)]
    # The first N training examples only (before a validation split is carved from them): a grid
    # that must interpolate sized to the machine, e.g. 10,000 of Fashion-MNIST's 60,000 on a CPU.
    train_size: Annotated[int, Field(ge=1, le=100_000_000)] | None = None
    preprocess: PreprocessSpec = PreprocessSpec()
    optimizer: InterpolationOptimizer = InterpolationOptimizer()
    regularizers: RegularizersSpec = RegularizersSpec()
    batch_size: Annotated[int, Field(ge=1, le=MAX_BATCH)] = 128
    # Full-set train accuracy that counts as interpolation; null: train all max_epochs.
    threshold: Annotated[float, Field(gt=0, le=1)] | None = 1.0
    max_epochs: Annotated[int, Field(ge=1, le=MAX_EPOCHS)] = 300
    time_budget_s: Annotated[float, Field(gt=0, le=1e7)] | None = None  # training seconds per pack
    checkpoint_every: Annotated[int, Field(ge=1, le=MAX_EPOCHS)] = 5  # epochs between tune.Checkpoints
    record_examples: bool = False  # per-example scores (examples table) of record_splits
    record_splits: Annotated[list[Literal["train", "test", "val"]], Field(min_length=1)] = ["train"]
    record_every: Annotated[int, Field(ge=1, le=MAX_EPOCHS)] = 1  # epochs between recorded evaluations
    record_dtype: Literal["float32", "float16"] = "float32"
    norms: bool = True  # each layer's Frobenius norm every epoch (norms table)
    validation: ValidationSpec = ValidationSpec()
    # Catastrophic forgetting: > 0 makes the run two-phase. Phase 1 trains on train + val until
    # both reach `threshold` (or max_epochs / time_budget_s); phase 2 trains on train alone for
    # this many more epochs. Needs a validation split.
    phase2_epochs: Annotated[int, Field(ge=0, le=MAX_EPOCHS)] = 0
    early_stopping: EarlyStoppingSpec = EarlyStoppingSpec()
    probes: ProbesSpec = ProbesSpec()
    wrn: WrnSpec = WrnSpec()
    # Models trained as one pack (corruption levels x seeds of one architecture and one set of
    # training images); None: all of them, up to MAX_AUTO_PACK. 1: one model per trial.
    pack_size: Annotated[int, Field(ge=1, le=MAX_SEEDS)] | None = None

    @field_validator("corruptions")
    @classmethod
    def _corruptions(cls, v: list[str]) -> list[str]:
        # Written back in one form ('randX' -> 'randX:1.0', 'randY:.5' -> 'randY:0.5'), so that one
        # corruption can never be listed twice under two spellings.
        return _no_repeats([str(Corruption.parse(text)) for text in v], "a corruption")

    def corruption_of(self, variant: str) -> Corruption:
        """The corruption a model of this sweep trains on, from its `variant` ('randY:0.3')."""
        return Corruption.parse(variant)

    @field_validator("archs")
    @classmethod
    def _archs(cls, v: list[str]) -> list[str]:
        return _no_repeats(v, "an arch")

    @field_validator("record_splits")
    @classmethod
    def _record_splits(cls, v: list[str]) -> list[str]:
        return _no_repeats(v, "a split")

    @model_validator(mode="after")
    def _needs(self) -> ConvergenceSpec:
        has_val = self.validation.size > 0
        _check_train_size(self.train_size, self.dataset)
        n = self.train_size or TRAIN_SIZES[self.dataset]
        if self.validation.size >= n:
            raise ValueError(
                f"validation.size={self.validation.size} must be less than "
                + (f"train_size={n:,}" if self.train_size else f"the {n:,} {self.dataset} training examples")
            )
        if self.phase2_epochs and self.pack_size not in (None, 1):
            raise ValueError(
                f"pack_size={self.pack_size} with phase2_epochs: two-phase runs train one model "
                "per trial (each model's phase 2 starts at its own phase-1 end)"
            )
        if self.phase2_epochs and self.early_stopping.patience is not None:
            raise ValueError(
                "early_stopping.patience and phase2_epochs cannot be combined "
                "(early stopping would end phase 1 on validation accuracy it is also fitting)"
            )
        wants = [
            ("phase2_epochs", self.phase2_epochs, self.phase2_epochs > 0),
            ("early_stopping.patience", self.early_stopping.patience, self.early_stopping.patience is not None),
            ("record_splits", self.record_splits, "val" in self.record_splits),
        ]
        for key, value, needed in wants:
            if needed and not has_val:
                raise ValueError(f"{key}={value} needs a validation split: set validation.size > 0")
        conv = [a for a in self.archs if ARCHITECTURES[a].conv]
        if self.regularizers.dropout and conv:
            raise ValueError(
                f"regularizers.dropout={self.regularizers.dropout} is for the MLPs (mlp1, mlp3), not {', '.join(conv)}"
            )
        check_probes(self.probes, self.archs, None if has_val else "which this sweep lacks: set validation.size > 0")
        return self

    def resolved_pack_size(self, slots: int = 1) -> int:
        """Models per pack: `pack_size`; else the models of an input group (levels x seeds) split
        so that the sweep has at least two trials per slot (trials that can run at once: on a
        2-core machine 2; 3 architectures then make 6 packs, so no core idles behind the last,
        slowest pack), at most MAX_AUTO_PACK. Two-phase runs train one model a trial: each
        model's phase 2 starts at its own phase-1 end, with its own learning-rate schedule."""
        if self.phase2_epochs:
            return 1
        if self.pack_size is not None:
            return self.pack_size
        groups = input_groups(self.corruptions)
        largest = max(len(g) for g in groups.values()) * self.seeds
        packs_per_group = max(1, math.ceil(TRIALS_PER_SLOT * slots / (len(groups) * len(self.archs))))
        return max(1, min(math.ceil(largest / packs_per_group), MAX_AUTO_PACK))


class SubsetSpec(_SpecBase):
    """Many models on random subsets of the training set, for memorization and influence
    estimates (Feldman & Zhang 2020) and consistency scores (Jiang et al. 2021).

    For every subset ratio r in `ratios` (a cell 'ratio<r>'), `seeds` models of one architecture each
    train on their own random subset of round(r * N) of the N training examples until they fit
    it (accuracy on their own subset >= `threshold`, checked every `check_every` epochs, or
    `max_epochs`). Every training and test example is then scored by every model. Subsets
    (the documented rule): model s of ratio r trains on the first round(r * N) entries of
    ``numpy.random.default_rng(derive_seed(seed, "subset", f"{r:g}:{s}")).permutation(N)``, stored
    in the members table; its init and order seeds are ``derive_seed(seed, "init"|"order",
    f"{cell}:{s}")`` with cell ``f"ratio{r:g}"``. A model's subset and seeds do not depend on how many models the sweep has,
    so a sweep grows (`sweep launch ... --set seeds=M --resume`) without retraining any."""

    EXECUTION_KEYS: typing.ClassVar[tuple[str, ...]] = ("pack_size", "trial_size", "memory_budget_gb")

    name: str
    description: str = ""
    engine: Literal["subsets"]
    dataset: Literal[DATASETS] = "cifar10"
    seeds: Annotated[int, Field(ge=1, le=MAX_SEEDS)] = 2000  # models per subset ratio
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    # Fractions of the training set each model trains on: one for memorization (Feldman & Zhang
    # 2020: 0.7), several for C-scores (Jiang et al. 2021: 0.1 ... 0.9).
    ratios: Annotated[list[float], Field(min_length=1, max_length=100)] = [0.7]
    corruption: CorruptionSpec = CorruptionSpec(p=0.0)  # randY: fraction of training labels made random
    # 'mlp' (ReLU MLP of `model.hidden`) or an architecture of the convergence grids (mlp1, alexnet,
    # inception, wrn, cnn, ...), e.g. for CIFAR-10 with convolutional networks as the papers did
    arch: Literal[("mlp", *ARCHS)] = "mlp"
    model: ModelSpec = ModelSpec(hidden=[512])
    optimizer: OptimizerSpec = OptimizerSpec(lr=0.05, momentum=0.9)
    regularizers: RegularizersSpec = RegularizersSpec()
    batch_size: Annotated[int, Field(ge=1, le=MAX_BATCH)] = 32
    # A model stops once its accuracy on its own subset reaches `threshold` (checked after every
    # `check_every` epochs), or at max_epochs; null threshold: train all max_epochs.
    threshold: Annotated[float, Field(gt=0, le=1)] | None = 0.99
    check_every: Annotated[int, Field(ge=1, le=MAX_EPOCHS)] = 5
    max_epochs: Annotated[int, Field(ge=1, le=MAX_EPOCHS)] = 40
    trial_size: Annotated[int, Field(ge=1, le=MAX_SEEDS)] | None = None  # models per trial (see DifficultySpec)
    pack_size: Annotated[int, Field(ge=1, le=MAX_SEEDS)] | None = None  # models trained at once
    memory_budget_gb: Annotated[float, Field(gt=0, le=4096)] = 2.0
    train_size: Annotated[int, Field(ge=1, le=100_000_000)] | None = None  # the first N training examples only
    record_dtype: Literal["float32", "float16"] = "float32"
    norms: bool = False
    probes: ProbesSpec = ProbesSpec()

    @model_validator(mode="after")
    def _dropout_on_mlps(self) -> SubsetSpec:
        if self.regularizers.dropout and self.arch not in ("mlp", "mlp1", "mlp3"):
            raise ValueError(
                f"regularizers.dropout={self.regularizers.dropout} needs an MLP arch (mlp, mlp1, mlp3), "
                f"got arch={self.arch}"
            )
        check_probes(self.probes, [self.arch], NO_VALIDATION, self.scored_epochs())
        return self

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, v: list[float]) -> list[float]:
        bad = [r for r in v if not 0 < r < 1]
        if bad:
            raise ValueError(f"subset fractions must lie strictly between 0 and 1, got {bad[0]}")
        if any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError(f"must be strictly increasing, got {v}")
        names = [f"{r:g}" for r in v]
        if len(set(names)) != len(names):
            raise ValueError(
                f"must differ in their first 6 significant digits (they name cells and seed "
                f"streams as {{r:g}}), got {v}"
            )
        return v

    @model_validator(mode="after")
    def _sizes(self) -> SubsetSpec:
        _check_train_size(self.train_size, self.dataset)
        n = self.train_size if self.train_size is not None else TRAIN_SIZES[self.dataset]
        for r in self.ratios:
            if not 1 <= round(r * n) < n:
                raise ValueError(
                    f"ratio {r} of {n:,} training examples leaves round({r} x {n}) = "
                    f"{round(r * n)} examples in a subset: need at least 1 and fewer than {n:,}"
                )
        return self

    @property
    def variant(self) -> str:
        """The corruption every model trains on: 'real', or 'randY:p' for p > 0."""
        return str(Corruption.of("randY", self.corruption.p)) if self.corruption.p > 0 else "real"

    def corruption_of(self, variant: str) -> Corruption:
        return Corruption.parse(variant)

    def scored_epochs(self) -> tuple[int, ...]:
        """The epochs after which its models check their fit and are scored (and probed): every
        check_every-th, and the last."""
        return tuple(sorted({*range(self.check_every, self.max_epochs + 1, self.check_every), self.max_epochs}))

    @staticmethod
    def cell_of(ratio: float) -> str:
        return f"ratio{ratio:g}"

    def subset_size(self, ratio: float) -> int:
        return round(ratio * (self.train_size or TRAIN_SIZES[self.dataset]))

    def resolved_trial_size(self, slots: int = 1) -> int:
        """Models per trial (see DifficultySpec.trial_size), the same rule with a cell per ratio."""
        return _trial_size(self, len(self.ratios), slots)

    def resolved_pack_size(
        self, seeds: int, device: str = "cpu", sharers: int = 1, cache_bytes: int | None = None
    ) -> int:
        """Models per pack: the MLP rule of DifficultySpec (its memory model) for the MLPs; for
        the other architectures `pack_size`, else CONV_PACK (torch.func packs, timed per trial)."""
        widths = {"mlp": self.model.hidden, "mlp1": [512], "mlp3": [512] * 3}
        if self.arch not in widths:
            return min(self.pack_size or CONV_PACK, seeds)
        like = self.model_copy(update={"model": ModelSpec(hidden=widths[self.arch])})
        return DifficultySpec.resolved_pack_size(like, seeds, device, sharers, cache_bytes)

    @property
    def arch_label(self) -> str:
        """The architecture as the trials table names it ('mlp-128' for the spec's own MLP)."""
        return "mlp-" + "x".join(map(str, self.model.hidden)) if self.arch == "mlp" else self.arch


Spec = DifficultySpec | ConvergenceSpec | SubsetSpec
ENGINES: dict[str, type[BaseModel]] = {"packed": DifficultySpec, "interpolate": ConvergenceSpec, "subsets": SubsetSpec}


def input_groups(corruptions: list[str]) -> dict[str, list[str]]:
    """Corruptions grouped by the training images they use: 'labels' holds the true-label and
    random-label levels (real, randY:p), which train on the same images and so pack together;
    every corruption of the images (randX:p, gaussian, shuffled or random pixels) is its own
    group, named by it ('randX0.5')."""
    groups: dict[str, list[str]] = {}
    for c in corruptions:
        groups.setdefault(Corruption.parse(c).group, []).append(c)
    return groups


def set_path(tree: dict[str, Any], key: str, value: Any, model: type[BaseModel]) -> None:
    """Set tree[a][b] = value for key 'a.b', checking each part against the spec's fields."""
    parts = key.split(".")
    node, cls = tree, model
    for depth, part in enumerate(parts):
        fields = cls.model_fields if cls is not None else {}
        if part not in fields:
            where = ".".join(parts[:depth]) or "the spec"
            allowed = f"(allowed: {', '.join(sorted(fields))})"
            raise SpecError(
                f"unknown key {key!r}: {where} has no {part!r} {allowed}{_probe_hint('.'.join(parts[: depth + 1]))}"
            )
        if depth == len(parts) - 1:
            node[part] = value
            return
        sub = _model_of(fields[part].annotation)
        if sub is None:
            raise SpecError(f"unknown key {key!r}: {'.'.join(parts[: depth + 1])} has no sub-keys")
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SpecError(f"bad preset: {'.'.join(parts[: depth + 1])} is not a mapping")
        cls = sub


def _probe_hint(key: str) -> str:
    """For an unknown probe: how a probe kept outside this repository is installed."""
    if not key.startswith("probes.") or key.count(".") != 1:  # probes.<name>, not a built-in's field
        return ""
    return (
        f"; a probe of your own is named in {plugins.PROBES_ENV} (its module) and {plugins.VIEWS_ENV} (its view), "
        "in every command that reads the sweep"
    )


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The spec model behind a field's annotation (`X` or `X | None`), or None for a plain value."""
    for option in (annotation, *typing.get_args(annotation)):
        if isinstance(option, type) and issubclass(option, BaseModel):
            return option
    return None


def spec_class(tree: dict[str, Any]) -> type[BaseModel]:
    engine = tree.get("engine", "packed")
    if engine not in ENGINES:
        raise SpecError(f"unknown engine {engine!r} (allowed: {', '.join(ENGINES)})")
    return ENGINES[engine]


def validate(tree: dict[str, Any]) -> Spec:
    """The spec a tree describes (its `engine` picks the kind), or SpecError."""
    try:
        return spec_class(tree).model_validate(tree)
    except ValidationError as exc:
        raise SpecError(_one_line(exc)) from None


def _one_line(exc: ValidationError) -> str:
    """The first validation error as 'bad value for KEY: VALUE (what is allowed)'."""
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"] if not isinstance(p, int)) or "spec"
    index = next((p for p in err["loc"] if isinstance(p, int)), None)
    where = f"{key}[{index}]" if index is not None else key
    if err["type"] == "extra_forbidden":
        return f"unknown key {where!r}" + _probe_hint(where)
    if err["type"] == "missing":
        return f"missing key {where!r} (the preset does not set it and it has no default)"
    msg = err["msg"].replace("Value error, ", "")
    if err["type"] == "list_type":
        msg = f"expected a list, e.g. [{err['input']}]"
    elif err["type"] in ("model_type", "model_attributes_type", "dict_type"):
        msg = f"a group of keys: set one of them, e.g. --set {where}.KEY=VALUE; `sweep show` lists them"
    if not err["loc"]:  # a rule across keys: the message names them
        return f"bad spec: {msg}"
    if err["input"] is None:  # `--set KEY=` or `KEY=null` ("unset") on a key that cannot be unset
        return f"bad value for {where}: none given ({where} cannot be unset; {msg[0].lower()}{msg[1:]})"
    shown = repr(err["input"])
    if len(shown) > 80:  # a whole sub-tree: name its type, not its contents
        shown = (
            f"a {type(err['input']).__name__} of {len(err['input'])} entries"
            if hasattr(err["input"], "__len__")
            else shown[:77] + "..."
        )
    return f"bad value for {where}: {shown} ({msg})"


def to_yaml(spec: Spec) -> str:
    """The spec as YAML: every key, less the axes when it has none (and a distribution's unset kinds)."""
    tree = spec.model_dump()
    if not tree["grid"]:
        del tree["grid"]
    if tree["sample"] is None:
        del tree["sample"]
    else:
        tree["sample"]["space"] = {
            k: {kind: v for kind, v in d.items() if v is not None} for k, d in tree["sample"]["space"].items()
        }
    return yaml.safe_dump(tree, sort_keys=False, default_flow_style=None)
