"""A store nobody can escape, execute from or silently corrupt; bad input fails fast, in one line.

Each test is a behaviour a hostile or careless user met: a sweep name that walks out of the
results location, code planted in a shared results location, a truncated fragment, two
launches on one location, and bad values that used to hang, store NaNs or print tracebacks.
The CLI runs as a subprocess (the console script's module) unless a test needs this
process's monkeypatches (the tiny CIFAR-10's checksums), where it calls `sweep.cli.main`.
"""

from __future__ import annotations

import html
import json
import os
import pickle
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import SWEEP, free_port, launch_args
from conftest import cli as sweep

TINY = ["--dataset", "digits", "--set", "seeds=2", "--set", "pack_size=2", "--set", "variants=[real,randY]"]


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Assert exit 2 with exactly one line on stderr, starting 'sweep: error:', holding every needle."""
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], err[-2000:])
    assert len(err.splitlines()) == 1 and err.startswith("sweep: error: "), err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# --- 1. the sweep name is one safe path component; --overwrite removes only its own files ---


@pytest.mark.parametrize("name", ["../victim", "..", ".", "a/b", "", ".hidden", "x" * 101, "s3:bad"])
def test_a_sweep_name_cannot_leave_the_results_location(tmp_path, name):
    results, victim = tmp_path / "res", tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    proc = sweep("launch", "fig1-difficulty", *TINY, "--set", f"name={name}", "--overwrite", "--results", str(results))
    one_line_error(proc, "bad value for name")
    assert files_under(victim) == {"precious.txt": b"keep me"}
    assert not results.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["victim"]


@pytest.mark.parametrize("command", ["status", "report", "verify"])
def test_readers_refuse_an_unsafe_sweep_name(tmp_path, command):
    one_line_error(sweep(command, "..", "--results", str(tmp_path)), "'..'")


# --- 5. an address where nothing listens fails fast ---------------------------------------


def test_an_address_where_nothing_listens_fails_in_one_line(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    started = time.perf_counter()
    proc = sweep(
        "launch", "fig1-difficulty", *TINY, "--address", address, "--results", str(tmp_path / "r"), timeout=120
    )
    one_line_error(proc, address)
    assert time.perf_counter() - started < 60  # a bound on a hang, not a speed claim (the fix: ~10 s)
    assert not (tmp_path / "r").exists()


# --- 6, 7, 10, 11: bad values, sizes and resources: one line, before Ray, nothing left -----


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--cpus-per-trial", "nan"], ["--cpus-per-trial", "'nan'", "finite"]),
        (["--gpus-per-trial", "nan"], ["--gpus-per-trial", "'nan'", "finite"]),
        (["--cpus-per-trial", "inf"], ["--cpus-per-trial", "'inf'"]),
        (["--cpus-per-trial", "0"], ["--cpus-per-trial 0", "> 0"]),
        (
            ["--cpus-per-trial", "512"],
            [
                "--cpus-per-trial 512 is more than any node has",
                "this machine: 2 CPUs" if os.cpu_count() == 2 else "this machine:",
            ],
        ),
        (["--gpus-per-trial", "-1"], ["--gpus-per-trial -1"]),
        (["--set", "optimizer.lr=.inf"], ["optimizer.lr", "finite"]),
        (["--set", "optimizer.lr=.nan"], ["optimizer.lr", "finite"]),
        (["--set", "corruption.p=.nan"], ["corruption.p", "finite"]),
        (["--set", "memory_budget_gb=-.inf"], ["memory_budget_gb"]),
        (["--set", "seeds=1000000000"], ["seeds", "100000"]),
        (["--set", "seeds=100000", "--set", "pack_size=1"], ["300,000 trials", "100,000"]),
        (["--set", "model.hidden=[10000000]"], ["model.hidden[0]", "65536"]),
        (["--set", "engine=interpolate"], ["missing key 'archs'"]),
        (["--results", ""], ["results location ''", "--results"]),
    ],
)
def test_bad_values_fail_in_one_line_before_ray_and_leave_nothing(tmp_path, args, needles):
    results = tmp_path / "r"
    argv = ["launch", "fig1-difficulty", "--dataset", "digits", "--results", str(results), *args]
    proc = sweep(*argv, cwd=tmp_path)
    err = one_line_error(proc, *needles)
    assert len(err) < 250 and "token" not in proc.stderr.lower()  # no Ray started, no dump of the spec
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # not even an empty results folder


def test_no_gpu_here_is_refused_before_ray(tmp_path):
    from ray._private.accelerators import get_accelerator_manager_for_resource

    if get_accelerator_manager_for_resource("GPU").get_current_node_num_accelerators():
        pytest.skip("this machine has a GPU")
    proc = sweep("launch", "fig1-difficulty", *TINY, "--gpus-per-trial", "1", "--results", str(tmp_path / "r"))
    one_line_error(proc, "--gpus-per-trial 1 is more than any node has", "this machine: 0 GPUs")
    assert not (tmp_path / "r").exists()


def test_a_data_root_that_does_not_exist_is_not_created(tmp_path):
    root = tmp_path / "nonexistent"
    proc = sweep("launch", "fig1-difficulty", *TINY, "--data-root", str(root), "--results", str(tmp_path / "r"))
    one_line_error(proc, f"--data-root {root}", "no such folder")
    assert not root.exists() and not (tmp_path / "r").exists()
    cifar = sweep(
        "launch", "fig1-difficulty", "--dataset", "cifar10", "--data-root", str(root), "--results", str(tmp_path / "r")
    )
    one_line_error(cifar, "CIFAR-10 not found", f"{root} does not exist", "--data-root")
    assert not root.exists() and not (tmp_path / "r").exists()


def test_every_architecture_has_a_default_learning_rate():
    from catalog import ARCHS
    from sweep import presets

    spec = presets.resolve("csr", "digits", ["optimizer.lr=null"])
    assert {arch: spec.optimizer.lr_for(arch) for arch in ARCHS}["cnn"] == 0.01
    for preset in presets.preset_names():
        s = presets.resolve(
            preset, "digits", ["optimizer.lr=null"] if hasattr(presets.resolve(preset, "digits"), "archs") else []
        )
        for arch in getattr(s, "archs", []):
            assert s.optimizer.lr_for(arch) > 0


# --- 8. a corrupt CIFAR-10 is caught by the pre-check, as torchvision would catch it -------


def test_a_truncated_cifar_batch_fails_before_anything_starts(tiny_cifar, tmp_path, capsys):
    from sweep.cli import main

    results = tmp_path / "r"
    argv = launch_args(
        "fig1-difficulty",
        "seeds=1",
        dataset="cifar10",
        data_root=str(tiny_cifar),
        results=str(results),
        cpus_per_trial="1",
    )
    batch = tiny_cifar / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(batch.read_bytes()[:100])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data_batch_1" in err and "md5" in err, err
    assert not results.exists()


def test_an_intact_tiny_cifar_passes_the_pre_check(tiny_cifar):
    from trainables.files import ensure_available

    ensure_available("cifar10", tiny_cifar, download=False)  # the same check, on intact files: no error


# --- 2. nothing under a results location is ever unpickled ----------------------------------


class _Planted:
    """Unpickling this runs code: it writes a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path(self.marker).write_text, ("pwned",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    from sweep import checkpoint

    marker, path = tmp_path / "marker", tmp_path / "state.pt"
    import torch

    torch.save({"model": {}, "found": _Planted(str(marker))}, path)
    with pytest.raises(pickle.UnpicklingError):
        checkpoint.load(str(path))
    assert not marker.exists()


def test_what_the_probes_found_round_trips_through_a_weights_only_checkpoint(tmp_path):
    """sweep.job.Found, typed in the trial, saved as plain values (the layout checkpoints of
    earlier versions have) and read back equal."""
    import numpy as np

    from sweep import checkpoint
    from sweep.job import Found, Phase1

    found = Found(
        phase=2,
        phase1=Phase1({"stop_reason": ["interpolated", "max_epochs"], "reached_epoch": [4, None]}, [4, 9], 9),
        probes=[
            {
                "member": 0,
                "probe": "csr",
                "epoch": 5,
                "split": "test",
                "sigma": np.nan,
                "draw": 0,
                "value": 0.25,
                "n": 8,
            }
        ],
        filters=[(1, 0, np.ones((2, 1, 3, 3), dtype=np.float32))],
        init_norms={"0 Linear": np.array([1.0, 2.0])},
    )
    checkpoint.save({"found": found.to_dict()}, str(tmp_path / "state.pt"))
    saved = checkpoint.load(str(tmp_path / "state.pt"))["found"]
    assert saved["phase1"]["last"] == 9 and saved["phase1"]["reached_epoch"] == [4, None]  # the stored layout
    back = Found.from_dict(saved)
    assert back.phase == 2 and back.phase1 == found.phase1 and back.probes[0]["value"] == 0.25
    assert back.filters[0][:2] == (1, 0) and np.array_equal(back.filters[0][2], found.filters[0][2])
    assert np.array_equal(back.init_norms["0 Linear"], [1.0, 2.0])
    assert Found.from_dict(Found().to_dict()) == Found()


def test_checkpoint_state_round_trips_through_weights_only(tmp_path):
    import numpy as np
    import torch

    from sweep import checkpoint
    from trainables.engine import EpochRecord, SplitScores

    scores = SplitScores(
        pred=np.array([[1, 2]]),
        correct=np.array([[True, False]]),
        p_label=np.array([[0.5, 0.25]], dtype=np.float32),
        loss=np.array([[0.7, 1.4]], dtype=np.float32),
        el2n=np.array([[0.1, 0.9]], dtype=np.float32),
    )
    record = EpochRecord(
        epoch=3,
        step=30,
        wall_seconds=1.5,
        train_seconds=1.0,
        lr=0.01,
        running_loss=np.array([0.5]),
        running_acc=np.array([0.75]),
        acc={"train": np.array([1.0])},
        splits={"train": scores},
        norms={"0": np.array([2.0])},
    )
    state = {
        "generator": torch.Generator().manual_seed(3).get_state(),
        "epoch": 3,
        "records": [record],
        "found": {
            "filters": [(0, np.ones((2, 1, 3, 3), dtype=np.float32))],
            "phase1": None,
            "probes": [{"probe": "csr", "sigma": float("nan"), "value": np.float32(0.5)}],
        },
    }
    checkpoint.save(state, str(tmp_path / "s.pt"))
    back = checkpoint.load(str(tmp_path / "s.pt"))
    assert back["records"][0].splits["train"].correct.tolist() == [[True, False]]
    assert back["records"][0].acc["train"].tolist() == [1.0] and back["epoch"] == 3
    assert torch.equal(back["generator"], state["generator"])
    assert back["found"]["filters"][0][1].shape == (2, 1, 3, 3) and back["found"]["probes"][0]["value"] == 0.5


# --- a real stored sweep: planted files, damaged fragments, the lock -----------------------


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A finished tiny fig1 sweep (2 variants x 1 pack of 2 seeds) launched through the CLI on an
    embedded Ray, and a pristine copy of its files."""
    results = tmp_path_factory.mktemp("stored")
    proc = sweep("launch", "fig1-difficulty", *TINY, "--set", "epochs=[1,2]", "--results", str(results))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return results, proc


AUDIT = """
import sys
seen = []
sys.addaudithook(lambda event, args: seen.append(args) if event == "pickle.find_class" else None)
from sweep.cli import main
code = main(sys.argv[1:])
if seen:
    print("UNPICKLED", seen, file=sys.stderr)
    sys.exit(99)
sys.exit(code)
"""


@pytest.mark.parametrize("command", ["status", "verify", "report"])
def test_status_report_and_verify_never_unpickle(stored, tmp_path, command):
    """Tune's own state under _tune/ (pickles: tuner.pkl, the trials' cloudpickled configs) is what
    anyone with write access could replace; no reader of the store may unpickle anything."""
    results, _ = stored
    assert any(p.suffix == ".pkl" for p in (results / "fig1-difficulty" / "_tune").rglob("*"))
    extra = ["--out", str(tmp_path / "r.html")] if command == "report" else []
    proc = subprocess.run(
        [sys.executable, "-c", AUDIT, command, "fig1-difficulty", "--results", str(results), *extra],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parent,
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1])),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_status_reads_the_store_alone(stored):
    results, _ = stored
    proc = sweep("status", "fig1-difficulty", "--results", str(results))
    assert proc.returncode == 0, proc.stderr
    assert "total: 4 seeds, 4 done, 0 damaged, 0 running, 0 interrupted, 0 failed, 0 not started" in proc.stdout
    state = json.loads((results / "fig1-difficulty" / "_launch.json").read_text())
    assert set(state["trials"].values()) == {"TERMINATED"}


def test_a_damaged_fragment_is_reported_and_resume_reruns_exactly_it(stored, tmp_path):
    import shutil

    results = tmp_path / "copy"
    shutil.copytree(stored[0], results)
    folder = results / "fig1-difficulty"
    before = pd.read_parquet(folder / "examples").sort_values(["variant", "seed", "epoch", "split", "index"])
    victim = folder / "examples" / "randY-pack000.parquet"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])  # truncated

    status = sweep("status", "fig1-difficulty", "--results", str(results))
    assert status.returncode == 1 and "2 damaged" in status.stdout and "damaged: randY-pack000" in status.stdout
    verify = sweep("verify", "fig1-difficulty", "--results", str(results))
    assert verify.returncode == 1 and "damaged: randY-pack000: examples file unreadable" in verify.stdout
    one_line_error(sweep("report", "fig1-difficulty", "--results", str(results)), "randY-pack000", "--resume")

    untouched = {p: p.stat().st_mtime_ns for p in folder.glob("*/real-pack000.parquet")}
    resume = sweep("launch", "fig1-difficulty", *TINY, "--set", "epochs=[1,2]", "--resume", "--results", str(results))
    assert resume.returncode == 0, resume.stdout[-2000:] + resume.stderr[-2000:]
    assert "randY-pack000 is damaged" in resume.stdout and "1 to run, 1 already stored" in resume.stdout
    assert {p: p.stat().st_mtime_ns for p in folder.glob("*/real-pack000.parquet")} == untouched
    after = pd.read_parquet(folder / "examples").sort_values(["variant", "seed", "epoch", "split", "index"])
    pd.testing.assert_frame_equal(before.reset_index(drop=True), after.reset_index(drop=True))
    assert sweep("verify", "fig1-difficulty", "--results", str(results)).returncode == 0


def test_a_missing_or_short_file_counts_as_damaged(stored, tmp_path):
    import shutil

    import pyarrow.parquet as pq

    from sweep.store import Store

    results = tmp_path / "copy"
    shutil.copytree(stored[0], results)
    folder = results / "fig1-difficulty"
    (folder / "epochs" / "real-pack000.parquet").unlink()
    short = pq.read_table(folder / "norms" / "randY-pack000.parquet").slice(0, 3)
    pq.write_table(short, folder / "norms" / "randY-pack000.parquet")
    store = Store(str(results), "fig1-difficulty")
    damaged = store.damaged()
    assert damaged["real-pack000"] == "epochs file missing"
    assert damaged["randY-pack000"].startswith("norms file has 3 rows, its trial wrote ")
    assert store.intact() == set()


def test_overwrite_removes_only_what_the_sweep_wrote(stored, tmp_path):
    import shutil

    results = tmp_path / "copy"
    shutil.copytree(stored[0], results)
    folder = results / "fig1-difficulty"
    (folder / "notes.txt").write_text("mine")
    (folder / "examples" / "analysis.csv").write_text("mine too")
    proc = sweep("launch", "fig1-difficulty", *TINY, "--set", "seeds=1", "--overwrite", "--results", str(results))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "examples" / "analysis.csv").exists()
    assert len(pd.read_parquet(folder / "trials")) == 2  # the new spec's 2 variants x 1 seed only


def test_resume_of_a_finished_sweep_says_so_without_ray(stored):
    results, _ = stored
    proc = sweep("launch", "fig1-difficulty", *TINY, "--set", "epochs=[1,2]", "--resume", "--results", str(results))
    assert proc.returncode == 0 and "is complete (2/2 trials stored); nothing to resume" in proc.stdout
    assert "Ray" not in proc.stdout + proc.stderr


# --- 4. one launch at a time per location -------------------------------------------------


def test_a_second_launch_is_refused_while_the_first_runs(tmp_path):
    results = tmp_path / "r"
    args = ["launch", "fig1-difficulty", *TINY, "--set", "epochs=[1,2,3,4,5,6,7,8]", "--results", str(results)]
    first = subprocess.Popen([*SWEEP, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lock = results / "fig1-difficulty" / "_lock"
        deadline = time.monotonic() + 120
        while not (lock.exists() and lock.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        second = sweep(*args[:-2], "--results", str(results), "--overwrite")
        one_line_error(second, "in use by another launch", f"pid {first.pid}", "sweep launch fig1-difficulty")
    finally:
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, out[-2000:] + err[-2000:]
    assert len(pd.read_parquet(results / "fig1-difficulty" / "trials")) == 4  # the first run, untouched
    assert not lock.exists()  # released at the end


def test_the_lock_is_released_when_its_holder_dies(tmp_path):
    from sweep.store import Store, StoreError

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from sweep.store import Store\n"
                f"with Store({str(tmp_path)!r}, 'x').lock('holder'):\n"
                "    print('held', flush=True); time.sleep(60)"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(StoreError, match=f"in use by another launch \\(pid {holder.pid} .*holder"):
        with Store(str(tmp_path), "x").lock("second"):
            pass
    assert Store(str(tmp_path), "x").holder()["pid"] == holder.pid  # what `sweep status` reads
    holder.kill()
    holder.wait()
    assert Store(str(tmp_path), "x").holder() is None
    with Store(str(tmp_path), "x").lock("third"):  # a killed holder's lock is free at once
        pass


# --- 12. an embedded local Ray listens on the loopback only ---------------------------------


def test_cluster_configs_expose_nothing_by_default():
    root = Path(__file__).parents[1]
    assert "| sh" not in (root / "cluster.yaml").read_text() and "curl" not in (root / "cluster.yaml").read_text()
    assert "uv==" in (root / "cluster.yaml").read_text()
    for path in ("cluster.yaml", "deploy/onprem.yaml", "deploy/slurm.sh"):
        text = (root / path).read_text()
        assert "--dashboard-host=127.0.0.1" in text, path


# --- 13. the BN-free Inception learns ---------------------------------------------------------


@pytest.mark.numerics
def test_he_initialization_lets_the_inception_without_batch_norm_learn():
    """The claim behind the BN-free Inception's He initialization (trainables.models): under
    torch's default conv init its logits barely differ across examples and SGD stays at chance;
    under He init it learns. Checked in the bn-ablation preset's digits regime (batch 16, lr 0.01,
    momentum 0.9), six epochs of 256 images, for three seeds. At this lr the BN-free net is near
    the edge of stability: a run's accuracy can dip for an epoch or two (one seed fell from 0.43
    to 0.18 at epoch 3 under the AVX2 kernels) and recovers. Measured on AMD EPYC with torch's,
    MKL's and oneDNN's kernels capped at AVX-512, AVX2 and SSE4 (.ci/run's paths), seeds 0-4:
    He 0.73-0.98 after six epochs, default init 0.14 (one class) in every run. A loss trajectory
    is not asserted: it depends on the kernels' rounding."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from trainables import data as datasets
    from trainables import models

    data = datasets.load("digits", None, torch.device("cpu"), normalize="per_image", crop=None)
    x, y = data.train.x[:256], data.train.y[:256]

    def trained_accuracy(seed: int, he: bool) -> float:
        torch.manual_seed(seed)
        model = models.build("inception_nobn", data.input_shape, data.num_classes)
        if not he:
            for module in model.modules():
                if isinstance(module, nn.Conv2d):
                    module.reset_parameters()  # torch's default init
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        shuffle = torch.Generator().manual_seed(seed)
        order = torch.cat([torch.randperm(256, generator=shuffle) for _ in range(6)])
        for batch in order.split(16):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            return (model(x).argmax(1) == y).float().mean().item()

    he = [trained_accuracy(seed, he=True) for seed in range(3)]
    default = [trained_accuracy(seed, he=False) for seed in range(3)]
    chance = torch.bincount(y).max().item() / len(y)  # always answering the commonest class
    assert min(he) > 0.5 > chance + 0.3, (he, chance)
    assert max(default) < chance + 0.1, (default, chance)


def listening_addresses() -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket on this machine, from /proc/net/tcp{,6}."""
    import ipaddress
    import struct

    out = set()
    for name, size in (("tcp", 4), ("tcp6", 16)):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            hex_ip, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_ip)
            words = b"".join(struct.pack("<I", w) for w in struct.unpack(f">{size // 4}I", raw))
            ip = ipaddress.ip_address(words)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            out.add((str(ip), int(hex_port, 16)))
    return out


def test_an_embedded_ray_listens_on_the_loopback_only(tmp_path):
    """Launch a one-trial sweep on an embedded Ray in a subprocess; while its trial runs, every TCP
    socket that was not listening before listens on 127.0.0.1."""
    script = f"""
import json, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_hardening import listening_addresses
before = listening_addresses()
from ray import tune
from sweep import launcher
from sweep.presets import resolve
from sweep.store import Store

class Snapshot(tune.Callback):
    def on_trial_result(self, iteration, trials, trial, result, **info):
        print("NEW", json.dumps(sorted(listening_addresses() - before)), flush=True)

spec = resolve("fig1-difficulty", "digits", ["seeds=1", "variants=[real]"])
launcher.launch(spec, Store({str(tmp_path)!r}, spec.name), data_root={str(tmp_path)!r}, callbacks=[Snapshot()])
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "token" not in proc.stderr.lower(), proc.stderr  # Ray's token warning is not shown
    snapshots = [json.loads(line[4:]) for line in proc.stdout.splitlines() if line.startswith("NEW ")]
    assert snapshots and all(snapshots), proc.stdout  # Ray's servers were seen listening
    for new in snapshots:
        assert {ip for ip, _ in new} == {"127.0.0.1"}, new


# --- review mends: page-level damage, old stores, foreign files, folders left behind -------


def test_damage_inside_a_file_is_found_by_verify_and_repaired_by_resume(stored, tmp_path):
    import shutil

    import pyarrow.parquet as pq

    results = tmp_path / "copy"
    shutil.copytree(stored[0], results)
    folder = results / "fig1-difficulty"
    victim = folder / "examples" / "real-pack000.parquet"
    raw = bytearray(victim.read_bytes())
    footer = pq.ParquetFile(victim).metadata.serialized_size + 8
    third = (len(raw) - footer) // 3
    raw[third : 2 * third] = bytes(third)  # a third of the pages zeroed; the footer still reads
    victim.write_bytes(bytes(raw))
    assert "2 damaged" in sweep("status", "fig1-difficulty", "--results", str(results)).stdout
    verify = sweep("verify", "fig1-difficulty", "--results", str(results))
    assert verify.returncode == 1 and "damaged: real-pack000: examples file's bytes differ" in verify.stdout
    one_line_error(
        sweep("report", "fig1-difficulty", "--results", str(results), "--out", str(tmp_path / "r.html")),
        "real-pack000",
        "--resume",
    )
    repair = sweep("verify", "fig1-difficulty", "--repair", "--results", str(results))
    assert repair.returncode == 0 and "1 damaged trial marked not done" in repair.stdout
    resume = sweep("launch", "fig1-difficulty", *TINY, "--set", "epochs=[1,2]", "--resume", "--results", str(results))
    assert resume.returncode == 0 and "1 to run, 1 already stored" in resume.stdout, resume.stdout + resume.stderr
    assert sweep("verify", "fig1-difficulty", "--results", str(results)).returncode == 0


def test_a_store_written_before_row_counts_is_still_checked(stored, tmp_path):
    import shutil

    import pyarrow.parquet as pq

    from sweep.store import METADATA_KEY, Store

    results = tmp_path / "copy"
    shutil.copytree(stored[0], results)
    folder = results / "fig1-difficulty"
    for path in (folder / "trials").glob("*.parquet"):  # drop the row counts, as older stores had none
        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[METADATA_KEY])
        meta.pop("rows")
        meta.pop("sha256")
        pq.write_table(table.replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()}), path)
    victim = folder / "epochs" / "randY-pack000.parquet"
    victim.write_bytes(victim.read_bytes()[:50])
    assert Store(str(results), "fig1-difficulty").damaged() == {
        "randY-pack000": Store(str(results), "fig1-difficulty").damaged()["randY-pack000"]
    }
    assert Store(str(results), "fig1-difficulty").damaged()["randY-pack000"].startswith("epochs file unreadable")


