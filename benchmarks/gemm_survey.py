"""The training step's GEMMs: alone, in the step's order beside the step, and on three CPU GEMM libraries.

The digits fig1 step (benchmarks/run.py's preset: a 64-512-512-10 MLP, batch 16, SGD momentum 0.9),
1 thread, at the pack size memsweep picks on this machine (and, unless --quick, twice it and 20):

  alone       the step's eight batched GEMMs (forward `baddbmm`, weight-gradient `baddbmm_`,
              input-gradient `bmm`), each timed alone: best and median of 200 calls with operands
              hot, median of 30 calls each after the cache is flushed (operands from memory);
  in order    the eight GEMMs in the step's order over a pack's own state and nothing else; the
              step's other ops (ReLUs, the logits' gradient, the bias momentum, the updates) the
              same way; and the GEMMs with each layer's weight update (the least step of these torch
              calls, an estimate); one epoch of each a round, alternately with the step itself;
  profile     one epoch under torch.profiler: the GEMMs' share of the step, the ops' shares;
  libraries   the three GEMM shapes of the 512 x 512 layer (one member, batch 16) on torch (MKL),
              oneDNN and OpenBLAS (numpy's), GFLOP/s, best of 300 hot calls;

each beside the step's floor (run.py's `step_floor`: its FLOPs at the 1-thread matmul peak or its
bytes at the bandwidth of where the pack's state lives, whichever is slower).

    python benchmarks/gemm_survey.py           # a few minutes on 2 cores
    python benchmarks/gemm_survey.py --quick   # the rule's pack only
    python benchmarks/gemm_survey.py --from-json benchmarks/gemm_survey.json  # the table again, measuring nothing

Writes benchmarks/gemm_survey.json and prints one markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # run.py: the preset's shapes and the helpers the benchmarks share

import flags
import run as shared


def _best_epoch(make_step, k: int, repeats: int) -> float:
    """Seconds per seed-epoch of a pack of k's step made by `make_step` (after torch is set to 1
    thread), run STEPS times an epoch: the best of `repeats` epochs after a warm-up epoch."""
    torch.set_num_threads(1)
    step = make_step()

    def epoch() -> None:
        for _ in range(shared.STEPS):
            step()

    epoch()
    return min(shared._timed(epoch) for _ in range(repeats)) / k


def gemm_times(k: int, repeats: int = 200, flushed_repeats: int = 30) -> dict[str, float]:
    """Seconds per seed-epoch of the step's own batched GEMMs alone (forward, weight gradients,
    input gradients at this pack size, batch 16), 1 thread: each at its best and at its median of
    `repeats` calls with its operands hot in cache, and at its median of `flushed_repeats` calls
    each after a write over three times the last-level cache (at least 96 MiB), so that its
    operands come from memory. In the step the operands lie somewhere between: each large one was
    last touched an op or more before, with the pack's other state in between."""
    torch.set_num_threads(1)
    flush = torch.zeros(max(96 * 2**20, 3 * shared.budget.last_level_cache_bytes()) // 4)
    best = median = flushed = 0.0
    for i, (n_in, n_out) in enumerate(zip(shared.SIZES[:-1], shared.SIZES[1:])):
        x, w, g = torch.randn(k, shared.BATCH, n_in), torch.randn(k, n_in, n_out), torch.randn(k, shared.BATCH, n_out)
        b, v, back = torch.randn(k, 1, n_out), torch.randn(k, n_in, n_out), torch.empty(k, shared.BATCH, n_in)
        ops = [lambda: torch.baddbmm(b, x, w), lambda: v.baddbmm_(x.transpose(1, 2), g, beta=0.9)]
        if i > 0:
            ops.append(lambda: torch.bmm(g, w.transpose(1, 2), out=back))
        for op in ops:
            op()
            hot = [shared._timed(op) for _ in range(repeats)]
            best, median = best + min(hot), median + statistics.median(hot)
            cold = []
            for _ in range(flushed_repeats):
                flush.add_(1.0)
                cold.append(shared._timed(op))
            flushed += statistics.median(cold)
    per = shared.STEPS / k
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
    n = shared.HIDDEN[0]
    x, g, w = (
        torch.randn(shared.BATCH, n, generator=gen),
        torch.randn(shared.BATCH, n, generator=gen),
        torch.randn(n, n, generator=gen),
    )
    xt = x.t().contiguous()
    zero = torch.zeros(n)
    out, outw = torch.empty(shared.BATCH, n), torch.empty(n, n)
    # Each shape as torch calls it, as a linear layer (input @ weight^T) for oneDNN, and in numpy.
    shapes = {
        "forward": (lambda: torch.mm(x, w, out=out), (x, w.t().contiguous()), (x.numpy(), w.numpy(), out.numpy())),
        "input_gradient": (lambda: torch.mm(g, w.t(), out=out), (g, w), (g.numpy(), w.numpy().T, out.numpy())),
        "weight_gradient": (
            lambda: torch.mm(xt, g, out=outw),
            (xt, g.t().contiguous()),
            (xt.numpy(), g.numpy(), outw.numpy()),
        ),
    }
    rates = {}
    for name, (mkl, (inp, weight), (a, b, c)) in shapes.items():
        flops = 2 * shared.BATCH * n * n
        dnn_in, dnn_w, dnn_b = inp.to_mkldnn(), weight.to_mkldnn(), zero[: weight.shape[0]].to_mkldnn()
        calls = {
            "torch": mkl,
            "onednn": lambda: torch._C._nn.mkldnn_linear(dnn_in, dnn_w, dnn_b),
            "openblas": lambda: np.matmul(a, b, out=c),
        }
        rates[name] = {}
        with threadpool_limits(1):
            for lib, call in calls.items():
                call()
                rates[name][lib] = round(flops / min(shared._timed(call) for _ in range(repeats)) / 1e9, 1)
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
    pack = shared.packs.build(
        "mlp", (shared._C, shared._H, shared._W), shared.SIZES[-1], list(range(k)), hidden=shared.HIDDEN
    )
    weights, biases = [w.detach() for w in pack.weights], [b.detach() for b in pack.biases]
    momentum = [torch.zeros_like(w) for w in weights]
    gen = torch.Generator().manual_seed(0)
    acts = [torch.randn(k, shared.BATCH, shared.SIZES[0], generator=gen)] + [
        torch.empty(k, shared.BATCH, n) for n in shared.SIZES[1:]
    ]
    grads = [torch.empty(k, shared.BATCH, n) for n in shared.SIZES[1:-1]] + [
        torch.randn(k, shared.BATCH, shared.SIZES[-1], generator=gen)
    ]
    n = len(weights)
    sign = [shared.LR]

    def step() -> None:
        # With updates, the weights step back and forth (the same call, its sign flipped every
        # step): a fixed logits' gradient followed one way would grow them without bound.
        sign[0] = -sign[0]
        for i in range(n):
            torch.baddbmm(biases[i], acts[i], weights[i], out=acts[i + 1])
        for i in reversed(range(n)):
            if i > 0:
                torch.bmm(grads[i], weights[i].transpose(1, 2), out=grads[i - 1])
            momentum[i].baddbmm_(acts[i].transpose(1, 2), grads[i], beta=shared.MOMENTUM)
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
    pack = shared.packs.build(
        "mlp", (shared._C, shared._H, shared._W), shared.SIZES[-1], list(range(k)), hidden=shared.HIDDEN
    )
    weights, biases = [w.detach() for w in pack.weights], [b.detach() for b in pack.biases]
    vel_w, vel_b = [torch.zeros_like(w) for w in weights], [torch.zeros_like(b) for b in biases]
    gen = torch.Generator().manual_seed(0)
    acts = [torch.randn(k, shared.BATCH, n, generator=gen) for n in shared.SIZES]  # each layer's input, the logits last
    backs = [
        torch.randn(k, shared.BATCH, n, generator=gen) for n in shared.SIZES[:-1]
    ]  # input gradients, before ReLU's
    y = torch.randint(0, shared.SIZES[-1], (k, shared.BATCH), generator=gen)
    n = len(weights)

    def step() -> None:
        for i in range(1, n):
            acts[i].relu_()
        grad = torch.softmax(acts[-1], dim=-1)
        grad.scatter_add_(-1, y.unsqueeze(-1), torch.full_like(grad[..., :1], -1.0)).div_(shared.BATCH)
        ones = grad.new_ones(k, 1, shared.BATCH)
        for i in reversed(range(n)):
            back = torch.ops.aten.threshold_backward(backs[i], acts[i], 0) if i > 0 else None
            vel_b[i].baddbmm_(ones, grad, beta=shared.MOMENTUM)
            weights[i].sub_(vel_w[i], alpha=shared.LR)
            biases[i].sub_(vel_b[i], alpha=shared.LR)
            grad = back

    return step


def step_beside_gemms(k: int, rounds: int = 7) -> dict[str, float]:
    """The step as the engine runs it (`run.measure_step`: a fresh pack's epoch, its batches gathered,
    as a fig1 trial runs its only epoch), its GEMMs in the step's order (`gemms_in_order`) and its
    other ops in order (`other_ops_in_order`), and its GEMMs with the weights' updates (the least
    step of these torch calls, `gemms_in_order(updates=True)`), all warm, one epoch of each per
    round, alternating, so that all meet the same machine state: each's best, and in how many
    rounds the step took longer than its GEMMs alone, than its two parts alone together, and
    than the least step of these calls. Estimates of what a step made of these torch calls, in
    this order, costs here, not bounds: another order or library may do better (blocked_step.py
    measures another order, slower)."""
    steps, orders, others, leasts = [], [], [], []
    for _ in range(rounds):
        steps.append(shared.measure_step(k, repeats=1))
        orders.append(gemms_in_order(k, repeats=1))
        others.append(other_ops_in_order(k, repeats=1))
        leasts.append(gemms_in_order(k, repeats=1, updates=True))
    return {
        "step_s": min(steps),
        "in_order_s": min(orders),
        "others_s": min(others),
        "least_s": min(leasts),
        "rounds": rounds,
        "step_slower_rounds": sum(s > o for s, o in zip(steps, orders)),
        "step_slower_than_parts_rounds": sum(s > o + p for s, o, p in zip(steps, orders, others)),
        "step_slower_than_least_rounds": sum(s > q for s, q in zip(steps, leasts)),
    }


def profile_step(k: int, top: int = 5) -> dict:
    """One epoch of a pack of k under torch.profiler, 1 thread: the ops' shares of their self time
    (the largest `top`), and the time of the step's batched GEMMs in place (forward `baddbmm`,
    weight-gradient `baddbmm_`, input-gradient `bmm`): their share of the ops' profiled time, and
    their profiled time per seed-epoch. The profiled epoch runs slower than an unprofiled one, so
    the share times the unprofiled step is what is set beside their time alone (`gemm_times`)."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(1)
    d = shared.variant_data("real")
    members = shared.engine.Members(list(range(k)), list(range(k)))
    shared.engine.run(
        shared.packs.build("mlp", d.input_shape, 10, list(range(k)), hidden=shared.HIDDEN),
        d,
        members,
        shared.TRAIN_ONLY,
    )  # warm
    pack = shared.packs.build("mlp", d.input_shape, 10, list(range(k)), hidden=shared.HIDDEN)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        shared.engine.run(pack, d, members, shared.TRAIN_ONLY)
    ops = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    total = sum(ops.values())
    gemms = sum(ops.get(name, 0) for name in ("aten::baddbmm", "aten::baddbmm_", "aten::bmm"))
    shares = sorted(ops.items(), key=lambda kv: -kv[1])[:top]
    return {
        "op_shares": {name.removeprefix("aten::"): round(t / total, 3) for name, t in shares},
        "gemms_share": round(gemms / total, 3),
        "gemms_in_place_ms": round(gemms / 1e3 / k, 1),
    }


# --- the run ----------------------------------------------------------------------------------


def pack_survey(k: int, peak1: float, rounds: int) -> dict:
    """Everything above for a pack of k, beside the step and its floor (at the bandwidth measured
    over arrays as large as the pack's parameters and momentum)."""
    state = k * 2 * 4 * shared.budget.mlp_param_count(shared.SIZES[0], shared.HIDDEN, shared.SIZES[-1])
    bw = shared.bandwidth(state // 2)  # y += x over two arrays: the pack's state in all
    floor = shared.step_floor(peak1, bw)["floor_s"]
    side, gemms, prof = step_beside_gemms(k, rounds), gemm_times(k), profile_step(k)
    t = side["step_s"]

    def ms(seconds: float) -> float:
        return round(1e3 * seconds, 1)

    shared.say(
        f"pack of {k}: step {ms(t)} ms, floor {ms(floor)} ms, GEMMs best {ms(gemms['best_s'])} ms, "
        f"in order {ms(side['in_order_s'])} ms, other ops {ms(side['others_s'])} ms"
    )
    return {
        "ms_per_seed_epoch": ms(t),
        "floor_ms": ms(floor),
        "state_in": f"{state / 2**20:.0f} MiB, {bw:.0f} GB/s",
        "gemm_best_ms": ms(gemms["best_s"]),
        "gemm_median_ms": ms(gemms["median_s"]),
        "gemm_flushed_ms": ms(gemms["flushed_s"]),
        "gemms_best_share_of_step": round(gemms["best_s"] / t, 2),
        "gemms_in_order_ms": ms(side["in_order_s"]),
        "in_order_rounds": [side["step_slower_rounds"], rounds],
        "other_ops_ms": ms(side["others_s"]),
        "parts_rounds": [side["step_slower_than_parts_rounds"], rounds],
        "least_library_ms": ms(side["least_s"]),
        "least_rounds": [side["step_slower_than_least_rounds"], rounds],
        "gemms_in_step_ms": ms(t * prof["gemms_share"]),
        "profile": prof,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the pack size memsweep picks here only")
    parser.add_argument(
        "--rounds", type=int, default=7, help="alternating rounds of the step and its parts, one epoch each (default 7)"
    )
    flags.add_from_json(parser)
    return flags.parse_positive(parser, "--rounds")


def main() -> None:
    args = parse_args()
    if args.from_json is not None:
        return print(table(shared.read_results(args.from_json, "benchmarks/gemm_survey.py", table)))
    peak1 = shared.matmul_peak(1)
    out: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": shared.machine(),
        "torch": torch.__version__,
        "command": "python benchmarks/gemm_survey.py" + (" --quick" if args.quick else ""),
        "matmul_gflops_1_thread": round(peak1, 1),
    }
    k = shared.PRESET.resolved_pack_size(
        100, "cpu", cache_bytes=shared.budget.cache_share_bytes(1.0)
    )  # as sweep/trial.py
    out["step"] = {
        f"pack_{kk}": pack_survey(kk, peak1, args.rounds) for kk in sorted({k} if args.quick else {k, 2 * k, 20})
    }
    out["libraries"] = gemm_libraries()
    (HERE / "gemm_survey.json").write_text(json.dumps(out, indent=1))
    print(table(out))


def table(out: dict) -> str:
    """A survey's results (gemm_survey.json) as one markdown table: times per seed-epoch, 1 thread;
    each share is of the step's floor, each count of the alternating rounds the step was slower in."""
    rows = [("run", f"{out['date']}, {out['machine']}, torch {out['torch']}, `{out['command']}`")]
    for name, s in out["step"].items():
        pack, floor = name.replace("_", " of "), s["floor_ms"]
        both = round(s["gemms_in_order_ms"] + s["other_ops_ms"], 1)
        in_order = [
            f"GEMMs {_part(s['gemms_in_order_ms'], floor, s['in_order_rounds'])}",
            f"other ops {s['other_ops_ms']} ms",
            f"both {_part(both, floor, s['parts_rounds'])}",
        ]
        if "least_library_ms" in s:
            in_order.append(f"GEMMs and weight updates {_part(s['least_library_ms'], floor, s['least_rounds'])}")
        prof = s["profile"]
        rows += [
            (
                f"{pack}: the 8 GEMMs alone, hot best / hot median / cache flushed",
                f"{s['gemm_best_ms']} / {s['gemm_median_ms']} / {s['gemm_flushed_ms']} ms",
            ),
            (f"{pack}: in the step's order, over the pack's state", " · ".join(in_order)),
            (
                f"{pack}: under torch.profiler",
                f"GEMMs {prof['gemms_share']:.0%} of the step (~{s['gemms_in_step_ms']} ms) · "
                + " · ".join(f"`{op}` {v:.0%}" for op, v in prof["op_shares"].items()),
            ),
        ]
    libs = out["libraries"]
    rows += [
        (
            f"512 x 512 {shape.replace('_', ' ')}, one member, GFLOP/s",
            " · ".join(f"{lib} {v}" for lib, v in rates.items()),
        )
        for shape, rates in libs.items()
    ]
    best = max(max(r.values()) for r in libs.values())
    rows.append(("best library rate / 1-thread matmul peak", f"{best / out['matmul_gflops_1_thread']:.0%}"))
    return shared.md_table(rows)


def _part(ms: float, floor_ms: float, rounds: list[int]) -> str:
    """'37.9 ms (72% of the floor; the step slower in 7 of 7 rounds)'."""
    return f"{ms} ms ({floor_ms / ms:.0%} of the floor; the step slower in {rounds[0]} of {rounds[1]} rounds)"


if __name__ == "__main__":
    main()
