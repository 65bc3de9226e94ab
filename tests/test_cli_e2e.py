"""`sweep launch` end to end through the real CLI, real Ray and real Parquet, on digits.

The CLI runs as a subprocess connected (--address) to one Ray started for this module.
"""

import html
import re
import subprocess

import pandas as pd
import pytest
from conftest import cli as sweep
from conftest import launch_args

N_TRAIN, N_TEST = 1437, 360
SEEDS, VARIANTS, EPOCHS = 8, 3, 2


def snapshot(folder) -> dict[str, tuple[int, int]]:
    """Every file under folder (but Tune's own state) with its size and mtime."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file() and "_tune" not in p.parts
    }


@pytest.fixture(scope="module")
def launched(ray_cluster, tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    args = launch_args(
        "fig1-difficulty", f"seeds={SEEDS}", "pack_size=4", "epochs=[1, 2]", results=str(results), address=ray_cluster
    )
    proc = sweep(*args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return results / "fig1-difficulty", args, proc


def test_out_of_core_aggregates_equal_the_in_memory_ones(launched, monkeypatch):
    """The report's P(correct) and bootstrap bands, computed batch by batch over the stored
    fragments (small batches here, so that partial sums are folded many times), equal the
    in-memory functions on the whole table read into pandas."""
    from analysis import aggregate, difficulty, load

    folder = launched[0]
    monkeypatch.setattr(aggregate, "BATCH_ROWS", 5_000)
    results, sweep_name = str(folder.parent), folder.name
    out = aggregate.p_correct(results, sweep_name)
    examples = load.load_table(results, sweep_name, "examples")
    expect = difficulty.p_correct(examples).astype({"variant": str, "split": str})
    pd.testing.assert_frame_equal(out, expect[out.columns], check_dtype=False, atol=1e-6)  # same order too
    curves = list(out[difficulty.KEYS].drop_duplicates().itertuples(index=False, name=None))
    bands = difficulty.bands_frame(aggregate.correct_matrices(results, sweep_name, curves), draws=20)
    pd.testing.assert_frame_equal(
        bands, difficulty.bootstrap_bands(examples, draws=20).astype({"variant": str, "split": str}), check_dtype=False
    )


def test_three_tables_with_exact_row_counts(launched):
    folder, _, proc = launched
    trials = pd.read_parquet(folder / "trials")
    epochs = pd.read_parquet(folder / "epochs")
    examples = pd.read_parquet(folder / "examples")
    assert len(trials) == SEEDS * VARIANTS
    assert len(epochs) == SEEDS * VARIANTS * EPOCHS
    assert len(examples) == SEEDS * VARIANTS * EPOCHS * (N_TRAIN + N_TEST)
    assert not examples.duplicated(["variant", "seed", "epoch", "split", "index"]).any()
    per = examples.groupby(["variant", "seed", "epoch", "split"], observed=True).size()
    assert set(per.xs("train", level="split")) == {N_TRAIN} and set(per.xs("test", level="split")) == {N_TEST}
    # The last lines say where the results are and how to load them.
    tail = proc.stdout.strip().splitlines()[-3:]
    assert str(folder) in tail[0] and "examples 86,256 rows" in tail[0]
    assert 'pandas.read_parquet("' in tail[1] and "fig1-difficulty/examples" in tail[1]
    assert "sweep report fig1-difficulty --results" in proc.stdout.strip().splitlines()[-1]


def test_report_is_one_self_contained_page(launched, tmp_path):
    folder = launched[0]
    out = tmp_path / "r.html"
    proc = sweep("report", "fig1-difficulty", "--results", str(folder.parent), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    page = out.read_text()
    assert "Complete: real: 8/8 seeds, randX: 8/8 seeds, randY: 8/8 seeds" in page
    assert page.count("<script") >= 6 and "plotly.js v" in page  # plotly.js inlined, not fetched
    assert not re.search(r"<script[^>]*\bsrc=", page)  # nothing loaded from elsewhere
    assert "Examples sorted by P(correct)" in page and "KS to own binomial" in page
    assert "randY: the 10 hardest" in page and "(was " in page  # galleries with randomized labels
    missing = sweep("report", "fig1-difficulty", "--results", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "no sweep 'fig1-difficulty'" in missing.stderr and "sweep launch fig1-difficulty" in missing.stderr


@pytest.mark.numerics
def test_results_show_the_effect_and_carry_provenance(launched):
    folder = launched[0]
    ex = pd.read_parquet(folder / "examples", filters=[("split", "=", "train"), ("epoch", "=", 1)])
    p = ex.groupby(["variant", "index"], observed=True).correct.mean().groupby("variant", observed=True).mean()
    assert p["real"] > 0.8 and p["randX"] < 0.4 and p["randY"] < 0.4
    rand_y = ex[ex.variant == "randY"]
    assert rand_y.corrupted.all() and (rand_y.label != rand_y.true_label).mean() > 0.8
    trials = pd.read_parquet(folder / "trials")
    assert trials.init_seed.nunique() == SEEDS and trials.corruption_seed.nunique() == VARIANTS
    assert set(trials.status) == {"completed"} and set(trials.dataset) == {"digits"}
    assert '"seeds": 8' in trials.config.iloc[0] and "torch" in trials.versions.iloc[0]
    # The same seed index starts from the same weights in every variant.
    assert trials.groupby("seed").init_seed.nunique().max() == 1


def test_existing_sweep_is_never_mixed(launched, ray_cluster):
    folder, args, _ = launched
    before = snapshot(folder)

    again = sweep(*args)  # the same launch again: complete, nothing to run, nothing written
    assert again.returncode == 0 and "is complete (6/6 trials stored); nothing to run" in again.stdout
    other = sweep(*args, "--set", "seeds=4")
    assert other.returncode == 2 and "with a different spec (differs in: seeds)" in other.stderr
    assert other.stderr.count("\n") == 1
    more = sweep(*args, "--set", "seeds=9", "--resume")  # a fig1 sweep does not grow in place: say so
    assert more.returncode == 2 and more.stderr.count("\n") == 1
    assert "only subset sweeps" in more.stderr and "--name NAME" in more.stderr
    assert snapshot(folder) == before

    # A trial that never finished (its trials fragment missing) is re-run by --resume, alone.
    (folder / "trials" / "randY-pack001.parquet").unlink()
    from analysis import report

    partial = report.build(str(folder.parent), "fig1-difficulty")  # a partly failed sweep still reports
    assert "Incomplete sweep</b> (real: 8/8 seeds, randX: 8/8 seeds, randY: 4/8 seeds)" in partial
    # Why, and the command that finishes it with the launch's own arguments (a resume without them
    # would be refused: another spec).
    assert "Its last launch ended with trials unfinished (1 trial failed)" in partial
    assert html.unescape(
        f"<code>sweep launch fig1-difficulty --dataset digits --set seeds=8 --set pack_size=4 "
        f"--set 'epochs=[1, 2]' --resume --results {folder.parent}</code>"
    ) in html.unescape(partial)
    status = sweep("status", "fig1-difficulty", "--results", str(folder.parent))
    assert (
        "`sweep launch fig1-difficulty --dataset digits --set seeds=8 --set pack_size=4 --set 'epochs=[1, 2]' "
        f"--resume --results {folder.parent}` runs exactly those again"
    ) in status.stdout, status.stdout
    resumed = sweep(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "1 to run, 5 already stored" in resumed.stdout
    after = snapshot(folder)
    changed = {k for k in after if after[k] != before.get(k)}
    assert {k for k in changed if k.endswith(".parquet")} == {
        f"{t}/randY-pack001.parquet" for t in ("trials", "epochs", "examples", "norms")
    }
    assert len(pd.read_parquet(folder / "examples")) == SEEDS * VARIANTS * EPOCHS * (N_TRAIN + N_TEST)

    over = sweep(*args[:-2], "--set", "seeds=4", "--set", "epochs=[1]", "--overwrite", "--address", ray_cluster)
    assert over.returncode == 0, over.stderr[-2000:]
    assert len(pd.read_parquet(folder / "trials")) == 4 * VARIANTS
    assert len(pd.read_parquet(folder / "examples")) == 4 * VARIANTS * (N_TRAIN + N_TEST)


def test_unwritable_results_location(tmp_path, ray_cluster):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    proc = sweep(
        "launch", "fig1-difficulty", "--dataset", "digits", "--results", str(blocker / "r"), "--address", ray_cluster
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "cannot be written" in proc.stderr and str(blocker / "r") in proc.stderr


def test_cifar10_offline_without_files_writes_nothing(tmp_path):
    results, root = tmp_path / "results", tmp_path / "data"
    proc = sweep("launch", "fig1-difficulty", "--data-root", str(root), "--results", str(results))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("sweep: error: CIFAR-10 not found") and proc.stderr.count("\n") == 1
    assert "cifar-10-batches-py" in proc.stderr and "--data-root" in proc.stderr
    assert not results.exists()


def test_more_gpus_than_the_embedded_ray_has(tmp_path):
    results = tmp_path / "results"
    proc = sweep("launch", "fig1-difficulty", "--dataset", "digits", "--gpus-per-trial", "1", "--results", str(results))
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith("sweep: error: --gpus-per-trial 1 is more than any node has"), err
    assert not any(p.is_file() for p in results.rglob("*"))


SMOKE = {  # every preset at tiny scale on digits (fig1-difficulty is the module's launch above)
    "convergence-slowdown": [
        "archs=[mlp1]",
        "corruptions=[randY:0.0,randY:1.0]",
        "max_epochs=2",
        "record_examples=true",
    ],
    "randomization-tests": ["archs=[mlp1]", "max_epochs=1"],
    "bn-ablation": ["max_epochs=1", "batch_size=256"],
}


@pytest.mark.parametrize("preset", SMOKE)
def test_every_preset_runs_and_reports(preset, ray_cluster, tmp_path):
    sets = [a for s in SMOKE[preset] for a in ("--set", s)]
    proc = sweep("launch", preset, "--dataset", "digits", *sets, "--results", str(tmp_path), "--address", ray_cluster)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    trials = pd.read_parquet(tmp_path / preset / "trials")
    epochs = pd.read_parquet(tmp_path / preset / "epochs")
    expected = {"convergence-slowdown": 2, "randomization-tests": 5, "bn-ablation": 2}[preset]
    assert len(trials) == expected and set(trials.status) == {"completed"}
    assert len(epochs) == trials.epochs_trained.sum()
    if preset == "convergence-slowdown":  # record_examples: every train example at every epoch
        examples = pd.read_parquet(tmp_path / preset / "examples")
        assert len(examples) == trials.epochs_trained.sum() * N_TRAIN and set(examples.split) == {"train"}
        last = examples[examples.epoch == examples.epoch.max()].groupby("variant", observed=True).correct.mean()
        by_trials = trials.set_index("variant").final_train_acc
        assert all(abs(last[v] - by_trials[v]) < 1e-6 for v in last.index)  # same numbers, two tables
    else:
        assert not (tmp_path / preset / "examples").exists()  # record_examples is off by default
    if preset == "bn-ablation":
        assert set(trials.arch) == {"inception", "inception_nobn"}
        assert trials.set_index("arch").params["inception"] > trials.set_index("arch").params["inception_nobn"]
    report = sweep("report", preset, "--results", str(tmp_path))
    assert report.returncode == 0, report.stderr[-2000:]
    page = (tmp_path / preset / "report.html").read_text()
    assert "Complete:" in page and "Time to interpolation" in page and "Learning curves" in page
    if preset == "convergence-slowdown":
        assert "Convergence slowdown (Zhang et al. 2017, Fig. 1b)" in page
        # Planted strings in a shared location: the time-to-interpolation table shows them as text.
        from conftest import plant_strings

        from analysis import report as reports

        plant_strings(tmp_path / preset, "<img src=x onerror=alert(1)>")
        page = reports.build(str(tmp_path), preset)
        assert "<img" not in page and "<td class='l'>&lt;img src=x onerror=alert(1)&gt;mlp1</td>" in page


def test_named_sweeps_share_a_location_and_ls_lists_them(launched, ray_cluster):
    """Two configurations of one preset beside the default one, by --name; `sweep ls` lists all
    three; status, report and the errors address a sweep by its name."""
    results = launched[0].parent
    base = launch_args("fig1-difficulty", "seeds=2", "variants=[randY]", results=str(results), address=ray_cluster)
    for name, p in (("fig1-p03", "0.3"), ("fig1-p06", "0.6")):
        proc = sweep(*base, "--name", name, "--set", f"corruption.p={p}")
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"sweep report {name} --results" in proc.stdout
    assert pd.read_parquet(results / "fig1-p03" / "trials").corruption_p.unique().tolist() == [0.3]
    ls = sweep("ls", "--results", str(results))
    assert ls.returncode == 0, ls.stderr
    lines = {line.split()[0]: line.split() for line in ls.stdout.strip().splitlines()[1:]}
    assert set(lines) == {"fig1-difficulty", "fig1-p03", "fig1-p06"}
    assert lines["fig1-p03"][1:3] == ["fig1-difficulty", "digits"] and lines["fig1-p03"][4] == "2/2"
    done, planned = lines["fig1-difficulty"][4].split("/")  # earlier tests here may have relaunched it
    assert done == planned and int(lines["fig1-difficulty"][5]) > 0
    assert sweep("status", "fig1-p06", "--results", str(results)).returncode == 0
    bare = sweep("status", "--results", str(results))  # no name: the sweeps there, as `sweep ls`
    assert bare.returncode == 0 and bare.stdout.startswith(ls.stdout) and "sweep status SWEEP" in bare.stdout
    # The same name again without --resume is refused, naming the sweep; an unknown name lists those there.
    again = sweep(*base, "--name", "fig1-p03", "--set", "corruption.p=0.9")
    assert again.returncode == 2 and "fig1-p03" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    missing = sweep("report", "fig1-p3", "--results", str(results))
    assert missing.returncode == 2
    assert "no sweep 'fig1-p3'" in missing.stderr and "fig1-p03, fig1-p06" in missing.stderr
    bad = sweep(*base, "--name", "../escape")
    assert bad.returncode == 2 and "name" in bad.stderr and not (results.parent / "escape").exists()


BLOCK_TRAINING_STACK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in {'torch', 'torchvision', 'ray', 'sklearn', 'pydantic', 'filelock'}:
            raise ImportError(f'blocked: {name}', name=name.split('.')[0])
sys.meta_path.insert(0, Block())
"""


