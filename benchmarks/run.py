"""memsweep's default job against the notebook loop a researcher would write, and against the floor.

One command, one run, every contender on the same data, split, normalization and hyperparameters
(the digits fig1 preset: a 2 x 512 MLP, SGD lr 0.01 momentum 0.9, batch 16, one epoch, then every
train and test example scored; real, randX and randY):

  notebook    per seed a fresh torch.nn MLP, a DataLoader over a TensorDataset, one epoch, then every
              example scored (probability of the label, loss, correct); seeds one after another in
              one process with PyTorch's default threads (all cores);
  tune        one Ray Tune trial per seed running the notebook's code (Tune's default way), measured
              on a few seeds and scaled to all;
  memsweep    `sweep launch fig1-difficulty --dataset digits` as a user runs it: a fresh process,
              Ray started and stopped, results stored as Parquet;
  engine      memsweep's pack engine alone (no Ray, no store), one process, 1 thread, as a trial
              of one CPU runs it;
  fixed cost  a one-seed, one-variant sweep end to end, and the parts no sweep that starts Ray
              and a torch trial process avoids here
              (Python and Ray imports, `ray.init`, a trial process importing torch);
  floor       end to end: the fixed cost's parts plus the engine's time over the cores, the least
              a sweep on this engine takes (notebook / floor: the most it could reach); the
              training step's: its FLOPs at the measured matmul peak and its bytes at the measured
              bandwidth of the memory its state lives in, whichever is slower, beside the step's
              own GEMMs timed alone (hot, and with the cache flushed), run in the step's order over a
              pack's state with nothing else (and again with each layer's weight update added: the
              least step of these torch calls, an estimate), and their share of the step under
              torch.profiler;
  blocked     the step with its 512 x 512 layer's backward in row panels, side by side with the
              step over one synthetic epoch;
  pairs       at 30 and at 100 seeds, more notebook / memsweep pairs run alternately, and their
              median ratio;
              and t(1,000 seeds) / t(100 seeds) end to end.

    python benchmarks/run.py --quick   # 3-5 minutes on a 2-core VM: seeds 10 and 100, one repeat each
    python benchmarks/run.py           # 30-50 minutes there: seeds 10 to 1,000, and the curve
    python benchmarks/run.py --readme  # also rewrite the table in benchmarks/README.md
    python benchmarks/run.py --from-json benchmarks/results.json --readme  # the table again, measuring nothing

    python benchmarks/run.py --device cuda   # the GPU mode: digits and the CIFAR-shaped synthetic fig1

Writes benchmarks/results.json (and benchmarks/seeds_curve.html, the curve) and prints a table; the
GPU mode writes benchmarks/results_gpu.json. No GPU was at hand when the GPU mode was written: it has
run on a CPU machine only as far as its check for a CUDA device (benchmarks/README.md).
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

from sweep import spec as specs  # noqa: E402
from trainables import budget, corruption, data as datasets, engine, packs  # noqa: E402
from trainables.models import MLP, forward_grad  # noqa: E402

SWEEP = [sys.executable, "-m", "sweep.cli"]
DEFAULT_THREADS = torch.get_num_threads()  # PyTorch's default, before any measurement changes it
PRESET = specs.resolve("fig1-difficulty", "digits")
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
    return corruption.apply(d, c.kind, c.p, specs.derive_seed(0, "corruption", variant))[0]


def notebook_seed(d: datasets.Data, seed: int, spec: specs.DifficultySpec = PRESET,
                  device: str = "cpu") -> dict[str, np.ndarray]:
    """One seed as a notebook does it: train one epoch, then score every example. On a GPU the
    model lives there and each batch is moved to it (`DataLoader` over CPU tensors, pinned)."""
    torch.manual_seed(seed)
    model = MLP(int(np.prod(d.input_shape)), spec.model.hidden, d.num_classes).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=spec.optimizer.lr, momentum=spec.optimizer.momentum)
    loader = DataLoader(TensorDataset(d.train.x.flatten(1), d.train.y), batch_size=spec.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed), pin_memory=device != "cpu")
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
                x, y = s.x[lo:lo + 10_000].flatten(1).to(device), s.y[lo:lo + 10_000].to(device)
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
            run_config=tune.RunConfig(storage_path=storage, verbose=0)).fit()
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
            chunk = budget.score_chunk(int(PRESET.memory_budget_gb * 2**30), len(members), SIZES[0], HIDDEN,
                                       SIZES[-1], BATCH, cpu=True)  # as a CPU trial scores (sweep/trial.py)
            sched = engine.Schedule(lr=LR, momentum=MOMENTUM, batch_size=BATCH, max_epochs=1, scored_epochs=(1,),
                                    score_splits=("train", "test"), keep_splits=("train", "test"), norms=True,
                                    chunk=chunk)
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
        for run in (runs if i % 2 == 0 else runs[::-1]):
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
    return {"one_seed_sweep_s": statistics.median(one), "one_seed_sweep_runs": [round(t, 2) for t in one],
            "parts_process_s": best[0], "python_and_ray_import_s": best[1], "ray_init_s": best[2],
            "trial_torch_import_s": best[3], "ray_stop_s": best[4], "floor_s": best[1] + best[2] + best[3],
            "parts": "fastest", "tune_floor_s": min(bare), "bare_tune_runs": [round(t, 2) for t in bare],
            "bare_tune_median_s": statistics.median(bare)}


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


def _best_epoch(make_step, k: int, repeats: int) -> float:
    """Seconds per seed-epoch of a pack of k's step made by `make_step` (after torch is set to 1
    thread), run STEPS times an epoch: the best of `repeats` epochs after a warm-up epoch."""
    torch.set_num_threads(1)
    step = make_step()

    def epoch() -> None:
        for _ in range(STEPS):
            step()

    epoch()
    return min(_timed(epoch) for _ in range(repeats)) / k


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
    return {"gflop": flops / 1e9, "gbyte": moved / 1e9, "flop_s": flops / (peak_gflops * 1e9),
            "byte_s": moved / (bw_gbs * 1e9), "floor_s": max(flops / (peak_gflops * 1e9), moved / (bw_gbs * 1e9))}


def gemm_times(k: int, repeats: int = 200, flushed_repeats: int = 30) -> dict[str, float]:
    """Seconds per seed-epoch of the step's own batched GEMMs alone (forward, weight gradients,
    input gradients at this pack size, batch 16), 1 thread: each at its best and at its median of
    `repeats` calls with its operands hot in cache, and at its median of `flushed_repeats` calls
    each after a write over three times the last-level cache (at least 96 MiB), so that its
    operands come from memory. In the step the operands lie somewhere between: each large one was
    last touched an op or more before, with the pack's other state in between."""
    torch.set_num_threads(1)
    flush = torch.zeros(max(96 * 2**20, 3 * budget.last_level_cache_bytes()) // 4)
    best = median = flushed = 0.0
    for i, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        x, w, g = torch.randn(k, BATCH, n_in), torch.randn(k, n_in, n_out), torch.randn(k, BATCH, n_out)
        b, v, back = torch.randn(k, 1, n_out), torch.randn(k, n_in, n_out), torch.empty(k, BATCH, n_in)
        ops = [lambda: torch.baddbmm(b, x, w), lambda: v.baddbmm_(x.transpose(1, 2), g, beta=0.9)]
        if i > 0:
            ops.append(lambda: torch.bmm(g, w.transpose(1, 2), out=back))
        for op in ops:
            op()
            hot = [_timed(op) for _ in range(repeats)]
            best, median = best + min(hot), median + statistics.median(hot)
            cold = []
            for _ in range(flushed_repeats):
                flush.add_(1.0)
                cold.append(_timed(op))
            flushed += statistics.median(cold)
    per = STEPS / k
    return {"best_s": best * per, "median_s": median * per, "flushed_s": flushed * per}


def gemm_libraries(repeats: int = 300) -> dict[str, dict[str, float]]:
    """GFLOP/s, 1 thread, best of `repeats` calls with operands hot, of the step's three GEMM
    shapes on its 512 x 512 layer (one member, batch 16: forward x W, input gradient g W^T,
    weight gradient x^T g) on three CPU GEMM libraries: torch's `mm` (MKL in the standard wheels:
    the library under the step's batched `bmm` / `baddbmm`), oneDNN (`torch._C._nn.mkldnn_linear`,
    which allocates its output and adds a zero bias each call, where the others write into a
    buffer) and OpenBLAS (numpy's). Whether another well-kept library runs the step's small GEMMs
    faster than the one it uses."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    n = HIDDEN[0]
    x, g, w = (torch.randn(BATCH, n, generator=gen), torch.randn(BATCH, n, generator=gen),
               torch.randn(n, n, generator=gen))
    xt = x.t().contiguous()
    zero = torch.zeros(n)
    out, outw = torch.empty(BATCH, n), torch.empty(n, n)
    # Each shape as torch calls it, as a linear layer (input @ weight^T) for oneDNN, and in numpy.
    shapes = {
        "forward": (lambda: torch.mm(x, w, out=out), (x, w.t().contiguous()), (x.numpy(), w.numpy(), out.numpy())),
        "input_gradient": (lambda: torch.mm(g, w.t(), out=out), (g, w), (g.numpy(), w.numpy().T, out.numpy())),
        "weight_gradient": (lambda: torch.mm(xt, g, out=outw), (xt, g.t().contiguous()),
                            (xt.numpy(), g.numpy(), outw.numpy())),
    }
    rates = {}
    for name, (mkl, (inp, weight), (a, b, c)) in shapes.items():
        flops = 2 * BATCH * n * n
        dnn_in, dnn_w, dnn_b = inp.to_mkldnn(), weight.to_mkldnn(), zero[:weight.shape[0]].to_mkldnn()
        calls = {"torch": mkl, "onednn": lambda: torch._C._nn.mkldnn_linear(dnn_in, dnn_w, dnn_b),
                 "openblas": lambda: np.matmul(a, b, out=c)}
        rates[name] = {}
        with threadpool_limits(1):
            for lib, call in calls.items():
                call()
                rates[name][lib] = round(flops / min(_timed(call) for _ in range(repeats)) / 1e9, 1)
    return rates


def gemms_in_order(k: int, repeats: int = 3, updates: bool = False) -> float:
    """Seconds per seed-epoch of the step's GEMMs and nothing else, in the step's order over a
    pack's own state (weights and momentum as `PackedMLP` holds them, outputs into buffers made
    once), 1 thread, best of `repeats` epochs: what the step's GEMMs cost with their operands
    wherever the step's walk over its state leaves them (no loss, no ReLU, no updates, no
    allocation), to set beside the step in the same run. A measurement of this machine at this
    moment, not a bound: on a noisy VM another moment's step can beat it.

    With `updates`, each layer's weights are also updated from their momentum right after its
    momentum GEMM, as the step does (`sub_`): the least step of these torch calls in the step's
    order (MKL's batched GEMMs called from Python), measured warm: an estimate, not a bound.
    Every such step makes these GEMMs (no larger ones exist: each member has its own weights)
    and updates every weight from its momentum once the momentum has its gradient, a pass no
    BLAS call makes (a GEMM writes one output); it leaves out the ReLUs, the logits' gradient
    and the biases' own calls (about what a layout with each bias as a row of its weight would
    fold into the GEMMs)."""
    return _best_epoch(lambda: gemms_step(k, updates), k, repeats)


def gemms_step(k: int, updates: bool = False):
    """One step of `gemms_in_order` over a fresh pack's state: a function of no arguments."""
    pack = packs.build("mlp", (_C, _H, _W), SIZES[-1], list(range(k)), hidden=HIDDEN)
    weights, biases = [w.detach() for w in pack.weights], [b.detach() for b in pack.biases]
    momentum = [torch.zeros_like(w) for w in weights]
    gen = torch.Generator().manual_seed(0)
    acts = [torch.randn(k, BATCH, SIZES[0], generator=gen)] + [torch.empty(k, BATCH, n) for n in SIZES[1:]]
    grads = [torch.empty(k, BATCH, n) for n in SIZES[1:-1]] + [torch.randn(k, BATCH, SIZES[-1], generator=gen)]
    n = len(weights)
    sign = [LR]

    def step() -> None:
        # With updates, the weights step back and forth (the same call, its sign flipped every
        # step): a fixed logits' gradient followed one way would grow them without bound.
        sign[0] = -sign[0]
        for i in range(n):
            torch.baddbmm(biases[i], acts[i], weights[i], out=acts[i + 1])
        for i in reversed(range(n)):
            if i > 0:
                torch.bmm(grads[i], weights[i].transpose(1, 2), out=grads[i - 1])
            momentum[i].baddbmm_(acts[i].transpose(1, 2), grads[i], beta=MOMENTUM)
            if updates:
                weights[i].sub_(momentum[i], alpha=sign[0])

    step.weights = weights  # for a check that the updates stay finite
    return step


