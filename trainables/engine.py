"""The pack engine: the one training loop of memsweep.

A pack is K >= 1 members of one architecture (`packs.py`) trained as one computation. Each
member has its own initialization (its init seed, applied when the pack is built), its own
data order (a `torch.randperm` per epoch from a generator seeded with its order seed, drawn on
the CPU so the order is the same on every device), its own training labels (its corruption:
members of one pack may sit at different label-corruption levels), its own training subset
(an index set; all members' subsets have one size so batches stay aligned) and its own
stopping state. One step gathers a (K, B, ...) batch by index, runs the K networks, and sums
the K per-member mean losses: parameters are disjoint, so each member's gradient is exactly its
own, and SGD with momentum (elementwise) updates each member as if it trained alone. A member
that has stopped is frozen: its parameters, momentum and batch-norm statistics no longer
change and it gets no more records, while the others go on; the run ends when all have stopped.

Schedule: learning rate ``lr * lr_decay ** (epoch - 1) * lr_step_factor ** ((epoch - 1) //
lr_step_every)``; after each scored epoch every split is scored with the members fixed (eval
mode) by `infer` and `score` (the one way to score examples). A member stops when the accuracy
on its own training examples (and the validation split, when it is trained on) reaches
`threshold` (interpolation, Zhang et al. 2017), at `max_epochs`, when `time_budget_s` of the
pack's training time is spent, or (with `patience`) when its validation accuracy has not
improved for `patience` epochs (early stopping).

The run can stop after any epoch and continue exactly: `on_epoch` gets a function returning the
resumable `PackState`, and `run(..., state=...)` continues from it. The engine returns records;
it writes no files and knows nothing of Ray.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from catalog import REGULARIZERS, SGD_HYPER

from . import regularize
from .data import Data
from .models import PackedMLP, loss_and_hits

# An epoch's inputs are gathered in one index op when they take at most this much memory
# (the digits MLP: K x 1,437 x 64 floats, 7 MB at K = 20); larger sets are gathered per step.
EPOCH_GATHER_BYTES = 64 * 2**20
# The MLP's fused steps write their logits into a buffer of at most this many bytes (the digits
# epoch at K = 20: 1.1 MB); the loss and hits are taken from it each time it fills.
LOGIT_BUFFER_BYTES = 16 * 2**20


@dataclass
class SplitScores:
    """Per member x example results of scoring one split, all (K, N) numpy arrays."""

    pred: np.ndarray  # int64 predicted class
    correct: np.ndarray  # bool, pred == label used
    p_label: np.ndarray  # float32 softmax probability of the label used
    loss: np.ndarray  # float32 cross-entropy against the label used, nats
    el2n: np.ndarray  # float32 ||softmax - one_hot(label used)||_2 (Paul et al. 2021), in [0, sqrt(2)]

    def map(self, fn: Callable[[np.ndarray], np.ndarray]) -> SplitScores:
        """The same scores with `fn` applied to each (K, N) array (e.g. to select members)."""
        return SplitScores(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})


@dataclass
class EpochRecord:
    """State of K members after `epoch` epochs: `step` SGD steps, `train_seconds` spent in
    training steps, `wall_seconds` since the start (scoring included). `active` marks the members
    that trained this epoch: the others stopped earlier and their values here are not records."""

    epoch: int
    step: int
    wall_seconds: float
    train_seconds: float
    lr: float | np.ndarray  # the epoch's learning rate: one for all members, or (K,) each its own
    running_loss: np.ndarray  # (K,) mean training loss over the epoch's batches
    running_acc: np.ndarray  # (K,) fraction of the epoch's training examples correct when seen
    active: np.ndarray = None  # (K,) bool
    loss: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (K,) mean loss, model fixed
    acc: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (K,) accuracy, model fixed
    fit_acc: np.ndarray = None  # (K,) accuracy on each member's own training examples (and val if fitted)
    splits: dict[str, SplitScores] = field(default_factory=dict)  # per-example scores, when kept
    # With `Schedule.keep_last`: the members whose per-example scores `splits` holds (those that
    # stopped at this epoch), which are then (K_kept, N) arrays in member order. None: (K, N).
    kept: np.ndarray | None = None
    norms: dict[str, np.ndarray] = field(default_factory=dict)  # layer -> (K,) Frobenius norm

    def __post_init__(self):
        if self.active is None:
            self.active = np.ones(len(self.running_loss), dtype=bool)

    def add_scores(self, split: str, scores: SplitScores, keep: bool) -> None:
        self.loss[split] = scores.loss.mean(axis=1)
        self.acc[split] = scores.correct.mean(axis=1)
        if keep:
            self.splits[split] = scores


# The hyperparameters a member can have on its own (Members.hyper), each a Schedule field: SGD's,
# and the regularizers' strengths (trainables/regularize.py).
HYPER = (*SGD_HYPER, *REGULARIZERS)


@dataclass(frozen=True)
class Schedule:
    """How a pack trains and when it is scored and stops (see the module docstring)."""

    lr: float
    batch_size: int
    max_epochs: int
    momentum: float = 0.0
    weight_decay: float = 0.0  # L2, coupled as torch.optim.SGD does: g + weight_decay * p
    regularizers: dict[str, float] = field(default_factory=dict)  # name -> strength (regularize.py); absent: 0
    lr_decay: float = 1.0
    lr_step_every: int | None = None
    lr_step_factor: float = 0.5
    threshold: float | None = None  # interpolation threshold on the fit accuracy; None: never
    time_budget_s: float | None = None
    patience: int | None = None  # early stopping on validation accuracy
    stop_early: bool = True  # False: only record where early stopping would stop
    fit_splits: tuple[str, ...] = ("train",)
    scored_epochs: tuple[int, ...] | None = None  # None: every epoch
    score_splits: tuple[str, ...] | None = None  # None: every split of the data
    keep_splits: tuple[str, ...] = ()  # splits whose per-example scores are kept
    keep_every: int = 1  # ... at epochs divisible by this
    keep_last: bool = False  # ... only at each member's last record (the epoch it stops)
    norms: bool = True
    autocast: torch.dtype | None = None  # forward passes in this precision (bf16); state stays fp32
    chunk: int = 1024  # examples per scoring chunk


@dataclass
class Members:
    """Per-member identity: (K,) seeds; training labels (K, N_train) (None: the data's labels for
    all); training subsets (K, n) of indices into the training split (None: all of it); `hyper`,
    per-member values of the schedule's SGD hyperparameters (`HYPER`: name -> K values; a name
    left out takes the schedule's value for every member)."""

    init_seeds: list[int]
    order_seeds: list[int]
    labels: torch.Tensor | None = None
    subsets: torch.Tensor | None = None
    hyper: dict[str, Sequence[float]] = field(default_factory=dict)

    def __post_init__(self):
        if len(self.init_seeds) != len(self.order_seeds):
            raise ValueError("init_seeds and order_seeds must have the same length")
        bad = {n: len(v) for n, v in self.hyper.items() if n not in HYPER or len(v) != len(self.init_seeds)}
        if bad:
            raise ValueError(f"per-member hyperparameters {bad}: allowed {', '.join(HYPER)}, one value a member")

    @property
    def k(self) -> int:
        return len(self.init_seeds)


