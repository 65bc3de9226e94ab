"""What per-example recording costs on disk: bytes per `examples` row, float32 against float16.

Trains real packs with the pack engine (no Ray), builds the `examples` table exactly as a
trial does (`sweep.trial.examples_table`) in both record dtypes, and writes each the way the
store does (zstd, one row group per epoch x split block), into memory. Two workloads:

- digits: the fig1 preset's MLP (2 x 512, batch 16, momentum 0.9), randY p = 0.3, 20 seeds,
  scored at epochs 1..8 on train and test: values of a network that learns;
- synthetic: CIFAR-shaped noise (50,000 train + 10,000 test), a 1 x 512 MLP, 4 seeds, one
  epoch: probabilities near chance, the hardest case for compression; CIFAR-10's row count.

Then what a full CIFAR-10 fig1 recording costs: 100 seeds x 3 variants x 60,000 examples per
scored epoch. Writes benchmarks/record_size.json.

    python benchmarks/record_size.py      # about 2 minutes on 2 cores
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sweep.tables import examples_table
from trainables import corruption, engine, packs
from trainables import data as datasets


def parquet_bytes(table: pa.Table) -> int:
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, table.schema, compression="zstd") as writer:
        for batch in table.to_batches():
            writer.write_batch(batch)
    return sink.getvalue().size


def measure(name: str, data, hidden, seeds: int, epochs: list[int], batch_size: int, momentum: float) -> dict:
    clean = data.train.y
    data, mask = corruption.apply(data, "randY", 0.3, seed=0)
    t0 = time.perf_counter()
    pack = packs.build("mlp", data.input_shape, data.num_classes, list(range(seeds)), hidden=hidden)
    records = engine.run(
        pack,
        data,
        engine.Members(list(range(seeds)), list(range(100, 100 + seeds))),
        engine.Schedule(
            lr=0.01,
            momentum=momentum,
            batch_size=batch_size,
            max_epochs=max(epochs),
            scored_epochs=tuple(epochs),
            keep_splits=("train", "test"),
        ),
    ).records
    seconds = time.perf_counter() - t0
    labels = {"train": data.train.y.numpy(), "test": data.test.y.numpy()}
    true = {"train": clean.numpy(), "test": labels["test"]}
    corrupted = {"train": mask.numpy(), "test": np.zeros(len(labels["test"]), bool)}
    out = {"workload": name, "train_seconds": round(seconds, 1)}
    for dtype in ("float32", "float16"):
        table = examples_table(
            records, [{"cell": "randY", "variant": "randY"}] * seeds, list(range(seeds)), labels, true, corrupted, dtype
        )
        size = parquet_bytes(table)
        out[dtype] = {
            "rows": table.num_rows,
            "parquet_bytes": size,
            "bytes_per_row": round(size / table.num_rows, 2),
            "in_memory_bytes_per_row": round(table.nbytes / table.num_rows, 2),
        }
    return out


def main() -> None:
    torch.set_num_threads(2)
    results = [
        measure(
            "digits",
            datasets.load("digits"),
            [512, 512],
            seeds=20,
            epochs=list(range(1, 9)),
            batch_size=16,
            momentum=0.9,
        ),
        measure(
            "synthetic (CIFAR-shaped)",
            datasets.load("synthetic"),
            [512],
            seeds=4,
            epochs=[1],
            batch_size=256,
            momentum=0.0,
        ),
    ]
    rows_per_epoch = 100 * 3 * 60_000  # fig1 on CIFAR-10: 100 seeds x 3 variants x (50k + 10k)
    for r in results:
        r["cifar10_fig1_GB_per_scored_epoch"] = {
            d: round(r[d]["bytes_per_row"] * rows_per_epoch / 1e9, 2) for d in ("float32", "float16")
        }
    for r in results:
        print(
            f"{r['workload']}: "
            + "; ".join(
                f"{d}: {r[d]['bytes_per_row']} B/row on disk ({r[d]['in_memory_bytes_per_row']} in memory), "
                f"CIFAR-10 fig1 {r['cifar10_fig1_GB_per_scored_epoch'][d]} GB per scored epoch"
                for d in ("float32", "float16")
            )
        )
    Path(__file__).with_name("record_size.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
