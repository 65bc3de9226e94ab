"""The packed engine: K seeds of the MLP trained together (Arpit et al. 2017, Fig. 1).

Each seed has its own initialization (`init_seeds[k]`) and its own data order
(a `torch.randperm` per epoch from a generator seeded with `order_seeds[k]`,
drawn on the CPU so the order is the same on every device). One step gathers a
(K, B, D) batch by index, runs the K networks as batched matmuls, and sums the
K per-seed mean losses: the parameters are disjoint, so each seed's gradient is
exactly its own, and SGD (elementwise) updates each seed as if alone. The last
batch of an epoch is smaller when B does not divide N, as with a DataLoader.

At each scored epoch every example of the requested splits is scored per seed
with the model fixed, by `infer` (the one way to score examples). The engine
returns records; it writes no files and knows nothing of Ray.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .data import Data
from .models import PackedMLP, mlp_param_count

BYTES = 4  # float32


@dataclass
class SplitScores:
    """Per seed x example results of scoring one split, all (K, N) numpy arrays."""

    pred: np.ndarray  # int64 predicted class
    correct: np.ndarray  # bool, pred == label used
    p_label: np.ndarray  # float32 softmax probability of the label used
    loss: np.ndarray  # float32 cross-entropy against the label used, nats
    el2n: np.ndarray  # float32 ||softmax - one_hot(label used)||_2 (Paul et al. 2021), in [0, sqrt(2)]


@dataclass
class EpochRecord:
    """State of K models after `epoch` epochs: `step` SGD steps, `train_seconds` spent in
    training steps, `wall_seconds` since the start (scoring included)."""

    epoch: int
    step: int
    wall_seconds: float
    train_seconds: float
    lr: float
    running_loss: np.ndarray  # (K,) mean training loss over the epoch's batches
    running_acc: np.ndarray  # (K,) fraction of the epoch's training examples correct when seen
    loss: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (K,) mean loss, model fixed
    acc: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (K,) accuracy, model fixed
    splits: dict[str, SplitScores] = field(default_factory=dict)  # per-example scores, when kept
    norms: dict[str, np.ndarray] = field(default_factory=dict)  # layer -> (K,) Frobenius norm

    def add_scores(self, split: str, scores: SplitScores, keep: bool) -> None:
        self.loss[split] = scores.loss.mean(axis=1)
        self.acc[split] = scores.correct.mean(axis=1)
        if keep:
            self.splits[split] = scores


def infer(model: PackedMLP, x: torch.Tensor, chunk: int, autocast: torch.dtype | None = None) -> torch.Tensor:
    """Logits (K, N, C) float32 for inputs x (N, ...) in data-set order, `chunk` examples at a time
    (computed under autocast to `autocast` if given)."""
    flat = x.flatten(1)
    with torch.no_grad(), torch.autocast(x.device.type, dtype=autocast or torch.float32,
                                         enabled=autocast is not None):
        return torch.cat([model(flat[i:i + chunk]).float() for i in range(0, flat.shape[0], chunk)], dim=1)


def score(logits: torch.Tensor, labels: torch.Tensor) -> SplitScores:
    """Scores of logits (K, N, C) against labels (N,)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    lp_label = logp.gather(-1, labels.expand(logp.shape[0], -1)[..., None])[..., 0]  # (K, N)
    pred = logp.argmax(-1)
    p_label = lp_label.exp()
    # ||p - e_y||^2 = sum_c p_c^2 - 2 p_y + 1, without materializing the one-hot.
    el2n = (logp.exp().square().sum(-1) - 2 * p_label + 1).clamp_min(0).sqrt()
    return SplitScores(
        pred=pred.cpu().numpy(),
        correct=(pred == labels).cpu().numpy(),
        p_label=p_label.cpu().numpy(),
        loss=(-lp_label).cpu().numpy(),
        el2n=el2n.cpu().numpy(),
    )


def memory_per_seed(in_features: int, hidden: Sequence[int], num_classes: int,
                    batch_size: int) -> int:
    """Bytes one seed of a pack needs while training: parameters, gradients and momentum
    (3 x params), plus the step's activations (input gather, pre- and post-activations
    and their gradients: about B x (D + 4 x sum(hidden) + 3 x C))."""
    params = mlp_param_count(in_features, hidden, num_classes)
    activations = batch_size * (in_features + 4 * sum(hidden) + 3 * num_classes)
    return BYTES * (3 * params + activations)


