"""The benchmarks' own arithmetic and contenders, on the CPU: benchmarks/run.py's FLOP counts, the
notebook loop it measures memsweep against, its table and the GPU mode's refusal without a GPU;
gemm_survey.py's GEMMs beside the step, and blocked_step.py's blocked step."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"
SURVEY, BLOCKED = RUN.parent / "gemm_survey.py", RUN.parent / "blocked_step.py"
LR_GRID = RUN.parent / "lr_grid.py"
# Ops that only view a tensor: left out when the profiled calls of two steps are compared.
VIEWS = frozenset(
    "aten::slice aten::transpose aten::unsqueeze aten::as_strided aten::expand aten::select aten::view aten::t "
    "aten::squeeze".split()
)


def _step_inputs(survey, k: int):
    """A pack of k of the survey's MLP, zero momentum, and one batch of random inputs and labels."""
    import torch

    from trainables import packs

    b, sizes = survey.shared.BATCH, survey.shared.SIZES
    pack = packs.build(
        "mlp",
        (survey.shared._C, survey.shared._H, survey.shared._W),
        sizes[-1],
        list(range(k)),
        hidden=survey.shared.HIDDEN,
    )
    velocity = [torch.zeros_like(t) for t in pack.tensors()]
    return pack, velocity, torch.randn(k, b, sizes[0]), torch.randint(0, sizes[-1], (k, b))


def _outputs() -> dict[Path, int]:
    """What the benchmarks write (their JSON, the curve), and when each was last written."""
    return {f: f.stat().st_mtime_ns for f in [*RUN.parent.glob("*.json"), *RUN.parent.glob("*.html")]}


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load(RUN, "benchmark_run")


@pytest.fixture(scope="module")
def survey():
    return _load(SURVEY, "benchmark_gemm_survey")


@pytest.fixture(scope="module")
def blocked():
    return _load(BLOCKED, "benchmark_blocked_step")


def test_flop_counts_by_hand(bench):
    # 4 -> 3 -> 2: multiply-adds 12 and 6; forward, weight and input gradients 2 each, no input
    # gradient for the first layer: 6 x 18 - 2 x 12.
    assert bench.train_flops([4, 3, 2]) == 84
    # The digits preset: 64 -> 512 -> 512 -> 10, 1,437 train and 360 test examples, one epoch
    # trained and scored, 100 seeds x 3 variants.
    macs = 64 * 512 + 512 * 512 + 512 * 10
    per_seed = 1437 * (6 * macs - 2 * 64 * 512) + 2 * macs * (1437 + 360)
    spec = bench.presets.resolve("fig1-difficulty", "digits")
    assert bench.fig1_flops(spec) == per_seed * 300 == 1_071_304_704_000
    assert bench.linear_at(100, 5, 10.0, 10, 20.0) == pytest.approx(200.0)  # 2 s a seed from 10 s at 5


