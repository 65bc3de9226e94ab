"""memsweep's default job against the notebook loop a researcher would write, and against the floor.

One command, one run, every contender on the same data, split, normalization and hyperparameters
(the digits fig1 preset: a 2 x 512 MLP, SGD lr 0.01 momentum 0.9, batch 16, one epoch, then every
train and test example scored; real, randX and randY):

  notebook    per seed a fresh torch.nn MLP, a DataLoader over a TensorDataset, one epoch, then every
              example scored (probability of the label, loss, correct); seeds one after another in
              one process with PyTorch's default threads (all cores);
  tune        one Ray Tune trial per seed running the notebook's code (Tune's default way), measured
              on a few seeds and scaled to 100 on the line through two seed counts;
  memsweep    `sweep launch fig1-difficulty --dataset digits` as a user runs it: a fresh process,
              Ray started and stopped, results stored as Parquet;
  engine      memsweep's pack engine alone (no Ray, no store), one process, 1 thread, as a trial
              of one CPU runs it;
  fixed cost  a one-seed, one-variant sweep end to end; a bare one-trial Ray Tune sweep whose trial
              only imports torch; and the parts no sweep that starts Ray avoids (Python and Ray
              imports, `ray.init`, a trial process importing torch);
  floor       end to end: the bare Tune sweep plus the engine's time over the cores, the least a
              sweep on this engine takes (notebook / floor: the most it could reach); for any
              engine, the bare Tune sweep plus the job's FLOPs at the all-core matmul peak;
  step        the training step per seed-epoch against its floor: its FLOPs at the measured 1-thread
              matmul peak or its bytes at the measured bandwidth of the memory its state lives in,
              whichever is slower;
  pairs       at 30 and at 100 seeds, more notebook / memsweep pairs run alternately, and their
              median ratio; and t(1,000 seeds) / t(100 seeds) end to end.

    python benchmarks/run.py --quick   # 3-5 minutes on a 2-core VM: seeds 10 and 100, one repeat each
    python benchmarks/run.py           # 30-50 minutes there: seeds 10 to 1,000, and the curve
    python benchmarks/run.py --from-json benchmarks/results.json  # the table again, measuring nothing
    python benchmarks/run.py --device cuda   # the GPU mode: digits and the CIFAR-shaped synthetic fig1

Writes benchmarks/results.json (--quick: results_quick.json; and benchmarks/seeds_curve.html, the
curve) and prints one markdown table; the GPU mode writes benchmarks/results_gpu.json. The step's
GEMMs alone and other GEMM libraries: gemm_survey.py; the step blocked in row panels: blocked_step.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))  # flags.py, when this file is loaded from elsewhere

from flags import add_from_json

from sweep import presets, seeding
from sweep import spec as specs
from trainables import budget, corruption, engine, packs
from trainables import data as datasets
from trainables.models import MLP

SWEEP = [sys.executable, "-m", "sweep.cli"]
DEFAULT_THREADS = torch.get_num_threads()  # PyTorch's default, before any measurement changes it
PRESET = presets.resolve("fig1-difficulty", "digits")
HIDDEN, LR, MOMENTUM, BATCH = PRESET.model.hidden, PRESET.optimizer.lr, PRESET.optimizer.momentum, PRESET.batch_size
VARIANTS = PRESET.variants
(_C, _H, _W), _CLASSES = specs.DATASET_SHAPES["digits"]
SIZES = [_C * _H * _W, *HIDDEN, _CLASSES]  # the MLP's layer widths, input to logits
N_TRAIN = specs.TRAIN_SIZES["digits"]
STEPS = -(-N_TRAIN // BATCH)  # SGD steps per epoch


# --- the notebook loop ------------------------------------------------------------------------


def variant_data(variant: str, spec: specs.DifficultySpec = PRESET) -> datasets.Data:
    d = datasets.load(spec.dataset)
    c = spec.corruption_of(variant)
    return corruption.apply(d, c.kind, c.p, seeding.derive_seed(0, "corruption", variant))[0]


def notebook_seed(
    d: datasets.Data, seed: int, spec: specs.DifficultySpec = PRESET, device: str = "cpu"
) -> dict[str, np.ndarray]:
    """One seed as a notebook does it: train one epoch, then score every example. On a GPU the
    model lives there and each batch is moved to it (`DataLoader` over CPU tensors, pinned)."""
    torch.manual_seed(seed)
    model = MLP(int(np.prod(d.input_shape)), spec.model.hidden, d.num_classes).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=spec.optimizer.lr, momentum=spec.optimizer.momentum)
    loader = DataLoader(
        TensorDataset(d.train.x.flatten(1), d.train.y),
        batch_size=spec.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=device != "cpu",
    )
    model.train()
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    out = {}
    with torch.no_grad():
        for name in ("train", "test"):
            s = d.split(name)
            parts = []
            for lo in range(0, len(s.y), 10_000):  # the 50,000 CIFAR-shaped images in slices
                x, y = s.x[lo : lo + 10_000].flatten(1).to(device), s.y[lo : lo + 10_000].to(device)
                logp = torch.log_softmax(model(x), dim=1)
                lp = logp.gather(1, y[:, None]).squeeze(1)
                parts.append(torch.stack([lp.exp(), -lp, (logp.argmax(1) == y).float()]).cpu().numpy())
            out[name] = np.concatenate(parts, axis=1)
    return out


def run_notebook(seeds: int, spec: specs.DifficultySpec = PRESET, device: str = "cpu") -> float:
    torch.set_num_threads(DEFAULT_THREADS)  # the notebook's default threads, whatever ran before
    start = time.perf_counter()
    for variant in spec.variants:
        d = variant_data(variant, spec)
        for seed in range(seeds):
            notebook_seed(d, seed, spec, device)
    if device != "cpu":
        torch.cuda.synchronize()
    return time.perf_counter() - start


# --- one Tune trial per seed ------------------------------------------------------------------


def _tune_trial(config):
    from ray import tune

    torch.set_num_threads(1)
    out = notebook_seed(variant_data(config["variant"]), config["seed"])
    tune.report({"train_acc": float(out["train"][2].mean())})


def run_tune_per_seed(seeds: int) -> float:
    import ray
    from ray import tune

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no console box; Tune's loggers stay on (its default)
    start = time.perf_counter()
    ray.init(address="local", include_dashboard=False, logging_level="ERROR")
    with tempfile.TemporaryDirectory() as storage:
        grid = tune.Tuner(
            tune.with_resources(_tune_trial, {"cpu": 1}),
            param_space={"variant": tune.grid_search(list(VARIANTS)), "seed": tune.grid_search(list(range(seeds)))},
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
        ).fit()
    assert grid.num_errors == 0
    ray.shutdown()
    return time.perf_counter() - start


# --- memsweep ---------------------------------------------------------------------------------


def run_memsweep(*sets: str, dataset: str = "digits", options: tuple[str, ...] = ()) -> float:
    return launch_timed(*sets, dataset=dataset, options=options)[0]


def launch_timed(*sets: str, dataset: str = "digits", options: tuple[str, ...] = ()) -> tuple[float, list[str]]:
    """(seconds end to end, the launch's own 'memsweep: ...' lines: its plan, Ray's resources,
    what finished)."""
    with tempfile.TemporaryDirectory() as results:
        args = [*SWEEP, "launch", "fig1-difficulty", "--dataset", dataset, "--results", results, *options]
        args += [a for s in sets for a in ("--set", s)]
        start = time.perf_counter()
        proc = subprocess.run(args, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        return seconds, [line for line in proc.stdout.splitlines() if line.startswith("memsweep: ")][:3]


def run_engine(seeds: int) -> dict[str, float]:
    """The pack engine alone on the preset's work, as a trial of one CPU runs it: packs sized to
    its share of the last-level cache, 1 thread. A sweep splits this work over its trials, one a
    core, so its compute takes at least this / cores."""
    torch.set_num_threads(1)
    k = PRESET.resolved_pack_size(seeds, "cpu", cache_bytes=budget.cache_share_bytes(1.0))  # as sweep/trial.py
    train = total = 0.0
    for variant in VARIANTS:
        d = variant_data(variant)
        for lo in range(0, seeds, k):
            members = range(lo, min(seeds, lo + k))
            pack = packs.build("mlp", d.input_shape, 10, list(members), hidden=HIDDEN)
            chunk = budget.score_chunk(
                int(PRESET.memory_budget_gb * 2**30), len(members), SIZES[0], HIDDEN, SIZES[-1], BATCH, cpu=True
            )  # as a CPU trial scores (sweep/trial.py)
            sched = engine.Schedule(
                lr=LR,
                momentum=MOMENTUM,
                batch_size=BATCH,
                max_epochs=1,
                scored_epochs=(1,),
                score_splits=("train", "test"),
                keep_splits=("train", "test"),
                norms=True,
                chunk=chunk,
            )
            t = time.perf_counter()
            out = engine.run(pack, d, engine.Members(list(members), list(members)), sched)
            total += time.perf_counter() - t
            train += out.state.train_seconds
    return {"seconds": total, "train_seconds": train, "pack_size": k}


# --- the fixed cost and its floor -------------------------------------------------------------

FLOOR_PARTS = """
import time, sys
t0 = time.perf_counter()
import ray
from sweep import embedded
t1 = time.perf_counter()
embedded.settings()
ray.init(address="local", include_dashboard=False, logging_level=40)
t2 = time.perf_counter()
@ray.remote(num_cpus=1)
def torch_import():
    import time
    t = time.perf_counter()
    import torch
    return time.perf_counter() - t
