"""The probes, one plug-in module each: what a probe measures on a model during a trial.

A probe is two modules and a row of the results contract:

- `sweep/probes/<name>.py` (this room): `Config`, its spec block `probes.<name>` (a
  `sweep.bounds.Strict` model; `sweep.spec.ProbesSpec` gets one field per plug-in); `TABLE`,
  the store table its rows go to (`probes`: one measurement a row; `filters`: weight arrays);
  and the hooks `on_epoch(run, config, model, k, epoch)` (epoch 0: at initialization) and
  `at_end(run, config, model, k, epoch)`, each returning the rows it measured (possibly none).
  Optional: `splits(config)`, the data splits it reads (a 'val' needs a validation split);
  `check(config, archs)`, raising ValueError for archs it cannot probe; and
  `check_epochs(config, scored)`, raising ValueError where a fig1 or subset sweep, which probes
  only after the epochs it scores, would never run it. torch is imported inside
  the hooks, so the spec types load without it.
- `analysis/probes/<name>.py`, named as the probe: its readings, figure and report section (no torch).
- its columns or `probe` value in `results/README.md`.

Probes outside this repository are listed in the environment variable MEMSWEEP_PROBES (module
names, comma-separated), their analysis halves in MEMSWEEP_PROBE_VIEWS. Both modules must import
wherever memsweep runs (installed on every node of a cluster); `sweep launch --address` passes
the two variables to the cluster's workers, and `sweep report` and `--resume` need them set. A probe runs in every study that trains
models, on each member still training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from analysis import plugins

ENV = plugins.PROBES_ENV


def _discover() -> dict[str, ModuleType]:
    """Every plug-in: this package's modules in name order, then those MEMSWEEP_PROBES names;
    PluginError in one line for one that cannot be used."""
    return plugins.discover(__name__, __path__, ENV, ("Config", "TABLE", "on_epoch", "at_end"), "probe")


def row(
    k: int, probe: str, epoch: int, value: float, *, split: str = "", n: int = 0, sigma: float = math.nan, draw: int = 0
) -> dict:
    """A row of the `probes` table (by member index k); `sigma` and `draw` where the probe has them."""
    return {
        "member": k,
        "probe": probe,
        "epoch": epoch,
        "split": split,
        "sigma": sigma,
        "draw": draw,
        "value": value,
        "n": n,
    }


@dataclass
class Run:
    """What a probe hook sees of its trial besides the model: the sweep's seed, the trial's data
    (`data.split(name)`), each member's seed index, its training labels and the training examples
    it trains on, and the rows the probe found so far (`found`, for hooks that depend on them)."""

    seed: int
    data: Any  # trainables.data.Data
    seeds: list[int]
    train_labels: Any  # k -> its training labels (a tensor over the whole training split)
    train_rows: Any  # k -> the rows of the training split it trains on (a subset sweep's), or None: all
    found: list


REGISTRY: dict[str, ModuleType] = _discover()  # after Run and row, which the plug-ins import
