"""Hyperparameter axes (sweep/axes.py): grids and random samples over any spec key, validated by
the strict spec, planned so that per-member hyperparameters share packs, stored as columns."""

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest
from conftest import cli, launch_args

from sweep import axes, planner, presets

GRID = "grid={optimizer.lr: [0.01, 0.05], model.hidden: [[64], [128]]}"


@pytest.mark.parametrize(
    "override, message",
    [
        ("grid={foo.lr: [0.1]}", "on an axis, unknown key 'foo.lr': the spec has no 'foo'"),
        ("grid={optimizer.lr: []}", "grid axis 'optimizer.lr' needs a non-empty list of values, got []"),
        (
            "grid={optimizer.lr: [0.01, -1]}",
            "on an axis, bad value for optimizer.lr: -1 (Input should be greater than 0)",
        ),
        (
            "grid={optimizer.lr: [.nan]}",
            "on an axis, bad value for optimizer.lr: nan (Input should be a finite number)",
        ),
        (
            "grid={optimizer.momentum: [0.5, 1.0]}",
            "bad value for optimizer.momentum: 1.0 (Input should be less than 1)",
        ),
        ("grid={seeds: [1, 2]}", "'seeds' is the study's own axis or identity, not a hyperparameter"),
        ("grid={variants: [[real]]}", "'variants' is the study's own axis or identity"),
        ("grid={batch_size: [16, big]}", "bad value for batch_size: 'big' (Input should be a valid integer)"),
        ("grid={model.hidden: [64]}", "bad value for model.hidden: 64 (expected a list, e.g. [64])"),
        (
            "grid={optimizer.lr: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], optimizer.momentum: "
            "[0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], batch_size: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]}",
            "the axes make 1,100 points, more than the 1,000 allowed in one sweep",
        ),
        (
            "sample={samples: 4, space: {optimizer.lr: {loguniform: [0, 0.1]}}}",
            "loguniform bounds [0.0, 0.1] must be above 0",
        ),
        (
            "sample={samples: 4, space: {optimizer.lr: {uniform: [0.1, 0.01]}}}",
            "the low one must be below the high one",
        ),
        ("sample={samples: 0, space: {optimizer.lr: {choice: [0.1]}}}", "bad value for sample.samples: 0"),
        (
            "sample={samples: 2, space: {optimizer.lr: {uniform: [-1.0, -0.5]}}}",
            "on an axis, bad value for optimizer.lr",
        ),
        (  # a distribution's bounds and choices must fit the key, drawn or not
            "sample={samples: 3, space: {optimizer.momentum: {uniform: [0, 1.5]}}}",
            "on an axis, bad value for optimizer.momentum: 1.5 (Input should be less than 1)",
        ),
        (
            "sample={samples: 1, space: {optimizer.lr: {choice: [0.1, -5]}}}",
            "on an axis, bad value for optimizer.lr: -5 (Input should be greater than 0)",
        ),
        (
            "sample={samples: 2, space: {optimizer.lr: {normal: [0, 1]}}}",
            "unknown distribution 'normal' (allowed: loguniform, uniform, choice)",
        ),
        ("grid={arch: [mlp, cnn]}", "on an axis, unknown key 'arch'"),  # fig1 has no arch to sweep
        ("grid={optimizer.lr:[0.05,0.1]}", "a key in {...} needs a space after its colon"),
        ("grid={optimizer: [{lr: 0.1}]}", "axis 'optimizer' names a group of keys: sweep one of them"),
        ("grid={optimizer.lr: [0.1, 0.1]}", "axis 'optimizer.lr' lists 0.1 twice"),
    ],
)
def test_bad_axes_are_one_line_exit_2_and_store_nothing(override, message, tmp_path, capsys):
    from sweep import cli

    try:  # the CLI's own entry point, in process
        code = cli.main(
            ["launch", "fig1-difficulty", "--dataset", "digits", "--set", override, "--results", str(tmp_path)]
        )
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("sweep: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert not any(tmp_path.iterdir())  # nothing stored


def test_a_grid_is_crossed_with_the_study_and_members_share_packs():
    spec = presets.resolve("fig1-difficulty", "digits", ["seeds=4", "variants=[real, randY]", GRID])
    plans = planner.expand(spec, 1)
    # Widths are other shapes: their own trials; the two learning rates of a width share each trial.
    assert {p.cell for p in plans} == {"real-hidden64", "real-hidden128", "randY-hidden64", "randY-hidden128"}
    models = [m for p in plans for m in p.models()]
    assert len(models) == len(set(models)) == 2 * 4 * 4  # variants x points x seeds, each once
    # Each model's cell names its point, the axes in sorted order (as the spec's hash has them).
    assert all({c for c, _, _ in p.models()} == {f"{p.cell}-lr0.01", f"{p.cell}-lr0.05"} for p in plans)
    again = presets.resolve(
        "fig1-difficulty",
        "digits",
        ["seeds=4", "variants=[real, randY]", "grid={model.hidden: [[64], [128]], optimizer.lr: [0.01, 0.05]}"],
    )
    assert again.points() == spec.points() and again.hash() == spec.hash() and planner.expand(again, 1) == plans
    # A plan survives the manifest's round trip; sweeps without axes keep their old plans.
    assert [planner.TrialPlan.from_dict(p.to_dict()) for p in plans] == plans
    plain = planner.expand(presets.resolve("fig1-difficulty", "digits", ["seeds=4"]), 1)
    assert "points" not in plain[0].to_dict() and plain[0].fragment == "real-pack000"


def test_a_subset_sweep_with_axes_grows_every_point_and_keeps_the_stored_trials():
    grid = "grid={optimizer.lr: [0.01, 0.05], model.hidden: [[32], [64]]}"
    spec = presets.resolve("memorization", "digits", ["seeds=6", "ratios=[0.5, 0.7]", grid])
    plans = planner.expand(spec, slots=2)
    stored = {"spec": spec.model_dump(), "plan": [p.to_dict() for p in plans]}
    bigger = presets.resolve("memorization", "digits", ["seeds=15", "ratios=[0.5, 0.7]", grid])
    grown = planner.grow(stored, bigger, slots=2)
    assert grown[: len(plans)] == plans  # the stored trials, unchanged
    new = grown[len(plans) :]
    assert {p.fragment for p in new}.isdisjoint({p.fragment for p in plans})
    models = [m for p in grown for m in p.models()]
    assert len(models) == len(set(models)) == 2 * 4 * 15  # ratios x points x seeds, each once
    for cell in {c for c, _, _ in models}:
        assert sorted(s for c, _, s in models if c == cell) == list(range(15))
    # Every new trial names the same points as the stored ones of its trial cell.
    assert all(p.points == next(q.points for q in plans if q.cell == p.cell) for p in new)
    assert planner.grow(stored, presets.resolve("memorization", "digits", ["seeds=15", "ratios=[0.5, 0.7]"])) is None


def test_a_label_noise_axis_of_a_subset_sweep_trains_each_point_on_its_own_labels():
    spec = presets.resolve("memorization", "digits", ["seeds=2", "ratios=[0.5]", "grid={corruption.p: [0.0, 0.3]}"])
    variants = {p.cell: p.variant for p in planner.expand(spec, 1)}
    assert variants == {"ratio0.5-p0": "real", "ratio0.5-p0.3": "randY:0.3"}
    # A store planned when every point trained on the sweep's own labels never grows into mixed labels.
    old = [dataclasses.replace(p, variant="real").to_dict() for p in planner.expand(spec, 1)]
    bigger = presets.resolve("memorization", "digits", ["seeds=4", "ratios=[0.5]", "grid={corruption.p: [0.0, 0.3]}"])
    with pytest.raises(presets.SpecError, match="growing it would mix two labelings in a cell"):
        planner.grow({"spec": spec.model_dump(), "plan": old}, bigger)
    assert planner.grow({"spec": spec.model_dump(), "plan": [p.to_dict() for p in planner.expand(spec, 1)]}, bigger)
    with pytest.raises(presets.SpecError, match="'arch' is the study's own axis or identity"):
        presets.resolve("memorization", "digits", ["grid={arch: [mlp, cnn]}"])


def test_samples_are_reproducible_from_the_sweep_seed_and_within_bounds():
    override = "sample={samples: 20, space: {optimizer.lr: {loguniform: [0.001, 0.1]}, batch_size: {choice: [16, 32]}}}"
    a = presets.resolve("fig1-difficulty", "digits", [override]).points()
    assert a == presets.resolve("fig1-difficulty", "digits", [override]).points()
    assert a != presets.resolve("fig1-difficulty", "digits", [override, "seed=1"]).points()
    lrs = np.array([p["optimizer.lr"] for p in a])
    assert len(a) == 20 and ((lrs >= 0.001) & (lrs <= 0.1)).all() and {p["batch_size"] for p in a} == {16, 32}
    names = axes.labels(a)
    assert len(set(names)) == len(names)


def test_a_packed_lr_grid_runs_end_to_end_with_the_axes_as_columns(tmp_path):
    """Through the real CLI: two widths x two learning rates; each table carries the axis
    columns, the lr grid shares packs, and a member at lr=a trains as lr=a (the epochs table
    records its own rate; the higher rate learns more in the one epoch)."""
    results = tmp_path / "r"
    proc = cli(*launch_args("fig1-difficulty", "seeds=3", "variants=[real]", GRID, name="g", results=results))
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Each finished trial's line gives each packed point's accuracy, never only their mean.
    lines = [
        line for line in proc.stdout.splitlines() if "trials |" in line and "acc" in line and "running:" not in line
    ]
    assert lines and all(
        re.search(r"\(test acc by point: lr0\.01 0\.\d{3}, lr0\.05 0\.\d{3}\)", line) for line in lines
    ), proc.stdout
    trials = pd.read_parquet(results / "g" / "trials")
    assert len(trials) == 12 and trials["optimizer.lr"].dtype == np.float64
    assert set(trials["model.hidden"].astype(str)) == {"[64]", "[128]"}
    assert (trials.groupby("fragment")["optimizer.lr"].nunique() == 2).all()  # both rates in every trial
    epochs = pd.read_parquet(results / "g" / "epochs")
    assert (epochs.lr == epochs["optimizer.lr"]).all()
    examples = pd.read_parquet(results / "g" / "examples", columns=["optimizer.lr", "model.hidden", "split", "correct"])
    acc = examples[examples.split == "train"].groupby(["model.hidden", "optimizer.lr"], observed=True).correct.mean()
    for width in ("[64]", "[128]"):
        assert acc[(width, 0.05)] > acc[(width, 0.01)]
    status = cli("status", "g", "--results", str(results), timeout=120)
    assert status.returncode == 0 and "real-hidden128-lr0.05" in status.stdout
    report = cli("report", "g", "--results", str(results), timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    page = (results / "g" / "report.html").read_text()
    for lr in ("0.01", "0.05"):  # one set of curves per point, not one mixed curve
        for width in ("[64]", "[128]"):
            assert f"<h2 class='axis'>optimizer.lr = {lr}, model.hidden = {width}</h2>" in page


def test_the_regularization_preset_reports_accuracy_by_axis(tmp_path):
    """regularization-memorization through the real CLI, cut down (one seed, 2 epochs, two
    regularizers on or off, two noise levels): the trials carry the axes, a pack trains every
    regularizer combination, and the report's table keys the accuracies by the axes, clean and
    corrupted examples apart."""
    from analysis import aggregate

    grid = "grid={corruption.p: [0.0, 0.5], regularizers.dropout: [0.0, 0.5], regularizers.fgsm_eps: [0.0, 0.1]}"
    args = ["--dataset", "digits", "--set", "seeds=1", "--set", "epochs=[1]", "--set", grid, "--results", str(tmp_path)]
    proc = cli("launch", "regularization-memorization", *args, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = pd.read_parquet(tmp_path / "regularization-memorization" / "trials")
    assert len(trials) == 8 and set(trials.pack_size) == {4}  # the four regularizer points share a pack
    table = aggregate.accuracy_by_axes(
        str(tmp_path), "regularization-memorization", ["corruption.p", "regularizers.dropout", "regularizers.fgsm_eps"]
    )
    assert len(table) == 8 and (table.models == 1).all()
    assert table[table["corruption.p"] == 0.0].train_corrupted.isna().all()
    assert table[table["corruption.p"] == 0.5].train_corrupted.notna().all()
    report = cli("report", "regularization-memorization", "--results", str(tmp_path), timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    page = (tmp_path / "regularization-memorization" / "report.html").read_text()
    assert (
        "Accuracy by hyperparameter" in page and "train_corrupted" in page and "Accuracy against corruption.p" in page
    )


def test_zhang_table1_runs_a_convergence_grid_per_point_and_prints_the_table(tmp_path):
    """A convergence grid with axes: every point its own trials (with all of its values), the
    axes as columns, and the report's Table 1 keyed by arch, labels and the axes."""
    args = ["--dataset", "digits", "--set", "archs=[mlp1]", "--set", "max_epochs=3", "--results", str(tmp_path)]
    proc = cli("launch", "zhang-table1", *args, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = pd.read_parquet(tmp_path / "zhang-table1" / "trials")
    assert len(trials) == 8 and set(trials["regularizers.crop"]) == {0, 1}
    assert set(trials["optimizer.weight_decay"]) == {0.0, 0.0005}
    config = trials.set_index("cell").config.map(lambda c: __import__("json").loads(c))
    on = config["mlp1-real-weightdecay0.0005-crop1"]  # the trial trained with its point's values
    assert on["regularizers"]["crop"] == 1 and on["optimizer"]["weight_decay"] == 0.0005
    report = cli("report", "zhang-table1", "--results", str(tmp_path), timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    page = (tmp_path / "zhang-table1" / "report.html").read_text()
    assert "Train and test accuracy by hyperparameter" in page and "randY:1.0" in page
    assert page.count("<h2 class='axis'>") == 4