t_torch = ray.get(torch_import.remote())
t3 = time.perf_counter()
embedded.stop()
t4 = time.perf_counter()
print(t1 - t0, t2 - t1, t_torch, t4 - t3)
"""


# A one-trial sweep on an embedded Ray Tune that trains nothing: a fresh process that imports
# Ray and Tune (and memsweep's `sweep.embedded`, Ray's settings and stop), starts Ray as memsweep does
# (loopback only, Tune's automatic loggers off), runs one Tune trial (a function that imports
# torch and reports once; Tune's defaults otherwise) and stops Ray as memsweep does (its processes
# killed at once). memsweep runs its trials under Ray Tune by design (the same code on a laptop
# and a cluster), so this is the fixed floor it is held to; a path that skipped Ray for small
# local sweeps would not be bound by it. The parts above are the floor of any sweep that starts Ray.
BARE_TUNE = """
import os, tempfile
import ray
from ray import tune
from sweep import embedded
embedded.settings()
for key, value in embedded.TUNE_ENV.items():
    os.environ.setdefault(key, value)
ray.init(address="local", include_dashboard=False, logging_level=40)

def trial(config):
    import torch
    tune.report({"threads": torch.get_num_threads()})

with tempfile.TemporaryDirectory() as storage:
    grid = tune.Tuner(tune.with_resources(trial, {"cpu": 1}),
                      run_config=tune.RunConfig(storage_path=storage, verbose=0)).fit()
