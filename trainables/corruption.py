"""Seeded, pure corruptions of a training split (Arpit et al. 2017, Sec. 2; Zhang et al. 2017, Sec. 2).

`apply(data, kind, p, seed)` returns the corrupted `Data` and a mask of shape
(N_train,) bool that is True where an example was selected for replacement. The
mask goes into the results store: analysis needs to know which examples were
noise.

- ``real``: no change (mask all False).
- ``randY``: each training label is selected with probability p and replaced by
  a label drawn uniformly from all classes (so about 1/num_classes of the
  selected labels keep their value by chance, as in Zhang et al.).
- ``randX``: each training input is selected with probability p and replaced by
  Gaussian noise with the training inputs' global mean and standard deviation.

The draw happens once, from `seed`, on the CPU with NumPy, so the corrupted data
set is the same on every device and in every epoch (the paper's "fixed once").
Test splits are never corrupted: held-out scoring is always on clean data.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from .data import Data, Split

KINDS = ("real", "randX", "randY")


def apply(data: Data, kind: str, p: float, seed: int) -> tuple[Data, torch.Tensor]:
    """(corrupted data, mask (N_train,) bool on the data's device)."""
    if kind not in KINDS:
        raise ValueError(f"unknown corruption {kind!r} (allowed: {', '.join(KINDS)})")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"corruption probability p={p} is outside [0, 1]")
    train = data.train
    n, device = len(train), train.y.device
    if kind == "real":
        return data, torch.zeros(n, dtype=torch.bool, device=device)

    rng = np.random.default_rng(seed)
    mask = rng.random(n) < p
    chosen = np.flatnonzero(mask)
    if kind == "randY":
        labels = train.y.cpu().numpy().copy()
        labels[chosen] = rng.integers(0, data.num_classes, size=chosen.size)
        new = Split(train.x, torch.from_numpy(labels).to(device))
    else:  # randX
        x = train.x.cpu()
        mean, std = x.mean().item(), x.std().item()
        noise = rng.standard_normal((chosen.size, *x.shape[1:]), dtype=np.float32) * std + mean
        x = x.clone()
        x[torch.from_numpy(chosen)] = torch.from_numpy(noise)
        new = Split(x.to(device), train.y)
    return replace(data, train=new), torch.from_numpy(mask).to(device)
