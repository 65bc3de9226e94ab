"""Fractional GPUs: trials asking 0.25 GPU share one (fake) GPU four at a time.

Ray is told the machine has one GPU (`num_gpus=1`); trials see no CUDA device and
train on the CPU, but Ray schedules them by the GPU fraction they declare.
"""

import io

import pandas as pd
import pytest
import ray
from ray import tune

from sweep import launcher, presets
from sweep.store import Store


@pytest.fixture(scope="module")
def fake_gpu_ray():
    ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


class MaxRunning(tune.Callback):
    """The largest number of trials Tune had running at once."""

    def __init__(self):
        self.running, self.max = 0, 0

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running += 1
        self.max = max(self.max, self.running)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.running -= 1

    on_trial_error = on_trial_complete


@pytest.mark.parametrize("fraction,concurrent", [(0.25, 4), (0.5, 2)])
def test_trials_share_a_gpu_by_fraction(fake_gpu_ray, tmp_path, fraction, concurrent):
    spec = presets.resolve(
        "fig1-difficulty", "digits", ["seeds=8", "pack_size=2", "variants=[real]", "model.hidden=[64]"]
    )
    store = Store(tmp_path, spec.name)
    counter = MaxRunning()
    result = launcher.launch(
        spec,
        store,
        data_root=str(tmp_path / "data"),
        cpus_per_trial=1,
        gpus_per_trial=fraction,
        callbacks=[counter],
        out=io.StringIO(),
    )
    assert result.ran == 4 and not result.missing
    assert counter.max == concurrent
    trials = pd.read_parquet(tmp_path / spec.name / "trials")
    assert len(trials) == 8
    assert set(trials.resources) == {f'{{"CPU": 1.0, "GPU": {fraction}}}'}
    assert set(trials.device) == {"cpu"}  # no real GPU here: the trial falls back to the CPU
