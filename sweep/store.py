"""The results store: one folder of Parquet fragments per table under <location>/<sweep>/.

Layout (the contract with `analysis/`; documented in results/README.md):

    <location>/<sweep>/sweep.yaml            the resolved spec, its hash, the schema version
    <location>/<sweep>/trials/<fragment>.parquet
    <location>/<sweep>/epochs/<fragment>.parquet
    <location>/<sweep>/examples/<fragment>.parquet
    <location>/<sweep>/{norms,probes,filters}/<fragment>.parquet   when the spec records them
    <location>/<sweep>/_launch.json          the last launch: who ran it, each trial's state (JSON)
    <location>/<sweep>/_lock                 held while a launch runs (see `Store.lock`)
    <location>/<sweep>/_tune/                Ray Tune's own state (ignored by Parquet readers)

One trial writes one fragment per table, named by its cell and seed pack, so a
retried or resumed trial replaces its own rows and never duplicates them. Each
file is written under a hidden temporary name (Parquet readers skip names
starting with '.' or '_') and then moved into place, so a reader never sees half
a file. `trials` is written last: a fragment present there marks the trial done,
and its Parquet metadata records how many rows each of the trial's other tables
holds and the SHA-256 of each file's bytes, so a missing, truncated or altered file is found
(`Store.damaged`) and re-run on resume. Every page also carries Parquet's own CRC32 checksum,
which `sweep verify` checks as it reads each file in full.

A results location may be shared, so memsweep never follows a symbolic link inside it: a
local sweep folder that holds one (at any depth, the folder itself included) is refused in one
line naming the link, before anything is read, written or deleted there.

Nothing here unpickles: status, resume and report read Parquet, YAML and JSON only,
so a file planted in a shared results location cannot run code as its reader.

`location` is a local path or any URI pyarrow understands (s3://, gs://, file://).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import os
import socket
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import yaml

from analysis import schema as contract
from analysis.load import sweep_path
from analysis.safe_yaml import read_yaml, write_yaml
from sweep.faults import maybe_crash
from sweep.planner import TrialPlan
from sweep.spec import SpecError, check_name

SCHEMA_VERSION = contract.VERSION  # 3: packed convergence grids (fragments per pack), pack_mode, row counts
# Write order: trials last marks a fragment complete.
TABLES = ("examples", "members", "epochs", "norms", "probes", "filters", "trials")
assert set(TABLES) == set(contract.TABLES)
METADATA_KEY = b"memsweep"
# What a sweep folder holds that the store wrote: --overwrite removes these and nothing else.
OWN_FILES = ("sweep.yaml", "_launch.json", "report.html")
OWN_FOLDERS = ("_tune",)
LOCK = "_lock"
# A lease on an object store (no file locks there) counts as held while refreshed this recently.
LEASE_SECONDS, LEASE_REFRESH_SECONDS = 120.0, 30.0


class StoreError(RuntimeError):
    """The results location cannot be used; the message is one line for the user."""


class Store:
    def __init__(self, location: str | os.PathLike, sweep: str, check_links: bool = True):
        """`check_links`: walk the local sweep folder for links now (every command does; a trial,
        which only writes its fragment, relies on `_atomic_write`'s own check)."""
        location = str(location)
        if not location.strip():
            raise StoreError("results location '' is empty: pass --results DIR_OR_URI (default: ./results)")
        try:
            check_name(sweep)
        except SpecError as exc:
            raise StoreError(str(exc)) from None
        try:  # the same resolution analysis uses to read the store
            self.fs, self.root = sweep_path(location, sweep)
        except (pa.ArrowInvalid, OSError) as exc:
            raise StoreError(f"cannot use results location {location!r}: {exc}") from None
        # What trials in other processes open again: the URI, or the absolute local folder.
        self.location = location.rstrip("/") if "://" in location else self.root.rsplit("/", 1)[0]
        self.uri = f"{self.location}/{sweep}"
        self.sweep = sweep
        self._damage: dict[tuple[bool, bool], dict[str, str]] = {}  # damaged()'s answers, until a write
        if self.is_local and check_links:
            self._refuse_links()

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

    def _refuse_links(self) -> None:
        """StoreError naming the first symbolic link at or under the sweep's local folder: a link
        planted in a shared location would lead reads, writes and deletes outside it."""

        def walk(folder: str) -> None:
            try:
                entries = list(os.scandir(folder))
            except (FileNotFoundError, NotADirectoryError):
                return
            except OSError as exc:
                what = "is a symbolic link loop" if exc.errno == errno.ELOOP else f"cannot be read ({exc.strerror})"
                raise StoreError(f"{folder} {what}") from None
            for entry in entries:
                if entry.is_symlink():
                    raise StoreError(_link_message(entry.path))
                if entry.is_dir(follow_symlinks=False):
                    walk(entry.path)

        if os.path.islink(self.root):
            raise StoreError(_link_message(self.root))
        walk(self.root)

    def exists(self) -> bool:
        return self.fs.get_file_info(self.path("sweep.yaml")).type == pafs.FileType.File

    # --- the sweep's manifest -------------------------------------------------------------

    def read_manifest(self) -> dict[str, Any] | None:
        """sweep.yaml, checked for the shape memsweep writes (StoreError, one line naming the file,
        if it is not a manifest: a bad YAML tag, anchors, a plan entry of another shape)."""
        if not self.exists():
            return None
        where = self.uri_of("sweep.yaml")
        try:
            with self.fs.open_input_stream(self.path("sweep.yaml")) as f:
                manifest = read_yaml(f.read().decode())
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise StoreError(
                f"{where} is not a memsweep manifest ({_first_line(exc)}); move it away or launch with --overwrite"
            ) from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("spec"), dict):
            raise StoreError(
                f"{where} is not a memsweep manifest (no 'spec' mapping); move it away or launch with --overwrite"
            )
        _check_plan(manifest, where)
        return manifest

    def write_manifest(
        self, spec: dict[str, Any], spec_hash: str, provenance: dict[str, Any], plan: list[dict[str, Any]] | None = None
    ) -> None:
        """sweep.yaml: the schema version, the spec and its hash, provenance, and the trial plan
        (each trial's pack of models, as `sweep.planner.TrialPlan` fields)."""
        body = {
            "schema_version": SCHEMA_VERSION,
            "spec_hash": spec_hash,
            "spec": spec,
            "provenance": provenance,
            "plan": plan or [],
        }
        self._atomic_write(self.path("sweep.yaml"), write_yaml(body).encode())

    # --- fragments ------------------------------------------------------------------------

    def drop_checkpoints(self, fragments: set[str], launch: str | None = None) -> int:
        """Remove Tune's `checkpoint_*` folders of the trials of `fragments` (stored ones: nothing
        will resume from them), in every launch under `_tune/` (a resumed launch starts a new Tune
        experiment, so an interrupted one's checkpoints would otherwise stay), or in `launch` only
        (a trial that just finished: one folder listed, not the whole history). A trial's folder
        is named `<fragment>-<Tune trial id>` (sweep.launcher). Returns how many folders went."""
        removed = 0
        launches = (
            [self.fs.get_file_info(self.path(f"_tune/{launch}"))]
            if launch
            else self.fs.get_file_info(pafs.FileSelector(self.path("_tune"), allow_not_found=True))
        )
        for launch_info in launches:
            if launch_info.type != pafs.FileType.Directory:
                continue
            if self._is_link(launch_info.path):
                continue
            for trial in self.fs.get_file_info(pafs.FileSelector(launch_info.path)):
                if (
                    trial.type != pafs.FileType.Directory
                    or trial.base_name.rsplit("-", 1)[0] not in fragments
                    or self._is_link(trial.path)
                ):
                    continue
                for item in self.fs.get_file_info(pafs.FileSelector(trial.path)):
                    if (
                        item.type == pafs.FileType.Directory
                        and item.base_name.startswith("checkpoint_")
                        and not self._is_link(item.path)
                    ):
                        self.fs.delete_dir(item.path)
                        removed += 1
        return removed

    def _refuse_link_on_way(self, folder: str) -> None:
        """StoreError if the sweep's folder or any folder from it down to `folder` is a link."""
        relative = os.path.relpath(folder, self.root)
        parts = [] if relative == "." else relative.split(os.sep)
        for depth in range(len(parts) + 1):
            here = os.path.join(self.root, *parts[:depth])
            if os.path.islink(here):
                raise StoreError(_link_message(here))

    def _is_link(self, path: str) -> bool:
        """A local symbolic link (checked again where memsweep deletes: one planted after the
        store was opened is still never followed)."""
        return self.is_local and os.path.islink(path)

    def completed(self) -> set[str]:
        """Names of the fragments whose trial finished (present in `trials`), damaged or not."""
        return set(self._fragments("trials"))

    def intact(self, contents: bool = True) -> set[str]:
        """Finished fragments whose every file is present and readable (with `contents`: and
        holds the bytes its trial wrote): what resume skips."""
        return self.completed() - set(self.damaged(contents=contents))

    def damaged(self, full: bool = False, contents: bool = True) -> dict[str, str]:
        """fragment -> what is wrong, for finished fragments with a file that is missing, has an
        unreadable Parquet footer, holds another row count than its trial recorded, or (with
        `contents`) whose bytes differ from what its trial wrote (SHA-256, recorded since schema
        version 3; a trials file is read in full, its pages' checksums checked). With `full`,
        every file is also decoded in full, every page's checksum checked. Computed once per store
        object and kind of check, until it writes or forgets a fragment."""
        if (full, contents) not in self._damage:
            self._damage[(full, contents)] = self._find_damage(full, contents)
        return dict(self._damage[(full, contents)])

    def _find_damage(self, full: bool, contents: bool) -> dict[str, str]:
        """`damaged`'s answer: fragments checked on a few threads (pyarrow and hashlib release the
        GIL; a store of 5,000 trials is mostly waiting on many small files)."""
        present = {t: set(self._fragments(t)) for t in TABLES if t != "trials"}  # for stores without row counts
        with ThreadPoolExecutor(max_workers=8) as pool:
            found = pool.map(lambda f: (f, self._fragment_damage(f, full, contents, present)), sorted(self.completed()))
            return {fragment: why for fragment, why in found if why}

    def _fragment_damage(self, fragment: str, full: bool, contents: bool, present: dict[str, set[str]]) -> str | None:
        try:
            meta = self._footer("trials", fragment, full or contents)
            rows, digests = _record(meta)
        except (OSError, pa.ArrowException, ValueError) as exc:
            return f"trials file unreadable ({_first_line(exc)})"
        if rows is None:  # written before row counts were recorded: check what is there
            rows = {t: None for t, names in present.items() if fragment in names}
        for table, expected in rows.items():
            why = self._file_damage(table, fragment, expected, digests.get(table) if contents else None, full)
            if why:
                return why
        return None

    def _file_damage(self, table: str, fragment: str, rows: int | None, digest: str | None, full: bool) -> str | None:
        """What is wrong with one of a fragment's files (None: nothing found), the most telling
        first: missing, unreadable, another row count, other bytes."""
        try:
            got = self._footer(table, fragment, full=False).num_rows
            if rows is not None and got != rows:
                return f"{table} file has {got} rows, its trial wrote {rows}"
            if digest is not None and self._sha256(self.path(table, f"{fragment}.parquet")) != digest:
                return f"{table} file's bytes differ from what its trial wrote (SHA-256)"
            if full:
                self._footer(table, fragment, full=True)
        except FileNotFoundError:
            return f"{table} file missing"
        except (OSError, pa.ArrowException) as exc:
            return f"{table} file unreadable ({_first_line(exc)})"
        return None

    def _sha256(self, path: str) -> str:
        digest = hashlib.sha256()
        with self.fs.open_input_stream(path) as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()

    def _footer(self, table: str, fragment: str, full: bool) -> pq.FileMetaData:
        """The file's footer; with `full` the whole file is decoded, each page's CRC checked."""
        with self.fs.open_input_file(self.path(table, f"{fragment}.parquet")) as f:
            pf = pq.ParquetFile(f, page_checksum_verification=True)
            if full:
                pf.read()
            return pf.metadata

    def strays(self, planned: set[str]) -> list[str]:
        """Files in the table folders that are not fragments of the `planned` trials (a copy, a
        note, another sweep's file): a Parquet reader of the folder, as `pandas.read_parquet` or
        the report, would fail on them or read them as this sweep's data."""
        found = []
        for table in TABLES:
            selector = pafs.FileSelector(self.path(table), allow_not_found=True)
            found += [
                self.uri_of(table, i.base_name)
                for i in self.fs.get_file_info(selector)
                if not i.base_name.startswith((".", "_"))
                and (
                    i.type != pafs.FileType.File
                    or not i.base_name.endswith(".parquet")
                    or i.base_name[: -len(".parquet")] not in planned
                )
            ]
        return found

    def forget(self, fragments: set[str]) -> None:
        """Remove the completion mark (the `trials` file) of these fragments, so they run again,
        and their last launch state (they are not failed: not done)."""
        self._damage.clear()
        for fragment in fragments:
            with contextlib.suppress(FileNotFoundError):
                self.fs.delete_file(self.path("trials", f"{fragment}.parquet"))
        state = self.read_launch_state()
        if fragments & set(state.get("trials", {})):
            state["trials"] = {k: v for k, v in state["trials"].items() if k not in fragments}
            self.write_launch_state(state)

    def _fragments(self, table: str) -> list[str]:
        selector = pafs.FileSelector(self.path(table), allow_not_found=True)
        return sorted(
            Path(i.path).stem
            for i in self.fs.get_file_info(selector)
            if i.path.endswith(".parquet") and not Path(i.path).name.startswith((".", "_"))
        )

    def write_fragment(self, fragment: str, tables: dict[str, pa.Table], metadata: dict[str, Any]) -> None:
        """Write (or replace) `fragment` in the given tables, `trials` last, each file atomically.
        A table left out (e.g. `examples` when a run records none) gets no file."""
        if "trials" not in tables or not set(tables) <= set(TABLES):
            raise ValueError(f"a fragment needs 'trials' and only tables of {TABLES}, got {sorted(tables)}")
        self._damage.clear()
        meta = {"schema_version": SCHEMA_VERSION, **metadata}
        # The trials file (the completion mark) records every other file's row count and SHA-256.
        rows = {name: tables[name].num_rows for name in TABLES if name in tables and name != "trials"}
        digests: dict[str, str] = {}
        for name in [t for t in TABLES if t in tables]:
            contract.check(name, tables[name].schema, _axes(metadata))  # before anything is written
        for name in [t for t in TABLES if t in tables]:
            record = dict(meta, rows=rows, sha256=digests) if name == "trials" else meta
            payload = _parquet_bytes(tables[name], json.dumps(record, sort_keys=True).encode())
            digests[name] = hashlib.sha256(payload).hexdigest()
            self._atomic_write(self.path(name, f"{fragment}.parquet"), payload)
            maybe_crash(f"after-{name}")

    def clear(self, fragments: set[str] = frozenset()) -> None:
        """Delete what this store wrote in the sweep's folder (for --overwrite): in each table
        folder (a real folder, not a link) the regular files that are `fragments` (the previous
        plan's names) or carry the store's metadata, and its hidden temporary files; its own files
        and Tune's state. Anything else (a file it does not recognise as its own) is left alone."""
        self._damage.clear()
        for table in TABLES:
            folder = self.path(table)
            if self._is_link(folder):
                continue
            selector = pafs.FileSelector(folder, allow_not_found=True)
            for info in self.fs.get_file_info(selector):
                if info.type != pafs.FileType.File or self._is_link(info.path):
                    continue
                name = info.base_name
                temporary = name.startswith(".") and name.endswith(".tmp")
                if temporary or (name.endswith(".parquet") and (name[:-8] in fragments or self._is_own(info.path))):
                    self.fs.delete_file(info.path)
            self._remove_if_empty(folder)
        for name in OWN_FILES:
            with contextlib.suppress(FileNotFoundError):
                self.fs.delete_file(self.path(name))
        for name in OWN_FOLDERS:
            if self._is_link(self.path(name)):
                continue
            if self.fs.get_file_info(self.path(name)).type == pafs.FileType.Directory:
                self.fs.delete_dir(self.path(name))
        self._remove_if_empty(self.root)

    def _is_own(self, path: str) -> bool:
        """A Parquet file whose footer carries this sweep's memsweep metadata."""
        try:
            with self.fs.open_input_file(path) as f:
                meta = pq.ParquetFile(f).metadata.metadata or {}
            return json.loads(meta.get(METADATA_KEY, b"{}")).get("sweep") == self.sweep
        except (OSError, pa.ArrowException, ValueError):
            return False

    def _remove_if_empty(self, folder: str) -> None:
        if self.is_local:
            with contextlib.suppress(OSError):  # rmdir removes only an empty folder, atomically
                os.rmdir(folder)
            return
        info = self.fs.get_file_info(folder)
        if info.type == pafs.FileType.Directory and not self.fs.get_file_info(
            pafs.FileSelector(folder, allow_not_found=True)
        ):
            self.fs.delete_dir(folder)

    # --- the launch's state (JSON, read by `sweep status`) --------------------------------

    def write_launch_state(self, state: dict[str, Any]) -> None:
        self._atomic_write(self.path("_launch.json"), json.dumps(state, sort_keys=True).encode())

    def read_launch_state(self) -> dict[str, Any]:
        """The last launch's state ({} if none or unreadable): plain JSON, never code. StoreError
        (one line naming the file) if it is JSON of another shape than memsweep writes."""
        try:
            with self.fs.open_input_stream(self.path("_launch.json")) as f:
                text = f.read().decode(errors="replace")
        except (FileNotFoundError, pa.ArrowException):
            return {}
        try:
            state = json.loads(text)
        except (ValueError, RecursionError):
            state = None
        trials = state.get("trials", {}) if isinstance(state, dict) else None
        if not isinstance(trials, dict) or not all(isinstance(v, str) for v in trials.values()):
            raise StoreError(
                f"{self.uri_of('_launch.json')} is not a memsweep launch state (its 'trials' must map "
                "fragments to states); move it away"
            )
        return state

    # --- one launch at a time -------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, command: str) -> Iterator[None]:
        """Hold the sweep's lock while the block runs; StoreError (naming the holder) if another
        launch holds it. On a local or shared file system (NFS included) it is an exclusive
        `flock` of <sweep>/_lock, released by the kernel when its process dies. On an object
        store (S3, GCS), which has no locks, it is a lease: <sweep>/_lock holds the owner and a
        heartbeat refreshed every 30 s; a lease not refreshed for 120 s (a killed driver) is
        taken over. Two launches started within the same second on an object store can both
        get it: start one launch per sweep there."""
        owner = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "command": command,
            "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "token": uuid.uuid4().hex,
        }
        created = self._missing_folders()
        try:
            self.fs.create_dir(self.root, recursive=True)
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"results location {self.uri!r} cannot be written: {_first_line(exc)}") from None
        holder = self._flock if self.is_local else self._lease
        try:
            with holder(owner):
                yield
        finally:
            for folder in created:  # the sweep's folder, then the parents this call made, if empty
                self._remove_if_empty(folder)

    def _missing_folders(self) -> list[str]:
        """The sweep's folder and its missing ancestors, deepest first (local: the folders that
        creating the sweep's folder would make; elsewhere: the sweep's folder if missing)."""
        missing, folder = [], self.root
        while self.fs.get_file_info(folder).type == pafs.FileType.NotFound:
            missing.append(folder)
            parent = folder.rsplit("/", 1)[0]
            if not self.is_local or not parent or parent == folder:
                break
            folder = parent
        return missing

    @contextlib.contextmanager
    def _flock(self, owner: dict[str, Any]) -> Iterator[None]:
        import fcntl

        path = self.path(LOCK)
        while True:
            try:  # O_NOFOLLOW: a link planted as the lock is never written through
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise StoreError(_link_message(path)) from None
                raise StoreError(
                    f"cannot take the lock {path} ({exc.strerror}): it must be a file memsweep "
                    "creates; move it away if no launch is running"
                ) from None
            info = os.fstat(fd)
            if info.st_nlink == 0:  # the holder removed it just now, as it ends: open the next one
                os.close(fd)
                continue
            if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:  # a FIFO, a device, a hard link
                os.close(fd)
                raise StoreError(
                    f"cannot take the lock {path}: it must be a regular file memsweep creates (one "
                    "link, not a FIFO or a hard link to another file); move it away if no launch is "
                    "running"
                )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                time.sleep(0.2)  # the holder may be between taking the lock and writing its name
                raise StoreError(self._held_message(_read_owner(path))) from None
            except OSError as exc:  # a file system without flock (some Lustre or GPFS mounts)
                os.close(fd)
                raise StoreError(
                    f"cannot lock {path} ({exc.strerror}): this file system has no file locks; "
                    "use a results location on one that does"
                ) from None
            # The holder before us may have removed the file after we opened it: then our lock
            # is on a file nobody else will open. Take it again on the file that is there now.
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(owner).encode())
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # while still holding it: a waiter re-checks the inode
            os.close(fd)

    @contextlib.contextmanager
    def _lease(self, owner: dict[str, Any]) -> Iterator[None]:
        path = self.path(LOCK)
        current = self._live_lease()
        if current:
            raise StoreError(self._held_message(current))

        def write() -> None:
            self._atomic_write(path, json.dumps(dict(owner, heartbeat=time.time())).encode())

        write()
        time.sleep(1.0)  # a launch that wrote its lease at the same moment: the last writer wins
        if (self._read_lease() or {}).get("token") != owner["token"]:
            raise StoreError(self._held_message(self._read_lease() or {}))
        stop = threading.Event()

        def ours() -> bool:
            return (self._read_lease() or {}).get("token") == owner["token"]

        def refresh() -> None:
            while not stop.wait(LEASE_REFRESH_SECONDS):
                with contextlib.suppress(OSError, pa.ArrowException):
                    if ours():  # never overwrite a lease another launch took over
                        write()

        thread = threading.Thread(target=refresh, name="memsweep-lease", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            with contextlib.suppress(OSError, pa.ArrowException):
                if ours():
                    self.fs.delete_file(path)

    def _live_lease(self) -> dict[str, Any] | None:
        """The lease on <sweep>/_lock if its holder refreshed it within LEASE_SECONDS, else None."""
        lease = self._read_lease()
        return lease if lease and time.time() - _number(lease.get("heartbeat")) < LEASE_SECONDS else None

    def _read_lease(self) -> dict[str, Any] | None:
        try:
            with self.fs.open_input_stream(self.path(LOCK)) as f:
                value = json.loads(f.read().decode())
        except (OSError, ValueError, pa.ArrowException):
            return None
        return value if isinstance(value, dict) else None

    def holder(self) -> dict[str, Any] | None:
        """The launch holding the sweep's lock right now (its owner record, {} if unreadable), or
        None: for `sweep status`, which should not suggest resuming a sweep that is running."""
        if not self.is_local:
            return self._live_lease()
        import fcntl

        path = self.path(LOCK)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_owner(path)
        except OSError:
            return None
        finally:
            os.close(fd)  # closing drops a shared lock we got: nobody held it
        return None

    def _held_message(self, owner: dict[str, Any]) -> str:
        who = (
            (
                f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}, started {owner.get('started', '?')}: "
                f"{owner.get('command', '?')}"
            )
            if owner
            else "owner unknown"
        )
        return f"{self.uri} is in use by another launch ({who}); wait for it to end, or stop it"

    def row_counts(self) -> dict[str, int]:
        """Rows per table, in write order; tables the sweep does not record are left out."""

        def rows(path: str) -> int:
            with self.fs.open_input_file(path) as f:
                return pq.ParquetFile(f).metadata.num_rows

        counts = {}
        with ThreadPoolExecutor(max_workers=8) as pool:  # footers of many small files: mostly waiting
            for name in TABLES:
                fragments = self._fragments(name)
                if fragments:
                    counts[name] = sum(pool.map(rows, [self.path(name, f"{frag}.parquet") for frag in fragments]))
        return counts

    def _atomic_write(self, path: str, payload: bytes | pa.Buffer) -> None:
        folder, name = path.rsplit("/", 1)
        tmp = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
        if self.is_local:  # a link planted since the store opened
            self._refuse_link_on_way(folder)
        self.fs.create_dir(folder, recursive=True)
        with self.fs.open_output_stream(tmp) as f:
            f.write(payload)
        self.fs.move(tmp, path)  # a rename on local and POSIX file systems