@dataclass
class PackState:
    """Everything a run needs to continue exactly (tensors and plain values only)."""

    params: list[torch.Tensor]
    buffers: list[torch.Tensor]
    momentum: list[torch.Tensor]
    generators: list[torch.Tensor]  # (K) CPU generator states
    epoch: int
    step: int
    train_seconds: float
    wall_seconds: float
    stopped: list[str | None]  # per member: why it stopped, None while it trains
    records: list[EpochRecord]
    mode: str = ""  # the pack's mode (packs.MODES), kept so a resumed run computes as before

    def restart(self) -> None:
        """Every member trains again (phase 2 of a two-phase run)."""
        self.stopped = [None] * len(self.stopped)


@dataclass
class Outcome:
    """How each member's run ended: (K,) lists; `reached_*` None where the threshold was never
    crossed; `best_epoch` / `early_stop_epoch` with a validation split."""

    records: list[EpochRecord]
    stop_reason: list[str]
    reached_epoch: list[int | None]
    reached_step: list[int | None]
    reached_train_seconds: list[float | None]
    reached_wall_seconds: list[float | None]
    best_epoch: list[int | None]
    early_stop_epoch: list[int | None]
    state: PackState = field(repr=False)

    def last_record(self, k: int) -> EpochRecord:
        """Member k's last record (the epoch it stopped at)."""
        return next(r for r in reversed(self.records) if r.active[k])


