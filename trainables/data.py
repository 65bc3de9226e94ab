"""Data sets as whole in-memory tensors, batched by index (airbench's CifarLoader).

Every data set loads into one `Data`: a train and a test `Split`, each the full
set of images as one float32 tensor of shape (N, C, H, W) and labels of shape
(N,) int64, on the device the trial chose. Batches are taken by indexing these
tensors; there is no per-sample `Dataset.__getitem__` on the hot path.

Data sets and their normalization (both documented in the README):

- ``digits``: scikit-learn's bundled 8x8 digits (1,797 images, 10 classes;
  ships with scikit-learn, so it works offline). Fixed split:
  ``train_test_split(test_size=360, stratify=y, random_state=0)`` gives 1,437
  train and 360 test images. Pixels (0..16) are divided by 16, then
  standardized with the train split's global (scalar) mean and std; a global
  scalar rather than per-pixel statistics because several border pixels are
  constant 0. Shape (N, 1, 8, 8).
- ``cifar10``: torchvision's CIFAR10 (50,000 train / 10,000 test, 32x32x3).
  Downloaded into ``root`` when online, or read from
  ``root/cifar-10-batches-py``. Pixels /255, then standardized per channel with
  the train split's channel means and stds. Shape (N, 3, 32, 32).

- ``fashion-mnist`` (Xiao et al. 2017), ``mnist``, ``kmnist``: 60,000 train / 10,000 test
  28x28 grayscale images, read by torchvision's classes from the original IDX files (found under
  ``root``, in Debian's ``dataset-fashion-mnist`` package, or downloaded: `files.idx_root`).
  Pixels /255, then standardized with the train split's global mean and std (Fashion-MNIST:
  0.2860, 0.3530). Shape (N, 1, 28, 28).

- ``synthetic``: CIFAR-shaped noise for speed measurements: 50,000 train and 10,000
  test images (3, 32, 32) of uniform [0, 1) pixels and uniform random labels, drawn
  from a fixed seed; normalized like cifar10. Nothing can be learned from it; its
  cost per example is CIFAR-10's.

`load(..., crop=28, normalize="per_image")` gives Zhang et al.'s preprocessing
(/255, centre crop to 28x28, per-image standardization) instead.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from catalog import DATASET_TABLE, DATASETS, NORMALIZATIONS

from .files import CIFAR_DIR, IDX_SETS, DataUnavailable, cifar10_files, default_root, idx_root


@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # (N, C, H, W) float32, normalized
    y: torch.Tensor  # (N,) int64 class indices

    def __len__(self) -> int:
        return self.y.shape[0]

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), self.y.to(device))


@dataclass(frozen=True)
class Data:
    name: str
    train: Split
    test: Split
    num_classes: int
    # A validation split carved out of the training images (`carve_validation`), or None.
    val: Split | None = None
    # Standardized units per unit of [0, 1] pixel intensity: a perturbation of e pixel units
    # is e * pixel_scale in the tensors (per channel, shape (C,)). Exact for "dataset"
    # normalization; for "per_image" it uses the mean per-image std (an approximation).
    pixel_scale: tuple[float, ...] = (1.0,)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    @property
    def split_names(self) -> tuple[str, ...]:
        return ("train", "test") if self.val is None else ("train", "test", "val")

    def split(self, name: str) -> Split:
        if name not in self.split_names:
            raise ValueError(f"unknown split {name!r} (allowed: {', '.join(self.split_names)})")
        return getattr(self, name)

    def to(self, device: torch.device | str) -> Data:
        return replace(
            self,
            train=self.train.to(device),
            test=self.test.to(device),
            val=None if self.val is None else self.val.to(device),
        )

    def subset_train(self, n: int) -> Data:
        """The first n training examples (all of them if there are fewer); test unchanged."""
        return replace(self, train=Split(self.train.x[:n], self.train.y[:n]))

    def carve_validation(self, n: int, seed: int = 0) -> Data:
        """Move n training examples, chosen by a permutation drawn from `seed`, into a `val`
        split (in the permutation's order); the rest stay in `train` in their original order."""
        total = len(self.train)
        if not 0 < n < total:
            raise ValueError(
                f"validation size {n} must be between 1 and {total - 1} "
                f"(the {self.name} training split has {total} examples)"
            )
        perm = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
        held, kept = perm[:n], perm[n:].sort().values
        held, kept = held.to(self.train.y.device), kept.to(self.train.y.device)
        return replace(
            self, train=Split(self.train.x[kept], self.train.y[kept]), val=Split(self.train.x[held], self.train.y[held])
        )


def load(
    name: str,
    root: str | Path | None = None,
    device: torch.device | str = "cpu",
    download: bool = True,
    normalize: str = "dataset",
    crop: int | None = None,
) -> Data:
    """The named data set as tensors on `device`. `root` is where files live (cifar10 only).

    Pixels are scaled to [0, 1], centre-cropped to `crop` x `crop` if given, then
    standardized: ``normalize="dataset"`` with the train split's statistics (as listed
    above), ``"per_image"`` each image by its own mean and std (Zhang et al. 2017; as
    TensorFlow's per_image_standardization, the std is at least 1/sqrt(pixels)).
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalize!r} (allowed: {', '.join(NORMALIZATIONS)})")
    if name == "digits":
        (x_tr, y_tr), (x_te, y_te) = _digits()
    elif name == "cifar10":
        (x_tr, y_tr), (x_te, y_te) = _cifar10(Path(root or default_root()), download=download)
    elif name in IDX_SETS:
        (x_tr, y_tr), (x_te, y_te) = _idx(name, root, download=download)
    elif name == "synthetic":
        (x_tr, y_tr), (x_te, y_te) = _synthetic()
    else:
        raise ValueError(f"unknown dataset {name!r} (allowed: {', '.join(DATASETS)})")
    if crop is not None:
        x_tr, x_te = center_crop(x_tr, crop), center_crop(x_te, crop)
    if normalize == "per_image":
        scale = 1.0 / x_tr.flatten(1).std(dim=1, unbiased=False).clamp_min(1.0 / x_tr[0].numel() ** 0.5).mean().item()
        pixel_scale = (scale,) * x_tr.shape[1]
        x_tr, x_te = per_image_standardize(x_tr), per_image_standardize(x_te)
    else:
        # digits: one global mean and std (several border pixels are constant 0); cifar10: per
        # channel (the one-channel sets: the same as global).
        dims = (0, 1, 2, 3) if name == "digits" else (0, 2, 3)
        mean, std = x_tr.mean(dim=dims, keepdim=True), x_tr.std(dim=dims, keepdim=True)
        x_tr.sub_(mean).div_(std)  # in place: a second copy of 60,000 images is 188 MB
        x_te.sub_(mean).div_(std)
        pixel_scale = tuple((1.0 / std.flatten()).tolist()) * (x_tr.shape[1] if std.numel() == 1 else 1)
    return Data(name=name, train=Split(x_tr, y_tr), test=Split(x_te, y_te), num_classes=10, pixel_scale=pixel_scale).to(
        device
    )


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central size x size window of images x (N, C, H, W)."""
    h, w = x.shape[-2:]
    if size > min(h, w):
        raise ValueError(f"crop {size} is larger than the images ({h}x{w})")
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size].contiguous()