def _parquet_bytes(table: pa.Table, record: bytes) -> pa.Buffer:
    """One Parquet file of `table` with `record` as its memsweep metadata, zstd, a CRC per page.
    One row group per record batch: a trial hands over one batch per (epoch, split) block, so
    readers filtering on those columns skip the other blocks by statistics. The file's bytes
    stay in Arrow's buffer (hashed and written from it, never copied): beside the table, memory
    holds its compressed file once (~half the table's Arrow size for an examples table)."""
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: record})
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, table.schema, compression="zstd", write_page_checksum=True) as writer:
        for batch in table.to_batches():
            writer.write_batch(batch)
    return sink.getvalue()


def _record(meta: pq.FileMetaData) -> tuple[dict | None, dict]:
    """(rows, sha256) of a trials file's memsweep record: what each of the trial's other files
    holds (None and {} for stores written before them). ValueError if they are of another shape."""
    record = json.loads((meta.metadata or {}).get(METADATA_KEY, b"{}"))
    rows, digests = (record.get("rows"), record.get("sha256") or {}) if isinstance(record, dict) else (0, 0)
    if not (rows is None or isinstance(rows, dict)) or not isinstance(digests, dict):
        raise ValueError("its memsweep record is not of the shape memsweep writes")
    return rows, digests


