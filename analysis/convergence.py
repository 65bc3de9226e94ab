"""Convergence slowdown and generalization error (Zhang et al. 2017, Fig. 1b/c, Fig. 2).

From the `trials` table of an interpolate-engine sweep: time to interpolation
(training seconds, epochs, SGD steps) against the corruption, its ratio to the
uncorrupted run of the same architecture (the paper: "a small constant factor"),
and test error at interpolation (Fig. 1c: approaches 90% at p = 1 on 10 classes).
Runs that never reached the threshold stay in every table, marked
``interpolated = False`` with NaN times, so they are shown, not dropped.

Pure functions over DataFrames; figures in `analysis.figures`.
"""

from __future__ import annotations

import pandas as pd

# Means over seeds per arch x variant of the corruption curve: column -> the name it gets.
AT_INTERPOLATION = {
    "interp_train_seconds": "seconds",
    "interp_epoch": "epochs",
    "interp_step": "steps",
    "interp_test_error": "test_error",
    "final_train_acc": "final_train_acc",
    "final_test_acc": "final_test_acc",
}


def interpolation_table(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per arch x corruption (seeds averaged over those that interpolated):

    arch, variant, corruption_kind, corruption_p, seeds, interpolated (seeds that did),
    epochs_trained (max), seconds / epochs / steps to interpolation (means, NaN if none did),
    test_error (1 - test accuracy at interpolation, mean), ratio_seconds and ratio_epochs
    (time relative to the same arch's run on clean labels, 'real' or randY:0.0).
    """
    t = trials.assign(
        arch=trials.arch.astype(str),
        variant=trials.variant.astype(str),
        interp_test_error=1.0 - trials.interp_test_acc.astype(float),
    )
    g = t.groupby(["arch", "variant"], sort=False)
    counts = g.agg(
        seeds=("seed", "size"), interpolated=("interpolated", "sum"), epochs_trained=("epochs_trained", "max")
    )
    means = g[list(AT_INTERPOLATION)].mean().rename(columns=AT_INTERPOLATION)
    rows = pd.concat([g[["corruption_kind", "corruption_p"]].first(), counts, means], axis=1).reset_index()
    clean = (
        rows[(rows.corruption_p == 0) & rows.corruption_kind.isin(["real", "randY"])]
        .groupby("arch")[["seconds", "epochs"]]
        .first()
    )
    rows["ratio_seconds"] = rows.seconds / rows.arch.map(clean.seconds)
    rows["ratio_epochs"] = rows.epochs / rows.arch.map(clean.epochs)
    return rows.sort_values(["arch", "corruption_kind", "corruption_p"], kind="stable").reset_index(drop=True)


def label_corruption_curve(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of an `interpolation_table` that are label corruption (randY:p, with 'real'
    counted as p = 0), one curve per arch ordered by p: the x axis of Fig. 1b/c."""
    keep = table[(table.corruption_kind == "randY") | (table.variant == "real")].copy()
    keep.loc[keep.variant == "real", "corruption_p"] = 0.0
    return keep.sort_values(["arch", "corruption_p"]).reset_index(drop=True)


def learning_curves(epochs: pd.DataFrame) -> pd.DataFrame:
    """Per arch x variant x epoch (seeds averaged): step, train_seconds, running and full-set
    train loss and accuracy, test loss and accuracy, lr."""
    cols = "step train_seconds running_loss running_acc train_loss train_acc test_loss test_acc lr".split()
    e = epochs.assign(arch=epochs.arch.astype(str), variant=epochs.variant.astype(str))
    return e.groupby(["arch", "variant", "epoch"], sort=False)[cols].mean().reset_index()


def status_text(row: pd.Series) -> str:
    """'yes (12 epochs, 3.4 s)' or 'no (400 epochs, train acc 0.812)' for a table row."""
    if row.interpolated >= row.seeds:
        return f"yes ({row.epochs:.0f} epochs, {row.seconds:.1f} s)"
    if row.interpolated > 0:
        return f"{row.interpolated:.0f}/{row.seeds:.0f} seeds"
    return f"no ({row.epochs_trained:.0f} epochs, train acc {row.final_train_acc:.3f})"


def summarize_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """Per arch: time to interpolation at the highest label-corruption level that interpolated,
    relative to clean labels (the paper's 'small constant factor'), and test error there."""
    curve = label_corruption_curve(table)
    done = curve[curve.interpolated > 0]
    out = done.loc[
        done.groupby("arch").corruption_p.idxmax(),
        ["arch", "corruption_p", "ratio_seconds", "ratio_epochs", "test_error"],
    ]
    return out.rename(columns={"corruption_p": "highest_p_interpolated"}).reset_index(drop=True)


def accuracy_table(trials: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """Zhang et al. 2017's Table 1 from a convergence sweep with hyperparameter `axes` (e.g.
    regularizers.crop, optimizer.weight_decay): one row per architecture x corruption x point,
    with the models, their mean epochs, and mean train and test accuracy (%) where each stopped."""
    keys = ["arch", "variant", *axes]
    rows = trials.assign(variant=trials.variant.astype(str), arch=trials.arch.astype(str))
    out = (
        rows.groupby(keys, observed=True, sort=False)
        .agg(
            models=("seed", "size"),
            epochs=("epochs_trained", "mean"),
            train=("final_train_acc", "mean"),
            test=("final_test_acc", "mean"),
        )
        .reset_index()
    )
    out[["train", "test"]] = out[["train", "test"]] * 100
    return out.rename(columns={"variant": "corruption", "train": "train %", "test": "test %"})
