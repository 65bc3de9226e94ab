"""Where batching members wins and where it loses: one training step of a pack of K CNNs.

For each convolutional architecture of the catalog, on digits-shaped batches (K x 16 images of
1x8x8), the time of one forward + backward pass of:
  - `vmap`: the pack under torch.func.vmap (one batched kernel per layer);
  - `loop`: the pack's members one after another on slices of the stacked tensors;
  - `plain`: K separate torch.nn modules, one after another (what a notebook would do).
Best of `--repeats` after a warm-up, in one process, side by side. Prints a table and writes
benchmarks/pack_modes.json. The engine picks vmap or loop per trial by timing both on its first
batch (`trainables.packs.choose_mode`); this shows by how much each wins where.

    python benchmarks/pack_modes.py --threads 1 --k 6     # about a minute on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from catalog import ARCHS
from trainables import packs


def best_ms(step, repeats: int) -> float:
    step()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return round(best * 1000, 2)


def measure(arch: str, k: int, batch: int, repeats: int) -> dict:
    x = torch.randn(k, batch, 1, 8, 8)
    pack = packs.build(arch, (1, 8, 8), 10, list(range(k)))
    plain = [pack.member(i) for i in range(k)]
    out = {"arch": arch, "k": k}
    for mode in packs.MODES:
        pack.mode = mode

        def step():
            pack(x).sum().backward()

        out[mode] = best_ms(step, repeats)

    def plain_step():
        for i, m in enumerate(plain):
            m(x[i]).sum().backward()

    out["plain"] = best_ms(plain_step, repeats)
    out["best"] = min(packs.MODES, key=lambda m: out[m])
    out["best_vs_plain"] = round(out["plain"] / out[out["best"]], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=6)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure(a, args.k, args.batch, args.repeats) for a in ARCHS if a not in ("mlp1", "mlp3")]
    print(f"{'arch':<16}{'vmap ms':>9}{'loop ms':>9}{'plain ms':>10}  best  plain/best")
    for r in rows:
        print(f"{r['arch']:<16}{r['vmap']:>9}{r['loop']:>9}{r['plain']:>10}  {r['best']:<5} {r['best_vs_plain']}")
    out = {
        "date": time.strftime("%Y-%m-%d"),
        "threads": args.threads,
        "batch": args.batch,
        "torch": torch.__version__,
        "rows": rows,
    }
    Path(__file__).with_name("pack_modes.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
