"""Difficulty analysis on tiny hand-checkable inputs; binomial quantiles against scipy; figures."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from scipy import stats

from analysis import difficulty as D
from analysis import figures, load


def test_p_correct_array_by_hand():
    correct = np.array([[1, 0, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0]], dtype=bool)  # 3 seeds x 4 examples
    np.testing.assert_allclose(D.p_correct_array(correct), [1, 1 / 3, 1 / 3, 0])


# A clean 'real' training example (label 0) at epoch 1, as the examples table has it.
EXAMPLE = dict(variant="real", split="train", epoch=1, label=0, true_label=0, corrupted=False)


def example(seed: int, index: int, correct: bool, **more) -> dict:
    """An `examples` row: EXAMPLE's values with these, and `more` (other columns, or other values)."""
    return {**EXAMPLE, "seed": seed, "index": index, "correct": correct, **more}


def examples_frame() -> pd.DataFrame:
    """3 seeds x 4 examples for variant 'real', 3 seeds x 4 examples for 'randX'; one split, epoch."""
    real = [[1, 0, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0]]
    rand = [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0]]
    rows = [
        dict(
            variant=v,
            split="train",
            epoch=1,
            seed=s,
            index=i,
            correct=bool(m[s][i]),
            label=i % 2,
            true_label=i % 2,
            corrupted=v != "real",
        )
        for v, m in (("real", real), ("randX", rand))
        for s in range(3)
        for i in range(4)
    ]
    return pd.DataFrame(rows)


def test_p_correct_frame_by_hand():
    pc = D.p_correct(examples_frame())
    real = pc[pc.variant == "real"].set_index("index")
    np.testing.assert_allclose(real.p_correct, [1, 1 / 3, 1 / 3, 0])
    assert set(pc.n_seeds) == {3} and real.label.tolist() == [0, 1, 0, 1]


def test_binomial_baseline_is_scipys_quantiles():
    n, p, m = 100, 0.13, 1437
    exact = D.binomial_baseline(n, p, m)
    assert exact.shape == (m,) and np.all(np.diff(exact) >= 0)
    np.testing.assert_array_equal(exact, stats.binom.ppf((np.arange(m) + 0.5) / m, n, p) / n)
    # Binomial(3, 1/2) CDF: 1/8, 4/8, 7/8, 1 at 0..3; quantiles at q = 1/8, 3/8, 5/8, 7/8 -> 0, 1, 2, 2.
    np.testing.assert_array_equal(D.binomial_baseline(3, 0.5, 4), [0, 1 / 3, 2 / 3, 2 / 3])
    # Sampled: reproducible with a seed, close to the exact curve in distribution.
    a, b = D.binomial_baseline(n, p, m, seed=1), D.binomial_baseline(n, p, m, seed=1)
    np.testing.assert_array_equal(a, b)
    assert abs(a.mean() - p) < 0.005 and abs(a.std() - np.sqrt(p * (1 - p) / n)) < 0.003


def test_distance_from_binomial_by_hand():
    # n = 1, p = 0.5: Binomial CDF is 0.5 at 0 and 1 at 1.
    assert D.distance_from_binomial(np.array([0, 0, 0, 0]), 1, 0.5) == pytest.approx(0.5)
    assert D.distance_from_binomial(np.array([0, 1, 0, 1]), 1, 0.5) == pytest.approx(0.0)
    # Values exactly at the binomial quantiles are (nearly) at distance 0.
    q = D.binomial_baseline(100, 0.2, 10000)
    assert D.distance_from_binomial(q, 100, 0.2) < 0.01
    # Half always right, half always wrong at mean 0.5: as far as it gets.
    assert D.distance_from_binomial(np.array([0.0, 1.0] * 50), 100, 0.5) > 0.49


def test_summary_by_hand():
    table = D.summary(D.p_correct(examples_frame())).set_index("variant")
    assert table.loc["real", "mean"] == pytest.approx(5 / 12)
    assert table.loc["randX", "mean"] == pytest.approx(3 / 12)
    assert table.loc["real", "p_ref"] == pytest.approx(3 / 12)  # reference: the randX mean
    assert table.loc["real", "n_seeds"] == 3 and table.loc["real", "n_examples"] == 4
    # randX counts per example are 1,1,1,0 of 3; Binomial(3, 1/4) CDF at 0 is 27/64.
    assert table.loc["randX", "ks_own"] == pytest.approx(abs(1 / 4 - 27 / 64))


def test_extremes_and_sorted_curves():
    pc = D.p_correct(examples_frame())
    ext = D.extremes(pc, k=2)
    real = ext[ext.variant == "real"]
    assert real[real.kind == "hardest"]["index"].tolist() == [3, 1]  # P 0, then 1/3 (tie -> lower index)
    assert real[real.kind == "easiest"]["index"].tolist() == [0, 1]
    curves, baselines = D.sorted_curves(pc)
    r = curves[curves.variant == "real"]
    assert r["rank"].tolist() == [0, 1, 2, 3] and r["index"].tolist() == [0, 1, 2, 3]
    assert r.p_correct.is_monotonic_decreasing and len(baselines) == 4
    assert baselines.name.iloc[0] == "Binomial(n=3, p=0.250) [randX mean]"