assert grid.num_errors == 0
embedded.stop()
"""


def bare_tune_sweep() -> float:
    """Seconds end to end of BARE_TUNE in a fresh process, timed as a user's launch is."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", BARE_TUNE], capture_output=True, text=True, cwd=HERE.parent)
    if proc.returncode != 0:
        raise RuntimeError(f"the bare Tune sweep failed: {proc.stderr[-3000:]}")
    return time.perf_counter() - start


def fixed_cost(repeats: int) -> dict[str, float]:
    one, bare = [], []
    runs = [lambda: one.append(run_memsweep("seeds=1", "variants=[real]")), lambda: bare.append(bare_tune_sweep())]
    for i in range(repeats):  # alternating, each first in turn, so that both meet the same machine states
        for run in runs if i % 2 == 0 else runs[::-1]:
            run()
    parts = []
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", FLOOR_PARTS], capture_output=True, text=True, cwd=HERE.parent)
        if proc.returncode != 0:
            raise RuntimeError(f"the fixed cost's parts failed: {proc.stderr[-3000:]}")
        parts.append([time.perf_counter() - start, *map(float, proc.stdout.split()[-4:])])
    # Each part at its fastest of the repeats, so that their sum is a floor, not a typical time.
    best = [min(p[i] for p in parts) for i in range(5)]
    return {
        "one_seed_sweep_s": statistics.median(one),
        "one_seed_sweep_runs": [round(t, 2) for t in one],
        "parts_process_s": best[0],
        "python_and_ray_import_s": best[1],
        "ray_init_s": best[2],
        "trial_torch_import_s": best[3],
        "ray_stop_s": best[4],
        "floor_s": best[1] + best[2] + best[3],
        "parts": "fastest",
        "tune_floor_s": min(bare),
        "bare_tune_runs": [round(t, 2) for t in bare],
        "bare_tune_median_s": statistics.median(bare),
    }


# --- the hardware and the step's floor --------------------------------------------------------


