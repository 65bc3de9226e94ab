"""What names one model's kind in a results frame: its variant, and its architecture where the
frame has one (a multi-architecture convergence grid). Statistics group by these keys so that
two kinds of model are never averaged together."""

from __future__ import annotations

import pandas as pd

KIND_COLUMNS = ("arch", "variant")


def keys(*frames: pd.DataFrame) -> list[str]:
    """The kind columns every one of `frames` has, in the order arch, variant."""
    return [c for c in KIND_COLUMNS if all(c in f.columns for f in frames)]
