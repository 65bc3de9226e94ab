"""The benchmark's own arithmetic and contenders (benchmarks/run.py), on the CPU: its FLOP counts,
the notebook loop it measures memsweep against, and the GPU mode's refusal without a GPU."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark_run", RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flop_counts_by_hand(bench):
    # 4 -> 3 -> 2: multiply-adds 12 and 6; forward, weight and input gradients 2 each, no input
    # gradient for the first layer: 6 x 18 - 2 x 12.
    assert bench.train_flops([4, 3, 2]) == 84
    # The digits preset: 64 -> 512 -> 512 -> 10, 1,437 train and 360 test examples, one epoch
    # trained and scored, 100 seeds x 3 variants.
    macs = 64 * 512 + 512 * 512 + 512 * 10
    per_seed = 1437 * (6 * macs - 2 * 64 * 512) + 2 * macs * (1437 + 360)
    spec = bench.specs.resolve("fig1-difficulty", "digits")
    assert bench.fig1_flops(spec) == per_seed * 300 == 1_071_304_704_000
    assert bench.linear_at(100, 5, 10.0, 10, 20.0) == pytest.approx(200.0)  # 2 s a seed from 10 s at 5


def test_the_notebook_loop_trains_and_scores_every_example(bench):
    spec = bench.specs.resolve("fig1-difficulty", "digits", ["model.hidden=[32]"])
    out = bench.notebook_seed(bench.variant_data("real", spec), 0, spec, "cpu")
    assert out["train"].shape == (3, 1437) and out["test"].shape == (3, 360)  # P(label), loss, correct
    p, loss, correct = out["test"]
    np.testing.assert_allclose(p, np.exp(-loss), rtol=1e-5)
    assert correct.mean() > 0.8  # one epoch of an MLP on digits
    again = bench.notebook_seed(bench.variant_data("real", spec), 0, spec, "cpu")
    np.testing.assert_array_equal(out["test"][2], again["test"][2])  # a seed is a seed


def test_gpu_mode_without_a_gpu_is_one_line_and_nonzero():
    gpu_json = RUN.parent / "results_gpu.json"
    before = gpu_json.stat().st_mtime_ns if gpu_json.exists() else None
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(RUN), "--device", "cuda"], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "--device cuda" in proc.stderr and "no CUDA device" in proc.stderr
    assert (gpu_json.stat().st_mtime_ns if gpu_json.exists() else None) == before  # nothing written
