"""Where the data sets' files live, and whether they are there: no torch, so that the driver can
check a sweep's data before it starts Ray (CIFAR-10's md5 check imports torchvision, lazily)."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CIFAR_DIR = "cifar-10-batches-py"
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


class DataUnavailable(RuntimeError):
    """The data set's files are missing and could not be fetched; the message says where to put them."""


def default_root() -> Path:
    """Where downloads go when no root is given: $MEMSWEEP_DATA or ~/.cache/memsweep/data."""
    return Path(os.environ.get("MEMSWEEP_DATA", Path.home() / ".cache" / "memsweep" / "data"))


def ensure_available(
    name: str, root: str | Path | None = None, download: bool = True, create_root: bool = True
) -> None:
    """Raise `DataUnavailable` (one line, with where to put the files) unless `name` can be loaded.

    Called by the launcher before anything is written, so that an offline
    machine without the files fails fast instead of in every trial. Without
    `create_root` (a folder the user named), a missing root is an error, never created.
    """
    if name in IDX_SETS:
        idx_root(name, root, download=download, create_root=create_root, check=True)
        return
    if name != "cifar10":
        return
    root = Path(root or default_root())
    if not create_root and not root.is_dir():
        raise DataUnavailable(
            f"CIFAR-10 not found at {root / CIFAR_DIR}: {root} does not exist (no such "
            f"folder); put the extracted '{CIFAR_DIR}' folder there or pass --data-root "
            "DIR that contains it"
        )
    cifar10_files(root, download=download)


def cifar10_files(root: Path, download: bool, check: bool = True) -> None:
    """Make sure root/cifar-10-batches-py exists (with `check`: and passes torchvision's md5
    checks), downloading it under a file lock if allowed."""
    from filelock import FileLock

    where = (
        f"put the extracted '{CIFAR_DIR}' folder (from {CIFAR_URL}) under {root} "
        f"or pass --data-root DIR that contains it"
    )
    if (root / CIFAR_DIR).is_dir():
        if check:
            _check_cifar10(root)
        return
    if not download:
        raise DataUnavailable(f"CIFAR-10 not found at {root / CIFAR_DIR}: {where}")
    root.mkdir(parents=True, exist_ok=True)
    # Trials on one node share the download: the lock makes the others wait for it.
    with FileLock(str(root / ".cifar10.lock")):
        if (root / CIFAR_DIR).is_dir():
            return
        from torchvision.datasets import CIFAR10
        from torchvision.datasets.utils import download_and_extract_archive

        with _download(f"CIFAR-10 not found at {root / CIFAR_DIR} and the download failed", f": {where}"):
            download_and_extract_archive(CIFAR_URL, str(root), filename=CIFAR10.filename, md5=CIFAR10.tgz_md5)


