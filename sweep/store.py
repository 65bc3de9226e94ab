"""The results store: one folder of Parquet fragments per table under <location>/<sweep>/.

Layout (the contract with `analysis/`; documented in results/README.md):

    <location>/<sweep>/sweep.yaml            the resolved spec, its hash, the schema version
    <location>/<sweep>/trials/<fragment>.parquet
    <location>/<sweep>/epochs/<fragment>.parquet
    <location>/<sweep>/examples/<fragment>.parquet
    <location>/<sweep>/{norms,probes,filters}/<fragment>.parquet   when the spec records them
    <location>/<sweep>/_tune/                Ray Tune's own state (ignored by Parquet readers)

One trial writes one fragment per table, named by its cell and seed pack, so a
retried or resumed trial replaces its own rows and never duplicates them. Each
file is written under a hidden temporary name (Parquet readers skip names
starting with '.' or '_') and then moved into place, so a reader never sees half
a file. `trials` is written last: a fragment present there marks the trial done.

`location` is a local path or any URI pyarrow understands (s3://, gs://, file://).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import yaml

from analysis.load import sweep_path
from sweep.faults import maybe_crash

SCHEMA_VERSION = 2
# Write order: trials last marks a fragment complete.
TABLES = ("examples", "epochs", "norms", "probes", "filters", "trials")
METADATA_KEY = b"memsweep"


class StoreError(RuntimeError):
    """The results location cannot be used; the message is one line for the user."""


class Store:
    def __init__(self, location: str | os.PathLike, sweep: str):
        location = str(location)
        try:  # the same resolution analysis uses to read the store
            self.fs, self.root = sweep_path(location, sweep)
        except (pa.ArrowInvalid, OSError) as exc:
            raise StoreError(f"cannot use results location {location!r}: {exc}") from None
        # What trials in other processes open again: the URI, or the absolute local folder.
        self.location = location.rstrip("/") if "://" in location else self.root.rsplit("/", 1)[0]
        self.uri = f"{self.location}/{sweep}"
        self.sweep = sweep

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def uri_of(self, *parts: str) -> str:
        return "/".join([self.uri, *parts])

    # --- checks ---------------------------------------------------------------------------

    def check_writable(self) -> None:
        """Raise StoreError unless files can be created under the sweep's folder (leaves none)."""
        probe = self.path(f".probe-{uuid.uuid4().hex}")
        existed = self.fs.get_file_info(self.root).type != pafs.FileType.NotFound
        try:
            self.fs.create_dir(self.root, recursive=True)
            with self.fs.open_output_stream(probe) as f:
                f.write(b"ok")
            self.fs.delete_file(probe)
            if not existed:
                self.fs.delete_dir(self.root)
        except (OSError, pa.ArrowException) as exc:
            reason = str(exc).splitlines()[0]
            raise StoreError(f"results location {self.uri!r} cannot be written: {reason}") from None

    def exists(self) -> bool:
        return self.fs.get_file_info(self.path("sweep.yaml")).type == pafs.FileType.File

    # --- the sweep's manifest -------------------------------------------------------------

    def read_manifest(self) -> dict[str, Any] | None:
        if not self.exists():
            return None
        with self.fs.open_input_stream(self.path("sweep.yaml")) as f:
            return yaml.safe_load(f.read().decode())

    def write_manifest(self, spec: dict[str, Any], spec_hash: str, provenance: dict[str, Any]) -> None:
        body = {"schema_version": SCHEMA_VERSION, "spec_hash": spec_hash, "spec": spec,
                "provenance": provenance}
        self._atomic_write(self.path("sweep.yaml"), yaml.safe_dump(body, sort_keys=False).encode())

    # --- fragments ------------------------------------------------------------------------

    def completed(self) -> set[str]:
        """Names of the fragments whose trial finished (present in `trials`)."""
        return set(self._fragments("trials"))

    def _fragments(self, table: str) -> list[str]:
        selector = pafs.FileSelector(self.path(table), allow_not_found=True)
        return sorted(Path(i.path).stem for i in self.fs.get_file_info(selector)
                      if i.path.endswith(".parquet") and not Path(i.path).name.startswith((".", "_")))

    def write_fragment(self, fragment: str, tables: dict[str, pa.Table],
                       metadata: dict[str, Any]) -> None:
        """Write (or replace) `fragment` in the given tables, `trials` last, each file atomically.
        A table left out (e.g. `examples` when a run records none) gets no file."""
        if "trials" not in tables or not set(tables) <= set(TABLES):
            raise ValueError(f"a fragment needs 'trials' and only tables of {TABLES}, got {sorted(tables)}")
        meta = json.dumps({"schema_version": SCHEMA_VERSION, **metadata}, sort_keys=True).encode()
        for name in [t for t in TABLES if t in tables]:
            table = tables[name]
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: meta})
            sink = pa.BufferOutputStream()
            # One row group per record batch: a trial hands over one batch per (epoch, split)
            # block, so readers filtering on those columns skip the other blocks by statistics.
            with pq.ParquetWriter(sink, table.schema, compression="zstd") as writer:
                for batch in table.to_batches():
                    writer.write_batch(batch)
            self._atomic_write(self.path(name, f"{fragment}.parquet"), sink.getvalue())
            maybe_crash(f"after-{name}")

    def clear(self) -> None:
        """Delete everything of this sweep (for --overwrite)."""
        if self.fs.get_file_info(self.root).type != pafs.FileType.NotFound:
            self.fs.delete_dir(self.root)

    def row_counts(self) -> dict[str, int]:
        """Rows per table, in write order; tables the sweep does not record are left out."""
        counts = {}
        for name in TABLES:
            fragments = self._fragments(name)
            if fragments:
                counts[name] = sum(pq.ParquetFile(self.fs.open_input_file(self.path(name, f"{frag}.parquet")))
                                   .metadata.num_rows for frag in fragments)
        return counts

    def _atomic_write(self, path: str, payload: bytes) -> None:
        folder, name = path.rsplit("/", 1)
        tmp = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
        self.fs.create_dir(folder, recursive=True)
        with self.fs.open_output_stream(tmp) as f:
            f.write(payload)
        self.fs.move(tmp, path)  # a rename on local and POSIX file systems
