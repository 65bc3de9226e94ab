"""Memorization, influence and C-score estimates (analysis.memorization) on tiny hand-made tables,
and the subset-sweep spec: ratios, growth."""

import numpy as np
import pandas as pd
import pytest

from analysis import memorization as memo
from sweep import planner, presets, seeding
from sweep import spec as specs


def tables(correct_train, subsets, correct_test=None, cell="ratio0.5", labels=None, true_labels=None):
    """examples and members tables of m models (rows of `correct_*`) with the given subsets."""
    correct_train = np.asarray(correct_train, dtype=bool)
    m, n = correct_train.shape
    labels = np.zeros(n, dtype=int) if labels is None else np.asarray(labels)
    true_labels = labels if true_labels is None else np.asarray(true_labels)
    rows = []
    for split, matrix in (("train", correct_train), ("test", correct_test)):
        if matrix is None:
            continue
        matrix = np.asarray(matrix, dtype=bool)
        for s in range(m):
            for i in range(matrix.shape[1]):
                rows.append(
                    {
                        "cell": cell,
                        "variant": "real",
                        "seed": s,
                        "split": split,
                        "epoch": 5,
                        "index": i,
                        "correct": matrix[s, i],
                        "label": labels[i] if split == "train" else 0,
                        "true_label": true_labels[i] if split == "train" else 0,
                    }
                )
    members = pd.DataFrame(
        [{"cell": cell, "variant": "real", "seed": s, "index": i} for s, subset in enumerate(subsets) for i in subset]
    )
    return pd.DataFrame(rows), members


# 4 models, 3 training examples. Example 0: right when in (models 0, 1), wrong when out (2, 3):
# mem 1. Example 1: always right: mem 0. Example 2: in models 1 and 2, right in model 1 and 3.
SUBSETS = [[0], [0, 2], [1, 2], [1]]
CORRECT = [[1, 1, 0], [1, 1, 1], [0, 1, 0], [0, 1, 1]]


def test_memorization_by_hand():
    ex, mb = tables(CORRECT, SUBSETS)
    m = memo.memorization(ex, mb).set_index("index")
    assert m.mem.tolist() == [1.0, 0.0, 0.0]
    assert m.n_in.tolist() == [2, 2, 2] and m.n_out.tolist() == [2, 2, 2]
    assert m.loc[2, "p_in"] == 0.5 and m.loc[2, "p_out"] == 0.5
    # Agresti-Caffo for example 0: p~_in = 3/4, p~_out = 1/4, SE = sqrt(2 * (3/16) / 4)
    assert m.loc[0, "se"] == pytest.approx(np.sqrt(2 * 3 / 16 / 4))
    assert m.loc[0, "lo"] == pytest.approx(0.5 - memo.Z95 * m.loc[0, "se"])
    assert m.loc[0, "hi"] == 1.0  # clipped
    assert (m.se > 0).all()  # never 0, even where every model agrees


def test_memorization_flags_mislabeled_examples():
    ex, mb = tables(CORRECT, SUBSETS, labels=[3, 1, 2], true_labels=[5, 1, 2])
    m = memo.memorization(ex, mb)
    assert m.mislabeled.tolist() == [True, False, False]
    assert memo.auroc(m.mem.to_numpy(), m.mislabeled.to_numpy()) == 1.0