def test_overwrite_spares_foreign_parquet_files(stored, tmp_path):
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    results = tmp_path / "copy"
    shutil.copytree(stored[0], results)
    folder = results / "fig1-difficulty"
    pq.write_table(pa.table({"x": [1]}), folder / "examples" / "mine.parquet")
    proc = sweep("launch", "fig1-difficulty", *TINY, "--set", "seeds=1", "--overwrite", "--results", str(results))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (folder / "examples" / "mine.parquet").exists()


def test_a_refused_launch_leaves_no_folders_behind(tmp_path):
    proc = sweep("launch", "fig1-difficulty", *TINY, "--resume", "--results", str(tmp_path / "nr" / "deep"))
    one_line_error(proc, "nothing to resume")
    assert list(tmp_path.iterdir()) == []


def test_csr_with_the_per_arch_lr_trains_through_the_cli(tmp_path):
    proc = sweep(
        "launch",
        "csr",
        "--dataset",
        "digits",
        "--set",
        "optimizer.lr=null",
        "--set",
        "max_epochs=1",
        "--set",
        "corruptions=[real]",
        "--set",
        "probes.csr.n=8",
        "--set",
        "probes.csr.every=1",
        "--results",
        str(tmp_path),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    trials = pd.read_parquet(tmp_path / "csr" / "trials")
    assert trials.lr.tolist() == [0.01]


def test_a_resume_with_other_settings_says_how_to_name_the_stored_sweep(stored):
    results, _ = stored
    proc = sweep("launch", "fig1-difficulty", "--dataset", "digits", "--resume", "--results", str(results))
    err = one_line_error(
        proc,
        "--resume:",
        "launched with other settings",
        "to resume it, repeat them:",
        "--set seeds=2",
        '--set \'variants=["real","randY"]\'',
    )
    assert "--overwrite" not in err  # never advise deleting the sweep the user wants to finish
    # Without --dataset: the hint names the data set, not the keys its defaults set, and pastes into a shell.
    proc = sweep("launch", "fig1-difficulty", "--resume", "--results", str(results))
    hint = one_line_error(proc, "repeat them: --dataset digits").split("repeat them: ", 1)[1]
    assert "batch_size" not in hint and "model" not in hint
    again = sweep("launch", "fig1-difficulty", "--resume", "--results", str(results), *shlex.split(hint))
    assert again.returncode == 0, again.stderr


# --- a shared results location: planted links, bytes and strings ---------------------------


def copy_of(stored, tmp_path) -> Path:
    import shutil

    results = tmp_path / "copy"
    shutil.copytree(stored[0], results, symlinks=True)
    return results


def plant_link(link: Path, target: Path) -> None:
    if link.is_dir() and not link.is_symlink():
        import shutil

        shutil.rmtree(link)
    elif link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to(target)


@pytest.mark.parametrize("where", ["trial checkpoints", "lock", "report", "table"])
def test_a_link_inside_a_location_is_refused_and_never_followed(stored, tmp_path, where):
    """Each link planted where someone with write access to a shared location could plant it: the
    command refuses in one line naming the link, and the files outside stay as they were."""
    results, outside = copy_of(stored, tmp_path), tmp_path / "outside"
    folder = results / "fig1-difficulty"
    (outside / "checkpoint_000000").mkdir(parents=True)
    (outside / "checkpoint_000000" / "model.pt").write_text("precious")
    (outside / "victim.txt").write_text("precious")
    relaunch = ["launch", "fig1-difficulty", *TINY, "--set", "epochs=[1,2]", "--results", str(results)]
    if where == "trial checkpoints":  # a stored trial's folder: pruning its checkpoints used to follow it
        trial = next(p for p in (folder / "_tune").glob("launch-*/real-pack000-*") if p.is_dir())
        link, target, command = trial, outside, relaunch
    elif where == "lock":
        link, target, command = folder / "_lock", outside / "victim.txt", [*relaunch, "--resume"]
    elif where == "report":
        link, target, command = (
            folder / "report.html",
            outside / "victim.txt",
            ["report", "fig1-difficulty", "--results", str(results)],
        )
    else:  # a table folder of a sweep not launched yet
        folder = results / "fresh"
        folder.mkdir()
        link, target, command = folder / "examples", outside, [*relaunch, "--name", "fresh"]
    plant_link(link, target)
    one_line_error(sweep(*command), f"{link} is a symbolic link", "never follows links")
    assert (outside / "checkpoint_000000" / "model.pt").read_text() == "precious"
    assert (outside / "victim.txt").read_text() == "precious"
    assert sorted(p.name for p in outside.iterdir()) == ["checkpoint_000000", "victim.txt"]
    assert link.is_symlink()  # left for the user to see


def test_a_link_planted_after_the_store_opened_is_not_followed(stored, tmp_path):
    from sweep.store import Store, StoreError

    results, outside = copy_of(stored, tmp_path), tmp_path / "outside"
    (outside / "checkpoint_000000").mkdir(parents=True)
    store = Store(str(results), "fig1-difficulty")
    trial = next(p for p in (results / "fig1-difficulty" / "_tune").glob("launch-*/real-pack000-*") if p.is_dir())
    plant_link(trial, outside)
    store.drop_checkpoints({"real-pack000"})
    assert (outside / "checkpoint_000000").is_dir()
    plant_link(results / "fig1-difficulty" / "epochs", outside)
    with pytest.raises(StoreError, match="epochs is a symbolic link"):
        store._atomic_write(store.path("epochs", "x.parquet"), b"x")
    assert sorted(p.name for p in outside.iterdir()) == ["checkpoint_000000"]


def test_ls_names_the_sweeps_it_refuses(stored, tmp_path):
    results = copy_of(stored, tmp_path)
    (results / "fig1-difficulty" / "_lock").symlink_to(tmp_path)
    proc = sweep("ls", "--results", str(results))
    assert proc.returncode == 0 and "no sweeps at" in proc.stdout
    assert proc.stderr.startswith("memsweep: fig1-difficulty not listed: ") and "is a symbolic link" in proc.stderr


def test_a_results_location_that_is_a_link_loop_is_one_line(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    for command in (
        ["status", "fig1-difficulty"],
        ["report", "fig1-difficulty"],
        ["ls"],
        ["launch", "fig1-difficulty", *TINY],
    ):
        one_line_error(sweep(*command, "--results", str(loop)), str(loop), "link loop")


def overwrite_page(path: Path, size: int = 256) -> None:
    """`size` bytes in the middle of the first row group's `loss` values replaced by others: the
    page header and the footer intact, so a reader that does not check the page's CRC decodes
    other numbers without an error."""
    import pyarrow.parquet as pq

    group = pq.ParquetFile(path).metadata.row_group(0)
    chunk = next(group.column(j) for j in range(group.num_columns) if group.column(j).path_in_schema == "loss")
    raw = bytearray(path.read_bytes())
    at = chunk.data_page_offset + chunk.total_compressed_size // 2 - size // 2
    raw[at : at + size] = bytes(b ^ 0xFF for b in raw[at : at + size])
    path.write_bytes(bytes(raw))
    assert pq.ParquetFile(path, page_checksum_verification=False).read().num_rows  # silently other numbers


def test_a_changed_page_is_found_refused_and_repaired_by_resume(stored, tmp_path):
    """256 bytes of a data page changed, the footer intact: every reader's check finds it (each
    file's SHA-256 is recorded in its trial's completion mark), the report refuses, and a plain
    --resume runs exactly that trial again."""
    results = copy_of(stored, tmp_path)
    folder = results / "fig1-difficulty"
    before = pd.read_parquet(folder / "examples").sort_values(["variant", "seed", "epoch", "split", "index"])
    overwrite_page(folder / "examples" / "real-pack000.parquet")
    why = "examples file's bytes differ from what its trial wrote"
    status = sweep("status", "fig1-difficulty", "--results", str(results))
    assert status.returncode == 1 and f"damaged: real-pack000: {why}" in status.stdout, status.stdout
    verify = sweep("verify", "fig1-difficulty", "--results", str(results))
    assert verify.returncode == 1 and f"damaged: real-pack000: {why}" in verify.stdout, verify.stdout
    one_line_error(
        sweep("report", "fig1-difficulty", "--results", str(results), "--out", str(tmp_path / "r.html")),
        "real-pack000",
        "--resume",
    )
    assert not (tmp_path / "r.html").exists()
    resume = sweep("launch", "fig1-difficulty", *TINY, "--set", "epochs=[1,2]", "--resume", "--results", str(results))
    assert resume.returncode == 0 and "1 to run, 1 already stored" in resume.stdout, resume.stdout + resume.stderr
    after = pd.read_parquet(folder / "examples").sort_values(["variant", "seed", "epoch", "split", "index"])
    pd.testing.assert_frame_equal(before.reset_index(drop=True), after.reset_index(drop=True))
    assert sweep("verify", "fig1-difficulty", "--results", str(results)).returncode == 0


def test_verify_checks_each_pages_checksum(stored, tmp_path):
    """Without a recorded SHA-256 (a store written before them), `verify`'s full read still finds
    a changed page by the CRC32 each page carries."""
    import pyarrow.parquet as pq

    from sweep.store import METADATA_KEY

    results = copy_of(stored, tmp_path)
    folder = results / "fig1-difficulty"
    for path in (folder / "trials").glob("*.parquet"):
        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[METADATA_KEY])
        meta.pop("sha256")
        pq.write_table(table.replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()}), path)
    overwrite_page(folder / "examples" / "randY-pack000.parquet")
    verify = sweep("verify", "fig1-difficulty", "--results", str(results))
    assert verify.returncode == 1 and "damaged: randY-pack000: examples file unreadable" in verify.stdout, verify.stdout
    assert "CRC checksum verification failed" in verify.stdout


