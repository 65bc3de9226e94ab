"""First-layer filters (Arpit et al. 2017, Fig. 2): how far training moved them and how smooth
they and their update are, pictures of them, and the section."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis import figures, kinds
from analysis.render import table

TABLE = "filters"


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


def section(config: dict[str, Any], rows: pd.DataFrame) -> list:
    out = [
        "<h2>First-layer filters</h2><p class='note'>The first convolution's filters (the first 64 of "
        "seed 0), each scaled to its own range (Arpit et al. 2017, Fig. 2), after the last recorded "
        "epoch, and what training added to them (W - W at initialization). <i>change</i>: "
        "||W - W0|| / ||W0||; <i>smoothness</i>: correlation of adjacent weights (0: white noise, "
        "positive: smooth, edge- or blob-like; negative: checkerboard), of W and of the update; "
        "mean over filters and seeds.</p>",
        table(filter_stats(rows), {"epoch": "d"}),
    ]
    for name, last, grid, change in filter_pictures(rows):
        out.append(figures.image(grid, f"{name}: first-layer filters after epoch {last}", height=300))
        if change is not None:
            out.append(figures.image(change, f"{name}: what {last} epochs added (W - W0)", height=300))
    return out
