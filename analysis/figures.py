"""Plotly figures. Each takes computed DataFrames or arrays and returns a `go.Figure`;
none reads files or computes a statistic (those are in `analysis.difficulty`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

# One colour per variant across every figure (colour-blind-safe Okabe-Ito hues).
COLORS = {"real": "#0072B2", "randX": "#E69F00", "randY": "#009E73"}
BASELINE_COLOR = "#555555"
MAX_POINTS = 2000  # per curve; a longer sorted curve is drawn at evenly spaced ranks


def _color(variant: str) -> str:
    return COLORS.get(variant, "#CC79A7")


def _thin(frame: pd.DataFrame) -> pd.DataFrame:
    """At most MAX_POINTS evenly spaced rows (always the first and last) of a sorted curve."""
    if len(frame) <= MAX_POINTS:
        return frame
    keep = np.unique(np.linspace(0, len(frame) - 1, MAX_POINTS).round().astype(int))
    return frame.iloc[keep]


def _in_order(frame: pd.DataFrame, variants: Sequence[str] | None):
    """(variant, rows) pairs in the given order (default: as they appear)."""
    groups = dict(tuple(frame.groupby("variant", observed=True, sort=False)))
    order = [v for v in variants if v in groups] if variants else list(groups)
    return [(v, groups[v]) for v in order]


def p_correct_curves(curves: pd.DataFrame, baselines: pd.DataFrame, split: str = "train",
                     variants: Sequence[str] | None = None, title: str | None = None) -> go.Figure:
    """Examples sorted by P(correct), one curve per variant and one panel per epoch, with the
    binomial baseline(s) dashed (Arpit et al. 2017, Fig. 1). Inputs: `sorted_curves` output."""
    curves = curves[curves.split == split]
    baselines = baselines[baselines.split == split]
    epochs = sorted(curves.epoch.unique())
    fig = make_subplots(rows=1, cols=max(1, len(epochs)), shared_yaxes=True,
                        subplot_titles=[f"after epoch {e}" for e in epochs], horizontal_spacing=0.04)
    for col, epoch in enumerate(epochs, start=1):
        for variant, curve in _in_order(curves[curves.epoch == epoch], variants):
            curve = _thin(curve)
            fig.add_trace(go.Scatter(
                x=curve["rank"], y=curve.p_correct, mode="lines", name=str(variant),
                legendgroup=str(variant), showlegend=col == 1,
                line=dict(color=_color(str(variant)), width=2.5),
                customdata=np.stack([curve["index"], curve["label"]], axis=1),
                hovertemplate=(f"<b>{variant}</b><br>example %{{customdata[0]}} (label %{{customdata[1]}})"
                               "<br>rank %{x}<br>P(correct) %{y:.2f}<extra></extra>")), row=1, col=col)
        for name, line in baselines[baselines.epoch == epoch].groupby("name", sort=False):
            line = _thin(line)
            fig.add_trace(go.Scatter(
                x=line["rank"], y=line.p_correct, mode="lines", name=name, legendgroup=name,
                showlegend=col == 1, line=dict(color=BASELINE_COLOR, width=1.5, dash="dash"),
                hovertemplate=f"{name}<br>rank %{{x}}<br>P(correct) %{{y:.2f}}<extra></extra>"),
                row=1, col=col)
        fig.update_xaxes(title_text="Examples sorted by P(correct)", row=1, col=col)
    fig.update_yaxes(title_text="P(correct)", range=[-0.02, 1.02], row=1, col=1)
    fig.update_layout(title=title or f"P(correct) per example, {split} split", template="plotly_white",
                      height=440, legend=dict(orientation="h", y=-0.2), margin=dict(t=80))
    return fig


def p_correct_histograms(pc: pd.DataFrame, split: str = "train", epoch: int | None = None,
                         variants: Sequence[str] | None = None, title: str | None = None) -> go.Figure:
    """Overlaid histograms of P(correct), one per variant. Input: a `p_correct` frame."""
    pc = pc[pc.split == split]
    epoch = int(pc.epoch.max()) if epoch is None else epoch
    pc = pc[pc.epoch == epoch]
    n = int(pc.n_seeds.max()) if len(pc) else 1
    fig = go.Figure()
    for variant, curve in _in_order(pc, variants):
        fig.add_trace(go.Histogram(
            x=curve.p_correct, name=str(variant), marker_color=_color(str(variant)), opacity=0.6,
            xbins=dict(start=-0.5 / n, end=1 + 0.5 / n, size=max(1, n // 50) / n),
            hovertemplate=f"<b>{variant}</b><br>P(correct) %{{x:.2f}}<br>%{{y}} examples<extra></extra>"))
    fig.update_layout(barmode="overlay", template="plotly_white", height=360,
                      title=title or f"Distribution of P(correct), {split} split, epoch {epoch}",
                      xaxis_title="P(correct)", yaxis_title="Examples", legend=dict(orientation="h", y=-0.25))
    return fig


def gallery(images: np.ndarray, captions: Sequence[str], title: str, columns: int = 10) -> go.Figure:
    """A grid of images with captions. images: (k, H, W) grayscale or (k, H, W, 3) RGB, uint8."""
    k = len(images)
    rows = max(1, -(-k // columns))
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=list(captions),
                        horizontal_spacing=0.01, vertical_spacing=0.12 / rows)
    for i, image in enumerate(images):
        rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
        fig.add_trace(go.Image(z=rgb, hovertemplate=f"{captions[i]}<extra></extra>"),
                      row=i // columns + 1, col=i % columns + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=10)
    fig.update_layout(title=title, template="plotly_white", height=130 * rows + 70,
                      margin=dict(t=70, b=10, l=10, r=10))
    return fig


# --- convergence (Zhang et al. 2017) ----------------------------------------------------------

ARCH_COLORS = {"mlp1": "#56B4E9", "mlp3": "#0072B2", "alexnet": "#E69F00", "inception": "#009E73",
               "inception_nobn": "#D55E00", "wrn": "#CC79A7"}


def _arch_color(arch: str) -> str:
    return ARCH_COLORS.get(arch, "#999999")


def time_to_interpolation(curve: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Fig. 1b: epochs and training seconds to interpolation against label corruption, one
    line per arch. Input: `convergence.label_corruption_curve`. A run that never interpolated
    is an open 'x' at the epochs it trained (a lower bound), not a gap."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["epochs to interpolation",
                                                        "training seconds to interpolation"])
    for arch, rows in curve.groupby("arch", sort=False):
        done = rows[rows.interpolated >= rows.seeds]
        for col, y in ((1, "epochs"), (2, "seconds")):
            fig.add_trace(go.Scatter(
                x=done.corruption_p, y=done[y], mode="lines+markers", name=arch, legendgroup=arch,
                showlegend=col == 1, line=dict(color=_arch_color(arch), width=2.5),
                customdata=done.ratio_seconds if y == "seconds" else done.ratio_epochs,
                hovertemplate=(f"<b>{arch}</b><br>label corruption %{{x:.1f}}<br>{y} %{{y:.1f}}"
                               "<br>x%{customdata:.2f} of clean labels<extra></extra>")), row=1, col=col)
        never = rows[rows.interpolated < rows.seeds]
        if len(never):
            fig.add_trace(go.Scatter(
                x=never.corruption_p, y=never.epochs_trained, mode="markers", name=f"{arch}: not interpolated",
                legendgroup=arch, marker=dict(symbol="x-open", size=11, color=_arch_color(arch)),
                hovertemplate=(f"<b>{arch}</b> did not interpolate<br>label corruption %{{x:.1f}}"
                               "<br>stopped after %{y} epochs<extra></extra>")), row=1, col=1)
    fig.update_xaxes(title_text="label corruption p", range=[-0.05, 1.05])
    fig.update_yaxes(title_text="epochs", row=1, col=1, rangemode="tozero")
    fig.update_yaxes(title_text="seconds", row=1, col=2, rangemode="tozero")
    fig.update_layout(title=title or "Convergence slowdown (Zhang et al. 2017, Fig. 1b)", template="plotly_white",
                      height=420, legend=dict(orientation="h", y=-0.25))
    return fig


def generalization_error(curve: pd.DataFrame, chance: float = 0.9, title: str | None = None) -> go.Figure:
    """Fig. 1c: test error at interpolation against label corruption, one line per arch, with
    chance (1 - 1/classes) dashed. Runs that never interpolated: their final test error, 'x'."""
    fig = go.Figure()
    for arch, rows in curve.groupby("arch", sort=False):
        done = rows[rows.interpolated >= rows.seeds]
        fig.add_trace(go.Scatter(
            x=done.corruption_p, y=done.test_error, mode="lines+markers", name=arch, legendgroup=arch,
            line=dict(color=_arch_color(arch), width=2.5),
            hovertemplate=f"<b>{arch}</b><br>label corruption %{{x:.1f}}<br>test error %{{y:.3f}}<extra></extra>"))
        never = rows[rows.interpolated < rows.seeds]
        if len(never):
            fig.add_trace(go.Scatter(
                x=never.corruption_p, y=1 - never.final_test_acc, mode="markers", legendgroup=arch,
                name=f"{arch}: not interpolated (final)", marker=dict(symbol="x-open", size=11,
                                                                      color=_arch_color(arch))))
    fig.add_hline(y=chance, line=dict(color=BASELINE_COLOR, dash="dash"),
                  annotation_text=f"chance ({chance:.0%})", annotation_position="bottom right")
    fig.update_layout(title=title or "Test error at interpolation (Zhang et al. 2017, Fig. 1c)",
                      template="plotly_white", height=420, xaxis_title="label corruption p",
                      yaxis_title="test error", yaxis_range=[0, 1], legend=dict(orientation="h", y=-0.25))
    return fig


def learning_curves(lc: pd.DataFrame, metric: str = "train_loss", title: str | None = None) -> go.Figure:
    """One panel per arch, one line per corruption: `metric` against epoch.
    Input: `convergence.learning_curves`."""
    archs = list(dict.fromkeys(lc.arch))
    fig = make_subplots(rows=1, cols=max(1, len(archs)), subplot_titles=archs, shared_yaxes=True,
                        horizontal_spacing=0.03)
    palette = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
    variants = list(dict.fromkeys(lc.variant))
    colors = {v: palette[i % len(palette)] for i, v in enumerate(variants)}
    for col, arch in enumerate(archs, start=1):
        for variant, rows in lc[lc.arch == arch].groupby("variant", sort=False):
            fig.add_trace(go.Scatter(
                x=rows.epoch, y=rows[metric], mode="lines", name=variant, legendgroup=variant,
                showlegend=col == 1, line=dict(color=colors[variant], width=2),
                hovertemplate=f"<b>{arch}, {variant}</b><br>epoch %{{x}}<br>{metric} %{{y:.3f}}<extra></extra>"),
                row=1, col=col)
        fig.update_xaxes(title_text="epoch", row=1, col=col)
    fig.update_yaxes(title_text=metric.replace("_", " "), row=1, col=1)
    fig.update_layout(title=title or f"{metric.replace('_', ' ')} per epoch", template="plotly_white",
                      height=400, legend=dict(orientation="h", y=-0.25))
    return fig
