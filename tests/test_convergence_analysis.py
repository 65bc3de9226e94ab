"""Convergence analysis on a hand-made trials table; runs that never interpolated stay visible."""

import numpy as np
import pandas as pd
import pytest

from analysis import convergence as C
from analysis import figures


def trials() -> pd.DataFrame:
    """mlp1 at p = 0, 0.5, 1 (interpolates at 10, 20, 30 epochs) and alexnet at p = 0 (10) and
    p = 1 (never: stopped at 50 epochs)."""
    rows = [
        ("mlp1", "randY:0.0", 0.0, True, 10, 2.0, 0.05, 1.0, 0.95),
        ("mlp1", "randY:0.5", 0.5, True, 20, 4.0, 0.50, 1.0, 0.50),
        ("mlp1", "randY:1.0", 1.0, True, 30, 6.0, 0.91, 1.0, 0.09),
        ("alexnet", "randY:0.0", 0.0, True, 10, 5.0, 0.02, 1.0, 0.98),
        ("alexnet", "randY:1.0", 1.0, False, None, None, None, 0.7, 0.1),
    ]
    return pd.DataFrame(
        [
            {
                "arch": a,
                "variant": v,
                "corruption_kind": "randY",
                "corruption_p": p,
                "seed": 0,
                "interpolated": ok,
                "interp_epoch": e,
                "interp_step": None if e is None else e * 90,
                "interp_train_seconds": s,
                "interp_test_acc": None if err is None else 1 - err,
                "epochs_trained": e or 50,
                "final_train_acc": tr,
                "final_test_acc": te,
            }
            for a, v, p, ok, e, s, err, tr, te in rows
        ]
    )


def test_interpolation_table_by_hand():
    table = C.interpolation_table(trials()).set_index(["arch", "variant"])
    mlp = table.loc["mlp1"]
    assert mlp.epochs.tolist() == [10, 20, 30] and mlp.steps.tolist() == [900, 1800, 2700]
    assert mlp.ratio_seconds.tolist() == [1.0, 2.0, 3.0]
    assert mlp.test_error.tolist() == pytest.approx([0.05, 0.50, 0.91])
    never = table.loc[("alexnet", "randY:1.0")]
    assert never.interpolated == 0 and np.isnan(never.seconds) and never.epochs_trained == 50
    assert C.status_text(never) == "no (50 epochs, train acc 0.700)"
    assert C.status_text(table.loc[("mlp1", "randY:0.5")]) == "yes (20 epochs, 4.0 s)"


def test_ratios_use_the_highest_level_that_interpolated():
    ratios = C.summarize_ratios(C.interpolation_table(trials())).set_index("arch")
    assert ratios.loc["mlp1", "highest_p_interpolated"] == 1.0 and ratios.loc["mlp1", "ratio_epochs"] == 3.0
    assert ratios.loc["alexnet", "highest_p_interpolated"] == 0.0


def test_figures_show_runs_that_never_interpolated():
    curve = C.label_corruption_curve(C.interpolation_table(trials()))
    fig = figures.time_to_interpolation(curve)
    names = [t.name for t in fig.data]
    assert "alexnet: not interpolated" in names
    marker = next(t for t in fig.data if t.name == "alexnet: not interpolated")
    assert list(marker.x) == [1.0] and list(marker.y) == [50]
    err = figures.generalization_error(curve)
    assert list(next(t for t in err.data if t.name == "mlp1").y) == pytest.approx([0.05, 0.5, 0.91])
    assert err.layout.shapes[0].y0 == 0.9  # chance for 10 classes


def test_learning_curves_average_seeds():
    epochs = pd.DataFrame(
        {
            "arch": "mlp1",
            "variant": "real",
            "epoch": [1, 1, 2, 2],
            "seed": [0, 1, 0, 1],
            # the epochs table's own names, so that a misnamed column in learning_curves fails here
            **{
                c: [1.0, 3.0, 5.0, 7.0]
                for c in "step train_seconds running_loss running_acc train_loss train_acc test_loss test_acc lr".split()
            },
        }
    )
    lc = C.learning_curves(epochs)
    assert lc.train_loss.tolist() == [2.0, 6.0]
    assert len(figures.learning_curves(lc, "train_loss").data) == 1
