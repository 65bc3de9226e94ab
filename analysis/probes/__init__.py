"""The analysis halves of the probe plug-ins (their measuring halves: `sweep/probes/`), one
module each: its readings (pure functions of the rows), its figure and its report section.

A view names `TABLE`, the store table its probe writes (`probes` or `filters`), and
`section(config, rows)`: the report's section for the probe's `config` (its block of the stored
spec, a dict) and its rows of one point of the sweep (of the `probes` table, those of this probe
only); a list of HTML strings and plotly figures. No torch, Ray or pydantic here.

Views outside this repository are listed in MEMSWEEP_PROBE_VIEWS (module names, comma-separated).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pandas as pd

from analysis import plugins

ENV = plugins.VIEWS_ENV


def _discover() -> dict[str, ModuleType]:
    """Every view: this package's modules in name order, then those MEMSWEEP_PROBE_VIEWS names;
    ValueError in one line for one that cannot be used."""
    return plugins.discover(__name__, __path__, ENV, ("TABLE", "section"), "probe view")


def sections(spec: dict[str, Any], tables: dict[str, pd.DataFrame | None]) -> list:
    """The section of every probe the spec turned on that left rows in `tables` (table name ->
    the rows of one point, or None), in the registry's order."""
    out = []
    for name, view in REGISTRY.items():
        config, rows = (spec.get("probes") or {}).get(name), tables.get(view.TABLE)
        if config is None or rows is None:
            continue
        if view.TABLE == "probes":
            rows = rows[rows.probe == name]
        if len(rows):
            out += view.section(config, rows)
    return out


def unviewed(spec: dict[str, Any], rows: pd.DataFrame | None) -> list:
    """A note for each probe the sweep ran and stored rows of (in `rows`, the probes table) that
    no view here draws."""
    ran = [n for n, c in (spec.get("probes") or {}).items() if c is not None and n not in REGISTRY]
    stored = set() if rows is None else set(rows.probe.astype(str))
    return [
        f"<p class='note'>Probe <b>{name}</b> stored rows (the probes table), but no view of it is installed "
        f"here: name its analysis module (e.g. mypackage.{name}) in {ENV}.</p>"
        for name in ran
        if name in stored
    ]


REGISTRY: dict[str, ModuleType] = _discover()