def other_ops_in_order(k: int, repeats: int = 3) -> float:
    """Seconds per seed-epoch of the step's ops other than its eight GEMMs, alone, in the step's
    order over a pack's own state at their real sizes (the ReLUs, the logits' gradient, ReLU's
    backward, the bias momentum, the updates of weights and biases), with the GEMMs' outputs as
    buffers made once; 1 thread, after a warm-up epoch, best of `repeats` epochs:
    `PackedMLP.sgd_step` without its GEMMs. With `gemms_in_order`, the step in its two parts, each
    measured warm and alone: an estimate of what a step made of these torch calls costs at least
    here, not a strict bound (inside the step the parts may meet their operands in other caches)."""
    return _best_epoch(lambda: other_ops_step(k), k, repeats)


def other_ops_step(k: int):
    """One step of `other_ops_in_order` over a fresh pack's state: a function of no arguments."""
    pack = packs.build("mlp", (_C, _H, _W), SIZES[-1], list(range(k)), hidden=HIDDEN)
    weights, biases = [w.detach() for w in pack.weights], [b.detach() for b in pack.biases]
    vel_w, vel_b = [torch.zeros_like(w) for w in weights], [torch.zeros_like(b) for b in biases]
    gen = torch.Generator().manual_seed(0)
    acts = [torch.randn(k, BATCH, n, generator=gen) for n in SIZES]  # each layer's input, the logits last
    backs = [torch.randn(k, BATCH, n, generator=gen) for n in SIZES[:-1]]  # input gradients, before ReLU's
    y = torch.randint(0, SIZES[-1], (k, BATCH), generator=gen)
    n = len(weights)

    def step() -> None:
        for i in range(1, n):
            acts[i].relu_()
        grad = torch.softmax(acts[-1], dim=-1)
        grad.scatter_add_(-1, y.unsqueeze(-1), torch.full_like(grad[..., :1], -1.0)).div_(BATCH)
        ones = grad.new_ones(k, 1, BATCH)
        for i in reversed(range(n)):
            back = torch.ops.aten.threshold_backward(backs[i], acts[i], 0) if i > 0 else None
            vel_b[i].baddbmm_(ones, grad, beta=MOMENTUM)
            weights[i].sub_(vel_w[i], alpha=LR)
            biases[i].sub_(vel_b[i], alpha=LR)
            grad = back

    return step


