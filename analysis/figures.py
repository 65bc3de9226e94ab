"""Plotly figures. Each takes computed DataFrames or arrays and returns a `go.Figure`;
none reads files or computes a statistic (those are in `analysis.difficulty`)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

import catalog

BASELINE_COLOR = catalog.BASELINE_COLOUR
MAX_POINTS = 2000  # per curve; a longer sorted curve is drawn at evenly spaced ranks


def layout(fig: go.Figure, legend_y: float | None = -0.25, **options) -> go.Figure:
    """Every figure's look: plotly's white template and, unless legend_y is None, a horizontal
    legend below the plot at `legend_y`; `options` adds the figure's own title, height and axes."""
    legend = {} if legend_y is None else {"legend": dict(orientation="h", y=legend_y)}
    fig.update_layout(template="plotly_white", **legend, **options)
    return fig


def line_trace(
    x,
    y,
    name: str,
    colour: str,
    hover: str | None = None,
    *,
    mode: str = "lines+markers",
    width: float = 2.5,
    dash: str = "solid",
    legend: bool = True,
    **more,
) -> go.Scatter:
    """One named line: its legend group is its name (its panels show and hide together), listed
    in the legend when `legend`, with `hover` as its hover template; `more`: other trace keys."""
    return go.Scatter(
        x=x,
        y=y,
        mode=mode,
        name=name,
        legendgroup=name,
        showlegend=legend,
        line=dict(color=colour, width=width, dash=dash),
        hovertemplate=hover,
        **more,
    )


def mark_trace(x, y, name: str, group: str, marker: dict, **more) -> go.Scatter:
    """Markers only, in the legend group `group` (the line they mark); `more`: other trace keys."""
    return go.Scatter(x=x, y=y, mode="markers", name=name, legendgroup=group, marker=marker, **more)


def _color(variant: str) -> str:
    """A variant's colour (catalog.variant_colour: kinds their own, grid levels on a sequential scale)."""
    return catalog.variant_colour(str(variant)) or catalog.OTHER_COLOUR


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


def p_correct_curves(
    curves: pd.DataFrame,
    baselines: pd.DataFrame,
    split: str = "train",
    variants: Sequence[str] | None = None,
    title: str | None = None,
    bands: pd.DataFrame | None = None,
) -> go.Figure:
    """Examples sorted by P(correct), one curve per variant and one panel per epoch, with the
    binomial baseline(s) dashed (Arpit et al. 2017, Fig. 1) and, given `bands`
    (`difficulty.bootstrap_bands`), each curve's 95% bootstrap band over seeds shaded.
    Inputs: `sorted_curves` output."""
    curves = curves[curves.split == split]
    bands = bands[bands.split == split] if bands is not None else None
    baselines = baselines[baselines.split == split]
    epochs = sorted(curves.epoch.unique())
    fig = make_subplots(
        rows=1,
        cols=max(1, len(epochs)),
        shared_yaxes=True,
        subplot_titles=[f"after epoch {e}" for e in epochs],
        horizontal_spacing=0.04,
    )
    for col, epoch in enumerate(epochs, start=1):
        for variant, curve in _in_order(curves[curves.epoch == epoch], variants):
            if bands is not None:
                _add_band(fig, _thin(bands[(bands.epoch == epoch) & (bands.variant == variant)]), str(variant), col)
            _add_curve(fig, _thin(curve), str(variant), col)
        for name, line in baselines[baselines.epoch == epoch].groupby("name", sort=False):
            _add_curve(fig, _thin(line), name, col, baseline=True)
        fig.update_xaxes(title_text="Examples sorted by P(correct)" if len(epochs) <= 3 else "rank", row=1, col=col)
    fig.update_yaxes(title_text="P(correct)", range=[-0.02, 1.02], row=1, col=1)
    layout(fig, title=title or f"P(correct) per example, {split} split", height=440, margin=dict(t=80), legend_y=-0.2)
    return fig


def _add_band(fig: go.Figure, band: pd.DataFrame, variant: str, col: int) -> None:
    """A curve's 95% bootstrap band over seeds, shaded in its colour."""
    if not len(band):
        return
    fig.add_trace(
        go.Scatter(
            x=np.concatenate([band["rank"], band["rank"][::-1]]),
            y=np.concatenate([band.hi, band.lo[::-1]]),
            fill="toself",
            mode="none",
            fillcolor=_color(variant),
            opacity=0.18,
            name=f"{variant}: 95% band over seeds",
            legendgroup=variant,
            showlegend=False,
            hoverinfo="skip",
        ),
        row=1,
        col=col,
    )


