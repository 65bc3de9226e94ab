"""The probe presets end to end through the real CLI, real Ray and real Parquet, on digits at
a tiny scale: forgetting (two phases), csr + filters, weight-noise, regularization."""

import numpy as np
import pandas as pd
import pytest
from conftest import cli as sweep
from conftest import launch_args

N_TRAIN = 1437


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


def launch(results, address, preset, *sets) -> str:
    """The preset launched on digits with `sets`, then reported; the report's HTML."""
    proc = sweep(*launch_args(preset, *sets, results=results, address=address))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = sweep("report", preset, "--results", str(results))
    assert report.returncode == 0, report.stderr[-3000:]
    return (results / preset / "report.html").read_text()


def test_forgetting_two_phases_track_validation(ray_cluster, results):
    html = launch(
        results, ray_cluster, "forgetting", "seeds=1", "corruptions=[randY:1.0]", "max_epochs=4", "phase2_epochs=3"
    )
    folder = results / "forgetting"
    epochs = pd.read_parquet(folder / "epochs").sort_values("epoch")
    trials = pd.read_parquet(folder / "trials")
    b = int(trials.phase1_epochs.iloc[0])
    assert b == 4 and trials.stop_reason.iloc[0] == "max_epochs"  # random labels: not fit in 4 epochs
    assert epochs.epoch.tolist() == list(range(1, 8)) and epochs.phase.tolist() == [1] * 4 + [2] * 3
    assert epochs.val_acc.notna().all() and trials.val_size.iloc[0] == 300
    # Phase 1 sees the validation split's true labels and fits them far above chance; phase 2
    # no longer does, and they are forgotten as the random training labels are fit.
    assert epochs.val_acc.iloc[b - 1] > 0.5 and epochs.val_acc.iloc[-1] < epochs.val_acc.iloc[b - 1]
    # The validation images are not trained on in phase 2: the training split shrank by 300.
    ex_steps = epochs.step.diff().iloc[1:].tolist()
    assert ex_steps[:3] == [np.ceil((N_TRAIN - 300 + 300) / 16)] * 3  # phase 1: train + val
    assert ex_steps[-3:] == [np.ceil((N_TRAIN - 300) / 16)] * 3  # phase 2: train alone
    norms = pd.read_parquet(folder / "norms")
    assert sorted(norms.epoch.unique()) == list(range(0, 8)) and "total" in set(norms.layer)
    assert "Catastrophic forgetting" in html and "Weight norms" in html


def test_csr_and_filters_are_probed_during_training(ray_cluster, results):
    probes = "probes.csr={every: 1, n: 40, iters: 4}", "probes.filters={epochs: [2]}"
    html = launch(results, ray_cluster, "csr", "corruptions=[real, randY]", "max_epochs=2", *probes)
    folder = results / "csr"
    probes = pd.read_parquet(folder / "probes")
    csr = probes[probes.probe == "csr"]
    assert sorted(csr.epoch.unique()) == [0, 1, 2] and len(csr) == 2 * 3
    assert csr.value.between(0, 1).all() and set(csr.n) == {40} and set(csr.split) == {"test"}
    filters = pd.read_parquet(folder / "filters")
    assert len(filters) == 2 * 2 * 200 and set(filters.epoch) == {0, 2}  # initialization and epoch 2
    w = {
        e: np.stack(filters[(filters.variant == "real") & (filters.epoch == e)].sort_values("filter").weights)
        for e in (0, 2)
    }
    assert not np.allclose(w[0], w[2])  # trained filters, not the live weights at the end
    assert set(zip(filters.channels, filters.height, filters.width)) == {(1, 5, 5)}
    assert len(filters.weights.iloc[0]) == 25
    assert "Critical sample ratio" in html and "First-layer filters" in html


def test_weight_noise_after_training(ray_cluster, results):
    noise = "probes.weight_noise={sigmas: [0.0, 0.5, 2.0], draws: 2}"
    html = launch(results, ray_cluster, "weight-noise", "seeds=1", "corruptions=[real]", "max_epochs=3", noise)
    probes = pd.read_parquet(results / "weight-noise" / "probes")
    trials = pd.read_parquet(results / "weight-noise" / "trials")
    assert len(probes) == (1 + 2 + 2) * 2  # sigma 0 once, others per draw; train and test
    clean = probes[probes.sigma == 0].set_index("split").value
    assert clean["train"] == pytest.approx(trials.final_train_acc.iloc[0], abs=1e-6)
    assert clean["test"] == pytest.approx(trials.final_test_acc.iloc[0], abs=1e-6)
    assert probes[probes.sigma == 2.0].value.mean() < clean.mean()
    assert "Weight-noise sensitivity" in html and "sigma_half" in html


def test_regularization_records_early_stopping_without_stopping(ray_cluster, results):
    sets = "seeds=1", "corruptions=[randY:1.0]", "max_epochs=6", "early_stopping.patience=2"
    html = launch(results, ray_cluster, "regularization", *sets)
    trials = pd.read_parquet(results / "regularization" / "trials")
    epochs = pd.read_parquet(results / "regularization" / "epochs").sort_values("epoch")
    t = trials.iloc[0]
    assert t.epochs_trained == 6 and t.stop_reason == "max_epochs"  # stop: false
    best = int(epochs.val_acc.to_numpy().argmax()) + 1
    assert t.best_epoch == best and t.best_val_acc == pytest.approx(epochs.val_acc.max())
    assert pd.isna(t.early_stop_epoch) or t.early_stop_epoch >= best + 2
    assert epochs.weight_norm.notna().all()
    assert "Early stopping" in html


def test_bad_probe_settings_are_one_line_errors(results):
    for sets, needle in [
        (["phase2_epochs=3", "validation.size=0"], "needs a validation split"),
        (["validation.size=1437"], "must be less than the 1,437 digits training examples"),
        (["probes.filters={}", "archs=[mlp1]"], "probes.filters needs convolutional archs"),
    ]:
        args = ["launch", "forgetting", "--dataset", "digits", "--results", str(results / "bad")]
        for s in sets:
            args += ["--set", s]
        proc = sweep(*args)
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert not (results / "bad").exists()
