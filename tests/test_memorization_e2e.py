"""Subset sweeps end to end through the real CLI, real Ray and real Parquet, on digits: the
memorization and cscore presets, their members table, growth with --resume, the report and its
banners, and bad input."""

import shutil

import pandas as pd
import pytest
from conftest import cli as sweep
from conftest import launch_args

from analysis import memorization as memo

N_TEST, TRAIN = 360, 300
SEEDS = 40
SUBSET = 210  # round(0.7 x 300)
NOISE = "probes.weight_noise={sigmas: [0.0, 0.5], draws: 1}"


def snapshot(folder) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*.parquet")}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="module")
def launched(ray_cluster, results):
    sets = f"seeds={SEEDS}", f"train_size={TRAIN}", "corruption.p=0.2", NOISE
    args = launch_args("memorization", *sets, results=str(results), address=ray_cluster)
    proc = sweep(*args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return results / "memorization", args, proc


def test_members_examples_and_trials_tables(launched):
    from sweep import presets
    from sweep.job import subset_of

    folder = launched[0]
    members = pd.read_parquet(folder / "members")
    examples = pd.read_parquet(folder / "examples")
    trials = pd.read_parquet(folder / "trials")
    assert len(members) == SEEDS * SUBSET and len(trials) == SEEDS
    assert len(examples) == SEEDS * (TRAIN + N_TEST)
    spec = presets.resolve(
        "memorization", "digits", [f"seeds={SEEDS}", f"train_size={TRAIN}", "corruption.p=0.2", NOISE]
    )
    for seed, rows in members.groupby("seed"):  # the documented rule, recomputed
        assert rows["index"].tolist() == subset_of(spec, 0.7, seed, TRAIN).tolist()
    # each model's scores are kept once, at the epoch it stopped
    kept = examples.groupby("seed").epoch.agg(["nunique", "first"])
    assert (kept["nunique"] == 1).all()
    assert (kept["first"] == trials.set_index("seed").epochs_trained).all()
    assert set(trials.stop_reason) <= {"interpolated", "max_epochs"}
    assert (trials.fit_acc[trials.stop_reason == "interpolated"] >= 0.99).all()
    assert (trials.subset_ratio == 0.7).all() and (trials.subset_size == SUBSET).all()
    assert (trials.corruption_kind == "randY").all() and (trials.n_corrupted > 0).all()
    assert "2 trials" not in launched[2].stdout and "40 models x 1 subset ratio (0.7)" in launched[2].stdout


def test_weight_noise_probes_each_model_on_its_own_subset(launched):
    """A probe in a subset sweep: weight noise after training, on the examples each model trained
    on (with its labels) and on the test split, at the epoch it stopped."""
    folder = launched[0]
    probes, trials = pd.read_parquet(folder / "probes"), pd.read_parquet(folder / "trials")
    assert set(probes.probe) == {"weight_noise"} and len(probes) == SEEDS * 2 * 2  # 2 sigmas, 2 splits
    assert (probes[probes.split == "train"].n == SUBSET).all() and (probes[probes.split == "test"].n == N_TEST).all()
    stopped = probes.merge(trials[["seed", "epochs_trained"]], on="seed")
    assert (stopped.epoch == stopped.epochs_trained).all()
    clean = probes[probes.sigma == 0].pivot_table(index="seed", columns="split", values="value")
    assert (clean.train >= 0.99).mean() > 0.5  # most models fit their own subset, labels and all


def test_estimates_from_the_store_alone(launched):
    folder = launched[0]
    examples, members = pd.read_parquet(folder / "examples"), pd.read_parquet(folder / "members")
    mem = memo.memorization(examples, members)
    assert len(mem) == TRAIN and mem.mislabeled.sum() > 20
    assert mem[mem.mislabeled].mem.mean() > mem[~mem.mislabeled].mem.mean() + 0.3
    assert memo.auroc(mem.mem.to_numpy(), mem.mislabeled.to_numpy()) > 0.8
    assert (mem.n_in + mem.n_out == SEEDS).all()
    pairs = memo.influence(examples, members, top=10)
    assert len(pairs) == 10 and pairs.infl.is_monotonic_decreasing


def test_report_has_every_section(launched, tmp_path):
    out = tmp_path / "r.html"
    proc = sweep("report", "memorization", "--results", str(launched[0].parent), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    for text in (
        "Memorization scores",
        "Does the score flag the mislabeled examples?",
        "AUROC",
        "Most and least memorized training examples",
        "Highest-influence pairs",
        "Agresti-Caffo",
        "cannot be set beside fig1",
        "Weight-noise sensitivity",
    ):
        assert text in page, text


def test_growth_keeps_the_stored_models(launched, ray_cluster):
    folder, args, _ = launched
    before = snapshot(folder)
    more = [a if a != f"seeds={SEEDS}" else f"seeds={SEEDS + 10}" for a in args]
    refused = sweep(*more)  # without --resume: refused, with the hint
    assert refused.returncode == 2 and "to add models to it, add --resume" in refused.stderr
    grown = sweep(*more, "--resume")
    assert grown.returncode == 0, grown.stderr[-2000:]
    assert f"growing memorization from {SEEDS} to {SEEDS + 10} models per ratio" in grown.stdout
    after = snapshot(folder)
    assert all(after[name] == stat for name, stat in before.items())  # not one stored file touched
    assert len(pd.read_parquet(folder / "trials")) == SEEDS + 10
    members = pd.read_parquet(folder / "members")
    assert members.seed.nunique() == SEEDS + 10
    from sweep import presets
    from sweep.job import subset_of

    spec = presets.resolve("memorization", "digits", [f"seeds={SEEDS + 10}", f"train_size={TRAIN}"])
    for seed in range(SEEDS, SEEDS + 10):  # the new models follow the same rule
        assert members[members.seed == seed]["index"].tolist() == subset_of(spec, 0.7, seed, TRAIN).tolist()
    mem = memo.memorization(pd.read_parquet(folder / "examples"), members)
    assert (mem.n_in + mem.n_out == SEEDS + 10).all()  # every estimate rests on every model
    # a plain --resume that leaves out --set seeds finishes the sweep as stored: it never grows it
    at = args.index(f"seeds={SEEDS}")
    plain = sweep(*args[: at - 1], *args[at + 1 :], "--resume")
    assert plain.returncode == 2 and "repeat them" in plain.stderr and "--set seeds=50" in plain.stderr
    fewer = sweep(*[a if a != f"seeds={SEEDS}" else "seeds=5" for a in args], "--resume")
    assert fewer.returncode == 2 and "a sweep only grows" in fewer.stderr and fewer.stderr.count("\n") == 1
    again = sweep(*more, "--resume")
    assert again.returncode == 0 and "nothing to resume" in again.stdout


def test_partial_stores_get_banners(launched, ray_cluster, results, tmp_path):
    few = sweep(
        *launch_args("memorization", "seeds=3", f"train_size={TRAIN}", name="few", results=results, address=ray_cluster)
    )
    assert few.returncode == 0, few.stderr[-2000:]
    out = tmp_path / "few.html"
    assert sweep("report", "few", "--results", str(results), "--out", str(out)).returncode == 0
    page = out.read_text()
    assert "No estimates yet" in page and "never held out or never trained on" in page and "--set seeds=" in page
    copy = tmp_path / "copy"
    shutil.copytree(launched[0], copy / "memorization")
    shutil.rmtree(copy / "memorization" / "members")
    # The CLI checks the store first: each trial's completion mark counts its members rows.
    proc = sweep("report", "memorization", "--results", str(copy), "--out", str(tmp_path / "x.html"))
    assert proc.returncode == 2 and "damaged" in proc.stderr and "members" in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "x.html").exists()
    # analysis alone (a notebook) reads what is there and says what is missing
    from analysis import report

    assert "members table is missing" in report.build(str(copy), "memorization")


def test_cscore_sweep(ray_cluster, results, tmp_path):
    sets = "seeds=30", "ratios=[0.3, 0.7]", f"train_size={TRAIN}", NOISE
    proc = sweep(*launch_args("cscore", *sets, results=results, address=ray_cluster))
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = results / "cscore"
    cs = memo.cscore(pd.read_parquet(folder / "examples"), pd.read_parquet(folder / "members"))
    assert len(cs) == TRAIN and cs.cscore.between(0, 1).all()
    assert {"held_out_ratio0.3", "held_out_ratio0.7"} <= set(cs.columns)
    # more training data, better held-out accuracy
    assert cs["held_out_ratio0.7"].mean() > cs["held_out_ratio0.3"].mean()
    out = tmp_path / "c.html"
    assert sweep("report", "cscore", "--results", str(results), "--out", str(out)).returncode == 0
    page = out.read_text()
    assert "C-scores" in page and "Held-out accuracy against the subset ratio" in page
    # each ratio's probes apart, in the order of the ratios: seed indices repeat across them
    assert 0 < page.index("Probes of ratio0.3") < page.index("Probes of ratio0.7")
    # a partial store (ratio 0.7 not stored yet): the C-scores of what is there, a banner for mem(i)
    from analysis import report

    copy = tmp_path / "partial"
    shutil.copytree(folder, copy / "cscore")
    for gone in (copy / "cscore").glob("*/ratio0.7-*"):
        gone.unlink()
    page = report.build(str(copy), "cscore")
    assert "C-scores" in page and "Ratio 0.7 has no stored models yet" in page
    assert "No estimates yet" in page and "no models of ratio0.7 are stored yet" in page


@pytest.mark.parametrize(
    "override, message",
    [("ratios=[0.7, 0.3]", "must be strictly increasing"), ("ratios=[1.5]", "strictly between 0 and 1, got 1.5")],
)
def test_bad_input_is_one_line_and_stores_nothing(override, message, tmp_path):
    proc = sweep("launch", "cscore", "--dataset", "digits", "--set", override, "--results", str(tmp_path))
    assert proc.returncode == 2 and message in proc.stderr
    assert proc.stderr.count("\n") == 1 and not any(tmp_path.iterdir())


def test_convolutional_models_pack_too(ray_cluster, results):
    proc = sweep(
        "launch",
        "memorization",
        "--name",
        "mem-cnn",
        "--dataset",
        "digits",
        "--set",
        "arch=cnn",
        "--set",
        "seeds=8",
        "--set",
        "train_size=100",
        "--set",
        "max_epochs=5",
        "--set",
        "optimizer.lr=0.01",
        "--results",
        str(results),
        "--address",
        ray_cluster,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    trials = pd.read_parquet(results / "mem-cnn" / "trials")
    assert set(trials.arch) == {"cnn"} and set(trials.pack_mode) <= {"vmap", "loop"} and len(trials) == 8
    assert len(pd.read_parquet(results / "mem-cnn" / "members")) == 8 * 70
    assert len(pd.read_parquet(results / "mem-cnn" / "examples")) == 8 * (100 + N_TEST)


def test_report_compares_with_a_fig1_sweep_in_the_same_location(ray_cluster, tmp_path):
    results = tmp_path / "together"
    for args in (
        ["fig1-difficulty", "--set", "seeds=4", "--set", "variants=[real]"],
        ["memorization", "--set", "seeds=40"],
    ):
        proc = sweep("launch", *args, "--dataset", "digits", "--results", str(results), "--address", ray_cluster)
        assert proc.returncode == 0, proc.stderr[-2000:]
    from analysis import report

    page = report.build(str(results), "memorization")
    assert "Against P(correct) of sweep fig1-difficulty" in page and "Spearman rho" in page
    assert "Memorization score against P(correct) of fig1-difficulty" in page
