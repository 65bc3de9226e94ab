"""Memorization and influence estimates (Feldman & Zhang 2020) and C-scores (Jiang et al. 2021)
from a subset sweep: pure functions over its `examples` and `members` tables (pandas and numpy).

A subset sweep trains m models per subset ratio r, model s on its own random subset S_s of
round(r N) of the N training examples (the members table lists them), and scores every training
and test example with every model (the examples table: `correct` is h_s(x) == y, y the label the
models trained on). With A[s, i] = (i in S_s) and C[s, j] = model s correct on example j:

- Memorization (Feldman 2020, Eq. 1; Feldman & Zhang 2020, Sec. 2):
  mem(i) = P[h(x_i) = y_i | i in S] - P[h(x_i) = y_i | i not in S], each probability the mean of
  C[:, i] over the models with A[:, i] true (n_in of them) or false (n_out).
- Influence of training example i on test example j (Feldman & Zhang 2020, Sec. 2):
  infl(i, j) = P[h(x_j) = y_j | i in S] - P[h(x_j) = y_j | i not in S], from the same models.
- C-score (Jiang et al. 2021, Sec. 3, the hold-out estimator): for each ratio r, the mean of
  C[:, i] over the models of ratio r that did not train on i; C(i) is the mean over the ratios.

Uncertainty. Each difference of two proportions comes with the Agresti-Caffo standard error
(one success and one failure added to each group: p~ = (x + 1) / (n + 2),
SE = sqrt(p~_in (1 - p~_in) / (n_in + 2) + p~_out (1 - p~_out) / (n_out + 2))), which unlike the
plain Wald error is not 0 when every model agrees, and a 95% interval p~_in - p~_out +- 1.96 SE
clipped to [-1, 1] (Agresti & Caffo 2000). A C-score's SE is that of a mean of independent
per-ratio means, sqrt(sum_r SE_r^2) / R, with each SE_r = sqrt(p~(1 - p~) / (n + 2)). Every row
says how many models its estimate rests on (n_in, n_out).

An estimate needs every example both in and out of some models: `TooFewModels` names the
examples that are not and how many models make it likely for all (see `models_needed`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

Z95 = 1.959964  # two-sided 95% normal quantile


class TooFewModels(ValueError):
    """Some example is never (or always) in a model's training subset: its estimate does not exist."""


class MembersMismatch(ValueError):
    """The members table is missing, or does not describe the models of the examples table."""


class IncompleteExamples(ValueError):
    """A model lacks rows of the examples table (a damaged or partial store)."""


@dataclass
class Outcomes:
    """Models x examples of one ratio (a cell) and split: `correct` (m, n) bool; `models` the
    (cell, variant, seed) of each row; labels per example (the labels the models trained on)."""

    models: pd.DataFrame
    correct: np.ndarray
    index: np.ndarray  # (n,) example indices, ascending
    label: np.ndarray
    true_label: np.ndarray


def models_needed(n: int, ratio: float, confidence: float = 0.99) -> int:
    """Models of one ratio that leave every one of n examples both in and out of some model's
    subset with probability >= `confidence` (union bound: n (r^m + (1 - r)^m) <= 1 - confidence,
    with the larger term counted twice). Subset fraction 0.7 and 1,437 examples: 36."""
    worst = max(ratio, 1 - ratio)
    return max(2, math.ceil(math.log(n * 2 / (1 - confidence)) / -math.log(worst)))


def pick_cell(cells: list[str], cell: str | None, split: str) -> str:
    """The cell asked for, or the only one; a one-line error naming what the table has otherwise."""
    if not cells:
        raise IncompleteExamples(f"examples table has no {split!r} rows (a subset sweep scores train and test)")
    if cell is None:
        if len(cells) > 1:
            raise ValueError(f"the sweep has several subset ratios ({', '.join(cells)}): pick one (cell=...)")
        return cells[0]
    if cell not in cells:
        raise IncompleteExamples(f"no models of {cell} are stored yet (the examples table has {', '.join(cells)})")
    return cell


