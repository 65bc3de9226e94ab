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


@pytest.mark.numerics
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


def test_gemm_times_and_the_table_it_feeds(bench):
    g = bench.gemm_times(1, repeats=3, flushed_repeats=2)
    assert set(g) == {"best_s", "median_s", "flushed_s"} and all(v > 0 for v in g.values())
    assert g["best_s"] <= g["median_s"]  # the best of three calls is no slower than their median
    out = {"date": "d", "machine": "m", "torch": "t", "command": "c", "cores": 2,
           "seeds": {10: {"notebook_s": 5.0, "memsweep_s": 10.0, "notebook/memsweep": 0.5, "engine_s": 4.0,
                          "floor_s": 6.0, "notebook/floor": 0.83}},
           "fixed_cost": {"one_seed_sweep_s": 8.0, "floor_s": 4.0, "python_and_ray_import_s": 1.0,
                          "ray_init_s": 2.0, "trial_torch_import_s": 1.0},
           "tune_per_seed": {"scaled_to_100_s": 900.0, "seeds": [2, 4], "measured_s": [20.0, 38.0]},
           "hardware": {"matmul_gflops_1_thread": 90.0, "dram_gbs_1_thread": 40.0, "last_level_cache_mib": 32},
           "step": {"pack_3": {"state_in": "7 MiB, 120 GB/s", "ms_per_seed_epoch": 60.0, "floor_ms": 26.0,
                               "flop_ms": 26.0, "byte_ms": 6.0, "fraction_of_floor": 0.43, "gemm_best_ms": 35.0,
                               "gemms_best_share_of_step": 0.58, "gemm_median_ms": 40.0, "gemm_flushed_ms": 84.0,
                               "gemms_in_step_ms": 45.0, "gemms_in_order_ms": 52.0,
                               "profile": {"gemms_share": 0.75, "op_shares": {"baddbmm": 0.4}},
                               "blocked_ms": {"step": 47.0, "rows_64": 57.0, "member_rows_128": 49.0}}}}
    table = bench.markdown(out)
    assert "| 10 | 5.0 s | 10.0 s | **0.5x** | 4.0 s | 6.0 s | 0.83x |" in table
    assert "40.0 ms at their median and 84.0 ms with the cache flushed" in table and "52.0 ms (50% of the floor): the step runs at 87% of their speed" in table
    assert "the step 47.0 ms, panels of 64 rows 57.0 ms, panels of 128 rows a member 49.0 ms." in table
    assert "at most 0.62x for any sweep that starts Ray" not in table  # the notebook's 5.0 s is over the 4.0 s floor
    out["fixed_cost"]["floor_s"] = 8.0
    assert "At 10 seeds the notebook's 5.0 s is under the fixed floor alone: at most 0.62x" in bench.markdown(out)
    assert bench.gemms_in_order(1, repeats=1) > 0
    # A run with the bare Tune sweep: it is the fixed part of the floor, and what bounds any sweep on Tune.
    out["fixed_cost"].update(tune_floor_s=6.5, bare_tune_runs=[6.5, 7.1])
    out["step"]["pack_3"].update(in_order_rounds=[6, 7], other_ops_ms=8.0, parts_rounds=[5, 7])
    out["gemm_libraries"] = {"forward": {"torch": 70.0, "onednn": 72.0, "openblas": 81.0}}
    table = bench.markdown(out)
    assert "| floor (a bare Tune sweep + engine / cores) |" in table
    assert "takes 6.5 s (the fastest of 6.5 s, 7.1 s, run alternately with the one-seed sweeps)" in table
    # the job at 10 seeds: 35.7 GFLOP a seed-run x 30 = 107 GFLOP, at 180 GFLOP/s 0.6 s after the 6.5 s
    out["hardware"]["matmul_gflops_2_threads"] = 180.0
    table = bench.markdown(out)
    assert ("At 10 seeds the notebook's 5.0 s is under the least any engine needs here: a bare Tune sweep and then "
            "the job's 107 GFLOP at the "
            "180.0 GFLOP/s all-core matmul peak take 7.1 s, so at most 0.70x for any sweep run through Ray Tune") in table
    assert "best of 7 rounds, they take 52.0 ms" in table and "slower than them in 6 of the 7 rounds" in table
    assert "the same way: 8.0 ms; the two parts together 60.0 ms (43% of the floor)" in table
    assert "was slower than them in 5 of the 7 rounds." in table
    assert "forward torch 70.0, onednn 72.0, openblas 81.0 GFLOP/s: at best 90% of the 90.0 GFLOP/s" in table
    assert "the least step of library calls" not in table  # a results file from before it was measured
    # The least step of library calls, and pairs at a seed count: the bound there takes the notebook's median.
    out["step"]["pack_3"].update(least_library_ms=52.0, least_rounds=[7, 7])
    out["pairs_10"] = {"notebook_memsweep_ratio": [[6.0, 9.0, 0.67], [9.0, 9.5, 0.95]], "median_ratio": 0.81}
    table = bench.markdown(out)
    assert "the same way: 52.0 ms (50% of the floor); the step was slower in 7 of the 7 rounds." in table
    assert "At 10 seeds, 2 more pairs run alternately (notebook, memsweep): 6.0 s / 9.0 s = 0.67x" in table
    assert ("At 10 seeds the notebook's 6.0 s (the median of its 3 runs, 5.0-9.0 s) is under the least any "
            "engine needs here") in table and "take 7.1 s, so at most 0.85x" in table
    out["pairs_10"]["notebook_memsweep_ratio"].append([6.05, 9.0, 0.67])  # an even count: the median rounded
    assert "the notebook's 6.0 s (the median of its 4 runs, 5.0-9.0 s)" in bench.markdown(out)


