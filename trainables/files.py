"""Where the data sets' files live, and whether they are there: no torch, so that the driver can
check a sweep's data before it starts Ray (CIFAR-10's md5 check imports torchvision, lazily)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

CIFAR_DIR = "cifar-10-batches-py"
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


class DataUnavailable(RuntimeError):
    """The data set's files are missing and could not be fetched; the message says where to put them."""


def default_root() -> Path:
    """Where downloads go when no root is given: $MEMSWEEP_DATA or ~/.cache/memsweep/data."""
    return Path(os.environ.get("MEMSWEEP_DATA", Path.home() / ".cache" / "memsweep" / "data"))


def ensure_available(name: str, root: str | Path | None = None, download: bool = True,
                     create_root: bool = True) -> None:
    """Raise `DataUnavailable` (one line, with where to put the files) unless `name` can be loaded.

    Called by the launcher before anything is written, so that an offline
    machine without the files fails fast instead of in every trial. Without
    `create_root` (a folder the user named), a missing root is an error, never created.
    """
    if name != "cifar10":
        return
    root = Path(root or default_root())
    if not create_root and not root.is_dir():
        raise DataUnavailable(f"CIFAR-10 not found at {root / CIFAR_DIR}: {root} does not exist (no such "
                              f"folder); put the extracted '{CIFAR_DIR}' folder there or pass --data-root "
                              "DIR that contains it")
    cifar10_files(root, download=download)


def cifar10_files(root: Path, download: bool, check: bool = True) -> None:
    """Make sure root/cifar-10-batches-py exists (with `check`: and passes torchvision's md5
    checks), downloading it under a file lock if allowed."""
    from filelock import FileLock

    where = (f"put the extracted '{CIFAR_DIR}' folder (from {CIFAR_URL}) under {root} "
             f"or pass --data-root DIR that contains it")
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

        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(30)
        try:
            download_and_extract_archive(CIFAR_URL, str(root), filename=CIFAR10.filename,
                                         md5=CIFAR10.tgz_md5)
        except Exception as exc:  # URLError, timeouts, bad checksum: all mean "no usable download"
            reason = str(getattr(exc, "reason", exc)).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataUnavailable(f"CIFAR-10 not found at {root / CIFAR_DIR} and the download "
                                  f"failed ({reason}): {where}") from None
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
        raise DataUnavailable(f"CIFAR-10 files under {folder} are missing or corrupted ({', '.join(bad)} "
                              "fail torchvision's md5 check); delete the folder to download it again")