def _add_curve(fig: go.Figure, curve: pd.DataFrame, name: str, col: int, baseline: bool = False) -> None:
    """A sorted P(correct) curve: a variant's, each point hovering its example and label, or a
    binomial baseline's, dashed."""
    style = dict(color=BASELINE_COLOR, width=1.5, dash="dash") if baseline else dict(color=_color(name), width=2.5)
    where = "" if baseline else "<br>example %{customdata[0]} (label %{customdata[1]})"
    fig.add_trace(
        go.Scatter(
            x=curve["rank"],
            y=curve.p_correct,
            mode="lines",
            name=name,
            legendgroup=name,
            showlegend=col == 1,
            line=style,
            customdata=None if baseline else np.stack([curve["index"], curve["label"]], axis=1),
            hovertemplate=(
                (name if baseline else f"<b>{name}</b>") + where + "<br>rank %{x}<br>P(correct) %{y:.2f}<extra></extra>"
            ),
        ),
        row=1,
        col=col,
    )


def p_correct_histograms(
    pc: pd.DataFrame,
    split: str = "train",
    epoch: int | None = None,
    variants: Sequence[str] | None = None,
    title: str | None = None,
) -> go.Figure:
    """Overlaid histograms of P(correct), one per variant. Input: a `p_correct` frame."""
    pc = pc[pc.split == split]
    epoch = int(pc.epoch.max()) if epoch is None else epoch
    pc = pc[pc.epoch == epoch]
    n = int(pc.n_seeds.max()) if len(pc) else 1
    fig = go.Figure()
    for variant, curve in _in_order(pc, variants):
        fig.add_trace(
            go.Histogram(
                x=curve.p_correct,
                name=str(variant),
                marker_color=_color(str(variant)),
                opacity=0.6,
                xbins=dict(start=-0.5 / n, end=1 + 0.5 / n, size=max(1, n // 50) / n),
                hovertemplate=f"<b>{variant}</b><br>P(correct) %{{x:.2f}}<br>%{{y}} examples<extra></extra>",
            )
        )
    layout(
        fig,
        barmode="overlay",
        height=360,
        title=title or f"Distribution of P(correct), {split} split, epoch {epoch}",
        xaxis_title="P(correct)",
        yaxis_title="Examples",
    )
    return fig


def gallery(images: np.ndarray, captions: Sequence[str], title: str, columns: int = 10) -> go.Figure:
    """A grid of images with captions. images: (k, H, W) grayscale or (k, H, W, 3) RGB, uint8."""
    k = len(images)
    rows = max(1, -(-k // columns))
    fig = make_subplots(
        rows=rows, cols=columns, subplot_titles=list(captions), horizontal_spacing=0.01, vertical_spacing=0.12 / rows
    )
    for i, image in enumerate(images):
        rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
        fig.add_trace(
            go.Image(z=rgb, hovertemplate=f"{captions[i]}<extra></extra>"), row=i // columns + 1, col=i % columns + 1
        )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=10)
    layout(fig, title=title, height=130 * rows + 70, margin=dict(t=70, b=10, l=10, r=10), legend_y=None)
    return fig


# --- convergence (Zhang et al. 2017) ----------------------------------------------------------


def _arch_color(arch: str) -> str:
    return catalog.arch_colour(arch)


def time_to_interpolation(curve: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Fig. 1b: epochs and training seconds to interpolation against label corruption, one
    line per arch. Input: `convergence.label_corruption_curve`. A run that never interpolated
    is an open 'x' at the epochs it trained (a lower bound), not a gap."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["epochs to interpolation", "training seconds to interpolation"])
    for arch, rows in curve.groupby("arch", sort=False):
        done = rows[rows.interpolated >= rows.seeds]
        for col, y in ((1, "epochs"), (2, "seconds")):
            fig.add_trace(
                line_trace(
                    done.corruption_p,
                    done[y],
                    arch,
                    _arch_color(arch),
                    f"<b>{arch}</b><br>label corruption %{{x:.1f}}<br>{y} %{{y:.1f}}"
                    "<br>x%{customdata:.2f} of clean labels<extra></extra>",
                    legend=col == 1,
                    customdata=done.ratio_seconds if y == "seconds" else done.ratio_epochs,
                ),
                row=1,
                col=col,
            )
        never = rows[rows.interpolated < rows.seeds]
        if len(never):
            fig.add_trace(
                mark_trace(
                    never.corruption_p,
                    never.epochs_trained,
                    f"{arch}: not interpolated",
                    arch,
                    dict(symbol="x-open", size=11, color=_arch_color(arch)),
                    hovertemplate=f"<b>{arch}</b> did not interpolate<br>label corruption %{{x:.1f}}"
                    "<br>stopped after %{y} epochs<extra></extra>",
                ),
                row=1,
                col=1,
            )
    fig.update_xaxes(title_text="label corruption p", range=[-0.05, 1.05])
    fig.update_yaxes(title_text="epochs", row=1, col=1, rangemode="tozero")
    fig.update_yaxes(title_text="seconds", row=1, col=2, rangemode="tozero")
    layout(fig, title=title or "Convergence slowdown (Zhang et al. 2017, Fig. 1b)", height=420)
    return fig


def generalization_error(curve: pd.DataFrame, chance: float = 0.9, title: str | None = None) -> go.Figure:
    """Fig. 1c: test error at interpolation against label corruption, one line per arch, with
    chance (1 - 1/classes) dashed. Runs that never interpolated: their final test error, 'x'."""
    fig = go.Figure()
    for arch, rows in curve.groupby("arch", sort=False):
        done = rows[rows.interpolated >= rows.seeds]
        fig.add_trace(
            line_trace(
                done.corruption_p,
                done.test_error,
                arch,
                _arch_color(arch),
                f"<b>{arch}</b><br>label corruption %{{x:.1f}}<br>test error %{{y:.3f}}<extra></extra>",
            )
        )
        never = rows[rows.interpolated < rows.seeds]
        if len(never):
            fig.add_trace(
                mark_trace(
                    never.corruption_p,
                    1 - never.final_test_acc,
                    f"{arch}: not interpolated (final)",
                    arch,
                    dict(symbol="x-open", size=11, color=_arch_color(arch)),
                )
            )
    fig.add_hline(
        y=chance,
        line=dict(color=BASELINE_COLOR, dash="dash"),
        annotation_text=f"chance ({chance:.0%})",
        annotation_position="bottom right",
    )
    layout(
        fig,
        title=title or "Test error at interpolation (Zhang et al. 2017, Fig. 1c)",
        height=420,
        xaxis_title="label corruption p",
        yaxis_title="test error",
        yaxis_range=[0, 1],
    )
    return fig


def learning_curves(lc: pd.DataFrame, metric: str = "train_loss", title: str | None = None) -> go.Figure:
    """One panel per arch, one line per corruption: `metric` against epoch.
    Input: `convergence.learning_curves`."""
    archs = list(dict.fromkeys(lc.arch))
    fig = make_subplots(
        rows=1, cols=max(1, len(archs)), subplot_titles=archs, shared_yaxes=True, horizontal_spacing=0.03
    )
    colors = variant_colours(list(dict.fromkeys(lc.variant)))  # the same colour per variant as the other figures
    for col, arch in enumerate(archs, start=1):
        for variant, rows in _by_level(lc[lc.arch == arch]).groupby("variant", sort=False):
            fig.add_trace(
                line_trace(
                    rows.epoch,
                    rows[metric],
                    variant,
                    colors[variant],
                    f"<b>{arch}, {variant}</b><br>epoch %{{x}}<br>{metric} %{{y:.3f}}<extra></extra>",
                    mode="lines",
                    width=2,
                    legend=col == 1,
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="epoch", row=1, col=col)
    fig.update_yaxes(title_text=metric.replace("_", " "), row=1, col=1)
    layout(fig, title=title or f"{metric.replace('_', ' ')} per epoch", height=400)
    return fig


# --- per-example dynamics (Toneva et al. 2019; Swayamdipta et al. 2020; Paul et al. 2021) ---------------------------------------------

PALETTE = list(catalog.OKABE_ITO)
DATA_MAP_POINTS = 4000  # per panel; more examples are drawn as a fixed random sample


def variant_colours(variants: Sequence[str]) -> dict[str, str]:
    """The catalog's colour of each variant (kinds, and grid levels on a sequential scale); the
    palette in order for other names."""
    out, free = {}, itertools.cycle(PALETTE[3:] + PALETTE[:3])
    for v in variants:
        out[v] = catalog.variant_colour(str(v)) or next(free)
    return out


DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def _variant_key(variant) -> tuple:
    """Sort key of a variant: the catalog's kind order, then the level (unknown names last)."""
    try:
        c = catalog.Corruption.parse(str(variant))
        return (catalog.KINDS.index(c.kind), c.p, "")
    except ValueError:
        return (len(catalog.KINDS), 0.0, str(variant))


def _by_level(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame's rows with its variants in level order (legends and bars read low to high)."""
    order = sorted(dict.fromkeys(frame.variant), key=_variant_key)
    rank = {str(v): i for i, v in enumerate(order)}  # by name: a categorical would sort by its own order
    return (
        frame.assign(_v=frame.variant.astype(str).map(rank).astype(int))
        .sort_values("_v", kind="stable")
        .drop(columns="_v")
    )


def variant_lines(frame: pd.DataFrame):
    """(name, dash, variant, rows) per line: one per variant, and per architecture too when the
    frame has several (colour: the variant; dash: the architecture)."""
    archs = list(dict.fromkeys(frame.arch.astype(str))) if "arch" in frame.columns else []
    keys = ["arch", "variant"] if len(archs) > 1 else ["variant"]
    for key, rows in _by_level(frame).groupby(keys, observed=True, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        if len(archs) > 1:
            yield f"{key[0]} {key[1]}", DASHES[archs.index(str(key[0])) % len(DASHES)], key[1], rows
        else:
            yield str(key[0]), "solid", key[0], rows


def _by_arch(frame: pd.DataFrame) -> list[tuple[str | None, pd.DataFrame]]:
    """(architecture, its rows) per architecture in the frame; one (None, frame) without an arch column."""
    if "arch" not in frame.columns or frame.arch.nunique() < 1:
        return [(None, frame)]
    return [(str(a), rows) for a, rows in frame.groupby("arch", observed=True, sort=False)]


def _level_grid(frame: pd.DataFrame, **subplots):
    """A figure with one panel per variant (columns, in level order, each titled in its colour)
    and per architecture (rows, titled, when the frame has several); its number of rows; and
    (row, col, arch, variant, colour, rows) per panel that has rows."""
    panels = _by_arch(frame)
    variants = sorted(dict.fromkeys(frame.variant.astype(str)), key=_variant_key)
    colors = variant_colours(variants)
    fig = make_subplots(
        rows=len(panels),
        cols=len(variants),
        column_titles=variants,
        row_titles=[a for a, _ in panels] if len(panels) > 1 else None,
        **subplots,
    )
    for title in fig.layout.annotations:
        if title.text in colors:
            title.font.color = colors[title.text]
    cells = [
        (row, col, arch, variant, colors[variant], rows[rows.variant.astype(str) == variant])
        for row, (arch, rows) in enumerate(panels, start=1)
        for col, variant in enumerate(variants, start=1)
    ]
    return fig, len(panels), [cell for cell in cells if len(cell[-1])]


def oscillation(osc: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Intersection (dashed) and union (solid) of the correctly classified training sets of
    consecutive epochs, against the later epoch, one colour per variant and one panel per
    architecture. Input: `dynamics.oscillation_means`."""
    mean = require_means(osc, "dynamics.oscillation_means")
    colors = variant_colours(list(dict.fromkeys(mean.variant)))
    panels, shown = _by_arch(mean), set()
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[a or "" for a, _ in panels], shared_yaxes=True)
    for panel, (arch, part) in enumerate(panels, start=1):
        for variant, rows in _by_level(part).groupby("variant", observed=True, sort=False):
            for col, dash in (("union", "solid"), ("intersection", "dash")):
                name = f"{variant}: {col}"
                fig.add_trace(
                    line_trace(
                        rows.epoch,
                        rows[col],
                        name,
                        colors[variant],
                        f"<b>{arch + ' ' if arch else ''}{variant}</b><br>epochs %{{x}}-1 and %{{x}}"
                        f"<br>{col} %{{y:.3f}}<extra></extra>",
                        dash=dash,
                        legend=name not in shown,
                    ),
                    row=1,
                    col=panel,
                )
                shown.add(name)
        fig.update_xaxes(title_text="epoch t", row=1, col=panel)
    fig.update_yaxes(title_text="fraction of training examples", range=[0, 1.02], row=1, col=1)
    layout(
        fig,
        title=title or "Accuracy oscillation: correct at epoch t-1 and t (intersection) or either (union)",
        height=400,
    )
    return fig


def forgetting_histogram(events: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Histogram of forgetting events per example (summed over seeds), one panel per variant
    and architecture, clean (solid) and corrupted (hatched) examples side by side in the
    variant's colour. Input: `dynamics.forgetting_events` (or `dynamics.measures`)."""
    fig, n_rows, cells = _level_grid(events, shared_yaxes=True)
    shown = set()
    for row, col, arch, variant, color, one in cells:
        for flag, name, pattern in ((False, "clean", ""), (True, "corrupted", "/")):
            part = one[one.corrupted == flag]
            if part.empty:
                continue
            label = f"{variant}, {name}"
            fig.add_trace(
                go.Histogram(
                    x=part.forgotten,
                    name=label,
                    legendgroup=label,
                    showlegend=label not in shown,
                    marker=dict(color=color, pattern=dict(shape=pattern), line=dict(color=color, width=1)),
                    xbins=dict(start=-0.5, size=1),
                    histnorm="percent",
                    hovertemplate=(
                        f"<b>{arch + ' ' if arch else ''}{variant}</b> {name}<br>%{{x}} events"
                        f"<br>%{{y:.1f}}% of {name} examples<extra></extra>"
                    ),
                ),
                row=row,
                col=col,
            )
            shown.add(label)
    fig.update_xaxes(title_text="forgetting events (summed over seeds)", row=n_rows)
    fig.update_yaxes(title_text="% of examples", col=1)
    layout(
        fig,
        barmode="group",
        height=80 + 300 * n_rows,
        title=title or "Forgetting events per training example (Toneva et al. 2019)",
        legend_y=-0.3,
    )
    return fig


def data_map(maps: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Data maps (Swayamdipta et al. 2020): variability (x) against confidence (y), coloured by
    correctness as in the paper, one panel per variant (titled in its colour) and architecture;
    corrupted examples drawn as crosses. Input: `dynamics.data_map` (or `dynamics.measures`)."""
    fig, n_rows, cells = _level_grid(maps, shared_yaxes=True, horizontal_spacing=0.04)
    shown, bar = set(), True  # legend entries drawn; one colour bar serves every panel
    for row, col, arch, variant, _, one in cells:
        if len(one) > DATA_MAP_POINTS:
            one = one.sample(DATA_MAP_POINTS, random_state=0)
        for flag, symbol, name in ((False, "circle", "clean"), (True, "x", "corrupted")):
            part = one[one.corrupted == flag]
            if part.empty:
                continue
            scale = bar and not flag
            bar &= not scale
            fig.add_trace(
                go.Scattergl(
                    x=part.variability,
                    y=part.confidence,
                    mode="markers",
                    name=name,
                    legendgroup=name,
                    showlegend=name not in shown,
                    marker=dict(
                        symbol=symbol,
                        size=6 if flag else 5,
                        color=part.correctness,
                        colorscale="Viridis",
                        cmin=0,
                        cmax=1,
                        opacity=0.75,
                        colorbar=dict(title="correctness", len=0.8) if scale else None,
                        showscale=scale,
                    ),
                    customdata=np.stack([part["index"], part.label, part.correctness], axis=1),
                    hovertemplate=(
                        f"<b>{arch + ' ' if arch else ''}{variant}</b> {name}<br>example %{{customdata[0]}} "
                        "(label %{customdata[1]})<br>variability %{x:.3f}<br>confidence %{y:.3f}"
                        "<br>correctness %{customdata[2]:.2f}<extra></extra>"
                    ),
                ),
                row=row,
                col=col,
            )
            shown.add(name)
    fig.update_xaxes(title_text="variability", row=n_rows)
    fig.update_yaxes(title_text="confidence", range=[-0.02, 1.02], col=1)
    layout(
        fig,
        title=title or "Data maps: confidence and variability of the labelled class's probability",
        height=80 + 360 * n_rows,
    )
    return fig


def _panels_per_arch(*frames: pd.DataFrame) -> list[pd.DataFrame]:
    """With several architectures, each frame's `variant` becomes 'arch variant' (one panel per
    architecture and variant: two models are never averaged or joined)."""
    first = frames[0]
    if "arch" not in first.columns or first.arch.nunique() < 2:
        return list(frames)
    return [
        f.assign(variant=f.arch.astype(str) + " " + f.variant.astype(str)) if "arch" in f.columns else f for f in frames
    ]


def require_means(frame: pd.DataFrame, means: str) -> pd.DataFrame:
    """`frame`, which must hold means over seeds: ValueError naming the function that gives them
    if it still has a seed column (a figure computes nothing, and would draw each seed's rows)."""
    if "seed" in frame.columns:
        raise ValueError(f"this figure draws means over seeds: pass {means}(frame), not the per-seed rows")
    return frame


def _variant_panels(frame: pd.DataFrame, marks: pd.DataFrame):
    """A figure with one panel per variant (and architecture, `_panels_per_arch`), its variants,
    and the two frames with their variants so named."""
    frame, marks = _panels_per_arch(frame, marks)
    variants = list(dict.fromkeys(frame.variant))
    return make_subplots(rows=1, cols=len(variants), subplot_titles=variants, shared_yaxes=True), variants, frame, marks


TRAIN_VAL = (("train_acc", "solid", catalog.TRAIN_COLOUR), ("val_acc", "dash", catalog.VALIDATION_COLOUR))


def _add_train_val(fig: go.Figure, rows: pd.DataFrame, col: int, who: str, names, width: float, legend: bool) -> None:
    """Training (solid) and validation (dashed) accuracy of `rows` against epoch in panel `col`,
    named `names`; `who` heads their hover text."""
    for (metric, dash, colour), name in zip(TRAIN_VAL, names):
        hover = f"{who}<br>epoch %{{x}}<br>{name} %{{y:.3f}}<extra></extra>"
        trace = line_trace(
            rows.epoch, rows[metric], name, colour, hover, mode="lines", width=width, dash=dash, legend=legend
        )
        fig.add_trace(trace, row=1, col=col)


def accuracy_axes(fig: go.Figure, x_title: str, cols: int, **options) -> go.Figure:
    """`x_title` under each of `cols` panels, accuracy from 0 to 1 up the first, and `layout`."""
    for col in range(1, cols + 1):
        fig.update_xaxes(title_text=x_title, row=1, col=col)
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=1, col=1)
    return layout(fig, **options)


def phases(epochs: pd.DataFrame, boundaries: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Catastrophic forgetting: training (solid) and validation (dashed) accuracy against epoch,
    one line per seed, one panel per variant (and architecture); a dotted line where phase 2
    (training split alone) begins. Inputs: the `epochs` table and per (arch x) variant x seed
    `phase1_epochs`."""
    fig, variants, epochs, boundaries = _variant_panels(epochs, boundaries)
    for col, variant in enumerate(variants, start=1):
        one = epochs[epochs.variant == variant]
        for i, (seed, rows) in enumerate(one.groupby("seed")):
            names = ("train (its labels)", "validation")
            _add_train_val(
                fig, rows.sort_values("epoch"), col, f"<b>{variant}</b> seed {seed}", names, 1.8, col == 1 and i == 0
            )
        for b in sorted(set(boundaries[boundaries.variant == variant].phase1_epochs.dropna())):
            fig.add_vline(
                x=b + 0.5,
                line=dict(color=BASELINE_COLOR, dash="dot"),
                row=1,
                col=col,
                annotation_text="phase 2" if col == 1 else None,
                annotation_position="top right",
            )
    title = title or "Catastrophic forgetting: phase 1 fits train + validation, phase 2 train alone"
    return accuracy_axes(fig, "epoch", len(variants), title=title, height=420)


def early_stopping(epochs: pd.DataFrame, stops: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Train (solid) and validation (dashed) accuracy against epoch, mean over seeds, one panel
    per variant, with the early-stopping epoch (dotted) and the best validation epoch marked.
    Inputs: `training.epoch_means` of the `epochs` table; per (arch x) variant `best_epoch` and
    `early_stop_epoch`."""
    fig, variants, mean, stops = _variant_panels(require_means(epochs, "training.epoch_means"), stops)
    for col, variant in enumerate(variants, start=1):
        rows = mean[mean.variant == variant]
        _add_train_val(
            fig, rows, col, f"<b>{variant}</b>", ("train (its labels)", "validation (true labels)"), 2, col == 1
        )
        stop = stops[stops.variant == variant]
        if len(stop) and pd.notna(stop.early_stop_epoch.iloc[0]):
            fig.add_vline(
                x=float(stop.early_stop_epoch.iloc[0]),
                line=dict(color=BASELINE_COLOR, dash="dot"),
                annotation_text="early stop",
                annotation_position="bottom right",
                row=1,
                col=col,
            )
        if len(stop) and pd.notna(stop.best_epoch.iloc[0]):
            best = rows[rows.epoch == round(float(stop.best_epoch.iloc[0]))]
            fig.add_trace(
                mark_trace(
                    best.epoch,
                    best.val_acc,
                    "best validation epoch",
                    "best",
                    dict(symbol="star", size=13, color=catalog.VALIDATION_COLOUR),
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
    return accuracy_axes(fig, "epoch", len(variants), title=title or "Full training and early stopping", height=420)


def weight_norms(curve: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Whole-model Frobenius norm against epoch (0: initialization), one line per variant, one
    panel per architecture (architectures differ in size: their norms never share a line).
    Input: `training.norm_curves`."""
    colors = variant_colours(list(dict.fromkeys(curve.variant)))
    panels = _by_arch(curve)
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[a or "" for a, _ in panels])
    for col, (arch, part) in enumerate(panels, start=1):
        for variant, rows in _by_level(part.sort_values("epoch")).groupby("variant", observed=True, sort=False):
            fig.add_trace(
                line_trace(
                    rows.epoch,
                    rows.norm,
                    str(variant),
                    colors[variant],
                    f"<b>{arch + ' ' if arch else ''}{variant}</b><br>epoch %{{x}}<br>norm %{{y:.2f}}<extra></extra>",
                    mode="lines",
                    legend=col == 1,
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="epoch (0: initialization)", row=1, col=col)
    layout(
        fig,
        title=title or "Total weight norm during training",
        height=380,
        yaxis_title="Frobenius norm, all parameters",
    )
    return fig


def layer_norms(before_after: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Per-layer norms at initialization (grey) and after training (one bar per variant), one
    panel per architecture (each has its own layers). Input: `training.layer_norms_before_after`."""
    colors = variant_colours(list(dict.fromkeys(before_after.variant)))
    panels = _by_arch(before_after)
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[a or "" for a, _ in panels])
    for col, (_, part) in enumerate(panels, start=1):
        first = part.drop_duplicates("layer")
        fig.add_trace(
            go.Bar(
                x=first.layer,
                y=first.before,
                name="initialization",
                marker_color=catalog.INIT_COLOUR,
                legendgroup="init",
                showlegend=col == 1,
            ),
            row=1,
            col=col,
        )
        for variant, rows in _by_level(part).groupby("variant", observed=True, sort=False):
            fig.add_trace(
                go.Bar(
                    x=rows.layer,
                    y=rows.after,
                    name=f"{variant}, after training",
                    legendgroup=str(variant),
                    showlegend=col == 1,
                    marker_color=colors[variant],
                    customdata=rows.ratio,
                    hovertemplate="%{x}<br>norm %{y:.2f} (x%{customdata:.2f} of init)<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(categoryorder="array", categoryarray=list(dict.fromkeys(part.layer)), row=1, col=col)
    layout(
        fig,
        barmode="group",
        title=title or "Layer norms before and after training",
        height=400,
        yaxis_title="Frobenius norm",
        legend_y=-0.3,
    )
    return fig


def image(picture: np.ndarray, title: str, height: int = 420) -> go.Figure:
    """One RGB image (H, W, 3) uint8, e.g. a grid of filters, embedded as a PNG (small HTML)."""
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(picture)).save(buffer, format="PNG", optimize=True)
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    fig = go.Figure(go.Image(source=uri, hoverinfo="skip"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    layout(fig, title=title, height=height, margin=dict(t=60, b=10, l=10, r=10), legend_y=None)
    return fig


# --- memorization, influence, C-scores (Feldman & Zhang 2020; Jiang et al. 2021) ------------

CLEAN_COLOR, MISLABELED_COLOR = catalog.kind_colour("real"), catalog.MISLABELED_COLOUR


def _clean_and_mislabeled(frame: pd.DataFrame):
    """(name, rows, colour) for the clean and (if any) mislabeled examples of a per-example frame."""
    groups = [("clean labels", frame[~frame.mislabeled], CLEAN_COLOR)]
    if frame.mislabeled.any():
        groups.append(
            ("mislabeled (random label differs from the true one)", frame[frame.mislabeled], MISLABELED_COLOR)
        )
    return groups


def score_histogram(frame: pd.DataFrame, column: str, title: str, xaxis: str, bins: int = 40) -> go.Figure:
    """Distribution of a per-example estimate (mem or cscore), clean and mislabeled examples overlaid."""
    fig = go.Figure()
    lo, hi = (-1.0, 1.0) if column == "mem" else (0.0, 1.0)
    for name, rows, colour in _clean_and_mislabeled(frame):
        fig.add_trace(
            go.Histogram(
                x=rows[column],
                name=f"{name} ({len(rows):,})",
                marker_color=colour,
                opacity=0.7,
                xbins=dict(start=lo, end=hi + 1e-9, size=(hi - lo) / bins),
            )
        )
    layout(
        fig,
        barmode="overlay",
        height=360,
        title=title,
        xaxis_title=xaxis,
        yaxis_title="Training examples (log scale)",
        yaxis_type="log",
    )
    return fig


def roc(curve: pd.DataFrame, auc: float, title: str) -> go.Figure:
    """An ROC curve (fpr, tpr) with its area and the chance diagonal."""
    fig = go.Figure(
        [
            go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line=dict(color=BASELINE_COLOR, dash="dash")),
            go.Scatter(
                x=curve.fpr,
                y=curve.tpr,
                mode="lines",
                name=f"AUROC {auc:.3f}",
                line=dict(color=MISLABELED_COLOR, width=2.5),
            ),
        ]
    )
    layout(
        fig,
        height=420,
        width=520,
        title=title,
        xaxis_title="False positive rate (clean examples flagged)",
        yaxis_title="True positive rate (mislabeled examples flagged)",
        legend=dict(x=0.55, y=0.1),
        legend_y=None,
    )
    return fig


def score_scatter(frame: pd.DataFrame, x: str, y: str, xaxis: str, yaxis: str, title: str) -> go.Figure:
    """One point per training example (hover: index and label), clean and mislabeled apart."""
    fig = go.Figure()
    for name, rows, colour in _clean_and_mislabeled(frame):
        fig.add_trace(
            go.Scattergl(
                x=rows[x],
                y=rows[y],
                mode="markers",
                name=name,
                marker=dict(color=colour, size=5, opacity=0.6),
                customdata=np.stack([rows["index"], rows["label"]], axis=1),
                hovertemplate=f"#%{{customdata[0]}} y=%{{customdata[1]}}<br>{xaxis} %{{x:.3f}}<br>{yaxis} "
                "%{y:.3f}<extra></extra>",
            )
        )
    layout(fig, height=420, title=title, xaxis_title=xaxis, yaxis_title=yaxis)
    return fig


def held_out_by_ratio(bands: pd.DataFrame, title: str) -> go.Figure:
    """Median held-out accuracy against the subset ratio, clean and mislabeled examples apart,
    with the examples' 10th-90th percentile band. Input: `memorization.held_out_bands`."""
    fig = go.Figure()
    for mislabeled, rows in bands.groupby("mislabeled", sort=True):
        name = "mislabeled (random label differs from the true one)" if mislabeled else "clean labels"
        colour = MISLABELED_COLOR if mislabeled else CLEAN_COLOR
        ratios = rows.ratio.tolist()
        fig.add_trace(
            go.Scatter(
                x=ratios + ratios[::-1],
                y=rows.p90.tolist() + rows.p10.tolist()[::-1],
                fill="toself",
                fillcolor=colour,
                opacity=0.15,
                line=dict(width=0),
                hoverinfo="skip",
                showlegend=False,
            )
        )
        fig.add_trace(
            go.Scatter(x=ratios, y=rows["median"], mode="lines+markers", name=name, line=dict(color=colour, width=2.5))
        )
    layout(
        fig,
        height=380,
        title=title,
        xaxis_title="Subset ratio (fraction of the training set each model trained on)",
        yaxis_title="Accuracy of models that did not train on the example",
        yaxis_range=[0, 1.02],
        legend_y=-0.3,
    )
    return fig


def by_axis(table: pd.DataFrame, axis: str, metrics: Sequence[str], title: str) -> go.Figure:
    """Accuracy against `axis`, one panel per metric (clean training labels, corrupted ones, test)
    and one line per variant x value of the other axes, in the same colour in every panel (a
    number axis on a log scale when its values span more than a decade; a list-valued one, such
    as model.hidden, as categories in table order). Input: `aggregate.accuracy_by_axes`."""
    others = [
        c
        for c in table.columns
        if c not in (axis, "variant", "models", "epoch", *metrics) and not c.startswith(("train_", "test"))
    ]
    shown = [m for m in metrics if m in table.columns and table[m].notna().any()]
    fig = make_subplots(
        rows=1, cols=max(1, len(shown)), shared_yaxes=True, subplot_titles=[m.replace("_", " ") for m in shown]
    )
    number = pd.api.types.is_numeric_dtype(table[axis])
    for i, (key, rows) in enumerate(table.groupby(["variant", *others], observed=True, sort=False)):
        key = key if isinstance(key, tuple) else (key,)
        name = ", ".join([str(key[0]), *(f"{o}={v}" for o, v in zip(others, key[1:]))])
        colour = catalog.SERIES_COLOURS[i % len(catalog.SERIES_COLOURS)]
        for col, metric in enumerate(shown, start=1):
            fig.add_trace(
                line_trace(
                    rows[axis] if number else rows[axis].astype(str),
                    rows[metric],
                    name,
                    colour,
                    f"<b>{metric}</b> {name}<br>{axis} %{{x}}<br>accuracy %{{y:.3f}}<extra></extra>",
                    width=2,
                    legend=col == 1,
                ),
                row=1,
                col=col,
            )
    log = number and table[axis].min() > 0 and table[axis].max() >= 10 * table[axis].min()
    fig.update_xaxes(title_text=axis, type="log" if log else None)
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=1, col=1)
    return layout(fig, title=title, height=460)
