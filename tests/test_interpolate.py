"""Convergence runs through Ray Tune: a real killed-and-resumed trial, and the validation split.

(The engine's stopping rules and exact resume: test_engine.py.)"""

import io
import os
import signal

import numpy as np
import pandas as pd
import pytest
import torch
from ray import tune

from sweep import launcher, planner, presets
from sweep import spec as S
from sweep.store import Store
from trainables import corruption
from trainables import data as datasets


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
        store, out = Store(tmp_path / name, spec.name), io.StringIO()
        result = launcher.launch(spec, store, data_root=str(tmp_path / "data"), callbacks=callbacks, out=out)
        assert result.ran == 1 and not result.missing
        runs[name] = {t: pd.read_parquet(tmp_path / name / spec.name / t) for t in tables}
        # The retry is said in a line, even though the launch ends complete.
        assert ("failed; Tune retries it (logs: " in out.getvalue()) == (name == "killed"), out.getvalue()
    assert callbacks[0].killed, "the trial finished before it could be killed"
    return runs


def test_killed_trial_resumes_from_its_checkpoint(ray_local, tmp_path):
    spec = presets.resolve(
        "convergence-slowdown",
        "digits",
        ["archs=[mlp3]", "corruptions=[randY:1.0]", "max_epochs=30", "checkpoint_every=5"],
    )
    runs = run_killed_and_not(spec, tmp_path, ("trials", "epochs"))
    (t_full, e_full), (t_kill, e_kill) = [(r["trials"], r["epochs"]) for r in (runs["uninterrupted"], runs["killed"])]
    assert pd.isna(t_full.resumed_from_epoch.iloc[0])
    assert t_kill.resumed_from_epoch.iloc[0] in (5, 10, 15, 20, 25)  # restored, not restarted
    assert e_kill.epoch.tolist() == list(range(1, 31)) and len(e_kill) == len(e_full)
    cols = ["step", "train_loss", "train_acc", "test_loss", "test_acc", "running_loss", "lr"]
    np.testing.assert_allclose(e_kill[cols].to_numpy(float), e_full[cols].to_numpy(float), atol=1e-6)
    assert t_kill.final_test_acc.iloc[0] == t_full.final_test_acc.iloc[0]
    # The checkpoints served the retry, then went with the stored fragment (6 were kept before).
    for name in ("uninterrupted", "killed"):
        assert not list((tmp_path / name / spec.name / "_tune").rglob("state.pt")), name


def test_killed_two_phase_trial_resumes_in_phase_two_with_its_probes(ray_local, tmp_path):
    # Killed in phase 2: the retry must skip phase 1, keep the phase boundary and the CSR
    # measurements made before the kill, and end exactly like an uninterrupted run.
    spec = presets.resolve(
        "forgetting",
        "digits",
        [
            "seeds=1",
            "corruptions=[randY:1.0]",
            "max_epochs=4",
            "phase2_epochs=6",
            "checkpoint_every=2",
            "probes.csr={every: 2, n: 30, iters: 3}",
        ],
    )
    runs = run_killed_and_not(spec, tmp_path, ("trials", "epochs", "probes"))
    full, kill = runs["uninterrupted"], runs["killed"]
    assert kill["trials"].resumed_from_epoch.iloc[0] == 6  # the phase-2 checkpoint
    assert kill["trials"].phase1_epochs.iloc[0] == full["trials"].phase1_epochs.iloc[0] == 4
    assert kill["epochs"].phase.tolist() == [1] * 4 + [2] * 6
    cols = ["step", "train_acc", "val_acc", "test_acc", "weight_norm"]
    np.testing.assert_allclose(kill["epochs"][cols].to_numpy(float), full["epochs"][cols].to_numpy(float), atol=1e-6)
    assert kill["probes"].epoch.tolist() == full["probes"].epoch.tolist() == [0, 2, 4, 6, 8, 10]
    np.testing.assert_allclose(kill["probes"].value, full["probes"].value)


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits", normalize="per_image")


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


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [False, True])
def test_progress_shows_running_trials_an_eta_and_epochs_to_interpolation(ray_local, tmp_path, monkeypatch, terminal):
    monkeypatch.setattr(launcher, "HEARTBEAT_S", 0.05)
    spec = presets.resolve(
        "convergence-slowdown",
        "digits",
        ["archs=[mlp1]", "corruptions=[randY:0.0,randY:0.2,randY:0.4]", "max_epochs=40", "pack_size=1"],
    )
    out = _Terminal() if terminal else io.StringIO()
    result = launcher.launch(spec, Store(tmp_path, spec.name), data_root=str(tmp_path / "data"), out=out)
    assert result.ran == 3 and not result.missing
    text = out.getvalue()
    assert "running: mlp1-" in text and " epoch " in text and "ETA ~" in text
    assert "1/1 interpolated (mean epoch" in text
    if terminal:  # one redrawn line: carriage returns, and each finished trial's line clears it
        assert "\r\033[K" in text and "\r\033[K[" in text
    else:  # plain lines only
        assert "\r" not in text and "\033" not in text