def test_figures_take_frames_and_return_figures():
    pc = D.p_correct(examples_frame())
    curves, baselines = D.sorted_curves(pc)
    fig = figures.p_correct_curves(curves, baselines, "train", ["real", "randX"])
    assert isinstance(fig, go.Figure)
    assert [t.name for t in fig.data] == ["real", "randX", "Binomial(n=3, p=0.250) [randX mean]"]
    assert fig.layout.xaxis.title.text == "Examples sorted by P(correct)"
    assert fig.layout.yaxis.title.text == "P(correct)"
    assert "example %{customdata[0]}" in fig.data[0].hovertemplate
    assert list(fig.data[0].customdata[:, 0]) == [0, 1, 2, 3]
    hist = figures.p_correct_histograms(pc, "train", 1, ["real", "randX"])
    assert [t.name for t in hist.data] == ["real", "randX"]
    gal = figures.gallery(np.zeros((3, 8, 8), np.uint8), ["a", "b", "c"], "hardest", columns=2)
    assert len(gal.data) == 3 and [a.text for a in gal.layout.annotations] == ["a", "b", "c"]


def test_load_table_filters(tmp_path):
    from conftest import contract_table

    from sweep.store import Store

    ex = examples_frame()
    store = Store(tmp_path, "s")
    for v in ("real", "randX"):
        rows = ex[ex.variant == v]
        part = contract_table("examples", {**rows.to_dict("list"), "cell": rows.variant.tolist()})
        store.write_fragment(
            f"{v}-pack000",
            {"examples": part, "epochs": contract_table("epochs", rows=1), "trials": contract_table("trials", rows=1)},
            {},
        )
    assert len(load.load_table(str(tmp_path), "s", "examples")) == 24
    only = load.load_table(str(tmp_path), "s", "examples", variants=["real"], columns=["variant", "correct"])
    assert set(only.variant) == {"real"} and len(only) == 12 and list(only.columns) == ["variant", "correct"]
    with pytest.raises(FileNotFoundError, match="no 'examples' table"):
        load.load_table(str(tmp_path), "other", "examples")
    with pytest.raises(ValueError, match="unknown table 'example'"):
        load.load_table(str(tmp_path), "s", "example")


def test_gallery_ties_are_broken_by_the_mean_probability_of_the_label():
    # Four examples every seed gets right (a tie at P = 1) and one it never does: the easiest are
    # the most confident ones, not the lowest indices, and the tie is counted for the caption.
    rows = [example(s, i, i != 4, p_label=[0.6, 0.9, 0.7, 0.99, 0.1][i], loss=0.0) for s in range(2) for i in range(5)]
    pc = D.p_correct(pd.DataFrame(rows))
    ext = D.extremes(pc, k=2)
    easy = ext[ext.kind == "easiest"]
    assert easy["index"].tolist() == [3, 1] and set(easy.tied) == {4}
    assert ext[ext.kind == "hardest"]["index"].tolist() == [4, 0]  # then the least confident of the tie


def test_bootstrap_bands_widen_with_fewer_seeds_and_sentences_read_the_numbers():
    rng = np.random.default_rng(0)

    def frame(seeds):
        return pd.DataFrame([example(s, i, bool(rng.random() < i / 50)) for s in range(seeds) for i in range(50)])

    few, many = D.bootstrap_bands(frame(4), draws=100), D.bootstrap_bands(frame(64), draws=100)
    assert (few.hi >= few.lo).all() and len(few) == 50
    assert (few.hi - few.lo).mean() > 2 * (many.hi - many.lo).mean()
    table = D.summary(D.p_correct(frame(64)))
    text = D.distance_sentence(table.iloc[0])
    assert text.startswith("real (train, epoch 1): far from binomial (KS ") and "differ in difficulty" in text
    row = table.iloc[0]  # the sentence reads the curve's own ends, not a stock phrase
    assert f"P(correct) runs from {row['min']:.2f} to {row['max']:.2f}" in text
    assert ("right for every seed" in text) == (row["all_seeds"] > 0) and ("right for no seed" in text) == (
        row["no_seed"] > 0
    )
    assert f"{round(row['no_seed'] * 50)} of 50 right for no seed" in text  # example 0 is never right: a count, not 0%
    learned = pd.DataFrame([example(s, i, True, epoch=9) for s in range(8) for i in range(20)])
    done = D.distance_sentence(D.summary(D.p_correct(learned)).iloc[0])
    assert "nearly every example is right for nearly every seed" in done and "as for noise" not in done
    fig = figures.p_correct_curves(
        *D.sorted_curves(D.p_correct(frame(8))), "train", ["real"], bands=D.bootstrap_bands(frame(8), draws=50)
    )
    assert fig.data[0].fill == "toself" and fig.data[1].name == "real"


def test_too_few_seeds_are_said_not_read_as_equally_hard():
    rows = pd.DataFrame([example(0, i, i % 2 == 0) for i in range(20)])
    text = D.distance_sentence(D.summary(D.p_correct(rows)).iloc[0])
    assert "1 seed(s) are too few to tell" in text and "equally hard" in text and "close to binomial" not in text