PAYLOAD = "<img src=x onerror=alert(document.domain)>"


def test_stored_strings_reach_the_report_escaped(stored, tmp_path):
    """A planted string in every text column of every table (but those whose values the analysis
    compares with fixed names), in the spec's variants and description and in the provenance:
    the report an analyst builds shows each as text, never as markup; `sweep report` refuses the
    spec, whose variants are no longer variants, in one line."""
    import shutil

    from conftest import plant_strings

    from analysis import report

    results = copy_of(stored, tmp_path)
    plant_strings(results / "fig1-difficulty", PAYLOAD)
    page = report.build(str(results), "fig1-difficulty")
    assert PAYLOAD not in page and "<img" not in page
    assert page.count(html.escape(PAYLOAD)) >= 8  # the summary, the banner, provenance, the spec
    one_line_error(sweep("report", "fig1-difficulty", "--results", str(results)), "bad value for variants[0]")
    # Through `sweep report`: strings planted in the tables alone, the spec left valid.
    results = tmp_path / "tables-only"
    shutil.copytree(stored[0], results)
    plant_strings(results / "fig1-difficulty", PAYLOAD, manifest=False)
    proc = sweep("report", "fig1-difficulty", "--results", str(results), "--out", str(tmp_path / "r.html"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    page = (tmp_path / "r.html").read_text()
    assert PAYLOAD not in page and "<img" not in page and page.count(html.escape(PAYLOAD)) >= 4


def test_yaml_aliases_in_a_set_value_are_refused_at_once(tmp_path):
    levels = ["&a0 [0,0,0,0,0,0,0,0,0]"] + [f"&a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 8)]
    bomb = "[" + ", ".join(levels) + "]"
    start = time.monotonic()
    one_line_error(
        sweep("launch", "fig1-difficulty", *TINY, "--set", f"seeds={bomb}", "--results", str(tmp_path)),
        "anchors and aliases",
        "not allowed",
    )
    assert time.monotonic() - start < 60 and not any(tmp_path.iterdir())


def test_a_malformed_file_in_the_location_is_one_line_naming_it(stored, tmp_path):
    import yaml

    results = copy_of(stored, tmp_path)
    folder = results / "fig1-difficulty"
    manifest = (folder / "sweep.yaml").read_text()
    state = (folder / "_launch.json").read_text()
    status = ["status", "fig1-difficulty", "--results", str(results)]
    resume = ["launch", "fig1-difficulty", *TINY, "--set", "epochs=[1,2]", "--resume", "--results", str(results)]

    (folder / "sweep.yaml").write_text("!!python/object/apply:os.system ['true']\n" + manifest)
    for command in (status, resume, ["report", "fig1-difficulty", "--results", str(results)]):
        one_line_error(sweep(*command), f"{folder / 'sweep.yaml'} is not a memsweep manifest")
    body = yaml.safe_load(manifest)
    body["plan"][0] = ["real", 0]
    (folder / "sweep.yaml").write_text(yaml.safe_dump(body))
    one_line_error(sweep(*status), "sweep.yaml is not a memsweep manifest", "plan entry 0")
    body["plan"][0] = dict(yaml.safe_load(manifest)["plan"][0], cell="../../outside")
    (folder / "sweep.yaml").write_text(yaml.safe_dump(body))
    one_line_error(sweep(*resume), "sweep.yaml is not a memsweep manifest", "plan entry 0")

    (folder / "sweep.yaml").write_text(manifest)
    (folder / "_launch.json").write_text(json.dumps({"trials": ["real-pack000"]}))
    for command in (status, ["report", "fig1-difficulty", "--results", str(results)]):
        one_line_error(sweep(*command), "_launch.json is not a memsweep launch state")
    (folder / "_launch.json").write_text(state)
    (folder / "_lock").mkdir()
    one_line_error(sweep(*resume), "cannot take the lock", "_lock")
    (folder / "_lock").rmdir()
    os.mkfifo(folder / "_lock")
    one_line_error(sweep(*resume), "cannot take the lock", "regular file")
    (folder / "_lock").unlink()
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    os.link(outside, folder / "_lock")  # a hard link is no symbolic link: O_NOFOLLOW does not see it
    one_line_error(sweep(*resume), "cannot take the lock", "hard link")
    assert outside.read_text() == "precious"


@pytest.mark.parametrize("name", ["2024", "yes", "007", "1e5", "fig1 #second"])
def test_a_sweep_name_is_taken_as_typed(tmp_path, name):
    proc = sweep("launch", "fig1-difficulty", *TINY, "--name", name, "--resume", "--results", str(tmp_path))
    if " " in name:  # refused by the rule, not shortened to 'fig1'
        one_line_error(proc, f"name: {name!r}", "use 1-100 letters")
    else:
        one_line_error(proc, f"nothing to resume at {tmp_path / name}")


def test_hints_quote_every_stored_value(stored, tmp_path):
    import yaml

    results = copy_of(stored, tmp_path)
    folder = results / "fig1-difficulty"
    body = yaml.safe_load((folder / "sweep.yaml").read_text())
    body["provenance"]["preset"] = "fig1; touch pwned"
    (folder / "sweep.yaml").write_text(yaml.safe_dump(body))
    (folder / "trials" / "real-pack000.parquet").unlink()  # unfinished: status suggests a resume
    proc = sweep("status", "fig1-difficulty", "--results", str(results))
    assert "sweep launch 'fig1; touch pwned' --name fig1-difficulty" in proc.stdout, proc.stdout
    body["spec"]["dataset"] = "digits; touch pwned"  # a resume with other settings names the stored data set
    (folder / "sweep.yaml").write_text(yaml.safe_dump(body))
    proc = sweep("launch", "fig1-difficulty", "--resume", "--results", str(results))
    one_line_error(proc, "--dataset 'digits; touch pwned'")


@pytest.mark.parametrize("stray", ["examples/notes.txt", "examples/real-pack002.parquet", "trials/mine.parquet"])
def test_a_stray_file_in_a_table_folder_is_named(stored, tmp_path, stray):
    """A note, a copy of a fragment (the report would count its seeds twice) or another table:
    report and verify name it, and nothing is removed."""
    import shutil

    results = copy_of(stored, tmp_path)
    folder = results / "fig1-difficulty"
    path = folder / stray
    shutil.copy(folder / "examples" / "real-pack000.parquet", path)
    one_line_error(sweep("report", "fig1-difficulty", "--results", str(results)), f"{path} is not a fragment")
    verify = sweep("verify", "fig1-difficulty", "--results", str(results))
    assert verify.returncode == 1 and f"not a fragment: {path}" in verify.stdout, verify.stdout
    assert "2/2 stored trials intact" in verify.stdout and path.exists()
    assert verify.stderr.startswith("sweep: error: 1 file in the table folders that memsweep did not write")


def test_verify_repair_waits_for_no_launch(stored, tmp_path):
    from sweep.store import Store

    results = copy_of(stored, tmp_path)
    (results / "fig1-difficulty" / "trials" / "real-pack000.parquet").write_bytes(b"broken")
    state = (results / "fig1-difficulty" / "_launch.json").read_text()
    with Store(str(results), "fig1-difficulty").lock("sweep launch (a test holding the lock)"):
        proc = sweep("verify", "fig1-difficulty", "--repair", "--results", str(results))
    one_line_error(proc, "in use by another launch", "a test holding the lock")
    assert (results / "fig1-difficulty" / "_launch.json").read_text() == state


def test_sigterm_to_the_driver_ends_like_ctrl_c(tmp_path):
    results = tmp_path / "r"
    args = [
        "launch",
        "fig1-difficulty",
        *TINY,
        "--set",
        "epochs=[1,2,3,4,5,6,7,8,9,10,11,12]",
        "--set",
        "seeds=4",
        "--results",
        str(results),
    ]
    proc = subprocess.Popen([*SWEEP, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = results / "fig1-difficulty" / "_launch.json"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and "RUNNING" not in (state.read_text() if state.exists() else ""):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, (proc.returncode, out[-2000:], err[-2000:])
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("sweep: error: ") and "interrupted" in lines[-1], err[-2000:]
    assert shlex.join(["sweep", *args, "--resume"]) in lines[-1]
    # The driver's own lines: Tune's "Stop signal received" and ours. A trial process's stderr,
    # which Ray forwards prefixed "(_entry pid=N)", may hold Ray's own teardown noise (its SIGTERM
    # handler raising in a weakref callback: "Exception ignored in ..."), which is not the driver's.
    driver = [line for line in lines if "(_entry pid=" not in line]
    assert "Traceback" not in "\n".join(driver) and len(driver) <= 2, err[-2000:]
    trials = json.loads(state.read_text())["trials"]
    assert "RUNNING" not in trials.values() and "INTERRUPTED" in trials.values(), trials
