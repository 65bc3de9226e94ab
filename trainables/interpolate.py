"""Train one model until it interpolates (Zhang et al. 2017, Fig. 1b/c).

SGD with momentum, learning rate ``lr * lr_decay ** (epoch - 1)`` (optionally also
multiplied by ``lr_step_factor`` every ``lr_step_every`` epochs: Arpit et al.'s CNN halves
it every 15), batches by index from a per-epoch `torch.randperm` drawn from the model's
own order generator. After each epoch every split (train, test, and a carved validation
split if any) is scored with the model fixed (eval mode); training stops when the
full-set accuracy of the splits trained on reaches `threshold` (the interpolation
threshold: 1.0 by default; None trains all `max_epochs`), or at `max_epochs`, or when
`time_budget_s` of training time is spent, or (with `patience`) when validation
accuracy has not improved for `patience` epochs.

Two-phase runs (the catastrophic-forgetting protocol) call this twice: phase 1 with
``fit_splits=("train", "val")``, phase 2 with ``fit_splits=("train",)`` and phase 1's
state as `resume`; epochs, steps, clocks and records continue.

The run can stop after any epoch and continue exactly: `state()` (given to
`on_epoch`) captures the model, the optimizer, the order generator, the clocks and
the records so far; passing it back as `resume` continues the same run. The engine
returns records; saving checkpoints is the caller's business.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import Data
from .models import eval_mode, layer_norms
from .packed import EpochRecord, score


@dataclass
class Outcome:
    """How the run ended and when the threshold was crossed (None if it never was).
    With a validation split: the epoch of best validation accuracy so far (`best_epoch`) and,
    with `patience`, the epoch early stopping stops at (`early_stop_epoch`, None if it never
    triggered)."""

    records: list[EpochRecord]
    stop_reason: str  # "interpolated", "max_epochs", "time_budget" or "early_stopped"
    reached_epoch: int | None = None
    reached_step: int | None = None
    reached_train_seconds: float | None = None
    reached_wall_seconds: float | None = None
    best_epoch: int | None = None
    early_stop_epoch: int | None = None
    state: dict[str, Any] | None = field(default=None, repr=False)  # resumable state at the end

    @property
    def interpolated(self) -> bool:
        return self.reached_epoch is not None


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


def epoch_lr(lr: float, epoch: int, decay: float = 1.0, step_every: int | None = None,
             step_factor: float = 0.5) -> float:
    """lr * decay^(epoch - 1) * step_factor^floor((epoch - 1) / step_every) (epochs from 1)."""
    steps = (epoch - 1) // step_every if step_every else 0
    return lr * decay ** (epoch - 1) * step_factor ** steps


def infer(model: nn.Module, x: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Logits (N, C) for inputs x (N, ...) in data-set order, with the model fixed (eval mode)."""
    with eval_mode(model), torch.no_grad():
        return torch.cat([model(x[i:i + chunk]) for i in range(0, x.shape[0], chunk)])