def _link_message(path: str) -> str:
    return (
        f"{path} is a symbolic link; memsweep never follows links inside a results location "
        "(it could lead writes or deletes outside it): remove the link, or use another location"
    )


def _check_plan(manifest: dict[str, Any], where: str) -> None:
    """StoreError naming `where` unless the manifest's plan entries are TrialPlans with safe
    fragment names (a planted '../x' would write outside the sweep's folder) and its provenance,
    which hints repeat, is of the shape memsweep writes."""
    plan, prov = manifest.get("plan") or [], manifest.get("provenance") or {}
    bad = "its 'plan' is not a list" if not isinstance(plan, list) else None
    for i, entry in enumerate(plan if bad is None else []):
        try:
            TrialPlan.from_dict(entry)
        except ValueError as exc:
            bad = f"plan entry {i}: {exc}"
            break
    args = prov.get("args", []) if isinstance(prov, dict) else None
    if bad is None and not (
        isinstance(prov, dict)
        and isinstance(prov.get("preset", ""), str)
        and isinstance(args, list)
        and all(isinstance(a, str) for a in args)
    ):
        bad = "its 'provenance' is not of the shape memsweep writes"
    if bad:
        raise StoreError(f"{where} is not a memsweep manifest ({bad}); move it away or launch with --overwrite")


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0  # a lease without a readable heartbeat counts as stale


def _read_owner(path: str) -> dict[str, Any]:
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _axes(metadata: dict[str, Any]) -> tuple[str, ...]:
    """The hyperparameter axes of the sweep a fragment's metadata names (its spec's grid and sample keys)."""
    spec = metadata.get("spec") or {}
    return (*(spec.get("grid") or {}), *((spec.get("sample") or {}).get("space") or {}))
