"""Readings of the probe tables (Arpit et al. 2017, Fig. 9; Zhang et al. 2017; follow-up work): critical sample ratio per epoch,
weight-noise curves and the sigma at which accuracy halves, weight norms, early stopping.
Pure functions of DataFrames read from the store (`probes`, `norms`, `epochs`, `trials`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import kinds


def csr_curve(probes: pd.DataFrame) -> pd.DataFrame:
    """Per arch x variant x epoch: mean and std over seeds of the critical sample ratio."""
    rows = probes[probes.probe == "csr"]
    keys = kinds.keys(rows) + ["epoch"]
    out = rows.groupby(keys, observed=True).value.agg(csr="mean", csr_std="std", seeds="count")
    return out.reset_index()


def weight_noise_curves(probes: pd.DataFrame) -> pd.DataFrame:
    """Per arch x variant x seed x split x sigma: accuracy averaged over the noise draws."""
    rows = probes[probes.probe == "weight_noise"]
    keys = kinds.keys(rows) + ["seed", "split", "sigma"]
    return rows.groupby(keys, observed=True).value.mean().rename("acc").reset_index()


def weight_noise_means(curves: pd.DataFrame) -> pd.DataFrame:
    """`weight_noise_curves` averaged over seeds: accuracy per (arch x) variant x split x sigma."""
    keys = kinds.keys(curves) + ["split", "sigma"]
    return curves.groupby(keys, observed=True, sort=False).acc.mean().reset_index()


def epoch_means(epochs: pd.DataFrame) -> pd.DataFrame:
    """Training and validation accuracy per (arch x) variant x epoch, averaged over seeds."""
    keys = kinds.keys(epochs) + ["epoch"]
    return epochs.groupby(keys, observed=True, sort=False)[["train_acc", "val_acc"]].mean().reset_index()


def halving_sigma_array(sigmas: np.ndarray, acc: np.ndarray) -> float:
    """sigmas (S,) ascending with sigmas[0] = 0, acc (S,) -> the sigma at which accuracy first
    falls to half of acc[0], linearly interpolated between grid points; NaN if it never does
    on the grid. Hand example: sigmas (0, 1, 2), acc (0.8, 0.6, 0.2) -> 1.5."""
    sigmas, acc = np.asarray(sigmas, float), np.asarray(acc, float)
    half = acc[0] / 2
    below = np.flatnonzero(acc <= half)
    if not len(below):
        return float("nan")
    i = below[0]
    if i == 0:
        return float(sigmas[0])
    s0, s1, a0, a1 = sigmas[i - 1], sigmas[i], acc[i - 1], acc[i]
    return float(s0 + (a0 - half) / (a0 - a1) * (s1 - s0))


def halving_sigma(curves: pd.DataFrame) -> pd.DataFrame:
    """Per model (arch x variant x seed) x split, from `weight_noise_curves`: acc at sigma 0 and
    `sigma_half`, the sigma at which accuracy halves (NaN: not within the grid)."""
    keys = kinds.keys(curves) + ["seed", "split"]
    out = []
    for key, one in curves.groupby(keys, observed=True):
        one = one.sort_values("sigma")
        out.append(
            {
                **dict(zip(keys, key)),
                "acc0": float(one.acc.iloc[0]),
                "sigma_half": halving_sigma_array(one.sigma.to_numpy(), one.acc.to_numpy()),
            }
        )
    return pd.DataFrame(out)


def norm_curves(norms: pd.DataFrame) -> pd.DataFrame:
    """Per arch x variant x epoch: mean over seeds of the whole model's weight norm (epoch 0:
    at initialization)."""
    rows = norms[norms.layer == "total"]
    keys = kinds.keys(rows) + ["epoch"]
    return rows.groupby(keys, observed=True).norm.mean().reset_index()


def layer_norms_before_after(norms: pd.DataFrame) -> pd.DataFrame:
    """Per arch x variant x layer (in model order, 'total' last): mean over seeds of the norm at
    initialization (`before`, epoch 0) and at the last recorded epoch (`after`), and after/before."""
    keys = kinds.keys(norms)
    last = norms.groupby(keys + ["seed"], observed=True).epoch.transform("max")
    pick = {"before": norms[norms.epoch == 0], "after": norms[norms.epoch == last]}
    parts = [
        rows.groupby(keys + ["layer_index", "layer"], observed=True).norm.mean().rename(name)
        for name, rows in pick.items()
    ]
    out = pd.concat(parts, axis=1).reset_index().sort_values(keys + ["layer_index"])
    out["ratio"] = out.after / out.before
    return out.reset_index(drop=True)


def early_stopping_summary(trials: pd.DataFrame) -> pd.DataFrame:
    """Per arch x variant (mean over seeds): the epoch of best validation accuracy, the epoch
    early stopping stopped (or would have stopped) at, and train / validation / test accuracy
    at the best epoch against at the end of full training."""
    keys = kinds.keys(trials)
    cols = {
        "best_epoch": "best_epoch",
        "early_stop_epoch": "early_stop_epoch",
        "epochs_trained": "epochs_trained",
        "best_train_acc": "train acc, early stop",
        "final_train_acc": "train acc, full",
        "best_val_acc": "val acc, early stop",
        "best_test_acc": "test acc, early stop",
        "final_test_acc": "test acc, full",
    }
    have = {k: v for k, v in cols.items() if k in trials.columns}
    out = trials.groupby(keys, observed=True)[list(have)].mean().rename(columns=have)
    return out.reset_index()


def neighbour_correlation(w: np.ndarray) -> np.ndarray:
    """w: (filters, C, kH, kW) -> (filters,) the correlation between horizontally and vertically
    adjacent weights (pooled over channels): near 0 for white noise, positive for smooth,
    edge- or blob-like filters, negative for checkerboards."""
    w = np.asarray(w, dtype=float)
    a = np.concatenate([w[..., :, :-1].reshape(len(w), -1), w[..., :-1, :].reshape(len(w), -1)], axis=1)
    b = np.concatenate([w[..., :, 1:].reshape(len(w), -1), w[..., 1:, :].reshape(len(w), -1)], axis=1)
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return np.divide((a * b).sum(axis=1), denom, out=np.full(len(w), np.nan), where=denom > 0)


def filter_array(rows: pd.DataFrame) -> np.ndarray:
    """(filters, C, kH, kW) from one model's `filters` rows at one epoch, in filter order."""
    rows = rows.sort_values("filter")
    c, h, w = int(rows.channels.iloc[0]), int(rows.height.iloc[0]), int(rows.width.iloc[0])
    return np.stack(rows.weights.to_numpy()).astype(np.float32).reshape(-1, c, h, w)


