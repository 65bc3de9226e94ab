"""Readings of training itself (Zhang et al. 2017; Arpit et al. 2017): accuracy per epoch,
weight norms, early stopping and the two phases of a forgetting run. Pure functions of DataFrames
read from the store (`epochs`, `norms`, `trials`)."""

from __future__ import annotations

import pandas as pd

from analysis import kinds


def epoch_means(epochs: pd.DataFrame) -> pd.DataFrame:
    """Training and validation accuracy per (arch x) variant x epoch, averaged over seeds."""
    keys = kinds.keys(epochs) + ["epoch"]
    return epochs.groupby(keys, observed=True, sort=False)[["train_acc", "val_acc"]].mean().reset_index()


def norm_curves(norms: pd.DataFrame) -> pd.DataFrame:
    """Per arch x variant x epoch: mean over seeds of the whole model's weight norm (epoch 0:
    at initialization)."""
    rows = norms[norms.layer == "total"]
    keys = kinds.keys(rows) + ["epoch"]
    return rows.groupby(keys, observed=True).norm.mean().reset_index()


def layer_norms_before_after(norms: pd.DataFrame) -> pd.DataFrame:
    """Per arch x variant x layer (in model order, 'total' last): mean over seeds of the norm at
    initialization (`before`, epoch 0) and at the last recorded epoch (`after`), and after/before."""
    keys = kinds.keys(norms)
    last = norms.groupby(keys + ["seed"], observed=True).epoch.transform("max")
    pick = {"before": norms[norms.epoch == 0], "after": norms[norms.epoch == last]}
    parts = [
        rows.groupby(keys + ["layer_index", "layer"], observed=True).norm.mean().rename(name)
        for name, rows in pick.items()
    ]
    out = pd.concat(parts, axis=1).reset_index().sort_values(keys + ["layer_index"])
    out["ratio"] = out.after / out.before
    return out.reset_index(drop=True)


def early_stopping_summary(trials: pd.DataFrame) -> pd.DataFrame:
    """Per arch x variant (mean over seeds): the epoch of best validation accuracy, the epoch
    early stopping stopped (or would have stopped) at, and train / validation / test accuracy
    at the best epoch against at the end of full training."""
    keys = kinds.keys(trials)
    cols = {
        "best_epoch": "best_epoch",
        "early_stop_epoch": "early_stop_epoch",
        "epochs_trained": "epochs_trained",
        "best_train_acc": "train acc, early stop",
        "final_train_acc": "train acc, full",
        "best_val_acc": "val acc, early stop",
        "best_test_acc": "test acc, early stop",
        "final_test_acc": "test acc, full",
    }
    have = {k: v for k, v in cols.items() if k in trials.columns}
    out = trials.groupby(keys, observed=True)[list(have)].mean().rename(columns=have)
    return out.reset_index()


def phase_summary(trials: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """Per architecture and variant (two models are never averaged together): phase 1's epochs,
    validation accuracy at the end of phase 1 and of phase 2, and training accuracy at the end of
    phase 2, each the mean over seeds."""
    keys = kinds.keys(trials, epochs)
    b = trials.groupby(keys, observed=True).phase1_epochs.mean()
    last = epochs.sort_values("epoch").groupby([*keys, "seed"], observed=True).last()
    at_b = epochs.merge(trials[[*keys, "seed", "phase1_epochs"]], on=[*keys, "seed"])
    at_b = at_b[at_b.epoch == at_b.phase1_epochs].groupby(keys, observed=True)
    return pd.DataFrame(
        {
            "phase 1 epochs": b,
            "val acc, end of phase 1": at_b.val_acc.mean(),
            "val acc, end of phase 2": last.groupby(keys, observed=True).val_acc.mean(),
            "train acc, end of phase 2": last.groupby(keys, observed=True).train_acc.mean(),
        }
    ).reset_index()
