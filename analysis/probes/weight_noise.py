"""Weight-noise sensitivity: accuracy against log-normal noise on the trained weights, the sigma
at which it halves, the figure and the section."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis import kinds
from analysis.figures import accuracy_axes, line_trace, require_means, variant_colours, variant_lines
from analysis.render import table

TABLE = "probes"


def weight_noise_curves(probes: pd.DataFrame) -> pd.DataFrame:
    """Per arch x variant x seed x split x sigma: accuracy averaged over the noise draws."""
    rows = probes[probes.probe == "weight_noise"]
    keys = kinds.keys(rows) + ["seed", "split", "sigma"]
    return rows.groupby(keys, observed=True).value.mean().rename("acc").reset_index()


def weight_noise_means(curves: pd.DataFrame) -> pd.DataFrame:
    """`weight_noise_curves` averaged over seeds: accuracy per (arch x) variant x split x sigma."""
    keys = kinds.keys(curves) + ["split", "sigma"]
    return curves.groupby(keys, observed=True, sort=False).acc.mean().reset_index()


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


def figure(curves: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Accuracy against log-normal weight-noise sigma, one panel per split, one line per
    variant (mean over seeds and draws). Input: `weight_noise_means`."""
    splits = list(dict.fromkeys(curves.split))
    mean = require_means(curves, "weight_noise_means")
    colors = variant_colours(list(dict.fromkeys(mean.variant)))
    fig = make_subplots(rows=1, cols=len(splits), subplot_titles=[f"{s} split" for s in splits], shared_yaxes=True)
    for col, split in enumerate(splits, start=1):
        for name, dash, variant, rows in variant_lines(mean[mean.split == split]):
            fig.add_trace(
                line_trace(
                    rows.sigma,
                    rows.acc,
                    name,
                    colors[variant],
                    f"<b>{name}</b>, {split}<br>sigma %{{x}}<br>accuracy %{{y:.3f}}<extra></extra>",
                    dash=dash,
                    legend=col == 1,
                ),
                row=1,
                col=col,
            )
    x_title = "sigma (weights x exp(sigma N(0,1)))"
    return accuracy_axes(fig, x_title, len(splits), title=title or "Weight-noise sensitivity", height=400)


def section(config: dict[str, Any], rows: pd.DataFrame) -> list:
    curves = weight_noise_curves(rows)
    return [
        "<h2>Weight-noise sensitivity</h2><p class='note'>The trained model frozen, every parameter "
        f"multiplied by exp(sigma N(0,1)); accuracy averaged over {_draws(config['draws'])} per sigma. "
        "sigma_half: where accuracy falls to half its noise-free value (linear between grid points; "
        "a dash: not within the grid).</p>",
        figure(weight_noise_means(curves)),
        table(halving_sigma(curves), {"sigma_half": ".3f", "acc0": ".3f"}),
    ]


def _draws(n: int) -> str:
    return "1 draw" if n == 1 else f"{n} draws"