def matmul_peak(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of an n x n matmul with `threads` threads."""
    torch.set_num_threads(threads)
    a, b, c = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    torch.mm(a, b, out=c)
    return 2 * n**3 / min(_timed(lambda: torch.mm(a, b, out=c)) for _ in range(repeats)) / 1e9


def bandwidth(nbytes: int, threads: int = 1, repeats: int = 20) -> float:
    """Best GB/s of `y += x` over float32 arrays of `nbytes` each (reads 2, writes 1)."""
    torch.set_num_threads(threads)
    x, y = torch.rand(nbytes // 4), torch.rand(nbytes // 4)
    y.add_(x)
    return 3 * nbytes / min(_timed(lambda: y.add_(x)) for _ in range(repeats)) / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def train_flops(sizes: list[int]) -> int:
    """FLOPs of one training example through an MLP of these widths (input to logits): forward 2,
    weight gradients 2, input gradients 2 (none for the first layer) per multiply-add."""
    macs = [i * o for i, o in zip(sizes[:-1], sizes[1:])]
    return 6 * sum(macs) - 2 * macs[0]


def linear_at(n: int, n1: int, t1: float, n2: int, t2: float) -> float:
    """The line through (n1, t1) and (n2, t2) at n: a contender measured on few seeds, scaled
    without scaling its fixed part (a Ray start, data loading, warm-up)."""
    return t1 + (t2 - t1) / (n2 - n1) * (n - n1)


def step_floor(peak_gflops: float, bw_gbs: float) -> dict[str, float]:
    """The MLP training step's floor per seed-epoch (1,437 examples at batch 16), 1 thread.

    FLOPs: forward 2, weight gradients 2, input gradients 2 (none for the first layer) per
    multiply-add per example. Bytes: each parameter and its momentum buffer are read or written
    7 times a step (forward read, backward read, momentum read and write, parameter read and
    write, momentum read by the update), at the bandwidth of where a pack of k seeds' state lives."""
    flops = N_TRAIN * train_flops(SIZES)
    params = budget.mlp_param_count(SIZES[0], HIDDEN, SIZES[-1])
    moved = STEPS * 7 * 4 * params
    return {
        "gflop": flops / 1e9,
        "gbyte": moved / 1e9,
        "flop_s": flops / (peak_gflops * 1e9),
        "byte_s": moved / (bw_gbs * 1e9),
        "floor_s": max(flops / (peak_gflops * 1e9), moved / (bw_gbs * 1e9)),
    }


# One epoch of training and nothing else: no scoring, no norms (the step alone).
TRAIN_ONLY = engine.Schedule(
    lr=LR, momentum=MOMENTUM, batch_size=BATCH, max_epochs=1, scored_epochs=(1,), score_splits=(), norms=False
)


def measure_step(k: int, repeats: int = 3) -> float:
    """Seconds of training per seed-epoch for a pack of k, 1 thread (best of `repeats`)."""
    torch.set_num_threads(1)
    d = variant_data("real")
    best = float("inf")
    for _ in range(repeats):
        pack = packs.build("mlp", d.input_shape, 10, list(range(k)), hidden=HIDDEN)
        out = engine.run(pack, d, engine.Members(list(range(k)), list(range(k))), TRAIN_ONLY)
        best = min(best, out.state.train_seconds / k)
    return best


# --- the GPU mode -----------------------------------------------------------------------------


def gpu_matmul_peak(dtype: torch.dtype, tf32: bool = False, n: int = 8192, repeats: int = 10) -> float:
    """Best TFLOP/s of an n x n matmul on the GPU (events around each call)."""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    a, b = torch.randn(n, n, device="cuda", dtype=dtype), torch.randn(n, n, device="cuda", dtype=dtype)
    c = a @ b
    best = float("inf")
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        torch.mm(a, b, out=c)
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    torch.backends.cuda.matmul.allow_tf32 = False
    return 2 * n**3 / best / 1e12


def fig1_flops(spec: specs.DifficultySpec) -> float:
    """FLOPs of a fig1 sweep's models: `train_flops` per training example and epoch, then 2 per
    multiply-add per scored example at each recorded epoch, per seed and variant."""
    (c, h, w), classes = specs.DATASET_SHAPES[spec.dataset]
    sizes = [c * h * w, *spec.model.hidden, classes]
    macs = sum(i * o for i, o in zip(sizes[:-1], sizes[1:]))
    n_train, n_test = specs.TRAIN_SIZES[spec.dataset], specs.TEST_SIZES[spec.dataset]
    per_seed = max(spec.epochs) * n_train * train_flops(sizes) + len(spec.epochs) * 2 * macs * (n_train + n_test)
    return per_seed * spec.seeds * len(spec.variants)


def gpu_main(args) -> None:
    """The notebook loop against memsweep on one GPU: the digits preset, and the CIFAR-shaped
    synthetic fig1 (100 seeds x 3 variants of the 2 x 4096 MLP, 50,000 train / 10,000 test images,
    every example scored), at fp32 and (the synthetic job) at tf32."""
    if not torch.cuda.is_available():
        sys.exit(
            "benchmarks/run.py: --device cuda: torch sees no CUDA device (torch.cuda.is_available() is "
            "False); run it where a GPU is visible, or without --device for the CPU benchmark"
        )
    out: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(),
        "command": "python benchmarks/run.py --device cuda",
    }
    peaks = {
        "fp32": gpu_matmul_peak(torch.float32),
        "tf32": gpu_matmul_peak(torch.float32, tf32=True),
        "bf16": gpu_matmul_peak(torch.bfloat16),
    }
    out["matmul_tflops"] = {k: round(v, 1) for k, v in peaks.items()}
    say(f"{out['gpu']}: matmul TFLOP/s {out['matmul_tflops']}")
    # fp32 as PyTorch runs it by default; tf32 as `--set precision=tf32` (the synthetic job's 3.3
    # PFLOP take ~50 s at an H100's 67 fp32 TFLOP/s alone). The notebook runs at the same precision.
    out["fig1"] = {
        f"{dataset}_{precision}": gpu_fig1(args, dataset, precision, peaks[precision])
        for dataset, precision in (("digits", "fp32"), ("synthetic", "fp32"), ("synthetic", "tf32"))
    }
    (HERE / "results_gpu.json").write_text(json.dumps(out, indent=1))
    print(gpu_table(out))


