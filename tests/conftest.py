"""Shared fixtures: a tiny CIFAR-10 in torchvision's real on-disk format, one Ray per module."""

from __future__ import annotations

import hashlib
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SWEEP = [sys.executable, "-m", "sweep.cli"]  # the console script's module, same interpreter


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_tiny_cifar10(root: Path, per_batch: int = 4, test: int = 6, seed: int = 0) -> dict[str, str]:
    """Write root/cifar-10-batches-py as the real data set is laid out (5 pickled train
    batches, a test batch, batches.meta); returns {file name: md5}."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    md5 = {}

    def dump(name: str, obj: dict) -> None:
        path = folder / name
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=2)
        md5[name] = hashlib.md5(path.read_bytes()).hexdigest()

    for i, n in [(f"data_batch_{b}", per_batch) for b in range(1, 6)] + [("test_batch", test)]:
        dump(
            i,
            {
                "batch_label": i,
                "labels": rng.integers(0, 10, n).tolist(),
                "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                "filenames": [f"{i}_{k}.png" for k in range(n)],
            },
        )
    dump(
        "batches.meta",
        {"label_names": [f"class{c}" for c in range(10)], "num_cases_per_batch": per_batch, "num_vis": 3072},
    )
    return md5


@pytest.fixture
def tiny_cifar(tmp_path, monkeypatch) -> Path:
    """A tiny CIFAR-10 under tmp_path/data, registered with torchvision's integrity check.

    torchvision verifies each batch file against the real data set's md5; the test files
    have their own, so the class's checksum lists are pointed at them for this test.
    """
    from torchvision.datasets import CIFAR10

    root = tmp_path / "data"
    md5 = write_tiny_cifar10(root)
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{b}", md5[f"data_batch_{b}"]] for b in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", dict(CIFAR10.meta, md5=md5["batches.meta"]))
    return root


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray per test module (ray.init costs ~5 s); yields its GCS address."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def cli(*args, env: dict[str, str] | None = None, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    """The `sweep` command with `args`, run to its end (`kw`: more of subprocess.run's, e.g. cwd);
    its exit code and output."""
    return subprocess.run([*SWEEP, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout, **kw)


def launch_args(preset: str, *sets: str, dataset: str = "digits", **options: str | bool) -> list[str]:
    """`sweep launch` arguments: `preset` on `dataset`, each of `sets` as a --set, and each of
    `options` as --<name> <value> (underscores as dashes; True: the flag alone)."""
    args = ["launch", preset, "--dataset", dataset]
    for s in sets:
        args += ["--set", s]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        args += [flag] if value is True else [flag, str(value)]
    return args


@pytest.fixture
def cli_env() -> dict[str, str]:
    """Environment for CLI subprocesses: this interpreter's, unbuffered."""
    return dict(os.environ, PYTHONUNBUFFERED="1")


def contract_table(table: str, columns: dict | None = None, rows: int | None = None):
    """A pyarrow table of the store's `table` that keeps the results contract (analysis/schema.py):
    the given columns cast to the contract's types, every other required column filled with zeros
    or 'x', `rows` rows (default: the length of the given columns)."""
    import pyarrow as pa

    from analysis import schema

    columns = dict(columns or {})
    n = rows if rows is not None else len(next(iter(columns.values())))
    contract = schema.SCHEMAS[table]
    arrays, fields = [], []
    for field in contract:
        if field.name in columns:
            values = columns.pop(field.name)
        elif field.metadata and b"optional" in field.metadata:
            continue
        else:
            base = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
            values = ["x"] * n if pa.types.is_string(base) else [[0.0]] * n if pa.types.is_list(base) else [0] * n
        typ = field.type
        dictionary = pa.types.is_dictionary(typ)
        arr = pa.array(values, typ.value_type).dictionary_encode() if dictionary else pa.array(values).cast(typ)
        arrays.append(arr)
        fields.append(field.name)
    assert not columns, f"not in the contract: {sorted(columns)}"
    return pa.table(arrays, names=fields)


def plant_strings(
    folder: Path, payload: str, spare: tuple[str, ...] = ("split", "probe"), manifest: bool = True
) -> None:
    """What someone with write access to a shared results location can do to a stored sweep at
    `folder`: `payload` put before every text value of every table (but the `spare` columns,
    whose values the analysis compares with fixed names), before the spec's variants (so stored
    and planned variants still match), its description and every provenance string; each trial's
    completion mark rewritten to match (row counts kept, SHA-256 recomputed), so the store passes
    its own checks. With `manifest`, the spec and provenance too (the spec then no longer
    validates: its variants are not variants)."""
    import hashlib
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    def planted(column: pa.ChunkedArray) -> pa.ChunkedArray:
        values = [None if v is None else payload + v for v in column.to_pylist()]
        return pa.chunked_array([pa.array(values, pa.string())]).cast(column.type)

    for path in sorted(folder.glob("*/*.parquet")):
        table = pq.read_table(path)
        for i, field in enumerate(table.schema):
            text = pa.types.is_string(field.type) or (
                pa.types.is_dictionary(field.type) and pa.types.is_string(field.type.value_type)
            )
            if text and field.name not in spare:
                table = table.set_column(i, field, planted(table.column(i)))
        pq.write_table(table, path)
    for path in sorted(folder.glob("trials/*.parquet")):
        table = pq.read_table(path)
        record = json.loads(table.schema.metadata[b"memsweep"])
        record["sha256"] = {
            t: hashlib.sha256((folder / t / path.name).read_bytes()).hexdigest() for t in record.get("sha256", {})
        }
        pq.write_table(table.replace_schema_metadata({b"memsweep": json.dumps(record).encode()}), path)
    if not manifest:
        return
    manifest = yaml.safe_load((folder / "sweep.yaml").read_text())
    spec = manifest["spec"]
    spec["description"] = payload + spec.get("description", "")
    for key in ("variants", "corruptions", "archs"):
        if key in spec:
            spec[key] = [payload + v for v in spec[key]]
    for entry in manifest.get("plan") or []:
        entry["variant"] = payload + entry["variant"]
    prov = manifest["provenance"]
    prov.update({k: payload + v for k, v in prov.items() if isinstance(v, str)})
    prov["versions"] = {k: payload + str(v) for k, v in prov.get("versions", {}).items()}
    (folder / "sweep.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))


def write_idx(folder: Path, train: int = 12, test: int = 5, seed: int = 0, compress: bool = False) -> dict:
    """The four files of an MNIST-format data set in the real IDX layout (big-endian header,
    then unsigned bytes), `train` and `test` 28x28 images with labels, under `folder`
    (gzipped, as Debian and the upstream archives ship them, with `compress`). Returns the arrays."""
    import gzip

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        arrays[split] = (images, labels)
        for kind, header, body in (
            ("images-idx3-ubyte", b"\x00\x00\x08\x03" + np.array([n, 28, 28], ">i4").tobytes(), images),
            ("labels-idx1-ubyte", b"\x00\x00\x08\x01" + np.array([n], ">i4").tobytes(), labels),
        ):
            name = f"{split}-{kind}" + (".gz" if compress else "")
            payload = header + body.tobytes()
            (folder / name).write_bytes(gzip.compress(payload) if compress else payload)
    return arrays
