"""The analysis halves of the probe plug-ins (their measuring halves: `sweep/probes/`), one
module each: its readings (pure functions of the rows), its figure and its report section.

A view names `TABLE`, the store table its probe writes (`probes` or `filters`), and
`section(config, rows)`: the report's section for the probe's `config` (its block of the stored
spec, a dict) and its rows of one point of the sweep (of the `probes` table, those of this probe
only); a list of HTML strings and plotly figures. No torch, Ray or pydantic here.

Views outside this repository are listed in MEMSWEEP_PROBE_VIEWS (module names, comma-separated).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from types import ModuleType
from typing import Any

import pandas as pd

ENV = "MEMSWEEP_PROBE_VIEWS"


def _discover() -> dict[str, ModuleType]:
    """Every view: this package's modules in name order, then those MEMSWEEP_PROBE_VIEWS names."""
    names = [f"{__name__}.{m.name}" for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name)]
    names += [n.strip() for n in os.environ.get(ENV, "").split(",") if n.strip()]
    return {name.rsplit(".", 1)[-1]: importlib.import_module(name) for name in names}


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


REGISTRY: dict[str, ModuleType] = _discover()