def train_until_interpolation(
    model: nn.Module,
    data: Data,
    *,
    order_seed: int,
    lr: float,
    momentum: float = 0.9,
    lr_decay: float = 0.95,
    lr_step_every: int | None = None,
    lr_step_factor: float = 0.5,
    batch_size: int = 128,
    threshold: float | None = 1.0,
    max_epochs: int = 300,
    time_budget_s: float | None = None,
    fit_splits: Sequence[str] = ("train",),
    patience: int | None = None,
    stop_early: bool = True,
    keep_examples: Sequence[str] = (),
    keep_every: int = 1,
    norms: bool = True,
    resume: dict[str, Any] | None = None,
    on_epoch: Callable[[EpochRecord, Callable[[], dict[str, Any]]], None] | None = None,
) -> Outcome:
    """Train `model` (already on the data's device) on the union of `fit_splits` until every
    one of them reaches `threshold` full-set accuracy (None: train all `max_epochs`).

    Every epoch all of the data's splits (train, test, and val if carved) are scored with the
    model fixed. patience: early stopping on validation accuracy (needs a val split): the
    run stops at `early_stop_epoch` if `stop_early`, else only records it.
    keep_examples: splits whose per-example scores are kept, every `keep_every` epochs.
    norms: record each layer's Frobenius norm every epoch.
    on_epoch(record, state): called after each epoch; `state()` returns a resumable state.
    `max_epochs` counts from the start of the whole run (a resumed run continues to it).
    """
    if patience is not None and data.val is None:
        raise ValueError("early stopping (patience) needs a validation split")
    device = data.train.x.device
    fit = [data.split(s) for s in fit_splits]
    x_train = fit[0].x if len(fit) == 1 else torch.cat([s.x for s in fit])
    y_train = fit[0].y if len(fit) == 1 else torch.cat([s.y for s in fit])
    n = len(y_train)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    gen = torch.Generator().manual_seed(order_seed)
    records: list[EpochRecord] = []
    epoch, step, train_seconds, wall_before = 0, 0, 0.0, 0.0
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        gen.set_state(resume["generator"])
        epoch, step = resume["epoch"], resume["step"]
        train_seconds, wall_before, records = resume["train_seconds"], resume["wall_seconds"], resume["records"]
    start = time.perf_counter() - wall_before

    def state() -> dict[str, Any]:
        return {"model": model.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state(),
                "epoch": epoch, "step": step, "train_seconds": train_seconds,
                "wall_seconds": time.perf_counter() - start, "records": records}

    def fitted(record: EpochRecord) -> bool:
        return threshold is not None and all(record.acc[s][0] >= threshold for s in fit_splits)

    def early() -> tuple[int | None, int | None]:
        if data.val is None or not records:
            return None, None
        return early_stopping_point([r.acc["val"][0] for r in records], patience or len(records) + 1)

    def outcome(reason: str) -> Outcome:
        best, stop = early()
        hit = next((r for r in records if fitted(r)), None)
        if hit is None:
            return Outcome(records, reason, best_epoch=best, early_stop_epoch=stop, state=state())
        return Outcome(records, reason, hit.epoch, hit.step, hit.train_seconds, hit.wall_seconds,
                       best_epoch=best, early_stop_epoch=stop, state=state())

    if records and fitted(records[-1]):
        return outcome("interpolated")
    if patience is not None and stop_early and early()[1] is not None:
        return outcome("early_stopped")
    model.train()
    while epoch < max_epochs:
        if time_budget_s is not None and train_seconds >= time_budget_s:
            return outcome("time_budget")
        epoch += 1
        lr_now = epoch_lr(lr, epoch, lr_decay, lr_step_every, lr_step_factor)
        for group in opt.param_groups:
            group["lr"] = lr_now
        epoch_start = time.perf_counter()
        order = torch.randperm(n, generator=gen).to(device)
        loss_sum = torch.zeros((), device=device)
        hits = torch.zeros((), device=device)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            logits = model(x_train[idx])
            loss = F.cross_entropy(logits, y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                loss_sum += loss.detach() * len(idx)
                hits += (logits.argmax(-1) == y_train[idx]).sum()
            step += 1
        train_seconds += time.perf_counter() - epoch_start
        record = EpochRecord(epoch=epoch, step=step, wall_seconds=0.0, train_seconds=train_seconds,
                             lr=lr_now, running_loss=(loss_sum / n).cpu().numpy()[None],
                             running_acc=(hits / n).cpu().numpy()[None],
                             norms=({k: np.asarray([v]) for k, v in layer_norms(model).items()} if norms else {}))
        keep = epoch % keep_every == 0
        for split in data.split_names:
            scores = score(infer(model, data.split(split).x)[None], data.split(split).y)
            record.add_scores(split, scores, keep=keep and split in keep_examples)
        record.wall_seconds = time.perf_counter() - start
        records.append(record)
        if on_epoch is not None:
            on_epoch(record, state)
        if fitted(record):
            return outcome("interpolated")
        if patience is not None and stop_early and early()[1] is not None:
            return outcome("early_stopped")
    return outcome("max_epochs")