def test_influence_by_hand_and_blocks_change_nothing():
    # Test example 0 is right exactly in the models that trained on training example 0.
    test = [[1, 1], [1, 0], [0, 1], [0, 0]]
    ex, mb = tables(CORRECT, SUBSETS, correct_test=test)
    pairs = memo.influence(ex, mb, top=6)
    first = pairs.iloc[0]
    assert (first.train_index, first.test_index, first.infl) == (0, 0, 1.0)
    assert first.n_in == 2 and first.n_out == 2
    # every pair by hand: infl(i, j) = mean correct_j over models with i in S - over the others
    a = np.zeros((4, 3), dtype=bool)
    for s, subset in enumerate(SUBSETS):
        a[s, subset] = True
    t = np.asarray(test, dtype=float)
    want = {(i, j): t[a[:, i], j].mean() - t[~a[:, i], j].mean() for i in range(3) for j in range(2)}
    for r in pairs.itertuples():
        assert r.infl == pytest.approx(want[(r.train_index, r.test_index)])
    assert sorted(pairs.infl, reverse=True) == pairs.infl.tolist()
    assert pairs.infl.tolist() == sorted(want.values(), reverse=True)
    blocked = memo.influence(ex, mb, top=6, block=1)
    pd.testing.assert_frame_equal(
        blocked[["train_index", "test_index", "infl"]]
        .sort_values(["infl", "train_index", "test_index"])
        .reset_index(drop=True),
        pairs[["train_index", "test_index", "infl"]]
        .sort_values(["infl", "train_index", "test_index"])
        .reset_index(drop=True),
    )
    assert (memo.influence(ex, mb, top=6, min_infl=0.5).infl >= 0.5).all()


def test_cscore_by_hand():
    ex1, mb1 = tables(CORRECT, SUBSETS, cell="ratio0.3")
    # a second ratio where example 2 is held out by models 0 and 3 and right in neither
    ex2, mb2 = tables([[1, 1, 0], [1, 1, 1], [1, 0, 1], [0, 1, 0]], [[1], [0, 2], [2], [0, 1]], cell="ratio0.6")
    cs = memo.cscore(pd.concat([ex1, ex2]), pd.concat([mb1, mb2])).set_index("index")
    # ratio0.3: held out of example 0 by models 2, 3 (wrong, wrong) -> 0; ratio0.6: by models 0, 2 -> 1
    assert cs.loc[0, "held_out_ratio0.3"] == 0.0 and cs.loc[0, "held_out_ratio0.6"] == 1.0
    assert cs.loc[0, "cscore"] == 0.5
    assert cs.loc[2, "cscore"] == pytest.approx((0.5 + 0.0) / 2)
    assert (cs.ratios == 2).all() and cs.loc[0, "n_out"] == 4
    t = 1 / 4  # p~ of ratio0.3 for example 0: (0 + 1) / (2 + 2); ratio0.6: 3 / 4, same variance
    assert cs.loc[0, "se"] == pytest.approx(np.sqrt(2 * t * (1 - t) / 4) / 2)


def test_too_few_models_names_the_examples_and_how_many_more():
    ex, mb = tables([[1, 1, 1], [1, 1, 1]], [[0, 1], [0, 2]])  # example 0 is never held out
    with pytest.raises(memo.TooFewModels) as err:
        memo.memorization(ex, mb)
    text = str(err.value)
    assert "1 of 3 training examples" in text and "index 0" in text and "--set seeds=" in text
    assert "\n" not in text
    with pytest.raises(memo.TooFewModels):
        memo.cscore(ex, mb)


def test_models_needed():
    assert memo.models_needed(1437, 0.7) == 36
    assert memo.models_needed(1437, 0.3) == 36  # symmetric in r and 1 - r
    # at that count, a simulation leaves every example in and out of some model almost always
    rng = np.random.default_rng(0)
    fails = sum(((a := rng.random((36, 1437)) < 0.7).all(axis=0) | (~a).all(axis=0)).any() for _ in range(200))
    assert fails <= 4


def test_members_table_missing_or_not_matching():
    ex, mb = tables(CORRECT, SUBSETS)
    with pytest.raises(memo.MembersMismatch, match="members table is missing"):
        memo.memorization(ex, None)
    with pytest.raises(memo.MembersMismatch, match=r"1 model\(s\) of ratio0.5 have no subset in it \(e.g. seed 3\)"):
        memo.memorization(ex, mb[mb.seed != 3])
    bad = mb.copy()
    bad.loc[0, "index"] = 99
    with pytest.raises(memo.MembersMismatch, match="training index 99 is outside the 3 training examples"):
        memo.memorization(ex, bad)
    with pytest.raises(ValueError, match="has 2 train rows, the others 3"):
        memo.memorization(ex.drop(index=0), mb)


