"""Critical sample ratio (Arpit et al. 2017, Fig. 9): its curve over epochs, figure and section."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

from analysis import kinds
from analysis.figures import layout, line_trace, variant_colours, variant_lines
from analysis.plugins import epochs_text

TABLE = "probes"


def csr_curve(probes: pd.DataFrame) -> pd.DataFrame:
    """Per arch x variant x epoch: mean and std over seeds of the critical sample ratio."""
    rows = probes[probes.probe == "csr"]
    keys = kinds.keys(rows) + ["epoch"]
    out = rows.groupby(keys, observed=True).value.agg(csr="mean", csr_std="std", seeds="count")
    return out.reset_index()


def figure(curve: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Critical sample ratio against epoch, one line per variant (mean over seeds). Input: `csr_curve`."""
    colors = variant_colours(list(dict.fromkeys(curve.variant)))
    fig = go.Figure()
    for name, dash, variant, rows in variant_lines(curve):
        fig.add_trace(
            line_trace(
                rows.epoch,
                rows.csr,
                name,
                colors[variant],
                f"<b>{name}</b><br>epoch %{{x}}<br>CSR %{{y:.3f}}<extra></extra>",
                dash=dash,
            )
        )
    layout(
        fig,
        title=title or "Critical sample ratio (Arpit et al. 2017, Fig. 9)",
        height=400,
        xaxis_title="epoch (0: initialization)",
        xaxis_tickvals=sorted(curve.epoch.unique()) if curve.epoch.nunique() <= 12 else None,
        yaxis_title="critical sample ratio",
        yaxis_rangemode="tozero",
    )
    return fig


def section(config: dict[str, Any], rows: pd.DataFrame) -> list:
    c, at = config, epochs_text(sorted(int(e) for e in rows.epoch.unique()), keep=14)
    return [
        "<h2>Critical sample ratio</h2><p class='note'>LASS on the first "
        f"{c['n']} {c['split']} images after epochs {at} (0: at initialization): alpha {c['alpha'] * 255:.2f}/255, "
        f"beta {c['beta'] * 255:.2f}/255, box radius r = {c['r'] * 255:.0f}/255 (L-inf, pixel units), "
        f"at most {c['iters']} steps. A sample is critical when its predicted class changes inside the box.</p>",
        figure(csr_curve(rows)),
    ]