def per_image_standardize(x: torch.Tensor) -> torch.Tensor:
    """(x - mean) / max(std, 1/sqrt(C*H*W)) per image of x (N, C, H, W)."""
    flat = x.flatten(1)
    mean = flat.mean(dim=1)
    std = flat.std(dim=1, unbiased=False).clamp_min(1.0 / flat.shape[1] ** 0.5)
    return (x - mean[:, None, None, None]) / std[:, None, None, None]


Arrays = tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


DIGITS_TEST = DATASET_TABLE["digits"].test_size  # test images of the fixed digits split


def _digits() -> Arrays:
    """((x_train, y_train), (x_test, y_test)): pixels in [0, 1], shape (N, 1, 8, 8).

    The split is computed with scikit-learn once per machine and scikit-learn version and kept
    in the default data folder (`digits-<version>.npz`, 0.5 MB): importing scikit-learn costs a
    trial process ~0.8 s, more than everything else the digits job does before training."""
    from importlib.metadata import version

    # The name carries everything the split depends on: scikit-learn's version and the split rule.
    cache = default_root() / f"digits-sklearn{version('scikit-learn')}-test{DIGITS_TEST}-seed0.npz"
    try:
        with np.load(cache) as z:
            arrays = z["x_tr"], z["y_tr"], z["x_te"], z["y_te"]
        if [a.shape for a in arrays] != [
            (1797 - DIGITS_TEST, 1, 8, 8),
            (1797 - DIGITS_TEST,),
            (DIGITS_TEST, 1, 8, 8),
            (DIGITS_TEST,),
        ]:
            raise ValueError("not the digits split")
    except Exception:  # noqa: BLE001 - absent, truncated, not a zip, wrong shapes: compute it again
        arrays = _digits_split()
        _save_atomically(cache, dict(zip(("x_tr", "y_tr", "x_te", "y_te"), arrays)))
    x_tr, y_tr, x_te, y_te = (torch.from_numpy(a) for a in arrays)
    return (x_tr, y_tr), (x_te, y_te)


