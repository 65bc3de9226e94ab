"""Train one model until it interpolates (Zhang et al. 2017, Fig. 1b/c).

SGD with momentum, learning rate ``lr * lr_decay ** (epoch - 1)``, batches by index
from a per-epoch `torch.randperm` drawn from the model's own order generator.
After each epoch the whole training set and the test set are scored with the
model fixed (eval mode); training stops when the full-set training accuracy
reaches `threshold` (the interpolation threshold: 1.0 by default), or at
`max_epochs`, or when `time_budget_s` of training time is spent.

The run can stop after any epoch and continue exactly: `state()` (given to
`on_epoch`) captures the model, the optimizer, the order generator, the clocks and
the records so far; passing it back as `resume` continues the same run. The engine
returns records; saving checkpoints is the caller's business.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .data import Data
from .packed import EpochRecord, score


@dataclass
class Outcome:
    """How the run ended and when the threshold was crossed (None if it never was)."""

    records: list[EpochRecord]
    stop_reason: str  # "interpolated", "max_epochs" or "time_budget"
    reached_epoch: int | None = None
    reached_step: int | None = None
    reached_train_seconds: float | None = None
    reached_wall_seconds: float | None = None

    @property
    def interpolated(self) -> bool:
        return self.reached_epoch is not None


def infer(model: nn.Module, x: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Logits (N, C) for inputs x (N, ...) in data-set order, with the model fixed (eval mode)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(x[i:i + chunk]) for i in range(0, x.shape[0], chunk)])
    model.train(was_training)
    return out


def train_until_interpolation(
    model: nn.Module,
    data: Data,
    *,
    order_seed: int,
    lr: float,
    momentum: float = 0.9,
    lr_decay: float = 0.95,
    batch_size: int = 128,
    threshold: float = 1.0,
    max_epochs: int = 300,
    time_budget_s: float | None = None,
    keep_examples: Sequence[str] = (),
    resume: dict[str, Any] | None = None,
    on_epoch: Callable[[EpochRecord, Callable[[], dict[str, Any]]], None] | None = None,
) -> Outcome:
    """Train `model` (already on the data's device) on `data.train` until it interpolates.

    keep_examples: splits whose per-example scores are kept in every record.
    on_epoch(record, state): called after each epoch; `state()` returns a resumable state.
    """
    device = data.train.x.device
    x_train, y_train = data.train.x, data.train.y
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

    def outcome(reason: str) -> Outcome:
        hit = next((r for r in records if r.acc["train"][0] >= threshold), None)
        if hit is None:
            return Outcome(records, reason)
        return Outcome(records, reason, hit.epoch, hit.step, hit.train_seconds, hit.wall_seconds)

    if records and records[-1].acc["train"][0] >= threshold:
        return outcome("interpolated")
    model.train()
    while epoch < max_epochs:
        if time_budget_s is not None and train_seconds >= time_budget_s:
            return outcome("time_budget")
        epoch += 1
        epoch_lr = lr * lr_decay ** (epoch - 1)
        for group in opt.param_groups:
            group["lr"] = epoch_lr
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
                             lr=epoch_lr, running_loss=(loss_sum / n).cpu().numpy()[None],
                             running_acc=(hits / n).cpu().numpy()[None])
        for split in ("train", "test"):
            scores = score(infer(model, data.split(split).x)[None], data.split(split).y)
            record.add_scores(split, scores, keep=split in keep_examples)
        record.wall_seconds = time.perf_counter() - start
        records.append(record)
        if on_epoch is not None:
            on_epoch(record, state)
        if record.acc["train"][0] >= threshold:
            return outcome("interpolated")
    return outcome("max_epochs")