def test_the_heartbeat_names_a_fig1_trials_models_and_the_eta_starts_at_the_first_trial(tmp_path, monkeypatch):
    fig1 = {"epoch": 1, "train_acc": 0.931, "members": 3, "members_training": 3, "trial_models": 50, "models_from": 12}
    assert launcher._running(fig1, 0.0) == "models 13-15 of 50, epoch 1, train 0.93"
    assert launcher._running({**fig1, "members": 1, "models_from": 49}, 0.0) == "model 50 of 50, epoch 1, train 0.93"
    pack = {"epoch": 7, "train_acc": 0.5, "members": 11, "members_training": 4}
    assert launcher._running(pack, 0.0) == "epoch 7, train 0.50, 4 of 11 models still training"
    assert launcher._running({"since": 10.0}, 13.2) == "started 3 s ago"

    now = [100.0]  # the launch starts at 100 s; its first trial at 110 s
    monkeypatch.setattr(launcher.time, "perf_counter", lambda: now[0])
    progress = launcher._Progress(6, io.StringIO(), Store(tmp_path, "s"), [f"f{i}" for i in range(6)])
    now[0] = 110.0

    class _Trial:
        config = {"trial": {"plan": {"fragment": "f0"}}}

    monkeypatch.setattr(launcher, "_trial_name_of", lambda config: "f0")
    progress.on_trial_start(0, [], _Trial())
    progress.done = 2
    now[0] = 118.0
    # 2 trials in the 8 s since the first started: 4 left take ~16 s (timed from the launch's
    # start, 18 s, it would say ~36 s: Ray's start-up counted as if every trial paid it)
    assert progress._eta() == "; ETA ~16 s"
    # a running fig1 trial counts with the share of its models done: 2.5 in 8 s, 3.5 left
    progress.running["f2"] = {**fig1, "models_from": 22}  # models 23-25 of 50
    assert progress._eta() == "; ETA ~11 s"


def test_a_convergence_grid_trains_on_its_first_train_size_examples():
    """`train_size` sizes a grid that must interpolate to the machine: the first N training
    examples, before a validation split is carved from them; past the data set it is one error."""
    from sweep import job

    spec = presets.resolve("forgetting", "digits", ["train_size=500", "validation.size=100", "archs=[mlp1]"])
    prepared = job.prepare(spec, planner.expand(spec)[0], "", torch.device("cpu"))
    full = datasets.load("digits")
    assert len(prepared.data.train) == 400 and len(prepared.data.val) == 100
    assert len(prepared.data.test) == len(full.test)
    with pytest.raises(S.SpecError, match="train_size 2,000 is more than the 1,437 training examples of digits"):
        presets.resolve("convergence-slowdown", "digits", ["train_size=2000"])