@contextlib.contextmanager
def _download(failed: str, then: str) -> Iterator[None]:
    """A download with a 30 s socket timeout; any failure (URLError, a timeout, a bad checksum: no
    usable download) becomes DataUnavailable: '<failed> (<reason>)<then>'."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        yield
    except Exception as exc:  # noqa: BLE001
        reason = str(getattr(exc, "reason", exc)).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataUnavailable(f"{failed} ({reason}){then}") from None
    finally:
        socket.setdefaulttimeout(previous)


def _check_cifar10(root: Path) -> None:
    """Raise DataUnavailable unless every CIFAR-10 file under root has the md5 torchvision
    checks when it loads them (a truncated batch fails here, before any trial starts)."""
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_integrity

    folder = root / CIFAR10.base_folder
    files = [*CIFAR10.train_list, *CIFAR10.test_list, [CIFAR10.meta["filename"], CIFAR10.meta["md5"]]]
    bad = [name for name, md5 in files if not check_integrity(str(folder / name), md5)]
    if bad:
        raise DataUnavailable(
            f"CIFAR-10 files under {folder} are missing or corrupted ({', '.join(bad)} "
            "fail torchvision's md5 check); delete the folder to download it again"
        )


# --- MNIST-format data sets (IDX files, as torchvision's MNIST classes read them) ----------------


@dataclass(frozen=True)
class IdxSet:
    title: str
    folder: str  # torchvision's class name: files under <root>/<folder>/raw/
    debian: str | None  # Debian's dataset package and the folder where it puts the .gz files
    debian_dir: str | None
    # Decompressed file -> (bytes, SHA-256 or None where not recorded). The sizes are the IDX
    # format's (16-byte image header + 28 x 28 bytes an image; 8-byte label header + 1 an image).
    files: dict[str, tuple[int, str | None]]


def _idx_files(train: int = 60_000, test: int = 10_000, sha: dict[str, str] | None = None):
    sizes = {
        "train-images-idx3-ubyte": 16 + 784 * train,
        "train-labels-idx1-ubyte": 8 + train,
        "t10k-images-idx3-ubyte": 16 + 784 * test,
        "t10k-labels-idx1-ubyte": 8 + test,
    }
    return {name: (size, (sha or {}).get(name)) for name, size in sizes.items()}


# Fashion-MNIST's checksums were taken from the files of Debian's dataset-fashion-mnist
# (the original data; Debian recompressed the .gz archives, so their md5s differ from
# torchvision's list, which is for the upstream archives). MNIST and KMNIST are checked by size
# and, when torchvision downloads them, by the archives' md5s.
IDX_SETS = {
    "fashion-mnist": IdxSet(
        "Fashion-MNIST",
        "FashionMNIST",
        "dataset-fashion-mnist",
        "/usr/share/datasets/fashion-mnist",
        _idx_files(
            sha={
                "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            }
        ),
    ),
    "mnist": IdxSet("MNIST", "MNIST", None, None, _idx_files()),
    "kmnist": IdxSet("KMNIST", "KMNIST", None, None, _idx_files()),
}


def idx_root(
    name: str, root: str | Path | None = None, *, download: bool = True, create_root: bool = True, check: bool = False
) -> Path:
    """A root under which torchvision's class for `name` finds its decompressed files
    (<root>/<folder>/raw/). Looked for, in order: under `root` (default: the default data
    folder); Debian's package folder, decompressed once into the default data folder; a
    download when online. Every file's size is checked, and with `check` its SHA-256 where one
    is recorded. DataUnavailable (one line: which file, and how to get the data) otherwise."""
    info = IDX_SETS[name]
    root = Path(root) if root is not None else default_root()
    named = root != default_root()  # a folder the user chose (the CLI passes the default one too)
    if all((root / info.folder / "raw" / file).is_file() for file in info.files) or (
        named and (root / info.folder / "raw").is_dir()
    ):  # a folder the user named is what they meant
        _check_idx(info, root, check)
        return root
    if not create_root and not root.is_dir():
        raise DataUnavailable(f"{info.title} not found: --data-root {root} does not exist; {_how_to_get(info)}")
    cache = default_root()
    if info.debian_dir and Path(info.debian_dir).is_dir():
        _unpack_debian(info, cache)
        _check_idx(info, cache, check)
        return cache
    if not download:
        raise DataUnavailable(f"{info.title} not found under {root / info.folder / 'raw'}; {_how_to_get(info)}")
    _download_idx(name, info, root)
    _check_idx(info, root, check)
    return root


def _how_to_get(info: IdxSet) -> str:
    apt = f"`apt-get install {info.debian}` (Debian: files in {info.debian_dir}), " if info.debian else ""
    return (
        f"get it with {apt}a download when online, or --data-root DIR holding "
        f"{info.folder}/raw/ with {', '.join(info.files)}"
    )


def _check_idx(info: IdxSet, root: Path, check: bool) -> None:
    """Each file present and as long as its IDX header says; with `check`, also the recorded
    size (the real data set's) and SHA-256."""
    folder = root / info.folder / "raw"
    for file, (size, sha) in info.files.items():
        path = folder / file
        if not path.is_file():
            raise DataUnavailable(f"{info.title}: {path} is missing; {_how_to_get(info)}")
        why = _idx_damage(path, size if check else None, sha if check else None)
        if why:
            raise DataUnavailable(
                f"{info.title}: {path} {why} (damaged, or not the original file): delete {folder} to get it again"
            )


def _idx_damage(path: Path, size: int | None, sha: str | None) -> str | None:
    """What is wrong with an IDX file (None: nothing): its header, its length, or (where given)
    the data set's own size and SHA-256."""
    got, header = path.stat().st_size, _idx_size(path)
    if header < 0:
        return "has no IDX header"
    if got != header:
        return f"has {got:,} bytes and its header says {header:,}"
    if size is not None and got != size:
        return f"has {got:,} bytes and the data set's has {size:,}"
    if sha is not None and _sha256(path) != sha:
        return "fails its SHA-256 check"
    return None


def _idx_size(path: Path) -> int:
    """The length an IDX file's header implies: magic (0x0000 08 ndim, unsigned bytes), ndim
    big-endian int32 sizes, then the bytes; -1 if the header is not IDX."""
    with open(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4 or head[:3] != b"\x00\x00\x08" or not 1 <= head[3] <= 4:
            return -1
        dims = f.read(4 * head[3])
    if len(dims) < 4 * head[3]:
        return -1
    count = 1
    for i in range(head[3]):
        count *= int.from_bytes(dims[4 * i : 4 * i + 4], "big")
    return 4 + 4 * head[3] + count


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _unpack_debian(info: IdxSet, cache: Path) -> None:
    """Debian's .gz files decompressed into <cache>/<folder>/raw/ (under a file lock: trials on
    one node share it), each written under a temporary name and renamed into place."""
    from filelock import FileLock

    folder = cache / info.folder / "raw"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataUnavailable(
            f"{info.title}: cannot write the data folder {folder} ({exc.strerror}) to decompress "
            f"{info.debian_dir} into; set MEMSWEEP_DATA or pass --data-root DIR"
        ) from None
    with FileLock(str(cache / f".{info.folder}.lock")):
        for file in info.files:
            target, source = folder / file, Path(info.debian_dir) / f"{file}.gz"
            if target.is_file() and target.stat().st_size == _idx_size(target):
                continue
            if not source.is_file():
                raise DataUnavailable(f"{info.title}: {source} is missing; reinstall {info.debian}")
            tmp = folder / f".{file}.{os.getpid()}.tmp"
            try:
                with gzip.open(source, "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            except (OSError, EOFError) as exc:
                tmp.unlink(missing_ok=True)
                raise DataUnavailable(
                    f"{info.title}: {source} cannot be decompressed ({exc}); reinstall {info.debian}"
                ) from None
            os.replace(tmp, target)


def _download_idx(name: str, info: IdxSet, root: Path) -> None:
    """torchvision's own download of the data set into root (its md5s checked), under a file lock."""
    from filelock import FileLock
    from torchvision import datasets

    root.mkdir(parents=True, exist_ok=True)
    with (
        _download(
            f"{info.title} not found under {root / info.folder / 'raw'} and the download failed",
            f"; {_how_to_get(info)}",
        ),
        FileLock(str(root / f".{info.folder}.lock")),
    ):
        getattr(datasets, info.folder)(str(root), train=True, download=True)