def epoch_lr(
    lr: Hyper, epoch: int, decay: float = 1.0, step_every: int | None = None, step_factor: float = 0.5
) -> Hyper:
    """lr * decay^(epoch - 1) * step_factor^floor((epoch - 1) / step_every) (epochs from 1)."""
    steps = (epoch - 1) // step_every if step_every else 0
    return lr * decay ** (epoch - 1) * step_factor**steps


def early_stopping_point(val_acc: Sequence[float], patience: int) -> tuple[int, int | None]:
    """(best, stop) for validation accuracies of epochs 1..E: `best` is the first epoch with
    the highest accuracy so far, `stop` the first epoch that is `patience` epochs past the best
    one seen by then (None if no such epoch yet). Hand example: [.5, .6, .6, .55], patience 2
    -> (2, 4)."""
    best, best_acc = 0, -np.inf
    for epoch, acc in enumerate(val_acc, start=1):
        if acc > best_acc:
            best, best_acc = epoch, acc
        elif epoch - best >= patience:
            return best, epoch
    return best, None


def _inputs(pack: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the pack takes: flat rows for the packed MLP, images for the others."""
    return x.flatten(x.dim() - 3) if isinstance(pack, PackedMLP) else x


def infer(
    pack: nn.Module,
    x: torch.Tensor,
    chunk: int = 1024,
    autocast: torch.dtype | None = None,
    members: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits (K, N, C) float32 of every member (or of `members` only: (K', N, C)) for inputs
    x (N, ...) in data-set order, with the members fixed (eval mode; the previous mode is
    restored), `chunk` examples at a time. A plain module (one model, as probes hold) counts as
    a pack of one."""
    was_training = pack.training
    pack.eval()
    packed = hasattr(pack, "tensors")
    k = len(members) if members is not None else len(pack.tensors()[0]) if packed else 1
    try:
        with (
            torch.no_grad(),
            torch.autocast(x.device.type, dtype=autocast or torch.float32, enabled=autocast is not None),
        ):
            parts = []
            for i in range(0, x.shape[0], chunk):
                xc = _inputs(pack, x[i : i + chunk])
                if not packed:
                    parts.append(pack(xc)[None].float())
                elif isinstance(pack, PackedMLP):
                    parts.append(pack(xc, members).float())  # a shared input: one wide GEMM
                else:
                    parts.append(pack(xc.expand(k, *xc.shape), members).float())
            return torch.cat(parts, dim=1)
    finally:
        pack.train(was_training)


def score(logits: torch.Tensor, labels: torch.Tensor) -> SplitScores:
    """Scores of logits (K, N, C) against labels (N,) shared or (K, N) per member."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    labels = labels.expand(logp.shape[0], -1)
    lp_label = logp.gather(-1, labels[..., None])[..., 0]  # (K, N)
    pred = logp.argmax(-1)
    # ||softmax - e_y||_2 from the difference itself, its label entry p_y - 1 as minus the sum of
    # the other classes' probabilities: sum p^2 - 2 p_y + 1 cancels for confident examples in
    # float32 (every true EL2N below ~1e-4 would read 0), and so does 1 - p_y computed from p_y.
    others = logp.exp().scatter(-1, labels[..., None], 0.0)
    diff = others.scatter(-1, labels[..., None], -others.sum(-1, keepdim=True))
    return SplitScores(
        pred=pred.cpu().numpy(),
        correct=(pred == labels).cpu().numpy(),
        p_label=lp_label.exp().cpu().numpy(),
        loss=(-lp_label).cpu().numpy(),
        el2n=torch.linalg.vector_norm(diff, dim=-1).cpu().numpy(),
    )


def _initial_state(pack: nn.Module, members: Members) -> PackState:
    return PackState(
        params=pack.tensors(),
        buffers=pack.buffers_list(),
        momentum=[torch.zeros_like(p) for p in pack.tensors()],
        generators=[torch.Generator().manual_seed(s).get_state() for s in members.order_seeds],
        epoch=0,
        step=0,
        train_seconds=0.0,
        wall_seconds=0.0,
        stopped=[None] * members.k,
        records=[],
    )


def _load_state(pack: nn.Module, state: PackState) -> None:
    """Put a saved state (loaded on the CPU) into the pack, on the pack's device."""
    with torch.no_grad():
        for mine, saved in zip([*pack.tensors(), *pack.buffers_list()], [*state.params, *state.buffers]):
            mine.copy_(saved)
    state.params, state.buffers = pack.tensors(), pack.buffers_list()  # live views from now on
    state.momentum = [m.to(p.device) for m, p in zip(state.momentum, state.params)]
    if state.mode and hasattr(pack, "mode"):
        pack.mode = state.mode


def _fit_set(data: Data, members: Members, fit_splits: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(x (N, ...), labels (K, N)) of the splits trained on; members' own training labels first."""
    k, device = members.k, data.train.x.device
    train_labels = members.labels.to(device) if members.labels is not None else data.train.y.expand(k, -1)
    xs, ys = [data.train.x], [train_labels]
    for s in fit_splits:
        if s != "train":
            xs.append(data.split(s).x)
            ys.append(data.split(s).y.expand(k, -1))
    return (xs[0], ys[0]) if len(xs) == 1 else (torch.cat(xs), torch.cat(ys, dim=1))


def _orders(
    members: Members, gens: list[torch.Generator], n_fit: int, n_train: int, device: torch.device
) -> torch.Tensor:
    """(K, n) indices into the fit set, this epoch's order per member: a permutation of its subset
    (training split) plus, when other splits are fitted too, all of their examples."""
    if members.subsets is None:
        return torch.stack([torch.randperm(n_fit, generator=g) for g in gens]).to(device)
    extra = torch.arange(n_train, n_fit)
    pools = [torch.cat([members.subsets[k].cpu(), extra]) for k in range(members.k)]
    return torch.stack([pool[torch.randperm(len(pool), generator=g)] for pool, g in zip(pools, gens)]).to(device)


Hyper = float | torch.Tensor  # one value for every member, or (K,) values


def _view(value: Hyper, p: torch.Tensor) -> Hyper:
    """A per-member (K,) value shaped to broadcast over stacked parameters p (K, ...)."""
    return value.view((-1,) + (1,) * (p.dim() - 1)) if torch.is_tensor(value) else value


def _sgd(
    params: list[torch.Tensor],
    momentum_bufs: list[torch.Tensor],
    lr: Hyper,
    momentum: Hyper,
    active: torch.Tensor,
    weight_decay: Hyper = 0.0,
) -> None:
    """SGD with momentum as torch.optim.SGD takes it (g' = g + weight_decay p; v = mu v + g';
    p -= lr v), each hyperparameter one value or one a member, for the active members only: a
    stopped member's parameters and momentum stay as they are. `PackedMLP.sgd_step` fuses the
    same update into its backward pass (tests/test_engine.py holds the two equal)."""
    with torch.no_grad():
        for p, v in zip(params, momentum_bufs):
            on = _view(active, p)
            g = p.grad if not _any(weight_decay) else p.grad + _view(weight_decay, p) * p
            g = torch.where(on, g, 0.0)  # a stopped (or diverged) member's gradient never leaks
            if _any(momentum):
                v.mul_(torch.where(on, _view(momentum, p), 1.0)).add_(g)
                step = v
            else:
                step = g
            p.sub_(torch.where(on, step * _view(lr, p), 0.0))
            p.grad = None


def _regularizer_generators(members: Members, epoch: int) -> list[torch.Generator]:
    """Each member's generator for its regularizers' draws in `epoch`: from its order seed and the
    epoch alone, apart from its data order (turning a regularizer on leaves the order as it was)
    and the same after a resume at any epoch."""
    return [
        torch.Generator().manual_seed(
            int(np.random.SeedSequence([seed, epoch, 0x7265]).generate_state(1, np.uint64)[0] % 2**63)
        )
        for seed in members.order_seeds
    ]


def _any(value: Hyper) -> bool:
    """Whether a hyperparameter is nonzero for some member."""
    return bool(value.any()) if torch.is_tensor(value) else bool(value)


def member_hyper(members: Members, schedule: Schedule, device: torch.device) -> dict[str, Hyper]:
    """Each of HYPER: the schedule's value where the members share it, else a (K,) tensor."""
    out: dict[str, Hyper] = {}
    for name in HYPER:
        values = members.hyper.get(name)
        default = schedule.regularizers.get(name, 0.0) if name in REGULARIZERS else getattr(schedule, name)
        if values is None or len(set(values)) == 1:
            out[name] = float(values[0]) if values is not None else float(default)
        else:
            out[name] = torch.tensor(list(values), dtype=torch.float32, device=device)
    return out


def _cut(hyper: dict[str, Hyper], members: torch.Tensor | None) -> dict[str, Hyper]:
    """The running members' values (members: their indices; None: all)."""
    if members is None:
        return hyper
    return {n: v[members] if torch.is_tensor(v) else v for n, v in hyper.items()}


def _train_epoch(
    pack,
    x_fit,
    y_fit,
    order,
    schedule: Schedule,
    state: PackState,
    hyper: dict[str, Hyper],
    active: torch.Tensor,
    gens: Sequence[torch.Generator] = (),
    shape: Sequence[int] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """One epoch of steps over `order` (K, n) with this epoch's `hyper` (lr, momentum,
    weight_decay: `member_hyper`, the rate scheduled); (running loss, running accuracy) per member."""
    k, n = order.shape
    # Only the members still training run: a stopped one costs no compute (and its parameters,
    # momentum and batch-norm statistics stay as they are).
    members = None if bool(active.all()) else active.nonzero().squeeze(1)
    if members is not None:
        order, y_fit = order[members], y_fit[members]
    mine = _cut(hyper, members)  # the fused step takes the running members' values
    y_epoch = y_fit.gather(1, order)  # (K', n): the epoch's labels, gathered once
    regular = regularize.active(mine)  # regularized steps go through autograd (the fused step has none)
    running = list(gens) if members is None else [gens[i] for i in members.tolist()]
    fused = hasattr(pack, "sgd_step") and schedule.autocast is None and not regular
    # The epoch's inputs gathered once (K', n, ...) when that is small; else per step.
    x_epoch = x_fit[order] if x_fit[0].numel() * order.numel() * x_fit.element_size() <= EPOCH_GATHER_BYTES else None
    loss_sum = torch.zeros(len(order), device=order.device)
    hits = torch.zeros(len(order), device=order.device, dtype=torch.long)
    b = schedule.batch_size
    if fused:
        logits, rows = _logit_buffer(pack, order, b)
    for i in range(0, n, b):
        yb = y_epoch[:, i : i + b]
        xb = x_epoch[:, i : i + b] if x_epoch is not None else x_fit[order[:, i : i + b]]
        if fused:  # the MLP: a written-out backward, the update fused into it
            at, m = i % rows, yb.shape[1]  # where this batch goes in the buffer; its size (the last may be short)
            pack.sgd_step(
                xb,
                yb,
                mine["lr"],
                mine["momentum"],
                state.momentum,
                members,
                logits=logits[:, at : at + m],
                weight_decay=mine["weight_decay"],
            )
            if at + m >= rows or i + m >= n:  # the buffer is full, or the epoch is over
                done = at + m
                losses, right = loss_and_hits(logits[:, :done], y_epoch[:, i + m - done : i + m])
                loss_sum += losses
                hits += right
        else:
            xb, masks = _regularized(pack, xb, yb, mine, running, shape, members) if regular else (xb, None)
            loss_sum, hits = _autograd_step(
                pack, xb, yb, schedule, state, hyper, active, members, loss_sum, hits, masks
            )
        state.step += 1
    return _spread((loss_sum / n).cpu().numpy(), members, k), _spread((hits / n).cpu().numpy(), members, k)


def _logit_buffer(pack, order: torch.Tensor, b: int) -> tuple[torch.Tensor, int]:
    """Where the fused MLP steps write their logits, and its rows (whole batches): the loss and
    hits are taken from many steps at once (a digits epoch: all of them), not in a handful of
    small ops at every step."""
    dtype = pack.tensors()[0].dtype
    per_row = len(order) * pack.num_classes * dtype.itemsize
    rows = min(order.shape[1], max(b, LOGIT_BUFFER_BYTES // per_row // b * b))
    return torch.empty(len(order), rows, pack.num_classes, device=order.device, dtype=dtype), rows


def _regularized(pack, xb, yb, mine: dict, running, shape, members) -> tuple[torch.Tensor, list | None]:
    """A batch's inputs with each member's regularizers applied (noise, crop, flip, then FGSM),
    and its dropout masks (MLPs only; None for the others)."""
    xb = regularize.fgsm(pack, regularize.inputs(xb, mine, running, shape), yb, members, mine["fgsm_eps"])
    if not isinstance(pack, PackedMLP):
        if regularize.any_on(mine["dropout"]):
            raise ValueError("dropout is implemented for the MLPs (mlp, mlp1, mlp3) only")
        return xb, None
    return xb, regularize.dropout_masks(mine["dropout"], running, len(xb), xb.shape[1], pack.hidden_sizes(), xb.device)


def _autograd_step(
    pack,
    xb,
    yb,
    schedule: Schedule,
    state: PackState,
    hyper: dict[str, Hyper],
    active: torch.Tensor,
    members: torch.Tensor | None,
    loss_sum: torch.Tensor,
    hits: torch.Tensor,
    masks: list[torch.Tensor] | None = None,
):
    with torch.autocast(
        xb.device.type, dtype=schedule.autocast or torch.float32, enabled=schedule.autocast is not None
    ):
        logits = pack(xb, members) if masks is None else pack(xb, members, masks=masks)  # (K', b, C)
    losses = F.cross_entropy(logits.float().flatten(0, 1), yb.flatten(), reduction="none").view(len(xb), -1)
    losses.mean(dim=1).sum().backward()
    _sgd(state.params, state.momentum, hyper["lr"], hyper["momentum"], active, hyper["weight_decay"])
    with torch.no_grad():
        return loss_sum + losses.sum(dim=1), hits + (logits.argmax(-1) == yb).sum(dim=1)


def _spread(values: np.ndarray, members: torch.Tensor | None, k: int, fill=np.nan) -> np.ndarray:
    """Values of the running members, (K', ...), as (K, ...) with `fill` for the others."""
    if members is None:
        return values
    out = np.full((k, *values.shape[1:]), fill, dtype=values.dtype if fill is not np.nan else np.float64)
    out[members.cpu().numpy()] = values
    return out


def _score_epoch(pack, data: Data, members: Members, schedule: Schedule, record: EpochRecord, keep: bool) -> None:
    """Score every split (or schedule.score_splits) of every member that trained this epoch into
    `record` (the others' entries are NaN, or zero in the per-example scores: not records)."""
    device = data.train.x.device
    running = None if record.active.all() else torch.as_tensor(np.flatnonzero(record.active), device=device)
    train_labels = members.labels.to(device) if members.labels is not None else data.train.y
    if running is not None and members.labels is not None:
        train_labels = train_labels[running]
    for s in schedule.score_splits or data.split_names:
        labels = train_labels if s == "train" else data.split(s).y
        scores = score(infer(pack, data.split(s).x, schedule.chunk, schedule.autocast, running), labels)
        if running is not None:
            scores = scores.map(lambda v: _spread(v, running, members.k, fill=0))
        record.add_scores(s, scores, keep=keep and s in schedule.keep_splits)
        if running is not None:
            record.loss[s][~record.active] = np.nan
            record.acc[s] = np.where(record.active, record.acc[s], np.nan)
        if s == "train":
            own = (
                scores.correct
                if members.subsets is None
                else np.take_along_axis(scores.correct, members.subsets.cpu().numpy(), axis=1)
            )
            record.fit_acc = np.where(record.active, own.mean(axis=1), np.nan)
    for s in schedule.fit_splits:
        if s != "train" and s in record.acc:
            record.fit_acc = np.minimum(record.fit_acc, record.acc[s])


def _stop(record: EpochRecord, state: PackState, schedule: Schedule) -> None:
    """Mark members that stop after this epoch (interpolated, early stopping, budget, last epoch)."""
    for k in np.flatnonzero(record.active):
        if schedule.threshold is not None and record.fit_acc is not None and record.fit_acc[k] >= schedule.threshold:
            state.stopped[k] = "interpolated"
        elif schedule.patience is not None and schedule.stop_early and _early(state.records, k, schedule.patience)[1]:
            state.stopped[k] = "early_stopped"
        elif schedule.time_budget_s is not None and state.train_seconds >= schedule.time_budget_s:
            state.stopped[k] = "time_budget"
        elif state.epoch >= schedule.max_epochs:
            state.stopped[k] = "max_epochs"


def _early(records: list[EpochRecord], k: int, patience: int | None) -> tuple[int | None, int | None]:
    """(best epoch, early-stopping epoch) of member k over its own records (as epoch numbers)."""
    mine = [r for r in records if r.active[k] and "val" in r.acc]
    if not mine:
        return None, None
    best, stop = early_stopping_point([r.acc["val"][k] for r in mine], patience or len(mine) + 1)
    return mine[best - 1].epoch, (mine[stop - 1].epoch if stop else None)


def run(
    pack: nn.Module,
    data: Data,
    members: Members,
    schedule: Schedule,
    *,
    state: PackState | None = None,
    on_epoch: Callable[[EpochRecord, Callable[[], PackState]], None] | None = None,
) -> Outcome:
    """Train the pack's members (already on the data's device) until every one has stopped.

    Records: one `EpochRecord` per scored epoch (every epoch unless `schedule.scored_epochs`).
    `on_epoch(record, state)` is called after each record; `state()` is the resumable state.
    `max_epochs` counts from the start of the whole run (a resumed run continues to it)."""
    if schedule.patience is not None and data.val is None:
        raise ValueError("early stopping (patience) needs a validation split")
    device = data.train.x.device
    state, gens = _started(pack, members, state)
    x_fit, y_fit = _fit_set(data, members, schedule.fit_splits)
    x_fit = _inputs(pack, x_fit)
    start = time.perf_counter() - state.wall_seconds
    last = _last_epoch(schedule)

    def snapshot() -> PackState:
        state.generators = [g.get_state() for g in gens]
        state.wall_seconds = time.perf_counter() - start
        state.mode = getattr(pack, "mode", "bmm")
        return state

    base = member_hyper(members, schedule, device)
    pack.train()
    while any(s is None for s in state.stopped) and state.epoch < last:
        active_np = np.array([s is None for s in state.stopped])
        state.epoch += 1
        hyper, lr = _epoch_hyper(base, members, schedule, state.epoch)
        epoch_start = time.perf_counter()
        order = _orders(members, gens, len(y_fit[0]), len(data.train), device)
        running = _train_epoch(
            pack,
            x_fit,
            y_fit,
            order,
            schedule,
            state,
            hyper,
            torch.as_tensor(active_np, device=device),
            _regularizer_generators(members, state.epoch),
            data.input_shape,
        )
        state.train_seconds += time.perf_counter() - epoch_start
        scored = schedule.scored_epochs is None or state.epoch in schedule.scored_epochs
        record = _scored_record(pack, data, members, schedule, state, lr, running, active_np, start) if scored else None
        if state.epoch >= last:
            state.stopped = [s or "max_epochs" for s in state.stopped]
        if record is not None and schedule.keep_last:
            _keep_stopping(record, state)
        if record is not None and on_epoch is not None:
            on_epoch(record, snapshot)
    return _outcome(snapshot(), schedule)


def _last_epoch(schedule: Schedule) -> int:
    """The run's last epoch: max_epochs, or the last scored epoch if that comes first."""
    if schedule.scored_epochs is None:
        return schedule.max_epochs
    return min(schedule.max_epochs, max(schedule.scored_epochs))


def _started(pack, members: Members, state: PackState | None) -> tuple[PackState, list[torch.Generator]]:
    """The run's state (a fresh one, or `state` loaded into the pack) and its members' order
    generators, where they left off."""
    if state is None:
        state = _initial_state(pack, members)
    else:
        _load_state(pack, state)
    gens = []
    for saved in state.generators:
        gens.append(torch.Generator())
        gens[-1].set_state(saved)
    return state, gens


def _epoch_hyper(base: dict, members: Members, schedule: Schedule, epoch: int) -> tuple[dict, object]:
    """This epoch's hyperparameters (the scheduled learning rate), and its lr as the record keeps
    it: each member's as given (float64), not as the float32 the kernels use."""
    hyper = dict(
        base, lr=epoch_lr(base["lr"], epoch, schedule.lr_decay, schedule.lr_step_every, schedule.lr_step_factor)
    )
    lr = (
        hyper["lr"]
        if not torch.is_tensor(hyper["lr"])
        else epoch_lr(
            np.asarray(members.hyper["lr"], dtype=np.float64),
            epoch,
            schedule.lr_decay,
            schedule.lr_step_every,
            schedule.lr_step_factor,
        )
    )
    return hyper, lr


def _scored_record(
    pack,
    data: Data,
    members: Members,
    schedule: Schedule,
    state: PackState,
    lr,
    running,
    active_np: np.ndarray,
    start: float,
) -> EpochRecord:
    """The epoch's record: every split scored, appended to the state, and the members that stop
    after it marked."""
    record = EpochRecord(
        epoch=state.epoch,
        step=state.step,
        wall_seconds=0.0,
        train_seconds=state.train_seconds,
        lr=lr,
        running_loss=running[0],
        running_acc=running[1],
        active=active_np,
        norms={n: v.cpu().numpy() for n, v in pack.layer_norms().items()} if schedule.norms else {},
    )
    _score_epoch(
        pack,
        data,
        members,
        schedule,
        record,
        keep=state.epoch % schedule.keep_every == 0 or schedule.scored_epochs is not None,
    )
    record.wall_seconds = time.perf_counter() - start
    state.records.append(record)
    _stop(record, state, schedule)
    return record


def _keep_stopping(record: EpochRecord, state: PackState) -> None:
    """Per-example scores of only the members that stop at this record (memory: a subset sweep
    checks its members every few epochs and keeps each one's scores once)."""
    record.kept = record.active & np.array([s is not None for s in state.stopped])
    rows = np.flatnonzero(record.kept)
    record.splits = {name: scores.map(lambda v: v[rows]) for name, scores in record.splits.items()}


def _outcome(state: PackState, schedule: Schedule) -> Outcome:
    k = len(state.stopped)
    reached: list[EpochRecord | None] = []
    for i in range(k):
        hit = None
        if schedule.threshold is not None:
            hit = next(
                (
                    r
                    for r in state.records
                    if r.active[i] and r.fit_acc is not None and r.fit_acc[i] >= schedule.threshold
                ),
                None,
            )
        reached.append(hit)
    early = [_early(state.records, i, schedule.patience) for i in range(k)]
    return Outcome(
        records=state.records,
        stop_reason=[s or "max_epochs" for s in state.stopped],
        reached_epoch=[r.epoch if r else None for r in reached],
        reached_step=[r.step if r else None for r in reached],
        reached_train_seconds=[r.train_seconds if r else None for r in reached],
        reached_wall_seconds=[r.wall_seconds if r else None for r in reached],
        best_epoch=[b for b, _ in early],
        early_stop_epoch=[s for _, s in early],
        state=state,
    )