def test_an_analyst_reads_and_reports_without_the_training_stack(launched, tmp_path):
    """The core install (no `train` extra): analysis loads the store, computes, draws and writes
    the report with torch, Ray, scikit-learn and pydantic unimportable; `sweep` says what to install."""
    import sys

    results = launched[0].parent
    out = tmp_path / "r.html"
    code = (
        BLOCK_TRAINING_STACK
        + f"""
from analysis import difficulty, dynamics, figures, load, report
examples = load.load_table({str(results)!r}, "fig1-difficulty", "examples", splits=["train"])
pc = difficulty.p_correct(examples)
assert len(difficulty.summary(pc)) and figures.p_correct_histograms(pc, "train")
open({str(out)!r}, "w").write(report.build({str(results)!r}, "fig1-difficulty"))
bad = [m for m in ("torch", "ray", "sklearn", "pydantic") if m in sys.modules]
assert not bad, bad
from sweep import cli
sys.exit(cli.main(["list"]))
"""
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip() == (
        "sweep: error: running sweeps needs the training stack (pydantic is not "
        "installed): pip install 'memsweep[train]'; reading results needs only `analysis`"
    )
    assert out.stat().st_size > 100_000 and "P(correct)" in out.read_text()


def test_checkpoints_left_by_an_interrupted_launch_go_once_their_fragments_are_stored(ray_cluster, tmp_path):
    args = launch_args("fig1-difficulty", "seeds=2", "variants=[real]", results=str(tmp_path), address=ray_cluster)
    assert sweep(*args).returncode == 0
    folder = tmp_path / "fig1-difficulty"
    fragment = sorted(p.stem for p in (folder / "trials").glob("*.parquet"))[0]
    # Tune names a trial's folder <fragment>-<trial id> (sweep.launcher._trial_name).
    old = folder / "_tune" / "launch-20260101-000000" / f"{fragment}-1a2b3_00000" / "checkpoint_000003"
    old.mkdir(parents=True)
    (old / "state.pt").write_bytes(b"x" * 1000)
    unknown = folder / "_tune" / "launch-20260101-000000" / "not-a-fragment" / "checkpoint_000001"
    unknown.mkdir(parents=True)
    proc = sweep(*args, "--resume")
    assert proc.returncode == 0 and "nothing to resume" in proc.stdout, proc.stderr[-2000:]
    assert not old.exists() and unknown.exists()  # only what a stored fragment no longer needs


def test_the_report_hint_names_results_only_when_not_the_default():
    import argparse

    from sweep import cli, presets

    spec = presets.resolve("fig1-difficulty", "digits")
    hint = cli._report_command(argparse.Namespace(results="results", data_root=None), spec)
    assert hint == "sweep report fig1-difficulty"
    hint = cli._report_command(argparse.Namespace(results="/tmp/my results", data_root="/data"), spec)
    assert hint == "sweep report fig1-difficulty --results '/tmp/my results' --data-root /data"
