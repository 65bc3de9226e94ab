"""The report's HTML pieces that its sections and the probe plug-ins share: the one table renderer."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

HEADERS = {
    "arch": "architecture",
    "acc0": "accuracy without noise",
    "sigma_half": "sigma where accuracy halves",
    "change": "||W - W0|| / ||W0||",
    "smoothness": "smoothness of W",
    "update_smoothness": "smoothness of W - W0",
    "best_epoch": "best validation epoch",
    "early_stop_epoch": "early-stop epoch",
    "epochs_trained": "epochs trained",
    "n": "examples",
    "n_corrupted": "corrupted examples",
    "chance": "corrupted share (random ranking)",
    "intersection": "correct at both epochs",
    "union": "correct at either epoch",
    "epochs t-1, t = .., t": "first pair of epochs, ending at",
}


def table(
    frame: pd.DataFrame, formats: dict[str, str] | None = None, bold: tuple[str, ...] = (), row_heads: bool = False
) -> str:
    """The report's one table renderer: a DataFrame as an HTML table, text left, numbers right
    (`formats`: a column's format, default '.3f' for floats), NaN as a dash, `bold` columns in
    bold. row_heads: no header row; each row's first cell heads it (a key-value table)."""
    formats = formats or {}

    def cell(col, v):
        if isinstance(v, (float, np.floating)):
            text = "&ndash;" if pd.isna(v) else format(v, formats.get(col, ".3f"))
            return f"<td><b>{text}</b></td>" if col in bold else f"<td>{text}</td>"
        if isinstance(v, (int, np.integer)):
            return f"<td>{v}</td>"
        return f"<td class='l'>{html.escape(str(v))}</td>"

    def row(values):
        if row_heads:
            return (
                f"<tr><th class='l'>{html.escape(str(values[0]))}</th>"
                + "".join(cell(c, v) for c, v in zip(frame.columns[1:], values[1:]))
                + "</tr>"
            )
        return "<tr>" + "".join(cell(c, v) for c, v in zip(frame.columns, values)) + "</tr>"

    head = (
        ""
        if row_heads
        else "<tr>" + "".join(f"<th>{html.escape(HEADERS.get(str(c), str(c)))}</th>" for c in frame.columns) + "</tr>"
    )
    return f"<table>{head}{''.join(row(r) for r in frame.itertuples(index=False))}</table>"