def test_the_step_beside_its_gemms_and_the_libraries(bench):
    side = bench.step_beside_gemms(1, rounds=2)
    assert side["rounds"] == 2 and 0 <= side["step_slower_rounds"] <= 2
    assert side["step_s"] > 0 and side["in_order_s"] > 0 and side["others_s"] > 0
    assert 0 <= side["step_slower_than_parts_rounds"] <= side["step_slower_rounds"]
    assert side["least_s"] > 0 and 0 <= side["step_slower_than_least_rounds"] <= 2
    libs = bench.gemm_libraries(repeats=3)
    assert set(libs) == {"forward", "input_gradient", "weight_gradient"}
    assert all(set(r) == {"torch", "onednn", "openblas"} and all(v > 0 for v in r.values()) for r in libs.values())


@pytest.mark.numerics
@pytest.mark.parametrize("rows,per_member", [(128, False), (96, False), (64, True)])
def test_the_blocked_step_is_the_same_sgd_step_in_row_panels(bench, rows, per_member):
    import torch
    from trainables import packs

    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(2, 16, 64, generator=gen), torch.randint(0, 10, (2, 16), generator=gen)
    a, b, fresh = (packs.build("mlp", (1, 8, 8), 10, [3, 4], hidden=[512, 512]) for _ in range(3))
    va, vb = ([torch.zeros_like(t) for t in p.tensors()] for p in (a, b))
    with torch.no_grad():
        for _ in range(3):  # momentum carried across steps
            logits_a = a.sgd_step(x, y, 0.05, 0.9, va)
            logits_b, panels = bench.blocked_sgd_step(b, x, y, 0.05, 0.9, vb, rows=rows, per_member=per_member)
    # the 512 x 512 layer only, in ceil(512 / rows) panels (a member at a time: twice as many)
    assert panels == -(-512 // rows) * (2 if per_member else 1)
    assert not torch.equal(a.weights[1], fresh.weights[1])
    torch.testing.assert_close(logits_a, logits_b)
    for p, q in zip([*a.tensors(), *va], [*b.tensors(), *vb]):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_blocked_step_times(bench):
    times = bench.blocked_step_times(1, {"member_rows_128": (128, True)}, repeats=1)
    assert set(times) == {"step", "member_rows_128"} and all(t > 0 for t in times.values())


def test_the_steps_other_ops_are_the_step_without_its_gemms(bench):
    """`other_ops_step` runs exactly the torch calls of `PackedMLP.sgd_step` but its eight GEMMs
    (three forward `baddbmm`, two input-gradient `bmm`, three weight-gradient `baddbmm_`)."""
    from collections import Counter

    import torch
    from torch.profiler import ProfilerActivity, profile
    from trainables import packs

    def calls(fn) -> Counter:
        fn()  # warm
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        views = {"aten::slice", "aten::transpose", "aten::unsqueeze", "aten::as_strided", "aten::expand",
                 "aten::select", "aten::view", "aten::t", "aten::squeeze"}
        return Counter(e.name for e in prof.events() if e.cpu_parent is None and e.name not in views)

    k, b = 2, bench.BATCH
    pack = packs.build("mlp", (bench._C, bench._H, bench._W), bench.SIZES[-1], list(range(k)), hidden=bench.HIDDEN)
    velocity = [torch.zeros_like(t) for t in pack.tensors()]
    x, y = torch.randn(k, b, bench.SIZES[0]), torch.randint(0, bench.SIZES[-1], (k, b))
    logits = torch.empty(k, 4 * b, bench.SIZES[-1])
    with torch.no_grad():
        step = calls(lambda: pack.sgd_step(x, y, 0.01, 0.9, velocity, logits=logits[:, b:2 * b]))
    others = calls(bench.other_ops_step(k))
    assert step - Counter({"aten::baddbmm": 3, "aten::bmm": 2, "aten::baddbmm_": 3}) == others, (step, others)


@pytest.mark.numerics
def test_the_least_step_of_these_calls_is_the_steps_gemms_and_weight_updates(bench):
    """`gemms_step(updates=True)` runs the step's eight GEMMs and its three weight updates from
    their momentum, on the same shapes and in the order `PackedMLP.sgd_step` makes them, and
    nothing else; without updates, the eight GEMMs alone. Its weights move, and stay finite and
    bounded over the epochs `gemms_in_order` runs."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from trainables import packs

    views = {"aten::slice", "aten::transpose", "aten::unsqueeze", "aten::as_strided", "aten::expand",
             "aten::select", "aten::view", "aten::t", "aten::squeeze"}

    def calls(fn) -> list[tuple[str, tuple]]:
        fn()
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            fn()
        return [(e.name, tuple(map(tuple, e.input_shapes))[:2]) for e in prof.events()  # not out=
                if e.cpu_parent is None and e.name not in views]

    def subsequence(part, whole) -> bool:
        it = iter(whole)
        return all(any(c == w for w in it) for c in part)

    k, b = 2, bench.BATCH
    pack = packs.build("mlp", (bench._C, bench._H, bench._W), bench.SIZES[-1], list(range(k)), hidden=bench.HIDDEN)
    velocity = [torch.zeros_like(t) for t in pack.tensors()]
    x, y = torch.randn(k, b, bench.SIZES[0]), torch.randint(0, bench.SIZES[-1], (k, b))
    with torch.no_grad():
        step = calls(lambda: pack.sgd_step(x, y, 0.01, 0.9, velocity))
    gemms = calls(bench.gemms_step(k))
    least = bench.gemms_step(k, updates=True)
    before = [w.clone() for w in least.weights]
    mine = calls(least)
    assert [n for n, _ in gemms] == ["aten::baddbmm"] * 3 + ["aten::bmm", "aten::baddbmm_"] * 2 + ["aten::baddbmm_"]
    assert [c for c in mine if c[0] != "aten::sub_"] == gemms
    assert [n for n, _ in mine].count("aten::sub_") == 3
    assert subsequence(gemms, step) and subsequence(mine, step), (mine, step)
    for _ in range(4 * bench.STEPS):  # the warm-up and three epochs of gemms_in_order
        least()
    for w, w0 in zip(least.weights, before):
        assert not torch.equal(w, w0) and torch.isfinite(w).all() and w.abs().max() < 10 * w0.abs().max()


@pytest.mark.parametrize("argv,named", [(["--tune-seeds", "0"], "--tune-seeds 0: must be 1 or more"),
                                        (["--pairs", "-1"], "--pairs -1: must be 0 or more"),
                                        (["--gpus-per-trial", "0", "--device", "cuda"], "--gpus-per-trial 0.0: must be more than 0"),
                                        (["--from-json", "/nonexistent/results.json"], "--from-json /nonexistent/results.json: cannot read it")])
def test_bad_arguments_are_one_clear_line_and_measure_nothing(argv, named):
    outputs = [RUN.parent / name for name in ("results.json", "results_quick.json", "seeds_curve.html")]
    before = [f.stat().st_mtime_ns if f.exists() else None for f in outputs]
    proc = subprocess.run([sys.executable, str(RUN), *argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and named in proc.stderr.strip().splitlines()[-1], proc.stderr
    assert "Traceback" not in proc.stderr and not proc.stdout
    assert [f.stat().st_mtime_ns if f.exists() else None for f in outputs] == before


def test_the_store_scale_benchmark_writes_a_store_every_command_reads(tmp_path):
    """benchmarks/store_scale.py's store, written with the real writer: complete and intact."""
    spec = importlib.util.spec_from_file_location("store_scale", RUN.parent / "store_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_store(str(tmp_path), 3)
    status = subprocess.run([sys.executable, "-m", "sweep.cli", "status", "fig1-difficulty", "--results",
                             str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert status.returncode == 0 and "total: 3 seeds, 3 done, 0 damaged" in status.stdout, status.stdout + status.stderr


def test_the_fashion_benchmark_refuses_no_seeds():
    proc = subprocess.run([sys.executable, str(RUN.parent / "fashion.py"), "--seeds", "0"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and proc.stderr.strip() == "benchmarks/fashion.py: --seeds 0: must be 1 or more"