def blocked_sgd_step(pack, x: torch.Tensor, y: torch.Tensor, lr: float, momentum: float,
                     velocity: list[torch.Tensor], rows: int, per_member: bool = False
                     ) -> tuple[torch.Tensor, int]:
    """`PackedMLP.sgd_step` (all members, no `members`; the same logits and update) with the
    hidden-to-hidden layers of at least 2 x `rows` inputs (here the 512 x 512 one) blocked: the
    backward in row panels of the weight, `rows` inputs each, and per panel the three ops that touch
    it one after another (input gradient, weight gradient into the momentum, update), so that the
    panel of weights and momentum is reused from a near cache instead of streamed three times. A
    batched panel spans the pack's members (K x rows x 512 floats of weights and as many of
    momentum); with `per_member`, each member's panels are done in turn (rows x 512 each), so that
    a panel fits a smaller cache at the price of K times the calls. The lever "keep a block of the
    512 x 512 layer in L2 across its ops", built from torch's own kernels, measured beside the
    step. Returns the step's logits, and the number of panels the blocked layers ran."""
    weights, biases = list(pack.weights), list(pack.biases)
    n = len(weights)
    vel_w, vel_b = velocity[:n], velocity[n:]
    acts, grad = forward_grad(weights, biases, x, y)  # as the step's forward
    ones = grad.new_ones(grad.shape[0], 1, grad.shape[1])
    panels = 0
    for i in reversed(range(n)):
        w, v, a = weights[i], vel_w[i], acts[i]
        if 0 < i < n - 1 and w.shape[1] >= 2 * rows:  # a hidden-to-hidden layer, two panels or more
            groups = [slice(m, m + 1) for m in range(w.shape[0])] if per_member else [slice(None)]
            back = []  # the input gradient, panel by panel (columns), group by group (members)
            for g in groups:
                parts = []
                for r in range(0, w.shape[1], rows):
                    wp, vp = w[g, r:r + rows], v[g, r:r + rows]
                    parts.append(torch.bmm(grad[g], wp.transpose(1, 2)))
                    vp.baddbmm_(a[g, :, r:r + rows].transpose(1, 2), grad[g], beta=momentum)
                    wp.sub_(vp, alpha=lr)
                    panels += 1
                back.append(torch.cat(parts, dim=2))
            back = torch.cat(back) if len(back) > 1 else back[0]
        else:  # as the step does it
            back = torch.bmm(grad, w.transpose(1, 2)) if i > 0 else None
            v.baddbmm_(a.transpose(1, 2), grad, beta=momentum)
            w.sub_(v, alpha=lr)
        vel_b[i].baddbmm_(ones, grad, beta=momentum)
        biases[i].sub_(vel_b[i], alpha=lr)
        grad = torch.ops.aten.threshold_backward(back, a, 0) if i > 0 else None
    return acts[-1], panels


BLOCKINGS = {"rows_32": (32, False), "rows_64": (64, False), "member_rows_64": (64, True),
             "member_rows_128": (128, True)}  # (rows a panel, per member): a panel of weights and momentum
# at a pack of 3 is 384 / 768 KiB batched, 256 / 512 KiB per member, under a 1 MiB L2


def blocked_step_times(k: int, blockings: dict[str, tuple[int, bool]] = BLOCKINGS,
                       repeats: int = 5) -> dict[str, float]:
    """Seconds per seed-epoch, 1 thread, of the step as `PackedMLP.sgd_step` runs it and blocked
    (`blocked_sgd_step`) at each of `blockings`, side by side over the same synthetic epoch (the
    digits shapes, a batch of 16 per member), interleaved, after a warm-up step, best of `repeats`.
    A bare step in a loop: it runs faster than the engine's epoch (`measure_step`: real batches
    gathered by index, a fresh pack, no warm-up), so it is set beside its blockings, not the floor."""
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    xs = torch.randn(STEPS, k, BATCH, SIZES[0], generator=gen)
    ys = torch.randint(0, SIZES[-1], (STEPS, k, BATCH), generator=gen)
    steps = {"step": lambda p, x, y, vel: p.sgd_step(x, y, LR, MOMENTUM, vel)}
    steps.update({name: (lambda r, m: lambda p, x, y, vel: blocked_sgd_step(p, x, y, LR, MOMENTUM, vel, r, m))(*how)
                  for name, how in blockings.items()})

    def epoch(fn) -> float:
        pack = packs.build("mlp", (_C, _H, _W), SIZES[-1], list(range(k)), hidden=HIDDEN)
        vel = [torch.zeros_like(t) for t in pack.tensors()]
        with torch.no_grad():
            fn(pack, xs[0], ys[0], vel)  # warm
            start = time.perf_counter()
            for s in range(STEPS):
                fn(pack, xs[s], ys[s], vel)
            return (time.perf_counter() - start) / k

    best = dict.fromkeys(steps, float("inf"))
    for _ in range(repeats):
        for name, fn in steps.items():
            best[name] = min(best[name], epoch(fn))
    return best


