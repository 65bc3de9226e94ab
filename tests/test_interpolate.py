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


def test_killed_trial_resumes_from_its_checkpoint(ray_local, tmp_path):
    spec = S.resolve("convergence-slowdown", "digits", [
        "archs=[mlp3]", "corruptions=[randY:1.0]", "max_epochs=30", "checkpoint_every=5"])
    runs = {}
    for name, callbacks in (("uninterrupted", []), ("killed", [KillAtEpoch(7)])):
        store = Store(tmp_path / name, spec.name)
        result = launcher.launch(spec, store, data_root=str(tmp_path / "data"), callbacks=callbacks,
                                 out=io.StringIO())
        assert result.ran == 1 and not result.missing
        runs[name] = (pd.read_parquet(tmp_path / name / spec.name / "trials"),
                      pd.read_parquet(tmp_path / name / spec.name / "epochs"))
    assert callbacks[0].killed, "the trial finished before it could be killed"
    (t_full, e_full), (t_kill, e_kill) = runs["uninterrupted"], runs["killed"]
    assert pd.isna(t_full.resumed_from_epoch.iloc[0])
    assert t_kill.resumed_from_epoch.iloc[0] in (5, 10, 15, 20, 25)  # restored, not restarted
    assert e_kill.epoch.tolist() == list(range(1, 31)) and len(e_kill) == len(e_full)
    cols = ["step", "train_loss", "train_acc", "test_loss", "test_acc", "running_loss", "lr"]
    np.testing.assert_allclose(e_kill[cols].to_numpy(float), e_full[cols].to_numpy(float), atol=1e-6)
    assert t_kill.final_test_acc.iloc[0] == t_full.final_test_acc.iloc[0]
