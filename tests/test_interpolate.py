"""Train until interpolation: stopping rules, exact resume, and a real killed-and-resumed Tune trial."""

import io
import os
import signal

import numpy as np
import pandas as pd
import pytest
import torch
from ray import tune

from sweep import launcher, spec as S
from sweep.store import Store
from trainables import corruption, data as datasets, models
from trainables.interpolate import train_until_interpolation


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits", normalize="per_image")


def fresh(arch="mlp1", seed=0):
    torch.manual_seed(seed)
    return models.build(arch, (1, 8, 8), 10)


def test_stops_at_the_threshold_and_records_when(digits):
    out = train_until_interpolation(fresh(), digits, order_seed=1, lr=0.01, lr_decay=1.0, batch_size=16,
                                    max_epochs=100)
    assert out.stop_reason == "interpolated" and out.interpolated
    last = out.records[-1]
    assert last.acc["train"][0] == 1.0 and out.reached_epoch == last.epoch
    assert all(r.acc["train"][0] < 1.0 for r in out.records[:-1])
    assert out.reached_step == last.epoch * 90  # ceil(1437 / 16) steps an epoch
    assert [r.epoch for r in out.records] == list(range(1, last.epoch + 1))
    assert all(r.lr == 0.01 for r in out.records)


def test_lr_decay_max_epochs_and_time_budget(digits):
    out = train_until_interpolation(fresh(), digits, order_seed=1, lr=0.01, lr_decay=0.5, max_epochs=3)
    assert out.stop_reason == "max_epochs" and not out.interpolated and out.reached_epoch is None
    assert [r.lr for r in out.records] == [0.01, 0.005, 0.0025]
    out = train_until_interpolation(fresh(), digits, order_seed=1, lr=0.01, time_budget_s=1e-9)
    assert out.stop_reason == "time_budget" and len(out.records) == 1


def test_resumed_run_ends_exactly_like_an_uninterrupted_one(digits, tmp_path):
    noisy, _ = corruption.apply(digits, "randY", 0.5, seed=3)
    kw = dict(order_seed=7, lr=0.01, lr_decay=0.97, batch_size=32, max_epochs=8)
    full = train_until_interpolation(fresh("alexnet"), noisy, **kw)  # momentum, LRN: real state

    class Killed(Exception):
        pass

    def die_after_3(record, state):
        if record.epoch == 3:
            torch.save(state(), tmp_path / "state.pt")
            raise Killed

    with pytest.raises(Killed):
        train_until_interpolation(fresh("alexnet"), noisy, on_epoch=die_after_3, **kw)
    state = torch.load(tmp_path / "state.pt", weights_only=False)
    resumed = train_until_interpolation(fresh("alexnet", seed=99), noisy, resume=state, **kw)
    assert [r.epoch for r in resumed.records] == list(range(1, 9))
    for a, b in zip(full.records, resumed.records):
        assert a.step == b.step
        for split in ("train", "test"):
            assert a.acc[split][0] == b.acc[split][0]
            assert a.loss[split][0] == pytest.approx(b.loss[split][0], abs=1e-6)


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


class KillAtEpoch(tune.Callback):
    """SIGKILL a trial's worker process once, after it reports `epoch` (Tune adds `pid`)."""

    def __init__(self, epoch: int):
        self.epoch, self.killed = epoch, []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if not self.killed and result.get("epoch", 0) >= self.epoch:
            os.kill(result["pid"], signal.SIGKILL)
            self.killed.append(result["epoch"])


def run_killed_and_not(spec, tmp_path, tables) -> dict[str, dict[str, pd.DataFrame]]:
    """Launch the one-trial `spec` twice, once as is and once with its worker SIGKILLed after
    epoch 7; {"uninterrupted" | "killed": {table: DataFrame}}."""
    runs = {}
    for name, callbacks in (("uninterrupted", []), ("killed", [KillAtEpoch(7)])):
        store = Store(tmp_path / name, spec.name)
        result = launcher.launch(spec, store, data_root=str(tmp_path / "data"), callbacks=callbacks,
                                 out=io.StringIO())
        assert result.ran == 1 and not result.missing
        runs[name] = {t: pd.read_parquet(tmp_path / name / spec.name / t) for t in tables}
    assert callbacks[0].killed, "the trial finished before it could be killed"
    return runs


def test_killed_trial_resumes_from_its_checkpoint(ray_local, tmp_path):
    spec = S.resolve("convergence-slowdown", "digits", [
        "archs=[mlp3]", "corruptions=[randY:1.0]", "max_epochs=30", "checkpoint_every=5"])
    runs = run_killed_and_not(spec, tmp_path, ("trials", "epochs"))
    (t_full, e_full), (t_kill, e_kill) = [(r["trials"], r["epochs"]) for r in (runs["uninterrupted"], runs["killed"])]
    assert pd.isna(t_full.resumed_from_epoch.iloc[0])
    assert t_kill.resumed_from_epoch.iloc[0] in (5, 10, 15, 20, 25)  # restored, not restarted
    assert e_kill.epoch.tolist() == list(range(1, 31)) and len(e_kill) == len(e_full)
    cols = ["step", "train_loss", "train_acc", "test_loss", "test_acc", "running_loss", "lr"]
    np.testing.assert_allclose(e_kill[cols].to_numpy(float), e_full[cols].to_numpy(float), atol=1e-6)
    assert t_kill.final_test_acc.iloc[0] == t_full.final_test_acc.iloc[0]


