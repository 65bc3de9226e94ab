"""The Parquet store: atomic, idempotent fragments with provenance; unusable locations."""

import hashlib
import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import contract_table

from sweep.store import SCHEMA_VERSION, Store, StoreError


def tables(seed: int, rows: int) -> dict[str, pa.Table]:
    return {name: contract_table(name, {"seed": [seed] * rows}) for name in ("examples", "epochs", "trials")}


def test_rewriting_a_fragment_replaces_it(tmp_path):
    store = Store(tmp_path, "s")
    store.write_fragment("real-pack000", tables(0, 3), {"spec": {"seeds": 2}})
    store.write_fragment("real-pack001", tables(1, 2), {"spec": {"seeds": 2}})
    store.write_fragment("real-pack000", tables(0, 3), {"spec": {"seeds": 2}})  # a retried trial
    df = pd.read_parquet(tmp_path / "s" / "examples")
    assert len(df) == 5 and sorted(df.seed.tolist()) == [0, 0, 0, 1, 1]
    assert store.completed() == {"real-pack000", "real-pack001"}
    assert store.row_counts() == {"examples": 5, "epochs": 5, "trials": 5}
    assert not [p for p in (tmp_path / "s").rglob(".*")]  # no temporary files left


def test_fragments_carry_provenance(tmp_path):
    Store(tmp_path, "s").write_fragment("f", tables(0, 1), {"spec": {"seeds": 2}, "git_rev": "abc"})
    meta = json.loads(pq.read_schema(tmp_path / "s" / "epochs" / "f.parquet").metadata[b"memsweep"])
    assert meta == {"schema_version": SCHEMA_VERSION, "spec": {"seeds": 2}, "git_rev": "abc"}
    # The trials file (the completion mark) also records the other files' row counts and SHA-256.
    meta = json.loads(pq.read_schema(tmp_path / "s" / "trials" / "f.parquet").metadata[b"memsweep"])
    digests = {
        t: hashlib.sha256((tmp_path / "s" / t / "f.parquet").read_bytes()).hexdigest() for t in ("examples", "epochs")
    }
    assert meta == {
        "schema_version": SCHEMA_VERSION,
        "spec": {"seeds": 2},
        "git_rev": "abc",
        "rows": {"examples": 1, "epochs": 1},
        "sha256": digests,
    }


def test_half_written_files_are_invisible(tmp_path):
    store = Store(tmp_path, "s")
    store.write_fragment("f", tables(0, 2), {})
    (tmp_path / "s" / "examples" / ".g.parquet.1234.tmp").write_bytes(b"PAR1 half a file")
    assert len(pd.read_parquet(tmp_path / "s" / "examples")) == 2
    assert store.completed() == {"f"}


def test_trials_table_marks_completion(tmp_path):
    store = Store(tmp_path, "s")
    store.write_fragment("f", tables(0, 2), {})
    (tmp_path / "s" / "trials" / "f.parquet").unlink()  # as if the trial died before its last write
    assert store.completed() == set()


def test_manifest_round_trip_and_clear(tmp_path):
    store = Store(tmp_path, "s")
    assert store.read_manifest() is None
    store.write_manifest({"seeds": 3}, "h1", {"git_rev": None})
    assert store.read_manifest()["spec_hash"] == "h1"
    store.clear()
    assert not (tmp_path / "s").exists()


def test_unwritable_location_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError) as err:
        Store(blocker / "results", "s").check_writable()
    assert "cannot be written" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(StoreError, match="cannot use results location"):
        Store("nosuchscheme://bucket/x", "s")