def outcomes(examples: pd.DataFrame, split: str, cell: str | None = None) -> Outcomes:
    """The correctness matrix of `split` for the models of `cell` (default: the only cell), each
    model's last scored epoch. IncompleteExamples if a model misses examples. `examples` is a
    DataFrame of the examples table, or a store read out of core (`analysis.aggregate.StoredExamples`)."""
    if not isinstance(examples, pd.DataFrame):
        return examples.outcomes(split, cell)
    ex = examples[examples.split == split]
    cell = pick_cell(sorted(ex.cell.astype(str).unique()), cell, split)
    ex = ex[ex.cell.astype(str) == cell]
    last = ex.groupby(["variant", "seed"], observed=True).epoch.max()
    models = last.reset_index()[["variant", "seed"]].assign(cell=cell)[["cell", "variant", "seed"]]
    batch = {c: ex[c].to_numpy() for c in ("seed", "epoch", "index", "correct", "label", "true_label")}
    return fill_outcomes(models, last.to_numpy(), np.sort(ex["index"].unique()), [batch], split)


def fill_outcomes(
    models: pd.DataFrame,
    last_epoch: np.ndarray,
    index: np.ndarray,
    batches: Iterable[dict[str, np.ndarray]],
    split: str,
) -> Outcomes:
    """Outcomes from rows given in batches (numpy columns seed, epoch, index, correct, label,
    true_label), keeping each model's rows of its `last_epoch`; `models` (cell, variant, seed)
    are sorted by seed here. IncompleteExamples if a model lacks rows."""
    order = np.argsort(models.seed.to_numpy(), kind="stable")
    models, last_epoch = models.iloc[order].reset_index(drop=True), np.asarray(last_epoch)[order]
    seeds = models.seed.to_numpy()
    correct = np.zeros((len(models), len(index)), dtype=bool)
    label = np.zeros(len(index), dtype=np.int64)
    true_label = np.zeros(len(index), dtype=np.int64)
    counts = np.zeros(len(models), dtype=np.int64)
    scored = np.zeros(len(index), dtype=bool)  # examples some model scored at its last epoch
    for b in batches:
        row = np.searchsorted(seeds, b["seed"])
        keep = b["epoch"] == last_epoch[row]
        row, col = row[keep], np.searchsorted(index, b["index"][keep])
        correct[row, col] = b["correct"][keep]
        label[col], true_label[col] = b["label"][keep], b["true_label"][keep]
        scored[col] = True
        counts += np.bincount(row, minlength=len(models))
    if not scored.all():  # indices seen only at earlier epochs are not examples of these matrices
        index, correct, label, true_label = index[scored], correct[:, scored], label[scored], true_label[scored]
    if (counts != len(index)).any():
        bad = int(np.flatnonzero(counts != len(index))[0])
        raise IncompleteExamples(
            f"examples table: model seed {seeds[bad]} of {models.cell[0]} has {counts[bad]} "
            f"{split} rows, the others {len(index)} (a damaged or partial store)"
        )
    return Outcomes(models, correct, index, label, true_label)


def inclusion(members: pd.DataFrame | None, out: Outcomes, n_train: int) -> np.ndarray:
    """(m, n_train) bool: model s trained on training example i, from the members table, in the
    rows of `out.models`. MembersMismatch if the table is missing or disagrees with them.
    `members` is a DataFrame of the members table, or a store read out of core
    (`analysis.aggregate.StoredMembers`)."""
    if members is not None and not isinstance(members, pd.DataFrame):
        return members.inclusion(out, n_train)
    if members is None or members.empty:
        raise MembersMismatch(MISSING_MEMBERS)
    mine = members[members.cell.astype(str) == str(out.models.cell.iloc[0])]
    return fill_inclusion(out, n_train, [(mine.seed.to_numpy(), mine["index"].to_numpy())])


MISSING_MEMBERS = (
    "the members table is missing: which examples each model trained on is unknown, so no "
    "estimate can be made (was the sweep launched by memsweep >= 0.3?)"
)


