"""Per-example difficulty (Arpit et al. 2017, Fig. 1): P(correct) curves and binomial baselines.

P(correct) of an example is the fraction of independently initialized (and
shuffled) runs that classify it correctly. If every example were equally hard,
with probability p, its count of correct runs out of n would be Binomial(n, p):
the sorted curve of Binomial(n, p)/n draws is the baseline. The paper finds randX
close to it, real data far from it (some examples are learned by nearly every
run, others by nearly none), and randY in between.

Pure functions over arrays and DataFrames; figures live in `analysis.figures`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

KEYS = ["variant", "split", "epoch"]  # one P(correct) curve per combination


def p_correct_array(correct: np.ndarray) -> np.ndarray:
    """correct: (num_seeds, num_examples) bool -> (num_examples,) float, fraction of seeds correct."""
    return np.asarray(correct, dtype=bool).mean(axis=0)


def p_correct(examples: pd.DataFrame) -> pd.DataFrame:
    """Rows of the `examples` table -> one row per variant x split x epoch x example with
    `p_correct` (fraction of seeds correct), `n_seeds`, `label` and `true_label` (the labels
    are the same for every seed of a variant)."""
    group = examples.groupby([*KEYS, "index"], observed=True, sort=True)
    extra = {f"mean_{c}": (c, "mean") for c in ("p_label", "loss") if c in examples.columns}
    out = group.agg(
        p_correct=("correct", "mean"),
        n_seeds=("correct", "size"),
        label=("label", "first"),
        true_label=("true_label", "first"),
        corrupted=("corrupted", "first"),
        **extra,
    )
    return out.reset_index()


def binomial_baseline(n: int, p: float, num_points: int, seed: int | None = None) -> np.ndarray:
    """(num_points,) float, ascending: the P(correct) curve if every example had probability p.

    Exact by default: the (i + 0.5) / num_points quantiles of Binomial(n, p) / n, the same
    every time. With `seed`, num_points sorted draws instead (what the paper plots).
    """
    if seed is not None:
        return np.sort(np.random.default_rng(seed).binomial(n, p, num_points) / n)
    q = (np.arange(num_points) + 0.5) / num_points
    return stats.binom.ppf(q, n, p) / n


def distance_from_binomial(p_values: np.ndarray, n: int, p: float) -> float:
    """Kolmogorov-Smirnov statistic between the empirical distribution of p_values
    ((num_examples,) fractions k/n) and Binomial(n, p)/n: the largest gap between the two
    CDFs, in [0, 1]; 0 when the examples look equally hard."""
    k = np.arange(n + 1)
    counts = np.rint(np.asarray(p_values) * n).astype(int)
    empirical = np.cumsum(np.bincount(counts, minlength=n + 1)) / counts.size
    return float(np.abs(empirical - stats.binom.cdf(k, n, p)).max())


def summary(pc: pd.DataFrame, reference: str = "randX") -> pd.DataFrame:
    """One row per curve (variant x split x epoch) of a `p_correct` frame:

    n_seeds, n_examples, mean, std, min and max of P(correct); `all_seeds` and `no_seed`, the
    shares of examples every seed / no seed gets right; `p_ref`, the mean P(correct) of the
    `reference` variant on the same split and epoch (NaN if it is absent), and `ks_ref`,
    the distance from Binomial(n, p_ref)/n (the paper's baseline); `binom_std`, the std
    Binomial(n, mean)/n would have, and `ks_own`, the distance from it: how far the
    examples are from being equally hard at the curve's own mean.
    """
    rows = []
    for (variant, split, epoch), curve in pc.groupby(KEYS, observed=True, sort=True):
        n = int(curve.n_seeds.min())
        values = curve.p_correct.to_numpy()
        ref = pc[(pc.variant == reference) & (pc.split == split) & (pc.epoch == epoch)]
        p_ref = float(ref.p_correct.mean()) if len(ref) else np.nan
        mean = float(values.mean())
        rows.append(
            {
                "variant": variant,
                "split": split,
                "epoch": epoch,
                "n_seeds": n,
                "n_examples": len(values),
                "mean": mean,
                "std": float(values.std()),
                "min": float(values.min()),
                "max": float(values.max()),
                "all_seeds": float((values == 1).mean()),
                "no_seed": float((values == 0).mean()),
                "binom_std": float(np.sqrt(mean * (1 - mean) / n)),
                "ks_own": distance_from_binomial(values, n, mean),
                "p_ref": p_ref,
                "ks_ref": distance_from_binomial(values, n, p_ref) if len(ref) else np.nan,
            }
        )
    return pd.DataFrame(rows)


def bootstrap_band(
    hits: np.ndarray, draws: int = 200, level: float = 0.95, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """hits: (num_seeds, num_examples) float -> (lo, hi), each (num_examples,): the central
    `level` interval at every rank of the sorted (descending) P(correct) curve when the seeds
    are resampled with replacement `draws` times. A curve resting on few seeds gets a wide band."""
    rng = rng if rng is not None else np.random.default_rng(0)
    tail = (1 - level) / 2
    picks = rng.integers(0, hits.shape[0], size=(draws, hits.shape[0]))
    curves = np.empty((draws, hits.shape[1]), dtype=np.float32)
    for i, p in enumerate(picks):  # one draw at a time: (draws, examples) is the largest array
        curves[i] = -np.sort(-hits[p].mean(axis=0))
    lo, hi = np.quantile(curves, [tail, 1 - tail], axis=0)
    return lo, hi


def bootstrap_bands(examples: pd.DataFrame, draws: int = 200, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """`bootstrap_band` of each curve of the `examples` rows. Columns: variant, split, epoch,
    rank, lo, hi (`analysis.aggregate.correct_matrices` gives the same matrices out of core)."""

    def matrices():
        for key, rows in examples.groupby(KEYS, observed=True, sort=True):
            yield (
                key,
                rows.pivot_table(
                    index="seed", columns="index", values="correct", aggfunc="first", observed=True
                ).to_numpy(dtype=np.float32),
            )  # (seeds, examples)

    return bands_frame(matrices(), draws, level, seed)


def bands_frame(matrices, draws: int = 200, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """`bootstrap_band` of each ((variant, split, epoch), (seeds, examples) matrix) of `matrices`,
    as rows variant, split, epoch, rank, lo, hi (one generator across curves, in their order)."""
    rng = np.random.default_rng(seed)
    out = []
    for (variant, split, epoch), hits in matrices:
        lo, hi = bootstrap_band(hits, draws, level, rng)
        out.append(
            pd.DataFrame(
                {
                    "variant": variant,
                    "split": split,
                    "epoch": epoch,
                    "rank": np.arange(hits.shape[1]),
                    "lo": lo,
                    "hi": hi,
                }
            )
        )
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=[*KEYS, "rank", "lo", "hi"])


MIN_SEEDS_TO_TELL = 5  # seeds below which a curve's distance from binomial is not read out


def distance_sentence(row) -> str:
    """One sentence from a `summary` row: how far its curve is from Binomial(n, its own mean),
    and what that means (Arpit et al. 2017: a curve near the binomial means every example is
    about equally hard; a curve far from it means examples differ in difficulty)."""
    ks = float(row.ks_own)
    if int(row.n_seeds) < MIN_SEEDS_TO_TELL:  # with one seed every P(correct) is 0 or 1: KS says nothing
        return (
            f"{row.variant} ({row.split}, epoch {row.epoch}): {int(row.n_seeds)} seed(s) are too few to tell "
            f"how far the examples are from equally hard (at least {MIN_SEEDS_TO_TELL} needed)."
        )
    spread = f"P(correct) runs from {row['min']:.2f} to {row['max']:.2f}" if "min" in row else ""
    n = int(row["n_examples"]) if "n_examples" in row else 0
    # Counts, not rounded shares: "0% for none" would read as "no such example" when a few exist.
    ends = [
        f"{round(share * n):,} of {n:,} {who}"
        for share, who in (
            (row.get("all_seeds", 0), "right for every seed"),
            (row.get("no_seed", 0), "right for no seed"),
        )
        if share > 0
    ]
    spread += f" ({', '.join(ends)})" if ends else ""
    if ks < 0.1 and row["mean"] >= 0.99:  # the binomial at p ~ 1 is every example learned: nothing to tell apart
        verdict, meaning = "close to binomial", "nearly every example is right for nearly every seed"
    elif ks < 0.1 and row["mean"] <= 0.01:
        verdict, meaning = "close to binomial", "nearly every example is wrong for nearly every seed"
    elif ks < 0.1:
        verdict, meaning = "close to binomial", "the examples look about equally hard, as for noise"
    elif ks < 0.3:
        verdict, meaning = "moderately far from binomial", "examples differ somewhat in difficulty"
    else:
        verdict, meaning = "far from binomial", "examples differ in difficulty"
    if spread and ks >= 0.1:
        meaning += f": {spread}"
    return (
        f"{row.variant} ({row.split}, epoch {row.epoch}): {verdict} (KS {ks:.2f} against Binomial(n={row.n_seeds}, "
        f"p={row['mean']:.2f})): {meaning}."
    )


def sorted_curves(
    pc: pd.DataFrame, reference: str = "randX", seed: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(curves, baselines) for plotting, both in descending P(correct) order by `rank` (0 = easiest).

    curves: variant, split, epoch, rank, p_correct, index, label. baselines: split, epoch,
    name, rank, p_correct: Binomial(n, p_ref)/n for the reference variant's mean and n,
    with as many points as that curve has examples.
    """
    curves = pc.sort_values([*KEYS, "p_correct", "index"], ascending=[True, True, True, False, True]).assign(
        rank=lambda d: d.groupby(KEYS, observed=True).cumcount()
    )
    lines = []
    for (split, epoch), ref in pc[pc.variant == reference].groupby(["split", "epoch"], observed=True):
        n, p = int(ref.n_seeds.min()), float(ref.p_correct.mean())
        values = binomial_baseline(n, p, len(ref), seed)[::-1]
        lines.append(
            pd.DataFrame(
                {
                    "split": split,
                    "epoch": epoch,
                    "name": f"Binomial(n={n}, p={p:.3f}) [{reference} mean]",
                    "rank": np.arange(len(ref)),
                    "p_correct": values,
                }
            )
        )
    baselines = (
        pd.concat(lines, ignore_index=True)
        if lines
        else pd.DataFrame(columns=["split", "epoch", "name", "rank", "p_correct"])
    )
    return curves[[*KEYS, "rank", "p_correct", "index", "label"]].reset_index(drop=True), baselines


def extremes(pc: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """The k hardest (lowest P(correct)) and k easiest examples of each curve.

    P(correct) ties often (on digits 926 training examples are right in every seed), so ties are
    broken by continuous measures where `pc` has them: the mean probability of the label over
    seeds (lower is harder), then the mean loss (higher is harder), then the index. `tied`: how
    many examples of the curve share the P(correct) of the k-th pick (the ones the tie-break chose
    among). Columns: variant, split, epoch, kind ('hardest' / 'easiest'), rank, index, p_correct,
    label, true_label, corrupted, tied (and mean_p_label, mean_loss where present).
    """
    by = ["p_correct"] + [c for c in ("mean_p_label", "mean_loss") if c in pc.columns] + ["index"]
    harder_first = [True] + [c != "mean_loss" for c in by[1:-1]] + [True]
    parts = []
    for _, curve in pc.groupby(KEYS, observed=True, sort=True):
        hard = curve.sort_values(by, ascending=harder_first).head(k).assign(kind="hardest")
        easy = curve.sort_values(by, ascending=[not a for a in harder_first[:-1]] + [True]).head(k)
        for part in (hard, easy.assign(kind="easiest")):
            tied = int((curve.p_correct == part.p_correct.iloc[-1]).sum()) if len(part) else 0
            parts.append(part.assign(rank=np.arange(len(part)), tied=tied))
    cols = [*KEYS, "kind", "rank", "index", "p_correct", "label", "true_label", "corrupted", "tied"]
    cols += [c for c in ("mean_p_label", "mean_loss") if c in pc.columns]
    return pd.concat(parts, ignore_index=True)[cols]
