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
- ``gaussian`` (Zhang et al.'s "Gaussian"): ``randX`` with p = 1.
- ``shuffled_pixels``: one permutation of the pixel positions (channels move
  together), the same for every image of the train AND test splits (Zhang et al.).
- ``random_pixels``: a different permutation for every image, train and test.

p is used by ``randX`` and ``randY`` only; the other kinds change every image.

The draw happens once, from `seed`, on the CPU with NumPy, so the corrupted data
set is the same on every device and in every epoch (the paper's "fixed once").
Test data stay clean (labels always; inputs for randX and gaussian), except for the
pixel permutations, which are part of the input representation and so apply to both
splits. The mask always refers to the training split.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from catalog import KINDS

from .data import Data, Split


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
    if kind in ("shuffled_pixels", "random_pixels"):
        return _permute_pixels(data, rng, shared=kind == "shuffled_pixels"), torch.ones(
            n, dtype=torch.bool, device=device
        )
    if kind == "gaussian":
        kind, p = "randX", 1.0
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


def apply_to_validation(data: Data, kind: str, p: float, seed: int) -> tuple[Data, torch.Tensor]:
    """`apply` to the `val` split instead of `train` (randX/randY/gaussian only: a pixel
    permutation is part of the input representation and comes with the training corruption)."""
    if data.val is None:
        raise ValueError("the data have no validation split")
    if kind not in ("real", "randX", "randY", "gaussian"):
        raise ValueError(f"validation corruption {kind!r} is not allowed (allowed: real, randX, randY, gaussian)")
    swapped, mask = apply(replace(data, train=data.val, val=None), kind, p, seed)
    return replace(data, val=swapped.train), mask


def _permute_pixels(data: Data, rng: np.random.Generator, shared: bool) -> Data:
    """Permute the H*W pixel positions of every image (all channels alike): one permutation
    for all images of both splits if `shared`, else one per image (train drawn first)."""

    def permute(split: Split) -> Split:
        x = split.x.cpu()
        n, c, h, w = x.shape
        flat = x.reshape(n, c, h * w)
        out = torch.empty_like(flat)
        for lo in range(0, n, 4096):  # bounded memory for the (chunk, H*W) index array
            hi = min(n, lo + 4096)
            if shared:
                idx = torch.from_numpy(order).expand(hi - lo, c, -1)
            else:
                perms = rng.random((hi - lo, h * w)).argsort(axis=1)
                idx = torch.from_numpy(perms)[:, None, :].expand(-1, c, -1)
            out[lo:hi] = flat[lo:hi].gather(2, idx)
        return Split(out.reshape(n, c, h, w).to(split.x.device), split.y)

    order = rng.permutation(data.train.x.shape[-2] * data.train.x.shape[-1])
    return replace(
        data, train=permute(data.train), test=permute(data.test), val=None if data.val is None else permute(data.val)
    )
