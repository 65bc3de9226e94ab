"""Per-example training dynamics (science.md Sec. 4): accuracy oscillation, forgetting events
(Toneva et al. 2019) and data maps (Swayamdipta et al. 2020).

Inputs are rows of the `examples` table recorded at several epochs (fig1-difficulty with
`epochs: [1, 2, ...]`, or an interpolate sweep with `record_examples: true`): one row per
variant x seed x epoch x example of a split, with `correct` and `p_label`. Array functions state
their shapes; frame functions apply them per variant and seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _matrix(rows: pd.DataFrame, column: str) -> np.ndarray:
    """(epochs, examples) values of one seed's rows, epochs ascending, examples by index."""
    return rows.pivot(index="epoch", columns="index", values=column).sort_index().to_numpy()


def _per_seed(rows: pd.DataFrame):
    """(variant, seed, sorted epochs, sorted example indices, one seed's rows) per variant x seed."""
    for (variant, seed), one in rows.groupby(["variant", "seed"], observed=True):
        yield variant, seed, np.sort(one.epoch.unique()), np.sort(one["index"].unique()), one


def _with_meta(per_example: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Per-example statistics joined with each example's label and corruption mask."""
    meta = rows.groupby(["variant", "index"], observed=True)[["label", "corrupted"]].first().reset_index()
    return per_example.merge(meta, on=["variant", "index"])


def oscillation_array(correct: np.ndarray) -> np.ndarray:
    """correct: (epochs, examples) bool -> (epochs - 1, 2) float: for each pair of consecutive
    epochs, the intersection and the union of the correctly classified sets, as fractions of
    the examples. Early in training the union is much larger than the intersection."""
    c = np.asarray(correct, dtype=bool)
    both, either = c[:-1] & c[1:], c[:-1] | c[1:]
    return np.stack([both.mean(axis=1), either.mean(axis=1)], axis=1)


def oscillation(examples: pd.DataFrame, split: str = "train") -> pd.DataFrame:
    """Per variant x seed x epoch (the later epoch of each consecutive pair): intersection and
    union of the correct sets, fractions of the split. Average over seeds with
    `.groupby(["variant", "epoch"]).mean()`."""
    out = []
    for variant, seed, epochs, _, rows in _per_seed(examples[examples.split == split]):
        values = oscillation_array(_matrix(rows, "correct").astype(bool))
        out.append(pd.DataFrame({"variant": variant, "seed": seed, "epoch": epochs[1:],
                                 "intersection": values[:, 0], "union": values[:, 1]}))
    return pd.concat(out, ignore_index=True)


def forgetting_array(correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """correct: (epochs, examples) bool -> (forgetting events (examples,) int: correct ->
    incorrect transitions between consecutive evaluations; never learned (examples,) bool)."""
    c = np.asarray(correct, dtype=bool)
    return (c[:-1] & ~c[1:]).sum(axis=0), ~c.any(axis=0)


def forgetting_events(examples: pd.DataFrame, split: str = "train") -> pd.DataFrame:
    """Per variant x example: `forgotten`, forgetting events summed over seeds; `never_learned`,
    the seeds in which it was never correct; `unforgettable`, learned in every seed and never
    forgotten (Toneva et al.); plus `label` and `corrupted`."""
    rows = examples[examples.split == split]
    parts = []
    for variant, _, _, index, one in _per_seed(rows):
        forgotten, never = forgetting_array(_matrix(one, "correct").astype(bool))
        parts.append(pd.DataFrame({"variant": variant, "index": index,
                                   "forgotten": forgotten, "never_learned": never.astype(int)}))
    per = pd.concat(parts).groupby(["variant", "index"], observed=True).sum().reset_index()
    per["unforgettable"] = (per.forgotten == 0) & (per.never_learned == 0)
    return _with_meta(per, rows)


def data_map_arrays(p_label: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """p_label: (epochs, examples) float, correct: (epochs, examples) bool -> (examples, 3):
    confidence (mean p_label over epochs), variability (its population std), correctness
    (fraction of epochs correct)."""
    p = np.asarray(p_label, dtype=float)
    return np.stack([p.mean(axis=0), p.std(axis=0), np.asarray(correct, dtype=float).mean(axis=0)], axis=1)


def data_map(examples: pd.DataFrame, split: str = "train", ambiguous_variability: float = 0.2,
             easy_confidence: float = 0.5) -> pd.DataFrame:
    """Per variant x example (statistics per seed over epochs, then averaged over seeds):
    confidence, variability, correctness, and `region`: 'ambiguous' if variability >=
    `ambiguous_variability`, else 'easy' if confidence >= `easy_confidence`, else 'hard'
    (Swayamdipta et al.'s easy-to-learn / ambiguous / hard-to-learn); plus label, corrupted."""
    rows = examples[examples.split == split]
    parts = []
    for variant, _, _, index, one in _per_seed(rows):
        stats = data_map_arrays(_matrix(one, "p_label"), _matrix(one, "correct").astype(bool))
        parts.append(pd.DataFrame({"variant": variant, "index": index,
                                   "confidence": stats[:, 0], "variability": stats[:, 1],
                                   "correctness": stats[:, 2]}))
    maps = pd.concat(parts).groupby(["variant", "index"], observed=True).mean().reset_index()
    maps["region"] = np.where(maps.variability >= ambiguous_variability, "ambiguous",
                              np.where(maps.confidence >= easy_confidence, "easy", "hard"))
    return _with_meta(maps, rows)