def gpu_fig1(args, dataset: str, precision: str, peak_tflops: float) -> dict:
    """One fig1 job on the GPU: the notebook measured on 1 and `--gpu-notebook-seeds` seeds a
    variant and taken at the preset's seeds on the line through both (data loading and warm-up
    not scaled), against `sweep launch` end to end with its --gpus-per-trial and --cpus-per-trial."""
    spec = presets.resolve("fig1-difficulty", dataset)
    nb_seeds = args.gpu_notebook_seeds
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    t1, t2 = run_notebook(1, spec, "cuda"), run_notebook(nb_seeds, spec, "cuda")
    t_nb = linear_at(spec.seeds, 1, t1, nb_seeds, t2)
    torch.backends.cuda.matmul.allow_tf32 = False
    gpus = ("--gpus-per-trial", str(args.gpus_per_trial), "--cpus-per-trial", str(args.cpus_per_trial))
    t_ms, lines = launch_timed(f"precision={precision}", dataset=dataset, options=gpus)
    flops = fig1_flops(spec)
    say(f"{dataset} {precision}: notebook {t_nb:.1f} s, memsweep {t_ms:.1f} s\n  " + "\n  ".join(lines))
    return {
        "notebook_s": round(t_nb, 1),
        "notebook_measured_s": [round(t1, 1), round(t2, 1)],
        "notebook_seeds_measured": [1, nb_seeds],
        "memsweep_s": round(t_ms, 1),
        "notebook/memsweep": round(t_nb / t_ms, 2),
        "tflop": round(flops / 1e12, 2),
        f"fraction_of_{precision}_peak": round(flops / t_ms / (peak_tflops * 1e12), 3),
        "launch": lines,
    }


def gpu_table(out: dict) -> str:
    """The GPU mode's results as one markdown table."""
    peaks = out["matmul_tflops"]
    rows = [
        ("run", f"{out['date']}, {out['gpu']}, {out['machine']}, torch {out['torch']}, `{out['command']}`"),
        ("matmul peak, TFLOP/s", " · ".join(f"{k} {v}" for k, v in peaks.items())),
    ]
    for name, r in out["fig1"].items():
        share = next(v for k, v in r.items() if k.startswith("fraction_of_"))
        (s1, s2), (t1, t2) = r["notebook_seeds_measured"], r["notebook_measured_s"]
        rows.append(
            (
                f"{name.replace('_', ' ')}, 100 seeds x 3",
                f"notebook {r['notebook_s']} s (line through {t1} s at {s1} and {t2} s at {s2} seeds) · "
                f"memsweep {r['memsweep_s']} s · **{r['notebook/memsweep']:.2f}x** · {r['tflop']} TFLOP: "
                f"{share:.1%} of the peak",
            )
        )
    return md_table(rows)


# --- the run ----------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="seeds 10 and 100, one repeat each, no extra pairs, Tune at 2 and 4 seeds, the step at the "
        "rule's pack only (3-5 minutes on 2 cores)",
    )
    add_from_json(parser)
    parser.add_argument(
        "--tune-seeds",
        type=int,
        default=None,
        help="seeds per variant for the Tune contender, measured at this and twice this (default 5; --quick 2)",
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=None,
        help="notebook / memsweep pairs at each of 30 and 100 seeds in the curve, alternating (the "
        "notebook loop's time varies; default 3 at each, --quick 0)",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cuda: the GPU mode (digits and the CIFAR-shaped synthetic fig1, results_gpu.json)",
    )
    parser.add_argument("--gpus-per-trial", type=float, default=0.25, help="GPU mode: memsweep's --gpus-per-trial")
    parser.add_argument(
        "--gpu-notebook-seeds",
        type=int,
        default=10,
        help="GPU mode: the notebook runs 1 and this many seeds a variant (a line through both, at 100)",
    )
    parser.add_argument("--cpus-per-trial", type=float, default=1, help="GPU mode: memsweep's --cpus-per-trial")
    args = parser.parse_args()
    args.tune_seeds = args.tune_seeds if args.tune_seeds is not None else (2 if args.quick else 5)
    args.pairs = args.pairs if args.pairs is not None else (0 if args.quick else 3)
    for flag, value, least in (
        ("--pairs", args.pairs, 0),
        ("--tune-seeds", args.tune_seeds, 1),
        ("--gpu-notebook-seeds", args.gpu_notebook_seeds, 2),
    ):
        if value < least:
            parser.error(f"{flag} {value}: must be {least} or more")
    for flag, value in (("--gpus-per-trial", args.gpus_per_trial), ("--cpus-per-trial", args.cpus_per_trial)):
        if not value > 0:
            parser.error(f"{flag} {value}: must be more than 0")
    return args


