"""The first convolution's weights (Arpit et al. 2017, Fig. 2) at initialization, after each of
`epochs`, and at the end of training of a member that stopped before the listed epochs."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from analysis.plugins import epochs_text
from catalog import ARCHITECTURES
from sweep.bounds import MAX_EPOCHS, MAX_LIST, Strict
from sweep.probes import Run

TABLE = "filters"  # rows: (member, epoch, weights (filters, C, kH, kW))


class Config(Strict):
    epochs: Annotated[list[Annotated[int, Field(ge=1, le=MAX_EPOCHS)]], Field(min_length=1, max_length=MAX_LIST)] = [10]


def check(config: Config, archs: list[str]) -> None:
    flat = [a for a in archs if a not in ARCHITECTURES or not ARCHITECTURES[a].conv]
    if flat:
        conv = ", ".join(a for a, v in ARCHITECTURES.items() if v.conv)
        raise ValueError(f"probes.filters needs convolutional archs, got {', '.join(flat)} (allowed: {conv})")


def check_epochs(config: Config, scored: tuple[int, ...]) -> None:
    missing = [e for e in config.epochs if e not in scored]
    if missing:
        raise ValueError(
            f"probes.filters.epochs lists {epochs_text(missing)}, which this sweep does not score "
            f"(it scores {epochs_text(scored)}, and probes only after those)"
        )


def on_epoch(run: Run, config: Config, member, k: int, epoch: int) -> list[tuple]:
    if epoch != 0 and epoch not in config.epochs:
        return []
    from trainables import probes

    return [(k, epoch, probes.first_layer_filters(member()))]


def at_end(run: Run, config: Config, member, k: int, epoch: int) -> list[tuple]:
    if sum(f[0] == k for f in run.found) >= 2:
        return []
    from trainables import probes

    return [(k, epoch, probes.first_layer_filters(member()))]
