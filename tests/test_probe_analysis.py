"""Probe readings on hand-made tables."""

import numpy as np
import pandas as pd
import pytest

from analysis import training as T
from analysis.probes import csr as CSR
from analysis.probes import filters as FL
from analysis.probes import weight_noise as WN


def test_halving_sigma_by_hand():
    assert WN.halving_sigma_array([0, 1, 2], [0.8, 0.6, 0.2]) == pytest.approx(1.5)
    assert WN.halving_sigma_array([0, 1, 2], [0.8, 0.4, 0.1]) == pytest.approx(1.0)
    assert np.isnan(WN.halving_sigma_array([0, 1, 2], [0.8, 0.7, 0.6]))


def test_weight_noise_curves_average_draws_then_halving_per_model():
    rows = [
        dict(probe="weight_noise", arch="mlp1", variant=v, seed=0, split="train", sigma=s, draw=d, value=a)
        for v, table in {
            "real": {0.0: [1.0], 1.0: [0.9, 0.7], 2.0: [0.5, 0.3]},
            "randY": {0.0: [1.0], 1.0: [0.2, 0.4], 2.0: [0.1, 0.1]},
        }.items()
        for s, accs in table.items()
        for d, a in enumerate(accs)
    ]
    rows.append(dict(probe="csr", arch="mlp1", variant="real", seed=0, split="test", sigma=np.nan, draw=0, value=0.1))
    curves = WN.weight_noise_curves(pd.DataFrame(rows))
    assert curves[curves.variant == "real"].acc.tolist() == pytest.approx([1.0, 0.8, 0.4])
    h = WN.halving_sigma(curves).set_index("variant").sigma_half
    # real: 1.0 at 0.8, 2.0 at 0.4 -> crosses 0.5 at 1.75; randY: 0 -> 1 falls from 1.0 to 0.3 -> 5/7
    assert h["real"] == pytest.approx(1.75) and h["randY"] == pytest.approx(5 / 7)


def test_csr_curve_means_over_seeds():
    rows = pd.DataFrame(
        [
            dict(probe="csr", arch="cnn", variant="randY", seed=s, epoch=e, value=v)
            for s, e, v in [(0, 0, 0.1), (1, 0, 0.3), (0, 5, 0.5), (1, 5, 0.7)]
        ]
    )
    c = CSR.csr_curve(rows)
    assert c.epoch.tolist() == [0, 5] and c.csr.tolist() == pytest.approx([0.2, 0.6]) and set(c.seeds) == {2}


def test_norms_before_and_after_by_hand():
    rows = pd.DataFrame(
        [
            dict(arch="mlp1", variant="real", seed=s, epoch=e, layer=name, layer_index=i, norm=n)
            for s in (0, 1)
            for e, scale in ((0, 1.0), (3, 2.0))
            for i, (name, n) in enumerate([("0 Linear", 3.0), ("1 Linear", 4.0), ("total", 5.0)])
            for n in [n * scale + s]
        ]
    )
    ba = T.layer_norms_before_after(rows)
    assert ba.layer.tolist() == ["0 Linear", "1 Linear", "total"]
    assert ba.before.tolist() == [3.5, 4.5, 5.5] and ba.after.tolist() == [6.5, 8.5, 10.5]
    assert T.norm_curves(rows).norm.tolist() == [5.5, 10.5]


def test_neighbour_correlation_by_hand():
    smooth = np.tile(np.arange(5.0), (5, 1))[None, None]  # a ramp: adjacent weights correlate
    checker = ((np.indices((5, 5)).sum(0) % 2) * 2 - 1.0)[None, None]
    assert FL.neighbour_correlation(smooth)[0] > 0.4
    assert FL.neighbour_correlation(checker)[0] == pytest.approx(-1.0)
    assert np.isnan(FL.neighbour_correlation(np.ones((1, 1, 5, 5)))[0])


def test_filter_stats_measure_change_from_initialization():
    w0 = np.random.default_rng(0).standard_normal((4, 1, 5, 5)).astype(np.float32)
    rows = [
        dict(
            arch="cnn",
            variant="real",
            seed=0,
            epoch=e,
            filter=f,
            channels=1,
            height=5,
            width=5,
            weights=(w0[f] * scale).ravel(),
        )
        for e, scale in ((0, 1.0), (3, 1.5))
        for f in range(4)
    ]
    stats = FL.filter_stats(pd.DataFrame(rows)).set_index("epoch")
    assert stats.change[0] == 0 and stats.change[3] == pytest.approx(0.5, rel=1e-6)
    assert stats.smoothness[3] == pytest.approx(stats.smoothness[0], abs=1e-6)  # scaling keeps the pattern


def test_phase_summary_by_hand():
    trials = pd.DataFrame(
        [dict(arch="mlp1", variant="randY:1.0", seed=s, phase1_epochs=b) for s, b in ((0, 2), (1, 4))]
    )
    # seed 0: val 0.5 at its epoch 2, then 0.3 at the end; seed 1: val 0.7 at its epoch 4, 0.4 at the end
    epochs = pd.DataFrame(
        [
            dict(arch="mlp1", variant="randY:1.0", seed=s, epoch=e, val_acc=v, train_acc=t)
            for s, e, v, t in [(0, 1, 0.2, 0.1), (0, 2, 0.5, 0.6), (0, 5, 0.3, 1.0), (1, 4, 0.7, 0.8), (1, 5, 0.4, 0.9)]
        ]
    )
    row = T.phase_summary(trials, epochs).iloc[0]
    assert row["phase 1 epochs"] == 3.0 and row["val acc, end of phase 1"] == pytest.approx(0.6)
    assert row["val acc, end of phase 2"] == pytest.approx(0.35) and row["train acc, end of phase 2"] == pytest.approx(
        0.95
    )


def test_means_over_seeds_by_hand():
    epochs = pd.DataFrame(
        [dict(variant="real", seed=s, epoch=1, train_acc=a, val_acc=a / 2) for s, a in ((0, 0.4), (1, 0.8))]
    )
    m = T.epoch_means(epochs)
    assert m.train_acc.tolist() == pytest.approx([0.6]) and m.val_acc.tolist() == pytest.approx([0.3])
    curves = pd.DataFrame(
        [dict(variant="real", seed=s, split="test", sigma=0.5, acc=a) for s, a in ((0, 0.2), (1, 0.6))]
    )
    assert WN.weight_noise_means(curves).acc.tolist() == pytest.approx([0.4])


def test_filter_pictures_show_the_lowest_seed_and_what_training_added():
    rows = [
        dict(
            variant="real",
            seed=s,
            epoch=e,
            filter=f,
            channels=1,
            height=2,
            width=2,
            weights=[float(e + f + s), 0.0, 1.0, 2.0],
        )
        for s in (0, 1)
        for e in (0, 3)
        for f in range(2)
    ]
    pictures = list(FL.filter_pictures(pd.DataFrame(rows)))
    assert [(name, last) for name, last, _, _ in pictures] == [("real", 3)]
    _, _, grid, change = pictures[0]
    # two 2x2 filters a row, one white pixel around each, 8x larger: (1 + 2 * 3) x 8 wide, (1 + 3) x 8 high
    assert grid.shape == (32, 56, 3) and change.shape == grid.shape