def test_summary_without_randx_shows_dashes_not_nan():
    from analysis import report

    table = pd.DataFrame(
        [
            {
                "variant": "real",
                "split": "train",
                "epoch": 1,
                "n_seeds": 5,
                "n_examples": 10,
                "mean": 0.8,
                "std": 0.1,
                "binom_std": 0.17,
                "ks_own": 0.3,
                "p_ref": np.nan,
                "ks_ref": np.nan,
            }
        ]
    )
    page = report._summary_html(table)
    assert "nan" not in page and page.count("&ndash;") == 2


def _manifest(args=None):
    prov = {"preset": "fig1-difficulty", **({"args": args} if args is not None else {})}
    plan = [{"cell": v, "pack": 0, "seed_lo": 0, "seed_hi": 2} for v in ("real", "randY")]
    return {
        "spec": {"name": "fig1-difficulty", "engine": "packed", "seeds": 2, "variants": ["real", "randY"]},
        "provenance": prov,
        "plan": plan,
    }


def test_launch_args_give_the_stored_arguments_back_quoted():
    m = _manifest(["--dataset", "digits", "--set", "epochs=[1, 2]", "--set", "name=it's"])
    assert load.launch_args(m) == "fig1-difficulty --dataset digits --set 'epochs=[1, 2]' --set 'name=it'\"'\"'s'"
    assert load.launch_args_known(m) and not load.launch_args_known(_manifest())
    assert load.launch_args(_manifest()) == "fig1-difficulty"


def test_report_banner_says_why_a_sweep_is_incomplete():
    import html

    from analysis.report import _status

    real = pd.DataFrame({"fragment": ["real-pack000"] * 2, "variant": ["real"] * 2, "seed": [0, 1]})
    m = _manifest(["--dataset", "digits"])
    cmd = "sweep launch fig1-difficulty --dataset digits --resume --results r"
    running = html.unescape(_status(m, real, "r", {"trials": {"randY-pack000": "RUNNING"}}))
    assert "Incomplete sweep</b> (real: 2/2 seeds, randY: 0/2 seeds)" in running
    assert "has not recorded an end" in running and f"<code>{cmd}</code> finishes it" in running
    ended = html.unescape(_status(m, real, "r", {"ended": "x", "trials": {"randY-pack000": "INTERRUPTED"}}))
    assert "ended with trials unfinished (1 trial interrupted)" in ended and f"<code>{cmd}</code> runs them" in ended
    failed = html.unescape(_status(m, None, "r", {"ended": "x", "trials": {"real-pack000": "ERROR"}}))
    assert "No results yet" in failed and "(1 trial failed, 1 trial not started)" in failed and cmd in failed
    assert "again later" not in failed
    waiting = _status(m, None, "r", {"trials": "not a dict"})
    assert "again later" in waiting
    old = html.unescape(_status(_manifest(), real, "r", {}))  # a store from before the arguments were kept
    assert "--resume --results r</code> (with the launch's <code>--dataset</code>" in old
    whole = pd.concat([real, real.assign(fragment="randY-pack000", variant="randY")])
    assert "Complete: real: 2/2 seeds, randY: 2/2 seeds" in _status(m, whole, "r", {"ended": "x"})


def test_grouped_means_fold_batches_and_skip_nulls_as_pandas_does(tmp_path, monkeypatch):
    """Out-of-core means over fragments in small batches (folded many times), a float16 column
    (`record_dtype: float16`) and a null among the values: the same as pandas on the whole table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from analysis import aggregate

    rng = np.random.default_rng(0)
    folder = tmp_path / "s" / "examples"
    folder.mkdir(parents=True)
    frames = []
    for part in range(3):
        frame = pd.DataFrame(
            {
                "variant": rng.choice(["real", "randY"], 400),
                "index": rng.integers(0, 50, 400),
                "loss": rng.random(400).astype(np.float16),
            }
        )
        frame.loc[part, "loss"] = np.nan
        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = table.set_column(0, "variant", table["variant"].dictionary_encode())  # as the store writes keys
        pq.write_table(table, folder / f"f{part}.parquet")
        frames.append(frame)
    monkeypatch.setattr(aggregate, "BATCH_ROWS", 100)
    out = aggregate.grouped_means(str(tmp_path), "s", "examples", ["variant", "index"], ["loss"])
    whole = pd.concat(frames).astype({"loss": np.float64})
    expect = whole.groupby(["variant", "index"]).agg(n=("loss", "size"), mean_loss=("loss", "mean")).reset_index()
    pd.testing.assert_frame_equal(
        out, expect.sort_values(["variant", "index"]).reset_index(drop=True), check_dtype=False, atol=1e-12
    )


def test_seeds_by_variant_by_hand():
    from analysis import aggregate

    trials = pd.DataFrame({"variant": ["real", "real", "randY", "real"], "seed": [0, 1, 0, 1]})
    have = aggregate.seeds_by_variant(trials, ["real", "randX", "randY"])
    assert have.to_dict() == {"real": 2, "randX": 0, "randY": 1}