def test_killed_two_phase_trial_resumes_in_phase_two_with_its_probes(ray_local, tmp_path):
    # Killed in phase 2: the retry must skip phase 1, keep the phase boundary and the CSR
    # measurements made before the kill, and end exactly like an uninterrupted run.
    spec = S.resolve("forgetting", "digits", [
        "seeds=1", "corruptions=[randY:1.0]", "max_epochs=4", "phase2_epochs=6", "checkpoint_every=2",
        "probes.csr={every: 2, n: 30, iters: 3}"])
    runs = run_killed_and_not(spec, tmp_path, ("trials", "epochs", "probes"))
    full, kill = runs["uninterrupted"], runs["killed"]
    assert kill["trials"].resumed_from_epoch.iloc[0] == 6  # the phase-2 checkpoint
    assert kill["trials"].phase1_epochs.iloc[0] == full["trials"].phase1_epochs.iloc[0] == 4
    assert kill["epochs"].phase.tolist() == [1] * 4 + [2] * 6
    cols = ["step", "train_acc", "val_acc", "test_acc", "weight_norm"]
    np.testing.assert_allclose(kill["epochs"][cols].to_numpy(float), full["epochs"][cols].to_numpy(float), atol=1e-6)
    assert kill["probes"].epoch.tolist() == full["probes"].epoch.tolist() == [0, 2, 4, 6, 8, 10]
    np.testing.assert_allclose(kill["probes"].value, full["probes"].value)


def test_early_stopping_point_and_lr_schedule_by_hand():
    from trainables.interpolate import early_stopping_point, epoch_lr

    assert early_stopping_point([0.5, 0.6, 0.6, 0.55], 2) == (2, 4)
    assert early_stopping_point([0.5, 0.6, 0.7], 2) == (3, None)
    assert early_stopping_point([0.5, 0.4, 0.45, 0.3], 3) == (1, 4)
    # Arpit et al.'s CNN: 0.01 halved every 15 epochs
    assert [epoch_lr(0.01, e, 1.0, 15) for e in (1, 15, 16, 31)] == pytest.approx([0.01, 0.01, 0.005, 0.0025])
    assert epoch_lr(0.1, 3, 0.5) == pytest.approx(0.025)


def test_carved_validation_is_disjoint_fixed_and_corrupted_on_its_own(digits):
    a, b = digits.carve_validation(300, seed=5), digits.carve_validation(300, seed=5)
    assert len(a.train) == 1437 - 300 and len(a.val) == 300 and a.split_names == ("train", "test", "val")
    assert torch.equal(a.val.x, b.val.x)
    rows = {tuple(r) for r in digits.train.x.flatten(1).round(decimals=4).tolist()}
    held = [tuple(r) in rows for r in a.val.x.flatten(1).round(decimals=4).tolist()]
    assert all(held)  # val images come from the training split
    train_rows = {tuple(r) for r in a.train.x.flatten(1).round(decimals=4).tolist()}
    val_rows = [tuple(r) for r in a.val.x.flatten(1).round(decimals=4).tolist()]
    assert sum(r in train_rows for r in val_rows) <= 3  # (digits has a few duplicate images)
    noisy, mask = corruption.apply_to_validation(a, "randY", 1.0, seed=0)
    assert torch.equal(noisy.train.y, a.train.y) and mask.shape == (300,)
    assert (noisy.val.y != a.val.y).float().mean() > 0.8
    with pytest.raises(ValueError, match="between 1 and 1436"):
        digits.carve_validation(1437)


def test_two_phases_continue_one_run_and_patience_stops(digits):
    data = digits.carve_validation(300)
    data, _ = corruption.apply(data, "randY", 1.0, seed=0)
    model = fresh()
    one = train_until_interpolation(model, data, order_seed=1, lr=0.01, lr_decay=1.0, batch_size=16,
                                    max_epochs=3, fit_splits=("train", "val"))
    assert [r.epoch for r in one.records] == [1, 2, 3] and one.records[-1].step == 3 * 90  # 1437 / 16
    assert set(one.records[0].acc) == {"train", "test", "val"} and one.best_epoch is not None
    two = train_until_interpolation(model, data, order_seed=1, lr=0.01, lr_decay=1.0, batch_size=16,
                                    threshold=None, max_epochs=5, resume=one.state)
    assert [r.epoch for r in two.records] == [1, 2, 3, 4, 5]
    assert two.records[-1].step == 3 * 90 + 2 * 72  # phase 2: ceil(1137 / 16) steps an epoch
    assert two.stop_reason == "max_epochs" and not two.interpolated
    # Patience: validation (true labels) stops improving while random labels are fit.
    stop = train_until_interpolation(fresh(), data, order_seed=1, lr=0.01, lr_decay=1.0, batch_size=16,
                                     max_epochs=60, patience=2)
    assert stop.stop_reason == "early_stopped" and stop.early_stop_epoch == stop.records[-1].epoch
    assert stop.early_stop_epoch - stop.best_epoch >= 2
    with pytest.raises(ValueError, match="validation split"):
        train_until_interpolation(fresh(), digits, order_seed=1, lr=0.01, patience=2)