def auto_pack_size(budget_bytes: int, seeds: int, in_features: int, hidden: Sequence[int],
                   num_classes: int, batch_size: int) -> int:
    """Largest K <= seeds whose training state fits in `budget_bytes` (at least 1).

    Scoring is done in chunks sized from what the budget leaves (`score_chunk`),
    so it does not raise the peak.
    """
    per_seed = memory_per_seed(in_features, hidden, num_classes, batch_size)
    return max(1, min(seeds, budget_bytes // per_seed))


def score_chunk(budget_bytes: int, k: int, in_features: int, hidden: Sequence[int],
                num_classes: int, batch_size: int) -> int:
    """Examples per scoring chunk: what the budget leaves after the training state, spent on
    K x chunk x (2 x widest layer + 3 x C) floats of transient activations; at least 256."""
    left = budget_bytes - k * memory_per_seed(in_features, hidden, num_classes, batch_size)
    per_example = k * BYTES * (2 * max([in_features, *hidden]) + 3 * num_classes)
    return int(max(256, left // per_example))


def train_packed(
    data: Data,
    *,
    hidden: Sequence[int],
    init_seeds: Sequence[int],
    order_seeds: Sequence[int],
    scored_epochs: Sequence[int],
    lr: float,
    momentum: float = 0.0,
    batch_size: int,
    splits: Sequence[str] = ("train", "test"),
    chunk: int = 1024,
    autocast: torch.dtype | None = None,
    norms: bool = True,
    on_start: Callable[[PackedMLP], None] | None = None,
    on_scored: Callable[[EpochRecord], None] | None = None,
) -> list[EpochRecord]:
    """Train K = len(init_seeds) MLPs for max(scored_epochs) epochs of `data.train`.

    Returns one `EpochRecord` per scored epoch, in order. `data` must already be
    on the device to train on; `on_start` is called with the initialized model before the first
    step, `on_scored` with each record as it is made. With `norms`, records carry each layer's
    norm per seed.
    `autocast` (e.g. torch.bfloat16) runs forward passes in that precision; parameters,
    gradients and optimizer state stay float32.
    """
    if len(init_seeds) != len(order_seeds):
        raise ValueError("init_seeds and order_seeds must have the same length")
    device = data.train.x.device
    x_train = data.train.x.flatten(1)  # (N, D), a view
    y_train = data.train.y
    n, d = x_train.shape
    k = len(init_seeds)
    model = PackedMLP(d, hidden, data.num_classes, init_seeds).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    gens = [torch.Generator().manual_seed(s) for s in order_seeds]
    scored = sorted(set(scored_epochs))
    if on_start is not None:
        on_start(model)

    records: list[EpochRecord] = []
    step, start, train_seconds = 0, time.perf_counter(), 0.0
    for epoch in range(1, scored[-1] + 1):
        epoch_start = time.perf_counter()
        order = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device)  # (K, N)
        loss_sum = torch.zeros(k, device=device)
        hits = torch.zeros(k, device=device)
        for i in range(0, n, batch_size):
            idx = order[:, i:i + batch_size]  # (K, b)
            yb = y_train[idx]
            with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
                logits = model(x_train[idx])  # (K, b, C)
            losses = F.cross_entropy(logits.float().flatten(0, 1), yb.flatten(), reduction="none")
            losses = losses.view(k, -1)
            opt.zero_grad(set_to_none=True)
            losses.mean(dim=1).sum().backward()
            opt.step()
            with torch.no_grad():
                loss_sum += losses.sum(dim=1)
                hits += (logits.argmax(-1) == yb).sum(dim=1)
            step += 1
        running_loss, running_acc = (loss_sum / n).cpu().numpy(), (hits / n).cpu().numpy()
        train_seconds += time.perf_counter() - epoch_start
        if epoch not in scored:
            continue
        model.eval()
        record = EpochRecord(epoch=epoch, step=step, wall_seconds=0.0, train_seconds=train_seconds,
                             lr=lr, running_loss=running_loss, running_acc=running_acc,
                             norms={name: v.cpu().numpy() for name, v in model.layer_norms().items()}
                             if norms else {})
        for s in splits:
            record.add_scores(s, score(infer(model, data.split(s).x, chunk, autocast), data.split(s).y),
                              keep=True)
        record.wall_seconds = time.perf_counter() - start
        model.train()
        records.append(record)
        if on_scored is not None:
            on_scored(record)
    return records
