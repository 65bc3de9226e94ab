"""Per-example training dynamics (follow-up work on Arpit et al. 2017): accuracy oscillation, forgetting events
(Toneva et al. 2019) and data maps (Swayamdipta et al. 2020).

Inputs are rows of the `examples` table recorded at several epochs (fig1-difficulty with
`epochs: [1, 2, ...]`, or an interpolate sweep with `record_examples: true`): one row per
variant x seed x epoch x example of a split, with `correct` and `p_label`. Array functions state
their shapes; frame functions apply them per variant and seed, and per architecture where the
rows have an `arch` column (`keys`): their outputs carry the same columns.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from analysis.kinds import keys


class MissingRows(ValueError):
    """Per-epoch rows of the examples table are missing (a damaged or partial store)."""


def _matrix(rows: pd.DataFrame, column: str) -> np.ndarray:
    """(epochs, examples) values of one seed's rows, epochs ascending, examples by index.
    ValueError if an (epoch, example) row is missing: a gap is never read as a hit or a miss."""
    table = rows.pivot(index="epoch", columns="index", values=column).sort_index()
    if table.isna().to_numpy().any():
        gaps = table.isna()
        first = gaps.stack()[lambda v: v].index[0]
        raise MissingRows(
            f"examples table: {int(gaps.to_numpy().sum())} (epoch, example) rows of seed "
            f"{rows.seed.iloc[0]} ({rows.variant.iloc[0]}) are missing, e.g. epoch {first[0]}, "
            f"example {first[1]}; every recorded epoch needs every example (`sweep verify`)"
        )
    return table.to_numpy()


def _per_seed(rows: pd.DataFrame):
    """({key: value}, seed, sorted epochs, sorted example indices, one seed's rows) per kind x seed."""
    names = keys(rows)
    for values, one in rows.groupby([*names, "seed"], observed=True):
        yield (
            dict(zip(names, values[:-1])),
            values[-1],
            np.sort(one.epoch.unique()),
            np.sort(one["index"].unique()),
            one,
        )


def _with_meta(per_example: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Per-example statistics joined with each example's label and corruption mask."""
    on = [*keys(rows), "index"]
    meta = rows.groupby(on, observed=True)[["label", "corrupted"]].first().reset_index()
    return per_example.merge(meta, on=on)


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
    for kind, seed, epochs, _, rows in _per_seed(examples[examples.split == split]):
        values = oscillation_array(_matrix(rows, "correct").astype(bool))
        out.append(
            pd.DataFrame(
                {**kind, "seed": seed, "epoch": epochs[1:], "intersection": values[:, 0], "union": values[:, 1]}
            )
        )
    return pd.concat(out, ignore_index=True)


def oscillation_means(osc: pd.DataFrame) -> pd.DataFrame:
    """`oscillation`'s rows averaged over seeds: per kind (`keys`) x epoch."""
    return osc.groupby([*keys(osc), "epoch"], observed=True, sort=False)[["intersection", "union"]].mean().reset_index()


def first_oscillation(means: pd.DataFrame) -> pd.DataFrame:
    """Per kind, the earliest pair of epochs of `oscillation_means`: epoch, intersection, union."""
    kind = keys(means)
    first = means.sort_values("epoch").groupby(kind, observed=True).first().reset_index()
    return first[[*kind, "epoch", "intersection", "union"]]


def region_shares(per_example: pd.DataFrame) -> pd.DataFrame:
    """Per kind, clean and corrupted examples apart: the share of each data-map region."""
    return (
        per_example.groupby([*keys(per_example), "corrupted"], observed=True)
        .region.value_counts(normalize=True)
        .unstack(fill_value=0.0)
        .reset_index()
    )


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
    for kind, _, _, index, one in _per_seed(rows):
        forgotten, never = forgetting_array(_matrix(one, "correct").astype(bool))
        parts.append(pd.DataFrame({**kind, "index": index, "forgotten": forgotten, "never_learned": never.astype(int)}))
    per = pd.concat(parts).groupby([*keys(rows), "index"], observed=True).sum().reset_index()
    per["unforgettable"] = (per.forgotten == 0) & (per.never_learned == 0)
    return _with_meta(per, rows)


def data_map_arrays(p_label: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """p_label: (epochs, examples) float, correct: (epochs, examples) bool -> (examples, 3):
    confidence (mean p_label over epochs), variability (its population std), correctness
    (fraction of epochs correct)."""
    p = np.asarray(p_label, dtype=float)
    return np.stack([p.mean(axis=0), p.std(axis=0), np.asarray(correct, dtype=float).mean(axis=0)], axis=1)


AMBIGUOUS_VARIABILITY, EASY_CONFIDENCE = 0.2, 0.5  # data-map regions (Swayamdipta et al. 2020)


def data_map(
    examples: pd.DataFrame,
    split: str = "train",
    ambiguous_variability: float = AMBIGUOUS_VARIABILITY,
    easy_confidence: float = EASY_CONFIDENCE,
) -> pd.DataFrame:
    """Per variant x example (statistics per seed over epochs, then averaged over seeds):
    confidence, variability, correctness, and `region`: 'ambiguous' if variability >=
    `ambiguous_variability`, else 'easy' if confidence >= `easy_confidence`, else 'hard'
    (Swayamdipta et al.'s easy-to-learn / ambiguous / hard-to-learn); plus label, corrupted."""
    rows = examples[examples.split == split]
    parts = []
    for kind, _, _, index, one in _per_seed(rows):
        stats = data_map_arrays(_matrix(one, "p_label"), _matrix(one, "correct").astype(bool))
        parts.append(
            pd.DataFrame(
                {
                    **kind,
                    "index": index,
                    "confidence": stats[:, 0],
                    "variability": stats[:, 1],
                    "correctness": stats[:, 2],
                }
            )
        )
    maps = pd.concat(parts).groupby([*keys(rows), "index"], observed=True).mean().reset_index()
    maps["region"] = np.where(
        maps.variability >= ambiguous_variability,
        "ambiguous",
        np.where(maps.confidence >= easy_confidence, "easy", "hard"),
    )
    return _with_meta(maps, rows)


def el2n(examples: pd.DataFrame, split: str = "train", epoch: int | None = None) -> pd.DataFrame:
    """Per variant x example: EL2N (Paul et al. 2021), ||softmax - one_hot(label)||_2 at `epoch`
    (default: the earliest recorded; the paper uses an early one), averaged over seeds."""
    rows = examples[examples.split == split]
    epoch = int(rows.epoch.min()) if epoch is None else epoch
    at = rows[rows.epoch == epoch]
    if at.empty:
        raise ValueError(
            f"no {split} examples recorded at epoch {epoch} "
            f"(recorded: {', '.join(map(str, sorted(rows.epoch.unique())))})"
        )
    out = at.groupby([*keys(at), "index"], observed=True).el2n.mean().astype(float).reset_index()
    out["el2n_epoch"] = epoch
    return out


# Each measure as a hardness score: larger = harder, so that agreeing measures correlate positively.
# Forgetting ranks as in Toneva et al.: a never-learned example counts as infinitely often
# forgotten (here: per seed in which it was never learned, before any count of events).
HARDNESS = {
    "1 - P(correct)": ("p_correct", -1),
    "forgetting events": ("forgetting_rank", 1),
    "1 - confidence": ("confidence", -1),
    "EL2N": ("el2n", 1),
}


def measures(
    examples: pd.DataFrame | Iterable[pd.DataFrame], split: str = "train", el2n_epoch: int | None = None
) -> pd.DataFrame:
    """Per variant x example, every per-example measure side by side: p_correct (fraction of
    seeds correct, each seed at its own last recorded epoch), forgotten / never_learned / unforgettable /
    forgetting_rank (never-learned seeds first, then events: Toneva et al.'s order),
    confidence / variability / correctness / region (data map), el2n (at `el2n_epoch`, default
    the earliest recorded), plus label and corrupted.

    `examples` is the rows of a table, or an iterable of them (e.g. one model's rows at a time,
    `analysis.aggregate.model_rows`): per-seed sums are folded as they come, so the whole table
    is never held."""
    frames = [examples] if isinstance(examples, pd.DataFrame) else examples
    sums: list[pd.DataFrame] = []
    for frame in frames:
        rows = frame[frame.split == split]
        sums += [_seed_sums(kind, index, one, el2n_epoch) for kind, _, _, index, one in _per_seed(rows)]
        if len(sums) > 16:
            sums = [_fold(sums)]
    if not sums:
        raise ValueError(f"no {split} examples to measure")
    return _measures_from(_fold(sums), split)


SUMMED = [
    "forgotten",
    "never_learned",
    "confidence",
    "variability",
    "correctness",
    "seeds",
    "last_correct",
    "el2n",
    "el2n_seeds",
]


def _seed_sums(kind: dict, index: np.ndarray, one: pd.DataFrame, el2n_epoch: int | None) -> pd.DataFrame:
    """One seed's per-example statistics, as sums to be added over seeds (`_fold`)."""
    correct = _matrix(one, "correct").astype(bool)
    forgotten, never = forgetting_array(correct)
    stats = data_map_arrays(_matrix(one, "p_label"), correct)
    part = pd.DataFrame(
        {
            **kind,
            "index": index,
            "forgotten": forgotten,
            "never_learned": never.astype(int),
            "confidence": stats[:, 0],
            "variability": stats[:, 1],
            "correctness": stats[:, 2],
            "seeds": 1,
            "last_correct": correct[-1].astype(float),
        }
    )
    meta = one.drop_duplicates("index").set_index("index").loc[index]
    part["label"], part["corrupted"] = meta.label.to_numpy(), meta.corrupted.to_numpy()
    if "el2n" in one.columns:
        epoch = int(one.epoch.min()) if el2n_epoch is None else el2n_epoch
        at = one[one.epoch == epoch].set_index("index").reindex(index)
        part["el2n"] = at.el2n.astype(float).fillna(0.0).to_numpy()
        part["el2n_seeds"] = at.el2n.notna().astype(int).to_numpy()
        part["el2n_epoch"] = epoch
    return part


def _fold(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Partial sums added per kind x example (and EL2N epoch: only the earliest one counts)."""
    frame = pd.concat(parts, ignore_index=True)
    if "el2n_epoch" in frame.columns:  # EL2N at the earliest epoch recorded: seeds read at another do not count
        later = frame.el2n_epoch != frame.el2n_epoch.min()
        frame.loc[later, ["el2n", "el2n_seeds"]] = 0
        frame["el2n_epoch"] = frame.el2n_epoch.min()
    firsts = [c for c in ("label", "corrupted", "el2n_epoch") if c in frame.columns]
    agg = {**{c: "sum" for c in SUMMED if c in frame.columns}, **{c: "first" for c in firsts}}
    return frame.groupby([*keys(frame), "index"], observed=True, sort=True).agg(agg).reset_index()


def _measures_from(total: pd.DataFrame, split: str) -> pd.DataFrame:
    out = total[[*keys(total), "index", "forgotten", "never_learned"]].copy()
    out["unforgettable"] = (out.forgotten == 0) & (out.never_learned == 0)
    out["label"], out["corrupted"] = total.label.to_numpy(), total.corrupted.to_numpy()
    for c in ("confidence", "variability", "correctness"):
        out[c] = total[c] / total.seeds
    out["region"] = np.where(
        out.variability >= AMBIGUOUS_VARIABILITY,
        "ambiguous",
        np.where(out.confidence >= EASY_CONFIDENCE, "easy", "hard"),
    )
    out["p_correct"] = total.last_correct / total.seeds
    out["forgetting_rank"] = out.never_learned * (out.forgotten.max() + 1) + out.forgotten
    if "el2n" in total.columns:
        if not total.el2n_seeds.any():
            raise ValueError(
                f"no {split} examples recorded at epoch {int(total.el2n_epoch.iloc[0])} "
                "(EL2N is read at the earliest recorded epoch, or the one asked for)"
            )
        out["el2n"] = total.el2n / total.el2n_seeds.where(total.el2n_seeds > 0)  # NaN where no seed has it
        out["el2n_epoch"] = total.el2n_epoch.astype(int)
    return out


def agreement(per_example: pd.DataFrame) -> pd.DataFrame:
    """Spearman rank correlation, per variant, between the hardness scores of `HARDNESS`
    (computed from a `measures` frame), across examples: columns variant, a, b, rho.
    Constant scores (e.g. no forgetting at all) give NaN."""
    out = []
    for kind, one in per_example.groupby(keys(per_example), observed=True):
        scores = pd.DataFrame(
            {name: sign * one[col].astype(float) for name, (col, sign) in HARDNESS.items() if col in one.columns}
        )
        rho = scores.corr(method="spearman")
        names = list(scores.columns)
        out += [
            {**dict(zip(keys(per_example), kind)), "a": a, "b": b, "rho": rho.loc[a, b]}
            for i, a in enumerate(names)
            for b in names[i + 1 :]
        ]
    return pd.DataFrame(out)


def _top_share(hardness: np.ndarray, flag: np.ndarray, k: int) -> float:
    """Expected share of `flag` among the k largest `hardness` values, ties at the cut shared."""
    cut = np.sort(hardness)[::-1][k - 1]
    above, tied = hardness > cut, hardness == cut
    left = k - above.sum()
    return (flag[above].sum() + flag[tied].sum() * left / tied.sum()) / k


def corrupted_placement(per_example: pd.DataFrame) -> pd.DataFrame:
    """Where the corrupted examples land, per variant that has some: for each hardness score,
    the fraction of corrupted examples among the n_corrupted hardest examples (1 = the score
    separates them perfectly; `chance` = n_corrupted / n for a random ranking; a tie across the
    cut counts its corrupted share for the places left, the expected value of breaking the tie
    at random); and the share of corrupted vs clean examples in the data map's
    hard region and among the unforgettable."""
    out = []
    for kind, one in per_example.groupby(keys(per_example), observed=True):
        bad = one.corrupted.to_numpy(bool)
        k, n = int(bad.sum()), len(one)
        if k == 0 or k == n:
            continue
        row = {**dict(zip(keys(per_example), kind)), "n": n, "n_corrupted": k, "chance": k / n}
        for name, (col, sign) in HARDNESS.items():
            if col in one.columns:
                row[f"top: {name}"] = _top_share(sign * one[col].to_numpy(float), bad, k)
        hard, unforgettable = (one.region == "hard").to_numpy(), one.unforgettable.to_numpy(bool)
        row.update(
            {
                "hard region: corrupted": hard[bad].mean(),
                "hard region: clean": hard[~bad].mean(),
                "unforgettable: corrupted": unforgettable[bad].mean(),
                "unforgettable: clean": unforgettable[~bad].mean(),
            }
        )
        out.append(row)
    return pd.DataFrame(out)