# One epoch of training and nothing else: no scoring, no norms (the step alone).
TRAIN_ONLY = engine.Schedule(lr=LR, momentum=MOMENTUM, batch_size=BATCH, max_epochs=1, scored_epochs=(1,),
                             score_splits=(), norms=False)


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


def step_beside_gemms(k: int, rounds: int = 7) -> dict[str, float]:
    """The step as the engine runs it (`measure_step`: a fresh pack's epoch, its batches gathered,
    as a fig1 trial runs its only epoch), its GEMMs in the step's order (`gemms_in_order`) and its
    other ops in order (`other_ops_in_order`), and its GEMMs with the weights' updates (the least
    step of these torch calls, `gemms_in_order(updates=True)`), all warm, one epoch of each per
    round, alternating, so that all meet the same machine state: each's best, and in how many
    rounds the step took longer than its GEMMs alone, than its two parts alone together, and
    than the least step of these calls. Estimates of what a step made of these torch calls, in
    this order, costs here, not bounds: another order or library may do better (the blocked step
    below is another order, measured slower)."""
    steps, orders, others, leasts = [], [], [], []
    for _ in range(rounds):
        steps.append(measure_step(k, repeats=1))
        orders.append(gemms_in_order(k, repeats=1))
        others.append(other_ops_in_order(k, repeats=1))
        leasts.append(gemms_in_order(k, repeats=1, updates=True))
    return {"step_s": min(steps), "in_order_s": min(orders), "others_s": min(others), "least_s": min(leasts),
            "rounds": rounds, "step_slower_rounds": sum(s > o for s, o in zip(steps, orders)),
            "step_slower_than_parts_rounds": sum(s > o + p for s, o, p in zip(steps, orders, others)),
            "step_slower_than_least_rounds": sum(s > q for s, q in zip(steps, leasts))}


def profile_step(k: int, top: int = 5) -> dict:
    """One epoch of a pack of k under torch.profiler, 1 thread: the ops' shares of their self time
    (the largest `top`), and the time of the step's batched GEMMs in place (forward `baddbmm`,
    weight-gradient `baddbmm_`, input-gradient `bmm`): their share of the ops' profiled time, and
    their profiled time per seed-epoch. The profiled epoch runs slower than an unprofiled one, so
    the share times the unprofiled step is what is set beside their time alone (`gemm_times`)."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(1)
    d = variant_data("real")
    members = engine.Members(list(range(k)), list(range(k)))
    engine.run(packs.build("mlp", d.input_shape, 10, list(range(k)), hidden=HIDDEN), d, members, TRAIN_ONLY)  # warm
    pack = packs.build("mlp", d.input_shape, 10, list(range(k)), hidden=HIDDEN)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        engine.run(pack, d, members, TRAIN_ONLY)
    ops = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    total = sum(ops.values())
    gemms = sum(ops.get(name, 0) for name in ("aten::baddbmm", "aten::baddbmm_", "aten::bmm"))
    shares = sorted(ops.items(), key=lambda kv: -kv[1])[:top]
    return {"op_shares": {name.removeprefix("aten::"): round(t / total, 3) for name, t in shares},
            "gemms_share": round(gemms / total, 3), "gemms_in_place_ms": round(gemms / 1e3 / k, 1)}


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
    every example scored); the notebook measured on 1 and `--gpu-notebook-seeds` seeds a variant
    and taken at 100 on the line through both."""
    if not torch.cuda.is_available():
        sys.exit("benchmarks/run.py: --device cuda: torch sees no CUDA device (torch.cuda.is_available() is "
                 "False); run it where a GPU is visible, or without --device for the CPU benchmark")
    out: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "torch": torch.__version__,
                 "gpu": torch.cuda.get_device_name(), "command": "python benchmarks/run.py --device cuda"}
    peaks = {"fp32": gpu_matmul_peak(torch.float32), "tf32": gpu_matmul_peak(torch.float32, tf32=True),
             "bf16": gpu_matmul_peak(torch.bfloat16)}
    out["matmul_tflops"] = {k: round(v, 1) for k, v in peaks.items()}
    say(f"{out['gpu']}: matmul {peaks['fp32']:.1f} TFLOP/s fp32, {peaks['tf32']:.1f} tf32, {peaks['bf16']:.1f} bf16")
    gpus = ("--gpus-per-trial", str(args.gpus_per_trial), "--cpus-per-trial", str(args.cpus_per_trial))
    rows = {}
    # fp32 as PyTorch runs it by default; tf32 as `--set precision=tf32` (the synthetic job's 3.3
    # PFLOP take ~50 s at an H100's 67 fp32 TFLOP/s alone). The notebook runs at the same precision.
    for dataset, precision in (("digits", "fp32"), ("synthetic", "fp32"), ("synthetic", "tf32")):
        spec = specs.resolve("fig1-difficulty", dataset)
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        nb_seeds = args.gpu_notebook_seeds
        # A line through 1 and nb_seeds seeds a variant: data loading and warm-up are not scaled.
        t1, t2 = run_notebook(1, spec, "cuda"), run_notebook(nb_seeds, spec, "cuda")
        t_nb = linear_at(spec.seeds, 1, t1, nb_seeds, t2)
        torch.backends.cuda.matmul.allow_tf32 = False
        t_ms, lines = launch_timed(f"precision={precision}", dataset=dataset, options=gpus)
        flops, peak = fig1_flops(spec), peaks[precision] * 1e12
        rows[f"{dataset}_{precision}"] = {
            "notebook_s": round(t_nb, 1), "notebook_measured_s": [round(t1, 1), round(t2, 1)],
            "notebook_seeds_measured": [1, nb_seeds], "memsweep_s": round(t_ms, 1),
            "notebook/memsweep": round(t_nb / t_ms, 2), "tflop": round(flops / 1e12, 2),
            f"fraction_of_{precision}_peak": round(flops / t_ms / peak, 3), "launch": lines}
        say(f"{dataset} {precision}: notebook {t_nb:.1f} s (a line through 1 and {nb_seeds} seeds x 3, at {spec.seeds}), "
            f"memsweep {t_ms:.1f} s end to end ({t_nb / t_ms:.1f}x); {flops / 1e12:.1f} TFLOP = "
            f"{flops / t_ms / peak:.1%} of the {precision} matmul peak over the whole run\n  " + "\n  ".join(lines))
    out["fig1"] = rows
    (HERE / "results_gpu.json").write_text(json.dumps(out, indent=1))