def fill_inclusion(out: Outcomes, n_train: int, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """`inclusion` from the members rows of out's cell given in batches of (seed, index) arrays."""
    cell, seeds = str(out.models.cell.iloc[0]), out.models.seed.to_numpy()  # ascending (fill_outcomes)
    a = np.zeros((len(seeds), n_train), dtype=bool)
    seen = np.zeros(len(seeds), dtype=bool)
    for seed, index in batches:
        row = np.minimum(np.searchsorted(seeds, seed), len(seeds) - 1)
        keep = seeds[row] == seed  # rows of other models (not scored yet) are not asked for
        row, index = row[keep], index[keep]
        if len(index) and (index.max() >= n_train or index.min() < 0):
            raise MembersMismatch(
                f"the members table does not match the examples table: training index "
                f"{int(index.max() if index.max() >= n_train else index.min())} is outside "
                f"the {n_train:,} training examples"
            )
        a[row, index] = True
        seen[row] = True
    if not seen.all():
        missing = seeds[~seen]
        raise MembersMismatch(
            f"the members table does not match the examples table: {len(missing)} model(s) of "
            f"{cell} have no subset in it (e.g. seed {missing[0]})"
        )
    return a


def _check_split(a: np.ndarray, cell: str, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n_in, n_out) per training example; TooFewModels if any is 0."""
    n_in = a.sum(axis=0)
    n_out = len(a) - n_in
    never = np.flatnonzero((n_in == 0) | (n_out == 0))
    if len(never):
        ratio = a.sum(axis=1).mean() / a.shape[1]
        need = models_needed(a.shape[1], ratio)
        which = ", ".join(map(str, index[never[:5]])) + (", ..." if len(never) > 5 else "")
        raise TooFewModels(
            f"{len(never):,} of {a.shape[1]:,} training examples are never held out or never trained on by the "
            f"{len(a):,} models of {cell} (e.g. index {which}): each needs both; with subset fraction {ratio:.2g} "
            f"about {need:,} models make that likely for every example ({max(need - len(a), 1):,} more per ratio: "
            f"grow the sweep with --set seeds={max(need, len(a) + 1)} --resume)"
        )
    return n_in, n_out


def _difference(x_in, n_in, x_out, n_out) -> dict[str, np.ndarray]:
    """The estimate (difference of means), its Agresti-Caffo SE and 95% interval (module docstring)."""
    p_in, p_out = x_in / n_in, x_out / n_out
    t_in, t_out = (x_in + 1) / (n_in + 2), (x_out + 1) / (n_out + 2)
    se = np.sqrt(t_in * (1 - t_in) / (n_in + 2) + t_out * (1 - t_out) / (n_out + 2))
    centre = t_in - t_out
    return {
        "p_in": p_in,
        "p_out": p_out,
        "estimate": p_in - p_out,
        "se": se,
        "lo": np.clip(centre - Z95 * se, -1, 1),
        "hi": np.clip(centre + Z95 * se, -1, 1),
    }


def memorization(examples: pd.DataFrame, members: pd.DataFrame | None, cell: str | None = None) -> pd.DataFrame:
    """mem(i) of every training example (module docstring), one row per example: index, label,
    true_label, mislabeled (label != true label), n_in, n_out, p_in, p_out, mem, se, lo, hi."""
    out = outcomes(examples, "train", cell)
    a = inclusion(members, out, len(out.index))
    n_in, n_out = _check_split(a, str(out.models.cell.iloc[0]), out.index)
    x_in = (out.correct & a).sum(axis=0)  # bool matrices: no (models, examples) float copy
    d = _difference(x_in, n_in, out.correct.sum(axis=0) - x_in, n_out)
    return pd.DataFrame(
        {
            **_labels(out),
            "n_in": n_in,
            "n_out": n_out,
            "p_in": d["p_in"],
            "p_out": d["p_out"],
            "mem": d["estimate"],
            "se": d["se"],
            "lo": d["lo"],
            "hi": d["hi"],
        }
    )


def _labels(out) -> dict[str, np.ndarray]:
    """Each example's index, the label the models trained on, its true label, and whether they differ."""
    return {
        "index": out.index,
        "label": out.label,
        "true_label": out.true_label,
        "mislabeled": out.label != out.true_label,
    }


def influence(
    examples: pd.DataFrame,
    members: pd.DataFrame | None,
    cell: str | None = None,
    top: int = 50,
    min_infl: float | None = None,
    block: int = 1024,
) -> pd.DataFrame:
    """The `top` (training, test) pairs of highest infl(i, j) (module docstring), highest first,
    keeping only those >= `min_infl` if given. The (N_train, N_test) matrix is never held whole:
    it is computed `block` training examples at a time, keeping the best pairs seen so far. Rows:
    train_index, test_index, their labels, n_in, n_out, p_in, p_out, infl, se, lo, hi."""
    train = outcomes(examples, "train", cell)
    test = outcomes(examples, "test", str(train.models.cell.iloc[0]))
    if not train.models.seed.equals(test.models.seed):
        raise IncompleteExamples("examples table: the train and test splits were scored by different models")
    a = inclusion(members, train, len(train.index))
    n_in, n_out = _check_split(a, str(train.models.cell.iloc[0]), train.index)
    c = test.correct.astype(np.float32)
    total = c.sum(axis=0)
    n_test = c.shape[1]
    # The best pairs so far as (value, flat pair number i * n_test + j), ordered by value
    # descending, then by pair number: ties are broken the same way whatever the block size.
    best_v, best_f = np.empty(0, np.float32), np.empty(0, np.int64)
    for lo in range(0, a.shape[1], block):
        ab = a[:, lo : lo + block].T.astype(np.float32)  # (b, m)
        x_in = ab @ c  # (b, n_test): models with i in S that got j right
        flat = (x_in / n_in[lo : lo + block, None] - (total - x_in) / n_out[lo : lo + block, None]).ravel()
        keep = min(top, flat.size)
        cut = np.partition(flat, flat.size - keep)[flat.size - keep]  # the keep-th largest
        f = np.flatnonzero(flat >= cut)  # every pair at or above it, ties included
        best_v, best_f = np.r_[best_v, flat[f]], np.r_[best_f, lo * n_test + f]
        order = np.lexsort((best_f, -best_v))[:top]
        best_v, best_f = best_v[order], best_f[order]
    i, j = best_f // n_test, best_f % n_test
    x_in = (a[:, i] & test.correct[:, j]).sum(axis=0).astype(np.float64)
    d = _difference(x_in, n_in[i], total[j] - x_in, n_out[i])
    frame = pd.DataFrame(
        {
            "train_index": train.index[i],
            "test_index": test.index[j],
            "train_label": train.label[i],
            "train_true_label": train.true_label[i],
            "test_label": test.label[j],
            "n_in": n_in[i],
            "n_out": n_out[i],
            "p_in": d["p_in"],
            "p_out": d["p_out"],
            "infl": d["estimate"],
            "se": d["se"],
            "lo": d["lo"],
            "hi": d["hi"],
        }
    )
    return frame[frame.infl >= min_infl].reset_index(drop=True) if min_infl is not None else frame


def cscore(examples: pd.DataFrame, members: pd.DataFrame | None, cells: list[str] | None = None) -> pd.DataFrame:
    """C-score of every training example over the ratios of the sweep (module docstring), one
    row per example: index, label, true_label, mislabeled, ratios (those at which some model held
    it out: the mean is over them), n_out (held-out evaluations in all), cscore, se, lo, hi, and
    held_out_<cell> (the per-ratio estimate, NaN where no model of that ratio held it out).
    TooFewModels if an example is held out at no ratio."""
    if cells is None:  # every ratio of the table (`cells`: those of one hyperparameter point)
        cells = examples.cell.astype(str).unique() if isinstance(examples, pd.DataFrame) else examples.cells("train")
    cells = sorted(cells, key=ratio_of)
    per, variances, n_out_all, first, models = {}, [], 0, None, 0
    for cell in cells:
        out = outcomes(examples, "train", cell)
        a = inclusion(members, out, len(out.index))
        n_out = (~a).sum(axis=0)
        x = (out.correct & ~a).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):  # NaN where no model of the ratio held it out
            per[f"held_out_{cell}"] = np.where(n_out > 0, x / n_out, np.nan)
        t = (x + 1) / (n_out + 2)
        variances.append(np.where(n_out > 0, t * (1 - t) / (n_out + 2), np.nan))
        n_out_all = n_out_all + n_out
        first, models = first or out, max(models, len(a))
    # An example counts the ratios at which some model held it out (at a high ratio with few
    # models, some examples are in every subset); it needs at least one.
    values = np.stack(list(per.values()))
    ratios = (~np.isnan(values)).sum(axis=0)
    if (ratios == 0).any():
        never = np.flatnonzero(ratios == 0)
        lowest = min(ratio_of(c) for c in cells)
        need = math.ceil(math.log(len(first.index) / 0.01) / -math.log(lowest))  # held out once, 99%
        raise TooFewModels(
            f"{len(never):,} of {len(first.index):,} training examples are held out by no model at any ratio "
            f"(e.g. index {', '.join(map(str, first.index[never[:5]]))}): a C-score needs held-out models; about "
            f"{need:,} models per ratio make that likely: grow the sweep with --set seeds={max(need, models + 1)} "
            "--resume"
        )
    score = np.nanmean(values, axis=0)
    se = np.sqrt(np.nansum(variances, axis=0)) / ratios
    return pd.DataFrame(
        {
            **_labels(first),
            "ratios": ratios,
            "n_out": n_out_all,
            "cscore": score,
            "se": se,
            "lo": np.clip(score - Z95 * se, 0, 1),
            "hi": np.clip(score + Z95 * se, 0, 1),
            **per,
        }
    )


