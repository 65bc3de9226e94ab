"""Data sets: the digits split and normalization, torchvision's CIFAR-10 and MNIST-format paths on
tiny real-format sets, and the real Fashion-MNIST where Debian's package is installed."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_idx

from trainables import data as datasets
from trainables import files


def test_digits_fixed_split_and_normalization():
    d = datasets.load("digits")
    assert d.train.x.shape == (1437, 1, 8, 8) and d.test.x.shape == (360, 1, 8, 8)
    assert d.train.x.dtype == torch.float32 and d.train.y.dtype == torch.int64
    assert abs(d.train.x.mean().item()) < 1e-5 and abs(d.train.x.std().item() - 1) < 1e-3
    assert torch.equal(d.train.y, datasets.load("digits").train.y)  # the split is fixed
    counts = torch.bincount(d.test.y)  # stratified: 360 / 10 classes of 174..183 images
    assert counts.sum() == 360 and counts.min() >= 35 and counts.max() <= 37


def test_cifar10_through_torchvision(tiny_cifar):
    import pickle

    d = datasets.load("cifar10", tiny_cifar, download=False)
    assert d.train.x.shape == (20, 3, 32, 32) and d.test.x.shape == (6, 3, 32, 32)
    with open(tiny_cifar / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    assert d.train.y[:4].tolist() == batch["labels"]
    # Pixel (channel 0, row 0, col 0) of image 0, /255 then standardized per channel.
    raw = np.concatenate(
        [
            pickle.load(open(tiny_cifar / "cifar-10-batches-py" / f"data_batch_{b}", "rb"), encoding="latin1")["data"]
            for b in range(1, 6)
        ]
    ).astype(np.float64)
    red = raw[:, :1024] / 255
    expect = (red[0, 0] - red.mean()) / red.std(ddof=1)
    assert abs(d.train.x[0, 0, 0, 0].item() - expect) < 1e-4
    assert torch.allclose(d.train.x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)


def test_cifar10_corrupted_files_are_one_clear_line(tiny_cifar):
    (tiny_cifar / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(datasets.DataUnavailable, match="incomplete or corrupted"):
        datasets.load("cifar10", tiny_cifar)


def test_cifar10_offline_without_files(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "CIFAR_URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    root = tmp_path / "nothing-here"
    with pytest.raises(datasets.DataUnavailable) as err:
        files.ensure_available("cifar10", root)
    msg = str(err.value)
    assert "\n" not in msg and "cifar-10-batches-py" in msg and str(root) in msg and "--data-root" in msg
    with pytest.raises(datasets.DataUnavailable, match="not found"):
        files.ensure_available("cifar10", root, download=False)


def test_unknown_dataset():
    with pytest.raises(
        ValueError, match="unknown dataset .svhn. \\(allowed: digits, cifar10, synthetic, fashion-mnist"
    ):
        datasets.load("svhn")


def test_synthetic_is_cifar_shaped_and_fixed():
    d = datasets.load("synthetic")
    assert d.train.x.shape == (50_000, 3, 32, 32) and d.test.x.shape == (10_000, 3, 32, 32)
    assert torch.equal(d.train.y[:100], datasets.load("synthetic").train.y[:100])
    small = d.subset_train(500)
    assert len(small.train) == 500 and small.test is d.test


def test_the_digits_split_is_cached_and_a_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("MEMSWEEP_DATA", str(tmp_path))
    fresh = datasets.load("digits")
    (cache,) = tmp_path.glob("digits-*.npz")
    # A trial process that finds the cache does not import scikit-learn (0.8 s a process).
    code = "import sys; from trainables import data; data.load('digits'); assert 'sklearn' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={**__import__("os").environ})
    for damage in (b"", b"PK\x03\x04 not a zip", None):
        if damage is None:  # a readable archive with the wrong arrays
            np.savez(cache, x_tr=np.zeros(3), y_tr=np.zeros(3), x_te=np.zeros(3), y_te=np.zeros(3))
        else:
            cache.write_bytes(damage)
        again = datasets.load("digits")
        assert torch.equal(again.train.x, fresh.train.x) and torch.equal(again.test.y, fresh.test.y)
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_report_shows_what_each_variant_trained_on():
    """randX galleries show the noise the networks saw where it replaced an image (the trial's own
    corruption and seed rule), and the clean image elsewhere; randY and real show the images."""
    from sweep import cli, presets, seeding

    spec = presets.resolve("fig1-difficulty", "digits", ["corruption.p=0.5"])
    images = cli._images(None, {"spec": spec.model_dump()})
    clean = images("digits", "train")
    noisy = images("digits", "train", "randX")
    d = datasets.load("digits")
    c = spec.corruption_of("randX")
    _, mask = datasets_corrupt(d, c, seeding.derive_seed(spec.seed, "corruption", "randX"))
    changed = (noisy != clean).reshape(len(clean), -1).any(axis=1)
    assert changed[mask.numpy()].mean() > 0.95 and not changed[~mask.numpy()].any()
    assert np.array_equal(images("digits", "train", "randY"), clean)


def datasets_corrupt(d, c, seed):
    from trainables import corruption

    return corruption.apply(d, c.kind, c.p, seed)


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist", "kmnist"])
def test_an_mnist_format_set_through_torchvision(tmp_path, name):
    folder = files.IDX_SETS[name].folder
    arrays = write_idx(tmp_path / folder / "raw")
    d = datasets.load(name, tmp_path, download=False)
    assert d.train.x.shape == (12, 1, 28, 28) and d.test.x.shape == (5, 1, 28, 28)
    assert d.train.y.tolist() == arrays["train"][1].tolist() and d.test.y.tolist() == arrays["t10k"][1].tolist()
    pixels = arrays["train"][0].astype(np.float64) / 255  # /255, then the train split's global mean and std
    expect = (pixels[0, 0, 0] - pixels.mean()) / pixels.std(ddof=1)
    assert abs(d.train.x[0, 0, 0, 0].item() - expect) < 1e-4 and abs(d.train.x.mean().item()) < 1e-5


@pytest.fixture
def debian(tmp_path, monkeypatch):
    """Debian's package folder for Fashion-MNIST (tiny .gz files in the real format) and an empty
    default data folder."""
    import dataclasses

    package = tmp_path / "usr-share-datasets-fashion-mnist"
    arrays = write_idx(package, compress=True)
    info = dataclasses.replace(files.IDX_SETS["fashion-mnist"], debian_dir=str(package))
    monkeypatch.setitem(files.IDX_SETS, "fashion-mnist", info)
    monkeypatch.setenv("MEMSWEEP_DATA", str(tmp_path / "cache"))
    return package, arrays


def test_debians_files_are_decompressed_once_into_the_data_folder(debian, tmp_path):
    package, arrays = debian
    d = datasets.load("fashion-mnist", download=False)
    assert d.train.y.tolist() == arrays["train"][1].tolist()
    raw = tmp_path / "cache" / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(files.IDX_SETS["fashion-mnist"].files)
    stamp = {p.name: p.stat().st_mtime_ns for p in raw.iterdir()}
    datasets.load("fashion-mnist", download=False)
    assert {p.name: p.stat().st_mtime_ns for p in raw.iterdir()} == stamp  # read, not written again


def test_a_damaged_idx_file_is_one_line_naming_it(debian, tmp_path):
    datasets.load("fashion-mnist", download=False)
    victim = tmp_path / "cache" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte"
    victim.write_bytes(victim.read_bytes()[:-100])  # truncated
    with pytest.raises(datasets.DataUnavailable) as err:
        datasets.load("fashion-mnist", download=False)
    assert "\n" not in str(err.value) and f"{victim} has " in str(err.value) and "header says" in str(err.value)
    # The driver's check also compares the real data set's sizes and checksums: the tiny set is not it.
    victim.unlink()
    with pytest.raises(datasets.DataUnavailable, match="the data set's has 47,040,016"):
        files.ensure_available("fashion-mnist")


def test_a_missing_set_says_how_to_get_it(tmp_path, monkeypatch):
    import dataclasses

    monkeypatch.setitem(
        files.IDX_SETS,
        "fashion-mnist",
        dataclasses.replace(files.IDX_SETS["fashion-mnist"], debian_dir=str(tmp_path / "not-installed")),
    )
    with pytest.raises(datasets.DataUnavailable) as err:
        files.ensure_available("fashion-mnist", tmp_path / "empty", download=False)
    msg = str(err.value)
    assert "\n" not in msg and "apt-get install dataset-fashion-mnist" in msg and "--data-root" in msg
    with pytest.raises(datasets.DataUnavailable, match="does not exist"):
        files.ensure_available("fashion-mnist", tmp_path / "no-such-folder", create_root=False)


def test_a_named_data_root_missing_a_file_is_named_not_replaced(debian, tmp_path):
    """A --data-root holding three of the four files: that folder is what the user meant, so the
    missing file is named (Debian's copy elsewhere is not quietly used instead)."""
    root = tmp_path / "mine"
    write_idx(root / "FashionMNIST" / "raw")
    (root / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(datasets.DataUnavailable, match="t10k-labels-idx1-ubyte is missing"):
        datasets.load("fashion-mnist", root, download=False)


REAL_FASHION = Path(files.IDX_SETS["fashion-mnist"].debian_dir)


@pytest.mark.skipif(
    not REAL_FASHION.is_dir() and not os.environ.get("MEMSWEEP_REQUIRE_REAL_DATA"),
    reason="Debian's dataset-fashion-mnist is not installed (.ci/run installs it)",
)
def test_the_real_fashion_mnist(tmp_path, monkeypatch):
    """The original files (Debian's package; .ci/run installs it): recorded sizes and SHA-256s,
    60,000 + 10,000 images, pixel mean 0.2860 and std 0.3530 (Xiao et al. 2017)."""
    monkeypatch.setenv("MEMSWEEP_DATA", str(tmp_path))
    files.ensure_available("fashion-mnist", download=False)  # decompresses, checks every SHA-256
    d = datasets.load("fashion-mnist", download=False)
    assert d.train.x.shape == (60_000, 1, 28, 28) and d.test.x.shape == (10_000, 1, 28, 28)
    assert torch.bincount(d.train.y).tolist() == [6000] * 10 and torch.bincount(d.test.y).tolist() == [1000] * 10
    assert abs(1 / d.pixel_scale[0] - 0.3530) < 1e-4
    raw = datasets.load("fashion-mnist", download=False, normalize="per_image")  # no train statistics
    assert raw.train.x.shape == d.train.x.shape
