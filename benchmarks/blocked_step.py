"""The training step with its 512 x 512 layer's backward blocked in row panels, beside the step.

The digits fig1 step (benchmarks/run.py's preset: a 64-512-512-10 MLP, batch 16, SGD momentum 0.9),
1 thread, at the pack size memsweep picks on this machine: `PackedMLP.sgd_step` as the engine runs
it, and the same step with the 512 x 512 layer's backward in row panels of its weight, each panel's
input gradient, weight gradient (into the momentum) and update one after another with torch's own
kernels, so that a panel of weights and momentum is reused from a near cache instead of streamed
three times (`blocked_sgd_step`, tested equal to the step). Panels span the pack's members, or
(`member_...`) each member's panels are done in turn. All side by side over one synthetic epoch,
interleaved, after a warm-up step, best of --repeats: bare steps in a loop, so faster than the
engine's epoch, and set beside each other, not beside the floor.

    python benchmarks/blocked_step.py            # a minute or two on 2 cores
    python benchmarks/blocked_step.py --from-json benchmarks/blocked_step.json  # the table again, measuring nothing

Writes benchmarks/blocked_step.json and prints one markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # run.py: the preset's shapes and the helpers the benchmarks share

import flags
import run as shared

from trainables.models import forward_grad


def blocked_sgd_step(
    pack,
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float,
    momentum: float,
    velocity: list[torch.Tensor],
    rows: int,
    per_member: bool = False,
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
                    wp, vp = w[g, r : r + rows], v[g, r : r + rows]
                    parts.append(torch.bmm(grad[g], wp.transpose(1, 2)))
                    vp.baddbmm_(a[g, :, r : r + rows].transpose(1, 2), grad[g], beta=momentum)
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


BLOCKINGS = {
    "rows_32": (32, False),
    "rows_64": (64, False),
    "member_rows_64": (64, True),
    "member_rows_128": (128, True),
}  # (rows a panel, per member): a panel of weights and momentum
# at a pack of 3 is 384 / 768 KiB batched, 256 / 512 KiB per member, under a 1 MiB L2


def blocked_step_times(
    k: int, blockings: dict[str, tuple[int, bool]] = BLOCKINGS, repeats: int = 5
) -> dict[str, float]:
    """Seconds per seed-epoch, 1 thread, of the step as `PackedMLP.sgd_step` runs it and blocked
    (`blocked_sgd_step`) at each of `blockings`, side by side over the same synthetic epoch (the
    digits shapes, a batch of 16 per member), interleaved, after a warm-up step, best of `repeats`.
    A bare step in a loop: it runs faster than the engine's epoch (`measure_step`: real batches
    gathered by index, a fresh pack, no warm-up), so it is set beside its blockings, not the floor."""
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    xs = torch.randn(shared.STEPS, k, shared.BATCH, shared.SIZES[0], generator=gen)
    ys = torch.randint(0, shared.SIZES[-1], (shared.STEPS, k, shared.BATCH), generator=gen)
    steps = {"step": lambda p, x, y, vel: p.sgd_step(x, y, shared.LR, shared.MOMENTUM, vel)}
    steps.update(
        {
            name: (lambda r, m: lambda p, x, y, vel: blocked_sgd_step(p, x, y, shared.LR, shared.MOMENTUM, vel, r, m))(
                *how
            )
            for name, how in blockings.items()
        }
    )

    def epoch(fn) -> float:
        pack = shared.packs.build(
            "mlp", (shared._C, shared._H, shared._W), shared.SIZES[-1], list(range(k)), hidden=shared.HIDDEN
        )
        vel = [torch.zeros_like(t) for t in pack.tensors()]
        with torch.no_grad():
            fn(pack, xs[0], ys[0], vel)  # warm
            start = time.perf_counter()
            for s in range(shared.STEPS):
                fn(pack, xs[s], ys[s], vel)
            return (time.perf_counter() - start) / k

    best = dict.fromkeys(steps, float("inf"))
    for _ in range(repeats):
        for name, fn in steps.items():
            best[name] = min(best[name], epoch(fn))
    return best


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pack",
        type=int,
        default=None,
        help="members a pack (default: the pack size memsweep picks on this machine)",
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="epochs of each, interleaved; the best counts (default 5)"
    )
    flags.add_from_json(parser)
    return flags.parse_positive(parser, "--pack", "--repeats")


def main() -> None:
    args = parse_args()
    if args.from_json is not None:
        return print(table(shared.read_results(args.from_json, "benchmarks/blocked_step.py", table)))
    k = args.pack or shared.PRESET.resolved_pack_size(100, "cpu", cache_bytes=shared.budget.cache_share_bytes(1.0))
    times = blocked_step_times(k, repeats=args.repeats)
    out = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": shared.machine(),
        "torch": torch.__version__,
        "command": "python benchmarks/blocked_step.py",
        "pack_size": k,
        "repeats": args.repeats,
        "ms_per_seed_epoch": {name: round(1e3 * t, 1) for name, t in times.items()},
    }
    shared.say(f"pack of {k}: " + ", ".join(f"{name} {ms} ms" for name, ms in out["ms_per_seed_epoch"].items()))
    (HERE / "blocked_step.json").write_text(json.dumps(out, indent=1))
    print(table(out))


def table(out: dict) -> str:
    """A run's results (blocked_step.json) as one markdown table: ms per seed-epoch, 1 thread."""
    times = out["ms_per_seed_epoch"]
    rows = [
        ("run", f"{out['date']}, {out['machine']}, torch {out['torch']}, `{out['command']}`"),
        (
            f"the step, pack of {out['pack_size']}, one synthetic epoch (best of {out['repeats']})",
            f"{times['step']} ms a seed-epoch",
        ),
    ]
    rows += [
        (label(name), f"{t} ms ({t / times['step']:.2f}x the step)") for name, t in times.items() if name != "step"
    ]
    return shared.md_table(rows)


def label(name: str) -> str:
    """'rows_64' -> 'panels of 64 rows'; 'member_rows_128' -> 'panels of 128 rows, a member at a time'."""
    rows = name.rsplit("_", 1)[1]
    return f"panels of {rows} rows" + (", a member at a time" if name.startswith("member_") else "")


if __name__ == "__main__":
    main()