def _digits_split() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = bunch.images.astype(np.float32)[:, None] / 16.0
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=DIGITS_TEST, stratify=y, random_state=0)
    return x_tr, y_tr, x_te, y_te


def _save_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez to a temporary file renamed into place; a folder that cannot be written is
    skipped (the cache is only a speed-up)."""
    import os
    import tempfile

    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _synthetic(train: int = 50_000, test: int = 10_000, seed: int = 0) -> Arrays:
    """CIFAR-shaped noise: pixels in [0, 1), shape (N, 3, 32, 32), labels uniform over 10 classes."""
    gen = torch.Generator().manual_seed(seed)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.rand(n, 3, 32, 32, generator=gen), torch.randint(0, 10, (n,), generator=gen)

    return split(train), split(test)


def _cifar10(root: Path, download: bool) -> Arrays:
    """((x_train, y_train), (x_test, y_test)): pixels in [0, 1], shape (N, 3, 32, 32)."""
    from torchvision.datasets import CIFAR10

    cifar10_files(root, download, check=False)  # the CIFAR10 class checks the md5s itself
    try:
        # torchvision verifies every batch file against its md5 here.
        train, test = CIFAR10(str(root), train=True), CIFAR10(str(root), train=False)
    except RuntimeError as exc:
        raise DataUnavailable(
            f"CIFAR-10 files under {root / CIFAR_DIR} are incomplete or "
            f"corrupted ({exc}); delete the folder to download again"
        ) from None

    def tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).float().div_(255.0)
        return x.contiguous(), torch.as_tensor(ds.targets, dtype=torch.int64)

    return tensors(train), tensors(test)


def _idx(name: str, root: str | Path | None, download: bool) -> Arrays:
    """((x_train, y_train), (x_test, y_test)) of an MNIST-format set: pixels in [0, 1], shape (N, 1, 28, 28)."""
    from torchvision import datasets

    where = idx_root(name, root, download=download)
    cls = getattr(datasets, IDX_SETS[name].folder)

    def tensors(train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        ds = cls(str(where), train=train, download=False)
        return ds.data[:, None].float().div_(255.0), ds.targets.to(torch.int64)

    return tensors(True), tensors(False)


def display_images(
    name: str,
    split: str,
    root: str | Path | None = None,
    *,
    corruption: tuple[str, float, int] | None = None,
    train_size: int | None = None,
) -> np.ndarray | None:
    """The split's images for display, (N, H, W) or (N, H, W, 3) uint8 (each image min-max
    scaled), or None if the data set's files are not here (nothing is downloaded). With
    `corruption` (kind, p, seed) and the trial's `train_size`: the training images as a trial
    corrupted them (randX: Gaussian noise in place of the chosen images), what it trained on."""
    from . import corruption as corruptions

    try:
        data = load(name, root, download=False)
    except DataUnavailable:
        return None
    if train_size is not None:
        data = data.subset_train(train_size)
    if corruption is not None:
        data = corruptions.apply(data, *corruption)[0]
    x = data.split(split).x
    del data  # the other splits; the scaling below works in place (60,000 images are 188 MB a copy)
    flat = x.reshape(len(x), -1)
    lo, hi = flat.min(dim=1).values, flat.max(dim=1).values
    flat.sub_(lo[:, None]).div_((hi - lo).clamp_min(1e-8)[:, None]).mul_(255).round_()
    scaled = flat.to(torch.uint8).reshape(x.shape).numpy().transpose(0, 2, 3, 1)
    return scaled[..., 0] if scaled.shape[-1] == 1 else scaled