def filter_stats(filters: pd.DataFrame) -> pd.DataFrame:
    """Per arch x variant x epoch (mean over seeds and filters): `change`, ||W - W0|| / ||W0||
    against the filters at initialization (epoch 0); `smoothness`, the neighbour correlation of
    W; `update_smoothness`, that of W - W0 (what training added)."""
    keys = kinds.keys(filters)
    out = []
    for key, model in filters.groupby(keys + ["seed"], observed=True):
        by_epoch = {int(e): filter_array(r) for e, r in model.groupby("epoch")}
        w0 = by_epoch.get(0)
        for epoch, w in sorted(by_epoch.items()):
            row = dict(zip(keys + ["seed"], key), epoch=epoch, smoothness=float(np.nanmean(neighbour_correlation(w))))
            if w0 is not None:
                row["change"] = float(np.linalg.norm(w - w0) / np.linalg.norm(w0))
                row["update_smoothness"] = float(np.nanmean(neighbour_correlation(w - w0))) if epoch else float("nan")
            out.append(row)
    stats = pd.DataFrame(out)
    return stats.groupby(keys + ["epoch"], observed=True).mean(numeric_only=True).drop(columns="seed").reset_index()


def phase_summary(trials: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """Per architecture and variant (two models are never averaged together): phase 1's epochs,
    validation accuracy at the end of phase 1 and of phase 2, and training accuracy at the end of
    phase 2, each the mean over seeds."""
    keys = kinds.keys(trials, epochs)
    b = trials.groupby(keys, observed=True).phase1_epochs.mean()
    last = epochs.sort_values("epoch").groupby([*keys, "seed"], observed=True).last()
    at_b = epochs.merge(trials[[*keys, "seed", "phase1_epochs"]], on=[*keys, "seed"])
    at_b = at_b[at_b.epoch == at_b.phase1_epochs].groupby(keys, observed=True)
    return pd.DataFrame(
        {
            "phase 1 epochs": b,
            "val acc, end of phase 1": at_b.val_acc.mean(),
            "val acc, end of phase 2": last.groupby(keys, observed=True).val_acc.mean(),
            "train acc, end of phase 2": last.groupby(keys, observed=True).train_acc.mean(),
        }
    ).reset_index()


def filter_pictures(filters: pd.DataFrame, first: int = 64):
    """(name, last epoch, picture of the first `first` filters of the lowest seed after it, picture of
    what training added to them or None without initial filters) per architecture and variant."""
    seed0 = filters[filters.seed == filters.seed.min()]
    keys = kinds.keys(seed0)  # each architecture's own filters
    for key, rows in seed0.groupby(keys, observed=True):
        name = " ".join(map(str, key)) if isinstance(key, tuple) else str(key)
        last = int(rows.epoch.max())
        w = filter_array(rows[rows.epoch == last])[:first]
        change = None
        if (rows.epoch == 0).any() and last > 0:
            change = filter_grid(w - filter_array(rows[rows.epoch == 0])[:first])
        yield name, last, filter_grid(w), change


def filter_grid(weights: np.ndarray, per_row: int = 16, zoom: int = 8) -> np.ndarray:
    """(H, W, 3) uint8 grid of filters (F, C, kH, kW): each filter min-max scaled on its own,
    one pixel of white between them, `zoom` times larger with crisp pixels."""
    w = np.asarray(weights, dtype=np.float32)
    if w.shape[1] not in (1, 3):
        w = w.mean(axis=1, keepdims=True)
    w = np.repeat(w, 3, axis=1) if w.shape[1] == 1 else w
    lo, hi = w.min(axis=(1, 2, 3), keepdims=True), w.max(axis=(1, 2, 3), keepdims=True)
    w = (w - lo) / np.maximum(hi - lo, 1e-12)
    f, _, kh, kw = w.shape
    rows = -(-f // per_row)
    grid = np.ones((3, rows * (kh + 1) + 1, min(f, per_row) * (kw + 1) + 1), dtype=np.float32)
    for i in range(f):
        r, c = divmod(i, per_row)
        grid[:, 1 + r * (kh + 1) : 1 + r * (kh + 1) + kh, 1 + c * (kw + 1) : 1 + c * (kw + 1) + kw] = w[i]
    picture = (grid.transpose(1, 2, 0) * 255).round().astype(np.uint8)
    return np.kron(picture, np.ones((zoom, zoom, 1), dtype=np.uint8))