def ratio_of(cell: str) -> float:
    """A subset sweep's cell ('ratio0.7', or 'ratio0.7-lr0.01' with hyperparameter axes) -> 0.7."""
    return float(re.match(r"ratio([0-9.]+(?:e-?[0-9]+)?)", cell).group(1))


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of `scores` for flagging `positive` (ties count one half): the
    probability that a random positive scores above a random negative (Mann-Whitney U / n+ n-)."""
    from scipy.stats import rankdata

    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(scores: np.ndarray, positive: np.ndarray) -> pd.DataFrame:
    """(false positive rate, true positive rate) at every threshold of `scores`, from the highest."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    s, pos = np.asarray(scores)[order], np.asarray(positive, dtype=bool)[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # the last row of each tie
    tp, fp = np.cumsum(pos)[last], np.cumsum(~pos)[last]
    return pd.DataFrame({"fpr": np.r_[0.0, fp / max(1, (~pos).sum())], "tpr": np.r_[0.0, tp / max(1, pos.sum())]})


def beside(mem: pd.DataFrame, scores: pd.DataFrame, column: str) -> tuple[pd.DataFrame, float]:
    """mem(i) joined with another per-example score (by `index`), and their Spearman rank
    correlation over the examples both have."""
    both = mem.merge(scores, on="index")
    return both, float(both[["mem", column]].corr(method="spearman").iloc[0, 1])