# --- the run ----------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="seeds 10 and 100, one repeat each, no extra pairs, Tune at 2 and 4 seeds, the step at the "
                             "rule's pack only (3-5 minutes on 2 cores)")
    parser.add_argument("--readme", action="store_true", help="rewrite the table in benchmarks/README.md")
    parser.add_argument("--from-json", type=Path, default=None, metavar="RESULTS",
                        help="measure nothing: print (with --readme, rewrite) the table from a results file this "
                             "version of the benchmark wrote")
    parser.add_argument("--tune-seeds", type=int, default=None,
                        help="seeds per variant for the Tune contender, measured at this and twice this (default 5; "
                             "--quick 2)")
    parser.add_argument("--pairs", type=int, default=None,
                        help="notebook / memsweep pairs at each of 30 and 100 seeds in the curve, alternating (the "
                             "notebook loop's time varies; default 3 at each, --quick 0)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: the GPU mode (digits and the CIFAR-shaped synthetic fig1, results_gpu.json)")
    parser.add_argument("--gpus-per-trial", type=float, default=0.25, help="GPU mode: memsweep's --gpus-per-trial")
    parser.add_argument("--gpu-notebook-seeds", type=int, default=10,
                        help="GPU mode: the notebook runs 1 and this many seeds a variant (a line through both, at 100)")
    parser.add_argument("--cpus-per-trial", type=float, default=1, help="GPU mode: memsweep's --cpus-per-trial")
    args = parser.parse_args()
    args.tune_seeds = args.tune_seeds if args.tune_seeds is not None else (2 if args.quick else 5)
    args.pairs = args.pairs if args.pairs is not None else (0 if args.quick else 3)
    for flag, value, least in (("--pairs", args.pairs, 0), ("--tune-seeds", args.tune_seeds, 1),
                               ("--gpu-notebook-seeds", args.gpu_notebook_seeds, 2)):
        if value < least:
            parser.error(f"{flag} {value}: must be {least} or more")
    for flag, value in (("--gpus-per-trial", args.gpus_per_trial), ("--cpus-per-trial", args.cpus_per_trial)):
        if not value > 0:
            parser.error(f"{flag} {value}: must be more than 0")
    if args.device == "cuda":
        return gpu_main(args)
    if args.from_json is not None:
        try:
            out = json.loads(args.from_json.read_text())
        except (OSError, ValueError) as exc:
            sys.exit(f"run.py: --from-json {args.from_json}: cannot read it as JSON ({type(exc).__name__}: {exc})")
        try:
            out["seeds"] = {int(seeds): row for seeds, row in out["seeds"].items()}  # JSON keys are strings
            markdown(out)
        except (KeyError, TypeError, ValueError) as exc:
            sys.exit(f"run.py: --from-json {args.from_json}: not a results file of this version of the benchmark "
                     f"({type(exc).__name__}: {exc}); rerun the benchmark to get one")
        return write_table(out, args.readme)
    cores = os.cpu_count() or 1
    out: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "cores": cores,
                 "torch": torch.__version__, "command": "python benchmarks/run.py" + (" --quick" if args.quick else "")}

    peak1, peak_all = matmul_peak(1), matmul_peak(cores)
    bw_dram = bandwidth(256 * 2**20)
    out["hardware"] = {"matmul_gflops_1_thread": round(peak1, 1), f"matmul_gflops_{cores}_threads": round(peak_all, 1),
                       "dram_gbs_1_thread": round(bw_dram, 1), "last_level_cache_mib": budget.last_level_cache_bytes() // 2**20}
    say(f"hardware: matmul {peak1:.0f} GFLOP/s (1 thread), {peak_all:.0f} ({cores}); "
        f"bandwidth {bw_dram:.0f} GB/s from 256 MiB arrays (1 thread)")

    # The step against its floor: the pack size memsweep picks on this machine, and a larger one.
    # Each at the bandwidth measured over arrays as large as that pack's parameters and momentum
    # (where they live: a sysfs cache size is no promise of its speed; one VM's "480 MiB L3" moved
    # no more than 38 GB/s from 1.5 MiB up).
    k = PRESET.resolved_pack_size(100, "cpu", cache_bytes=budget.cache_share_bytes(1.0))
    step = {}
    for kk in sorted({k} if args.quick else {k, 2 * k, 20}):
        state = kk * 2 * 4 * budget.mlp_param_count(SIZES[0], HIDDEN, SIZES[-1])
        bw = bandwidth(state // 2)  # y += x over two arrays: the pack's state in all
        where = f"{state / 2**20:.0f} MiB, {bw:.0f} GB/s"
        side = step_beside_gemms(kk)
        t, in_order = side["step_s"], side["in_order_s"]
        fl = step_floor(peak1, bw)
        gemms = gemm_times(kk)
        prof = profile_step(kk)
        step[f"pack_{kk}"] = {"ms_per_seed_epoch": round(1e3 * t, 1), "floor_ms": round(1e3 * fl["floor_s"], 1),
                              "gemm_best_ms": round(1e3 * gemms["best_s"], 1),
                              "gemm_median_ms": round(1e3 * gemms["median_s"], 1),
                              "gemm_flushed_ms": round(1e3 * gemms["flushed_s"], 1),
                              "gemms_best_share_of_step": round(gemms["best_s"] / t, 2),
                              "gemms_in_order_ms": round(1e3 * in_order, 1),
                              "in_order_rounds": [side["step_slower_rounds"], side["rounds"]],
                              "other_ops_ms": round(1e3 * side["others_s"], 1),
                              "parts_rounds": [side["step_slower_than_parts_rounds"], side["rounds"]],
                              "least_library_ms": round(1e3 * side["least_s"], 1),
                              "least_rounds": [side["step_slower_than_least_rounds"], side["rounds"]],
                              "gemms_in_step_ms": round(1e3 * t * prof["gemms_share"], 1),
                              "flop_ms": round(1e3 * fl["flop_s"], 1), "byte_ms": round(1e3 * fl["byte_s"], 1),
                              "state_in": where, "state_gbs": round(bw, 1), "fraction_of_floor": round(fl["floor_s"] / t, 2),
                              "profile": prof}
        if kk == k:  # the lever of blocking the step, side by side with the step over one synthetic epoch
            blocked = blocked_step_times(kk)
            step[f"pack_{kk}"]["blocked_ms"] = {name: round(1e3 * v, 1) for name, v in blocked.items()}
            say(f"  the step blocked, pack of {kk}, side by side over one synthetic epoch: "
                + ", ".join(f"{'the step' if name == 'step' else _blocking_words(name)} {1e3 * v:.1f} ms"
                            for name, v in blocked.items()))
        say(f"step, pack of {kk} (state {where}): {1e3 * t:.1f} ms per seed-epoch; floor {1e3 * fl['floor_s']:.1f} ms "
            f"(FLOPs {1e3 * fl['flop_s']:.1f}, bytes {1e3 * fl['byte_s']:.1f}): {fl['floor_s'] / t:.0%} of the floor; "
            f"its GEMMs alone {1e3 * gemms['best_s']:.1f} ms best, {1e3 * gemms['median_s']:.1f} median, "
            f"{1e3 * gemms['flushed_s']:.1f} from memory, {1e3 * in_order:.1f} in the step's order "
            f"({fl['floor_s'] / in_order:.0%} of the floor; the step slower in {side['step_slower_rounds']} of "
            f"{side['rounds']} alternating rounds); its other ops alone {1e3 * side['others_s']:.1f} ms, the two parts "
            f"{1e3 * (in_order + side['others_s']):.1f} ms ({fl['floor_s'] / (in_order + side['others_s']):.0%} of the floor; "
            f"the step slower in {side['step_slower_than_parts_rounds']} of {side['rounds']}); its GEMMs and weight "
            f"updates alone {1e3 * side['least_s']:.1f} ms ({fl['floor_s'] / side['least_s']:.0%} of the floor; the step "
            f"slower in {side['step_slower_than_least_rounds']} of {side['rounds']}); in the step ~{1e3 * t * prof['gemms_share']:.1f} ms; "
            f"op time: " + ", ".join(f"{n} {v:.0%}" for n, v in prof["op_shares"].items()))
    out["step"] = step
    libs = gemm_libraries()
    out["gemm_libraries"] = libs
    say("the step's 512 x 512 GEMMs (one member, batch 16), GFLOP/s by library: "
        + "; ".join(f"{shape.replace('_', ' ')} " + ", ".join(f"{lib} {v}" for lib, v in rates.items())
                    for shape, rates in libs.items()))

    fc = fixed_cost(1 if args.quick else 3)
    out["fixed_cost"] = {key: (round(v, 2) if isinstance(v, float) else v) for key, v in fc.items()}
    say(f"fixed cost: one-seed sweep {fc['one_seed_sweep_s']:.1f} s; a bare one-trial Tune sweep {fc['tune_floor_s']:.1f} s "
        f"(fastest of {fc['bare_tune_runs']}); the parts of any sweep that starts Ray {fc['floor_s']:.1f} s = imports "
        f"{fc['python_and_ray_import_s']:.1f} + ray.init {fc['ray_init_s']:.1f} + a trial importing torch "
        f"{fc['trial_torch_import_s']:.1f}")

    curve = {}
    for seeds in ((10, 100) if args.quick else (10, 30, 100, 300, 1000)):
        t_nb = run_notebook(seeds)
        t_ms = run_memsweep(f"seeds={seeds}")
        eng = run_engine(seeds)
        # The least a sweep on Ray Tune with this engine could take: a bare one-trial Tune sweep
        # (Ray, Tune, a trial process importing torch, Ray's stop), then the engine's own work split
        # evenly over the cores, one trial a core (a trial's work cannot start before its process
        # has torch, and two trials at once run no faster than each alone).
        floor = fc["tune_floor_s"] + eng["seconds"] / cores
        curve[seeds] = {"notebook_s": round(t_nb, 1), "memsweep_s": round(t_ms, 1), "engine_s": round(eng["seconds"], 1),
                        "floor_s": round(floor, 1), "notebook/floor": round(t_nb / floor, 2),
                        "engine_train_s": round(eng["train_seconds"], 1), "engine_pack_size": eng["pack_size"],
                        "notebook/memsweep": round(t_nb / t_ms, 2)}
        say(f"seeds {seeds:>4} x {len(VARIANTS)} ({DEFAULT_THREADS} notebook threads): notebook {t_nb:.1f} s, memsweep {t_ms:.1f} s "
            f"({t_nb / t_ms:.2f}x), engine alone {eng['seconds']:.1f} s, floor {floor:.1f} s (at most {t_nb / floor:.2f}x)")
    out["seeds"] = curve
    for seeds in (n for n in (30, 100) if n in curve and args.pairs > 0):
        pairs = []
        for _ in range(args.pairs):  # alternating A B A B: both meet the same machine state
            t_nb, t_ms = run_notebook(seeds), run_memsweep(f"seeds={seeds}")
            pairs.append((round(t_nb, 1), round(t_ms, 1), round(t_nb / t_ms, 2)))
            say(f"pair at {seeds} seeds: notebook {t_nb:.1f} s, memsweep {t_ms:.1f} s ({t_nb / t_ms:.2f}x)")
        out[f"pairs_{seeds}"] = {"notebook_memsweep_ratio": pairs,
                                 "median_ratio": statistics.median(p[2] for p in pairs)}
    # Two seed counts, so that the fixed part (Ray's start) is not scaled up with the seeds.
    n1, n2 = args.tune_seeds, 2 * args.tune_seeds
    t1, t2 = run_tune_per_seed(n1), run_tune_per_seed(n2)
    at_100 = linear_at(100, n1, t1, n2, t2)
    out["tune_per_seed"] = {"measured_s": [round(t1, 1), round(t2, 1)], "seeds": [n1, n2],
                            "scaled_to_100_s": round(at_100, 1)}
    say(f"one Tune trial per seed: {t1:.1f} s for {n1} seeds x {len(VARIANTS)}, {t2:.1f} s for {n2} "
        f"-> {at_100:.0f} s for 100 (linear through both)")
    if 1000 in curve:
        out["t1000/t100"] = round(curve[1000]["memsweep_s"] / curve[100]["memsweep_s"], 2)
        plot(curve)
    (HERE / ("results_quick.json" if args.quick else "results.json")).write_text(json.dumps(out, indent=1))
    write_table(out, args.readme)


def write_table(out: dict, readme: bool) -> None:
    """Print the table of a run; with `readme`, also put it in benchmarks/README.md."""
    table = markdown(out)
    print(table)
    if readme:
        path = HERE / "README.md"
        text = path.read_text()
        start, end = "<!-- run.py table -->", "<!-- /run.py table -->"
        head, rest = text.split(start, 1)
        path.write_text(head + start + "\n" + table + "\n" + end + rest.split(end, 1)[1])


def markdown(out: dict) -> str:
    fc, hw = out["fixed_cost"], out["hardware"]
    tune_floor = fc.get("tune_floor_s")  # runs before 2026-12-06 measured only the parts of any Ray sweep
    rows = [f"Measured {out['date']} on {out['machine']}, torch {out['torch']} (`{out['command']}`).", "",
            "| seeds x 3 variants | notebook loop | memsweep end to end | notebook / memsweep | engine alone, 1 thread "
            f"| floor ({'a bare Tune sweep' if tune_floor else 'fixed floor'} + engine / cores) | notebook / floor |",
            "|---|---|---|---|---|---|---|"]
    for seeds, r in out["seeds"].items():
        rows.append(f"| {seeds} | {r['notebook_s']} s | {r['memsweep_s']} s | **{r['notebook/memsweep']}x** | "
                    f"{r['engine_s']} s | {r.get('floor_s', '-')} s | {r.get('notebook/floor', '-')}x |")
    paired = [n for n in out["seeds"] if f"pairs_{n}" in out]
    if paired:
        rows.append("")
    for n in paired:
        pr = out[f"pairs_{n}"]
        rows.append(f"At {n} seeds, {len(pr['notebook_memsweep_ratio'])} more pairs run alternately (notebook, "
                    f"memsweep): " + "; ".join(f"{a} s / {b} s = {r}x" for a, b, r in pr["notebook_memsweep_ratio"])
                    + f": **median {pr['median_ratio']}x**." + ("" if n == paired[-1] else "<br>"))

    def notebook_at(n: int) -> tuple[float, str]:
        """The notebook's time at n seeds for a bound: its median over the curve's run and the pairs'."""
        r = out["seeds"][n]
        if f"pairs_{n}" not in out:
            return r["notebook_s"], f"the notebook's {r['notebook_s']} s"
        times = [r["notebook_s"], *(a for a, _, _ in out[f"pairs_{n}"]["notebook_memsweep_ratio"])]
        mid = round(statistics.median(times), 1)
        return mid, f"the notebook's {mid} s (the median of its {len(times)} runs, {min(times)}-{max(times)} s)"
    if tune_floor:  # the bound for any engine: the bare Tune sweep, then the job's FLOPs at the all-core peak
        fixed_text = (f"- Fixed cost: a one-seed, one-variant sweep takes {fc['one_seed_sweep_s']} s end to end; a bare "
                      f"one-trial Ray Tune sweep, started and stopped as memsweep does it, whose trial only imports "
                      f"torch, takes {tune_floor} s (the fastest of {', '.join(f'{t} s' for t in fc['bare_tune_runs'])}, "
                      "run alternately with the one-seed sweeps): the least a sweep run through Ray Tune as memsweep "
                      "runs it (an embedded Ray, a trial process importing torch) takes here. Of "
                      f"it, the parts of any sweep that starts Ray: Python and Ray imports {fc['python_and_ray_import_s']} s, "
                      f"`ray.init` {fc['ray_init_s']} s, a process importing torch {fc['trial_torch_import_s']} s "
                      f"(each the fastest of its repeats; {fc['floor_s']} s together). The table's floor is the bare "
                      "Tune sweep plus the engine alone on the same work, 1 thread, split evenly over the "
                      f"{out['cores']} cores: notebook / floor is about the most a sweep on Ray Tune with this engine "
                      "could reach (a measurement of noisy parts, so within their noise, not to the tenth).")
        peak_all = hw.get(f"matmul_gflops_{out['cores']}_threads")
        per_seed = fig1_flops(PRESET) / PRESET.seeds
        least = {n: tune_floor + (per_seed * n / (peak_all * 1e9) if peak_all else 0.0) for n in out["seeds"]}
        notebook = {n: notebook_at(n) for n in out["seeds"]}
        bounds = "".join(
            f" At {n} seeds {notebook[n][1]} is under the least any engine needs here: a bare Tune "
            f"sweep and then the job's "
            f"{per_seed * n / 1e9:,.0f} GFLOP at the {peak_all} GFLOP/s all-core matmul peak take {least[n]:.1f} s, so "
            f"at most {notebook[n][0] / least[n]:.2f}x for any sweep run through Ray Tune, whatever its engine."
            for n in out["seeds"] if notebook[n][0] < least[n])
    else:  # a results file from before 2026-12-06: the parts of any sweep that starts Ray
        fixed_text = (f"- Fixed cost: a one-seed, one-variant sweep takes {fc['one_seed_sweep_s']} s end to end; "
                      f"the floor of any sweep that starts Ray and a torch trial process here is {fc['floor_s']} s (Python "
                      f"and Ray imports {fc['python_and_ray_import_s']} s, `ray.init` {fc['ray_init_s']} s, a trial process "
                      f"importing torch {fc['trial_torch_import_s']} s; "
                      f"{'each the fastest' if fc.get('parts') == 'fastest' else 'each the median'} of its repeats). The "
                      "table's floor is that plus the engine alone on the same work, "
                      f"1 thread, split evenly over the {out['cores']} cores (a trial's work cannot start before Ray and "
                      "torch have, and trials at once run no faster than each alone): notebook / floor is the most a "
                      "sweep on this engine could reach.")
        bounds = "".join(f" At {n} seeds the notebook's {r['notebook_s']} s is under the fixed floor alone: at most "
                         f"{r['notebook_s'] / fc['floor_s']:.2f}x for any sweep that starts Ray and torch trials, whatever its "
                         "engine." for n, r in out["seeds"].items() if r["notebook_s"] < fc["floor_s"])
    rows += ["", fixed_text + bounds,
             f"- One Tune trial per seed (the notebook's code in Tune's default way): {out['tune_per_seed']['scaled_to_100_s']} s "
             f"for 100 seeds x 3, taken on the line through {out['tune_per_seed']['seeds'][0]} and "
             f"{out['tune_per_seed']['seeds'][1]} seeds x 3 (measured: {out['tune_per_seed']['measured_s'][0]} s and "
             f"{out['tune_per_seed']['measured_s'][1]} s)"
             + (f"; memsweep end to end is **{out['tune_per_seed']['scaled_to_100_s'] / out['seeds'][100]['memsweep_s']:.0f}x** "
                "faster." if 100 in out["seeds"] else "."),
             "- The notebook loop is timed inside a warm process (torch already imported, no interpreter start); "
             "memsweep's times include its process start, imports, Ray's start and stop, and the Parquet writes.",
             f"- Hardware: matmul {hw['matmul_gflops_1_thread']} GFLOP/s on 1 thread; `y += x` "
             f"{hw['dram_gbs_1_thread']} GB/s over 256 MiB arrays; a {hw['last_level_cache_mib']} MiB last-level cache "
             "by sysfs."]
    for name, s in out["step"].items():
        rows.append(f"- Training step, {name.replace('_', ' of ')} (state {s['state_in']}): {s['ms_per_seed_epoch']} ms "
                    f"per seed-epoch against a floor of {s['floor_ms']} ms (FLOPs {s['flop_ms']} ms, bytes "
                    f"{s['byte_ms']} ms): **{s['fraction_of_floor']:.0%} of the floor**. Its eight batched GEMMs alone "
                    f"take {s['gemm_best_ms']} ms together, each at its best ({s['gemms_best_share_of_step']:.0%} of the "
                    f"step), {s['gemm_median_ms']} ms at their median and {s['gemm_flushed_ms']} ms with the cache flushed "
                    "before each (operands from memory)"
                    + (f"; in the step ~{s['gemms_in_step_ms']} ms (their share of the ops' time under torch.profiler, "
                       f"{s['profile']['gemms_share']:.0%}, times the step; the ops' shares: "
                       + ", ".join(f"`{n}` {v:.0%}" for n, v in s["profile"]["op_shares"].items()) + ")"
                       if "gemms_in_step_ms" in s else "")
                    + (f". Run in the step's order over a pack's own state, and nothing else (no loss, no updates), "
                       + (f"one epoch of each a round, alternately with the step, best of {s['in_order_rounds'][1]} rounds, "
                          if "in_order_rounds" in s else "best of 3 epochs, ")
                       + f"they take {s['gemms_in_order_ms']} ms ({s['floor_ms'] / s['gemms_in_order_ms']:.0%} "
                       f"of the floor): the step runs at {s['gemms_in_order_ms'] / s['ms_per_seed_epoch']:.0%} of their speed"
                       + (f", and was slower than them in {s['in_order_rounds'][0]} of the {s['in_order_rounds'][1]} rounds"
                          if "in_order_rounds" in s else "")
                       + (f". Its other ops (ReLUs, the logits' gradient, the bias momentum, the updates) alone, in "
                          f"order, the same way: {s['other_ops_ms']} ms; the two parts together "
                          f"{round(s['gemms_in_order_ms'] + s['other_ops_ms'], 1)} ms "
                          f"({s['floor_ms'] / (s['gemms_in_order_ms'] + s['other_ops_ms']):.0%} of the floor), and the step "
                          f"was slower than them in {s['parts_rounds'][0]} of the {s['parts_rounds'][1]} rounds."
                          if "other_ops_ms" in s else ".")
                       + (f" Its GEMMs with each layer's weight update after its momentum GEMM (`sub_`), and nothing "
                          f"else, the least step of these torch calls in this order (every such step makes these "
                          f"GEMMs and updates each weight from its momentum, a pass no BLAS call makes; measured "
                          f"warm, an estimate, not a bound), the same way: "
                          f"{s['least_library_ms']} ms ({s['floor_ms'] / s['least_library_ms']:.0%} of the floor); "
                          f"the step was slower in {s['least_rounds'][0]} of the {s['least_rounds'][1]} rounds."
                          if "least_library_ms" in s else "")
                       if "gemms_in_order_ms" in s else ".")
                    + (" Its 512 x 512 layer's backward blocked in row panels (each panel's input gradient, weight "
                       "gradient and update one after another, with torch's kernels), over one synthetic epoch side by "
                       "side, bare steps in a loop: the step " + f"{s['blocked_ms']['step']} ms, "
                       + ", ".join(f"{_blocking_words(name)} {t} ms" for name, t in s["blocked_ms"].items()
                                   if name != "step") + "."
                       if "blocked_ms" in s else ""))
    if "gemm_libraries" in out:
        libs, peak = out["gemm_libraries"], hw["matmul_gflops_1_thread"]
        rows.append("- The step's three GEMM shapes on its 512 x 512 layer (one member, batch 16), 1 thread, operands hot, "
                    "best of 300 calls, on three CPU GEMM libraries (torch's own, oneDNN, numpy's OpenBLAS): "
                    + "; ".join(f"{shape.replace('_', ' ')} " + ", ".join(f"{lib} {v}" for lib, v in rates.items())
                                + " GFLOP/s" for shape, rates in libs.items())
                    + f": at best {max(max(r.values()) for r in libs.values()) / peak:.0%} of the {peak} GFLOP/s "
                    "large-matmul peak.")
    if "t1000/t100" in out:
        rows.append(f"- Linear in seeds: t(1,000) / t(100) = {out['t1000/t100']} end to end.")
    return "\n".join(rows)


def _blocking_words(name: str) -> str:
    """'rows_64' -> 'panels of 64 rows'; 'member_rows_128' -> 'panels of 128 rows a member'."""
    rows = name.rsplit("_", 1)[1]
    return f"panels of {rows} rows" + (" a member" if name.startswith("member_") else "")


def plot(curve: dict) -> None:
    import plotly.graph_objects as go

    seeds = list(curve)
    fig = go.Figure([go.Scatter(x=seeds, y=[curve[s][k] for s in seeds], name=name, mode="lines+markers")
                     for k, name in (("notebook_s", "notebook loop"), ("memsweep_s", "memsweep end to end"),
                                     ("floor_s", "floor (fixed floor + engine / cores)"))])
    fig.update_layout(title="Digits fig1 (3 variants): seconds against seeds", xaxis_type="log", yaxis_type="log",
                      xaxis_title="seeds per variant", yaxis_title="seconds", template="plotly_white")
    fig.write_html(HERE / "seeds_curve.html", include_plotlyjs="cdn")


def say(text: str) -> None:
    print(text, flush=True)


def machine() -> str:
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor()
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"


if __name__ == "__main__":
    main()