def main() -> None:
    args = parse_args()
    if args.device == "cuda":
        return gpu_main(args)
    if args.from_json is not None:
        out = read_results(args.from_json, "benchmarks/run.py", table)
        return print(table(out))
    cores = os.cpu_count() or 1
    out: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "cores": cores,
        "torch": torch.__version__,
        "command": "python benchmarks/run.py" + (" --quick" if args.quick else ""),
    }
    out["hardware"] = hardware(cores)
    out["step"] = step_against_floor(out["hardware"]["matmul_gflops_1_thread"], args.quick)
    fc = fixed_cost(1 if args.quick else 3)
    out["fixed_cost"] = {key: (round(v, 2) if isinstance(v, float) else v) for key, v in fc.items()}
    say(
        f"fixed cost: one-seed sweep {fc['one_seed_sweep_s']:.1f} s, bare Tune sweep {fc['tune_floor_s']:.1f} s, "
        f"parts {fc['floor_s']:.1f} s"
    )
    out["seeds"] = seed_curve((10, 100) if args.quick else (10, 30, 100, 300, 1000), fc["tune_floor_s"], cores)
    for seeds in (n for n in (30, 100) if n in out["seeds"] and args.pairs > 0):
        out[f"pairs_{seeds}"] = pairs(seeds, args.pairs)
    out["tune_per_seed"] = tune_contender(args.tune_seeds)
    if 1000 in out["seeds"]:
        out["t1000/t100"] = round(out["seeds"][1000]["memsweep_s"] / out["seeds"][100]["memsweep_s"], 2)
        plot(out["seeds"])
    (HERE / ("results_quick.json" if args.quick else "results.json")).write_text(json.dumps(out, indent=1))
    print(table(out))


def read_results(path: Path, program: str, check) -> dict:
    """A results file this benchmark wrote (its seed counts back to ints), checked by formatting it
    with `check`; one line and exit 1 where it is not one."""
    try:
        out = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        sys.exit(f"{program}: --from-json {path}: cannot read it as JSON ({type(exc).__name__}: {exc})")
    try:
        if "seeds" in out:
            out["seeds"] = {int(seeds): row for seeds, row in out["seeds"].items()}  # JSON keys are strings
        check(out)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        sys.exit(
            f"{program}: --from-json {path}: not a results file of this benchmark "
            f"({type(exc).__name__}: {exc}); rerun the benchmark to get one"
        )
    return out


def hardware(cores: int) -> dict:
    """The machine's fp32 matmul peak on 1 thread and on every core, its memory bandwidth on 1
    thread, and its last-level cache by sysfs."""
    peak1, peak_all = matmul_peak(1), matmul_peak(cores)
    bw_dram = bandwidth(256 * 2**20)
    say(f"hardware: matmul {peak1:.0f} GFLOP/s (1 thread), {peak_all:.0f} ({cores}); {bw_dram:.0f} GB/s")
    return {
        "matmul_gflops_1_thread": round(peak1, 1),
        f"matmul_gflops_{cores}_threads": round(peak_all, 1),
        "dram_gbs_1_thread": round(bw_dram, 1),
        "last_level_cache_mib": budget.last_level_cache_bytes() // 2**20,
    }