def fit_by_cell(trials: pd.DataFrame) -> pd.DataFrame:
    """Per cell (subset ratio) of a subset sweep's trials table: its models, their mean epochs,
    the lowest and the mean accuracy on their own subsets, and their mean test accuracy."""
    out = (
        trials.groupby("cell", observed=True)
        .agg(
            models=("seed", "size"),
            epochs=("epochs_trained", "mean"),
            fit_min=("fit_acc", "min"),
            fit_mean=("fit_acc", "mean"),
            test=("final_test_acc", "mean"),
        )
        .reset_index()
    )
    out.columns = [
        "subset ratio",
        "models",
        "mean epochs",
        "lowest accuracy on own subset",
        "mean accuracy on own subset",
        "mean test accuracy",
    ]
    return out


def by_label(mem: pd.DataFrame, memorized: float) -> pd.DataFrame:
    """Clean and mislabeled examples apart: how many, their mean mem(i), the share with mem(i)
    above `memorized`, and the largest standard error."""
    return pd.DataFrame(
        [
            {
                "labels": "mislabeled" if flag else "clean",
                "n": len(rows),
                "mean mem": rows.mem.mean(),
                f"share with mem > {memorized}": (rows.mem > memorized).mean(),
                "largest SE": rows.se.max(),
            }
            for flag, rows in mem.groupby("mislabeled")
        ]
    )


def support(estimates: pd.DataFrame) -> dict[str, float]:
    """What a frame of estimates rests on: the least, most and median models that trained on an
    example (n_in, where the frame has it) and that held it out (n_out), and the largest and
    median standard error."""
    out = {"se_max": float(estimates.se.max()), "se_median": float(estimates.se.median())}
    for column in ("n_in", "n_out"):
        if column in estimates.columns:
            values = estimates[column]
            out.update(
                {
                    f"{column}_min": int(values.min()),
                    f"{column}_max": int(values.max()),
                    f"{column}_median": float(values.median()),
                }
            )
    return out


def held_out_bands(cscores: pd.DataFrame) -> pd.DataFrame:
    """Per clean / mislabeled examples and subset ratio (the held_out_ratio<r> columns of
    `cscore`): the median held-out accuracy over examples and its 10th and 90th percentiles (a
    mean could sit outside a band where most examples are at 1). NaN where no model of a ratio
    held an example out is left out."""
    cols = [c for c in cscores.columns if c.startswith("held_out_ratio")]
    out = []
    for mislabeled, rows in cscores.groupby("mislabeled", sort=True):
        values = rows[cols].to_numpy(float)
        p10, p50, p90 = np.nanpercentile(values, [10, 50, 90], axis=0)
        out += [
            {
                "mislabeled": bool(mislabeled),
                "ratio": float(c.removeprefix("held_out_ratio")),
                "p10": lo,
                "median": mid,
                "p90": hi,
            }
            for c, lo, mid, hi in zip(cols, p10, p50, p90)
        ]
    return pd.DataFrame(out)