@pytest.mark.numerics
def test_the_notebook_loop_trains_and_scores_every_example(bench):
    spec = bench.presets.resolve("fig1-difficulty", "digits", ["model.hidden=[32]"])
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
    proc = subprocess.run(
        [sys.executable, str(RUN), "--device", "cuda"], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "--device cuda" in proc.stderr and "no CUDA device" in proc.stderr
    assert (gpu_json.stat().st_mtime_ns if gpu_json.exists() else None) == before  # nothing written


def test_gemm_times(survey):
    g = survey.gemm_times(1, repeats=3, flushed_repeats=2)
    assert set(g) == {"best_s", "median_s", "flushed_s"} and all(v > 0 for v in g.values())
    assert g["best_s"] <= g["median_s"]  # the best of three calls is no slower than their median
    assert survey.gemms_in_order(1, repeats=1) > 0


def _results() -> dict:
    """A results dict as run.py writes it, small."""
    return {
        "date": "d",
        "machine": "m",
        "torch": "t",
        "command": "c",
        "cores": 2,
        "seeds": {
            10: {
                "notebook_s": 5.0,
                "memsweep_s": 10.0,
                "notebook/memsweep": 0.5,
                "engine_s": 4.0,
                "floor_s": 6.0,
                "notebook/floor": 0.83,
            }
        },
        "fixed_cost": {
            "one_seed_sweep_s": 8.0,
            "one_seed_sweep_runs": [8.0],
            "floor_s": 4.0,
            "python_and_ray_import_s": 1.0,
            "ray_init_s": 2.0,
            "trial_torch_import_s": 1.0,
        },
        "tune_per_seed": {"scaled_to_100_s": 900.0, "seeds": [2, 4], "measured_s": [20.0, 38.0]},
        "hardware": {"matmul_gflops_1_thread": 90.0, "dram_gbs_1_thread": 40.0, "last_level_cache_mib": 32},
        "step": {
            "pack_3": {
                "state_in": "7 MiB, 120 GB/s",
                "ms_per_seed_epoch": 60.0,
                "floor_ms": 26.0,
                "flop_ms": 26.0,
                "byte_ms": 6.0,
                "fraction_of_floor": 0.43,
            }
        },
    }


def test_the_table_is_one_markdown_table_of_the_run(bench):
    out = _results()
    table = bench.table(out)
    lines = table.splitlines()
    assert lines[:2] == ["| measure | result |", "|---|---|"]
    assert all(line.startswith("| ") and line.endswith(" |") and line.count(" | ") == 1 for line in lines[2:])
    assert (
        "| 10 seeds x 3 | notebook 5.0 s · memsweep 10.0 s · **0.50x** · engine alone 4.0 s · floor 6.0 s (0.83x) |"
    ) in lines
    assert (
        "| step, pack of 3 (7 MiB, 120 GB/s) | 60.0 ms a seed-epoch · floor 26.0 ms (FLOPs 26.0, bytes 6.0) · "
        "**43%** of the floor |"
    ) in lines
    assert (
        "| one Tune trial per seed, 100 seeds x 3 | 900.0 s (line through 20.0 s at 2 and 38.0 s at 4 seeds) |" in lines
    )
    assert "bare one-trial Tune sweep" not in table  # a results file from before it was measured
    # With the bare Tune sweep and the all-core peak: the least any engine needs, the sweep and then the
    # job's FLOPs (35.7 GFLOP a seed-run x 30 = 107 GFLOP at 180 GFLOP/s: 0.6 s after the 6.5 s).
    out["fixed_cost"].update(tune_floor_s=6.5, bare_tune_runs=[6.5, 7.1])
    out["hardware"]["matmul_gflops_2_threads"] = 180.0
    out["pairs_10"] = {"notebook_memsweep_ratio": [[6.0, 9.0, 0.67], [9.0, 9.5, 0.95]], "median_ratio": 0.81}
    lines = bench.table(out).splitlines()
    assert any(line.startswith("| 10 seeds x 3 |") and line.endswith("· any engine 7.1 s (0.70x) |") for line in lines)
    assert "| bare one-trial Tune sweep | 6.5 s (fastest of 6.5, 7.1) |" in lines
    assert "| pairs at 10 seeds, alternating | 6.0 / 9.0 s (0.67x) · 9.0 / 9.5 s (0.95x) · median **0.81x** |" in lines


def test_the_survey_and_blocked_tables(survey, blocked):
    step = {
        "ms_per_seed_epoch": 46.8,
        "floor_ms": 27.0,
        "state_in": "7 MiB, 128 GB/s",
        "gemm_best_ms": 34.5,
        "gemm_median_ms": 35.4,
        "gemm_flushed_ms": 74.5,
        "gemms_in_order_ms": 36.0,
        "in_order_rounds": [7, 7],
        "other_ops_ms": 4.5,
        "parts_rounds": [6, 7],
        "gemms_in_step_ms": 36.2,
        "profile": {"gemms_share": 0.77, "op_shares": {"baddbmm": 0.366}},
    }
    out = {
        "date": "d",
        "machine": "m",
        "torch": "t",
        "command": "c",
        "matmul_gflops_1_thread": 90.0,
        "step": {"pack_3": step},
        "libraries": {"forward": {"torch": 78.0, "onednn": 72.0, "openblas": 81.0}},
    }
    lines = survey.table(out).splitlines()
    assert "| pack of 3: the 8 GEMMs alone, hot best / hot median / cache flushed | 34.5 / 35.4 / 74.5 ms |" in lines
    assert (
        "| pack of 3: in the step's order, over the pack's state | GEMMs 36.0 ms (75% of the floor; the step "
        "slower in 7 of 7 rounds) · other ops 4.5 ms · both 40.5 ms (67% of the floor; the step slower in 6 of 7 "
        "rounds) |"
    ) in lines
    assert "| 512 x 512 forward, one member, GFLOP/s | torch 78.0 · onednn 72.0 · openblas 81.0 |" in lines
    assert "| best library rate / 1-thread matmul peak | 90% |" in lines
    out = {
        "date": "d",
        "machine": "m",
        "torch": "t",
        "command": "c",
        "pack_size": 3,
        "repeats": 5,
        "ms_per_seed_epoch": {"step": 44.0, "rows_64": 52.8, "member_rows_128": 55.0},
    }
    lines = blocked.table(out).splitlines()
    assert "| panels of 64 rows | 52.8 ms (1.20x the step) |" in lines
    assert "| panels of 128 rows, a member at a time | 55.0 ms (1.25x the step) |" in lines


@pytest.mark.parametrize("program", [RUN, SURVEY, BLOCKED, LR_GRID])
def test_each_program_prints_its_latest_results_as_one_table(program):
    """The JSON beside each program (results.json for run.py) is one it reads back: --from-json
    prints one markdown table and nothing else, and writes nothing."""
    results = RUN.parent / ("results.json" if program == RUN else program.with_suffix(".json").name)
    before = _outputs()
    proc = subprocess.run(
        [sys.executable, str(program), "--from-json", str(results)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["| measure | result |", "|---|---|"] and all(line.startswith("| ") for line in lines[2:])
    assert _outputs() == before


def test_the_step_beside_its_gemms_and_the_libraries(survey):
    side = survey.step_beside_gemms(1, rounds=2)
    assert side["rounds"] == 2 and 0 <= side["step_slower_rounds"] <= 2
    assert side["step_s"] > 0 and side["in_order_s"] > 0 and side["others_s"] > 0
    assert 0 <= side["step_slower_than_parts_rounds"] <= side["step_slower_rounds"]
    assert side["least_s"] > 0 and 0 <= side["step_slower_than_least_rounds"] <= 2
    libs = survey.gemm_libraries(repeats=3)
    assert set(libs) == {"forward", "input_gradient", "weight_gradient"}
    assert all(set(r) == {"torch", "onednn", "openblas"} and all(v > 0 for v in r.values()) for r in libs.values())


@pytest.mark.numerics
@pytest.mark.parametrize("rows,per_member", [(128, False), (96, False), (64, True)])
def test_the_blocked_step_is_the_same_sgd_step_in_row_panels(blocked, rows, per_member):
    import torch

    from trainables import packs

    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(2, 16, 64, generator=gen), torch.randint(0, 10, (2, 16), generator=gen)
    a, b, fresh = (packs.build("mlp", (1, 8, 8), 10, [3, 4], hidden=[512, 512]) for _ in range(3))
    va, vb = ([torch.zeros_like(t) for t in p.tensors()] for p in (a, b))
    with torch.no_grad():
        for _ in range(3):  # momentum carried across steps
            logits_a = a.sgd_step(x, y, 0.05, 0.9, va)
            logits_b, panels = blocked.blocked_sgd_step(b, x, y, 0.05, 0.9, vb, rows=rows, per_member=per_member)
    # the 512 x 512 layer only, in ceil(512 / rows) panels (a member at a time: twice as many)
    assert panels == -(-512 // rows) * (2 if per_member else 1)
    assert not torch.equal(a.weights[1], fresh.weights[1])
    torch.testing.assert_close(logits_a, logits_b)
    for p, q in zip([*a.tensors(), *va], [*b.tensors(), *vb]):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_blocked_step_times(blocked):
    times = blocked.blocked_step_times(1, {"member_rows_128": (128, True)}, repeats=1)
    assert set(times) == {"step", "member_rows_128"} and all(t > 0 for t in times.values())


def test_the_steps_other_ops_are_the_step_without_its_gemms(survey):
    """`other_ops_step` runs exactly the torch calls of `PackedMLP.sgd_step` but its eight GEMMs
    (three forward `baddbmm`, two input-gradient `bmm`, three weight-gradient `baddbmm_`)."""
    from collections import Counter

    import torch
    from torch.profiler import ProfilerActivity, profile

    def calls(fn) -> Counter:
        fn()  # warm
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        return Counter(e.name for e in prof.events() if e.cpu_parent is None and e.name not in VIEWS)

    k, b = 2, survey.shared.BATCH
    pack, velocity, x, y = _step_inputs(survey, k)
    logits = torch.empty(k, 4 * b, survey.shared.SIZES[-1])
    with torch.no_grad():
        step = calls(lambda: pack.sgd_step(x, y, 0.01, 0.9, velocity, logits=logits[:, b : 2 * b]))
    others = calls(survey.other_ops_step(k))
    assert step - Counter({"aten::baddbmm": 3, "aten::bmm": 2, "aten::baddbmm_": 3}) == others, (step, others)


@pytest.mark.numerics
def test_the_least_step_of_these_calls_is_the_steps_gemms_and_weight_updates(survey):
    """`gemms_step(updates=True)` runs the step's eight GEMMs and its three weight updates from
    their momentum, on the same shapes and in the order `PackedMLP.sgd_step` makes them, and
    nothing else; without updates, the eight GEMMs alone. Its weights move, and stay finite and
    bounded over the epochs `gemms_in_order` runs."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    def calls(fn) -> list[tuple[str, tuple]]:
        fn()
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            fn()
        return [
            (e.name, tuple(map(tuple, e.input_shapes))[:2])
            for e in prof.events()  # not out=
            if e.cpu_parent is None and e.name not in VIEWS
        ]

    def subsequence(part, whole) -> bool:
        it = iter(whole)
        return all(any(c == w for w in it) for c in part)

    k = 2
    pack, velocity, x, y = _step_inputs(survey, k)
    with torch.no_grad():
        step = calls(lambda: pack.sgd_step(x, y, 0.01, 0.9, velocity))
    gemms = calls(survey.gemms_step(k))
    least = survey.gemms_step(k, updates=True)
    before = [w.clone() for w in least.weights]
    mine = calls(least)
    assert [n for n, _ in gemms] == ["aten::baddbmm"] * 3 + ["aten::bmm", "aten::baddbmm_"] * 2 + ["aten::baddbmm_"]
    assert [c for c in mine if c[0] != "aten::sub_"] == gemms
    assert [n for n, _ in mine].count("aten::sub_") == 3
    assert subsequence(gemms, step) and subsequence(mine, step), (mine, step)
    for _ in range(4 * survey.shared.STEPS):  # the warm-up and three epochs of gemms_in_order
        least()
    for w, w0 in zip(least.weights, before):
        assert not torch.equal(w, w0) and torch.isfinite(w).all() and w.abs().max() < 10 * w0.abs().max()


@pytest.mark.parametrize(
    "program,argv,named",
    [
        (RUN, ["--tune-seeds", "0"], "--tune-seeds 0: must be 1 or more"),
        (RUN, ["--pairs", "-1"], "--pairs -1: must be 0 or more"),
        (RUN, ["--gpus-per-trial", "0", "--device", "cuda"], "--gpus-per-trial 0.0: must be more than 0"),
        (RUN, ["--from-json", "/nonexistent/results.json"], "--from-json /nonexistent/results.json: cannot read it"),
        (SURVEY, ["--rounds", "0"], "--rounds 0: must be 1 or more"),
        (
            SURVEY,
            ["--from-json", "/nonexistent/gemm_survey.json"],
            "--from-json /nonexistent/gemm_survey.json: cannot read it",
        ),
        (BLOCKED, ["--pack", "0"], "--pack 0: must be 1 or more"),
        (BLOCKED, ["--from-json", str(RUN)], f"--from-json {RUN}: cannot read it as JSON"),
        (LR_GRID, ["--seeds", "0"], "--seeds 0 --rounds 2: both must be 1 or more"),
        (LR_GRID, ["--from-json", str(RUN)], f"--from-json {RUN}: cannot read it as JSON"),
    ],
)
def test_bad_arguments_are_one_clear_line_and_measure_nothing(program, argv, named):
    before = _outputs()
    proc = subprocess.run([sys.executable, str(program), *argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and named in proc.stderr.strip().splitlines()[-1], proc.stderr
    assert "Traceback" not in proc.stderr and not proc.stdout
    assert _outputs() == before


def test_the_store_scale_benchmark_writes_a_store_every_command_reads(tmp_path):
    """benchmarks/store_scale.py's store, written with the real writer: complete and intact."""
    spec = importlib.util.spec_from_file_location("store_scale", RUN.parent / "store_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_store(str(tmp_path), 3)
    status = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "status", "fig1-difficulty", "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0 and "total: 3 seeds, 3 done, 0 damaged" in status.stdout, (
        status.stdout + status.stderr
    )


def test_the_fashion_benchmark_refuses_no_seeds():
    proc = subprocess.run(
        [sys.executable, str(RUN.parent / "fashion.py"), "--seeds", "0"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0 and proc.stderr.strip() == "benchmarks/fashion.py: --seeds 0: must be 1 or more"