def test_auroc_and_roc_curve():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    scores, flags = rng.integers(0, 5, 300).astype(float), rng.random(300) < 0.2
    assert memo.auroc(scores, flags) == pytest.approx(roc_auc_score(flags, scores))
    curve = memo.roc_curve(scores, flags)
    assert curve.fpr.iloc[0] == 0 and curve.tpr.iloc[-1] == 1 and curve.fpr.iloc[-1] == 1
    assert np.trapezoid(curve.tpr, curve.fpr) == pytest.approx(roc_auc_score(flags, scores))
    assert np.isnan(memo.auroc(scores, np.zeros(300, dtype=bool)))


# --- the spec ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, message",
    [
        ("ratios=[0.7, 1.0]", "ratios: [0.7, 1.0] (subset fractions must lie strictly between 0 and 1, got 1.0)"),
        ("ratios=[0.0]", "strictly between 0 and 1, got 0.0"),
        ("ratios=[0.5, 0.3]", "must be strictly increasing, got [0.5, 0.3]"),
        ("ratios=[]", "ratios"),
    ],
)
def test_bad_ratios_are_one_line_errors(override, message):
    with pytest.raises(specs.SpecError) as err:
        presets.resolve("cscore", "digits", [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_ratio_that_leaves_an_empty_subset():
    with pytest.raises(specs.SpecError, match=r"ratio 0.1 of 4 training examples leaves round\(0.1 x 4\) = 0"):
        presets.resolve("memorization", "digits", ["ratios=[0.1]", "train_size=4"])


def test_plan_and_growth_keep_every_stored_trial():
    spec = presets.resolve("cscore", "digits", ["seeds=10", "ratios=[0.3, 0.7]"])
    plans = planner.expand(spec, slots=2)
    assert {p.cell for p in plans} == {"ratio0.3", "ratio0.7"}
    assert sum(p.seed_hi - p.seed_lo for p in plans) == 20
    stored = {"spec": spec.model_dump(), "plan": [p.to_dict() for p in plans]}
    bigger = presets.resolve("cscore", "digits", ["seeds=25", "ratios=[0.3, 0.7]"])
    grown = planner.grow(stored, bigger, slots=2)
    assert grown[: len(plans)] == plans  # the stored trials, unchanged
    new = grown[len(plans) :]
    assert {p.fragment for p in new}.isdisjoint({p.fragment for p in plans})
    for cell in ("ratio0.3", "ratio0.7"):
        seeds = sorted(s for p in grown if p.cell == cell for s in range(p.seed_lo, p.seed_hi))
        assert seeds == list(range(25))
    assert planner.resume_plan(stored, bigger, grow_ok=True) == planner.grow(stored, bigger)
    assert planner.resume_plan(stored, bigger) == plans  # only when the user asked for more models
    assert planner.grow(stored, spec) is None  # same spec: nothing to grow
    other = presets.resolve("cscore", "digits", ["seeds=25", "ratios=[0.3, 0.7]", "max_epochs=7"])
    assert planner.grow(stored, other) is None  # another sweep, not a bigger one
    with pytest.raises(specs.SpecError, match="already has 10 models per ratio, and a sweep only grows"):
        planner.grow(stored, presets.resolve("cscore", "digits", ["seeds=5", "ratios=[0.3, 0.7]"]))


def test_subsets_follow_the_documented_rule():
    from sweep.job import subset_of

    spec = presets.resolve("memorization", "digits")
    a = subset_of(spec, 0.7, 3, 1437)
    rng = np.random.default_rng(seeding.derive_seed(0, "subset", "0.7:3"))
    assert a.tolist() == sorted(rng.permutation(1437)[:1006].tolist())
    assert len(np.unique(a)) == 1006 == spec.subset_size(0.7)
    assert not np.array_equal(a, subset_of(spec, 0.7, 4, 1437))


def test_influence_top_pairs_match_brute_force_with_any_block():
    rng = np.random.default_rng(3)
    m, n_train, n_test = 30, 12, 7
    subsets = [sorted(rng.choice(n_train, 6, replace=False)) for _ in range(m)]
    ex, mb = tables(rng.random((m, n_train)) < 0.7, subsets, correct_test=rng.random((m, n_test)) < 0.6)
    a = np.zeros((m, n_train), dtype=bool)
    for s, subset in enumerate(subsets):
        a[s, subset] = True
    t = ex[ex.split == "test"].sort_values(["seed", "index"]).correct.to_numpy().reshape(m, n_test)
    brute = sorted(
        (t[a[:, i], j].mean() - t[~a[:, i], j].mean() for i in range(n_train) for j in range(n_test)), reverse=True
    )[:5]
    for block in (1, 4, 1024):
        pairs = memo.influence(ex, mb, top=5, block=block)
        assert pairs.infl.to_numpy() == pytest.approx(brute)
        for r in pairs.itertuples():  # each pair's value is its own
            assert r.infl == pytest.approx(
                t[a[:, r.train_index], r.test_index].mean() - t[~a[:, r.train_index], r.test_index].mean()
            )


def test_a_cscore_needs_only_held_out_models():
    ex, mb = tables([[1, 1, 0], [0, 1, 1]], [[0], [2]], cell="ratio0.3")  # example 1 never trained on
    cs = memo.cscore(ex, mb).set_index("index")
    assert cs.loc[1, "cscore"] == 1.0 and cs.loc[1, "n_out"] == 2
    with pytest.raises(memo.TooFewModels, match="index 0"):  # example 0 is held out by no model
        memo.cscore(*tables([[1, 1, 0], [0, 1, 1]], [[0, 1], [0, 2]], cell="ratio0.3"))


def test_ratios_must_name_distinct_cells():
    with pytest.raises(specs.SpecError, match="must differ in their first 6 significant digits"):
        presets.resolve("cscore", "digits", ["ratios=[0.3, 0.30000000000000004]"])


def test_a_cscore_uses_the_ratios_that_held_each_example_out():
    # ratio0.9: example 0 is in every subset; ratio0.3 holds it out (wrong in both models)
    ex1, mb1 = tables([[0, 1, 1], [0, 1, 1]], [[1], [2]], cell="ratio0.3")
    ex2, mb2 = tables([[1, 1, 1], [1, 1, 1]], [[0, 1], [0, 2]], cell="ratio0.9")
    cs = memo.cscore(pd.concat([ex1, ex2]), pd.concat([mb1, mb2])).set_index("index")
    assert np.isnan(cs.loc[0, "held_out_ratio0.9"]) and cs.loc[0, "ratios"] == 1 and cs.loc[0, "cscore"] == 0.0
    assert cs.loc[1, "ratios"] == 2 and cs.loc[1, "cscore"] == 1.0
    with pytest.raises(memo.TooFewModels, match="held out by no model at any ratio"):
        memo.cscore(ex2, mb2)


def test_pack_sizes_per_architecture():
    mlp = presets.resolve("memorization", "digits", ["pack_size=7"])
    assert mlp.resolved_pack_size(100) == 7 and mlp.arch_label == "mlp-128"
    cnn = presets.resolve("memorization", "digits", ["arch=cnn"])
    assert cnn.resolved_pack_size(100) == specs.CONV_PACK and cnn.resolved_pack_size(5) == 5
    assert cnn.arch_label == "cnn"
    mlp1 = presets.resolve("memorization", "digits", ["arch=mlp1"])  # the MLP cache rule, at mlp1's 512 units
    wide = presets.resolve("memorization", "digits", ["model.hidden=[512]"])
    assert mlp1.resolved_pack_size(500, cache_bytes=2**25) == wide.resolved_pack_size(500, cache_bytes=2**25)
    assert wide.resolved_pack_size(500, cache_bytes=2**25) < mlp.model_copy(
        update={"pack_size": None}
    ).resolved_pack_size(500, cache_bytes=2**25)


def test_tied_influence_pairs_are_the_same_whatever_the_block():
    rng = np.random.default_rng(5)
    m, n_train, n_test = 6, 15, 9  # few models: many pairs share a value
    subsets = [sorted(rng.choice(n_train, 7, replace=False)) for _ in range(m)]
    ex, mb = tables(rng.random((m, n_train)) < 0.7, subsets, correct_test=rng.random((m, n_test)) < 0.5)
    shown = [memo.influence(ex, mb, top=12, block=b)[["train_index", "test_index", "infl"]] for b in (1, 4, 7, 1024)]
    assert shown[0].infl.duplicated().any()  # the case under test: ties at the top
    for other in shown[1:]:
        pd.testing.assert_frame_equal(other, shown[0])
    # ties in order of (train, test) index
    for _, group in shown[0].groupby("infl"):
        assert list(zip(group.train_index, group.test_index)) == sorted(zip(group.train_index, group.test_index))


def test_growth_never_changes_what_the_stored_models_are():
    spec = presets.resolve("memorization", "digits", ["seeds=10"])
    old = spec.model_dump()
    del old["arch"]  # a sweep stored before the key existed: it trained the MLP
    stored = {"spec": old, "plan": [p.to_dict() for p in planner.expand(spec)]}
    assert planner.grow(stored, presets.resolve("memorization", "digits", ["seeds=20"])) is not None
    assert planner.grow(stored, presets.resolve("memorization", "digits", ["seeds=20", "arch=cnn"])) is None


def _store(tmp_path, frames: dict[str, pd.DataFrame], per_file: int) -> str:
    """Each table written as Parquet files of `per_file` models (as trials write fragments),
    its key columns dictionary-encoded as the schema has them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name, frame in frames.items():
        folder = tmp_path / "sw" / name
        folder.mkdir(parents=True)
        for part, (_, rows) in enumerate(frame.groupby(frame.seed // per_file)):
            table = pa.Table.from_pandas(rows.reset_index(drop=True), preserve_index=False)
            for key in ("cell", "variant", "split"):
                if key in table.column_names:
                    table = table.set_column(table.schema.get_field_index(key), key, table[key].dictionary_encode())
            pq.write_table(table, folder / f"part{part}.parquet", row_group_size=7)
    return str(tmp_path)


def test_estimates_read_out_of_core_equal_those_from_pandas(tmp_path, monkeypatch):
    from analysis import aggregate

    monkeypatch.setattr(aggregate, "BATCH_ROWS", 50)  # many chunks, each a few row groups
    rng = np.random.default_rng(0)
    frames_ex, frames_mb = [], []
    for cell, ratio in (("ratio0.3", 0.3), ("ratio0.7", 0.7)):
        subsets = [rng.permutation(30)[: round(ratio * 30)] for _ in range(40)]
        ex, mb = tables(
            rng.random((40, 30)) < 0.6,
            subsets,
            rng.random((40, 10)) < 0.5,
            cell=cell,
            labels=rng.integers(0, 3, 30),
            true_labels=rng.integers(0, 3, 30),
        )
        early = ex.assign(epoch=2, correct=~ex.correct)  # an earlier scored epoch: never read
        frames_ex += [ex, early]
        frames_mb.append(mb)
    ex, mb = pd.concat(frames_ex, ignore_index=True), pd.concat(frames_mb, ignore_index=True)
    results = _store(tmp_path, {"examples": ex, "members": mb}, per_file=6)
    stored, members = aggregate.StoredExamples(results, "sw"), aggregate.StoredMembers(results, "sw")
    for cell in ("ratio0.3", "ratio0.7"):
        pd.testing.assert_frame_equal(memo.memorization(stored, members, cell), memo.memorization(ex, mb, cell))
        pd.testing.assert_frame_equal(
            memo.influence(stored, members, cell, top=15), memo.influence(ex, mb, cell, top=15)
        )
    pd.testing.assert_frame_equal(memo.cscore(stored, members), memo.cscore(ex, mb))


def test_out_of_core_estimates_refuse_a_damaged_store_as_pandas_does(tmp_path):
    from analysis import aggregate

    ex, mb = tables(CORRECT, SUBSETS)
    results = _store(tmp_path, {"examples": ex.drop(index=0)}, per_file=2)
    stored = aggregate.StoredExamples(results, "sw")
    with pytest.raises(memo.IncompleteExamples, match="has 2 train rows, the others 3"):
        memo.memorization(stored, mb)
    with pytest.raises(
        memo.IncompleteExamples, match=r"no models of ratio0.9 are stored yet \(the examples table has ratio0.5\)"
    ):
        memo.memorization(stored, mb, "ratio0.9")
    results = _store(tmp_path / "b", {"examples": ex}, per_file=2)
    with pytest.raises(memo.MembersMismatch, match="members table is missing"):
        memo.memorization(aggregate.StoredExamples(results, "sw"), aggregate.StoredMembers(results, "sw"))
    results = _store(tmp_path / "c", {"examples": ex, "members": mb[mb.seed != 3]}, per_file=2)
    with pytest.raises(memo.MembersMismatch, match=r"1 model\(s\) of ratio0.5 have no subset in it \(e.g. seed 3\)"):
        memo.memorization(aggregate.StoredExamples(results, "sw"), aggregate.StoredMembers(results, "sw"))


def test_summaries_of_the_estimates_by_hand():
    mem = pd.DataFrame(
        dict(index=[0, 1, 2], mem=[0.1, 0.9, 0.5], se=[0.01, 0.05, 0.02], mislabeled=[False, True, False])
    )
    by = memo.by_label(mem, 0.25).set_index("labels")
    assert by.loc["clean", "n"] == 2 and by.loc["clean", "mean mem"] == pytest.approx(0.3)
    assert by.loc["clean", "share with mem > 0.25"] == 0.5 and by.loc["mislabeled", "largest SE"] == 0.05
    both, rho = memo.beside(mem, pd.DataFrame(dict(index=[0, 1, 2], p_correct=[0.9, 0.1, 0.5])), "p_correct")
    assert len(both) == 3 and rho == pytest.approx(-1.0)
    trials = pd.DataFrame(
        dict(cell=["ratio0.5"] * 2, seed=[0, 1], epochs_trained=[4, 6], fit_acc=[0.98, 1.0], final_test_acc=[0.7, 0.8])
    )
    fit = memo.fit_by_cell(trials).iloc[0]
    assert fit["models"] == 2 and fit["mean epochs"] == 5 and fit["lowest accuracy on own subset"] == 0.98
    assert fit["mean test accuracy"] == pytest.approx(0.75)


def test_support_of_the_estimates_by_hand():
    frame = pd.DataFrame(dict(n_in=[3, 5, 9], n_out=[2, 4, 4], se=[0.1, 0.3, 0.2]))
    assert memo.support(frame) == {
        "se_max": 0.3,
        "se_median": 0.2,
        "n_in_min": 3,
        "n_in_max": 9,
        "n_in_median": 5.0,
        "n_out_min": 2,
        "n_out_max": 4,
        "n_out_median": 4.0,
    }
    assert set(memo.support(frame.drop(columns="n_in"))) == {
        "se_max",
        "se_median",
        "n_out_min",
        "n_out_max",
        "n_out_median",
    }


def test_held_out_bands_by_hand():
    cs = pd.DataFrame(
        {
            "mislabeled": [False, False, False, True],
            "held_out_ratio0.5": [0.0, 0.5, 1.0, 0.2],
            "held_out_ratio0.7": [1.0, 1.0, np.nan, 0.4],
        }
    )
    bands = memo.held_out_bands(cs).set_index(["mislabeled", "ratio"])
    assert bands.loc[(False, 0.5), "median"] == 0.5 and bands.loc[(False, 0.5), "p10"] == pytest.approx(0.1)
    assert bands.loc[(False, 0.7), "median"] == 1.0  # the example no model held out is left out
    assert bands.loc[(True, 0.7)].tolist() == pytest.approx([0.4, 0.4, 0.4])
