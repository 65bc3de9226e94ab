"""Training time of the digits fig1 workload against pack size (the reason for its pack_size: 20).

The packed engine on one thread, in one process (no Ray): 100 seeds of the preset's digits MLP
(2 x 512, batch 16, SGD momentum 0.9, one epoch, every train and test example scored), trained in
packs of K seeds, for several K, side by side in one run. Prints a table and writes
benchmarks/pack_size.json.

    python benchmarks/pack_size.py [--seeds 100] [--packs 1 5 10 20 50 100]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from sweep import spec as specs
from trainables import data as datasets
from trainables.packed import train_packed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--packs", type=int, nargs="+", default=[1, 5, 10, 20, 50, 100])
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = specs.resolve("fig1-difficulty", "digits")
    data = datasets.load("digits")
    kw = dict(hidden=spec.model.hidden, scored_epochs=spec.epochs, lr=spec.optimizer.lr,
              momentum=spec.optimizer.momentum, batch_size=spec.batch_size)
    train_packed(data, init_seeds=[0], order_seeds=[0], **kw)  # warm-up
    rows = []
    for k in args.packs:
        start = time.perf_counter()
        for lo in range(0, args.seeds, k):
            seeds = list(range(lo, min(args.seeds, lo + k)))
            train_packed(data, init_seeds=seeds, order_seeds=seeds, **kw)
        seconds = time.perf_counter() - start
        rows.append({"pack_size": k, "seconds": round(seconds, 2),
                     "seed_epochs_per_s": round(args.seeds / seconds, 2)})
        print(f"pack {k:>4}: {seconds:6.2f} s for {args.seeds} seeds ({args.seeds / seconds:5.2f} seed-epochs/s)",
              flush=True)
    best = min(rows, key=lambda r: r["seconds"])
    for r in rows:
        r["vs_best"] = round(r["seconds"] / best["seconds"], 2)
    out = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, "
           f"torch {torch.__version__}, 1 thread", "seeds": args.seeds, "rows": rows}
    (Path(__file__).parent / "pack_size.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