def step_against_floor(peak1: float, quick: bool) -> dict:
    """The training step per seed-epoch against its floor, at the pack size memsweep picks on this
    machine (and, unless `quick`, twice it and 20). Each at the bandwidth measured over arrays as
    large as that pack's parameters and momentum (where they live: a sysfs cache size is no promise
    of its speed)."""
    k = PRESET.resolved_pack_size(100, "cpu", cache_bytes=budget.cache_share_bytes(1.0))
    step = {}
    for kk in sorted({k} if quick else {k, 2 * k, 20}):
        state = kk * 2 * 4 * budget.mlp_param_count(SIZES[0], HIDDEN, SIZES[-1])
        bw = bandwidth(state // 2)  # y += x over two arrays: the pack's state in all
        t = measure_step(kk, repeats=3 if quick else 7)
        fl = step_floor(peak1, bw)
        step[f"pack_{kk}"] = {
            "ms_per_seed_epoch": round(1e3 * t, 1),
            "floor_ms": round(1e3 * fl["floor_s"], 1),
            "flop_ms": round(1e3 * fl["flop_s"], 1),
            "byte_ms": round(1e3 * fl["byte_s"], 1),
            "state_in": f"{state / 2**20:.0f} MiB, {bw:.0f} GB/s",
            "state_gbs": round(bw, 1),
            "fraction_of_floor": round(fl["floor_s"] / t, 2),
        }
        say(f"step, pack of {kk}: {1e3 * t:.1f} ms, floor {1e3 * fl['floor_s']:.1f} ms")
    return step


def seed_curve(seed_counts: tuple[int, ...], tune_floor_s: float, cores: int) -> dict:
    """Notebook, memsweep and the engine alone at each seed count, and the floor of a sweep on this
    engine: the bare one-trial Tune sweep, then the engine's own work split evenly over the cores,
    one trial a core (a trial's work cannot start before its process has torch, and two trials at
    once run no faster than each alone)."""
    curve = {}
    for seeds in seed_counts:
        t_nb = run_notebook(seeds)
        t_ms = run_memsweep(f"seeds={seeds}")
        eng = run_engine(seeds)
        floor = tune_floor_s + eng["seconds"] / cores
        curve[seeds] = {
            "notebook_s": round(t_nb, 1),
            "memsweep_s": round(t_ms, 1),
            "engine_s": round(eng["seconds"], 1),
            "floor_s": round(floor, 1),
            "notebook/floor": round(t_nb / floor, 2),
            "engine_train_s": round(eng["train_seconds"], 1),
            "engine_pack_size": eng["pack_size"],
            "notebook/memsweep": round(t_nb / t_ms, 2),
        }
        say(
            f"seeds {seeds}: notebook {t_nb:.1f} s, memsweep {t_ms:.1f} s, engine {eng['seconds']:.1f} s, "
            f"floor {floor:.1f} s"
        )
    return curve


def pairs(seeds: int, count: int) -> dict:
    """`count` more notebook / memsweep pairs at `seeds`, alternating A B A B so that both meet the
    same machine states, and their median ratio."""
    runs = []
    for _ in range(count):
        t_nb, t_ms = run_notebook(seeds), run_memsweep(f"seeds={seeds}")
        runs.append((round(t_nb, 1), round(t_ms, 1), round(t_nb / t_ms, 2)))
        say(f"pair at {seeds} seeds: notebook {t_nb:.1f} s, memsweep {t_ms:.1f} s")
    return {"notebook_memsweep_ratio": runs, "median_ratio": statistics.median(r[2] for r in runs)}


def tune_contender(n1: int) -> dict:
    """One Tune trial per seed at n1 and 2 n1 seeds a variant, taken at 100 on the line through
    both, so that the fixed part (Ray's start) is not scaled up with the seeds."""
    n2 = 2 * n1
    t1, t2 = run_tune_per_seed(n1), run_tune_per_seed(n2)
    at_100 = linear_at(100, n1, t1, n2, t2)
    say(f"one Tune trial per seed: {t1:.1f} s at {n1} seeds, {t2:.1f} s at {n2}, {at_100:.0f} s at 100")
    return {"measured_s": [round(t1, 1), round(t2, 1)], "seeds": [n1, n2], "scaled_to_100_s": round(at_100, 1)}


# --- the table --------------------------------------------------------------------------------


def md_table(rows: list[tuple[str, str]], head: tuple[str, str] = ("measure", "result")) -> str:
    """Rows of (measure, result) as a markdown table."""
    lines = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    return "\n".join(lines + [f"| {a} | {b} |" for a, b in rows])


def table(out: dict) -> str:
    """A run's results (results.json) as one markdown table."""
    hw, cores = out["hardware"], out["cores"]
    rows = [
        ("run", f"{out['date']}, {out['machine']}, torch {out['torch']}, `{out['command']}`"),
        (
            "hardware",
            f"matmul {hw['matmul_gflops_1_thread']} GFLOP/s on 1 thread, "
            f"{hw.get(f'matmul_gflops_{cores}_threads', '-')} on {cores}; `y += x` "
            f"{hw['dram_gbs_1_thread']} GB/s over 256 MiB; last-level cache {hw['last_level_cache_mib']} MiB",
        ),
    ]
    return md_table(rows + _curve_rows(out) + _cost_rows(out) + _step_rows(out["step"]))


def _curve_rows(out: dict) -> list[tuple[str, str]]:
    """A row per seed count; the least any engine needs there (the bare Tune sweep, then the job's
    FLOPs at the all-core matmul peak) where the run measured both."""
    fc, peak_all = out["fixed_cost"], out["hardware"].get(f"matmul_gflops_{out['cores']}_threads")
    per_seed = fig1_flops(PRESET) / PRESET.seeds
    rows = []
    for n, r in out["seeds"].items():
        cell = (
            f"notebook {r['notebook_s']} s · memsweep {r['memsweep_s']} s · **{r['notebook/memsweep']:.2f}x** · "
            f"engine alone {r['engine_s']} s · floor {r['floor_s']} s ({r['notebook/floor']:.2f}x)"
        )
        if fc.get("tune_floor_s") and peak_all:
            least = fc["tune_floor_s"] + per_seed * n / (peak_all * 1e9)
            cell += f" · any engine {least:.1f} s ({r['notebook_s'] / least:.2f}x)"
        rows.append((f"{n:,} seeds x {len(VARIANTS)}", cell))
    for n in (n for n in out["seeds"] if f"pairs_{n}" in out):
        pr = out[f"pairs_{n}"]
        rows.append(
            (
                f"pairs at {n:,} seeds, alternating",
                " · ".join(f"{a} / {b} s ({q:.2f}x)" for a, b, q in pr["notebook_memsweep_ratio"])
                + f" · median **{pr['median_ratio']:.2f}x**",
            )
        )
    if "t1000/t100" in out:
        rows.append(("memsweep t(1,000 seeds) / t(100 seeds)", str(out["t1000/t100"])))
    return rows


def _cost_rows(out: dict) -> list[tuple[str, str]]:
    """The Tune contender and the fixed cost."""
    fc, tps = out["fixed_cost"], out["tune_per_seed"]
    (n1, n2), (t1, t2) = tps["seeds"], tps["measured_s"]
    tune = f"{tps['scaled_to_100_s']} s (line through {t1} s at {n1} and {t2} s at {n2} seeds)"
    if 100 in out["seeds"]:
        tune += f" · memsweep **{tps['scaled_to_100_s'] / out['seeds'][100]['memsweep_s']:.0f}x** faster"
    rows = [
        ("one Tune trial per seed, 100 seeds x 3", tune),
        (
            "one-seed, one-variant sweep",
            f"{fc['one_seed_sweep_s']} s (median of {', '.join(map(str, fc.get('one_seed_sweep_runs', [])))})",
        ),
    ]
    if fc.get("tune_floor_s"):
        rows.append(
            (
                "bare one-trial Tune sweep",
                f"{fc['tune_floor_s']} s (fastest of {', '.join(map(str, fc['bare_tune_runs']))})",
            )
        )
    rows.append(
        (
            "parts of any sweep that starts Ray (fastest each)",
            f"imports {fc['python_and_ray_import_s']} s + `ray.init` {fc['ray_init_s']} s + a process importing "
            f"torch {fc['trial_torch_import_s']} s = {fc['floor_s']} s",
        )
    )
    return rows


def _step_rows(step: dict) -> list[tuple[str, str]]:
    """A row per pack size: the step per seed-epoch, 1 thread, against its floor."""
    return [
        (
            f"step, {name.replace('_', ' of ')} ({s['state_in']})",
            f"{s['ms_per_seed_epoch']} ms a seed-epoch · floor {s['floor_ms']} ms (FLOPs {s['flop_ms']}, bytes "
            f"{s['byte_ms']}) · **{s['fraction_of_floor']:.0%}** of the floor",
        )
        for name, s in step.items()
    ]


def plot(curve: dict) -> None:
    import plotly.graph_objects as go

    seeds = list(curve)
    fig = go.Figure(
        [
            go.Scatter(x=seeds, y=[curve[s][k] for s in seeds], name=name, mode="lines+markers")
            for k, name in (
                ("notebook_s", "notebook loop"),
                ("memsweep_s", "memsweep end to end"),
                ("floor_s", "floor (bare Tune sweep + engine / cores)"),
            )
        ]
    )
    fig.update_layout(
        title="Digits fig1 (3 variants): seconds against seeds",
        xaxis_type="log",
        yaxis_type="log",
        xaxis_title="seeds per variant",
        yaxis_title="seconds",
        template="plotly_white",
    )
    fig.write_html(HERE / "seeds_curve.html", include_plotlyjs="cdn")


def say(text: str) -> None:
    """A progress line while measuring."""
    print(text, flush=True)


def machine() -> str:
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor()
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"


if __name__ == "__main__":
    main()
